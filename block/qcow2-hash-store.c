/*
 * qcow2 deduplication: the hash store, the frozen log stores
 * ("incarnations") of the index (docs/interop/qcow2.txt, 7.4).
 *
 * On disk an incarnation is a table of 2^bucket_bits buckets of
 * QCOW2_DEDUP_BUCKET_SLOTS 40-byte slots (32-byte hash, big-endian u64
 * host cluster index, 0 = empty or removed).  floor(cluster_size / 160)
 * buckets are packed into each cluster, so no bucket straddles a cluster,
 * and the rest of each cluster is zero:
 *
 *   bucket b is at  (b / per_cluster) * cluster_size
 *                   + (b % per_cluster) * 160     from the table start.
 *
 * In RAM an incarnation keeps only its filter: the 16-bit tag of every
 * slot (0 for an empty slot), 2 bytes per slot.  A lookup reads a bucket
 * from disk only when one of its filter tags equals the hash's tag.
 *
 * Tables are written once (freeze) and afterwards only have single cluster
 * fields zeroed (remove).  The store never flushes and never allocates: the
 * caller gives each table's offset and takes back the space of a dropped
 * incarnation.
 *
 * An incarnation's nb_entries (what list() reports for the directory) is
 * kept current: the count at freeze or from the directory, minus removals,
 * and recounted from the table when the filter is loaded.
 *
 * Threads and locking.  Every public function is called under the caller's
 * lock (the qcow2 s->lock), so they never race with one another.  The one
 * other thread is the filter loader started by
 * qcow2_hash_store_start_loading(); hs->lock synchronises with it:
 *
 *  - hs->incs (the incarnation list) is changed only by callers, always
 *    under hs->lock.  Callers may read it without hs->lock (no one else
 *    changes it); the loader reads it only under hs->lock.
 *  - inc->filter is NULL until the loader publishes the complete filter,
 *    under hs->lock, with an atomic store; callers read the pointer with an
 *    atomic load, so a lookup sees either no filter (the incarnation
 *    misses) or the whole of it.  The loader builds the filter privately
 *    and never touches it after publishing; from then on only callers
 *    read and change it.
 *  - inc->state, inc->pending, inc->dropped and inc->info.nb_entries are
 *    under hs->lock.
 *  - The loader reads tables from disk without holding hs->lock.  It
 *    checks hs->cancel between reads, so freeing the store waits for at
 *    most one TABLE_CHUNK_BYTES read.  As its reads are ordinary requests
 *    on file, do not wait for it (wait_loaded, free) inside a drained
 *    section of file: its next read would wait for the section to end.
 *
 * Removals during loading: a remove that finds no published filter zeroes
 * the slot on disk and, under hs->lock, records the slot in inc->pending.
 * The loader applies the pending slots to its filter under hs->lock just
 * before publishing it, so a removal is never lost, whether the loader
 * read that part of the table before or after the disk write.
 *
 * An incarnation dropped (FIFO) while the loader reads it is unlinked and
 * only marked dropped; the loader frees it instead of publishing.  Its
 * table space may already be reused by then, which is harmless as the
 * filter built from it is discarded.
 */
#include "qemu/osdep.h"
#include "qcow2-dedup.h"

/* Tables are written and read this many bytes at a time (whole clusters). */
#define TABLE_CHUNK_BYTES (1024 * 1024)

typedef enum IncarnationState {
    INC_UNLOADED,       /* filter not loaded yet: misses */
    INC_LOADING,        /* the loader is reading its table */
    INC_LOADED,         /* filter published */
    INC_LOAD_FAILED,    /* table unreadable: misses for good */
} IncarnationState;

typedef struct Incarnation {
    Qcow2IncarnationInfo info;  /* nb_entries: live entries, kept current */
    uint16_t *filter;           /* one tag per slot, NULL until loaded */
    IncarnationState state;
    GArray *pending;            /* slots (uint32_t) removed before loading */
    bool dropped;               /* unlinked while loading: loader frees it */
} Incarnation;

struct Qcow2HashStore {
    BlockDriverState *file;
    int cluster_bits;
    int bucket_bits;
    uint32_t max_incarnations;
    uint32_t buckets_per_cluster;
    uint64_t table_size;
    uint64_t chunk_bytes;
    Qcow2HashStoreStats stats;

    GMutex lock;
    GPtrArray *incs;            /* Incarnation *, oldest first */
    GThread *loader;
    bool loader_running;
    int cancel;                 /* atomic: stop loading (store is freed) */
};

/* Geometry */

static uint32_t nb_buckets(const Qcow2HashStore *hs)
{
    return 1u << hs->bucket_bits;
}

static size_t nb_slots(const Qcow2HashStore *hs)
{
    return (size_t)QCOW2_DEDUP_BUCKET_SLOTS << hs->bucket_bits;
}

static size_t filter_bytes(const Qcow2HashStore *hs)
{
    return nb_slots(hs) * sizeof(uint16_t);
}

uint64_t qcow2_hash_store_table_size(int cluster_bits, int bucket_bits)
{
    uint64_t per_cluster = (1u << cluster_bits) / QCOW2_DEDUP_BUCKET_SIZE;

    return DIV_ROUND_UP(1ull << bucket_bits, per_cluster) << cluster_bits;
}

/* Byte offset of bucket b from the start of a table. */
static uint64_t bucket_offset(const Qcow2HashStore *hs, uint32_t b)
{
    return ((uint64_t)(b / hs->buckets_per_cluster) << hs->cluster_bits) +
           (b % hs->buckets_per_cluster) * QCOW2_DEDUP_BUCKET_SIZE;
}

/* A run of whole clusters of a table and the buckets it holds. */
typedef struct TableChunk {
    uint64_t offset;            /* from the table start */
    uint64_t bytes;
    uint32_t first_bucket;
    uint32_t end_bucket;        /* exclusive */
} TableChunk;

static uint64_t table_nb_chunks(const Qcow2HashStore *hs)
{
    return DIV_ROUND_UP(hs->table_size, hs->chunk_bytes);
}

static void table_chunk(const Qcow2HashStore *hs, uint64_t index,
                        TableChunk *c)
{
    uint64_t clusters = hs->chunk_bytes >> hs->cluster_bits;
    uint64_t first = index * clusters * hs->buckets_per_cluster;
    uint64_t end = first + clusters * hs->buckets_per_cluster;

    c->offset = index * hs->chunk_bytes;
    c->bytes = MIN(hs->chunk_bytes, hs->table_size - c->offset);
    c->first_bucket = first;
    c->end_bucket = MIN(end, nb_buckets(hs));
}

/* Slots */

static void slot_load(const uint8_t *p, Qcow2IndexEntry *e)
{
    memcpy(&e->hash, p, QCOW2_DEDUP_HASH_SIZE);
    e->cluster = ldq_be_p(p + QCOW2_DEDUP_HASH_SIZE);
}

static void slot_store(uint8_t *p, const Qcow2IndexEntry *e)
{
    memcpy(p, &e->hash, QCOW2_DEDUP_HASH_SIZE);
    stq_be_p(p + QCOW2_DEDUP_HASH_SIZE, e->cluster);
}

/* The filter tag of a slot: 0 when empty. */
static uint16_t slot_tag(const Qcow2IndexEntry *e)
{
    return e->cluster ? qcow2_dedup_tag(&e->hash) : 0;
}

static uint32_t slot_index(uint32_t bucket, unsigned i)
{
    return bucket * QCOW2_DEDUP_BUCKET_SLOTS + i;
}

/* Bit i set when slot i of bucket has tag t in filter. */
static unsigned filter_matches(const uint16_t *filter, uint32_t bucket,
                               uint16_t t)
{
    unsigned mask = 0;

    for (unsigned i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        if (filter[slot_index(bucket, i)] == t) {
            mask |= 1u << i;
        }
    }
    return mask;
}

#define ALL_SLOTS ((1u << QCOW2_DEDUP_BUCKET_SLOTS) - 1)

static int read_bucket(Qcow2HashStore *hs, const Incarnation *inc,
                       uint32_t bucket, uint8_t *buf)
{
    return bdrv_pread(hs->file, inc->info.table_offset +
                      bucket_offset(hs, bucket),
                      QCOW2_DEDUP_BUCKET_SIZE, buf, 0);
}

/*
 * Call fn for every slot of the table at table_offset, in slot order,
 * reading it a chunk at a time.  Stops at fn's first non-zero value.
 */
typedef int SlotFn(uint32_t slot, const Qcow2IndexEntry *e, void *opaque);

static int table_walk(Qcow2HashStore *hs, uint64_t table_offset,
                      SlotFn *fn, void *opaque)
{
    uint8_t *buf = qemu_try_blockalign(hs->chunk_bytes);
    int ret = 0;

    if (!buf) {
        return -ENOMEM;
    }
    for (uint64_t n = 0; n < table_nb_chunks(hs) && !ret; n++) {
        TableChunk c;

        if (g_atomic_int_get(&hs->cancel)) {
            ret = -ECANCELED;
            break;
        }
        table_chunk(hs, n, &c);
        ret = bdrv_pread(hs->file, table_offset + c.offset, c.bytes, buf, 0);
        for (uint32_t b = c.first_bucket; b < c.end_bucket && !ret; b++) {
            const uint8_t *p = buf + bucket_offset(hs, b) - c.offset;

            for (unsigned i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS && !ret; i++) {
                Qcow2IndexEntry e;

                slot_load(p + i * QCOW2_DEDUP_ENTRY_SIZE, &e);
                ret = fn(slot_index(b, i), &e, opaque);
            }
        }
    }
    qemu_vfree(buf);
    return ret;
}

/* Incarnations */

static Incarnation *inc_new(const Qcow2IncarnationInfo *info)
{
    Incarnation *inc = g_new0(Incarnation, 1);

    inc->info = *info;
    return inc;
}

static void inc_free(Incarnation *inc)
{
    g_free(inc->filter);
    if (inc->pending) {
        g_array_free(inc->pending, true);
    }
    g_free(inc);
}

static Incarnation *inc_find(const Qcow2HashStore *hs, uint32_t id)
{
    for (guint i = 0; i < hs->incs->len; i++) {
        Incarnation *inc = g_ptr_array_index(hs->incs, i);

        if (inc->info.id == id) {
            return inc;
        }
    }
    return NULL;
}

/* Called with hs->lock held. */
static void inc_drop_oldest(Qcow2HashStore *hs, Qcow2IncarnationInfo *dropped)
{
    Incarnation *inc = g_ptr_array_steal_index(hs->incs, 0);

    *dropped = inc->info;
    if (inc->state == INC_LOADING) {
        inc->dropped = true;
    } else {
        inc_free(inc);
    }
}

/* Const readers still take the lock: the loader changes what they read. */
static GMutex *hs_lock(const Qcow2HashStore *hs)
{
    return (GMutex *)&hs->lock;
}

Qcow2HashStore *qcow2_hash_store_new(BlockDriverState *file, int cluster_bits,
                                     int bucket_bits,
                                     uint32_t max_incarnations)
{
    Qcow2HashStore *hs = g_new0(Qcow2HashStore, 1);

    /* A bucket must fit in a cluster; the glue validated the header. */
    assert((1 << cluster_bits) >= QCOW2_DEDUP_BUCKET_SIZE);
    assert(bucket_bits >= QCOW2_DEDUP_MIN_BUCKET_BITS &&
           bucket_bits <= QCOW2_DEDUP_MAX_BUCKET_BITS);
    assert(max_incarnations >= 1);

    hs->file = file;
    hs->cluster_bits = cluster_bits;
    hs->bucket_bits = bucket_bits;
    hs->max_incarnations = max_incarnations;
    hs->buckets_per_cluster = (1u << cluster_bits) / QCOW2_DEDUP_BUCKET_SIZE;
    hs->table_size = qcow2_hash_store_table_size(cluster_bits, bucket_bits);
    hs->chunk_bytes = MAX(TABLE_CHUNK_BYTES, 1u << cluster_bits);
    hs->incs = g_ptr_array_new();
    g_mutex_init(&hs->lock);
    return hs;
}

void qcow2_hash_store_free(Qcow2HashStore *hs)
{
    if (!hs) {
        return;
    }
    g_atomic_int_set(&hs->cancel, 1);
    qcow2_hash_store_wait_loaded(hs);
    for (guint i = 0; i < hs->incs->len; i++) {
        inc_free(g_ptr_array_index(hs->incs, i));
    }
    g_ptr_array_free(hs->incs, true);
    g_mutex_clear(&hs->lock);
    g_free(hs);
}

void qcow2_hash_store_add_existing(Qcow2HashStore *hs,
                                   const Qcow2IncarnationInfo *info)
{
    Incarnation *inc = inc_new(info);

    g_mutex_lock(&hs->lock);
    g_ptr_array_add(hs->incs, inc);
    g_mutex_unlock(&hs->lock);
}

/* Filter loading */

typedef struct FilterBuild {
    uint16_t *filter;
    uint64_t count;
} FilterBuild;

static int filter_build_slot(uint32_t slot, const Qcow2IndexEntry *e,
                             void *opaque)
{
    FilterBuild *fb = opaque;

    fb->filter[slot] = slot_tag(e);
    fb->count += fb->filter[slot] != 0;
    return 0;
}

/* Read a table and compute its filter; NULL on error or cancellation. */
static uint16_t *filter_load(Qcow2HashStore *hs, uint64_t table_offset,
                             uint64_t *count)
{
    FilterBuild fb = { .filter = g_try_malloc(filter_bytes(hs)) };

    if (!fb.filter) {
        return NULL;
    }
    if (table_walk(hs, table_offset, filter_build_slot, &fb) < 0) {
        g_free(fb.filter);
        return NULL;
    }
    *count = fb.count;
    return fb.filter;
}

/* Called with hs->lock held: the newest incarnation left to load. */
static Incarnation *next_unloaded(const Qcow2HashStore *hs)
{
    for (guint i = hs->incs->len; i-- > 0;) {
        Incarnation *inc = g_ptr_array_index(hs->incs, i);

        if (inc->state == INC_UNLOADED) {
            return inc;
        }
    }
    return NULL;
}

/*
 * Called with hs->lock held.  Applying the removals that raced with the
 * read and publishing happen under the same lock hold, which is what
 * qcow2_hash_store_remove() relies on.
 */
static void filter_publish(Incarnation *inc, uint16_t *filter, uint64_t count)
{
    if (inc->dropped) {
        g_free(filter);
        inc_free(inc);
        return;
    }
    if (filter && inc->pending) {
        for (guint i = 0; i < inc->pending->len; i++) {
            uint32_t slot = g_array_index(inc->pending, uint32_t, i);

            count -= filter[slot] != 0;
            filter[slot] = 0;
        }
    }
    if (inc->pending) {
        g_array_free(inc->pending, true);
        inc->pending = NULL;
    }
    if (!filter) {
        inc->state = INC_LOAD_FAILED;
        return;
    }
    inc->info.nb_entries = count;
    inc->state = INC_LOADED;
    g_atomic_pointer_set(&inc->filter, filter);
}

static gpointer filter_loader(gpointer opaque)
{
    Qcow2HashStore *hs = opaque;
    Incarnation *inc;

    g_mutex_lock(&hs->lock);
    while (!g_atomic_int_get(&hs->cancel) && (inc = next_unloaded(hs))) {
        uint64_t table_offset = inc->info.table_offset;
        uint64_t count = 0;
        uint16_t *filter;

        inc->state = INC_LOADING;
        g_mutex_unlock(&hs->lock);
        filter = filter_load(hs, table_offset, &count);
        g_mutex_lock(&hs->lock);
        filter_publish(inc, filter, count);
    }
    hs->loader_running = false;
    g_mutex_unlock(&hs->lock);
    return NULL;
}

void qcow2_hash_store_start_loading(Qcow2HashStore *hs)
{
    g_mutex_lock(&hs->lock);
    /* A running loader picks up incarnations added since it started. */
    if (!hs->loader_running && next_unloaded(hs)) {
        if (hs->loader) {
            g_thread_join(hs->loader);   /* it has finished */
        }
        hs->loader_running = true;
        hs->loader = g_thread_new("qcow2-dedup-filter", filter_loader, hs);
    }
    g_mutex_unlock(&hs->lock);
}

void qcow2_hash_store_wait_loaded(Qcow2HashStore *hs)
{
    GThread *loader;

    g_mutex_lock(&hs->lock);
    loader = hs->loader;
    hs->loader = NULL;
    g_mutex_unlock(&hs->lock);
    if (loader) {
        g_thread_join(loader);
    }
}

/* Freeze */

/*
 * Serialise the log store's buckets of chunk c into buf and record their
 * tags in filter.  Returns the number of live entries.
 */
static uint64_t freeze_chunk(const Qcow2HashStore *hs,
                             const Qcow2IndexEntry *slots,
                             const TableChunk *c, uint8_t *buf,
                             uint16_t *filter)
{
    uint64_t count = 0;

    memset(buf, 0, c->bytes);
    for (uint32_t b = c->first_bucket; b < c->end_bucket; b++) {
        uint8_t *p = buf + bucket_offset(hs, b) - c->offset;

        for (unsigned i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS; i++) {
            const Qcow2IndexEntry *e = &slots[slot_index(b, i)];

            filter[slot_index(b, i)] = slot_tag(e);
            if (e->cluster) {
                slot_store(p + i * QCOW2_DEDUP_ENTRY_SIZE, e);
                count++;
            }
        }
    }
    return count;
}

/* Write ls as a table at table_offset and build its filter. */
static int freeze_write(Qcow2HashStore *hs, const Qcow2LogStore *ls,
                        uint64_t table_offset, uint16_t *filter,
                        uint64_t *count)
{
    const Qcow2IndexEntry *slots = qcow2_log_store_slots(ls);
    uint8_t *buf = qemu_try_blockalign(hs->chunk_bytes);
    int ret = 0;

    if (!buf) {
        return -ENOMEM;
    }
    *count = 0;
    for (uint64_t n = 0; n < table_nb_chunks(hs) && !ret; n++) {
        TableChunk c;

        table_chunk(hs, n, &c);
        *count += freeze_chunk(hs, slots, &c, buf, filter);
        ret = bdrv_pwrite(hs->file, table_offset + c.offset, c.bytes, buf, 0);
    }
    qemu_vfree(buf);
    return ret;
}

int qcow2_hash_store_freeze(Qcow2HashStore *hs, const Qcow2LogStore *ls,
                            uint64_t table_offset,
                            Qcow2IncarnationInfo *dropped)
{
    Qcow2IncarnationInfo info = {
        .id = qcow2_log_store_id(ls),
        .table_offset = table_offset,
    };
    uint16_t *filter;
    Incarnation *inc;
    int ret;

    *dropped = (Qcow2IncarnationInfo) { 0 };
    if (qcow2_log_store_bucket_bits(ls) != hs->bucket_bits ||
        !QEMU_IS_ALIGNED(table_offset, 1ull << hs->cluster_bits)) {
        return -EINVAL;
    }
    filter = g_try_malloc(filter_bytes(hs));
    if (!filter) {
        return -ENOMEM;
    }
    ret = freeze_write(hs, ls, table_offset, filter, &info.nb_entries);
    if (ret < 0) {
        g_free(filter);
        return ret;
    }

    inc = inc_new(&info);
    inc->filter = filter;
    inc->state = INC_LOADED;
    g_mutex_lock(&hs->lock);
    if (hs->incs->len >= hs->max_incarnations) {
        inc_drop_oldest(hs, dropped);
    }
    g_ptr_array_add(hs->incs, inc);
    g_mutex_unlock(&hs->lock);
    return 0;
}

/* Lookup */

/*
 * Look h up in one bucket of inc whose filter slots in mask match its tag:
 * one bucket read, then the full hashes.
 */
static int lookup_bucket(Qcow2HashStore *hs, const Incarnation *inc,
                         uint32_t bucket, unsigned mask,
                         const Qcow2DedupHash *h, uint64_t *cluster)
{
    uint8_t buf[QCOW2_DEDUP_BUCKET_SIZE];
    int ret;

    hs->stats.metadata_reads++;
    ret = read_bucket(hs, inc, bucket, buf);
    if (ret < 0) {
        return ret;
    }
    for (unsigned i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        Qcow2IndexEntry e;

        if (!(mask & (1u << i))) {
            continue;
        }
        hs->stats.filter_hits++;
        slot_load(buf + i * QCOW2_DEDUP_ENTRY_SIZE, &e);
        if (e.cluster && !memcmp(&e.hash, h, sizeof(*h))) {
            hs->stats.hits++;
            *cluster = e.cluster;
            return 1;
        }
        hs->stats.false_positives++;
    }
    return 0;
}

int qcow2_hash_store_lookup(Qcow2HashStore *hs, const Qcow2DedupHash *h,
                            uint64_t *cluster, Qcow2IndexLocation *loc)
{
    uint16_t t = qcow2_dedup_tag(h);
    uint32_t b[2];
    int nb;

    b[0] = qcow2_dedup_home_bucket(h, hs->bucket_bits);
    b[1] = qcow2_dedup_alt_bucket(b[0], t, hs->bucket_bits);
    nb = b[0] == b[1] ? 1 : 2;
    hs->stats.lookups++;

    for (guint i = hs->incs->len; i-- > 0;) {
        Incarnation *inc = g_ptr_array_index(hs->incs, i);
        const uint16_t *filter = g_atomic_pointer_get(&inc->filter);

        if (!filter) {
            continue;
        }
        for (int j = 0; j < nb; j++) {
            unsigned mask = filter_matches(filter, b[j], t);
            int ret;

            if (!mask) {
                continue;
            }
            ret = lookup_bucket(hs, inc, b[j], mask, h, cluster);
            if (ret > 0) {
                *loc = (Qcow2IndexLocation) {
                    .id = inc->info.id, .bucket = b[j], .tag = t,
                };
            }
            if (ret) {
                return ret;
            }
        }
    }
    return 0;
}

/* Remove */

/* Clear slot in the filter, or queue it for the loader. */
static void forget_slot(Qcow2HashStore *hs, Incarnation *inc, uint32_t slot)
{
    g_mutex_lock(&hs->lock);
    if (inc->filter) {
        inc->filter[slot] = 0;
    } else if (inc->state != INC_LOAD_FAILED) {
        if (!inc->pending) {
            inc->pending = g_array_new(false, false, sizeof(uint32_t));
        }
        g_array_append_val(inc->pending, slot);
    }
    if (inc->info.nb_entries) {
        inc->info.nb_entries--;
    }
    g_mutex_unlock(&hs->lock);
}

/*
 * Remove cluster from bucket of inc if one of the slots in mask holds it
 * under tag.  The disk decides: a filter tag alone may belong to another
 * entry.
 */
static int remove_in_bucket(Qcow2HashStore *hs, Incarnation *inc,
                            uint32_t bucket, unsigned mask, uint16_t tag,
                            uint64_t cluster)
{
    uint8_t buf[QCOW2_DEDUP_BUCKET_SIZE];
    static const uint8_t zero[8];
    int ret = read_bucket(hs, inc, bucket, buf);

    if (ret < 0) {
        return ret;
    }
    for (unsigned i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        Qcow2IndexEntry e;

        slot_load(buf + i * QCOW2_DEDUP_ENTRY_SIZE, &e);
        if (!(mask & (1u << i)) || e.cluster != cluster ||
            qcow2_dedup_tag(&e.hash) != tag) {
            continue;
        }
        ret = bdrv_pwrite(hs->file, inc->info.table_offset +
                          bucket_offset(hs, bucket) +
                          i * QCOW2_DEDUP_ENTRY_SIZE + QCOW2_DEDUP_HASH_SIZE,
                          sizeof(zero), zero, 0);
        if (ret < 0) {
            return ret;
        }
        forget_slot(hs, inc, slot_index(bucket, i));
        return 1;
    }
    return 0;
}

int qcow2_hash_store_remove(Qcow2HashStore *hs, const Qcow2IndexLocation *loc,
                            uint64_t cluster)
{
    Incarnation *inc = inc_find(hs, loc->id);
    const uint16_t *filter;
    uint32_t b[2];

    /* A reverse-map record is untrusted input: check its range. */
    if (!inc || loc->bucket >= nb_buckets(hs) || !loc->tag || !cluster) {
        return 0;
    }
    b[0] = loc->bucket;
    b[1] = qcow2_dedup_alt_bucket(b[0], loc->tag, hs->bucket_bits);
    filter = g_atomic_pointer_get(&inc->filter);

    for (int j = 0; j < (b[0] == b[1] ? 1 : 2); j++) {
        unsigned mask = filter ? filter_matches(filter, b[j], loc->tag)
                               : ALL_SLOTS;
        int ret;

        if (!mask) {
            continue;
        }
        ret = remove_in_bucket(hs, inc, b[j], mask, loc->tag, cluster);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

/* Queries */

bool qcow2_hash_store_has(const Qcow2HashStore *hs, uint32_t id)
{
    return id && inc_find(hs, id);
}

int qcow2_hash_store_list(const Qcow2HashStore *hs,
                          Qcow2IncarnationInfo *out, int max)
{
    int n = MIN((guint)MAX(max, 0), hs->incs->len);

    g_mutex_lock(hs_lock(hs));
    for (int i = 0; i < n; i++) {
        out[i] = ((Incarnation *)g_ptr_array_index(hs->incs, i))->info;
    }
    g_mutex_unlock(hs_lock(hs));
    return n;
}

uint32_t qcow2_hash_store_count(const Qcow2HashStore *hs)
{
    return hs->incs->len;
}

uint64_t qcow2_hash_store_entries(const Qcow2HashStore *hs)
{
    uint64_t n = 0;

    g_mutex_lock(hs_lock(hs));
    for (guint i = 0; i < hs->incs->len; i++) {
        n += ((Incarnation *)g_ptr_array_index(hs->incs, i))->info.nb_entries;
    }
    g_mutex_unlock(hs_lock(hs));
    return n;
}

size_t qcow2_hash_store_memory(const Qcow2HashStore *hs)
{
    size_t n = sizeof(*hs) + hs->incs->len * (sizeof(Incarnation) +
                                              sizeof(gpointer));

    for (guint i = 0; i < hs->incs->len; i++) {
        Incarnation *inc = g_ptr_array_index(hs->incs, i);

        if (g_atomic_pointer_get(&inc->filter)) {
            n += filter_bytes(hs);
        }
    }
    return n;
}

void qcow2_hash_store_get_stats(const Qcow2HashStore *hs,
                                Qcow2HashStoreStats *stats)
{
    *stats = hs->stats;
}

/* Iteration */

typedef struct ForeachState {
    uint32_t id;
    int (*fn)(const Qcow2IndexEntry *e, const Qcow2IndexLocation *loc,
              void *opaque);
    void *opaque;
} ForeachState;

static int foreach_slot(uint32_t slot, const Qcow2IndexEntry *e, void *opaque)
{
    ForeachState *fs = opaque;
    Qcow2IndexLocation loc = {
        .id = fs->id,
        .bucket = slot / QCOW2_DEDUP_BUCKET_SLOTS,
        .tag = slot_tag(e),
    };

    return e->cluster ? fs->fn(e, &loc, fs->opaque) : 0;
}

int qcow2_hash_store_foreach(Qcow2HashStore *hs,
                             int (*fn)(const Qcow2IndexEntry *e,
                                       const Qcow2IndexLocation *loc,
                                       void *opaque),
                             void *opaque)
{
    ForeachState fs = { .fn = fn, .opaque = opaque };

    for (guint i = 0; i < hs->incs->len; i++) {
        Incarnation *inc = g_ptr_array_index(hs->incs, i);
        int ret;

        fs.id = inc->info.id;
        ret = table_walk(hs, inc->info.table_offset, foreach_slot, &fs);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

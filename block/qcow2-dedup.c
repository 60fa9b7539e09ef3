/*
 * qcow2 inline deduplication: the glue between the qcow2 driver and the
 * index modules (log store, hash store, journal), and the reverse map.
 *
 * On-disk format: docs/interop/qcow2.txt section 7.  The rules this file
 * keeps (and why they make a stale hit impossible):
 *
 *  - An index entry H -> C is added only after C's data write completed,
 *    together with C's reverse-map record naming the entry's location.
 *  - An indexed cluster (non-zero reverse record) is never written in
 *    place; the qcow2 write path asks qcow2_dedup_cluster_indexed().
 *  - When C's refcount reaches 0 (only ever from the limbo, after the L2
 *    change is durable), the entry its record names is removed from memory
 *    and from disk and the record cleared; the flush that processed the
 *    limbo then flushes those writes before releasing the lock, so C cannot
 *    be reallocated while the disk still names it in the index.
 *  - A hit is taken only if C's refcount is in [1, refcount_max / 2].
 *  - At replay, a journalled INSERT is trusted only if C's refcount is
 *    non-zero and its reverse record still names that entry.
 *  - If another program opened the image for writing (autoclear bit 32
 *    clear), nothing of the old index is trusted: it is dropped and a new,
 *    empty one started after a full repair.
 *
 * Everything runs under the qcow2 driver's s->lock, except hashing and the
 * data I/O of a write, and the hash store's filter-loading thread.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qcow2.h"
#include "qcow2-dedup.h"

#include <nettle/sha2.h>
#include <zlib.h>

#define DEDUP_EXT_SIZE 64
#define DEDUP_VERSION 1
#define DEDUP_HASH_SHA256 1
#define DEDUP_FLAG_PAUSED 0x1
#define DEDUP_FLAG_VERIFY 0x2
#define DEDUP_FLAGS_KNOWN (DEDUP_FLAG_PAUSED | DEDUP_FLAG_VERIFY)

#define DIR_MAGIC 0x44444952u
#define DIR_HEADER_SIZE 64
#define DIR_ENTRY_SIZE 32

#define JOURNAL_INSERT_SIZE 72
/* Room a freeze must leave in the journal for the records of one batch. */
#define JOURNAL_RESERVE (64 * KiB)
/* Clusters hashed and looked up per locked section of a write. */
#define DEDUP_BATCH_CLUSTERS 256

struct Qcow2Dedup {
    uint8_t flags;
    int bucket_bits;
    uint32_t max_incarnations;
    uint64_t directory_offset;
    uint32_t directory_clusters;
    uint32_t dir_copy_size;
    uint64_t journal_offset;
    uint32_t journal_clusters;
    uint64_t rmap_table_offset;
    uint32_t rmap_table_clusters;
    uint64_t *rmap_table;           /* host endian; entries = clusters*cs/8 */
    Qcow2Cache *rmap_cache;

    /* Directory state */
    uint64_t dir_sequence;
    uint64_t journal_generation;
    uint32_t next_id;               /* the log store's id */
    uint64_t spare_offset;
    uint64_t stat_deduplicated;
    uint64_t stat_zero;
    uint64_t stat_unique_persisted; /* for read-only opens */

    Qcow2LogStore *ls;
    Qcow2HashStore *hs;
    Qcow2Journal *journal;

    bool writable;
    bool freed_indexed;     /* removals must be flushed before reuse */
    bool copied_dirty;      /* COPIED flags need the fix-up pass */

    /* Counters since open */
    uint64_t lookups, hits, misses, zero_writes, saturated, verify_failures;
    uint64_t log_hits;
};

typedef struct DedupExtension {
    uint8_t flags;
    int bucket_bits;
    uint32_t max_incarnations;
    uint64_t directory_offset;
    uint64_t journal_offset;
    uint32_t journal_clusters;
    uint64_t rmap_table_offset;
    uint32_t rmap_table_clusters;
} DedupExtension;

static void default_geometry(BDRVQcow2State *s, const Qcow2DedupOptions *o,
                             int *bucket_bits, uint32_t *max_incarnations);

static uint64_t dedup_refcount_limit(BDRVQcow2State *s)
{
    /* Leave half the range for snapshots and other sharing. */
    return s->refcount_max / 2 + (s->refcount_max & 1);
}

static uint32_t dir_copy_size(uint32_t max_incarnations)
{
    return ROUND_UP(DIR_HEADER_SIZE + DIR_ENTRY_SIZE * max_incarnations, 512);
}

/* Extension */

static bool parse_extension(BlockDriverState *bs, const uint8_t *p,
                            uint32_t len, DedupExtension *e, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    if (len < DEDUP_EXT_SIZE) {
        error_setg(errp, "dedup extension too short (%u bytes)", len);
        return false;
    }
    if (ldl_be_p(p) != DEDUP_VERSION) {
        error_setg(errp, "unsupported dedup version %u", ldl_be_p(p));
        return false;
    }
    if (p[4] != DEDUP_HASH_SHA256) {
        error_setg(errp, "unknown dedup hash algorithm %u", p[4]);
        return false;
    }
    e->flags = p[5];
    e->directory_offset = ldq_be_p(p + 8);
    e->journal_offset = ldq_be_p(p + 16);
    e->journal_clusters = ldl_be_p(p + 24);
    e->bucket_bits = p[28];
    e->max_incarnations = lduw_be_p(p + 30);
    e->rmap_table_offset = ldq_be_p(p + 32);
    e->rmap_table_clusters = ldl_be_p(p + 40);
    if ((e->flags & ~DEDUP_FLAGS_KNOWN) ||
        e->bucket_bits < QCOW2_DEDUP_MIN_BUCKET_BITS ||
        e->bucket_bits > QCOW2_DEDUP_MAX_BUCKET_BITS ||
        e->max_incarnations == 0 || e->journal_clusters == 0 ||
        e->rmap_table_clusters == 0 ||
        (e->rmap_table_clusters << s->cluster_bits) > QCOW_MAX_REFTABLE_SIZE ||
        offset_into_cluster(s, e->directory_offset | e->journal_offset |
                            e->rmap_table_offset) ||
        !e->directory_offset || !e->journal_offset || !e->rmap_table_offset) {
        error_setg(errp, "invalid dedup extension fields");
        return false;
    }
    return true;
}

size_t qcow2_dedup_serialize_ext(BlockDriverState *bs, uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;

    memset(buf, 0, DEDUP_EXT_SIZE);
    stl_be_p(buf, DEDUP_VERSION);
    buf[4] = DEDUP_HASH_SHA256;
    buf[5] = d->flags;
    stq_be_p(buf + 8, d->directory_offset);
    stq_be_p(buf + 16, d->journal_offset);
    stl_be_p(buf + 24, d->journal_clusters);
    buf[28] = d->bucket_bits;
    stw_be_p(buf + 30, d->max_incarnations);
    stq_be_p(buf + 32, d->rmap_table_offset);
    stl_be_p(buf + 40, d->rmap_table_clusters);
    return DEDUP_EXT_SIZE;
}

/* Reverse map */

static uint64_t rmap_entries_per_block(BDRVQcow2State *s)
{
    return s->cluster_size / 8;
}

static uint64_t rmap_table_size(Qcow2Dedup *d, BDRVQcow2State *s)
{
    return ((uint64_t)d->rmap_table_clusters << s->cluster_bits) / 8;
}

static int rmap_load_table(BlockDriverState *bs, Qcow2Dedup *d)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t n = rmap_table_size(d, s);
    int ret;

    d->rmap_table = g_try_new(uint64_t, n);
    if (!d->rmap_table) {
        return -ENOMEM;
    }
    ret = bdrv_pread(bs->file, d->rmap_table_offset, n * 8, d->rmap_table, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < n; i++) {
        d->rmap_table[i] = GUINT64_FROM_BE(d->rmap_table[i]) & L1E_OFFSET_MASK;
        if (offset_into_cluster(s, d->rmap_table[i])) {
            return -EINVAL;
        }
    }
    return 0;
}

static int64_t rmap_block(BlockDriverState *bs, uint64_t cluster_index)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t index = cluster_index / rmap_entries_per_block(s);

    return index < rmap_table_size(d, s) ? (int64_t)d->rmap_table[index] : 0;
}

static int rmap_get(BlockDriverState *bs, uint64_t cluster_index,
                    uint64_t *record)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t block = rmap_block(bs, cluster_index);
    void *table;
    int ret;

    *record = 0;
    if (block <= 0) {
        return block;
    }
    ret = qcow2_cache_get(bs, s->dedup->rmap_cache, block, &table);
    if (ret < 0) {
        return ret;
    }
    *record = ldq_be_p((uint64_t *)table +
                       cluster_index % rmap_entries_per_block(s));
    qcow2_cache_put(s->dedup->rmap_cache, &table);
    return 0;
}

/* A bigger table: written in full elsewhere, then the extension switched. */
static int rmap_grow_table(BlockDriverState *bs, uint64_t min_entries)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t old_n = rmap_table_size(d, s);
    uint64_t new_bytes = ROUND_UP(MAX(min_entries, old_n * 2) * 8,
                                  s->cluster_size);
    uint64_t new_n = new_bytes / 8;
    uint64_t old_offset = d->rmap_table_offset;
    uint32_t old_clusters = d->rmap_table_clusters;
    g_autofree uint64_t *be = NULL;
    int64_t offset;
    int ret;

    if (new_bytes > QCOW_MAX_REFTABLE_SIZE) {
        return -EFBIG;
    }
    offset = qcow2_alloc_clusters(bs, new_bytes);
    if (offset < 0) {
        return offset;
    }
    be = g_new0(uint64_t, new_n);
    for (uint64_t i = 0; i < old_n; i++) {
        be[i] = GUINT64_TO_BE(d->rmap_table[i]);
    }
    ret = qcow2_cache_flush(bs, d->rmap_cache);
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, offset, new_bytes, be, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, offset, new_bytes);
        return ret;
    }
    d->rmap_table = g_renew(uint64_t, d->rmap_table, new_n);
    memset(d->rmap_table + old_n, 0, (new_n - old_n) * 8);
    d->rmap_table_offset = offset;
    d->rmap_table_clusters = new_bytes >> s->cluster_bits;
    qcow2_metadata_add(bs, offset, new_bytes);
    ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    qcow2_metadata_remove(bs, old_offset, (uint64_t)old_clusters <<
                          s->cluster_bits);
    qcow2_free_clusters(bs, old_offset, (uint64_t)old_clusters <<
                        s->cluster_bits);
    return 0;
}

static int rmap_set(BlockDriverState *bs, uint64_t cluster_index,
                    uint64_t record)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t per_block = rmap_entries_per_block(s);
    uint64_t index = cluster_index / per_block;
    int64_t block;
    void *table;
    int ret;

    if (index >= rmap_table_size(d, s)) {
        if (!record) {
            return 0;
        }
        ret = rmap_grow_table(bs, index + 1);
        if (ret < 0) {
            return ret;
        }
    }
    block = d->rmap_table[index];
    if (!block) {
        if (!record) {
            return 0;
        }
        block = qcow2_alloc_clusters(bs, s->cluster_size);
        if (block < 0) {
            return block;
        }
        qcow2_metadata_add(bs, block, s->cluster_size);
        ret = qcow2_cache_get_empty(bs, d->rmap_cache, block, &table);
        if (ret < 0) {
            return ret;
        }
        memset(table, 0, s->cluster_size);
        qcow2_cache_entry_mark_dirty(d->rmap_cache, table);
        qcow2_cache_put(d->rmap_cache, &table);
        /* The block's content before the table entry that points at it. */
        ret = qcow2_cache_flush(bs, d->rmap_cache);
        if (ret < 0) {
            return ret;
        }
        d->rmap_table[index] = block;
        uint64_t be = GUINT64_TO_BE(block);
        ret = bdrv_pwrite(bs->file, d->rmap_table_offset + index * 8, 8, &be, 0);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_cache_get(bs, d->rmap_cache, block, &table);
    if (ret < 0) {
        return ret;
    }
    stq_be_p((uint64_t *)table + cluster_index % per_block, record);
    qcow2_cache_entry_mark_dirty(d->rmap_cache, table);
    qcow2_cache_put(d->rmap_cache, &table);
    return 0;
}

/* Directory */

static uint32_t directory_crc(const uint8_t *copy, uint32_t nb)
{
    uint8_t head[8];
    uLong crc;

    memcpy(head, copy, 8);
    memset(head + 4, 0, 4);
    crc = crc32(0, head, 8);
    return crc32(crc, copy + 8, DIR_HEADER_SIZE - 8 + DIR_ENTRY_SIZE * nb);
}

static int write_directory(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint32_t max = d->max_incarnations;
    g_autofree Qcow2IncarnationInfo *list = g_new0(Qcow2IncarnationInfo, max);
    g_autofree uint8_t *copy = g_malloc0(d->dir_copy_size);
    int nb = qcow2_hash_store_list(d->hs, list, max);
    uint64_t seq = d->dir_sequence + 1;

    stl_be_p(copy, DIR_MAGIC);
    stq_be_p(copy + 8, seq);
    stq_be_p(copy + 16, d->journal_generation);
    stl_be_p(copy + 24, d->next_id);
    stl_be_p(copy + 28, nb);
    stq_be_p(copy + 32, d->spare_offset);
    stq_be_p(copy + 40, qcow2_log_store_count(d->ls) +
             qcow2_hash_store_entries(d->hs));
    stq_be_p(copy + 48, d->stat_deduplicated);
    stq_be_p(copy + 56, d->stat_zero);
    for (int i = 0; i < nb; i++) {
        uint8_t *e = copy + DIR_HEADER_SIZE + i * DIR_ENTRY_SIZE;
        stl_be_p(e, list[i].id);
        stq_be_p(e + 8, list[i].table_offset);
        stq_be_p(e + 16, list[i].nb_entries);
    }
    stl_be_p(copy + 4, directory_crc(copy, nb));
    int ret = bdrv_pwrite(bs->file, d->directory_offset +
                          (seq % 2) * d->dir_copy_size, d->dir_copy_size,
                          copy, 0);
    if (ret == 0) {
        d->dir_sequence = seq;
    }
    return ret;
}

/* The valid copy with the highest sequence; -EINVAL if neither is valid. */
static int read_directory(BlockDriverState *bs, Qcow2Dedup *d,
                          uint8_t **out)
{
    g_autofree uint8_t *buf = g_malloc(2 * d->dir_copy_size);
    uint8_t *best = NULL;
    int ret;

    ret = bdrv_pread(bs->file, d->directory_offset, 2 * d->dir_copy_size,
                     buf, 0);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < 2; i++) {
        uint8_t *c = buf + i * d->dir_copy_size;
        uint32_t nb = ldl_be_p(c + 28);
        if (ldl_be_p(c) != DIR_MAGIC || nb > d->max_incarnations ||
            ldl_be_p(c + 4) != directory_crc(c, nb)) {
            continue;
        }
        if (!best || ldq_be_p(c + 8) > ldq_be_p(best + 8)) {
            best = c;
        }
    }
    if (!best) {
        return -EINVAL;
    }
    *out = g_memdup2(best, d->dir_copy_size);
    return 0;
}

static int load_directory(BlockDriverState *bs, Qcow2Dedup *d, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *dir = NULL;
    int ret = read_directory(bs, d, &dir);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "dedup directory unreadable");
        return ret;
    }
    d->dir_sequence = ldq_be_p(dir + 8);
    d->journal_generation = ldq_be_p(dir + 16);
    d->next_id = ldl_be_p(dir + 24);
    d->spare_offset = ldq_be_p(dir + 32);
    d->stat_unique_persisted = ldq_be_p(dir + 40);
    d->stat_deduplicated = ldq_be_p(dir + 48);
    d->stat_zero = ldq_be_p(dir + 56);
    if (d->next_id == 0 || d->next_id > QCOW2_DEDUP_MAX_ID ||
        offset_into_cluster(s, d->spare_offset)) {
        error_setg(errp, "dedup directory fields invalid");
        return -EINVAL;
    }
    uint32_t nb = ldl_be_p(dir + 28);
    for (uint32_t i = 0; i < nb; i++) {
        const uint8_t *e = dir + DIR_HEADER_SIZE + i * DIR_ENTRY_SIZE;
        Qcow2IncarnationInfo info = {
            .id = ldl_be_p(e),
            .table_offset = ldq_be_p(e + 8),
            .nb_entries = ldq_be_p(e + 16),
        };
        if (!info.id || info.id > QCOW2_DEDUP_MAX_ID ||
            !info.table_offset || offset_into_cluster(s, info.table_offset)) {
            error_setg(errp, "dedup incarnation %u invalid", i);
            return -EINVAL;
        }
        qcow2_hash_store_add_existing(d->hs, &info);
    }
    return 0;
}

/* Setup and teardown */

static void dedup_free(Qcow2Dedup *d)
{
    if (!d) {
        return;
    }
    if (d->hs) {
        qcow2_hash_store_wait_loaded(d->hs);
        qcow2_hash_store_free(d->hs);
    }
    if (d->ls) {
        qcow2_log_store_free(d->ls);
    }
    if (d->journal) {
        qcow2_journal_free(d->journal);
    }
    qcow2_cache_destroy(d->rmap_cache);
    g_free(d->rmap_table);
    g_free(d);
}

static Qcow2Dedup *dedup_new(BlockDriverState *bs, const DedupExtension *e)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = g_new0(Qcow2Dedup, 1);

    d->flags = e->flags;
    d->bucket_bits = e->bucket_bits;
    d->max_incarnations = e->max_incarnations;
    d->directory_offset = e->directory_offset;
    d->dir_copy_size = dir_copy_size(e->max_incarnations);
    d->directory_clusters = DIV_ROUND_UP(2 * d->dir_copy_size, s->cluster_size);
    d->journal_offset = e->journal_offset;
    d->journal_clusters = e->journal_clusters;
    d->rmap_table_offset = e->rmap_table_offset;
    d->rmap_table_clusters = e->rmap_table_clusters;
    d->rmap_cache = qcow2_cache_create(bs, 16, s->cluster_size);
    d->hs = qcow2_hash_store_new(bs->file, s->cluster_bits, d->bucket_bits,
                                 d->max_incarnations);
    return d;
}

void qcow2_dedup_free(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    dedup_free(s->dedup);
    s->dedup = NULL;
    g_free(s->dedup_ext);
    s->dedup_ext = NULL;
}

/* Register every cluster the index occupies with the overlap check. */
static void dedup_metadata_add(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t table_bytes = qcow2_hash_store_table_size(s->cluster_bits,
                                                       d->bucket_bits);
    uint32_t n = qcow2_hash_store_count(d->hs);
    g_autofree Qcow2IncarnationInfo *list = g_new0(Qcow2IncarnationInfo,
                                                   MAX(n, 1));

    qcow2_metadata_add(bs, d->directory_offset,
                       (uint64_t)d->directory_clusters << s->cluster_bits);
    qcow2_metadata_add(bs, d->journal_offset,
                       (uint64_t)d->journal_clusters << s->cluster_bits);
    qcow2_metadata_add(bs, d->rmap_table_offset,
                       (uint64_t)d->rmap_table_clusters << s->cluster_bits);
    for (uint64_t i = 0; i < rmap_table_size(d, s); i++) {
        if (d->rmap_table[i]) {
            qcow2_metadata_add(bs, d->rmap_table[i], s->cluster_size);
        }
    }
    if (d->spare_offset) {
        qcow2_metadata_add(bs, d->spare_offset, table_bytes);
    }
    n = qcow2_hash_store_list(d->hs, list, n);
    for (uint32_t i = 0; i < n; i++) {
        qcow2_metadata_add(bs, list[i].table_offset, table_bytes);
    }
}

int qcow2_dedup_count_refs(BlockDriverState *bs,
                           int (*inc)(void *opaque, uint64_t offset,
                                      uint64_t size),
                           void *opaque)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t table_bytes;
    uint32_t n;

    if (!d) {
        return 0;
    }
    table_bytes = qcow2_hash_store_table_size(s->cluster_bits, d->bucket_bits);
    n = qcow2_hash_store_count(d->hs);
    g_autofree Qcow2IncarnationInfo *list = g_new0(Qcow2IncarnationInfo,
                                                   MAX(n, 1));
    inc(opaque, d->directory_offset,
        (uint64_t)d->directory_clusters << s->cluster_bits);
    inc(opaque, d->journal_offset,
        (uint64_t)d->journal_clusters << s->cluster_bits);
    inc(opaque, d->rmap_table_offset,
        (uint64_t)d->rmap_table_clusters << s->cluster_bits);
    for (uint64_t i = 0; i < rmap_table_size(d, s); i++) {
        if (d->rmap_table[i]) {
            inc(opaque, d->rmap_table[i], s->cluster_size);
        }
    }
    if (d->spare_offset) {
        inc(opaque, d->spare_offset, table_bytes);
    }
    n = qcow2_hash_store_list(d->hs, list, n);
    for (uint32_t i = 0; i < n; i++) {
        inc(opaque, list[i].table_offset, table_bytes);
    }
    return 0;
}

/* Replay (after any repair of a dirty image) */

typedef struct ReplayState {
    BlockDriverState *bs;
    uint64_t applied, rejected;
} ReplayState;

static int replay_record(const Qcow2JournalRecord *r, void *opaque)
{
    ReplayState *rs = opaque;
    BlockDriverState *bs = rs->bs;
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t refcount, record;
    Qcow2IndexLocation loc;

    if (r->type == QCOW2_JOURNAL_REMOVE) {
        qcow2_log_store_remove(d->ls, &r->loc, r->cluster);
        return 0;
    }
    if (r->loc.id != qcow2_log_store_id(d->ls) ||
        qcow2_get_refcount(bs, r->cluster, &refcount) < 0 || refcount == 0 ||
        rmap_get(bs, r->cluster, &record) < 0 ||
        record != qcow2_dedup_loc_pack(&r->loc) ||
        qcow2_log_store_lookup(d->ls, &r->hash)) {
        rs->rejected++;
        return 0;
    }
    if (qcow2_log_store_insert(d->ls, &r->hash, r->cluster, &loc) < 0) {
        rs->rejected++;
        return 0;
    }
    rs->applied++;
    /* Replay may place an entry in another bucket: keep the map exact. */
    return rmap_set(bs, r->cluster, qcow2_dedup_loc_pack(&loc));
}

typedef struct DedupExtent {
    uint64_t offset;
    uint64_t size;
} DedupExtent;

static int collect_extent(void *opaque, uint64_t offset, uint64_t size)
{
    DedupExtent ext = { offset, size };

    g_array_append_val((GArray *)opaque, ext);
    return 0;
}

/* True if an active L2 entry maps guest data into one of the clusters. */
static bool regions_hold_guest_data(BlockDriverState *bs, GHashTable *clusters)
{
    BDRVQcow2State *s = bs->opaque;

    for (int i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        void *table;
        bool hit = false;

        if (!l2 || qcow2_cache_get(bs, s->l2_table_cache, l2, &table) < 0) {
            continue;
        }
        for (int j = 0; j < s->l2_size && !hit; j++) {
            uint64_t e = ldq_be_p((uint64_t *)table + j);
            uint64_t host = qcow2_l2_host_offset(e);
            if (!(e & QCOW_OFLAG_COMPRESSED) && host) {
                hit = g_hash_table_contains(clusters, GSIZE_TO_POINTER(
                                                host >> s->cluster_bits));
            }
        }
        qcow2_cache_put(s->l2_table_cache, &table);
        if (hit) {
            return true;
        }
    }
    return false;
}

/*
 * The index structures must lie inside the file, apart from each other and
 * from every other metadata and guest cluster; otherwise writing them would
 * destroy data (a damaged or forged extension or directory).
 */
static bool regions_valid(BlockDriverState *bs, bool writable, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GArray) extents = g_array_new(FALSE, FALSE, sizeof(DedupExtent));
    g_autoptr(GHashTable) clusters = g_hash_table_new(g_direct_hash,
                                                      g_direct_equal);
    int64_t file_len = bdrv_getlength(bs->file);

    qcow2_dedup_count_refs(bs, collect_extent, extents);
    for (guint i = 0; i < extents->len; i++) {
        DedupExtent *e = &g_array_index(extents, DedupExtent, i);
        if (file_len < 0 || e->offset + e->size < e->offset ||
            e->offset + e->size > (uint64_t)file_len) {
            error_setg(errp, "dedup index structure at %#" PRIx64
                       " lies outside the image", e->offset);
            return false;
        }
        if (qcow2_metadata_overlaps(bs, e->offset, e->size)) {
            error_setg(errp, "dedup index structure at %#" PRIx64
                       " overlaps other metadata", e->offset);
            return false;
        }
        for (uint64_t c = e->offset >> s->cluster_bits;
             c < (e->offset + e->size) >> s->cluster_bits; c++) {
            if (!g_hash_table_add(clusters, GSIZE_TO_POINTER(c))) {
                error_setg(errp, "dedup index structures overlap");
                return false;
            }
        }
    }
    if (writable && regions_hold_guest_data(bs, clusters)) {
        error_setg(errp, "dedup index structures overlap guest data");
        return false;
    }
    return true;
}

void qcow2_dedup_stale_options(BlockDriverState *bs, Qcow2DedupOptions *o)
{
    BDRVQcow2State *s = bs->opaque;
    DedupExtension e;

    memset(o, 0, sizeof(*o));
    /* Keep what the user chose if the extension still says it. */
    if (s->dedup_ext &&
        parse_extension(bs, s->dedup_ext, s->dedup_ext_len, &e, NULL)) {
        o->verify = e.flags & DEDUP_FLAG_VERIFY;
        o->log_entries = (uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << e.bucket_bits;
        o->max_incarnations = e.max_incarnations;
    }
}

int qcow2_dedup_set_verify(BlockDriverState *bs, bool verify)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->dedup) {
        return -ENOTSUP;
    }
    if (verify) {
        s->dedup->flags |= DEDUP_FLAG_VERIFY;
    } else {
        s->dedup->flags &= ~DEDUP_FLAG_VERIFY;
    }
    return qcow2_update_header(bs);
}

bool qcow2_dedup_geometry_differs(BlockDriverState *bs,
                                  const Qcow2DedupOptions *o)
{
    BDRVQcow2State *s = bs->opaque;
    int bits;
    uint32_t max;

    default_geometry(s, o, &bits, &max);
    return s->dedup && (o->log_entries || o->max_incarnations) &&
           (bits != s->dedup->bucket_bits ||
            max != s->dedup->max_incarnations);
}

int qcow2_dedup_open(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    DedupExtension e;
    Error *local_err = NULL;
    Qcow2Dedup *d;
    int ret;

    if (!s->dedup_ext) {
        return 0;
    }
    if (!(s->autoclear_features & QCOW2_AUTOCLEAR_DEDUP)) {
        /* Another program wrote the image: the index is not to be trusted. */
        s->dedup_stale = true;
        return 0;
    }
    if (!parse_extension(bs, s->dedup_ext, s->dedup_ext_len, &e, &local_err)) {
        warn_report("qcow2: deduplication disabled: %s",
                    error_get_pretty(local_err));
        error_free(local_err);
        s->dedup_stale = true;
        return 0;
    }
    d = dedup_new(bs, &e);
    s->dedup = d;
    ret = rmap_load_table(bs, d);
    if (ret == 0) {
        ret = load_directory(bs, d, &local_err);
    } else {
        error_setg_errno(&local_err, -ret, "dedup reverse map unreadable");
    }
    if (ret == 0 && !regions_valid(bs, flags & BDRV_O_RDWR, &local_err)) {
        ret = -EINVAL;
    }
    if (ret < 0) {
        warn_report("qcow2: deduplication disabled: %s",
                    error_get_pretty(local_err));
        error_free(local_err);
        dedup_free(d);
        s->dedup = NULL;
        s->dedup_stale = true;
        return 0;
    }
    d->ls = qcow2_log_store_new(d->next_id, d->bucket_bits);
    d->journal = qcow2_journal_new(bs->file, d->journal_offset,
                                   (uint64_t)d->journal_clusters <<
                                   s->cluster_bits, d->journal_generation);
    dedup_metadata_add(bs);
    if (!(flags & BDRV_O_RDWR) || (flags & BDRV_O_CHECK)) {
        /* Not started: replay into memory only (metrics, check). */
        ReplayState rs = { .bs = bs };
        qcow2_journal_replay(d->journal, replay_record, &rs);
    }
    (void)errp;
    return 0;
}

/*
 * Rewrite the journal as the log store's current content, in a new
 * generation.  The directory names the generation before any record of it
 * is written, so records of an interrupted attempt can never be taken for
 * those of a later one.
 */
static int journal_compact(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    const Qcow2IndexEntry *slots = qcow2_log_store_slots(d->ls);
    uint64_t nslots = (uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << d->bucket_bits;
    int ret;

    d->journal_generation++;
    ret = qcow2_cache_write(bs, d->rmap_cache);
    if (ret == 0) {
        ret = write_directory(bs);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        ret = qcow2_journal_reset(d->journal, d->journal_generation);
    }
    for (uint64_t i = 0; i < nslots && ret == 0; i++) {
        uint64_t record;
        Qcow2IndexLocation loc;

        if (!slots[i].cluster) {
            continue;
        }
        ret = rmap_get(bs, slots[i].cluster, &record);
        qcow2_dedup_loc_unpack(record, &loc);
        if (ret == 0) {
            ret = qcow2_journal_append_insert(d->journal, &slots[i].hash,
                                              slots[i].cluster, &loc);
        }
    }
    if (ret == 0) {
        ret = qcow2_journal_write(d->journal);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        ret = qcow2_journal_commit_all(d->journal);
    }
    return ret < 0 ? ret : bdrv_flush(bs->file);
}

int qcow2_dedup_start(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    ReplayState rs = { .bs = bs };
    int ret;

    if (!d) {
        return 0;
    }
    d->writable = true;
    s->use_lazy_refcounts = true;
    ret = qcow2_journal_replay(d->journal, replay_record, &rs);
    if (ret == 0) {
        ret = journal_compact(bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not replay the dedup journal");
        return ret;
    }
    qcow2_hash_store_start_loading(d->hs);
    return 0;
}

/* Lookups and index updates */

static void dedup_hash(QEMUIOVector *qiov, size_t offset, size_t len,
                       Qcow2DedupHash *out)
{
    struct sha256_ctx ctx;

    sha256_init(&ctx);
    for (int i = 0; i < qiov->niov && len; i++) {
        size_t l = qiov->iov[i].iov_len;
        if (offset >= l) {
            offset -= l;
            continue;
        }
        size_t take = MIN(l - offset, len);
        sha256_update(&ctx, take, (uint8_t *)qiov->iov[i].iov_base + offset);
        len -= take;
        offset = 0;
    }
    sha256_digest(&ctx, QCOW2_DEDUP_HASH_SIZE, out->b);
}

/* Find h in the index: the host cluster index and location, or 0. */
static int index_lookup(BlockDriverState *bs, const Qcow2DedupHash *h,
                        uint64_t *cluster, Qcow2IndexLocation *loc)
{
    Qcow2Dedup *d = ((BDRVQcow2State *)bs->opaque)->dedup;
    int ret;

    d->lookups++;
    *cluster = qcow2_log_store_lookup(d->ls, h);
    if (*cluster) {
        d->log_hits++;
        loc->id = qcow2_log_store_id(d->ls);
        return 1;
    }
    ret = qcow2_hash_store_lookup(d->hs, h, cluster, loc);
    return ret;
}

/* Remove the entry a reverse record names (the cluster's data is going). */
static int index_remove(BlockDriverState *bs, uint64_t cluster,
                        uint64_t record)
{
    Qcow2Dedup *d = ((BDRVQcow2State *)bs->opaque)->dedup;
    Qcow2IndexLocation loc;
    int ret = 0;

    qcow2_dedup_loc_unpack(record, &loc);
    if (loc.id == qcow2_log_store_id(d->ls)) {
        qcow2_log_store_remove(d->ls, &loc, cluster);
    } else if (qcow2_hash_store_has(d->hs, loc.id)) {
        ret = qcow2_hash_store_remove(d->hs, &loc, cluster);
        ret = ret < 0 ? ret : 0;
    }
    /*
     * The REMOVE is an optimisation (replay also checks the map), and
     * before the journal was replayed it may not be appended to.
     */
    if (ret == 0 && d->writable) {
        ret = qcow2_journal_append_remove(d->journal, cluster, &loc);
        if (ret == -ENOSPC) {
            ret = 0;
        }
    }
    return ret < 0 ? ret : rmap_set(bs, cluster, 0);
}

static uint32_t next_log_store_id(Qcow2Dedup *d)
{
    uint32_t id = d->next_id;

    do {
        id = id >= QCOW2_DEDUP_MAX_ID ? 1 : id + 1;
    } while (qcow2_hash_store_has(d->hs, id));
    return id;
}

/*
 * Write the log store as a new incarnation, record it in the directory and
 * start a new journal generation and an empty log store.
 */
static int dedup_freeze(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t table_bytes = qcow2_hash_store_table_size(s->cluster_bits,
                                                       d->bucket_bits);
    Qcow2IncarnationInfo dropped = { 0 };
    int64_t table;
    int ret;

    if (d->spare_offset) {
        table = d->spare_offset;
        d->spare_offset = 0;
    } else {
        table = qcow2_alloc_clusters(bs, table_bytes);
        if (table < 0) {
            return table;
        }
        qcow2_metadata_add(bs, table, table_bytes);
    }
    ret = qcow2_hash_store_freeze(d->hs, d->ls, table, &dropped);
    if (ret < 0) {
        return ret;
    }
    if (dropped.id) {
        d->spare_offset = dropped.table_offset;
    }
    /* The table and the reverse records it relies on, before the directory. */
    ret = qcow2_cache_write(bs, d->rmap_cache);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    d->next_id = next_log_store_id(d);
    d->journal_generation++;
    qcow2_log_store_reset(d->ls, d->next_id);
    ret = write_directory(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        ret = qcow2_journal_reset(d->journal, d->journal_generation);
    }
    return ret;
}

static int index_insert(BlockDriverState *bs, const Qcow2DedupHash *h,
                        uint64_t cluster)
{
    Qcow2Dedup *d = ((BDRVQcow2State *)bs->opaque)->dedup;
    uint64_t older = qcow2_log_store_lookup(d->ls, h);
    Qcow2IndexLocation loc;
    int ret;

    if (older) {
        /* A saturated copy: the new one takes its place in the index. */
        qcow2_dedup_cluster_unindex(bs, older);
    }
    if (qcow2_journal_nearly_full(d->journal, JOURNAL_RESERVE)) {
        ret = dedup_freeze(bs);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_log_store_insert(d->ls, h, cluster, &loc);
    if (ret == -ENOSPC) {
        ret = dedup_freeze(bs);
        if (ret == 0) {
            ret = qcow2_log_store_insert(d->ls, h, cluster, &loc);
        }
    }
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_journal_append_insert(d->journal, h, cluster, &loc);
    if (ret == -ENOSPC) {
        /* Not journalled: forget it rather than trust it unlogged. */
        qcow2_log_store_remove(d->ls, &loc, cluster);
        return 0;
    }
    return ret < 0 ? ret : rmap_set(bs, cluster, qcow2_dedup_loc_pack(&loc));
}

bool qcow2_dedup_cluster_indexed(BlockDriverState *bs, uint64_t host_offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t record;

    if (!s->dedup) {
        return false;
    }
    /* On error, claim it is indexed: copying is always safe. */
    return rmap_get(bs, host_offset >> s->cluster_bits, &record) < 0 ||
           record != 0;
}

void qcow2_dedup_cluster_freed(BlockDriverState *bs, uint64_t cluster_index)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    uint64_t record;

    /* Also while a repair runs before the index is started. */
    if (!d || bs->read_only) {
        return;
    }
    if (rmap_get(bs, cluster_index, &record) < 0 || !record) {
        return;
    }
    if (index_remove(bs, cluster_index, record) < 0) {
        /* Cannot keep the index exact: stop trusting it altogether. */
        qcow2_signal_corruption(bs, cluster_index << s->cluster_bits,
                                s->cluster_size, "dedup index could not be "
                                "updated for a freed cluster");
    }
    d->freed_indexed = true;
}

void qcow2_dedup_refcount_changed(BlockDriverState *bs, uint64_t old_refcount,
                                  uint64_t new_refcount)
{
    BDRVQcow2State *s = bs->opaque;

    if (s->dedup && (old_refcount == 1) != (new_refcount == 1)) {
        s->dedup->copied_dirty = true;
    }
}

bool qcow2_dedup_active(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    /* With 1-bit refcounts no cluster can ever be shared. */
    return s->dedup && s->dedup->writable &&
           !(s->dedup->flags & DEDUP_FLAG_PAUSED) &&
           dedup_refcount_limit(s) > 1;
}

/* Write path */

typedef enum DedupKind {
    DC_DONE,        /* handled in the first locked section */
    DC_MISS,        /* new cluster: write, link, index */
    DC_DUP,         /* same content as an earlier miss of this request */
    DC_VERIFY,      /* hit to be read back and compared first */
} DedupKind;

typedef struct DedupCluster {
    uint64_t guest;
    size_t qiov_offset;
    Qcow2DedupHash hash;
    bool zero;
    DedupKind kind;
    uint64_t host;          /* MISS: allocated; DUP/VERIFY: target */
    int dup_of;             /* DUP: index of the miss */
    int dups;               /* MISS: DUPs pointing at it so far */
    QCowL2Meta *meta;
    uint64_t replace;       /* MISS: cluster index whose entry it replaces */
} DedupCluster;

typedef struct DedupBatch {
    BlockDriverState *bs;
    QEMUIOVector *qiov;
    DedupCluster *c;
    int n;
    GHashTable *misses;     /* hash -> index + 1 of a miss in this batch */
} DedupBatch;

static guint hash_key_hash(gconstpointer k)
{
    return ldl_be_p(((const Qcow2DedupHash *)k)->b + 8);
}

static gboolean hash_key_equal(gconstpointer a, gconstpointer b)
{
    return !memcmp(a, b, QCOW2_DEDUP_HASH_SIZE);
}

/* A hit on the cluster at host cluster index may be used. */
static bool hit_usable(BlockDriverState *bs, uint64_t cluster,
                       uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;

    return qcow2_get_refcount(bs, cluster, refcount) == 0 && *refcount > 0 &&
           *refcount < dedup_refcount_limit(s);
}

static int take_reference(BlockDriverState *bs, uint64_t cluster)
{
    uint64_t old;
    int ret = qcow2_get_refcount(bs, cluster, &old);

    if (ret == 0) {
        ret = qcow2_update_cluster_refcount(bs, cluster, 1);
    }
    if (ret == 0) {
        qcow2_dedup_refcount_changed(bs, old, old + 1);
    }
    return ret;
}

/* Decide one full cluster under the lock: zero, hit, dup of a miss, or miss. */
static int classify_cluster(DedupBatch *b, int i)
{
    BlockDriverState *bs = b->bs;
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    DedupCluster *c = &b->c[i];
    Qcow2IndexLocation loc;
    uint64_t cluster, refcount;
    gpointer dup;
    int ret;

    qcow2_wait_for_allocs(bs, c->guest, s->cluster_size);
    if (c->zero) {
        d->zero_writes++;
        d->stat_zero++;
        c->kind = DC_DONE;
        return qcow2_cluster_zeroize(bs, c->guest, s->cluster_size, true);
    }
    dup = g_hash_table_lookup(b->misses, &c->hash);
    /* A new cluster starts at refcount 1; each duplicate adds one. */
    if (dup && 1 + b->c[GPOINTER_TO_INT(dup) - 1].dups <
               (int64_t)dedup_refcount_limit(s)) {
        c->kind = DC_DUP;
        c->dup_of = GPOINTER_TO_INT(dup) - 1;
        c->host = b->c[c->dup_of].host;
        b->c[c->dup_of].dups++;
        c->meta = qcow2_register_alloc(bs, c->guest, 1, c->host);
        return 0;
    }
    ret = index_lookup(bs, &c->hash, &cluster, &loc);
    if (ret < 0) {
        return ret;
    }
    if (ret > 0 && hit_usable(bs, cluster, &refcount)) {
        ret = take_reference(bs, cluster);
        if (ret < 0) {
            return ret;
        }
        c->host = cluster << s->cluster_bits;
        d->hits++;
        if (d->flags & DEDUP_FLAG_VERIFY) {
            /* Counted as deduplicated once the content is confirmed. */
            c->kind = DC_VERIFY;
            c->meta = qcow2_register_alloc(bs, c->guest, 1, c->host);
            return 0;
        }
        d->stat_deduplicated++;
        c->kind = DC_DONE;
        return qcow2_link_existing_cluster(bs, c->guest, c->host, false);
    }
    if (ret > 0) {
        /* Saturated (or freed): index the new copy instead. */
        d->saturated++;
        c->replace = cluster;
    }
    d->misses++;
    int64_t host = qcow2_alloc_clusters(bs, s->cluster_size);
    if (host < 0) {
        return host;
    }
    c->kind = DC_MISS;
    c->host = host;
    c->meta = qcow2_register_alloc(bs, c->guest, 1, host);
    g_hash_table_insert(b->misses, &c->hash, GINT_TO_POINTER(i + 1));
    return qcow2_check_data_write(bs, host, s->cluster_size);
}

/* Write every miss; consecutive host clusters go out as one request. */
static int write_misses(DedupBatch *b)
{
    BDRVQcow2State *s = b->bs->opaque;
    int ret = 0;

    for (int i = 0; i < b->n && ret == 0;) {
        QEMUIOVector run;
        int j = i;

        if (b->c[i].kind != DC_MISS) {
            i++;
            continue;
        }
        qemu_iovec_init(&run, 4);
        while (j < b->n && b->c[j].kind == DC_MISS &&
               b->c[j].host == b->c[i].host +
               ((uint64_t)(j - i) << s->cluster_bits)) {
            qemu_iovec_concat(&run, b->qiov, b->c[j].qiov_offset,
                              s->cluster_size);
            j++;
        }
        ret = bdrv_pwritev(b->bs->file, b->c[i].host, run.size, &run, 0);
        qemu_iovec_destroy(&run);
        i = j;
    }
    return ret;
}

/* Read each to-be-verified target back; a mismatch turns it into a miss. */
static void verify_hits(DedupBatch *b, bool *mismatch)
{
    BDRVQcow2State *s = b->bs->opaque;
    uint8_t *buf = qemu_blockalign(s->cluster_size);
    uint8_t *mine = g_malloc(s->cluster_size);

    for (int i = 0; i < b->n; i++) {
        DedupCluster *c = &b->c[i];
        mismatch[i] = false;
        if (c->kind != DC_VERIFY) {
            continue;
        }
        qemu_iovec_to_buf(b->qiov, c->qiov_offset, mine, s->cluster_size);
        mismatch[i] = bdrv_pread(b->bs->file, c->host, s->cluster_size, buf,
                                 0) < 0 ||
                      memcmp(buf, mine, s->cluster_size) != 0;
    }
    g_free(mine);
    qemu_vfree(buf);
}

/* Second locked section: link what was written and index it. */
static int finish_batch(DedupBatch *b, int write_ret, const bool *mismatch)
{
    BlockDriverState *bs = b->bs;
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    int ret = write_ret;

    for (int i = 0; i < b->n; i++) {
        DedupCluster *c = &b->c[i];
        uint64_t index = c->host >> s->cluster_bits;

        switch (c->kind) {
        case DC_MISS:
            if (ret < 0) {
                qcow2_alloc_cluster_abort(bs, c->meta);
                break;
            }
            ret = qcow2_alloc_cluster_link_l2(bs, c->meta);
            if (ret == 0 && c->replace) {
                qcow2_dedup_cluster_unindex(bs, c->replace);
            }
            if (ret == 0) {
                ret = index_insert(bs, &c->hash, index);
            }
            break;
        case DC_DUP:
            if (ret == 0 && b->c[c->dup_of].kind == DC_MISS) {
                ret = take_reference(bs, index);
                if (ret == 0) {
                    ret = qcow2_link_existing_cluster(bs, c->guest, c->host,
                                                      false);
                    d->hits++;
                    d->stat_deduplicated++;
                }
            }
            qcow2_retire_alloc(bs, c->meta);
            break;
        case DC_VERIFY:
            if (ret == 0 && !mismatch[i]) {
                d->stat_deduplicated++;
                ret = qcow2_link_existing_cluster(bs, c->guest, c->host,
                                                  false);
            } else {
                /* Drop our reference; the caller rewrites it plainly. */
                qcow2_free_clusters(bs, c->host, s->cluster_size);
                if (mismatch[i]) {
                    d->verify_failures++;
                    qcow2_dedup_cluster_unindex(bs, index);
                }
            }
            qcow2_retire_alloc(bs, c->meta);
            break;
        default:
            break;
        }
    }
    return ret;
}

/* Unindex cluster (by host cluster index): its content is not to be hit. */
void qcow2_dedup_cluster_unindex(BlockDriverState *bs, uint64_t cluster)
{
    uint64_t record;

    if (rmap_get(bs, cluster, &record) == 0 && record) {
        index_remove(bs, cluster, record);
    }
}

static int plain_write(BlockDriverState *bs, DedupBatch *b, int i)
{
    BDRVQcow2State *s = bs->opaque;
    QEMUIOVector slice;
    int ret;

    qemu_iovec_init_slice(&slice, b->qiov, b->c[i].qiov_offset,
                          s->cluster_size);
    ret = qcow2_plain_pwritev(bs, b->c[i].guest, s->cluster_size, &slice);
    qemu_iovec_destroy(&slice);
    return ret;
}

static int dedup_write_batch(DedupBatch *b)
{
    BlockDriverState *bs = b->bs;
    BDRVQcow2State *s = bs->opaque;
    g_autofree bool *mismatch = g_new0(bool, b->n);
    uint64_t seq;
    int ret = 0;

    for (int i = 0; i < b->n; i++) {
        DedupCluster *c = &b->c[i];
        c->zero = qemu_iovec_is_zero(b->qiov, c->qiov_offset, s->cluster_size);
        if (!c->zero) {
            dedup_hash(b->qiov, c->qiov_offset, s->cluster_size, &c->hash);
        }
    }

    g_mutex_lock(&s->lock);
    ret = qcow2_mark_dirty(bs);
    for (int i = 0; i < b->n && ret == 0; i++) {
        ret = classify_cluster(b, i);
    }
    if (ret < 0) {
        /* Undo the claims of clusters not yet written. */
        finish_batch(b, ret, mismatch);
        g_mutex_unlock(&s->lock);
        return ret;
    }
    seq = qcow2_io_begin(bs);
    g_mutex_unlock(&s->lock);

    ret = write_misses(b);
    verify_hits(b, mismatch);

    g_mutex_lock(&s->lock);
    qcow2_io_end(bs, seq);
    ret = finish_batch(b, ret, mismatch);
    g_mutex_unlock(&s->lock);

    for (int i = 0; i < b->n && ret == 0; i++) {
        if (b->c[i].kind == DC_VERIFY && mismatch[i]) {
            ret = plain_write(bs, b, i);
        }
    }
    return ret;
}

/*
 * Deduplicating write: partial clusters at either end go through the plain
 * path; full clusters in batches through the index.
 */
int qcow2_dedup_pwritev(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        QEMUIOVector *qiov)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_UP(offset, s->cluster_size);
    uint64_t end = QEMU_ALIGN_DOWN(offset + bytes, s->cluster_size);
    QEMUIOVector part;
    int ret = 0;

    if (start >= end) {
        return qcow2_plain_pwritev(bs, offset, bytes, qiov);
    }
    if (start > offset) {
        qemu_iovec_init_slice(&part, qiov, 0, start - offset);
        ret = qcow2_plain_pwritev(bs, offset, start - offset, &part);
        qemu_iovec_destroy(&part);
    }
    for (uint64_t pos = start; pos < end && ret == 0;) {
        int n = MIN((end - pos) >> s->cluster_bits, DEDUP_BATCH_CLUSTERS);
        DedupBatch b = {
            .bs = bs,
            .qiov = qiov,
            .c = g_new0(DedupCluster, n),
            .n = n,
            .misses = g_hash_table_new(hash_key_hash, hash_key_equal),
        };
        for (int i = 0; i < n; i++) {
            b.c[i].guest = pos + ((uint64_t)i << s->cluster_bits);
            b.c[i].qiov_offset = b.c[i].guest - offset;
        }
        ret = dedup_write_batch(&b);
        g_hash_table_destroy(b.misses);
        g_free(b.c);
        pos += (uint64_t)n << s->cluster_bits;
    }
    if (ret == 0 && end < offset + bytes) {
        qemu_iovec_init_slice(&part, qiov, end - offset, offset + bytes - end);
        ret = qcow2_plain_pwritev(bs, end, offset + bytes - end, &part);
        qemu_iovec_destroy(&part);
    }
    return ret;
}

/* Flush and close */

int qcow2_dedup_flush(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    int ret;

    if (!d || !d->writable) {
        return 0;
    }
    /* Removals of freed clusters reach the disk before they can be reused. */
    ret = qcow2_cache_write(bs, d->rmap_cache);
    if (ret == 0) {
        ret = qcow2_journal_write(d->journal);
    }
    if (ret == 0) {
        /* The journal's next COMMIT relies on this flush. */
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        d->freed_indexed = false;
    }
    return ret;
}

bool qcow2_dedup_needs_flush(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    return s->dedup && s->dedup->freed_indexed;
}

int qcow2_dedup_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    int ret;

    if (!d) {
        return 0;
    }
    if (!d->writable) {
        /* A repair may have cleared reverse records. */
        return bs->read_only ? 0 : qcow2_cache_write(bs, d->rmap_cache);
    }
    ret = qcow2_dedup_flush(bs);
    if (ret == 0) {
        ret = qcow2_journal_commit_all(d->journal);
    }
    if (ret == 0) {
        ret = write_directory(bs);
    }
    if (ret == 0 && d->copied_dirty) {
        ret = qcow2_sync_copied_flags(bs);
        d->copied_dirty = ret < 0;
    }
    return ret;
}

/* Enabling and disabling */

/* Default geometry: enough to index the whole virtual disk once. */
static void default_geometry(BDRVQcow2State *s, const Qcow2DedupOptions *o,
                             int *bucket_bits, uint32_t *max_incarnations)
{
    uint64_t capacity = MAX(s->size >> s->cluster_bits, 1);
    uint64_t log_entries = o->log_entries ? o->log_entries
                           : MIN(MAX(capacity / 32, 16384), 1048576);
    int bits = 0;

    while (((uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << bits) < log_entries &&
           bits < QCOW2_DEDUP_MAX_BUCKET_BITS) {
        bits++;
    }
    *bucket_bits = MAX(bits, QCOW2_DEDUP_MIN_BUCKET_BITS);
    uint64_t per_store = (uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << *bucket_bits;
    *max_incarnations = o->max_incarnations ? o->max_incarnations
                        : MIN(MAX(DIV_ROUND_UP(capacity, per_store), 4), 1024);
}

static int64_t alloc_zeroed(BlockDriverState *bs, uint64_t bytes)
{
    int64_t offset = qcow2_alloc_clusters(bs, bytes);
    int ret;

    if (offset < 0) {
        return offset;
    }
    /* Old content of reused clusters must not look like our records. */
    ret = bdrv_pwrite_zeroes(bs->file, offset, bytes, 0);
    if (ret < 0) {
        qcow2_free_clusters(bs, offset, bytes);
        return ret;
    }
    qcow2_metadata_add(bs, offset, bytes);
    return offset;
}

int qcow2_dedup_enable(BlockDriverState *bs, const Qcow2DedupOptions *o,
                       Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    DedupExtension e = { .flags = o->verify ? DEDUP_FLAG_VERIFY : 0 };
    Qcow2Dedup *d;
    int64_t dir, journal, rmap;
    int ret;

    if (s->qcow_version < 3) {
        error_setg(errp, "Deduplication requires compat=1.1 or later");
        return -ENOTSUP;
    }
    if (s->dedup) {
        return 0;
    }
    default_geometry(s, o, &e.bucket_bits, &e.max_incarnations);
    uint64_t log_entries = (uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << e.bucket_bits;
    uint64_t journal_bytes = ROUND_UP(log_entries * JOURNAL_INSERT_SIZE * 2 +
                                      JOURNAL_RESERVE, s->cluster_size);
    uint64_t dir_bytes = ROUND_UP(2 * dir_copy_size(e.max_incarnations),
                                  s->cluster_size);
    uint64_t rmap_entries = DIV_ROUND_UP(
        (bdrv_getlength(bs->file) + s->size) >> s->cluster_bits,
        s->cluster_size / 8) + 1;
    uint64_t rmap_bytes = ROUND_UP(rmap_entries * 8, s->cluster_size);

    dir = alloc_zeroed(bs, dir_bytes);
    journal = dir < 0 ? dir : alloc_zeroed(bs, journal_bytes);
    rmap = journal < 0 ? journal : alloc_zeroed(bs, rmap_bytes);
    if (rmap < 0) {
        error_setg_errno(errp, -rmap, "Could not allocate dedup metadata");
        return rmap;
    }
    e.directory_offset = dir;
    e.journal_offset = journal;
    e.journal_clusters = journal_bytes >> s->cluster_bits;
    e.rmap_table_offset = rmap;
    e.rmap_table_clusters = rmap_bytes >> s->cluster_bits;

    d = dedup_new(bs, &e);
    d->rmap_table = g_new0(uint64_t, rmap_table_size(d, s));
    d->next_id = 1;
    d->journal_generation = 1;
    d->ls = qcow2_log_store_new(d->next_id, d->bucket_bits);
    d->journal = qcow2_journal_new(bs->file, journal, journal_bytes,
                                   d->journal_generation);
    s->dedup = d;
    ret = write_directory(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        s->autoclear_features |= QCOW2_AUTOCLEAR_DEDUP;
        ret = qcow2_update_header(bs);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write dedup metadata");
        return ret;
    }
    if (!bs->read_only) {
        d->writable = true;
        s->use_lazy_refcounts = true;
    }
    return 0;
}

/* Release every cluster of the index (the set the check counts). */
static void free_dedup_clusters(BlockDriverState *bs)
{
    GArray *extents = g_array_new(FALSE, FALSE, sizeof(DedupExtent));

    qcow2_dedup_count_refs(bs, collect_extent, extents);
    for (guint i = 0; i < extents->len; i++) {
        DedupExtent *ext = &g_array_index(extents, DedupExtent, i);
        qcow2_metadata_remove(bs, ext->offset, ext->size);
        qcow2_free_clusters(bs, ext->offset, ext->size);
    }
    g_array_free(extents, TRUE);
}

int qcow2_dedup_disable(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    if (!s->dedup) {
        return 0;
    }
    qcow2_hash_store_wait_loaded(s->dedup->hs);
    if (s->dedup->copied_dirty) {
        ret = qcow2_sync_copied_flags(bs);
    }
    s->dedup->writable = false;
    free_dedup_clusters(bs);
    qcow2_dedup_free(bs);
    s->autoclear_features &= ~QCOW2_AUTOCLEAR_DEDUP;
    s->use_lazy_refcounts = s->compatible_features &
                            QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (ret == 0) {
        ret = qcow2_update_header(bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not remove dedup metadata");
    }
    return ret;
}

int qcow2_dedup_set_paused(BlockDriverState *bs, bool paused, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    const char *name = bdrv_get_node_name(bs)[0] ? bdrv_get_node_name(bs)
                                                  : bdrv_get_filename(bs);

    g_mutex_lock(&s->lock);
    if (!s->dedup || !s->dedup->writable) {
        bool ro = s->dedup && bs->read_only;
        g_mutex_unlock(&s->lock);
        if (ro) {
            error_setg(errp, "Node '%s' is read-only", name);
        } else {
            error_setg(errp, "Node '%s' does not have deduplication enabled",
                       name);
        }
        return ro ? -EACCES : -ENOTSUP;
    }
    if (paused) {
        s->dedup->flags |= DEDUP_FLAG_PAUSED;
    } else {
        s->dedup->flags &= ~DEDUP_FLAG_PAUSED;
    }
    ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not persist the dedup state");
    }
    return ret;
}

/* Metrics */

static void add_int(JsonBuilder *b, const char *name, int64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, v);
}

static const char *dedup_state(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->dedup) {
        return "stale";
    }
    return (s->dedup->flags & DEDUP_FLAG_PAUSED) ? "paused" : "running";
}

bool qcow2_dedup_query(BlockDriverState *bs, JsonBuilder *b)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    Qcow2HashStoreStats st = { 0 };
    uint64_t unique;

    if (!d && !s->dedup_stale) {
        return false;
    }
    json_builder_set_member_name(b, "algorithm");
    json_builder_add_string_value(b, "sha256");
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, dedup_state(bs));
    if (!d) {
        return true;
    }
    qcow2_hash_store_get_stats(d->hs, &st);
    unique = d->writable ? qcow2_log_store_count(d->ls) +
                           qcow2_hash_store_entries(d->hs)
                         : d->stat_unique_persisted;
    json_builder_set_member_name(b, "verify");
    json_builder_add_boolean_value(b, d->flags & DEDUP_FLAG_VERIFY);
    add_int(b, "unique-clusters", unique);
    add_int(b, "deduplicated-clusters", d->stat_deduplicated);
    add_int(b, "zero-clusters", d->stat_zero);
    add_int(b, "saved-bytes", (d->stat_deduplicated + d->stat_zero) <<
            s->cluster_bits);
    add_int(b, "index-ram", qcow2_log_store_memory(d->ls) +
            qcow2_hash_store_memory(d->hs));
    add_int(b, "incarnations", qcow2_hash_store_count(d->hs));
    add_int(b, "max-incarnations", d->max_incarnations);
    add_int(b, "log-store-entries", qcow2_log_store_count(d->ls));
    add_int(b, "log-store-capacity", qcow2_log_store_capacity(d->ls));
    add_int(b, "journal-fill-permille",
            qcow2_journal_fill_permille(d->journal));
    add_int(b, "lookups", d->lookups);
    add_int(b, "hits", d->hits);
    add_int(b, "misses", d->misses);
    add_int(b, "saturated", d->saturated);
    add_int(b, "verify-failures", d->verify_failures);
    add_int(b, "filter-false-positives", st.false_positives);
    add_int(b, "index-metadata-reads", st.metadata_reads);
    return true;
}

/* Check */

typedef struct DedupCheck {
    BlockDriverState *bs;
    BdrvCheckResult *res;
    bool deep;
    GArray *bad;        /* of Qcow2IndexEntry-with-location to remove */
} DedupCheck;

typedef struct BadEntry {
    uint64_t cluster;
    Qcow2IndexLocation loc;
} BadEntry;

/* A record names an entry by either of its two buckets (7.6). */
static bool record_names(BDRVQcow2State *s, uint64_t record,
                         const Qcow2IndexLocation *loc)
{
    Qcow2IndexLocation rec;

    qcow2_dedup_loc_unpack(record, &rec);
    return record && rec.id == loc->id && rec.tag == loc->tag &&
           (rec.bucket == loc->bucket ||
            qcow2_dedup_alt_bucket(rec.bucket, rec.tag,
                                   s->dedup->bucket_bits) == loc->bucket);
}

static int check_entry(const Qcow2IndexEntry *e, const Qcow2IndexLocation *loc,
                       void *opaque)
{
    DedupCheck *dc = opaque;
    BlockDriverState *bs = dc->bs;
    BDRVQcow2State *s = bs->opaque;
    uint64_t refcount = 0, record = 0;
    const char *why = NULL;

    if (qcow2_get_refcount(bs, e->cluster, &refcount) < 0 || refcount == 0) {
        why = "its cluster is free";
    } else if (rmap_get(bs, e->cluster, &record) < 0 ||
               !record_names(s, record, loc)) {
        why = "the reverse map does not name it";
    } else if (dc->deep) {
        uint8_t *buf = qemu_blockalign(s->cluster_size);
        Qcow2DedupHash h;
        QEMUIOVector qiov;

        qemu_iovec_init_buf(&qiov, buf, s->cluster_size);
        if (bdrv_pread(bs->file, e->cluster << s->cluster_bits,
                       s->cluster_size, buf, 0) < 0) {
            why = "its cluster cannot be read";
        } else {
            dedup_hash(&qiov, 0, s->cluster_size, &h);
            if (memcmp(&h, &e->hash, sizeof(h))) {
                why = "the cluster's content does not match its hash";
            }
        }
        qemu_vfree(buf);
    }
    if (why) {
        BadEntry bad = { e->cluster, *loc };
        fprintf(stderr, "ERROR dedup index entry for cluster %" PRIu64
                " (incarnation %u): %s\n", e->cluster, loc->id, why);
        dc->res->corruptions++;
        g_array_append_val(dc->bad, bad);
    }
    return 0;
}

/* The entries of the log store (as replayed), checked like the others. */
static void check_log_store(DedupCheck *dc)
{
    Qcow2Dedup *d = ((BDRVQcow2State *)dc->bs->opaque)->dedup;
    const Qcow2IndexEntry *slots = qcow2_log_store_slots(d->ls);
    uint64_t n = (uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << d->bucket_bits;

    for (uint64_t i = 0; i < n; i++) {
        if (slots[i].cluster) {
            Qcow2IndexLocation loc = {
                .id = qcow2_log_store_id(d->ls),
                .bucket = i / QCOW2_DEDUP_BUCKET_SLOTS,
                .tag = qcow2_dedup_tag(&slots[i].hash),
            };
            check_entry(&slots[i], &loc, dc);
        }
    }
}

int qcow2_dedup_check(BlockDriverState *bs, BdrvCheckResult *res,
                      BdrvCheckMode fix, bool deep)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Dedup *d = s->dedup;
    DedupCheck dc = { .bs = bs, .res = res, .deep = deep };
    int ret;

    if (!d) {
        return 0;
    }
    dc.bad = g_array_new(FALSE, FALSE, sizeof(BadEntry));
    check_log_store(&dc);
    ret = qcow2_hash_store_foreach(d->hs, check_entry, &dc);
    if (ret < 0) {
        res->check_errors++;
    }
    for (guint i = 0; i < dc.bad->len && (fix & BDRV_FIX_ERRORS) &&
                      !bs->read_only; i++) {
        BadEntry *e = &g_array_index(dc.bad, BadEntry, i);
        /* Also clear the record, so a replay cannot bring it back. */
        if (index_remove(bs, e->cluster, qcow2_dedup_loc_pack(&e->loc)) == 0) {
            res->corruptions--;
            res->corruptions_fixed++;
        }
    }
    g_array_free(dc.bad, TRUE);
    return 0;
}

/* Offline indexing (amend, rebuild) */

/*
 * Index every data cluster of the active disk; with merge, a cluster whose
 * content is already indexed is replaced by a reference to the indexed one
 * (offline deduplication).  Called with s->lock held, image writable.
 */
int qcow2_dedup_index_existing(BlockDriverState *bs, bool merge,
                               BlockDriverAmendStatusCB *cb, void *opaque)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *buf = qemu_blockalign(s->cluster_size);
    uint64_t total = s->size, done = 0;
    QEMUIOVector qiov;
    int ret = 0;

    qemu_iovec_init_buf(&qiov, buf, s->cluster_size);
    for (uint64_t guest = 0; guest < s->size && ret == 0;
         guest += s->cluster_size) {
        uint64_t bytes = s->cluster_size, host, cluster, refcount;
        QCow2ClusterType type;
        Qcow2IndexLocation loc;
        Qcow2DedupHash h;

        if (cb && (done++ & 255) == 0) {
            cb(bs, guest, total, opaque);
        }
        ret = qcow2_get_host_offset(bs, guest, &bytes, &host, &type);
        if (ret < 0 || type != QCOW2_CLUSTER_NORMAL ||
            bytes < (uint64_t)s->cluster_size ||
            qcow2_dedup_cluster_indexed(bs, host)) {
            continue;
        }
        ret = bdrv_pread(bs->file, host, s->cluster_size, buf, 0);
        if (ret < 0) {
            break;
        }
        if (buffer_is_zero(buf, s->cluster_size)) {
            s->dedup->stat_zero++;
            ret = qcow2_cluster_zeroize(bs, guest, s->cluster_size, true);
            continue;
        }
        dedup_hash(&qiov, 0, s->cluster_size, &h);
        ret = index_lookup(bs, &h, &cluster, &loc);
        if (ret > 0 && merge && cluster != host >> s->cluster_bits &&
            hit_usable(bs, cluster, &refcount)) {
            s->dedup->stat_deduplicated++;
            ret = take_reference(bs, cluster);
            if (ret == 0) {
                ret = qcow2_link_existing_cluster(bs, guest,
                                                  cluster << s->cluster_bits,
                                                  false);
            }
        } else if (ret >= 0) {
            ret = ret > 0 ? 0 : index_insert(bs, &h, host >> s->cluster_bits);
        }
    }
    if (cb) {
        cb(bs, total, total, opaque);
    }
    qemu_vfree(buf);
    return ret;
}

/*
 * qcow2 deduplication: the log store, the in-RAM cuckoo table of the most
 * recent index entries (docs/interop/qcow2.txt, 7.4).
 *
 * Layout: 2^bucket_bits buckets of QCOW2_DEDUP_BUCKET_SLOTS slots, stored
 * bucket-major in one array of Qcow2IndexEntry, exactly the table a freeze
 * writes to disk.  A parallel array holds one 16-bit tag per slot so that
 * a lookup or a removal compares 2-byte tags and touches a full entry only
 * on a tag match.
 *
 * Invariants:
 *  - slots[i].cluster == 0 (empty) <=> tags[i] == 0, and an empty slot is
 *    all zeroes, so the frozen table holds no stale hashes;
 *  - an occupied slot i holds an entry of hash H with tags[i] == tag(H),
 *    in bucket home(H) or alt(home(H), tag(H));
 *  - count is the number of occupied slots.
 *
 * Insertion takes the first empty slot of the home bucket, then of the
 * alternate bucket.  When both are full the new entry takes a slot of the
 * home bucket and the evicted entry moves to its other bucket, possibly
 * evicting another one, for at most LOG_STORE_MAX_KICKS moves.  Every move
 * is recorded and undone if the walk fails, so a failed insert (-ENOSPC)
 * leaves the table bit for bit as it was.
 *
 * Determinism: the journal replays inserts and removals to rebuild the
 * store after a crash, and the table must come out the same.  The victim
 * of each move is therefore a function of the walk step and of the
 * entry being carried (no random numbers, no addresses), and the table is
 * the whole state: two stores fed the same operations are identical.
 *
 * Locations: an insert reports the bucket the entry was placed in.  Later
 * moves only ever take an entry to the other of its two buckets, which
 * alt(bucket, tag) gives from either one, so removal by location searches
 * both buckets for the entry's cluster.
 *
 * Load factor: inserting random hashes into an empty store until the
 * first -ENOSPC (4 slots per bucket, 500 kicks), the store was this full
 * (mean and worst over 20 seeds, 3 seeds from bucket_bits 17 on):
 *
 *   bucket_bits   4     5     6     7     8     9     10    11    12
 *   mean  %      97.6  97.8  97.5  97.3  97.5  97.2  97.0  97.2  96.8
 *   worst %      92.2  94.5  94.1  95.3  96.3  96.4  96.4  96.5  96.3
 *
 *   bucket_bits   13    14    15    16    17    18    19    20
 *   mean  %      96.7  96.6  96.5  96.3  96.3  96.1  95.9  95.9
 *   worst %      96.1  96.1  95.9  95.9  96.1  96.1  95.6  95.7
 *
 * Tiny tables scatter more (some fill to 100%, a few stop near 92%).  The
 * victim choice matters: evicting slot step % 4 stopped about 0.4%
 * earlier, and (step + tag) % 4 stopped one fill at 86%.  The kick bound
 * trades fill for the cost of the failing insert (once per freeze, about
 * 1000 moves with the undo: 7 us in a cached table, 60 us at bucket_bits
 * 20): 2000 kicks filled about 1% more, 100 kicks 3-4% less.
 */
#include "qemu/osdep.h"
#include "qcow2-dedup.h"

#define LOG_STORE_MAX_KICKS 500

struct Qcow2LogStore {
    uint32_t id;
    int bucket_bits;
    uint64_t count;
    Qcow2IndexEntry *slots;     /* bucket-major */
    uint16_t *tags;             /* tag of each slot, 0 when empty */
};

static size_t log_store_nb_slots(int bucket_bits)
{
    return (size_t)QCOW2_DEDUP_BUCKET_SLOTS << bucket_bits;
}

Qcow2LogStore *qcow2_log_store_new(uint32_t id, int bucket_bits)
{
    Qcow2LogStore *ls;
    size_t n;

    /* The caller validated both when it read the directory and header. */
    assert(id != 0 && id <= QCOW2_DEDUP_MAX_ID);
    assert(bucket_bits >= QCOW2_DEDUP_MIN_BUCKET_BITS &&
           bucket_bits <= QCOW2_DEDUP_MAX_BUCKET_BITS);

    n = log_store_nb_slots(bucket_bits);
    ls = g_new0(Qcow2LogStore, 1);
    ls->id = id;
    ls->bucket_bits = bucket_bits;
    /* Up to 2.8 GB at the largest geometry: fail rather than abort. */
    ls->slots = g_try_new0(Qcow2IndexEntry, n);
    ls->tags = g_try_new0(uint16_t, n);
    if (!ls->slots || !ls->tags) {
        qcow2_log_store_free(ls);
        return NULL;
    }
    return ls;
}

void qcow2_log_store_free(Qcow2LogStore *ls)
{
    if (!ls) {
        return;
    }
    g_free(ls->slots);
    g_free(ls->tags);
    g_free(ls);
}

uint32_t qcow2_log_store_id(const Qcow2LogStore *ls)
{
    return ls->id;
}

int qcow2_log_store_bucket_bits(const Qcow2LogStore *ls)
{
    return ls->bucket_bits;
}

static uint32_t log_store_alt(const Qcow2LogStore *ls, uint32_t bucket,
                              uint16_t tag)
{
    return qcow2_dedup_alt_bucket(bucket, tag, ls->bucket_bits);
}

static size_t log_store_first_slot(uint32_t bucket)
{
    return (size_t)bucket * QCOW2_DEDUP_BUCKET_SLOTS;
}

/* Put e into the first empty slot of bucket; false if it is full. */
static bool log_store_place(Qcow2LogStore *ls, uint32_t bucket,
                            const Qcow2IndexEntry *e, uint16_t tag)
{
    size_t first = log_store_first_slot(bucket);

    for (size_t i = first; i < first + QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        if (!ls->tags[i]) {
            ls->slots[i] = *e;
            ls->tags[i] = tag;
            return true;
        }
    }
    return false;
}

/* Exchange the entry carried by a cuckoo walk with the one in slot i. */
static void log_store_swap(Qcow2LogStore *ls, size_t i, Qcow2IndexEntry *e,
                           uint16_t *tag)
{
    Qcow2IndexEntry old_entry = ls->slots[i];
    uint16_t old_tag = ls->tags[i];

    ls->slots[i] = *e;
    ls->tags[i] = *tag;
    *e = old_entry;
    *tag = old_tag;
}

/*
 * The slot to evict at a step of a walk: the step and the carried entry's
 * tag, well mixed (a murmur-style finaliser), so that walks do not repeat
 * a short pattern of victims (see the measurements above).
 */
static unsigned log_store_victim(unsigned step, uint16_t tag)
{
    uint32_t x = (step + 1) * 0x9e3779b1u ^ tag;

    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    return x % QCOW2_DEDUP_BUCKET_SLOTS;
}

/*
 * Make room for e in the full bucket by a cuckoo walk: e takes a slot, the
 * evicted entry goes to its other bucket, and so on.  On failure every
 * move is undone.
 */
static bool log_store_kick(Qcow2LogStore *ls, uint32_t bucket,
                           const Qcow2IndexEntry *e, uint16_t tag)
{
    size_t path[LOG_STORE_MAX_KICKS];
    Qcow2IndexEntry carried = *e;
    uint16_t carried_tag = tag;
    int n;

    for (n = 0; n < LOG_STORE_MAX_KICKS; n++) {
        path[n] = log_store_first_slot(bucket) +
                  log_store_victim(n, carried_tag);
        log_store_swap(ls, path[n], &carried, &carried_tag);
        bucket = log_store_alt(ls, bucket, carried_tag);
        if (log_store_place(ls, bucket, &carried, carried_tag)) {
            return true;
        }
    }
    while (n-- > 0) {
        log_store_swap(ls, path[n], &carried, &carried_tag);
    }
    return false;
}

int qcow2_log_store_insert(Qcow2LogStore *ls, const Qcow2DedupHash *h,
                           uint64_t cluster, Qcow2IndexLocation *loc)
{
    const Qcow2IndexEntry e = { .hash = *h, .cluster = cluster };
    uint16_t tag = qcow2_dedup_tag(h);
    uint32_t b1 = qcow2_dedup_home_bucket(h, ls->bucket_bits);
    uint32_t b2 = log_store_alt(ls, b1, tag);
    uint32_t bucket;

    assert(cluster != 0);

    if (log_store_place(ls, b1, &e, tag)) {
        bucket = b1;
    } else if (log_store_place(ls, b2, &e, tag)) {
        bucket = b2;
    } else if (log_store_kick(ls, b1, &e, tag)) {
        bucket = b1;
    } else {
        return -ENOSPC;
    }
    ls->count++;
    *loc = (Qcow2IndexLocation) {
        .id = ls->id,
        .bucket = bucket,
        .tag = tag,
    };
    return 0;
}

/* Index of the slot holding h in bucket, or -1. */
static ssize_t log_store_find_hash(const Qcow2LogStore *ls, uint32_t bucket,
                                   const Qcow2DedupHash *h, uint16_t tag)
{
    size_t first = log_store_first_slot(bucket);

    for (size_t i = first; i < first + QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        if (ls->tags[i] == tag &&
            !memcmp(&ls->slots[i].hash, h, sizeof(*h))) {
            return i;
        }
    }
    return -1;
}

/* Index of the slot of h in either of its buckets, or -1. */
static ssize_t log_store_find(const Qcow2LogStore *ls, const Qcow2DedupHash *h)
{
    uint16_t tag = qcow2_dedup_tag(h);
    uint32_t b1 = qcow2_dedup_home_bucket(h, ls->bucket_bits);
    uint32_t b2 = log_store_alt(ls, b1, tag);
    ssize_t i = log_store_find_hash(ls, b1, h, tag);

    if (i < 0 && b2 != b1) {
        i = log_store_find_hash(ls, b2, h, tag);
    }
    return i;
}

uint64_t qcow2_log_store_lookup(const Qcow2LogStore *ls,
                                const Qcow2DedupHash *h)
{
    ssize_t i = log_store_find(ls, h);

    return i < 0 ? 0 : ls->slots[i].cluster;
}

static void log_store_clear_slot(Qcow2LogStore *ls, size_t i)
{
    memset(&ls->slots[i], 0, sizeof(ls->slots[i]));
    ls->tags[i] = 0;
    ls->count--;
}

/* Index of the slot holding cluster under tag in bucket, or -1. */
static ssize_t log_store_find_cluster(const Qcow2LogStore *ls,
                                      uint32_t bucket, uint16_t tag,
                                      uint64_t cluster)
{
    size_t first = log_store_first_slot(bucket);

    for (size_t i = first; i < first + QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        if (ls->tags[i] == tag && ls->slots[i].cluster == cluster) {
            return i;
        }
    }
    return -1;
}

bool qcow2_log_store_remove(Qcow2LogStore *ls, const Qcow2IndexLocation *loc,
                            uint64_t cluster)
{
    uint32_t mask = (1u << ls->bucket_bits) - 1;
    ssize_t i;

    /* A record from the reverse map is untrusted input: check its range. */
    if (loc->id != ls->id || loc->bucket > mask || !loc->tag || !cluster) {
        return false;
    }
    i = log_store_find_cluster(ls, loc->bucket, loc->tag, cluster);
    if (i < 0) {
        i = log_store_find_cluster(ls, log_store_alt(ls, loc->bucket,
                                                     loc->tag),
                                   loc->tag, cluster);
    }
    if (i < 0) {
        return false;
    }
    log_store_clear_slot(ls, i);
    return true;
}

bool qcow2_log_store_remove_hash(Qcow2LogStore *ls, const Qcow2DedupHash *h)
{
    ssize_t i = log_store_find(ls, h);

    if (i < 0) {
        return false;
    }
    log_store_clear_slot(ls, i);
    return true;
}

uint64_t qcow2_log_store_count(const Qcow2LogStore *ls)
{
    return ls->count;
}

uint64_t qcow2_log_store_capacity(const Qcow2LogStore *ls)
{
    return log_store_nb_slots(ls->bucket_bits);
}

size_t qcow2_log_store_memory(const Qcow2LogStore *ls)
{
    size_t n = log_store_nb_slots(ls->bucket_bits);

    return sizeof(*ls) + n * (sizeof(*ls->slots) + sizeof(*ls->tags));
}

const Qcow2IndexEntry *qcow2_log_store_slots(const Qcow2LogStore *ls)
{
    return ls->slots;
}

void qcow2_log_store_reset(Qcow2LogStore *ls, uint32_t new_id)
{
    size_t n = log_store_nb_slots(ls->bucket_bits);

    assert(new_id != 0 && new_id <= QCOW2_DEDUP_MAX_ID);
    memset(ls->slots, 0, n * sizeof(*ls->slots));
    memset(ls->tags, 0, n * sizeof(*ls->tags));
    ls->count = 0;
    ls->id = new_id;
}

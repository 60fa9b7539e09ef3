/*
 * qcow2 inline deduplication: shared definitions of the four modules.
 *
 *   qcow2-log-store.c   the in-RAM cuckoo table of recent hashes
 *   qcow2-hash-store.c  frozen log stores ("incarnations") on disk, each
 *                       with an in-RAM filter of 16-bit tags
 *   qcow2-journal.c     the append-only, checksummed log that persists the
 *                       log store between freezes
 *   qcow2-dedup.c       the glue: write path, reverse map, hooks, metrics
 *
 * The on-disk layout of everything here is specified in
 * docs/interop/qcow2.txt, section "Deduplication"; this header only
 * describes the in-memory interfaces.
 *
 * Index geometry (shared by the log store and every incarnation):
 * 2^bucket_bits buckets of QCOW2_DEDUP_BUCKET_SLOTS slots.  A hash H has a
 * 16-bit tag t (bytes 0-1 of H, little-endian, 0 replaced by 1) and a home
 * bucket b1 (bytes 2-5 of H, little-endian, masked); its other bucket is
 * qcow2_dedup_alt_bucket(b, t), which depends only on the bucket and the
 * tag (partial-key cuckoo hashing), so an entry can be moved or found from
 * (bucket, tag) alone.  An entry lives in b1 or in alt(b1, t).
 *
 * An entry's location (Qcow2IndexLocation: incarnation id, a bucket it may
 * live in, tag) is what the reverse map stores per host cluster; the entry is
 * in that bucket or its alternate.  Incarnation ids are 24-bit, never 0,
 * increasing; the log store has the id it will keep once frozen.
 *
 * Locking: none of the modules lock; the glue calls them under the qcow2
 * driver's s->lock, except the hash store's background filter loading which
 * synchronises itself (see qcow2_hash_store_start_loading()).
 */
#ifndef BLOCK_QCOW2_DEDUP_H
#define BLOCK_QCOW2_DEDUP_H

#include "qemu/osdep.h"
#include "block/block_int.h"

#define QCOW2_DEDUP_HASH_SIZE 32            /* SHA-256 */
#define QCOW2_DEDUP_BUCKET_SLOTS 4
#define QCOW2_DEDUP_ENTRY_SIZE 40           /* on disk: hash + u64 cluster */
#define QCOW2_DEDUP_BUCKET_SIZE (QCOW2_DEDUP_BUCKET_SLOTS * \
                                 QCOW2_DEDUP_ENTRY_SIZE)
#define QCOW2_DEDUP_MIN_BUCKET_BITS 4
#define QCOW2_DEDUP_MAX_BUCKET_BITS 24
#define QCOW2_DEDUP_ID_BITS 24
#define QCOW2_DEDUP_MAX_ID ((1u << QCOW2_DEDUP_ID_BITS) - 1)

typedef struct Qcow2DedupHash {
    uint8_t b[QCOW2_DEDUP_HASH_SIZE];
} Qcow2DedupHash;

/* One slot: a hash and the host cluster *index* holding that content (0: empty). */
typedef struct Qcow2IndexEntry {
    Qcow2DedupHash hash;
    uint64_t cluster;
} Qcow2IndexEntry;

typedef struct Qcow2IndexLocation {
    uint32_t id;        /* incarnation (or log store) id, 0 = none */
    uint32_t bucket;    /* a bucket the entry may be in (or its alternate) */
    uint16_t tag;
} Qcow2IndexLocation;

/* Tag of a hash: never 0 (0 marks an empty or removed slot in filters). */
static inline uint16_t qcow2_dedup_tag(const Qcow2DedupHash *h)
{
    uint16_t t = h->b[0] | (h->b[1] << 8);

    return t ? t : 1;
}

static inline uint32_t qcow2_dedup_home_bucket(const Qcow2DedupHash *h,
                                               int bucket_bits)
{
    uint32_t v = h->b[2] | (h->b[3] << 8) | (h->b[4] << 16) |
                 ((uint32_t)h->b[5] << 24);

    return v & ((1u << bucket_bits) - 1);
}

static inline uint32_t qcow2_dedup_alt_bucket(uint32_t bucket, uint16_t tag,
                                              int bucket_bits)
{
    /* Odd multiplier: spreads the tag over all bucket bits. */
    return (bucket ^ (tag * 0x5bd1e995u)) & ((1u << bucket_bits) - 1);
}

/* Reverse-map record of a location: id (24 bits) | bucket (24) | tag (16). */
static inline uint64_t qcow2_dedup_loc_pack(const Qcow2IndexLocation *loc)
{
    return ((uint64_t)loc->id << 40) | ((uint64_t)loc->bucket << 16) |
           loc->tag;
}

static inline void qcow2_dedup_loc_unpack(uint64_t v, Qcow2IndexLocation *loc)
{
    loc->id = v >> 40;
    loc->bucket = (v >> 16) & 0xffffff;
    loc->tag = v & 0xffff;
}

/* ---- Log store (qcow2-log-store.c) ---------------------------------- */

typedef struct Qcow2LogStore Qcow2LogStore;

/* NULL when the tables cannot be allocated (2.8 GB at bucket_bits 24). */
Qcow2LogStore *qcow2_log_store_new(uint32_t id, int bucket_bits);
void qcow2_log_store_free(Qcow2LogStore *ls);
uint32_t qcow2_log_store_id(const Qcow2LogStore *ls);
int qcow2_log_store_bucket_bits(const Qcow2LogStore *ls);

/*
 * Insert h -> cluster.  Returns 0 and the location, or -ENOSPC when the
 * table cannot take it (the caller then freezes the store and retries on a
 * new one).  Inserting is deterministic: the same sequence of inserts and
 * removals from an empty store always gives the same table.  h must not be
 * in the store already.
 */
int qcow2_log_store_insert(Qcow2LogStore *ls, const Qcow2DedupHash *h,
                           uint64_t cluster, Qcow2IndexLocation *loc);
/* The cluster stored for h, or 0. */
uint64_t qcow2_log_store_lookup(const Qcow2LogStore *ls,
                                const Qcow2DedupHash *h);
/* Remove the entry holding cluster near loc (loc->id must match). */
bool qcow2_log_store_remove(Qcow2LogStore *ls, const Qcow2IndexLocation *loc,
                            uint64_t cluster);
/* Remove the entry of h; true if there was one. */
bool qcow2_log_store_remove_hash(Qcow2LogStore *ls, const Qcow2DedupHash *h);
uint64_t qcow2_log_store_count(const Qcow2LogStore *ls);
uint64_t qcow2_log_store_capacity(const Qcow2LogStore *ls);
size_t qcow2_log_store_memory(const Qcow2LogStore *ls);
/* The slots, bucket-major: 2^bucket_bits * QCOW2_DEDUP_BUCKET_SLOTS. */
const Qcow2IndexEntry *qcow2_log_store_slots(const Qcow2LogStore *ls);
/* Empty the store and give it a new id (after a freeze). */
void qcow2_log_store_reset(Qcow2LogStore *ls, uint32_t new_id);

/* ---- Hash store (qcow2-hash-store.c) -------------------------------- */

typedef struct Qcow2HashStore Qcow2HashStore;

/* One frozen incarnation, as the directory records it. */
typedef struct Qcow2IncarnationInfo {
    uint32_t id;
    uint64_t table_offset;      /* host byte offset, cluster aligned */
    uint64_t nb_entries;        /* live entries when frozen */
} Qcow2IncarnationInfo;

typedef struct Qcow2HashStoreStats {
    uint64_t lookups;
    uint64_t filter_hits;           /* tag matches in some incarnation */
    uint64_t false_positives;       /* tag matched, full hash did not */
    uint64_t metadata_reads;        /* bucket reads for lookups */
    uint64_t hits;
} Qcow2HashStoreStats;

/*
 * file: the image's protocol node; tables live there.  Geometry: every
 * incarnation has 2^bucket_bits buckets; cluster_bits of the image.
 */
Qcow2HashStore *qcow2_hash_store_new(BlockDriverState *file, int cluster_bits,
                                     int bucket_bits,
                                     uint32_t max_incarnations);
void qcow2_hash_store_free(Qcow2HashStore *hs);
/* Bytes (whole clusters) one incarnation table takes on disk. */
uint64_t qcow2_hash_store_table_size(int cluster_bits, int bucket_bits);

/*
 * Add incarnations read from the directory (oldest first).  Their filters
 * are loaded later; until then they simply miss.
 */
void qcow2_hash_store_add_existing(Qcow2HashStore *hs,
                                   const Qcow2IncarnationInfo *info);
/* Load the filters of all not-yet-loaded incarnations in a thread. */
void qcow2_hash_store_start_loading(Qcow2HashStore *hs);
/* Wait for the loading thread (before close, check, or in tests). */
void qcow2_hash_store_wait_loaded(Qcow2HashStore *hs);

/*
 * Freeze ls into a new incarnation whose table is written at table_offset
 * (qcow2_hash_store_table_size() bytes, allocated by the caller).  When the
 * store already holds max_incarnations, the oldest is dropped first and its
 * info returned in *dropped (dropped->id 0 if none) so the caller can reuse
 * or free its space.  The table is written but not flushed.
 */
int qcow2_hash_store_freeze(Qcow2HashStore *hs, const Qcow2LogStore *ls,
                            uint64_t table_offset,
                            Qcow2IncarnationInfo *dropped);

/*
 * Look h up, newest incarnation first.  Returns 1 and the cluster and its
 * location on a hit, 0 on a miss, -errno on I/O error.  Each tag match
 * costs one read of the bucket from disk.
 */
int qcow2_hash_store_lookup(Qcow2HashStore *hs, const Qcow2DedupHash *h,
                            uint64_t *cluster, Qcow2IndexLocation *loc);
/*
 * Remove the entry holding cluster near loc: its filter tag and its slot on
 * disk (cluster field written as 0, not flushed).  Returns 1 if removed, 0
 * if the incarnation no longer exists or holds no such entry, -errno.
 */
int qcow2_hash_store_remove(Qcow2HashStore *hs, const Qcow2IndexLocation *loc,
                            uint64_t cluster);
/* Whether id names a live incarnation. */
bool qcow2_hash_store_has(const Qcow2HashStore *hs, uint32_t id);

/* Current incarnations, oldest first (for the directory). */
int qcow2_hash_store_list(const Qcow2HashStore *hs,
                          Qcow2IncarnationInfo *out, int max);
uint32_t qcow2_hash_store_count(const Qcow2HashStore *hs);
uint64_t qcow2_hash_store_entries(const Qcow2HashStore *hs);
size_t qcow2_hash_store_memory(const Qcow2HashStore *hs);
void qcow2_hash_store_get_stats(const Qcow2HashStore *hs,
                                Qcow2HashStoreStats *stats);
/*
 * Call fn for every live entry of every incarnation (reads the tables;
 * for check and rebuild).  Stops and returns fn's value if non-zero.
 */
int qcow2_hash_store_foreach(Qcow2HashStore *hs,
                             int (*fn)(const Qcow2IndexEntry *e,
                                       const Qcow2IndexLocation *loc,
                                       void *opaque),
                             void *opaque);

/* ---- Journal (qcow2-journal.c) --------------------------------------- */

typedef struct Qcow2Journal Qcow2Journal;

typedef enum Qcow2JournalRecordType {
    QCOW2_JOURNAL_INSERT = 1,   /* hash, cluster, location */
    QCOW2_JOURNAL_REMOVE = 2,   /* cluster, location */
    QCOW2_JOURNAL_COMMIT = 3,   /* every record up to sequence is trusted */
} Qcow2JournalRecordType;

typedef struct Qcow2JournalRecord {
    Qcow2JournalRecordType type;
    uint64_t sequence;
    Qcow2DedupHash hash;        /* INSERT */
    uint64_t cluster;           /* INSERT, REMOVE */
    Qcow2IndexLocation loc;     /* INSERT, REMOVE */
} Qcow2JournalRecord;

/*
 * The journal occupies size bytes at offset (512-aligned) of file.
 * generation: the current generation from the directory; records of other
 * generations are ignored.
 */
Qcow2Journal *qcow2_journal_new(BlockDriverState *file, uint64_t offset,
                                uint64_t size, uint64_t generation);
void qcow2_journal_free(Qcow2Journal *j);
uint64_t qcow2_journal_generation(const Qcow2Journal *j);

/*
 * Replay: call fn for every trusted INSERT/REMOVE record (those followed by
 * a COMMIT covering them), in order.  Appends then continue after the last
 * valid COMMIT; the untrusted rest of the journal is zeroed (not flushed,
 * skipped on a read-only file), so the caller flushes before the next
 * write().  A non-zero return of fn stops replay and is returned.  Only
 * allowed before any append (-EBUSY).  Corrupt or torn records end the
 * replay; a bad checksum is not an error.
 */
int qcow2_journal_replay(Qcow2Journal *j,
                         int (*fn)(const Qcow2JournalRecord *r, void *opaque),
                         void *opaque);

/* Queue records in memory; -ENOSPC when the journal would overflow. */
int qcow2_journal_append_insert(Qcow2Journal *j, const Qcow2DedupHash *h,
                                uint64_t cluster,
                                const Qcow2IndexLocation *loc);
int qcow2_journal_append_remove(Qcow2Journal *j, uint64_t cluster,
                                const Qcow2IndexLocation *loc);
/* True when less than reserve bytes are left (time to freeze). */
bool qcow2_journal_nearly_full(const Qcow2Journal *j, uint64_t reserve);
/* Fraction used, in per mille, for metrics. */
unsigned qcow2_journal_fill_permille(const Qcow2Journal *j);

/*
 * Called by the glue in every flush, before the file is flushed: writes a
 * COMMIT for every record written by earlier calls (they were made durable
 * by the flush that followed them), then the queued records.  Each call's
 * output starts on a fresh 512-byte unit so earlier sectors are never
 * rewritten.
 */
int qcow2_journal_write(Qcow2Journal *j);
/* Write a COMMIT for everything written so far (clean close); -EBUSY if
 * records are queued (call write() first). */
int qcow2_journal_commit_all(Qcow2Journal *j);
/* Start over empty with a new generation (-EINVAL unless it grows). */
int qcow2_journal_reset(Qcow2Journal *j, uint64_t new_generation);

/* ---- Glue (qcow2-dedup.c), called from the qcow2 driver ------------- */

typedef struct Qcow2Dedup Qcow2Dedup;

#endif

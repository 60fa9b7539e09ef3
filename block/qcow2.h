/*
 * qcow2 driver: shared definitions.
 *
 * On-disk layout (all integers big-endian; docs/interop/qcow2.txt has the
 * full byte layout): cluster 0 holds the header, its extensions and the
 * backing file name; the L1 table maps guest L2 ranges to L2 tables; each
 * L2 entry maps one guest cluster to a host cluster (or marks it zero,
 * compressed or unallocated); a refcount table points to refcount blocks
 * holding one 2^refcount_order-bit counter per host cluster.
 *
 * Invariants this driver keeps (and qemu-img check verifies):
 *  - every host cluster's refcount equals the number of references to it
 *    (L1/L2 entries of the active table and of snapshots, metadata tables);
 *    a crash may leave a refcount too high (a leak), never too low;
 *  - an L2 entry reached from the active L1 carries COPIED iff its cluster's
 *    refcount is 1 (likewise for L1 entries and L2 tables);
 *  - no data write lands on a metadata cluster (the overlap check);
 *  - write ordering: refcount increments reach the disk before an L2 entry
 *    that needs them, data before the L2 entry pointing at it, a new L2 table
 *    before the L1 entry pointing at it; a refcount decrement is applied only
 *    after the L2 change that dropped the reference is durable and no
 *    request that might still use the cluster is in flight (the "limbo").
 *    With lazy refcounts the dirty bit replaces refcount ordering.
 *
 * Locking: s->lock protects all metadata (caches, L1, refcount table,
 * allocation state).  Guest data I/O runs without it; clusters that data
 * I/O is in flight on cannot be freed (limbo) and clusters being allocated
 * are tracked in s->cluster_allocs so overlapping writes wait.
 */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include "qemu/osdep.h"
#include "block/block_int.h"

#define QCOW_MAGIC 0x514649fbU   /* 'Q' 'F' 'I' 0xfb */

#define QCOW_MIN_CLUSTER_BITS 9
#define QCOW_MAX_CLUSTER_BITS 21
#define DEFAULT_CLUSTER_SIZE 65536

#define QCOW_V2_HEADER_LENGTH 72
#define QCOW_V3_MIN_HEADER_LENGTH 104
#define QCOW_V3_HEADER_LENGTH 112   /* with compression_type and padding */

/* Limits that keep in-memory tables bounded whatever the header says. */
#define QCOW_MAX_REFTABLE_SIZE (8 * 1024 * 1024)
#define QCOW_MAX_L1_SIZE (32 * 1024 * 1024)
#define QCOW_MAX_SNAPSHOTS 65536
#define QCOW_MAX_BACKING_FILE_SIZE 1023

/* Header extension magics */
#define QCOW2_EXT_MAGIC_END 0
#define QCOW2_EXT_MAGIC_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_MAGIC_FEATURE_TABLE 0x6803f857U
#define QCOW2_EXT_MAGIC_BITMAPS 0x23852875U
#define QCOW2_EXT_MAGIC_CRYPTO_HEADER 0x0537be77U
#define QCOW2_EXT_MAGIC_DATA_FILE 0x44415441U
#define QCOW2_EXT_MAGIC_DEDUP 0x64656475U   /* "dedu", ours */

/* Feature bits */
#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_INCOMPAT_SUPPORTED (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                                  QCOW2_INCOMPAT_COMPRESSION)

#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)

#define QCOW2_AUTOCLEAR_BITMAPS (UINT64_C(1) << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (UINT64_C(1) << 1)
/* Ours: the deduplication index in extension "dedu" is valid. */
#define QCOW2_AUTOCLEAR_DEDUP (UINT64_C(1) << 32)
/* Autoclear bits this driver knows and keeps across a read-write open. */
#define QCOW2_AUTOCLEAR_KNOWN QCOW2_AUTOCLEAR_DEDUP

#define QCOW2_COMPRESSION_TYPE_ZLIB 0
#define QCOW2_COMPRESSION_TYPE_ZSTD 1

/* Entry masks */
#define QCOW_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW_OFLAG_ZERO (UINT64_C(1) << 0)
#define REFT_OFFSET_MASK UINT64_C(0xfffffffffffffe00)
#define L1E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L2E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L1E_RESERVED_MASK UINT64_C(0x7f000000000001ff)
#define L2E_STD_RESERVED_MASK UINT64_C(0x3f000000000001fe)
#define REFT_RESERVED_MASK UINT64_C(0x1ff)

typedef enum QCow2ClusterType {
    QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO_PLAIN,
    QCOW2_CLUSTER_ZERO_ALLOC,
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} QCow2ClusterType;

typedef struct QCowHeader {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint8_t padding[7];
} QEMU_PACKED QCowHeader;

/* An internal snapshot, as parsed from the snapshot table. */
typedef struct QCowSnapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint64_t disk_size;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;
    uint32_t extra_data_size;
    void *unknown_extra_data;   /* bytes past the fields we know */
} QCowSnapshot;

/* A header extension we do not interpret, kept for the next header write. */
typedef struct Qcow2UnknownHeaderExtension {
    uint32_t magic;
    uint32_t len;
    uint8_t data[];
} Qcow2UnknownHeaderExtension;

/* A byte range of the guest cluster that must be copied on write. */
typedef struct Qcow2COWRegion {
    uint64_t offset;    /* from the start of the first allocated cluster */
    uint64_t nb_bytes;
} Qcow2COWRegion;

/*
 * An allocating write in flight: nb_clusters guest clusters from
 * guest_offset get fresh host clusters at alloc_offset.  Overlapping
 * writes wait until it is linked into the L2 table.
 */
typedef struct QCowL2Meta {
    uint64_t guest_offset;
    uint64_t alloc_offset;
    int nb_clusters;
    Qcow2COWRegion cow_start;
    Qcow2COWRegion cow_end;
    struct QCowL2Meta *next;
} QCowL2Meta;

typedef struct Qcow2Cache Qcow2Cache;
typedef struct Qcow2Dedup Qcow2Dedup;

typedef struct BDRVQcow2State {
    GMutex lock;
    GCond alloc_cond;       /* signalled when a QCowL2Meta completes */

    int cluster_bits;
    int cluster_size;
    int l2_bits;
    int l2_size;            /* entries per L2 table */
    int l1_size;
    uint64_t l1_vm_state_index;
    uint64_t l1_table_offset;
    uint64_t *l1_table;     /* host endian */
    uint64_t size;          /* virtual disk size */

    int refcount_order;
    int refcount_bits;
    uint64_t refcount_max;
    int refcount_block_bits;     /* log2(entries per refcount block) */
    int refcount_block_size;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_size;   /* entries */
    uint64_t *refcount_table;       /* host endian */
    uint64_t free_cluster_index;    /* no free cluster below this one */
    /* Next free byte in the cluster compressed data is packed into, or 0. */
    uint64_t free_byte_offset;

    Qcow2Cache *l2_table_cache;
    Qcow2Cache *refcount_block_cache;

    int qcow_version;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint8_t compression_type;
    uint32_t header_length;
    void *unknown_header_fields;    /* header bytes past what we know */
    size_t unknown_header_fields_size;
    GSList *unknown_header_ext;     /* of Qcow2UnknownHeaderExtension */
    bool has_bitmaps_ext;
    uint32_t nb_bitmaps;
    uint64_t bitmap_directory_offset;
    uint64_t bitmap_directory_size;

    int nb_snapshots;
    uint64_t snapshots_offset;
    int snapshots_size;
    QCowSnapshot *snapshots;

    bool use_lazy_refcounts;
    bool preallocation_known;       /* see looks_preallocated() */
    bool preallocated;
    bool corrupt_signalled;

    /* Allocating writes in flight (QCowL2Meta list). */
    QCowL2Meta *cluster_allocs;

    /*
     * Data requests in flight hold a sequence number; a freed cluster waits
     * in limbo until every request older than its release and the L2 change
     * that released it are done (see qcow2-refcount.c).
     */
    uint64_t next_io_seq;
    GSList *io_in_flight;           /* of uint64_t seq (GUINT_TO_POINTER) */
    GArray *limbo;                  /* of Qcow2LimboEntry */
    uint64_t limbo_flush_gen;       /* completed flushes, for limbo */

    /* Host clusters holding metadata, for the overlap check. */
    GHashTable *metadata_clusters;

    /* Deduplication (qcow2-dedup.c); NULL when the image has none. */
    Qcow2Dedup *dedup;
    /* The raw dedup extension as read at open, until qcow2-dedup parses it. */
    uint8_t *dedup_ext;
    uint32_t dedup_ext_len;
    /* The extension is there but must not be trusted (see qcow2-dedup.c). */
    bool dedup_stale;
} BDRVQcow2State;

typedef struct Qcow2LimboEntry {
    uint64_t offset;        /* host cluster */
    uint64_t nb_clusters;
    uint64_t io_seq;        /* requests older than this may still use it */
    uint64_t flush_gen;     /* needs a completed flush after this one */
} Qcow2LimboEntry;

typedef enum Qcow2MetadataType {
    QCOW2_META_HEADER,
    QCOW2_META_L1,
    QCOW2_META_L2,
    QCOW2_META_REFTABLE,
    QCOW2_META_REFBLOCK,
    QCOW2_META_SNAPSHOT,
    QCOW2_META_DEDUP,
} Qcow2MetadataType;

static inline uint64_t offset_into_cluster(BDRVQcow2State *s, uint64_t offset)
{
    return offset & (s->cluster_size - 1);
}

static inline uint64_t start_of_cluster(BDRVQcow2State *s, uint64_t offset)
{
    return offset & ~((uint64_t)s->cluster_size - 1);
}

static inline uint64_t size_to_clusters(BDRVQcow2State *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

static inline int offset_to_l1_index(BDRVQcow2State *s, uint64_t offset)
{
    return offset >> (s->l2_bits + s->cluster_bits);
}

static inline int offset_to_l2_index(BDRVQcow2State *s, uint64_t offset)
{
    return (offset >> s->cluster_bits) & (s->l2_size - 1);
}

/* Type of an L2 entry; compressed entries are recognised first. */
QCow2ClusterType qcow2_get_cluster_type(BlockDriverState *bs,
                                        uint64_t l2_entry);

static inline uint64_t qcow2_l2_host_offset(uint64_t l2_entry)
{
    return l2_entry & L2E_OFFSET_MASK;
}

/* Number of L2 entries needed for a virtual size, rounded to whole tables. */
static inline uint64_t qcow2_l1_entries_for(BDRVQcow2State *s, uint64_t size)
{
    uint64_t bytes_per_l2 = (uint64_t)s->l2_size << s->cluster_bits;

    return DIV_ROUND_UP(size, bytes_per_l2);
}

/* qcow2.c */
int qcow2_update_header(BlockDriverState *bs);
int qcow2_mark_dirty(BlockDriverState *bs);
int qcow2_mark_clean(BlockDriverState *bs);
int qcow2_mark_corrupt(BlockDriverState *bs);
/* Report an inconsistency found during I/O: mark corrupt, refuse writes. */
void qcow2_signal_corruption(BlockDriverState *bs, int64_t offset,
                             int64_t size, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

/* qcow2-refcount.c */
int qcow2_refcount_init(BlockDriverState *bs);
void qcow2_refcount_close(BlockDriverState *bs);
int qcow2_get_refcount(BlockDriverState *bs, int64_t cluster_index,
                       uint64_t *refcount);
int qcow2_update_cluster_refcount(BlockDriverState *bs, int64_t cluster_index,
                                  int64_t addend);
/* Allocate size bytes of contiguous clusters with refcount 1. */
int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size);
/*
 * Allocate size bytes (compressed data) packed after earlier such
 * allocations; every cluster touched gains one reference.
 */
int64_t qcow2_alloc_bytes(BlockDriverState *bs, uint64_t size);
/* Give back clusters whose references were dropped (through the limbo). */
void qcow2_free_clusters(BlockDriverState *bs, int64_t offset, int64_t size);
/* Free a cluster referenced by the L2 entry (normal, zero-alloc, compressed). */
void qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry);
/* Apply the limbo entries that are safe now; after_flush: a flush completed. */
int qcow2_process_limbo(BlockDriverState *bs, bool drain_all);
uint64_t qcow2_io_begin(BlockDriverState *bs);
void qcow2_io_end(BlockDriverState *bs, uint64_t seq);
int qcow2_check_refcounts(BlockDriverState *bs, BdrvCheckResult *res,
                          BdrvCheckMode fix);
int qcow2_write_caches(BlockDriverState *bs);
int qcow2_flush_caches(BlockDriverState *bs);

/* Overlap check (qcow2-refcount.c) */
void qcow2_metadata_add(BlockDriverState *bs, uint64_t offset, uint64_t size);
void qcow2_metadata_remove(BlockDriverState *bs, uint64_t offset,
                           uint64_t size);
int qcow2_metadata_build(BlockDriverState *bs);
/* Whether [offset, offset + size) touches a known metadata cluster. */
bool qcow2_metadata_overlaps(BlockDriverState *bs, uint64_t offset,
                             uint64_t size);
/* -EIO (image marked corrupt) if [offset, offset + size) hits metadata. */
int qcow2_check_data_write(BlockDriverState *bs, uint64_t offset,
                           uint64_t size);

/* qcow2-cluster.c */
int qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size);
int qcow2_write_l1_entry(BlockDriverState *bs, int l1_index);
/*
 * Look up guest offset: returns the cluster type; *bytes is shortened to
 * the run of clusters with the same type and contiguous host offsets;
 * *host_offset is the host byte offset for normal/zero-alloc clusters and
 * the raw L2 entry for compressed ones.
 */
int qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset,
                          uint64_t *bytes, uint64_t *host_offset,
                          QCow2ClusterType *type);
/*
 * Find where to write [offset, offset + *bytes): either in place (returns 0,
 * *m NULL) or in freshly allocated clusters (returns 0, *m registered in
 * s->cluster_allocs).  *bytes may shrink.  Waits for overlapping
 * allocations.  Called and returns with s->lock held.
 */
int qcow2_alloc_host_offset(BlockDriverState *bs, uint64_t offset,
                            uint64_t *bytes, uint64_t *host_offset,
                            QCowL2Meta **m);
/* Point the L2 entries at the written clusters and retire m. */
int qcow2_alloc_cluster_link_l2(BlockDriverState *bs, QCowL2Meta *m);
/* Give up an allocation whose data write failed. */
void qcow2_alloc_cluster_abort(BlockDriverState *bs, QCowL2Meta *m);
/* Remove m from the in-flight list (without linking) and wake waiters. */
void qcow2_retire_alloc(BlockDriverState *bs, QCowL2Meta *m);
/* Claim guest clusters for a write whose host clusters the caller chose. */
QCowL2Meta *qcow2_register_alloc(BlockDriverState *bs, uint64_t guest_offset,
                                 int nb_clusters, uint64_t alloc_offset);
void qcow2_wait_for_allocs(BlockDriverState *bs, uint64_t offset,
                           uint64_t bytes);
/*
 * Point the L2 entry of guest_offset at host_offset, whose new reference
 * the caller already counted; the old mapping is released.
 */
int qcow2_link_existing_cluster(BlockDriverState *bs, uint64_t guest_offset,
                                uint64_t host_offset, bool copied);
/* Zero or discard whole clusters in [offset, offset + bytes). */
int qcow2_cluster_zeroize(BlockDriverState *bs, uint64_t offset,
                          uint64_t bytes, bool unmap);
int qcow2_cluster_discard(BlockDriverState *bs, uint64_t offset,
                          uint64_t bytes);
/* Make whole clusters unallocated, freeing what they held (shrink). */
int qcow2_cluster_drop(BlockDriverState *bs, uint64_t offset, uint64_t bytes);
/* Point the L2 entry of guest_offset at compressed data at host_offset. */
int qcow2_link_compressed_cluster(BlockDriverState *bs, uint64_t guest_offset,
                                  uint64_t host_offset, int csize);
int qcow2_preallocate_metadata(BlockDriverState *bs, uint64_t old_size,
                               uint64_t new_size);
/* Decode a compressed descriptor into host byte offset and stored length. */
void qcow2_parse_compressed_l2_entry(BlockDriverState *bs, uint64_t l2_entry,
                                     uint64_t *coffset, int *csize);

/* qcow2-cache.c */
Qcow2Cache *qcow2_cache_create(BlockDriverState *bs, int num_tables,
                               int table_size);
void qcow2_cache_destroy(Qcow2Cache *c);
int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset,
                    void **table);
int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                          uint64_t offset, void **table);
void qcow2_cache_put(Qcow2Cache *c, void **table);
void qcow2_cache_entry_mark_dirty(Qcow2Cache *c, void *table);
/* The next write of c's entries must follow a flush of dependency. */
void qcow2_cache_set_dependency(Qcow2Cache *c, Qcow2Cache *dependency);
/* The next write of c's entries must follow a flush of the file. */
void qcow2_cache_depends_on_flush(Qcow2Cache *c);
int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c);
int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c);
/* Forget a table that is being freed (its content no longer matters). */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset);
/* Drop every clean entry (after a repair rewrote tables underneath). */
int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c);

/* qcow2-check.c */
/* Set COPIED in the active tables exactly where the refcount is 1. */
int qcow2_sync_copied_flags(BlockDriverState *bs);

/* qcow2-dedup.c */
typedef struct Qcow2DedupOptions {
    bool verify;
    uint64_t log_entries;           /* 0: derived from the image size */
    uint32_t max_incarnations;      /* 0: derived from the image size */
} Qcow2DedupOptions;

/* Open: parse the extension (before any repair, which must count it). */
int qcow2_dedup_open(BlockDriverState *bs, int flags, Error **errp);
/* Writable open, after repair: replay the journal, load filters. */
int qcow2_dedup_start(BlockDriverState *bs, Error **errp);
void qcow2_dedup_free(BlockDriverState *bs);
int qcow2_dedup_enable(BlockDriverState *bs, const Qcow2DedupOptions *o,
                       Error **errp);
int qcow2_dedup_disable(BlockDriverState *bs, Error **errp);
/* The options a stale or damaged extension still records (else defaults). */
void qcow2_dedup_stale_options(BlockDriverState *bs, Qcow2DedupOptions *o);
int qcow2_dedup_set_verify(BlockDriverState *bs, bool verify);
/* Whether o asks for another index geometry than the image has. */
bool qcow2_dedup_geometry_differs(BlockDriverState *bs,
                                  const Qcow2DedupOptions *o);
size_t qcow2_dedup_serialize_ext(BlockDriverState *bs, uint8_t *buf);
/* Writes go through the index (enabled, writable, not paused). */
bool qcow2_dedup_active(BlockDriverState *bs);
int qcow2_dedup_pwritev(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        QEMUIOVector *qiov);
/* The host cluster is named by the index: never write it in place. */
bool qcow2_dedup_cluster_indexed(BlockDriverState *bs, uint64_t host_offset);
/* Refcount hooks (qcow2-refcount.c). */
void qcow2_dedup_cluster_freed(BlockDriverState *bs, uint64_t cluster_index);
void qcow2_dedup_refcount_changed(BlockDriverState *bs, uint64_t old_refcount,
                                  uint64_t new_refcount);
void qcow2_dedup_cluster_unindex(BlockDriverState *bs, uint64_t cluster);
/* In every flush, after the limbo; flushes the file itself. */
int qcow2_dedup_flush(BlockDriverState *bs);
/* Before the image is marked clean. */
int qcow2_dedup_close(BlockDriverState *bs);
int qcow2_dedup_count_refs(BlockDriverState *bs,
                           int (*inc)(void *opaque, uint64_t offset,
                                      uint64_t size),
                           void *opaque);
int qcow2_dedup_check(BlockDriverState *bs, BdrvCheckResult *res,
                      BdrvCheckMode fix, bool deep);
bool qcow2_dedup_query(BlockDriverState *bs, JsonBuilder *b);
int qcow2_dedup_set_paused(BlockDriverState *bs, bool paused, Error **errp);
int qcow2_dedup_index_existing(BlockDriverState *bs, bool merge,
                               BlockDriverAmendStatusCB *cb, void *opaque);

/* qcow2.c: a write that bypasses the index. */
int qcow2_plain_pwritev(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        QEMUIOVector *qiov);

/* qcow2-snapshot.c */
int qcow2_read_snapshots(BlockDriverState *bs, Error **errp);
void qcow2_free_snapshots(BlockDriverState *bs);
int qcow2_snapshot_list(BlockDriverState *bs, QEMUSnapshotInfo **list);

/* qcow2-threads.c */
int qcow2_decompress(uint8_t compression_type, void *dest, size_t dest_size,
                     const void *src, size_t src_size);
ssize_t qcow2_compress(uint8_t compression_type, void *dest, size_t dest_size,
                       const void *src, size_t src_size);

/* Refcount entry access by width (2^order bits), in a refcount block. */
uint64_t qcow2_refcount_entry_get(const void *block, uint64_t index, int order);
void qcow2_refcount_entry_set(void *block, uint64_t index, int order,
                              uint64_t value);

#endif

/*
 * The block layer's public interface: open image graphs, do I/O on nodes,
 * create, check and query images.
 *
 * Threads: every I/O function here (bdrv_preadv .. bdrv_block_status) is
 * synchronous and may be called from any number of threads at once on the
 * same node; drivers serialise what must be serialised internally, so
 * independent requests really run in parallel.  Graph changes (open, unref,
 * reopen) must not race with I/O on the nodes concerned: drain first.
 *
 * Return values: 0 (or a count) on success, negative errno on failure.
 * Functions that take Error **errp also set a message there.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "qemu/option.h"
#include "qapi/error.h"

#include <json-glib/json-glib.h>

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;

/* Open flags */
#define BDRV_O_RDWR         0x0002  /* open for writing */
#define BDRV_O_NOCACHE      0x0020  /* bypass the host page cache (O_DIRECT) */
#define BDRV_O_NO_BACKING   0x0100  /* do not open the backing file */
#define BDRV_O_NO_FLUSH     0x0200  /* cache=unsafe: flushes do nothing */
#define BDRV_O_CHECK        0x1000  /* opened by check: no repair on open */
#define BDRV_O_UNMAP        0x4000  /* forward discards to the protocol */
#define BDRV_O_FORCE_SHARE  0x8000  /* -U: allow other writers */
#define BDRV_O_NO_IO        0x10000 /* only metadata will be queried */
#define BDRV_O_PROTOCOL     0x20000 /* filename is a protocol node, no format */

/* Request flags */
typedef enum BdrvRequestFlags {
    BDRV_REQ_ZERO_WRITE   = 0x2,   /* internal: write zeroes, no buffer */
    BDRV_REQ_MAY_UNMAP    = 0x4,   /* zero write may deallocate */
    BDRV_REQ_FUA          = 0x10,  /* data is durable when the call returns */
    BDRV_REQ_NO_FALLBACK  = 0x100, /* zero write: fail rather than write data */
    BDRV_REQ_NO_DEDUP     = 0x200, /* bypass inline deduplication */
} BdrvRequestFlags;

/* bdrv_block_status() result bits */
#define BDRV_BLOCK_DATA         0x01  /* reads come from a data area */
#define BDRV_BLOCK_ZERO         0x02  /* reads return zeroes */
#define BDRV_BLOCK_OFFSET_VALID 0x04  /* *map is a byte offset in *file */
#define BDRV_BLOCK_ALLOCATED    0x10  /* the content is defined at this layer */
#define BDRV_BLOCK_EOF          0x20  /* the range ends at end of file */
#define BDRV_BLOCK_COMPRESSED   0x40  /* stored compressed (no direct map) */
/* Driver hint: ask *file whether the mapped range is a hole (zeroes). */
#define BDRV_BLOCK_RECURSE      0x80

typedef enum PreallocMode {
    PREALLOC_MODE_OFF,
    PREALLOC_MODE_METADATA,
    PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
    PREALLOC_MODE__MAX,
} PreallocMode;

extern const char *const PreallocMode_str[PREALLOC_MODE__MAX];
/* -1 if name is not a preallocation mode. */
int prealloc_mode_parse(const char *name);

typedef enum BdrvCheckMode {
    BDRV_FIX_LEAKS  = 1,
    BDRV_FIX_ERRORS = 2,
    BDRV_CHECK_DEEP = 4,    /* also re-read data the format can verify */
} BdrvCheckMode;

typedef struct BlockFragInfo {
    uint64_t allocated_clusters;
    uint64_t total_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
} BlockFragInfo;

typedef struct BdrvCheckResult {
    int corruptions;
    int leaks;
    int check_errors;
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;
    BlockFragInfo bfi;
} BdrvCheckResult;

/* An internal snapshot, as listed by bdrv_snapshot_list(). */
typedef struct QEMUSnapshotInfo {
    char *id_str;
    char *name;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;            /* UINT64_MAX: not recorded */
} QEMUSnapshotInfo;

typedef struct BlockDriverInfo {
    int cluster_size;
    int64_t vm_state_offset;
    bool is_dirty;
} BlockDriverInfo;

/* Per-node I/O counters (query-blockstats). */
typedef struct BlockAcctStats {
    uint64_t rd_bytes, wr_bytes, zero_bytes, discard_bytes;
    uint64_t rd_ops, wr_ops, zero_ops, discard_ops, flush_ops;
    uint64_t failed_rd_ops, failed_wr_ops, failed_flush_ops;
    uint64_t rd_total_time_ns, wr_total_time_ns, flush_total_time_ns;
    uint64_t wr_highest_offset;
} BlockAcctStats;

/* Progress callback for long operations (amend, convert): done of total. */
typedef void BlockDriverAmendStatusCB(BlockDriverState *bs, int64_t done,
                                      int64_t total, void *opaque);

/* Registry */
void bdrv_init(void);
BlockDriver *bdrv_find_format(const char *format_name);
const char *bdrv_get_format_name(const BlockDriverState *bs);
/* Calls fn for each registered format name, sorted. */
void bdrv_iterate_format(void (*fn)(void *opaque, const char *name),
                         void *opaque);
const char *bdrv_driver_name(const BlockDriver *drv);
const QemuOptDesc *bdrv_driver_create_opts(const BlockDriver *drv);
/* Create options of the format merged with those of the "file" protocol. */
QemuOptDesc *bdrv_create_opts_with_protocol(const BlockDriver *drv);

/*
 * Open a node graph.  options (taken over, may be NULL) use QEMU's flat
 * keys: driver, node-name, read-only, file (node name) or file.*,
 * backing ("" or "null" for none, a node name, or backing.*),
 * cache.direct, cache.no-flush, discard (ignore|unmap),
 * detect-zeroes (off|on|unmap), and driver-specific keys.  A format is
 * probed when no driver is named.  Options no driver consumed are an error.
 */
BlockDriverState *bdrv_open(const char *filename, QDict *options, int flags,
                            Error **errp);
/* Open a format driver on an already open node (used while creating). */
BlockDriverState *bdrv_open_format_on(BlockDriverState *file,
                                      BlockDriver *drv, QDict *options,
                                      int flags, Error **errp);
void bdrv_ref(BlockDriverState *bs);
void bdrv_unref(BlockDriverState *bs);

/* Named nodes (storage daemon, QMP). */
BlockDriverState *bdrv_find_node(const char *node_name);
/* Calls fn for each node that has a node name, in creation order. */
void bdrv_iterate_named_nodes(void (*fn)(BlockDriverState *bs, void *opaque),
                              void *opaque);
const char *bdrv_get_node_name(const BlockDriverState *bs);
const char *bdrv_get_filename(const BlockDriverState *bs);
BlockDriverState *bdrv_get_file(const BlockDriverState *bs);
BlockDriverState *bdrv_get_backing(const BlockDriverState *bs);
/* The backing file name as recorded in the image, and its format. */
const char *bdrv_get_backing_filename(const BlockDriverState *bs);
const char *bdrv_get_backing_format(const BlockDriverState *bs);
bool bdrv_is_read_only(const BlockDriverState *bs);
int bdrv_get_flags(const BlockDriverState *bs);

/*
 * Fill in create option defaults that depend on other options (qcow2:
 * deduplicated images default to 4 KiB clusters).  Call before printing or
 * using the options.
 */
void bdrv_create_opts_defaults(BlockDriver *drv, QDict *opts);

/* Image creation: create the file with the protocol, then the format. */
int bdrv_create(BlockDriver *drv, const char *filename, QDict *opts,
                Error **errp);

/* I/O */
int bdrv_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, BdrvRequestFlags flags);
int bdrv_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 QEMUIOVector *qiov, BdrvRequestFlags flags);
int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, BdrvRequestFlags flags);
int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags);
/* Write, then make it durable before returning. */
int bdrv_pwrite_sync(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     const void *buf, BdrvRequestFlags flags);
int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags);
int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
int bdrv_pwrite_compressed(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov);
/* Make every completed write of bs and its children durable. */
int bdrv_flush(BlockDriverState *bs);
/* Read or write the VM state area at pos (qcow2 keeps it after the disk). */
int bdrv_vmstate_rw(BlockDriverState *bs, QEMUIOVector *qiov, int64_t pos,
                    bool write);
int64_t bdrv_getlength(BlockDriverState *bs);
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);
int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, Error **errp);

/* Wait until no request is in flight on bs; new ones wait until the end. */
void bdrv_drained_begin(BlockDriverState *bs);
void bdrv_drained_end(BlockDriverState *bs);

/*
 * Status of [offset, offset + bytes) in bs alone: returns BDRV_BLOCK_* bits
 * for the first *pnum bytes (which all share that status).  *map and *file
 * are set when BDRV_BLOCK_OFFSET_VALID.  Negative errno on error.
 */
int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum, int64_t *map, BlockDriverState **file);
/*
 * The same through the backing chain down to (not including) base (NULL:
 * the whole chain).  *depth is the chain layer that defines the range
 * (0 = bs), or the chain length when no layer does.
 */
int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base,
                            int64_t offset, int64_t bytes, int64_t *pnum,
                            int64_t *map, BlockDriverState **file, int *depth);
/* 1 if allocated in bs itself, 0 if not, for *pnum bytes; or -errno. */
int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum);
int bdrv_is_allocated_above(BlockDriverState *top, BlockDriverState *base,
                            int64_t offset, int64_t bytes, int64_t *pnum);

/* Maintenance */
int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res, BdrvCheckMode fix);
int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);
/*
 * The internal snapshots of bs: their number (0 for formats without any),
 * with *list set to a new array; free it with bdrv_snapshot_list_free().
 */
int bdrv_snapshot_list(BlockDriverState *bs, QEMUSnapshotInfo **list);
void bdrv_snapshot_list_free(QEMUSnapshotInfo *list, int n);
/* Format-specific information as a JSON object {"type":.., "data":{..}}, or NULL. */
JsonNode *bdrv_get_specific_info(BlockDriverState *bs);
int bdrv_amend_options(BlockDriverState *bs, QDict *opts,
                       BlockDriverAmendStatusCB *cb, void *opaque,
                       bool force, Error **errp);
const QemuOptDesc *bdrv_amend_opts(const BlockDriver *drv);
int bdrv_change_backing_file(BlockDriverState *bs, const char *backing_file,
                             const char *backing_fmt, Error **errp);
/* A consistent copy of the node's I/O counters. */
void bdrv_get_stats(BlockDriverState *bs, BlockAcctStats *out);
/* "off", "on" or "unmap". */
const char *bdrv_get_detect_zeroes(const BlockDriverState *bs);

/*
 * Inline deduplication control.  Nodes whose format has no deduplication
 * (or where it is not enabled) fail with -ENOTSUP and a message naming the
 * node.  The paused state is persisted in the image.
 */
int bdrv_dedup_set_paused(BlockDriverState *bs, bool paused, Error **errp);
/* Deduplication metrics as a JSON object, or NULL if not enabled. */
JsonNode *bdrv_dedup_query(BlockDriverState *bs);

#endif

/*
 * The interface between the block layer core and its drivers.
 *
 * A driver is a table of functions (BlockDriver); a node of the graph is a
 * BlockDriverState whose opaque points at the driver's own state.  A format
 * node (qcow2, raw) reads and writes its image through bs->file, a protocol
 * node (file) talks to the host.  Drivers see requests that the core
 * (block/io.c) has already checked against the node length and, for nodes
 * with request_alignment > 1, aligned with read-modify-write.
 *
 * Driver callbacks may be called from several threads at once; a driver
 * protects its own metadata (qcow2 holds one mutex for metadata and drops it
 * around data I/O).
 */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block.h"

typedef enum BdrvDetectZeroes {
    BDRV_DETECT_ZEROES_OFF,
    BDRV_DETECT_ZEROES_ON,
    BDRV_DETECT_ZEROES_UNMAP,
} BdrvDetectZeroes;

struct BlockDriver {
    const char *format_name;
    size_t instance_size;
    /* A protocol driver opens host files; a format driver needs bs->file. */
    bool is_protocol;
    bool supports_backing;

    /* Score 0..100 of how sure the driver is that buf is its format. */
    int (*bdrv_probe)(const uint8_t *buf, int buf_size, const char *filename);

    /*
     * Open: consume (qdict_del) every option of options the driver knows,
     * leaving the rest for the core to reject.  For formats bs->file is open.
     * The driver fills bs->backing_file / backing_format if it has one.
     */
    int (*bdrv_open)(BlockDriverState *bs, QDict *options, int flags,
                     Error **errp);
    /* Write back everything and free driver state. */
    void (*bdrv_close)(BlockDriverState *bs);

    /* Protocols: create an empty host object (opts: size, preallocation). */
    int (*bdrv_create_file)(const char *filename, QDict *opts, Error **errp);
    /* Formats: lay the format down on the open, empty, writable file. */
    int (*bdrv_create)(BlockDriverState *file, QDict *opts, Error **errp);
    const QemuOptDesc *create_opts;
    /* See bdrv_create_opts_defaults(). */
    void (*bdrv_create_defaults)(QDict *opts);
    /* Options qemu-img amend accepts (NULL: amend unsupported). */
    const QemuOptDesc *amend_opts;

    int (*bdrv_preadv)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       QEMUIOVector *qiov, BdrvRequestFlags flags);
    int (*bdrv_pwritev)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        QEMUIOVector *qiov, BdrvRequestFlags flags);
    /* -ENOTSUP makes the core write a zero buffer (unless NO_FALLBACK). */
    int (*bdrv_pwrite_zeroes)(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags);
    int (*bdrv_pdiscard)(BlockDriverState *bs, int64_t offset, int64_t bytes);
    int (*bdrv_pwrite_compressed)(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, QEMUIOVector *qiov);
    /* Formats: write cached metadata to bs->file (the core then flushes it). */
    int (*bdrv_flush_to_os)(BlockDriverState *bs);
    /* Protocols: make written data durable (fdatasync). */
    int (*bdrv_flush_to_disk)(BlockDriverState *bs);

    /* See bdrv_block_status(); bytes > 0, offset < length. */
    int (*bdrv_block_status)(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, int64_t *pnum, int64_t *map,
                             BlockDriverState **file);
    int64_t (*bdrv_getlength)(BlockDriverState *bs);
    int64_t (*bdrv_get_allocated_file_size)(BlockDriverState *bs);
    int (*bdrv_truncate)(BlockDriverState *bs, int64_t offset, bool exact,
                         PreallocMode prealloc, Error **errp);

    int (*bdrv_check)(BlockDriverState *bs, BdrvCheckResult *res,
                      BdrvCheckMode fix);
    int (*bdrv_get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    int (*bdrv_snapshot_list)(BlockDriverState *bs, QEMUSnapshotInfo **list);
    /* VM state I/O; formats without a VM state area leave these NULL. */
    int (*bdrv_vmstate_rw)(BlockDriverState *bs, QEMUIOVector *qiov,
                           int64_t pos, bool write);
    /* Add the members of the "data" object of the format-specific info. */
    void (*bdrv_get_specific_info)(BlockDriverState *bs, JsonBuilder *data);
    int (*bdrv_amend_options)(BlockDriverState *bs, QDict *opts,
                              BlockDriverAmendStatusCB *cb, void *opaque,
                              bool force, Error **errp);
    int (*bdrv_change_backing_file)(BlockDriverState *bs,
                                    const char *backing_file,
                                    const char *backing_fmt);

    /* Inline deduplication (see bdrv_dedup_set_paused()). */
    int (*bdrv_dedup_set_paused)(BlockDriverState *bs, bool paused,
                                 Error **errp);
    /* Add the metric members of the dedup object; false if not enabled. */
    bool (*bdrv_dedup_query)(BlockDriverState *bs, JsonBuilder *b);
};

/* Tracked request (block/io.c), for serialising read-modify-write. */
typedef struct BdrvTrackedRequest {
    int64_t offset;
    int64_t bytes;
    bool serialising;
    struct BdrvTrackedRequest *next;
} BdrvTrackedRequest;

struct BlockDriverState {
    BlockDriver *drv;
    void *opaque;
    int refcnt;

    char filename[PATH_MAX];
    char node_name[32];
    int open_flags;
    bool read_only;

    BlockDriverState *file;
    BlockDriverState *backing;
    /* As recorded in the image header (empty if none). */
    char backing_file[PATH_MAX];
    char backing_format[16];

    /* Smallest unit the driver can do I/O in; the core aligns to it. */
    uint32_t request_alignment;
    BdrvDetectZeroes detect_zeroes;

    /* Request tracking (block/io.c); all under reqs_lock. */
    GMutex reqs_lock;
    GCond reqs_cond;
    int in_flight;
    int quiesce_counter;
    BdrvTrackedRequest *tracked_reqs;

    GMutex stats_lock;
    BlockAcctStats stats;
};

extern BlockDriver bdrv_file;
extern BlockDriver bdrv_raw;
extern BlockDriver bdrv_qcow2;
extern BlockDriver bdrv_record;

/* Open a child node for a driver (used by block.c for file/backing). */
BlockDriverState *bdrv_open_child(const char *filename, QDict *options,
                                  const char *child_name, int flags,
                                  Error **errp);

#endif

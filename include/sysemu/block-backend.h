/*
 * BlockBackend: the handle a user of the block layer holds (qemu-io,
 * qemu-img, an NBD export).  It owns a reference to the root node, checks
 * requests against the device length and emulates writethrough caching.
 */
#ifndef SYSEMU_BLOCK_BACKEND_H
#define SYSEMU_BLOCK_BACKEND_H

#include "block/block.h"

typedef struct BlockBackend BlockBackend;

/* Open filename (options and flags as for bdrv_open) behind a new backend. */
BlockBackend *blk_new_open(const char *filename, QDict *options, int flags,
                           Error **errp);
/* A new backend on an existing node (takes its own reference). */
BlockBackend *blk_new_with_bs(BlockDriverState *bs, bool writable,
                              Error **errp);
void blk_unref(BlockBackend *blk);

BlockDriverState *blk_bs(BlockBackend *blk);
bool blk_is_writable(BlockBackend *blk);
int64_t blk_getlength(BlockBackend *blk);

/* Writethrough (false) flushes after every write before completing it. */
void blk_set_enable_write_cache(BlockBackend *blk, bool wce);
bool blk_enable_write_cache(BlockBackend *blk);

/* All return 0 or -errno; requests beyond the end fail with -EIO. */
int blk_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
               QEMUIOVector *qiov, BdrvRequestFlags flags);
int blk_pwritev(BlockBackend *blk, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, BdrvRequestFlags flags);
int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags);
int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags);
int blk_pwrite_compressed(BlockBackend *blk, int64_t offset, int64_t bytes,
                          const void *buf);
int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int blk_flush(BlockBackend *blk);
int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, Error **errp);
void blk_drain(BlockBackend *blk);
/* The VM state area of formats that have one (qcow2); -ENOTSUP otherwise. */
int blk_save_vmstate(BlockBackend *blk, const void *buf, int64_t pos,
                     int64_t size);
int blk_load_vmstate(BlockBackend *blk, void *buf, int64_t pos, int64_t size);

#endif

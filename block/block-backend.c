/*
 * BlockBackend: a user's handle on a node graph (see sysemu/block-backend.h).
 */
#include "qemu/osdep.h"
#include "sysemu/block-backend.h"
#include "block/block_int.h"

struct BlockBackend {
    BlockDriverState *root;
    bool writable;
    bool enable_write_cache;
};

BlockBackend *blk_new_open(const char *filename, QDict *options, int flags,
                           Error **errp)
{
    BlockDriverState *bs = bdrv_open(filename, options, flags, errp);
    BlockBackend *blk;

    if (!bs) {
        return NULL;
    }
    blk = g_new0(BlockBackend, 1);
    blk->root = bs;
    blk->writable = flags & BDRV_O_RDWR;
    blk->enable_write_cache = true;
    return blk;
}

BlockBackend *blk_new_with_bs(BlockDriverState *bs, bool writable,
                              Error **errp)
{
    BlockBackend *blk;

    if (writable && bdrv_is_read_only(bs)) {
        error_setg(errp, "Block node '%s' is read-only", bs->node_name);
        return NULL;
    }
    blk = g_new0(BlockBackend, 1);
    bdrv_ref(bs);
    blk->root = bs;
    blk->writable = writable;
    blk->enable_write_cache = true;
    return blk;
}

void blk_unref(BlockBackend *blk)
{
    if (blk) {
        bdrv_unref(blk->root);
        g_free(blk);
    }
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    return blk->root;
}

bool blk_is_writable(BlockBackend *blk)
{
    return blk->writable;
}

int64_t blk_getlength(BlockBackend *blk)
{
    return bdrv_getlength(blk->root);
}

void blk_set_enable_write_cache(BlockBackend *blk, bool wce)
{
    blk->enable_write_cache = wce;
}

bool blk_enable_write_cache(BlockBackend *blk)
{
    return blk->enable_write_cache;
}

/* Requests must lie inside the device; writes need a writable backend. */
static int blk_check_request(BlockBackend *blk, int64_t offset, int64_t bytes,
                             bool write)
{
    int64_t len;

    if (offset < 0 || bytes < 0) {
        return -EIO;
    }
    if (write && !blk->writable) {
        return -EACCES;
    }
    len = blk_getlength(blk);
    if (len < 0) {
        return len;
    }
    if (offset > len || len - offset < bytes) {
        return -EIO;
    }
    return 0;
}

static BdrvRequestFlags blk_write_flags(BlockBackend *blk,
                                        BdrvRequestFlags flags)
{
    return blk->enable_write_cache ? flags : (flags | BDRV_REQ_FUA);
}

int blk_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
               QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    int ret = blk_check_request(blk, offset, bytes, false);

    return ret < 0 ? ret : bdrv_preadv(blk->root, offset, bytes, qiov, flags);
}

int blk_pwritev(BlockBackend *blk, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    int ret = blk_check_request(blk, offset, bytes, true);

    if (ret < 0) {
        return ret;
    }
    return bdrv_pwritev(blk->root, offset, bytes, qiov,
                        blk_write_flags(blk, flags));
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, bytes);
    return blk_preadv(blk, offset, bytes, &qiov, flags);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, (void *)buf, bytes);
    return blk_pwritev(blk, offset, bytes, &qiov, flags);
}

int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    int ret = blk_check_request(blk, offset, bytes, true);

    if (ret < 0) {
        return ret;
    }
    return bdrv_pwrite_zeroes(blk->root, offset, bytes,
                              blk_write_flags(blk, flags));
}

int blk_pwrite_compressed(BlockBackend *blk, int64_t offset, int64_t bytes,
                          const void *buf)
{
    QEMUIOVector qiov;
    int ret = blk_check_request(blk, offset, bytes, true);

    if (ret < 0) {
        return ret;
    }
    qemu_iovec_init_buf(&qiov, (void *)buf, bytes);
    ret = bdrv_pwrite_compressed(blk->root, offset, bytes, &qiov);
    if (ret >= 0 && !blk->enable_write_cache) {
        ret = bdrv_flush(blk->root);
    }
    return ret;
}

int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    int ret = blk_check_request(blk, offset, bytes, true);

    return ret < 0 ? ret : bdrv_pdiscard(blk->root, offset, bytes);
}

int blk_flush(BlockBackend *blk)
{
    return bdrv_flush(blk->root);
}

int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, Error **errp)
{
    if (!blk->writable) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    return bdrv_truncate(blk->root, offset, exact, prealloc, errp);
}

int blk_save_vmstate(BlockBackend *blk, const void *buf, int64_t pos,
                     int64_t size)
{
    QEMUIOVector qiov;

    if (!blk->writable) {
        return -EACCES;
    }
    qemu_iovec_init_buf(&qiov, (void *)buf, size);
    return bdrv_vmstate_rw(blk->root, &qiov, pos, true);
}

int blk_load_vmstate(BlockBackend *blk, void *buf, int64_t pos, int64_t size)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, size);
    return bdrv_vmstate_rw(blk->root, &qiov, pos, false);
}

void blk_drain(BlockBackend *blk)
{
    bdrv_drained_begin(blk->root);
    bdrv_drained_end(blk->root);
}

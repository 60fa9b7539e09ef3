/*
 * The "raw" format: the image is the file, byte for byte.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"

static int raw_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    (void)buf;
    (void)buf_size;
    (void)filename;
    /* Anything can be raw; every real format outbids this. */
    return 1;
}

static int raw_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    (void)options;
    (void)flags;
    (void)errp;
    bs->request_alignment = 1;
    return 0;
}

static int raw_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    return bdrv_preadv(bs->file, offset, bytes, qiov, flags);
}

static int raw_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    return bdrv_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int raw_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    return bdrv_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int raw_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    return bdrv_pdiscard(bs->file, offset, bytes);
}

static int raw_block_status(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file)
{
    int ret = bdrv_block_status(bs->file, offset, bytes, pnum, map, file);

    if (ret >= 0 && *pnum == 0) {
        /* The image is longer than the file (not yet written): zeroes. */
        *pnum = bytes;
        *map = offset;
        *file = bs->file;
        ret = BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    return ret < 0 ? ret : ret & ~(BDRV_BLOCK_EOF | BDRV_BLOCK_ALLOCATED);
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    return bdrv_getlength(bs->file);
}

static int raw_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                        PreallocMode prealloc, Error **errp)
{
    return bdrv_truncate(bs->file, offset, exact, prealloc, errp);
}

/* The file is the image: size it (in whole sectors, like QEMU). */
static int raw_create(BlockDriverState *file, QDict *opts, Error **errp)
{
    uint64_t size = QEMU_ALIGN_UP(qemu_opt_get_size(opts, "size", 0), 512);
    const char *mode = qemu_opt_get(opts, "preallocation");
    int prealloc = mode ? prealloc_mode_parse(mode) : PREALLOC_MODE_OFF;

    if (prealloc < 0) {
        error_setg(errp, "invalid parameter value: %s", mode);
        return -EINVAL;
    }
    /* The file protocol judges the mode (metadata means nothing to it). */
    return bdrv_truncate(file, size, true, prealloc, errp);
}

static int raw_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    (void)bs;
    (void)bdi;
    return 0;
}

static const QemuOptDesc raw_create_opts[] = {
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { NULL },
};

BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = 1,
    .bdrv_probe = raw_probe,
    .bdrv_open = raw_open,
    .bdrv_create = raw_create,
    .create_opts = raw_create_opts,
    .bdrv_preadv = raw_preadv,
    .bdrv_pwritev = raw_pwritev,
    .bdrv_pwrite_zeroes = raw_pwrite_zeroes,
    .bdrv_pdiscard = raw_pdiscard,
    .bdrv_block_status = raw_block_status,
    .bdrv_getlength = raw_getlength,
    .bdrv_truncate = raw_truncate,
    .bdrv_get_info = raw_get_info,
};

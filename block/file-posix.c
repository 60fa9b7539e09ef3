/*
 * The "file" protocol: images in host files (or block devices) accessed
 * with pread/pwrite from whichever thread issues the request.
 *
 * With cache.direct=on the file is opened O_DIRECT; the core then aligns
 * request offsets and lengths to request_alignment, and this driver bounces
 * buffers whose memory is not aligned.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qemu/cutils.h"
#include "qemu/units.h"

#include <linux/falloc.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

typedef struct BDRVFileState {
    int fd;
    bool direct;
} BDRVFileState;

static int file_probe_alignment(int fd)
{
    void *buf = qemu_blockalign(4096);
    int align = 4096;

    /* A 512-byte O_DIRECT read fails with EINVAL on 4k-sector storage. */
    if (pread(fd, buf, 512, 0) >= 0) {
        align = 512;
    }
    qemu_vfree(buf);
    return align;
}

static int file_open(BlockDriverState *bs, QDict *options, int flags,
                     Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int oflags = O_CLOEXEC | ((flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY);
    const char *aio = qdict_get_str(options, "aio");

    if (aio && strcmp(aio, "threads")) {
        error_setg(errp, "aio=%s is not supported (use aio=threads)", aio);
        return -ENOTSUP;
    }
    qdict_del(options, "aio");
    qdict_del(options, "filename");
    qdict_del(options, "locking");
    if (!bs->filename[0]) {
        error_setg(errp, "The 'file' block driver requires a file name");
        return -EINVAL;
    }
    if (flags & BDRV_O_NOCACHE) {
        oflags |= O_DIRECT;
        s->direct = true;
    }
    s->fd = open(bs->filename, oflags);
    if (s->fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not open '%s'", bs->filename);
        return -err;
    }
    if (s->direct) {
        bs->request_alignment = file_probe_alignment(s->fd);
    }
    return 0;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    close(s->fd);
}

static bool file_qiov_aligned(BDRVFileState *s, QEMUIOVector *qiov)
{
    if (!s->direct) {
        return true;
    }
    for (int i = 0; i < qiov->niov; i++) {
        if ((uintptr_t)qiov->iov[i].iov_base % QEMU_BUFFER_ALIGN ||
            qiov->iov[i].iov_len % QEMU_BUFFER_ALIGN) {
            return false;
        }
    }
    return true;
}

/* Full-length preadv/pwritev over a copy of the vector; reads past EOF are zero. */
static int file_rw_vector(BDRVFileState *s, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, bool write)
{
    QEMUIOVector rest;
    int64_t done = 0;
    int ret = 0;

    while (done < bytes) {
        ssize_t n;

        qemu_iovec_init_slice(&rest, qiov, done, bytes - done);
        do {
            n = write ? pwritev(s->fd, rest.iov, MIN(rest.niov, IOV_MAX),
                                offset + done)
                      : preadv(s->fd, rest.iov, MIN(rest.niov, IOV_MAX),
                               offset + done);
        } while (n < 0 && errno == EINTR);
        qemu_iovec_destroy(&rest);
        if (n < 0) {
            ret = -errno;
            break;
        }
        if (n == 0) {
            if (write) {
                ret = -EIO;
            } else {
                qemu_iovec_memset(qiov, done, 0, bytes - done);
                done = bytes;
            }
            break;
        }
        done += n;
    }
    return ret;
}

static int file_rw(BlockDriverState *bs, int64_t offset, int64_t bytes,
                   QEMUIOVector *qiov, bool write)
{
    BDRVFileState *s = bs->opaque;
    QEMUIOVector bounce_qiov;
    void *bounce;
    int ret;

    if (file_qiov_aligned(s, qiov)) {
        return file_rw_vector(s, offset, bytes, qiov, write);
    }
    bounce = qemu_try_blockalign(bytes);
    if (!bounce) {
        return -ENOMEM;
    }
    if (write) {
        qemu_iovec_to_buf(qiov, 0, bounce, bytes);
    }
    qemu_iovec_init_buf(&bounce_qiov, bounce, bytes);
    ret = file_rw_vector(s, offset, bytes, &bounce_qiov, write);
    if (!write && ret >= 0) {
        qemu_iovec_from_buf(qiov, 0, bounce, bytes);
    }
    qemu_vfree(bounce);
    return ret;
}

static int file_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    (void)flags;
    return file_rw(bs, offset, bytes, qiov, false);
}

static int file_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    (void)flags;
    return file_rw(bs, offset, bytes, qiov, true);
}

static int64_t file_fd_length(int fd)
{
    off_t len = lseek(fd, 0, SEEK_END);

    return len < 0 ? -errno : len;
}

static int file_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int64_t len = file_fd_length(s->fd);
    int mode = (flags & BDRV_REQ_MAY_UNMAP)
               ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
               : FALLOC_FL_ZERO_RANGE;

    if (len < 0) {
        return len;
    }
    if (offset >= len) {
        /* Growing the file leaves zeroes behind its old end. */
        return ftruncate(s->fd, offset + bytes) < 0 ? -errno : 0;
    }
    if (fallocate(s->fd, mode, offset, bytes) < 0) {
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? -ENOTSUP : -errno;
    }
    if (offset + bytes > len && (mode & FALLOC_FL_KEEP_SIZE) &&
        ftruncate(s->fd, offset + bytes) < 0) {
        return -errno;
    }
    return 0;
}

static int file_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVFileState *s = bs->opaque;

    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  offset, bytes) < 0) {
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? -ENOTSUP : -errno;
    }
    return 0;
}

static int file_flush_to_disk(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int64_t file_getlength(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    return file_fd_length(s->fd);
}

static int64_t file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static int file_block_status(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, int64_t *pnum, int64_t *map,
                             BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    off_t data, hole;

    *map = offset;
    *file = bs;
    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        /* Only a hole up to the end of the file follows. */
        *pnum = bytes;
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data < 0) {
        *pnum = bytes;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    hole = lseek(s->fd, offset, SEEK_HOLE);
    *pnum = (hole < 0 || hole <= offset) ? bytes : MIN(bytes, hole - offset);
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int file_preallocate(int fd, int64_t old_len, int64_t new_len,
                            PreallocMode prealloc, Error **errp)
{
    int ret = 0;

    switch (prealloc) {
    case PREALLOC_MODE_OFF:
        break;
    case PREALLOC_MODE_FALLOC:
        ret = -posix_fallocate(fd, old_len, new_len - old_len);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not preallocate data");
        }
        break;
    case PREALLOC_MODE_FULL: {
        size_t chunk = 1 * MiB;
        g_autofree char *zeros = g_malloc0(chunk);
        for (int64_t off = old_len; off < new_len && ret == 0; off += chunk) {
            size_t n = MIN((int64_t)chunk, new_len - off);
            if (pwrite(fd, zeros, n, off) != (ssize_t)n) {
                ret = -errno ? -errno : -EIO;
                error_setg_errno(errp, -ret, "Could not write zeros for "
                                 "preallocation");
            }
        }
        break;
    }
    default:
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   PreallocMode_str[prealloc]);
        ret = -ENOTSUP;
    }
    return ret;
}

static int file_resize(int fd, int64_t offset, PreallocMode prealloc,
                       Error **errp)
{
    int64_t old_len = file_fd_length(fd);

    if (old_len < 0) {
        error_setg_errno(errp, -old_len, "Could not get file length");
        return old_len;
    }
    if (prealloc != PREALLOC_MODE_OFF && offset < old_len) {
        error_setg(errp, "Preallocation is only possible when growing");
        return -ENOTSUP;
    }
    if (ftruncate(fd, offset) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not resize file");
        return -err;
    }
    return file_preallocate(fd, old_len, offset, prealloc, errp);
}

static int file_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int64_t len = file_fd_length(s->fd);

    if (!exact && len >= offset && prealloc == PREALLOC_MODE_OFF) {
        return 0;
    }
    return file_resize(s->fd, offset, prealloc, errp);
}

static int file_create(const char *filename, QDict *opts, Error **errp)
{
    uint64_t size = qemu_opt_get_size(opts, "size", 0);
    const char *mode = qemu_opt_get(opts, "preallocation");
    int prealloc = mode ? prealloc_mode_parse(mode) : PREALLOC_MODE_OFF;
    int fd, ret;

    if (prealloc < 0 || prealloc == PREALLOC_MODE_METADATA) {
        error_setg(errp, "Invalid preallocation mode: '%s'", mode);
        return -EINVAL;
    }
    if (size > INT64_MAX) {
        error_setg(errp, "Image size too large");
        return -EINVAL;
    }
    fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not create '%s'", filename);
        return ret;
    }
    ret = file_resize(fd, size, prealloc, errp);
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not close the new file");
    }
    return ret;
}

static const QemuOptDesc file_create_opts[] = {
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", QEMU_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", "off" },
    { "nocow", QEMU_OPT_BOOL,
      "Turn off copy-on-write (valid only on btrfs)", "off" },
    { NULL },
};

BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(BDRVFileState),
    .is_protocol = true,
    .bdrv_open = file_open,
    .bdrv_close = file_close,
    .bdrv_create_file = file_create,
    .create_opts = file_create_opts,
    .bdrv_preadv = file_preadv,
    .bdrv_pwritev = file_pwritev,
    .bdrv_pwrite_zeroes = file_pwrite_zeroes,
    .bdrv_pdiscard = file_pdiscard,
    .bdrv_flush_to_disk = file_flush_to_disk,
    .bdrv_block_status = file_block_status,
    .bdrv_getlength = file_getlength,
    .bdrv_get_allocated_file_size = file_get_allocated_file_size,
    .bdrv_truncate = file_truncate,
};

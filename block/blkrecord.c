/*
 * The "record" filter: passes every request through to its file child and
 * appends each change the child completes, and each completed flush, to a
 * log (format in blkrecord.h).  The crash simulator (tests/crash/) replays
 * the log to build the file states a power cut could leave behind.
 *
 *   driver=qcow2,file.driver=record,file.log=LOG,
 *   file.file.driver=file,file.file.filename=IMG
 *
 * Invariants:
 * - A change is logged after the child completed it and before the request
 *   returns, so the log order is a valid completion order, and every change
 *   a flush covers is in the log before that flush's record.
 * - A FLUSH record names how many records the log held when the flush was
 *   issued: concurrent writes that complete during the flush are logged
 *   before the record but not claimed durable by it.
 * - The log is written unbuffered: after a request returns, its record is
 *   in the log file and the log's size tells how far the log has come.
 * - A failure to log fails the request: a silently missing record would
 *   make the simulator check states the driver could not have produced.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "blkrecord.h"

typedef struct BDRVRecordState {
    int log_fd;
    /* Serialises appends and guards records. */
    GMutex lock;
    uint64_t records;
} BDRVRecordState;

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        len -= n;
    }
    return 0;
}

/* Append one record; qiov (WRITE only) holds its data, bytes of it. */
static int record_append(BDRVRecordState *s, BlkRecordType type,
                         uint64_t offset, uint64_t bytes,
                         const QEMUIOVector *qiov)
{
    uint8_t hdr[BLKRECORD_HEADER_LEN] = { 0 };
    uint64_t left = bytes;
    int ret;

    stl_be_p(hdr, type);
    stq_be_p(hdr + 8, offset);
    stq_be_p(hdr + 16, bytes);

    g_mutex_lock(&s->lock);
    ret = write_full(s->log_fd, hdr, sizeof(hdr));
    for (int i = 0; qiov && ret == 0 && left > 0; i++) {
        size_t n = MIN(qiov->iov[i].iov_len, left);
        ret = write_full(s->log_fd, qiov->iov[i].iov_base, n);
        left -= n;
    }
    if (ret == 0) {
        s->records++;
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

static int record_open(BlockDriverState *bs, QDict *options, int flags,
                       Error **errp)
{
    BDRVRecordState *s = bs->opaque;
    const char *log = qdict_get_str(options, "log");
    int ret;

    (void)flags;
    if (!log || !*log) {
        error_setg(errp, "The 'record' driver requires the option 'log'");
        return -EINVAL;
    }
    s->log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->log_fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not create the log '%s'", log);
        return ret;
    }
    ret = write_full(s->log_fd, BLKRECORD_MAGIC, BLKRECORD_MAGIC_LEN);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the log '%s'", log);
        close(s->log_fd);
        return ret;
    }
    qdict_del(options, "log");
    g_mutex_init(&s->lock);
    /* The core aligns requests for us as it would for the child. */
    bs->request_alignment = bs->file->request_alignment;
    return 0;
}

static void record_close(BlockDriverState *bs)
{
    BDRVRecordState *s = bs->opaque;

    close(s->log_fd);
    g_mutex_clear(&s->lock);
}

static int record_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    return bdrv_preadv(bs->file, offset, bytes, qiov, flags);
}

static int record_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    /* The core turns FUA into a flush of this node, which gets logged. */
    int ret = bdrv_pwritev(bs->file, offset, bytes, qiov,
                           flags & ~BDRV_REQ_FUA);

    return ret < 0 ? ret
                   : record_append(bs->opaque, BLKRECORD_WRITE, offset, bytes,
                                   qiov);
}

static int record_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, BdrvRequestFlags flags)
{
    int ret = bdrv_pwrite_zeroes(bs->file, offset, bytes,
                                 flags & ~BDRV_REQ_FUA);

    return ret < 0 ? ret
                   : record_append(bs->opaque, BLKRECORD_ZERO, offset, bytes,
                                   NULL);
}

static int record_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int ret = bdrv_pdiscard(bs->file, offset, bytes);

    return ret < 0 ? ret
                   : record_append(bs->opaque, BLKRECORD_DISCARD, offset,
                                   bytes, NULL);
}

/*
 * The whole flush happens here rather than split over flush_to_os and
 * flush_to_disk, so that the record count at issue time needs no state
 * shared between the two.  The core flushes the child once more afterwards,
 * which finds nothing left to write.
 */
static int record_flush_to_os(BlockDriverState *bs)
{
    BDRVRecordState *s = bs->opaque;
    uint64_t issued;
    int ret;

    g_mutex_lock(&s->lock);
    issued = s->records;
    g_mutex_unlock(&s->lock);

    ret = bdrv_flush(bs->file);
    if (ret < 0 || (bs->open_flags & BDRV_O_NO_FLUSH)) {
        /* cache.no-flush: nothing became durable. */
        return ret;
    }
    return record_append(s, BLKRECORD_FLUSH, issued, 0, NULL);
}

static int record_block_status(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, int64_t *pnum, int64_t *map,
                               BlockDriverState **file)
{
    int ret = bdrv_block_status(bs->file, offset, bytes, pnum, map, file);

    return ret < 0 ? ret : ret & ~(BDRV_BLOCK_EOF | BDRV_BLOCK_ALLOCATED);
}

static int64_t record_getlength(BlockDriverState *bs)
{
    return bdrv_getlength(bs->file);
}

static int record_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                           PreallocMode prealloc, Error **errp)
{
    int ret = bdrv_truncate(bs->file, offset, exact, prealloc, errp);
    int64_t len;

    if (ret < 0) {
        return ret;
    }
    /* A non-exact truncate may leave the file longer: log what it did. */
    len = bdrv_getlength(bs->file);
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get the file length");
        return len;
    }
    ret = record_append(bs->opaque, BLKRECORD_TRUNCATE, len, 0, NULL);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the log");
    }
    return ret;
}

BlockDriver bdrv_record = {
    .format_name = "record",
    .instance_size = sizeof(BDRVRecordState),
    .bdrv_open = record_open,
    .bdrv_close = record_close,
    .bdrv_preadv = record_preadv,
    .bdrv_pwritev = record_pwritev,
    .bdrv_pwrite_zeroes = record_pwrite_zeroes,
    .bdrv_pdiscard = record_pdiscard,
    .bdrv_flush_to_os = record_flush_to_os,
    .bdrv_block_status = record_block_status,
    .bdrv_getlength = record_getlength,
    .bdrv_truncate = record_truncate,
};

/*
 * Request processing common to all drivers: argument checks, in-flight
 * accounting and drained sections, alignment by read-modify-write,
 * zero detection, FUA, flush propagation, statistics and block status
 * through the backing chain.
 *
 * Serialisation: only nodes whose driver needs aligned requests
 * (request_alignment > 1, e.g. O_DIRECT files) track requests.  A write
 * that has to read-modify-write an alignment unit is "serialising": it
 * waits for every overlapping request and makes every later overlapping
 * request wait for it, so two unaligned writes into one unit cannot lose
 * each other's bytes.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qemu/cutils.h"

/* Largest buffer the zero-write fallback and RMW allocate at once. */
#define MAX_BOUNCE_BYTES (1 * 1024 * 1024)

static int bdrv_check_request(BlockDriverState *bs, int64_t offset,
                              int64_t bytes)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0 || offset > INT64_MAX - bytes) {
        return -EIO;
    }
    return 0;
}

static void bdrv_inc_in_flight(BlockDriverState *bs)
{
    g_mutex_lock(&bs->reqs_lock);
    while (bs->quiesce_counter > 0) {
        g_cond_wait(&bs->reqs_cond, &bs->reqs_lock);
    }
    bs->in_flight++;
    g_mutex_unlock(&bs->reqs_lock);
}

static void bdrv_dec_in_flight(BlockDriverState *bs)
{
    g_mutex_lock(&bs->reqs_lock);
    if (--bs->in_flight == 0) {
        g_cond_broadcast(&bs->reqs_cond);
    }
    g_mutex_unlock(&bs->reqs_lock);
}

void bdrv_drained_begin(BlockDriverState *bs)
{
    g_mutex_lock(&bs->reqs_lock);
    bs->quiesce_counter++;
    while (bs->in_flight > 0) {
        g_cond_wait(&bs->reqs_cond, &bs->reqs_lock);
    }
    g_mutex_unlock(&bs->reqs_lock);
}

void bdrv_drained_end(BlockDriverState *bs)
{
    g_mutex_lock(&bs->reqs_lock);
    assert(bs->quiesce_counter > 0);
    bs->quiesce_counter--;
    g_cond_broadcast(&bs->reqs_cond);
    g_mutex_unlock(&bs->reqs_lock);
}

/* Tracked requests (alignment > 1 only) */

static bool tracked_overlap(const BdrvTrackedRequest *a,
                            const BdrvTrackedRequest *b)
{
    return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

static bool tracked_must_wait(BlockDriverState *bs, BdrvTrackedRequest *req)
{
    for (BdrvTrackedRequest *r = bs->tracked_reqs; r; r = r->next) {
        if (r != req && (r->serialising || req->serialising) &&
            tracked_overlap(r, req)) {
            return true;
        }
    }
    return false;
}

static void tracked_begin(BlockDriverState *bs, BdrvTrackedRequest *req,
                          int64_t offset, int64_t bytes, bool serialising)
{
    uint32_t align = bs->request_alignment;

    req->offset = QEMU_ALIGN_DOWN(offset, align);
    req->bytes = QEMU_ALIGN_UP(offset + bytes, align) - req->offset;
    req->serialising = serialising;
    g_mutex_lock(&bs->reqs_lock);
    while (tracked_must_wait(bs, req)) {
        g_cond_wait(&bs->reqs_cond, &bs->reqs_lock);
    }
    req->next = bs->tracked_reqs;
    bs->tracked_reqs = req;
    g_mutex_unlock(&bs->reqs_lock);
}

static void tracked_end(BlockDriverState *bs, BdrvTrackedRequest *req)
{
    g_mutex_lock(&bs->reqs_lock);
    for (BdrvTrackedRequest **p = &bs->tracked_reqs; *p; p = &(*p)->next) {
        if (*p == req) {
            *p = req->next;
            break;
        }
    }
    g_cond_broadcast(&bs->reqs_cond);
    g_mutex_unlock(&bs->reqs_lock);
}

/* Statistics */

typedef enum { ACCT_READ, ACCT_WRITE, ACCT_ZERO, ACCT_DISCARD, ACCT_FLUSH }
    AcctType;

static void bdrv_account(BlockDriverState *bs, AcctType type, int64_t offset,
                         int64_t bytes, int64_t start_ns, int ret)
{
    BlockAcctStats *s = &bs->stats;
    uint64_t ns = get_clock_ns() - start_ns;

    g_mutex_lock(&bs->stats_lock);
    switch (type) {
    case ACCT_READ:
        if (ret < 0) {
            s->failed_rd_ops++;
            break;
        }
        s->rd_ops++;
        s->rd_bytes += bytes;
        s->rd_total_time_ns += ns;
        break;
    case ACCT_WRITE:
    case ACCT_ZERO:
        if (ret < 0) {
            s->failed_wr_ops++;
            break;
        }
        if (type == ACCT_ZERO) {
            s->zero_ops++;
            s->zero_bytes += bytes;
        } else {
            s->wr_ops++;
            s->wr_bytes += bytes;
        }
        s->wr_total_time_ns += ns;
        s->wr_highest_offset = MAX(s->wr_highest_offset,
                                   (uint64_t)(offset + bytes));
        break;
    case ACCT_DISCARD:
        if (ret >= 0) {
            s->discard_ops++;
            s->discard_bytes += bytes;
        }
        break;
    case ACCT_FLUSH:
        if (ret < 0) {
            s->failed_flush_ops++;
            break;
        }
        s->flush_ops++;
        s->flush_total_time_ns += ns;
        break;
    }
    g_mutex_unlock(&bs->stats_lock);
}

/* Reads */

static int bdrv_aligned_preadv(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, QEMUIOVector *qiov,
                               BdrvRequestFlags flags)
{
    uint32_t align = bs->request_alignment;
    int64_t start, end;
    QEMUIOVector bounce_qiov;
    void *bounce;
    int ret;

    if (bytes == 0) {
        return 0;
    }
    if (QEMU_IS_ALIGNED(offset, align) && QEMU_IS_ALIGNED(bytes, align)) {
        return bs->drv->bdrv_preadv(bs, offset, bytes, qiov, flags);
    }
    start = QEMU_ALIGN_DOWN(offset, align);
    end = QEMU_ALIGN_UP(offset + bytes, align);
    bounce = qemu_try_blockalign(end - start);
    if (!bounce) {
        return -ENOMEM;
    }
    qemu_iovec_init_buf(&bounce_qiov, bounce, end - start);
    ret = bs->drv->bdrv_preadv(bs, start, end - start, &bounce_qiov, flags);
    if (ret >= 0) {
        qemu_iovec_from_buf(qiov, 0, (char *)bounce + (offset - start), bytes);
    }
    qemu_vfree(bounce);
    return ret;
}

int bdrv_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    int64_t start_ns = get_clock_ns();
    int ret = bdrv_check_request(bs, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    assert(qiov->size >= (size_t)bytes);
    bdrv_inc_in_flight(bs);
    ret = bdrv_aligned_preadv(bs, offset, bytes, qiov, flags);
    bdrv_account(bs, ACCT_READ, offset, bytes, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret < 0 ? ret : 0;
}

int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, bytes);
    return bdrv_preadv(bs, offset, bytes, &qiov, flags);
}

/* Writes */

/*
 * Merge the guest data of an unaligned write with the existing bytes of the
 * alignment units at both ends, and write the whole aligned range.
 */
static int bdrv_rmw_pwritev(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, QEMUIOVector *qiov,
                            BdrvRequestFlags flags)
{
    uint32_t align = bs->request_alignment;
    int64_t start = QEMU_ALIGN_DOWN(offset, align);
    int64_t end = QEMU_ALIGN_UP(offset + bytes, align);
    QEMUIOVector unit_qiov, merged;
    uint8_t *head, *tail = NULL;
    int ret;

    head = qemu_try_blockalign(2 * align);
    if (!head) {
        return -ENOMEM;
    }
    qemu_iovec_init(&merged, qiov->niov + 2);
    if (offset != start) {
        qemu_iovec_init_buf(&unit_qiov, head, align);
        ret = bs->drv->bdrv_preadv(bs, start, align, &unit_qiov, 0);
        if (ret < 0) {
            goto out;
        }
        qemu_iovec_add(&merged, head, offset - start);
    }
    qemu_iovec_concat(&merged, qiov, 0, bytes);
    if (offset + bytes != end) {
        tail = head + align;
        if (end - align == start && offset != start) {
            memcpy(tail, head, align);
        } else {
            qemu_iovec_init_buf(&unit_qiov, tail, align);
            ret = bs->drv->bdrv_preadv(bs, end - align, align, &unit_qiov, 0);
            if (ret < 0) {
                goto out;
            }
        }
        qemu_iovec_add(&merged, tail + ((offset + bytes) % align),
                       end - (offset + bytes));
    }
    ret = bs->drv->bdrv_pwritev(bs, start, end - start, &merged, flags);
out:
    qemu_iovec_destroy(&merged);
    qemu_vfree(head);
    return ret;
}

static int bdrv_do_pwritev(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov,
                           BdrvRequestFlags flags)
{
    uint32_t align = bs->request_alignment;
    BdrvTrackedRequest req;
    bool aligned = QEMU_IS_ALIGNED(offset, align) &&
                   QEMU_IS_ALIGNED(bytes, align);
    int ret;

    if (align == 1) {
        return bs->drv->bdrv_pwritev(bs, offset, bytes, qiov, flags);
    }
    tracked_begin(bs, &req, offset, bytes, !aligned);
    if (aligned) {
        ret = bs->drv->bdrv_pwritev(bs, offset, bytes, qiov, flags);
    } else {
        ret = bdrv_rmw_pwritev(bs, offset, bytes, qiov, flags);
    }
    tracked_end(bs, &req);
    return ret;
}

static int bdrv_write_zero_buffer(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, BdrvRequestFlags flags)
{
    size_t buf_len = MIN(bytes, MAX_BOUNCE_BYTES);
    void *buf = qemu_try_blockalign(buf_len);
    int ret = 0;

    if (!buf) {
        return -ENOMEM;
    }
    memset(buf, 0, buf_len);
    flags &= ~(BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK);
    while (bytes > 0 && ret >= 0) {
        int64_t n = MIN(bytes, (int64_t)buf_len);
        QEMUIOVector qiov;

        qemu_iovec_init_buf(&qiov, buf, n);
        ret = bdrv_do_pwritev(bs, offset, n, &qiov, flags);
        offset += n;
        bytes -= n;
    }
    qemu_vfree(buf);
    return ret;
}

static int bdrv_driver_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes, BdrvRequestFlags flags)
{
    BdrvTrackedRequest req;
    int ret = -ENOTSUP;

    if (!bs->drv->bdrv_pwrite_zeroes) {
        return ret;
    }
    if (bs->request_alignment > 1) {
        /* Aligned, but must still wait for overlapping read-modify-writes. */
        tracked_begin(bs, &req, offset, bytes, false);
    }
    ret = bs->drv->bdrv_pwrite_zeroes(bs, offset, bytes, flags);
    if (bs->request_alignment > 1) {
        tracked_end(bs, &req);
    }
    return ret;
}

/*
 * On nodes with an alignment, the unaligned head and tail become zero
 * buffers written by read-modify-write (serialised like any other); only
 * the aligned middle reaches the driver's zero write.
 */
static int bdrv_do_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, BdrvRequestFlags flags)
{
    uint32_t align = bs->request_alignment;
    int ret = 0;

    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    if (align > 1 && !QEMU_IS_ALIGNED(offset | bytes, align)) {
        int64_t end = offset + bytes;
        int64_t mid = MIN(end, QEMU_ALIGN_UP(offset, align));
        int64_t tail = MAX(mid, QEMU_ALIGN_DOWN(end, align));

        if (flags & BDRV_REQ_NO_FALLBACK) {
            return -ENOTSUP;
        }
        if (mid > offset) {
            ret = bdrv_write_zero_buffer(bs, offset, mid - offset, flags);
        }
        if (ret >= 0 && tail > mid) {
            ret = bdrv_do_pwrite_zeroes(bs, mid, tail - mid, flags);
        }
        if (ret >= 0 && end > tail) {
            ret = bdrv_write_zero_buffer(bs, tail, end - tail, flags);
        }
        return ret;
    }
    ret = bdrv_driver_pwrite_zeroes(bs, offset, bytes, flags);
    if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
        ret = bdrv_write_zero_buffer(bs, offset, bytes, flags);
    }
    return ret;
}

static bool bdrv_fua_needs_flush(BlockDriverState *bs, BdrvRequestFlags flags)
{
    return (flags & BDRV_REQ_FUA) && !(bs->open_flags & BDRV_O_NO_FLUSH);
}

int bdrv_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    int64_t start_ns = get_clock_ns();
    AcctType type = ACCT_WRITE;
    int ret = bdrv_check_request(bs, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    bdrv_inc_in_flight(bs);
    if (bs->detect_zeroes != BDRV_DETECT_ZEROES_OFF &&
        qemu_iovec_is_zero(qiov, 0, bytes)) {
        if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        type = ACCT_ZERO;
        ret = bdrv_do_pwrite_zeroes(bs, offset, bytes, flags);
    } else {
        ret = bdrv_do_pwritev(bs, offset, bytes, qiov, flags);
    }
    if (ret >= 0 && bdrv_fua_needs_flush(bs, flags)) {
        ret = bdrv_flush(bs);
    }
    bdrv_account(bs, type, offset, bytes, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret < 0 ? ret : 0;
}

int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, (void *)buf, bytes);
    return bdrv_pwritev(bs, offset, bytes, &qiov, flags);
}

int bdrv_pwrite_sync(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     const void *buf, BdrvRequestFlags flags)
{
    int ret = bdrv_pwrite(bs, offset, bytes, buf, flags);

    return ret < 0 ? ret : bdrv_flush(bs);
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags)
{
    int64_t start_ns = get_clock_ns();
    int ret = bdrv_check_request(bs, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    bdrv_inc_in_flight(bs);
    ret = bdrv_do_pwrite_zeroes(bs, offset, bytes, flags | BDRV_REQ_ZERO_WRITE);
    if (ret >= 0 && bdrv_fua_needs_flush(bs, flags)) {
        ret = bdrv_flush(bs);
    }
    bdrv_account(bs, ACCT_ZERO, offset, bytes, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret < 0 ? ret : 0;
}

int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int64_t start_ns = get_clock_ns();
    int ret = bdrv_check_request(bs, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    /* Discard is advisory: a node not opened with discard=unmap ignores it. */
    if (!(bs->open_flags & BDRV_O_UNMAP) || !bs->drv->bdrv_pdiscard ||
        bytes == 0) {
        return 0;
    }
    bdrv_inc_in_flight(bs);
    ret = bs->drv->bdrv_pdiscard(bs, offset, bytes);
    if (ret == -ENOTSUP) {
        ret = 0;
    }
    bdrv_account(bs, ACCT_DISCARD, offset, bytes, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret;
}

int bdrv_pwrite_compressed(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov)
{
    int64_t start_ns = get_clock_ns();
    int ret = bdrv_check_request(bs, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    if (!bs->drv->bdrv_pwrite_compressed) {
        return -ENOTSUP;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    bdrv_inc_in_flight(bs);
    ret = bs->drv->bdrv_pwrite_compressed(bs, offset, bytes, qiov);
    bdrv_account(bs, ACCT_WRITE, offset, bytes, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    int64_t start_ns = get_clock_ns();
    int ret = 0;

    if (!bs || !bs->drv || bs->read_only) {
        return 0;
    }
    bdrv_inc_in_flight(bs);
    if (bs->drv->bdrv_flush_to_os) {
        ret = bs->drv->bdrv_flush_to_os(bs);
    }
    if (ret >= 0 && bs->file) {
        ret = bdrv_flush(bs->file);
    }
    if (ret >= 0 && bs->drv->bdrv_flush_to_disk &&
        !(bs->open_flags & BDRV_O_NO_FLUSH)) {
        ret = bs->drv->bdrv_flush_to_disk(bs);
    }
    bdrv_account(bs, ACCT_FLUSH, 0, 0, start_ns, ret);
    bdrv_dec_in_flight(bs);
    return ret;
}

/* Lengths are whole 512-byte sectors, as QEMU reports them. */
int bdrv_vmstate_rw(BlockDriverState *bs, QEMUIOVector *qiov, int64_t pos,
                    bool write)
{
    int ret;

    if (!bs->drv || !bs->drv->bdrv_vmstate_rw) {
        return -ENOTSUP;
    }
    if (pos < 0) {
        return -EINVAL;
    }
    if (write && bs->read_only) {
        return -EPERM;
    }
    bdrv_inc_in_flight(bs);
    ret = bs->drv->bdrv_vmstate_rw(bs, qiov, pos, write);
    bdrv_dec_in_flight(bs);
    return ret;
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    int64_t len;

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    len = bs->drv->bdrv_getlength(bs);
    return len < 0 ? len : QEMU_ALIGN_UP(len, 512);
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->drv->bdrv_get_allocated_file_size) {
        return bs->drv->bdrv_get_allocated_file_size(bs);
    }
    return bs->file ? bdrv_get_allocated_file_size(bs->file) : -ENOTSUP;
}

int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, Error **errp)
{
    int ret;

    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (!bs->drv->bdrv_truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }
    bdrv_drained_begin(bs);
    ret = bs->drv->bdrv_truncate(bs, offset, exact, prealloc, errp);
    bdrv_drained_end(bs);
    return ret;
}

/* Block status */

/*
 * A range a format maps to its file reads as zero if the file has a hole
 * there; report that, as a user of the map cares about it.
 */
static int bdrv_refine_zero(int ret, int64_t *pnum, int64_t map,
                            BlockDriverState *file, BlockDriverState *bs)
{
    int64_t file_pnum;
    int file_ret;

    if (!(ret & BDRV_BLOCK_RECURSE) || !(ret & BDRV_BLOCK_OFFSET_VALID) ||
        (ret & BDRV_BLOCK_ZERO) || !file || file == bs) {
        return ret & ~BDRV_BLOCK_RECURSE;
    }
    ret &= ~BDRV_BLOCK_RECURSE;
    file_ret = bdrv_block_status(file, map, *pnum, &file_pnum, NULL, NULL);
    if (file_ret >= 0 && file_pnum == 0 && (file_ret & BDRV_BLOCK_EOF)) {
        /* Mapped past the end of the file: reads as zeroes. */
        return ret | BDRV_BLOCK_ZERO;
    }
    if (file_ret < 0 || file_pnum == 0) {
        return ret;
    }
    if (file_ret & BDRV_BLOCK_ZERO) {
        *pnum = file_pnum;
        ret |= BDRV_BLOCK_ZERO;
    } else if (file_pnum < *pnum && !(file_ret & BDRV_BLOCK_EOF)) {
        *pnum = file_pnum;
    }
    return ret;
}

int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum, int64_t *map, BlockDriverState **file)
{
    int64_t len = bdrv_getlength(bs), local_map = 0;
    BlockDriverState *local_file = NULL;
    int ret;

    *pnum = 0;
    if (len < 0) {
        return len;
    }
    if (offset >= len || bytes == 0) {
        return BDRV_BLOCK_EOF;
    }
    bytes = MIN(bytes, len - offset);
    if (!bs->drv->bdrv_block_status) {
        *pnum = bytes;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
        local_map = offset;
        local_file = bs;
    } else {
        bdrv_inc_in_flight(bs);
        ret = bs->drv->bdrv_block_status(bs, offset, bytes, pnum, &local_map,
                                         &local_file);
        bdrv_dec_in_flight(bs);
        if (ret < 0) {
            return ret;
        }
        assert(*pnum > 0 && *pnum <= bytes);
    }
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    } else if (!bs->backing && !bs->drv->is_protocol) {
        /* Unallocated with nothing below reads as zeroes. */
        ret |= BDRV_BLOCK_ZERO;
    }
    if (ret & BDRV_BLOCK_ALLOCATED && !bs->drv->is_protocol) {
        ret = bdrv_refine_zero(ret, pnum, local_map, local_file, bs);
    }
    if (offset + *pnum == len) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base,
                            int64_t offset, int64_t bytes, int64_t *pnum,
                            int64_t *map, BlockDriverState **file, int *depth)
{
    int64_t top_len = bdrv_getlength(bs);
    int layer = 0;
    int ret = 0;

    *pnum = 0;
    if (top_len < 0) {
        return top_len;
    }
    if (offset >= top_len) {
        return BDRV_BLOCK_EOF;
    }
    bytes = MIN(bytes, top_len - offset);
    for (BlockDriverState *p = bs; p && p != base; p = p->backing, layer++) {
        int64_t len = bdrv_getlength(p);
        if (depth) {
            *depth = layer;
        }
        if (len >= 0 && offset >= len) {
            /* Past the end of a shorter backing layer: zeroes. */
            *pnum = bytes;
            ret = BDRV_BLOCK_ZERO;
            break;
        }
        ret = bdrv_block_status(p, offset, bytes, pnum, map, file);
        if (ret < 0 || (ret & BDRV_BLOCK_ALLOCATED)) {
            break;
        }
        bytes = *pnum;
    }
    if (ret >= 0 && offset + *pnum == top_len) {
        ret |= BDRV_BLOCK_EOF;
    } else if (ret >= 0) {
        ret &= ~BDRV_BLOCK_EOF;
    }
    return ret;
}

int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum)
{
    int ret = bdrv_block_status(bs, offset, bytes, pnum, NULL, NULL);

    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

int bdrv_is_allocated_above(BlockDriverState *top, BlockDriverState *base,
                            int64_t offset, int64_t bytes, int64_t *pnum)
{
    int ret = bdrv_block_status_above(top, base, offset, bytes, pnum, NULL,
                                      NULL, NULL);

    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

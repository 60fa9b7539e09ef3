/*
 * Scatter/gather I/O vectors (see qemu/iov.h).
 */
#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "qemu/cutils.h"

void *qemu_try_blockalign(size_t size)
{
    void *p;

    if (posix_memalign(&p, QEMU_BUFFER_ALIGN, MAX(size, 1)) != 0) {
        return NULL;
    }
    return p;
}

void *qemu_blockalign(size_t size)
{
    void *p = qemu_try_blockalign(size);

    if (!p) {
        g_error("failed to allocate %zu bytes", size);
    }
    return p;
}

void *qemu_blockalign0(size_t size)
{
    return memset(qemu_blockalign(size), 0, size);
}

void qemu_vfree(void *ptr)
{
    free(ptr);
}

void qemu_iovec_init(QEMUIOVector *qiov, int alloc_hint)
{
    memset(qiov, 0, sizeof(*qiov));
    qiov->nalloc = MAX(alloc_hint, 1);
    qiov->iov = g_new(struct iovec, qiov->nalloc);
}

void qemu_iovec_init_buf(QEMUIOVector *qiov, void *buf, size_t len)
{
    memset(qiov, 0, sizeof(*qiov));
    qiov->local_iov.iov_base = buf;
    qiov->local_iov.iov_len = len;
    qiov->iov = &qiov->local_iov;
    qiov->niov = 1;
    qiov->size = len;
}

void qemu_iovec_add(QEMUIOVector *qiov, void *base, size_t len)
{
    assert(qiov->nalloc > 0);
    if (!len) {
        return;
    }
    if (qiov->niov == qiov->nalloc) {
        qiov->nalloc *= 2;
        qiov->iov = g_renew(struct iovec, qiov->iov, qiov->nalloc);
    }
    qiov->iov[qiov->niov].iov_base = base;
    qiov->iov[qiov->niov].iov_len = len;
    qiov->niov++;
    qiov->size += len;
}

void qemu_iovec_concat(QEMUIOVector *dst, const QEMUIOVector *src,
                       size_t offset, size_t len)
{
    assert(offset + len <= src->size);
    for (int i = 0; i < src->niov && len; i++) {
        size_t l = src->iov[i].iov_len;
        if (offset >= l) {
            offset -= l;
            continue;
        }
        size_t take = MIN(l - offset, len);
        qemu_iovec_add(dst, (char *)src->iov[i].iov_base + offset, take);
        len -= take;
        offset = 0;
    }
}

void qemu_iovec_init_slice(QEMUIOVector *dst, const QEMUIOVector *src,
                           size_t offset, size_t len)
{
    qemu_iovec_init(dst, src->niov);
    qemu_iovec_concat(dst, src, offset, len);
}

void qemu_iovec_reset(QEMUIOVector *qiov)
{
    assert(qiov->nalloc > 0);
    qiov->niov = 0;
    qiov->size = 0;
}

void qemu_iovec_destroy(QEMUIOVector *qiov)
{
    if (qiov->nalloc > 0) {
        g_free(qiov->iov);
    }
    memset(qiov, 0, sizeof(*qiov));
}

/*
 * Walk the vector from offset for bytes, calling fn on each piece with the
 * running position in the flat view.  Returns the number of bytes visited.
 */
typedef void IovPieceFn(void *base, size_t len, size_t done, void *opaque);

static size_t iov_walk(const QEMUIOVector *qiov, size_t offset, size_t bytes,
                       IovPieceFn *fn, void *opaque)
{
    size_t done = 0;

    for (int i = 0; i < qiov->niov && done < bytes; i++) {
        size_t l = qiov->iov[i].iov_len;
        if (offset >= l) {
            offset -= l;
            continue;
        }
        size_t take = MIN(l - offset, bytes - done);
        fn((char *)qiov->iov[i].iov_base + offset, take, done, opaque);
        done += take;
        offset = 0;
    }
    return done;
}

static void piece_to_buf(void *base, size_t len, size_t done, void *buf)
{
    memcpy((char *)buf + done, base, len);
}

static void piece_from_buf(void *base, size_t len, size_t done, void *buf)
{
    memcpy(base, (const char *)buf + done, len);
}

static void piece_memset(void *base, size_t len, size_t done, void *c)
{
    (void)done;
    memset(base, *(int *)c, len);
}

static void piece_is_zero(void *base, size_t len, size_t done, void *zero)
{
    (void)done;
    if (*(bool *)zero && !buffer_is_zero(base, len)) {
        *(bool *)zero = false;
    }
}

size_t qemu_iovec_to_buf(const QEMUIOVector *qiov, size_t offset,
                         void *buf, size_t bytes)
{
    return iov_walk(qiov, offset, bytes, piece_to_buf, buf);
}

size_t qemu_iovec_from_buf(QEMUIOVector *qiov, size_t offset,
                           const void *buf, size_t bytes)
{
    return iov_walk(qiov, offset, bytes, piece_from_buf, (void *)buf);
}

size_t qemu_iovec_memset(QEMUIOVector *qiov, size_t offset, int c,
                         size_t bytes)
{
    return iov_walk(qiov, offset, bytes, piece_memset, &c);
}

bool qemu_iovec_is_zero(const QEMUIOVector *qiov, size_t offset, size_t bytes)
{
    bool zero = true;

    iov_walk(qiov, offset, bytes, piece_is_zero, &zero);
    return zero;
}

ssize_t qemu_iovec_compare(const QEMUIOVector *a, const QEMUIOVector *b)
{
    g_autofree char *ba = g_malloc(a->size);
    g_autofree char *bb = g_malloc(b->size);

    assert(a->size == b->size);
    qemu_iovec_to_buf(a, 0, ba, a->size);
    qemu_iovec_to_buf(b, 0, bb, b->size);
    for (size_t i = 0; i < a->size; i++) {
        if (ba[i] != bb[i]) {
            return i;
        }
    }
    return -1;
}

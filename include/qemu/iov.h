/*
 * Scatter/gather I/O vectors.
 *
 * A QEMUIOVector describes the guest buffer of one request as a list of
 * struct iovec.  Layers slice it (a qcow2 request split at cluster
 * boundaries) and extend it (copy-on-write head and tail buffers around the
 * guest data, sent as a single pwritev) without copying the data itself.
 */
#ifndef QEMU_IOV_H
#define QEMU_IOV_H

#include "qemu/osdep.h"

typedef struct QEMUIOVector {
    struct iovec *iov;
    int niov;
    int nalloc;     /* 0: iov points at local_iov or external storage */
    size_t size;    /* sum of all iov_len */
    struct iovec local_iov;
} QEMUIOVector;

void qemu_iovec_init(QEMUIOVector *qiov, int alloc_hint);
/* A vector over one buffer; nothing to destroy afterwards. */
void qemu_iovec_init_buf(QEMUIOVector *qiov, void *buf, size_t len);
void qemu_iovec_add(QEMUIOVector *qiov, void *base, size_t len);
/* Append bytes [offset, offset + len) of src (by reference, not copy). */
void qemu_iovec_concat(QEMUIOVector *dst, const QEMUIOVector *src,
                       size_t offset, size_t len);
/* dst := bytes [offset, offset + len) of src; dst must be destroyed. */
void qemu_iovec_init_slice(QEMUIOVector *dst, const QEMUIOVector *src,
                           size_t offset, size_t len);
void qemu_iovec_reset(QEMUIOVector *qiov);
void qemu_iovec_destroy(QEMUIOVector *qiov);

/* Copy between the vector (starting at offset) and a flat buffer. */
size_t qemu_iovec_to_buf(const QEMUIOVector *qiov, size_t offset,
                         void *buf, size_t bytes);
size_t qemu_iovec_from_buf(QEMUIOVector *qiov, size_t offset,
                           const void *buf, size_t bytes);
size_t qemu_iovec_memset(QEMUIOVector *qiov, size_t offset, int c,
                         size_t bytes);
bool qemu_iovec_is_zero(const QEMUIOVector *qiov, size_t offset, size_t bytes);
/* Compare two vectors of equal size; returns the first differing offset or -1. */
ssize_t qemu_iovec_compare(const QEMUIOVector *a, const QEMUIOVector *b);

#endif

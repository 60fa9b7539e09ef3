/*
 * qcow2 cluster compression: raw deflate (no zlib header, 4 KiB window)
 * for compression type 0 and zstd frames for type 1.  Both are stateless
 * per call, so any thread may use them.
 */
#include "qemu/osdep.h"
#include "qcow2.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Raw deflate; trailing bytes after the stream end are ignored. */
static int inflate_cluster(void *dest, size_t dest_size, const void *src,
                           size_t src_size)
{
    z_stream strm = { 0 };
    int ret;

    if (inflateInit2(&strm, -12) != Z_OK) {
        return -EIO;
    }
    strm.next_in = (Bytef *)src;
    strm.avail_in = src_size;
    strm.next_out = dest;
    strm.avail_out = dest_size;
    ret = inflate(&strm, Z_FINISH);
    /* The output buffer is full whether or not the stream says it ended. */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && strm.avail_out == 0) {
        ret = 0;
    } else {
        ret = -EIO;
    }
    inflateEnd(&strm);
    return ret;
}

static ssize_t deflate_cluster(void *dest, size_t dest_size, const void *src,
                               size_t src_size)
{
    z_stream strm = { 0 };
    ssize_t ret;

    if (deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -EIO;
    }
    strm.next_in = (Bytef *)src;
    strm.avail_in = src_size;
    strm.next_out = dest;
    strm.avail_out = dest_size;
    ret = deflate(&strm, Z_FINISH);
    if (ret == Z_STREAM_END) {
        ret = dest_size - strm.avail_out;
    } else {
        ret = ret == Z_OK ? -ENOMEM : -EIO;   /* Z_OK: did not fit */
    }
    deflateEnd(&strm);
    return ret;
}

static int zstd_decompress_cluster(void *dest, size_t dest_size,
                                   const void *src, size_t src_size)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    ZSTD_inBuffer in = { src, src_size, 0 };
    int ret = 0;

    if (!dctx) {
        return -ENOMEM;
    }
    /* Stop once the cluster is complete: the stored size is sector-rounded. */
    while (out.pos < out.size) {
        size_t zret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(zret)) {
            ret = -EIO;
            break;
        }
        if (zret == 0 || in.pos == in.size) {
            ret = out.pos == out.size ? 0 : -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return ret;
}

static ssize_t zstd_compress_cluster(void *dest, size_t dest_size,
                                     const void *src, size_t src_size)
{
    size_t zret = ZSTD_compress(dest, dest_size, src, src_size,
                                ZSTD_CLEVEL_DEFAULT);

    if (ZSTD_isError(zret)) {
        return ZSTD_getErrorCode(zret) == ZSTD_error_dstSize_tooSmall
               ? -ENOMEM : -EIO;
    }
    return zret;
}

int qcow2_decompress(uint8_t compression_type, void *dest, size_t dest_size,
                     const void *src, size_t src_size)
{
    switch (compression_type) {
    case QCOW2_COMPRESSION_TYPE_ZLIB:
        return inflate_cluster(dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_TYPE_ZSTD:
        return zstd_decompress_cluster(dest, dest_size, src, src_size);
    default:
        return -ENOTSUP;
    }
}

ssize_t qcow2_compress(uint8_t compression_type, void *dest, size_t dest_size,
                       const void *src, size_t src_size)
{
    switch (compression_type) {
    case QCOW2_COMPRESSION_TYPE_ZLIB:
        return deflate_cluster(dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_TYPE_ZSTD:
        return zstd_compress_cluster(dest, dest_size, src, src_size);
    default:
        return -ENOTSUP;
    }
}

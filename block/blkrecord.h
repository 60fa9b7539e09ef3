/*
 * The log of the "record" filter driver (block/blkrecord.c), shared with
 * the tools that replay it (the crash simulator in tests/crash/).
 *
 * Layout: the 8-byte magic BLKRECORD_MAGIC, then records back to back, each
 * a 24-byte header of big-endian fields
 *
 *     u32 type, u32 reserved (0), u64 offset, u64 bytes
 *
 * followed, for BLKRECORD_WRITE only, by the `bytes` bytes written.  Records
 * are numbered from 0 in log order.
 *
 *   WRITE     [offset, offset + bytes) of the file now holds the data
 *   ZERO      [offset, offset + bytes) reads as zeroes (the file grows to
 *             cover it)
 *   DISCARD   [offset, offset + bytes) was discarded: its content is
 *             unspecified (a hole punched in the host file reads as zeroes)
 *   TRUNCATE  the file is now `offset` bytes long (bytes is 0)
 *   FLUSH     a flush completed; it was issued when the log held `offset`
 *             records, so records 0 .. offset - 1 are durable (bytes is 0)
 *
 * A change is logged once the file has completed it, so log order is the
 * order in which changes completed.  A change logged after the last FLUSH,
 * or logged while that flush was running, may or may not have reached the
 * disk when the power fails.
 */
#ifndef BLOCK_BLKRECORD_H
#define BLOCK_BLKRECORD_H

#define BLKRECORD_MAGIC "BLKREC01"
#define BLKRECORD_MAGIC_LEN 8
#define BLKRECORD_HEADER_LEN 24

typedef enum BlkRecordType {
    BLKRECORD_WRITE = 1,
    BLKRECORD_ZERO = 2,
    BLKRECORD_DISCARD = 3,
    BLKRECORD_TRUNCATE = 4,
    BLKRECORD_FLUSH = 5,
} BlkRecordType;

#endif

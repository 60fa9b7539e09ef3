/*
 * qcow2 deduplication journal: an append-only, checksummed log of the log
 * store's insertions and removals between two freezes.
 *
 * On-disk format (docs/interop/qcow2.txt, 7.5), all fields big-endian,
 * records 8-byte aligned:
 *
 *     0-1   type (1 INSERT, 2 REMOVE, 3 COMMIT)   2-3  length (whole record)
 *     4-7   zlib crc32 of the record, this field taken as 0
 *     8-15  generation                            16-23 sequence (1, 2, ...)
 *     INSERT (72): hash, cluster index, packed location
 *     REMOVE (40): cluster index, packed location
 *     COMMIT (32): sequence of the last record it covers
 *
 * Writing.  Records are queued in memory; qcow2_journal_write() emits them
 * as one batch: whole 512-byte units at the next unit boundary, zero-padded.
 * A batch starts with a COMMIT when the previous batch held records: the
 * caller flushes the file after every write(), so those are durable.  The
 * journal never flushes itself.  Appends fail with -ENOSPC unless the batch
 * plus one more unit for the COMMIT that will cover it still fit.
 *
 * Replay.  Records are read from the start: each must have a known type and
 * its exact length, a good crc, the current generation and the next
 * sequence; between records, a unit whose remainder is all zero is padding.
 * An all-zero unit at a boundary, or any invalid record, ends the chain.
 * A COMMIT is valid only if it covers exactly the records before it
 * (covered == its sequence - 1), which is what every batch's COMMIT does.
 * Exactly the INSERT/REMOVE records before the last valid COMMIT are
 * delivered, in order; a non-zero return of the callback stops replay and
 * is returned.  Replay is only allowed before any append, and a failed
 * replay leaves the journal as new() made it.
 *
 * Where appends continue after replay -- deliberately not after the last
 * valid record, but with the sequence after the last valid COMMIT, at the
 * unit boundary after it; replay also zeroes the journal from the end of
 * that COMMIT to the end of the journal (not flushed; skipped on a
 * read-only file).  Two reasons:
 *  - Valid records after the last COMMIT (the "tail") were written but
 *    maybe not flushed together with the data they describe, and were not
 *    replayed.  If appends continued after them, the next COMMIT would make
 *    them trusted at the next replay although this session never applied
 *    them.  Likewise, bytes of a torn record left in the COMMIT's unit
 *    would end every later replay right there, before the new batches.
 *  - When replay stopped at damage in the middle of the journal, committed
 *    records of this generation lie beyond it.  New records reuse their
 *    sequence numbers, so the chain could run from a new batch into an old
 *    unit whose first record has just the expected sequence, and an old
 *    COMMIT there would cover new, unflushed records and old ones alike.
 * The caller must therefore flush the file after replay before the first
 * write() that continues the same generation.  Zeroing starts at the end
 * of the COMMIT: the bytes before it in its unit are not changed.
 *
 * Invariant that makes stale bytes harmless: after reset() or replay(),
 * nothing of the current generation lies at or after the write position
 * except what this journal writes there later, so a COMMIT only ever
 * covers records that lie before it and were flushed before it was
 * written.  new() assumes the same of a journal it is not asked to replay
 * (a freshly zeroed one).  For reset() it holds only if a generation is
 * never reused: the caller must record a new generation durably (in the
 * directory) before the first write() after reset(); reset() refuses a
 * generation that does not grow.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qcow2-dedup.h"
#include <zlib.h>

#define JOURNAL_UNIT 512
#define JOURNAL_HEADER_SIZE 24
#define JOURNAL_INSERT_SIZE 72
#define JOURNAL_REMOVE_SIZE 40
#define JOURNAL_COMMIT_SIZE 32
/* Replay reads this much at once; at least two units (records straddle). */
#define JOURNAL_READ_CHUNK (64 * KiB)

struct Qcow2Journal {
    BlockDriverState *file;
    uint64_t offset;            /* of the journal in file */
    uint64_t size;              /* bytes, whole units */
    uint64_t generation;
    uint64_t pos;               /* unit-aligned offset of the next batch */
    uint64_t next_seq;
    GByteArray *batch;          /* the next batch, not yet padded */
    unsigned queued;            /* INSERT/REMOVE records in batch */
    bool commit_queued;         /* batch starts with a COMMIT */
};

/* Replay's window on the journal. */
typedef struct JournalReader {
    Qcow2Journal *j;
    uint8_t *buf;
    uint64_t start;             /* journal offset of buf[0] */
    uint64_t len;               /* valid bytes in buf */
} JournalReader;

static unsigned journal_record_size(unsigned type)
{
    switch (type) {
    case QCOW2_JOURNAL_INSERT:
        return JOURNAL_INSERT_SIZE;
    case QCOW2_JOURNAL_REMOVE:
        return JOURNAL_REMOVE_SIZE;
    case QCOW2_JOURNAL_COMMIT:
        return JOURNAL_COMMIT_SIZE;
    }
    return 0;
}

static uint32_t journal_crc(const uint8_t *rec, size_t len)
{
    static const uint8_t zero_crc[4];
    uLong crc = crc32(0, rec, 4);

    crc = crc32(crc, zero_crc, sizeof(zero_crc));
    return crc32(crc, rec + 8, len - 8);
}

Qcow2Journal *qcow2_journal_new(BlockDriverState *file, uint64_t offset,
                                uint64_t size, uint64_t generation)
{
    Qcow2Journal *j = g_new0(Qcow2Journal, 1);

    /* Units must be sectors of the file for the no-rewrite rule to hold. */
    assert(QEMU_IS_ALIGNED(offset, JOURNAL_UNIT));
    j->file = file;
    j->offset = offset;
    j->size = QEMU_ALIGN_DOWN(size, JOURNAL_UNIT);
    j->generation = generation;
    j->next_seq = 1;
    j->batch = g_byte_array_new();
    return j;
}

void qcow2_journal_free(Qcow2Journal *j)
{
    if (j) {
        g_byte_array_unref(j->batch);
        g_free(j);
    }
}

uint64_t qcow2_journal_generation(const Qcow2Journal *j)
{
    return j->generation;
}

/* Bytes taken once the queued batch is written. */
static uint64_t journal_used(const Qcow2Journal *j)
{
    return j->pos + ROUND_UP((uint64_t)j->batch->len, JOURNAL_UNIT);
}

/* Queue a record of type whose payload (after the header) is payload. */
static void journal_queue(Qcow2Journal *j, unsigned type,
                          const uint8_t *payload)
{
    unsigned len = journal_record_size(type);
    uint8_t *p;

    g_byte_array_set_size(j->batch, j->batch->len + len);
    p = j->batch->data + j->batch->len - len;
    stw_be_p(p, type);
    stw_be_p(p + 2, len);
    stl_be_p(p + 4, 0);
    stq_be_p(p + 8, j->generation);
    stq_be_p(p + 16, j->next_seq++);
    memcpy(p + JOURNAL_HEADER_SIZE, payload, len - JOURNAL_HEADER_SIZE);
    stl_be_p(p + 4, journal_crc(p, len));
}

static void journal_queue_commit(Qcow2Journal *j)
{
    uint8_t payload[8];

    stq_be_p(payload, j->next_seq - 1);
    journal_queue(j, QCOW2_JOURNAL_COMMIT, payload);
    j->commit_queued = true;
}

static int journal_append(Qcow2Journal *j, unsigned type,
                          const uint8_t *payload)
{
    uint64_t batch = j->batch->len + journal_record_size(type);

    /* Room for the batch and, in a unit of its own, the COMMIT for it. */
    if (j->pos + ROUND_UP(batch, JOURNAL_UNIT) + JOURNAL_UNIT > j->size) {
        return -ENOSPC;
    }
    journal_queue(j, type, payload);
    j->queued++;
    return 0;
}

int qcow2_journal_append_insert(Qcow2Journal *j, const Qcow2DedupHash *h,
                                uint64_t cluster,
                                const Qcow2IndexLocation *loc)
{
    uint8_t payload[JOURNAL_INSERT_SIZE - JOURNAL_HEADER_SIZE];

    memcpy(payload, h->b, QCOW2_DEDUP_HASH_SIZE);
    stq_be_p(payload + 32, cluster);
    stq_be_p(payload + 40, qcow2_dedup_loc_pack(loc));
    return journal_append(j, QCOW2_JOURNAL_INSERT, payload);
}

int qcow2_journal_append_remove(Qcow2Journal *j, uint64_t cluster,
                                const Qcow2IndexLocation *loc)
{
    uint8_t payload[JOURNAL_REMOVE_SIZE - JOURNAL_HEADER_SIZE];

    stq_be_p(payload, cluster);
    stq_be_p(payload + 8, qcow2_dedup_loc_pack(loc));
    return journal_append(j, QCOW2_JOURNAL_REMOVE, payload);
}

bool qcow2_journal_nearly_full(const Qcow2Journal *j, uint64_t reserve)
{
    /* The last unit is kept for the final COMMIT. */
    uint64_t taken = MIN(journal_used(j) + JOURNAL_UNIT, j->size);

    return j->size - taken < reserve;
}

unsigned qcow2_journal_fill_permille(const Qcow2Journal *j)
{
    if (!j->size) {
        return 1000;
    }
    return MIN(journal_used(j), j->size) * 1000 / j->size;
}

/* Write the queued batch as whole units at pos. */
static int journal_write_batch(Qcow2Journal *j)
{
    size_t len = j->batch->len;
    size_t padded = ROUND_UP(len, JOURNAL_UNIT);
    bool had_records = j->queued > 0;
    int ret;

    g_byte_array_set_size(j->batch, padded);
    memset(j->batch->data + len, 0, padded - len);
    ret = bdrv_pwrite(j->file, j->offset + j->pos, padded, j->batch->data, 0);
    if (ret < 0) {
        /* Keep the batch: a retry rewrites the same, never flushed, units. */
        g_byte_array_set_size(j->batch, len);
        return ret;
    }
    j->pos += padded;
    g_byte_array_set_size(j->batch, 0);
    j->queued = 0;
    j->commit_queued = false;
    if (had_records) {
        /* Reserved by journal_append(): it always fits. */
        journal_queue_commit(j);
    }
    return 0;
}

int qcow2_journal_write(Qcow2Journal *j)
{
    if (!j->queued && !j->commit_queued) {
        return 0;
    }
    return journal_write_batch(j);
}

int qcow2_journal_commit_all(Qcow2Journal *j)
{
    if (j->queued) {
        /* Queued records would follow the COMMIT uncovered: write() first. */
        return -EBUSY;
    }
    if (!j->commit_queued) {
        return 0;
    }
    return journal_write_batch(j);
}

int qcow2_journal_reset(Qcow2Journal *j, uint64_t new_generation)
{
    if (new_generation <= j->generation) {
        return -EINVAL;
    }
    j->generation = new_generation;
    j->pos = 0;
    j->next_seq = 1;
    g_byte_array_set_size(j->batch, 0);
    j->queued = 0;
    j->commit_queued = false;
    return 0;
}

/* Replay */

/* Point *p at journal bytes [off, off + n); n <= JOURNAL_UNIT. */
static int journal_peek(JournalReader *r, uint64_t off, size_t n,
                        const uint8_t **p)
{
    Qcow2Journal *j = r->j;

    assert(n <= JOURNAL_UNIT && off + n <= j->size);
    if (off < r->start || off + n > r->start + r->len) {
        uint64_t start = QEMU_ALIGN_DOWN(off, JOURNAL_UNIT);
        uint64_t len = MIN(JOURNAL_READ_CHUNK, j->size - start);
        int ret = bdrv_pread(j->file, j->offset + start, len, r->buf, 0);

        if (ret < 0) {
            r->len = 0;
            return ret;
        }
        r->start = start;
        r->len = len;
    }
    *p = r->buf + (off - r->start);
    return 0;
}

/*
 * The record at *off, or after the zero padding that ends *off's unit,
 * if it is valid and has sequence seq: returns 1, its offset in *off and
 * its bytes in *p.  0 at the end of the chain, or -errno.
 */
static int journal_next(JournalReader *r, uint64_t *off, uint64_t seq,
                        const uint8_t **p)
{
    Qcow2Journal *j = r->j;
    uint64_t o = *off;
    unsigned type, len;
    int ret;

    if (!QEMU_IS_ALIGNED(o, JOURNAL_UNIT)) {
        uint64_t end = ROUND_UP(o, JOURNAL_UNIT);

        ret = journal_peek(r, o, end - o, p);
        if (ret < 0) {
            return ret;
        }
        if (buffer_is_zero(*p, end - o)) {
            o = end;
        }
    }
    if (o + JOURNAL_HEADER_SIZE > j->size) {
        return 0;
    }
    ret = journal_peek(r, o, JOURNAL_HEADER_SIZE, p);
    if (ret < 0) {
        return ret;
    }
    type = lduw_be_p(*p);
    len = lduw_be_p(*p + 2);
    if (!journal_record_size(type) || len != journal_record_size(type) ||
        o + len > j->size) {
        return 0;
    }
    ret = journal_peek(r, o, len, p);
    if (ret < 0) {
        return ret;
    }
    if (ldl_be_p(*p + 4) != journal_crc(*p, len) ||
        ldq_be_p(*p + 8) != j->generation || ldq_be_p(*p + 16) != seq) {
        return 0;
    }
    if (type == QCOW2_JOURNAL_COMMIT &&
        ldq_be_p(*p + JOURNAL_HEADER_SIZE) != seq - 1) {
        return 0;
    }
    *off = o;
    return 1;
}

static void journal_decode(const uint8_t *p, Qcow2JournalRecord *rec)
{
    const uint8_t *payload = p + JOURNAL_HEADER_SIZE;

    memset(rec, 0, sizeof(*rec));
    rec->type = lduw_be_p(p);
    rec->sequence = ldq_be_p(p + 16);
    if (rec->type == QCOW2_JOURNAL_INSERT) {
        memcpy(rec->hash.b, payload, QCOW2_DEDUP_HASH_SIZE);
        payload += QCOW2_DEDUP_HASH_SIZE;
    }
    rec->cluster = ldq_be_p(payload);
    qcow2_dedup_loc_unpack(ldq_be_p(payload + 8), &rec->loc);
}

/*
 * Set up appends after the last COMMIT, which ends at keep_end and has
 * sequence next_seq - 1 (0 and 1 when there is none), and zero everything
 * after it.
 */
static int journal_continue_after(Qcow2Journal *j, uint64_t keep_end,
                                  uint64_t next_seq)
{
    if (keep_end < j->size && !bdrv_is_read_only(j->file)) {
        int ret = bdrv_pwrite_zeroes(j->file, j->offset + keep_end,
                                     j->size - keep_end, 0);
        if (ret < 0) {
            return ret;
        }
    }
    j->next_seq = next_seq;
    j->pos = ROUND_UP(keep_end, JOURNAL_UNIT);
    return 0;
}

/* Deliver the pending records; a non-zero return of fn stops. */
static int journal_deliver(GArray *pending,
                           int (*fn)(const Qcow2JournalRecord *r,
                                     void *opaque),
                           void *opaque)
{
    int ret = 0;

    for (guint i = 0; i < pending->len && !ret; i++) {
        ret = fn(&g_array_index(pending, Qcow2JournalRecord, i), opaque);
    }
    g_array_set_size(pending, 0);
    return ret;
}

int qcow2_journal_replay(Qcow2Journal *j,
                         int (*fn)(const Qcow2JournalRecord *r, void *opaque),
                         void *opaque)
{
    JournalReader r = { .j = j };
    g_autoptr(GArray) pending = g_array_new(FALSE, FALSE,
                                            sizeof(Qcow2JournalRecord));
    uint64_t off = 0, seq = 1, keep_end = 0, keep_seq = 0;
    const uint8_t *p;
    int ret;

    /* Replay defines the append state: only on an untouched journal. */
    if (j->pos || j->batch->len || j->next_seq != 1) {
        return -EBUSY;
    }
    r.buf = qemu_blockalign(JOURNAL_READ_CHUNK);
    while ((ret = journal_next(&r, &off, seq, &p)) > 0) {
        Qcow2JournalRecord rec;

        journal_decode(p, &rec);
        off += journal_record_size(rec.type);
        seq++;
        if (rec.type != QCOW2_JOURNAL_COMMIT) {
            g_array_append_val(pending, rec);
            continue;
        }
        ret = journal_deliver(pending, fn, opaque);
        if (ret) {
            break;
        }
        keep_end = off;
        keep_seq = rec.sequence;
    }
    if (ret == 0) {
        /* pending holds the uncommitted tail: dropped. */
        ret = journal_continue_after(j, keep_end, keep_seq + 1);
    }
    qemu_vfree(r.buf);
    return ret;
}

/*
 * Tests of the deduplication journal (block/qcow2-journal.c).
 *
 * Every test uses a scratch raw file opened with the "file" driver: the
 * journal lives at JOURNAL_OFFSET, surrounded by sentinel bytes that must
 * survive (the journal never writes outside its range).  A "flush" between
 * two qcow2_journal_write() calls is a bdrv_flush() of the file, as the
 * qcow2 glue does; the file is opened with BDRV_O_NO_FLUSH, as nothing
 * here simulates a power loss, so that thousands of them stay fast.
 *
 * The expected behaviour comes from docs/interop/qcow2.txt 7.5: this file
 * has its own encoder and checker of the record format (zlib crc32), used
 * to craft journals and to inspect what the journal wrote.  Random tests
 * are seeded (QEMU_TEST_SEED overrides the seeds) and print their seed.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qcow2-dedup.h"
#include <zlib.h>

#define UNIT 512
#define SENTINEL_SIZE 4096
#define JOURNAL_OFFSET SENTINEL_SIZE    /* a sentinel before and after */
#define SENTINEL_BYTE 0xa5
#define INSERT_SIZE 72
#define REMOVE_SIZE 40
#define COMMIT_SIZE 32

static char *tmpdir;

/* Scratch file */

typedef struct TestFile {
    char *path;
    uint64_t jsize;             /* journal bytes */
    BlockDriverState *bs;
} TestFile;

static BlockDriverState *test_file_open(const char *path, int flags)
{
    QDict *opts = qdict_new();
    Error *err = NULL;
    BlockDriverState *bs;

    qdict_put_str(opts, "driver", "file");
    bs = bdrv_open(path, opts, flags, &err);
    g_assert_null(err);
    g_assert_nonnull(bs);
    return bs;
}

/* A file holding sentinel | zeroed journal of jsize bytes | sentinel. */
static TestFile *test_file_new(uint64_t jsize)
{
    static int counter;
    TestFile *tf = g_new0(TestFile, 1);
    g_autofree uint8_t *sentinel = g_malloc(SENTINEL_SIZE);
    int fd;

    tf->path = g_strdup_printf("%s/journal-%d.raw", tmpdir, counter++);
    tf->jsize = jsize;
    memset(sentinel, SENTINEL_BYTE, SENTINEL_SIZE);
    fd = open(tf->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, JOURNAL_OFFSET + jsize + SENTINEL_SIZE),
                    ==, 0);
    g_assert_cmpint(pwrite(fd, sentinel, SENTINEL_SIZE, 0), ==, SENTINEL_SIZE);
    g_assert_cmpint(pwrite(fd, sentinel, SENTINEL_SIZE,
                           JOURNAL_OFFSET + jsize), ==, SENTINEL_SIZE);
    close(fd);
    tf->bs = test_file_open(tf->path, BDRV_O_RDWR | BDRV_O_NO_FLUSH);
    return tf;
}

static void test_file_check_sentinels(TestFile *tf)
{
    g_autofree uint8_t *buf = g_malloc(SENTINEL_SIZE);

    g_assert_cmpint(bdrv_pread(tf->bs, 0, SENTINEL_SIZE, buf, 0), ==, 0);
    for (int i = 0; i < SENTINEL_SIZE; i++) {
        g_assert_cmphex(buf[i], ==, SENTINEL_BYTE);
    }
    g_assert_cmpint(bdrv_pread(tf->bs, JOURNAL_OFFSET + tf->jsize,
                               SENTINEL_SIZE, buf, 0), ==, 0);
    for (int i = 0; i < SENTINEL_SIZE; i++) {
        g_assert_cmphex(buf[i], ==, SENTINEL_BYTE);
    }
}

static void test_file_truncate(TestFile *tf, uint64_t length)
{
    g_assert_cmpint(truncate(tf->path, length), ==, 0);
}

/* Back to full length, with the trailing sentinel. */
static void test_file_restore_end(TestFile *tf)
{
    g_autofree uint8_t *sentinel = g_malloc(SENTINEL_SIZE);

    memset(sentinel, SENTINEL_BYTE, SENTINEL_SIZE);
    test_file_truncate(tf, JOURNAL_OFFSET + tf->jsize);
    g_assert_cmpint(bdrv_pwrite(tf->bs, JOURNAL_OFFSET + tf->jsize,
                                SENTINEL_SIZE, sentinel, 0), ==, 0);
}

static void test_file_free(TestFile *tf)
{
    test_file_check_sentinels(tf);
    bdrv_unref(tf->bs);
    unlink(tf->path);
    g_free(tf->path);
    g_free(tf);
}

static uint8_t *journal_read(TestFile *tf)
{
    uint8_t *buf = g_malloc(tf->jsize);

    g_assert_cmpint(bdrv_pread(tf->bs, JOURNAL_OFFSET, tf->jsize, buf, 0),
                    ==, 0);
    return buf;
}

static void journal_store(TestFile *tf, const uint8_t *buf)
{
    g_assert_cmpint(bdrv_pwrite(tf->bs, JOURNAL_OFFSET, tf->jsize, buf, 0),
                    ==, 0);
}

static Qcow2Journal *journal_open(TestFile *tf, uint64_t generation)
{
    return qcow2_journal_new(tf->bs, JOURNAL_OFFSET, tf->jsize, generation);
}

/* Records */

static guint32 seed_of(guint32 base)
{
    const char *env = g_getenv("QEMU_TEST_SEED");
    guint32 seed = env ? (guint32)strtoul(env, NULL, 0) : base;

    g_test_message("seed %" G_GUINT32_FORMAT, seed);
    return seed;
}

static void random_record(GRand *rand, Qcow2JournalRecord *r)
{
    memset(r, 0, sizeof(*r));
    r->type = g_rand_boolean(rand) ? QCOW2_JOURNAL_INSERT
                                   : QCOW2_JOURNAL_REMOVE;
    if (r->type == QCOW2_JOURNAL_INSERT) {
        for (int i = 0; i < QCOW2_DEDUP_HASH_SIZE; i++) {
            r->hash.b[i] = g_rand_int(rand);
        }
    }
    r->cluster = ((uint64_t)g_rand_int(rand) << 20) | g_rand_int(rand);
    r->loc.id = g_rand_int_range(rand, 1, QCOW2_DEDUP_MAX_ID + 1);
    r->loc.bucket = g_rand_int(rand) & 0xffffff;
    r->loc.tag = g_rand_int_range(rand, 1, 0x10000);
}

static int append_record(Qcow2Journal *j, const Qcow2JournalRecord *r)
{
    if (r->type == QCOW2_JOURNAL_INSERT) {
        return qcow2_journal_append_insert(j, &r->hash, r->cluster, &r->loc);
    }
    return qcow2_journal_append_remove(j, r->cluster, &r->loc);
}

/* Append a random record; on success also to expected. */
static int append_random(Qcow2Journal *j, GRand *rand, GArray *expected)
{
    Qcow2JournalRecord r;
    int ret;

    random_record(rand, &r);
    ret = append_record(j, &r);
    if (ret == 0) {
        g_array_append_val(expected, r);
    }
    return ret;
}

static void write_and_flush(TestFile *tf, Qcow2Journal *j)
{
    g_assert_cmpint(qcow2_journal_write(j), ==, 0);
    g_assert_cmpint(bdrv_flush(tf->bs), ==, 0);
}

static void commit_and_flush(TestFile *tf, Qcow2Journal *j)
{
    g_assert_cmpint(qcow2_journal_commit_all(j), ==, 0);
    g_assert_cmpint(bdrv_flush(tf->bs), ==, 0);
}

typedef struct Collected {
    GArray *records;
    uint64_t last_seq;
    int fail_at;                /* return -EIO for this record (1-based) */
} Collected;

static int collect(const Qcow2JournalRecord *r, void *opaque)
{
    Collected *c = opaque;

    g_assert(r->type == QCOW2_JOURNAL_INSERT ||
             r->type == QCOW2_JOURNAL_REMOVE);
    g_assert_cmpuint(r->sequence, >, c->last_seq);
    c->last_seq = r->sequence;
    g_array_append_vals(c->records, r, 1);
    if (c->fail_at && c->records->len == (guint)c->fail_at) {
        return -EIO;
    }
    return 0;
}

/*
 * Replay j; the delivered records go to a new array.  Then flush, as
 * appends in the same generation require.
 */
static GArray *replay(Qcow2Journal *j, TestFile *tf)
{
    Collected c = {
        .records = g_array_new(FALSE, FALSE, sizeof(Qcow2JournalRecord)),
    };

    g_assert_cmpint(qcow2_journal_replay(j, collect, &c), ==, 0);
    g_assert_cmpint(bdrv_flush(tf->bs), ==, 0);
    return c.records;
}

/* Replay a fresh journal object on tf. */
static GArray *replay_fresh(TestFile *tf, uint64_t generation)
{
    Qcow2Journal *j = journal_open(tf, generation);
    GArray *got = replay(j, tf);

    qcow2_journal_free(j);
    return got;
}

static Qcow2JournalRecord *rec_at(GArray *records, guint i)
{
    return &g_array_index(records, Qcow2JournalRecord, i);
}

static bool record_equal(const Qcow2JournalRecord *a,
                         const Qcow2JournalRecord *b)
{
    return a->type == b->type && a->cluster == b->cluster &&
           a->loc.id == b->loc.id && a->loc.bucket == b->loc.bucket &&
           a->loc.tag == b->loc.tag &&
           (a->type != QCOW2_JOURNAL_INSERT ||
            !memcmp(a->hash.b, b->hash.b, QCOW2_DEDUP_HASH_SIZE));
}

/* got holds exactly the first n records of expected (n: -1 for all). */
static void assert_records(GArray *got, GArray *expected, int n)
{
    guint want = n < 0 ? expected->len : (guint)n;

    g_assert_cmpuint(got->len, ==, want);
    for (guint i = 0; i < want; i++) {
        g_assert_true(record_equal(rec_at(got, i), rec_at(expected, i)));
    }
}

static bool is_prefix(GArray *got, GArray *expected)
{
    if (got->len > expected->len) {
        return false;
    }
    for (guint i = 0; i < got->len; i++) {
        if (!record_equal(rec_at(got, i), rec_at(expected, i))) {
            return false;
        }
    }
    return true;
}

static GArray *records_new(void)
{
    return g_array_new(FALSE, FALSE, sizeof(Qcow2JournalRecord));
}

/* Independent encoder and checker of the on-disk format */

static uint32_t record_crc(const uint8_t *p, unsigned len)
{
    uint8_t copy[INSERT_SIZE];

    memcpy(copy, p, len);
    memset(copy + 4, 0, 4);
    return crc32(0, copy, len);
}

/* Encode a record at p; payload: the bytes after the 24-byte header. */
static unsigned put_record(uint8_t *p, unsigned type, unsigned len,
                           uint64_t gen, uint64_t seq, const uint8_t *payload)
{
    memset(p, 0, len);
    stw_be_p(p, type);
    stw_be_p(p + 2, len);
    stq_be_p(p + 8, gen);
    stq_be_p(p + 16, seq);
    memcpy(p + 24, payload, len - 24);
    stl_be_p(p + 4, record_crc(p, len));
    return len;
}

static unsigned put_insert(uint8_t *p, uint64_t gen, uint64_t seq,
                           const Qcow2JournalRecord *r)
{
    uint8_t payload[INSERT_SIZE - 24];

    memcpy(payload, r->hash.b, 32);
    stq_be_p(payload + 32, r->cluster);
    stq_be_p(payload + 40, qcow2_dedup_loc_pack(&r->loc));
    return put_record(p, QCOW2_JOURNAL_INSERT, INSERT_SIZE, gen, seq,
                      payload);
}

static unsigned put_commit(uint8_t *p, uint64_t gen, uint64_t seq,
                           uint64_t covered)
{
    uint8_t payload[8];

    stq_be_p(payload, covered);
    return put_record(p, QCOW2_JOURNAL_COMMIT, COMMIT_SIZE, gen, seq,
                      payload);
}

typedef struct FormatSummary {
    unsigned batches;
    unsigned trusted;           /* INSERT/REMOVE before the last COMMIT */
    uint64_t end;               /* end of the last batch (unit aligned) */
} FormatSummary;

/*
 * Walk a journal written by the implementation, asserting the format of
 * 7.5: records 8-byte aligned with their exact lengths, crc, generation
 * and sequence; zero padding only up to a unit boundary; a batch (which
 * starts after padding, or with a COMMIT at a unit boundary) that follows
 * INSERT/REMOVE records starts with a COMMIT covering everything before.
 */
static FormatSummary check_format(const uint8_t *buf, uint64_t size,
                                  uint64_t gen)
{
    FormatSummary s = { 0 };
    uint64_t off = 0, seq = 1;
    unsigned data = 0, uncommitted = 0;
    bool batch_start = true;

    while (off + 24 <= size) {
        const uint8_t *p = buf + off;
        uint64_t unit_end = ROUND_UP(off + 1, UNIT);
        unsigned type, len;

        if (buffer_is_zero(p, unit_end - off)) {
            if (QEMU_IS_ALIGNED(off, UNIT)) {
                break;
            }
            off = unit_end;
            batch_start = true;
            continue;
        }
        g_assert_true(QEMU_IS_ALIGNED(off, 8));
        type = lduw_be_p(p);
        len = lduw_be_p(p + 2);
        g_assert_cmpuint(len, ==, type == QCOW2_JOURNAL_INSERT ? 72 :
                         type == QCOW2_JOURNAL_REMOVE ? 40 :
                         type == QCOW2_JOURNAL_COMMIT ? 32 : 0);
        g_assert_cmpuint(off + len, <=, size);
        g_assert_cmphex(ldl_be_p(p + 4), ==, record_crc(p, len));
        g_assert_cmpuint(ldq_be_p(p + 8), ==, gen);
        g_assert_cmpuint(ldq_be_p(p + 16), ==, seq);
        if (batch_start || type == QCOW2_JOURNAL_COMMIT) {
            s.batches++;
        }
        if (type == QCOW2_JOURNAL_COMMIT) {
            g_assert_true(QEMU_IS_ALIGNED(off, UNIT));
            g_assert_cmpuint(uncommitted, >, 0);
            g_assert_cmpuint(ldq_be_p(p + 24), ==, seq - 1);
            s.trusted = data;
            uncommitted = 0;
        } else {
            g_assert_true(!batch_start || uncommitted == 0);
            data++;
            uncommitted++;
        }
        batch_start = false;
        seq++;
        off += len;
    }
    s.end = ROUND_UP(off, UNIT);
    return s;
}

/* Tests */

static void test_round_trip(void)
{
    TestFile *tf = test_file_new(256 * KiB);
    Qcow2Journal *j = journal_open(tf, 7);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(1));
    g_autoptr(GArray) expected = records_new();
    g_autoptr(GArray) got = NULL;
    FormatSummary s;
    g_autofree uint8_t *buf = NULL;

    g_assert_cmpuint(qcow2_journal_generation(j), ==, 7);
    for (int batch = 0; batch < 30; batch++) {
        int n = g_rand_int_range(rand, 1, 40);
        for (int i = 0; i < n; i++) {
            g_assert_cmpint(append_random(j, rand, expected), ==, 0);
        }
        write_and_flush(tf, j);
        /* A write() with nothing new only commits, once. */
        if (batch % 7 == 3) {
            write_and_flush(tf, j);
            write_and_flush(tf, j);
        }
    }
    commit_and_flush(tf, j);
    /* Nothing left to commit: no more output. */
    g_assert_cmpint(qcow2_journal_commit_all(j), ==, 0);
    g_assert_cmpint(qcow2_journal_write(j), ==, 0);
    qcow2_journal_free(j);

    buf = journal_read(tf);
    s = check_format(buf, tf->jsize, 7);
    g_assert_cmpuint(s.trusted, ==, expected->len);
    got = replay_fresh(tf, 7);
    assert_records(got, expected, -1);
    test_file_free(tf);
}

static void test_uncommitted_tail(void)
{
    TestFile *tf = test_file_new(64 * KiB);
    Qcow2Journal *j = journal_open(tf, 1);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(2));
    g_autoptr(GArray) expected = records_new();
    g_autoptr(GArray) uncommitted = records_new();
    GArray *got;

    for (int i = 0; i < 10; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    for (int i = 0; i < 5; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    /* Written and flushed, but no COMMIT yet: not trusted. */
    qcow2_journal_free(j);
    got = replay_fresh(tf, 1);
    assert_records(got, expected, 10);
    g_array_unref(got);

    /* The first batch alone, never committed: nothing. */
    j = journal_open(tf, 1);
    g_assert_cmpint(qcow2_journal_reset(j, 2), ==, 0);
    for (int i = 0; i < 3; i++) {
        append_random(j, rand, uncommitted);
    }
    write_and_flush(tf, j);
    qcow2_journal_free(j);
    got = replay_fresh(tf, 2);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);
    test_file_free(tf);
}

/*
 * Appends after a replay that dropped an uncommitted tail must not make
 * that tail trusted: the next COMMIT covers only what this session wrote.
 */
static void test_tail_not_resurrected(void)
{
    TestFile *tf = test_file_new(64 * KiB);
    Qcow2Journal *j = journal_open(tf, 3);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(3));
    g_autoptr(GArray) expected = records_new();
    g_autoptr(GArray) dropped = records_new();
    g_autofree uint8_t *buf = NULL;
    GArray *got;

    for (int i = 0; i < 8; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    for (int i = 0; i < 20; i++) {
        append_random(j, rand, dropped);     /* shares the COMMIT's unit */
    }
    write_and_flush(tf, j);
    qcow2_journal_free(j);

    j = journal_open(tf, 3);
    got = replay(j, tf);
    assert_records(got, expected, -1);
    g_array_unref(got);
    for (int i = 0; i < 4; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    commit_and_flush(tf, j);
    qcow2_journal_free(j);

    buf = journal_read(tf);
    g_assert_cmpuint(check_format(buf, tf->jsize, 3).trusted, ==,
                     expected->len);
    got = replay_fresh(tf, 3);
    assert_records(got, expected, -1);
    g_array_unref(got);
    test_file_free(tf);
}

/* Corrupt byte in the last batch: replay stops there. */
static void test_torn_batch(void)
{
    TestFile *tf = test_file_new(64 * KiB);
    Qcow2Journal *j = journal_open(tf, 5);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(4));
    g_autoptr(GArray) expected = records_new();
    g_autofree uint8_t *buf = NULL;
    uint64_t last_start, last_end;
    unsigned before_last;
    GArray *got;

    for (int batch = 0; batch < 4; batch++) {
        for (int i = 0; i < 12; i++) {
            append_random(j, rand, expected);
        }
        write_and_flush(tf, j);
    }
    before_last = expected->len;
    buf = journal_read(tf);
    last_start = check_format(buf, tf->jsize, 5).end;
    g_free(buf);
    for (int i = 0; i < 12; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    commit_and_flush(tf, j);
    qcow2_journal_free(j);

    buf = journal_read(tf);
    last_end = check_format(buf, tf->jsize, 5).end - UNIT; /* final COMMIT */
    g_assert_cmpuint(last_end - last_start, ==, 2 * UNIT);
    /* All trusted before the damage. */
    got = replay_fresh(tf, 5);
    assert_records(got, expected, -1);
    g_array_unref(got);

    /* The last batch's COMMIT (covering the earlier ones) stays intact. */
    buf[last_start + COMMIT_SIZE + 5 * INSERT_SIZE + 30] ^= 0x40;
    journal_store(tf, buf);
    j = journal_open(tf, 5);
    got = replay(j, tf);
    assert_records(got, expected, before_last);
    g_array_unref(got);

    /* Appends continue after the damage and are trusted again. */
    g_array_set_size(expected, before_last);
    for (int i = 0; i < 6; i++) {
        append_random(j, rand, expected);
    }
    write_and_flush(tf, j);
    commit_and_flush(tf, j);
    qcow2_journal_free(j);
    got = replay_fresh(tf, 5);
    assert_records(got, expected, -1);
    g_array_unref(got);
    test_file_free(tf);
}

static void append_removes(Qcow2Journal *j, GRand *rand, int n,
                           GArray *expected)
{
    for (int i = 0; i < n; i++) {
        Qcow2JournalRecord r;

        random_record(rand, &r);
        r.type = QCOW2_JOURNAL_REMOVE;
        g_assert_cmpint(append_record(j, &r), ==, 0);
        g_array_append_val(expected, r);
    }
}

/*
 * Damage in the middle of the journal: committed records of the same
 * generation lie beyond it.  New records reuse their sequence numbers; an
 * old COMMIT that happens to follow a new batch with just the right
 * sequence must not make the new, uncommitted records (or old ones)
 * trusted.  Layout with 40-byte REMOVEs: unit 0: 1-5; unit 1: C6 (a
 * write() with nothing new); unit 2: 7-11; unit 3: C12, 13-17; unit 4: C18.
 */
static void test_stale_commit_after_damage(void)
{
    TestFile *tf = test_file_new(8 * UNIT);
    Qcow2Journal *j = journal_open(tf, 6);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(12));
    g_autoptr(GArray) expected = records_new();
    g_autoptr(GArray) lost = records_new();
    g_autofree uint8_t *buf = NULL;
    FormatSummary s;
    GArray *got;

    append_removes(j, rand, 5, expected);
    write_and_flush(tf, j);
    write_and_flush(tf, j);
    for (int batch = 0; batch < 2; batch++) {
        append_removes(j, rand, 5, lost);
        write_and_flush(tf, j);
    }
    commit_and_flush(tf, j);
    qcow2_journal_free(j);
    buf = journal_read(tf);
    s = check_format(buf, tf->jsize, 6);
    g_assert_cmpuint(s.batches, ==, 5);
    g_assert_cmpuint(s.trusted, ==, 15);
    g_assert_cmpuint(ldq_be_p(buf + 3 * UNIT + 16), ==, 12);

    /* Record 8 damaged: only 1-5 are trusted. */
    buf[2 * UNIT + REMOVE_SIZE + 10] ^= 1;
    journal_store(tf, buf);
    j = journal_open(tf, 6);
    got = replay(j, tf);
    assert_records(got, expected, -1);
    g_array_unref(got);

    /* New 7-11 in unit 2, written but not committed; C12 follows. */
    append_removes(j, rand, 5, lost);
    write_and_flush(tf, j);
    qcow2_journal_free(j);
    got = replay_fresh(tf, 6);
    assert_records(got, expected, -1);
    g_array_unref(got);
    test_file_free(tf);
}

/* Replay of a read-only file works and writes nothing. */
static void test_read_only_replay(void)
{
    TestFile *tf = test_file_new(8 * UNIT);
    Qcow2Journal *j = journal_open(tf, 2);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(13));
    g_autoptr(GArray) expected = records_new();
    g_autoptr(GArray) tail = records_new();
    g_autofree uint8_t *before = NULL;
    g_autofree uint8_t *after = NULL;
    Collected c = { .records = records_new() };
    BlockDriverState *rw = tf->bs;

    append_removes(j, rand, 5, expected);
    write_and_flush(tf, j);
    append_removes(j, rand, 5, tail);
    write_and_flush(tf, j);
    qcow2_journal_free(j);
    before = journal_read(tf);

    tf->bs = test_file_open(tf->path, 0);
    j = journal_open(tf, 2);
    g_assert_cmpint(qcow2_journal_replay(j, collect, &c), ==, 0);
    assert_records(c.records, expected, -1);
    g_array_unref(c.records);
    qcow2_journal_free(j);
    bdrv_unref(tf->bs);
    tf->bs = rw;
    after = journal_read(tf);
    g_assert_cmpmem(before, tf->jsize, after, tf->jsize);
    test_file_free(tf);
}

static void test_generation(void)
{
    TestFile *tf = test_file_new(64 * KiB);
    Qcow2Journal *j = journal_open(tf, 10);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(5));
    g_autoptr(GArray) old = records_new();
    g_autoptr(GArray) fresh = records_new();
    g_autofree uint8_t *buf = NULL;
    GArray *got;

    for (int batch = 0; batch < 5; batch++) {
        for (int i = 0; i < 20; i++) {
            append_random(j, rand, old);
        }
        write_and_flush(tf, j);
    }
    commit_and_flush(tf, j);

    /* Queued records of the old generation are dropped by reset. */
    append_random(j, rand, old);
    g_assert_cmpint(qcow2_journal_reset(j, 10), ==, -EINVAL);
    g_assert_cmpint(qcow2_journal_reset(j, 9), ==, -EINVAL);
    g_assert_cmpint(qcow2_journal_reset(j, 11), ==, 0);
    g_assert_cmpuint(qcow2_journal_generation(j), ==, 11);
    g_assert_cmpuint(qcow2_journal_fill_permille(j), ==, 0);
    for (int i = 0; i < 3; i++) {
        append_random(j, rand, fresh);
    }
    write_and_flush(tf, j);
    commit_and_flush(tf, j);
    qcow2_journal_free(j);

    /* Old generation records follow the new ones on disk: ignored. */
    buf = journal_read(tf);
    g_assert_false(buffer_is_zero(buf + 2 * UNIT, UNIT));
    got = replay_fresh(tf, 11);
    assert_records(got, fresh, -1);
    g_array_unref(got);
    /* And the old generation is gone (its start was overwritten). */
    got = replay_fresh(tf, 10);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);
    test_file_free(tf);
}

/* Fill one batch exactly: 21 INSERTs fit in 2048 bytes (3 units + COMMIT). */
static void test_enospc_exact(void)
{
    TestFile *tf = test_file_new(4 * UNIT);
    Qcow2Journal *j = journal_open(tf, 1);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(6));
    g_autoptr(GArray) expected = records_new();
    Qcow2JournalRecord r;
    g_autofree uint8_t *buf = NULL;
    GArray *got;

    g_assert_false(qcow2_journal_nearly_full(j, 3 * UNIT));
    g_assert_true(qcow2_journal_nearly_full(j, 3 * UNIT + 1));
    for (int i = 0; i < 21; i++) {
        random_record(rand, &r);
        r.type = QCOW2_JOURNAL_INSERT;
        g_assert_cmpint(append_record(j, &r), ==, 0);
        g_array_append_val(expected, r);
    }
    g_assert_cmpint(append_record(j, &r), ==, -ENOSPC);
    r.type = QCOW2_JOURNAL_REMOVE;
    g_assert_cmpint(append_record(j, &r), ==, -ENOSPC);
    g_assert_cmpuint(qcow2_journal_fill_permille(j), ==, 750);
    g_assert_true(qcow2_journal_nearly_full(j, 1));
    g_assert_false(qcow2_journal_nearly_full(j, 0));
    /* Queued records must be written before commit_all. */
    g_assert_cmpint(qcow2_journal_commit_all(j), ==, -EBUSY);
    write_and_flush(tf, j);
    commit_and_flush(tf, j);
    g_assert_cmpuint(qcow2_journal_fill_permille(j), ==, 1000);
    g_assert_cmpint(append_record(j, &r), ==, -ENOSPC);
    qcow2_journal_free(j);

    buf = journal_read(tf);
    g_assert_cmpuint(check_format(buf, tf->jsize, 1).end, ==, tf->jsize);
    got = replay_fresh(tf, 1);
    assert_records(got, expected, -1);
    g_array_unref(got);

    /* A full journal replays and refuses appends. */
    j = journal_open(tf, 1);
    got = replay(j, tf);
    g_assert_cmpuint(got->len, ==, 21);
    g_array_unref(got);
    g_assert_cmpint(append_record(j, &r), ==, -ENOSPC);
    qcow2_journal_free(j);

    /* Too small to hold a record and its COMMIT. */
    j = qcow2_journal_new(tf->bs, JOURNAL_OFFSET, UNIT + UNIT - 1, 1);
    g_assert_cmpint(append_record(j, &r), ==, -ENOSPC);
    g_assert_true(qcow2_journal_nearly_full(j, 1));
    qcow2_journal_free(j);
    test_file_free(tf);
}

/*
 * Random batches until -ENOSPC: what was accepted can always be written
 * and committed, and is replayed.  The accounting is modelled here.
 */
static void test_enospc_random(void)
{
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(7));

    for (int round = 0; round < 40; round++) {
        TestFile *tf = test_file_new(g_rand_int_range(rand, 2, 40) * UNIT);
        Qcow2Journal *j = journal_open(tf, 1);
        g_autoptr(GArray) expected = records_new();
        uint64_t pos = 0, batch = 0;
        unsigned batch_records = 0;
        GArray *got;

        for (;;) {
            Qcow2JournalRecord r;
            unsigned len;
            bool fits;
            int ret;

            random_record(rand, &r);
            len = r.type == QCOW2_JOURNAL_INSERT ? INSERT_SIZE : REMOVE_SIZE;
            fits = pos + ROUND_UP(batch + len, UNIT) + UNIT <= tf->jsize;
            ret = append_record(j, &r);
            g_assert_cmpint(ret, ==, fits ? 0 : -ENOSPC);
            if (ret == 0) {
                g_array_append_val(expected, r);
                batch += len;
                batch_records++;
            } else if (g_rand_int_range(rand, 0, 4) == 0) {
                break;
            }
            if (g_rand_int_range(rand, 0, 8) == 0 || ret < 0) {
                write_and_flush(tf, j);
                pos += ROUND_UP(batch, UNIT);
                /* The next batch starts with a COMMIT if this had records. */
                batch = batch_records ? COMMIT_SIZE : 0;
                batch_records = 0;
            }
        }
        write_and_flush(tf, j);
        commit_and_flush(tf, j);
        qcow2_journal_free(j);
        got = replay_fresh(tf, 1);
        assert_records(got, expected, -1);
        g_array_unref(got);
        test_file_free(tf);
    }
}

static void test_append_after_replay(void)
{
    TestFile *tf = test_file_new(128 * KiB);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(8));
    g_autoptr(GArray) expected = records_new();
    GArray *got;

    /* Several sessions, each cleanly closed or not (tail dropped). */
    for (int session = 0; session < 8; session++) {
        Qcow2Journal *j = journal_open(tf, 4);
        g_autoptr(GArray) lost = records_new();
        GArray *got = replay(j, tf);
        bool clean = session % 3 != 2;

        assert_records(got, expected, -1);
        g_array_unref(got);
        for (int batch = 0; batch < 3; batch++) {
            for (int i = g_rand_int_range(rand, 0, 15); i > 0; i--) {
                append_random(j, rand, expected);
            }
            write_and_flush(tf, j);
        }
        if (clean) {
            commit_and_flush(tf, j);
        } else {
            /* The last batch was not committed: those are lost. */
            for (int i = 0; i < 5; i++) {
                append_random(j, rand, lost);
            }
            write_and_flush(tf, j);
        }
        qcow2_journal_free(j);
    }
    got = replay_fresh(tf, 4);
    assert_records(got, expected, -1);
    g_array_unref(got);
    test_file_free(tf);
}

/*
 * Run write() or commit_all(); if it wrote, it must be one pwrite of whole
 * units starting where the previous one ended.  Then flush.
 */
static int checked_write(TestFile *tf, Qcow2Journal *j, bool commit,
                         uint64_t *end, unsigned *batches)
{
    BlockAcctStats before, after;
    int ret;

    bdrv_get_stats(tf->bs, &before);
    ret = commit ? qcow2_journal_commit_all(j) : qcow2_journal_write(j);
    bdrv_get_stats(tf->bs, &after);
    if (ret < 0 || after.wr_ops == before.wr_ops) {
        return ret;
    }
    (*batches)++;
    g_assert_cmpuint(after.wr_ops, ==, before.wr_ops + 1);
    g_assert_cmpuint((after.wr_bytes - before.wr_bytes) % UNIT, ==, 0);
    g_assert_cmpuint(after.wr_highest_offset -
                     (after.wr_bytes - before.wr_bytes), ==, *end);
    *end = after.wr_highest_offset;
    g_assert_cmpint(bdrv_flush(tf->bs), ==, 0);
    return 0;
}

static void test_batch_alignment(void)
{
    TestFile *tf = test_file_new(256 * KiB);
    Qcow2Journal *j = journal_open(tf, 2);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(9));
    g_autoptr(GArray) expected = records_new();
    uint64_t end = JOURNAL_OFFSET;
    unsigned batches = 0;
    g_autofree uint8_t *buf = NULL;
    FormatSummary s;

    for (int batch = 0; batch < 60; batch++) {
        int n = g_rand_int_range(rand, 0, 25);

        for (int i = 0; i < n; i++) {
            append_random(j, rand, expected);
        }
        if (batch % 10 == 9) {
            /* Queued records must be written before a commit_all(). */
            g_assert_cmpint(checked_write(tf, j, true, &end, &batches), ==,
                            n ? -EBUSY : 0);
        }
        g_assert_cmpint(checked_write(tf, j, false, &end, &batches), ==, 0);
    }
    g_assert_cmpint(checked_write(tf, j, true, &end, &batches), ==, 0);
    qcow2_journal_free(j);

    buf = journal_read(tf);
    s = check_format(buf, tf->jsize, 2);
    g_assert_cmpuint(s.batches, ==, batches);
    g_assert_cmpuint(s.trusted, ==, expected->len);
    g_assert_cmpuint(JOURNAL_OFFSET + s.end, ==, end);
    test_file_free(tf);
}

/* Journals crafted with this file's encoder (the format, not the writer). */
static void test_crafted(void)
{
    TestFile *tf = test_file_new(8 * UNIT);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(10));
    g_autofree uint8_t *buf = g_malloc0(tf->jsize);
    g_autoptr(GArray) recs = records_new();
    Qcow2JournalRecord r;
    Collected fail = { .records = records_new(), .fail_at = 2 };
    Qcow2Journal *j;
    uint64_t off = 0;
    GArray *got;

    for (int i = 0; i < 4; i++) {
        random_record(rand, &r);
        r.type = QCOW2_JOURNAL_INSERT;
        g_array_append_val(recs, r);
    }
    /* Unit 0: I1 I2; unit 1: C3(2) I4; unit 2: C5(4) I6 (tail). */
    off += put_insert(buf + off, 1, 1, rec_at(recs, 0));
    off += put_insert(buf + off, 1, 2, rec_at(recs, 1));
    off = UNIT;
    off += put_commit(buf + off, 1, 3, 2);
    off += put_insert(buf + off, 1, 4, rec_at(recs, 2));
    off = 2 * UNIT;
    off += put_commit(buf + off, 1, 5, 4);
    put_insert(buf + off, 1, 6, rec_at(recs, 3));
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    assert_records(got, recs, 3);
    g_array_unref(got);

    /* The callback's error stops replay and is returned. */
    j = journal_open(tf, 1);
    g_assert_cmpint(qcow2_journal_replay(j, collect, &fail), ==, -EIO);
    g_assert_cmpuint(fail.records->len, ==, 2);
    g_array_unref(fail.records);
    qcow2_journal_free(j);

    /* Replay only on an untouched journal. */
    j = journal_open(tf, 1);
    got = replay(j, tf);
    g_assert_cmpint(qcow2_journal_replay(j, collect, &fail), ==, -EBUSY);
    g_array_unref(got);
    qcow2_journal_free(j);

    /* A COMMIT claiming a later sequence is invalid: replay stops before. */
    put_commit(buf + 2 * UNIT, 1, 5, 6);
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    assert_records(got, recs, 2);
    g_array_unref(got);
    /* So is one covering less than everything before it. */
    put_commit(buf + 2 * UNIT, 1, 5, 3);
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    assert_records(got, recs, 2);
    g_array_unref(got);
    put_commit(buf + 2 * UNIT, 1, 5, 4);

    /* Sequence gaps, before a COMMIT and before an INSERT. */
    put_commit(buf + UNIT, 1, 4, 3);
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);
    put_commit(buf + UNIT, 1, 3, 2);
    put_insert(buf + INSERT_SIZE, 1, 5,
               rec_at(recs, 1));
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);
    put_insert(buf + INSERT_SIZE, 1, 2,
               rec_at(recs, 1));

    /* Non-zero bytes in the padding end the chain. */
    buf[UNIT - 1] = 1;
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);
    buf[UNIT - 1] = 0;

    /* A zero unit at a boundary ends the journal, even if more follows. */
    memmove(buf + 3 * UNIT, buf + UNIT, 2 * UNIT);
    memset(buf + UNIT, 0, 2 * UNIT);
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    g_assert_cmpuint(got->len, ==, 0);
    g_array_unref(got);

    /* Wrong lengths for the type, unknown types, huge lengths. */
    memset(buf, 0, tf->jsize);
    put_insert(buf, 1, 1, rec_at(recs, 0));
    put_commit(buf + INSERT_SIZE, 1, 2, 1);
    journal_store(tf, buf);
    got = replay_fresh(tf, 1);
    assert_records(got, recs, 1);
    g_array_unref(got);
    for (unsigned bad = 0; bad < 6; bad++) {
        static const uint16_t types[] = { 3, 3, 0, 4, 0xffff, 3 };
        static const uint16_t lens[] = { 40, 0xffff, 32, 32, 32, 0 };
        uint8_t payload[8] = { 0 };

        stq_be_p(payload, 1);
        put_record(buf + INSERT_SIZE, types[bad], 32, 1, 2, payload);
        stw_be_p(buf + INSERT_SIZE + 2, lens[bad]);
        stl_be_p(buf + INSERT_SIZE + 4,
                 record_crc(buf + INSERT_SIZE, 32));
        journal_store(tf, buf);
        got = replay_fresh(tf, 1);
        g_assert_cmpuint(got->len, ==, 0);
        g_array_unref(got);
    }

    /*
     * Records up to the very end (INSERT, COMMIT pairs of 104 bytes), then
     * the start of an INSERT that would cross the end.  A journal size
     * that is not whole units is rounded down, which cuts records too.
     */
    memset(buf, 0, tf->jsize);
    off = 0;
    for (uint64_t seq = 1; off < tf->jsize; seq += 2) {
        uint8_t insert[INSERT_SIZE];

        put_insert(insert, 1, seq, &r);
        memcpy(buf + off, insert, MIN(INSERT_SIZE, tf->jsize - off));
        off += INSERT_SIZE;
        if (off + COMMIT_SIZE <= tf->jsize) {
            off += put_commit(buf + off, 1, seq + 1, seq);
        }
    }
    journal_store(tf, buf);
    for (int cut = 0; cut < 2; cut++) {
        uint64_t size = tf->jsize - cut * 8;

        j = qcow2_journal_new(tf->bs, JOURNAL_OFFSET, size, 1);
        got = replay(j, tf);
        g_assert_cmpuint(got->len, ==, QEMU_ALIGN_DOWN(size, UNIT) /
                         (INSERT_SIZE + COMMIT_SIZE));
        g_array_unref(got);
        qcow2_journal_free(j);
    }
    test_file_free(tf);
}

typedef enum {
    FUZZ_FLIP, FUZZ_ZERO_TAIL, FUZZ_GARBAGE_RANGE, FUZZ_GARBAGE_ALL,
    FUZZ_SHORT_SIZE, FUZZ_SHORT_FILE, FUZZ_BAD_HEADER, FUZZ_MOVE_UNIT,
    FUZZ__MAX,
} FuzzMode;

/*
 * Corrupt buf (the journal, of which used bytes were written); may shrink
 * *size, or set *file_end to where the file should end.
 */
static void fuzz_corrupt(GRand *rand, FuzzMode mode, uint8_t *buf,
                         uint64_t used, uint64_t *size, uint64_t *file_end)
{
    uint64_t off = g_rand_int_range(rand, 0, used);
    uint64_t len;

    switch (mode) {
    case FUZZ_FLIP:
        for (int n = g_rand_int_range(rand, 1, 9); n > 0; n--) {
            buf[g_rand_int_range(rand, 0, used)] ^=
                g_rand_int_range(rand, 1, 256);
        }
        break;
    case FUZZ_ZERO_TAIL:
        memset(buf + off, 0, *size - off);
        break;
    case FUZZ_GARBAGE_RANGE:
        len = g_rand_int_range(rand, 1, 1024);
        for (uint64_t i = off; i < MIN(off + len, *size); i++) {
            buf[i] = g_rand_int(rand);
        }
        break;
    case FUZZ_GARBAGE_ALL:
        for (uint64_t i = 0; i < *size; i++) {
            buf[i] = g_rand_int(rand);
        }
        break;
    case FUZZ_SHORT_SIZE:
        /* The journal ends inside a record. */
        *size = g_rand_int_range(rand, 0, used + 1);
        break;
    case FUZZ_SHORT_FILE:
        /* The caller truncates the file there: reads past EOF are zero. */
        memset(buf + off, 0, *size - off);
        *file_end = off;
        break;
    case FUZZ_BAD_HEADER:
        off = QEMU_ALIGN_DOWN(off, 8);
        stw_be_p(buf + off, g_rand_int_range(rand, 0, 5));
        stw_be_p(buf + off + 2, g_rand_boolean(rand) ?
                 g_rand_int_range(rand, 0, 0x10000) : 0xffff);
        if (off + 24 <= *size && g_rand_boolean(rand)) {
            stl_be_p(buf + off + 4, record_crc(buf + off, 24));
        }
        break;
    case FUZZ_MOVE_UNIT: {
        /* A stale copy of another unit of the same generation. */
        uint64_t from = QEMU_ALIGN_DOWN(g_rand_int_range(rand, 0, used), UNIT);
        uint64_t to = QEMU_ALIGN_DOWN(off, UNIT);
        memmove(buf + to, buf + from, UNIT);
        break;
    }
    default:
        g_assert_not_reached();
    }
}

/*
 * Seeded random corruption of a valid journal: replay never crashes and
 * returns a prefix of the committed records; appends after it are
 * replayed after that prefix.
 */
static void test_fuzz(void)
{
    const char *long_env = g_getenv("QEMU_TEST_LONG");
    int iterations = long_env && *long_env ? 50000 : 3000;
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed_of(11));
    TestFile *tf = test_file_new(32 * KiB);
    Qcow2Journal *j = journal_open(tf, 9);
    g_autoptr(GArray) committed = records_new();
    g_autofree uint8_t *pristine = NULL;
    uint64_t used;
    unsigned hist[FUZZ__MAX] = { 0 };
    unsigned full_hits = 0;

    /* A valid journal: 20 batches of mixed records, cleanly closed. */
    for (int batch = 0; batch < 20; batch++) {
        for (int i = g_rand_int_range(rand, 1, 12); i > 0; i--) {
            append_random(j, rand, committed);
        }
        write_and_flush(tf, j);
    }
    commit_and_flush(tf, j);
    qcow2_journal_free(j);
    pristine = journal_read(tf);
    used = check_format(pristine, tf->jsize, 9).end;
    g_assert_cmpuint(used, <, tf->jsize - 4 * KiB);

    for (int it = 0; it < iterations; it++) {
        g_autofree uint8_t *buf = g_malloc(tf->jsize);
        g_autoptr(GArray) expected = NULL;
        FuzzMode mode = g_rand_int_range(rand, 0, FUZZ__MAX);
        uint64_t size = tf->jsize, file_end = 0;
        GArray *got;

        memcpy(buf, pristine, tf->jsize);
        fuzz_corrupt(rand, mode, buf, used, &size, &file_end);
        journal_store(tf, buf);
        if (file_end) {
            test_file_truncate(tf, JOURNAL_OFFSET + file_end);
        }
        j = qcow2_journal_new(tf->bs, JOURNAL_OFFSET, size, 9);
        got = replay(j, tf);
        g_assert_true(is_prefix(got, committed));
        hist[mode]++;
        full_hits += got->len == committed->len;

        /* Appends continue right after the trusted prefix. */
        expected = g_array_copy(got);
        g_array_unref(got);
        for (int i = g_rand_int_range(rand, 1, 6); i > 0; i--) {
            if (append_random(j, rand, expected) < 0) {
                break;
            }
        }
        write_and_flush(tf, j);
        commit_and_flush(tf, j);
        qcow2_journal_free(j);
        j = qcow2_journal_new(tf->bs, JOURNAL_OFFSET, size, 9);
        got = replay(j, tf);
        assert_records(got, expected, -1);
        g_array_unref(got);
        qcow2_journal_free(j);

        if (file_end) {
            test_file_restore_end(tf);
        }
    }
    for (int m = 0; m < FUZZ__MAX; m++) {
        g_test_message("mode %d: %u runs", m, hist[m]);
    }
    g_test_message("%u of %d runs kept every record", full_hits, iterations);
    test_file_free(tf);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    tmpdir = g_dir_make_tmp("dedup-journal-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);

    g_test_add_func("/dedup/journal/round-trip", test_round_trip);
    g_test_add_func("/dedup/journal/uncommitted-tail", test_uncommitted_tail);
    g_test_add_func("/dedup/journal/tail-not-resurrected",
                    test_tail_not_resurrected);
    g_test_add_func("/dedup/journal/torn-batch", test_torn_batch);
    g_test_add_func("/dedup/journal/stale-commit-after-damage",
                    test_stale_commit_after_damage);
    g_test_add_func("/dedup/journal/read-only-replay", test_read_only_replay);
    g_test_add_func("/dedup/journal/generation", test_generation);
    g_test_add_func("/dedup/journal/enospc-exact", test_enospc_exact);
    g_test_add_func("/dedup/journal/enospc-random", test_enospc_random);
    g_test_add_func("/dedup/journal/append-after-replay",
                    test_append_after_replay);
    g_test_add_func("/dedup/journal/batch-alignment", test_batch_alignment);
    g_test_add_func("/dedup/journal/crafted", test_crafted);
    g_test_add_func("/dedup/journal/fuzz", test_fuzz);
    ret = g_test_run();

    rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}

/*
 * Unit tests of the dedup log store (block/qcow2-log-store.c).
 *
 * Hashes come from a seeded splitmix64 generator, or are built with a
 * chosen tag and home bucket, so every run sees the same tables.  Slot
 * arrays are compared byte for byte: replay after a crash depends on the
 * same operations always giving the same table.
 */
#include "qemu/osdep.h"
#include <malloc.h>
#include "qcow2-dedup.h"

typedef struct Rng {
    uint64_t state;
} Rng;

static uint64_t rng_next(Rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void random_hash(Rng *r, Qcow2DedupHash *h)
{
    for (size_t i = 0; i < sizeof(h->b); i += 8) {
        uint64_t v = rng_next(r);

        memcpy(h->b + i, &v, sizeof(v));
    }
}

/* A hash with tag bytes tag, home bucket bytes bucket and the rest from n. */
static void make_hash(Qcow2DedupHash *h, uint16_t tag, uint32_t bucket,
                      uint64_t n)
{
    memset(h, 0xa5, sizeof(*h));
    h->b[0] = tag;
    h->b[1] = tag >> 8;
    h->b[2] = bucket;
    h->b[3] = bucket >> 8;
    h->b[4] = bucket >> 16;
    h->b[5] = bucket >> 24;
    memcpy(h->b + 8, &n, sizeof(n));
}

static size_t slots_size(const Qcow2LogStore *ls)
{
    return qcow2_log_store_capacity(ls) * sizeof(Qcow2IndexEntry);
}

static bool slots_equal(const Qcow2LogStore *a, const Qcow2LogStore *b)
{
    return slots_size(a) == slots_size(b) &&
           !memcmp(qcow2_log_store_slots(a), qcow2_log_store_slots(b),
                   slots_size(a));
}

static bool slots_all_zero(const Qcow2LogStore *ls)
{
    const uint8_t *p = (const uint8_t *)qcow2_log_store_slots(ls);

    /* All bytes equal to their successor and the first is 0. */
    return !p[0] && !memcmp(p, p + 1, slots_size(ls) - 1);
}

/* Whether the entry of cluster sits in exactly the bucket loc names. */
static bool entry_in_bucket(const Qcow2LogStore *ls,
                            const Qcow2IndexLocation *loc, uint64_t cluster)
{
    const Qcow2IndexEntry *s = qcow2_log_store_slots(ls) +
                               (size_t)loc->bucket * QCOW2_DEDUP_BUCKET_SLOTS;

    for (int i = 0; i < QCOW2_DEDUP_BUCKET_SLOTS; i++) {
        if (s[i].cluster == cluster) {
            return true;
        }
    }
    return false;
}

/* Field by field: the struct has padding. */
static bool loc_equal(const Qcow2IndexLocation *a,
                      const Qcow2IndexLocation *b)
{
    return a->id == b->id && a->bucket == b->bucket && a->tag == b->tag;
}

/* What a fill inserted: entry i has cluster i + 1. */
typedef struct Filled {
    Qcow2DedupHash *hashes;
    Qcow2IndexLocation *locs;
    uint64_t n;
    Qcow2DedupHash rejected;    /* the hash whose insert failed */
} Filled;

static void filled_free(Filled *f)
{
    g_free(f->hashes);
    g_free(f->locs);
}

/*
 * Insert random hashes until -ENOSPC.  From 85% on, the table is copied
 * before each insert so the failed one can be shown to change nothing.
 */
static void fill(Qcow2LogStore *ls, uint64_t seed, Filled *f)
{
    uint64_t cap = qcow2_log_store_capacity(ls);
    Qcow2IndexEntry *before = g_malloc(slots_size(ls));
    Rng r = { seed };
    int ret;

    /* A small table may fill completely: room for the rejected hash. */
    f->hashes = g_new(Qcow2DedupHash, cap + 1);
    f->locs = g_new(Qcow2IndexLocation, cap + 1);
    for (f->n = 0; ; f->n++) {
        g_assert_cmpuint(f->n, <=, cap);
        random_hash(&r, &f->hashes[f->n]);
        if (f->n >= cap * 85 / 100) {
            memcpy(before, qcow2_log_store_slots(ls), slots_size(ls));
        }
        ret = qcow2_log_store_insert(ls, &f->hashes[f->n], f->n + 1,
                                     &f->locs[f->n]);
        if (ret < 0) {
            break;
        }
    }
    g_assert_cmpint(ret, ==, -ENOSPC);
    g_assert_cmpuint(f->n, >=, cap * 85 / 100);
    g_assert(!memcmp(before, qcow2_log_store_slots(ls), slots_size(ls)));
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, f->n);
    f->rejected = f->hashes[f->n];
    g_free(before);
}

static void check_filled(const Qcow2LogStore *ls, const Filled *f)
{
    for (uint64_t i = 0; i < f->n; i++) {
        g_assert_cmpuint(qcow2_log_store_lookup(ls, &f->hashes[i]), ==,
                         i + 1);
    }
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &f->rejected), ==, 0);
}

static void test_basics(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(7, 8);
    Qcow2DedupHash h, twin, other;
    Qcow2IndexLocation loc;

    g_assert_cmpuint(qcow2_log_store_id(ls), ==, 7);
    g_assert_cmpint(qcow2_log_store_bucket_bits(ls), ==, 8);
    g_assert_cmpuint(qcow2_log_store_capacity(ls), ==, 256 * 4);
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 0);
    g_assert(slots_all_zero(ls));

    /* twin: same tag and home bucket, different hash */
    make_hash(&h, 0x1234, 0x10042, 1);
    make_hash(&twin, 0x1234, 0x10042, 2);
    make_hash(&other, 0x4321, 0x42, 3);
    g_assert_cmpint(qcow2_log_store_insert(ls, &h, 5, &loc), ==, 0);
    g_assert_cmpuint(loc.id, ==, 7);
    g_assert_cmpuint(loc.bucket, ==, 0x42);
    g_assert_cmpuint(loc.tag, ==, 0x1234);
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 1);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &h), ==, 5);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &twin), ==, 0);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &other), ==, 0);

    g_assert_cmpint(qcow2_log_store_insert(ls, &twin, 6, &loc), ==, 0);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &twin), ==, 6);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &h), ==, 5);

    /* The slot array holds the entries as inserted. */
    g_assert(!memcmp(&qcow2_log_store_slots(ls)[0x42 * 4].hash, &h,
                     sizeof(h)));
    g_assert_cmpuint(qcow2_log_store_slots(ls)[0x42 * 4].cluster, ==, 5);

    g_assert(qcow2_log_store_remove_hash(ls, &h));
    g_assert(!qcow2_log_store_remove_hash(ls, &h));
    g_assert(!qcow2_log_store_remove_hash(ls, &other));
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &h), ==, 0);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &twin), ==, 6);
    g_assert(qcow2_log_store_remove(ls, &loc, 6));
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 0);
    /* Removed slots are wiped: a frozen table holds no stale hashes. */
    g_assert(slots_all_zero(ls));
    qcow2_log_store_free(ls);
}

/* A hash whose tag bytes are 0 gets tag 1 and still differs from tag 1. */
static void test_zero_tag(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(1, 4);
    Qcow2DedupHash zero, one;
    Qcow2IndexLocation loc_zero, loc_one;

    make_hash(&zero, 0, 3, 1);
    make_hash(&one, 1, 3, 1);
    g_assert_cmpint(qcow2_log_store_insert(ls, &zero, 10, &loc_zero), ==, 0);
    g_assert_cmpint(qcow2_log_store_insert(ls, &one, 11, &loc_one), ==, 0);
    g_assert_cmpuint(loc_zero.tag, ==, 1);
    g_assert_cmpuint(loc_one.tag, ==, 1);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &zero), ==, 10);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &one), ==, 11);
    g_assert(qcow2_log_store_remove(ls, &loc_zero, 10));
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &zero), ==, 0);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &one), ==, 11);
    qcow2_log_store_free(ls);
}

/* Every location any fill hands out has a non-zero tag and a valid bucket. */
static void test_tags_never_zero(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(1, 6);
    Filled f;

    fill(ls, 11, &f);
    for (uint64_t i = 0; i < f.n; i++) {
        g_assert_cmpuint(f.locs[i].tag, !=, 0);
        g_assert_cmpuint(f.locs[i].tag, ==, qcow2_dedup_tag(&f.hashes[i]));
        g_assert_cmpuint(f.locs[i].bucket, <, 1u << 6);
    }
    filled_free(&f);
    qcow2_log_store_free(ls);
}

/* A full home bucket sends the fifth entry to the alternate bucket. */
static void test_alt_bucket(void)
{
    const int bits = 8;
    const uint16_t tag = 0x77;
    uint32_t alt = qcow2_dedup_alt_bucket(9, tag, bits);
    Qcow2LogStore *ls = qcow2_log_store_new(2, bits);
    Qcow2DedupHash h[5];
    Qcow2IndexLocation loc[5];

    g_assert_cmpuint(alt, !=, 9);
    for (int i = 0; i < 5; i++) {
        make_hash(&h[i], tag, 9, i);
        g_assert_cmpint(qcow2_log_store_insert(ls, &h[i], 100 + i, &loc[i]),
                        ==, 0);
        g_assert_cmpuint(loc[i].bucket, ==, i < 4 ? 9 : alt);
    }
    for (int i = 0; i < 5; i++) {
        g_assert_cmpuint(qcow2_log_store_lookup(ls, &h[i]), ==, 100 + i);
    }
    qcow2_log_store_free(ls);
}

/*
 * Fill until -ENOSPC: the failed insert changed nothing, everything is
 * still found, and every entry can be removed by its location.
 */
static void test_fill(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(3, 10);
    Filled f;

    fill(ls, 1, &f);
    check_filled(ls, &f);
    for (uint64_t i = 0; i < f.n; i++) {
        g_assert(qcow2_log_store_remove(ls, &f.locs[i], i + 1));
    }
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 0);
    g_assert(slots_all_zero(ls));
    filled_free(&f);
    qcow2_log_store_free(ls);
}

/* Entries moved by later inserts are still removed by their location. */
static void test_remove_after_displacement(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(4, 9);
    uint64_t moved = 0;
    Filled f;

    fill(ls, 2, &f);
    for (uint64_t i = 0; i < f.n; i++) {
        moved += !entry_in_bucket(ls, &f.locs[i], i + 1);
    }
    g_assert_cmpuint(moved, >, 0);
    for (uint64_t i = 0; i < f.n; i++) {
        g_assert(qcow2_log_store_remove(ls, &f.locs[i], i + 1));
        g_assert(!qcow2_log_store_remove(ls, &f.locs[i], i + 1));
        g_assert_cmpuint(qcow2_log_store_lookup(ls, &f.hashes[i]), ==, 0);
        if (i + 1 < f.n) {
            g_assert_cmpuint(qcow2_log_store_lookup(ls, &f.hashes[i + 1]),
                             ==, i + 2);
        }
    }
    g_assert(slots_all_zero(ls));
    filled_free(&f);
    qcow2_log_store_free(ls);
}

static void test_remove_wrong(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(5, 6);
    Qcow2DedupHash h;
    Qcow2IndexLocation loc, bad;

    make_hash(&h, 0xbeef, 17, 0);
    g_assert_cmpint(qcow2_log_store_insert(ls, &h, 42, &loc), ==, 0);

    bad = loc;
    bad.id = 6;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));
    bad.id = 0;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));
    g_assert(!qcow2_log_store_remove(ls, &loc, 43));
    g_assert(!qcow2_log_store_remove(ls, &loc, 0));
    bad = loc;
    bad.tag = 0xbeee;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));
    bad.tag = 0;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));
    bad = loc;
    bad.bucket = (loc.bucket + 1) % 64;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));
    /* Out of range, as a corrupt reverse-map record could say. */
    bad.bucket = 0xffffff;
    g_assert(!qcow2_log_store_remove(ls, &bad, 42));

    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 1);
    g_assert_cmpuint(qcow2_log_store_lookup(ls, &h), ==, 42);

    /* The alternate bucket is as good as the home bucket. */
    bad = loc;
    bad.bucket = qcow2_dedup_alt_bucket(loc.bucket, loc.tag, 6);
    g_assert(qcow2_log_store_remove(ls, &bad, 42));
    g_assert(!qcow2_log_store_remove(ls, &loc, 42));
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 0);
    qcow2_log_store_free(ls);
}

/*
 * A reproducible mix of inserts and removals (by location and by hash),
 * run until n inserts failed.  Returns the locations handed out, one per
 * successful insert, for comparing runs.
 */
static GArray *run_ops(Qcow2LogStore *ls, uint64_t seed, int failures)
{
    GArray *locs = g_array_new(false, false, sizeof(Qcow2IndexLocation));
    GArray *hashes = g_array_new(false, false, sizeof(Qcow2DedupHash));
    Rng r = { seed };

    while (failures > 0) {
        uint64_t op = rng_next(&r);
        Qcow2IndexLocation loc;
        Qcow2DedupHash h;

        if (op % 4 == 0 && locs->len) {
            guint i = (op >> 8) % locs->len;
            Qcow2IndexLocation *l = &g_array_index(locs, Qcow2IndexLocation,
                                                   i);

            /* Clusters are the insert number: i + 1.  Half by hash. */
            if (op & 16) {
                qcow2_log_store_remove_hash(ls, &g_array_index(
                                                hashes, Qcow2DedupHash, i));
            } else {
                qcow2_log_store_remove(ls, l, i + 1);
            }
            continue;
        }
        random_hash(&r, &h);
        if (qcow2_log_store_insert(ls, &h, locs->len + 1, &loc) < 0) {
            failures--;
            continue;
        }
        g_array_append_val(locs, loc);
        g_array_append_val(hashes, h);
    }
    g_array_free(hashes, true);
    return locs;
}

static void assert_same_locs(GArray *a, GArray *b)
{
    g_assert_cmpuint(a->len, ==, b->len);
    for (guint i = 0; i < a->len; i++) {
        g_assert(loc_equal(&g_array_index(a, Qcow2IndexLocation, i),
                           &g_array_index(b, Qcow2IndexLocation, i)));
    }
}

static void test_determinism(void)
{
    Qcow2LogStore *a = qcow2_log_store_new(9, 8);
    Qcow2LogStore *b = qcow2_log_store_new(9, 8);
    Qcow2LogStore *fresh = qcow2_log_store_new(10, 8);
    GArray *la, *lb, *lf;

    la = run_ops(a, 77, 20);
    lb = run_ops(b, 77, 20);
    g_assert(slots_equal(a, b));
    g_assert_cmpuint(qcow2_log_store_count(a), ==, qcow2_log_store_count(b));
    assert_same_locs(la, lb);
    g_array_free(la, true);
    g_array_free(lb, true);

    /* After a reset both behave like a fresh store. */
    qcow2_log_store_reset(a, 10);
    qcow2_log_store_reset(b, 10);
    g_assert_cmpuint(qcow2_log_store_id(a), ==, 10);
    g_assert_cmpuint(qcow2_log_store_count(a), ==, 0);
    g_assert(slots_all_zero(a));
    la = run_ops(a, 78, 5);
    lb = run_ops(b, 78, 5);
    lf = run_ops(fresh, 78, 5);
    g_assert(slots_equal(a, b));
    g_assert(slots_equal(a, fresh));
    assert_same_locs(la, lb);
    assert_same_locs(la, lf);

    g_array_free(la, true);
    g_array_free(lb, true);
    g_array_free(lf, true);
    qcow2_log_store_free(a);
    qcow2_log_store_free(b);
    qcow2_log_store_free(fresh);
}

/*
 * A failed insert leaves no trace: a store that also saw it goes on
 * exactly like one that did not (the journal only holds successes).
 */
static void test_failed_insert_invisible(void)
{
    Qcow2LogStore *a = qcow2_log_store_new(1, 7);
    Qcow2LogStore *b = qcow2_log_store_new(1, 7);
    Qcow2IndexLocation loc;
    Filled f;

    fill(a, 5, &f);
    for (uint64_t i = 0; i < f.n; i++) {
        g_assert_cmpint(qcow2_log_store_insert(b, &f.hashes[i], i + 1, &loc),
                        ==, 0);
        g_assert(loc_equal(&loc, &f.locs[i]));
    }
    g_assert(slots_equal(a, b));
    /* Make room and go on: both must place the next entries alike. */
    for (uint64_t i = 0; i < f.n; i += 3) {
        g_assert(qcow2_log_store_remove(a, &f.locs[i], i + 1));
        g_assert(qcow2_log_store_remove(b, &f.locs[i], i + 1));
    }
    g_assert_cmpint(qcow2_log_store_insert(a, &f.rejected, 999, &loc), ==, 0);
    g_assert_cmpint(qcow2_log_store_insert(b, &f.rejected, 999, &loc), ==, 0);
    g_assert(slots_equal(a, b));
    filled_free(&f);
    qcow2_log_store_free(a);
    qcow2_log_store_free(b);
}

static void test_load_factor(void)
{
    for (uint64_t seed = 100; seed < 105; seed++) {
        Qcow2LogStore *ls = qcow2_log_store_new(1, 10);
        Filled f;

        fill(ls, seed, &f);
        g_assert_cmpfloat((double)f.n / qcow2_log_store_capacity(ls), >=,
                          0.9);
        check_filled(ls, &f);
        filled_free(&f);
        qcow2_log_store_free(ls);
    }
}

static void test_memory(void)
{
    size_t slot_bytes = sizeof(Qcow2IndexEntry) + sizeof(uint16_t);
    Qcow2LogStore *small = qcow2_log_store_new(1, 4);
    Qcow2LogStore *big = qcow2_log_store_new(1, 12);
    size_t m_small = qcow2_log_store_memory(small);
    size_t m_big = qcow2_log_store_memory(big);
    Filled f;

    g_assert_cmpuint(sizeof(Qcow2IndexEntry), ==, QCOW2_DEDUP_ENTRY_SIZE);
    g_assert_cmpuint(m_small, >=, 64 * slot_bytes);
    g_assert_cmpuint(m_small, <, 64 * slot_bytes + 256);
    g_assert_cmpuint(m_big - m_small, ==, (4 * 4096 - 64) * slot_bytes);

    /* Preallocated: filling and emptying do not change it. */
    fill(big, 3, &f);
    g_assert_cmpuint(qcow2_log_store_memory(big), ==, m_big);
    qcow2_log_store_reset(big, 2);
    g_assert_cmpuint(qcow2_log_store_memory(big), ==, m_big);
    filled_free(&f);
    qcow2_log_store_free(small);
    qcow2_log_store_free(big);
}

/* The smallest geometry fills up and empties like any other. */
static void test_min_bucket_bits(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(QCOW2_DEDUP_MAX_ID,
                                            QCOW2_DEDUP_MIN_BUCKET_BITS);
    Filled f;

    g_assert_cmpuint(qcow2_log_store_capacity(ls), ==, 64);
    for (uint64_t seed = 0; seed < 20; seed++) {
        fill(ls, seed, &f);
        check_filled(ls, &f);
        for (uint64_t i = 0; i < f.n; i++) {
            g_assert_cmpuint(f.locs[i].id, ==, QCOW2_DEDUP_MAX_ID);
            g_assert(qcow2_log_store_remove(ls, &f.locs[i], i + 1));
        }
        g_assert(slots_all_zero(ls));
        filled_free(&f);
    }
    qcow2_log_store_free(ls);
}

/* A few operations, including at the last bucket, of a big store. */
static void check_big(Qcow2LogStore *ls, int bits)
{
    uint32_t last = (1u << bits) - 1;
    Qcow2IndexLocation loc[1000];
    Qcow2DedupHash h[1000];
    Rng r = { bits };

    g_assert_cmpuint(qcow2_log_store_capacity(ls), ==, 4ull << bits);
    g_assert_cmpuint(qcow2_log_store_memory(ls), >=,
                     (4ull << bits) * (QCOW2_DEDUP_ENTRY_SIZE + 2));
    for (int i = 0; i < 1000; i++) {
        random_hash(&r, &h[i]);
        if (i < 5) {
            make_hash(&h[i], 0x8000 + i, last, i);
        }
        g_assert_cmpint(qcow2_log_store_insert(ls, &h[i], i + 1, &loc[i]),
                        ==, 0);
    }
    g_assert_cmpuint(loc[0].bucket, ==, last);
    for (int i = 0; i < 1000; i++) {
        g_assert_cmpuint(qcow2_log_store_lookup(ls, &h[i]), ==, i + 1);
    }
    for (int i = 0; i < 1000; i += 2) {
        g_assert(qcow2_log_store_remove(ls, &loc[i], i + 1));
    }
    for (int i = 0; i < 1000; i++) {
        g_assert_cmpuint(qcow2_log_store_lookup(ls, &h[i]), ==,
                         i % 2 ? i + 1 : 0);
    }
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 500);
}

static void test_bucket_bits_20(void)
{
    Qcow2LogStore *ls = qcow2_log_store_new(1, 20);

    g_assert_nonnull(ls);
    check_big(ls, 20);
    qcow2_log_store_reset(ls, 2);
    g_assert_cmpuint(qcow2_log_store_count(ls), ==, 0);
    g_assert(slots_all_zero(ls));
    qcow2_log_store_free(ls);
}

/*
 * The largest geometry takes 2.8 GB: only pages that are touched get
 * memory, so allocate and do a few operations, without a reset.  The
 * MALLOC_PERTURB_ the test runs with would make calloc() write all of it.
 */
static void test_max_bucket_bits(void)
{
    const char *perturb = g_getenv("MALLOC_PERTURB_");
    Qcow2LogStore *ls;

    mallopt(M_PERTURB, 0);
    ls = qcow2_log_store_new(1, QCOW2_DEDUP_MAX_BUCKET_BITS);
    if (!ls) {
        g_test_skip("not enough memory for the largest log store");
    } else {
        check_big(ls, QCOW2_DEDUP_MAX_BUCKET_BITS);
        qcow2_log_store_free(ls);
    }
    mallopt(M_PERTURB, perturb ? atoi(perturb) : 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/dedup/log-store/basics", test_basics);
    g_test_add_func("/dedup/log-store/zero-tag", test_zero_tag);
    g_test_add_func("/dedup/log-store/tags-never-zero", test_tags_never_zero);
    g_test_add_func("/dedup/log-store/alt-bucket", test_alt_bucket);
    g_test_add_func("/dedup/log-store/fill", test_fill);
    g_test_add_func("/dedup/log-store/remove-after-displacement",
                    test_remove_after_displacement);
    g_test_add_func("/dedup/log-store/remove-wrong", test_remove_wrong);
    g_test_add_func("/dedup/log-store/determinism", test_determinism);
    g_test_add_func("/dedup/log-store/failed-insert-invisible",
                    test_failed_insert_invisible);
    g_test_add_func("/dedup/log-store/load-factor", test_load_factor);
    g_test_add_func("/dedup/log-store/memory", test_memory);
    g_test_add_func("/dedup/log-store/min-bucket-bits", test_min_bucket_bits);
    g_test_add_func("/dedup/log-store/bucket-bits-20", test_bucket_bits_20);
    g_test_add_func("/dedup/log-store/max-bucket-bits", test_max_bucket_bits);
    return g_test_run();
}

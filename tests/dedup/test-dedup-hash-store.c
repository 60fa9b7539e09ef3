/*
 * Tests of the dedup hash store (block/qcow2-hash-store.c): frozen
 * incarnations on disk, their in-RAM filters and background loading.
 *
 * Every test works on a scratch raw file opened with the "file" driver.
 * The node's driver is swapped for a copy of the file driver whose read
 * function counts reads, can fail a range with -EIO, and can hold one
 * table read of the loader (after it completed) until the test releases
 * it: that makes "a removal while the loader has already read the table"
 * deterministic.
 *
 * A filter cannot be seen from outside the store, so "two filters are
 * equal" is checked through behaviour: the same probes (every stored hash,
 * for every occupied slot a hash with that slot's tag and bucket, and
 * random hashes) must give the same results and the same number of bucket
 * reads, tag matches and false positives in both stores.
 */
#include "qemu/osdep.h"
#include "qcow2-dedup.h"

#define SCRATCH_SIZE (4ull << 30)  /* sparse */

/* Instrumented file driver */

static BlockDriver test_drv;

static struct {
    GMutex lock;
    GCond cond;
    uint64_t reads;
    uint64_t bucket_reads;      /* reads of exactly one bucket */
    uint64_t bucket_read_bytes_bad;  /* bucket-sized reads not of 160 B */
    int64_t fail_start, fail_end;   /* reads overlapping fail (-EIO) */
    int64_t gate_offset;        /* hold the first big read at this offset */
    bool gate_held;
    bool gate_open;
    gulong big_read_delay_us;   /* slow the loader down */
} io;

static int test_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    gulong delay = 0;
    bool fail;
    int ret;

    g_mutex_lock(&io.lock);
    io.reads++;
    io.bucket_reads += bytes == QCOW2_DEDUP_BUCKET_SIZE;
    fail = offset < io.fail_end && offset + bytes > io.fail_start;
    if (bytes > QCOW2_DEDUP_BUCKET_SIZE) {
        delay = io.big_read_delay_us;
    }
    g_mutex_unlock(&io.lock);
    if (fail) {
        return -EIO;
    }
    if (delay) {
        g_usleep(delay);
    }
    ret = bdrv_file.bdrv_preadv(bs, offset, bytes, qiov, flags);

    g_mutex_lock(&io.lock);
    if (offset == io.gate_offset && bytes > QCOW2_DEDUP_BUCKET_SIZE) {
        io.gate_offset = -1;
        io.gate_held = true;
        g_cond_broadcast(&io.cond);
        while (!io.gate_open) {
            g_cond_wait(&io.cond, &io.lock);
        }
    }
    g_mutex_unlock(&io.lock);
    return ret;
}

static void io_reset(void)
{
    g_mutex_lock(&io.lock);
    io.reads = io.bucket_reads = 0;
    io.fail_start = io.fail_end = 0;
    io.gate_offset = -1;
    io.gate_held = io.gate_open = false;
    io.big_read_delay_us = 0;
    g_mutex_unlock(&io.lock);
}

static void gate_arm(int64_t offset)
{
    g_mutex_lock(&io.lock);
    io.gate_offset = offset;
    io.gate_held = io.gate_open = false;
    g_mutex_unlock(&io.lock);
}

static void gate_wait_held(void)
{
    g_mutex_lock(&io.lock);
    while (!io.gate_held) {
        g_cond_wait(&io.cond, &io.lock);
    }
    g_mutex_unlock(&io.lock);
}

static void gate_release(void)
{
    g_mutex_lock(&io.lock);
    io.gate_open = true;
    g_cond_broadcast(&io.cond);
    g_mutex_unlock(&io.lock);
}

static void io_fail_range(int64_t start, int64_t end)
{
    g_mutex_lock(&io.lock);
    io.fail_start = start;
    io.fail_end = end;
    g_mutex_unlock(&io.lock);
}

static uint64_t io_bucket_reads(void)
{
    uint64_t n;

    g_mutex_lock(&io.lock);
    n = io.bucket_reads;
    g_mutex_unlock(&io.lock);
    return n;
}

/* Scratch image and log stores */

typedef struct Item {
    Qcow2DedupHash h;
    uint64_t cluster;
    Qcow2IndexLocation loc;     /* from the insert */
    bool removed;
} Item;

typedef struct Scratch {
    char *dir;
    char *path;
    BlockDriverState *bs;
    int cluster_bits;
    int bucket_bits;
    uint64_t next_offset;
    uint64_t next_cluster;
    uint32_t next_id;
    GRand *rand;
} Scratch;

static void scratch_open(Scratch *s, int cluster_bits, int bucket_bits,
                         int flags)
{
    const char *base = g_getenv("QEMU_TEST_DIR");
    QDict *opts = qdict_new();
    int fd;

    s->dir = g_build_filename(base ? base : g_get_tmp_dir(),
                              "hash-store-XXXXXX", NULL);
    g_assert_nonnull(g_mkdtemp(s->dir));
    s->path = g_build_filename(s->dir, "img", NULL);
    fd = open(s->path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, SCRATCH_SIZE), ==, 0);
    close(fd);

    qdict_put_str(opts, "driver", "file");
    s->bs = bdrv_open(s->path, opts, BDRV_O_RDWR | flags, &error_abort);
    test_drv = bdrv_file;
    test_drv.bdrv_preadv = test_preadv;
    s->bs->drv = &test_drv;
    io_reset();

    s->cluster_bits = cluster_bits;
    s->bucket_bits = bucket_bits;
    s->next_offset = 1ull << cluster_bits;
    s->next_cluster = 1000;
    s->next_id = 1;
    s->rand = g_rand_new_with_seed(0x5eed + cluster_bits * 64 + bucket_bits);
}

static void scratch_close(Scratch *s)
{
    s->bs->drv = &bdrv_file;
    bdrv_unref(s->bs);
    g_assert_cmpint(unlink(s->path), ==, 0);
    g_assert_cmpint(rmdir(s->dir), ==, 0);
    g_free(s->path);
    g_free(s->dir);
    g_rand_free(s->rand);
}

static uint64_t scratch_alloc_table(Scratch *s)
{
    uint64_t offset = s->next_offset;

    s->next_offset += qcow2_hash_store_table_size(s->cluster_bits,
                                                  s->bucket_bits);
    return offset;
}

static void random_hash(GRand *rand, Qcow2DedupHash *h)
{
    for (int i = 0; i < QCOW2_DEDUP_HASH_SIZE; i += 4) {
        uint32_t v = g_rand_int(rand);
        memcpy(&h->b[i], &v, 4);
    }
}

/* A hash with the given tag and home bucket, the rest random. */
static void hash_with(GRand *rand, uint16_t tag, uint32_t bucket,
                      Qcow2DedupHash *h)
{
    random_hash(rand, h);
    h->b[0] = tag;
    h->b[1] = tag >> 8;
    h->b[2] = bucket;
    h->b[3] = bucket >> 8;
    h->b[4] = bucket >> 16;
    h->b[5] = bucket >> 24;
}

/* A log store filled with random hashes until it refuses one. */
static Qcow2LogStore *fill_log_store(Scratch *s, GArray *items)
{
    Qcow2LogStore *ls = qcow2_log_store_new(s->next_id++, s->bucket_bits);

    for (;;) {
        Item it = { .cluster = s->next_cluster };

        random_hash(s->rand, &it.h);
        if (qcow2_log_store_insert(ls, &it.h, it.cluster, &it.loc) < 0) {
            return ls;
        }
        s->next_cluster++;
        g_array_append_val(items, it);
    }
}

/* Freeze a full log store into hs; its items are appended to items. */
static Qcow2IncarnationInfo freeze_new(Scratch *s, Qcow2HashStore *hs,
                                       GArray *items, uint64_t table_offset,
                                       Qcow2IncarnationInfo *dropped)
{
    guint first = items->len;
    Qcow2LogStore *ls = fill_log_store(s, items);
    Qcow2IncarnationInfo info = {
        .id = qcow2_log_store_id(ls),
        .table_offset = table_offset ? table_offset : scratch_alloc_table(s),
        .nb_entries = items->len - first,
    };
    Qcow2IncarnationInfo ignored;

    g_assert_cmpint(qcow2_hash_store_freeze(hs, ls, info.table_offset,
                                            dropped ? dropped : &ignored),
                    ==, 0);
    qcow2_log_store_free(ls);
    return info;
}

static Item *item_at(GArray *items, guint i)
{
    return &g_array_index(items, Item, i);
}

static void assert_hit(Qcow2HashStore *hs, const Item *it)
{
    Qcow2IndexLocation loc;
    uint64_t cluster = 0;
    uint16_t t = qcow2_dedup_tag(&it->h);

    g_assert_cmpint(qcow2_hash_store_lookup(hs, &it->h, &cluster, &loc), ==,
                    1);
    g_assert_cmpuint(cluster, ==, it->cluster);
    g_assert_cmpuint(loc.id, ==, it->loc.id);
    g_assert_cmpuint(loc.tag, ==, t);
}

static void assert_miss(Qcow2HashStore *hs, const Qcow2DedupHash *h)
{
    Qcow2IndexLocation loc;
    uint64_t cluster = 0;

    g_assert_cmpint(qcow2_hash_store_lookup(hs, h, &cluster, &loc), ==, 0);
}

/* A hit's location names one of the entry's two buckets. */
static void assert_hit_location(Qcow2HashStore *hs, const Item *it,
                                int bucket_bits)
{
    Qcow2IndexLocation loc;
    uint64_t cluster;
    uint32_t alt = qcow2_dedup_alt_bucket(it->loc.bucket, it->loc.tag,
                                          bucket_bits);

    g_assert_cmpint(qcow2_hash_store_lookup(hs, &it->h, &cluster, &loc), ==,
                    1);
    g_assert_true(loc.bucket == it->loc.bucket || loc.bucket == alt);
}

static Qcow2HashStoreStats stats_of(Qcow2HashStore *hs)
{
    Qcow2HashStoreStats st;

    qcow2_hash_store_get_stats(hs, &st);
    return st;
}

/*
 * hs_a and hs_b hold the same incarnations: every probe must give the
 * same result at the same cost, which holds for all probes only if their
 * filters are equal where it matters.
 */
static void probe_both(Qcow2HashStore *hs_a, Qcow2HashStore *hs_b,
                       const Qcow2DedupHash *h)
{
    Qcow2HashStoreStats a0 = stats_of(hs_a), b0 = stats_of(hs_b), a1, b1;
    Qcow2IndexLocation la = { 0 }, lb = { 0 };
    uint64_t ca = 0, cb = 0;
    int ra = qcow2_hash_store_lookup(hs_a, h, &ca, &la);
    int rb = qcow2_hash_store_lookup(hs_b, h, &cb, &lb);

    g_assert_cmpint(ra, ==, rb);
    if (ra > 0) {
        g_assert_cmpuint(ca, ==, cb);
        g_assert_cmpuint(la.id, ==, lb.id);
        g_assert_cmpuint(la.bucket, ==, lb.bucket);
        g_assert_cmpuint(la.tag, ==, lb.tag);
    }
    a1 = stats_of(hs_a);
    b1 = stats_of(hs_b);
    g_assert_cmpuint(a1.metadata_reads - a0.metadata_reads, ==,
                     b1.metadata_reads - b0.metadata_reads);
    g_assert_cmpuint(a1.filter_hits - a0.filter_hits, ==,
                     b1.filter_hits - b0.filter_hits);
    g_assert_cmpuint(a1.false_positives - a0.false_positives, ==,
                     b1.false_positives - b0.false_positives);
}

static void assert_same_filters(Scratch *s, Qcow2HashStore *hs_a,
                                Qcow2HashStore *hs_b, GArray *items)
{
    for (guint i = 0; i < items->len; i++) {
        const Item *it = item_at(items, i);
        uint32_t alt = qcow2_dedup_alt_bucket(it->loc.bucket, it->loc.tag,
                                              s->bucket_bits);
        Qcow2DedupHash h;

        probe_both(hs_a, hs_b, &it->h);
        /* Same tag, other content, either of the entry's buckets. */
        hash_with(s->rand, it->loc.tag, it->loc.bucket, &h);
        probe_both(hs_a, hs_b, &h);
        hash_with(s->rand, it->loc.tag, alt, &h);
        probe_both(hs_a, hs_b, &h);
    }
    for (int i = 0; i < 20000; i++) {
        Qcow2DedupHash h;

        random_hash(s->rand, &h);
        probe_both(hs_a, hs_b, &h);
    }
    g_assert_cmpuint(qcow2_hash_store_entries(hs_a), ==,
                     qcow2_hash_store_entries(hs_b));
    g_assert_cmpuint(qcow2_hash_store_memory(hs_a), ==,
                     qcow2_hash_store_memory(hs_b));
}

/* A second store on the same file, from the first one's directory. */
static Qcow2HashStore *reopen_store(Scratch *s, Qcow2HashStore *hs,
                                    uint32_t max_incarnations, bool load)
{
    uint32_t n = qcow2_hash_store_count(hs);
    g_autofree Qcow2IncarnationInfo *infos = g_new(Qcow2IncarnationInfo, n);
    Qcow2HashStore *copy = qcow2_hash_store_new(s->bs, s->cluster_bits,
                                                s->bucket_bits,
                                                max_incarnations);

    g_assert_cmpint(qcow2_hash_store_list(hs, infos, n), ==, n);
    for (uint32_t i = 0; i < n; i++) {
        qcow2_hash_store_add_existing(copy, &infos[i]);
    }
    if (load) {
        qcow2_hash_store_start_loading(copy);
        qcow2_hash_store_wait_loaded(copy);
    }
    return copy;
}

/* Geometry and layout */

static void test_table_size(void)
{
    /* floor(cluster_size / 160) buckets per cluster, whole clusters. */
    g_assert_cmpuint(qcow2_hash_store_table_size(9, 4), ==, 6 * 512);
    g_assert_cmpuint(qcow2_hash_store_table_size(9, 14), ==, 5462 * 512);
    g_assert_cmpuint(qcow2_hash_store_table_size(12, 4), ==, 4096);
    g_assert_cmpuint(qcow2_hash_store_table_size(12, 6), ==, 3 * 4096);
    g_assert_cmpuint(qcow2_hash_store_table_size(16, 10), ==, 3 * 65536);
    g_assert_cmpuint(qcow2_hash_store_table_size(16, 24), ==,
                     41021ull * 65536);
    g_assert_cmpuint(qcow2_hash_store_table_size(21, 24), ==,
                     1281ull << 21);
}

/* The table the doc describes, built independently of the store. */
static uint8_t *expected_table(const Qcow2LogStore *ls, int cluster_bits,
                               size_t *size)
{
    int bb = qcow2_log_store_bucket_bits(ls);
    size_t cs = 1u << cluster_bits, per = cs / 160;
    size_t clusters = ((1u << bb) + per - 1) / per;
    const Qcow2IndexEntry *slots = qcow2_log_store_slots(ls);
    uint8_t *buf = g_malloc0(clusters * cs);

    for (uint32_t b = 0; b < (1u << bb); b++) {
        uint8_t *p = buf + (b / per) * cs + (b % per) * 160;

        for (int i = 0; i < 4; i++, p += 40) {
            const Qcow2IndexEntry *e = &slots[b * 4 + i];

            if (e->cluster) {
                memcpy(p, e->hash.b, 32);
                for (int k = 0; k < 8; k++) {
                    p[32 + k] = e->cluster >> (56 - 8 * k);
                }
            }
        }
    }
    *size = clusters * cs;
    return buf;
}

static void test_layout(gconstpointer opaque)
{
    int cluster_bits = GPOINTER_TO_INT(opaque) >> 8;
    int bucket_bits = GPOINTER_TO_INT(opaque) & 0xff;
    uint64_t cs = 1ull << cluster_bits;
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs;
    Qcow2LogStore *ls;
    Qcow2IncarnationInfo dropped;
    uint64_t offset = 3 * cs;
    g_autofree uint8_t *want = NULL, *got = NULL;
    size_t size;
    int fd;

    scratch_open(&s, cluster_bits, bucket_bits, 0);
    hs = qcow2_hash_store_new(s.bs, cluster_bits, bucket_bits, 4);
    ls = fill_log_store(&s, items);
    /* Leave a few holes, as removals from the log store do. */
    for (guint i = 0; i < items->len; i += 7) {
        g_assert_true(qcow2_log_store_remove(ls, &item_at(items, i)->loc,
                                             item_at(items, i)->cluster));
    }
    want = expected_table(ls, cluster_bits, &size);
    g_assert_cmpuint(size, ==,
                     qcow2_hash_store_table_size(cluster_bits, bucket_bits));

    /* Garbage around and under the table: padding must be written. */
    fd = open(s.path, O_RDWR);
    got = g_malloc(size + 2 * cs);
    memset(got, 0xaa, size + 2 * cs);
    g_assert_cmpint(pwrite(fd, got, size + 2 * cs, offset - cs), ==,
                    size + 2 * cs);

    g_assert_cmpint(qcow2_hash_store_freeze(hs, ls, offset, &dropped), ==, 0);
    g_assert_cmpuint(dropped.id, ==, 0);
    g_assert_cmpuint(qcow2_hash_store_entries(hs), ==,
                     qcow2_log_store_count(ls));

    g_assert_cmpint(pread(fd, got, size + 2 * cs, offset - cs), ==,
                    size + 2 * cs);
    for (uint64_t i = 0; i < cs; i++) {
        g_assert_cmpuint(got[i], ==, 0xaa);
        g_assert_cmpuint(got[cs + size + i], ==, 0xaa);
    }
    g_assert_cmpmem(got + cs, size, want, size);
    close(fd);

    qcow2_log_store_free(ls);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Lookups */

static void test_lookup(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs;
    Qcow2HashStoreStats st;
    uint64_t reads0, hits_reads, miss_reads, nb_miss = 100000;
    double per_entry;

    scratch_open(&s, 12, 10, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 10, 16);
    for (int i = 0; i < 16; i++) {
        freeze_new(&s, hs, items, 0, NULL);
    }
    g_assert_cmpuint(qcow2_hash_store_count(hs), ==, 16);
    g_assert_cmpuint(qcow2_hash_store_entries(hs), ==, items->len);

    per_entry = (double)qcow2_hash_store_memory(hs) / items->len;
    g_test_message("%u entries in 16 incarnations of 2^10 buckets "
                   "(load %.3f): %.3f bytes of RAM per entry",
                   items->len, items->len / (16.0 * 4096), per_entry);
    g_assert_cmpfloat(per_entry, <=, 2.5);

    reads0 = io_bucket_reads();
    for (guint i = 0; i < items->len; i++) {
        assert_hit(hs, item_at(items, i));
    }
    st = stats_of(hs);
    hits_reads = st.metadata_reads;
    g_assert_cmpuint(st.hits, ==, items->len);
    g_assert_cmpuint(st.lookups, ==, items->len);
    g_assert_cmpuint(st.filter_hits, ==, st.hits + st.false_positives);
    /* Every metadata read is one bucket, nothing else is read. */
    g_assert_cmpuint(io_bucket_reads() - reads0, ==, st.metadata_reads);
    g_test_message("metadata reads per hit: %.4f",
                   (double)hits_reads / items->len);
    g_assert_cmpfloat((double)hits_reads / items->len, <=, 1.05);

    for (uint64_t i = 0; i < nb_miss; i++) {
        Qcow2DedupHash h;

        random_hash(s.rand, &h);
        assert_miss(hs, &h);
    }
    st = stats_of(hs);
    miss_reads = st.metadata_reads - hits_reads;
    g_test_message("metadata reads per miss: %.5f (8*k/65536 = %.5f)",
                   (double)miss_reads / nb_miss, 8.0 * 16 / 65536);
    g_assert_cmpfloat((double)miss_reads / nb_miss, <=, 0.02);
    g_assert_cmpuint(st.hits, ==, items->len);
    g_assert_cmpuint(st.false_positives, >=, miss_reads);

    for (guint i = 0; i < items->len; i += 97) {
        assert_hit_location(hs, item_at(items, i), 10);
    }

    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* The newest incarnation wins when a hash is in several. */
static void test_newest_first(void)
{
    Scratch s;
    Qcow2HashStore *hs;
    Qcow2DedupHash h;
    Qcow2IndexLocation loc;
    Qcow2IncarnationInfo dropped;
    uint64_t cluster;

    scratch_open(&s, 12, 4, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 4, 8);
    random_hash(s.rand, &h);
    for (uint32_t id = 1; id <= 3; id++) {
        Qcow2LogStore *ls = qcow2_log_store_new(id, 4);

        g_assert_cmpint(qcow2_log_store_insert(ls, &h, 100 * id, &loc), ==, 0);
        g_assert_cmpint(qcow2_hash_store_freeze(hs, ls, scratch_alloc_table(&s),
                                                &dropped), ==, 0);
        qcow2_log_store_free(ls);
    }
    g_assert_cmpint(qcow2_hash_store_lookup(hs, &h, &cluster, &loc), ==, 1);
    g_assert_cmpuint(cluster, ==, 300);
    g_assert_cmpuint(loc.id, ==, 3);
    /* Removing the newest uncovers the next one. */
    g_assert_cmpint(qcow2_hash_store_remove(hs, &loc, 300), ==, 1);
    g_assert_cmpint(qcow2_hash_store_lookup(hs, &h, &cluster, &loc), ==, 1);
    g_assert_cmpuint(cluster, ==, 200);
    g_assert_cmpuint(loc.id, ==, 2);

    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

static void test_fifo_drop(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2IncarnationInfo infos[5], dropped, list[8];
    guint first[6];
    Qcow2HashStore *hs;

    scratch_open(&s, 12, 6, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 6, 3);
    for (int i = 0; i < 5; i++) {
        first[i] = items->len;
        infos[i] = freeze_new(&s, hs, items, 0, &dropped);
        if (i < 3) {
            g_assert_cmpuint(dropped.id, ==, 0);
        } else {
            g_assert_cmpuint(dropped.id, ==, infos[i - 3].id);
            g_assert_cmpuint(dropped.table_offset, ==,
                             infos[i - 3].table_offset);
            g_assert_cmpuint(dropped.nb_entries, ==, infos[i - 3].nb_entries);
        }
    }
    first[5] = items->len;

    g_assert_cmpuint(qcow2_hash_store_count(hs), ==, 3);
    g_assert_cmpint(qcow2_hash_store_list(hs, list, 8), ==, 3);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpuint(list[i].id, ==, infos[i + 2].id);
        g_assert_cmpuint(list[i].table_offset, ==, infos[i + 2].table_offset);
        g_assert_cmpuint(list[i].nb_entries, ==, infos[i + 2].nb_entries);
    }
    g_assert_cmpint(qcow2_hash_store_list(hs, list, 2), ==, 2);
    g_assert_false(qcow2_hash_store_has(hs, infos[0].id));
    g_assert_false(qcow2_hash_store_has(hs, infos[1].id));
    g_assert_true(qcow2_hash_store_has(hs, infos[2].id));
    g_assert_false(qcow2_hash_store_has(hs, 0));
    g_assert_cmpuint(qcow2_hash_store_entries(hs), ==, items->len - first[2]);

    for (guint i = 0; i < items->len; i++) {
        if (i < first[2]) {
            assert_miss(hs, &item_at(items, i)->h);
            g_assert_cmpint(qcow2_hash_store_remove(hs, &item_at(items, i)->loc,
                                                    item_at(items, i)->cluster),
                            ==, 0);
        } else {
            assert_hit(hs, item_at(items, i));
        }
    }

    /* The dropped space is reused by the next freeze, as the glue does. */
    first[0] = items->len;
    freeze_new(&s, hs, items, infos[0].table_offset, &dropped);
    g_assert_cmpuint(dropped.id, ==, infos[2].id);
    for (guint i = first[0]; i < items->len; i++) {
        assert_hit(hs, item_at(items, i));
    }

    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Removal */

static void test_remove(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;
    Qcow2HashStoreStats st0, st1;
    uint64_t removed = 0;
    Item *it;

    scratch_open(&s, 16, 10, 0);
    hs = qcow2_hash_store_new(s.bs, 16, 10, 8);
    for (int i = 0; i < 4; i++) {
        freeze_new(&s, hs, items, 0, NULL);
    }

    for (guint i = 0; i < items->len; i += 3) {
        it = item_at(items, i);
        g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster),
                        ==, 1);
        it->removed = true;
        removed++;
    }
    g_assert_cmpuint(qcow2_hash_store_entries(hs), ==, items->len - removed);

    /* Removed entries miss without even reading their bucket. */
    st0 = stats_of(hs);
    for (guint i = 0; i < items->len; i++) {
        it = item_at(items, i);
        if (it->removed) {
            assert_miss(hs, &it->h);
            /* A second removal finds nothing. */
            g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster),
                            ==, 0);
        } else {
            assert_hit(hs, it);
        }
    }
    st1 = stats_of(hs);
    g_assert_cmpuint(st1.hits - st0.hits, ==, items->len - removed);

    /* Wrong cluster, unknown incarnation, bad location: nothing removed. */
    it = item_at(items, 1);
    g_assert_false(it->removed);
    g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster + 1),
                    ==, 0);
    g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, 0), ==, 0);
    g_assert_cmpint(qcow2_hash_store_remove(hs,
                    &(Qcow2IndexLocation) { .id = 999, .bucket = it->loc.bucket,
                                            .tag = it->loc.tag },
                    it->cluster), ==, 0);
    g_assert_cmpint(qcow2_hash_store_remove(hs,
                    &(Qcow2IndexLocation) { .id = it->loc.id, .bucket = 1024,
                                            .tag = it->loc.tag },
                    it->cluster), ==, 0);
    g_assert_cmpint(qcow2_hash_store_remove(hs,
                    &(Qcow2IndexLocation) { .id = it->loc.id,
                                            .bucket = it->loc.bucket },
                    it->cluster), ==, 0);
    assert_hit(hs, it);

    /* Removing by the alternate bucket works too. */
    it->loc.bucket = qcow2_dedup_alt_bucket(it->loc.bucket, it->loc.tag, 10);
    g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster), ==, 1);
    it->removed = true;
    assert_miss(hs, &it->h);

    /* The removals are on disk: a new store loading the tables agrees. */
    hs2 = reopen_store(&s, hs, 8, true);
    for (guint i = 0; i < items->len; i++) {
        it = item_at(items, i);
        if (it->removed) {
            assert_miss(hs2, &it->h);
        } else {
            assert_hit(hs2, it);
        }
    }
    assert_same_filters(&s, hs, hs2, items);

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Background loading */

static void test_loaded_equals_frozen(gconstpointer opaque)
{
    int cluster_bits = GPOINTER_TO_INT(opaque) >> 8;
    int bucket_bits = GPOINTER_TO_INT(opaque) & 0xff;
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;

    scratch_open(&s, cluster_bits, bucket_bits, 0);
    hs = qcow2_hash_store_new(s.bs, cluster_bits, bucket_bits, 4);
    for (int i = 0; i < 3; i++) {
        freeze_new(&s, hs, items, 0, NULL);
    }

    /* Not loaded yet: everything misses, nothing is read. */
    hs2 = reopen_store(&s, hs, 4, false);
    g_assert_cmpuint(qcow2_hash_store_memory(hs2), <,
                     qcow2_hash_store_memory(hs));
    for (guint i = 0; i < items->len; i += 11) {
        assert_miss(hs2, &item_at(items, i)->h);
    }
    g_assert_cmpuint(stats_of(hs2).metadata_reads, ==, 0);

    qcow2_hash_store_start_loading(hs2);
    qcow2_hash_store_wait_loaded(hs2);
    assert_same_filters(&s, hs, hs2, items);

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* An incarnation added after loading finished is loaded by the next start. */
static void test_load_again(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;
    Qcow2IncarnationInfo infos[2];

    scratch_open(&s, 12, 8, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    infos[0] = freeze_new(&s, hs, items, 0, NULL);
    infos[1] = freeze_new(&s, hs, items, 0, NULL);

    hs2 = qcow2_hash_store_new(s.bs, 12, 8, 4);
    qcow2_hash_store_wait_loaded(hs2);      /* nothing to wait for */
    qcow2_hash_store_start_loading(hs2);    /* nothing to load */
    qcow2_hash_store_add_existing(hs2, &infos[0]);
    qcow2_hash_store_start_loading(hs2);
    qcow2_hash_store_start_loading(hs2);    /* at most one loader */
    qcow2_hash_store_wait_loaded(hs2);
    qcow2_hash_store_add_existing(hs2, &infos[1]);
    assert_miss(hs2, &item_at(items, items->len - 1)->h);
    qcow2_hash_store_start_loading(hs2);
    qcow2_hash_store_wait_loaded(hs2);
    assert_same_filters(&s, hs, hs2, items);

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Removed while nothing is loaded: the loader must not resurrect it. */
static void test_remove_before_loading(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2, *ref;
    uint64_t removed = 0;

    scratch_open(&s, 12, 8, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    freeze_new(&s, hs, items, 0, NULL);
    freeze_new(&s, hs, items, 0, NULL);

    hs2 = reopen_store(&s, hs, 4, false);
    for (guint i = 0; i < items->len; i += 5) {
        Item *it = item_at(items, i);

        g_assert_cmpint(qcow2_hash_store_remove(hs2, &it->loc, it->cluster),
                        ==, 1);
        it->removed = true;
        removed++;
    }
    /* Without a filter the count comes from the directory, minus removals. */
    g_assert_cmpuint(qcow2_hash_store_entries(hs2), ==, items->len - removed);
    qcow2_hash_store_start_loading(hs2);
    qcow2_hash_store_wait_loaded(hs2);
    g_assert_cmpuint(qcow2_hash_store_entries(hs2), ==, items->len - removed);

    ref = reopen_store(&s, hs2, 4, true);
    assert_same_filters(&s, ref, hs2, items);
    for (guint i = 0; i < items->len; i++) {
        Item *it = item_at(items, i);

        if (it->removed) {
            assert_miss(hs2, &it->h);
        } else {
            assert_hit(hs2, it);
        }
    }

    qcow2_hash_store_free(ref);
    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/*
 * The loader has read the table (the entry still in it) but not published
 * the filter when the entry is removed: the published filter must not
 * hold it.
 */
static void test_remove_during_loading(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2, *ref;
    Qcow2IncarnationInfo info;
    Qcow2HashStoreStats st0, st1;
    Item *it;

    scratch_open(&s, 12, 8, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    info = freeze_new(&s, hs, items, 0, NULL);
    it = item_at(items, 0);

    hs2 = reopen_store(&s, hs, 4, false);
    gate_arm(info.table_offset);
    qcow2_hash_store_start_loading(hs2);
    gate_wait_held();

    /* Not published yet: a miss without reading. */
    assert_miss(hs2, &it->h);
    g_assert_cmpuint(stats_of(hs2).metadata_reads, ==, 0);
    g_assert_cmpint(qcow2_hash_store_remove(hs2, &it->loc, it->cluster), ==, 1);
    it->removed = true;

    gate_release();
    qcow2_hash_store_wait_loaded(hs2);

    st0 = stats_of(hs2);
    assert_miss(hs2, &it->h);
    st1 = stats_of(hs2);
    /* A lost removal would leave the tag: one read, one false positive. */
    g_assert_cmpuint(st1.metadata_reads, ==, st0.metadata_reads);
    g_assert_cmpuint(qcow2_hash_store_entries(hs2), ==, items->len - 1);

    ref = reopen_store(&s, hs2, 4, true);
    assert_same_filters(&s, ref, hs2, items);

    qcow2_hash_store_free(ref);
    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* The incarnation being loaded is dropped, its space reused at once. */
static void test_drop_during_loading(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;
    Qcow2IncarnationInfo info, dropped;
    guint first;

    scratch_open(&s, 12, 8, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    info = freeze_new(&s, hs, items, 0, NULL);

    hs2 = reopen_store(&s, hs, 1, false);
    gate_arm(info.table_offset);
    qcow2_hash_store_start_loading(hs2);
    gate_wait_held();

    first = items->len;
    freeze_new(&s, hs2, items, info.table_offset, &dropped);
    g_assert_cmpuint(dropped.id, ==, info.id);
    g_assert_false(qcow2_hash_store_has(hs2, info.id));
    gate_release();
    qcow2_hash_store_wait_loaded(hs2);

    g_assert_cmpuint(qcow2_hash_store_count(hs2), ==, 1);
    g_assert_cmpuint(qcow2_hash_store_entries(hs2), ==, items->len - first);
    for (guint i = 0; i < items->len; i++) {
        if (i < first) {
            assert_miss(hs2, &item_at(items, i)->h);
        } else {
            assert_hit(hs2, item_at(items, i));
        }
    }

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Freeing the store while the loader is held stops the loader. */
static void test_free_during_loading(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;
    Qcow2IncarnationInfo info;

    scratch_open(&s, 9, 14, 0);
    hs = qcow2_hash_store_new(s.bs, 9, 14, 4);
    info = freeze_new(&s, hs, items, 0, NULL);
    freeze_new(&s, hs, items, 0, NULL);

    hs2 = reopen_store(&s, hs, 4, false);
    gate_arm(info.table_offset);
    qcow2_hash_store_start_loading(hs2);
    gate_wait_held();
    gate_release();
    qcow2_hash_store_free(hs2);

    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Concurrency */

typedef struct Shared {
    Scratch *s;
    Qcow2HashStore *hs;
    GMutex lock;                /* the caller's lock (s->lock in qcow2) */
    GArray *items;
    guint nb_items;             /* items of the initial incarnations */
    int nb_workers;
    uint64_t spare;             /* table space of the last dropped one */
    uint64_t not_loaded_misses;
    GArray *dropped_ids;
} Shared;

typedef struct Worker {
    Shared *sh;
    int index;
} Worker;

static bool id_dropped(Shared *sh, uint32_t id)
{
    for (guint i = 0; i < sh->dropped_ids->len; i++) {
        if (g_array_index(sh->dropped_ids, uint32_t, i) == id) {
            return true;
        }
    }
    return false;
}

/* Look up and remove this worker's share of the items, under the lock. */
static gpointer worker_thread(gpointer opaque)
{
    Worker *w = opaque;
    Shared *sh = w->sh;

    for (guint i = w->index; i < sh->nb_items; i += sh->nb_workers) {
        Item *it = item_at(sh->items, i);
        Qcow2IndexLocation loc;
        uint64_t cluster = 0;
        int ret;

        g_mutex_lock(&sh->lock);
        ret = qcow2_hash_store_lookup(sh->hs, &it->h, &cluster, &loc);
        g_assert_cmpint(ret, >=, 0);
        if (ret) {
            g_assert_cmpuint(cluster, ==, it->cluster);
            g_assert_cmpuint(loc.id, ==, it->loc.id);
        } else if (!id_dropped(sh, it->loc.id)) {
            sh->not_loaded_misses++;
        }
        if (i % 3 == 0) {
            ret = qcow2_hash_store_remove(sh->hs, &it->loc, it->cluster);
            g_assert_cmpint(ret, ==, !id_dropped(sh, it->loc.id));
            it->removed = true;
        }
        g_mutex_unlock(&sh->lock);
    }
    return NULL;
}

/* Freezes (dropping the oldest, reusing its space) while the others run. */
static gpointer freezer_thread(gpointer opaque)
{
    Shared *sh = opaque;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));

    for (int i = 0; i < 6; i++) {
        Qcow2IncarnationInfo dropped;

        g_mutex_lock(&sh->lock);
        freeze_new(sh->s, sh->hs, items, sh->spare, &dropped);
        g_assert_cmpuint(dropped.id, !=, 0);
        g_array_append_val(sh->dropped_ids, dropped.id);
        sh->spare = dropped.table_offset;
        g_mutex_unlock(&sh->lock);
        g_usleep(2000);
    }
    return NULL;
}

static void test_concurrent(void)
{
    enum { NB_INCS = 16, NB_WORKERS = 4 };
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Shared sh = { .s = &s, .items = items, .nb_workers = NB_WORKERS };
    Worker w[NB_WORKERS];
    GThread *threads[NB_WORKERS + 1];
    Qcow2HashStore *hs, *ref;
    int64_t t0;

    scratch_open(&s, 12, 11, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 11, NB_INCS);
    for (int i = 0; i < NB_INCS; i++) {
        freeze_new(&s, hs, items, 0, NULL);
    }
    sh.nb_items = items->len;
    sh.dropped_ids = g_array_new(false, false, sizeof(uint32_t));
    g_mutex_init(&sh.lock);
    sh.hs = reopen_store(&s, hs, NB_INCS, false);
    qcow2_hash_store_free(hs);

    /* Each table takes 20 ms to load: the loader runs all along. */
    io.big_read_delay_us = 20000;
    t0 = g_get_monotonic_time();
    g_mutex_lock(&sh.lock);
    qcow2_hash_store_start_loading(sh.hs);
    g_mutex_unlock(&sh.lock);
    for (int i = 0; i < NB_WORKERS; i++) {
        w[i] = (Worker) { .sh = &sh, .index = i };
        threads[i] = g_thread_new("worker", worker_thread, &w[i]);
    }
    threads[NB_WORKERS] = g_thread_new("freezer", freezer_thread, &sh);
    for (int i = 0; i <= NB_WORKERS; i++) {
        g_thread_join(threads[i]);
    }
    qcow2_hash_store_wait_loaded(sh.hs);
    io.big_read_delay_us = 0;
    g_test_message("%" PRIu64 " lookups missed because their filter was "
                   "still loading; %.1f ms", sh.not_loaded_misses,
                   (g_get_monotonic_time() - t0) / 1000.0);

    /* Whatever raced, the filters now match a quiet load of the disk. */
    ref = reopen_store(&s, sh.hs, NB_INCS, true);
    assert_same_filters(&s, ref, sh.hs, items);
    for (guint i = 0; i < sh.nb_items; i++) {
        Item *it = item_at(items, i);

        if (it->removed || id_dropped(&sh, it->loc.id)) {
            assert_miss(sh.hs, &it->h);
        } else {
            assert_hit(sh.hs, it);
        }
    }

    qcow2_hash_store_free(ref);
    qcow2_hash_store_free(sh.hs);
    g_mutex_clear(&sh.lock);
    g_array_free(sh.dropped_ids, true);
    scratch_close(&s);
}

/* Bad tables and I/O errors */

static int count_entry(const Qcow2IndexEntry *e, const Qcow2IndexLocation *loc,
                       void *opaque)
{
    uint64_t *n = opaque;

    (void)e;
    (void)loc;
    (*n)++;
    return 0;
}

static void test_corrupt_table(void)
{
    Scratch s;
    Qcow2HashStore *hs;
    uint64_t size = qcow2_hash_store_table_size(12, 8), n = 0;
    g_autofree uint8_t *garbage = g_malloc(size);
    Qcow2IncarnationInfo info[2] = {
        { .id = 5, .table_offset = 4096, .nb_entries = 1 },
        { .id = 9, .table_offset = 4096 + size, .nb_entries = UINT64_MAX },
    };
    Qcow2DedupHash ff;
    Qcow2IndexLocation loc;
    uint64_t cluster;

    scratch_open(&s, 12, 8, 0);
    for (uint64_t i = 0; i < size; i++) {
        garbage[i] = g_rand_int(s.rand);
    }
    g_assert_cmpint(bdrv_pwrite(s.bs, info[0].table_offset, size, garbage, 0),
                    ==, 0);
    memset(garbage, 0xff, size);
    g_assert_cmpint(bdrv_pwrite(s.bs, info[1].table_offset, size, garbage, 0),
                    ==, 0);

    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    qcow2_hash_store_add_existing(hs, &info[0]);
    qcow2_hash_store_add_existing(hs, &info[1]);
    qcow2_hash_store_start_loading(hs);
    qcow2_hash_store_wait_loaded(hs);

    for (int i = 0; i < 50000; i++) {
        Qcow2DedupHash h;

        random_hash(s.rand, &h);
        g_assert_cmpint(qcow2_hash_store_lookup(hs, &h, &cluster, &loc), >=, 0);
        loc = (Qcow2IndexLocation) {
            .id = g_rand_int_range(s.rand, 0, 12),
            .bucket = g_rand_int(s.rand) & 0x1ff,     /* half in range */
            .tag = g_rand_int(s.rand),
        };
        g_assert_cmpint(qcow2_hash_store_remove(hs, &loc, g_rand_int(s.rand)),
                        >=, 0);
    }
    /* A garbage hit is returned as is: the caller validates the cluster. */
    memset(&ff, 0xff, sizeof(ff));
    g_assert_cmpint(qcow2_hash_store_lookup(hs, &ff, &cluster, &loc), ==, 1);
    g_assert_cmpuint(cluster, ==, UINT64_MAX);
    g_assert_cmpuint(loc.id, ==, 9);

    g_assert_cmpint(qcow2_hash_store_foreach(hs, count_entry, &n), ==, 0);
    g_assert_cmpuint(n, >, 1024);

    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

static void test_io_errors(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;
    Qcow2IncarnationInfo infos[2];
    Qcow2IndexLocation loc;
    uint64_t cluster, n = 0;
    Item *it;
    guint first;

    scratch_open(&s, 12, 8, 0);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    infos[0] = freeze_new(&s, hs, items, 0, NULL);
    first = items->len;
    infos[1] = freeze_new(&s, hs, items, 0, NULL);

    /* The second table cannot be read: it stays unloaded, and misses. */
    io_fail_range(infos[1].table_offset, infos[1].table_offset + 1);
    hs2 = reopen_store(&s, hs, 4, true);
    io_fail_range(0, 0);
    assert_hit(hs2, item_at(items, 0));
    assert_miss(hs2, &item_at(items, first)->h);
    g_assert_cmpuint(qcow2_hash_store_memory(hs2), <,
                     qcow2_hash_store_memory(hs));
    /* ...but its entries can still be removed from disk. */
    it = item_at(items, first);
    g_assert_cmpint(qcow2_hash_store_remove(hs2, &it->loc, it->cluster), ==, 1);
    assert_miss(hs, &it->h);

    /* Lookups and removals report read errors. */
    io_fail_range(0, INT64_MAX);
    it = item_at(items, 1);
    g_assert_cmpint(qcow2_hash_store_lookup(hs, &it->h, &cluster, &loc), ==,
                    -EIO);
    g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster), ==,
                    -EIO);
    g_assert_cmpint(qcow2_hash_store_foreach(hs, count_entry, &n), ==, -EIO);
    io_fail_range(0, 0);
    assert_hit(hs, it);

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Iteration */

typedef struct ForeachCheck {
    GHashTable *live;           /* cluster -> Item */
    int bucket_bits;
    uint64_t seen;
    uint64_t stop_after;
} ForeachCheck;

static int check_entry(const Qcow2IndexEntry *e, const Qcow2IndexLocation *loc,
                       void *opaque)
{
    ForeachCheck *fc = opaque;
    const Item *it = g_hash_table_lookup(fc->live, &e->cluster);
    uint16_t t = qcow2_dedup_tag(&e->hash);
    uint32_t home = qcow2_dedup_home_bucket(&e->hash, fc->bucket_bits);

    g_assert_nonnull(it);
    g_assert_false(it->removed);
    g_assert_cmpmem(&e->hash, sizeof(e->hash), &it->h, sizeof(it->h));
    g_assert_cmpuint(loc->id, ==, it->loc.id);
    g_assert_cmpuint(loc->tag, ==, t);
    g_assert_true(loc->bucket == home ||
                  loc->bucket == qcow2_dedup_alt_bucket(home, t,
                                                        fc->bucket_bits));
    g_hash_table_remove(fc->live, &e->cluster);
    return ++fc->seen == fc->stop_after ? 42 : 0;
}

static void test_foreach(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs;
    ForeachCheck fc = { .bucket_bits = 9 };
    uint64_t live = 0;

    scratch_open(&s, 9, 9, 0);
    hs = qcow2_hash_store_new(s.bs, 9, 9, 4);
    for (int i = 0; i < 3; i++) {
        freeze_new(&s, hs, items, 0, NULL);
    }
    fc.live = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (guint i = 0; i < items->len; i++) {
        Item *it = item_at(items, i);

        if (i % 4 == 1) {
            g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster),
                            ==, 1);
            it->removed = true;
        } else {
            g_hash_table_insert(fc.live, &it->cluster, it);
            live++;
        }
    }
    g_assert_cmpuint(qcow2_hash_store_entries(hs), ==, live);
    g_assert_cmpint(qcow2_hash_store_foreach(hs, check_entry, &fc), ==, 0);
    g_assert_cmpuint(fc.seen, ==, live);
    g_assert_cmpuint(g_hash_table_size(fc.live), ==, 0);

    /* fn's non-zero value stops the walk. */
    for (guint i = 0; i < items->len; i++) {
        Item *it = item_at(items, i);

        if (!it->removed) {
            g_hash_table_insert(fc.live, &it->cluster, it);
        }
    }
    fc.seen = 0;
    fc.stop_after = 10;
    g_assert_cmpint(qcow2_hash_store_foreach(hs, check_entry, &fc), ==, 42);
    g_assert_cmpuint(fc.seen, ==, 10);

    g_hash_table_destroy(fc.live);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

/* Direct I/O: unaligned bucket reads and 8-byte writes go through RMW. */
static void test_direct_io(void)
{
    Scratch s;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    Qcow2HashStore *hs, *hs2;

    scratch_open(&s, 12, 8, BDRV_O_NOCACHE);
    hs = qcow2_hash_store_new(s.bs, 12, 8, 4);
    freeze_new(&s, hs, items, 0, NULL);
    freeze_new(&s, hs, items, 0, NULL);
    for (guint i = 0; i < items->len; i++) {
        Item *it = item_at(items, i);

        assert_hit(hs, it);
        if (i % 2) {
            g_assert_cmpint(qcow2_hash_store_remove(hs, &it->loc, it->cluster),
                            ==, 1);
            it->removed = true;
        }
    }
    hs2 = reopen_store(&s, hs, 4, true);
    assert_same_filters(&s, hs, hs2, items);
    for (guint i = 0; i < items->len; i++) {
        Item *it = item_at(items, i);

        if (it->removed) {
            assert_miss(hs2, &it->h);
        } else {
            assert_hit(hs2, it);
        }
    }

    qcow2_hash_store_free(hs2);
    qcow2_hash_store_free(hs);
    scratch_close(&s);
}

#define GEOMETRY(cb, bb) GINT_TO_POINTER((cb) << 8 | (bb))

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    g_mutex_init(&io.lock);
    g_cond_init(&io.cond);

    g_test_add_func("/dedup/hash-store/table-size", test_table_size);
    g_test_add_data_func("/dedup/hash-store/layout/512", GEOMETRY(9, 4),
                         test_layout);
    g_test_add_data_func("/dedup/hash-store/layout/512-multi-chunk",
                         GEOMETRY(9, 14), test_layout);
    g_test_add_data_func("/dedup/hash-store/layout/4096", GEOMETRY(12, 6),
                         test_layout);
    g_test_add_data_func("/dedup/hash-store/layout/65536", GEOMETRY(16, 10),
                         test_layout);
    g_test_add_func("/dedup/hash-store/lookup", test_lookup);
    g_test_add_func("/dedup/hash-store/newest-first", test_newest_first);
    g_test_add_func("/dedup/hash-store/fifo-drop", test_fifo_drop);
    g_test_add_func("/dedup/hash-store/remove", test_remove);
    g_test_add_data_func("/dedup/hash-store/loaded-filter/4096",
                         GEOMETRY(12, 10), test_loaded_equals_frozen);
    g_test_add_data_func("/dedup/hash-store/loaded-filter/512-multi-chunk",
                         GEOMETRY(9, 14), test_loaded_equals_frozen);
    g_test_add_data_func("/dedup/hash-store/loaded-filter/65536",
                         GEOMETRY(16, 12), test_loaded_equals_frozen);
    g_test_add_func("/dedup/hash-store/load-again", test_load_again);
    g_test_add_func("/dedup/hash-store/remove-before-loading",
                    test_remove_before_loading);
    g_test_add_func("/dedup/hash-store/remove-during-loading",
                    test_remove_during_loading);
    g_test_add_func("/dedup/hash-store/drop-during-loading",
                    test_drop_during_loading);
    g_test_add_func("/dedup/hash-store/free-during-loading",
                    test_free_during_loading);
    g_test_add_func("/dedup/hash-store/concurrent", test_concurrent);
    g_test_add_func("/dedup/hash-store/corrupt-table", test_corrupt_table);
    g_test_add_func("/dedup/hash-store/io-errors", test_io_errors);
    g_test_add_func("/dedup/hash-store/foreach", test_foreach);
    g_test_add_func("/dedup/hash-store/direct-io", test_direct_io);
    return g_test_run();
}

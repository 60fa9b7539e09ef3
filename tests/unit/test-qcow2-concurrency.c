/*
 * Concurrency tests of the qcow2 driver: many threads issue random writes,
 * zero writes, discards, flushes and reads on one BlockBackend at once.
 *
 * Striped cases: the image is cut into stripes dealt round-robin to the
 * threads; a thread only touches its own stripes, so the result is exact
 * and is compared with a reference model (each thread updates only its own
 * bytes of it).  Stripes smaller than a cluster make every thread allocate
 * and copy-on-write the same clusters as its neighbours at the same time,
 * which is what qcow2's allocating-write serialisation must get right;
 * reads of a thread's own bytes during the run catch lost updates early.
 *
 * Shared case: all threads write, zero and discard the same few clusters
 * with sector-aligned requests.  qcow2 gives no ordering between such
 * requests, so only what is guaranteed is checked: every 512-byte sector
 * holds zeroes or exactly the data one write put there (never a mix or a
 * misplaced sector).
 *
 * Every case ends with bdrv_check and stock "qemu-img check" on the image.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qcow2-test-helpers.h"

#define NB_THREADS 8
#define OPEN_OPTS "driver=qcow2,discard=unmap"

typedef struct ConcCase {
    uint32_t cluster_size;
    uint64_t size;
    uint64_t stripe;            /* 0: the shared-region case */
    bool backing;               /* over a raw base full of data */
    bool snapshot;              /* stock internal snapshot taken first */
    int grow_steps;             /* times to grow by 1 MiB during the run */
    const char *open_extra;
} ConcCase;

typedef struct Worker {
    const ConcCase *c;
    BlockBackend *blk;
    TestModel *model;
    int id;
    int nb_ops;
    GArray *writes;             /* shared case: SharedWrite of this thread */
} Worker;

static int nb_ops_per_thread(void)
{
    return test_long_mode() ? 8000 : 400;
}

/* Striped cases */

static gpointer stripe_worker(gpointer opaque)
{
    Worker *w = opaque;
    const ConcCase *c = w->c;
    uint64_t nb_stripes = DIV_ROUND_UP(c->size, c->stripe);
    uint64_t own = (nb_stripes - w->id + NB_THREADS - 1) / NB_THREADS;
    GRand *rand = g_rand_new_with_seed(test_seed(c->stripe * 131 + w->id));

    for (int i = 0; i < w->nb_ops; i++) {
        uint64_t stripe = g_rand_int_range(rand, 0, own) * NB_THREADS + w->id;
        uint64_t base = stripe * c->stripe;
        TestOp op;
        int ret;

        test_random_op(rand, &op, base, MIN(c->stripe, c->size - base),
                       c->cluster_size);
        ret = test_apply_op(w->blk, &op, w->model);
        if (ret < 0) {
            g_autofree char *desc = test_op_str(&op);
            g_error("thread %d: %s failed: %s", w->id, desc, g_strerror(-ret));
        }
        test_model_apply(w->model, &op);
    }
    g_rand_free(rand);
    return NULL;
}

/* Shared case: self-describing sectors */

#define SECTOR 512
#define SECTOR_MAGIC 0x5ec7b10c
#define SHARED_CLUSTERS 8

typedef struct SharedWrite {
    uint64_t first_sector;
    uint32_t nb_sectors;
} SharedWrite;

/* Header then pattern; the header says who wrote it and where it belongs. */
static void fill_sector(uint8_t *buf, int writer, uint32_t seq,
                        uint64_t sector)
{
    stl_be_p(buf, SECTOR_MAGIC);
    stl_be_p(buf + 4, writer);
    stl_be_p(buf + 8, seq);
    stq_be_p(buf + 12, sector);
    test_fill_pattern(buf + 20, SECTOR - 20,
                      (writer << 24) ^ (seq << 4) ^ (uint32_t)sector);
}

static void shared_op(Worker *w, GRand *rand, uint64_t region_sectors,
                      uint64_t region_start)
{
    uint64_t first = g_rand_int_range(rand, 0, region_sectors);
    uint32_t len = g_rand_int_range(rand, 1, 17);
    uint32_t n = MIN(len, region_sectors - first);
    uint64_t offset = region_start + first * SECTOR;
    int kind = g_rand_int_range(rand, 0, 100);
    int ret;

    if (kind < 70) {
        SharedWrite sw = { first, n };
        g_autofree uint8_t *buf = g_malloc(n * SECTOR);
        for (uint32_t i = 0; i < n; i++) {
            fill_sector(buf + i * SECTOR, w->id, w->writes->len, first + i);
        }
        g_array_append_val(w->writes, sw);
        ret = blk_pwrite(w->blk, offset, n * SECTOR, buf, 0);
    } else if (kind < 85) {
        ret = blk_pwrite_zeroes(w->blk, offset, n * SECTOR,
                                g_rand_boolean(rand) ? BDRV_REQ_MAY_UNMAP : 0);
    } else if (kind < 95) {
        ret = blk_pdiscard(w->blk, offset, n * SECTOR);
    } else {
        ret = blk_flush(w->blk);
    }
    if (ret < 0) {
        g_error("thread %d: request at %#" PRIx64 " failed: %s", w->id, offset,
                g_strerror(-ret));
    }
}

static gpointer shared_worker(gpointer opaque)
{
    Worker *w = opaque;
    uint64_t region_start = 3 * (uint64_t)w->c->cluster_size;
    uint64_t region_sectors = SHARED_CLUSTERS * w->c->cluster_size / SECTOR;
    GRand *rand = g_rand_new_with_seed(test_seed(7000 + w->id));

    for (int i = 0; i < w->nb_ops; i++) {
        shared_op(w, rand, region_sectors, region_start);
    }
    g_rand_free(rand);
    return NULL;
}

/* A sector is zero, or exactly what one write of one thread put there. */
static void check_shared_sector(const uint8_t *got, uint64_t sector,
                                Worker *workers)
{
    uint8_t expected[SECTOR];
    uint32_t writer = ldl_be_p(got + 4), seq = ldl_be_p(got + 8);
    const SharedWrite *sw;

    if (buffer_is_zero(got, SECTOR)) {
        return;
    }
    if (ldl_be_p(got) != SECTOR_MAGIC || writer >= NB_THREADS ||
        seq >= workers[writer].writes->len ||
        ldq_be_p(got + 12) != sector) {
        g_error("sector %" PRIu64 " of the shared region holds data no "
                "write put there (writer %u, seq %u, sector %" PRIu64 ")",
                sector, writer, seq, ldq_be_p(got + 12));
    }
    sw = &g_array_index(workers[writer].writes, SharedWrite, seq);
    g_assert_cmpuint(sector, >=, sw->first_sector);
    g_assert_cmpuint(sector, <, sw->first_sector + sw->nb_sectors);
    fill_sector(expected, writer, seq, sector);
    test_assert_bytes_equal(got, expected, SECTOR, sector * SECTOR,
                            "shared sector");
}

static void check_shared_region(BlockBackend *blk, const ConcCase *c,
                                Worker *workers)
{
    uint64_t start = 3 * (uint64_t)c->cluster_size;
    uint64_t bytes = SHARED_CLUSTERS * (uint64_t)c->cluster_size;
    g_autofree uint8_t *buf = g_malloc(bytes);

    g_assert_cmpint(blk_pread(blk, start, bytes, buf, 0), ==, 0);
    for (uint64_t i = 0; i < bytes / SECTOR; i++) {
        check_shared_sector(buf + i * SECTOR, i, workers);
    }
}

/*
 * Grow the image while the workers write to its first part: each resize
 * drains the requests in flight and may move the L1 table.
 */
static void grow_meanwhile(BlockBackend *blk, const ConcCase *c)
{
    for (int i = 1; i <= c->grow_steps; i++) {
        Error *err = NULL;

        g_usleep(5000);
        g_assert_cmpint(blk_truncate(blk, c->size + i * MiB, false,
                                     PREALLOC_MODE_OFF, &err), ==, 0);
        g_assert_null(err);
    }
}

/* Setting up the image */

/* A raw base full of data; the model starts as its content. */
static void create_backing(const char *path, const char *base_name,
                           const char *base_path, TestModel *model)
{
    g_autofree char *opts = g_strdup_printf(
        "cluster_size=%u,backing_file=%s,backing_fmt=raw",
        model->cluster_size, base_name);
    BlockBackend *base;

    test_create_image(base_path, "raw", model->size, NULL);
    test_fill_pattern(model->data, model->size, 31337);
    base = test_open(base_path, "driver=raw", BDRV_O_RDWR);
    g_assert_cmpint(blk_pwrite(base, 0, model->size, model->data, 0), ==, 0);
    blk_unref(base);
    test_create_image(path, "qcow2", model->size, opts);
}

/* An image full of data with a stock internal snapshot "s1" of it. */
static void create_with_snapshot(const char *path, TestModel *model)
{
    g_autofree char *opts = g_strdup_printf("cluster_size=%u",
                                            model->cluster_size);
    BlockBackend *blk;

    test_create_image(path, "qcow2", model->size, opts);
    test_fill_pattern(model->data, model->size, 4711);
    blk = test_open(path, OPEN_OPTS, BDRV_O_RDWR);
    g_assert_cmpint(blk_pwrite(blk, 0, model->size, model->data, 0), ==, 0);
    blk_unref(blk);
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "snapshot", "-c", "s1",
                                   path, NULL), ==, 0);
}

static void test_concurrency(gconstpointer data)
{
    const ConcCase *c = data;
    g_autofree char *name = g_strdup_printf("conc-%u-%" PRIu64 "%s%s",
                                            c->cluster_size, c->stripe,
                                            c->backing ? "-backing" : "",
                                            c->snapshot ? "-snapshot" : "");
    g_autofree char *path = test_scratch_path("%s.qcow2", name);
    g_autofree char *base_name = g_strconcat(name, "-base.raw", NULL);
    g_autofree char *base_path = test_scratch_path("%s", base_name);
    g_autofree char *open_opts = g_strdup_printf(
        "%s%s%s", OPEN_OPTS, c->open_extra ? "," : "",
        c->open_extra ? c->open_extra : "");
    g_autofree uint8_t *snapshot_data = NULL;
    uint64_t final_size = c->size + c->grow_steps * MiB;
    TestModel model = {
        .data = g_malloc0(final_size),
        .size = c->size,
        .cluster_size = c->cluster_size,
        .discard_enabled = true,
    };
    Worker workers[NB_THREADS];
    GThread *threads[NB_THREADS];
    BlockBackend *blk;

    if (c->snapshot && test_skip_without_stock("qemu-img")) {
        g_free(model.data);
        return;
    }
    if (c->backing) {
        create_backing(path, base_name, base_path, &model);
    } else if (c->snapshot) {
        create_with_snapshot(path, &model);
        snapshot_data = g_memdup2(model.data, c->size);
    } else {
        g_autofree char *opts = g_strdup_printf("cluster_size=%u",
                                                c->cluster_size);
        test_create_image(path, "qcow2", c->size, opts);
    }

    blk = test_open(path, open_opts, BDRV_O_RDWR);
    for (int i = 0; i < NB_THREADS; i++) {
        workers[i] = (Worker) {
            .c = c, .blk = blk, .model = &model, .id = i,
            .nb_ops = nb_ops_per_thread(),
            .writes = g_array_new(FALSE, FALSE, sizeof(SharedWrite)),
        };
        threads[i] = g_thread_new("worker", c->stripe ? stripe_worker
                                                      : shared_worker,
                                  &workers[i]);
    }
    grow_meanwhile(blk, c);
    for (int i = 0; i < NB_THREADS; i++) {
        g_thread_join(threads[i]);
    }
    g_assert_cmpint(blk_flush(blk), ==, 0);
    model.size = final_size;

    if (c->stripe) {
        test_verify_and_close(blk, path, open_opts, &model);
    } else {
        check_shared_region(blk, c, workers);
        test_assert_check_clean(blk);
        blk_unref(blk);
        if (test_stock_tool("qemu-img")) {
            test_assert_stock_check(path, "qcow2");
        }
    }
    if (snapshot_data) {
        size_t len;
        g_autofree uint8_t *snap = test_stock_convert(path, "s1", &len);
        g_assert_cmpuint(len, ==, c->size);
        test_assert_bytes_equal(snap, snapshot_data, len, 0, "snapshot s1");
    }
    for (int i = 0; i < NB_THREADS; i++) {
        g_array_free(workers[i].writes, TRUE);
    }
    g_free(model.data);
}

static const struct {
    const char *path;
    ConcCase c;
} cases[] = {
    /* Several threads own bytes of every cluster. */
    { "/qcow2-concurrency/stripes/1000-in-4k",
      { 4096, 1 * MiB + 1536, 1000 } },
    { "/qcow2-concurrency/stripes/3584-in-64k",
      { 65536, 4 * MiB, 3584 } },
    { "/qcow2-concurrency/stripes/777-in-512",
      { 512, 512 * KiB + 512, 777 } },
    /* Whole clusters too, so zeroing and discarding whole clusters. */
    { "/qcow2-concurrency/stripes/2.5-clusters",
      { 4096, 2 * MiB, 10240 } },
    { "/qcow2-concurrency/stripes/1000-in-4k-o-direct",
      { 4096, 1 * MiB, 1000, .open_extra = "cache.direct=on" } },
    { "/qcow2-concurrency/stripes/backing",
      { 65536, 4 * MiB + 512, 6000, .backing = true } },
    { "/qcow2-concurrency/stripes/snapshot",
      { 4096, 2 * MiB, 1500, .snapshot = true } },
    /* Cluster-aligned size: growing must not change discards at the end. */
    { "/qcow2-concurrency/stripes/grow",
      { 4096, 1 * MiB, 1000, .grow_steps = 8 } },
    { "/qcow2-concurrency/shared/4k",
      { 4096, 1 * MiB, 0 } },
    { "/qcow2-concurrency/shared/64k",
      { 65536, 2 * MiB, 0 } },
};

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        test_add_data_func(cases[i].path, &cases[i].c, test_concurrency);
    }
    return g_test_run();
}

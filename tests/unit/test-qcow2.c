/*
 * Tests of the qcow2 driver through the public block-layer API.
 *
 * Every test mirrors its guest operations into a flat reference buffer
 * (qcow2-test-helpers.h) and, at the end, checks that:
 *  - the image reads back byte for byte as the reference, before and after
 *    a close and reopen;
 *  - bdrv_check finds no corruption and no leak, open and after reopening;
 *  - stock "qemu-img check" accepts the closed image (exit 0) and stock
 *    "qemu-img compare" finds it equal to a raw file of the reference.
 *
 * Images written by the stock tools (compressed clusters, zstd, internal
 * snapshots) are read and compared with what stock "qemu-img convert"
 * makes of them, then written by us and checked by stock qemu-img again.
 *
 * Seeds are fixed (QEMU_TEST_SEED changes them); run with --verbose to log
 * every operation.  QEMU_TEST_LONG=1 runs many more operations.
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qcow2-test-helpers.h"

#include <sys/wait.h>

#define OPEN_OPTS "driver=qcow2,discard=unmap"
/* Two L2 tables and four refcount blocks, the least the driver allows. */
#define TINY_CACHES_512 "l2-cache-size=1024,refcount-cache-size=2048"
#define TINY_CACHES_4K "l2-cache-size=8192,refcount-cache-size=16384"

/* Image and reference together, for one test. */
typedef struct Qcow2Test {
    char *path;
    const char *open_opts;
    TestModel model;
    GRand *rand;
} Qcow2Test;

static void qt_init(Qcow2Test *t, const char *name, uint64_t size,
                    uint32_t cluster_size, guint32 seed)
{
    t->path = test_scratch_path("%s.qcow2", name);
    t->open_opts = OPEN_OPTS;
    t->model = (TestModel) {
        .data = g_malloc0(size),
        .size = size,
        .cluster_size = cluster_size,
        .discard_enabled = true,
    };
    t->rand = g_rand_new_with_seed(test_seed(seed));
}

static void qt_destroy(Qcow2Test *t)
{
    g_free(t->path);
    g_free(t->model.data);
    g_rand_free(t->rand);
}

static BlockBackend *qt_open(Qcow2Test *t, int flags)
{
    return test_open(t->path, t->open_opts, flags);
}

static void qt_apply(Qcow2Test *t, BlockBackend *blk, const TestOp *op)
{
    g_autofree char *desc = test_op_str(op);
    int ret;

    if (test_verbose()) {
        test_note("%s", desc);
    }
    ret = test_apply_op(blk, op, &t->model);
    if (ret < 0) {
        g_autofree char *msg = g_strdup_printf("%s failed: %s", desc,
                                               g_strerror(-ret));
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
    test_model_apply(&t->model, op);
}

static void qt_random_ops(Qcow2Test *t, BlockBackend *blk, int n)
{
    for (int i = 0; i < n; i++) {
        TestOp op;
        test_random_op(t->rand, &op, 0, t->model.size, t->model.cluster_size);
        qt_apply(t, blk, &op);
    }
}

static void qt_write(Qcow2Test *t, BlockBackend *blk, uint64_t offset,
                     uint64_t bytes, uint32_t tag)
{
    TestOp op = { TEST_OP_WRITE, offset, bytes, tag };

    qt_apply(t, blk, &op);
}

static void qt_verify_and_close(Qcow2Test *t, BlockBackend *blk)
{
    test_verify_and_close(blk, t->path, t->open_opts, &t->model);
}

static int nb_ops(int normal)
{
    return test_long_mode() ? normal * 20 : normal;
}

/* Random operations on fresh images of every geometry */

typedef struct RandomCase {
    uint32_t cluster_size;
    int refcount_bits;
    bool v2;
    const char *extra_open_opts;    /* e.g. cache.direct=on */
    const char *extra_create_opts;  /* e.g. lazy_refcounts=on */
} RandomCase;

/* Several L2 tables' worth for small clusters, a few clusters for 2M. */
static uint64_t random_case_size(uint32_t cluster_size)
{
    uint64_t clusters = cluster_size <= 4096 ? 1024
                        : cluster_size <= 65536 ? 128 : 8;

    /* A partial last cluster exercises the end-of-image cases. */
    return clusters * cluster_size + 1536;
}

static void test_random(gconstpointer data)
{
    const RandomCase *c = data;
    uint64_t size = random_case_size(c->cluster_size);
    g_autofree char *name = g_strdup_printf("random-%u-%d-%s", c->cluster_size,
                                            c->refcount_bits,
                                            c->v2 ? "v2" : "v3");
    g_autofree char *create = g_strdup_printf(
        "cluster_size=%u,refcount_bits=%d,compat=%s%s%s", c->cluster_size,
        c->refcount_bits, c->v2 ? "0.10" : "1.1",
        c->extra_create_opts ? "," : "",
        c->extra_create_opts ? c->extra_create_opts : "");
    g_autofree char *open_opts = g_strdup_printf(
        "%s%s%s", OPEN_OPTS, c->extra_open_opts ? "," : "",
        c->extra_open_opts ? c->extra_open_opts : "");
    int n = nb_ops(c->cluster_size > 65536 ? 60 : 200);
    Qcow2Test t;
    BlockBackend *blk;

    qt_init(&t, name, size, c->cluster_size,
            c->cluster_size ^ (c->refcount_bits << 24) ^ c->v2);
    t.open_opts = open_opts;
    test_create_image(t.path, "qcow2", size, create);
    blk = qt_open(&t, BDRV_O_RDWR);
    qt_random_ops(&t, blk, n / 2);
    /* A close in the middle writes back caches and empties the limbo. */
    blk_unref(blk);
    blk = qt_open(&t, BDRV_O_RDWR);
    test_assert_image_equals(blk, t.model.data, t.model.size);
    qt_random_ops(&t, blk, n - n / 2);
    /* Freed clusters still in the limbo are references, not leaks. */
    test_assert_check_clean(blk);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

static GPtrArray *random_cases;

static void add_random_case(uint32_t cluster_size, int refcount_bits, bool v2,
                            const char *extra_open, const char *extra_create,
                            const char *suffix)
{
    RandomCase *c = g_new0(RandomCase, 1);
    g_autofree char *path = NULL;

    *c = (RandomCase) { cluster_size, refcount_bits, v2, extra_open,
                        extra_create };
    path = g_strdup_printf("/qcow2/random/cluster-%u/refcount-%d/%s%s",
                           cluster_size, refcount_bits, v2 ? "v2" : "v3",
                           suffix ? suffix : "");
    g_ptr_array_add(random_cases, c);
    test_add_data_func(path, c, test_random);
}

static void add_random_cases(void)
{
    static const uint32_t cluster_sizes[] = { 512, 4096, 65536, 2 * MiB };
    static const int refcount_bits[] = { 1, 2, 4, 16, 64 };

    random_cases = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < G_N_ELEMENTS(cluster_sizes); i++) {
        for (size_t j = 0; j < G_N_ELEMENTS(refcount_bits); j++) {
            add_random_case(cluster_sizes[i], refcount_bits[j], false, NULL,
                            NULL, NULL);
        }
        /* compat=0.10 has 16-bit refcounts only. */
        add_random_case(cluster_sizes[i], 16, true, NULL, NULL, NULL);
    }
    add_random_case(4096, 16, false, "cache.direct=on", NULL, "-o-direct");
    add_random_case(65536, 16, false, "cache.direct=on", NULL, "-o-direct");
    add_random_case(65536, 16, false, NULL, "lazy_refcounts=on", "-lazy");
    /* The smallest caches: tables are evicted (written) all the time. */
    add_random_case(512, 16, false, TINY_CACHES_512, NULL, "-tiny-cache");
    add_random_case(4096, 64, false, TINY_CACHES_4K, NULL, "-tiny-cache");
    add_random_case(4096, 16, false, TINY_CACHES_4K, "lazy_refcounts=on",
                    "-tiny-cache-lazy");
}

/* Backing files */

typedef struct BackingCase {
    const char *backing_fmt;
    bool v2;
} BackingCase;

static void test_backing(gconstpointer data)
{
    const BackingCase *c = data;
    uint64_t size = 4 * MiB + 1536, base_size = 3 * MiB + 512;
    uint32_t cs = 65536;
    g_autofree char *name = g_strdup_printf("backing-%s-%s", c->backing_fmt,
                                            c->v2 ? "v2" : "v3");
    g_autofree char *base_name = g_strdup_printf("%s-base.%s", name,
                                                 c->backing_fmt);
    g_autofree char *base_path = test_scratch_path("%s", base_name);
    g_autofree char *base_opts = g_strdup_printf("driver=%s", c->backing_fmt);
    g_autofree char *create = g_strdup_printf(
        "cluster_size=%u,compat=%s,backing_file=%s,backing_fmt=%s", cs,
        c->v2 ? "0.10" : "1.1", base_name, c->backing_fmt);
    g_autofree uint8_t *base_view = g_malloc0(size);
    Qcow2Test t;
    BlockBackend *blk;
    int64_t pnum;

    qt_init(&t, name, size, cs, 77 + c->v2);

    /* The base: data everywhere but a hole and a zeroed range. */
    test_create_image(base_path, c->backing_fmt, base_size, "");
    blk = test_open(base_path, base_opts, BDRV_O_RDWR);
    test_fill_pattern(base_view, base_size, 4242);
    memset(base_view + 100000, 0, 300000);
    g_assert_cmpint(blk_pwrite(blk, 0, 100000, base_view, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 400000, base_size - 400000,
                               base_view + 400000, 0), ==, 0);
    blk_unref(blk);

    /* Reads past the end of the shorter base are zeroes. */
    memcpy(t.model.data, base_view, size);
    if (c->v2) {
        /* Without zero clusters a discard lets the base show through. */
        t.model.discard_shows = base_view;
    }
    test_create_image(t.path, "qcow2", size, create);
    blk = qt_open(&t, BDRV_O_RDWR);
    g_assert_cmpint(bdrv_is_allocated(blk_bs(blk), 0, size, &pnum), ==, 0);
    g_assert_cmpint(pnum, ==, size);
    test_assert_image_equals(blk, t.model.data, size);

    /* Partial writes copy the rest of their cluster from the base. */
    qt_write(&t, blk, 1000, 10, 1);
    qt_write(&t, blk, base_size - 700, 1400, 2);
    qt_write(&t, blk, 5 * cs - 1, 2, 3);
    test_assert_image_equals(blk, t.model.data, size);
    g_assert_cmpint(bdrv_is_allocated(blk_bs(blk), 0, cs, &pnum), ==, 1);
    g_assert_cmpint(bdrv_is_allocated(blk_bs(blk), cs, cs, &pnum), ==, 0);

    qt_random_ops(&t, blk, nb_ops(200));
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

/*
 * A v3 overlay reads zeroes from every discarded whole cluster, whether it
 * was allocated in the overlay or still showed the backing file (stock QEMU
 * turns both into zero clusters).
 */
static void test_backing_discard_unallocated(void)
{
    g_autofree char *base = test_scratch_path("discard-base.raw");
    g_autofree uint8_t *pattern = g_malloc(MiB);
    Qcow2Test t;
    BlockBackend *blk;

    qt_init(&t, "discard-unallocated", MiB, 65536, 9);
    test_create_image(base, "raw", MiB, NULL);
    blk = test_open(base, "driver=raw", BDRV_O_RDWR);
    test_fill_pattern(pattern, MiB, 55);
    g_assert_cmpint(blk_pwrite(blk, 0, MiB, pattern, 0), ==, 0);
    blk_unref(blk);

    test_create_image(t.path, "qcow2", MiB,
                      "backing_file=discard-base.raw,backing_fmt=raw");
    memcpy(t.model.data, pattern, MiB);
    blk = qt_open(&t, BDRV_O_RDWR);
    qt_write(&t, blk, 0, 512, 1);      /* cluster 0 allocated, 1 not */
    qt_apply(&t, blk, &(TestOp) { TEST_OP_DISCARD, 0, 2 * 65536 });
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

/* Resize */

static void test_resize(void)
{
    uint32_t cs = 4096;
    uint64_t sizes[] = { 1 * MiB, 5 * MiB + 512, 64 * MiB + 4608 };
    g_autofree uint8_t *grown = NULL;
    Qcow2Test t;
    BlockBackend *blk;

    /* The model is sized for the final size; the image grows into it. */
    qt_init(&t, "resize", sizes[2], cs, 5);
    t.model.size = sizes[0];
    test_create_image(t.path, "qcow2", sizes[0], "cluster_size=4096");
    blk = qt_open(&t, BDRV_O_RDWR);
    qt_write(&t, blk, 0, sizes[0], 11);
    for (size_t i = 1; i < G_N_ELEMENTS(sizes); i++) {
        Error *err = NULL;

        g_assert_cmpint(blk_truncate(blk, sizes[i], false, PREALLOC_MODE_OFF,
                                     &err), ==, 0);
        g_assert_null(err);
        g_assert_cmpint(blk_getlength(blk), ==, sizes[i]);
        t.model.size = sizes[i];
        test_assert_image_equals(blk, t.model.data, sizes[i]);
        /* The new area is usable up to its last byte. */
        qt_write(&t, blk, sizes[i] - 5000, 5000, 12 + i);
        qt_write(&t, blk, sizes[i - 1] - 10, 20, 20 + i);
    }
    qt_random_ops(&t, blk, nb_ops(100));
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

/*
 * Growing an image whose backing file is longer: the new area must read as
 * zeroes, not as the backing file's data (stock qemu-img resize zeroes it).
 */
static void test_resize_backing_longer(void)
{
    g_autofree char *base = test_scratch_path("resize-longer-base.raw");
    g_autofree uint8_t *pattern = g_malloc(2 * MiB);
    Qcow2Test t;
    BlockBackend *blk;

    qt_init(&t, "resize-longer", 2 * MiB, 65536, 6);
    test_create_image(base, "raw", 2 * MiB, NULL);
    blk = test_open(base, "driver=raw", BDRV_O_RDWR);
    test_fill_pattern(pattern, 2 * MiB, 99);
    g_assert_cmpint(blk_pwrite(blk, 0, 2 * MiB, pattern, 0), ==, 0);
    blk_unref(blk);

    test_create_image(t.path, "qcow2", 1 * MiB,
                      "backing_file=resize-longer-base.raw,backing_fmt=raw");
    memcpy(t.model.data, pattern, 1 * MiB);
    blk = qt_open(&t, BDRV_O_RDWR);
    g_assert_cmpint(blk_truncate(blk, 2 * MiB, false, PREALLOC_MODE_OFF, NULL),
                    ==, 0);
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

/*
 * 512-byte clusters with 64-bit refcounts: a refcount block covers only 64
 * clusters and the first refcount table 4096 (2 MiB), so writing 12 MiB
 * grows the table four times at least (to more than 330 entries).
 */
static void test_refcount_table_growth(void)
{
    uint64_t written = test_long_mode() ? 40 * MiB : 12 * MiB;
    uint64_t size = written + 4 * MiB;
    uint32_t chunk = 64 * 1024;
    uint32_t reftable_clusters;
    Qcow2Test t;
    BlockBackend *blk;

    qt_init(&t, "reftable-growth", size, 512, 8);
    test_create_image(t.path, "qcow2", size,
                      "cluster_size=512,refcount_bits=64");
    blk = qt_open(&t, BDRV_O_RDWR);
    for (uint64_t off = 0; off < written; off += chunk) {
        qt_write(&t, blk, off, chunk, off / chunk);
    }
    /* Rewrites and discards now free and reuse clusters everywhere. */
    qt_random_ops(&t, blk, nb_ops(50));
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(&t, blk);

    reftable_clusters = test_read_be32(t.path, 56);
    g_assert_cmpuint(reftable_clusters, >=, 6);
    qt_destroy(&t);
}

/* Preallocation */

static void test_preallocation(gconstpointer data)
{
    const char *mode = data;
    uint64_t size = 4 * MiB + 1536;
    g_autofree char *name = g_strdup_printf("prealloc-%s", mode);
    g_autofree char *create = g_strdup_printf("preallocation=%s", mode);
    int prealloc = prealloc_mode_parse(mode);
    Error *err = NULL;
    Qcow2Test t;
    BlockBackend *blk;
    int64_t pnum;

    qt_init(&t, name, size + MiB, 65536, 10);
    t.model.size = size;
    test_create_image(t.path, "qcow2", size, create);
    blk = qt_open(&t, BDRV_O_RDWR);
    g_assert_cmpint(bdrv_is_allocated(blk_bs(blk), 0, size, &pnum), ==, 1);
    g_assert_cmpint(pnum, ==, size);
    test_assert_image_equals(blk, t.model.data, size);

    /* Growing preallocates the new area the same way. */
    g_assert_cmpint(blk_truncate(blk, size + MiB, false, prealloc, &err), ==,
                    0);
    g_assert_null(err);
    t.model.size = size + MiB;
    g_assert_cmpint(bdrv_is_allocated(blk_bs(blk), size, MiB, &pnum), ==, 1);
    qt_random_ops(&t, blk, nb_ops(100));
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(&t, blk);
    qt_destroy(&t);
}

/*
 * Crash consistency: a child process writes, flushes, writes more to the
 * second half of the image and exits without closing it (the metadata
 * caches are lost, what reached the file stays).  Tiny caches make tables
 * reach the file at arbitrary points.  The image must open; the flushed
 * first half must read back; the check may find leaks, never corruption
 * (with lazy refcounts: not once the open has repaired it).
 */
typedef struct CrashCase {
    bool lazy;
    int ops_after_flush;
} CrashCase;

static void crash_child(Qcow2Test *t, const CrashCase *c)
{
    uint64_t half = t->model.size / 2;
    BlockBackend *blk = qt_open(t, BDRV_O_RDWR);

    qt_random_ops(t, blk, 150);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    for (int i = 0; i < c->ops_after_flush;) {
        TestOp op;
        test_random_op(t->rand, &op, half, t->model.size - half,
                       t->model.cluster_size);
        if (op.type != TEST_OP_FLUSH) {
            qt_apply(t, blk, &op);
            i++;
        }
    }
    _exit(0);
}

static void test_crash(gconstpointer data)
{
    const CrashCase *c = data;
    uint64_t size = 2 * MiB + 1536, half = size / 2;
    g_autofree char *name = g_strdup_printf("crash-%d%s", c->ops_after_flush,
                                            c->lazy ? "-lazy" : "");
    g_autofree char *out = NULL;
    BdrvCheckResult res;
    BlockBackend *blk;
    Qcow2Test t;
    int status;
    pid_t pid;

    qt_init(&t, name, size, 4096, 20 + c->ops_after_flush + c->lazy);
    t.open_opts = OPEN_OPTS "," TINY_CACHES_4K;
    test_create_image(t.path, "qcow2", size, c->lazy ? "cluster_size=4096,"
                      "lazy_refcounts=on" : "cluster_size=4096");
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        crash_child(&t, c);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Replay the child's first phase into our copy of the model. */
    for (int i = 0; i < 150; i++) {
        TestOp op;
        test_random_op(t.rand, &op, 0, size, t.model.cluster_size);
        test_model_apply(&t.model, &op);
    }

    if (!c->lazy) {
        blk = qt_open(&t, 0);
        test_assert_prefix_equals(blk, t.model.data, half);
        g_assert_cmpint(bdrv_check(blk_bs(blk), &res, 0), ==, 0);
        g_assert_cmpint(res.corruptions, ==, 0);
        g_assert_cmpint(res.check_errors, ==, 0);
        blk_unref(blk);
        if (test_stock_tool("qemu-img")) {
            /* 0: clean, 3: leaks only. */
            status = test_run_stock(&out, "qemu-img", "check", t.path, NULL);
            if (status != 0 && status != 3) {
                test_note("stock check after the crash: %d\n%s", status, out);
            }
            g_assert_true(status == 0 || status == 3);
        }
    }

    /* A read-write open repairs a dirty (lazy) image; leaks are fixed. */
    blk = qt_open(&t, BDRV_O_RDWR);
    g_assert_cmpint(bdrv_check(blk_bs(blk), &res, BDRV_FIX_LEAKS), ==, 0);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.check_errors, ==, 0);
    test_assert_prefix_equals(blk, t.model.data, half);
    test_assert_check_clean(blk);
    blk_unref(blk);
    if (test_stock_tool("qemu-img")) {
        test_assert_stock_check(t.path, "qcow2");
    }
    qt_destroy(&t);
}

static const CrashCase crash_cases[] = {
    { false, 0 }, { false, 5 }, { false, 60 },
    { true, 0 }, { true, 5 }, { true, 60 },
};

/* Images written by the stock tools */

/* Run stock qemu-io with the given commands; every one must succeed. */
static void stock_qemu_io(const char *path, const char *const *cmds)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *out = NULL;
    int status;

    g_ptr_array_add(argv, (gpointer)test_stock_tool("qemu-io"));
    for (; *cmds; cmds++) {
        g_ptr_array_add(argv, "-c");
        g_ptr_array_add(argv, (gpointer)*cmds);
    }
    g_ptr_array_add(argv, (gpointer)path);
    g_ptr_array_add(argv, NULL);
    status = test_run(&out, (const char *const *)argv->pdata);
    if (status != 0 || strstr(out, "failed") || strstr(out, "rror")) {
        g_autofree char *msg = g_strdup_printf("stock qemu-io: exit %d\n%s",
                                               status, out);
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

/* Our reading of the image equals what stock qemu-img convert makes of it. */
static void assert_reads_like_stock(Qcow2Test *t)
{
    size_t len;
    g_autofree uint8_t *stock = test_stock_convert(t->path, NULL, &len);
    BlockBackend *blk = qt_open(t, 0);

    g_assert_cmpuint(len, ==, t->model.size);
    test_assert_image_equals(blk, stock, len);
    memcpy(t->model.data, stock, len);
    blk_unref(blk);
}

/* Write, open read-write, random operations, verify, stock check. */
static void modify_stock_image(Qcow2Test *t, int n)
{
    BlockBackend *blk = qt_open(t, BDRV_O_RDWR);

    qt_random_ops(t, blk, n);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    qt_verify_and_close(t, blk);
}

/* Data that compresses to a fraction of a cluster, but not to nothing. */
static char *write_compressible_file(const char *name, uint32_t len)
{
    char *path = test_scratch_path("%s", name);
    g_autofree uint8_t *data = g_malloc(len);

    test_fill_pattern(data, len, len);
    for (uint32_t i = 0; i < len; i++) {
        data[i] = "abcdefgh"[data[i] % 8];
    }
    test_write_file(path, data, len);
    return path;
}

typedef struct CompressedCase {
    uint32_t cluster_size;
    const char *compression_type;
    const char *compat;
} CompressedCase;

static void test_stock_compressed(gconstpointer data)
{
    const CompressedCase *c = data;
    uint32_t cs = c->cluster_size;
    uint64_t size = 12 * (uint64_t)cs;
    g_autofree char *name = g_strdup_printf("stock-compressed-%u-%s-%s", cs,
                                            c->compression_type, c->compat);
    g_autofree char *opts = g_strdup_printf("cluster_size=%u,compat=%s%s", cs,
                                            c->compat,
                                            strcmp(c->compression_type, "zstd")
                                            ? "" : ",compression_type=zstd");
    g_autofree char *size_str = g_strdup_printf("%" PRIu64, size);
    g_autofree char *src_name = g_strconcat(name, ".src", NULL);
    g_autofree char *src = NULL;
    g_autoptr(GPtrArray) cmds = g_ptr_array_new_with_free_func(g_free);
    Qcow2Test t;

    if (test_skip_without_stock("qemu-img") ||
        test_skip_without_stock("qemu-io")) {
        return;
    }
    qt_init(&t, name, size, cs, cs);
    src = write_compressible_file(src_name, cs);
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "create", "-q", "-f",
                                   "qcow2", "-o", opts, t.path, size_str,
                                   NULL), ==, 0);
    /*
     * Clusters 0-5 compressed (a constant pattern packs several into one
     * host cluster, mixed data needs a few sectors), 6 and 7 plain, 9
     * compressed and then partially overwritten.
     */
    for (int i = 0; i < 6; i++) {
        g_ptr_array_add(cmds, i % 2
                        ? g_strdup_printf("write -c -P 0x%x %u %u", 0x41 + i,
                                          i * cs, cs)
                        : g_strdup_printf("write -c -s %s %u %u", src, i * cs,
                                          cs));
    }
    g_ptr_array_add(cmds, g_strdup_printf("write -P 0x61 %u %u", 6 * cs,
                                          2 * cs));
    g_ptr_array_add(cmds, g_strdup_printf("write -c -s %s %u %u", src, 9 * cs,
                                          cs));
    g_ptr_array_add(cmds, g_strdup_printf("write -P 0x62 %u %u", 9 * cs + 100,
                                          MIN(cs / 2, 1000)));
    g_ptr_array_add(cmds, NULL);
    stock_qemu_io(t.path, (const char *const *)cmds->pdata);

    assert_reads_like_stock(&t);
    modify_stock_image(&t, nb_ops(cs > 65536 ? 50 : 150));
    qt_destroy(&t);
}

/*
 * An internal snapshot taken by stock qemu-img shares every cluster (refcount
 * 2): our writes must copy them and leave the snapshot intact.
 */
static void test_stock_snapshot(gconstpointer data)
{
    uint32_t cs = GPOINTER_TO_UINT(data);
    uint64_t size = 64 * (uint64_t)cs + 1536;
    g_autofree char *name = g_strdup_printf("stock-snapshot-%u", cs);
    g_autofree char *opts = g_strdup_printf("cluster_size=%u", cs);
    g_autofree char *size_str = g_strdup_printf("%" PRIu64, size);
    g_autofree char *w1 = g_strdup_printf("write -P 0x11 0 %" PRIu64,
                                          40 * (uint64_t)cs);
    g_autofree char *w2 = g_strdup_printf("write -P 0x22 %u %u", cs / 2,
                                          3 * cs);
    g_autofree char *w3 = g_strdup_printf("write -P 0x33 %u %u", 50 * cs,
                                          cs + 512);
    g_autofree char *z1 = g_strdup_printf("write -z %u %u", 10 * cs, 2 * cs);
    g_autofree uint8_t *snap_before = NULL, *snap_after = NULL;
    g_autofree char *out = NULL;
    size_t len_before, len_after;
    Qcow2Test t;

    if (test_skip_without_stock("qemu-img") ||
        test_skip_without_stock("qemu-io")) {
        return;
    }
    qt_init(&t, name, size, cs, cs + 1);
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "create", "-q", "-f",
                                   "qcow2", "-o", opts, t.path, size_str,
                                   NULL), ==, 0);
    stock_qemu_io(t.path, (const char *const[]) { w1, NULL });
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "snapshot", "-c", "s1",
                                   t.path, NULL), ==, 0);
    stock_qemu_io(t.path, (const char *const[]) { w2, w3, z1, NULL });
    snap_before = test_stock_convert(t.path, "s1", &len_before);

    assert_reads_like_stock(&t);
    modify_stock_image(&t, nb_ops(200));

    snap_after = test_stock_convert(t.path, "s1", &len_after);
    g_assert_cmpuint(len_after, ==, len_before);
    test_assert_bytes_equal(snap_after, snap_before, len_before, 0,
                            "snapshot s1");

    /* Deleting the snapshot drops its references: nothing may leak. */
    g_assert_cmpint(test_run_stock(&out, "qemu-img", "snapshot", "-d", "s1",
                                   t.path, NULL), ==, 0);
    test_assert_stock_check(t.path, "qcow2");
    qt_destroy(&t);
}

/*
 * Rewriting the header of a stock compat=0.10 image with a backing file
 * (here: recording the same backing file again) must keep it readable.
 */
static void test_stock_v2_header_update(void)
{
    g_autofree char *base = test_scratch_path("v2-header-base.raw");
    Error *err = NULL;
    Qcow2Test t;
    BlockBackend *blk;

    if (test_skip_without_stock("qemu-img")) {
        return;
    }
    qt_init(&t, "v2-header", MiB, 65536, 12);
    test_create_image(base, "raw", MiB, NULL);
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "create", "-q", "-f",
                                   "qcow2", "-o", "compat=0.10", "-b",
                                   "v2-header-base.raw", "-F", "raw", t.path,
                                   "1M", NULL), ==, 0);
    blk = qt_open(&t, BDRV_O_RDWR);
    g_assert_cmpint(bdrv_change_backing_file(blk_bs(blk), "v2-header-base.raw",
                                             "raw", &err), ==, 0);
    g_assert_null(err);
    blk_unref(blk);

    blk = qt_open(&t, 0);
    g_assert_cmpstr(bdrv_get_backing_filename(blk_bs(blk)), ==,
                    "v2-header-base.raw");
    g_assert_cmpstr(bdrv_get_backing_format(blk_bs(blk)), ==, "raw");
    blk_unref(blk);
    test_assert_stock_check(t.path, "qcow2");
    qt_destroy(&t);
}

static const CompressedCase compressed_cases[] = {
    { 512, "zlib", "1.1" }, { 4096, "zlib", "1.1" }, { 65536, "zlib", "1.1" },
    { 2 * MiB, "zlib", "1.1" }, { 65536, "zlib", "0.10" },
    { 4096, "zstd", "1.1" }, { 65536, "zstd", "1.1" },
};

static const BackingCase backing_cases[] = {
    { "raw", false }, { "qcow2", false }, { "raw", true },
};

int main(int argc, char **argv)
{
    int ret;

    test_init(&argc, &argv);
    add_random_cases();
    for (size_t i = 0; i < G_N_ELEMENTS(backing_cases); i++) {
        g_autofree char *path = g_strdup_printf(
            "/qcow2/backing/%s/%s", backing_cases[i].backing_fmt,
            backing_cases[i].v2 ? "v2" : "v3");
        test_add_data_func(path, &backing_cases[i], test_backing);
    }
    test_add_func("/qcow2/backing/discard-unallocated",
                    test_backing_discard_unallocated);
    test_add_func("/qcow2/resize/grow", test_resize);
    test_add_func("/qcow2/resize/backing-longer", test_resize_backing_longer);
    test_add_func("/qcow2/refcount-table-growth", test_refcount_table_growth);
    test_add_data_func("/qcow2/preallocation/metadata", "metadata",
                       test_preallocation);
    test_add_data_func("/qcow2/preallocation/falloc", "falloc",
                       test_preallocation);
    test_add_data_func("/qcow2/preallocation/full", "full",
                       test_preallocation);
    for (size_t i = 0; i < G_N_ELEMENTS(crash_cases); i++) {
        g_autofree char *path = g_strdup_printf(
            "/qcow2/crash/%s/after-%d", crash_cases[i].lazy ? "lazy" : "plain",
            crash_cases[i].ops_after_flush);
        test_add_data_func(path, &crash_cases[i], test_crash);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(compressed_cases); i++) {
        g_autofree char *path = g_strdup_printf(
            "/qcow2/stock/compressed/%s/cluster-%u/compat-%s",
            compressed_cases[i].compression_type,
            compressed_cases[i].cluster_size, compressed_cases[i].compat);
        test_add_data_func(path, &compressed_cases[i], test_stock_compressed);
    }
    test_add_func("/qcow2/stock/v2-header-update", test_stock_v2_header_update);
    test_add_data_func("/qcow2/stock/snapshot/cluster-4096",
                         GUINT_TO_POINTER(4096), test_stock_snapshot);
    test_add_data_func("/qcow2/stock/snapshot/cluster-65536",
                         GUINT_TO_POINTER(65536), test_stock_snapshot);
    ret = g_test_run();
    g_ptr_array_free(random_cases, TRUE);
    return ret;
}

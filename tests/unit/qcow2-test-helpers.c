/*
 * Helpers shared by the block-layer unit tests (see qcow2-test-helpers.h).
 */
#include "qemu/osdep.h"
#include "qemu/option.h"
#include "qcow2-test-helpers.h"

#include <sys/wait.h>

#define DEFAULT_STOCK_BINDIR "/usr/bin"
#define COMPARE_CHUNK (1024 * 1024)

static char *scratch_dir;

static void remove_tree(const char *path)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;

    if (dir) {
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            if (g_file_test(child, G_FILE_TEST_IS_DIR)) {
                remove_tree(child);
            } else {
                unlink(child);
            }
        }
        g_dir_close(dir);
    }
    rmdir(path);
}

static void remove_scratch_dir(void)
{
    if (!g_getenv("QEMU_TEST_KEEP_SCRATCH")) {
        remove_tree(scratch_dir);
    }
    g_free(scratch_dir);
}

void test_init(int *argc, char ***argv)
{
    const char *parent = g_getenv("QEMU_TEST_DIR");
    g_autofree char *template = NULL;

    g_test_init(argc, argv, NULL);
    error_set_progname((*argv)[0]);
    bdrv_init();
    template = g_build_filename(parent ? parent : g_get_tmp_dir(),
                                "unit-scratch-XXXXXX", NULL);
    scratch_dir = g_mkdtemp(g_strdup(template));
    g_assert_nonnull(scratch_dir);
    atexit(remove_scratch_dir);
    if (!g_test_subprocess()) {
        /* A failed child marks its test failed; the next one still runs. */
        g_test_set_nonfatal_assertions();
        /* Children work inside our directory: a crashed one leaves no mess. */
        g_setenv("QEMU_TEST_DIR", scratch_dir, TRUE);
    }
}

typedef struct IsolatedTest {
    GTestFunc func;
    GTestDataFunc data_func;
    gconstpointer data;
} IsolatedTest;

static void run_isolated(gconstpointer opaque)
{
    const IsolatedTest *t = opaque;

    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT |
                                        G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
    } else if (t->func) {
        t->func();
    } else {
        t->data_func(t->data);
    }
}

void test_add_func(const char *path, GTestFunc fn)
{
    IsolatedTest *t = g_new0(IsolatedTest, 1);

    t->func = fn;
    g_test_add_data_func_full(path, t, run_isolated, g_free);
}

void test_add_data_func(const char *path, gconstpointer data,
                        GTestDataFunc fn)
{
    IsolatedTest *t = g_new0(IsolatedTest, 1);

    t->data_func = fn;
    t->data = data;
    g_test_add_data_func_full(path, t, run_isolated, g_free);
}

bool test_long_mode(void)
{
    const char *v = g_getenv("QEMU_TEST_LONG");

    return v && *v && strcmp(v, "0");
}

bool test_verbose(void)
{
    return g_getenv("QEMU_TEST_VERBOSE") != NULL;
}

void test_note(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "# %s\n", msg);
}

guint32 test_seed(guint32 base)
{
    const char *v = g_getenv("QEMU_TEST_SEED");

    return v ? base ^ ((guint32)g_ascii_strtoull(v, NULL, 0) * 0x9e3779b9u)
             : base;
}

char *test_scratch_path(const char *fmt, ...)
{
    g_autofree char *name = NULL;
    va_list ap;

    va_start(ap, fmt);
    name = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return g_build_filename(scratch_dir, name, NULL);
}

/* Images */

static void assert_no_error(Error *err, const char *what, const char *path)
{
    if (err) {
        g_autofree char *msg = g_strdup_printf("%s '%s': %s", what, path,
                                               error_get_pretty(err));
        error_free(err);
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

void test_create_image(const char *path, const char *fmt, uint64_t size,
                       const char *opts)
{
    BlockDriver *drv = bdrv_find_format(fmt);
    g_autoptr(QDict) create_opts = keyval_parse(opts ? opts : "", NULL,
                                                &error_abort);
    Error *err = NULL;

    g_assert_nonnull(drv);
    qdict_put_int(create_opts, "size", size);
    bdrv_create(drv, path, create_opts, &err);
    assert_no_error(err, "create", path);
}

BlockBackend *test_open(const char *path, const char *opts, int flags)
{
    QDict *open_opts = keyval_parse(opts ? opts : "", NULL, &error_abort);
    Error *err = NULL;
    BlockBackend *blk = blk_new_open(path, open_opts, flags, &err);

    assert_no_error(err, "open", path);
    g_assert_nonnull(blk);
    return blk;
}

void test_assert_check_clean(BlockBackend *blk)
{
    BdrvCheckResult res;
    int ret = bdrv_check(blk_bs(blk), &res, 0);

    if (ret < 0 || res.corruptions || res.leaks || res.check_errors) {
        g_autofree char *msg = g_strdup_printf(
            "bdrv_check(%s): ret %d, %d corruptions, %d leaks, %d errors",
            bdrv_get_filename(blk_bs(blk)), ret, res.corruptions, res.leaks,
            res.check_errors);
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

uint32_t test_read_be32(const char *path, uint64_t offset)
{
    uint8_t buf[4];
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, sizeof(buf), offset), ==, sizeof(buf));
    close(fd);
    return ldl_be_p(buf);
}

/* Reference model */

void test_fill_pattern(uint8_t *buf, size_t len, uint32_t tag)
{
    uint32_t state = tag * 2654435761u + 0x9e3779b9u;

    for (size_t i = 0; i < len; i++) {
        state = state * 1103515245u + 12345u;
        buf[i] = state >> 16;
    }
}

static uint64_t rand_below(GRand *rand, uint64_t n)
{
    uint64_t v = ((uint64_t)g_rand_int(rand) << 32) | g_rand_int(rand);

    return n ? v % n : 0;
}

void test_random_op(GRand *rand, TestOp *op, uint64_t base, uint64_t len,
                    uint32_t cluster_size)
{
    static const struct {
        TestOpType type;
        int weight;
    } mix[] = {
        { TEST_OP_WRITE, 50 }, { TEST_OP_ZERO, 12 }, { TEST_OP_ZERO_UNMAP, 12 },
        { TEST_OP_DISCARD, 12 }, { TEST_OP_FLUSH, 5 }, { TEST_OP_READ, 9 },
    };
    uint64_t end = base + len, unit, max_len, first;
    int pick = g_rand_int_range(rand, 0, 100);
    int shape = g_rand_int_range(rand, 0, 10);
    int size_class = g_rand_int_range(rand, 0, 20);

    g_assert_cmpuint(len, >, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(mix); i++) {
        if (pick < mix[i].weight) {
            op->type = mix[i].type;
            break;
        }
        pick -= mix[i].weight;
    }
    op->tag = g_rand_int(rand);
    op->offset = op->bytes = 0;
    if (op->type == TEST_OP_FLUSH) {
        return;
    }

    /* Cluster-aligned, sector-aligned or arbitrary requests. */
    unit = shape < 3 ? cluster_size : shape < 5 ? 512 : 1;
    first = ROUND_UP(base, unit);
    if (first >= end || first + unit > end) {
        unit = 1;
        first = base;
    }
    max_len = size_class < 10 ? 2 * (uint64_t)cluster_size
              : size_class < 17 ? 8 * (uint64_t)cluster_size
              : MAX(len / 4, (uint64_t)cluster_size);
    op->offset = first + unit * rand_below(rand, (end - first) / unit);
    max_len = MAX(MIN(max_len, end - op->offset) / unit, 1);
    op->bytes = unit * (1 + rand_below(rand, max_len));
    op->bytes = MIN(op->bytes, end - op->offset);
}

char *test_op_str(const TestOp *op)
{
    static const char *const names[] = {
        [TEST_OP_WRITE] = "write", [TEST_OP_ZERO] = "zero",
        [TEST_OP_ZERO_UNMAP] = "zero-unmap", [TEST_OP_DISCARD] = "discard",
        [TEST_OP_FLUSH] = "flush", [TEST_OP_READ] = "read",
    };

    return g_strdup_printf("%s %#" PRIx64 "+%#" PRIx64 " tag %#x",
                           names[op->type], op->offset, op->bytes, op->tag);
}

int test_apply_op(BlockBackend *blk, const TestOp *op, const TestModel *model)
{
    g_autofree uint8_t *buf = NULL;
    int ret;

    switch (op->type) {
    case TEST_OP_WRITE:
        buf = g_malloc(op->bytes);
        test_fill_pattern(buf, op->bytes, op->tag);
        return blk_pwrite(blk, op->offset, op->bytes, buf, 0);
    case TEST_OP_ZERO:
        return blk_pwrite_zeroes(blk, op->offset, op->bytes, 0);
    case TEST_OP_ZERO_UNMAP:
        return blk_pwrite_zeroes(blk, op->offset, op->bytes,
                                 BDRV_REQ_MAY_UNMAP);
    case TEST_OP_DISCARD:
        return blk_pdiscard(blk, op->offset, op->bytes);
    case TEST_OP_FLUSH:
        return blk_flush(blk);
    case TEST_OP_READ:
        buf = g_malloc(op->bytes);
        ret = blk_pread(blk, op->offset, op->bytes, buf, 0);
        if (ret == 0) {
            test_assert_bytes_equal(buf, model->data + op->offset, op->bytes,
                                    op->offset, "read");
        }
        return ret;
    }
    g_assert_not_reached();
}

void test_model_apply(TestModel *model, const TestOp *op)
{
    uint64_t cs = model->cluster_size, start, end;

    switch (op->type) {
    case TEST_OP_WRITE:
        test_fill_pattern(model->data + op->offset, op->bytes, op->tag);
        break;
    case TEST_OP_ZERO:
    case TEST_OP_ZERO_UNMAP:
        memset(model->data + op->offset, 0, op->bytes);
        break;
    case TEST_OP_DISCARD:
        start = ROUND_UP(op->offset, cs);
        end = QEMU_ALIGN_DOWN(op->offset + op->bytes, cs);
        if (op->offset + op->bytes == model->size) {
            end = model->size;
        }
        if (!model->discard_enabled || start >= end) {
            break;
        }
        if (model->discard_shows) {
            memcpy(model->data + start, model->discard_shows + start,
                   end - start);
        } else {
            memset(model->data + start, 0, end - start);
        }
        break;
    case TEST_OP_FLUSH:
    case TEST_OP_READ:
        break;
    }
}

void test_assert_bytes_equal(const uint8_t *got, const uint8_t *expected,
                             uint64_t len, uint64_t base, const char *what)
{
    uint64_t first = UINT64_MAX, last = 0, count = 0;
    g_autofree char *msg = NULL;

    if (!memcmp(got, expected, len)) {
        return;
    }
    for (uint64_t i = 0; i < len; i++) {
        if (got[i] != expected[i]) {
            first = MIN(first, i);
            last = i;
            count++;
        }
    }
    msg = g_strdup_printf("%s differs from the reference at offset %#" PRIx64
                          " (got %#04x, expected %#04x); %" PRIu64 " bytes "
                          "differ up to offset %#" PRIx64, what, base + first,
                          got[first], expected[first], count, base + last);
    g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
}

void test_assert_prefix_equals(BlockBackend *blk, const uint8_t *ref,
                               uint64_t bytes)
{
    g_autofree uint8_t *buf = g_malloc(COMPARE_CHUNK);

    for (uint64_t off = 0; off < bytes; off += COMPARE_CHUNK) {
        uint64_t n = MIN(COMPARE_CHUNK, bytes - off);
        g_assert_cmpint(blk_pread(blk, off, n, buf, 0), ==, 0);
        test_assert_bytes_equal(buf, ref + off, n, off, "image");
    }
}

void test_assert_image_equals(BlockBackend *blk, const uint8_t *ref,
                              uint64_t size)
{
    g_assert_cmpint(blk_getlength(blk), ==, size);
    test_assert_prefix_equals(blk, ref, size);
}

void test_write_file(const char *path, const void *buf, size_t len)
{
    GError *err = NULL;

    g_file_set_contents(path, buf, len, &err);
    g_assert_no_error(err);
}

uint8_t *test_read_file(const char *path, size_t *len)
{
    GError *err = NULL;
    char *data = NULL;
    gsize n = 0;

    g_file_get_contents(path, &data, &n, &err);
    g_assert_no_error(err);
    *len = n;
    return (uint8_t *)data;
}

/* Stock QEMU tools */

const char *test_stock_tool(const char *name)
{
    const char *dir = g_getenv("QEMU_STOCK_BINDIR");
    g_autofree char *path = g_build_filename(dir ? dir : DEFAULT_STOCK_BINDIR,
                                             name, NULL);

    return g_file_test(path, G_FILE_TEST_IS_EXECUTABLE)
           ? g_intern_string(path) : NULL;
}

int test_run(char **output, const char *const *argv)
{
    g_autofree char *out = NULL, *err = NULL;
    GError *error = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                      &out, &err, &status, &error)) {
        test_note("cannot run %s: %s", argv[0], error->message);
        g_error_free(error);
        return -1;
    }
    if (output) {
        *output = g_strconcat(out, err, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int test_run_stock(char **output, const char *tool, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    const char *path = test_stock_tool(tool);
    const char *arg;
    va_list ap;

    g_assert_nonnull(path);
    g_ptr_array_add(argv, (gpointer)path);
    va_start(ap, tool);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(argv, (gpointer)arg);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    return test_run(output, (const char *const *)argv->pdata);
}

bool test_skip_without_stock(const char *tool)
{
    if (test_stock_tool(tool)) {
        return false;
    }
    g_test_skip("stock tool not installed (set QEMU_STOCK_BINDIR)");
    return true;
}

static void assert_stock_status(int status, const char *output,
                                const char *what)
{
    if (status != 0) {
        g_autofree char *msg = g_strdup_printf("stock %s exited with %d:\n%s",
                                               what, status, output);
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

void test_assert_stock_check(const char *path, const char *fmt)
{
    g_autofree char *out = NULL;
    int status = test_run_stock(&out, "qemu-img", "check", "-f", fmt, path,
                                NULL);

    assert_stock_status(status, out, "qemu-img check");
}

void test_assert_stock_compare(const char *img, const char *fmt,
                               const char *ref)
{
    g_autofree char *out = NULL;
    int status = test_run_stock(&out, "qemu-img", "compare", "-f", fmt,
                                "-F", "raw", img, ref, NULL);

    assert_stock_status(status, out, "qemu-img compare");
}

uint8_t *test_stock_convert(const char *img, const char *snapshot,
                            size_t *len)
{
    static int counter;
    g_autofree char *target = test_scratch_path("convert-%d.raw", counter++);
    g_autofree char *out = NULL;
    uint8_t *data;
    int status;

    if (snapshot) {
        status = test_run_stock(&out, "qemu-img", "convert", "-l", snapshot,
                                "-O", "raw", img, target, NULL);
    } else {
        status = test_run_stock(&out, "qemu-img", "convert", "-O", "raw", img,
                                target, NULL);
    }
    assert_stock_status(status, out, "qemu-img convert");
    data = test_read_file(target, len);
    unlink(target);
    return data;
}

void test_verify_and_close(BlockBackend *blk, const char *path,
                           const char *open_opts, const TestModel *model)
{
    g_autofree char *ref = g_strconcat(path, ".ref", NULL);

    test_assert_image_equals(blk, model->data, model->size);
    test_assert_check_clean(blk);
    blk_unref(blk);

    blk = test_open(path, open_opts, 0);
    test_assert_image_equals(blk, model->data, model->size);
    test_assert_check_clean(blk);
    blk_unref(blk);

    if (!test_stock_tool("qemu-img")) {
        test_note("stock qemu-img missing: not cross-checked");
        return;
    }
    test_assert_stock_check(path, "qcow2");
    test_write_file(ref, model->data, model->size);
    test_assert_stock_compare(path, "qcow2", ref);
    unlink(ref);
}

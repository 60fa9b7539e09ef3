/*
 * Helpers shared by the block-layer unit tests.
 *
 * - Each test in a process of its own, so that one failure (these tests are
 *   meant to find bugs) does not hide the results of the others.
 * - A scratch directory on the build directory's filesystem (tmpfs, where
 *   /tmp often lives, has no O_DIRECT), removed at exit with whatever failed
 *   test children left in it (unless QEMU_TEST_KEEP_SCRATCH is set).
 * - Creating and opening images through the public block-layer API.
 * - A reference model: a flat buffer that mirrors every guest operation
 *   (write, zero write, discard), so the image can be compared byte for byte.
 * - Random guest operations drawn from a seeded GRand, applied identically to
 *   an image and to the model.
 * - The stock QEMU tools (/usr/bin/qemu-img, qemu-io) as oracles.
 *
 * Environment: QEMU_TEST_DIR (parent of the scratch directory), QEMU_TEST_LONG
 * (non-empty: long variants), QEMU_TEST_VERBOSE (log operations),
 * QEMU_TEST_SEED (mixed into every seed, to run other random sequences),
 * QEMU_STOCK_BINDIR (where the stock tools live, default /usr/bin).
 */
#ifndef TESTS_UNIT_QCOW2_TEST_HELPERS_H
#define TESTS_UNIT_QCOW2_TEST_HELPERS_H

#include "qemu/osdep.h"
#include "sysemu/block-backend.h"

/* g_test_init(), bdrv_init() and the scratch directory. */
void test_init(int *argc, char ***argv);
/*
 * Register a test that runs in a process of its own: a failed assertion or
 * a crash fails that test only, and the other tests of the binary still run
 * (the binary then exits non-zero).
 */
void test_add_func(const char *path, GTestFunc fn);
void test_add_data_func(const char *path, gconstpointer data,
                        GTestDataFunc fn);
bool test_long_mode(void);
/* QEMU_TEST_VERBOSE is set: log every operation. */
bool test_verbose(void);
/*
 * A diagnostic line on stderr.  (g_test_message() is silent in the test
 * children, which GLib runs with -q.)
 */
void test_note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* base, changed by QEMU_TEST_SEED if that is set. */
guint32 test_seed(guint32 base);
/* A path in the scratch directory (caller frees). */
char *test_scratch_path(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Images */

/* opts: "key=value,..." create options besides size (may be NULL). */
void test_create_image(const char *path, const char *fmt, uint64_t size,
                       const char *opts);
/* opts: "key=value,..." open options (driver, discard, cache.direct...). */
BlockBackend *test_open(const char *path, const char *opts, int flags);
/* bdrv_check() finds no corruption, leak or error. */
void test_assert_check_clean(BlockBackend *blk);
/* The 32-bit big-endian header field at offset in the image file. */
uint32_t test_read_be32(const char *path, uint64_t offset);

/* Reference model */

/* Deterministic bytes that depend on tag and on the position in the buffer. */
void test_fill_pattern(uint8_t *buf, size_t len, uint32_t tag);

typedef struct TestModel {
    uint8_t *data;          /* the guest view, size bytes */
    uint64_t size;
    uint32_t cluster_size;
    bool discard_enabled;   /* opened with discard=unmap */
    /* What discarded clusters read as (NULL: zeroes); see test_model_apply. */
    const uint8_t *discard_shows;
} TestModel;

typedef enum TestOpType {
    TEST_OP_WRITE,
    TEST_OP_ZERO,           /* write zeroes, keep allocation */
    TEST_OP_ZERO_UNMAP,     /* write zeroes with BDRV_REQ_MAY_UNMAP */
    TEST_OP_DISCARD,
    TEST_OP_FLUSH,
    TEST_OP_READ,           /* read and compare with the model */
} TestOpType;

typedef struct TestOp {
    TestOpType type;
    uint64_t offset;
    uint64_t bytes;
    uint32_t tag;           /* pattern of a write */
} TestOp;

/* A random operation inside [base, base + len), shaped by the cluster size. */
void test_random_op(GRand *rand, TestOp *op, uint64_t base, uint64_t len,
                    uint32_t cluster_size);
/* Human-readable, for failure messages (caller frees). */
char *test_op_str(const TestOp *op);
/*
 * Perform op on blk; a read is compared with the model (which must not be
 * changing under it in the compared range).  Returns 0 or -errno.
 */
int test_apply_op(BlockBackend *blk, const TestOp *op, const TestModel *model);
/*
 * Mirror op into the model.  A discard turns the whole clusters inside the
 * range (and the tail of the image if the range reaches its end) into
 * discard_shows (zeroes if NULL); partial clusters keep their data.
 */
void test_model_apply(TestModel *model, const TestOp *op);

/*
 * The end of most tests: the open image reads as model->data and passes
 * bdrv_check; it is closed (blk is unref'd), reopened read-only with
 * open_opts and checked again; then stock "qemu-img check" and "qemu-img
 * compare" (against a raw file of the model) must accept it.
 */
void test_verify_and_close(BlockBackend *blk, const char *path,
                           const char *open_opts, const TestModel *model);

/* Read the whole image and compare it with ref (fails the test on mismatch). */
void test_assert_image_equals(BlockBackend *blk, const uint8_t *ref,
                              uint64_t size);
/* The same for the first bytes of the image only. */
void test_assert_prefix_equals(BlockBackend *blk, const uint8_t *ref,
                               uint64_t bytes);
/* Compare two buffers, failing with the first differing offset. */
void test_assert_bytes_equal(const uint8_t *got, const uint8_t *expected,
                             uint64_t len, uint64_t base, const char *what);
void test_write_file(const char *path, const void *buf, size_t len);
/* The whole file (caller frees), its length in *len. */
uint8_t *test_read_file(const char *path, size_t *len);

/* Stock QEMU tools */

/* Absolute path of a stock tool, or NULL if it is not installed. */
const char *test_stock_tool(const char *name);
/* Run argv; *output (optional) gets stdout then stderr.  Exit status or -1. */
int test_run(char **output, const char *const *argv);
/* Run a stock tool with the NULL-terminated arguments. */
int test_run_stock(char **output, const char *tool, ...)
    G_GNUC_NULL_TERMINATED;
/* Skip the current test (returning true) if a stock tool is missing. */
bool test_skip_without_stock(const char *tool);
/* Stock "qemu-img check" exits 0 on the closed image. */
void test_assert_stock_check(const char *path, const char *fmt);
/* Stock "qemu-img compare" finds img (format fmt) equal to raw file ref. */
void test_assert_stock_compare(const char *img, const char *fmt,
                               const char *ref);
/* Stock "qemu-img convert -O raw" of img or of one of its snapshots. */
uint8_t *test_stock_convert(const char *img, const char *snapshot,
                            size_t *len);

#endif

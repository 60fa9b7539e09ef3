/*
 * Unit tests of util/iov.c.  Random vectors are built from separately
 * allocated pieces and every operation is checked against the same operation
 * on a flat copy of the data.
 */
#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "qcow2-test-helpers.h"

#define RANDOM_ROUNDS 2000

/* A vector over separately allocated pieces, with a flat mirror. */
typedef struct PiecedVector {
    QEMUIOVector qiov;
    GPtrArray *pieces;
    uint8_t *flat;
} PiecedVector;

static void pieced_init(PiecedVector *v, GRand *rand, int max_pieces,
                        int max_len)
{
    int n = g_rand_int_range(rand, 0, max_pieces + 1);

    qemu_iovec_init(&v->qiov, g_rand_int_range(rand, 0, 3));
    v->pieces = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; i < n; i++) {
        int len = g_rand_int_range(rand, 0, max_len + 1);
        uint8_t *p = g_malloc(MAX(len, 1));
        for (int j = 0; j < len; j++) {
            p[j] = g_rand_int(rand);
        }
        g_ptr_array_add(v->pieces, p);
        qemu_iovec_add(&v->qiov, p, len);
    }
    v->flat = g_malloc(MAX(v->qiov.size, 1));
    g_assert_cmpuint(qemu_iovec_to_buf(&v->qiov, 0, v->flat, v->qiov.size),
                     ==, v->qiov.size);
}

static void pieced_destroy(PiecedVector *v)
{
    qemu_iovec_destroy(&v->qiov);
    g_ptr_array_free(v->pieces, TRUE);
    g_free(v->flat);
}

/* The vector's bytes must equal the flat mirror. */
static void pieced_check(PiecedVector *v)
{
    g_autofree uint8_t *buf = g_malloc(MAX(v->qiov.size, 1));
    size_t sum = 0;

    for (int i = 0; i < v->qiov.niov; i++) {
        g_assert_cmpuint(v->qiov.iov[i].iov_len, >, 0);
        sum += v->qiov.iov[i].iov_len;
    }
    g_assert_cmpuint(sum, ==, v->qiov.size);
    qemu_iovec_to_buf(&v->qiov, 0, buf, v->qiov.size);
    g_assert_cmpmem(buf, v->qiov.size, v->flat, v->qiov.size);
}

/* A random range [*offset, *offset + *bytes) that may run past the end. */
static void random_range(GRand *rand, size_t size, size_t *offset,
                         size_t *bytes)
{
    *offset = g_rand_int_range(rand, 0, size + 2);
    *bytes = g_rand_int_range(rand, 0, size + 2);
}

static size_t clipped(size_t size, size_t offset, size_t bytes)
{
    return offset >= size ? 0 : MIN(bytes, size - offset);
}

static void test_to_from_buf(void)
{
    GRand *rand = g_rand_new_with_seed(1);

    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        PiecedVector v;
        size_t offset, bytes, n;
        g_autofree uint8_t *buf = NULL;

        pieced_init(&v, rand, 8, 40);
        random_range(rand, v.qiov.size, &offset, &bytes);
        n = clipped(v.qiov.size, offset, bytes);
        buf = g_malloc(bytes + 1);

        memset(buf, 0xa5, bytes + 1);
        g_assert_cmpuint(qemu_iovec_to_buf(&v.qiov, offset, buf, bytes), ==, n);
        g_assert_cmpmem(buf, n, v.flat + offset, n);
        g_assert_cmpuint(buf[n], ==, 0xa5);     /* nothing past the copy */

        for (size_t i = 0; i < bytes; i++) {
            buf[i] = g_rand_int(rand);
        }
        g_assert_cmpuint(qemu_iovec_from_buf(&v.qiov, offset, buf, bytes), ==,
                         n);
        memcpy(v.flat + offset, buf, n);
        pieced_check(&v);
        pieced_destroy(&v);
    }
    g_rand_free(rand);
}

static void test_memset_is_zero(void)
{
    GRand *rand = g_rand_new_with_seed(2);

    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        PiecedVector v;
        size_t offset, bytes, n;
        int c = g_rand_boolean(rand) ? 0 : g_rand_int_range(rand, 1, 256);

        pieced_init(&v, rand, 8, 40);
        random_range(rand, v.qiov.size, &offset, &bytes);
        n = clipped(v.qiov.size, offset, bytes);
        g_assert_cmpuint(qemu_iovec_memset(&v.qiov, offset, c, bytes), ==, n);
        memset(v.flat + offset, c, n);
        pieced_check(&v);

        /* is_zero over a random range, against a scan of the mirror. */
        random_range(rand, v.qiov.size, &offset, &bytes);
        n = clipped(v.qiov.size, offset, bytes);
        bool zero = true;
        for (size_t i = 0; i < n; i++) {
            zero = zero && !v.flat[offset + i];
        }
        g_assert_cmpint(qemu_iovec_is_zero(&v.qiov, offset, bytes), ==, zero);
        pieced_destroy(&v);
    }
    g_rand_free(rand);
}

static void test_is_zero_single_byte(void)
{
    uint8_t a[100] = { 0 }, b[1] = { 0 }, c[300] = { 0 };
    QEMUIOVector qiov;

    qemu_iovec_init(&qiov, 1);
    qemu_iovec_add(&qiov, a, sizeof(a));
    qemu_iovec_add(&qiov, b, sizeof(b));
    qemu_iovec_add(&qiov, c, sizeof(c));
    g_assert_true(qemu_iovec_is_zero(&qiov, 0, qiov.size));
    g_assert_true(qemu_iovec_is_zero(&qiov, 5, 0));
    for (size_t pos = 0; pos < qiov.size; pos++) {
        qemu_iovec_memset(&qiov, pos, 1, 1);
        g_assert_false(qemu_iovec_is_zero(&qiov, 0, qiov.size));
        g_assert_false(qemu_iovec_is_zero(&qiov, pos, 1));
        g_assert_true(qemu_iovec_is_zero(&qiov, 0, pos));
        g_assert_true(qemu_iovec_is_zero(&qiov, pos + 1, qiov.size));
        qemu_iovec_memset(&qiov, pos, 0, 1);
    }
    qemu_iovec_destroy(&qiov);
}

static void test_slice_concat(void)
{
    GRand *rand = g_rand_new_with_seed(3);

    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        PiecedVector v;
        QEMUIOVector slice, cat;
        size_t offset, len, offset2, len2;
        g_autofree uint8_t *buf = NULL;

        pieced_init(&v, rand, 10, 30);
        offset = g_rand_int_range(rand, 0, v.qiov.size + 1);
        len = g_rand_int_range(rand, 0, v.qiov.size - offset + 1);

        qemu_iovec_init_slice(&slice, &v.qiov, offset, len);
        g_assert_cmpuint(slice.size, ==, len);
        buf = g_malloc(MAX(len, 1));
        g_assert_cmpuint(qemu_iovec_to_buf(&slice, 0, buf, len), ==, len);
        g_assert_cmpmem(buf, len, v.flat + offset, len);

        /* The slice references the same memory: writes show through. */
        if (len) {
            qemu_iovec_memset(&slice, len - 1, 0x5a, 1);
            v.flat[offset + len - 1] = 0x5a;
            pieced_check(&v);
        }

        /* Concatenating a second range after a first. */
        offset2 = g_rand_int_range(rand, 0, v.qiov.size + 1);
        len2 = g_rand_int_range(rand, 0, v.qiov.size - offset2 + 1);
        qemu_iovec_init(&cat, 1);
        qemu_iovec_concat(&cat, &v.qiov, offset, len);
        qemu_iovec_concat(&cat, &v.qiov, offset2, len2);
        g_assert_cmpuint(cat.size, ==, len + len2);
        g_autofree uint8_t *catbuf = g_malloc(MAX(len + len2, 1));
        qemu_iovec_to_buf(&cat, 0, catbuf, cat.size);
        g_assert_cmpmem(catbuf, len, v.flat + offset, len);
        g_assert_cmpmem(catbuf + len, len2, v.flat + offset2, len2);
        for (int i = 0; i < cat.niov; i++) {
            g_assert_cmpuint(cat.iov[i].iov_len, >, 0);
        }

        qemu_iovec_destroy(&cat);
        qemu_iovec_destroy(&slice);
        pieced_destroy(&v);
    }
    g_rand_free(rand);
}

static void test_compare(void)
{
    GRand *rand = g_rand_new_with_seed(4);

    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        PiecedVector a;
        QEMUIOVector b;
        g_autofree uint8_t *copy = NULL;

        pieced_init(&a, rand, 8, 40);
        copy = g_memdup2(a.flat, MAX(a.qiov.size, 1));
        /* Same bytes, different piece boundaries. */
        qemu_iovec_init(&b, 1);
        for (size_t off = 0; off < a.qiov.size;) {
            size_t piece = g_rand_int_range(rand, 1, 20);
            size_t n = MIN(piece, a.qiov.size - off);
            qemu_iovec_add(&b, copy + off, n);
            off += n;
        }
        g_assert_cmpint(qemu_iovec_compare(&a.qiov, &b), ==, -1);
        if (a.qiov.size) {
            size_t pos = g_rand_int_range(rand, 0, a.qiov.size);
            copy[pos] ^= 1 << g_rand_int_range(rand, 0, 8);
            /* A second difference later must not hide the first one. */
            if (pos + 1 < a.qiov.size) {
                copy[a.qiov.size - 1] ^= 0x80;
            }
            g_assert_cmpint(qemu_iovec_compare(&a.qiov, &b), ==, pos);
        }
        qemu_iovec_destroy(&b);
        pieced_destroy(&a);
    }
    g_rand_free(rand);
}

static void test_init_buf(void)
{
    uint8_t data[64];
    QEMUIOVector qiov, slice;

    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = i;
    }
    qemu_iovec_init_buf(&qiov, data, sizeof(data));
    g_assert_cmpint(qiov.niov, ==, 1);
    g_assert_cmpuint(qiov.size, ==, sizeof(data));
    g_assert_true(qiov.iov[0].iov_base == data);

    qemu_iovec_init_slice(&slice, &qiov, 10, 20);
    g_assert_cmpint(slice.niov, ==, 1);
    g_assert_true(slice.iov[0].iov_base == data + 10);
    g_assert_cmpuint(slice.iov[0].iov_len, ==, 20);
    qemu_iovec_destroy(&slice);

    qemu_iovec_init_buf(&qiov, data, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    g_assert_true(qemu_iovec_is_zero(&qiov, 0, 0));
    qemu_iovec_destroy(&qiov);     /* nothing owned: must not free data */
}

static void test_growth_and_reset(void)
{
    static uint8_t bytes[1000];
    QEMUIOVector qiov;

    qemu_iovec_init(&qiov, 0);
    for (int i = 0; i < 1000; i++) {
        bytes[i] = i;
        qemu_iovec_add(&qiov, &bytes[i], 1);
        qemu_iovec_add(&qiov, &bytes[i], 0);    /* empty pieces are dropped */
    }
    g_assert_cmpint(qiov.niov, ==, 1000);
    g_assert_cmpuint(qiov.size, ==, 1000);
    for (int i = 0; i < 1000; i++) {
        g_assert_true(qiov.iov[i].iov_base == &bytes[i]);
    }

    qemu_iovec_reset(&qiov);
    g_assert_cmpint(qiov.niov, ==, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    qemu_iovec_add(&qiov, bytes, 10);
    g_assert_cmpint(qiov.niov, ==, 1);
    g_assert_cmpuint(qiov.size, ==, 10);
    qemu_iovec_destroy(&qiov);
    g_assert_null(qiov.iov);
    g_assert_cmpint(qiov.niov, ==, 0);
}

static void test_blockalign(void)
{
    uint8_t *p = qemu_blockalign0(10000);

    g_assert_cmpuint((uintptr_t)p % QEMU_BUFFER_ALIGN, ==, 0);
    for (int i = 0; i < 10000; i++) {
        g_assert_cmpuint(p[i], ==, 0);
    }
    qemu_vfree(p);
    p = qemu_try_blockalign(0);
    g_assert_nonnull(p);
    qemu_vfree(p);
    qemu_vfree(NULL);
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_func("/iov/to-from-buf", test_to_from_buf);
    test_add_func("/iov/memset-is-zero", test_memset_is_zero);
    test_add_func("/iov/is-zero-single-byte", test_is_zero_single_byte);
    test_add_func("/iov/slice-concat", test_slice_concat);
    test_add_func("/iov/compare", test_compare);
    test_add_func("/iov/init-buf", test_init_buf);
    test_add_func("/iov/growth-reset", test_growth_and_reset);
    test_add_func("/iov/blockalign", test_blockalign);
    return g_test_run();
}

/*
 * Unit tests of qcow2_refcount_entry_get/set (block/qcow2-refcount.c) for
 * every refcount order 0..6 (1- to 64-bit entries).
 *
 * The expected bytes come from an independent model of the qcow2 layout:
 * entries narrower than a byte are packed least significant bit first,
 * wider ones are big-endian.  Refcount blocks written by stock qemu-img are
 * read back as the final check of the layout.
 */
#include "qemu/osdep.h"
#include "qcow2.h"
#include "qcow2-test-helpers.h"

#define BLOCK_SIZE 512

static uint64_t width_max(int order)
{
    return order == 6 ? UINT64_MAX : (UINT64_C(1) << (1 << order)) - 1;
}

/* The model: store value at index into a byte array, bit by bit. */
static void model_set(uint8_t *block, uint64_t index, int order,
                      uint64_t value)
{
    int bits = 1 << order;

    if (bits < 8) {
        uint64_t bit = index * bits;
        for (int b = 0; b < bits; b++) {
            uint8_t mask = 1 << ((bit + b) % 8);
            block[(bit + b) / 8] = (value >> b) & 1
                                   ? block[(bit + b) / 8] | mask
                                   : block[(bit + b) / 8] & ~mask;
        }
    } else {
        int bytes = bits / 8;
        for (int b = 0; b < bytes; b++) {
            block[index * bytes + b] = value >> (8 * (bytes - 1 - b));
        }
    }
}

static uint64_t random_value(GRand *rand, int order)
{
    uint64_t v = ((uint64_t)g_rand_int(rand) << 32) | g_rand_int(rand);

    switch (g_rand_int_range(rand, 0, 4)) {
    case 0:
        return 0;
    case 1:
        return width_max(order);
    default:
        return v & width_max(order);
    }
}

/*
 * Set every index of a block filled with random bytes, in random order,
 * to random values (including 0 and the maximum): each get returns what
 * was set and no other byte of the block changes.
 */
static void test_every_index(gconstpointer data)
{
    int order = GPOINTER_TO_INT(data);
    uint64_t entries = BLOCK_SIZE * 8 >> order;
    GRand *rand = g_rand_new_with_seed(test_seed(100 + order));
    uint8_t block[BLOCK_SIZE], model[BLOCK_SIZE];
    g_autofree uint64_t *perm = g_new(uint64_t, entries);

    for (size_t i = 0; i < BLOCK_SIZE; i++) {
        block[i] = model[i] = g_rand_int(rand);
    }
    for (uint64_t i = 0; i < entries; i++) {
        perm[i] = i;
    }
    for (uint64_t i = entries - 1; i > 0; i--) {
        uint64_t j = g_rand_int_range(rand, 0, i + 1);
        uint64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (uint64_t n = 0; n < entries; n++) {
        uint64_t index = perm[n], value = random_value(rand, order);

        qcow2_refcount_entry_set(block, index, order, value);
        model_set(model, index, order, value);
        g_assert_cmpuint(qcow2_refcount_entry_get(block, index, order), ==,
                         value);
        if (memcmp(block, model, BLOCK_SIZE)) {
            test_note("order %d, index %" PRIu64 ", value %#" PRIx64,
                           order, index, value);
            g_assert_cmpmem(block, BLOCK_SIZE, model, BLOCK_SIZE);
        }
    }
    g_rand_free(rand);
}

/* Known byte layouts, written out by hand from the qcow2 specification. */
static void test_known_layout(void)
{
    uint8_t b[16];

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 1, 0, 1);
    qcow2_refcount_entry_set(b, 8, 0, 1);
    g_assert_cmpuint(b[0], ==, 0x02);
    g_assert_cmpuint(b[1], ==, 0x01);

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 3, 1, 2);       /* bits 6..7 of byte 0 */
    g_assert_cmpuint(b[0], ==, 0x80);

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 1, 2, 0xa);     /* high nibble of byte 0 */
    qcow2_refcount_entry_set(b, 2, 2, 0x5);
    g_assert_cmpuint(b[0], ==, 0xa0);
    g_assert_cmpuint(b[1], ==, 0x05);

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 1, 4, 0x1234);
    g_assert_cmpmem(b, 4, ((uint8_t[]){ 0, 0, 0x12, 0x34 }), 4);

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 1, 5, 0x89abcdef);
    g_assert_cmpmem(b, 8, ((uint8_t[]){ 0, 0, 0, 0, 0x89, 0xab, 0xcd, 0xef }),
                    8);

    memset(b, 0, sizeof(b));
    qcow2_refcount_entry_set(b, 1, 6, UINT64_C(0x0102030405060708));
    g_assert_cmpmem(b + 8, 8, ((uint8_t[]){ 1, 2, 3, 4, 5, 6, 7, 8 }), 8);
    qcow2_refcount_entry_set(b, 0, 6, UINT64_MAX);
    g_assert_cmpuint(qcow2_refcount_entry_get(b, 0, 6), ==, UINT64_MAX);
    g_assert_cmpuint(qcow2_refcount_entry_get(b, 1, 6), ==,
                     UINT64_C(0x0102030405060708));
}

/*
 * A fresh stock image has refcount 1 for its first clusters (header,
 * refcount table, refcount block, L1 table) and 0 after them.
 */
static void test_stock_refblock(gconstpointer data)
{
    int order = GPOINTER_TO_INT(data);
    g_autofree char *path = test_scratch_path("stock-rb%d.qcow2", 1 << order);
    g_autofree char *opts = g_strdup_printf(
        "cluster_size=4096,refcount_bits=%d", 1 << order);
    g_autofree uint8_t *file = NULL;
    size_t len;
    uint64_t reftable, refblock;

    if (test_skip_without_stock("qemu-img")) {
        return;
    }
    g_assert_cmpint(test_run_stock(NULL, "qemu-img", "create", "-q", "-f",
                                   "qcow2", "-o", opts, path, "1M", NULL),
                    ==, 0);
    file = test_read_file(path, &len);
    reftable = ldq_be_p(file + 48);
    refblock = ldq_be_p(file + reftable);
    g_assert_cmpuint(refblock + 4096, <=, len);
    for (uint64_t i = 0; i < 64; i++) {
        uint64_t expected = i * 4096 < len ? 1 : 0;
        g_assert_cmpuint(qcow2_refcount_entry_get(file + refblock, i, order),
                         ==, expected);
    }
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_func("/qcow2-refcount/known-layout", test_known_layout);
    for (int order = 0; order <= 6; order++) {
        g_autofree char *every = g_strdup_printf(
            "/qcow2-refcount/every-index/%d-bit", 1 << order);
        g_autofree char *stock = g_strdup_printf(
            "/qcow2-refcount/stock-refblock/%d-bit", 1 << order);
        test_add_data_func(every, GINT_TO_POINTER(order), test_every_index);
        test_add_data_func(stock, GINT_TO_POINTER(order),
                             test_stock_refblock);
    }
    return g_test_run();
}

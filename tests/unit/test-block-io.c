/*
 * Unit tests of the request path of block/io.c through the raw format and
 * file protocol drivers: alignment by read-modify-write on O_DIRECT files
 * (alone and from many threads at once), zero writes and their fallback,
 * discard, FUA and writethrough, drained sections, bounds, zero detection
 * and block status.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qcow2-test-helpers.h"

#define IMG_SIZE (1024 * 1024)

static BlockDriverState *file_node(BlockBackend *blk)
{
    return bdrv_get_file(blk_bs(blk));
}

/* A fresh raw image of size bytes, opened with opts. */
static BlockBackend *new_raw(const char *name, uint64_t size, const char *opts,
                             char **path)
{
    *path = test_scratch_path("%s.raw", name);
    test_create_image(*path, "raw", size, NULL);
    return test_open(*path, opts, BDRV_O_RDWR);
}

/* True (after g_test_skip) if the scratch filesystem has no O_DIRECT. */
static bool skip_without_o_direct(void)
{
    g_autofree char *path = test_scratch_path("o-direct-probe");
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0644);

    if (fd < 0 && errno == EINVAL) {
        g_autofree char *msg = g_strdup_printf(
            "O_DIRECT is not supported on the filesystem of %s", path);
        g_test_skip(msg);
        return true;
    }
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    unlink(path);
    return false;
}

/* O_DIRECT */

/*
 * Random unaligned requests, from buffers at odd addresses and vectors of
 * odd pieces, on an O_DIRECT file; the content follows the model.
 */
static void test_o_direct_unaligned(void)
{
    g_autofree char *path = NULL;
    g_autofree uint8_t *model = g_malloc0(IMG_SIZE);
    g_autofree uint8_t *file_data = NULL;
    GRand *rand = g_rand_new_with_seed(test_seed(11));
    BlockBackend *blk;
    size_t len;

    if (skip_without_o_direct()) {
        return;
    }
    blk = new_raw("o-direct", IMG_SIZE, "driver=raw,cache.direct=on", &path);
    g_assert_cmpuint(file_node(blk)->request_alignment, >, 1);
    for (int i = 0; i < 400; i++) {
        uint64_t off = g_rand_int_range(rand, 0, IMG_SIZE - 1);
        uint64_t max = MIN(IMG_SIZE - off, 20000);
        uint64_t bytes = g_rand_int_range(rand, 1, max + 1);
        g_autofree uint8_t *mem = g_malloc(bytes + 8);
        uint8_t *buf = mem + g_rand_int_range(rand, 0, 8);

        if (g_rand_boolean(rand)) {
            QEMUIOVector qiov;
            test_fill_pattern(buf, bytes, i);
            memcpy(model + off, buf, bytes);
            /* Up to three pieces of any length. */
            qemu_iovec_init(&qiov, 3);
            uint64_t a = g_rand_int_range(rand, 0, bytes + 1);
            uint64_t b = g_rand_int_range(rand, a, bytes + 1);
            qemu_iovec_add(&qiov, buf, a);
            qemu_iovec_add(&qiov, buf + a, b - a);
            qemu_iovec_add(&qiov, buf + b, bytes - b);
            g_assert_cmpint(blk_pwritev(blk, off, bytes, &qiov, 0), ==, 0);
            qemu_iovec_destroy(&qiov);
        } else {
            g_assert_cmpint(blk_pread(blk, off, bytes, buf, 0), ==, 0);
            test_assert_bytes_equal(buf, model + off, bytes, off, "read");
        }
    }
    test_assert_image_equals(blk, model, IMG_SIZE);
    blk_unref(blk);

    file_data = test_read_file(path, &len);
    g_assert_cmpuint(len, ==, IMG_SIZE);
    test_assert_bytes_equal(file_data, model, IMG_SIZE, 0, "file");
    g_rand_free(rand);
}

/*
 * Threads own interleaved byte ranges ("chunks") of the same few 4 KiB
 * units and keep rewriting them with unaligned requests; the last value
 * each thread wrote to each of its chunks must survive the others'
 * read-modify-write cycles.
 */
#define RMW_THREADS 8
#define RMW_CHUNK 37
#define RMW_BASE (4096 + 100)
#define RMW_REGION (3 * 4096)

typedef struct RmwThread {
    BlockBackend *blk;
    int id;
    int iterations;
    bool use_zero_writes;
    uint8_t *expected;          /* shared, each thread writes its own bytes */
} RmwThread;

static bool rmw_owns(int id, uint64_t chunk)
{
    return chunk % RMW_THREADS == (uint64_t)id;
}

static gpointer rmw_thread(gpointer opaque)
{
    RmwThread *t = opaque;
    uint64_t nb_chunks = RMW_REGION / RMW_CHUNK;
    GRand *rand = g_rand_new_with_seed(test_seed(1000 + t->id));
    uint8_t buf[RMW_CHUNK];

    for (int i = 0; i < t->iterations; i++) {
        uint64_t chunk;
        do {
            chunk = g_rand_int_range(rand, 0, nb_chunks);
        } while (!rmw_owns(t->id, chunk));
        uint64_t off = chunk * RMW_CHUNK;
        int ret;

        if (t->use_zero_writes && g_rand_boolean(rand)) {
            memset(t->expected + off, 0, RMW_CHUNK);
            ret = blk_pwrite_zeroes(t->blk, RMW_BASE + off, RMW_CHUNK, 0);
        } else {
            memset(buf, 1 + (t->id * 31 + i) % 255, RMW_CHUNK);
            memcpy(t->expected + off, buf, RMW_CHUNK);
            ret = blk_pwrite(t->blk, RMW_BASE + off, RMW_CHUNK, buf, 0);
        }
        g_assert_cmpint(ret, ==, 0);
    }
    g_rand_free(rand);
    return NULL;
}

static void run_concurrent_rmw(bool use_zero_writes)
{
    g_autofree char *path = NULL;
    g_autofree uint8_t *expected = g_malloc0(RMW_REGION);
    g_autofree uint8_t *got = g_malloc(RMW_REGION);
    RmwThread threads[RMW_THREADS];
    GThread *handles[RMW_THREADS];
    int iterations = test_long_mode() ? 40000 : 4000;
    BlockBackend *blk;

    if (skip_without_o_direct()) {
        return;
    }
    blk = new_raw(use_zero_writes ? "rmw-zero" : "rmw", IMG_SIZE,
                  "driver=raw,cache.direct=on", &path);
    g_assert_cmpuint(file_node(blk)->request_alignment, >, 1);
    for (int i = 0; i < RMW_THREADS; i++) {
        threads[i] = (RmwThread) {
            .blk = blk, .id = i, .iterations = iterations,
            .use_zero_writes = use_zero_writes, .expected = expected,
        };
        handles[i] = g_thread_new("rmw", rmw_thread, &threads[i]);
    }
    for (int i = 0; i < RMW_THREADS; i++) {
        g_thread_join(handles[i]);
    }
    g_assert_cmpint(blk_pread(blk, RMW_BASE, RMW_REGION, got, 0), ==, 0);
    /* Bytes after the last whole chunk were never written. */
    test_assert_bytes_equal(got, expected, RMW_REGION, RMW_BASE,
                            "concurrently written region");
    blk_unref(blk);
}

static void test_o_direct_concurrent_rmw(void)
{
    run_concurrent_rmw(false);
}

/* Unaligned zero writes are writes too: no RMW cycle may undo them. */
static void test_o_direct_concurrent_rmw_zero(void)
{
    run_concurrent_rmw(true);
}

/* Zero writes */

/*
 * qcow2 v2 has no zero clusters: its driver refuses zero writes and the core
 * writes a zero buffer instead, in bounded pieces; with NO_FALLBACK the
 * request fails and nothing changes.
 */
static void test_zero_fallback(void)
{
    g_autofree char *path = test_scratch_path("zero-fallback.qcow2");
    uint64_t size = 8 * 1024 * 1024;
    g_autofree uint8_t *model = g_malloc(size);
    BlockBackend *blk;

    test_create_image(path, "qcow2", size, "compat=0.10,cluster_size=65536");
    blk = test_open(path, "driver=qcow2", BDRV_O_RDWR);
    test_fill_pattern(model, size, 7);
    g_assert_cmpint(blk_pwrite(blk, 0, size, model, 0), ==, 0);

    g_assert_cmpint(blk_pwrite_zeroes(blk, 1000, 100, BDRV_REQ_NO_FALLBACK),
                    ==, -ENOTSUP);
    test_assert_image_equals(blk, model, size);

    /* More than the 1 MiB bounce buffer, unaligned at both ends. */
    g_assert_cmpint(blk_pwrite_zeroes(blk, 12345, 3 * 1024 * 1024 + 777, 0),
                    ==, 0);
    memset(model + 12345, 0, 3 * 1024 * 1024 + 777);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 6 * 1024 * 1024, 65536,
                                      BDRV_REQ_MAY_UNMAP), ==, 0);
    memset(model + 6 * 1024 * 1024, 0, 65536);
    test_assert_image_equals(blk, model, size);
    test_assert_check_clean(blk);
    blk_unref(blk);
}

/* The file driver zeroes in place, aligned or not, growing nothing. */
static void test_zero_raw(void)
{
    g_autofree char *path = NULL;
    g_autofree uint8_t *model = g_malloc(IMG_SIZE);
    BlockBackend *blk = new_raw("zero", IMG_SIZE, "driver=raw", &path);
    struct stat st;

    test_fill_pattern(model, IMG_SIZE, 8);
    g_assert_cmpint(blk_pwrite(blk, 0, IMG_SIZE, model, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 3, 5000, 0), ==, 0);
    memset(model + 3, 0, 5000);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 65536, 65536, BDRV_REQ_MAY_UNMAP),
                    ==, 0);
    memset(model + 65536, 0, 65536);
    g_assert_cmpint(blk_pwrite_zeroes(blk, IMG_SIZE - 10, 10, 0), ==, 0);
    memset(model + IMG_SIZE - 10, 0, 10);
    test_assert_image_equals(blk, model, IMG_SIZE);
    g_assert_cmpint(blk_getlength(blk), ==, IMG_SIZE);
    blk_unref(blk);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, IMG_SIZE);
}

/* Discard */

static int status_at(BlockBackend *blk, int64_t offset, int64_t *pnum)
{
    return bdrv_block_status(blk_bs(blk), offset, IMG_SIZE - offset, pnum,
                             NULL, NULL);
}

static void test_discard(void)
{
    g_autofree char *path = NULL;
    g_autofree uint8_t *model = g_malloc(IMG_SIZE);
    BlockBackend *blk = new_raw("discard", IMG_SIZE, "driver=raw", &path);
    int64_t pnum;

    test_fill_pattern(model, IMG_SIZE, 9);
    g_assert_cmpint(blk_pwrite(blk, 0, IMG_SIZE, model, 0), ==, 0);

    /* Without discard=unmap a discard is accepted and does nothing. */
    g_assert_cmpint(blk_pdiscard(blk, 65536, 65536), ==, 0);
    test_assert_image_equals(blk, model, IMG_SIZE);
    g_assert_cmpint(status_at(blk, 65536, &pnum) & BDRV_BLOCK_DATA, ==,
                    BDRV_BLOCK_DATA);
    blk_unref(blk);

    /* With it, the file gets a hole that reads as zeroes. */
    blk = test_open(path, "driver=raw,discard=unmap", BDRV_O_RDWR);
    g_assert_cmpint(blk_pdiscard(blk, 65536, 65536), ==, 0);
    memset(model + 65536, 0, 65536);
    test_assert_image_equals(blk, model, IMG_SIZE);
    g_assert_cmpint(status_at(blk, 65536, &pnum) &
                    (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, 65536);
    blk_unref(blk);
}

/* FUA and writethrough: observed through the node's flush counter. */
static BlockAcctStats stats_of(BlockBackend *blk)
{
    BlockAcctStats stats;

    bdrv_get_stats(blk_bs(blk), &stats);
    return stats;
}

static uint64_t flushes(BlockBackend *blk)
{
    return stats_of(blk).flush_ops;
}

static void test_fua(void)
{
    g_autofree char *path = NULL;
    uint8_t buf[512] = { 1 };
    BlockBackend *blk = new_raw("fua", IMG_SIZE, "driver=raw", &path);
    uint64_t before;

    before = flushes(blk);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpuint(flushes(blk), ==, before);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpuint(flushes(blk), ==, before + 1);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpuint(flushes(blk), ==, before + 2);

    /* Writethrough: every write is FUA. */
    blk_set_enable_write_cache(blk, false);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpuint(flushes(blk), ==, before + 3);
    blk_set_enable_write_cache(blk, true);
    blk_unref(blk);

    /* cache.no-flush: FUA asks for nothing. */
    blk = test_open(path, "driver=raw,cache.no-flush=on", BDRV_O_RDWR);
    before = flushes(blk);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpuint(flushes(blk), ==, before);
    blk_unref(blk);
}

/* Drained sections */

typedef struct DrainWriter {
    BlockBackend *blk;
    int id;
    gint completed;
    gint stop;
} DrainWriter;

static gpointer drain_writer(gpointer opaque)
{
    DrainWriter *w = opaque;
    uint8_t buf[4096];

    memset(buf, w->id, sizeof(buf));
    while (!g_atomic_int_get(&w->stop)) {
        g_assert_cmpint(blk_pwrite(w->blk, w->id * 4096, sizeof(buf), buf, 0),
                        ==, 0);
        g_atomic_int_inc(&w->completed);
    }
    return NULL;
}

static int total_completed(DrainWriter *w, int n)
{
    int sum = 0;

    for (int i = 0; i < n; i++) {
        sum += g_atomic_int_get(&w[i].completed);
    }
    return sum;
}

static int in_flight(BlockDriverState *bs)
{
    int n;

    g_mutex_lock(&bs->reqs_lock);
    n = bs->in_flight;
    g_mutex_unlock(&bs->reqs_lock);
    return n;
}

static void test_drain(void)
{
    enum { WRITERS = 4 };
    g_autofree char *path = NULL;
    BlockBackend *blk = new_raw("drain", IMG_SIZE, "driver=raw", &path);
    BlockDriverState *bs = blk_bs(blk);
    DrainWriter w[WRITERS] = { 0 };
    GThread *threads[WRITERS];
    int c1, c2, c3;

    for (int i = 0; i < WRITERS; i++) {
        w[i] = (DrainWriter) { .blk = blk, .id = i };
        threads[i] = g_thread_new("writer", drain_writer, &w[i]);
    }
    while (total_completed(w, WRITERS) < 100) {
        g_usleep(1000);
    }

    bdrv_drained_begin(bs);
    g_assert_cmpint(in_flight(bs), ==, 0);
    c1 = total_completed(w, WRITERS);
    /* A writer may still be between its completion and its counter. */
    g_usleep(50 * 1000);
    c2 = total_completed(w, WRITERS);
    g_assert_cmpint(c2 - c1, <=, WRITERS);
    g_usleep(50 * 1000);
    c3 = total_completed(w, WRITERS);
    g_assert_cmpint(c3, ==, c2);
    g_assert_cmpint(in_flight(bs), ==, 0);

    /* Sections nest: requests wait until the outermost one ends. */
    bdrv_drained_begin(bs);
    bdrv_drained_end(bs);
    g_usleep(20 * 1000);
    g_assert_cmpint(total_completed(w, WRITERS), ==, c3);
    bdrv_drained_end(bs);

    while (total_completed(w, WRITERS) < c3 + 100) {
        g_usleep(1000);
    }
    for (int i = 0; i < WRITERS; i++) {
        g_atomic_int_set(&w[i].stop, 1);
    }
    for (int i = 0; i < WRITERS; i++) {
        g_thread_join(threads[i]);
    }
    blk_unref(blk);
}

/* Bounds and permissions */

static void test_bounds(void)
{
    g_autofree char *path = NULL;
    BlockBackend *blk = new_raw("bounds", IMG_SIZE, "driver=raw", &path);
    uint8_t buf[1024] = { 0 };

    g_assert_cmpint(blk_pread(blk, IMG_SIZE - 512, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, IMG_SIZE, 0, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, IMG_SIZE - 512, 513, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, IMG_SIZE + 1, 0, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, -1, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, IMG_SIZE - 1, 2, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite_zeroes(blk, IMG_SIZE, 1, 0), ==, -EIO);
    g_assert_cmpint(blk_pdiscard(blk, IMG_SIZE - 1, 2), ==, -EIO);
    g_assert_cmpint(blk_getlength(blk), ==, IMG_SIZE);
    blk_unref(blk);

    blk = test_open(path, "driver=raw", 0);
    g_assert_false(blk_is_writable(blk));
    g_assert_cmpint(blk_pwrite(blk, 0, 1, buf, 0), ==, -EACCES);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 1, 0), ==, -EACCES);
    g_assert_cmpint(blk_pdiscard(blk, 0, 512), ==, -EACCES);
    g_assert_cmpint(blk_pread(blk, 0, 1, buf, 0), ==, 0);
    blk_unref(blk);
}

/* detect-zeroes turns zero buffers into zero writes (and holes with unmap). */
static void test_detect_zeroes(void)
{
    g_autofree char *path = NULL;
    g_autofree uint8_t *data = g_malloc(IMG_SIZE);
    g_autofree uint8_t *zero = g_malloc0(65536);
    BlockBackend *blk = new_raw("detect-zeroes", IMG_SIZE,
                                "driver=raw,detect-zeroes=unmap,discard=unmap",
                                &path);
    int64_t pnum;

    test_fill_pattern(data, IMG_SIZE, 10);
    g_assert_cmpint(blk_pwrite(blk, 0, IMG_SIZE, data, 0), ==, 0);
    g_assert_cmpuint(stats_of(blk).zero_ops, ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 131072, 65536, zero, 0), ==, 0);
    g_assert_cmpuint(stats_of(blk).zero_ops, ==, 1);
    memset(data + 131072, 0, 65536);
    test_assert_image_equals(blk, data, IMG_SIZE);
    g_assert_cmpint(status_at(blk, 131072, &pnum) &
                    (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_ZERO);
    blk_unref(blk);
}

/* Block status */

/* One extent of "qemu-img map --output=json". */
typedef struct MapExtent {
    int64_t start, length;
    bool data, zero;
} MapExtent;

static GArray *stock_map(const char *path)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonNode) root = NULL;
    GArray *extents = g_array_new(FALSE, FALSE, sizeof(MapExtent));
    JsonArray *arr;

    g_assert_cmpint(test_run_stock(&out, "qemu-img", "map", "--output=json",
                                   "-f", "raw", path, NULL), ==, 0);
    root = json_from_string(out, NULL);
    g_assert_nonnull(root);
    arr = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *o = json_array_get_object_element(arr, i);
        MapExtent e = {
            .start = json_object_get_int_member(o, "start"),
            .length = json_object_get_int_member(o, "length"),
            .data = json_object_get_boolean_member(o, "data"),
            .zero = json_object_get_boolean_member(o, "zero"),
        };
        g_array_append_val(extents, e);
    }
    return extents;
}

/* Walk bdrv_block_status over the whole node, merging equal neighbours. */
static GArray *our_map(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);
    int64_t len = bdrv_getlength(bs), offset = 0;
    GArray *extents = g_array_new(FALSE, FALSE, sizeof(MapExtent));

    while (offset < len) {
        int64_t pnum, map;
        BlockDriverState *file;
        int ret = bdrv_block_status(bs, offset, len - offset, &pnum, &map,
                                    &file);
        MapExtent e = {
            .start = offset, .length = pnum,
            .data = ret & BDRV_BLOCK_DATA, .zero = ret & BDRV_BLOCK_ZERO,
        };

        g_assert_cmpint(ret, >=, 0);
        g_assert_cmpint(pnum, >, 0);
        g_assert_true(ret & BDRV_BLOCK_ALLOCATED);
        g_assert_true(ret & BDRV_BLOCK_OFFSET_VALID);
        g_assert_cmpint(map, ==, offset);
        g_assert_cmpint(!!(ret & BDRV_BLOCK_EOF), ==, offset + pnum == len);
        if (extents->len) {
            MapExtent *last = &g_array_index(extents, MapExtent,
                                             extents->len - 1);
            if (last->data == e.data && last->zero == e.zero) {
                last->length += pnum;
                offset += pnum;
                continue;
            }
        }
        g_array_append_val(extents, e);
        offset += pnum;
    }
    return extents;
}

static bool maps_equal(GArray *a, GArray *b)
{
    if (a->len != b->len) {
        return false;
    }
    for (guint i = 0; i < a->len; i++) {
        MapExtent *x = &g_array_index(a, MapExtent, i);
        MapExtent *y = &g_array_index(b, MapExtent, i);
        if (x->start != y->start || x->length != y->length ||
            x->data != y->data || x->zero != y->zero) {
            return false;
        }
    }
    return true;
}

static void print_maps(GArray *ours, GArray *stock)
{
    for (guint i = 0; i < MAX(ours->len, stock->len); i++) {
        MapExtent none = { -1, -1, false, false };
        MapExtent *o = i < ours->len ? &g_array_index(ours, MapExtent, i)
                                     : &none;
        MapExtent *s = i < stock->len ? &g_array_index(stock, MapExtent, i)
                                      : &none;
        test_note("extent %u: ours %" PRId64 "+%" PRId64 " data %d zero %d, "
                  "stock %" PRId64 "+%" PRId64 " data %d zero %d", i,
                  o->start, o->length, o->data, o->zero, s->start, s->length,
                  s->data, s->zero);
    }
}

static void test_block_status_raw(void)
{
    static const struct {
        int64_t offset, bytes;
    } data[] = {
        { 65536, 65536 }, { 200000, 1 }, { 512 * 1024, 4096 * 3 },
        { IMG_SIZE + 8192 - 4096, 4096 },
    };
    g_autofree char *path = NULL;
    g_autoptr(GArray) ours = NULL, stock = NULL;
    g_autofree uint8_t *buf = g_malloc(65536);
    BlockBackend *blk = new_raw("status", IMG_SIZE + 8192, "driver=raw",
                                &path);
    int64_t pnum;

    memset(buf, 0x11, 65536);
    for (size_t i = 0; i < G_N_ELEMENTS(data); i++) {
        g_assert_cmpint(blk_pwrite(blk, data[i].offset, data[i].bytes, buf, 0),
                        ==, 0);
    }
    g_assert_cmpint(blk_flush(blk), ==, 0);

    /* Past the end: nothing, flagged EOF. */
    g_assert_cmpint(bdrv_block_status(blk_bs(blk), IMG_SIZE + 8192, 512,
                                      &pnum, NULL, NULL), ==, BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 0);

    ours = our_map(blk);
    blk_unref(blk);
    if (test_skip_without_stock("qemu-img")) {
        return;
    }
    stock = stock_map(path);
    if (!maps_equal(ours, stock)) {
        print_maps(ours, stock);
        g_assert_not_reached();
    }
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_func("/block-io/o-direct/unaligned", test_o_direct_unaligned);
    test_add_func("/block-io/o-direct/concurrent-rmw",
                    test_o_direct_concurrent_rmw);
    test_add_func("/block-io/o-direct/concurrent-rmw-zero",
                    test_o_direct_concurrent_rmw_zero);
    test_add_func("/block-io/zero/fallback", test_zero_fallback);
    test_add_func("/block-io/zero/raw", test_zero_raw);
    test_add_func("/block-io/discard", test_discard);
    test_add_func("/block-io/fua", test_fua);
    test_add_func("/block-io/drain", test_drain);
    test_add_func("/block-io/bounds", test_bounds);
    test_add_func("/block-io/detect-zeroes", test_detect_zeroes);
    test_add_func("/block-io/block-status/raw", test_block_status_raw);
    return g_test_run();
}

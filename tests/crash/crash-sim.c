/*
 * Crash (power-cut) simulator for the qcow2 driver.
 *
 * 1. Create an image (one configuration per test: cluster size, refcount
 *    width, lazy refcounts, compat, a backing file, tiny caches, dedup once
 *    the driver offers it) and keep a copy of the fresh file.
 * 2. Run a seeded random guest workload on it through the block layer with
 *    the "record" filter between qcow2 and its file (block/blkrecord.c):
 *    aligned and unaligned writes drawing on a small pool of contents (so
 *    that deduplication has hits), FUA writes, zero writes, discards, reads,
 *    flushes and batches of requests issued from threads at once; then
 *    close the image.  The filter logs every change the driver made to its
 *    file and every completed flush.  For each guest operation we remember
 *    which log records it produced and what its guest range held after it.
 * 3. Build crash states.  A state is a crash point P (the log records
 *    [0, P) had completed) and the choice of which of them reached the
 *    disk: all records a completed flush covered (the durable prefix D),
 *    plus some of the records between D and P: all, a random subset (with
 *    torn writes: a prefix ending on a 512-byte sector boundary), all but
 *    one, or only one.  Crash points are right after completed flushes,
 *    right before them, and random.
 * 4. For each state: write the file, open it read-write with our driver
 *    (which repairs a dirty image), read the whole guest disk, close it,
 *    then run our "qemu-img check" ($QEMU_IMG_PROG) and the stock one.
 *    Neither may find corruption: exit 0, or 3 (leaked clusters: a crash
 *    may leak clusters that were allocated but not yet linked; not after
 *    the open repaired a dirty image, though, for our check).  Every guest
 *    byte must read as it was at the last guest flush (or FUA write) that
 *    completed before P, or as one of the operations issued after that
 *    flush and started before P left it; nothing else.
 * 5. On a failing state, shrink the set of non-durable records applied to
 *    a minimal one that still fails, and print it with the reproduction
 *    command.  The smallest failing cases found are pinned in
 *    reproducers[].
 *
 * Environment: QEMU_IMG_PROG (our qemu-img, required), QEMU_TEST_LONG (more
 * seeds and states per configuration), QEMU_TEST_SEED (other random
 * sequences), QEMU_CRASH_OPTS (create options appended to every
 * configuration, e.g. "dedup=sha256"), QEMU_CRASH_STATE (check only the
 * state of that index), QEMU_CRASH_OPS (override the workload length),
 * QEMU_CRASH_SEQUENTIAL (no threads: the same log every run),
 * QEMU_TEST_VERBOSE (log every operation and state), QEMU_TEST_KEEP_SCRATCH
 * (keep the images and logs).  See docs/devel/crash-simulator.rst.
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "blkrecord.h"
#include "qcow2-test-helpers.h"

#define SECTOR 512
/* Contents drawn again and again, so that dedup finds duplicates. */
#define CONTENT_POOL 6
/* Most attempts of the shrinker to drop records, one state check each. */
#define SHRINK_MAX_TRIALS 400

typedef struct CrashConfig {
    const char *name;
    const char *create_opts;
    const char *open_opts;      /* extra qcow2 runtime options */
    const char *workload_opts;  /* more of them, for the workload only */
    bool expect_failure;        /* a self-test: the driver is made unsafe */
    /*
     * Over a raw backing file full of data, so that a cluster written before
     * the data in it shows up as neither the old nor the new content.
     */
    bool backing;
    /*
     * The image is marked dirty while it changes (lazy refcounts, dedup),
     * so the open after the crash repairs it: our check must find no leak.
     */
    bool repaired;
    bool sequential;            /* no concurrent batches */
    uint64_t size;
    uint32_t cluster_size;
    int ops;
    int states;
    guint32 seed;               /* set when registered */
    int only_state;             /* a pinned reproducer; -1: all states */
} CrashConfig;

/* The record log */

typedef struct LogRecord {
    BlkRecordType type;
    uint64_t offset;
    uint64_t bytes;
    const uint8_t *data;        /* WRITE: the bytes written */
    uint64_t pos;               /* where the record starts in the log */
} LogRecord;

typedef struct CrashLog {
    uint8_t *buf;
    size_t len;
    GArray *recs;               /* LogRecord */
    /* durable[p]: records [0, durable[p]) are covered by a flush in [0, p) */
    uint64_t *durable;
} CrashLog;

static const char *record_type_str(BlkRecordType type)
{
    static const char *const names[] = {
        [BLKRECORD_WRITE] = "write", [BLKRECORD_ZERO] = "zero",
        [BLKRECORD_DISCARD] = "discard", [BLKRECORD_TRUNCATE] = "truncate",
        [BLKRECORD_FLUSH] = "flush",
    };

    return names[type];
}

static void log_load(CrashLog *log, const char *path)
{
    size_t pos = BLKRECORD_MAGIC_LEN;
    uint64_t n;

    log->buf = test_read_file(path, &log->len);
    log->recs = g_array_new(FALSE, FALSE, sizeof(LogRecord));
    g_assert_cmpuint(log->len, >=, BLKRECORD_MAGIC_LEN);
    g_assert(!memcmp(log->buf, BLKRECORD_MAGIC, BLKRECORD_MAGIC_LEN));
    while (pos < log->len) {
        const uint8_t *h = log->buf + pos;
        LogRecord r;

        g_assert_cmpuint(log->len - pos, >=, BLKRECORD_HEADER_LEN);
        r = (LogRecord) {
            .type = ldl_be_p(h),
            .offset = ldq_be_p(h + 8),
            .bytes = ldq_be_p(h + 16),
            .data = h + BLKRECORD_HEADER_LEN,
            .pos = pos,
        };
        g_assert(r.type >= BLKRECORD_WRITE && r.type <= BLKRECORD_FLUSH);
        pos += BLKRECORD_HEADER_LEN;
        if (r.type == BLKRECORD_WRITE) {
            g_assert_cmpuint(log->len - pos, >=, r.bytes);
            pos += r.bytes;
        }
        g_array_append_val(log->recs, r);
    }

    n = log->recs->len;
    log->durable = g_new0(uint64_t, n + 1);
    for (uint64_t p = 1; p <= n; p++) {
        const LogRecord *r = &g_array_index(log->recs, LogRecord, p - 1);
        log->durable[p] = log->durable[p - 1];
        if (r->type == BLKRECORD_FLUSH) {
            log->durable[p] = MAX(log->durable[p], r->offset);
        }
    }
}

static void log_destroy(CrashLog *log)
{
    g_free(log->buf);
    g_array_free(log->recs, TRUE);
    g_free(log->durable);
}

/* The number of records that start before byte position pos of the log. */
static uint64_t log_records_before(const CrashLog *log, uint64_t pos)
{
    uint64_t lo = 0, hi = log->recs->len;

    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (g_array_index(log->recs, LogRecord, mid).pos < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_size;
}

/* A host file being rebuilt from the log */

typedef struct FileImage {
    uint8_t *data;
    uint64_t len;
    uint64_t cap;
} FileImage;

static void file_image_resize(FileImage *f, uint64_t len)
{
    if (len > f->cap) {
        f->cap = MAX(len, f->cap * 2);
        f->data = g_realloc(f->data, f->cap);
    }
    if (len > f->len) {
        memset(f->data + f->len, 0, len - f->len);
    }
    f->len = len;
}

/* Apply the first `bytes` bytes of the change r made (all of it: r->bytes). */
static void file_image_apply(FileImage *f, const LogRecord *r, uint64_t bytes)
{
    uint64_t end = r->offset + bytes;

    switch (r->type) {
    case BLKRECORD_WRITE:
        file_image_resize(f, MAX(f->len, end));
        memcpy(f->data + r->offset, r->data, bytes);
        break;
    case BLKRECORD_ZERO:
        file_image_resize(f, MAX(f->len, end));
        memset(f->data + r->offset, 0, bytes);
        break;
    case BLKRECORD_DISCARD:
        /* Punched holes read as zeroes; the length stays. */
        if (r->offset < f->len) {
            memset(f->data + r->offset, 0, MIN(end, f->len) - r->offset);
        }
        break;
    case BLKRECORD_TRUNCATE:
        file_image_resize(f, r->offset);
        break;
    case BLKRECORD_FLUSH:
        break;
    }
}

/*
 * Where the qcow2 metadata lies in the file once the workload is over, to
 * name what the records of a failing state wrote.  Read independently of
 * the driver, from the header fields of the qcow2 specification.
 */
typedef struct MetadataMap {
    unsigned cluster_bits;
    uint64_t l1_offset, l1_bytes;
    uint64_t rt_offset, rt_bytes;
    GHashTable *l2_tables;      /* cluster offsets */
    GHashTable *refblocks;
} MetadataMap;

#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL

static void map_table(GHashTable *set, const FileImage *f, uint64_t offset,
                      uint64_t bytes)
{
    for (uint64_t p = offset; p + 8 <= offset + bytes && p + 8 <= f->len;
         p += 8) {
        uint64_t entry = ldq_be_p(f->data + p) & QCOW2_OFFSET_MASK;
        if (entry) {
            g_hash_table_add(set, g_memdup2(&entry, sizeof(entry)));
        }
    }
}

static void map_build(MetadataMap *m, const FileImage *f)
{
    m->l2_tables = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                         NULL);
    m->refblocks = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                         NULL);
    if (f->len < 72) {
        return;
    }
    m->cluster_bits = ldl_be_p(f->data + 20);
    if (m->cluster_bits < 9 || m->cluster_bits > 21) {
        m->cluster_bits = 0;
        return;
    }
    m->l1_bytes = (uint64_t)ldl_be_p(f->data + 36) * 8;
    m->l1_offset = ldq_be_p(f->data + 40);
    m->rt_offset = ldq_be_p(f->data + 48);
    m->rt_bytes = (uint64_t)ldl_be_p(f->data + 56) << m->cluster_bits;
    map_table(m->l2_tables, f, m->l1_offset, m->l1_bytes);
    map_table(m->refblocks, f, m->rt_offset, m->rt_bytes);
}

static const char *map_describe(const MetadataMap *m, uint64_t offset)
{
    uint64_t cluster = offset >> m->cluster_bits << m->cluster_bits;

    if (!m->cluster_bits) {
        return "?";
    } else if (cluster == 0) {
        return "header";
    } else if (offset - m->l1_offset < m->l1_bytes) {
        return "L1 table";
    } else if (offset - m->rt_offset < m->rt_bytes) {
        return "refcount table";
    } else if (g_hash_table_contains(m->l2_tables, &cluster)) {
        return "L2 table";
    } else if (g_hash_table_contains(m->refblocks, &cluster)) {
        return "refcount block";
    }
    return "data or other";
}

/* The workload */

typedef struct GuestOp {
    TestOp op;
    bool fua;                   /* a write durable when it returns */
    bool concurrent;            /* ran in threads with its neighbours */
    /*
     * Records [first_rec, end_rec) were logged while it ran (the log's
     * size in bytes at its start and end while the workload runs).
     */
    uint64_t first_rec;
    uint64_t end_rec;
    uint8_t *after;             /* the guest range after it (NULL: no change) */
} GuestOp;

/*
 * A crash state: the crash point and which of the changes after the
 * durable prefix reached the disk.
 */
typedef struct CrashState {
    int index;
    uint64_t point;             /* records [0, point) had completed */
    uint64_t durable;           /* records [0, durable) reached the disk */
    /*
     * applied[i]: how much of record durable + i reached the disk: 0 (none),
     * APPLIED_ALL, or the length of the torn prefix of a write.
     */
    uint64_t *applied;
} CrashState;

typedef struct Workload {
    const CrashConfig *cfg;
    guint32 seed;
    uint8_t *initial;           /* the image file before the workload */
    uint8_t *guest_initial;     /* what the guest saw then */
    size_t initial_len;
    CrashLog log;
    GArray *ops;                /* GuestOp */
    MetadataMap map;
} Workload;

static bool guest_op_is_barrier(const GuestOp *g)
{
    return g->op.type == TEST_OP_FLUSH || g->fua;
}

static char *guest_op_str(const GuestOp *g)
{
    g_autofree char *s = test_op_str(&g->op);

    return g_strdup_printf("%s%s%s [records %" PRIu64 "..%" PRIu64 ")", s,
                           g->fua ? " fua" : "",
                           g->concurrent ? " concurrent" : "", g->first_rec,
                           g->end_rec);
}

static void random_guest_op(GRand *rand, const CrashConfig *c, GuestOp *g)
{
    uint64_t cs = c->cluster_size;

    memset(g, 0, sizeof(*g));
    if (g_rand_int_range(rand, 0, 100) < 10) {
        g->op.type = TEST_OP_FLUSH;
        return;
    }
    test_random_op(rand, &g->op, 0, c->size, c->cluster_size);
    if (g->op.type != TEST_OP_WRITE) {
        return;
    }
    if (g_rand_boolean(rand)) {
        /* Whole clusters of a content seen before. */
        uint64_t end = MIN(ROUND_UP(g->op.offset + g->op.bytes, cs), c->size);
        g->op.tag = g_rand_int_range(rand, 0, CONTENT_POOL);
        g->op.offset = QEMU_ALIGN_DOWN(g->op.offset, cs);
        g->op.bytes = end - g->op.offset;
    }
    g->fua = g_rand_int_range(rand, 0, 100) < 5;
}

static int guest_op_issue(BlockBackend *blk, const GuestOp *g,
                          const TestModel *model)
{
    g_autofree uint8_t *buf = NULL;

    if (test_verbose()) {
        g_autofree char *desc = test_op_str(&g->op);
        test_note("op: %s%s%s", desc, g->fua ? " fua" : "",
                  g->concurrent ? " concurrent" : "");
    }
    if (!g->fua) {
        return test_apply_op(blk, &g->op, model);
    }
    buf = g_malloc(g->op.bytes);
    test_fill_pattern(buf, g->op.bytes, g->op.tag);
    return blk_pwrite(blk, g->op.offset, g->op.bytes, buf, BDRV_REQ_FUA);
}

/* Mirror a completed op into the model and remember what it left. */
static void guest_op_finish(GuestOp *g, int ret, TestModel *model)
{
    if (ret < 0) {
        g_autofree char *desc = guest_op_str(g);
        g_autofree char *msg = g_strdup_printf("%s failed: %s", desc,
                                               g_strerror(-ret));
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
    test_model_apply(model, &g->op);
    if (g->op.type != TEST_OP_FLUSH && g->op.type != TEST_OP_READ) {
        g->after = g_memdup2(model->data + g->op.offset, g->op.bytes);
    }
}

typedef struct BatchJob {
    BlockBackend *blk;
    const GuestOp *g;
    int ret;
} BatchJob;

static gpointer batch_job_run(gpointer opaque)
{
    BatchJob *job = opaque;

    job->ret = guest_op_issue(job->blk, job->g, NULL);
    return NULL;
}

static bool ranges_overlap(const TestOp *a, const TestOp *b)
{
    return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

/*
 * Two to four writes, zero writes or discards on disjoint ranges, so that
 * the guest content does not depend on the order in which they complete.
 */
static int random_batch(GRand *rand, const CrashConfig *c, GuestOp *batch)
{
    int n = g_rand_int_range(rand, 2, 5), got = 0;

    for (int tries = 0; got < n && tries < 20; tries++) {
        GuestOp *g = &batch[got];
        bool clash = false;

        random_guest_op(rand, c, g);
        if (g->op.type == TEST_OP_FLUSH || g->op.type == TEST_OP_READ) {
            continue;
        }
        for (int i = 0; i < got; i++) {
            clash |= ranges_overlap(&g->op, &batch[i].op);
        }
        if (!clash) {
            g->fua = false;
            g->concurrent = true;
            got++;
        }
    }
    return got;
}

/*
 * Threads make the order of the log records, and so the crash states,
 * differ from run to run; reproducers run without them.
 */
static bool workload_sequential(const CrashConfig *c)
{
    return c->sequential || g_getenv("QEMU_CRASH_SEQUENTIAL");
}

/* One op, or a batch of them in threads; appends them to w->ops. */
static void workload_step(Workload *w, BlockBackend *blk, GRand *rand,
                          TestModel *model, const char *logpath)
{
    GuestOp batch[4];
    BatchJob jobs[4];
    GThread *threads[4];
    uint64_t first = file_size(logpath);
    int n = 1;

    if (g_rand_int_range(rand, 0, 100) < 8 && !workload_sequential(w->cfg)) {
        n = random_batch(rand, w->cfg, batch);
        for (int i = 0; i < n; i++) {
            jobs[i] = (BatchJob) { .blk = blk, .g = &batch[i] };
            threads[i] = g_thread_new("crash-batch", batch_job_run, &jobs[i]);
        }
        for (int i = 0; i < n; i++) {
            g_thread_join(threads[i]);
        }
    } else {
        random_guest_op(rand, w->cfg, &batch[0]);
        jobs[0].ret = guest_op_issue(blk, &batch[0], model);
    }
    for (int i = 0; i < n; i++) {
        batch[i].first_rec = first;
        batch[i].end_rec = file_size(logpath);
        guest_op_finish(&batch[i], jobs[i].ret, model);
        g_array_append_val(w->ops, batch[i]);
    }
}

/* Next to the image, so that the crash images find it too. */
#define BACKING_NAME "backing.raw"

/* "a,b,c" of the parts that are neither NULL nor empty. */
static char *join_opts(const char *a, const char *b, const char *c)
{
    const char *parts[] = { a, b, c };
    GString *s = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(parts); i++) {
        if (parts[i] && *parts[i]) {
            g_string_append_printf(s, "%s%s", s->len ? "," : "", parts[i]);
        }
    }
    return g_string_free(s, FALSE);
}

/* The checks flush nothing: they open the image after the crash, once. */
#define CHECK_OPEN_OPTS "cache.no-flush=on"

static char *open_opts_str(const CrashConfig *c, const char *extra)
{
    return join_opts("driver=qcow2", c->open_opts, extra);
}

static char *create_opts_str(const CrashConfig *c)
{
    return join_opts(c->create_opts,
                     c->backing ? "backing_file=" BACKING_NAME
                                  ",backing_fmt=raw" : NULL,
                     g_getenv("QEMU_CRASH_OPTS"));
}

static int workload_length(const CrashConfig *c)
{
    const char *v = g_getenv("QEMU_CRASH_OPS");

    return v ? (int)g_ascii_strtoll(v, NULL, 0) : c->ops;
}

/* The backing file: data everywhere; the model starts as its content. */
static void create_backing(const CrashConfig *c, TestModel *model)
{
    g_autofree char *path = test_scratch_path(BACKING_NAME);
    BlockBackend *blk;

    test_fill_pattern(model->data, c->size, 0xba5e);
    test_create_image(path, "raw", c->size, NULL);
    blk = test_open(path, "driver=raw", BDRV_O_RDWR);
    g_assert_cmpint(blk_pwrite(blk, 0, c->size, model->data, 0), ==, 0);
    blk_unref(blk);
}

static void state_build_image(const Workload *w, const CrashState *st,
                              FileImage *f);

static void workload_run(Workload *w, const CrashConfig *c, guint32 seed)
{
    g_autofree char *img = test_scratch_path("image.qcow2");
    g_autofree char *logpath = test_scratch_path("record.log");
    g_autofree char *create = create_opts_str(c);
    g_autofree char *rec_opts = g_strdup_printf(
        "discard=unmap,file.driver=record,file.log=%s,"
        "file.file.driver=file,file.file.filename=%s%s%s", logpath, img,
        c->workload_opts ? "," : "", c->workload_opts ? c->workload_opts : "");
    g_autofree char *opts = open_opts_str(c, rec_opts);
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed);
    TestModel model = {
        .data = g_malloc0(c->size),
        .size = c->size,
        .cluster_size = c->cluster_size,
        .discard_enabled = true,
    };
    int n = workload_length(c);
    BlockBackend *blk;
    GuestOp last = { .op.type = TEST_OP_FLUSH };
    FileImage final = { 0 };

    w->cfg = c;
    w->seed = seed;
    w->ops = g_array_new(FALSE, FALSE, sizeof(GuestOp));
    if (c->backing) {
        create_backing(c, &model);
    }
    w->guest_initial = g_memdup2(model.data, c->size);
    if (c->backing && strstr(c->create_opts, "compat=0.10")) {
        /* No zero clusters: a discard lets the backing file show through. */
        model.discard_shows = w->guest_initial;
    }
    test_create_image(img, "qcow2", c->size, create);
    w->initial = test_read_file(img, &w->initial_len);

    blk = test_open(img, opts, BDRV_O_RDWR);
    while ((int)w->ops->len < n) {
        workload_step(w, blk, rand, &model, logpath);
    }
    /* A last flush, then the close, which writes back what is left. */
    last.first_rec = file_size(logpath);
    guest_op_finish(&last, guest_op_issue(blk, &last, &model), &model);
    last.end_rec = file_size(logpath);
    g_array_append_val(w->ops, last);
    blk_unref(blk);
    last.first_rec = last.end_rec;
    last.end_rec = file_size(logpath);
    g_array_append_val(w->ops, last);
    g_free(model.data);

    log_load(&w->log, logpath);
    state_build_image(w, &(CrashState) { .point = w->log.recs->len,
                                         .durable = w->log.recs->len },
                      &final);
    map_build(&w->map, &final);
    g_free(final.data);
    for (guint i = 0; i < w->ops->len; i++) {
        GuestOp *op = &g_array_index(w->ops, GuestOp, i);
        op->first_rec = log_records_before(&w->log, op->first_rec);
        op->end_rec = log_records_before(&w->log, op->end_rec);
    }
}

static void workload_destroy(Workload *w)
{
    for (guint i = 0; i < w->ops->len; i++) {
        g_free(g_array_index(w->ops, GuestOp, i).after);
    }
    g_array_free(w->ops, TRUE);
    log_destroy(&w->log);
    g_hash_table_unref(w->map.l2_tables);
    g_hash_table_unref(w->map.refblocks);
    g_free(w->initial);
    g_free(w->guest_initial);
}

/* Crash states */

#define APPLIED_ALL UINT64_MAX

/* Changes (not flushes) after the durable prefix that reached the disk. */
static uint64_t state_count_applied(const CrashLog *log, const CrashState *st)
{
    uint64_t n = 0;

    for (uint64_t i = st->durable; i < st->point; i++) {
        const LogRecord *r = &g_array_index(log->recs, LogRecord, i);
        n += st->applied[i - st->durable] && r->type != BLKRECORD_FLUSH;
    }
    return n;
}

/* A torn write: a prefix ending on a sector boundary inside the write. */
static uint64_t torn_length(GRand *rand, const LogRecord *r)
{
    uint64_t first = ROUND_UP(r->offset + 1, SECTOR);
    uint64_t end = r->offset + r->bytes;
    uint64_t cuts;

    if (first >= end) {
        return r->bytes;
    }
    cuts = (end - 1 - first) / SECTOR + 1;
    return first + SECTOR * g_rand_int_range(rand, 0, cuts) - r->offset;
}

typedef enum StateKind {
    STATE_IN_ORDER,     /* the disk wrote everything, in order */
    STATE_SUBSET,       /* each change made it or not, at random */
    STATE_TORN,         /* the same, and some writes torn */
    STATE_ALL_BUT_ONE,  /* one change was lost */
    STATE_ONLY_ONE,     /* one change made it */
    STATE__MAX,
} StateKind;

/* Which changes between the durable prefix and the crash point made it. */
static void state_choose(CrashState *st, const CrashLog *log, GRand *rand,
                         StateKind kind)
{
    static const double keep_probability[] = { 0.2, 0.5, 0.8 };
    double keep = keep_probability[g_rand_int_range(rand, 0, 3)];
    uint64_t n, one;

    st->durable = log->durable[st->point];
    n = st->point - st->durable;
    st->applied = g_new0(uint64_t, n);
    one = n ? (uint64_t)g_rand_int_range(rand, 0, n) : 0;
    for (uint64_t i = 0; i < n; i++) {
        const LogRecord *r = &g_array_index(log->recs, LogRecord,
                                            st->durable + i);
        bool made_it = kind == STATE_IN_ORDER ||
                       (kind == STATE_ALL_BUT_ONE && i != one) ||
                       (kind == STATE_ONLY_ONE && i == one) ||
                       (kind <= STATE_TORN && g_rand_double(rand) < keep);

        st->applied[i] = made_it ? APPLIED_ALL : 0;
        if (kind == STATE_TORN && made_it && r->type == BLKRECORD_WRITE &&
            g_rand_int_range(rand, 0, 3) == 0) {
            st->applied[i] = torn_length(rand, r);
        }
    }
}

static int state_cmp(gconstpointer a, gconstpointer b)
{
    const CrashState *x = a, *y = b;

    return x->point < y->point ? -1 : x->point > y->point;
}

/*
 * A quarter of the states are the clean cuts right after completed
 * flushes; a quarter crash just before a flush completes, when most
 * changes are in the air; half crash at random points.  The first two
 * kinds are spread evenly over the flushes.  Sorted by crash point.
 */
static GArray *states_generate(const Workload *w, int count)
{
    const CrashLog *log = &w->log;
    g_autoptr(GRand) rand = g_rand_new_with_seed(w->seed ^ 0x5eedc0deu);
    g_autoptr(GArray) flushes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    GArray *states = g_array_new(FALSE, TRUE, sizeof(CrashState));
    int per_kind;

    for (guint i = 0; i < log->recs->len; i++) {
        if (g_array_index(log->recs, LogRecord, i).type == BLKRECORD_FLUSH) {
            uint64_t index = i;
            g_array_append_val(flushes, index);
        }
    }
    per_kind = MIN((int)flushes->len, count / 4);
    for (int i = 0; i < count; i++) {
        CrashState st = { .index = i };
        StateKind kind = g_rand_int_range(rand, STATE_SUBSET, STATE__MAX);

        if (i < 2 * per_kind) {
            uint64_t f = g_array_index(flushes, uint64_t,
                                       (uint64_t)(i % per_kind) *
                                       flushes->len / per_kind);
            /* Right after the flush record, or right before it. */
            st.point = i < per_kind ? f + 1 : f;
            kind = i < per_kind ? STATE_IN_ORDER : kind;
        } else {
            st.point = g_rand_int_range(rand, 1, log->recs->len + 1);
            kind = g_rand_int_range(rand, STATE_IN_ORDER, STATE__MAX);
        }
        state_choose(&st, log, rand, kind);
        g_array_append_val(states, st);
    }
    g_array_sort(states, state_cmp);
    return states;
}

static void states_free(GArray *states)
{
    for (guint i = 0; i < states->len; i++) {
        g_free(g_array_index(states, CrashState, i).applied);
    }
    g_array_free(states, TRUE);
}

/*
 * Unlike g_file_set_contents(), no fsync: the file is checked, not kept.
 * A new file each time, as ext4 writes a truncated and rewritten file back
 * when it is closed.
 */
static void write_file_nosync(const char *path, const uint8_t *buf,
                              uint64_t len)
{
    int fd;
    ssize_t n;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    for (uint64_t done = 0; done < len; done += n) {
        n = pwrite(fd, buf + done, len - done, done);
        g_assert_cmpint(n, >, 0);
    }
    close(fd);
}

static void state_build_image(const Workload *w, const CrashState *st,
                              FileImage *f)
{
    const CrashLog *log = &w->log;

    file_image_resize(f, w->initial_len);
    memcpy(f->data, w->initial, w->initial_len);
    for (uint64_t i = 0; i < st->point; i++) {
        const LogRecord *r = &g_array_index(log->recs, LogRecord, i);
        uint64_t a = i < st->durable ? APPLIED_ALL
                     : st->applied[i - st->durable];

        if (a) {
            file_image_apply(f, r, MIN(a, r->bytes));
        }
    }
}

static void state_build_file(const Workload *w, const CrashState *st,
                             const char *path)
{
    FileImage f = { 0 };

    state_build_image(w, st, &f);
    write_file_nosync(path, f.data, f.len);
    g_free(f.data);
}

/* What the guest may read after a crash at the state's point */

typedef struct GuestWindow {
    int barrier;        /* last op of the durable guest state (-1: none) */
    int last;           /* last op that may have changed the file */
} GuestWindow;

static GuestWindow guest_window(const Workload *w, uint64_t point)
{
    GuestWindow win = { .barrier = -1, .last = -1 };

    for (guint i = 0; i < w->ops->len; i++) {
        const GuestOp *g = &g_array_index(w->ops, GuestOp, i);
        if (g->end_rec <= point && guest_op_is_barrier(g)) {
            win.barrier = i;
        }
        if (g->first_rec < point) {
            win.last = i;
        }
    }
    return win;
}

/* Append to fail a description of the guest bytes that must not be. */
static void verify_guest(GString *fail, const Workload *w, GuestWindow win,
                         const uint8_t *got)
{
    uint64_t size = w->cfg->size, bad = 0, first = 0, last = 0;
    g_autofree uint8_t *durable = g_memdup2(w->guest_initial, size);
    g_autofree uint8_t *wrong = g_malloc(size);

    for (int i = 0; i <= win.barrier; i++) {
        const GuestOp *g = &g_array_index(w->ops, GuestOp, i);
        if (g->after) {
            memcpy(durable + g->op.offset, g->after, g->op.bytes);
        }
    }
    /* A byte is right if it is as flushed or as any later op left it. */
    for (uint64_t b = 0; b < size; b++) {
        wrong[b] = got[b] != durable[b];
    }
    for (int i = win.barrier + 1; i <= win.last; i++) {
        const GuestOp *g = &g_array_index(w->ops, GuestOp, i);
        for (uint64_t j = 0; g->after && j < g->op.bytes; j++) {
            wrong[g->op.offset + j] &= got[g->op.offset + j] != g->after[j];
        }
    }
    for (uint64_t b = 0; b < size; b++) {
        if (wrong[b]) {
            first = bad++ ? first : b;
            last = b;
        }
    }
    if (!bad) {
        return;
    }
    g_string_append_printf(fail, "guest data: %" PRIu64 " bytes read what "
                           "was never written there since the last flush, "
                           "from %#" PRIx64 " to %#" PRIx64 " (first: got "
                           "0x%02x, flushed 0x%02x); guest ops since that "
                           "flush:\n", bad, first, last, got[first],
                           durable[first]);
    for (int i = win.barrier + 1; i <= win.last; i++) {
        g_autofree char *s = guest_op_str(&g_array_index(w->ops, GuestOp, i));
        g_string_append_printf(fail, "    #%d %s\n", i, s);
    }
}

/* Repair and check messages can run to thousands of lines. */
#define PRINT_MAX_LINES 12

static void append_lines(GString *out, const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    guint n = g_strv_length(lines);

    for (guint i = 0; i < n && i < PRINT_MAX_LINES; i++) {
        if (*lines[i]) {
            g_string_append_printf(out, "    %s\n", lines[i]);
        }
    }
    if (n > PRINT_MAX_LINES + 1) {
        g_string_append_printf(out, "    ... %u more lines\n",
                               n - PRINT_MAX_LINES - 1);
    }
}

/*
 * Our or the stock qemu-img check must find no corruption: exit 0, or 3
 * (leaked clusters) where leaks_ok.  *leaks tells whether it found leaks.
 */
static void run_check(GString *fail, const char *prog, const char *who,
                      const char *path, bool leaks_ok, bool *leaks)
{
    const char *argv[] = { prog, "check", "-f", "qcow2", path, NULL };
    g_autofree char *out = NULL;
    int status = test_run(&out, argv);

    *leaks = status == 3;
    if (status == 0 || (status == 3 && leaks_ok)) {
        return;
    }
    g_string_append_printf(fail, "%s qemu-img check exited with %d%s:\n",
                           who, status, status == 3 ? " (leaked clusters "
                           "after the open repaired the image)" : "");
    append_lines(fail, out ? out : "");
}

/*
 * Open read-write, which repairs a dirty image; what the repair prints on
 * stderr goes to *chatter instead, for failure reports.
 */
static BlockBackend *open_quietly(const char *path, const char *opts,
                                  char **chatter, Error **errp)
{
    g_autofree char *errpath = test_scratch_path("open.stderr");
    int saved = dup(STDERR_FILENO);
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    BlockBackend *blk;
    size_t len;

    g_assert_cmpint(saved, >=, 0);
    g_assert_cmpint(fd, >=, 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    close(fd);
    blk = blk_new_open(path, keyval_parse(opts, NULL, &error_abort),
                       BDRV_O_RDWR, errp);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    *chatter = (char *)test_read_file(errpath, &len);
    return blk;
}

typedef struct StateResult {
    bool our_leaks;
    bool stock_leaks;
} StateResult;

/* Check one crash state; returns what went wrong (empty: nothing). */
static GString *state_check(const Workload *w, const CrashState *st,
                            StateResult *res)
{
    g_autofree char *path = test_scratch_path("crash.qcow2");
    g_autofree char *opts = open_opts_str(w->cfg, CHECK_OPEN_OPTS);
    const char *stock = test_stock_tool("qemu-img");
    GString *fail = g_string_new(NULL);
    uint64_t size = w->cfg->size;
    g_autofree uint8_t *got = g_malloc(size);
    g_autofree char *chatter = NULL;
    Error *err = NULL;
    BlockBackend *blk;
    int ret;

    memset(res, 0, sizeof(*res));
    state_build_file(w, st, path);
    blk = open_quietly(path, opts, &chatter, &err);
    if (!blk) {
        g_string_append_printf(fail, "open: %s\n", error_get_pretty(err));
        append_lines(fail, chatter);
        error_free(err);
        return fail;
    }
    if (blk_getlength(blk) != (int64_t)size) {
        g_string_append_printf(fail, "guest size %" PRId64 ", not %" PRIu64
                               "\n", blk_getlength(blk), size);
    } else if ((ret = blk_pread(blk, 0, size, got, 0)) < 0) {
        g_string_append_printf(fail, "read: %s\n", g_strerror(-ret));
    } else {
        verify_guest(fail, w, guest_window(w, st->point), got);
    }
    blk_unref(blk);

    run_check(fail, g_getenv("QEMU_IMG_PROG"), "our", path,
              !w->cfg->repaired, &res->our_leaks);
    if (stock) {
        /* Stock QEMU sees our dedup metadata as leaked clusters. */
        run_check(fail, stock, "stock", path, true, &res->stock_leaks);
    }
    if (fail->len && *chatter) {
        g_string_append(fail, "the repairing open printed:\n");
        append_lines(fail, chatter);
    }
    return fail;
}

static void state_print(GString *out, const Workload *w, const CrashState *st)
{
    GuestWindow win = guest_window(w, st->point);

    g_string_append_printf(out, "state %d: crash after record %" PRIu64
                           " of %u; records before %" PRIu64 " durable, %"
                           PRIu64 " changes after them applied; ",
                           st->index, st->point, w->log.recs->len,
                           st->durable, state_count_applied(&w->log, st));
    if (win.barrier >= 0) {
        g_string_append_printf(out, "guest ops up to #%d flushed", win.barrier);
    } else {
        g_string_append(out, "no guest op flushed");
    }
    g_string_append_printf(out, ", #%d..#%d may show\n", win.barrier + 1,
                           win.last);
}

#define PRINT_MAX_RECORDS 40

static void state_print_records(GString *out, const Workload *w,
                                const CrashState *st)
{
    uint64_t shown = 0, total = state_count_applied(&w->log, st);

    for (uint64_t i = st->durable; i < st->point; i++) {
        const LogRecord *r = &g_array_index(w->log.recs, LogRecord, i);
        uint64_t a = st->applied[i - st->durable];

        if (!a || r->type == BLKRECORD_FLUSH) {
            continue;
        }
        if (shown++ == PRINT_MAX_RECORDS) {
            g_string_append_printf(out, "    ... and %" PRIu64 " more\n",
                                   total - PRINT_MAX_RECORDS);
            break;
        }
        g_string_append_printf(out, "    record %" PRIu64 ": %s %#" PRIx64
                               "+%#" PRIx64 " (%s)%s\n", i,
                               record_type_str(r->type), r->offset, r->bytes,
                               map_describe(&w->map, r->offset),
                               r->type == BLKRECORD_WRITE && a < r->bytes
                               ? " torn" : "");
        if (r->type == BLKRECORD_WRITE && a < r->bytes) {
            g_string_append_printf(out, "        only %#" PRIx64 " bytes "
                                   "reached the disk\n", a);
        }
    }
}

/*
 * Drop applied records (halves first, then smaller groups, then single
 * ones) as long as the state still fails: what remains are records whose
 * presence matters for the bug.
 */
static GString *state_shrink(const Workload *w, CrashState *st)
{
    uint64_t n = st->point - st->durable;
    g_autofree uint64_t *saved = g_new(uint64_t, MAX(n, 1));
    int trials = 0;
    StateResult res;

    for (uint64_t chunk = MAX(n / 2, 1); chunk >= 1; chunk /= 2) {
        for (uint64_t start = 0; start < n && trials < SHRINK_MAX_TRIALS;
             start += chunk) {
            uint64_t end = MIN(start + chunk, n);
            bool any = false;

            memcpy(saved, st->applied, n * sizeof(uint64_t));
            for (uint64_t i = start; i < end; i++) {
                any |= st->applied[i] != 0;
                st->applied[i] = 0;
            }
            if (!any) {
                continue;
            }
            trials++;
            g_autoptr(GString) fail = state_check(w, st, &res);
            if (!fail->len) {
                memcpy(st->applied, saved, n * sizeof(uint64_t));
            }
        }
        if (chunk == 1) {
            break;
        }
    }
    return state_check(w, st, &res);
}

/*
 * Tally of the states checked by all tests, in the parent's directory:
 * a line "states our-leaky stock-leaky" per test.
 */
static char *tally_path(void)
{
    return g_build_filename(g_getenv("QEMU_TEST_DIR"), "crash-tally", NULL);
}

static void tally_add(const int counts[3])
{
    g_autofree char *path = tally_path();
    FILE *f = fopen(path, "a");

    g_assert_nonnull(f);
    fprintf(f, "%d %d %d\n", counts[0], counts[1], counts[2]);
    fclose(f);
}

static void tally_print(void)
{
    g_autofree char *path = tally_path();
    g_autofree char *text = NULL;
    int total[3] = { 0 };

    if (g_file_get_contents(path, &text, NULL, NULL)) {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        for (int i = 0; lines[i]; i++) {
            int c[3];
            if (sscanf(lines[i], "%d %d %d", &c[0], &c[1], &c[2]) == 3) {
                for (int j = 0; j < 3; j++) {
                    total[j] += c[j];
                }
            }
        }
    }
    test_note("crash states checked: %d (leaked clusters: %d by our check, "
              "%d by the stock one)", total[0], total[1], total[2]);
}

/* Print the first failing state of a test, and its shrunk form. */
static void report_failure(const Workload *w, CrashState *st,
                           const GString *fail)
{
    g_autoptr(GString) msg = g_string_new(NULL);
    g_autoptr(GString) small = NULL;

    g_string_append_printf(msg, "%s seed %#x: ", w->cfg->name, w->seed);
    state_print(msg, w, st);
    g_string_append(msg, fail->str);
    small = state_shrink(w, st);
    g_string_append(msg, "shrunk to the records after the durable prefix "
                    "that still make it fail:\n");
    state_print(msg, w, st);
    state_print_records(msg, w, st);
    g_string_append(msg, small->str);
    g_string_append_printf(msg, "reproduce: QEMU_CRASH_STATE=%d "
                           "tests/crash/crash-sim -p %s\n", st->index,
                           g_test_get_path());
    test_note("%s", msg->str);
}

static void test_crash(gconstpointer opaque)
{
    const CrashConfig *c = opaque;
    const char *only = g_getenv("QEMU_CRASH_STATE");
    int only_state = only ? (int)g_ascii_strtoll(only, NULL, 0)
                          : c->only_state;
    guint32 seed = test_seed(c->seed);
    gint64 start = g_get_monotonic_time();
    /* states checked, with leaks found by our check, by the stock one */
    int counts[3] = { 0 };
    int failed = 0;
    double workload_time;
    Workload w = { 0 };
    GArray *states;

    if (!g_getenv("QEMU_IMG_PROG")) {
        g_test_skip("QEMU_IMG_PROG (our qemu-img) is not set");
        return;
    }
    if (!test_stock_tool("qemu-img")) {
        test_note("stock qemu-img missing: only our check runs");
    }
    workload_run(&w, c, seed);
    states = states_generate(&w, c->states);
    workload_time = (g_get_monotonic_time() - start) / 1e6;

    for (guint i = 0; i < states->len; i++) {
        CrashState *st = &g_array_index(states, CrashState, i);
        g_autoptr(GString) fail = NULL;
        StateResult res;

        if (only_state >= 0 && st->index != only_state) {
            continue;
        }
        fail = state_check(&w, st, &res);
        counts[0]++;
        counts[1] += res.our_leaks;
        counts[2] += res.stock_leaks;
        if (test_verbose()) {
            g_autoptr(GString) desc = g_string_new(NULL);
            state_print(desc, &w, st);
            state_print_records(desc, &w, st);
            test_note("%s%s", desc->str, fail->len ? fail->str : "ok");
        }
        if (fail->len && failed++ == 0 && !c->expect_failure) {
            report_failure(&w, st, fail);
        }
    }
    test_note("%s seed %#x: %u ops, %u log records in %.1f s; %d states "
              "checked in %.1f s: %d failed; leaked clusters in %d (our "
              "check), %d (stock)", c->name, seed, w.ops->len,
              w.log.recs->len, workload_time, counts[0],
              (g_get_monotonic_time() - start) / 1e6 - workload_time, failed,
              counts[1], counts[2]);
    states_free(states);
    workload_destroy(&w);
    if (c->expect_failure) {
        /* The simulator must notice a driver that never flushes. */
        g_assert_cmpint(failed, >, 0);
    } else {
        tally_add(counts);
        g_assert_cmpint(failed, ==, 0);
    }
}

/* Configurations */

#define TINY_CACHES "l2-cache-size=1024,refcount-cache-size=2048"

#define CONFIG(name_, create_, cs_, size_, ops_, states_, ...) \
    { .name = name_, .create_opts = create_, .cluster_size = cs_, \
      .size = size_, .ops = ops_, .states = states_, __VA_ARGS__ }

static const CrashConfig configs[] = {
    CONFIG("c64k-r16", "cluster_size=64k", 64 * KiB, 8 * MiB, 120, 40),
    CONFIG("c4k-r16-lazy", "cluster_size=4k,lazy_refcounts=on", 4 * KiB,
           4 * MiB, 150, 40, .repaired = true),
    CONFIG("c512-r64-tiny-cache", "cluster_size=512,refcount_bits=64", 512,
           1 * MiB, 150, 40, .open_opts = TINY_CACHES),
    CONFIG("c4k-r1", "cluster_size=4k,refcount_bits=1", 4 * KiB, 4 * MiB,
           150, 30),
    CONFIG("c1k-r8-lazy-tiny-cache",
           "cluster_size=1k,refcount_bits=8,lazy_refcounts=on", 1 * KiB,
           2 * MiB, 150, 30, .open_opts = TINY_CACHES, .repaired = true),
    CONFIG("c64k-v2", "cluster_size=64k,compat=0.10", 64 * KiB, 8 * MiB,
           120, 30),
    CONFIG("c4k-backing", "cluster_size=4k", 4 * KiB, 4 * MiB, 150, 30,
           .backing = true),
    CONFIG("c64k-v2-backing", "cluster_size=64k,compat=0.10", 64 * KiB,
           4 * MiB, 120, 30, .backing = true),
    CONFIG("c16k-backing-lazy", "cluster_size=16k,lazy_refcounts=on",
           16 * KiB, 4 * MiB, 120, 30, .backing = true, .repaired = true),
    CONFIG("c1k-backing-lazy-tiny-cache", "cluster_size=1k,lazy_refcounts=on",
           1 * KiB, 2 * MiB, 150, 30, .backing = true, .repaired = true,
           .open_opts = TINY_CACHES),
};

/* The simulator itself: it must catch a driver whose flushes do nothing. */
static const CrashConfig self_test =
    CONFIG("self-test/no-flush-is-caught", "cluster_size=4k", 4 * KiB,
           4 * MiB, 150, 20, .workload_opts = "cache.no-flush=on",
           .expect_failure = true);

/* Added when our qcow2 offers deduplication. */
static const CrashConfig dedup_configs[] = {
    CONFIG("dedup-c4k", "cluster_size=4k,dedup=sha256", 4 * KiB, 4 * MiB,
           150, 30, .repaired = true),
    CONFIG("dedup-c64k-lazy", "cluster_size=64k,lazy_refcounts=on,"
           "dedup=sha256", 64 * KiB, 8 * MiB, 120, 30, .repaired = true),
};

/*
 * The smallest failing cases found so far, each one state of a short
 * workload: they fail until the bug is fixed (a change of the driver's
 * write pattern can make them pass by chance: the configurations above
 * then still look for the bug).  See docs/devel/crash-simulator.rst.
 */
#define REPRO(name_, base_, seed_, ops_, state_) \
    { .name = name_, .base = base_, .seed = seed_, .ops = ops_, \
      .state = state_ }

typedef struct Reproducer {
    const char *name;
    const char *base;           /* the configuration it shrank from */
    guint32 seed;
    int ops;
    int state;
} Reproducer;

static const Reproducer reproducers[] = {
    /* Lazy refcounts: an L2 table reaches the disk before the data. */
    REPRO("lazy-l2-before-data", "c16k-backing-lazy", 0x4b3d49c7, 3, 17),
    /* The same when a full L2 cache evicts the table, not at a flush. */
    REPRO("lazy-evicted-l2-before-data", "c1k-backing-lazy-tiny-cache",
          0xcec13e9, 20, 14),
    /*
     * The same past the end of the file: the open cannot repair the image
     * ("L2 entry ... points to an invalid offset").
     */
    REPRO("lazy-l2-past-eof-unopenable", "c1k-r8-lazy-tiny-cache",
          0xac192e08, 80, 12),
    /* The same with dedup: copy-on-write data is lost. */
    REPRO("dedup-l2-before-cow-data", "dedup-c4k", 0xabbfec62, 20, 12),
};

static bool qcow2_has_dedup(void)
{
    return qemu_opt_find_desc(bdrv_driver_create_opts(bdrv_find_format(
                                  "qcow2")), "dedup") != NULL;
}

static const CrashConfig *find_config(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(configs); i++) {
        if (!strcmp(configs[i].name, name)) {
            return &configs[i];
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(dedup_configs); i++) {
        if (!strcmp(dedup_configs[i].name, name)) {
            return &dedup_configs[i];
        }
    }
    g_assert_not_reached();
}

static void add_reproducer(const Reproducer *r)
{
    CrashConfig *c = g_memdup2(find_config(r->base), sizeof(*c));
    g_autofree char *path = g_strdup_printf("/crash/repro/%s", r->name);

    c->seed = r->seed;
    c->ops = r->ops;
    c->only_state = r->state;
    c->sequential = true;
    test_add_data_func(path, c, test_crash);
}

static void add_config(const CrashConfig *c)
{
    int seeds = test_long_mode() ? 6 : 1;

    for (int s = 0; s < seeds; s++) {
        CrashConfig *copy = g_memdup2(c, sizeof(*c));
        g_autofree char *path = NULL;

        copy->seed = g_str_hash(c->name) + s;
        if (test_long_mode()) {
            copy->states *= 5;
            path = g_strdup_printf("/crash/%s/seed%d", c->name, s);
        } else {
            path = g_strdup_printf("/crash/%s", c->name);
        }
        copy->only_state = -1;
        test_add_data_func(path, copy, test_crash);
    }
}

int main(int argc, char **argv)
{
    int ret;

    test_init(&argc, &argv);
    for (size_t i = 0; i < G_N_ELEMENTS(configs); i++) {
        add_config(&configs[i]);
    }
    if (qcow2_has_dedup()) {
        for (size_t i = 0; i < G_N_ELEMENTS(dedup_configs); i++) {
            add_config(&dedup_configs[i]);
        }
    }
    add_config(&self_test);
    for (size_t i = 0; i < G_N_ELEMENTS(reproducers); i++) {
        if (!strstr(reproducers[i].base, "dedup") || qcow2_has_dedup()) {
            add_reproducer(&reproducers[i]);
        }
    }
    ret = g_test_run();
    if (!g_test_subprocess()) {
        tally_print();
    }
    return ret;
}

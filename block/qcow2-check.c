/*
 * qcow2 consistency check and repair (qemu-img check, dirty-bit repair).
 *
 * The check recounts every reference from scratch: the header, the active
 * and snapshot L1/L2 tables and the clusters they map, the refcount table
 * and blocks, the snapshot table, persistent bitmaps and clusters waiting in
 * the limbo.  Each cluster's stored refcount is then compared with its
 * count: higher is a leak (space is wasted), lower is a corruption (a write
 * could overwrite shared data).  Finally COPIED flags in the active tables
 * are compared with the stored refcounts.
 *
 * Repair: leaks are fixed in place; if any refcount is too low the whole
 * refcount structure is rebuilt from the recounted references, in clusters
 * past every referenced one, and the header switched to it in one write.
 * Entries pointing at invalid offsets are dropped (the guest then reads
 * zeroes there) with BDRV_FIX_ERRORS.
 */
#include "qemu/osdep.h"
#include "qcow2.h"

typedef struct CheckState {
    BlockDriverState *bs;
    BdrvCheckResult *res;
    BdrvCheckMode fix;
    uint32_t *refs;         /* references per cluster (saturating) */
    uint64_t nb_refs;       /* length of refs */
    uint64_t max_clusters;  /* clusters of the file; references past them
                               are corruptions, as in QEMU */
    uint64_t next_contiguous;
    bool rebuild;           /* a refcount is too low: rebuild all */
} CheckState;

static int refs_grow(CheckState *cs, uint64_t nb)
{
    uint64_t new_nb;
    uint32_t *p;

    if (nb <= cs->nb_refs) {
        return 0;
    }
    new_nb = MAX(nb, cs->nb_refs * 2);
    p = g_try_renew(uint32_t, cs->refs, new_nb);
    if (!p) {
        return -ENOMEM;
    }
    memset(p + cs->nb_refs, 0, (new_nb - cs->nb_refs) * sizeof(*p));
    cs->refs = p;
    cs->nb_refs = new_nb;
    return 0;
}

/* Count one reference to every cluster of [offset, offset + size). */
static int inc_refs(CheckState *cs, uint64_t offset, uint64_t size)
{
    BDRVQcow2State *s = cs->bs->opaque;
    uint64_t first, last;

    if (size == 0) {
        return 0;
    }
    first = offset >> s->cluster_bits;
    last = (offset + size - 1) >> s->cluster_bits;
    if (offset + size < offset) {
        cs->res->corruptions++;
        return -EINVAL;
    }
    for (uint64_t c = MAX(first, cs->max_clusters); c <= last; c++) {
        fprintf(stderr, "ERROR: counting reference for region exceeding the "
                "end of the file by one cluster or more: offset %#" PRIx64
                " size %#x\n", c << s->cluster_bits, s->cluster_size);
        cs->res->corruptions++;
    }
    if (last >= cs->max_clusters) {
        if (first >= cs->max_clusters) {
            return 0;
        }
        last = cs->max_clusters - 1;
    }
    if (refs_grow(cs, last + 1) < 0) {
        cs->res->check_errors++;
        return -ENOMEM;
    }
    for (uint64_t c = first; c <= last; c++) {
        if (cs->refs[c] < UINT32_MAX) {
            cs->refs[c]++;
        }
    }
    return 0;
}

/* Aligned; an offset past the end of the file is reported by inc_refs(). */
static bool entry_offset_valid(CheckState *cs, uint64_t offset)
{
    BDRVQcow2State *s = cs->bs->opaque;

    return !offset_into_cluster(s, offset);
}

/* The entry a repair puts where an invalid mapping was. */
static uint64_t dropped_l2_entry(BDRVQcow2State *s)
{
    return s->qcow_version >= 3 ? QCOW_OFLAG_ZERO : 0;
}

static void count_data_cluster(CheckState *cs, uint64_t offset, bool active)
{
    BDRVQcow2State *s = cs->bs->opaque;

    if (!active) {
        return;
    }
    cs->res->bfi.allocated_clusters++;
    if (cs->next_contiguous && offset != cs->next_contiguous) {
        cs->res->bfi.fragmented_clusters++;
    }
    cs->next_contiguous = offset + s->cluster_size;
}

/* Count the references of one L2 entry; true if it must be dropped. */
static bool check_l2_entry(CheckState *cs, uint64_t *entry, bool active)
{
    BlockDriverState *bs = cs->bs;
    BDRVQcow2State *s = bs->opaque;
    uint64_t e = *entry;

    switch (qcow2_get_cluster_type(bs, e)) {
    case QCOW2_CLUSTER_COMPRESSED: {
        uint64_t coffset;
        int csize;
        if (e & QCOW_OFLAG_COPIED) {
            fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must "
                    "never be set for compressed clusters\n",
                    (uint64_t)(e & ((1ULL << 62) - 1)));
            cs->res->corruptions++;
            if (cs->fix & BDRV_FIX_ERRORS) {
                *entry = e & ~QCOW_OFLAG_COPIED;
                cs->res->corruptions_fixed++;
                cs->res->corruptions--;
            }
        }
        qcow2_parse_compressed_l2_entry(bs, e, &coffset, &csize);
        if (active) {
            /* QEMU counts every compressed cluster as fragmented. */
            cs->res->bfi.allocated_clusters++;
            cs->res->bfi.compressed_clusters++;
            cs->res->bfi.fragmented_clusters++;
        }
        return inc_refs(cs, coffset, csize) < 0 &&
               (cs->fix & BDRV_FIX_ERRORS);
    }
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC: {
        uint64_t host = qcow2_l2_host_offset(e);
        if (!entry_offset_valid(cs, host)) {
            fprintf(stderr, "ERROR: L2 entry %#" PRIx64 " points to an "
                    "invalid offset %#" PRIx64 "\n", e, host);
            cs->res->corruptions++;
            return cs->fix & BDRV_FIX_ERRORS;
        }
        count_data_cluster(cs, host, active);
        inc_refs(cs, host, s->cluster_size);
        return false;
    }
    default:
        return false;
    }
}

static int check_l2_table(CheckState *cs, uint64_t l2_offset, bool active)
{
    BlockDriverState *bs = cs->bs;
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *table = g_malloc(s->cluster_size);
    bool changed = false;
    int ret;

    /* Fragmentation is counted within each L2 table, as QEMU does. */
    cs->next_contiguous = 0;
    ret = bdrv_pread(bs->file, l2_offset, s->cluster_size, table, 0);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        cs->res->check_errors++;
        return ret;
    }
    for (int i = 0; i < s->l2_size; i++) {
        uint64_t e = GUINT64_FROM_BE(table[i]), orig = e;
        if (check_l2_entry(cs, &e, active)) {
            e = dropped_l2_entry(s);
            cs->res->corruptions--;
            cs->res->corruptions_fixed++;
        }
        if (e != orig) {
            table[i] = GUINT64_TO_BE(e);
            changed = true;
        }
    }
    if (changed) {
        qcow2_cache_discard(s->l2_table_cache, l2_offset);
        ret = bdrv_pwrite(bs->file, l2_offset, s->cluster_size, table, 0);
        if (ret < 0) {
            cs->res->check_errors++;
            return ret;
        }
    }
    return 0;
}

/* Count an L1 table and everything reachable from it. */
static int check_l1_table(CheckState *cs, uint64_t l1_offset, uint32_t l1_size,
                          uint64_t *l1, bool active)
{
    BDRVQcow2State *s = cs->bs->opaque;
    g_autofree uint64_t *loaded = NULL;
    int ret;

    if (inc_refs(cs, l1_offset, (uint64_t)l1_size * 8) < 0) {
        return 0;
    }
    if (!l1) {
        loaded = g_try_new(uint64_t, MAX(l1_size, 1));
        if (!loaded) {
            cs->res->check_errors++;
            return -ENOMEM;
        }
        ret = bdrv_pread(cs->bs->file, l1_offset, (uint64_t)l1_size * 8,
                         loaded, 0);
        if (ret < 0) {
            fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
            cs->res->check_errors++;
            return ret;
        }
        for (uint32_t i = 0; i < l1_size; i++) {
            loaded[i] = GUINT64_FROM_BE(loaded[i]);
        }
        l1 = loaded;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2 = l1[i] & L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        if (!entry_offset_valid(cs, l2)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not "
                    "cluster aligned; L1 entry corrupted\n", l2);
            cs->res->corruptions++;
            if (active && (cs->fix & BDRV_FIX_ERRORS)) {
                s->l1_table[i] = 0;
                if (qcow2_write_l1_entry(cs->bs, i) == 0) {
                    cs->res->corruptions--;
                    cs->res->corruptions_fixed++;
                }
            }
            continue;
        }
        inc_refs(cs, l2, s->cluster_size);
        ret = check_l2_table(cs, l2, active);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int check_refcount_structure(CheckState *cs)
{
    BDRVQcow2State *s = cs->bs->opaque;

    inc_refs(cs, s->refcount_table_offset,
             (uint64_t)s->refcount_table_size * 8);
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t block = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (!block) {
            continue;
        }
        if (!entry_offset_valid(cs, block)) {
            fprintf(stderr, "ERROR refcount block %" PRIu32 " is not "
                    "cluster aligned or outside the image; refcount table "
                    "entry corrupted\n", i);
            cs->res->corruptions++;
            cs->rebuild = true;
            continue;
        }
        inc_refs(cs, block, s->cluster_size);
    }
    return 0;
}

/* Persistent bitmaps stock QEMU may have stored (directory, tables, data). */
static int check_bitmaps(CheckState *cs)
{
    BDRVQcow2State *s = cs->bs->opaque;
    g_autofree uint8_t *dir = NULL;
    uint64_t pos = 0;

    if (!s->has_bitmaps_ext || !(s->autoclear_features &
                                 QCOW2_AUTOCLEAR_BITMAPS)) {
        return 0;
    }
    if (s->bitmap_directory_size > 64 * 1024 * 1024) {
        cs->res->corruptions++;
        return 0;
    }
    dir = g_malloc(MAX(s->bitmap_directory_size, 1));
    if (bdrv_pread(cs->bs->file, s->bitmap_directory_offset,
                   s->bitmap_directory_size, dir, 0) < 0) {
        cs->res->check_errors++;
        return -EIO;
    }
    inc_refs(cs, s->bitmap_directory_offset, s->bitmap_directory_size);
    for (uint32_t n = 0; n < s->nb_bitmaps; n++) {
        if (pos + 24 > s->bitmap_directory_size) {
            cs->res->corruptions++;
            break;
        }
        uint64_t table_offset = ldq_be_p(dir + pos);
        uint32_t table_size = ldl_be_p(dir + pos + 8);
        uint16_t name_size = lduw_be_p(dir + pos + 18);
        uint32_t extra = ldl_be_p(dir + pos + 20);
        g_autofree uint64_t *table = g_try_new(uint64_t, MAX(table_size, 1));

        pos += ROUND_UP(24 + (uint64_t)extra + name_size, 8);
        if (!table || bdrv_pread(cs->bs->file, table_offset,
                                 (uint64_t)table_size * 8, table, 0) < 0) {
            cs->res->check_errors++;
            continue;
        }
        inc_refs(cs, table_offset, (uint64_t)table_size * 8);
        for (uint32_t i = 0; i < table_size; i++) {
            uint64_t data = GUINT64_FROM_BE(table[i]) & L1E_OFFSET_MASK;
            if (data) {
                inc_refs(cs, data, s->cluster_size);
            }
        }
    }
    return 0;
}

static int inc_refs_cb(void *opaque, uint64_t offset, uint64_t size)
{
    return inc_refs(opaque, offset, size);
}

static void count_all_references(CheckState *cs)
{
    BDRVQcow2State *s = cs->bs->opaque;

    qcow2_dedup_count_refs(cs->bs, inc_refs_cb, cs);
    inc_refs(cs, 0, s->cluster_size);
    check_l1_table(cs, s->l1_table_offset, s->l1_size, s->l1_table, true);
    if (s->nb_snapshots) {
        inc_refs(cs, s->snapshots_offset, s->snapshots_size);
    }
    for (int i = 0; i < s->nb_snapshots; i++) {
        check_l1_table(cs, s->snapshots[i].l1_table_offset,
                       s->snapshots[i].l1_size, NULL, false);
    }
    check_bitmaps(cs);
    for (guint i = 0; i < s->limbo->len; i++) {
        Qcow2LimboEntry *e = &g_array_index(s->limbo, Qcow2LimboEntry, i);
        inc_refs(cs, e->offset, e->nb_clusters << s->cluster_bits);
    }
}

/* Fix the leaks found by compare_refcounts(), after all were reported. */
static void repair_leaks(CheckState *cs, GArray *leaks)
{
    for (guint i = 0; i < leaks->len; i++) {
        uint64_t c = g_array_index(leaks, uint64_t, i);
        uint64_t refcount, refs = c < cs->nb_refs ? cs->refs[c] : 0;

        if (qcow2_get_refcount(cs->bs, c, &refcount) < 0) {
            cs->res->leaks++;
            continue;
        }
        fprintf(stderr, "Repairing cluster %" PRIu64 " refcount=%" PRIu64
                " reference=%" PRIu64 "\n", c, refcount, refs);
        if (qcow2_update_cluster_refcount(cs->bs, c, (int64_t)refs -
                                          (int64_t)refcount) == 0) {
            cs->res->leaks_fixed++;
        } else {
            cs->res->leaks++;
        }
    }
}

/*
 * Compare stored refcounts with the counted references: report every
 * mismatch first, then fix the leaks if asked to (too-low refcounts are
 * fixed by rebuilding the refcount structure afterwards).
 */
static void compare_refcounts(CheckState *cs, uint64_t nb_clusters)
{
    BlockDriverState *bs = cs->bs;
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GArray) leaks = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    for (uint64_t i = 0; i < nb_clusters; i++) {
        uint64_t refcount, refs = i < cs->nb_refs ? cs->refs[i] : 0;
        int ret = qcow2_get_refcount(bs, i, &refcount);

        if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n",
                    i, g_strerror(-ret));
            cs->res->check_errors++;
            continue;
        }
        if (refcount > 0 || refs > 0) {
            cs->res->image_end_offset = (i + 1) << s->cluster_bits;
        }
        if (refcount == refs) {
            continue;
        }
        bool leak = refcount > refs;
        fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64
                " reference=%" PRIu64 "\n", leak ? "Leaked" : "ERROR",
                i, refcount, refs);
        if (!leak) {
            cs->res->corruptions++;
            cs->rebuild |= cs->fix & BDRV_FIX_ERRORS;
        } else if (cs->fix & BDRV_FIX_LEAKS) {
            g_array_append_val(leaks, i);
        } else {
            cs->res->leaks++;
        }
    }
    repair_leaks(cs, leaks);
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Host cluster indexes of the current refcount table and blocks, sorted. */
static void collect_refcount_structure(CheckState *cs, GArray *out)
{
    BDRVQcow2State *s = cs->bs->opaque;
    uint64_t first = s->refcount_table_offset >> s->cluster_bits;
    uint64_t n = size_to_clusters(s, (uint64_t)s->refcount_table_size * 8);

    for (uint64_t c = first; c < first + n; c++) {
        g_array_append_val(out, c);
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t block = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (block && entry_offset_valid(cs, block)) {
            uint64_t c = block >> s->cluster_bits;
            g_array_append_val(out, c);
        }
    }
    g_array_sort(out, cmp_u64);
}

/*
 * Write a complete new refcount structure for the counted references into
 * the clusters after the last referenced one, then switch the header.
 */
static int rebuild_refcount_structure(CheckState *cs, uint64_t nb_clusters)
{
    BlockDriverState *bs = cs->bs;
    BDRVQcow2State *s = bs->opaque;
    uint64_t entries = s->refcount_block_size;
    uint64_t area, nb_blocks = 0, table_clusters = 1, total;
    g_autofree uint8_t *block = NULL;
    g_autofree uint64_t *table = NULL;
    uint8_t header_update[12];
    int ret;

    g_autoptr(GArray) old = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    fprintf(stderr, "Rebuilding refcount structure\n");
    ret = qcow2_cache_empty(bs, s->refcount_block_cache);
    if (ret < 0) {
        return ret;
    }
    /* The old structure's clusters are not references of the new one. */
    collect_refcount_structure(cs, old);
    for (guint i = 0; i < old->len; i++) {
        uint64_t c = g_array_index(old, uint64_t, i);
        if (c < cs->nb_refs && cs->refs[c]) {
            cs->refs[c]--;
        }
    }
    area = 0;
    for (uint64_t i = 0; i < cs->nb_refs; i++) {
        if (cs->refs[i]) {
            area = i + 1;
        }
    }
    for (;;) {
        total = area + nb_blocks + table_clusters;
        uint64_t blocks = DIV_ROUND_UP(total, entries);
        uint64_t tclusters = size_to_clusters(s, blocks * 8);
        if (blocks == nb_blocks && tclusters == table_clusters) {
            break;
        }
        nb_blocks = blocks;
        table_clusters = tclusters;
    }
    if (refs_grow(cs, total) < 0 || cs->nb_refs < total) {
        return -ENOMEM;
    }
    for (uint64_t i = area; i < total; i++) {
        cs->refs[i] = 1;
    }
    block = qemu_blockalign(s->cluster_size);
    table = g_new0(uint64_t, table_clusters * s->cluster_size / 8);
    for (uint64_t b = 0; b < nb_blocks; b++) {
        memset(block, 0, s->cluster_size);
        for (uint64_t j = 0; j < entries && b * entries + j < total; j++) {
            qcow2_refcount_entry_set(block, j, s->refcount_order,
                                     MIN(cs->refs[b * entries + j],
                                         s->refcount_max));
        }
        uint64_t block_offset = (area + b) << s->cluster_bits;
        ret = bdrv_pwrite(bs->file, block_offset, s->cluster_size, block, 0);
        if (ret < 0) {
            return ret;
        }
        table[b] = GUINT64_TO_BE(block_offset);
    }
    uint64_t table_offset = (area + nb_blocks) << s->cluster_bits;
    ret = bdrv_pwrite(bs->file, table_offset, table_clusters * s->cluster_size,
                      table, 0);
    if (ret < 0 || (ret = bdrv_flush(bs->file)) < 0) {
        return ret;
    }
    stq_be_p(header_update, table_offset);
    stl_be_p(header_update + 8, table_clusters);
    ret = bdrv_pwrite_sync(bs->file, offsetof(QCowHeader, refcount_table_offset),
                           sizeof(header_update), header_update, 0);
    if (ret < 0) {
        return ret;
    }
    g_free(s->refcount_table);
    s->refcount_table_size = table_clusters * s->cluster_size / 8;
    s->refcount_table = g_new0(uint64_t, s->refcount_table_size);
    for (uint64_t b = 0; b < nb_blocks; b++) {
        s->refcount_table[b] = GUINT64_FROM_BE(table[b]);
    }
    s->refcount_table_offset = table_offset;
    s->free_cluster_index = 0;
    for (guint i = 0; i < old->len; i++) {
        uint64_t c = g_array_index(old, uint64_t, i);
        if (c >= cs->nb_refs || !cs->refs[c]) {
            fprintf(stderr, "Repairing cluster %" PRIu64 " refcount=1 "
                    "reference=0\n", c);
        }
    }
    g_hash_table_remove_all(s->metadata_clusters);
    qcow2_metadata_build(bs);
    (void)nb_clusters;
    return 0;
}

/*
 * Active tables: COPIED must be set exactly where the refcount is 1.
 * report: print and count mismatches (check); otherwise fix them quietly.
 */
static int check_oflag_copied(CheckState *cs, bool report)
{
    BlockDriverState *bs = cs->bs;
    BDRVQcow2State *s = bs->opaque;
    /* Like QEMU, either repair mode fixes COPIED flags. */
    bool repair = !report || (cs->fix & (BDRV_FIX_ERRORS | BDRV_FIX_LEAKS));
    int ret;

    for (int i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK, refcount;
        void *table;

        if (!l2 || !entry_offset_valid(cs, l2)) {
            continue;
        }
        ret = qcow2_get_refcount(bs, l2 >> s->cluster_bits, &refcount);
        if (ret < 0) {
            cs->res->check_errors++;
            continue;
        }
        if ((refcount == 1) != !!(s->l1_table[i] & QCOW_OFLAG_COPIED)) {
            if (report) {
                fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%d "
                        "l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                        repair ? "Repairing" : "ERROR", i, s->l1_table[i],
                        refcount);
            }
            if (repair) {
                s->l1_table[i] ^= QCOW_OFLAG_COPIED;
                ret = qcow2_write_l1_entry(bs, i);
                cs->res->corruptions_fixed += ret == 0;
                cs->res->corruptions += ret < 0;
            } else {
                cs->res->corruptions++;
            }
        }
        ret = qcow2_cache_get(bs, s->l2_table_cache, l2, &table);
        if (ret < 0) {
            cs->res->check_errors++;
            continue;
        }
        for (int j = 0; j < s->l2_size; j++) {
            uint64_t e = ldq_be_p((uint64_t *)table + j);
            QCow2ClusterType type = qcow2_get_cluster_type(bs, e);
            if ((type != QCOW2_CLUSTER_NORMAL &&
                 type != QCOW2_CLUSTER_ZERO_ALLOC) ||
                !entry_offset_valid(cs, qcow2_l2_host_offset(e))) {
                continue;
            }
            ret = qcow2_get_refcount(bs, e >> s->cluster_bits &
                                     (L2E_OFFSET_MASK >> s->cluster_bits),
                                     &refcount);
            if (ret < 0) {
                cs->res->check_errors++;
                continue;
            }
            if ((refcount == 1) == !!(e & QCOW_OFLAG_COPIED)) {
                continue;
            }
            if (report) {
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%"
                        PRIx64 " refcount=%" PRIu64 "\n",
                        repair ? "Repairing" : "ERROR", e, refcount);
            }
            if (repair) {
                stq_be_p((uint64_t *)table + j, e ^ QCOW_OFLAG_COPIED);
                qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
                cs->res->corruptions_fixed++;
            } else {
                cs->res->corruptions++;
            }
        }
        qcow2_cache_put(s->l2_table_cache, &table);
    }
    return 0;
}

int qcow2_check_refcounts(BlockDriverState *bs, BdrvCheckResult *res,
                          BdrvCheckMode fix)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t file_len = bdrv_getlength(bs->file);
    uint64_t nb_clusters;
    CheckState cs = { .bs = bs, .res = res, .fix = fix };
    int ret;

    memset(res, 0, sizeof(*res));
    if (file_len < 0) {
        res->check_errors++;
        return file_len;
    }
    if (!bs->read_only) {
        ret = qcow2_write_caches(bs);
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
    }
    nb_clusters = size_to_clusters(s, file_len);
    cs.max_clusters = nb_clusters;
    res->bfi.total_clusters = size_to_clusters(s, s->size);

    count_all_references(&cs);
    check_refcount_structure(&cs);
    compare_refcounts(&cs, nb_clusters);
    if (cs.rebuild && (fix & BDRV_FIX_ERRORS)) {
        int fixed_before = res->corruptions;
        ret = rebuild_refcount_structure(&cs, nb_clusters);
        if (ret < 0) {
            res->check_errors++;
        } else {
            res->corruptions_fixed += fixed_before;
            res->corruptions = 0;
        }
    }
    check_oflag_copied(&cs, true);
    qcow2_dedup_check(bs, res, fix, fix & BDRV_CHECK_DEEP);
    if ((fix & (BDRV_FIX_LEAKS | BDRV_FIX_ERRORS)) && !bs->read_only) {
        ret = qcow2_flush_caches(bs);
        if (ret < 0) {
            res->check_errors++;
        }
    }
    g_free(cs.refs);
    return 0;
}

int qcow2_sync_copied_flags(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    BdrvCheckResult res = { 0 };
    CheckState cs = {
        .bs = bs,
        .res = &res,
        .max_clusters = size_to_clusters(s, bdrv_getlength(bs->file)),
    };

    check_oflag_copied(&cs, false);
    return res.check_errors ? -EIO : 0;
}

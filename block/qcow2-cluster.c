/*
 * qcow2 cluster mapping: L1/L2 lookup, allocating clusters for writes,
 * linking them into L2 tables, zeroing and discarding clusters, growing L1.
 *
 * An L2 table is only ever modified when its L1 entry has COPIED set
 * (refcount 1); a table shared with a snapshot is copied first.  An L2 entry
 * is pointed at new clusters only after the guest data was written there
 * (qcow2_alloc_cluster_link_l2 runs after the data write).
 */
#include "qemu/osdep.h"
#include "qcow2.h"

QCow2ClusterType qcow2_get_cluster_type(BlockDriverState *bs,
                                        uint64_t l2_entry)
{
    (void)bs;
    if (l2_entry & QCOW_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if (l2_entry & QCOW_OFLAG_ZERO) {
        return (l2_entry & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC
                                             : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    return (l2_entry & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_NORMAL
                                        : QCOW2_CLUSTER_UNALLOCATED;
}

void qcow2_parse_compressed_l2_entry(BlockDriverState *bs, uint64_t l2_entry,
                                     uint64_t *coffset, int *csize)
{
    BDRVQcow2State *s = bs->opaque;
    int x = 62 - (s->cluster_bits - 8);
    uint64_t sector_mask = (1ULL << (s->cluster_bits - 8)) - 1;
    uint64_t nb_sectors = ((l2_entry >> x) & sector_mask) + 1;

    *coffset = l2_entry & ((1ULL << x) - 1);
    *csize = nb_sectors * 512 - (*coffset & 511);
}

/* L1 */

int qcow2_write_l1_entry(BlockDriverState *bs, int l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t buf[512 / 8];
    int first = QEMU_ALIGN_DOWN(l1_index, 64);

    /* Write the whole 512-byte unit, so O_DIRECT needs no read first. */
    for (int i = 0; i < 64; i++) {
        buf[i] = first + i < s->l1_size ? GUINT64_TO_BE(s->l1_table[first + i])
                                        : 0;
    }
    return bdrv_pwrite(bs->file, s->l1_table_offset + (uint64_t)first * 8,
                       sizeof(buf), buf, 0);
}

int qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t new_bytes, old_offset = s->l1_table_offset;
    uint64_t old_bytes = (uint64_t)s->l1_size * 8;
    uint64_t *new_table;
    int64_t new_offset;
    uint8_t header_update[12];
    int ret;

    if (min_size <= (uint64_t)s->l1_size) {
        return 0;
    }
    if (min_size > QCOW_MAX_L1_SIZE / 8) {
        return -EFBIG;
    }
    new_bytes = ROUND_UP(min_size * 8, s->cluster_size);
    new_table = qemu_try_blockalign(new_bytes);
    if (!new_table) {
        return -ENOMEM;
    }
    memset(new_table, 0, new_bytes);
    for (int i = 0; i < s->l1_size; i++) {
        new_table[i] = GUINT64_TO_BE(s->l1_table[i]);
    }
    new_offset = qcow2_alloc_clusters(bs, new_bytes);
    if (new_offset < 0) {
        qemu_vfree(new_table);
        return new_offset;
    }
    /* Caches first: the new table may point at L2 tables not written yet. */
    ret = qcow2_cache_flush(bs, s->l2_table_cache);
    if (ret == 0) {
        /* Only the entries: the rest of the last cluster is never read. */
        ret = bdrv_pwrite(bs->file, new_offset, min_size * 8, new_table, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        stl_be_p(header_update, min_size);
        stq_be_p(header_update + 4, new_offset);
        ret = bdrv_pwrite_sync(bs->file, offsetof(QCowHeader, l1_size),
                               sizeof(header_update), header_update, 0);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, new_offset, new_bytes);
        qemu_vfree(new_table);
        return ret;
    }
    for (uint64_t i = 0; i < min_size; i++) {
        new_table[i] = GUINT64_FROM_BE(new_table[i]);
    }
    qcow2_metadata_add(bs, new_offset, new_bytes);
    if (old_bytes) {
        qcow2_metadata_remove(bs, old_offset, old_bytes);
        qcow2_free_clusters(bs, old_offset, old_bytes);
    }
    g_free(s->l1_table);
    s->l1_table = g_memdup2(new_table, min_size * 8);
    qemu_vfree(new_table);
    s->l1_size = min_size;
    s->l1_table_offset = new_offset;
    return 0;
}

/* L2 table access */

static int l2_offset_valid(BlockDriverState *bs, int l1_index, uint64_t l2)
{
    BDRVQcow2State *s = bs->opaque;

    if (offset_into_cluster(s, l2)) {
        qcow2_signal_corruption(bs, l2, s->cluster_size, "L2 table offset "
                                "%#" PRIx64 " unaligned (L1 index: %#x)",
                                l2, l1_index);
        return -EIO;
    }
    return 0;
}

/* The L2 table covering offset, or *table NULL if there is none. */
static int get_l2_table(BlockDriverState *bs, uint64_t offset, void **table)
{
    BDRVQcow2State *s = bs->opaque;
    int l1_index = offset_to_l1_index(s, offset);
    uint64_t l2;
    int ret;

    *table = NULL;
    if (l1_index >= s->l1_size) {
        return 0;
    }
    l2 = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    if (!l2) {
        return 0;
    }
    ret = l2_offset_valid(bs, l1_index, l2);
    if (ret < 0) {
        return ret;
    }
    return qcow2_cache_get(bs, s->l2_table_cache, l2, table);
}

/*
 * Give the L1 entry an L2 table of its own (COPIED): a new empty one, or a
 * copy of the table it shares with a snapshot.  The new table is on disk
 * before the L1 entry points at it.
 */
static int l2_allocate(BlockDriverState *bs, int l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_entry = s->l1_table[l1_index];
    uint64_t old_l2 = old_entry & L1E_OFFSET_MASK;
    void *old_table = NULL, *table;
    int64_t l2_offset;
    int ret;

    l2_offset = qcow2_alloc_clusters(bs, s->cluster_size);
    if (l2_offset < 0) {
        return l2_offset;
    }
    qcow2_metadata_add(bs, l2_offset, s->cluster_size);
    /* Metadata tables get accurate refcounts even with lazy refcounts. */
    qcow2_cache_set_dependency(s->l2_table_cache, s->refcount_block_cache);
    ret = qcow2_cache_get_empty(bs, s->l2_table_cache, l2_offset, &table);
    if (ret < 0) {
        goto fail;
    }
    if (old_l2) {
        ret = qcow2_cache_get(bs, s->l2_table_cache, old_l2, &old_table);
        if (ret < 0) {
            qcow2_cache_put(s->l2_table_cache, &table);
            goto fail;
        }
        memcpy(table, old_table, s->cluster_size);
        qcow2_cache_put(s->l2_table_cache, &old_table);
    } else {
        memset(table, 0, s->cluster_size);
    }
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
    qcow2_cache_put(s->l2_table_cache, &table);
    ret = qcow2_cache_flush(bs, s->l2_table_cache);
    if (ret < 0) {
        goto fail;
    }
    s->l1_table[l1_index] = l2_offset | QCOW_OFLAG_COPIED;
    ret = qcow2_write_l1_entry(bs, l1_index);
    if (ret < 0) {
        s->l1_table[l1_index] = old_entry;
        goto fail;
    }
    if (old_l2) {
        qcow2_free_clusters(bs, old_l2, s->cluster_size);
    }
    return 0;

fail:
    qcow2_cache_discard(s->l2_table_cache, l2_offset);
    qcow2_metadata_remove(bs, l2_offset, s->cluster_size);
    qcow2_free_clusters(bs, l2_offset, s->cluster_size);
    return ret;
}

/* The L2 table covering offset, made writable (allocated or copied). */
static int get_l2_table_for_write(BlockDriverState *bs, uint64_t offset,
                                  void **table)
{
    BDRVQcow2State *s = bs->opaque;
    int l1_index = offset_to_l1_index(s, offset);
    int ret;

    if (l1_index >= s->l1_size) {
        ret = qcow2_grow_l1_table(bs, l1_index + 1);
        if (ret < 0) {
            return ret;
        }
    }
    if (!(s->l1_table[l1_index] & QCOW_OFLAG_COPIED)) {
        ret = l2_allocate(bs, l1_index);
        if (ret < 0) {
            return ret;
        }
    }
    return get_l2_table(bs, offset, table);
}

static uint64_t l2_get(void *table, int index)
{
    return ldq_be_p((uint64_t *)table + index);
}

static void l2_set(void *table, int index, uint64_t entry)
{
    stq_be_p((uint64_t *)table + index, entry);
}

/* Lookup */

static int check_entry_offset(BlockDriverState *bs, uint64_t l2_entry,
                              QCow2ClusterType type, uint64_t guest_offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t host = qcow2_l2_host_offset(l2_entry);

    if ((type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_ZERO_ALLOC) &&
        offset_into_cluster(s, host)) {
        qcow2_signal_corruption(bs, host, s->cluster_size, "Cluster "
                                "allocation offset %#" PRIx64 " unaligned "
                                "(guest offset: %#" PRIx64 ")", host,
                                guest_offset);
        return -EIO;
    }
    return 0;
}

int qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset,
                          uint64_t *bytes, uint64_t *host_offset,
                          QCow2ClusterType *type)
{
    BDRVQcow2State *s = bs->opaque;
    int l2_index = offset_to_l2_index(s, offset);
    uint64_t in_cluster = offset_into_cluster(s, offset);
    uint64_t max_bytes = ((uint64_t)(s->l2_size - l2_index) << s->cluster_bits)
                         - in_cluster;
    uint64_t first, n = 1;
    void *table;
    int ret;

    *bytes = MIN(*bytes, max_bytes);
    *host_offset = 0;
    ret = get_l2_table(bs, offset, &table);
    if (ret < 0) {
        return ret;
    }
    if (!table) {
        *type = QCOW2_CLUSTER_UNALLOCATED;
        return 0;
    }
    first = l2_get(table, l2_index);
    *type = qcow2_get_cluster_type(bs, first);
    ret = check_entry_offset(bs, first, *type, offset);
    if (ret < 0) {
        qcow2_cache_put(s->l2_table_cache, &table);
        return ret;
    }
    uint64_t wanted = size_to_clusters(s, in_cluster + *bytes);
    if (*type != QCOW2_CLUSTER_COMPRESSED) {
        /* Extend over entries of the same type (and contiguous host offsets). */
        uint64_t flags_mask = QCOW_OFLAG_COPIED | QCOW_OFLAG_ZERO;
        for (; n < wanted; n++) {
            uint64_t e = l2_get(table, l2_index + n);
            if (qcow2_get_cluster_type(bs, e) != *type) {
                break;
            }
            if (qcow2_l2_host_offset(first) &&
                (qcow2_l2_host_offset(e) != qcow2_l2_host_offset(first) +
                 (n << s->cluster_bits) ||
                 (e & flags_mask) != (first & flags_mask))) {
                break;
            }
        }
    }
    qcow2_cache_put(s->l2_table_cache, &table);
    *bytes = MIN(*bytes, (n << s->cluster_bits) - in_cluster);
    if (*type == QCOW2_CLUSTER_COMPRESSED) {
        *host_offset = first;
    } else if (qcow2_l2_host_offset(first)) {
        *host_offset = qcow2_l2_host_offset(first) + in_cluster;
    }
    return 0;
}

/* In-flight allocations */

static bool range_overlaps(uint64_t a, uint64_t alen, uint64_t b,
                           uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/*
 * Wait while an in-flight allocation overlaps the first cluster of the
 * range, then shorten *bytes to end before any later one.  Returns true if
 * it had to wait (the caller must look the mapping up again).
 */
static bool wait_for_overlapping_allocs(BlockDriverState *bs, uint64_t offset,
                                        uint64_t *bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = start_of_cluster(s, offset);

    for (QCowL2Meta *m = s->cluster_allocs; m; m = m->next) {
        uint64_t len = (uint64_t)m->nb_clusters << s->cluster_bits;
        if (range_overlaps(m->guest_offset, len, first, s->cluster_size)) {
            g_cond_wait(&s->alloc_cond, &s->lock);
            return true;
        }
        if (range_overlaps(m->guest_offset, len, offset, *bytes)) {
            *bytes = m->guest_offset - offset;
        }
    }
    return false;
}

/*
 * Written in place only if this guest cluster alone owns it and the index
 * does not name it.  With dedup, COPIED is made exact only at close, so the
 * refcount itself decides while the image is open.
 */
static bool cluster_writable_in_place(BlockDriverState *bs, uint64_t l2_entry)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t host = qcow2_l2_host_offset(l2_entry), refcount;

    if (!(l2_entry & QCOW_OFLAG_COPIED) ||
        (l2_entry & (QCOW_OFLAG_COMPRESSED | QCOW_OFLAG_ZERO)) || !host) {
        return false;
    }
    if (!s->dedup) {
        return true;
    }
    return !qcow2_dedup_cluster_indexed(bs, host) &&
           qcow2_get_refcount(bs, host >> s->cluster_bits, &refcount) == 0 &&
           refcount == 1;
}

int qcow2_alloc_host_offset(BlockDriverState *bs, uint64_t offset,
                            uint64_t *bytes, uint64_t *host_offset,
                            QCowL2Meta **m)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t in_cluster = offset_into_cluster(s, offset);
    uint64_t wanted, n;
    void *table;
    int l2_index, ret;

    *m = NULL;
    while (wait_for_overlapping_allocs(bs, offset, bytes)) {
        /* Another writer owned the cluster; its mapping is new now. */
    }
    l2_index = offset_to_l2_index(s, offset);
    *bytes = MIN(*bytes, ((uint64_t)(s->l2_size - l2_index) << s->cluster_bits)
                         - in_cluster);
    wanted = size_to_clusters(s, in_cluster + *bytes);

    ret = get_l2_table_for_write(bs, offset, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t first = l2_get(table, l2_index);
    ret = check_entry_offset(bs, first, qcow2_get_cluster_type(bs, first),
                             offset);
    if (ret < 0) {
        goto out;
    }
    if (cluster_writable_in_place(bs, first)) {
        for (n = 1; n < wanted; n++) {
            uint64_t e = l2_get(table, l2_index + n);
            if (!cluster_writable_in_place(bs, e) ||
                qcow2_l2_host_offset(e) !=
                qcow2_l2_host_offset(first) + (n << s->cluster_bits)) {
                break;
            }
        }
        *host_offset = qcow2_l2_host_offset(first) + in_cluster;
    } else {
        for (n = 1; n < wanted; n++) {
            if (cluster_writable_in_place(bs, l2_get(table, l2_index + n))) {
                break;
            }
        }
        int64_t alloc = qcow2_alloc_clusters(bs, n << s->cluster_bits);
        if (alloc < 0) {
            ret = alloc;
            goto out;
        }
        QCowL2Meta *meta = g_new0(QCowL2Meta, 1);
        meta->guest_offset = start_of_cluster(s, offset);
        meta->alloc_offset = alloc;
        meta->nb_clusters = n;
        *bytes = MIN(*bytes, (n << s->cluster_bits) - in_cluster);
        meta->cow_start = (Qcow2COWRegion) { 0, in_cluster };
        meta->cow_end.offset = in_cluster + *bytes;
        meta->cow_end.nb_bytes = (n << s->cluster_bits) - meta->cow_end.offset;
        meta->next = s->cluster_allocs;
        s->cluster_allocs = meta;
        *host_offset = alloc + in_cluster;
        *m = meta;
    }
    *bytes = MIN(*bytes, (n << s->cluster_bits) - in_cluster);
out:
    qcow2_cache_put(s->l2_table_cache, &table);
    return ret;
}

void qcow2_retire_alloc(BlockDriverState *bs, QCowL2Meta *m)
{
    BDRVQcow2State *s = bs->opaque;

    for (QCowL2Meta **p = &s->cluster_allocs; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    g_cond_broadcast(&s->alloc_cond);
    g_free(m);
}

int qcow2_alloc_cluster_link_l2(BlockDriverState *bs, QCowL2Meta *m)
{
    BDRVQcow2State *s = bs->opaque;
    int l2_index = offset_to_l2_index(s, m->guest_offset);
    void *table;
    int ret;

    ret = get_l2_table_for_write(bs, m->guest_offset, &table);
    if (ret < 0 || !table) {
        qcow2_alloc_cluster_abort(bs, m);
        return ret < 0 ? ret : -EIO;
    }
    if (!s->use_lazy_refcounts) {
        qcow2_cache_set_dependency(s->l2_table_cache, s->refcount_block_cache);
    }
    /* The data just written must be on disk before this L2 entry is. */
    qcow2_cache_depends_on_flush(s->l2_table_cache);
    for (int i = 0; i < m->nb_clusters; i++) {
        uint64_t old = l2_get(table, l2_index + i);
        l2_set(table, l2_index + i, (m->alloc_offset +
                                     ((uint64_t)i << s->cluster_bits)) |
                                    QCOW_OFLAG_COPIED);
        qcow2_free_any_cluster(bs, old);
    }
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
    qcow2_cache_put(s->l2_table_cache, &table);
    qcow2_retire_alloc(bs, m);
    return 0;
}

int qcow2_link_existing_cluster(BlockDriverState *bs, uint64_t guest_offset,
                                uint64_t host_offset, bool copied)
{
    BDRVQcow2State *s = bs->opaque;
    int l2_index = offset_to_l2_index(s, guest_offset);
    uint64_t old, new = host_offset | (copied ? QCOW_OFLAG_COPIED : 0);
    void *table;
    int ret;

    ret = get_l2_table_for_write(bs, guest_offset, &table);
    if (ret < 0) {
        return ret;
    }
    old = l2_get(table, l2_index);
    l2_set(table, l2_index, new);
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
    qcow2_cache_put(s->l2_table_cache, &table);
    /* The target may have been written moments ago (a duplicate). */
    qcow2_cache_depends_on_flush(s->l2_table_cache);
    /* The new reference was counted by the caller; drop the old one. */
    qcow2_free_any_cluster(bs, old);
    return 0;
}

QCowL2Meta *qcow2_register_alloc(BlockDriverState *bs, uint64_t guest_offset,
                                 int nb_clusters, uint64_t alloc_offset)
{
    BDRVQcow2State *s = bs->opaque;
    QCowL2Meta *m = g_new0(QCowL2Meta, 1);

    m->guest_offset = guest_offset;
    m->alloc_offset = alloc_offset;
    m->nb_clusters = nb_clusters;
    m->cow_end.offset = (uint64_t)nb_clusters << s->cluster_bits;
    m->next = s->cluster_allocs;
    s->cluster_allocs = m;
    return m;
}

void qcow2_alloc_cluster_abort(BlockDriverState *bs, QCowL2Meta *m)
{
    BDRVQcow2State *s = bs->opaque;

    qcow2_free_clusters(bs, m->alloc_offset,
                        (uint64_t)m->nb_clusters << s->cluster_bits);
    qcow2_retire_alloc(bs, m);
}

/* Zeroing and discarding whole clusters */

/* Wait until no in-flight allocation overlaps [offset, offset + bytes). */
void qcow2_wait_for_allocs(BlockDriverState *bs, uint64_t offset,
                                     uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    bool again;

    do {
        again = false;
        for (QCowL2Meta *m = s->cluster_allocs; m; m = m->next) {
            if (range_overlaps(m->guest_offset,
                               (uint64_t)m->nb_clusters << s->cluster_bits,
                               offset, bytes)) {
                g_cond_wait(&s->alloc_cond, &s->lock);
                again = true;
                break;
            }
        }
    } while (again);
}

typedef uint64_t ClusterRewriteFn(BlockDriverState *bs, uint64_t old_entry,
                                  bool unmap);

/* The entry of a cluster that must read as zeroes from now on. */
static uint64_t zeroed_entry(BlockDriverState *bs, uint64_t old, bool unmap)
{
    if (!unmap && cluster_writable_in_place(bs, old)) {
        /* Keep the preallocated cluster, mark it as reading zeroes. */
        return old | QCOW_OFLAG_ZERO;
    }
    return QCOW_OFLAG_ZERO;
}

/*
 * The entry of a discarded cluster: it reads zeroes afterwards (as QEMU
 * does) where the zero flag exists; an unallocated cluster without a
 * backing file already does.
 */
static uint64_t discarded_entry(BlockDriverState *bs, uint64_t old, bool unmap)
{
    BDRVQcow2State *s = bs->opaque;

    (void)unmap;
    if (old == 0 && !bs->backing) {
        return 0;
    }
    return s->qcow_version >= 3 ? QCOW_OFLAG_ZERO : 0;
}

static int rewrite_clusters(BlockDriverState *bs, uint64_t offset,
                            uint64_t bytes, bool unmap, bool need_table,
                            ClusterRewriteFn *rewrite)
{
    BDRVQcow2State *s = bs->opaque;

    assert(QEMU_IS_ALIGNED(offset | bytes, s->cluster_size));
    qcow2_wait_for_allocs(bs, offset, bytes);
    while (bytes > 0) {
        int l2_index = offset_to_l2_index(s, offset);
        uint64_t n = MIN(bytes >> s->cluster_bits,
                         (uint64_t)(s->l2_size - l2_index));
        void *table = NULL;
        int ret;

        ret = need_table ? get_l2_table_for_write(bs, offset, &table)
                         : get_l2_table(bs, offset, &table);
        if (ret < 0) {
            return ret;
        }
        if (table && !need_table &&
            !(s->l1_table[offset_to_l1_index(s, offset)] & QCOW_OFLAG_COPIED)) {
            qcow2_cache_put(s->l2_table_cache, &table);
            ret = get_l2_table_for_write(bs, offset, &table);
            if (ret < 0) {
                return ret;
            }
        }
        for (uint64_t i = 0; table && i < n; i++) {
            uint64_t old = l2_get(table, l2_index + i);
            uint64_t new = rewrite(bs, old, unmap);
            if (new == old) {
                continue;
            }
            l2_set(table, l2_index + i, new);
            if (qcow2_l2_host_offset(new) != qcow2_l2_host_offset(old) ||
                (old & QCOW_OFLAG_COMPRESSED)) {
                qcow2_free_any_cluster(bs, old);
            }
            qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
        }
        if (table) {
            qcow2_cache_put(s->l2_table_cache, &table);
        }
        offset += n << s->cluster_bits;
        bytes -= n << s->cluster_bits;
    }
    return 0;
}

int qcow2_cluster_zeroize(BlockDriverState *bs, uint64_t offset,
                          uint64_t bytes, bool unmap)
{
    return rewrite_clusters(bs, offset, bytes, unmap, true, zeroed_entry);
}

/* Mapping removed altogether (shrink): unallocated, whatever lies below. */
static uint64_t dropped_entry(BlockDriverState *bs, uint64_t old, bool unmap)
{
    (void)bs;
    (void)old;
    (void)unmap;
    return 0;
}

int qcow2_cluster_drop(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    return rewrite_clusters(bs, offset, bytes, true, false, dropped_entry);
}

int qcow2_cluster_discard(BlockDriverState *bs, uint64_t offset,
                          uint64_t bytes)
{
    /* Without a backing file, a cluster with no L2 table already reads zero. */
    return rewrite_clusters(bs, offset, bytes, true, bs->backing != NULL,
                            discarded_entry);
}

int qcow2_link_compressed_cluster(BlockDriverState *bs, uint64_t guest_offset,
                                  uint64_t host_offset, int csize)
{
    BDRVQcow2State *s = bs->opaque;
    int x = 62 - (s->cluster_bits - 8);
    uint64_t sectors = ((host_offset + csize - 1) >> 9) - (host_offset >> 9);
    uint64_t entry = QCOW_OFLAG_COMPRESSED | (sectors << x) | host_offset;
    int l2_index = offset_to_l2_index(s, guest_offset);
    void *table;
    int ret;

    ret = get_l2_table_for_write(bs, guest_offset, &table);
    if (ret < 0) {
        return ret;
    }
    if (!s->use_lazy_refcounts) {
        qcow2_cache_set_dependency(s->l2_table_cache, s->refcount_block_cache);
    }
    uint64_t old = l2_get(table, l2_index);
    qcow2_cache_depends_on_flush(s->l2_table_cache);
    l2_set(table, l2_index, entry);
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
    qcow2_cache_put(s->l2_table_cache, &table);
    qcow2_free_any_cluster(bs, old);
    return 0;
}

int qcow2_preallocate_metadata(BlockDriverState *bs, uint64_t old_size,
                               uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = start_of_cluster(s, old_size);

    while (offset < new_size) {
        int l2_index = offset_to_l2_index(s, offset);
        uint64_t n = MIN(size_to_clusters(s, new_size - offset),
                         (uint64_t)(s->l2_size - l2_index));
        void *table;
        int64_t alloc;
        int ret = get_l2_table_for_write(bs, offset, &table);

        if (ret < 0) {
            return ret;
        }
        alloc = qcow2_alloc_clusters(bs, n << s->cluster_bits);
        if (alloc < 0) {
            qcow2_cache_put(s->l2_table_cache, &table);
            return alloc;
        }
        if (!s->use_lazy_refcounts) {
            qcow2_cache_set_dependency(s->l2_table_cache,
                                       s->refcount_block_cache);
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t old = l2_get(table, l2_index + i);
            if (old) {
                /* Already mapped: give the spare cluster back. */
                qcow2_free_clusters(bs, alloc + (i << s->cluster_bits),
                                    s->cluster_size);
                continue;
            }
            l2_set(table, l2_index + i, (alloc + (i << s->cluster_bits)) |
                                        QCOW_OFLAG_COPIED);
        }
        qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
        qcow2_cache_put(s->l2_table_cache, &table);
        offset += n << s->cluster_bits;
    }
    return 0;
}

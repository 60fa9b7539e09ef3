/*
 * qcow2 refcounts: reading and updating them, allocating and freeing host
 * clusters, growing the refcount table, the limbo of freed clusters and the
 * metadata overlap check.
 *
 * Allocation never trusts a free-looking cluster twice: it finds a free
 * run, makes sure refcount blocks exist for it (allocating them may use up
 * that very run, in which case it starts over), then sets the refcounts.
 *
 * Freeing is deferred (the limbo): when the last reference to a cluster
 * is dropped from an L2 table, the cluster stays allocated until
 *  (1) a flush that started after the drop has completed, so the on-disk L2
 *      no longer points at it when it is reused for other data, and
 *  (2) every data request that was in flight when it was dropped has
 *      finished, so no late write lands in it after reuse.
 * A crash meanwhile leaves a leaked cluster, never a shared one.
 */
#include "qemu/osdep.h"
#include "qcow2.h"

uint64_t qcow2_refcount_entry_get(const void *block, uint64_t index, int order)
{
    const uint8_t *p = block;

    switch (order) {
    case 0: case 1: case 2: {
        int bits = 1 << order;
        uint8_t byte = p[index >> (3 - order)];
        int shift = (index & ((8 >> order) - 1)) << order;
        return (byte >> shift) & ((1 << bits) - 1);
    }
    case 3:
        return p[index];
    case 4:
        return lduw_be_p(p + 2 * index);
    case 5:
        return ldl_be_p(p + 4 * index);
    default:
        return ldq_be_p(p + 8 * index);
    }
}

void qcow2_refcount_entry_set(void *block, uint64_t index, int order,
                              uint64_t value)
{
    uint8_t *p = block;

    switch (order) {
    case 0: case 1: case 2: {
        int bits = 1 << order;
        uint8_t *byte = &p[index >> (3 - order)];
        int shift = (index & ((8 >> order) - 1)) << order;
        uint8_t mask = ((1 << bits) - 1) << shift;
        *byte = (*byte & ~mask) | ((value << shift) & mask);
        break;
    }
    case 3:
        p[index] = value;
        break;
    case 4:
        stw_be_p(p + 2 * index, value);
        break;
    case 5:
        stl_be_p(p + 4 * index, value);
        break;
    default:
        stq_be_p(p + 8 * index, value);
    }
}

/* Overlap check: the set of host clusters that hold metadata. */

void qcow2_metadata_add(BlockDriverState *bs, uint64_t offset, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + MAX(size, 1) - 1) >> s->cluster_bits;

    for (uint64_t c = first; c <= last; c++) {
        g_hash_table_add(s->metadata_clusters, GSIZE_TO_POINTER(c));
    }
}

void qcow2_metadata_remove(BlockDriverState *bs, uint64_t offset,
                           uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + MAX(size, 1) - 1) >> s->cluster_bits;

    for (uint64_t c = first; c <= last; c++) {
        g_hash_table_remove(s->metadata_clusters, GSIZE_TO_POINTER(c));
    }
}

bool qcow2_metadata_overlaps(BlockDriverState *bs, uint64_t offset,
                             uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + MAX(size, 1) - 1) >> s->cluster_bits;

    for (uint64_t c = first; c <= last; c++) {
        if (g_hash_table_contains(s->metadata_clusters, GSIZE_TO_POINTER(c))) {
            return true;
        }
    }
    return false;
}

int qcow2_check_data_write(BlockDriverState *bs, uint64_t offset,
                           uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + MAX(size, 1) - 1) >> s->cluster_bits;

    for (uint64_t c = first; c <= last; c++) {
        if (g_hash_table_contains(s->metadata_clusters, GSIZE_TO_POINTER(c))) {
            qcow2_signal_corruption(bs, offset, size, "Preventing invalid "
                                    "write on metadata (overlaps with "
                                    "metadata cluster %#" PRIx64 ")",
                                    c << s->cluster_bits);
            return -EIO;
        }
    }
    return 0;
}

/* Register every metadata cluster the image has when it is opened. */
int qcow2_metadata_build(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    qcow2_metadata_add(bs, 0, s->cluster_size);
    qcow2_metadata_add(bs, s->l1_table_offset, (uint64_t)s->l1_size * 8);
    qcow2_metadata_add(bs, s->refcount_table_offset,
                       (uint64_t)s->refcount_table_size * 8);
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t block = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (block) {
            qcow2_metadata_add(bs, block, s->cluster_size);
        }
    }
    for (int i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        if (l2) {
            qcow2_metadata_add(bs, l2, s->cluster_size);
        }
    }
    if (s->nb_snapshots) {
        qcow2_metadata_add(bs, s->snapshots_offset, s->snapshots_size);
    }
    for (int i = 0; i < s->nb_snapshots; i++) {
        qcow2_metadata_add(bs, s->snapshots[i].l1_table_offset,
                           (uint64_t)s->snapshots[i].l1_size * 8);
    }
    return 0;
}

/* Reading refcounts */

int qcow2_refcount_init(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)s->refcount_table_size * 8;
    int ret;

    s->refcount_table = g_try_malloc(MAX(bytes, 1));
    if (!s->refcount_table) {
        return -ENOMEM;
    }
    ret = bdrv_pread(bs->file, s->refcount_table_offset, bytes,
                     s->refcount_table, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        s->refcount_table[i] = GUINT64_FROM_BE(s->refcount_table[i]);
    }
    s->limbo = g_array_new(FALSE, FALSE, sizeof(Qcow2LimboEntry));
    return 0;
}

void qcow2_refcount_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    g_free(s->refcount_table);
    if (s->limbo) {
        g_array_free(s->limbo, TRUE);
    }
    g_slist_free(s->io_in_flight);
}

/* Refcount block of a table index: offset, 0 if none, or -errno if invalid. */
static int64_t refblock_offset(BlockDriverState *bs, uint64_t table_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t entry;

    if (table_index >= s->refcount_table_size) {
        return 0;
    }
    entry = s->refcount_table[table_index];
    if (offset_into_cluster(s, entry & REFT_OFFSET_MASK)) {
        qcow2_signal_corruption(bs, entry & REFT_OFFSET_MASK, s->cluster_size,
                                "Refblock offset %#" PRIx64 " unaligned "
                                "(reftable index: %#" PRIx64 ")",
                                entry & REFT_OFFSET_MASK, table_index);
        return -EIO;
    }
    return entry & REFT_OFFSET_MASK;
}

int qcow2_get_refcount(BlockDriverState *bs, int64_t cluster_index,
                       uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t table_index = cluster_index >> s->refcount_block_bits;
    int64_t block = refblock_offset(bs, table_index);
    void *table;
    int ret;

    if (block <= 0) {
        *refcount = 0;
        return block;
    }
    ret = qcow2_cache_get(bs, s->refcount_block_cache, block, &table);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_refcount_entry_get(table, cluster_index &
                                         (s->refcount_block_size - 1),
                                         s->refcount_order);
    qcow2_cache_put(s->refcount_block_cache, &table);
    return 0;
}

/* Allocation */

/*
 * Scan the refcounts of one refcount block's range from cluster index *i,
 * extending the free run (*start, *run) until it reaches nb_clusters.
 * Reads the block once; a missing block means its whole range is free.
 */
static int scan_block_for_free(BlockDriverState *bs, uint64_t *i,
                               uint64_t *start, uint64_t *run,
                               uint64_t nb_clusters, uint64_t *first_free)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t block_first = *i & ~(uint64_t)(s->refcount_block_size - 1);
    uint64_t block_end = block_first + s->refcount_block_size;
    int64_t block = refblock_offset(bs, *i >> s->refcount_block_bits);
    void *table = NULL;
    int ret;

    if (block < 0) {
        return block;
    }
    if (block) {
        ret = qcow2_cache_get(bs, s->refcount_block_cache, block, &table);
        if (ret < 0) {
            return ret;
        }
    }
    for (; *i < block_end && *run < nb_clusters; (*i)++) {
        uint64_t refcount = table ? qcow2_refcount_entry_get(
                                        table, *i - block_first,
                                        s->refcount_order) : 0;
        if (refcount == 0 && *i != 0) {
            *first_free = MIN(*first_free, *i);
            if ((*run)++ == 0) {
                *start = *i;
            }
        } else {
            *run = 0;
        }
    }
    if (table) {
        qcow2_cache_put(s->refcount_block_cache, &table);
    }
    return 0;
}

/*
 * First run of nb_clusters free clusters at or after the free hint; clusters
 * not covered by any refcount block are free.  The hint moves up to the
 * first free cluster seen, so used space is not scanned again.
 */
static int64_t find_free_clusters(BlockDriverState *bs, uint64_t nb_clusters)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t i = s->free_cluster_index, start = i, run = 0;
    uint64_t first_free = UINT64_MAX;

    while (run < nb_clusters) {
        int ret;

        if (i >= (UINT64_MAX >> s->cluster_bits) - nb_clusters) {
            return -EFBIG;
        }
        ret = scan_block_for_free(bs, &i, &start, &run, nb_clusters,
                                  &first_free);
        if (ret < 0) {
            return ret;
        }
    }
    s->free_cluster_index = first_free;
    return start << s->cluster_bits;
}

static int write_reftable_entry(BlockDriverState *bs, uint64_t table_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t be = GUINT64_TO_BE(s->refcount_table[table_index]);

    return bdrv_pwrite(bs->file, s->refcount_table_offset + table_index * 8,
                       8, &be, 0);
}

/*
 * Grow the refcount table so that index needed_index exists.  The new table
 * and the refcount blocks describing it go to the first clusters the old
 * table cannot describe: they are free by definition, and the blocks cover
 * the area itself, so no allocation through the old structures is needed.
 */
static int grow_refcount_table(BlockDriverState *bs, uint64_t needed_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t block_entries = s->refcount_block_size;
    uint64_t old_size = s->refcount_table_size;
    uint64_t area_start = old_size * block_entries;   /* cluster index */
    uint64_t new_size = MAX(needed_index + 1, old_size + old_size / 2 + 1);
    uint64_t table_clusters, nb_blocks = 0, area_clusters;
    uint64_t *new_table;
    void *block_buf;
    uint8_t header_update[12];
    uint64_t old_offset = s->refcount_table_offset;
    uint64_t old_clusters = size_to_clusters(s, old_size * 8);
    int ret;

    for (;;) {
        table_clusters = size_to_clusters(s, new_size * 8);
        area_clusters = nb_blocks + table_clusters;
        uint64_t blocks_needed = DIV_ROUND_UP(area_clusters, block_entries);
        if (blocks_needed == nb_blocks && new_size >= old_size + nb_blocks) {
            break;
        }
        nb_blocks = blocks_needed;
        new_size = MAX(new_size, old_size + nb_blocks);
    }
    /* Use the whole last cluster of the table. */
    new_size = table_clusters * s->cluster_size / 8;
    if (new_size * 8 > QCOW_MAX_REFTABLE_SIZE) {
        return -EFBIG;
    }

    new_table = g_try_new0(uint64_t, new_size);
    block_buf = qemu_try_blockalign(s->cluster_size);
    if (!new_table || !block_buf) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t b = 0; b < nb_blocks; b++) {
        uint64_t block_first = (old_size + b) * block_entries;
        memset(block_buf, 0, s->cluster_size);
        for (uint64_t c = 0; c < block_entries; c++) {
            uint64_t cluster = block_first + c;
            if (cluster >= area_start && cluster < area_start + area_clusters) {
                qcow2_refcount_entry_set(block_buf, c, s->refcount_order, 1);
            }
        }
        ret = bdrv_pwrite(bs->file, (area_start + b) << s->cluster_bits,
                          s->cluster_size, block_buf, 0);
        if (ret < 0) {
            goto out;
        }
        new_table[old_size + b] = (area_start + b) << s->cluster_bits;
    }
    memcpy(new_table, s->refcount_table, old_size * 8);
    for (uint64_t i = 0; i < new_size; i++) {
        new_table[i] = GUINT64_TO_BE(new_table[i]);
    }
    uint64_t new_offset = (area_start + nb_blocks) << s->cluster_bits;
    ret = bdrv_pwrite(bs->file, new_offset, new_size * 8, new_table, 0);
    for (uint64_t i = 0; i < new_size; i++) {
        new_table[i] = GUINT64_FROM_BE(new_table[i]);
    }
    if (ret < 0 || (ret = bdrv_flush(bs->file)) < 0) {
        goto out;
    }

    /* Switch the header to the new table: one write of offset + clusters. */
    stq_be_p(header_update, new_offset);
    stl_be_p(header_update + 8, table_clusters);
    ret = bdrv_pwrite_sync(bs->file, offsetof(QCowHeader, refcount_table_offset),
                           sizeof(header_update), header_update, 0);
    if (ret < 0) {
        goto out;
    }
    qcow2_metadata_remove(bs, old_offset, old_clusters << s->cluster_bits);
    qcow2_metadata_add(bs, area_start << s->cluster_bits,
                       area_clusters << s->cluster_bits);
    g_free(s->refcount_table);
    s->refcount_table = new_table;
    new_table = NULL;
    s->refcount_table_size = new_size;
    s->refcount_table_offset = new_offset;
    qcow2_free_clusters(bs, old_offset, old_clusters << s->cluster_bits);
    ret = 0;
out:
    g_free(new_table);
    qemu_vfree(block_buf);
    return ret;
}

/*
 * Give cluster_index a refcount block.  Returns 0 if one existed, -EAGAIN
 * if metadata was allocated (the caller's free run may be gone), -errno.
 */
static int ensure_refblock(BlockDriverState *bs, uint64_t cluster_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t table_index = cluster_index >> s->refcount_block_bits;
    int64_t block = refblock_offset(bs, table_index);
    void *table;
    int64_t new_block;
    int ret;

    if (block != 0) {
        return block < 0 ? block : 0;
    }
    if (table_index >= s->refcount_table_size) {
        ret = grow_refcount_table(bs, table_index);
        return ret < 0 ? ret : -EAGAIN;
    }
    new_block = find_free_clusters(bs, 1);
    if (new_block < 0) {
        return new_block;
    }
    uint64_t new_index = new_block >> s->cluster_bits;
    if ((new_index >> s->refcount_block_bits) != table_index) {
        /* The block lives in a range another block describes. */
        ret = ensure_refblock(bs, new_index);
        if (ret < 0) {
            return ret;
        }
        ret = qcow2_update_cluster_refcount(bs, new_index, 1);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_cache_get_empty(bs, s->refcount_block_cache, new_block, &table);
    if (ret < 0) {
        return ret;
    }
    memset(table, 0, s->cluster_size);
    if ((new_index >> s->refcount_block_bits) == table_index) {
        qcow2_refcount_entry_set(table, new_index & (s->refcount_block_size - 1),
                                 s->refcount_order, 1);
    }
    qcow2_cache_entry_mark_dirty(s->refcount_block_cache, table);
    qcow2_cache_put(s->refcount_block_cache, &table);
    /* The block must be on disk before the table points to it. */
    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        return ret;
    }
    s->refcount_table[table_index] = new_block;
    ret = write_reftable_entry(bs, table_index);
    if (ret < 0) {
        s->refcount_table[table_index] = 0;
        return ret;
    }
    qcow2_metadata_add(bs, new_block, s->cluster_size);
    return -EAGAIN;
}

static void cluster_became_free(BlockDriverState *bs, uint64_t cluster_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = cluster_index << s->cluster_bits;

    if (s->free_byte_offset &&
        start_of_cluster(s, s->free_byte_offset) == offset) {
        s->free_byte_offset = 0;
    }
    /* The index must forget the content before the space can be reused. */
    qcow2_dedup_cluster_freed(bs, cluster_index);

    qcow2_cache_discard(s->l2_table_cache, offset);
    qcow2_cache_discard(s->refcount_block_cache, offset);
    qcow2_metadata_remove(bs, offset, s->cluster_size);
    s->free_cluster_index = MIN(s->free_cluster_index, cluster_index);
    if (bs->open_flags & BDRV_O_UNMAP) {
        /* Give the space back to the host; failure only costs space. */
        bdrv_pdiscard(bs->file, offset, s->cluster_size);
    }
}

/* Add addend to one cluster's refcount; its refcount block must exist. */
int qcow2_update_cluster_refcount(BlockDriverState *bs, int64_t cluster_index,
                                  int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t block = refblock_offset(bs, cluster_index >> s->refcount_block_bits);
    uint64_t index = cluster_index & (s->refcount_block_size - 1);
    uint64_t refcount;
    void *table;
    int ret;

    if (block <= 0) {
        return block < 0 ? block : -EINVAL;
    }
    ret = qcow2_cache_get(bs, s->refcount_block_cache, block, &table);
    if (ret < 0) {
        return ret;
    }
    refcount = qcow2_refcount_entry_get(table, index, s->refcount_order);
    if ((addend < 0 && refcount < (uint64_t)-addend) ||
        (addend > 0 && s->refcount_max - refcount < (uint64_t)addend)) {
        qcow2_cache_put(s->refcount_block_cache, &table);
        return addend < 0 ? -EINVAL : -ERANGE;
    }
    qcow2_dedup_refcount_changed(bs, refcount, refcount + addend);
    refcount += addend;
    qcow2_refcount_entry_set(table, index, s->refcount_order, refcount);
    qcow2_cache_entry_mark_dirty(s->refcount_block_cache, table);
    qcow2_cache_put(s->refcount_block_cache, &table);
    if (refcount == 0) {
        cluster_became_free(bs, cluster_index);
    }
    return 0;
}

int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nb_clusters = size_to_clusters(s, size);
    int64_t offset;
    int ret;

    assert(nb_clusters > 0);
    for (;;) {
        offset = find_free_clusters(bs, nb_clusters);
        if (offset < 0) {
            return offset;
        }
        ret = 0;
        for (uint64_t i = 0; i < nb_clusters && ret == 0; i++) {
            ret = ensure_refblock(bs, (offset >> s->cluster_bits) + i);
        }
        if (ret == -EAGAIN) {
            continue;
        }
        if (ret < 0) {
            return ret;
        }
        break;
    }
    for (uint64_t i = 0; i < nb_clusters; i++) {
        ret = qcow2_update_cluster_refcount(bs, (offset >> s->cluster_bits) + i,
                                            1);
        if (ret < 0) {
            return ret;
        }
    }
    if ((uint64_t)offset >> s->cluster_bits == s->free_cluster_index) {
        s->free_cluster_index += nb_clusters;
    }
    return offset;
}

int64_t qcow2_alloc_bytes(BlockDriverState *bs, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = s->free_byte_offset;
    int64_t new;
    int ret;

    if (offset && offset_into_cluster(s, offset) + size <= (uint64_t)
        s->cluster_size) {
        /* Shares a cluster that already holds compressed data. */
        ret = qcow2_update_cluster_refcount(bs, offset >> s->cluster_bits, 1);
        if (ret < 0) {
            return ret;
        }
    } else {
        new = qcow2_alloc_clusters(bs, size);
        if (new < 0) {
            return new;
        }
        offset = new;
    }
    s->free_byte_offset = offset_into_cluster(s, offset + size)
                          ? offset + size : 0;
    return offset;
}

/* The limbo */

uint64_t qcow2_io_begin(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t seq = ++s->next_io_seq;

    s->io_in_flight = g_slist_prepend(s->io_in_flight, GSIZE_TO_POINTER(seq));
    return seq;
}

void qcow2_io_end(BlockDriverState *bs, uint64_t seq)
{
    BDRVQcow2State *s = bs->opaque;

    s->io_in_flight = g_slist_remove(s->io_in_flight, GSIZE_TO_POINTER(seq));
}

static uint64_t oldest_io_in_flight(BDRVQcow2State *s)
{
    uint64_t oldest = UINT64_MAX;

    for (GSList *l = s->io_in_flight; l; l = l->next) {
        oldest = MIN(oldest, (uint64_t)GPOINTER_TO_SIZE(l->data));
    }
    return oldest;
}

void qcow2_free_clusters(BlockDriverState *bs, int64_t offset, int64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2LimboEntry e = {
        .offset = start_of_cluster(s, offset),
        .nb_clusters = size_to_clusters(s, offset_into_cluster(s, offset) +
                                        size),
        .io_seq = s->next_io_seq + 1,
        .flush_gen = s->limbo_flush_gen,
    };

    g_array_append_val(s->limbo, e);
}

void qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry)
{
    BDRVQcow2State *s = bs->opaque;

    switch (qcow2_get_cluster_type(bs, l2_entry)) {
    case QCOW2_CLUSTER_COMPRESSED: {
        uint64_t coffset;
        int csize;
        qcow2_parse_compressed_l2_entry(bs, l2_entry, &coffset, &csize);
        qcow2_free_clusters(bs, coffset, csize);
        break;
    }
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        qcow2_free_clusters(bs, qcow2_l2_host_offset(l2_entry), s->cluster_size);
        break;
    default:
        break;
    }
}

int qcow2_process_limbo(BlockDriverState *bs, bool drain_all)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t oldest = oldest_io_in_flight(s);
    int result = 0;

    for (guint i = 0; i < s->limbo->len;) {
        Qcow2LimboEntry *e = &g_array_index(s->limbo, Qcow2LimboEntry, i);
        if (!drain_all &&
            (e->io_seq > oldest || e->flush_gen >= s->limbo_flush_gen)) {
            i++;
            continue;
        }
        for (uint64_t c = 0; c < e->nb_clusters; c++) {
            int ret = qcow2_update_cluster_refcount(
                bs, (e->offset >> s->cluster_bits) + c, -1);
            if (ret < 0 && result == 0) {
                result = ret;
            }
        }
        g_array_remove_index(s->limbo, i);
    }
    return result;
}

/* Cache write-back */

int qcow2_write_caches(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_write(bs, s->l2_table_cache);

    if (ret < 0) {
        return ret;
    }
    /*
     * While the dirty bit says refcounts may be stale, a flush need not
     * write them (that is the point of lazy refcounts); marking the image
     * clean writes them first.
     */
    if (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        return 0;
    }
    return qcow2_cache_write(bs, s->refcount_block_cache);
}

/*
 * Write every cached table and make it durable; afterwards the limbo
 * entries older than this flush are safe to apply.
 */
int qcow2_flush_caches(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t gen = s->limbo_flush_gen;
    int ret = qcow2_write_caches(bs);

    if (ret < 0) {
        return ret;
    }
    ret = bdrv_flush(bs->file);
    if (ret < 0) {
        return ret;
    }
    s->limbo_flush_gen = gen + 1;
    return 0;
}

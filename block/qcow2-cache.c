/*
 * qcow2 table cache: L2 tables and refcount blocks, one cluster each.
 *
 * Entries are found through a hash of their host offset; eviction follows
 * the clock algorithm (recently used entries get a second chance), which
 * stays O(1) amortised even for caches of tens of thousands of tables.  A table handed out by qcow2_cache_get() is pinned
 * until qcow2_cache_put(); callers hold s->lock for the whole time, so at
 * most a handful of entries are pinned at once.
 *
 * Write ordering: a cache may depend on another (the L2 cache on the
 * refcount cache while new references are pending): before any of its dirty
 * tables is written, the dependency is written and the file flushed, so a
 * crash can never leave an L2 entry whose refcount did not reach the disk.
 */
#include "qemu/osdep.h"
#include "qcow2.h"

typedef struct Qcow2CachedTable {
    int64_t offset;     /* 0: the slot is free */
    int ref;
    bool dirty;
    bool recently_used; /* second chance for the clock hand */
} Qcow2CachedTable;

struct Qcow2Cache {
    Qcow2CachedTable *entries;
    /* All tables in one allocation: pages are only touched once used. */
    uint8_t *table_array;
    int size;
    int table_size;
    int clock_hand;
    GHashTable *index;          /* offset -> entry index + 1 */
    Qcow2Cache *depends;
    /* Entries point at data written since the file was last flushed. */
    bool depends_on_flush;
};

Qcow2Cache *qcow2_cache_create(BlockDriverState *bs, int num_tables,
                               int table_size)
{
    Qcow2Cache *c = g_new0(Qcow2Cache, 1);

    (void)bs;
    c->size = num_tables;
    c->table_size = table_size;
    c->entries = g_new0(Qcow2CachedTable, num_tables);
    c->table_array = qemu_try_blockalign((size_t)num_tables * table_size);
    if (!c->table_array) {
        g_free(c->entries);
        g_free(c);
        return NULL;
    }
    c->index = g_hash_table_new(g_int64_hash, g_int64_equal);
    return c;
}

void qcow2_cache_destroy(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    for (int i = 0; i < c->size; i++) {
        assert(c->entries[i].ref == 0);
    }
    qemu_vfree(c->table_array);
    g_hash_table_destroy(c->index);
    g_free(c->entries);
    g_free(c);
}

static void *cache_table(Qcow2Cache *c, int i)
{
    return c->table_array + (size_t)i * c->table_size;
}

static int cache_lookup(Qcow2Cache *c, uint64_t offset)
{
    gpointer v = g_hash_table_lookup(c->index, &offset);

    return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

static void cache_unindex(Qcow2Cache *c, int i)
{
    if (c->entries[i].offset) {
        g_hash_table_remove(c->index, &c->entries[i].offset);
        c->entries[i].offset = 0;
    }
}

static int cache_write_entry(BlockDriverState *bs, Qcow2Cache *c, int i)
{
    Qcow2CachedTable *e = &c->entries[i];
    int ret;

    if (!e->dirty || !e->offset) {
        return 0;
    }
    if (c->depends) {
        ret = qcow2_cache_flush(bs, c->depends);
        if (ret < 0) {
            return ret;
        }
        c->depends = NULL;
        c->depends_on_flush = false;
    }
    if (c->depends_on_flush) {
        ret = bdrv_flush(bs->file);
        if (ret < 0) {
            return ret;
        }
        c->depends_on_flush = false;
    }
    ret = bdrv_pwrite(bs->file, e->offset, c->table_size, cache_table(c, i),
                      0);
    if (ret < 0) {
        return ret;
    }
    e->dirty = false;
    return 0;
}

int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c)
{
    int result = 0;

    for (int i = 0; i < c->size; i++) {
        int ret = cache_write_entry(bs, c, i);
        if (ret < 0 && result == 0) {
            result = ret;
        }
    }
    return result;
}

int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_write(bs, c);

    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

void qcow2_cache_depends_on_flush(Qcow2Cache *c)
{
    c->depends_on_flush = true;
}

void qcow2_cache_set_dependency(Qcow2Cache *c, Qcow2Cache *dependency)
{
    /* Only the L2 cache depends on the refcount cache: no cycles. */
    assert(dependency->depends == NULL);
    c->depends = dependency;
}

/* A slot for a new table: a free one, else the clock hand's choice. */
static int cache_find_victim(BlockDriverState *bs, Qcow2Cache *c)
{
    int victim = -1;
    int ret;

    /* Two turns: the first clears second chances, the second must find one. */
    for (int n = 0; n < 2 * c->size; n++) {
        Qcow2CachedTable *e = &c->entries[c->clock_hand];
        int i = c->clock_hand;

        c->clock_hand = (c->clock_hand + 1) % c->size;
        if (e->ref) {
            continue;
        }
        if (e->offset && e->recently_used) {
            e->recently_used = false;
            continue;
        }
        victim = i;
        break;
    }
    if (victim < 0) {
        return -ENOSPC;
    }
    ret = cache_write_entry(bs, c, victim);
    if (ret < 0) {
        return ret;
    }
    cache_unindex(c, victim);
    return victim;
}

static int cache_do_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset,
                        void **table, bool read_from_disk)
{
    int i = cache_lookup(c, offset);
    int ret;

    assert(offset != 0);
    if (i < 0) {
        i = cache_find_victim(bs, c);
        if (i < 0) {
            return i;
        }
        if (read_from_disk) {
            ret = bdrv_pread(bs->file, offset, c->table_size,
                             cache_table(c, i), 0);
            if (ret < 0) {
                return ret;
            }
        }
        c->entries[i].offset = offset;
        g_hash_table_insert(c->index, &c->entries[i].offset,
                            GINT_TO_POINTER(i + 1));
    }
    c->entries[i].ref++;
    c->entries[i].recently_used = true;
    *table = cache_table(c, i);
    return 0;
}

int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset,
                    void **table)
{
    return cache_do_get(bs, c, offset, table, true);
}

int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                          uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, false);
}

static int cache_index_of_table(Qcow2Cache *c, void *table)
{
    ptrdiff_t off = (uint8_t *)table - c->table_array;

    assert(off >= 0 && off % c->table_size == 0 &&
           off / c->table_size < c->size);
    return off / c->table_size;
}

void qcow2_cache_put(Qcow2Cache *c, void **table)
{
    int i = cache_index_of_table(c, *table);

    assert(c->entries[i].ref > 0);
    c->entries[i].ref--;
    *table = NULL;
}

void qcow2_cache_entry_mark_dirty(Qcow2Cache *c, void *table)
{
    c->entries[cache_index_of_table(c, table)].dirty = true;
}

void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset)
{
    int i = cache_lookup(c, offset);

    if (i >= 0) {
        assert(c->entries[i].ref == 0);
        c->entries[i].dirty = false;
        cache_unindex(c, i);
    }
}

int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_write(bs, c);

    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < c->size; i++) {
        assert(c->entries[i].ref == 0);
        cache_unindex(c, i);
    }
    return 0;
}

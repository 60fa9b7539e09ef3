/*
 * Block node descriptions for QMP queries (see block-info.h).
 *
 * Members that describe features this block layer does not have (I/O
 * throttling, encryption, merged or timed statistics) are reported with
 * their neutral values, as stock QEMU reports them for a node without the
 * feature.  query-blockstats additionally carries zero_bytes and
 * zero_operations (write-zeroes requests, which QEMU does not count
 * separately) and, for deduplicating nodes, a "dedup" object.
 */
#include "qemu/osdep.h"
#include "block/block.h"
#include "block/qapi.h"
#include "json-node.h"
#include "block-info.h"

/* bdrv_image_info() plus the backing chain, which QEMU lists first. */
JsonNode *block_image_info(BlockDriverState *bs)
{
    BlockDriverState *backing = bdrv_get_backing(bs);
    JsonNode *own = bdrv_image_info(bs, NULL);
    JsonObject *info, *members;
    GList *names;

    if (!backing || !own) {
        return own;
    }
    info = json_object_new();
    json_object_set_member(info, "backing-image", block_image_info(backing));
    members = json_node_get_object(own);
    names = json_object_get_members(members);
    for (GList *l = names; l; l = l->next) {
        json_object_set_member(info, l->data,
            json_node_copy(json_object_get_member(members, l->data)));
    }
    g_list_free(names);
    json_node_unref(own);
    return json_node_from_object(info);
}

static int backing_depth(BlockDriverState *bs)
{
    int depth = 0;

    while ((bs = bdrv_get_backing(bs))) {
        depth++;
    }
    return depth;
}

JsonNode *block_device_info(BlockDriverState *bs)
{
    JsonObject *info = json_object_new(), *cache = json_object_new();
    int flags = bdrv_get_flags(bs);
    JsonNode *image;
    const char *backing_name = bdrv_get_backing_filename(bs);

    json_object_set_int_member(info, "iops_rd", 0);
    json_object_set_string_member(info, "detect_zeroes",
                                  bdrv_get_detect_zeroes(bs));
    image = block_image_info(bs);
    if (image) {
        json_object_set_member(info, "image", image);
    }
    json_object_set_int_member(info, "iops_wr", 0);
    json_object_set_boolean_member(info, "ro", bdrv_is_read_only(bs));
    json_object_set_string_member(info, "node-name", bdrv_get_node_name(bs));
    json_object_set_int_member(info, "backing_file_depth", backing_depth(bs));
    json_object_set_string_member(info, "drv", bdrv_get_format_name(bs));
    json_object_set_int_member(info, "iops", 0);
    json_object_set_int_member(info, "bps_wr", 0);
    json_object_set_int_member(info, "write_threshold", 0);
    if (*backing_name) {
        json_object_set_string_member(info, "backing_file", backing_name);
    }
    json_object_set_boolean_member(info, "encrypted", false);
    json_object_set_int_member(info, "bps", 0);
    json_object_set_int_member(info, "bps_rd", 0);
    json_object_set_boolean_member(cache, "no-flush",
                                   flags & BDRV_O_NO_FLUSH);
    json_object_set_boolean_member(cache, "direct", flags & BDRV_O_NOCACHE);
    json_object_set_boolean_member(cache, "writeback", true);
    json_object_set_object_member(info, "cache", cache);
    json_object_set_string_member(info, "file", bdrv_get_filename(bs));
    return json_node_from_object(info);
}

static JsonObject *io_stats(BlockDriverState *bs)
{
    JsonObject *o = json_object_new();
    BlockAcctStats st;

    bdrv_get_stats(bs, &st);

    json_object_set_int_member(o, "unmap_operations", st.discard_ops);
    json_object_set_int_member(o, "unmap_merged", 0);
    json_object_set_int_member(o, "flush_total_time_ns",
                               st.flush_total_time_ns);
    json_object_set_int_member(o, "wr_highest_offset", st.wr_highest_offset);
    json_object_set_int_member(o, "wr_total_time_ns", st.wr_total_time_ns);
    json_object_set_int_member(o, "failed_wr_operations", st.failed_wr_ops);
    json_object_set_int_member(o, "failed_rd_operations", st.failed_rd_ops);
    json_object_set_int_member(o, "wr_merged", 0);
    json_object_set_int_member(o, "wr_bytes", st.wr_bytes);
    json_object_set_array_member(o, "timed_stats", json_array_new());
    json_object_set_int_member(o, "failed_unmap_operations", 0);
    json_object_set_int_member(o, "failed_flush_operations",
                               st.failed_flush_ops);
    json_object_set_boolean_member(o, "account_invalid", false);
    json_object_set_int_member(o, "rd_total_time_ns", st.rd_total_time_ns);
    json_object_set_int_member(o, "invalid_unmap_operations", 0);
    json_object_set_int_member(o, "flush_operations", st.flush_ops);
    json_object_set_int_member(o, "wr_operations", st.wr_ops);
    json_object_set_int_member(o, "unmap_bytes", st.discard_bytes);
    json_object_set_int_member(o, "rd_merged", 0);
    json_object_set_int_member(o, "rd_bytes", st.rd_bytes);
    json_object_set_int_member(o, "unmap_total_time_ns", 0);
    json_object_set_int_member(o, "invalid_flush_operations", 0);
    json_object_set_boolean_member(o, "account_failed", false);
    json_object_set_int_member(o, "rd_operations", st.rd_ops);
    json_object_set_int_member(o, "invalid_wr_operations", 0);
    json_object_set_int_member(o, "invalid_rd_operations", 0);
    json_object_set_int_member(o, "zero_bytes", st.zero_bytes);
    json_object_set_int_member(o, "zero_operations", st.zero_ops);
    return o;
}

JsonNode *block_stats_info(BlockDriverState *bs)
{
    JsonObject *stats = json_object_new();
    BlockDriverState *file = bdrv_get_file(bs);
    JsonNode *dedup;

    if (file) {
        json_object_set_member(stats, "parent", block_stats_info(file));
    }
    json_object_set_object_member(stats, "stats", io_stats(bs));
    if (*bdrv_get_node_name(bs)) {
        json_object_set_string_member(stats, "node-name",
                                      bdrv_get_node_name(bs));
    }
    dedup = bdrv_dedup_query(bs);
    if (dedup) {
        json_object_set_member(stats, "dedup", dedup);
    }
    return json_node_from_object(stats);
}

/*
 * Block node commands: blockdev-add/-del, node queries, dedup control.
 *
 * The monitor owns the nodes that --blockdev and blockdev-add create: it
 * holds the reference bdrv_open() returned, in creation order, and drops
 * them newest first at exit so a node always goes before the nodes it
 * references by name.  Children opened inline belong to their parent.
 */
#include "qemu/osdep.h"
#include "block-info.h"
#include "json-node.h"
#include "qdict-json.h"
#include "qmp-commands.h"

static GList *owned_nodes;

BlockDriverState *qmp_blockdev_open(QDict *opts, Error **errp)
{
    BlockDriverState *bs;

    if (!qdict_get_str(opts, "node-name")) {
        error_setg(errp, "'node-name' must be specified for the root node");
        qdict_unref(opts);
        return NULL;
    }
    /* bdrv_open() drops BDRV_O_RDWR itself for read-only=on. */
    bs = bdrv_open(NULL, opts, BDRV_O_RDWR, errp);
    if (bs) {
        owned_nodes = g_list_append(owned_nodes, bs);
    }
    return bs;
}

void qmp_blockdev_close_all(void)
{
    while (owned_nodes) {
        GList *last = g_list_last(owned_nodes);
        BlockDriverState *bs = last->data;

        owned_nodes = g_list_delete_link(owned_nodes, last);
        bdrv_flush(bs);
        bdrv_unref(bs);
    }
}

void qmp_blockdev_add(QmpSession *session, JsonObject *args, JsonNode **ret,
                      Error **errp)
{
    QDict *opts = qdict_new();

    qdict_flatten_json(opts, "", args);
    qmp_blockdev_open(opts, errp);
}

static bool subtree_contains(BlockDriverState *root, BlockDriverState *bs)
{
    BlockDriverState *file = bdrv_get_file(root);
    BlockDriverState *backing = bdrv_get_backing(root);

    return (file && (file == bs || subtree_contains(file, bs))) ||
           (backing && (backing == bs || subtree_contains(backing, bs)));
}

/* Every node hangs below an owned node, so this finds all parents. */
static bool node_has_parent(BlockDriverState *bs)
{
    for (GList *l = owned_nodes; l; l = l->next) {
        if (l->data != bs && subtree_contains(l->data, bs)) {
            return true;
        }
    }
    return false;
}

static BlockDriverState *find_node(const char *name, Error **errp)
{
    BlockDriverState *bs = bdrv_find_node(name);

    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'", name);
    }
    return bs;
}

void qmp_blockdev_del(QmpSession *session, JsonObject *args, JsonNode **ret,
                      Error **errp)
{
    const char *name = json_object_get_string_member(args, "node-name");
    BlockDriverState *bs = find_node(name, errp);

    if (!bs) {
        return;
    }
    if (!g_list_find(owned_nodes, bs)) {
        error_setg(errp, "Node %s is not owned by the monitor", name);
        return;
    }
    if (qmp_node_is_exported(bs)) {
        error_setg(errp, "Node %s is in use", name);
        return;
    }
    if (node_has_parent(bs)) {
        error_setg(errp, "Block device %s is in use", name);
        return;
    }
    owned_nodes = g_list_remove(owned_nodes, bs);
    bdrv_flush(bs);
    bdrv_unref(bs);
}

static void prepend_device_info(BlockDriverState *bs, void *opaque)
{
    GList **list = opaque;

    *list = g_list_prepend(*list, block_device_info(bs));
}

/* Newest node first, as QEMU lists them. */
void qmp_query_named_block_nodes(QmpSession *session, JsonObject *args,
                                 JsonNode **ret, Error **errp)
{
    JsonArray *arr = json_array_new();
    GList *infos = NULL;

    bdrv_iterate_named_nodes(prepend_device_info, &infos);
    for (GList *l = infos; l; l = l->next) {
        json_array_add_element(arr, l->data);
    }
    g_list_free(infos);
    *ret = json_node_from_array(arr);
}

static void add_stats(BlockDriverState *bs, void *opaque)
{
    json_array_add_element(opaque, block_stats_info(bs));
}

/* No guest devices here: only the per-node form has entries. */
void qmp_query_blockstats(QmpSession *session, JsonObject *args,
                          JsonNode **ret, Error **errp)
{
    JsonArray *arr = json_array_new();

    if (json_object_get_boolean_member_with_default(args, "query-nodes",
                                                    false)) {
        bdrv_iterate_named_nodes(add_stats, arr);
    }
    *ret = json_node_from_array(arr);
}

static void set_dedup_paused(JsonObject *args, bool paused, Error **errp)
{
    BlockDriverState *bs =
        find_node(json_object_get_string_member(args, "node-name"), errp);

    if (bs) {
        bdrv_dedup_set_paused(bs, paused, errp);
    }
}

void qmp_block_pause_dedup(QmpSession *session, JsonObject *args,
                           JsonNode **ret, Error **errp)
{
    set_dedup_paused(args, true, errp);
}

void qmp_block_resume_dedup(QmpSession *session, JsonObject *args,
                            JsonNode **ret, Error **errp)
{
    set_dedup_paused(args, false, errp);
}

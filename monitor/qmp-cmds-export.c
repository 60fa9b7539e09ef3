/*
 * The NBD server and block exports: nbd-server-start/-stop,
 * block-export-add/-del, query-block-exports, and their command-line
 * twins --nbd-server and --export.
 *
 * One NBD server at most; exports are kept in creation order under their
 * QMP id.  Every way an export goes away (block-export-del,
 * nbd-server-stop, quit, a termination signal) emits BLOCK_EXPORT_DELETED
 * once the NBD layer has closed its connections, as QEMU does.
 *
 * Removal is synchronous: nbd_export_remove() lets requests in flight
 * finish and then disconnects the clients, so both removal modes behave
 * the same and an export never lingers in a "shutting-down" state.
 */
#include "qemu/osdep.h"
#include "block/nbd.h"
#include "json-node.h"
#include "qmp.h"
#include "qmp-commands.h"

typedef struct BlockExport {
    char *id;
    BlockDriverState *bs;
    NBDExport *nbd;
} BlockExport;

static NBDServer *nbd_server;
static GList *block_exports;

static bool nbd_server_start_addr(JsonObject *addr, uint32_t max_connections,
                                  Error **errp)
{
    const char *type = json_object_get_string_member(addr, "type");
    NBDServerAddr sa = {
        .type = !strcmp(type, "unix") ? NBD_ADDR_UNIX : NBD_ADDR_INET,
        .path = (char *)json_object_get_string_member_with_default(
                    addr, "path", NULL),
        .host = (char *)json_object_get_string_member_with_default(
                    addr, "host", NULL),
        .port = (char *)json_object_get_string_member_with_default(
                    addr, "port", NULL),
    };

    if (nbd_server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    nbd_server = nbd_server_start(&sa, max_connections, errp);
    return nbd_server != NULL;
}

bool qmp_nbd_server_start_options(JsonObject *opts, Error **errp)
{
    return nbd_server_start_addr(
        json_object_get_object_member(opts, "addr"),
        json_object_get_int_member_with_default(opts, "max-connections", 0),
        errp);
}

/* The legacy address form nests the address under "data". */
void qmp_nbd_server_start(QmpSession *session, JsonObject *args,
                          JsonNode **ret, Error **errp)
{
    JsonObject *legacy = json_object_get_object_member(args, "addr");
    g_autoptr(JsonObject) addr =
        json_object_ref(json_object_get_object_member(legacy, "data"));

    json_object_set_string_member(addr, "type",
        json_object_get_string_member(legacy, "type"));
    nbd_server_start_addr(addr,
        json_object_get_int_member_with_default(args, "max-connections", 0),
        errp);
}

static BlockExport *export_find(const char *id)
{
    for (GList *l = block_exports; l; l = l->next) {
        BlockExport *e = l->data;
        if (!strcmp(e->id, id)) {
            return e;
        }
    }
    return NULL;
}

static void export_remove(BlockExport *e)
{
    JsonObject *data = json_object_new();

    block_exports = g_list_remove(block_exports, e);
    nbd_export_remove(nbd_server, e->nbd);
    json_object_set_string_member(data, "id", e->id);
    qmp_event_send("BLOCK_EXPORT_DELETED", data);
    g_free(e->id);
    g_free(e);
}

bool qmp_block_export_add_options(JsonObject *opts, Error **errp)
{
    const char *id = json_object_get_string_member(opts, "id");
    const char *node = json_object_get_string_member(opts, "node-name");
    const char *name = json_object_get_string_member_with_default(
                           opts, "name", node);
    const char *desc = json_object_get_string_member_with_default(
                           opts, "description", NULL);
    bool writable = json_object_get_boolean_member_with_default(
                        opts, "writable", false);
    BlockDriverState *bs;
    BlockBackend *blk;
    BlockExport *e;
    NBDExport *exp;

    if (export_find(id)) {
        error_setg(errp, "Block export id '%s' is already in use", id);
        return false;
    }
    bs = bdrv_find_node(node);
    if (!bs) {
        error_setg(errp, "Cannot find device='' nor node-name='%s'", node);
        return false;
    }
    if (!nbd_server) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    if (writable && bdrv_is_read_only(bs)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return false;
    }
    if (nbd_export_find(nbd_server, name)) {
        error_setg(errp, "NBD server already has export named '%s'", name);
        return false;
    }
    blk = blk_new_with_bs(bs, writable, errp);
    if (!blk) {
        return false;
    }
    blk_set_enable_write_cache(blk, !json_object_get_boolean_member_with_default(
                                        opts, "writethrough", false));
    exp = nbd_export_add(nbd_server, name, desc, blk, writable, errp);
    blk_unref(blk);
    if (!exp) {
        return false;
    }
    e = g_new0(BlockExport, 1);
    e->id = g_strdup(id);
    e->bs = bs;
    e->nbd = exp;
    block_exports = g_list_append(block_exports, e);
    return true;
}

void qmp_block_export_add(QmpSession *session, JsonObject *args,
                          JsonNode **ret, Error **errp)
{
    qmp_block_export_add_options(args, errp);
}

void qmp_block_export_del(QmpSession *session, JsonObject *args,
                          JsonNode **ret, Error **errp)
{
    const char *id = json_object_get_string_member(args, "id");
    BlockExport *e = export_find(id);

    if (!e) {
        error_setg(errp, "Export '%s' is not found", id);
        return;
    }
    export_remove(e);
}

void qmp_exports_shutdown(void)
{
    while (block_exports) {
        export_remove(block_exports->data);
    }
    nbd_server_stop(nbd_server);
    nbd_server = NULL;
}

void qmp_nbd_server_stop(QmpSession *session, JsonObject *args,
                         JsonNode **ret, Error **errp)
{
    if (!nbd_server) {
        error_setg(errp, "NBD server not running");
        return;
    }
    qmp_exports_shutdown();
}

bool qmp_node_is_exported(BlockDriverState *bs)
{
    for (GList *l = block_exports; l; l = l->next) {
        if (((BlockExport *)l->data)->bs == bs) {
            return true;
        }
    }
    return false;
}

void qmp_query_block_exports(QmpSession *session, JsonObject *args,
                             JsonNode **ret, Error **errp)
{
    JsonArray *arr = json_array_new();

    for (GList *l = block_exports; l; l = l->next) {
        BlockExport *e = l->data;
        JsonObject *info = json_object_new();

        json_object_set_string_member(info, "node-name",
                                      bdrv_get_node_name(e->bs));
        json_object_set_boolean_member(info, "shutting-down", false);
        json_object_set_string_member(info, "type", "nbd");
        json_object_set_string_member(info, "id", e->id);
        json_array_add_object_element(arr, info);
    }
    *ret = json_node_from_array(arr);
}

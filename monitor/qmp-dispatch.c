/*
 * QMP command dispatch (see qmp-dispatch.h).
 */
#include "qemu/osdep.h"
#include "qapi-schema.h"
#include "qmp-commands.h"
#include "json-node.h"

typedef struct QmpCommand {
    const char *name;
    QmpCommandFunc *fn;
} QmpCommand;

static const QmpCommand qmp_commands[] = {
    { "qmp_capabilities", qmp_qmp_capabilities },
    { "query-version", qmp_query_version },
    { "query-commands", qmp_query_commands },
    { "quit", qmp_quit },
    { "blockdev-add", qmp_blockdev_add },
    { "blockdev-del", qmp_blockdev_del },
    { "query-named-block-nodes", qmp_query_named_block_nodes },
    { "query-blockstats", qmp_query_blockstats },
    { "nbd-server-start", qmp_nbd_server_start },
    { "nbd-server-stop", qmp_nbd_server_stop },
    { "block-export-add", qmp_block_export_add },
    { "block-export-del", qmp_block_export_del },
    { "query-block-exports", qmp_query_block_exports },
    { "block-pause-dedup", qmp_block_pause_dedup },
    { "block-resume-dedup", qmp_block_resume_dedup },
};

static const QmpCommand *qmp_find_command(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(qmp_commands); i++) {
        if (!strcmp(qmp_commands[i].name, name)) {
            return &qmp_commands[i];
        }
    }
    return NULL;
}

static void check_handler_exists(const char *name, void *opaque)
{
    (void)opaque;
    if (!qmp_find_command(name)) {
        g_error("QAPI command '%s' has no handler", name);
    }
}

void qmp_dispatch_check_table(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(qmp_commands); i++) {
        if (!qapi_schema_has_command(qmp_commands[i].name)) {
            g_error("handler '%s' is not declared in the QAPI schema",
                    qmp_commands[i].name);
        }
    }
    qapi_schema_foreach_command(check_handler_exists, NULL);
}

void qmp_foreach_command(void (*fn)(const char *name, void *opaque),
                         void *opaque)
{
    for (size_t i = 0; i < G_N_ELEMENTS(qmp_commands); i++) {
        fn(qmp_commands[i].name, opaque);
    }
}

JsonNode *qmp_dispatch(QmpSession *session, const char *name, JsonNode *args,
                       Error **errp)
{
    const QmpCommand *cmd = qmp_find_command(name);
    g_autoptr(JsonNode) checked = NULL;
    Error *local_err = NULL;
    JsonNode *ret = NULL;

    if (!cmd) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        return NULL;
    }
    checked = qapi_check_command_args(name, args, false, errp);
    if (!checked) {
        return NULL;
    }
    cmd->fn(session, json_node_get_object(checked), &ret, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        if (ret) {
            json_node_unref(ret);
        }
        return NULL;
    }
    if (!ret) {
        ret = json_node_new_empty_object();
    }
    return ret;
}

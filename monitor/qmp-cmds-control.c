/*
 * Session control commands: qmp_capabilities, query-version,
 * query-commands and quit.
 */
#include "qemu/osdep.h"
#include "json-node.h"
#include "qmp-commands.h"

static void (*quit_handler)(void);

void qmp_set_quit_handler(void (*fn)(void))
{
    quit_handler = fn;
}

void qmp_qmp_capabilities(QmpSession *session, JsonObject *args,
                          JsonNode **ret, Error **errp)
{
    JsonNode *enable = json_object_get_member(args, "enable");

    /* The schema admits only "oob" as an element. */
    session->oob_enabled = enable &&
                           json_array_get_length(json_node_get_array(enable));
    session->negotiated = true;
}

JsonNode *qmp_version_info(void)
{
    JsonObject *info = json_object_new(), *qemu = json_object_new();
    unsigned major = 0, minor = 0, micro = 0;

    sscanf(QEMU_VERSION, "%u.%u.%u", &major, &minor, &micro);
    json_object_set_int_member(qemu, "micro", micro);
    json_object_set_int_member(qemu, "minor", minor);
    json_object_set_int_member(qemu, "major", major);
    json_object_set_object_member(info, "qemu", qemu);
    json_object_set_string_member(info, "package", QEMU_PKGVERSION);
    return json_node_from_object(info);
}

void qmp_query_version(QmpSession *session, JsonObject *args, JsonNode **ret,
                       Error **errp)
{
    *ret = qmp_version_info();
}

static void add_command_info(const char *name, void *opaque)
{
    JsonObject *info = json_object_new();

    json_object_set_string_member(info, "name", name);
    json_array_add_object_element(opaque, info);
}

void qmp_query_commands(QmpSession *session, JsonObject *args, JsonNode **ret,
                        Error **errp)
{
    JsonArray *list = json_array_new();

    qmp_foreach_command(add_command_info, list);
    *ret = json_node_from_array(list);
}

/*
 * Exports go first, so their BLOCK_EXPORT_DELETED events precede the
 * reply; the daemon closes the nodes once the main loop has returned.
 */
void qmp_quit(QmpSession *session, JsonObject *args, JsonNode **ret,
              Error **errp)
{
    qmp_exports_shutdown();
    if (quit_handler) {
        quit_handler();
    }
}

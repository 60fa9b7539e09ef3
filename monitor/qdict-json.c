/*
 * Flat QDict <-> nested JSON object conversions (see qdict-json.h).
 */
#include "qemu/osdep.h"
#include "qdict-json.h"
#include "json-node.h"

static void flatten_node(QDict *d, const char *key, JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        g_autofree char *prefix = g_strconcat(key, ".", NULL);
        qdict_flatten_json(d, prefix, json_node_get_object(node));
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            g_autofree char *sub = g_strdup_printf("%s.%u", key, i);
            flatten_node(d, sub, json_array_get_element(arr, i));
        }
    } else if (JSON_NODE_HOLDS_NULL(node)) {
        qdict_put_str(d, key, "null");
    } else if (json_node_get_value_type(node) == G_TYPE_BOOLEAN) {
        qdict_put_bool(d, key, json_node_get_boolean(node));
    } else if (json_node_get_value_type(node) == G_TYPE_INT64) {
        qdict_put_int(d, key, json_node_get_int(node));
    } else if (json_node_get_value_type(node) == G_TYPE_DOUBLE) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        qdict_put_str(d, key, g_ascii_dtostr(buf, sizeof(buf),
                                             json_node_get_double(node)));
    } else {
        qdict_put_str(d, key, json_node_get_string(node));
    }
}

void qdict_flatten_json(QDict *d, const char *prefix, JsonObject *obj)
{
    GList *names = json_object_get_members(obj);

    for (GList *l = names; l; l = l->next) {
        g_autofree char *key = g_strconcat(prefix, l->data, NULL);
        flatten_node(d, key, json_object_get_member(obj, l->data));
    }
    g_list_free(names);
}

JsonNode *qdict_to_json_nested(const QDict *d, Error **errp)
{
    JsonObject *root = json_object_new();
    JsonNode *ret = json_node_from_object(root);

    for (size_t i = 0; i < qdict_size(d); i++) {
        const char *key = qdict_key_at(d, i);
        g_auto(GStrv) parts = g_strsplit(key, ".", -1);
        JsonObject *obj = root;
        guint n = g_strv_length(parts);

        for (guint j = 0; j < n; j++) {
            JsonNode *cur = json_object_get_member(obj, parts[j]);
            bool last = j + 1 == n;

            if (!*parts[j] || (cur && (last || !JSON_NODE_HOLDS_OBJECT(cur)))) {
                error_setg(errp, "Parameter '%s' used inconsistently", key);
                json_node_unref(ret);
                return NULL;
            }
            if (last) {
                json_object_set_string_member(obj, parts[j],
                                              qdict_value_at(d, i));
            } else if (!cur) {
                JsonObject *sub = json_object_new();
                json_object_set_object_member(obj, parts[j], sub);
                obj = sub;
            } else {
                obj = json_node_get_object(cur);
            }
        }
    }
    return ret;
}

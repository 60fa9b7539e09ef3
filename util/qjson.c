/*
 * JSON text in QEMU's layout (see qapi/qjson.h).
 */
#include "qemu/osdep.h"
#include "qapi/qjson.h"

static void append_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        case '\b':
            g_string_append(out, "\\b");
            break;
        case '\f':
            g_string_append(out, "\\f");
            break;
        default:
            if (*p < 0x20) {
                g_string_append_printf(out, "\\u%04x", *p);
            } else {
                g_string_append_c(out, *p);
            }
        }
    }
    g_string_append_c(out, '"');
}

static void append_value(GString *out, JsonNode *node)
{
    switch (json_node_get_value_type(node)) {
    case G_TYPE_INT64:
        g_string_append_printf(out, "%" PRId64, json_node_get_int(node));
        break;
    case G_TYPE_DOUBLE: {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append(out, g_ascii_dtostr(buf, sizeof(buf),
                                            json_node_get_double(node)));
        break;
    }
    case G_TYPE_BOOLEAN:
        g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
        break;
    case G_TYPE_STRING:
        append_string(out, json_node_get_string(node));
        break;
    default:
        g_string_append(out, "null");
    }
}

static void newline(GString *out, bool pretty, int indent)
{
    if (pretty) {
        g_string_append_c(out, '\n');
        g_string_append_printf(out, "%*s", indent, "");
    }
}

void qjson_append(GString *out, JsonNode *node, bool pretty, int indent)
{
    switch (JSON_NODE_TYPE(node)) {
    case JSON_NODE_OBJECT: {
        JsonObject *obj = json_node_get_object(node);
        GList *members = json_object_get_members(obj);
        g_string_append_c(out, '{');
        for (GList *l = members; l; l = l->next) {
            newline(out, pretty, indent + 4);
            append_string(out, l->data);
            g_string_append(out, ": ");
            qjson_append(out, json_object_get_member(obj, l->data), pretty,
                         indent + 4);
            if (l->next) {
                g_string_append(out, pretty ? "," : ", ");
            }
        }
        if (members) {
            newline(out, pretty, indent);
        }
        g_list_free(members);
        g_string_append_c(out, '}');
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *arr = json_node_get_array(node);
        guint n = json_array_get_length(arr);
        g_string_append_c(out, '[');
        for (guint i = 0; i < n; i++) {
            newline(out, pretty, indent + 4);
            qjson_append(out, json_array_get_element(arr, i), pretty,
                         indent + 4);
            if (i + 1 < n) {
                g_string_append(out, pretty ? "," : ", ");
            }
        }
        if (n) {
            newline(out, pretty, indent);
        }
        g_string_append_c(out, ']');
        break;
    }
    case JSON_NODE_NULL:
        g_string_append(out, "null");
        break;
    case JSON_NODE_VALUE:
        append_value(out, node);
        break;
    }
}

char *qjson_to_string(JsonNode *node, bool pretty)
{
    GString *out = g_string_new(NULL);

    qjson_append(out, node, pretty, 0);
    return g_string_free(out, FALSE);
}

static void dump_scalar(GString *out, JsonNode *node)
{
    if (JSON_NODE_HOLDS_NULL(node)) {
        g_string_append(out, "null");
    } else if (json_node_get_value_type(node) == G_TYPE_STRING) {
        g_string_append(out, json_node_get_string(node));
    } else {
        append_value(out, node);
    }
}

static void dump_entry(GString *out, const char *label, JsonNode *node,
                       int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node)) {
        g_string_append_printf(out, "%*s%s:\n", indent, "", label);
        qjson_dump_human(out, node, indent + 4);
    } else {
        g_string_append_printf(out, "%*s%s: ", indent, "", label);
        dump_scalar(out, node);
        g_string_append_c(out, '\n');
    }
}

void qjson_dump_human(GString *out, JsonNode *node, int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *obj = json_node_get_object(node);
        GList *members = json_object_get_members(obj);
        for (GList *l = members; l; l = l->next) {
            g_autofree char *label = g_strdelimit(g_strdup(l->data), "-", ' ');
            dump_entry(out, label, json_object_get_member(obj, l->data),
                       indent);
        }
        g_list_free(members);
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            g_autofree char *label = g_strdup_printf("[%u]", i);
            dump_entry(out, label, json_array_get_element(arr, i), indent);
        }
    } else {
        g_string_append_printf(out, "%*s", indent, "");
        dump_scalar(out, node);
        g_string_append_c(out, '\n');
    }
}

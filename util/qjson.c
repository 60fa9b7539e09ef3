/*
 * JSON text in QEMU's layout (see qapi/qjson.h).
 *
 * Output is byte-for-byte what QEMU's own JSON writer produces for the same
 * document: member order as built, 64-bit integers as decimal, doubles with
 * 17 significant digits, strings escaped as described at append_string().
 */
#include "qemu/osdep.h"
#include "qapi/qjson.h"

/*
 * One character of a C string read as QEMU reads strings: UTF-8, plus the
 * two-byte form C0 80 for U+0000.  Returns the code point and advances *p,
 * or returns -1 for anything that is not a valid character (stray or
 * missing continuation bytes, overlong forms, surrogates, noncharacters,
 * values past U+10FFFF); an incomplete sequence ends before the byte that
 * broke it.
 */
static int next_code_point(const unsigned char **p)
{
    static const int shortest[] = { 0, 0, 0x80, 0x800, 0x10000, 0x200000,
                                    0x4000000 };
    unsigned lead = *(*p)++;
    int len = 0, cp;

    if (lead < 0x80) {
        return lead;
    }
    while (len < 7 && (lead & (0x80 >> len))) {
        len++;
    }
    if (len < 2 || len > 6) {
        return -1;              /* continuation byte, or 0xFE/0xFF */
    }
    cp = lead & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((**p & 0xc0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (*(*p)++ & 0x3f);
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe ||
        (cp < shortest[len] && !(cp == 0 && len == 2))) {
        return -1;
    }
    return cp;
}

/* The two-character escape of cp, or NULL. */
static const char *short_escape(int cp)
{
    switch (cp) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        return NULL;
    }
}

/*
 * Strings print with the escapes QEMU uses: the short forms above; \uXXXX
 * (uppercase hex) for every other character outside printable ASCII, as a
 * surrogate pair beyond U+FFFF; U+FFFD for bytes that are not valid UTF-8.
 */
static void append_string(GString *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    g_string_append_c(out, '"');
    while (*p) {
        int cp = next_code_point(&p);

        if (short_escape(cp)) {
            g_string_append(out, short_escape(cp));
        } else if (cp >= 0x20 && cp < 0x7f) {
            g_string_append_c(out, cp);
        } else if (cp > 0xffff) {
            cp -= 0x10000;
            g_string_append_printf(out, "\\u%04X\\u%04X", 0xd800 + (cp >> 10),
                                   0xdc00 + (cp & 0x3ff));
        } else {
            g_string_append_printf(out, "\\u%04X", cp < 0 ? 0xfffd : cp);
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
        /* 17 significant digits: enough to read back the same double. */
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append(out, g_ascii_formatd(buf, sizeof(buf), "%.17g",
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

/*
 * Containers: members on their own lines four spaces further in, the
 * closing bracket on a line of its own even when there are no members
 * ("[" newline "]"), as QEMU prints them; compact text has ", " between
 * members and nothing inside empty brackets.
 */
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
        newline(out, pretty, indent);
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
        newline(out, pretty, indent);
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

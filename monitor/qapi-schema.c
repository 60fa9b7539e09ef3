/*
 * Run-time QAPI schema: lookup of commands and types, and the validator
 * (see qapi-schema.h; the schema language is described at the top of
 * qapi/qapi-schema.json).
 *
 * The schema is trusted: qapi-gen.py already checked at build time that
 * every expression is well formed and every type it names exists, so a
 * malformed embedded schema is a build bug and aborts.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qapi-schema.h"
#include "json-node.h"

typedef struct Schema {
    JsonNode *root;
    GHashTable *types;      /* name -> expression (JsonObject *) */
    GHashTable *commands;   /* name -> expression (JsonObject *) */
    GPtrArray *command_names;
} Schema;

/* One member of an object type, as the validator walks it. */
typedef struct Member {
    const char *name;
    JsonNode *type;
    bool optional;
} Member;

typedef struct IntType {
    const char *name;
    bool is_unsigned;
    int64_t max;
} IntType;

static const IntType int_types[] = {
    { "int", false, INT64_MAX },
    { "int64", false, INT64_MAX },
    { "uint32", true, UINT32_MAX },
    { "uint64", true, INT64_MAX },
    { "size", true, INT64_MAX },
};

static const Schema *schema_get(void)
{
    static gsize once;
    static Schema s;

    if (g_once_init_enter(&once)) {
        g_autoptr(GError) err = NULL;
        JsonArray *exprs;

        s.root = json_from_string(qapi_schema_json, &err);
        if (!s.root || !JSON_NODE_HOLDS_ARRAY(s.root)) {
            g_error("embedded QAPI schema is invalid: %s",
                    err ? err->message : "not a list");
        }
        s.types = g_hash_table_new(g_str_hash, g_str_equal);
        s.commands = g_hash_table_new(g_str_hash, g_str_equal);
        s.command_names = g_ptr_array_new();
        exprs = json_node_get_array(s.root);
        for (guint i = 0; i < json_array_get_length(exprs); i++) {
            JsonObject *e = json_array_get_object_element(exprs, i);
            static const char *const type_metas[] = { "enum", "struct",
                                                      "union" };
            for (size_t j = 0; j < G_N_ELEMENTS(type_metas); j++) {
                if (json_object_has_member(e, type_metas[j])) {
                    g_hash_table_insert(s.types, (gpointer)
                        json_object_get_string_member(e, type_metas[j]), e);
                }
            }
            if (json_object_has_member(e, "command")) {
                const char *name = json_object_get_string_member(e, "command");
                g_hash_table_insert(s.commands, (gpointer)name, e);
                g_ptr_array_add(s.command_names, (gpointer)name);
            }
        }
        g_once_init_leave(&once, 1);
    }
    return &s;
}

void qapi_schema_foreach_command(void (*fn)(const char *name, void *opaque),
                                 void *opaque)
{
    const Schema *s = schema_get();

    for (guint i = 0; i < s->command_names->len; i++) {
        fn(g_ptr_array_index(s->command_names, i), opaque);
    }
}

bool qapi_schema_has_command(const char *name)
{
    return g_hash_table_contains(schema_get()->commands, name);
}

static JsonObject *type_expr(const char *name)
{
    JsonObject *e = g_hash_table_lookup(schema_get()->types, name);

    assert(e);
    return e;
}

static void add_inline_members(GArray *out, JsonObject *obj)
{
    GList *names = json_object_get_members(obj);

    for (GList *l = names; l; l = l->next) {
        const char *key = l->data;
        Member m = {
            .name = key[0] == '*' ? key + 1 : key,
            .type = json_object_get_member(obj, key),
            .optional = key[0] == '*',
        };
        g_array_append_val(out, m);
    }
    g_list_free(names);
}

static void add_members(GArray *out, JsonNode *decl);

/* A struct's members: those of its base first. */
static void add_struct_members(GArray *out, const char *name)
{
    JsonObject *e = type_expr(name);

    if (json_object_has_member(e, "base")) {
        add_members(out, json_object_get_member(e, "base"));
    }
    add_inline_members(out, json_object_get_object_member(e, "data"));
}

/* Append the members of decl (inline members or a struct's name) to out. */
static void add_members(GArray *out, JsonNode *decl)
{
    if (JSON_NODE_HOLDS_VALUE(decl)) {
        add_struct_members(out, json_node_get_string(decl));
    } else {
        add_inline_members(out, json_node_get_object(decl));
    }
}

static char *member_path(const char *path, const char *name)
{
    return *path ? g_strdup_printf("%s.%s", path, name) : g_strdup(name);
}

static void type_error(Error **errp, const char *path, const char *expected)
{
    error_setg(errp, "Invalid parameter type for '%s', expected: %s", path,
               expected);
}

static JsonNode *check_value(JsonNode *type, JsonNode *value,
                             const char *path, bool keyval, Error **errp);

static JsonNode *check_object(GArray *members, JsonNode *value,
                              const char *path, bool keyval,
                              bool allow_extra, Error **errp)
{
    JsonObject *in, *out;
    GList *names;
    JsonNode *ret;
    bool ok = true;

    if (!JSON_NODE_HOLDS_OBJECT(value)) {
        type_error(errp, path, "object");
        return NULL;
    }
    in = json_node_get_object(value);
    out = json_object_new();
    for (guint i = 0; ok && i < members->len; i++) {
        Member *m = &g_array_index(members, Member, i);
        JsonNode *v = json_object_get_member(in, m->name);
        g_autofree char *sub = member_path(path, m->name);

        if (!v) {
            if (!m->optional) {
                error_setg(errp, "Parameter '%s' is missing", sub);
                ok = false;
            }
            continue;
        }
        v = check_value(m->type, v, sub, keyval, errp);
        if (v) {
            json_object_set_member(out, m->name, v);
        }
        ok = v != NULL;
    }
    names = json_object_get_members(in);
    for (GList *l = names; ok && l; l = l->next) {
        if (json_object_has_member(out, l->data)) {
            continue;
        }
        bool declared = false;
        for (guint i = 0; i < members->len; i++) {
            declared |= !strcmp(g_array_index(members, Member, i).name,
                                l->data);
        }
        if (!declared && !allow_extra) {
            g_autofree char *sub = member_path(path, l->data);
            error_setg(errp, "Parameter '%s' is unexpected", sub);
            ok = false;
        } else if (!declared) {
            json_object_set_member(out, l->data,
                json_node_copy(json_object_get_member(in, l->data)));
        }
    }
    g_list_free(names);
    ret = json_node_from_object(out);
    if (!ok) {
        json_node_unref(ret);
        return NULL;
    }
    return ret;
}

/* The base decides the branch, whose members join the base's. */
static JsonNode *check_union(JsonObject *expr, JsonNode *value,
                             const char *path, bool keyval, bool allow_extra,
                             Error **errp)
{
    g_autoptr(GArray) members = g_array_new(FALSE, FALSE, sizeof(Member));
    JsonObject *branches = json_object_get_object_member(expr, "data");
    const char *disc = json_object_get_string_member(expr, "discriminator");
    JsonNode *base;
    const char *tag;

    add_members(members, json_object_get_member(expr, "base"));
    base = check_object(members, value, path, keyval, true, errp);
    if (!base) {
        return NULL;
    }
    tag = json_object_get_string_member(json_node_get_object(base), disc);
    if (json_object_has_member(branches, tag)) {
        add_members(members, json_object_get_member(branches, tag));
    }
    json_node_unref(base);
    return check_object(members, value, path, keyval, allow_extra, errp);
}

static JsonNode *check_enum(JsonObject *expr, JsonNode *value,
                            const char *path, Error **errp)
{
    JsonArray *values = json_object_get_array_member(expr, "data");
    const char *s;

    if (!JSON_NODE_HOLDS_VALUE(value) ||
        json_node_get_value_type(value) != G_TYPE_STRING) {
        type_error(errp, path, "string");
        return NULL;
    }
    s = json_node_get_string(value);
    for (guint i = 0; i < json_array_get_length(values); i++) {
        if (!strcmp(json_array_get_string_element(values, i), s)) {
            return json_node_copy(value);
        }
    }
    error_setg(errp, "Parameter '%s' does not accept value '%s'", path, s);
    return NULL;
}

static bool is_scalar(JsonNode *value, GType type)
{
    return JSON_NODE_HOLDS_VALUE(value) &&
           json_node_get_value_type(value) == type;
}

static JsonNode *check_int(const IntType *t, JsonNode *value,
                           const char *path, bool keyval, Error **errp)
{
    int64_t n;

    if (keyval && is_scalar(value, G_TYPE_STRING)) {
        const char *s = json_node_get_string(value);
        uint64_t u;
        int ret;

        if (!strcmp(t->name, "size")) {
            ret = qemu_strtosz(s, &u);
            n = u;
        } else if (t->is_unsigned) {
            ret = qemu_strtou64(s, &u);
            n = u > INT64_MAX ? -1 : (int64_t)u;
        } else {
            ret = qemu_strtoi64(s, &n);
        }
        if (ret < 0) {
            error_setg(errp, "Parameter '%s' expects %s", path,
                       !strcmp(t->name, "size") ? "a size" : "integer");
            return NULL;
        }
    } else if (is_scalar(value, G_TYPE_INT64)) {
        n = json_node_get_int(value);
    } else if (t->is_unsigned) {
        error_setg(errp, "Parameter '%s' expects uint64", path);
        return NULL;
    } else {
        type_error(errp, path, "integer");
        return NULL;
    }
    if (t->is_unsigned && (n < 0 || n > t->max)) {
        error_setg(errp, "Parameter '%s' expects %s", path,
                   t->max == UINT32_MAX ? "uint32_t" : "uint64");
        return NULL;
    }
    return json_node_init_int(json_node_alloc(), n);
}

static JsonNode *check_builtin(const char *name, JsonNode *value,
                               const char *path, bool keyval, Error **errp)
{
    bool keyval_str = keyval && is_scalar(value, G_TYPE_STRING);

    for (size_t i = 0; i < G_N_ELEMENTS(int_types); i++) {
        if (!strcmp(int_types[i].name, name)) {
            return check_int(&int_types[i], value, path, keyval, errp);
        }
    }
    if (!strcmp(name, "any")) {
        return json_node_copy(value);
    }
    if (!strcmp(name, "str")) {
        if (!is_scalar(value, G_TYPE_STRING)) {
            type_error(errp, path, "string");
            return NULL;
        }
        return json_node_copy(value);
    }
    if (!strcmp(name, "bool")) {
        bool b;
        if (keyval_str) {
            if (qemu_parse_bool(json_node_get_string(value), &b) < 0) {
                error_setg(errp, "Parameter '%s' expects 'on' or 'off'", path);
                return NULL;
            }
            return json_node_init_boolean(json_node_alloc(), b);
        }
        if (!is_scalar(value, G_TYPE_BOOLEAN)) {
            type_error(errp, path, "boolean");
            return NULL;
        }
        return json_node_copy(value);
    }
    assert(!strcmp(name, "number"));
    if (keyval_str) {
        const char *s = json_node_get_string(value);
        char *end;
        double d = g_ascii_strtod(s, &end);
        if (!*s || *end) {
            error_setg(errp, "Parameter '%s' expects a number", path);
            return NULL;
        }
        return json_node_init_double(json_node_alloc(), d);
    }
    if (is_scalar(value, G_TYPE_INT64)) {
        return json_node_init_double(json_node_alloc(),
                                     json_node_get_int(value));
    }
    if (!is_scalar(value, G_TYPE_DOUBLE)) {
        type_error(errp, path, "number");
        return NULL;
    }
    return json_node_copy(value);
}

static JsonNode *check_list(JsonNode *elem_type, JsonNode *value,
                            const char *path, bool keyval, Error **errp)
{
    JsonArray *in, *out;
    JsonNode *ret;

    if (!JSON_NODE_HOLDS_ARRAY(value)) {
        type_error(errp, path, "array");
        return NULL;
    }
    in = json_node_get_array(value);
    out = json_array_new();
    ret = json_node_from_array(out);
    for (guint i = 0; i < json_array_get_length(in); i++) {
        g_autofree char *sub = g_strdup_printf("%s[%u]", path, i);
        JsonNode *v = check_value(elem_type, json_array_get_element(in, i),
                                  sub, keyval, errp);
        if (!v) {
            json_node_unref(ret);
            return NULL;
        }
        json_array_add_element(out, v);
    }
    return ret;
}

static JsonNode *check_named(const char *name, JsonNode *value,
                             const char *path, bool keyval, bool allow_extra,
                             Error **errp)
{
    JsonObject *expr = g_hash_table_lookup(schema_get()->types, name);
    g_autoptr(GArray) members = NULL;

    if (!expr) {
        return check_builtin(name, value, path, keyval, errp);
    }
    if (json_object_has_member(expr, "enum")) {
        return check_enum(expr, value, path, errp);
    }
    if (json_object_has_member(expr, "union")) {
        return check_union(expr, value, path, keyval, allow_extra, errp);
    }
    members = g_array_new(FALSE, FALSE, sizeof(Member));
    add_struct_members(members, name);
    return check_object(members, value, path, keyval, allow_extra, errp);
}

static JsonNode *check_value(JsonNode *type, JsonNode *value,
                             const char *path, bool keyval, Error **errp)
{
    g_autoptr(GArray) members = NULL;

    if (JSON_NODE_HOLDS_ARRAY(type)) {
        return check_list(json_array_get_element(json_node_get_array(type), 0),
                          value, path, keyval, errp);
    }
    if (JSON_NODE_HOLDS_VALUE(type)) {
        return check_named(json_node_get_string(type), value, path, keyval,
                           false, errp);
    }
    members = g_array_new(FALSE, FALSE, sizeof(Member));
    add_members(members, type);
    return check_object(members, value, path, keyval, false, errp);
}

JsonNode *qapi_check_type(const char *type, JsonNode *value, bool keyval,
                          Error **errp)
{
    return check_named(type, value, "", keyval, false, errp);
}

JsonNode *qapi_check_command_args(const char *name, JsonNode *args,
                                  bool keyval, Error **errp)
{
    JsonObject *expr = g_hash_table_lookup(schema_get()->commands, name);
    g_autoptr(JsonNode) empty = NULL;
    g_autoptr(GArray) members = NULL;
    JsonNode *data;
    bool allow_extra;

    assert(expr);
    if (!args) {
        empty = json_node_new_empty_object();
        args = empty;
    }
    allow_extra = json_object_has_member(expr, "gen") &&
                  !json_object_get_boolean_member(expr, "gen");
    data = json_object_get_member(expr, "data");
    if (data && JSON_NODE_HOLDS_VALUE(data)) {
        return check_named(json_node_get_string(data), args, "", keyval,
                           allow_extra, errp);
    }
    members = g_array_new(FALSE, FALSE, sizeof(Member));
    if (data) {
        add_members(members, data);
    }
    return check_object(members, args, "", keyval, allow_extra, errp);
}

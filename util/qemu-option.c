/*
 * Flat ordered string dictionaries and option tables (see qemu/option.h).
 */
#include "qemu/osdep.h"
#include "qemu/option.h"
#include "qemu/cutils.h"

/* Options are few (tens at most), so a linear array beats hashing here. */
struct QDict {
    GPtrArray *keys;
    GPtrArray *values;
};

QDict *qdict_new(void)
{
    QDict *d = g_new0(QDict, 1);

    d->keys = g_ptr_array_new_with_free_func(g_free);
    d->values = g_ptr_array_new_with_free_func(g_free);
    return d;
}

void qdict_unref(QDict *d)
{
    if (d) {
        g_ptr_array_free(d->keys, TRUE);
        g_ptr_array_free(d->values, TRUE);
        g_free(d);
    }
}

QDict *qdict_clone(const QDict *d)
{
    QDict *copy = qdict_new();

    for (size_t i = 0; i < qdict_size(d); i++) {
        qdict_put_str(copy, qdict_key_at(d, i), qdict_value_at(d, i));
    }
    return copy;
}

static gint qdict_index(const QDict *d, const char *key)
{
    for (guint i = 0; i < d->keys->len; i++) {
        if (!strcmp(g_ptr_array_index(d->keys, i), key)) {
            return i;
        }
    }
    return -1;
}

void qdict_put_str(QDict *d, const char *key, const char *value)
{
    gint i = qdict_index(d, key);

    if (i >= 0) {
        g_free(g_ptr_array_index(d->values, i));
        g_ptr_array_index(d->values, i) = g_strdup(value);
        return;
    }
    g_ptr_array_add(d->keys, g_strdup(key));
    g_ptr_array_add(d->values, g_strdup(value));
}

void qdict_put_int(QDict *d, const char *key, int64_t value)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, value);
    qdict_put_str(d, key, buf);
}

void qdict_put_bool(QDict *d, const char *key, bool value)
{
    qdict_put_str(d, key, value ? "on" : "off");
}

const char *qdict_get_str(const QDict *d, const char *key)
{
    gint i = d ? qdict_index(d, key) : -1;

    return i >= 0 ? g_ptr_array_index(d->values, i) : NULL;
}

bool qdict_haskey(const QDict *d, const char *key)
{
    return d && qdict_index(d, key) >= 0;
}

void qdict_del(QDict *d, const char *key)
{
    gint i = qdict_index(d, key);

    if (i >= 0) {
        g_ptr_array_remove_index(d->keys, i);
        g_ptr_array_remove_index(d->values, i);
    }
}

size_t qdict_size(const QDict *d)
{
    return d ? d->keys->len : 0;
}

const char *qdict_key_at(const QDict *d, size_t i)
{
    return g_ptr_array_index(d->keys, i);
}

const char *qdict_value_at(const QDict *d, size_t i)
{
    return g_ptr_array_index(d->values, i);
}

void qdict_extract_subqdict(QDict *src, QDict **dst, const char *prefix)
{
    size_t plen = strlen(prefix);

    *dst = qdict_new();
    for (guint i = 0; i < src->keys->len;) {
        const char *key = g_ptr_array_index(src->keys, i);
        if (g_str_has_prefix(key, prefix)) {
            qdict_put_str(*dst, key + plen, g_ptr_array_index(src->values, i));
            g_ptr_array_remove_index(src->keys, i);
            g_ptr_array_remove_index(src->values, i);
        } else {
            i++;
        }
    }
}

void qdict_join(QDict *dst, const QDict *src)
{
    for (size_t i = 0; i < qdict_size(src); i++) {
        if (!qdict_haskey(dst, qdict_key_at(src, i))) {
            qdict_put_str(dst, qdict_key_at(src, i), qdict_value_at(src, i));
        }
    }
}

bool qdict_get_try_bool(const QDict *d, const char *key, bool def, Error **errp)
{
    const char *v = qdict_get_str(d, key);
    bool result;

    if (!v) {
        return def;
    }
    if (qemu_parse_bool(v, &result) < 0) {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
        return def;
    }
    return result;
}

uint64_t qdict_get_try_size(const QDict *d, const char *key, uint64_t def,
                            Error **errp)
{
    const char *v = qdict_get_str(d, key);
    uint64_t result;

    if (!v) {
        return def;
    }
    if (qemu_strtosz(v, &result) < 0) {
        error_setg(errp, "Parameter '%s' expects a size", key);
        error_append_hint(errp, "You may use k, M, G, T, P or E suffixes for "
                          "kilobytes, megabytes, gigabytes, terabytes, "
                          "petabytes and exabytes.\n");
        return def;
    }
    return result;
}

int64_t qdict_get_try_int(const QDict *d, const char *key, int64_t def,
                          Error **errp)
{
    const char *v = qdict_get_str(d, key);
    int64_t result;

    if (!v) {
        return def;
    }
    if (qemu_strtoi64(v, &result) < 0) {
        error_setg(errp, "Parameter '%s' expects a number", key);
        return def;
    }
    return result;
}

/* Copy one element of "k=v,..." up to an unescaped separator; ",," is ','. */
static const char *keyval_take(const char *p, char stop, GString *out)
{
    while (*p) {
        if (*p == ',') {
            if (p[1] != ',') {
                break;
            }
            p++;
        } else if (*p == stop) {
            break;
        }
        g_string_append_c(out, *p++);
    }
    return p;
}

bool keyval_parse_into(QDict *d, const char *str, const char *implied_key,
                       Error **errp)
{
    const char *p = str;
    bool first = true;

    while (*p) {
        g_autoptr(GString) key = g_string_new(NULL);
        g_autoptr(GString) value = g_string_new(NULL);

        p = keyval_take(p, '=', key);
        if (*p == '=') {
            p = keyval_take(p + 1, '\0', value);
        } else if (first && implied_key) {
            g_string_assign(value, key->str);
            g_string_assign(key, implied_key);
        } else {
            error_setg(errp, "Expected '=' after parameter '%s'", key->str);
            return false;
        }
        if (!key->len) {
            error_setg(errp, "Invalid parameter ''");
            return false;
        }
        qdict_put_str(d, key->str, value->str);
        first = false;
        if (*p == ',') {
            p++;
        }
    }
    return true;
}

QDict *keyval_parse(const char *str, const char *implied_key, Error **errp)
{
    QDict *d = qdict_new();

    if (!keyval_parse_into(d, str, implied_key, errp)) {
        qdict_unref(d);
        return NULL;
    }
    return d;
}

size_t qemu_opt_desc_count(const QemuOptDesc *desc)
{
    size_t n = 0;

    while (desc && desc[n].name) {
        n++;
    }
    return n;
}

const QemuOptDesc *qemu_opt_find_desc(const QemuOptDesc *desc, const char *name)
{
    for (; desc && desc->name; desc++) {
        if (!strcmp(desc->name, name)) {
            return desc;
        }
    }
    return NULL;
}

static bool opt_value_valid(const QemuOptDesc *desc, const char *value,
                            Error **errp)
{
    bool b;
    uint64_t u;

    switch (desc->type) {
    case QEMU_OPT_BOOL:
        if (qemu_parse_bool(value, &b) < 0) {
            error_setg(errp, "Parameter '%s' expects 'on' or 'off'", desc->name);
            return false;
        }
        break;
    case QEMU_OPT_NUMBER:
        if (qemu_strtou64(value, &u) < 0) {
            error_setg(errp, "Parameter '%s' expects a number", desc->name);
            return false;
        }
        break;
    case QEMU_OPT_SIZE:
        if (qemu_strtosz(value, &u) < 0) {
            error_setg(errp, "Parameter '%s' expects a non-negative number "
                       "below 2^64", desc->name);
            error_append_hint(errp, "Optional suffix k, M, G, T, P or E means "
                              "kilo-, mega-, giga-, tera-, peta-\n"
                              "and exabytes, respectively.\n");
            return false;
        }
        break;
    case QEMU_OPT_STRING:
        break;
    }
    return true;
}

bool qemu_opts_validate(const QDict *d, const QemuOptDesc *desc,
                        const QemuOptDesc *desc2, Error **errp)
{
    for (size_t i = 0; i < qdict_size(d); i++) {
        const char *key = qdict_key_at(d, i);
        const QemuOptDesc *od = qemu_opt_find_desc(desc, key);

        if (!od) {
            od = qemu_opt_find_desc(desc2, key);
        }
        if (!od) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
        if (!opt_value_valid(od, qdict_value_at(d, i), errp)) {
            return false;
        }
    }
    return true;
}

const char *qemu_opt_get(const QDict *d, const char *name)
{
    return qdict_get_str(d, name);
}

bool qemu_opt_get_bool(const QDict *d, const char *name, bool def)
{
    return qdict_get_try_bool(d, name, def, NULL);
}

uint64_t qemu_opt_get_size(const QDict *d, const char *name, uint64_t def)
{
    return qdict_get_try_size(d, name, def, NULL);
}

uint64_t qemu_opt_get_number(const QDict *d, const char *name, uint64_t def)
{
    const char *v = qdict_get_str(d, name);
    uint64_t result;

    if (!v || qemu_strtou64(v, &result) < 0) {
        return def;
    }
    return result;
}

static const char *opt_type_name(QemuOptType type)
{
    switch (type) {
    case QEMU_OPT_BOOL:
        return "bool (on/off)";
    case QEMU_OPT_NUMBER:
        return "num";
    case QEMU_OPT_SIZE:
        return "size";
    default:
        return "str";
    }
}

static gint desc_cmp(gconstpointer a, gconstpointer b)
{
    const QemuOptDesc *const *da = a, *const *db = b;

    return strcmp((*da)->name, (*db)->name);
}

void qemu_opts_print_help(const QemuOptDesc *desc, const char *title)
{
    g_autoptr(GPtrArray) sorted = g_ptr_array_new();

    for (; desc && desc->name; desc++) {
        g_ptr_array_add(sorted, (gpointer)desc);
    }
    g_ptr_array_sort(sorted, desc_cmp);
    printf("%s\n", title);
    for (guint i = 0; i < sorted->len; i++) {
        const QemuOptDesc *od = g_ptr_array_index(sorted, i);
        g_autofree char *syntax = g_strdup_printf("%s=<%s>", od->name,
                                                  opt_type_name(od->type));
        printf("  %-22s - %s\n", syntax, od->help ? od->help : "");
    }
}

QemuOptDesc *qemu_opt_desc_merge(const QemuOptDesc *a, const QemuOptDesc *b)
{
    size_t na = qemu_opt_desc_count(a), nb = qemu_opt_desc_count(b), n = na;
    QemuOptDesc *merged = g_new0(QemuOptDesc, na + nb + 1);

    memcpy(merged, a, na * sizeof(*a));
    for (size_t i = 0; i < nb; i++) {
        if (!qemu_opt_find_desc(a, b[i].name)) {
            merged[n++] = b[i];
        }
    }
    return merged;
}

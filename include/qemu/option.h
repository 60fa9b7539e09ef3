/*
 * Options as flat, ordered string dictionaries.
 *
 * Every option a user can give (create options "-o cluster_size=64k", runtime
 * open options "driver=qcow2,file.filename=x", QMP arguments flattened to
 * dotted keys) ends up as a QDict: keys and values are strings, insertion
 * order is kept (so help and "Formatting ..." lines come out stable), and a
 * nested object is spelled with dotted keys ("file.driver").  Values are
 * parsed into numbers, sizes and booleans only where they are used, against
 * a QemuOptDesc table that also provides the defaults and the help text.
 */
#ifndef QEMU_OPTION_H
#define QEMU_OPTION_H

#include "qemu/osdep.h"
#include "qapi/error.h"

typedef struct QDict QDict;

QDict *qdict_new(void);
void qdict_unref(QDict *d);
QDict *qdict_clone(const QDict *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QDict, qdict_unref)

/* Set key to value (replacing an existing value in place). */
void qdict_put_str(QDict *d, const char *key, const char *value);
void qdict_put_int(QDict *d, const char *key, int64_t value);
void qdict_put_bool(QDict *d, const char *key, bool value);
/* The value, or NULL if the key is absent. */
const char *qdict_get_str(const QDict *d, const char *key);
bool qdict_haskey(const QDict *d, const char *key);
void qdict_del(QDict *d, const char *key);
size_t qdict_size(const QDict *d);
/* Iterate in insertion order: index 0 .. qdict_size() - 1. */
const char *qdict_key_at(const QDict *d, size_t i);
const char *qdict_value_at(const QDict *d, size_t i);

/* Move every "prefix"-key of src into *dst (prefix stripped); dst is new. */
void qdict_extract_subqdict(QDict *src, QDict **dst, const char *prefix);
/* Copy keys of src missing from dst into dst. */
void qdict_join(QDict *dst, const QDict *src);

/*
 * Typed getters.  A missing key yields def; a malformed value sets errp and
 * returns def.
 */
bool qdict_get_try_bool(const QDict *d, const char *key, bool def, Error **errp);
uint64_t qdict_get_try_size(const QDict *d, const char *key, uint64_t def,
                            Error **errp);
int64_t qdict_get_try_int(const QDict *d, const char *key, int64_t def,
                          Error **errp);

/*
 * Parse "key=value,key2=value2" (",," is a literal comma inside a value).
 * A first element without '=' is taken as the value of implied_key, if
 * given ("qcow2,file=x" with implied_key "driver").  Values for an existing
 * key are appended to d (replacing earlier ones).
 */
bool keyval_parse_into(QDict *d, const char *str, const char *implied_key,
                       Error **errp);
QDict *keyval_parse(const char *str, const char *implied_key, Error **errp);

/* The option help list and the syntax "k=v,..." as one string (for -o help). */
typedef enum QemuOptType {
    QEMU_OPT_STRING,
    QEMU_OPT_BOOL,
    QEMU_OPT_NUMBER,
    QEMU_OPT_SIZE,
} QemuOptType;

typedef struct QemuOptDesc {
    const char *name;
    QemuOptType type;
    const char *help;
    const char *def_value_str;
} QemuOptDesc;

/* Number of entries of a { NULL }-terminated table. */
size_t qemu_opt_desc_count(const QemuOptDesc *desc);
const QemuOptDesc *qemu_opt_find_desc(const QemuOptDesc *desc, const char *name);

/*
 * Check that every key of d is described in desc (or in desc2, may be NULL)
 * and that each value parses as its type.  Error text names the option.
 */
bool qemu_opts_validate(const QDict *d, const QemuOptDesc *desc,
                        const QemuOptDesc *desc2, Error **errp);

/* Typed getters for validated option sets; def overrides desc defaults. */
const char *qemu_opt_get(const QDict *d, const char *name);
bool qemu_opt_get_bool(const QDict *d, const char *name, bool def);
uint64_t qemu_opt_get_size(const QDict *d, const char *name, uint64_t def);
uint64_t qemu_opt_get_number(const QDict *d, const char *name, uint64_t def);

/* Print "  name=<type>  - help" lines for each described option, sorted. */
void qemu_opts_print_help(const QemuOptDesc *desc, const char *title);

/* Merge two { NULL }-terminated tables (entries of a win on equal names). */
QemuOptDesc *qemu_opt_desc_merge(const QemuOptDesc *a, const QemuOptDesc *b);

#endif

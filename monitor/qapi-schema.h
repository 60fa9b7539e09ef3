/*
 * The QAPI schema at run time: the commands the files under qapi/ declare
 * and a validator that checks JSON values against the declared types.
 *
 * monitor/qapi-gen.py compiles qapi/qapi-schema.json (and the files it
 * includes) into qapi_schema_json at build time; it is parsed once, on
 * first use.  Validation returns a new node
 * holding the checked value, so callers never see unchecked input:
 *   - QMP arguments are checked as they are (JSON types must match);
 *   - command-line options (keyval) arrive as objects of strings, and
 *     "keyval" mode converts each string to the declared scalar type.
 * Error texts name the offending member by its dotted path
 * ("Parameter 'addr.data.path' is missing"), as QEMU's do.
 */
#ifndef MONITOR_QAPI_SCHEMA_H
#define MONITOR_QAPI_SCHEMA_H

#include "qemu/osdep.h"
#include "qapi/error.h"
#include <json-glib/json-glib.h>

extern const char qapi_schema_json[];

/* Calls fn for each declared command, in schema order. */
void qapi_schema_foreach_command(void (*fn)(const char *name, void *opaque),
                                 void *opaque);
bool qapi_schema_has_command(const char *name);

/*
 * Check the arguments of command name (args may be NULL for "none"; see
 * keyval above).  Returns the checked arguments (a new object node) or
 * NULL with errp set.
 */
JsonNode *qapi_check_command_args(const char *name, JsonNode *args,
                                  bool keyval, Error **errp);

/* Check value against the named type; see keyval above. */
JsonNode *qapi_check_type(const char *type, JsonNode *value, bool keyval,
                          Error **errp);

#endif

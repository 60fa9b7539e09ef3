/*
 * Conversions between flat option dictionaries (QDict, dotted keys, string
 * values) and JSON objects.
 *
 *   {"driver": "raw", "file": {"driver": "file", "filename": "x"},
 *    "read-only": true, "size": 512}
 * <->
 *   driver=raw, file.driver=file, file.filename=x, read-only=on, size=512
 *
 * Flattening is what blockdev-add needs to hand QMP arguments to
 * bdrv_open(); nesting ("crumpling") turns command-line keyval options into
 * objects the QAPI validator checks in keyval mode (values stay strings).
 */
#ifndef MONITOR_QDICT_JSON_H
#define MONITOR_QDICT_JSON_H

#include "qemu/osdep.h"
#include "qemu/option.h"
#include <json-glib/json-glib.h>

/*
 * Add the members of obj to d under prefix ("" for none).  Booleans become
 * on/off, numbers decimal text, null "null", list elements "key.N".
 */
void qdict_flatten_json(QDict *d, const char *prefix, JsonObject *obj);

/* The dotted keys of d as nested objects of strings. */
JsonNode *qdict_to_json_nested(const QDict *d, Error **errp);

#endif

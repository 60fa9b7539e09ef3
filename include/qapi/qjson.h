/*
 * JSON text in the layout QEMU's tools and QMP produce.
 *
 * json-glib builds and parses the documents; this prints them the way
 * scripts written for QEMU expect: compact '{"a": 1, "b": [2, 3]}' on the
 * wire (QMP) and four-space indented '"key": value' for --output=json,
 * where even an empty object or array spans two lines ("[" newline "]").
 * Strings are escaped as QEMU escapes them (\uXXXX in uppercase hex for
 * anything outside printable ASCII, surrogate pairs beyond U+FFFF, U+FFFD
 * for bytes that are not UTF-8); doubles get 17 significant digits.
 */
#ifndef QAPI_QJSON_H
#define QAPI_QJSON_H

#include "qemu/osdep.h"
#include <json-glib/json-glib.h>

char *qjson_to_string(JsonNode *node, bool pretty);
void qjson_append(GString *out, JsonNode *node, bool pretty, int indent);

/*
 * Human-readable dump of a JSON object, as "qemu-img info" prints
 * "Format specific information": "key: value" lines ('-' in keys becomes
 * ' '), nested objects and lists indented by four more spaces, list items
 * as "[i]:".  indent is the number of leading spaces.
 */
void qjson_dump_human(GString *out, JsonNode *node, int indent);

#endif

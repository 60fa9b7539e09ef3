/*
 * Split a byte stream into top-level JSON texts, without parsing them.
 *
 * QMP clients send JSON values back to back, split across reads or several
 * per read, with any whitespace in between.  The framer only tracks
 * string/escape state and bracket depth to find where each value ends;
 * json-glib parses the texts it hands out.  A top-level scalar (a stray
 * word, number or string) is a text of its own, ended by whitespace or a
 * structural character, so garbage gets an error reply instead of being
 * glued to the next request.
 *
 * Limits keep a hostile client from exhausting memory or stack: a text
 * larger than max_size or nested deeper than JSON_FRAMER_MAX_DEPTH is an
 * error after which the framer must not be fed again.
 */
#ifndef MONITOR_JSON_FRAMER_H
#define MONITOR_JSON_FRAMER_H

#include "qemu/osdep.h"
#include "qapi/error.h"

#define JSON_FRAMER_MAX_DEPTH 1024

typedef void JsonFramerEmit(const char *text, size_t len, void *opaque);

typedef struct JsonFramer {
    GByteArray *buf;    /* the text being assembled */
    size_t max_size;
    int depth;
    bool in_string;
    bool escape;
    bool in_scalar;     /* a top-level bare word or number */
} JsonFramer;

void json_framer_init(JsonFramer *f, size_t max_size);
void json_framer_destroy(JsonFramer *f);
/* Calls emit for each complete text in data; false (errp set) on a limit. */
bool json_framer_feed(JsonFramer *f, const char *data, size_t len,
                      JsonFramerEmit *emit, void *opaque, Error **errp);

#endif

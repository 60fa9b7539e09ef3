/*
 * JSON stream framing (see json-framer.h).
 */
#include "qemu/osdep.h"
#include "json-framer.h"

void json_framer_init(JsonFramer *f, size_t max_size)
{
    memset(f, 0, sizeof(*f));
    f->buf = g_byte_array_new();
    f->max_size = max_size;
}

void json_framer_destroy(JsonFramer *f)
{
    g_byte_array_free(f->buf, TRUE);
    f->buf = NULL;
}

static bool is_delimiter(char c)
{
    return g_ascii_isspace(c) || strchr("{}[],:\"", c);
}

static void framer_emit(JsonFramer *f, JsonFramerEmit *emit, void *opaque)
{
    emit((const char *)f->buf->data, f->buf->len, opaque);
    g_byte_array_set_size(f->buf, 0);
    f->in_scalar = false;
}

/* A byte outside any value: whitespace, or the start of the next text. */
static void framer_start(JsonFramer *f, char c, JsonFramerEmit *emit,
                         void *opaque)
{
    if (g_ascii_isspace(c)) {
        return;
    }
    g_byte_array_append(f->buf, (const guint8 *)&c, 1);
    if (c == '{' || c == '[') {
        f->depth = 1;
    } else if (c == '"') {
        f->in_string = true;
    } else if (strchr("}],:", c)) {
        framer_emit(f, emit, opaque);
    } else {
        f->in_scalar = true;
    }
}

bool json_framer_feed(JsonFramer *f, const char *data, size_t len,
                      JsonFramerEmit *emit, void *opaque, Error **errp)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];

        if (f->in_scalar && is_delimiter(c)) {
            framer_emit(f, emit, opaque);
        }
        if (!f->depth && !f->in_string && !f->in_scalar) {
            framer_start(f, c, emit, opaque);
            continue;
        }
        g_byte_array_append(f->buf, (const guint8 *)&c, 1);
        if (f->buf->len > f->max_size) {
            error_setg(errp, "JSON input exceeds %zu bytes", f->max_size);
            return false;
        }
        if (f->in_string) {
            if (f->escape) {
                f->escape = false;
            } else if (c == '\\') {
                f->escape = true;
            } else if (c == '"') {
                f->in_string = false;
                if (!f->depth) {
                    framer_emit(f, emit, opaque);
                }
            }
        } else if (c == '"') {
            f->in_string = true;
        } else if (c == '{' || c == '[') {
            if (++f->depth > JSON_FRAMER_MAX_DEPTH) {
                error_setg(errp, "JSON input nested deeper than %d levels",
                           JSON_FRAMER_MAX_DEPTH);
                return false;
            }
        } else if ((c == '}' || c == ']') && f->depth && !--f->depth) {
            framer_emit(f, emit, opaque);
        }
    }
    return true;
}

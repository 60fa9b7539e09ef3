/*
 * QMP command dispatch: the table of command handlers and the one entry
 * point that checks a request's arguments against the schema and runs the
 * handler.
 *
 * Every command the schema declares has exactly one handler here and the
 * other way round; qmp_dispatch_check_table() verifies it at start-up and
 * tests/qsd/test-schema.py verifies it from outside.
 */
#ifndef MONITOR_QMP_DISPATCH_H
#define MONITOR_QMP_DISPATCH_H

#include "qemu/osdep.h"
#include "qapi/error.h"
#include <json-glib/json-glib.h>

/* Per-connection protocol state. */
typedef struct QmpSession {
    bool negotiated;    /* qmp_capabilities done: commands and events flow */
    bool oob_enabled;
} QmpSession;

/*
 * A handler gets arguments already checked against the schema.  It sets
 * *ret to its result (left NULL: an empty object) or sets errp.
 */
typedef void QmpCommandFunc(QmpSession *session, JsonObject *args,
                            JsonNode **ret, Error **errp);

/* Abort if the handler table and the schema disagree (a build bug). */
void qmp_dispatch_check_table(void);

/*
 * Run command name with args (may be NULL).  Returns the result, or NULL
 * with errp set; unknown commands fail with ERROR_CLASS_COMMAND_NOT_FOUND.
 */
JsonNode *qmp_dispatch(QmpSession *session, const char *name, JsonNode *args,
                       Error **errp);

/* Calls fn for each command of the handler table. */
void qmp_foreach_command(void (*fn)(const char *name, void *opaque),
                         void *opaque);

#endif

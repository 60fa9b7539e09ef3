/*
 * Error reporting across API boundaries.
 *
 * Functions that can fail take an "Error **errp" as their last argument and
 * fill it with a human-readable message on failure.  Inside a module errors
 * travel as negative errno values; the Error carries the text the user sees.
 *
 * Rules, as in QEMU: errp may be NULL (the caller does not care), may point to
 * &error_abort (failure is a bug) or &error_fatal (print and exit(1)).  An
 * Error must be set at most once; error_propagate() moves one up a level.
 */
#ifndef QAPI_ERROR_H
#define QAPI_ERROR_H

#include "qemu/osdep.h"

typedef struct Error Error;

typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_FOUND,
} ErrorClass;

extern Error *error_abort;
extern Error *error_fatal;

void error_setg_internal(Error **errp, ErrorClass cls, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
#define error_setg(errp, ...) \
    error_setg_internal((errp), ERROR_CLASS_GENERIC_ERROR, __VA_ARGS__)
#define error_set(errp, cls, ...) error_setg_internal((errp), (cls), __VA_ARGS__)

/* Like error_setg(), with ": strerror(os_errno)" appended. */
void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* Add a prefix to an error already set in *errp (no-op if errp is NULL). */
void error_prepend(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Add a hint printed on its own line after the message. */
void error_append_hint(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Move local_err into *dst_errp (freeing it if dst_errp is NULL). */
void error_propagate(Error **dst_errp, Error *local_err);

const char *error_get_pretty(const Error *err);
ErrorClass error_get_class(const Error *err);
void error_free(Error *err);
Error *error_copy(const Error *err);

/* Program name used as the prefix of error_report() lines. */
void error_set_progname(const char *name);
const char *error_get_progname(void);

/* Print "progname: message\n" to stderr. */
void error_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void warn_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void info_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Print the error (with hints) and free it. */
void error_report_err(Error *err);
void warn_report_err(Error *err);

#endif

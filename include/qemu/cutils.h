/*
 * String and number helpers shared by the tools.
 */
#ifndef QEMU_CUTILS_H
#define QEMU_CUTILS_H

#include "qemu/osdep.h"

/*
 * Parse a size such as "512", "64k", "1.5G", "+010" (ten) or "0x100", as
 * QEMU's tools do.  Leading whitespace and '+' are skipped; numbers are
 * decimal unless they start with 0x.  Suffixes b/B, k/K, M, G, T, P, E
 * scale by powers of 1024; a fraction (decimal only) needs a suffix other
 * than bytes and is rounded to the nearest byte.  A suffix on a hex number
 * prints QEMU's deprecation warning.  Returns 0, -EINVAL (syntax) or
 * -ERANGE (does not fit in 63 bits).
 */
int qemu_strtosz(const char *str, uint64_t *result);

/* A whole decimal/hex/octal integer; -EINVAL unless all of str is used. */
int qemu_strtoi64(const char *str, int64_t *result);
int qemu_strtou64(const char *str, uint64_t *result);

/* "on"/"off", "true"/"false", "yes"/"no"; -EINVAL otherwise. */
int qemu_parse_bool(const char *str, bool *result);

/*
 * Human-readable size with three significant digits, as qemu-img prints it:
 * "512 B", "1.5 KiB", "954 MiB", "1e+03 KiB" (the next unit starts at 1000
 * of the current one).  Caller frees.
 */
char *size_to_str(uint64_t val);

/*
 * Size or rate as qemu-io prints it: "1023 bytes", "295.031115 bytes",
 * "1.500 KiB", "64 KiB" (".000" and what follows is dropped).  Any double,
 * NaN and infinities included, gives a string.  Caller frees.
 */
char *size_to_io_str(double val);

/* True if the buffer holds only zero bytes. */
bool buffer_is_zero(const void *buf, size_t len);

#endif

/*
 * String and number helpers shared by the tools.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qapi/error.h"

#include <math.h>

/*
 * Sizes as users type them (qemu_strtosz), in QEMU's syntax:
 *
 *   [whitespace] ['+'] digits ['.' [digits]] [suffix]     decimal
 *   [whitespace] ['+'] ('0x' | '0X') hexdigits [suffix]   hexadecimal
 *
 * Leading zeroes do not make a number octal.  The suffix is one of
 * b/B (bytes), k/K, m/M, g/G, t/T, p/P, e/E (powers of 1024), and nothing
 * may follow it.  A fraction needs a suffix other than bytes; it is scaled
 * and rounded to the nearest byte, half up.  The fraction is first read as
 * a double and turned into a 64-bit binary fraction, so the rounding of
 * long fractions agrees with QEMU's tools to the byte.  An exponent in the
 * fraction ("1.5e3k") is an error, while "1.5e" means 1.5 EiB.  A suffix on
 * a hex number still works but warns that it is deprecated.
 */
static const char size_units[] = "BKMGTPE";

/* Exponent of 2 the suffix character c scales by, or -1. */
static int suffix_shift(char c)
{
    const char *p = c ? strchr(size_units, g_ascii_toupper(c)) : NULL;

    return p ? (int)(p - size_units) * 10 : -1;
}

/* Accumulate digits of base 10 or 16; false if the value passes 2^64 - 1. */
static bool parse_digits(const char **p, int base, uint64_t *value)
{
    bool fits = true;
    int d;

    *value = 0;
    while ((d = g_ascii_xdigit_value(**p)) >= 0 && d < base) {
        if (*value > (UINT64_MAX - d) / base) {
            fits = false;
        }
        *value = *value * base + d;
        (*p)++;
    }
    return fits;
}

/*
 * The digits after the decimal point as a binary fraction of 2^64, with a
 * carry of one whole unit when the double rounds up to 1.0.  *p is past the
 * point.  Returns false if an exponent follows the digits.
 */
static bool parse_fraction(const char **p, uint64_t *fraction, int *carry)
{
    const char *start = *p - 1;
    const char *e;
    g_autofree char *text = NULL;
    double value;

    while (g_ascii_isdigit(**p)) {
        (*p)++;
    }
    e = *p;
    if (*p > start + 1 && (*e == 'e' || *e == 'E')) {
        e += (e[1] == '+' || e[1] == '-') ? 2 : 1;
        if (g_ascii_isdigit(*e)) {
            return false;
        }
    }
    text = g_strndup(start, *p - start);
    value = *p > start + 1 ? g_ascii_strtod(text, NULL) : 0;
    *carry = value >= 1.0;
    *fraction = *carry ? 0 : (uint64_t)(value * 0x1p64);
    return true;
}

int qemu_strtosz(const char *str, uint64_t *result)
{
    const char *p = str;
    uint64_t whole, fraction = 0, value, scaled_fraction = 0;
    int carry = 0, shift = 0;
    bool hex;

    if (!str) {
        return -EINVAL;
    }
    while (g_ascii_isspace(*p)) {
        p++;
    }
    if (*p == '+') {
        p++;
    }
    hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    p += hex ? 2 : 0;
    if (hex ? !g_ascii_isxdigit(*p) : !g_ascii_isdigit(*p)) {
        return -EINVAL;
    }
    if (!parse_digits(&p, hex ? 16 : 10, &whole)) {
        /* QEMU reports the range only if the digits are all there is. */
        return *p ? -EINVAL : -ERANGE;
    }
    if (*p == '.') {
        p++;
        if (hex || !parse_fraction(&p, &fraction, &carry)) {
            return -EINVAL;
        }
    }
    if (*p) {
        shift = suffix_shift(*p++);
        if (shift < 0) {
            return -EINVAL;
        }
        if (hex) {
            warn_report("Using a multiplier suffix on hex numbers is "
                        "deprecated: %s", str);
        }
    }
    if (*p || (shift == 0 && fraction)) {
        return -EINVAL;
    }

    if (shift) {
        /* Scale, rounding on the first bit shifted out. */
        scaled_fraction = (fraction >> (64 - shift)) +
                          ((fraction >> (63 - shift)) & 1);
    }
    if (whole > ((uint64_t)INT64_MAX >> shift) - carry) {
        return -ERANGE;
    }
    value = (whole + carry) << shift;
    if (value > (uint64_t)INT64_MAX - scaled_fraction) {
        return -ERANGE;
    }
    *result = value + scaled_fraction;
    return 0;
}

int qemu_strtoi64(const char *str, int64_t *result)
{
    char *end;

    if (!str || !*str) {
        return -EINVAL;
    }
    errno = 0;
    *result = g_ascii_strtoll(str, &end, 0);
    if (errno) {
        return -errno;
    }
    return *end ? -EINVAL : 0;
}

int qemu_strtou64(const char *str, uint64_t *result)
{
    char *end;

    if (!str || !*str || *str == '-') {
        return -EINVAL;
    }
    errno = 0;
    *result = g_ascii_strtoull(str, &end, 0);
    if (errno) {
        return -errno;
    }
    return *end ? -EINVAL : 0;
}

int qemu_parse_bool(const char *str, bool *result)
{
    static const char *const yes[] = { "on", "true", "yes", NULL };
    static const char *const no[] = { "off", "false", "no", NULL };

    if (!str) {
        return -EINVAL;
    }
    for (int i = 0; yes[i]; i++) {
        if (!strcmp(str, yes[i])) {
            *result = true;
            return 0;
        }
        if (!strcmp(str, no[i])) {
            *result = false;
            return 0;
        }
    }
    return -EINVAL;
}

char *size_to_str(uint64_t val)
{
    static const char *const names[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
    };
    /*
     * The next unit starts at 1000 of the current one: below that, three
     * significant digits still show the value, even when they round up to
     * "1e+03".  The comparison is made in double precision, so sizes just
     * under a boundary that round onto it switch unit like QEMU's do.
     */
    double reach = (double)val * 1024 / 1000;
    int unit = 0;

    while (unit < 6 && reach >= ldexp(1, 10 * (unit + 1))) {
        unit++;
    }
    return g_strdup_printf("%0.3g %s", val / ldexp(1, 10 * unit),
                           names[unit]);
}

char *size_to_io_str(double val)
{
    static const char *const names[] = {
        " bytes", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"
    };
    int unit = 6;
    GString *s;
    char *zeros;

    /* Comparisons fail for NaN, which therefore prints as bytes. */
    while (unit > 0 && !(val >= ldexp(1, 10 * unit))) {
        unit--;
    }
    /* Bytes get six decimals; a ".000" anywhere ends the number. */
    s = g_string_new(NULL);
    g_string_printf(s, unit ? "%.3f" : "%f", val / ldexp(1, 10 * unit));
    zeros = strstr(s->str, ".000");
    if (zeros) {
        g_string_truncate(s, zeros - s->str);
    }
    g_string_append(s, names[unit]);
    return g_string_free(s, FALSE);
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    const uint64_t *w;
    size_t head = (-(uintptr_t)p) & 7;

    if (len < 64) {
        for (size_t i = 0; i < len; i++) {
            if (p[i]) {
                return false;
            }
        }
        return true;
    }
    for (size_t i = 0; i < head; i++) {
        if (p[i]) {
            return false;
        }
    }
    p += head;
    len -= head;
    w = (const uint64_t *)p;
    for (size_t i = 0; i < len / 64; i++, w += 8) {
        if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) {
            return false;
        }
    }
    p = (const unsigned char *)w;
    for (size_t i = 0; i < len % 64; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/*
 * String and number helpers shared by the tools.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"

#include <math.h>

static const char size_units[] = "BKMGTPE";

static int suffix_shift(char c)
{
    const char *p = strchr(size_units, g_ascii_toupper(c));

    return (c && p) ? (int)(p - size_units) * 10 : -1;
}

int qemu_strtosz(const char *str, uint64_t *result)
{
    const char *p = str;
    char *end;
    uint64_t whole;
    double fraction = 0;
    int shift = 0;

    if (!str || !g_ascii_isdigit(*p)) {
        return -EINVAL;
    }
    errno = 0;
    whole = g_ascii_strtoull(p, &end, 0);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    if (*end == '.' && end[1] != 'x') {
        char *frac_end;
        fraction = g_ascii_strtod(end, &frac_end);
        if (frac_end == end + 1) {
            return -EINVAL;
        }
        end = frac_end;
    }
    if (*end) {
        shift = suffix_shift(*end);
        if (shift < 0 || end[1]) {
            return -EINVAL;
        }
    }
    if (fraction && shift == 0) {
        return -EINVAL;
    }
    if (shift >= 64 || whole > ((uint64_t)INT64_MAX >> shift)) {
        return -ERANGE;
    }
    whole <<= shift;
    if (fraction) {
        double extra = floor(fraction * (double)(UINT64_C(1) << shift));
        if ((double)whole + extra > (double)INT64_MAX) {
            return -ERANGE;
        }
        whole += (uint64_t)extra;
    }
    *result = whole;
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
    int unit = 0;
    double scaled = val;

    /* Move up a unit while three significant digits would round to 1000. */
    while (unit < 6 && scaled >= 999.5) {
        scaled /= 1024;
        unit++;
    }
    return g_strdup_printf("%0.3g %s", scaled, names[unit]);
}

char *size_to_io_str(double val)
{
    static const char *const names[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    int unit = -1;
    char *s;

    if (val < 1024) {
        return g_strdup_printf("%.0f bytes", val);
    }
    while (unit < 5 && val >= 1024) {
        val /= 1024;
        unit++;
    }
    s = g_strdup_printf("%.3f", val);
    if (g_str_has_suffix(s, ".000")) {
        s[strlen(s) - 4] = '\0';
    }
    char *full = g_strdup_printf("%s %s", s, names[unit]);
    g_free(s);
    return full;
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

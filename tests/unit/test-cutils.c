/*
 * Unit tests of util/cutils.c: size parsing (qemu_strtosz), the size strings
 * qemu-img and qemu-io print, the integer and boolean parsers, and
 * buffer_is_zero.
 *
 * Every expected size value and string below was produced by the stock QEMU
 * 7.2 tools, which are the reference for what users type and read:
 *  - qemu_strtosz: the offset stock qemu-io echoes for
 *    "read <str> 1" on json:{"driver":"null-co","size":8070450532247928832}
 *    ("read 1/1 bytes at offset N", or its parse error), and for values past
 *    that device "qemu-img measure --size <str> -O raw";
 *  - size_to_str: the "virtual size: S (N bytes)" line of
 *    "qemu-img info json:{"driver":"null-co","size":N}";
 *  - size_to_io_str: "0/1 bytes allocated at offset S" from
 *    "qemu-io -c 'alloc N 1'" on the null-co device above.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include <math.h>
#include "qcow2-test-helpers.h"

typedef struct StrtoszCase {
    const char *str;
    int ret;
    uint64_t value;
} StrtoszCase;

static const StrtoszCase strtosz_cases[] = {
    /* Plain numbers: decimal, even with leading zeroes, and hex. */
    { "0", 0, 0 },
    { "00", 0, 0 },
    { "010", 0, 10 },
    { "08", 0, 8 },
    { "09", 0, 9 },
    { "123456", 0, 123456 },
    { "0x10", 0, 16 },
    { "0X10", 0, 16 },
    { "0x1e", 0, 30 },      /* 'e' is a hex digit here, not exabytes */
    { "+1k", 0, KiB },
    { " 1k", 0, KiB },
    { "\t1k", 0, KiB },
    { "  +1k", 0, KiB },
    { " 0x10", 0, 16 },
    { "+0x10", 0, 16 },
    { "0x0010", 0, 16 },
    { "0x7fffffffffffffff", 0, INT64_MAX },
    { "9223372036854775807", 0, INT64_MAX },
    /* Suffixes, either case; b/B means bytes. */
    { "1b", 0, 1 },
    { "1B", 0, 1 },
    { "1k", 0, KiB },
    { "1K", 0, KiB },
    { "1m", 0, MiB },
    { "1M", 0, MiB },
    { "1g", 0, GiB },
    { "1t", 0, TiB },
    { "1p", 0, PiB },
    { "1P", 0, PiB },
    { "1e", 0, EiB },
    { "1E", 0, EiB },
    { "7E", 0, 7 * EiB },
    { "8191P", 0, 8191 * PiB },
    /* Hex with a suffix is deprecated but still accepted. */
    { "0x1k", 0, KiB },
    { "0xaK", 0, 10 * KiB },
    { "0x10M", 0, 16 * MiB },
    { "0x1p", 0, PiB },
    /* Fractions: scaled by the suffix and rounded to the nearest byte. */
    { "1.0", 0, 1 },
    { "1.00", 0, 1 },
    { "0.0", 0, 0 },
    { "100.0", 0, 100 },
    { "1.0b", 0, 1 },
    { "0.0b", 0, 0 },
    { "1.", 0, 1 },
    { "1.00000000000000000001", 0, 1 },   /* a fraction below 2^-64 */
    { "1.00000000000000000001b", 0, 1 },
    { "010.5k", 0, 10752 },
    { "1.5e", 0, UINT64_C(1729382256910270464) },
    { "1.0E", 0, EiB },
    { "1.k", 0, KiB },
    { "1.e", 0, EiB },
    { "1.0k", 0, KiB },
    { "1.5k", 0, 1536 },
    { "1.5K", 0, 1536 },
    { "2.5k", 0, 2560 },
    { "100.00k", 0, 102400 },
    { "0.1k", 0, 102 },
    { "0.3k", 0, 307 },
    { "0.7k", 0, 717 },
    { "0.75k", 0, 768 },
    { "0.9999k", 0, 1024 },
    { "0.999999k", 0, 1024 },
    { "0.0004k", 0, 0 },
    { "0.0005k", 0, 1 },
    { "0.000488k", 0, 0 },
    { "0.000489k", 0, 1 },
    { "0.00000001k", 0, 0 },
    { "1.0009765625k", 0, 1025 },
    { "1.00048828125k", 0, 1025 },
    { "0.1M", 0, 104858 },
    { "0.3333333M", 0, 349525 },
    { "3.14159M", 0, 3294196 },
    { "0.5G", 0, 536870912 },
    { "1.1G", 0, 1181116006 },
    { "123.456789G", 0, UINT64_C(132560717806) },
    { "4.999999999T", 0, UINT64_C(5497558137780) },
    { "1.2345678901234567890T", 0, UINT64_C(1357421750470) },
    { "5.5P", 0, UINT64_C(6192449487634432) },
    { "0.5E", 0, UINT64_C(576460752303423488) },
    { "3.75E", 0, UINT64_C(4323455642275676160) },
    /* Garbage. */
    { "", -EINVAL, 0 },
    { "k", -EINVAL, 0 },
    { "-1", -EINVAL, 0 },
    { "inf", -EINVAL, 0 },
    { ".5k", -EINVAL, 0 },
    { "1.5", -EINVAL, 0 },      /* a fraction of a byte */
    { "0.5", -EINVAL, 0 },
    { "1.5b", -EINVAL, 0 },
    { "1.25b", -EINVAL, 0 },
    { "12.5b", -EINVAL, 0 },
    { "1kb", -EINVAL, 0 },
    { "1.5kB", -EINVAL, 0 },
    { "1k1", -EINVAL, 0 },
    { "1kk", -EINVAL, 0 },
    { "1k ", -EINVAL, 0 },
    { "1,5k", -EINVAL, 0 },
    { "1_000", -EINVAL, 0 },
    { "1..5k", -EINVAL, 0 },
    { "1.5.k", -EINVAL, 0 },
    { "1.-5k", -EINVAL, 0 },
    { "1.+5k", -EINVAL, 0 },
    { "1.5x", -EINVAL, 0 },
    { "1e0", -EINVAL, 0 },
    { "1e3", -EINVAL, 0 },
    { "1e+3", -EINVAL, 0 },
    { "1.5e3", -EINVAL, 0 },
    { "1.5e3k", -EINVAL, 0 },
    { "1nan", -EINVAL, 0 },
    { "1.nank", -EINVAL, 0 },
    { "1.infk", -EINVAL, 0 },
    { "0b1", -EINVAL, 0 },
    { "0x", -EINVAL, 0 },
    { "0xk", -EINVAL, 0 },
    { "0x1.5k", -EINVAL, 0 },
    { "0x1kx", -EINVAL, 0 },
    { "00x10", -EINVAL, 0 },
    { "++1k", -EINVAL, 0 },
    { "+ 1k", -EINVAL, 0 },
    { "1.5e+k", -EINVAL, 0 },
    { "1.0e0k", -EINVAL, 0 },
    { "1.5E3", -EINVAL, 0 },
    { "1.0x5", -EINVAL, 0 },
    /* Too many digits for 64 bits, then more text: a syntax error. */
    { "18446744073709551616k", -EINVAL, 0 },
    { "41477314724721008127G", -EINVAL, 0 },
    { "99999999999999999999.5k", -EINVAL, 0 },
    { "0x1ffffffffffffffffk", -EINVAL, 0 },
    /* More than 63 bits. */
    { "8E", -ERANGE, 0 },
    { "16E", -ERANGE, 0 },
    { "8192P", -ERANGE, 0 },
    { "9223372036854775808", -ERANGE, 0 },
    { "12345678901234567890", -ERANGE, 0 },
    { "18446744073709551615", -ERANGE, 0 },
    { "18446744073709551616", -ERANGE, 0 },
    { "0xffffffffffffffff", -ERANGE, 0 },
    { "0x1ffffffffffffffff", -ERANGE, 0 },
    { "99999999999999999999999", -ERANGE, 0 },
    { "0x10000000000000P", -ERANGE, 0 },
    { "7.5E", 0, UINT64_C(8646911284551352320) },
};

static void test_strtosz(void)
{
    bool failed = false;

    for (size_t i = 0; i < G_N_ELEMENTS(strtosz_cases); i++) {
        const StrtoszCase *c = &strtosz_cases[i];
        uint64_t value = 0xdeadbeef;
        int ret = qemu_strtosz(c->str, &value);

        if (ret != c->ret || (ret == 0 && value != c->value)) {
            test_note("qemu_strtosz(\"%s\") = %d, %" PRIu64
                           "; stock QEMU: %d, %" PRIu64, c->str, ret,
                           ret ? 0 : value, c->ret, c->value);
            failed = true;
        }
    }
    g_assert_false(failed);
}

/* Whatever a long fraction rounds to, the result must fit in 63 bits. */
static void test_strtosz_63_bits(void)
{
    static const char *const near_limit[] = {
        "7.9999999999999999999E", "7.99999999999999999E", "7.999999999999E",
        "8191.99999999999999P", "8388607.999999999999T",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(near_limit); i++) {
        uint64_t value = 0;
        int ret = qemu_strtosz(near_limit[i], &value);

        if (ret != -ERANGE && (ret != 0 || value > INT64_MAX)) {
            test_note("qemu_strtosz(\"%s\") = %d, %" PRIu64, near_limit[i],
                      ret, value);
            g_assert_not_reached();
        }
    }
}

typedef struct SizeStrCase {
    uint64_t value;
    const char *str;
} SizeStrCase;

static const SizeStrCase size_to_str_cases[] = {
    { UINT64_C(0), "0 B" },
    { UINT64_C(512), "512 B" },
    { UINT64_C(1024), "1 KiB" },
    { UINT64_C(1536), "1.5 KiB" },
    { UINT64_C(2048), "2 KiB" },
    { UINT64_C(10240), "10 KiB" },
    { UINT64_C(102400), "100 KiB" },
    { UINT64_C(126464), "124 KiB" },
    { UINT64_C(508416), "496 KiB" },
    { UINT64_C(524288), "512 KiB" },
    { UINT64_C(577024), "564 KiB" },
    { UINT64_C(1022976), "999 KiB" },
    { UINT64_C(1023488), "1e+03 KiB" },
    { UINT64_C(1024000), "0.977 MiB" },
    { UINT64_C(1048064), "1 MiB" },
    { UINT64_C(1048576), "1 MiB" },
    { UINT64_C(1054208), "1.01 MiB" },
    { UINT64_C(1572864), "1.5 MiB" },
    { UINT64_C(10480640), "10 MiB" },
    { UINT64_C(104805376), "100 MiB" },
    { UINT64_C(129453056), "123 MiB" },
    { UINT64_C(536870912), "512 MiB" },
    { UINT64_C(610197504), "582 MiB" },
    { UINT64_C(1047527424), "999 MiB" },
    { UINT64_C(1048051712), "1e+03 MiB" },
    { UINT64_C(1048576000), "0.977 GiB" },
    { UINT64_C(1073217536), "1 GiB" },
    { UINT64_C(1073731584), "1 GiB" },
    { UINT64_C(1073741824), "1 GiB" },
    { UINT64_C(1079110656), "1.01 GiB" },
    { UINT64_C(1610612736), "1.5 GiB" },
    { UINT64_C(10732049920), "10 GiB" },
    { UINT64_C(14931152384), "13.9 GiB" },
    { UINT64_C(107320495616), "100 GiB" },
    { UINT64_C(132559870976), "123 GiB" },
    { UINT64_C(418287998464), "390 GiB" },
    { UINT64_C(549755813888), "512 GiB" },
    { UINT64_C(1072668082176), "999 GiB" },
    { UINT64_C(1073204953088), "1e+03 GiB" },
    { UINT64_C(1073741824000), "0.977 TiB" },
    { UINT64_C(1098974756864), "1 TiB" },
    { UINT64_C(1099500890624), "1 TiB" },
    { UINT64_C(1099511627776), "1 TiB" },
    { UINT64_C(1105009186304), "1.01 TiB" },
    { UINT64_C(1649267441664), "1.5 TiB" },
    { UINT64_C(10989618719744), "10 TiB" },
    { UINT64_C(109896187196416), "100 TiB" },
    { UINT64_C(135741307518976), "123 TiB" },
    { UINT64_C(562949953421312), "512 TiB" },
    { UINT64_C(1098412116148224), "999 TiB" },
    { UINT64_C(1098961871962112), "1e+03 TiB" },
    { UINT64_C(1099511627776000), "0.977 PiB" },
    { UINT64_C(1125350151028736), "1 PiB" },
    { UINT64_C(1125888911726592), "1 PiB" },
    { UINT64_C(1125899906842624), "1 PiB" },
    { UINT64_C(1131529406376960), "1.01 PiB" },
    { UINT64_C(1688849860263936), "1.5 PiB" },
    { UINT64_C(11253369568892416), "10 PiB" },
    { UINT64_C(29953891976964096), "26.6 PiB" },
    { UINT64_C(112533695688920576), "100 PiB" },
    { UINT64_C(138999098899163136), "123 PiB" },
    { UINT64_C(576460752303423488), "512 PiB" },
    { UINT64_C(1124774006935781376), "999 PiB" },
    { UINT64_C(1125336956889202688), "1e+03 PiB" },
    { UINT64_C(1125899906842624000), "0.977 EiB" },
    { UINT64_C(1152358554653425664), "1 EiB" },
    { UINT64_C(1152910245607778816), "1 EiB" },
    { UINT64_C(1152921504606846976), "1 EiB" },
    { UINT64_C(1158686112129881088), "1 EiB" },
    { UINT64_C(1729382256910270464), "1.5 EiB" },
};

static const SizeStrCase size_to_io_str_cases[] = {
    { UINT64_C(0), "0 bytes" },
    { UINT64_C(1), "1 bytes" },
    { UINT64_C(2), "2 bytes" },
    { UINT64_C(9), "9 bytes" },
    { UINT64_C(14), "14 bytes" },
    { UINT64_C(99), "99 bytes" },
    { UINT64_C(123), "123 bytes" },
    { UINT64_C(319), "319 bytes" },
    { UINT64_C(486), "486 bytes" },
    { UINT64_C(511), "511 bytes" },
    { UINT64_C(512), "512 bytes" },
    { UINT64_C(999), "999 bytes" },
    { UINT64_C(1000), "1000 bytes" },
    { UINT64_C(1023), "1023 bytes" },
    { UINT64_C(1024), "1 KiB" },
    { UINT64_C(1025), "1.001 KiB" },
    { UINT64_C(1029), "1.005 KiB" },
    { UINT64_C(1536), "1.500 KiB" },
    { UINT64_C(2021), "1.974 KiB" },
    { UINT64_C(10234), "9.994 KiB" },
    { UINT64_C(102348), "99.949 KiB" },
    { UINT64_C(126418), "123.455 KiB" },
    { UINT64_C(508392), "496.477 KiB" },
    { UINT64_C(524288), "512 KiB" },
    { UINT64_C(576956), "563.434 KiB" },
    { UINT64_C(1022976), "999 KiB" },
    { UINT64_C(1023488), "999.500 KiB" },
    { UINT64_C(1024000), "1000 KiB" },
    { UINT64_C(1048064), "1023.500 KiB" },
    { UINT64_C(1048565), "1023.989 KiB" },
    { UINT64_C(1048576), "1 MiB" },
    { UINT64_C(1053818), "1.005 MiB" },
    { UINT64_C(1572864), "1.500 MiB" },
    { UINT64_C(10480517), "9.995 MiB" },
    { UINT64_C(104805171), "99.950 MiB" },
    { UINT64_C(129452998), "123.456 MiB" },
    { UINT64_C(536870912), "512 MiB" },
    { UINT64_C(610197180), "581.929 MiB" },
    { UINT64_C(1047527424), "999 MiB" },
    { UINT64_C(1048051712), "999.500 MiB" },
    { UINT64_C(1048576000), "1000 MiB" },
    { UINT64_C(1073217536), "1023.500 MiB" },
    { UINT64_C(1073731338), "1023.990 MiB" },
    { UINT64_C(1073741824), "1 GiB" },
    { UINT64_C(1079110533), "1.005 GiB" },
    { UINT64_C(1610612736), "1.500 GiB" },
    { UINT64_C(10732049530), "9.995 GiB" },
    { UINT64_C(14931152224), "13.906 GiB" },
    { UINT64_C(107320495308), "99.950 GiB" },
    { UINT64_C(132559870623), "123.456 GiB" },
    { UINT64_C(418287997966), "389.561 GiB" },
    { UINT64_C(549755813888), "512 GiB" },
    { UINT64_C(1072668082176), "999 GiB" },
    { UINT64_C(1073204953088), "999.500 GiB" },
    { UINT64_C(1073741824000), "1000 GiB" },
    { UINT64_C(1098974756864), "1023.500 GiB" },
    { UINT64_C(1099500890357), "1023.990 GiB" },
    { UINT64_C(1099511627776), "1 TiB" },
    { UINT64_C(1105009185914), "1.005 TiB" },
    { UINT64_C(1649267441664), "1.500 TiB" },
    { UINT64_C(10989618719621), "9.995 TiB" },
    { UINT64_C(109896187196211), "99.950 TiB" },
    { UINT64_C(135741307518713), "123.456 TiB" },
    { UINT64_C(562949953421312), "512 TiB" },
    { UINT64_C(1098412116148224), "999 TiB" },
    { UINT64_C(1098961871962112), "999.500 TiB" },
    { UINT64_C(1099511627776000), "1000 TiB" },
    { UINT64_C(1125350151028736), "1023.500 TiB" },
    { UINT64_C(1125888911726346), "1023.990 TiB" },
    { UINT64_C(1125899906842624), "1 PiB" },
    { UINT64_C(1131529406376837), "1.005 PiB" },
    { UINT64_C(1688849860263936), "1.500 PiB" },
    { UINT64_C(11253369568892026), "9.995 PiB" },
    { UINT64_C(29953891976963839), "26.604 PiB" },
    { UINT64_C(112533695688920272), "99.950 PiB" },
    { UINT64_C(138999098899162992), "123.456 PiB" },
    { UINT64_C(576460752303423488), "512 PiB" },
    { UINT64_C(1124774006935781376), "999 PiB" },
    { UINT64_C(1125336956889202688), "999.500 PiB" },
    { UINT64_C(1125899906842624000), "1000 PiB" },
    { UINT64_C(1152358554653425664), "1023.500 PiB" },
    { UINT64_C(1152910245607778560), "1023.990 PiB" },
    { UINT64_C(1152921504606846976), "1 EiB" },
    { UINT64_C(1158686112129881088), "1.005 EiB" },
    { UINT64_C(1729382256910270464), "1.500 EiB" },
};

static void check_size_strings(const SizeStrCase *cases, size_t n,
                               char *(*fn)(uint64_t), const char *name)
{
    bool failed = false;

    for (size_t i = 0; i < n; i++) {
        g_autofree char *s = fn(cases[i].value);

        if (strcmp(s, cases[i].str)) {
            test_note("%s(%" PRIu64 ") = \"%s\"; stock QEMU: \"%s\"",
                           name, cases[i].value, s, cases[i].str);
            failed = true;
        }
    }
    g_assert_false(failed);
}

static void test_size_to_str(void)
{
    check_size_strings(size_to_str_cases, G_N_ELEMENTS(size_to_str_cases),
                       size_to_str, "size_to_str");
}

static char *io_str_of_u64(uint64_t value)
{
    return size_to_io_str(value);
}

static void test_size_to_io_str(void)
{
    check_size_strings(size_to_io_str_cases,
                       G_N_ELEMENTS(size_to_io_str_cases), io_str_of_u64,
                       "size_to_io_str");
}

/*
 * qemu-io passes rates as doubles: bytes keep six decimals (stock prints
 * "295.031115 bytes/sec"), and whatever the value, a string comes back.
 */
static void test_size_to_io_str_double(void)
{
    static const struct {
        double value;
        const char *str;
    } cases[] = {
        { 295.031115, "295.031115 bytes" },
        { 212.701513, "212.701513 bytes" },
        { 1023.5, "1023.500000 bytes" },
        { 0.0, "0 bytes" },
        { 8263.4384, "8.070 KiB" },
    };
    g_autofree char *nan_str = size_to_io_str(NAN);
    g_autofree char *inf_str = size_to_io_str(INFINITY);

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = size_to_io_str(cases[i].value);
        g_assert_cmpstr(s, ==, cases[i].str);
    }
    g_assert_true(g_str_has_suffix(nan_str, " bytes"));
    g_assert_true(g_str_has_suffix(inf_str, " EiB"));
}

static void test_strtoi64(void)
{
    int64_t v;
    uint64_t u;

    g_assert_cmpint(qemu_strtoi64("-42", &v), ==, 0);
    g_assert_cmpint(v, ==, -42);
    g_assert_cmpint(qemu_strtoi64("0x10", &v), ==, 0);
    g_assert_cmpint(v, ==, 16);
    g_assert_cmpint(qemu_strtoi64("9223372036854775807", &v), ==, 0);
    g_assert_cmpint(v, ==, INT64_MAX);
    g_assert_cmpint(qemu_strtoi64("-9223372036854775808", &v), ==, 0);
    g_assert_cmpint(v, ==, INT64_MIN);
    g_assert_cmpint(qemu_strtoi64("9223372036854775808", &v), ==, -ERANGE);
    g_assert_cmpint(qemu_strtoi64("12x", &v), ==, -EINVAL);
    g_assert_cmpint(qemu_strtoi64("", &v), ==, -EINVAL);
    g_assert_cmpint(qemu_strtoi64(NULL, &v), ==, -EINVAL);

    g_assert_cmpint(qemu_strtou64("18446744073709551615", &u), ==, 0);
    g_assert_cmpuint(u, ==, UINT64_MAX);
    g_assert_cmpint(qemu_strtou64("18446744073709551616", &u), ==, -ERANGE);
    g_assert_cmpint(qemu_strtou64("-1", &u), ==, -EINVAL);
    g_assert_cmpint(qemu_strtou64("1 ", &u), ==, -EINVAL);
    g_assert_cmpint(qemu_strtou64("", &u), ==, -EINVAL);
}

static void test_parse_bool(void)
{
    static const char *const yes[] = { "on", "true", "yes" };
    static const char *const no[] = { "off", "false", "no" };
    static const char *const bad[] = { "", "1", "0", "ON", "y", "onn" };
    bool b;

    for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
        b = false;
        g_assert_cmpint(qemu_parse_bool(yes[i], &b), ==, 0);
        g_assert_true(b);
        g_assert_cmpint(qemu_parse_bool(no[i], &b), ==, 0);
        g_assert_false(b);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_cmpint(qemu_parse_bool(bad[i], &b), ==, -EINVAL);
    }
    g_assert_cmpint(qemu_parse_bool(NULL, &b), ==, -EINVAL);
}

/*
 * buffer_is_zero at every start alignment modulo 64, for every short length
 * and a few long ones, with a single non-zero byte at interesting positions
 * and non-zero guard bytes just outside the buffer.
 */
#define ZERO_MAX_ALIGN 64
#define ZERO_GUARD 64

static void set_and_check(uint8_t *p, size_t len, size_t pos)
{
    p[pos] = 0x80 >> (pos % 8);
    g_assert_false(buffer_is_zero(p, len));
    p[pos] = 0;
}

/* Every position of short buffers; the edges and the middle of long ones. */
static void check_zero_positions(uint8_t *p, size_t len)
{
    g_assert_true(buffer_is_zero(p, len));
    if (len <= 200) {
        for (size_t pos = 0; pos < len; pos++) {
            set_and_check(p, len, pos);
        }
    } else {
        static const size_t edges[] = { 0, 1, 7, 8, 9, 63, 64, 65 };
        for (size_t i = 0; i < G_N_ELEMENTS(edges); i++) {
            set_and_check(p, len, edges[i]);
            set_and_check(p, len, len - 1 - edges[i]);
        }
        set_and_check(p, len, len / 2);
    }
    g_assert_true(buffer_is_zero(p, len));
}

static void test_buffer_is_zero(void)
{
    static const size_t long_lens[] = {
        255, 256, 257, 511, 512, 513, 4095, 4096, 4097, 65536 + 7, 1 << 20,
    };
    size_t max = (1 << 20) + ZERO_MAX_ALIGN + 2 * ZERO_GUARD;
    uint8_t *area = qemu_blockalign(max);

    memset(area, 0xff, max);
    for (size_t align = 0; align < ZERO_MAX_ALIGN; align++) {
        uint8_t *p = area + ZERO_GUARD + align;

        for (size_t len = 0; len <= 200; len++) {
            memset(p, 0, len);
            check_zero_positions(p, len);
            memset(p, 0xff, len);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(long_lens); i++) {
            size_t len = long_lens[i];
            memset(p, 0, len);
            check_zero_positions(p, len);
            memset(p, 0xff, len);
        }
    }
    qemu_vfree(area);
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_func("/cutils/strtosz/stock", test_strtosz);
    test_add_func("/cutils/strtosz/63-bits", test_strtosz_63_bits);
    test_add_func("/cutils/size_to_str", test_size_to_str);
    test_add_func("/cutils/size_to_io_str", test_size_to_io_str);
    test_add_func("/cutils/size_to_io_str/double", test_size_to_io_str_double);
    test_add_func("/cutils/strtoi64", test_strtoi64);
    test_add_func("/cutils/parse_bool", test_parse_bool);
    test_add_func("/cutils/buffer_is_zero", test_buffer_is_zero);
    return g_test_run();
}

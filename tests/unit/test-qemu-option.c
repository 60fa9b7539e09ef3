/*
 * Unit tests of util/qemu-option.c: the ordered string QDict, keyval
 * parsing ("k=v,..." with ",," escapes and implied keys), option tables,
 * validation and the typed getters.
 */
#include "qemu/osdep.h"
#include "qemu/option.h"
#include "qcow2-test-helpers.h"

/* "k=v|k2=v2" in insertion order, to compare whole dictionaries at once. */
static char *qdict_str(const QDict *d)
{
    GString *s = g_string_new(NULL);

    for (size_t i = 0; i < qdict_size(d); i++) {
        g_string_append_printf(s, "%s%s=%s", i ? "|" : "", qdict_key_at(d, i),
                               qdict_value_at(d, i));
    }
    return g_string_free(s, FALSE);
}

static void assert_qdict(const QDict *d, const char *expected)
{
    g_autofree char *s = qdict_str(d);

    g_assert_cmpstr(s, ==, expected);
}

static void assert_error(Error *err, const char *expected)
{
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    error_free(err);
}

static void test_qdict_basic(void)
{
    g_autoptr(QDict) d = qdict_new();

    g_assert_cmpuint(qdict_size(d), ==, 0);
    g_assert_null(qdict_get_str(d, "a"));
    g_assert_false(qdict_haskey(d, "a"));

    qdict_put_str(d, "b", "1");
    qdict_put_str(d, "a", "2");
    qdict_put_int(d, "n", INT64_MIN);
    qdict_put_bool(d, "t", true);
    qdict_put_bool(d, "f", false);
    assert_qdict(d, "b=1|a=2|n=-9223372036854775808|t=on|f=off");

    /* Replacing keeps the position; deleting closes the gap. */
    qdict_put_str(d, "b", "3");
    qdict_put_str(d, "e", "");
    assert_qdict(d, "b=3|a=2|n=-9223372036854775808|t=on|f=off|e=");
    qdict_del(d, "n");
    qdict_del(d, "missing");
    assert_qdict(d, "b=3|a=2|t=on|f=off|e=");
    g_assert_true(qdict_haskey(d, "e"));
    g_assert_cmpstr(qdict_get_str(d, "e"), ==, "");
    g_assert_cmpuint(qdict_size(d), ==, 5);
    g_assert_cmpstr(qdict_key_at(d, 1), ==, "a");
    g_assert_cmpstr(qdict_value_at(d, 1), ==, "2");

    /* Keys are case-sensitive and compared whole. */
    g_assert_null(qdict_get_str(d, "B"));
    g_assert_null(qdict_get_str(d, "a "));
}

static void test_qdict_null(void)
{
    g_assert_cmpuint(qdict_size(NULL), ==, 0);
    g_assert_null(qdict_get_str(NULL, "a"));
    g_assert_false(qdict_haskey(NULL, "a"));
    qdict_unref(NULL);
}

static void test_qdict_clone_join(void)
{
    g_autoptr(QDict) d = qdict_new();
    g_autoptr(QDict) copy = NULL;
    g_autoptr(QDict) extra = qdict_new();

    qdict_put_str(d, "x", "1");
    qdict_put_str(d, "y", "2");
    copy = qdict_clone(d);
    qdict_put_str(d, "x", "changed");
    qdict_del(d, "y");
    assert_qdict(copy, "x=1|y=2");

    qdict_put_str(extra, "y", "from-extra");
    qdict_put_str(extra, "z", "3");
    qdict_join(copy, extra);
    assert_qdict(copy, "x=1|y=2|z=3");
    assert_qdict(extra, "y=from-extra|z=3");
}

static void test_qdict_extract_subqdict(void)
{
    g_autoptr(QDict) src = keyval_parse("driver=qcow2,file.driver=file,"
                                        "file=node,filer.x=1,file.a.b=2,"
                                        "backing.file.filename=b,"
                                        "file.filename=img", NULL,
                                        &error_abort);
    g_autoptr(QDict) file = NULL;
    g_autoptr(QDict) none = NULL;
    g_autoptr(QDict) backing = NULL;
    g_autoptr(QDict) backing_file = NULL;

    qdict_extract_subqdict(src, &file, "file.");
    assert_qdict(file, "driver=file|a.b=2|filename=img");
    assert_qdict(src, "driver=qcow2|file=node|filer.x=1|"
                      "backing.file.filename=b");

    qdict_extract_subqdict(src, &none, "nothing.");
    assert_qdict(none, "");

    /* Nested prefixes, extracted level by level. */
    qdict_extract_subqdict(src, &backing, "backing.");
    qdict_extract_subqdict(backing, &backing_file, "file.");
    assert_qdict(backing_file, "filename=b");
    assert_qdict(backing, "");
    assert_qdict(src, "driver=qcow2|file=node|filer.x=1");
}

typedef struct KeyvalCase {
    const char *str;
    const char *implied_key;
    const char *expected;   /* qdict_str() of the result, or NULL: error */
    const char *error;
} KeyvalCase;

static const KeyvalCase keyval_cases[] = {
    { "", NULL, "", NULL },
    { "a=1", NULL, "a=1", NULL },
    { "a=1,b=2", NULL, "a=1|b=2", NULL },
    { "a=,b=", NULL, "a=|b=", NULL },
    { "a=b=c", NULL, "a=b=c", NULL },
    { "a=1,a=2", NULL, "a=2", NULL },
    { "b=1,a=2,b=3", NULL, "b=3|a=2", NULL },
    /* ",," is a comma inside a value */
    { "a=1,,2", NULL, "a=1,2", NULL },
    { "a=1,,,b=2", NULL, "a=1,|b=2", NULL },
    { "a=,,,,", NULL, "a=,,", NULL },
    { "file.filename=x,,y,,z,driver=raw", NULL,
      "file.filename=x,y,z|driver=raw", NULL },
    /* The implied key applies to a first element without '=' only. */
    { "qcow2,file=x", "driver", "driver=qcow2|file=x", NULL },
    { "qcow2", "driver", "driver=qcow2", NULL },
    { "qcow2,,x,file=y", "driver", "driver=qcow2,x|file=y", NULL },
    { "file=x", "driver", "file=x", NULL },
    { "driver=raw,x=1", "driver", "driver=raw|x=1", NULL },
    /* Errors */
    { "a", NULL, NULL, "Expected '=' after parameter 'a'" },
    { "a=1,b", NULL, NULL, "Expected '=' after parameter 'b'" },
    { "file=x,qcow2", "driver", NULL, "Expected '=' after parameter 'qcow2'" },
    { "raw,qcow2", "driver", NULL, "Expected '=' after parameter 'qcow2'" },
    { "=1", NULL, NULL, "Invalid parameter ''" },
    { "a=1,=2", NULL, NULL, "Invalid parameter ''" },
};

static void test_keyval_parse(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(keyval_cases); i++) {
        const KeyvalCase *c = &keyval_cases[i];
        Error *err = NULL;
        g_autoptr(QDict) d = keyval_parse(c->str, c->implied_key, &err);

        if (test_verbose()) {
            test_note("keyval_parse(\"%s\", %s)", c->str,
                      c->implied_key ? c->implied_key : "NULL");
        }
        if (c->expected) {
            g_assert_null(err);
            assert_qdict(d, c->expected);
        } else {
            g_assert_null(d);
            assert_error(err, c->error);
        }
    }
}

static void test_keyval_parse_into(void)
{
    g_autoptr(QDict) d = qdict_new();

    qdict_put_str(d, "size", "1G");
    qdict_put_str(d, "compat", "0.10");
    g_assert_true(keyval_parse_into(d, "compat=1.1,cluster_size=4k", NULL,
                                    &error_abort));
    assert_qdict(d, "size=1G|compat=1.1|cluster_size=4k");
    g_assert_false(keyval_parse_into(d, "x", NULL, NULL));
}

static const QemuOptDesc test_opts[] = {
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "compat", QEMU_OPT_STRING, "Compatibility level", NULL },
    { "lazy", QEMU_OPT_BOOL, "Postpone refcount updates", "off" },
    { "bits", QEMU_OPT_NUMBER, "Width in bits", "16" },
    { NULL },
};

static const QemuOptDesc test_opts2[] = {
    { "nocow", QEMU_OPT_BOOL, "Turn off copy-on-write", "off" },
    { "size", QEMU_OPT_STRING, "shadowed by test_opts", NULL },
    { NULL },
};

static void assert_validate(const char *str, const QemuOptDesc *desc2,
                            const char *error)
{
    g_autoptr(QDict) d = keyval_parse(str, NULL, &error_abort);
    Error *err = NULL;
    bool ok = qemu_opts_validate(d, test_opts, desc2, &err);

    if (test_verbose()) {
        test_note("validate \"%s\"", str);
    }
    if (!error) {
        g_assert_true(ok);
        g_assert_null(err);
    } else {
        g_assert_false(ok);
        assert_error(err, error);
    }
}

static void test_opts_validate(void)
{
    assert_validate("", NULL, NULL);
    assert_validate("size=1.5G,compat=anything,lazy=on,bits=0x40", NULL, NULL);
    assert_validate("lazy=off,lazy=yes,bits=0", NULL, NULL);
    assert_validate("nocow=on,size=64k", test_opts2, NULL);
    assert_validate("nocow=on", NULL, "Invalid parameter 'nocow'");
    assert_validate("size=1,foo=bar", test_opts2, "Invalid parameter 'foo'");
    assert_validate("lazy=1", NULL, "Parameter 'lazy' expects 'on' or 'off'");
    assert_validate("nocow=maybe", test_opts2,
                    "Parameter 'nocow' expects 'on' or 'off'");
    assert_validate("bits=-1", NULL, "Parameter 'bits' expects a number");
    assert_validate("bits=16k", NULL, "Parameter 'bits' expects a number");
    assert_validate("bits=", NULL, "Parameter 'bits' expects a number");
    assert_validate("size=1x", NULL, "Parameter 'size' expects a non-negative "
                    "number below 2^64");
    assert_validate("size=", NULL, "Parameter 'size' expects a non-negative "
                    "number below 2^64");
}

static void test_opt_getters(void)
{
    g_autoptr(QDict) d = keyval_parse("size=64k,bad_size=12q,on=on,off=off,"
                                      "bad_bool=2,n=0x10,bad_n=-3,s=text",
                                      NULL, &error_abort);

    g_assert_cmpstr(qemu_opt_get(d, "s"), ==, "text");
    g_assert_null(qemu_opt_get(d, "missing"));

    g_assert_true(qemu_opt_get_bool(d, "on", false));
    g_assert_false(qemu_opt_get_bool(d, "off", true));
    g_assert_true(qemu_opt_get_bool(d, "missing", true));
    g_assert_false(qemu_opt_get_bool(d, "bad_bool", false));

    g_assert_cmpuint(qemu_opt_get_size(d, "size", 1), ==, 65536);
    g_assert_cmpuint(qemu_opt_get_size(d, "missing", 7), ==, 7);
    g_assert_cmpuint(qemu_opt_get_size(d, "bad_size", 9), ==, 9);

    g_assert_cmpuint(qemu_opt_get_number(d, "n", 1), ==, 16);
    g_assert_cmpuint(qemu_opt_get_number(d, "missing", 5), ==, 5);
    g_assert_cmpuint(qemu_opt_get_number(d, "bad_n", 5), ==, 5);
}

static void test_qdict_typed_getters(void)
{
    g_autoptr(QDict) d = keyval_parse("b=yes,nb=x,sz=1.5M,nsz=1.5,i=-12,ni=1k",
                                      NULL, &error_abort);
    Error *err = NULL;

    g_assert_true(qdict_get_try_bool(d, "b", false, &err));
    g_assert_false(qdict_get_try_bool(d, "missing", false, &err));
    g_assert_cmpuint(qdict_get_try_size(d, "sz", 0, &err), ==, 1572864);
    g_assert_cmpuint(qdict_get_try_size(d, "missing", 3, &err), ==, 3);
    g_assert_cmpint(qdict_get_try_int(d, "i", 0, &err), ==, -12);
    g_assert_cmpint(qdict_get_try_int(d, "missing", -1, &err), ==, -1);
    g_assert_null(err);

    g_assert_true(qdict_get_try_bool(d, "nb", true, &err));
    assert_error(err, "Parameter 'nb' expects 'on' or 'off'");
    err = NULL;
    g_assert_cmpuint(qdict_get_try_size(d, "nsz", 4, &err), ==, 4);
    assert_error(err, "Parameter 'nsz' expects a size");
    err = NULL;
    g_assert_cmpint(qdict_get_try_int(d, "ni", 8, &err), ==, 8);
    assert_error(err, "Parameter 'ni' expects a number");

    /* A NULL errp just gets the default. */
    g_assert_cmpint(qdict_get_try_int(d, "ni", 8, NULL), ==, 8);
}

static void test_opt_desc(void)
{
    g_autofree QemuOptDesc *merged = qemu_opt_desc_merge(test_opts,
                                                         test_opts2);

    g_assert_cmpuint(qemu_opt_desc_count(test_opts), ==, 4);
    g_assert_cmpuint(qemu_opt_desc_count(NULL), ==, 0);
    g_assert_true(qemu_opt_find_desc(test_opts, "bits") == &test_opts[3]);
    g_assert_null(qemu_opt_find_desc(test_opts, "bit"));
    g_assert_null(qemu_opt_find_desc(NULL, "bits"));

    /* The first table wins on equal names; the rest of the second follows. */
    g_assert_cmpuint(qemu_opt_desc_count(merged), ==, 5);
    g_assert_cmpstr(merged[0].name, ==, "size");
    g_assert_cmpint(merged[0].type, ==, QEMU_OPT_SIZE);
    g_assert_cmpstr(merged[4].name, ==, "nocow");
    g_assert_null(merged[5].name);
}

/*
 * The help layout of "qemu-img create -f qcow2 -o help"; the expected lines
 * are copied from what stock qemu-img 7.2 prints for these options.
 */
static const QemuOptDesc help_opts[] = {
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "refcount_bits", QEMU_OPT_NUMBER,
      "Width of a reference count entry in bits", NULL },
    { "nocow", QEMU_OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)",
      NULL },
    { "data_file_raw", QEMU_OPT_BOOL,
      "The external data file must stay valid as a raw image", NULL },
    { "compression_type", QEMU_OPT_STRING,
      "Compression method used for image cluster compression", NULL },
    { "extent_size_hint", QEMU_OPT_SIZE,
      "Extent size hint for the image file, 0 to disable", NULL },
    { NULL },
};

static void test_opts_print_help(void)
{
    if (g_test_subprocess()) {
        qemu_opts_print_help(help_opts, "Supported options:");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout(
        "Supported options:\n"
        "  compression_type=<str> - Compression method used for image "
        "cluster compression\n"
        "  data_file_raw=<bool (on/off)> - The external data file must stay "
        "valid as a raw image\n"
        "  extent_size_hint=<size> - Extent size hint for the image file, 0 "
        "to disable\n"
        "  nocow=<bool (on/off)>  - Turn off copy-on-write (valid only on "
        "btrfs)\n"
        "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
        "  size=<size>            - Virtual disk size\n");
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_func("/qdict/basic", test_qdict_basic);
    test_add_func("/qdict/null", test_qdict_null);
    test_add_func("/qdict/clone-join", test_qdict_clone_join);
    test_add_func("/qdict/extract_subqdict", test_qdict_extract_subqdict);
    test_add_func("/qdict/typed-getters", test_qdict_typed_getters);
    test_add_func("/keyval/parse", test_keyval_parse);
    test_add_func("/keyval/parse-into", test_keyval_parse_into);
    test_add_func("/opts/validate", test_opts_validate);
    test_add_func("/opts/getters", test_opt_getters);
    test_add_func("/opts/desc", test_opt_desc);
    /* Runs its own subprocess: not isolated again. */
    g_test_add_func("/opts/print-help", test_opts_print_help);
    return g_test_run();
}

/*
 * Unit tests of util/qjson.c: JSON text in the layout of QEMU's tools.
 *
 * The expected texts are outputs of the stock QEMU 7.2 tools, recorded from
 * real runs: "qemu-img info/check --output=json" (pretty), the
 * qemu-storage-daemon QMP monitor (compact, and pretty=on for the empty
 * containers) and "qemu-img info" (the human "Format specific information"
 * dump).  Each is parsed with json-glib (which keeps member order) and must
 * print back byte for byte.
 */
#include "qemu/osdep.h"
#include "qapi/qjson.h"
#include "qcow2-test-helpers.h"

/* qemu-img info --output=json (two internal snapshots) */
static const char info_snapshots_json[] =
    "{\n"
    "    \"snapshots\": [\n"
    "        {\n"
    "            \"icount\": 0,\n"
    "            \"vm-clock-nsec\": 0,\n"
    "            \"name\": \"first\",\n"
    "            \"date-sec\": 1795321696,\n"
    "            \"date-nsec\": 842906000,\n"
    "            \"vm-clock-sec\": 0,\n"
    "            \"id\": \"1\",\n"
    "            \"vm-state-size\": 0\n"
    "        },\n"
    "        {\n"
    "            \"icount\": 0,\n"
    "            \"vm-clock-nsec\": 0,\n"
    "            \"name\": \"second\",\n"
    "            \"date-sec\": 1795321696,\n"
    "            \"date-nsec\": 879152000,\n"
    "            \"vm-clock-sec\": 0,\n"
    "            \"id\": \"2\",\n"
    "            \"vm-state-size\": 0\n"
    "        }\n"
    "    ],\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"snap.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 348160,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* qemu-img info --output=json (one bitmap enabled, one disabled) */
static const char info_bitmaps_json[] =
    "{\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"bm.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 229376,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"bitmaps\": [\n"
    "                {\n"
    "                    \"flags\": [\n"
    "                        \"auto\"\n"
    "                    ],\n"
    "                    \"name\": \"b0\",\n"
    "                    \"granularity\": 65536\n"
    "                },\n"
    "                {\n"
    "                    \"flags\": [\n"
    "                    ],\n"
    "                    \"name\": \"b1\",\n"
    "                    \"granularity\": 524288\n"
    "                }\n"
    "            ],\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* qemu-img check --output=json */
static const char check_json[] =
    "{\n"
    "    \"image-end-offset\": 655360,\n"
    "    \"total-clusters\": 16,\n"
    "    \"check-errors\": 0,\n"
    "    \"allocated-clusters\": 1,\n"
    "    \"filename\": \"snap.qcow2\",\n"
    "    \"format\": \"qcow2\"\n"
    "}";

/* qemu-img info --output=json --backing-chain */
static const char info_backing_chain_json[] =
    "[\n"
    "    {\n"
    "        \"backing-filename-format\": \"raw\",\n"
    "        \"virtual-size\": 2097152,\n"
    "        \"filename\": \"top.qcow2\",\n"
    "        \"cluster-size\": 65536,\n"
    "        \"format\": \"qcow2\",\n"
    "        \"actual-size\": 200704,\n"
    "        \"format-specific\": {\n"
    "            \"type\": \"qcow2\",\n"
    "            \"data\": {\n"
    "                \"compat\": \"1.1\",\n"
    "                \"compression-type\": \"zlib\",\n"
    "                \"lazy-refcounts\": false,\n"
    "                \"refcount-bits\": 16,\n"
    "                \"corrupt\": false,\n"
    "                \"extended-l2\": false\n"
    "            }\n"
    "        },\n"
    "        \"full-backing-filename\": \"base.raw\",\n"
    "        \"backing-filename\": \"base.raw\",\n"
    "        \"dirty-flag\": false\n"
    "    },\n"
    "    {\n"
    "        \"virtual-size\": 1048576,\n"
    "        \"filename\": \"base.raw\",\n"
    "        \"format\": \"raw\",\n"
    "        \"actual-size\": 4096,\n"
    "        \"dirty-flag\": false\n"
    "    }\n"
    "]";

/* qemu-img info --output=json (control and non-ASCII characters in the name) */
static const char info_escapes_json[] =
    "{\n"
    "    \"virtual-size\": 512,\n"
    "    \"filename\": \"esc/q\\\"b\\\\s\\tt\\u0001c\\u001F\\u007F"
    "\\u00E9\\u20AC\\uD83D\\uDE00x\\u007F\\b\\f\\r\\n.raw\",\n"
    "    \"format\": \"raw\",\n"
    "    \"actual-size\": 4096,\n"
    "    \"dirty-flag\": false\n"
    "}";

/* qemu-img info (human), after "Format specific information:" */
static const char info_bitmaps_human[] =
    "    compat: 1.1\n"
    "    compression type: zlib\n"
    "    lazy refcounts: false\n"
    "    bitmaps:\n"
    "        [0]:\n"
    "            flags:\n"
    "                [0]: auto\n"
    "            name: b0\n"
    "            granularity: 65536\n"
    "        [1]:\n"
    "            flags:\n"
    "            name: b1\n"
    "            granularity: 524288\n"
    "    refcount bits: 16\n"
    "    corrupt: false\n"
    "    extended l2: false\n";

/* qemu-storage-daemon QMP monitor, compact (default) */
static const char *const qmp_compact[] = {
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, "
    "\"capabilities\": [\"oob\"]}}",
    "{\"return\": {}}",
    "{\"return\": []}",
    "{\"return\": [{\"iops_rd\": 0, \"detect_zeroes\": \"off\", "
    "\"image\": {\"virtual-size\": 1024, "
    "\"filename\": \"json:{\\\"driver\\\": \\\"null-co\\\", "
    "\\\"size\\\": 1024}\", \"format\": \"null-co\", \"actual-size\": 0}, "
    "\"iops_wr\": 0, \"ro\": false, \"node-name\": \"n0\", "
    "\"backing_file_depth\": 0, \"drv\": \"null-co\", \"iops\": 0, "
    "\"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, "
    "\"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, "
    "\"direct\": false, \"writeback\": true}, "
    "\"file\": \"json:{\\\"driver\\\": \\\"null-co\\\", "
    "\\\"size\\\": 1024}\"}]}",
    "{\"error\": {\"class\": \"GenericError\", "
    "\"desc\": \"Invalid node-name: 'n\\\"\\u00E9\\u0001'\"}}",
};

/* qemu-storage-daemon --monitor chardev=c,pretty=on */
static const char qmp_pretty_empty_object[] =
    "{\n"
    "    \"return\": {\n"
    "    }\n"
    "}";
static const char qmp_pretty_empty_array[] =
    "{\n"
    "    \"return\": [\n"
    "    ]\n"
    "}";

static JsonNode *parse(const char *text)
{
    GError *err = NULL;
    JsonNode *node = json_from_string(text, &err);

    g_assert_no_error(err);
    g_assert_nonnull(node);
    return node;
}

static void assert_prints_back(gconstpointer data, bool pretty)
{
    const char *text = data;
    g_autoptr(JsonNode) node = parse(text);
    g_autofree char *out = qjson_to_string(node, pretty);

    g_assert_cmpstr(out, ==, text);
}

static void test_pretty(gconstpointer data)
{
    assert_prints_back(data, true);
}

static void test_compact(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(qmp_compact); i++) {
        assert_prints_back(qmp_compact[i], false);
    }
}

/* Invalid UTF-8 prints as U+FFFD, as stock qemu-img shows such file names. */
static void test_invalid_utf8(void)
{
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_VALUE);
    g_autofree char *out = NULL;

    json_node_set_string(node, "esc/bad\xffz\xc3(y\xe2\x82.raw");
    out = qjson_to_string(node, false);
    g_assert_cmpstr(out, ==, "\"esc/bad\\uFFFDz\\uFFFD(y\\uFFFD.raw\"");
}

/*
 * More file names from "qemu-img info --output=json": what counts as one
 * invalid character, the C0 80 form of U+0000, noncharacters and a
 * character beyond the BMP.
 */
static void test_utf8_cases(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "a\xc1\xbf" "b", "a\\uFFFDb" },           /* overlong */
        { "a\xe0\x80\x80" "b", "a\\uFFFDb" },
        { "a\xed\xa0\x80" "b", "a\\uFFFDb" },       /* surrogate */
        { "a\xef\xbf\xbe" "b", "a\\uFFFDb" },       /* U+FFFE */
        { "a\xf3\xbf\xbf\xbf" "b", "a\\uFFFDb" },   /* U+FFFFF */
        { "a\xef\xb7\x90" "b", "a\\uFFFDb" },       /* U+FDD0 */
        { "a\xef\xb7\xaf" "b\xef\xb7\xb0", "a\\uFFFDb\\uFDF0" },
        { "a\xf4\x90\x80\x80" "b", "a\\uFFFDb" },   /* past U+10FFFF */
        { "a\xf8\x88\x80\x80\x80" "b", "a\\uFFFDb" },
        { "a\xfc\x84\x80\x80\x80\x80" "b", "a\\uFFFDb" },
        { "a\xc0\x80" "b", "a\\u0000b" },
        { "a\xe2\x82", "a\\uFFFD" },                /* cut by the end */
        { "a\xf0\x9f\x98" "b", "a\\uFFFDb" },
        { "a\x80\x80" "b", "a\\uFFFD\\uFFFDb" },   /* stray bytes */
        { "a\xef\xbf\xbd" "b", "a\\uFFFDb" },
        { "a\xf0\x90\x80\x80" "b", "a\\uD800\\uDC00b" },
        { "a\x7f\x1b\x0b", "a\\u007F\\u001B\\u000B" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(JsonNode) node = json_node_new(JSON_NODE_VALUE);
        g_autofree char *out = NULL;
        g_autofree char *expected = g_strdup_printf("\"%s\"", cases[i].out);

        json_node_set_string(node, cases[i].in);
        out = qjson_to_string(node, false);
        g_assert_cmpstr(out, ==, expected);
    }
}

/* Numbers QMP echoes back in "id" (stock qemu-storage-daemon). */
static void test_doubles(void)
{
    g_autoptr(JsonNode) node = parse("[1.5, 0.1, 1e300, -0.0, 1.0, 1e-7, "
                                     "123456789012345678]");
    g_autofree char *out = qjson_to_string(node, false);

    g_assert_cmpstr(out, ==, "[1.5, 0.10000000000000001, "
                    "1.0000000000000001e+300, -0, 1, 9.9999999999999995e-08, "
                    "123456789012345678]");
}

/* Scalars at the top level and an empty document of each kind. */
static void test_scalars(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "0", "0" }, { "-9223372036854775808", "-9223372036854775808" },
        { "9223372036854775807", "9223372036854775807" },
        { "true", "true" }, { "false", "false" }, { "null", "null" },
        { "\"\"", "\"\"" }, { "{}", "{}" }, { "[]", "[]" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(JsonNode) node = parse(cases[i].in);
        g_autofree char *out = qjson_to_string(node, false);
        g_assert_cmpstr(out, ==, cases[i].out);
    }
}

/* qjson_append continues at the given indentation inside a larger text. */
static void test_append_indent(void)
{
    g_autoptr(JsonNode) node = parse("{\"a\": [1, {}]}");
    g_autoptr(GString) out = g_string_new("x: ");

    qjson_append(out, node, true, 4);
    g_assert_cmpstr(out->str, ==,
                    "x: {\n"
                    "        \"a\": [\n"
                    "            1,\n"
                    "            {\n"
                    "            }\n"
                    "        ]\n"
                    "    }");
}

static void test_dump_human(void)
{
    g_autoptr(JsonNode) info = parse(info_bitmaps_json);
    JsonObject *spec = json_object_get_object_member(
        json_node_get_object(info), "format-specific");
    g_autoptr(GString) out = g_string_new(NULL);

    qjson_dump_human(out, json_object_get_member(spec, "data"), 4);
    g_assert_cmpstr(out->str, ==, info_bitmaps_human);
}

static void test_dump_human_scalars(void)
{
    g_autoptr(JsonNode) node = parse("{\"a-b-c\": \"x y\", \"n\": -5, "
                                     "\"t\": true, "
                                     "\"l\": [[1, 2], {\"k\": \"v\"}, []], "
                                     "\"o\": {}}");
    g_autoptr(GString) out = g_string_new(NULL);

    qjson_dump_human(out, node, 0);
    g_assert_cmpstr(out->str, ==,
                    "a b c: x y\n"
                    "n: -5\n"
                    "t: true\n"
                    "l:\n"
                    "    [0]:\n"
                    "        [0]: 1\n"
                    "        [1]: 2\n"
                    "    [1]:\n"
                    "        k: v\n"
                    "    [2]:\n"
                    "o:\n");
}

int main(int argc, char **argv)
{
    test_init(&argc, &argv);
    test_add_data_func("/qjson/pretty/info-snapshots", info_snapshots_json,
                         test_pretty);
    test_add_data_func("/qjson/pretty/info-bitmaps-empty-array",
                         info_bitmaps_json, test_pretty);
    test_add_data_func("/qjson/pretty/check", check_json, test_pretty);
    test_add_data_func("/qjson/pretty/backing-chain-array",
                         info_backing_chain_json, test_pretty);
    test_add_data_func("/qjson/pretty/escapes", info_escapes_json,
                         test_pretty);
    test_add_data_func("/qjson/pretty/empty-object", qmp_pretty_empty_object,
                         test_pretty);
    test_add_data_func("/qjson/pretty/empty-array", qmp_pretty_empty_array,
                         test_pretty);
    test_add_func("/qjson/compact/qmp", test_compact);
    test_add_func("/qjson/compact/invalid-utf8", test_invalid_utf8);
    test_add_func("/qjson/compact/scalars", test_scalars);
    test_add_func("/qjson/compact/utf8-cases", test_utf8_cases);
    test_add_func("/qjson/compact/doubles", test_doubles);
    test_add_func("/qjson/pretty/append-indent", test_append_indent);
    test_add_func("/qjson/human/bitmaps", test_dump_human);
    test_add_func("/qjson/human/scalars", test_dump_human_scalars);
    return g_test_run();
}

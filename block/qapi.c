/*
 * Image information for the tools (see block/qapi.h).
 *
 * Key order: QEMU 7.2 builds ImageInfo in a hash table and prints the keys
 * in the table's iteration order, not in declaration order.  Scripts and
 * golden test output compare the text, so bdrv_image_info() adds the keys in
 * exactly that order:
 *
 *   backing-filename-format, virtual-size, filename, cluster-size, format,
 *   actual-size, format-specific, full-backing-filename, backing-filename,
 *   dirty-flag
 *
 * (7.2 would put "snapshots" after backing-filename-format and "encrypted"
 * after full-backing-filename; our drivers have neither yet.)  Optional keys
 * are left out, as 7.2 does, when their value is unknown.
 */
#include "qemu/osdep.h"
#include "block/qapi.h"
#include "qemu/cutils.h"
#include "qapi/qjson.h"

char *bdrv_backing_full_path(const char *image_filename, const char *backing)
{
    const char *slash = strrchr(image_filename, '/');

    if (g_path_is_absolute(backing) || !slash) {
        return g_strdup(backing);
    }
    return g_strdup_printf("%.*s%s", (int)(slash - image_filename + 1),
                           image_filename, backing);
}

static void add_int(JsonBuilder *b, const char *key, int64_t v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, v);
}

static void add_str(JsonBuilder *b, const char *key, const char *v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, v);
}

/* QEMU's SnapshotInfo members, in the order its tools print them. */
static void add_snapshots(JsonBuilder *b, BlockDriverState *bs)
{
    QEMUSnapshotInfo *list;
    int n = bdrv_snapshot_list(bs, &list);

    if (n > 0) {
        json_builder_set_member_name(b, "snapshots");
        json_builder_begin_array(b);
        for (int i = 0; i < n; i++) {
            json_builder_begin_object(b);
            if (list[i].icount != UINT64_MAX) {
                add_int(b, "icount", list[i].icount);
            }
            add_int(b, "vm-clock-nsec", list[i].vm_clock_nsec % 1000000000);
            add_str(b, "name", list[i].name);
            add_int(b, "date-sec", list[i].date_sec);
            add_int(b, "date-nsec", list[i].date_nsec);
            add_int(b, "vm-clock-sec", list[i].vm_clock_nsec / 1000000000);
            add_str(b, "id", list[i].id_str);
            add_int(b, "vm-state-size", list[i].vm_state_size);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    bdrv_snapshot_list_free(list, MAX(n, 0));
}

void bdrv_snapshot_dump_header(GString *out)
{
    g_string_append_printf(out, "%-10s%-16s%9s%20s%13s%11s\n", "ID", "TAG",
                           "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
}

void bdrv_snapshot_dump(GString *out, const QEMUSnapshotInfo *sn)
{
    g_autofree char *vm_size = size_to_str(sn->vm_state_size);
    g_autofree char *icount = sn->icount == UINT64_MAX ? g_strdup("")
                              : g_strdup_printf("%" PRIu64, sn->icount);
    g_autoptr(GDateTime) date = g_date_time_new_from_unix_local(sn->date_sec);
    g_autofree char *date_str = g_date_time_format(date, "%Y-%m-%d %H:%M:%S");
    uint64_t ms = sn->vm_clock_nsec / 1000000;
    g_autofree char *clock = g_strdup_printf("%02" PRIu64 ":%02" PRIu64 ":%02"
                                             PRIu64 ".%03" PRIu64,
                                             ms / 3600000, ms / 60000 % 60,
                                             ms / 1000 % 60, ms % 1000);

    g_string_append_printf(out, "%-10s%-16s%9s%20s%13s%11s\n", sn->id_str,
                           sn->name, vm_size, date_str, clock, icount);
}

JsonNode *bdrv_image_info(BlockDriverState *bs, Error **errp)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    const char *filename = bdrv_get_filename(bs);
    const char *backing = bdrv_get_backing_filename(bs);
    const char *backing_fmt = bdrv_get_backing_format(bs);
    int64_t size = bdrv_getlength(bs);
    int64_t allocated = bdrv_get_allocated_file_size(bs);
    BlockDriverInfo bdi;
    bool have_bdi = bdrv_get_info(bs, &bdi) == 0;
    JsonNode *specific;

    if (size < 0) {
        error_setg_errno(errp, -size, "Can't get image size '%s'", filename);
        return NULL;
    }
    json_builder_begin_object(b);
    add_snapshots(b, bs);
    if (backing[0] && backing_fmt[0]) {
        add_str(b, "backing-filename-format", backing_fmt);
    }
    add_int(b, "virtual-size", size);
    add_str(b, "filename", filename);
    if (have_bdi && bdi.cluster_size) {
        add_int(b, "cluster-size", bdi.cluster_size);
    }
    add_str(b, "format", bdrv_get_format_name(bs));
    if (allocated >= 0) {
        add_int(b, "actual-size", allocated);
    }
    specific = bdrv_get_specific_info(bs);
    if (specific) {
        json_builder_set_member_name(b, "format-specific");
        json_builder_add_value(b, specific);
    }
    if (backing[0]) {
        g_autofree char *full = bdrv_backing_full_path(filename, backing);
        add_str(b, "full-backing-filename", full);
        add_str(b, "backing-filename", backing);
    }
    if (have_bdi) {
        json_builder_set_member_name(b, "dirty-flag");
        json_builder_add_boolean_value(b, bdi.is_dirty);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static const char *member_str(JsonObject *o, const char *key)
{
    return json_object_has_member(o, key)
           ? json_object_get_string_member(o, key) : NULL;
}

static void dump_snapshots(GString *out, JsonArray *arr)
{
    g_string_append(out, "Snapshot list:\n");
    bdrv_snapshot_dump_header(out);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *j = json_array_get_object_element(arr, i);
        QEMUSnapshotInfo sn = {
            .id_str = (char *)json_object_get_string_member(j, "id"),
            .name = (char *)json_object_get_string_member(j, "name"),
            .vm_state_size = json_object_get_int_member(j, "vm-state-size"),
            .date_sec = json_object_get_int_member(j, "date-sec"),
            .vm_clock_nsec = json_object_get_int_member(j, "vm-clock-sec") *
                             1000000000ULL +
                             json_object_get_int_member(j, "vm-clock-nsec"),
            .icount = json_object_has_member(j, "icount")
                      ? (uint64_t)json_object_get_int_member(j, "icount")
                      : UINT64_MAX,
        };
        bdrv_snapshot_dump(out, &sn);
    }
}

void bdrv_image_info_dump(GString *out, JsonNode *info)
{
    JsonObject *o = json_node_get_object(info);
    int64_t size = json_object_get_int_member(o, "virtual-size");
    g_autofree char *size_str = size_to_str(size);
    const char *backing = member_str(o, "backing-filename");
    const char *full = member_str(o, "full-backing-filename");
    const char *backing_fmt = member_str(o, "backing-filename-format");

    g_string_append_printf(out, "image: %s\n", member_str(o, "filename"));
    g_string_append_printf(out, "file format: %s\n", member_str(o, "format"));
    g_string_append_printf(out, "virtual size: %s (%" PRId64 " bytes)\n",
                           size_str, size);
    if (json_object_has_member(o, "actual-size")) {
        g_autofree char *disk = size_to_str(
            json_object_get_int_member(o, "actual-size"));
        g_string_append_printf(out, "disk size: %s\n", disk);
    } else {
        g_string_append(out, "disk size: unavailable\n");
    }
    if (json_object_has_member(o, "cluster-size")) {
        g_string_append_printf(out, "cluster_size: %" PRId64 "\n",
                               json_object_get_int_member(o, "cluster-size"));
    }
    if (json_object_has_member(o, "dirty-flag") &&
        json_object_get_boolean_member(o, "dirty-flag")) {
        g_string_append(out, "cleanly shut down: no\n");
    }
    if (backing) {
        g_string_append_printf(out, "backing file: %s", backing);
        if (full && strcmp(full, backing)) {
            g_string_append_printf(out, " (actual path: %s)", full);
        }
        g_string_append_c(out, '\n');
    }
    if (backing_fmt) {
        g_string_append_printf(out, "backing file format: %s\n", backing_fmt);
    }
    if (json_object_has_member(o, "snapshots")) {
        dump_snapshots(out, json_object_get_array_member(o, "snapshots"));
    }
    if (json_object_has_member(o, "format-specific")) {
        JsonObject *spec = json_object_get_object_member(o, "format-specific");
        g_string_append(out, "Format specific information:\n");
        qjson_dump_human(out, json_object_get_member(spec, "data"), 4);
    }
}

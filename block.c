/*
 * Block layer core: the driver registry, opening node graphs (format probe,
 * protocol child, backing chain), named nodes and image creation.
 *
 * Every node holds references to its children; bdrv_unref() of the last
 * reference closes the driver first and the children afterwards, so a
 * format always flushes its metadata while its file is still open.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qemu/cutils.h"

#include <libgen.h>

static BlockDriver *const block_drivers[] = {
    &bdrv_file,
    &bdrv_raw,
    &bdrv_qcow2,
    &bdrv_record,
    NULL,
};

/* Named nodes in creation order; protected by the big graph lock. */
static GList *named_nodes;
static GMutex graph_lock;

const char *const PreallocMode_str[PREALLOC_MODE__MAX] = {
    [PREALLOC_MODE_OFF] = "off",
    [PREALLOC_MODE_METADATA] = "metadata",
    [PREALLOC_MODE_FALLOC] = "falloc",
    [PREALLOC_MODE_FULL] = "full",
};

int prealloc_mode_parse(const char *name)
{
    for (int i = 0; i < PREALLOC_MODE__MAX; i++) {
        if (!strcmp(name, PreallocMode_str[i])) {
            return i;
        }
    }
    return -1;
}

void bdrv_init(void)
{
    /* Drivers are static tables; nothing to set up yet. */
}

BlockDriver *bdrv_find_format(const char *format_name)
{
    for (int i = 0; block_drivers[i]; i++) {
        if (!strcmp(block_drivers[i]->format_name, format_name)) {
            return block_drivers[i];
        }
    }
    return NULL;
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void bdrv_iterate_format(void (*fn)(void *opaque, const char *name),
                         void *opaque)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    for (int i = 0; block_drivers[i]; i++) {
        g_ptr_array_add(names, (gpointer)block_drivers[i]->format_name);
    }
    g_ptr_array_sort(names, str_cmp);
    for (guint i = 0; i < names->len; i++) {
        fn(opaque, g_ptr_array_index(names, i));
    }
}

const char *bdrv_driver_name(const BlockDriver *drv)
{
    return drv->format_name;
}

const char *bdrv_get_format_name(const BlockDriverState *bs)
{
    return bs->drv ? bs->drv->format_name : NULL;
}

const QemuOptDesc *bdrv_driver_create_opts(const BlockDriver *drv)
{
    return drv->create_opts;
}

const QemuOptDesc *bdrv_amend_opts(const BlockDriver *drv)
{
    return drv->amend_opts;
}

QemuOptDesc *bdrv_create_opts_with_protocol(const BlockDriver *drv)
{
    if (drv->is_protocol) {
        return qemu_opt_desc_merge(drv->create_opts, NULL);
    }
    return qemu_opt_desc_merge(drv->create_opts, bdrv_file.create_opts);
}

/* Accessors */

BlockDriverState *bdrv_find_node(const char *node_name)
{
    BlockDriverState *found = NULL;

    g_mutex_lock(&graph_lock);
    for (GList *l = named_nodes; l; l = l->next) {
        BlockDriverState *bs = l->data;
        if (!strcmp(bs->node_name, node_name)) {
            found = bs;
            break;
        }
    }
    g_mutex_unlock(&graph_lock);
    return found;
}

void bdrv_iterate_named_nodes(void (*fn)(BlockDriverState *bs, void *opaque),
                              void *opaque)
{
    g_mutex_lock(&graph_lock);
    GList *copy = g_list_copy(named_nodes);
    g_mutex_unlock(&graph_lock);
    for (GList *l = copy; l; l = l->next) {
        fn(l->data, opaque);
    }
    g_list_free(copy);
}

const char *bdrv_get_node_name(const BlockDriverState *bs)
{
    return bs->node_name;
}

const char *bdrv_get_filename(const BlockDriverState *bs)
{
    return bs->filename;
}

BlockDriverState *bdrv_get_file(const BlockDriverState *bs)
{
    return bs->file;
}

BlockDriverState *bdrv_get_backing(const BlockDriverState *bs)
{
    return bs->backing;
}

const char *bdrv_get_backing_filename(const BlockDriverState *bs)
{
    return bs->backing_file;
}

const char *bdrv_get_backing_format(const BlockDriverState *bs)
{
    return bs->backing_format;
}

bool bdrv_is_read_only(const BlockDriverState *bs)
{
    return bs->read_only;
}

int bdrv_get_flags(const BlockDriverState *bs)
{
    return bs->open_flags;
}

void bdrv_get_stats(BlockDriverState *bs, BlockAcctStats *out)
{
    g_mutex_lock(&bs->stats_lock);
    *out = bs->stats;
    g_mutex_unlock(&bs->stats_lock);
}

const char *bdrv_get_detect_zeroes(const BlockDriverState *bs)
{
    static const char *const names[] = {
        [BDRV_DETECT_ZEROES_OFF] = "off",
        [BDRV_DETECT_ZEROES_ON] = "on",
        [BDRV_DETECT_ZEROES_UNMAP] = "unmap",
    };

    return names[bs->detect_zeroes];
}

/* Opening */

static BlockDriverState *bdrv_new(void)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->refcnt = 1;
    bs->request_alignment = 1;
    g_mutex_init(&bs->reqs_lock);
    g_cond_init(&bs->reqs_cond);
    g_mutex_init(&bs->stats_lock);
    return bs;
}

static void bdrv_free(BlockDriverState *bs)
{
    if (bs->node_name[0]) {
        g_mutex_lock(&graph_lock);
        named_nodes = g_list_remove(named_nodes, bs);
        g_mutex_unlock(&graph_lock);
    }
    g_mutex_clear(&bs->reqs_lock);
    g_cond_clear(&bs->reqs_cond);
    g_mutex_clear(&bs->stats_lock);
    g_free(bs->opaque);
    g_free(bs);
}

void bdrv_ref(BlockDriverState *bs)
{
    g_atomic_int_inc(&bs->refcnt);
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs || !g_atomic_int_dec_and_test(&bs->refcnt)) {
        return;
    }
    bdrv_drained_begin(bs);
    if (bs->drv && bs->drv->bdrv_close) {
        bs->drv->bdrv_close(bs);
    }
    bdrv_drained_end(bs);
    bdrv_unref(bs->backing);
    bdrv_unref(bs->file);
    bdrv_free(bs);
}

static BlockDriver *bdrv_probe_format(BlockDriverState *file,
                                      const char *filename, Error **errp)
{
    uint8_t buf[512] = { 0 };
    BlockDriver *best = NULL;
    int best_score = 0;
    int64_t len = bdrv_getlength(file);
    int ret;

    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get image size");
        return NULL;
    }
    ret = bdrv_pread(file, 0, MIN(len, (int64_t)sizeof(buf)), buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read image for determining "
                         "its format");
        return NULL;
    }
    for (int i = 0; block_drivers[i]; i++) {
        BlockDriver *drv = block_drivers[i];
        if (drv->bdrv_probe) {
            int score = drv->bdrv_probe(buf, sizeof(buf), filename);
            if (score > best_score) {
                best_score = score;
                best = drv;
            }
        }
    }
    if (!best) {
        error_setg(errp, "Could not determine image format");
    }
    return best;
}

/* Apply the options every node understands; consumed keys are removed. */
static bool bdrv_apply_common_options(BlockDriverState *bs, QDict *options,
                                      int *flags, Error **errp)
{
    Error *local_err = NULL;
    const char *s;

    if ((s = qdict_get_str(options, "node-name"))) {
        if (strlen(s) >= sizeof(bs->node_name) || !*s) {
            error_setg(errp, "Invalid node-name: '%s'", s);
            return false;
        }
        if (bdrv_find_node(s)) {
            error_setg(errp, "Duplicate nodes with node-name='%s'", s);
            return false;
        }
        g_strlcpy(bs->node_name, s, sizeof(bs->node_name));
        qdict_del(options, "node-name");
    }
    if (qdict_haskey(options, "read-only")) {
        if (qdict_get_try_bool(options, "read-only", false, &local_err)) {
            *flags &= ~BDRV_O_RDWR;
        }
        qdict_del(options, "read-only");
    }
    if (qdict_haskey(options, "cache.direct")) {
        bool direct = qdict_get_try_bool(options, "cache.direct", false,
                                         &local_err);
        *flags = direct ? (*flags | BDRV_O_NOCACHE) : (*flags & ~BDRV_O_NOCACHE);
        qdict_del(options, "cache.direct");
    }
    if (qdict_haskey(options, "cache.no-flush")) {
        bool noflush = qdict_get_try_bool(options, "cache.no-flush", false,
                                          &local_err);
        *flags = noflush ? (*flags | BDRV_O_NO_FLUSH)
                         : (*flags & ~BDRV_O_NO_FLUSH);
        qdict_del(options, "cache.no-flush");
    }
    if ((s = qdict_get_str(options, "discard"))) {
        if (!strcmp(s, "unmap") || !strcmp(s, "on")) {
            *flags |= BDRV_O_UNMAP;
        } else if (!strcmp(s, "ignore") || !strcmp(s, "off")) {
            *flags &= ~BDRV_O_UNMAP;
        } else {
            error_setg(errp, "Invalid discard option '%s'", s);
            return false;
        }
        qdict_del(options, "discard");
    }
    if ((s = qdict_get_str(options, "detect-zeroes"))) {
        if (!strcmp(s, "off")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_OFF;
        } else if (!strcmp(s, "on")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_ON;
        } else if (!strcmp(s, "unmap")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_UNMAP;
        } else {
            error_setg(errp, "Invalid detect-zeroes option '%s'", s);
            return false;
        }
        qdict_del(options, "detect-zeroes");
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    return true;
}

/* Children inherit the caching and sharing flags of their parent. */
static int bdrv_child_flags(int parent_flags, bool writable)
{
    int flags = parent_flags & (BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
                                BDRV_O_UNMAP | BDRV_O_FORCE_SHARE |
                                BDRV_O_NO_IO | BDRV_O_CHECK);
    return writable ? (flags | BDRV_O_RDWR) : flags;
}

/* file=NODE reference or file.* options; filename is the fallback. */
static BlockDriverState *bdrv_open_file_child(const char *filename,
                                              QDict *options, int flags,
                                              Error **errp)
{
    const char *ref = qdict_get_str(options, "file");
    QDict *file_opts;

    if (ref) {
        BlockDriverState *child = bdrv_find_node(ref);
        if (!child) {
            error_setg(errp, "Cannot find device='' nor node-name='%s'", ref);
            return NULL;
        }
        qdict_del(options, "file");
        bdrv_ref(child);
        return child;
    }
    qdict_extract_subqdict(options, &file_opts, "file.");
    if (!qdict_haskey(file_opts, "driver")) {
        qdict_put_str(file_opts, "driver", "file");
    }
    return bdrv_open_child(filename, file_opts, "file", flags | BDRV_O_PROTOCOL,
                           errp);
}

/* Directory of the image, to resolve a relative backing file name. */
static char *bdrv_backing_path(const BlockDriverState *bs)
{
    if (g_path_is_absolute(bs->backing_file) || !bs->file) {
        return g_strdup(bs->backing_file);
    }
    g_autofree char *dir = g_path_get_dirname(bs->file->filename);
    if (!strcmp(dir, ".")) {
        /* Keep the name as the user gave it, like QEMU ("b.qcow2"). */
        return g_strdup(bs->backing_file);
    }
    return g_build_filename(dir, bs->backing_file, NULL);
}

static int bdrv_open_backing(BlockDriverState *bs, QDict *options, int flags,
                             Error **errp)
{
    const char *ref = qdict_get_str(options, "backing");
    QDict *backing_opts;
    Error *local_err = NULL;

    if (ref) {
        int ret = 0;
        if (*ref && strcmp(ref, "null")) {
            bs->backing = bdrv_find_node(ref);
            if (!bs->backing) {
                error_setg(errp, "Cannot find device='' nor node-name='%s'",
                           ref);
                ret = -ENOENT;
            } else {
                bdrv_ref(bs->backing);
            }
        }
        qdict_del(options, "backing");
        return ret;
    }
    qdict_extract_subqdict(options, &backing_opts, "backing.");
    if (!bs->backing_file[0] || (flags & BDRV_O_NO_BACKING)) {
        bool unused = qdict_size(backing_opts) > 0;
        qdict_unref(backing_opts);
        if (unused && !(flags & BDRV_O_NO_BACKING)) {
            error_setg(errp, "Image has no backing file, but backing options "
                       "were given");
            return -EINVAL;
        }
        return 0;
    }
    if (bs->backing_format[0] && !qdict_haskey(backing_opts, "driver")) {
        qdict_put_str(backing_opts, "driver", bs->backing_format);
    }
    g_autofree char *path = bdrv_backing_path(bs);
    bs->backing = bdrv_open_child(path, backing_opts, "backing",
                                  bdrv_child_flags(flags, false), &local_err);
    if (!bs->backing) {
        error_setg(errp, "Could not open backing file: %s",
                   error_get_pretty(local_err));
        error_free(local_err);
        return -EINVAL;
    }
    return 0;
}

static int bdrv_open_driver(BlockDriverState *bs, BlockDriver *drv,
                            QDict *options, int flags, Error **errp)
{
    int ret;

    bs->drv = drv;
    bs->opaque = g_malloc0(MAX(drv->instance_size, 1));
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    ret = drv->bdrv_open(bs, options, flags, errp);
    if (ret < 0) {
        bs->drv = NULL;
    }
    return ret;
}

BlockDriverState *bdrv_open_child(const char *filename, QDict *options,
                                  const char *child_name, int flags,
                                  Error **errp)
{
    BlockDriverState *bs = bdrv_new();
    BlockDriver *drv = NULL;
    const char *drvname;
    int ret;

    (void)child_name;
    if (!options) {
        options = qdict_new();
    }
    if (!bdrv_apply_common_options(bs, options, &flags, errp)) {
        goto fail;
    }
    if (qdict_get_str(options, "filename")) {
        filename = qdict_get_str(options, "filename");
    }
    g_strlcpy(bs->filename, filename ? filename : "", sizeof(bs->filename));

    drvname = qdict_get_str(options, "driver");
    if (drvname) {
        drv = bdrv_find_format(drvname);
        if (!drv) {
            error_setg(errp, "Unknown driver '%s'", drvname);
            goto fail;
        }
        qdict_del(options, "driver");
    } else if (flags & BDRV_O_PROTOCOL) {
        drv = &bdrv_file;
    }
    flags &= ~BDRV_O_PROTOCOL;

    if (!drv || !drv->is_protocol) {
        bool writable = flags & BDRV_O_RDWR;
        bs->file = bdrv_open_file_child(filename, options,
                                        bdrv_child_flags(flags, writable),
                                        errp);
        if (!bs->file) {
            goto fail;
        }
        g_strlcpy(bs->filename, bs->file->filename, sizeof(bs->filename));
        if (!drv) {
            drv = bdrv_probe_format(bs->file, bs->filename, errp);
            if (!drv) {
                goto fail;
            }
        }
    }

    ret = bdrv_open_driver(bs, drv, options, flags, errp);
    if (ret < 0) {
        goto fail;
    }
    if (drv->supports_backing &&
        bdrv_open_backing(bs, options, flags, errp) < 0) {
        goto fail_close;
    }
    if (qdict_size(options)) {
        error_setg(errp, "Block format '%s' does not support the option '%s'",
                   drv->format_name, qdict_key_at(options, 0));
        goto fail_close;
    }
    if (bs->node_name[0]) {
        g_mutex_lock(&graph_lock);
        named_nodes = g_list_append(named_nodes, bs);
        g_mutex_unlock(&graph_lock);
    }
    qdict_unref(options);
    return bs;

fail_close:
    bs->refcnt = 1;
    qdict_unref(options);
    bdrv_unref(bs);
    return NULL;
fail:
    qdict_unref(options);
    bdrv_unref(bs->file);
    bdrv_free(bs);
    return NULL;
}

BlockDriverState *bdrv_open_format_on(BlockDriverState *file,
                                      BlockDriver *drv, QDict *options,
                                      int flags, Error **errp)
{
    BlockDriverState *bs = bdrv_new();

    if (!options) {
        options = qdict_new();
    }
    bdrv_ref(file);
    bs->file = file;
    g_strlcpy(bs->filename, file->filename, sizeof(bs->filename));
    if (bdrv_open_driver(bs, drv, options, flags, errp) < 0) {
        qdict_unref(options);
        bdrv_unref(bs->file);
        bdrv_free(bs);
        return NULL;
    }
    if (qdict_size(options)) {
        error_setg(errp, "Block format '%s' does not support the option '%s'",
                   drv->format_name, qdict_key_at(options, 0));
        qdict_unref(options);
        bdrv_unref(bs);
        return NULL;
    }
    qdict_unref(options);
    return bs;
}

BlockDriverState *bdrv_open(const char *filename, QDict *options, int flags,
                            Error **errp)
{
    return bdrv_open_child(filename, options, NULL, flags, errp);
}

/* Creation */

void bdrv_create_opts_defaults(BlockDriver *drv, QDict *opts)
{
    if (drv->bdrv_create_defaults) {
        drv->bdrv_create_defaults(opts);
    }
}

int bdrv_create(BlockDriver *drv, const char *filename, QDict *opts,
                Error **errp)
{
    g_autoptr(QDict) file_opts = qdict_new();
    BlockDriverState *file;
    int ret;

    if (drv->is_protocol) {
        return drv->bdrv_create_file(filename, opts, errp);
    }
    if (!drv->bdrv_create) {
        error_setg(errp, "Driver '%s' does not support image creation",
                   drv->format_name);
        return -ENOTSUP;
    }
    /* The format lays itself down on an empty file it then grows. */
    for (size_t i = 0; i < qdict_size(opts); i++) {
        const char *key = qdict_key_at(opts, i);
        if (qemu_opt_find_desc(bdrv_file.create_opts, key) &&
            strcmp(key, "size") && strcmp(key, "preallocation")) {
            qdict_put_str(file_opts, key, qdict_value_at(opts, i));
        }
    }
    qdict_put_int(file_opts, "size", 0);
    ret = bdrv_file.bdrv_create_file(filename, file_opts, errp);
    if (ret < 0) {
        return ret;
    }
    QDict *open_opts = qdict_new();
    qdict_put_str(open_opts, "driver", "file");
    file = bdrv_open(filename, open_opts, BDRV_O_RDWR, errp);
    if (!file) {
        return -EIO;
    }
    ret = drv->bdrv_create(file, opts, errp);
    bdrv_unref(file);
    return ret;
}

/* Maintenance entry points that only dispatch to the driver. */

int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res, BdrvCheckMode fix)
{
    memset(res, 0, sizeof(*res));
    if (!bs->drv->bdrv_check) {
        return -ENOTSUP;
    }
    return bs->drv->bdrv_check(bs, res, fix);
}

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    memset(bdi, 0, sizeof(*bdi));
    if (!bs->drv->bdrv_get_info) {
        return -ENOTSUP;
    }
    return bs->drv->bdrv_get_info(bs, bdi);
}

int bdrv_snapshot_list(BlockDriverState *bs, QEMUSnapshotInfo **list)
{
    *list = NULL;
    if (!bs->drv->bdrv_snapshot_list) {
        return 0;
    }
    return bs->drv->bdrv_snapshot_list(bs, list);
}

void bdrv_snapshot_list_free(QEMUSnapshotInfo *list, int n)
{
    for (int i = 0; i < n; i++) {
        g_free(list[i].id_str);
        g_free(list[i].name);
    }
    g_free(list);
}

JsonNode *bdrv_get_specific_info(BlockDriverState *bs)
{
    g_autoptr(JsonBuilder) b = NULL;

    if (!bs->drv->bdrv_get_specific_info) {
        return NULL;
    }
    b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "type");
    json_builder_add_string_value(b, bs->drv->format_name);
    json_builder_set_member_name(b, "data");
    json_builder_begin_object(b);
    bs->drv->bdrv_get_specific_info(bs, b);
    json_builder_end_object(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

int bdrv_amend_options(BlockDriverState *bs, QDict *opts,
                       BlockDriverAmendStatusCB *cb, void *opaque,
                       bool force, Error **errp)
{
    if (!bs->drv->bdrv_amend_options) {
        error_setg(errp, "Block driver '%s' does not support option amendment",
                   bs->drv->format_name);
        return -ENOTSUP;
    }
    return bs->drv->bdrv_amend_options(bs, opts, cb, opaque, force, errp);
}

int bdrv_change_backing_file(BlockDriverState *bs, const char *backing_file,
                             const char *backing_fmt, Error **errp)
{
    int ret;

    if (!bs->drv->bdrv_change_backing_file) {
        error_setg(errp, "Block driver '%s' does not support backing files",
                   bs->drv->format_name);
        return -ENOTSUP;
    }
    ret = bs->drv->bdrv_change_backing_file(bs, backing_file, backing_fmt);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not change the backing file");
        return ret;
    }
    g_strlcpy(bs->backing_file, backing_file ? backing_file : "",
              sizeof(bs->backing_file));
    g_strlcpy(bs->backing_format, backing_fmt ? backing_fmt : "",
              sizeof(bs->backing_format));
    return 0;
}

int bdrv_dedup_set_paused(BlockDriverState *bs, bool paused, Error **errp)
{
    if (!bs->drv->bdrv_dedup_set_paused) {
        error_setg(errp, "Node '%s' does not support deduplication",
                   bs->node_name[0] ? bs->node_name : bs->filename);
        return -ENOTSUP;
    }
    return bs->drv->bdrv_dedup_set_paused(bs, paused, errp);
}

JsonNode *bdrv_dedup_query(BlockDriverState *bs)
{
    g_autoptr(JsonBuilder) b = NULL;

    if (!bs->drv->bdrv_dedup_query) {
        return NULL;
    }
    b = json_builder_new();
    json_builder_begin_object(b);
    if (!bs->drv->bdrv_dedup_query(bs, b)) {
        return NULL;
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

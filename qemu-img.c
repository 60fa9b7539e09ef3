/*
 * qemu-img: create, inspect, check, convert, compare and measure disk
 * images.
 *
 * Command lines, messages, JSON layout and exit codes follow the stock
 * QEMU 7.2 qemu-img, because scripts and the iotests compare them byte for
 * byte.  Everything goes through the block layer API (BlockBackend and
 * bdrv_*), so every format driver works the same way.
 *
 * Exit codes: 0 success, 1 error.  check: 2 corruptions, 3 leaks only,
 * 63 format without checks.  compare: 1 images differ, 2 open error,
 * 3 allocation query error, 4 read error.
 *
 * measure computes qcow2 sizes from the on-disk layout (there is no driver
 * interface for it yet) and, with -o dedup=sha256, hashes the source in
 * parallel to predict what deduplication saves.  check --deep passes
 * BDRV_CHECK_DEEP.  snapshot only checks its command line and opens the
 * image: the block layer cannot list or change internal snapshots yet.
 *
 * convert copies with a pool of worker threads (-m, default 8).  Each takes
 * the next chunk of the concatenated sources (at most CONVERT_BUF_SIZE of
 * data, or a whole range the sources report as zero or unallocated), reads
 * it in parallel with the others, and writes it when its turn comes: chunks
 * are written in source order unless -W allows any order, so the target's
 * allocation order (and so "qemu-img map" of it) is deterministic.
 */
#include "qemu/osdep.h"
#include "block/block.h"
#include "block/qapi.h"
#include "qapi/error.h"
#include "qapi/qjson.h"
#include "qemu/cutils.h"
#include "qemu/option.h"
#include "qemu/units.h"
#include "sysemu/block-backend.h"

#include <getopt.h>
#include <nettle/sha2.h>

#define QEMU_IMG_VERSION "7.2.0"
#define TRY_HELP "Try 'qemu-img --help' for more information\n"

/* Sector size: compare reports differences in sectors, convert aligns. */
#define SECTOR_SIZE 512
#define IO_BUF_SIZE (2 * MiB)
#define CONVERT_BUF_SIZE IO_BUF_SIZE
#define CONVERT_MAX_WORKERS 16
#define CONVERT_MAX_SPARSE (16 * MiB)

typedef enum OutputFormat {
    OFORMAT_HUMAN,
    OFORMAT_JSON,
} OutputFormat;

/* Long options without a short form. */
enum {
    OPTION_OUTPUT = 256,
    OPTION_BACKING_CHAIN,
    OPTION_OBJECT,
    OPTION_IMAGE_OPTS,
    OPTION_TARGET_IMAGE_OPTS,
    OPTION_START_OFFSET,
    OPTION_MAX_LENGTH,
    OPTION_SHRINK,
    OPTION_PREALLOCATION,
    OPTION_TARGET_IS_ZERO,
    OPTION_FORCE,
    OPTION_SALVAGE,
    OPTION_BITMAPS,
    OPTION_SKIP_BROKEN,
    OPTION_SIZE,
    OPTION_DEEP,
};

/* Common command line handling */

static void G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN error_exit(const char *fmt,
                                                           ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_report("%s", msg);
    g_free(msg);
    fputs(TRY_HELP, stderr);
    exit(EXIT_FAILURE);
}

/* An option or mode this qemu-img does not implement (yet). */
static void G_GNUC_NORETURN unsupported(const char *cmd, const char *what)
{
    error_report("%s: %s is not supported yet", cmd, what);
    exit(EXIT_FAILURE);
}

static void G_GNUC_PRINTF(2, 3) qprintf(bool quiet, const char *fmt, ...)
{
    va_list ap;

    if (quiet) {
        return;
    }
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static void print_format(void *opaque, const char *name)
{
    (void)opaque;
    printf(" %s", name);
}

static void G_GNUC_NORETURN help(void)
{
    printf("qemu-img version " QEMU_IMG_VERSION " (qemu-dedup)\n"
           "usage: qemu-img [-h | -V] command [command options]\n"
           "Create, inspect, check, convert and compare disk images.\n"
           "\n"
           "Commands:\n"
           "  create [-q] [-f fmt] [-b backing -F backing_fmt] [-u] [-o options]"
           " filename [size]\n"
           "  info [--image-opts] [-f fmt] [--output=human|json]"
           " [--backing-chain] [-U] filename\n"
           "  check [--image-opts] [-q] [-f fmt] [--output=human|json]"
           " [-r leaks|all] [--deep] [-T src_cache] [-U] filename\n"
           "  map [--image-opts] [-f fmt] [--start-offset=offset]"
           " [--max-length=len] [--output=human|json] [-U] filename\n"
           "  convert [--image-opts] [--target-is-zero] [-U] [-C] [-c] [-p]"
           " [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt]"
           " [-B backing -F backing_fmt] [-o options] [-S sparse_size]"
           " [-m workers] [-W] filename [filename2 [...]] output_filename\n"
           "  compare [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p]"
           " [-q] [-s] [-U] filename1 filename2\n"
           "  resize [--image-opts] [-f fmt] [--preallocation=mode] [-q]"
           " [--shrink] filename [+|-]size\n"
           "  amend [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force]"
           " -o options filename\n"
           "  measure [--output=human|json] [-O output_fmt] [-o options]"
           " [--size N | [--image-opts] [-f fmt] [-U] filename]\n"
           "  snapshot [--image-opts] [-U] [-q] [-l | -a snapshot |"
           " -c snapshot | -d snapshot] filename\n"
           "\n"
           "Not supported yet: bench, bitmap, commit, dd, rebase, and every"
           " snapshot action\n"
           "(snapshot only opens the image).\n"
           "\n"
           "Sizes take the suffixes k, M, G, T, P and E (powers of 1024).\n"
           "Cache modes: none, writeback, writethrough, directsync, unsafe.\n"
           "'-o help' lists the options a format accepts.  convert writes"
           " with cache\n"
           "'unsafe' unless -t says otherwise, -m workers in parallel"
           " (default 8),\n"
           "in order unless -W is given; -S sets the smallest run of zeroes"
           " left\n"
           "sparse (default 4k, 0 = allocate everything).\n"
           "check --deep also re-reads the data the format can verify"
           " (qcow2: every\n"
           "cluster in the deduplication index is hashed again).  measure"
           " -O qcow2\n"
           "-o dedup=sha256 reads the source, hashes every target cluster"
           " and adds the\n"
           "deduplicated required size and the dedup ratio.\n"
           "\n"
           "Supported formats:");
    bdrv_iterate_format(print_format, NULL);
    printf("\n");
    exit(EXIT_SUCCESS);
}

/* The options every command handles the same way; c is getopt's result. */
static void common_option(int c, char **argv)
{
    switch (c) {
    case 'h':
        help();
    case ':':
        error_exit("missing argument for option '%s'", argv[optind - 1]);
    case OPTION_OBJECT:
        error_report("--object is not supported yet");
        exit(EXIT_FAILURE);
    default:
        error_exit("unrecognized option '%s'", argv[optind - 1]);
    }
}

/* The --output argument (NULL: not given), checked after the file names. */
static OutputFormat parse_output_format(const char *arg)
{
    if (!arg || !strcmp(arg, "human")) {
        return OFORMAT_HUMAN;
    }
    if (!strcmp(arg, "json")) {
        return OFORMAT_JSON;
    }
    error_report("--output must be used with human or json as argument.");
    exit(EXIT_FAILURE);
}

/*
 * A byte count given on the command line, as "what" in the message;
 * -1 (after printing why) if it is not one.
 */
static int64_t cvtnum(const char *what, const char *arg)
{
    uint64_t value;
    int ret = qemu_strtosz(arg, &value);

    if (ret == -ERANGE) {
        error_report("Invalid %s specified. Must be between 0 and %" PRId64
                     ".", what, INT64_MAX);
        return -1;
    }
    if (ret < 0) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E "
                     "suffixes for", what);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes "
                     "and exabytes.");
        return -1;
    }
    return value;
}

/*
 * Cache mode names: flags gets BDRV_O_NOCACHE / BDRV_O_NO_FLUSH, and
 * *writethrough whether every write must be flushed.  false if unknown.
 */
static bool parse_cache_mode(const char *mode, int *flags, bool *writethrough)
{
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    *writethrough = false;
    if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "directsync")) {
        *flags |= BDRV_O_NOCACHE;
        *writethrough = true;
    } else if (!strcmp(mode, "writethrough")) {
        *writethrough = true;
    } else if (!strcmp(mode, "unsafe")) {
        *flags |= BDRV_O_NO_FLUSH;
    } else if (strcmp(mode, "writeback")) {
        return false;
    }
    return true;
}

/*
 * -o option lists use QEMU's option syntax: "k=v,k2=v2", ",," for a comma
 * inside a value, and a bare "k" meaning "k=on".
 */
static bool option_list_valid(const char *list)
{
    size_t len = strlen(list), commas = 0;

    /* An odd number of trailing commas leaves an empty element behind. */
    while (commas < len && list[len - 1 - commas] == ',') {
        commas++;
    }
    return len > 0 && commas % 2 == 0;
}

/* Append an -o argument to the list gathered so far (a new string). */
static char *accumulate_options(char *list, const char *arg)
{
    char *joined;

    if (!option_list_valid(arg)) {
        error_report("Invalid option list: %s", arg);
        exit(EXIT_FAILURE);
    }
    if (!list) {
        return g_strdup(arg);
    }
    joined = g_strdup_printf("%s,%s", list, arg);
    g_free(list);
    return joined;
}

static QDict *parse_option_list(const char *list, Error **errp)
{
    g_autoptr(QDict) opts = qdict_new();
    const char *p = list;

    while (*p) {
        g_autoptr(GString) elem = g_string_new(NULL);
        char *eq;

        for (; *p && !(p[0] == ',' && p[1] != ','); p++) {
            g_string_append_c(elem, *p);
            if (*p == ',') {
                p++;
            }
        }
        if (*p == ',') {
            p++;
        }
        eq = strchr(elem->str, '=');
        if (eq) {
            *eq = '\0';
        }
        if (!elem->str[0]) {
            error_setg(errp, "Invalid parameter ''");
            return NULL;
        }
        qdict_put_str(opts, elem->str, eq ? eq + 1 : "on");
    }
    return g_steal_pointer(&opts);
}

static bool has_help_option(const QDict *opts)
{
    return qdict_haskey(opts, "help") || qdict_haskey(opts, "?");
}

/* "-o help": the format's own options, or with the protocol's for a file. */
static void print_create_help(BlockDriver *drv, const char *filename)
{
    if (filename) {
        g_autofree QemuOptDesc *all = bdrv_create_opts_with_protocol(drv);
        qemu_opts_print_help(all, "Supported options:");
        return;
    }
    g_autofree char *title = g_strdup_printf("Supported %s options:",
                                             bdrv_driver_name(drv));
    qemu_opts_print_help(bdrv_driver_create_opts(drv), title);
    printf("\nThe protocol level may support further options.\n"
           "Specify the target filename to include those options.\n");
}

static BlockDriver *find_format(const char *fmt, Error **errp)
{
    BlockDriver *drv = bdrv_find_format(fmt);

    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", fmt);
    }
    return drv;
}

/*
 * Open an image: filename is a file name, or with image_opts a
 * "key=value,..." option string.  The error names the image as given.
 */
static BlockBackend *img_open(bool image_opts, const char *filename,
                              const char *fmt, int flags, bool writethrough,
                              bool force_share)
{
    Error *err = NULL;
    QDict *options;
    BlockBackend *blk;

    if (image_opts) {
        if (fmt) {
            error_report("--image-opts and --format are mutually exclusive");
            return NULL;
        }
        options = keyval_parse(filename, "file", &err);
        if (!options) {
            error_report_err(err);
            return NULL;
        }
    } else {
        options = qdict_new();
        if (fmt) {
            qdict_put_str(options, "driver", fmt);
        }
    }
    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = blk_new_open(image_opts ? NULL : filename, options, flags, &err);
    if (!blk) {
        error_prepend(&err, "Could not open '%s': ", filename);
        error_report_err(err);
        return NULL;
    }
    blk_set_enable_write_cache(blk, !writethrough);
    return blk;
}

/*
 * Progress output of -p: "    (12.34/100%)\r", printed when the value
 * moved by more than min_skip since the last print, and at 0 and 100.
 * Floats as in QEMU, so the printed values match its output.
 */
typedef struct Progress {
    bool enabled;
    float current;
    float last_print;
    float min_skip;
} Progress;

static void progress_init(Progress *p, bool enabled, float min_skip)
{
    *p = (Progress) { .enabled = enabled, .min_skip = min_skip };
}

/* max 0: delta is the new value; otherwise add delta percent of max. */
static void progress_print(Progress *p, float delta, int max)
{
    float current = max ? p->current + delta / 100 * max : delta;

    p->current = current;
    if (!p->enabled) {
        return;
    }
    if (current > p->last_print + p->min_skip ||
        current < p->last_print - p->min_skip ||
        current == 0 || current == 100) {
        p->last_print = current;
        printf("    (%3.2f/100%%)\r", current);
        fflush(stdout);
    }
}

static void progress_end(Progress *p)
{
    if (p->enabled) {
        printf("\n");
    }
}

/* create */

static bool drv_has_create_opt(BlockDriver *drv, const char *name)
{
    g_autofree QemuOptDesc *all = bdrv_create_opts_with_protocol(drv);

    return qemu_opt_find_desc(all, name) != NULL;
}

/*
 * The "Formatting 'file', fmt=..." line: every creation option in the
 * driver's table order that the user set, plus the defaults of the options
 * only the format defines.  Defaults of the protocol's options (nocow=off,
 * preallocation=off) mean "nothing special" and QEMU leaves them out.
 * Sizes and numbers appear in bytes, whatever suffix the user wrote.
 */
static void print_formatting(BlockDriver *drv, const char *filename,
                             const QDict *opts)
{
    g_autofree QemuOptDesc *all = bdrv_create_opts_with_protocol(drv);
    const QemuOptDesc *proto = bdrv_driver_create_opts(bdrv_find_format("file"));

    printf("Formatting '%s', fmt=%s", filename, bdrv_driver_name(drv));
    for (const QemuOptDesc *d = all; d->name; d++) {
        const char *value = qdict_get_str(opts, d->name);
        uint64_t num;

        if (!value && !qemu_opt_find_desc(proto, d->name)) {
            value = d->def_value_str;
        }
        if (!value) {
            continue;
        }
        if (qdict_haskey(opts, d->name) &&
            (d->type == QEMU_OPT_SIZE || d->type == QEMU_OPT_NUMBER) &&
            (d->type == QEMU_OPT_SIZE ? qemu_strtosz(value, &num)
                                      : qemu_strtou64(value, &num)) == 0) {
            printf(" %s=%" PRId64, d->name, (int64_t)num);
        } else {
            printf(" %s=%s", d->name, value);
        }
    }
    printf("\n");
    fflush(stdout);
}

/*
 * Open the backing file of a new image to learn its format and size.
 * Relative names are relative to the new image's directory.
 */
static BlockDriverState *open_new_backing(const char *filename,
                                          const char *backing,
                                          const char *backing_fmt,
                                          Error **errp)
{
    g_autofree char *path = bdrv_backing_full_path(filename, backing);
    QDict *options = qdict_new();
    BlockDriverState *bs;

    if (backing_fmt) {
        qdict_put_str(options, "driver", backing_fmt);
    }
    bs = bdrv_open(path, options, BDRV_O_NO_BACKING, errp);
    if (!bs) {
        error_append_hint(errp, "Could not open backing image.\n");
    }
    return bs;
}

/*
 * Check the backing file options of a new image and fill in a missing
 * size from the backing file.  size is -1 when not given.
 */
static bool create_backing(BlockDriver *drv, const char *filename,
                           QDict *opts, bool unsafe, int64_t *size,
                           Error **errp)
{
    const char *backing = qdict_get_str(opts, "backing_file");
    const char *backing_fmt = qdict_get_str(opts, "backing_fmt");
    BlockDriverState *bs;

    if (!backing) {
        return true;
    }
    if (!drv_has_create_opt(drv, "backing_file")) {
        error_setg(errp, "Backing file not supported for file format '%s'",
                   bdrv_driver_name(drv));
        return false;
    }
    if (unsafe) {
        /* Unsafe: trust the names, open nothing. */
        if (!backing_fmt) {
            error_setg(errp, "Backing file specified without backing format");
            return false;
        }
        return true;
    }
    bs = open_new_backing(filename, backing, backing_fmt, errp);
    if (!bs) {
        return false;
    }
    if (!backing_fmt) {
        error_setg(errp, "Backing file specified without backing format");
        /* QEMU prints this hint without a newline; keep the same bytes. */
        error_append_hint(errp, "Detected format of %s.",
                          bdrv_get_format_name(bs));
        bdrv_unref(bs);
        return false;
    }
    if (*size < 0) {
        *size = bdrv_getlength(bs);
        if (*size < 0) {
            error_setg_errno(errp, -*size, "Could not get size of '%s'",
                             backing);
        }
    }
    bdrv_unref(bs);
    return *size >= 0;
}

/*
 * Create filename in format fmt.  size is -1 when it comes from the
 * options or the backing file.
 */
static int create_image(const char *filename, const char *fmt,
                        const char *options, const char *backing,
                        const char *backing_fmt, int64_t size, bool unsafe,
                        bool quiet, Error **errp)
{
    g_autoptr(QDict) opts = NULL;
    g_autofree QemuOptDesc *all = NULL;
    BlockDriver *drv = find_format(fmt, errp);

    if (!drv) {
        return -EINVAL;
    }
    opts = options ? parse_option_list(options, errp) : qdict_new();
    if (!opts) {
        return -EINVAL;
    }
    all = bdrv_create_opts_with_protocol(drv);
    if (!qemu_opts_validate(opts, all, NULL, errp)) {
        return -EINVAL;
    }
    bdrv_create_opts_defaults(drv, opts);
    if (qdict_haskey(opts, "size")) {
        if (size >= 0) {
            error_setg(errp, "The image size must be specified only once");
            return -EINVAL;
        }
        size = qemu_opt_get_size(opts, "size", 0);
    }
    if (backing) {
        qdict_put_str(opts, "backing_file", backing);
    }
    if (backing_fmt) {
        qdict_put_str(opts, "backing_fmt", backing_fmt);
    }
    if (!create_backing(drv, filename, opts, unsafe, &size, errp)) {
        return -EINVAL;
    }
    if (size < 0) {
        error_setg(errp, "Image creation needs a size parameter");
        return -EINVAL;
    }
    qdict_put_int(opts, "size", size);
    if (!quiet) {
        print_formatting(drv, filename, opts);
    }
    /* Checked only now, like QEMU does, after the options were shown. */
    if (qdict_haskey(opts, "backing_fmt") &&
        !qdict_haskey(opts, "backing_file")) {
        error_setg(errp, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    return bdrv_create(drv, filename, opts, errp);
}

static int img_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    const char *filename;
    g_autofree char *options = NULL;
    bool quiet = false, unsafe = false;
    int64_t size = -1;
    Error *err = NULL;
    int c;

    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'F':
            backing_fmt = optarg;
            break;
        case 'b':
            backing = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            options = accumulate_options(options, optarg);
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            unsafe = true;
            break;
        default:
            common_option(c, argv);
        }
    }

    filename = optind < argc ? argv[optind] : NULL;
    if (options) {
        g_autoptr(QDict) opts = parse_option_list(options, NULL);
        if (opts && has_help_option(opts)) {
            BlockDriver *drv = find_format(fmt, &err);
            if (!drv) {
                error_report_err(err);
                return 1;
            }
            print_create_help(drv, filename);
            return 0;
        }
    }
    if (!filename) {
        error_exit("Expecting image file name");
    }
    optind++;
    if (optind < argc) {
        size = cvtnum("image size", argv[optind++]);
        if (size < 0) {
            return 1;
        }
    }
    if (optind != argc) {
        error_exit("Unexpected argument: %s", argv[optind]);
    }

    if (create_image(filename, fmt, options, backing, backing_fmt, size,
                     unsafe, quiet, &err) < 0) {
        error_prepend(&err, "%s: ", filename);
        error_report_err(err);
        return 1;
    }
    return 0;
}

/* info */

/*
 * The ImageInfo of filename and, with chain, of every backing file below
 * it, appended to infos.  Each image is opened alone (without its backing
 * file), so a missing backing file only matters when the chain is wanted.
 */
static bool collect_image_infos(GPtrArray *infos, const char *filename,
                                const char *fmt, bool image_opts, bool chain,
                                bool force_share)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    g_autofree char *name = g_strdup(filename);
    g_autofree char *next_fmt = g_strdup(fmt);

    while (name) {
        BlockBackend *blk;
        BlockDriverState *bs;
        JsonNode *info;
        Error *err = NULL;

        if (g_hash_table_contains(seen, name)) {
            error_report("Backing file '%s' creates an infinite loop.", name);
            return false;
        }
        g_hash_table_add(seen, g_strdup(name));

        blk = img_open(image_opts, name, next_fmt, BDRV_O_NO_BACKING, false,
                       force_share);
        if (!blk) {
            return false;
        }
        bs = blk_bs(blk);
        info = bdrv_image_info(bs, &err);
        if (!info) {
            error_report_err(err);
            blk_unref(blk);
            return false;
        }
        g_ptr_array_add(infos, info);

        g_free(name);
        g_free(next_fmt);
        name = NULL;
        next_fmt = NULL;
        if (chain && bdrv_get_backing_filename(bs)[0]) {
            name = bdrv_backing_full_path(bdrv_get_filename(bs),
                                          bdrv_get_backing_filename(bs));
            if (bdrv_get_backing_format(bs)[0]) {
                next_fmt = g_strdup(bdrv_get_backing_format(bs));
            }
        }
        image_opts = false;
        blk_unref(blk);
    }
    return true;
}

static void print_json(JsonNode *node)
{
    g_autofree char *text = qjson_to_string(node, true);

    printf("%s\n", text);
}

static int img_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "backing-chain", no_argument, NULL, OPTION_BACKING_CHAIN },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GPtrArray) infos =
        g_ptr_array_new_with_free_func((GDestroyNotify)json_node_unref);
    OutputFormat output;
    const char *fmt = NULL, *output_arg = NULL;
    bool chain = false, image_opts = false, force_share = false;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OUTPUT:
            output_arg = optarg;
            break;
        case OPTION_BACKING_CHAIN:
            chain = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        error_exit("Expecting one image file name");
    }
    output = parse_output_format(output_arg);

    if (!collect_image_infos(infos, argv[optind], fmt, image_opts, chain,
                             force_share)) {
        return 1;
    }
    if (output == OFORMAT_JSON) {
        if (chain) {
            JsonArray *arr = json_array_new();
            g_autoptr(JsonNode) node = json_node_new(JSON_NODE_ARRAY);
            for (guint i = 0; i < infos->len; i++) {
                json_array_add_element(arr,
                                       json_node_ref(infos->pdata[i]));
            }
            json_node_take_array(node, arr);
            print_json(node);
        } else {
            print_json(infos->pdata[0]);
        }
        return 0;
    }
    for (guint i = 0; i < infos->len; i++) {
        g_autoptr(GString) out = g_string_new(i ? "\n" : "");
        bdrv_image_info_dump(out, infos->pdata[i]);
        fputs(out->str, stdout);
    }
    return 0;
}

/* check */

static void print_check_human(const BdrvCheckResult *r)
{
    const BlockFragInfo *f = &r->bfi;

    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    }
    if (r->corruptions) {
        printf("\n%d errors were found on the image.\n"
               "Data may be corrupted, or further writes to the image may "
               "corrupt it.\n", r->corruptions);
    }
    if (r->leaks) {
        printf("\n%d leaked clusters were found on the image.\n"
               "This means waste of disk space, but no harm to data.\n",
               r->leaks);
    }
    if (r->check_errors) {
        printf("\n%d internal errors have occurred during the check.\n",
               r->check_errors);
    }
    if (f->total_clusters && f->allocated_clusters) {
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% "
               "fragmented, %0.2f%% compressed clusters\n",
               f->allocated_clusters, f->total_clusters,
               f->allocated_clusters * 100.0 / f->total_clusters,
               f->fragmented_clusters * 100.0 / f->allocated_clusters,
               f->compressed_clusters * 100.0 / f->allocated_clusters);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRId64 "\n", r->image_end_offset);
    }
}

static void add_nonzero(JsonBuilder *b, const char *key, int64_t v)
{
    if (v) {
        json_builder_set_member_name(b, key);
        json_builder_add_int_value(b, v);
    }
}

/* Keys in QEMU 7.2's (hash table) order; counters only when non-zero. */
static void print_check_json(const BdrvCheckResult *r, BlockDriverState *bs)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    add_nonzero(b, "image-end-offset", r->image_end_offset);
    add_nonzero(b, "compressed-clusters", r->bfi.compressed_clusters);
    add_nonzero(b, "total-clusters", r->bfi.total_clusters);
    add_nonzero(b, "corruptions", r->corruptions);
    add_nonzero(b, "corruptions-fixed", r->corruptions_fixed);
    json_builder_set_member_name(b, "check-errors");
    json_builder_add_int_value(b, r->check_errors);
    add_nonzero(b, "leaks", r->leaks);
    add_nonzero(b, "leaks-fixed", r->leaks_fixed);
    add_nonzero(b, "allocated-clusters", r->bfi.allocated_clusters);
    json_builder_set_member_name(b, "filename");
    json_builder_add_string_value(b, bdrv_get_filename(bs));
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, bdrv_get_format_name(bs));
    add_nonzero(b, "fragmented-clusters", r->bfi.fragmented_clusters);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    print_json(root);
}

/* Run the driver's check; 0, or the exit code after printing why not. */
static int run_check(BlockDriverState *bs, BdrvCheckResult *res,
                     BdrvCheckMode fix)
{
    int ret = bdrv_check(bs, res, fix);

    if (ret == -ENOTSUP) {
        error_report("This image format does not support checks");
        return 63;
    }
    if (ret < 0) {
        error_report("Check failed: %s", g_strerror(-ret));
        return 1;
    }
    return 0;
}

static int img_check(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "deep", no_argument, NULL, OPTION_DEEP },
        { NULL, 0, NULL, 0 },
    };
    OutputFormat output;
    const char *fmt = NULL, *output_arg = NULL;
    bool quiet = false, image_opts = false, force_share = false;
    bool writethrough = false;
    int flags = BDRV_O_CHECK, fix = 0, deep = 0, c, ret;
    BdrvCheckResult res;
    BlockBackend *blk;

    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                error_exit("Unknown option value for -r (expecting 'leaks' "
                           "or 'all'): %s", optarg);
            }
            flags |= BDRV_O_RDWR;
            break;
        case 'T':
            if (!parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid source cache option: %s", optarg);
                return 1;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OUTPUT:
            output_arg = optarg;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_DEEP:
            /* Our extension: also re-read what the format can verify. */
            deep = BDRV_CHECK_DEEP;
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        error_exit("Expecting one image file name");
    }
    output = parse_output_format(output_arg);

    blk = img_open(image_opts, argv[optind], fmt, flags, writethrough,
                   force_share);
    if (!blk) {
        return 1;
    }
    ret = run_check(blk_bs(blk), &res, fix | deep);
    if (!ret && (res.corruptions_fixed || res.leaks_fixed)) {
        int corruptions_fixed = res.corruptions_fixed;
        int leaks_fixed = res.leaks_fixed;

        if (output == OFORMAT_HUMAN) {
            qprintf(quiet, "The following inconsistencies were found and "
                    "repaired:\n\n"
                    "    %d leaked clusters\n"
                    "    %d corruptions\n\n"
                    "Double checking the fixed image now...\n",
                    leaks_fixed, corruptions_fixed);
        }
        /* Report what is left after the repair, and what it fixed. */
        ret = run_check(blk_bs(blk), &res, deep);
        res.corruptions_fixed = corruptions_fixed;
        res.leaks_fixed = leaks_fixed;
    }
    if (!ret && !quiet) {
        if (output == OFORMAT_JSON) {
            print_check_json(&res, blk_bs(blk));
        } else {
            print_check_human(&res);
        }
    }
    if (!ret) {
        ret = res.check_errors ? 1 : res.corruptions ? 2 : res.leaks ? 3 : 0;
    }
    blk_unref(blk);
    return ret;
}

/* map */

typedef struct MapEntry {
    int64_t start;
    int64_t length;
    int depth;
    bool present, zero, data;
    bool has_offset;
    int64_t offset;
    BlockDriverState *file;   /* where offset points; NULL without offset */
} MapEntry;

/* Adjacent extents with the same status (and contiguous mapping) merge. */
static bool map_entries_mergeable(const MapEntry *a, const MapEntry *b)
{
    if (a->depth != b->depth || a->present != b->present ||
        a->zero != b->zero || a->data != b->data ||
        a->has_offset != b->has_offset) {
        return false;
    }
    return !a->has_offset ||
           (a->file == b->file && a->offset + a->length == b->offset);
}

/* Print one extent; next is NULL for the last.  -1 if human can't show it. */
static int map_dump_entry(OutputFormat output, const MapEntry *e,
                          const MapEntry *next)
{
    if (output == OFORMAT_HUMAN) {
        if (e->data && !e->has_offset) {
            error_report("File contains external, encrypted or compressed "
                         "clusters.");
            return -1;
        }
        if (e->data && e->has_offset) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
                   e->start, e->length, e->offset,
                   bdrv_get_filename(e->file));
        }
        return 0;
    }
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", "
           "\"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
           e->start, e->length, e->depth, e->present ? "true" : "false",
           e->zero ? "true" : "false", e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    printf("}");
    if (next) {
        printf(",\n");
    }
    return 0;
}

static int map_range(BlockDriverState *bs, OutputFormat output, int64_t start,
                     int64_t end)
{
    MapEntry curr = { .start = start };

    for (int64_t offset = start; offset < end; ) {
        MapEntry next = { .start = offset };
        int64_t pnum, map = 0;
        BlockDriverState *file = NULL;
        int ret = bdrv_block_status_above(bs, NULL, offset, end - offset,
                                          &pnum, &map, &file, &next.depth);

        if (ret < 0) {
            error_report("Could not read file metadata: %s", g_strerror(-ret));
            return -1;
        }
        assert(pnum > 0);
        next.length = pnum;
        next.present = ret & BDRV_BLOCK_ALLOCATED;
        next.zero = ret & BDRV_BLOCK_ZERO;
        next.data = ret & BDRV_BLOCK_DATA;
        next.has_offset = (ret & BDRV_BLOCK_OFFSET_VALID) && file;
        if (next.has_offset) {
            next.offset = map;
            next.file = file;
        }
        offset += pnum;
        if (curr.length > 0 && map_entries_mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0 && map_dump_entry(output, &curr, &next) < 0) {
            return -1;
        }
        curr = next;
    }
    /* Even an empty range gets one (empty) JSON entry, as in QEMU. */
    return map_dump_entry(output, &curr, NULL);
}

static int img_map(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, OPTION_START_OFFSET },
        { "max-length", required_argument, NULL, OPTION_MAX_LENGTH },
        { NULL, 0, NULL, 0 },
    };
    OutputFormat output;
    const char *fmt = NULL, *output_arg = NULL;
    bool image_opts = false, force_share = false;
    int64_t start = 0, max_length = -1, length;
    BlockBackend *blk;
    int c, ret;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OUTPUT:
            output_arg = optarg;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_START_OFFSET:
            start = cvtnum("start offset", optarg);
            if (start < 0) {
                return 1;
            }
            break;
        case OPTION_MAX_LENGTH:
            max_length = cvtnum("max length", optarg);
            if (max_length < 0) {
                return 1;
            }
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        error_exit("Expecting one image file name");
    }
    output = parse_output_format(output_arg);

    blk = img_open(image_opts, argv[optind], fmt, 0, false, force_share);
    if (!blk) {
        return 1;
    }
    length = blk_getlength(blk);
    if (length < 0) {
        error_report("Failed to get size for '%s'", argv[optind]);
        blk_unref(blk);
        return 1;
    }
    if (max_length >= 0 && max_length < length - start) {
        length = start + max_length;
    }

    if (output == OFORMAT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    } else {
        printf("[");
    }
    ret = map_range(blk_bs(blk), output, start, length);
    if (output == OFORMAT_JSON) {
        printf("]\n");
    }
    blk_unref(blk);
    return ret < 0 ? 1 : 0;
}

/* compare */

/* Exit codes of compare beyond 0 (identical) and 1 (different). */
enum {
    COMPARE_OPEN_ERROR = 2,
    COMPARE_STATUS_ERROR = 3,
    COMPARE_READ_ERROR = 4,
};

typedef struct CompareImage {
    const char *filename;
    BlockBackend *blk;
    int64_t size;
} CompareImage;

/* Offset of a difference at byte pos of a range, in whole sectors. */
static int64_t compare_report_offset(int64_t range_start, int64_t pos)
{
    return range_start + QEMU_ALIGN_DOWN(pos, SECTOR_SIZE);
}

static int compare_read(CompareImage *img, int64_t offset, int64_t bytes,
                        void *buf)
{
    int ret = blk_pread(img->blk, offset, bytes, buf, 0);

    if (ret < 0) {
        error_report("Error while reading offset %" PRId64 " of %s: %s",
                     offset, img->filename, g_strerror(-ret));
        return -COMPARE_READ_ERROR;
    }
    return 0;
}

/*
 * Compare [offset, offset + bytes) of a and b (b NULL: a against zeroes);
 * bytes is at most IO_BUF_SIZE.  Returns 0 if equal, 1 after printing the
 * first difference, or -exit code.
 */
static int compare_range(CompareImage *a, CompareImage *b, int64_t offset,
                         int64_t bytes, bool quiet)
{
    g_autofree uint8_t *buf_a = g_malloc(bytes);
    g_autofree uint8_t *buf_b = b ? g_malloc(bytes) : NULL;
    int64_t diff = -1;
    int ret = compare_read(a, offset, bytes, buf_a);

    if (ret == 0 && b) {
        ret = compare_read(b, offset, bytes, buf_b);
    }
    if (ret < 0) {
        return ret;
    }
    if (b && memcmp(buf_a, buf_b, bytes)) {
        for (diff = 0; buf_a[diff] == buf_b[diff]; diff++) {
            continue;
        }
    } else if (!b && !buffer_is_zero(buf_a, bytes)) {
        for (diff = 0; !buf_a[diff]; diff++) {
            continue;
        }
    }
    if (diff >= 0) {
        qprintf(quiet, "Content mismatch at offset %" PRId64 "!\n",
                compare_report_offset(offset, diff));
        return 1;
    }
    return 0;
}

static int compare_status(CompareImage *img, int64_t offset, int64_t bytes,
                          int64_t *pnum)
{
    int ret = bdrv_block_status_above(blk_bs(img->blk), NULL, offset, bytes,
                                      pnum, NULL, NULL, NULL);

    if (ret < 0) {
        error_report("Sector allocation test failed for %s", img->filename);
        return -COMPARE_STATUS_ERROR;
    }
    return ret;
}

/* The part both images have.  Ranges known to read as zero are not read. */
static int compare_common(CompareImage *a, CompareImage *b, int64_t end,
                          bool strict, bool quiet, Progress *progress,
                          int64_t progress_base)
{
    for (int64_t offset = 0; offset < end; ) {
        int64_t pnum_a, pnum_b, chunk;
        int st_a = compare_status(a, offset, end - offset, &pnum_a);
        int st_b = st_a < 0 ? st_a : compare_status(b, offset, end - offset,
                                                     &pnum_b);
        int ret = 0;

        if (st_b < 0) {
            return st_b;
        }
        chunk = MIN(pnum_a, pnum_b);
        if (strict && st_a != st_b) {
            qprintf(quiet, "Strict mode: Offset %" PRId64
                    " block status mismatch!\n", offset);
            return 1;
        }
        if (!(st_a & st_b & BDRV_BLOCK_ZERO)) {
            /* Data is read (and progress reported) a buffer at a time. */
            chunk = MIN(chunk, IO_BUF_SIZE);
        }
        if (!(st_a & BDRV_BLOCK_ZERO) && !(st_b & BDRV_BLOCK_ZERO)) {
            ret = compare_range(a, b, offset, chunk, quiet);
        } else if (!(st_a & BDRV_BLOCK_ZERO)) {
            ret = compare_range(a, NULL, offset, chunk, quiet);
        } else if (!(st_b & BDRV_BLOCK_ZERO)) {
            ret = compare_range(b, NULL, offset, chunk, quiet);
        }
        if (ret) {
            return ret;
        }
        offset += chunk;
        progress_print(progress, (float)chunk / progress_base * 100, 100);
    }
    return 0;
}

/* What only the larger image has must read as zeroes. */
static int compare_tail(CompareImage *big, int64_t start, bool quiet,
                        Progress *progress, int64_t progress_base)
{
    for (int64_t offset = start; offset < big->size; ) {
        int64_t pnum;
        int st = compare_status(big, offset, big->size - offset, &pnum);
        int ret;

        if (st < 0) {
            return st;
        }
        if (!(st & BDRV_BLOCK_ZERO)) {
            pnum = MIN(pnum, IO_BUF_SIZE);
            ret = compare_range(big, NULL, offset, pnum, quiet);
            if (ret) {
                return ret;
            }
        }
        offset += pnum;
        progress_print(progress, (float)pnum / progress_base * 100, 100);
    }
    return 0;
}

static int compare_images(CompareImage *a, CompareImage *b, bool strict,
                          bool quiet, Progress *progress)
{
    int64_t common = MIN(a->size, b->size);
    int64_t base = MAX(a->size, b->size);
    int ret;

    if (strict && a->size != b->size) {
        qprintf(quiet, "Strict mode: Image size mismatch!\n");
        return 1;
    }
    progress_print(progress, 0, 100);
    ret = compare_common(a, b, common, strict, quiet, progress, base);
    if (ret) {
        return ret;
    }
    if (a->size != b->size) {
        qprintf(quiet, "Warning: Image size mismatch!\n");
        ret = compare_tail(a->size > b->size ? a : b, common, quiet, progress,
                           base);
        if (ret) {
            return ret;
        }
    }
    qprintf(quiet, "Images are identical.\n");
    return 0;
}

static int img_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    CompareImage img[2] = { { NULL } };
    const char *fmt[2] = { NULL, NULL };
    bool quiet = false, strict = false, show_progress = false;
    bool image_opts = false, force_share = false, writethrough;
    int flags = 0, c, ret = 0;
    Progress progress;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt[0] = optarg;
            break;
        case 'F':
            fmt[1] = optarg;
            break;
        case 'T':
            if (!parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid source cache option: %s", optarg);
                return COMPARE_OPEN_ERROR;
            }
            break;
        case 'p':
            show_progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            strict = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 2) {
        error_exit("Expecting two image file names");
    }

    progress_init(&progress, show_progress && !quiet, 2.0);
    for (int i = 0; i < 2 && !ret; i++) {
        img[i].filename = argv[optind + i];
        img[i].blk = img_open(image_opts, img[i].filename, fmt[i], flags,
                              false, force_share);
        if (!img[i].blk) {
            ret = COMPARE_OPEN_ERROR;
            break;
        }
        img[i].size = blk_getlength(img[i].blk);
        if (img[i].size < 0) {
            error_report("Can't get size of %s: %s", img[i].filename,
                         g_strerror(-img[i].size));
            ret = COMPARE_READ_ERROR;
        }
    }
    if (!ret) {
        ret = compare_images(&img[0], &img[1], strict, quiet, &progress);
        ret = ret < 0 ? -ret : ret;
    }
    blk_unref(img[0].blk);
    blk_unref(img[1].blk);
    progress_end(&progress);
    return ret;
}

/* resize */

/* A "[+|-]size" argument: sign -1, 0 or 1 and the number (-1: too big). */
typedef struct ResizeArg {
    int sign;
    int64_t n;
} ResizeArg;

static bool resize_parse(const char *arg, ResizeArg *r)
{
    static const QemuOptDesc size_desc[] = {
        { "size", QEMU_OPT_SIZE, NULL, NULL },
        { NULL },
    };
    const char *num;
    uint64_t n;
    int ret;

    r->sign = (*arg == '+') - (*arg == '-');
    num = r->sign ? arg + 1 : arg;
    ret = qemu_strtosz(num, &n);
    if (ret == -EINVAL) {
        /* Same message as any other malformed size option. */
        g_autoptr(QDict) d = qdict_new();
        Error *err = NULL;
        qdict_put_str(d, "size", num);
        qemu_opts_validate(d, size_desc, NULL, &err);
        error_report_err(err);
        return false;
    }
    r->n = ret == -ERANGE ? -1 : (int64_t)n;
    return true;
}

/* The new size, or -1 after printing why it is not a valid one. */
static int64_t resize_target(const ResizeArg *r, int64_t current)
{
    int64_t total = -1;

    if (r->n >= 0) {
        if (r->sign > 0) {
            total = r->n > INT64_MAX - current ? -1 : current + r->n;
        } else {
            total = r->sign < 0 ? current - r->n : r->n;
        }
    }
    if (total <= 0) {
        error_report("New image size must be positive");
        return -1;
    }
    return total;
}

static int img_resize(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, OPTION_PREALLOCATION },
        { "shrink", no_argument, NULL, OPTION_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *size_str;
    bool quiet = false, image_opts = false, shrink = false;
    ResizeArg size_arg;
    int prealloc = PREALLOC_MODE_OFF, c, ret;
    int64_t current, total;
    Error *err = NULL;
    BlockBackend *blk;

    /* The size is always last: take it out before getopt sees "-1G". */
    if (argc < 3) {
        error_exit("Not enough arguments");
    }
    size_str = argv[--argc];

    while ((c = getopt_long(argc, argv, ":f:hq", long_options, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_SHRINK:
            shrink = true;
            break;
        case OPTION_PREALLOCATION:
            prealloc = prealloc_mode_parse(optarg);
            if (prealloc < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        error_exit("Expecting image file name and size");
    }
    if (!resize_parse(size_str, &size_arg)) {
        return 1;
    }

    blk = img_open(image_opts, argv[optind], fmt, BDRV_O_RDWR, false, false);
    if (!blk) {
        return 1;
    }
    current = blk_getlength(blk);
    if (current < 0) {
        error_report("Failed to inquire current image length: %s",
                     g_strerror(-current));
        ret = 1;
        goto out;
    }
    total = resize_target(&size_arg, current);
    ret = 1;
    if (total < 0) {
        goto out;
    }
    if (prealloc != PREALLOC_MODE_OFF && total < current) {
        error_report("Preallocation can only be used for growing images");
        goto out;
    }
    if (total < current && !shrink) {
        error_report("Use the --shrink option to perform a shrink operation.");
        warn_report("Shrinking an image will delete all data beyond the "
                    "shrunken image's end. Before performing such an "
                    "operation, make sure there is no important data there.");
        goto out;
    }
    /* A shrink must take effect; a grow may leave a larger device alone. */
    if (blk_truncate(blk, total, total < current, prealloc, &err) < 0) {
        error_report_err(err);
        goto out;
    }
    qprintf(quiet, "Image resized.\n");
    ret = 0;
out:
    blk_unref(blk);
    return ret;
}

/* amend */

static void amend_status_cb(BlockDriverState *bs, int64_t done, int64_t total,
                            void *opaque)
{
    (void)bs;
    progress_print(opaque, 100.f * done / total, 0);
}

/* Options that exist only at creation get a hint saying so. */
static bool amend_validate(BlockDriver *drv, const QDict *opts, Error **errp)
{
    const QemuOptDesc *amend = bdrv_amend_opts(drv);

    if (qemu_opts_validate(opts, amend, NULL, errp)) {
        return true;
    }
    for (size_t i = 0; i < qdict_size(opts); i++) {
        const char *key = qdict_key_at(opts, i);
        if (!qemu_opt_find_desc(amend, key) &&
            drv_has_create_opt(drv, key)) {
            error_append_hint(errp, "This option is only supported for image "
                              "creation\n");
            break;
        }
    }
    return false;
}

static int img_amend(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force", no_argument, NULL, OPTION_FORCE },
        { NULL, 0, NULL, 0 },
    };
    g_autofree char *options = NULL;
    g_autoptr(QDict) opts = NULL;
    const char *fmt = NULL, *cache = "writeback";
    bool quiet = false, show_progress = false, image_opts = false;
    bool force = false, writethrough;
    int flags = BDRV_O_RDWR, c, ret = 1;
    Error *err = NULL;
    BlockBackend *blk;
    BlockDriver *drv;
    Progress progress;

    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'o':
            options = accumulate_options(options, optarg);
            break;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'p':
            show_progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_FORCE:
            force = true;
            break;
        default:
            common_option(c, argv);
        }
    }
    if (!options) {
        error_exit("Must specify options (-o)");
    }
    if (optind != argc - 1) {
        error_report("Expecting one image file name");
        return 1;
    }
    if (!parse_cache_mode(cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", cache);
        return 1;
    }
    opts = parse_option_list(options, &err);
    if (!opts) {
        error_report_err(err);
        return 1;
    }

    blk = img_open(image_opts, argv[optind], fmt, flags, writethrough, false);
    if (!blk) {
        return 1;
    }
    drv = bdrv_find_format(bdrv_get_format_name(blk_bs(blk)));
    if (!bdrv_amend_opts(drv)) {
        error_report("Format driver '%s' does not support option amendment",
                     bdrv_driver_name(drv));
        goto out;
    }
    if (has_help_option(opts)) {
        g_autofree char *title = g_strdup_printf("Amend options for '%s':",
                                                 bdrv_driver_name(drv));
        qemu_opts_print_help(bdrv_amend_opts(drv), title);
        ret = 0;
        goto out;
    }
    if (!amend_validate(drv, opts, &err)) {
        error_report_err(err);
        goto out;
    }

    progress_init(&progress, show_progress && !quiet, 1.0);
    progress_print(&progress, 0, 0);
    ret = bdrv_amend_options(blk_bs(blk), opts, amend_status_cb, &progress,
                             force, &err);
    progress_print(&progress, 100, 0);
    if (ret < 0) {
        error_report_err(err);
        ret = 1;
    }
    progress_end(&progress);
out:
    blk_unref(blk);
    return ret;
}

/* convert */

typedef enum ChunkKind {
    CHUNK_DATA,     /* read from the sources and write */
    CHUNK_ZERO,     /* reads as zero */
    CHUNK_BACKING,  /* left to the target's backing file */
} ChunkKind;

typedef struct ConvertChunk {
    int64_t offset;
    int64_t bytes;
    ChunkKind kind;
    uint64_t ticket;    /* position in the write order */
} ConvertChunk;

typedef struct ConvertState {
    /* Set up before the workers start, read-only afterwards. */
    int nsrc;
    BlockBackend **src;
    int64_t *src_start;         /* offset of each source in the whole */
    int64_t total;
    BlockBackend *target;
    bool zero_init;             /* unwritten target ranges read as zero */
    bool target_has_backing;    /* copy only the sources' top layers */
    bool compressed;
    int64_t cluster_size;       /* target's, or 0 */
    int64_t min_sparse;         /* 0: write every byte */
    int64_t zero_align;         /* zero detection granule */
    bool out_of_order;

    /* Everything below under lock. */
    GMutex lock;
    /*
     * A worker waiting to write ticket t sleeps on turn[t % workers]: at
     * most that many tickets are out at once, so each has its own, and
     * finishing a write wakes just the next writer.
     */
    GCond turn[CONVERT_MAX_WORKERS];
    int workers;
    int64_t next_offset;
    /* [next_offset, status_end) is known to be of kind status_kind. */
    int64_t status_end;
    ChunkKind status_kind;
    uint64_t next_ticket;
    uint64_t write_ticket;
    int ret;                    /* first error, then everyone stops */
    int64_t err_offset;
    bool err_writing;
    int64_t data_total;         /* for the progress percentage */
    int64_t data_done;
    Progress *progress;
} ConvertState;

static int convert_src_index(ConvertState *s, int64_t offset)
{
    int i = 0;

    while (i + 1 < s->nsrc && offset >= s->src_start[i + 1]) {
        i++;
    }
    return i;
}

/*
 * What the range starting at offset is, and how long it stays that way
 * (never past the end of the source it lies in, except that compressed
 * output works in whole clusters).
 */
static int convert_classify(ConvertState *s, int64_t offset, ChunkKind *kind,
                            int64_t *bytes)
{
    int i = convert_src_index(s, offset);
    BlockDriverState *bs = blk_bs(s->src[i]);
    int64_t local = offset - s->src_start[i];
    int64_t end = i + 1 < s->nsrc ? s->src_start[i + 1] : s->total;
    int64_t pnum;
    int ret;

    if (s->target_has_backing) {
        ret = bdrv_block_status(bs, local, end - offset, &pnum, NULL, NULL);
    } else {
        ret = bdrv_block_status_above(bs, NULL, local, end - offset, &pnum,
                                      NULL, NULL, NULL);
    }
    if (ret < 0) {
        return ret;
    }
    if (pnum <= 0) {
        return -EIO;
    }
    if (ret & BDRV_BLOCK_ZERO) {
        /* -S 0 asks for a fully allocated target: write zeroes as data. */
        *kind = s->min_sparse ? CHUNK_ZERO : CHUNK_DATA;
    } else if (ret & BDRV_BLOCK_DATA) {
        *kind = CHUNK_DATA;
    } else {
        *kind = s->target_has_backing ? CHUNK_BACKING : CHUNK_DATA;
    }
    *bytes = pnum;
    if (s->compressed) {
        int64_t cluster_end = MIN(offset + s->cluster_size, s->total);
        if (offset + pnum < cluster_end) {
            /* Part of a cluster differs: the whole cluster is data. */
            *kind = CHUNK_DATA;
            *bytes = cluster_end - offset;
        } else if (offset + pnum < s->total) {
            *bytes = QEMU_ALIGN_DOWN(pnum, s->cluster_size);
        }
    }
    return 0;
}

static int64_t convert_buf_size(ConvertState *s)
{
    return s->compressed ? MAX(CONVERT_BUF_SIZE, s->cluster_size)
                         : CONVERT_BUF_SIZE;
}

static void convert_fail(ConvertState *s, int ret, int64_t offset,
                         bool writing)
{
    if (s->ret == 0) {
        s->ret = ret;
        s->err_offset = offset;
        s->err_writing = writing;
    }
    for (int i = 0; i < s->workers; i++) {
        g_cond_broadcast(&s->turn[i]);
    }
}

/* Hand out the next chunk, in order.  Called with lock held. */
static bool convert_next_chunk(ConvertState *s, ConvertChunk *c)
{
    int64_t offset = s->next_offset, bytes, limit;
    int ret;

    if (s->ret < 0 || offset >= s->total) {
        return false;
    }
    /* One status query covers many chunks of a long extent. */
    if (offset >= s->status_end) {
        ret = convert_classify(s, offset, &s->status_kind, &bytes);
        if (ret < 0) {
            convert_fail(s, ret, offset, false);
            return false;
        }
        s->status_end = offset + bytes;
    }
    c->kind = s->status_kind;
    bytes = s->status_end - offset;
    limit = convert_buf_size(s);
    if (c->kind == CHUNK_DATA && bytes > limit) {
        /* Cut at a granule boundary so the next chunk starts aligned. */
        int64_t align = s->compressed ? s->cluster_size : s->zero_align;
        int64_t end = QEMU_ALIGN_DOWN(offset + limit, align);
        bytes = end > offset ? end - offset : limit;
    }
    c->offset = offset;
    c->bytes = bytes;
    c->ticket = s->next_ticket++;
    s->next_offset = offset + bytes;
    return true;
}

/* Read [offset, offset + bytes) of the concatenated sources. */
static int convert_read(ConvertState *s, int64_t offset, int64_t bytes,
                        uint8_t *buf)
{
    while (bytes > 0) {
        int i = convert_src_index(s, offset);
        int64_t end = i + 1 < s->nsrc ? s->src_start[i + 1] : s->total;
        int64_t n = MIN(bytes, end - offset);
        int ret = blk_pread(s->src[i], offset - s->src_start[i], n, buf, 0);

        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        buf += n;
    }
    return 0;
}

static int convert_write_zeroes(ConvertState *s, int64_t offset,
                                int64_t bytes)
{
    if (s->zero_init) {
        return 0;
    }
    return blk_pwrite_zeroes(s->target, offset, bytes, BDRV_REQ_MAY_UNMAP);
}

/*
 * Length of the run of whole, zero zero_align granules at pos of buf
 * (which holds the target range starting at offset).
 */
static int64_t convert_zero_run(ConvertState *s, const uint8_t *buf,
                                int64_t offset, int64_t pos, int64_t bytes)
{
    int64_t align = s->zero_align, end = pos;

    while (bytes - end >= align && (offset + end) % align == 0 &&
           buffer_is_zero(buf + end, align)) {
        end += align;
    }
    return end - pos;
}

/* Write data, leaving runs of zeroes of at least min_sparse bytes sparse. */
static int convert_write_sparse(ConvertState *s, int64_t offset,
                                int64_t bytes, const uint8_t *buf)
{
    int64_t pos = 0, data_start = 0;
    int ret;

    while (pos < bytes) {
        int64_t zeroes = convert_zero_run(s, buf, offset, pos, bytes);

        if (zeroes == 0) {
            int64_t granule_end = QEMU_ALIGN_DOWN(offset + pos, s->zero_align)
                                  + s->zero_align - offset;
            pos = MIN(granule_end, bytes);
            continue;
        }
        if (zeroes < s->min_sparse) {
            pos += zeroes;
            continue;
        }
        if (pos > data_start) {
            ret = blk_pwrite(s->target, offset + data_start, pos - data_start,
                             buf + data_start, 0);
            if (ret < 0) {
                return ret;
            }
        }
        ret = convert_write_zeroes(s, offset + pos, zeroes);
        if (ret < 0) {
            return ret;
        }
        pos += zeroes;
        data_start = pos;
    }
    if (pos > data_start) {
        return blk_pwrite(s->target, offset + data_start, pos - data_start,
                          buf + data_start, 0);
    }
    return 0;
}

static int convert_write_compressed(ConvertState *s, int64_t offset,
                                    int64_t bytes, const uint8_t *buf)
{
    for (int64_t pos = 0; pos < bytes; pos += s->cluster_size) {
        int64_t n = MIN(s->cluster_size, bytes - pos);
        int ret;

        if (buffer_is_zero(buf + pos, n)) {
            ret = convert_write_zeroes(s, offset + pos, n);
        } else {
            ret = blk_pwrite_compressed(s->target, offset + pos, n, buf + pos);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int convert_write(ConvertState *s, const ConvertChunk *c,
                         const uint8_t *buf)
{
    switch (c->kind) {
    case CHUNK_ZERO:
        return convert_write_zeroes(s, c->offset, c->bytes);
    case CHUNK_BACKING:
        return 0;
    case CHUNK_DATA:
        if (s->compressed) {
            return convert_write_compressed(s, c->offset, c->bytes, buf);
        }
        if (s->min_sparse) {
            return convert_write_sparse(s, c->offset, c->bytes, buf);
        }
        return blk_pwrite(s->target, c->offset, c->bytes, buf, 0);
    }
    g_assert_not_reached();
}

static gpointer convert_worker(gpointer opaque)
{
    ConvertState *s = opaque;
    uint8_t *buf = qemu_blockalign(convert_buf_size(s));
    ConvertChunk c;

    g_mutex_lock(&s->lock);
    while (convert_next_chunk(s, &c)) {
        int ret = 0;

        g_mutex_unlock(&s->lock);
        if (c.kind == CHUNK_DATA) {
            ret = convert_read(s, c.offset, c.bytes, buf);
        }
        g_mutex_lock(&s->lock);
        if (ret < 0) {
            convert_fail(s, ret, c.offset, false);
            break;
        }
        while (!s->out_of_order && s->ret == 0 && s->write_ticket != c.ticket) {
            g_cond_wait(&s->turn[c.ticket % s->workers], &s->lock);
        }
        if (s->ret < 0) {
            break;
        }
        g_mutex_unlock(&s->lock);
        ret = convert_write(s, &c, buf);
        g_mutex_lock(&s->lock);
        if (ret < 0) {
            convert_fail(s, ret, c.offset, true);
            break;
        }
        s->write_ticket++;
        if (c.kind == CHUNK_DATA && s->progress->enabled) {
            s->data_done += c.bytes;
            progress_print(s->progress, 100.0 * s->data_done / s->data_total,
                           0);
        }
        g_cond_signal(&s->turn[s->write_ticket % s->workers]);
    }
    g_mutex_unlock(&s->lock);
    qemu_vfree(buf);
    return NULL;
}

/* The amount of data to copy, for the progress percentage. */
static int convert_count_data(ConvertState *s)
{
    for (int64_t offset = 0; offset < s->total; ) {
        ChunkKind kind;
        int64_t bytes;
        int ret = convert_classify(s, offset, &kind, &bytes);

        if (ret < 0) {
            convert_fail(s, ret, offset, false);
            return ret;
        }
        if (kind == CHUNK_DATA) {
            s->data_total += bytes;
        }
        offset += bytes;
    }
    return 0;
}

static int convert_copy(ConvertState *s, int workers)
{
    GThread *threads[CONVERT_MAX_WORKERS];

    g_mutex_init(&s->lock);
    s->workers = workers;
    for (int i = 0; i < workers; i++) {
        g_cond_init(&s->turn[i]);
    }
    progress_print(s->progress, 0, 100);
    if (!s->progress->enabled || convert_count_data(s) == 0) {
        for (int i = 0; i < workers; i++) {
            threads[i] = g_thread_new("convert", convert_worker, s);
        }
        for (int i = 0; i < workers; i++) {
            g_thread_join(threads[i]);
        }
    }
    g_mutex_clear(&s->lock);
    for (int i = 0; i < workers; i++) {
        g_cond_clear(&s->turn[i]);
    }
    if (s->ret == -ENOTSUP && s->compressed && s->err_writing) {
        error_report("Compression not supported for this file format");
        return s->ret;
    }
    if (s->ret < 0) {
        error_report("error while %s at byte %" PRId64 ": %s",
                     s->err_writing ? "writing" : "reading", s->err_offset,
                     g_strerror(-s->ret));
        return s->ret;
    }
    progress_print(s->progress, 100, 0);
    return 0;
}

typedef struct ConvertOptions {
    const char *src_fmt;
    const char *out_fmt;
    const char *options;
    const char *backing;
    const char *backing_fmt;
    const char *out_cache;
    const char *src_cache;
    bool compressed;
    bool skip_create;
    bool target_is_zero;
    bool image_opts;
    bool force_share;
    bool quiet;
    bool show_progress;
    bool out_of_order;
    int64_t min_sparse;
    int workers;
} ConvertOptions;

/* Create the target with the size of all sources together. */
static bool convert_create_target(const ConvertOptions *o, BlockDriver *drv,
                                  const char *filename, int64_t size,
                                  Error **errp)
{
    g_autofree QemuOptDesc *all = bdrv_create_opts_with_protocol(drv);
    g_autoptr(QDict) opts = o->options ? parse_option_list(o->options, errp)
                                       : qdict_new();

    if (!opts || !qemu_opts_validate(opts, all, NULL, errp)) {
        return false;
    }
    bdrv_create_opts_defaults(drv, opts);
    qdict_put_int(opts, "size", size);
    if (o->backing) {
        if (!qemu_opt_find_desc(all, "backing_file")) {
            error_setg(errp, "Backing file not supported for file format "
                       "'%s'", o->out_fmt);
            return false;
        }
        if (!o->backing_fmt) {
            error_setg(errp, "Use of backing file requires explicit backing "
                       "format");
            return false;
        }
        qdict_put_str(opts, "backing_file", o->backing);
        qdict_put_str(opts, "backing_fmt", o->backing_fmt);
    }
    if (bdrv_create(drv, filename, opts, errp) < 0) {
        error_prepend(errp, "%s: error while converting %s: ", filename,
                      o->out_fmt);
        return false;
    }
    return true;
}

static int64_t pow2floor(int64_t v)
{
    return v ? INT64_C(1) << (63 - __builtin_clzll(v)) : 0;
}

/*
 * Decide what the copy may skip: a fresh target reads as zero, and so does
 * an existing one that we could zero cheaply up front (-n).
 */
static void convert_setup_target(ConvertState *s, const ConvertOptions *o)
{
    BlockDriverInfo bdi;

    if (bdrv_get_info(blk_bs(s->target), &bdi) == 0) {
        s->cluster_size = bdi.cluster_size;
    }
    s->zero_align = MAX(MAX(pow2floor(s->min_sparse), s->cluster_size),
                        SECTOR_SIZE);
    if (!s->min_sparse || s->target_has_backing) {
        return;
    }
    if (!o->skip_create || o->target_is_zero) {
        s->zero_init = true;
        return;
    }
    s->zero_init = blk_pwrite_zeroes(s->target, 0, s->total,
                                     BDRV_REQ_MAY_UNMAP |
                                     BDRV_REQ_NO_FALLBACK) == 0;
}

static int convert_open_sources(ConvertState *s, char **names,
                                const ConvertOptions *o)
{
    int flags = 0;
    bool writethrough;

    if (o->src_cache && !parse_cache_mode(o->src_cache, &flags,
                                          &writethrough)) {
        error_report("Invalid source cache option: %s", o->src_cache);
        return -1;
    }
    s->src = g_new0(BlockBackend *, s->nsrc);
    s->src_start = g_new0(int64_t, s->nsrc);
    for (int i = 0; i < s->nsrc; i++) {
        int64_t len;

        s->src[i] = img_open(o->image_opts, names[i], o->src_fmt, flags, false,
                             o->force_share);
        if (!s->src[i]) {
            return -1;
        }
        len = blk_getlength(s->src[i]);
        if (len < 0) {
            error_report("Could not get size of %s: %s", names[i],
                         g_strerror(-len));
            return -1;
        }
        s->src_start[i] = s->total;
        s->total += len;
    }
    return 0;
}

static int convert_open_target(ConvertState *s, const ConvertOptions *o,
                               BlockDriver *drv, const char *filename)
{
    int flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    bool writethrough;
    Error *err = NULL;
    int64_t len;

    if (!parse_cache_mode(o->out_cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", o->out_cache);
        return -1;
    }
    if (!o->skip_create &&
        !convert_create_target(o, drv, filename, s->total, &err)) {
        error_report_err(err);
        return -1;
    }
    s->target = img_open(false, filename, o->out_fmt, flags, writethrough,
                         false);
    if (!s->target) {
        return -1;
    }
    len = blk_getlength(s->target);
    if (o->skip_create && len >= 0 && len < s->total) {
        error_report("output file is smaller than input file");
        return -1;
    }
    return 0;
}

static int do_convert(ConvertOptions *o, char **names, int nsrc,
                      const char *out_filename)
{
    ConvertState s = {
        .nsrc = nsrc,
        .compressed = o->compressed,
        .min_sparse = o->min_sparse,
        .out_of_order = o->out_of_order,
        .target_has_backing = o->backing != NULL,
    };
    Progress progress;
    Error *err = NULL;
    BlockDriver *drv;
    int ret = -1;

    drv = find_format(o->out_fmt, &err);
    if (!drv) {
        error_report_err(err);
        return 1;
    }
    if (convert_open_sources(&s, names, o) < 0 ||
        convert_open_target(&s, o, drv, out_filename) < 0) {
        goto out;
    }
    convert_setup_target(&s, o);
    if (s.compressed && s.cluster_size <= 0) {
        error_report("Compression not supported for this file format");
        goto out;
    }
    progress_init(&progress, o->show_progress && !o->quiet, 1.0);
    s.progress = &progress;
    ret = convert_copy(&s, o->workers);
    if (ret == 0) {
        ret = blk_flush(s.target);
        if (ret < 0) {
            error_report("error while flushing the output image: %s",
                         g_strerror(-ret));
        }
    }
    progress_end(&progress);
out:
    for (int i = 0; s.src && i < nsrc; i++) {
        blk_unref(s.src[i]);
    }
    g_free(s.src);
    g_free(s.src_start);
    blk_unref(s.target);
    return ret < 0 ? 1 : 0;
}

static int img_convert(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "target-image-opts", no_argument, NULL, OPTION_TARGET_IMAGE_OPTS },
        { "salvage", no_argument, NULL, OPTION_SALVAGE },
        { "target-is-zero", no_argument, NULL, OPTION_TARGET_IS_ZERO },
        { "bitmaps", no_argument, NULL, OPTION_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPTION_SKIP_BROKEN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    ConvertOptions o = {
        .out_fmt = "raw",
        .out_cache = "unsafe",
        .min_sparse = 4 * KiB,
        .workers = 8,
    };
    g_autofree char *options = NULL;
    const char *out_filename;
    int c, nsrc;

    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
                            long_options, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.src_fmt = optarg;
            break;
        case 'O':
            o.out_fmt = optarg;
            break;
        case 'B':
            o.backing = optarg;
            break;
        case 'F':
            o.backing_fmt = optarg;
            break;
        case 'C':
            /* Copy offloading is only an optimisation; plain copies do. */
            break;
        case 'c':
            o.compressed = true;
            break;
        case 'o':
            options = accumulate_options(options, optarg);
            break;
        case 'l':
            unsupported("convert", "loading internal snapshots (-l)");
        case 'r':
            unsupported("convert", "rate limiting (-r)");
        case 'S':
            o.min_sparse = cvtnum("buffer size for sparse output", optarg);
            if (o.min_sparse < 0) {
                return 1;
            }
            if (o.min_sparse % SECTOR_SIZE || o.min_sparse > CONVERT_MAX_SPARSE) {
                error_report("Invalid buffer size for sparse output "
                             "specified. Valid sizes are multiples of 512 up "
                             "to %d. Select 0 to disable sparse detection "
                             "(fully allocates output).", (int)CONVERT_MAX_SPARSE);
                return 1;
            }
            break;
        case 'p':
            o.show_progress = true;
            break;
        case 't':
            o.out_cache = optarg;
            break;
        case 'T':
            o.src_cache = optarg;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 'n':
            o.skip_create = true;
            break;
        case 'm': {
            int64_t n;
            if (qemu_strtoi64(optarg, &n) < 0 || n < 1 ||
                n > CONVERT_MAX_WORKERS) {
                error_report("Invalid number of coroutines. Allowed number "
                             "of coroutines is between 1 and %d",
                             CONVERT_MAX_WORKERS);
                return 1;
            }
            o.workers = n;
            break;
        }
        case 'W':
            o.out_of_order = true;
            break;
        case 'U':
            o.force_share = true;
            break;
        case OPTION_IMAGE_OPTS:
            o.image_opts = true;
            break;
        case OPTION_TARGET_IS_ZERO:
            o.target_is_zero = true;
            break;
        case OPTION_TARGET_IMAGE_OPTS:
            unsupported("convert", "--target-image-opts");
        case OPTION_SALVAGE:
            unsupported("convert", "--salvage");
        case OPTION_BITMAPS:
        case OPTION_SKIP_BROKEN:
            unsupported("convert", "copying bitmaps");
        default:
            common_option(c, argv);
        }
    }
    if (o.target_is_zero && !o.skip_create) {
        error_report("--target-is-zero requires use of -n flag");
        return 1;
    }
    nsrc = argc - optind - 1;
    out_filename = nsrc >= 1 ? argv[argc - 1] : NULL;
    o.options = options;
    if (options) {
        g_autoptr(QDict) opts = parse_option_list(options, NULL);
        if (opts && has_help_option(opts)) {
            Error *err = NULL;
            BlockDriver *drv = find_format(o.out_fmt, &err);
            if (!drv) {
                error_report_err(err);
                return 1;
            }
            print_create_help(drv, out_filename);
            return 0;
        }
    }
    if (nsrc < 1) {
        error_report("Must specify image file name");
        return 1;
    }
    return do_convert(&o, &argv[optind], nsrc, out_filename);
}

/* measure */

/*
 * What a qcow2 image of a given content takes (docs/interop/qcow2.txt,
 * sections 1-3): one header cluster, the L1 table, the L2 tables, the data
 * clusters, and refcount blocks plus the refcount table for every cluster
 * of the image, themselves included.  As QEMU does, "required" counts every
 * L2 table of the virtual disk and the refcount structures of the fully
 * allocated image, so it differs from "fully allocated" only in the data
 * clusters and is an upper bound of what a copy of the source takes.
 *
 * The driver has no size measuring interface yet, so this computes it from
 * the layout and checks the qcow2 options itself, with the messages (and
 * in the order) QEMU's measure uses.
 */

/* QEMU refuses L1 tables above 32 MiB. */
#define QCOW2_MAX_L1_ENTRIES (32 * MiB / 8)
#define QCOW2_DEFAULT_CLUSTER_SIZE (64 * KiB)

typedef struct Qcow2Measure {
    int version;
    int cluster_bits;
    int refcount_order;
    int l2_entry_size;          /* 16 with extended L2 entries */
    PreallocMode prealloc;
    bool has_backing;
    bool dedup;
    uint64_t dedup_log_entries;         /* 0: the driver's default */
    uint64_t dedup_max_incarnations;    /* 0: the driver's default */
} Qcow2Measure;

/*
 * Deduplication index layout (docs/interop/qcow2.txt section 7): tables of
 * 2^bucket_bits buckets (4 to 24 bits) of 4 slots, 160 bytes per bucket;
 * a directory copy of 64 bytes plus 32 per incarnation, in 512-byte units;
 * 72-byte journal INSERT records.  The journal's spare room and the
 * default geometry are the driver's choices (see dedup_index_clusters()).
 */
#define DEDUP_SLOTS_PER_BUCKET 4
#define DEDUP_BUCKET_BYTES 160
#define DEDUP_MIN_BUCKET_BITS 4
#define DEDUP_MAX_BUCKET_BITS 24
#define DEDUP_MAX_INCARNATIONS 65535
#define DEDUP_DIR_HEADER_BYTES 64
#define DEDUP_DIR_ENTRY_BYTES 32
#define DEDUP_JOURNAL_INSERT_BYTES 72
#define DEDUP_JOURNAL_RESERVE (64 * KiB)

/* Our extension's options, as the driver checks them at creation. */
static bool measure_qcow2_dedup_opts(const QDict *opts, int version,
                                     Qcow2Measure *m, Error **errp)
{
    const char *algo = qemu_opt_get(opts, "dedup");

    if (algo && strcmp(algo, "off") && strcmp(algo, "sha256")) {
        error_setg(errp, "Unsupported dedup algorithm '%s' (use sha256 or "
                   "off)", algo);
        return false;
    }
    m->dedup = algo && !strcmp(algo, "sha256");
    if (m->dedup && version < 3) {
        error_setg(errp, "Deduplication requires compat=1.1 or later");
        return false;
    }
    m->dedup_log_entries = qemu_opt_get_number(opts, "dedup_log_entries", 0);
    m->dedup_max_incarnations = qemu_opt_get_number(opts,
                                                    "dedup_max_incarnations",
                                                    0);
    if (m->dedup_max_incarnations > DEDUP_MAX_INCARNATIONS) {
        error_setg(errp, "dedup_max_incarnations may not exceed %d",
                   DEDUP_MAX_INCARNATIONS);
        return false;
    }
    if (m->dedup_log_entries >
        (uint64_t)DEDUP_SLOTS_PER_BUCKET << DEDUP_MAX_BUCKET_BITS) {
        error_setg(errp, "dedup_log_entries may not exceed %u",
                   DEDUP_SLOTS_PER_BUCKET << DEDUP_MAX_BUCKET_BITS);
        return false;
    }
    return true;
}

static bool measure_qcow2_opts(const QDict *opts, Qcow2Measure *m,
                               Error **errp)
{
    uint64_t cluster_size = qemu_opt_get_size(opts, "cluster_size",
                                              QCOW2_DEFAULT_CLUSTER_SIZE);
    uint64_t refcount_bits = qemu_opt_get_number(opts, "refcount_bits", 16);
    const char *encrypt = qemu_opt_get(opts, "encrypt.format");
    const char *compat = qemu_opt_get(opts, "compat");
    const char *prealloc = qemu_opt_get(opts, "preallocation");
    bool extended_l2 = qemu_opt_get_bool(opts, "extended_l2", false);
    int version = 3;

    if (!is_power_of_2(cluster_size) || cluster_size < 512 ||
        cluster_size > 2 * MiB) {
        error_setg(errp, "Cluster size must be a power of two between 512 "
                   "and 2048k");
        return false;
    }
    if (extended_l2 && cluster_size < 16 * KiB) {
        error_setg(errp, "Extended L2 entries are only supported with "
                   "cluster sizes of at least 16384 bytes");
        return false;
    }
    if (compat && !strcmp(compat, "0.10")) {
        version = 2;
    } else if (compat && strcmp(compat, "1.1")) {
        error_setg(errp, "Invalid compatibility level: '%s'", compat);
        return false;
    }
    if (!is_power_of_2(refcount_bits) || refcount_bits > 64) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return false;
    }
    if (version < 3 && refcount_bits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use compat=1.1 or "
                   "greater)");
        return false;
    }
    m->prealloc = prealloc ? prealloc_mode_parse(prealloc) : PREALLOC_MODE_OFF;
    if ((int)m->prealloc < 0) {
        error_setg(errp, "invalid parameter value: %s", prealloc);
        return false;
    }
    if (encrypt && !strcmp(encrypt, "luks")) {
        /* Its header size depends on a secret we have no --object for. */
        error_setg(errp, "Parameter 'encrypt.key-secret' is required for "
                   "cipher");
        return false;
    }
    m->version = version;
    m->cluster_bits = __builtin_ctzll(cluster_size);
    m->refcount_order = __builtin_ctzll(refcount_bits);
    m->l2_entry_size = extended_l2 ? 16 : 8;
    m->has_backing = qemu_opt_get(opts, "backing_file") != NULL;
    return measure_qcow2_dedup_opts(opts, version, m, errp);
}

/*
 * Refcount blocks and table clusters that count n other clusters and
 * themselves: the smallest fixed point, reached by iterating from zero.
 */
static uint64_t qcow2_refcount_clusters(const Qcow2Measure *m, uint64_t n)
{
    uint64_t per_block = (uint64_t)8 << (m->cluster_bits - m->refcount_order);
    uint64_t per_table = (uint64_t)1 << (m->cluster_bits - 3);
    uint64_t blocks = 0, table = 0, total;

    do {
        total = blocks + table;
        blocks = DIV_ROUND_UP(n + total, per_block);
        table = DIV_ROUND_UP(blocks, per_table);
    } while (blocks + table != total);
    return total;
}

/* Header, L1 and L2 clusters for a disk of virtual_size bytes. */
static bool qcow2_table_clusters(const Qcow2Measure *m, uint64_t virtual_size,
                                 uint64_t *clusters, Error **errp)
{
    uint64_t cluster_size = (uint64_t)1 << m->cluster_bits;
    uint64_t data = DIV_ROUND_UP(virtual_size, cluster_size);
    uint64_t l2 = DIV_ROUND_UP(data, cluster_size / m->l2_entry_size);

    if (l2 > QCOW2_MAX_L1_ENTRIES) {
        error_setg(errp, "The image size is too large (try using a larger "
                   "cluster size)");
        return false;
    }
    *clusters = 1 + DIV_ROUND_UP(l2 * 8, cluster_size) + l2;
    return true;
}

/* What measure found out about the source, in target clusters. */
typedef struct MeasureSource {
    uint64_t virtual_size;
    GArray *runs;               /* MeasureRun: clusters holding data */
    uint64_t data_clusters;
    /* Filled by the dedup scan (clusters that read as zero need none): */
    uint64_t partial_clusters;  /* non-zero cut by the end of the disk */
    uint64_t hashed_clusters;   /* non-zero full clusters */
    uint64_t stored_clusters;   /* what remains of those with dedup */
} MeasureSource;

typedef struct MeasureRun {
    uint64_t first;
    uint64_t count;
} MeasureRun;

typedef struct MeasureInfo {
    uint64_t required;
    uint64_t fully_allocated;
    bool has_bitmaps;
    uint64_t bitmaps;
    bool has_dedup;
    uint64_t dedup_required;
    double dedup_ratio;
} MeasureInfo;

/*
 * The target clusters that would hold data: every cluster that a range the
 * source reports as allocated data touches (zero ranges and holes need no
 * data cluster).  Ranges come back in order, so touching runs merge.
 */
static int measure_find_data(BlockBackend *blk, uint64_t cluster_size,
                             MeasureSource *src)
{
    BlockDriverState *bs = blk_bs(blk);
    const int want = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;

    for (int64_t offset = 0; offset < (int64_t)src->virtual_size; ) {
        int64_t pnum;
        int ret = bdrv_block_status_above(bs, NULL, offset,
                                          src->virtual_size - offset, &pnum,
                                          NULL, NULL, NULL);
        MeasureRun run;

        if (ret < 0) {
            return ret;
        }
        if ((ret & BDRV_BLOCK_ZERO) || (ret & want) != want) {
            offset += pnum;
            continue;
        }
        run.first = offset / cluster_size;
        run.count = DIV_ROUND_UP(offset + pnum, cluster_size) - run.first;
        /* Data ranges are counted up to a cluster boundary: no overlaps. */
        offset = (run.first + run.count) * cluster_size;
        src->data_clusters += run.count;
        if (src->runs->len) {
            MeasureRun *last = &g_array_index(src->runs, MeasureRun,
                                              src->runs->len - 1);
            if (last->first + last->count == run.first) {
                last->count += run.count;
                continue;
            }
        }
        g_array_append_val(src->runs, run);
    }
    return 0;
}

/*
 * Deduplication estimate (-o dedup=sha256, our extension): read every data
 * cluster of the source in the target's cluster size, as the driver would
 * see them written, and count the distinct contents.  Workers take batches
 * of clusters in order, read and hash them in parallel, and keep the first
 * 128 bits of each SHA-256 (half the memory; even among 2^40 clusters the
 * chance of two different contents sharing a key is below 2^-48); sorting
 * all keys then finds the copies.
 */
#define MEASURE_BATCH_BYTES (2 * MiB)
#define MEASURE_MAX_WORKERS 16

typedef struct DedupKey {
    uint64_t a, b;
} DedupKey;

typedef struct DedupScan {
    BlockBackend *blk;
    const MeasureSource *src;
    uint64_t cluster_size;
    uint64_t batch;             /* clusters per batch */

    GMutex lock;                /* protects the fields below */
    guint run;                  /* next batch: run index, cluster in run */
    uint64_t pos;
    int ret;
    uint64_t err_offset;
} DedupScan;

typedef struct DedupWorker {
    DedupScan *scan;
    GThread *thread;
    GArray *keys;               /* DedupKey of each non-zero full cluster */
    uint64_t partial;
} DedupWorker;

static bool dedup_scan_next(DedupScan *s, uint64_t *first, uint64_t *count)
{
    const GArray *runs = s->src->runs;
    bool found;

    g_mutex_lock(&s->lock);
    while (s->run < runs->len &&
           s->pos == g_array_index(runs, MeasureRun, s->run).count) {
        s->run++;
        s->pos = 0;
    }
    found = s->ret == 0 && s->run < runs->len;
    if (found) {
        const MeasureRun *r = &g_array_index(runs, MeasureRun, s->run);
        *first = r->first + s->pos;
        *count = MIN(r->count - s->pos, s->batch);
        s->pos += *count;
    }
    g_mutex_unlock(&s->lock);
    return found;
}

static void dedup_scan_fail(DedupScan *s, int ret, uint64_t offset)
{
    g_mutex_lock(&s->lock);
    if (s->ret == 0) {
        s->ret = ret;
        s->err_offset = offset;
    }
    g_mutex_unlock(&s->lock);
}

/* Classify the clusters of buf, which holds count clusters from first. */
static void dedup_scan_clusters(DedupWorker *w, const uint8_t *buf,
                                uint64_t first, uint64_t count)
{
    uint64_t cs = w->scan->cluster_size;
    uint64_t disk_end = w->scan->src->virtual_size;

    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *p = buf + i * cs;
        uint64_t len = MIN(cs, disk_end - (first + i) * cs);
        uint8_t digest[SHA256_DIGEST_SIZE];
        struct sha256_ctx ctx;
        DedupKey key;

        if (buffer_is_zero(p, len)) {
            continue;
        }
        if (len < cs) {
            /* The driver only deduplicates whole clusters. */
            w->partial++;
        } else {
            sha256_init(&ctx);
            sha256_update(&ctx, cs, p);
            sha256_digest(&ctx, sizeof(digest), digest);
            memcpy(&key, digest, sizeof(key));
            g_array_append_val(w->keys, key);
        }
    }
}

static gpointer dedup_scan_worker(gpointer opaque)
{
    DedupWorker *w = opaque;
    DedupScan *s = w->scan;
    uint8_t *buf = qemu_blockalign(s->batch * s->cluster_size);
    uint64_t first, count;

    while (dedup_scan_next(s, &first, &count)) {
        uint64_t offset = first * s->cluster_size;
        uint64_t bytes = MIN(count * s->cluster_size,
                             s->src->virtual_size - offset);
        int ret = blk_pread(s->blk, offset, bytes, buf, 0);

        if (ret < 0) {
            dedup_scan_fail(s, ret, offset);
            break;
        }
        dedup_scan_clusters(w, buf, first, count);
    }
    qemu_vfree(buf);
    return NULL;
}

static int dedup_key_cmp(const void *pa, const void *pb)
{
    const DedupKey *a = pa, *b = pb;

    if (a->a != b->a) {
        return a->a < b->a ? -1 : 1;
    }
    return a->b < b->b ? -1 : a->b > b->b;
}

/*
 * Clusters that hold the contents of keys after deduplication: one per
 * distinct content, and one more each time the references to a copy reach
 * refs_per_copy (the driver stops sharing a cluster at half the refcount
 * maximum, docs/interop/qcow2.txt 7.6).
 */
static uint64_t dedup_stored_clusters(GArray *keys, uint64_t refs_per_copy)
{
    uint64_t stored = 0;

    g_array_sort(keys, dedup_key_cmp);
    for (guint i = 0; i < keys->len; ) {
        const DedupKey *k = &g_array_index(keys, DedupKey, i);
        guint n = 1;

        while (i + n < keys->len &&
               !dedup_key_cmp(k, &g_array_index(keys, DedupKey, i + n))) {
            n++;
        }
        stored += DIV_ROUND_UP(n, refs_per_copy);
        i += n;
    }
    return stored;
}

static int measure_dedup_scan(BlockBackend *blk, const Qcow2Measure *m,
                              MeasureSource *src)
{
    DedupScan s = {
        .blk = blk,
        .src = src,
        .cluster_size = (uint64_t)1 << m->cluster_bits,
    };
    DedupWorker w[MEASURE_MAX_WORKERS] = { { 0 } };
    int workers = CLAMP(2 * (int)g_get_num_processors(), 2,
                        MEASURE_MAX_WORKERS);
    uint64_t refcount_max = m->refcount_order == 6 ? UINT64_MAX
                            : (UINT64_C(1) << (1 << m->refcount_order)) - 1;
    g_autoptr(GArray) keys = g_array_new(FALSE, FALSE, sizeof(DedupKey));

    s.batch = MAX(MEASURE_BATCH_BYTES / s.cluster_size, 1);
    g_mutex_init(&s.lock);
    for (int i = 0; i < workers; i++) {
        w[i].scan = &s;
        w[i].keys = g_array_new(FALSE, FALSE, sizeof(DedupKey));
        w[i].thread = g_thread_new("measure", dedup_scan_worker, &w[i]);
    }
    for (int i = 0; i < workers; i++) {
        g_thread_join(w[i].thread);
        g_array_append_vals(keys, w[i].keys->data, w[i].keys->len);
        g_array_free(w[i].keys, TRUE);
        src->partial_clusters += w[i].partial;
    }
    g_mutex_clear(&s.lock);
    if (s.ret < 0) {
        error_report("error while reading at byte %" PRIu64 ": %s",
                     s.err_offset, g_strerror(-s.ret));
        return s.ret;
    }
    src->hashed_clusters = keys->len;
    src->stored_clusters = dedup_stored_clusters(keys, refcount_max / 2 +
                                                       (refcount_max & 1));
    return 0;
}

/*
 * Clusters of the dedup index of a disk of virtual_clusters, whose image
 * has host_clusters without the index, once indexed clusters are in the
 * index.  The geometry is the one the options give or, by default, the one
 * the driver picks from the disk size: a log store of virtual_clusters / 32
 * entries (at least 16384, at most 2^20), rounded up to a power of two of
 * buckets, and enough incarnations (4 to 1024) to index the disk once.
 *
 * The estimate: two directory copies; the journal, room for two INSERT
 * records per log store slot plus 64 KiB; the reverse map (a u64 per host
 * cluster in blocks of cluster_size / 8) with a table sized, as the driver
 * does, for a file as large as the disk plus what it holds already, and a
 * block for every cluster_size / 8 host clusters; and one incarnation
 * table (no bucket split across clusters) per freeze.  The log store is frozen when an insert finds no room, which
 * the driver measured at 96-98% full: we assume 95%.  Beyond the
 * incarnation limit the oldest table's space is kept as the spare, so the
 * tables stop at the limit plus one.
 */
static uint64_t dedup_index_clusters(const Qcow2Measure *m,
                                     uint64_t virtual_clusters,
                                     uint64_t host_clusters,
                                     uint64_t indexed)
{
    uint64_t cluster_size = (uint64_t)1 << m->cluster_bits;
    uint64_t rmap_per_block = cluster_size / 8;
    uint64_t log_entries = m->dedup_log_entries ? m->dedup_log_entries
                           : MIN(MAX(virtual_clusters / 32, 16384), 1 << 20);
    uint64_t max_inc, slots, freezes, tables, table_clusters, rmap_blocks;
    uint64_t rmap_table;
    int bucket_bits = DEDUP_MIN_BUCKET_BITS;

    while (((uint64_t)DEDUP_SLOTS_PER_BUCKET << bucket_bits) < log_entries &&
           bucket_bits < DEDUP_MAX_BUCKET_BITS) {
        bucket_bits++;
    }
    slots = (uint64_t)DEDUP_SLOTS_PER_BUCKET << bucket_bits;
    max_inc = m->dedup_max_incarnations ? m->dedup_max_incarnations
              : MIN(MAX(DIV_ROUND_UP(MAX(virtual_clusters, 1), slots), 4),
                    1024);
    table_clusters = DIV_ROUND_UP((uint64_t)1 << bucket_bits,
                                  cluster_size / DEDUP_BUCKET_BYTES);
    freezes = indexed * 100 / (slots * 95);
    tables = freezes <= max_inc ? freezes : max_inc + 1;
    host_clusters += tables * table_clusters;
    rmap_blocks = indexed ? DIV_ROUND_UP(host_clusters, rmap_per_block) : 0;
    rmap_table = DIV_ROUND_UP((DIV_ROUND_UP(virtual_clusters + host_clusters,
                                            rmap_per_block) + 1) * 8,
                              cluster_size);

    return DIV_ROUND_UP(2 * ROUND_UP(DEDUP_DIR_HEADER_BYTES +
                                     DEDUP_DIR_ENTRY_BYTES * max_inc, 512),
                        cluster_size) +
           DIV_ROUND_UP(slots * DEDUP_JOURNAL_INSERT_BYTES * 2 +
                        DEDUP_JOURNAL_RESERVE, cluster_size) +
           rmap_table + rmap_blocks + tables * table_clusters;
}

/*
 * The qcow2 numbers.  src is NULL for --size; with dedup it holds the
 * result of the scan.  Preallocation allocates every data cluster, and
 * which clusters a backing file would provide is unknown: both count all.
 */
static bool measure_qcow2(const Qcow2Measure *m, uint64_t virtual_size,
                          const MeasureSource *src, MeasureInfo *info,
                          Error **errp)
{
    uint64_t cluster_size = (uint64_t)1 << m->cluster_bits;
    uint64_t disk = DIV_ROUND_UP(virtual_size, cluster_size);
    bool preallocated = m->prealloc == PREALLOC_MODE_FALLOC ||
                        m->prealloc == PREALLOC_MODE_FULL;
    uint64_t tables, full, data, unique, index;

    if (!qcow2_table_clusters(m, virtual_size, &tables, errp)) {
        return false;
    }
    full = tables + disk + qcow2_refcount_clusters(m, tables + disk);
    if (preallocated || (src && m->has_backing)) {
        data = disk;
    } else {
        data = src ? src->data_clusters : 0;
    }
    info->fully_allocated = full * cluster_size;
    info->required = (full - disk + data) * cluster_size;
    if (!m->dedup) {
        return true;
    }

    /* Like required: refcounts sized for every cluster of the disk. */
    unique = src ? src->stored_clusters + src->partial_clusters : 0;
    index = dedup_index_clusters(m, disk, tables + unique,
                                 src ? src->stored_clusters : 0);
    data = preallocated ? disk : unique;
    info->has_dedup = true;
    info->dedup_required = (tables + data + index +
                            qcow2_refcount_clusters(m, tables + disk + index))
                           * cluster_size;
    info->dedup_ratio = unique ? (double)(src->hashed_clusters +
                                          src->partial_clusters) / unique
                               : 1.0;
    return true;
}

static void measure_print(OutputFormat output, const MeasureInfo *info)
{
    g_autoptr(JsonBuilder) b = NULL;
    g_autoptr(JsonNode) root = NULL;

    if (output == OFORMAT_HUMAN) {
        printf("required size: %" PRIu64 "\n", info->required);
        printf("fully allocated size: %" PRIu64 "\n", info->fully_allocated);
        if (info->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", info->bitmaps);
        }
        if (info->has_dedup) {
            printf("deduplicated required size: %" PRIu64 "\n",
                   info->dedup_required);
            printf("dedup ratio: %.2f\n", info->dedup_ratio);
        }
        return;
    }
    /* QEMU's member order; its sizes are signed (2^63 prints negative). */
    b = json_builder_new();
    json_builder_begin_object(b);
    if (info->has_bitmaps) {
        json_builder_set_member_name(b, "bitmaps");
        json_builder_add_int_value(b, (int64_t)info->bitmaps);
    }
    json_builder_set_member_name(b, "required");
    json_builder_add_int_value(b, (int64_t)info->required);
    json_builder_set_member_name(b, "fully-allocated");
    json_builder_add_int_value(b, (int64_t)info->fully_allocated);
    if (info->has_dedup) {
        json_builder_set_member_name(b, "deduplicated-required");
        json_builder_add_int_value(b, (int64_t)info->dedup_required);
        json_builder_set_member_name(b, "dedup-ratio");
        json_builder_add_double_value(b, info->dedup_ratio);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    print_json(root);
}

/*
 * The target's options, checked against its creation options; only raw
 * and qcow2 can be measured.  NULL after printing why not.
 */
static QDict *measure_target_opts(BlockDriver *drv, const char *options)
{
    g_autofree QemuOptDesc *all = bdrv_create_opts_with_protocol(drv);
    g_autoptr(QDict) opts = NULL;
    Error *err = NULL;

    opts = options ? parse_option_list(options, &err) : qdict_new();
    if (!opts || !qemu_opts_validate(opts, all, NULL, &err)) {
        error_report_err(err);
        error_report("Invalid options for file format '%s'",
                     bdrv_driver_name(drv));
        return NULL;
    }
    if (strcmp(bdrv_driver_name(drv), "raw") &&
        strcmp(bdrv_driver_name(drv), "qcow2")) {
        error_report("Block driver '%s' does not support size measurement",
                     bdrv_driver_name(drv));
        return NULL;
    }
    bdrv_create_opts_defaults(drv, opts);
    return g_steal_pointer(&opts);
}

/*
 * Persistent bitmaps exist in qcow2 version 3 images, and measure reports
 * their size (which we cannot read yet: always 0) when both the source and
 * the target can have them.
 */
static bool can_have_bitmaps(BlockDriverState *bs)
{
    g_autoptr(JsonNode) info = bdrv_get_specific_info(bs);
    JsonObject *o = info ? json_node_get_object(info) : NULL;
    JsonObject *data;

    if (!o || g_strcmp0(json_object_get_string_member_with_default(o, "type",
                                                                   NULL),
                        "qcow2")) {
        return false;
    }
    data = json_object_get_object_member(o, "data");
    return data && g_strcmp0(json_object_get_string_member_with_default(
                                 data, "compat", NULL), "0.10");
}

/* Measure for the target format drv; blk is the source or NULL. */
static int measure(BlockDriver *drv, const QDict *opts, BlockBackend *blk,
                   int64_t size, MeasureInfo *info)
{
    g_autoptr(GArray) runs = g_array_new(FALSE, FALSE, sizeof(MeasureRun));
    MeasureSource src = { .virtual_size = size, .runs = runs };
    Qcow2Measure m = { 0 };
    Error *err = NULL;
    int ret;

    if (!strcmp(bdrv_driver_name(drv), "raw")) {
        /* A raw image holds the whole disk, in whole sectors. */
        info->required = ROUND_UP((uint64_t)size, SECTOR_SIZE);
        info->fully_allocated = info->required;
        return 0;
    }
    if (!measure_qcow2_opts(opts, &m, &err)) {
        error_report_err(err);
        return -EINVAL;
    }
    if (blk) {
        ret = measure_find_data(blk, (uint64_t)1 << m.cluster_bits, &src);
        if (ret < 0) {
            error_report("Could not read file metadata: %s", g_strerror(-ret));
            return ret;
        }
        if (m.dedup && (ret = measure_dedup_scan(blk, &m, &src)) < 0) {
            return ret;
        }
        info->has_bitmaps = m.version >= 3 && can_have_bitmaps(blk_bs(blk));
    }
    if (!measure_qcow2(&m, size, blk ? &src : NULL, info, &err)) {
        error_report_err(err);
        return -EINVAL;
    }
    return 0;
}

static int img_measure(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "size", required_argument, NULL, OPTION_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    g_autofree char *options = NULL;
    g_autoptr(QDict) opts = NULL;
    const char *fmt = NULL, *out_fmt = "raw", *snapshot = NULL;
    const char *filename = NULL;
    bool image_opts = false, force_share = false;
    OutputFormat output = OFORMAT_HUMAN;
    MeasureInfo info = { 0 };
    BlockBackend *blk = NULL;
    BlockDriver *drv;
    Error *err = NULL;
    int64_t size = -1;
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            options = accumulate_options(options, optarg);
            break;
        case 'l':
            snapshot = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_OUTPUT:
            output = parse_output_format(optarg);
            break;
        case OPTION_SIZE:
            size = cvtnum("image size", optarg);
            if (size < 0) {
                return 1;
            }
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind < argc) {
        filename = argv[optind];
    }
    if (optind + 1 < argc) {
        error_report("At most one filename argument is allowed.");
        return 1;
    }
    if (filename && size >= 0) {
        error_report("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!filename && (image_opts || fmt || snapshot)) {
        error_report("--image-opts, -f, and -l require a filename argument.");
        return 1;
    }
    if (!filename && size < 0) {
        error_report("Either --size N or one filename must be specified.");
        return 1;
    }
    if (snapshot) {
        unsupported("measure", "loading internal snapshots (-l)");
    }

    if (filename) {
        blk = img_open(image_opts, filename, fmt, 0, false, force_share);
        if (!blk) {
            return 1;
        }
        size = blk_getlength(blk);
        if (size < 0) {
            error_report("Could not get size of %s: %s", filename,
                         g_strerror(-size));
            goto out;
        }
    }
    drv = find_format(out_fmt, &err);
    if (!drv) {
        error_report_err(err);
        goto out;
    }
    opts = measure_target_opts(drv, options);
    if (opts && measure(drv, opts, blk, size, &info) == 0) {
        measure_print(output, &info);
        ret = 0;
    }
out:
    blk_unref(blk);
    return ret;
}

/* snapshot */

static void list_snapshots(BlockDriverState *bs)
{
    g_autoptr(GString) out = g_string_new(NULL);
    QEMUSnapshotInfo *list;
    int n = bdrv_snapshot_list(bs, &list);

    if (n > 0) {
        g_string_append(out, "Snapshot list:\n");
        bdrv_snapshot_dump_header(out);
        for (int i = 0; i < n; i++) {
            bdrv_snapshot_dump(out, &list[i]);
        }
        fputs(out->str, stdout);
    }
    bdrv_snapshot_list_free(list, MAX(n, 0));
}

/*
 * Internal snapshots: listing works; creating, applying and deleting them
 * is not supported yet, so those actions stop after opening the image.
 */
static int img_snapshot(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    bool image_opts = false, force_share = false;
    BlockBackend *blk;
    int c, action = 0;

    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action) {
                error_exit("Cannot mix '-l', '-a', '-c', '-d'");
            }
            action = c;
            break;
        case 'q':
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        error_exit("Expecting one image file name");
    }
    action = action ? action : 'l';
    blk = img_open(image_opts, argv[optind], NULL,
                   action == 'l' ? 0 : BDRV_O_RDWR, false, force_share);
    if (!blk) {
        return 1;
    }
    if (action == 'l') {
        list_snapshots(blk_bs(blk));
        blk_unref(blk);
        return 0;
    }
    blk_unref(blk);
    unsupported("snapshot", action == 'a' ? "applying snapshots (-a)"
                : action == 'c' ? "creating snapshots (-c)"
                : "deleting snapshots (-d)");
}

/* Commands and main */

static int img_unsupported(int argc, char **argv)
{
    (void)argc;
    error_report("'%s' is not supported yet by this qemu-img", argv[0]);
    return 1;
}

typedef struct ImgCmd {
    const char *name;
    int (*handler)(int argc, char **argv);
} ImgCmd;

static const ImgCmd img_cmds[] = {
    { "amend", img_amend },
    { "bench", img_unsupported },
    { "bitmap", img_unsupported },
    { "check", img_check },
    { "commit", img_unsupported },
    { "compare", img_compare },
    { "convert", img_convert },
    { "create", img_create },
    { "dd", img_unsupported },
    { "info", img_info },
    { "map", img_map },
    { "measure", img_measure },
    { "snapshot", img_snapshot },
    { "rebase", img_unsupported },
    { "resize", img_resize },
    { NULL, NULL },
};

static void G_GNUC_NORETURN version(void)
{
    printf("qemu-img version " QEMU_IMG_VERSION " (qemu-dedup)\n"
           "An independent implementation of QEMU's disk image tool, written "
           "for the\nqemu-dedup project; output and exit codes follow QEMU "
           QEMU_IMG_VERSION ".\n");
    exit(EXIT_SUCCESS);
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd;
    int c;

    error_set_progname(argv[0]);
    bdrv_init();
    if (argc < 2) {
        error_exit("Not enough arguments");
    }
    while ((c = getopt_long(argc, argv, "+:hVT:", long_options, NULL)) != -1) {
        switch (c) {
        case 'V':
            version();
        case 'T':
            error_report("tracing (-T) is not supported");
            return EXIT_FAILURE;
        default:
            common_option(c, argv);
        }
    }
    if (optind >= argc) {
        error_exit("Not enough arguments");
    }
    cmd = argv[optind];
    argc -= optind;
    argv += optind;
    optind = 0;     /* restart getopt for the command's own options */
    for (const ImgCmd *ic = img_cmds; ic->name; ic++) {
        if (!strcmp(cmd, ic->name)) {
            return ic->handler(argc, argv);
        }
    }
    error_exit("Command not found: %s", cmd);
}

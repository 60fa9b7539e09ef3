/*
 * qemu-io: exercise a block device from the command line.
 *
 *     qemu-io [OPTIONS]... [-c COMMAND]... [FILE]
 *
 * Opens FILE, if given, through blk_new_open(), then runs the -c commands
 * in order, or without -c reads commands from standard input, one a line,
 * after a "qemu-io> " prompt, until end of input or "quit".  The command
 * set lives in qemu-io-cmds.c; this file owns the open image and the
 * commands that replace it (open, close) or end the session (quit).
 *
 * Open defaults, as in the stock tool: read-write, writethrough caching
 * (each write is flushed before it completes), discard=unmap.
 *
 * Exit status: 1 if the image given on the command line cannot be opened,
 * if the options are invalid, or if any command failed; otherwise 0.
 * Asynchronous requests that fail do not count as failed commands.
 */
#include "qemu/osdep.h"
#include "qemu-io.h"

#include <getopt.h>
#include <poll.h>

#define QEMU_IO_VERSION "7.2.0"
#define PROMPT          "qemu-io> "

static BlockBackend *qemuio_blk;
static bool quit_requested;

/* How an image is opened: the part -t/-n/-d/-i/-k/-r/-U decide. */
typedef struct OpenParams {
    int flags;              /* BDRV_O_* */
    bool writethrough;
    bool native_aio;
} OpenParams;

static void open_params_init(OpenParams *p)
{
    p->flags = BDRV_O_UNMAP;
    p->writethrough = true;
    p->native_aio = false;
}

/* -t: the host page cache (NOCACHE), flushes (NO_FLUSH), writethrough. */
static bool parse_cache_mode(const char *mode, OpenParams *p)
{
    int flags = p->flags & ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    bool writethrough;

    if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
        flags |= BDRV_O_NOCACHE;
        writethrough = false;
    } else if (!strcmp(mode, "directsync")) {
        flags |= BDRV_O_NOCACHE;
        writethrough = true;
    } else if (!strcmp(mode, "writeback")) {
        writethrough = false;
    } else if (!strcmp(mode, "unsafe")) {
        flags |= BDRV_O_NO_FLUSH;
        writethrough = false;
    } else if (!strcmp(mode, "writethrough")) {
        writethrough = true;
    } else {
        error_report("Invalid cache option: %s", mode);
        return false;
    }
    p->flags = flags;
    p->writethrough = writethrough;
    return true;
}

static bool parse_discard_mode(const char *mode, OpenParams *p)
{
    if (!strcmp(mode, "unmap") || !strcmp(mode, "on")) {
        p->flags |= BDRV_O_UNMAP;
    } else if (!strcmp(mode, "ignore") || !strcmp(mode, "off")) {
        p->flags &= ~BDRV_O_UNMAP;
    } else {
        error_report("Invalid discard option: %s", mode);
        return false;
    }
    return true;
}

/*
 * -i: our file driver has one engine (a thread pool), so every mode runs
 * on it; only native AIO's requirement of O_DIRECT is kept, because the
 * stock tool refuses to open the image without it.
 */
static bool parse_aio_mode(const char *mode, OpenParams *p)
{
    if (!strcmp(mode, "native")) {
        p->native_aio = true;
    } else if (!strcmp(mode, "threads") || !strcmp(mode, "io_uring")) {
        p->native_aio = false;
    } else {
        error_report("Invalid aio option: %s", mode);
        return false;
    }
    return true;
}

static void report_unsupported(const char *what)
{
    error_report("%s is not supported", what);
}

/*
 * Open name (NULL: everything is in opts, as with --image-opts) as the
 * current image.  Takes over opts.
 */
static int openfile(const char *name, QDict *opts, const OpenParams *p)
{
    Error *err = NULL;
    BlockBackend *blk = NULL;

    if (qemuio_blk) {
        error_report("file open already, try 'help close'");
        qdict_unref(opts);
        return -EBUSY;
    }
    /* Combinations the stock tool's block layer refuses at open time. */
    if ((p->flags & BDRV_O_FORCE_SHARE) && (p->flags & BDRV_O_RDWR)) {
        error_setg(&err, "force-share=on can only be used with read-only "
                   "images");
    } else if (p->native_aio && !(p->flags & BDRV_O_NOCACHE)) {
        error_setg(&err, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
    } else {
        blk = blk_new_open(name, g_steal_pointer(&opts), p->flags, &err);
    }
    qdict_unref(opts);
    /* read-only=on among the options contradicts a read-write open. */
    if (blk && (p->flags & BDRV_O_RDWR) && bdrv_is_read_only(blk_bs(blk))) {
        blk_unref(g_steal_pointer(&blk));
        error_setg(&err, "Block node is read-only");
    }
    if (!blk) {
        if (name) {
            error_report("can't open device %s: %s", name,
                         error_get_pretty(err));
        } else {
            error_report("can't open: %s", error_get_pretty(err));
        }
        error_free(err);
        return -EINVAL;
    }
    blk_set_enable_write_cache(blk, !p->writethrough);
    qemuio_blk = blk;
    return 0;
}

/* ------------------------------------------------------ open/close/quit */

static const QemuIOCommand open_cmd;

static void open_help(void)
{
    printf(
" Open an image for the other commands; only one can be open at a time.\n"
" Without -o driver=FMT the format is probed.\n"
"\n"
" Example: 'open -r -o driver=qcow2 /tmp/disk.qcow2' opens an image\n"
" read-only.\n"
"\n"
" -r, -- read-only\n"
" -s, -- snapshot mode (not supported)\n"
" -C, -- copy-on-read (not supported)\n"
" -n, -- bypass the host page cache, same as -t none\n"
" -U, -- allow other writers (read-only images only)\n"
" -k, -- native AIO, same as -i native\n"
" -i, -- AIO mode: threads, native or io_uring\n"
" -t, -- cache mode: none, writeback, writethrough, directsync, unsafe\n"
" -d, -- discard mode: ignore or unmap\n"
" -o, -- block layer options key=value,... (may be repeated)\n"
"\n");
}

static int open_f(BlockBackend *blk, int argc, char **argv)
{
    g_autoptr(QDict) opts = qdict_new();
    const char *name = NULL;
    bool readonly = false;
    Error *err = NULL;
    OpenParams p;
    int c;

    (void)blk;
    open_params_init(&p);
    while ((c = getopt(argc, argv, "snCro:kt:d:i:U")) != -1) {
        switch (c) {
        case 's':
            report_unsupported("Snapshot mode (-s)");
            return -ENOTSUP;
        case 'C':
            report_unsupported("Copy-on-read (-C)");
            return -ENOTSUP;
        case 'n':
            p.flags |= BDRV_O_NOCACHE;
            p.writethrough = false;
            break;
        case 'r':
            readonly = true;
            break;
        case 'k':
            p.native_aio = true;
            break;
        case 't':
            if (!parse_cache_mode(optarg, &p)) {
                return -EINVAL;
            }
            break;
        case 'd':
            if (!parse_discard_mode(optarg, &p)) {
                return -EINVAL;
            }
            break;
        case 'i':
            if (!parse_aio_mode(optarg, &p)) {
                return -EINVAL;
            }
            break;
        case 'o':
            if (!keyval_parse_into(opts, optarg, NULL, &err)) {
                error_report_err(err);
                return -EINVAL;
            }
            break;
        case 'U':
            p.flags |= BDRV_O_FORCE_SHARE;
            break;
        default:
            qemuio_command_usage(&open_cmd);
            return -EINVAL;
        }
    }
    if (!readonly) {
        p.flags |= BDRV_O_RDWR;
    }
    if (optind == argc - 1) {
        name = argv[optind];
    } else if (optind != argc) {
        qemuio_command_usage(&open_cmd);
        return -EINVAL;
    }
    return openfile(name, g_steal_pointer(&opts), &p);
}

static const QemuIOCommand open_cmd = {
    .name = "open",
    .altname = "o",
    .func = open_f,
    .argmin = 1,
    .argmax = -1,
    .args = "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    .oneline = "open the file specified by path",
    .help = open_help,
};

static int close_f(BlockBackend *blk, int argc, char **argv)
{
    (void)blk, (void)argc, (void)argv;
    qemuio_aio_drain();
    blk_unref(qemuio_blk);
    qemuio_blk = NULL;
    return 0;
}

static const QemuIOCommand close_cmd = {
    .name = "close",
    .altname = "c",
    .func = close_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .oneline = "close the current open file",
};

static int quit_f(BlockBackend *blk, int argc, char **argv)
{
    (void)blk, (void)argc, (void)argv;
    quit_requested = true;
    return 0;
}

static const QemuIOCommand quit_cmd = {
    .name = "quit",
    .altname = "q",
    .func = quit_f,
    .argmin = 0,
    .argmax = -1,
    .oneline = "exit the program",
};

/* ------------------------------------------------------ interactive */

static GString *input;      /* read from stdin, not yet handed out */
static bool input_eof;

/*
 * The next line of standard input without its newline (the last one may
 * lack it), or NULL at end of input.  While waiting, results of finished
 * asynchronous requests are printed.  Reads the descriptor directly: a
 * stdio buffer would hide pending lines from poll().
 */
static char *next_input_line(void)
{
    int notify = qemuio_aio_notifier();

    for (;;) {
        char *nl = memchr(input->str, '\n', input->len);
        struct pollfd pfd[2] = {
            { .fd = STDIN_FILENO, .events = POLLIN },
            { .fd = notify, .events = POLLIN },
        };

        if (nl) {
            size_t n = nl - input->str;
            char *line = g_strndup(input->str, n);
            g_string_erase(input, 0, n + 1);
            return line;
        }
        if (input_eof) {
            char *last = input->len ? g_strdup(input->str) : NULL;
            g_string_truncate(input, 0);
            return last;
        }
        if (poll(pfd, 2, -1) < 0) {
            if (errno != EINTR) {
                input_eof = true;
            }
            continue;
        }
        if (pfd[1].revents) {
            qemuio_aio_report();
        }
        if (pfd[0].revents) {
            char buf[4096];
            ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

            if (n > 0) {
                g_string_append_len(input, buf, n);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                input_eof = true;
            }
        }
    }
}

/* Returns false if any command failed. */
static bool interactive_loop(void)
{
    bool ok = true;

    input = g_string_new(NULL);
    while (!quit_requested) {
        g_autofree char *line = NULL;

        printf("%s", PROMPT);
        fflush(stdout);
        line = next_input_line();
        if (!line) {
            break;
        }
        if (qemuio_command(qemuio_blk, line) < 0) {
            ok = false;
        }
    }
    g_string_free(input, TRUE);
    return ok;
}

static bool command_list_loop(GPtrArray *cmds)
{
    bool ok = true;

    for (guint i = 0; i < cmds->len && !quit_requested; i++) {
        if (qemuio_command(qemuio_blk, g_ptr_array_index(cmds, i)) < 0) {
            ok = false;
        }
    }
    return ok;
}

/* ------------------------------------------------------------- main */

static void usage(void)
{
    printf(
"Usage: qemu-io [OPTIONS]... [-c STRING]... [file]\n"
"Run qemu-io commands on a disk image.\n"
"\n"
"  --image-opts         file is an option string such as\n"
"                       driver=qcow2,file.filename=disk.qcow2\n"
"  -c, --cmd STRING     run this command; may be repeated (run in order);\n"
"                       without -c commands are read from standard input\n"
"  -f, --format FMT     image format (default: probe)\n"
"  -r, --read-only      open the image read-only\n"
"  -n, --nocache        bypass the host page cache, same as -t none\n"
"  -m, --misalign       misalign I/O buffers\n"
"  -k, --native-aio     same as -i native\n"
"  -i, --aio=MODE       AIO mode: threads, native or io_uring\n"
"  -t, --cache=MODE     none, writeback, writethrough (default),\n"
"                       directsync or unsafe\n"
"  -d, --discard=MODE   ignore or unmap (default)\n"
"  -U, --force-share    allow other writers (read-only images only)\n"
"  -h, --help           print this help and exit\n"
"  -V, --version        print the version and exit\n"
"\n"
"'qemu-io -c help' lists the commands.\n");
}

enum {
    OPTION_OBJECT = 256,
    OPTION_IMAGE_OPTS,
};

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 }
    };
    g_autoptr(GPtrArray) cmds = g_ptr_array_new();
    const char *format = NULL;
    bool readonly = false, image_opts = false, ok;
    OpenParams p;
    int c;

    error_set_progname(argv[0]);
    bdrv_init();
    open_params_init(&p);

    while ((c = getopt_long(argc, argv, "hVc:d:f:rsnCmki:t:T:U",
                            long_options, NULL)) != -1) {
        switch (c) {
        case 's':
            report_unsupported("Snapshot mode (-s)");
            return 1;
        case 'C':
            report_unsupported("Copy-on-read (-C)");
            return 1;
        case OPTION_OBJECT:
            report_unsupported("--object");
            return 1;
        case 'T':
            warn_report("tracing is not supported, -T ignored");
            break;
        case 'n':
            p.flags |= BDRV_O_NOCACHE;
            p.writethrough = false;
            break;
        case 'd':
            if (!parse_discard_mode(optarg, &p)) {
                return 1;
            }
            break;
        case 'f':
            format = optarg;
            break;
        case 'c':
            g_ptr_array_add(cmds, optarg);
            break;
        case 'r':
            readonly = true;
            break;
        case 'm':
            qemuio_misalign = true;
            break;
        case 'k':
            p.native_aio = true;
            break;
        case 'i':
            if (!parse_aio_mode(optarg, &p)) {
                return 1;
            }
            break;
        case 't':
            if (!parse_cache_mode(optarg, &p)) {
                return 1;
            }
            break;
        case 'U':
            p.flags |= BDRV_O_FORCE_SHARE;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case 'V':
            printf("qemu-io version " QEMU_IO_VERSION "\n");
            return 0;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 1;
        }
    }
    if (argc - optind > 1) {
        usage();
        return 1;
    }
    if (format && image_opts) {
        error_report("--image-opts and -f are mutually exclusive");
        return 1;
    }
    if (!readonly) {
        p.flags |= BDRV_O_RDWR;
    }

    if (optind < argc) {
        const char *name = argv[optind];
        QDict *opts = NULL;

        if (image_opts) {
            Error *err = NULL;
            opts = keyval_parse(name, NULL, &err);
            if (!opts) {
                error_report_err(err);
                return 1;
            }
            name = NULL;
        } else if (format) {
            opts = qdict_new();
            qdict_put_str(opts, "driver", format);
        }
        if (openfile(name, opts, &p) < 0) {
            return 1;
        }
    }

    qemuio_add_command(&open_cmd);
    qemuio_add_command(&close_cmd);
    qemuio_add_command(&quit_cmd);

    ok = cmds->len ? command_list_loop(cmds) : interactive_loop();

    /* Like the stock tool's final drain: pending results come out now. */
    qemuio_aio_drain();
    blk_unref(qemuio_blk);
    return ok ? 0 : 1;
}

/*
 * qemu-storage-daemon: serve block nodes over NBD, steered over QMP.
 *
 * Options are processed strictly in order, each as QEMU's daemon does:
 * --blockdev opens a node graph, --nbd-server starts the NBD server,
 * --export exports a node, --chardev creates a listening UNIX socket and
 * --monitor serves QMP on one.  --blockdev, --nbd-server and --export go
 * through the same code (and the same schema checks) as blockdev-add,
 * nbd-server-start and block-export-add.
 *
 * Life cycle: options -> pidfile -> "ready" (the --daemonize parent exits
 * 0 here) -> main loop -> on quit or SIGTERM/SIGINT/SIGHUP: remove every
 * export (BLOCK_EXPORT_DELETED each), flush and close every node newest
 * first, send the monitors what is queued, remove the pidfile, exit 0.
 * --daemonize forks before anything else runs (the NBD server starts
 * threads, which a fork would lose); the child reports success or failure
 * through a pipe.
 */
#include "qemu/osdep.h"
#include <getopt.h>
#include <glib-unix.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "block/block.h"
#include "qdict-json.h"
#include "qapi-schema.h"
#include "qmp.h"
#include "qmp-commands.h"

typedef struct Chardev {
    char *id;
    char *path;
    int listen_fd;
    int client_fd;      /* accepted at start-up for wait=on, or -1 */
    bool has_monitor;
} Chardev;

static GList *chardevs;
static GMainLoop *main_loop;
static char *pidfile_path;
static int pidfile_fd = -1;
static int daemon_ready_fd = -1;

enum {
    OPT_BLOCKDEV = 256,
    OPT_CHARDEV,
    OPT_DAEMONIZE,
    OPT_EXPORT,
    OPT_MONITOR,
    OPT_NBD_SERVER,
    OPT_PIDFILE,
};

static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "blockdev", required_argument, NULL, OPT_BLOCKDEV },
    { "chardev", required_argument, NULL, OPT_CHARDEV },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "export", required_argument, NULL, OPT_EXPORT },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "nbd-server", required_argument, NULL, OPT_NBD_SERVER },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { NULL, 0, NULL, 0 },
};

static void help(void)
{
    printf(
"Usage: qemu-storage-daemon [options]\n"
"Serve disk images over NBD, controlled through QMP.\n"
"\n"
"  -h, --help             print this help and exit\n"
"  -V, --version          print the version and exit\n"
"\n"
"  --blockdev [driver=]<driver>,node-name=<N>[,discard=ignore|unmap]\n"
"             [,cache.direct=on|off][,cache.no-flush=on|off]\n"
"             [,read-only=on|off][,detect-zeroes=on|off|unmap]\n"
"             [,<driver options>...]\n"
"                         open a block node graph (drivers: file, raw,\n"
"                         qcow2; children as file.<option>=... or\n"
"                         file=<node-name>)\n"
"\n"
"  --chardev socket,id=<id>,path=<path>,server=on[,wait=on|off]\n"
"                         listen on a UNIX socket for a monitor;\n"
"                         wait=on (the default) blocks until the first\n"
"                         client connects\n"
"\n"
"  --daemonize            run in the background; the parent exits once\n"
"                         the daemon is ready\n"
"\n"
"  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]\n"
"           [,writable=on|off][,writethrough=on|off][,description=<text>]\n"
"                         export a node over NBD (needs --nbd-server)\n"
"\n"
"  --monitor [chardev=]<id>[,mode=control][,pretty=on|off]\n"
"                         serve QMP on a --chardev socket\n"
"\n"
"  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n"
"               [,max-connections=<n>]\n"
"  --nbd-server addr.type=unix,addr.path=<path>[,max-connections=<n>]\n"
"                         start the NBD server\n"
"\n"
"  --pidfile <path>       write the process ID to <path> once ready\n");
}

static void version(void)
{
    printf("qemu-storage-daemon version %s (%s)\n", QEMU_VERSION,
           QEMU_PKGVERSION);
}

/* keyval options as a schema-checked JSON object. */
static JsonNode *keyval_to_checked(const char *str, const char *implied_key,
                                   const char *type, Error **errp)
{
    g_autoptr(QDict) opts = keyval_parse(str, implied_key, errp);
    g_autoptr(JsonNode) nested = NULL;

    if (!opts) {
        return NULL;
    }
    nested = qdict_to_json_nested(opts, errp);
    if (!nested) {
        return NULL;
    }
    return qapi_check_type(type, nested, true, errp);
}

static bool opt_blockdev(const char *arg, Error **errp)
{
    QDict *opts = keyval_parse(arg, "driver", errp);
    g_autoptr(JsonNode) nested = NULL;
    g_autoptr(JsonNode) checked = NULL;

    if (!opts) {
        return false;
    }
    nested = qdict_to_json_nested(opts, errp);
    if (nested) {
        checked = qapi_check_command_args("blockdev-add", nested, true, errp);
    }
    if (!checked) {
        qdict_unref(opts);
        return false;
    }
    return qmp_blockdev_open(opts, errp) != NULL;
}

static bool opt_nbd_server(const char *arg, Error **errp)
{
    g_autoptr(JsonNode) opts = keyval_to_checked(arg, NULL,
                                                 "NbdServerOptions", errp);

    return opts && qmp_nbd_server_start_options(json_node_get_object(opts),
                                                errp);
}

static bool opt_export(const char *arg, Error **errp)
{
    g_autoptr(JsonNode) opts = keyval_to_checked(arg, "type",
                                                 "BlockExportOptions", errp);

    return opts && qmp_block_export_add_options(json_node_get_object(opts),
                                                errp);
}

static Chardev *chardev_find(const char *id)
{
    for (GList *l = chardevs; l; l = l->next) {
        Chardev *chr = l->data;
        if (!strcmp(chr->id, id)) {
            return chr;
        }
    }
    return NULL;
}

static int unix_listen(const char *path, Error **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return -1;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        listen(fd, 16) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static const QemuOptDesc chardev_opts[] = {
    { "backend", QEMU_OPT_STRING },
    { "id", QEMU_OPT_STRING },
    { "path", QEMU_OPT_STRING },
    { "server", QEMU_OPT_BOOL },
    { "wait", QEMU_OPT_BOOL },
    { NULL },
};

static bool opt_chardev(const char *arg, Error **errp)
{
    g_autoptr(QDict) opts = keyval_parse(arg, "backend", errp);
    const char *backend, *id, *path;
    Chardev *chr;

    if (!opts || !qemu_opts_validate(opts, chardev_opts, NULL, errp)) {
        return false;
    }
    backend = qemu_opt_get(opts, "backend");
    id = qemu_opt_get(opts, "id");
    path = qemu_opt_get(opts, "path");
    if (!backend || strcmp(backend, "socket")) {
        error_setg(errp, "chardev backend '%s' is not supported (only "
                   "'socket')", backend ? backend : "");
        return false;
    }
    if (!id || !path) {
        error_setg(errp, "Parameter '%s' is missing", id ? "path" : "id");
        return false;
    }
    if (!qemu_opt_get_bool(opts, "server", false)) {
        error_setg(errp, "only server=on sockets are supported");
        return false;
    }
    if (chardev_find(id)) {
        error_setg(errp, "chardev '%s' already exists", id);
        return false;
    }
    chr = g_new0(Chardev, 1);
    chr->listen_fd = unix_listen(path, errp);
    if (chr->listen_fd < 0) {
        g_free(chr);
        return false;
    }
    chr->id = g_strdup(id);
    chr->path = g_strdup(path);
    chr->client_fd = -1;
    chardevs = g_list_append(chardevs, chr);
    if (qemu_opt_get_bool(opts, "wait", true)) {
        info_report("waiting for a connection on %s", path);
        do {
            chr->client_fd = accept4(chr->listen_fd, NULL, NULL,
                                     SOCK_CLOEXEC);
        } while (chr->client_fd < 0 && errno == EINTR);
    }
    return true;
}

static const QemuOptDesc monitor_opts[] = {
    { "chardev", QEMU_OPT_STRING },
    { "mode", QEMU_OPT_STRING },
    { "pretty", QEMU_OPT_BOOL },
    { NULL },
};

static bool opt_monitor(const char *arg, Error **errp)
{
    g_autoptr(QDict) opts = keyval_parse(arg, "chardev", errp);
    const char *id, *mode;
    Chardev *chr;

    if (!opts || !qemu_opts_validate(opts, monitor_opts, NULL, errp)) {
        return false;
    }
    id = qemu_opt_get(opts, "chardev");
    mode = qemu_opt_get(opts, "mode");
    if (!id) {
        error_setg(errp, "Parameter 'chardev' is missing");
        return false;
    }
    if (mode && strcmp(mode, "control")) {
        error_setg(errp, "Only QMP is supported");
        return false;
    }
    chr = chardev_find(id);
    if (!chr) {
        error_setg(errp, "chardev \"%s\" not found", id);
        return false;
    }
    if (chr->has_monitor) {
        error_setg(errp, "chardev \"%s\" is already in use", id);
        return false;
    }
    chr->has_monitor = true;
    qmp_monitor_new(chr->listen_fd, chr->client_fd,
                    qemu_opt_get_bool(opts, "pretty", false));
    return true;
}

/* The pidfile stays locked while we run, so a second daemon cannot
 * overwrite it. */
static bool pidfile_write(Error **errp)
{
    char buf[32];
    int len;

    pidfile_fd = open(pidfile_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pidfile_fd < 0) {
        error_setg_errno(errp, errno, "Could not create '%s'", pidfile_path);
        return false;
    }
    if (lockf(pidfile_fd, F_TLOCK, 0) < 0) {
        error_setg_errno(errp, errno, "Cannot lock pid file");
        goto fail;
    }
    len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(pidfile_fd, 0) < 0 || write(pidfile_fd, buf, len) != len) {
        error_setg_errno(errp, errno, "Failed to write pid file");
        goto fail;
    }
    return true;

fail:
    close(pidfile_fd);
    pidfile_fd = -1;
    return false;
}

/* Fork; the parent only waits for the child's verdict. */
static void daemonize_start(void)
{
    int fds[2];
    pid_t pid;
    ssize_t n;
    char c;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        error_report("Failed to create pipe: %s", g_strerror(errno));
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        error_report("Failed to fork: %s", g_strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        close(fds[1]);
        do {
            n = read(fds[0], &c, 1);
        } while (n < 0 && errno == EINTR);
        /* No byte: the child failed and already said why. */
        exit(n == 1 && c == 'R' ? 0 : 1);
    }
    close(fds[0]);
    daemon_ready_fd = fds[1];
    setsid();
}

/* Detach from the terminal and let the parent exit. */
static void daemonize_finish(void)
{
    int null = open("/dev/null", O_RDWR);
    char c = 'R';

    if (chdir("/") < 0 || null < 0) {
        error_report("Failed to detach: %s", g_strerror(errno));
        exit(1);
    }
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    close(null);
    while (write(daemon_ready_fd, &c, 1) < 0 && errno == EINTR) {
        continue;
    }
    close(daemon_ready_fd);
}

static bool process_option(int c, const char *arg, Error **errp)
{
    switch (c) {
    case OPT_BLOCKDEV:
        return opt_blockdev(arg, errp);
    case OPT_CHARDEV:
        return opt_chardev(arg, errp);
    case OPT_EXPORT:
        return opt_export(arg, errp);
    case OPT_MONITOR:
        return opt_monitor(arg, errp);
    case OPT_NBD_SERVER:
        return opt_nbd_server(arg, errp);
    case OPT_PIDFILE:
        /* Absolute, because --daemonize changes directory to /. */
        g_free(pidfile_path);
        pidfile_path = g_canonicalize_filename(arg, NULL);
        return true;
    }
    return true;
}

/* First pass: only --daemonize matters before anything else runs. */
static bool wants_daemonize(int argc, char **argv)
{
    bool daemonize = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:hV", long_options, NULL)) != -1) {
        daemonize |= c == OPT_DAEMONIZE;
    }
    optind = 0;     /* glibc: full re-initialisation for the second pass */
    return daemonize;
}

static void process_options(int argc, char **argv)
{
    int c, idx;

    while ((c = getopt_long(argc, argv, "+:hV", long_options, &idx)) != -1) {
        Error *err = NULL;

        switch (c) {
        case 'h':
            help();
            exit(0);
        case 'V':
            version();
            exit(0);
        case '?':
            error_report("unrecognized option '%s'", argv[optind - 1]);
            exit(1);
        case ':':
            error_report("option '%s' requires an argument",
                         argv[optind - 1]);
            exit(1);
        }
        if (!process_option(c, optarg, &err)) {
            error_prepend(&err, "--%s %s: ", long_options[idx].name, optarg);
            error_report_err(err);
            exit(1);
        }
    }
    if (optind < argc) {
        error_report("%s: Unexpected argument", argv[optind]);
        exit(1);
    }
}

static gboolean on_signal(G_GNUC_UNUSED gpointer opaque)
{
    g_main_loop_quit(main_loop);
    return G_SOURCE_CONTINUE;
}

static void on_quit(void)
{
    g_main_loop_quit(main_loop);
}

static void shutdown_daemon(void)
{
    qmp_exports_shutdown();
    qmp_blockdev_close_all();
    qmp_monitor_cleanup();
    for (GList *l = chardevs; l; l = l->next) {
        Chardev *chr = l->data;
        if (!chr->has_monitor) {
            close(chr->listen_fd);
        }
        unlink(chr->path);
        g_free(chr->id);
        g_free(chr->path);
        g_free(chr);
    }
    g_list_free(chardevs);
    if (pidfile_fd >= 0) {
        unlink(pidfile_path);
        close(pidfile_fd);
    }
    g_free(pidfile_path);
}

int main(int argc, char **argv)
{
    bool daemonize;
    Error *err = NULL;

    error_set_progname(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    bdrv_init();

    daemonize = wants_daemonize(argc, argv);
    if (daemonize) {
        daemonize_start();
    }
    process_options(argc, argv);
    if (pidfile_path && !pidfile_write(&err)) {
        error_prepend(&err, "cannot create PID file: ");
        error_report_err(err);
        exit(1);
    }

    main_loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);
    qmp_set_quit_handler(on_quit);
    if (daemonize) {
        daemonize_finish();
    }

    g_main_loop_run(main_loop);

    shutdown_daemon();
    g_main_loop_unref(main_loop);
    return 0;
}

/*
 * Serve one image over NBD until SIGTERM or SIGINT: a test driver for the
 * NBD server that needs no storage daemon.
 *
 *   nbd-test-server [--socket PATH | --tcp HOST:PORT] [--name NAME]
 *                   [--description TEXT] [--fmt FMT] [--read-only]
 *                   [--discard] IMAGE
 *
 * Prints "ready" on stdout once it listens.
 */
#include "qemu/osdep.h"
#include <signal.h>
#include "block/nbd.h"

static char *opt_socket;
static char *opt_tcp;
static char *opt_name;
static char *opt_desc;
static char *opt_fmt;
static gboolean opt_read_only;
static gboolean opt_discard;

static GOptionEntry entries[] = {
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &opt_socket,
      "Listen on this UNIX socket", "PATH" },
    { "tcp", 0, 0, G_OPTION_ARG_STRING, &opt_tcp,
      "Listen on this TCP address", "HOST:PORT" },
    { "name", 0, 0, G_OPTION_ARG_STRING, &opt_name,
      "Export name (default: empty)", "NAME" },
    { "description", 0, 0, G_OPTION_ARG_STRING, &opt_desc,
      "Export description", "TEXT" },
    { "fmt", 0, 0, G_OPTION_ARG_STRING, &opt_fmt,
      "Image format (default: probe)", "FMT" },
    { "read-only", 0, 0, G_OPTION_ARG_NONE, &opt_read_only,
      "Export read-only", NULL },
    { "discard", 0, 0, G_OPTION_ARG_NONE, &opt_discard,
      "Pass discards down to the image (discard=unmap)", NULL },
    { NULL }
};

static bool parse_addr(NBDServerAddr *addr, Error **errp)
{
    if (!!opt_socket == !!opt_tcp) {
        error_setg(errp, "Give exactly one of --socket and --tcp");
        return false;
    }
    if (opt_socket) {
        addr->type = NBD_ADDR_UNIX;
        addr->path = opt_socket;
        return true;
    }
    addr->type = NBD_ADDR_INET;
    addr->port = strrchr(opt_tcp, ':');
    if (!addr->port) {
        error_setg(errp, "--tcp needs HOST:PORT");
        return false;
    }
    *addr->port++ = '\0';
    addr->host = opt_tcp;
    return true;
}

static BlockBackend *open_image(const char *filename, Error **errp)
{
    QDict *options = qdict_new();
    int flags = opt_read_only ? 0 : BDRV_O_RDWR;

    if (opt_fmt) {
        qdict_put_str(options, "driver", opt_fmt);
    }
    if (opt_discard) {
        flags |= BDRV_O_UNMAP;
    }
    return blk_new_open(filename, options, flags, errp);
}

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("IMAGE");
    g_autoptr(GError) gerr = NULL;
    NBDServerAddr addr = { 0 };
    NBDServer *server;
    BlockBackend *blk;
    sigset_t set;
    int sig;

    error_set_progname("nbd-test-server");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr) || argc != 2) {
        error_report("%s", gerr ? gerr->message : "expected one IMAGE");
        return 2;
    }
    /* Block the signals before any thread starts so all inherit the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    bdrv_init();
    if (!parse_addr(&addr, &error_fatal)) {
        return 2;
    }
    blk = open_image(argv[1], &error_fatal);
    server = nbd_server_start(&addr, 0, &error_fatal);
    nbd_export_add(server, opt_name ? opt_name : "", opt_desc, blk,
                   !opt_read_only, &error_fatal);
    printf("ready\n");
    fflush(stdout);

    sigwait(&set, &sig);
    nbd_server_stop(server);
    blk_unref(blk);
    return 0;
}

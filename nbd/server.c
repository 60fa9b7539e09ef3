/*
 * NBD server: listening socket, export registry and connection lifecycle.
 *
 * A listener thread polls the listening socket and a wake-up pipe.  Each
 * accepted connection gets its own thread (handshake, then the request
 * reader of transmission.c).  A finished connection thread marks itself
 * finished and pokes the pipe; the listener then joins it.
 *
 * Closing connections (server stop, export removal) is graceful first: the
 * reading half of the socket is shut down so the reader sees end of file,
 * requests already received still run and are answered.  Only if replies
 * cannot drain within NBD_CLOSE_GRACE_US (a client that stopped reading)
 * is the socket shut down completely.
 *
 * An export is found by the handshake under server->lock and counted in
 * NBDExport.users while a connection looks at it or is attached to it;
 * removal waits for users to drop to zero, so once nbd_export_remove()
 * returns no connection touches the export's BlockBackend any more.
 */
#include "qemu/osdep.h"
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <glib-unix.h>
#include "nbd-internal.h"

struct NBDServer {
    int listen_fd;
    char *unix_path;            /* socket file to remove on stop */
    uint32_t max_connections;   /* 0: unlimited */
    int wake_fd[2];             /* pipe: poke the listener */
    GThread *listener;

    GMutex lock;
    GCond cond;                 /* a client finished or dropped an export */
    GList *exports;             /* NBDExport *, in creation order */
    GList *clients;             /* NBDClient *, not joined yet */
    uint32_t n_active;          /* clients whose thread still runs */
    bool stopping;
};

/* Listening */

static int nbd_listen_unix(const char *path, Error **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    /* A socket file left by an earlier run would make bind() fail. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return -1;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket");
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int nbd_listen_inet_one(const struct addrinfo *ai, int *err)
{
    int on = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);

    if (fd < 0) {
        *err = errno;
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static int nbd_listen_inet(const char *host, const char *port, Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res;
    int fd = -1, err = 0;
    int rc;

    if (!port || !*port) {
        error_setg(errp, "No port given for the NBD server");
        return -1;
    }
    rc = getaddrinfo(host && *host ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        error_setg(errp, "Address resolution failed for %s:%s: %s",
                   host ? host : "", port, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = nbd_listen_inet_one(ai, &err);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, err, "Failed to listen on %s:%s",
                         host ? host : "", port);
    }
    return fd;
}

/* Exports */

static NBDExport *nbd_export_lookup(NBDServer *server, const char *name)
{
    for (GList *l = server->exports; l; l = l->next) {
        NBDExport *exp = l->data;
        if (!exp->removed && !strcmp(exp->name, name)) {
            return exp;
        }
    }
    return NULL;
}

NBDExport *nbd_export_get(NBDServer *server, NBDClient *client,
                          const char *name)
{
    NBDExport *exp;

    g_mutex_lock(&server->lock);
    exp = g_atomic_int_get(&client->closing) ? NULL
                                             : nbd_export_lookup(server, name);
    if (exp) {
        exp->users++;
        client->exp = exp;
    }
    g_mutex_unlock(&server->lock);
    return exp;
}

void nbd_export_put(NBDServer *server, NBDClient *client)
{
    g_mutex_lock(&server->lock);
    if (client->exp) {
        client->exp->users--;
        client->exp = NULL;
        g_cond_broadcast(&server->cond);
    }
    g_mutex_unlock(&server->lock);
}

void nbd_export_foreach(NBDServer *server,
                        void (*fn)(NBDExport *exp, void *opaque), void *opaque)
{
    g_mutex_lock(&server->lock);
    for (GList *l = server->exports; l; l = l->next) {
        NBDExport *exp = l->data;
        if (!exp->removed) {
            fn(exp, opaque);
        }
    }
    g_mutex_unlock(&server->lock);
}

/* Connections */

static void nbd_server_wake(NBDServer *server)
{
    char c = 0;

    /* A full pipe already guarantees a wake-up. */
    if (write(server->wake_fd[1], &c, 1) < 0) {
        return;
    }
}

/* server->lock held. */
static void nbd_client_kick(NBDClient *client, bool force)
{
    if (client->fd < 0) {
        return;
    }
    g_atomic_int_set(&client->closing, 1);
    shutdown(client->fd, force ? SHUT_RDWR : SHUT_RD);
    g_mutex_lock(&client->lock);
    g_cond_broadcast(&client->cond);
    g_mutex_unlock(&client->lock);
}

static void nbd_kick_clients(NBDServer *server, NBDExport *exp, bool force)
{
    for (GList *l = server->clients; l; l = l->next) {
        NBDClient *client = l->data;
        if (!exp || client->exp == exp) {
            nbd_client_kick(client, force);
        }
    }
}

static bool nbd_clients_gone(NBDServer *server, NBDExport *exp)
{
    return exp ? exp->users == 0 : server->n_active == 0;
}

/*
 * Close the connections using exp (all connections if exp is NULL) and
 * wait until they are gone.  server->lock held.
 */
static void nbd_close_clients(NBDServer *server, NBDExport *exp)
{
    gint64 deadline = g_get_monotonic_time() + NBD_CLOSE_GRACE_US;
    bool forced = false;

    nbd_kick_clients(server, exp, false);
    while (!nbd_clients_gone(server, exp)) {
        if (forced) {
            g_cond_wait(&server->cond, &server->lock);
        } else if (!g_cond_wait_until(&server->cond, &server->lock,
                                      deadline)) {
            nbd_kick_clients(server, exp, true);
            forced = true;
        }
    }
}

static gpointer nbd_client_thread(gpointer opaque)
{
    NBDClient *client = opaque;
    NBDServer *server = client->server;

    if (nbd_negotiate(client) == 0) {
        nbd_transmission_run(client);
    }
    nbd_export_put(server, client);

    g_mutex_lock(&server->lock);
    close(client->fd);
    client->fd = -1;
    client->finished = true;
    server->n_active--;
    g_cond_broadcast(&server->cond);
    g_mutex_unlock(&server->lock);
    nbd_server_wake(server);
    return NULL;
}

static void nbd_client_free(NBDClient *client)
{
    if (client->thread) {
        g_thread_join(client->thread);
    }
    g_free(client->meta_export);
    g_mutex_clear(&client->send_lock);
    g_mutex_clear(&client->lock);
    g_cond_clear(&client->cond);
    g_free(client);
}

static void nbd_client_start(NBDServer *server, int fd)
{
    NBDClient *client;
    int on = 1;

    /* Requests and replies are small messages: do not let Nagle hold them. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

    g_mutex_lock(&server->lock);
    if (server->max_connections &&
        server->n_active >= server->max_connections) {
        g_mutex_unlock(&server->lock);
        close(fd);
        return;
    }
    client = g_new0(NBDClient, 1);
    client->server = server;
    client->fd = fd;
    g_mutex_init(&client->send_lock);
    g_mutex_init(&client->lock);
    g_cond_init(&client->cond);
    server->n_active++;
    server->clients = g_list_prepend(server->clients, client);
    client->thread = g_thread_try_new("nbd-client", nbd_client_thread,
                                      client, NULL);
    if (!client->thread) {
        server->n_active--;
        server->clients = g_list_remove(server->clients, client);
        g_mutex_unlock(&server->lock);
        close(fd);
        nbd_client_free(client);
        return;
    }
    g_mutex_unlock(&server->lock);
}

/* Join the connection threads that have finished. */
static void nbd_reap_clients(NBDServer *server)
{
    GList *done = NULL;

    g_mutex_lock(&server->lock);
    for (GList *l = server->clients, *next; l; l = next) {
        next = l->next;
        if (((NBDClient *)l->data)->finished) {
            server->clients = g_list_remove_link(server->clients, l);
            done = g_list_concat(l, done);
        }
    }
    g_mutex_unlock(&server->lock);
    g_list_free_full(done, (GDestroyNotify)nbd_client_free);
}

static bool nbd_server_stopping(NBDServer *server)
{
    bool stopping;

    g_mutex_lock(&server->lock);
    stopping = server->stopping;
    g_mutex_unlock(&server->lock);
    return stopping;
}

static void nbd_accept_one(NBDServer *server)
{
    int fd = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd >= 0) {
        nbd_client_start(server, fd);
    } else if (errno == EMFILE || errno == ENFILE) {
        /* Out of descriptors: back off instead of spinning on poll(). */
        g_usleep(100 * 1000);
    }
}

static gpointer nbd_listener_thread(gpointer opaque)
{
    NBDServer *server = opaque;

    for (;;) {
        struct pollfd fds[2] = {
            { .fd = server->listen_fd, .events = POLLIN },
            { .fd = server->wake_fd[0], .events = POLLIN },
        };

        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            g_usleep(10 * 1000);
            continue;
        }
        if (fds[1].revents) {
            char buf[64];
            if (read(server->wake_fd[0], buf, sizeof(buf)) < 0) {
                /* Nonblocking pipe already drained. */
            }
            nbd_reap_clients(server);
            if (nbd_server_stopping(server)) {
                return NULL;
            }
        }
        if (fds[0].revents & POLLIN) {
            nbd_accept_one(server);
        } else if (fds[0].revents) {
            g_usleep(10 * 1000);    /* error on the listener: do not spin */
        }
    }
}

/* Public interface */

NBDServer *nbd_server_start(const NBDServerAddr *addr, uint32_t max_connections,
                            Error **errp)
{
    NBDServer *server;
    GError *gerr = NULL;
    int fd;

    if (addr->type == NBD_ADDR_UNIX) {
        if (!addr->path || !*addr->path) {
            error_setg(errp, "No UNIX socket path given for the NBD server");
            return NULL;
        }
        fd = nbd_listen_unix(addr->path, errp);
    } else {
        fd = nbd_listen_inet(addr->host, addr->port, errp);
    }
    if (fd < 0) {
        return NULL;
    }

    server = g_new0(NBDServer, 1);
    if (!g_unix_open_pipe(server->wake_fd, FD_CLOEXEC, &gerr) ||
        !g_unix_set_fd_nonblocking(server->wake_fd[0], TRUE, &gerr) ||
        !g_unix_set_fd_nonblocking(server->wake_fd[1], TRUE, &gerr)) {
        error_setg(errp, "Failed to create NBD server pipe: %s",
                   gerr->message);
        g_error_free(gerr);
        close(fd);
        g_free(server);
        return NULL;
    }
    server->listen_fd = fd;
    server->unix_path = addr->type == NBD_ADDR_UNIX ? g_strdup(addr->path)
                                                    : NULL;
    server->max_connections = max_connections;
    g_mutex_init(&server->lock);
    g_cond_init(&server->cond);
    server->listener = g_thread_new("nbd-listener", nbd_listener_thread,
                                    server);
    return server;
}

static void nbd_export_free(NBDExport *exp)
{
    blk_unref(exp->blk);
    g_free(exp->name);
    g_free(exp->description);
    g_free(exp);
}

void nbd_server_stop(NBDServer *server)
{
    if (!server) {
        return;
    }
    g_mutex_lock(&server->lock);
    server->stopping = true;
    g_mutex_unlock(&server->lock);
    nbd_server_wake(server);
    g_thread_join(server->listener);
    close(server->listen_fd);
    if (server->unix_path) {
        unlink(server->unix_path);
    }

    g_mutex_lock(&server->lock);
    nbd_close_clients(server, NULL);
    g_mutex_unlock(&server->lock);
    nbd_reap_clients(server);
    assert(!server->clients);

    g_list_free_full(server->exports, (GDestroyNotify)nbd_export_free);
    close(server->wake_fd[0]);
    close(server->wake_fd[1]);
    g_mutex_clear(&server->lock);
    g_cond_clear(&server->cond);
    g_free(server->unix_path);
    g_free(server);
}

NBDExport *nbd_export_add(NBDServer *server, const char *name,
                          const char *description, BlockBackend *blk,
                          bool writable, Error **errp)
{
    NBDExport *exp;
    BlockBackend *own;

    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "NBD export name is longer than %d bytes",
                   NBD_MAX_STRING_SIZE);
        return NULL;
    }
    if (description && strlen(description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "NBD export description is longer than %d bytes",
                   NBD_MAX_STRING_SIZE);
        return NULL;
    }
    if (writable && !blk_is_writable(blk)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return NULL;
    }
    if (blk_getlength(blk) < 0) {
        error_setg(errp, "Cannot get the size of the exported node");
        return NULL;
    }
    /* BlockBackends are not shared: hold the node through our own. */
    own = blk_new_with_bs(blk_bs(blk), writable, errp);
    if (!own) {
        return NULL;
    }
    blk_set_enable_write_cache(own, blk_enable_write_cache(blk));

    g_mutex_lock(&server->lock);
    if (nbd_export_lookup(server, name)) {
        g_mutex_unlock(&server->lock);
        error_setg(errp, "NBD server already has an export named '%s'", name);
        blk_unref(own);
        return NULL;
    }
    exp = g_new0(NBDExport, 1);
    exp->server = server;
    exp->name = g_strdup(name);
    exp->description = description && *description ? g_strdup(description)
                                                    : NULL;
    exp->blk = own;
    exp->writable = writable;
    server->exports = g_list_append(server->exports, exp);
    g_mutex_unlock(&server->lock);
    return exp;
}

NBDExport *nbd_export_find(NBDServer *server, const char *name)
{
    NBDExport *exp;

    g_mutex_lock(&server->lock);
    exp = nbd_export_lookup(server, name);
    g_mutex_unlock(&server->lock);
    return exp;
}

void nbd_export_remove(NBDServer *server, NBDExport *exp)
{
    g_mutex_lock(&server->lock);
    if (exp->removed) {
        g_mutex_unlock(&server->lock);
        return;
    }
    exp->removed = true;
    nbd_close_clients(server, exp);
    server->exports = g_list_remove(server->exports, exp);
    g_mutex_unlock(&server->lock);
    nbd_export_free(exp);
}

const char *nbd_export_name(NBDExport *exp)
{
    return exp->name;
}

BlockBackend *nbd_export_blk(NBDExport *exp)
{
    return exp->blk;
}

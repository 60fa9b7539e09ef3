/*
 * QMP server (see qmp.h).
 *
 * Wire protocol, as QEMU speaks it: on connect the server sends
 *   {"QMP": {"version": VersionInfo, "capabilities": ["oob"]}}
 * The client sends JSON objects
 *   {"execute": NAME, "arguments": {...}, "id": ANY}
 * (arguments and id optional) and gets, in order, one reply each:
 *   {"return": VALUE, "id": ID}  or  {"id": ID, "error": {"class", "desc"}}
 * Until "qmp_capabilities" succeeds only that command is accepted.
 * Events reach clients past negotiation as
 *   {"timestamp": {"seconds", "microseconds"}, "event": NAME, "data": {...}}
 * Every message ends with "\r\n" (in pretty mode inner newlines too).
 *
 * Each client has its own framer, session and output queue, so a client
 * that sends garbage or stops reading affects no one else.  Sockets are
 * non-blocking; output waits in a queue bounded like the input.
 */
#include "qemu/osdep.h"
#include <glib-unix.h>
#include <sys/socket.h>
#include "qapi/qjson.h"
#include "json-framer.h"
#include "json-node.h"
#include "qmp.h"
#include "qmp-commands.h"

typedef struct QmpMonitor {
    int listen_fd;
    guint accept_watch;
    bool pretty;
} QmpMonitor;

typedef struct QmpClient {
    QmpMonitor *mon;
    int fd;
    guint read_watch;
    guint write_watch;
    JsonFramer framer;
    GString *out;
    QmpSession session;
    bool dead;          /* disconnect once the current read is processed */
} QmpClient;

static GList *monitors;
static GList *clients;

static const char *const error_class_names[] = {
    [ERROR_CLASS_GENERIC_ERROR] = "GenericError",
    [ERROR_CLASS_COMMAND_NOT_FOUND] = "CommandNotFound",
    [ERROR_CLASS_DEVICE_NOT_FOUND] = "DeviceNotFound",
};

static void client_free(QmpClient *c)
{
    clients = g_list_remove(clients, c);
    if (c->read_watch) {
        g_source_remove(c->read_watch);
    }
    if (c->write_watch) {
        g_source_remove(c->write_watch);
    }
    close(c->fd);
    json_framer_destroy(&c->framer);
    g_string_free(c->out, TRUE);
    g_free(c);
}

/* Write what the socket takes now; false if the client is gone. */
static bool client_flush(QmpClient *c)
{
    while (c->out->len) {
        ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return true;
        }
        if (n <= 0) {
            return false;
        }
        g_string_erase(c->out, 0, n);
    }
    return true;
}

static gboolean client_writable(gint fd, GIOCondition cond, gpointer opaque)
{
    QmpClient *c = opaque;

    (void)fd;
    (void)cond;
    if (!client_flush(c)) {
        c->write_watch = 0;
        client_free(c);
        return G_SOURCE_REMOVE;
    }
    if (!c->out->len) {
        c->write_watch = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void client_send(QmpClient *c, JsonNode *msg)
{
    g_autofree char *text = qjson_to_string(msg, c->mon->pretty);

    if (c->dead) {
        return;
    }
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            g_string_append_c(c->out, '\r');
        }
        g_string_append_c(c->out, *p);
    }
    g_string_append(c->out, "\r\n");
    if (c->out->len > QMP_MAX_REQUEST_SIZE || !client_flush(c)) {
        c->dead = true;     /* not reading its replies, or gone */
    } else if (c->out->len && !c->write_watch) {
        c->write_watch = g_unix_fd_add(c->fd, G_IO_OUT, client_writable, c);
    }
}

static void client_send_error(QmpClient *c, JsonNode *id, ErrorClass cls,
                              const char *desc)
{
    JsonObject *rsp = json_object_new();
    JsonObject *err = json_object_new();
    g_autoptr(JsonNode) node = NULL;

    if (id) {
        json_object_set_member(rsp, "id", json_node_copy(id));
    }
    json_object_set_string_member(err, "class", error_class_names[cls]);
    json_object_set_string_member(err, "desc", desc);
    json_object_set_object_member(rsp, "error", err);
    node = json_node_from_object(rsp);
    client_send(c, node);
}

static void client_send_error_obj(QmpClient *c, JsonNode *id, Error *err)
{
    client_send_error(c, id, error_get_class(err), error_get_pretty(err));
    error_free(err);
}

/*
 * Check the request envelope; returns the command name, or NULL with errp
 * set.  A member of the wrong type is reported before a missing one.
 */
static const char *request_command(QmpClient *c, JsonObject *req,
                                   Error **errp)
{
    g_autoptr(GList) names = json_object_get_members(req);
    const char *exec = NULL, *oob = NULL;

    for (GList *l = names; l; l = l->next) {
        const char *key = l->data;
        JsonNode *v = json_object_get_member(req, key);
        bool is_str = JSON_NODE_HOLDS_VALUE(v) &&
                      json_node_get_value_type(v) == G_TYPE_STRING;

        if (!strcmp(key, "execute") ||
            (!strcmp(key, "exec-oob") && c->session.oob_enabled)) {
            if (!is_str) {
                error_setg(errp, "QMP input member '%s' must be a string", key);
                return NULL;
            }
            *(!strcmp(key, "execute") ? &exec : &oob) =
                json_node_get_string(v);
        } else if (!strcmp(key, "arguments")) {
            if (!JSON_NODE_HOLDS_OBJECT(v)) {
                error_setg(errp, "QMP input member 'arguments' must be an "
                           "object");
                return NULL;
            }
        } else if (strcmp(key, "id")) {
            error_setg(errp, "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (exec && oob) {
        error_setg(errp, "QMP input member 'execute' clashes with 'exec-oob'");
        return NULL;
    }
    if (oob) {
        error_setg(errp, "The command %s does not support OOB", oob);
        return NULL;
    }
    if (!exec) {
        error_setg(errp, "QMP input lacks member 'execute'");
    }
    return exec;
}

/* Negotiation mode admits only qmp_capabilities, and only there. */
static bool request_allowed(QmpClient *c, const char *name, Error **errp)
{
    bool caps = !strcmp(name, "qmp_capabilities");

    if (!c->session.negotiated && !caps) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Expecting capabilities negotiation with "
                  "'qmp_capabilities'");
        return false;
    }
    if (c->session.negotiated && caps) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Capabilities negotiation is already complete, command "
                  "ignored");
        return false;
    }
    return true;
}

static void handle_request(const char *text, size_t len, void *opaque)
{
    QmpClient *c = opaque;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) gerr = NULL;
    g_autoptr(JsonNode) ret = NULL;
    JsonObject *req, *rsp;
    JsonNode *root, *id;
    Error *err = NULL;
    const char *name;

    if (c->dead) {
        return;
    }
    if (!json_parser_load_from_data(parser, text, len, &gerr)) {
        /* json-glib names the input "<data>"; that means nothing here. */
        const char *msg = g_str_has_prefix(gerr->message, "<data>:") ?
                          gerr->message + strlen("<data>:") : gerr->message;
        g_autofree char *desc = g_strdup_printf("JSON parse error, line %s",
                                                msg);
        client_send_error(c, NULL, ERROR_CLASS_GENERIC_ERROR, desc);
        return;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        client_send_error(c, NULL, ERROR_CLASS_GENERIC_ERROR,
                          "QMP input must be a JSON object");
        return;
    }
    req = json_node_get_object(root);
    id = json_object_get_member(req, "id");
    name = request_command(c, req, &err);
    if (!name || !request_allowed(c, name, &err)) {
        client_send_error_obj(c, id, err);
        return;
    }
    ret = qmp_dispatch(&c->session, name,
                       json_object_get_member(req, "arguments"), &err);
    if (!ret) {
        client_send_error_obj(c, id, err);
        return;
    }
    rsp = json_object_new();
    json_object_set_member(rsp, "return", json_node_ref(ret));
    if (id) {
        json_object_set_member(rsp, "id", json_node_copy(id));
    }
    g_autoptr(JsonNode) node = json_node_from_object(rsp);
    client_send(c, node);
}

static gboolean client_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    QmpClient *c = opaque;
    char buf[65536];
    Error *err = NULL;
    ssize_t n;

    (void)cond;
    n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return G_SOURCE_CONTINUE;
    }
    if (n > 0 && !json_framer_feed(&c->framer, buf, n, handle_request, c,
                                   &err)) {
        client_send_error_obj(c, NULL, err);
        c->dead = true;
    }
    if (n <= 0 || c->dead) {
        /* Best effort: the last error reply, if the socket takes it. */
        client_flush(c);
        c->read_watch = 0;
        client_free(c);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void client_new(QmpMonitor *mon, int fd)
{
    QmpClient *c = g_new0(QmpClient, 1);
    g_autoptr(JsonNode) greeting = NULL;
    JsonObject *qmp = json_object_new(), *top = json_object_new();
    JsonArray *caps = json_array_new();

    c->mon = mon;
    c->fd = fd;
    c->out = g_string_new(NULL);
    json_framer_init(&c->framer, QMP_MAX_REQUEST_SIZE);
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    clients = g_list_append(clients, c);
    c->read_watch = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                  client_readable, c);

    json_object_set_member(qmp, "version", qmp_version_info());
    json_array_add_string_element(caps, "oob");
    json_object_set_array_member(qmp, "capabilities", caps);
    json_object_set_object_member(top, "QMP", qmp);
    greeting = json_node_from_object(top);
    client_send(c, greeting);
}

static gboolean monitor_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    int cfd;

    (void)cond;
    cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd >= 0) {
        client_new(opaque, cfd);
    }
    return G_SOURCE_CONTINUE;
}

void qmp_monitor_new(int listen_fd, int client_fd, bool pretty)
{
    QmpMonitor *mon = g_new0(QmpMonitor, 1);

    qmp_dispatch_check_table();
    mon->listen_fd = listen_fd;
    mon->pretty = pretty;
    g_unix_set_fd_nonblocking(listen_fd, TRUE, NULL);
    mon->accept_watch = g_unix_fd_add(listen_fd, G_IO_IN, monitor_accept,
                                      mon);
    monitors = g_list_append(monitors, mon);
    if (client_fd >= 0) {
        client_new(mon, client_fd);
    }
}

void qmp_event_send(const char *name, JsonObject *data)
{
    JsonObject *ev = json_object_new(), *ts = json_object_new();
    gint64 now = g_get_real_time();
    g_autoptr(JsonNode) node = NULL;

    json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
    json_object_set_object_member(ev, "timestamp", ts);
    json_object_set_string_member(ev, "event", name);
    if (data) {
        json_object_set_object_member(ev, "data", data);
    }
    node = json_node_from_object(ev);
    for (GList *l = clients; l; l = l->next) {
        QmpClient *c = l->data;
        if (c->session.negotiated) {
            client_send(c, node);
        }
    }
}

/* Give a client up to a second to take its last replies. */
static void client_drain(QmpClient *c)
{
    gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC;

    while (!c->dead && c->out->len && client_flush(c) && c->out->len &&
           g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
}

void qmp_monitor_cleanup(void)
{
    while (clients) {
        QmpClient *c = clients->data;
        client_drain(c);
        client_free(c);
    }
    while (monitors) {
        QmpMonitor *mon = monitors->data;
        g_source_remove(mon->accept_watch);
        close(mon->listen_fd);
        monitors = g_list_remove(monitors, mon);
        g_free(mon);
    }
}

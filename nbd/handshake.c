/*
 * NBD handshake: fixed newstyle negotiation up to the transmission phase.
 *
 * The server greets with handshake flags FIXED_NEWSTYLE | NO_ZEROES and
 * accepts only those two client flags.  Options are read whole (at most
 * NBD_MAX_OPTION_SIZE bytes; a larger one is refused and the connection
 * closed without reading it) and answered one at a time:
 *
 *   EXPORT_NAME     legacy: no error reply possible, unknown export closes
 *   ABORT           ACK, then close
 *   LIST            one SERVER reply (name, description) per export, ACK
 *   INFO, GO        INFO replies (EXPORT always; NAME, DESCRIPTION and
 *                   BLOCK_SIZE on request), ACK; GO then starts transmission
 *   STRUCTURED_REPLY  ACK once
 *   LIST_META_CONTEXT, SET_META_CONTEXT  base:allocation (context id 0)
 *   STARTTLS        ERR_POLICY (no TLS)
 *   anything else   ERR_UNSUP
 *
 * Option data that does not parse exactly (short or trailing bytes, strings
 * over NBD_MAX_STRING_SIZE or with NUL bytes) gets ERR_INVALID.
 */
#include "qemu/osdep.h"
#include "nbd-internal.h"

typedef struct NBDOption {
    uint32_t opt;
    uint32_t len;
    uint8_t *data;
    uint32_t pos;               /* parse cursor */
} NBDOption;

/* Handler results besides -errno (close the connection). */
enum {
    NBD_HS_CONTINUE = 0,
    NBD_HS_TRANSMISSION = 1,
};

/* Sending */

static int nbd_opt_reply(NBDClient *client, uint32_t opt, uint32_t type,
                         const void *data, uint32_t len)
{
    uint8_t hdr[NBD_OPT_REPLY_HEADER_SIZE];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    stq_be_p(hdr, NBD_REP_MAGIC);
    stl_be_p(hdr + 8, opt);
    stl_be_p(hdr + 12, type);
    stl_be_p(hdr + 16, len);
    return nbd_client_send(client, iov, 2);
}

static int nbd_opt_ack(NBDClient *client, NBDOption *o)
{
    return nbd_opt_reply(client, o->opt, NBD_REP_ACK, NULL, 0);
}

static int G_GNUC_PRINTF(4, 5)
nbd_opt_error(NBDClient *client, NBDOption *o, uint32_t type,
              const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return nbd_opt_reply(client, o->opt, type, msg,
                         MIN(strlen(msg), NBD_MAX_STRING_SIZE));
}

static int nbd_opt_invalid(NBDClient *client, NBDOption *o)
{
    return nbd_opt_error(client, o, NBD_REP_ERR_INVALID,
                         "Malformed data for option %" PRIu32, o->opt);
}

/* Parsing */

static bool nbd_opt_get_u16(NBDOption *o, uint16_t *v)
{
    if (o->len - o->pos < 2) {
        return false;
    }
    *v = lduw_be_p(o->data + o->pos);
    o->pos += 2;
    return true;
}

static bool nbd_opt_get_u32(NBDOption *o, uint32_t *v)
{
    if (o->len - o->pos < 4) {
        return false;
    }
    *v = ldl_be_p(o->data + o->pos);
    o->pos += 4;
    return true;
}

/* A protocol string of len bytes as a C string, or NULL if invalid. */
static char *nbd_opt_get_string(NBDOption *o, uint32_t len)
{
    char *s;

    if (len > NBD_MAX_STRING_SIZE || o->len - o->pos < len ||
        memchr(o->data + o->pos, '\0', len)) {
        return NULL;
    }
    s = g_strndup((char *)o->data + o->pos, len);
    o->pos += len;
    return s;
}

static bool nbd_opt_get_lstring(NBDOption *o, char **s)
{
    uint32_t len;

    *s = NULL;
    if (!nbd_opt_get_u32(o, &len)) {
        return false;
    }
    *s = nbd_opt_get_string(o, len);
    return *s != NULL;
}

static bool nbd_opt_done(NBDOption *o)
{
    return o->pos == o->len;
}

/* Entering transmission */

static bool nbd_attach_export(NBDClient *client, NBDExport *exp)
{
    client->size = blk_getlength(exp->blk);
    client->tx_flags = nbd_transmission_flags(exp, client->structured_reply);
    client->base_allocation = client->meta_base_allocation &&
                              client->meta_export &&
                              !strcmp(client->meta_export, exp->name);
    return client->size >= 0;
}

static int nbd_opt_export_name(NBDClient *client, NBDOption *o)
{
    g_autofree char *name = nbd_opt_get_string(o, o->len);
    uint8_t buf[10 + NBD_EXPORT_NAME_PAD] = { 0 };
    NBDExport *exp;
    int ret;

    /* No way to report an error here: the connection just ends. */
    exp = name ? nbd_export_get(client->server, client, name) : NULL;
    if (!exp) {
        return -ENOENT;
    }
    if (!nbd_attach_export(client, exp)) {
        return -EIO;
    }
    stq_be_p(buf, client->size);
    stw_be_p(buf + 8, client->tx_flags);
    ret = nbd_write_full(client->fd, buf,
                         client->no_zeroes ? 10 : sizeof(buf));
    return ret < 0 ? ret : NBD_HS_TRANSMISSION;
}

/* LIST */

static void nbd_list_one(NBDExport *exp, void *opaque)
{
    GPtrArray *replies = opaque;
    size_t name_len = strlen(exp->name);
    size_t desc_len = exp->description ? strlen(exp->description) : 0;
    GByteArray *rep = g_byte_array_sized_new(4 + name_len + desc_len);
    uint8_t len_be[4];

    /* The name, then its description as the free-form details. */
    stl_be_p(len_be, name_len);
    g_byte_array_append(rep, len_be, 4);
    g_byte_array_append(rep, (guint8 *)exp->name, name_len);
    g_byte_array_append(rep, (guint8 *)exp->description, desc_len);
    g_ptr_array_add(replies, rep);
}

static int nbd_opt_list(NBDClient *client, NBDOption *o)
{
    g_autoptr(GPtrArray) replies =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    int ret = 0;

    if (o->len) {
        return nbd_opt_invalid(client, o);
    }
    nbd_export_foreach(client->server, nbd_list_one, replies);
    for (guint i = 0; i < replies->len && ret >= 0; i++) {
        GByteArray *rep = replies->pdata[i];
        ret = nbd_opt_reply(client, o->opt, NBD_REP_SERVER, rep->data,
                            rep->len);
    }
    return ret < 0 ? ret : nbd_opt_ack(client, o);
}

/* INFO and GO */

static int nbd_send_info(NBDClient *client, NBDOption *o, uint16_t type,
                         const void *data, size_t len)
{
    g_autofree uint8_t *buf = g_malloc(2 + len);

    stw_be_p(buf, type);
    memcpy(buf + 2, data, len);
    return nbd_opt_reply(client, o->opt, NBD_REP_INFO, buf, 2 + len);
}

static int nbd_send_requested_info(NBDClient *client, NBDOption *o,
                                   NBDExport *exp, uint16_t type)
{
    uint8_t sizes[12];

    switch (type) {
    case NBD_INFO_NAME:
        return nbd_send_info(client, o, type, exp->name, strlen(exp->name));
    case NBD_INFO_DESCRIPTION:
        if (!exp->description) {
            return 0;
        }
        return nbd_send_info(client, o, type, exp->description,
                             strlen(exp->description));
    case NBD_INFO_BLOCK_SIZE:
        stl_be_p(sizes, NBD_MIN_BLOCK_SIZE);
        stl_be_p(sizes + 4, NBD_PREFERRED_BLOCK_SIZE);
        stl_be_p(sizes + 8, NBD_MAX_BUFFER_SIZE);
        return nbd_send_info(client, o, type, sizes, sizeof(sizes));
    default:
        return 0;   /* unknown requests are ignored */
    }
}

static int nbd_send_export_info(NBDClient *client, NBDOption *o,
                                NBDExport *exp, const uint16_t *requests,
                                uint16_t n_requests)
{
    uint8_t export[10];
    bool sent[NBD_INFO_BLOCK_SIZE + 1] = { false };
    int ret = 0;

    for (uint16_t i = 0; i < n_requests && ret >= 0; i++) {
        uint16_t type = requests[i];

        /* A type listed twice is answered once; EXPORT always comes last. */
        if (type != NBD_INFO_EXPORT && type < G_N_ELEMENTS(sent) &&
            !sent[type]) {
            sent[type] = true;
            ret = nbd_send_requested_info(client, o, exp, type);
        }
    }
    if (ret < 0) {
        return ret;
    }
    stq_be_p(export, client->size);
    stw_be_p(export + 8, client->tx_flags);
    ret = nbd_send_info(client, o, NBD_INFO_EXPORT, export, sizeof(export));
    return ret < 0 ? ret : nbd_opt_ack(client, o);
}

static int nbd_opt_info(NBDClient *client, NBDOption *o)
{
    g_autofree char *name = NULL;
    g_autofree uint16_t *requests = NULL;
    uint16_t n_requests;
    NBDExport *exp;
    int ret;

    if (!nbd_opt_get_lstring(o, &name) || !nbd_opt_get_u16(o, &n_requests) ||
        o->len - o->pos != 2u * n_requests) {
        return nbd_opt_invalid(client, o);
    }
    requests = g_new(uint16_t, n_requests);
    for (uint16_t i = 0; i < n_requests; i++) {
        nbd_opt_get_u16(o, &requests[i]);
    }

    exp = nbd_export_get(client->server, client, name);
    if (!exp) {
        return nbd_opt_error(client, o, NBD_REP_ERR_UNKNOWN,
                             "Export '%s' does not exist", name);
    }
    if (!nbd_attach_export(client, exp)) {
        ret = nbd_opt_error(client, o, NBD_REP_ERR_UNKNOWN,
                            "Export '%s' is not available", name);
    } else {
        ret = nbd_send_export_info(client, o, exp, requests, n_requests);
    }
    if (ret == 0 && o->opt == NBD_OPT_GO && client->size >= 0) {
        return NBD_HS_TRANSMISSION;    /* keeps its use of the export */
    }
    nbd_export_put(client->server, client);
    return ret;
}

/* STRUCTURED_REPLY */

static int nbd_opt_structured_reply(NBDClient *client, NBDOption *o)
{
    if (o->len) {
        return nbd_opt_invalid(client, o);
    }
    if (client->structured_reply) {
        return nbd_opt_error(client, o, NBD_REP_ERR_INVALID,
                             "Structured replies are already negotiated");
    }
    client->structured_reply = true;
    return nbd_opt_ack(client, o);
}

/* LIST_META_CONTEXT and SET_META_CONTEXT */

/*
 * Whether a query names base:allocation.  "base:" alone is a wildcard when
 * listing and selects nothing when setting; other leaves of base: and
 * other namespaces are ignored, as the protocol requires.
 */
static bool nbd_meta_query_matches(const char *query, bool set)
{
    const char *leaf;

    if (!g_str_has_prefix(query, NBD_META_NS_BASE)) {
        return false;
    }
    leaf = query + strlen(NBD_META_NS_BASE);
    return !strcmp(leaf, "allocation") || (!set && !*leaf);
}

static int nbd_opt_meta_context(NBDClient *client, NBDOption *o)
{
    bool set = o->opt == NBD_OPT_SET_META_CONTEXT;
    g_autofree char *name = NULL;
    uint32_t n_queries;
    bool found;
    uint8_t rep[4 + sizeof(NBD_META_BASE_ALLOCATION) - 1];
    int ret;

    if (set) {
        /* The selection is replaced even when the option fails. */
        g_clear_pointer(&client->meta_export, g_free);
        client->meta_base_allocation = false;
    }
    if (!client->structured_reply) {
        return nbd_opt_error(client, o, NBD_REP_ERR_INVALID,
                             "Structured replies are not negotiated");
    }
    if (!nbd_opt_get_lstring(o, &name) || !nbd_opt_get_u32(o, &n_queries)) {
        return nbd_opt_invalid(client, o);
    }
    /* No queries: list everything, select nothing. */
    found = !set && n_queries == 0;
    for (uint32_t i = 0; i < n_queries; i++) {
        g_autofree char *query = NULL;
        if (!nbd_opt_get_lstring(o, &query)) {
            return nbd_opt_invalid(client, o);
        }
        found = found || nbd_meta_query_matches(query, set);
    }
    if (!nbd_opt_done(o)) {
        return nbd_opt_invalid(client, o);
    }
    if (!nbd_export_find(client->server, name)) {
        return nbd_opt_error(client, o, NBD_REP_ERR_UNKNOWN,
                             "Export '%s' does not exist", name);
    }
    if (found) {
        stl_be_p(rep, 0);   /* context id */
        memcpy(rep + 4, NBD_META_BASE_ALLOCATION, sizeof(rep) - 4);
        ret = nbd_opt_reply(client, o->opt, NBD_REP_META_CONTEXT, rep,
                            sizeof(rep));
        if (ret < 0) {
            return ret;
        }
    }
    if (set) {
        client->meta_export = g_steal_pointer(&name);
        client->meta_base_allocation = found;
    }
    return nbd_opt_ack(client, o);
}

/* Option loop */

static int nbd_handle_option(NBDClient *client, NBDOption *o)
{
    switch (o->opt) {
    case NBD_OPT_EXPORT_NAME:
        return nbd_opt_export_name(client, o);
    case NBD_OPT_ABORT:
        nbd_opt_ack(client, o);
        return -ECONNABORTED;
    case NBD_OPT_LIST:
        return nbd_opt_list(client, o);
    case NBD_OPT_STARTTLS:
        if (o->len) {
            return nbd_opt_invalid(client, o);
        }
        return nbd_opt_error(client, o, NBD_REP_ERR_POLICY,
                             "TLS is not configured on this server");
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return nbd_opt_info(client, o);
    case NBD_OPT_STRUCTURED_REPLY:
        return nbd_opt_structured_reply(client, o);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return nbd_opt_meta_context(client, o);
    default:
        return nbd_opt_error(client, o, NBD_REP_ERR_UNSUP,
                             "Unsupported option %" PRIu32, o->opt);
    }
}

static int nbd_read_option(NBDClient *client, NBDOption *o)
{
    uint8_t hdr[NBD_OPT_HEADER_SIZE];
    int ret = nbd_read_full(client->fd, hdr, sizeof(hdr));

    if (ret < 0) {
        return ret;
    }
    if (ldq_be_p(hdr) != NBD_OPTS_MAGIC) {
        return -EPROTO;
    }
    o->opt = ldl_be_p(hdr + 8);
    o->len = ldl_be_p(hdr + 12);
    o->pos = 0;
    if (o->len > NBD_MAX_OPTION_SIZE) {
        /* Not worth reading: refuse it and drop the connection. */
        if (o->opt != NBD_OPT_EXPORT_NAME) {
            nbd_opt_error(client, o, NBD_REP_ERR_TOO_BIG,
                          "Option data of %" PRIu32 " bytes exceeds the "
                          "limit of %d", o->len, (int)NBD_MAX_OPTION_SIZE);
        }
        return -EMSGSIZE;
    }
    /* Never NULL, even for no data: parsing does pointer arithmetic. */
    o->data = g_malloc(o->len + 1);
    return nbd_read_full(client->fd, o->data, o->len);
}

static int nbd_send_greeting(NBDClient *client)
{
    uint8_t buf[NBD_GREETING_SIZE];
    uint8_t flags_be[4];
    uint32_t flags;
    int ret;

    stq_be_p(buf, NBD_MAGIC);
    stq_be_p(buf + 8, NBD_OPTS_MAGIC);
    stw_be_p(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    ret = nbd_write_full(client->fd, buf, sizeof(buf));
    if (ret < 0) {
        return ret;
    }
    ret = nbd_read_full(client->fd, flags_be, sizeof(flags_be));
    if (ret < 0) {
        return ret;
    }
    flags = ldl_be_p(flags_be);
    if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        return -EPROTO;
    }
    client->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return 0;
}

int nbd_negotiate(NBDClient *client)
{
    int ret = nbd_send_greeting(client);

    while (ret == NBD_HS_CONTINUE) {
        NBDOption o = { 0 };

        ret = nbd_read_option(client, &o);
        if (ret == 0) {
            ret = nbd_handle_option(client, &o);
        }
        g_free(o.data);
        if (g_atomic_int_get(&client->closing)) {
            ret = -ESHUTDOWN;
        }
    }
    return ret == NBD_HS_TRANSMISSION ? 0 : ret;
}

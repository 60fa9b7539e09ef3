/*
 * NBD server protocol and robustness tests.  The server runs in this
 * process (raw images in a temporary directory); the tests speak raw NBD
 * over its UNIX socket: well-formed and malformed handshakes, requests
 * and disconnects.  After every misbehaving client, a well-behaved one
 * must still be served.
 *
 * Exports: "rw" (writable, 4 MiB, data at [64 KiB, 128 KiB)), "ro"
 * (read-only, 1 MiB) with description "read-only disk".
 */
#include "qemu/osdep.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "block/nbd.h"
#include "../../nbd/protocol.h"

#define RW_SIZE     (4 * 1024 * 1024)
#define RO_SIZE     (1024 * 1024)
#define MAX_BUF     (32 * 1024 * 1024)

static char *tmpdir;
static char *sock_path;
static NBDServer *server;
static BlockBackend *rw_blk, *ro_blk;

/* Socket helpers */

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    return fd;
}

static void xwrite(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        g_assert_cmpint(n, >, 0);
        p += n;
        len -= n;
    }
}

/* Read exactly len bytes; false on EOF or error (a 30 s timeout fails). */
static bool xread(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        g_assert_cmpint(poll(&pfd, 1, 30000), ==, 1);
        n = recv(fd, p, len, 0);
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

/* The server closed the connection (nothing more to read). */
static void assert_closed(int fd)
{
    char c;

    g_assert_false(xread(fd, &c, 1));
    close(fd);
}

/* Handshake helpers */

static int greet(const char *path, uint32_t client_flags)
{
    uint8_t buf[18], cf[4];
    int fd = connect_unix(path);

    g_assert_true(xread(fd, buf, sizeof(buf)));
    g_assert_cmphex(ldq_be_p(buf), ==, NBD_MAGIC);
    g_assert_cmphex(ldq_be_p(buf + 8), ==, NBD_OPTS_MAGIC);
    g_assert_cmphex(lduw_be_p(buf + 16), ==, 3);
    stl_be_p(cf, client_flags);
    xwrite(fd, cf, 4);
    return fd;
}

static void send_opt_header(int fd, uint32_t opt, uint32_t len)
{
    uint8_t hdr[16];

    stq_be_p(hdr, NBD_OPTS_MAGIC);
    stl_be_p(hdr + 8, opt);
    stl_be_p(hdr + 12, len);
    xwrite(fd, hdr, sizeof(hdr));
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    send_opt_header(fd, opt, len);
    if (len) {
        xwrite(fd, data, len);
    }
}

typedef struct OptReply {
    uint32_t type;
    uint32_t len;
    uint8_t data[8192];
} OptReply;

static void recv_opt_reply(int fd, uint32_t opt, OptReply *r)
{
    uint8_t hdr[20];

    g_assert_true(xread(fd, hdr, sizeof(hdr)));
    g_assert_cmphex(ldq_be_p(hdr), ==, NBD_REP_MAGIC);
    g_assert_cmpuint(ldl_be_p(hdr + 8), ==, opt);
    r->type = ldl_be_p(hdr + 12);
    r->len = ldl_be_p(hdr + 16);
    g_assert_cmpuint(r->len, <=, sizeof(r->data));
    g_assert_true(xread(fd, r->data, r->len));
}

static uint32_t opt_roundtrip(int fd, uint32_t opt, const void *data,
                              uint32_t len)
{
    OptReply r;

    send_opt(fd, opt, data, len);
    recv_opt_reply(fd, opt, &r);
    return r.type;
}

/* INFO/GO payload: name, then the info requests. */
static GByteArray *info_payload(const char *name, const uint16_t *req, int n)
{
    GByteArray *b = g_byte_array_new();
    uint8_t tmp[4];

    stl_be_p(tmp, strlen(name));
    g_byte_array_append(b, tmp, 4);
    g_byte_array_append(b, (const guint8 *)name, strlen(name));
    stw_be_p(tmp, n);
    g_byte_array_append(b, tmp, 2);
    for (int i = 0; i < n; i++) {
        stw_be_p(tmp, req[i]);
        g_byte_array_append(b, tmp, 2);
    }
    return b;
}

/* META_CONTEXT payload: export name and queries. */
static GByteArray *meta_payload(const char *name, const char **queries)
{
    GByteArray *b = g_byte_array_new();
    uint8_t tmp[4];
    int n = queries ? g_strv_length((char **)queries) : 0;

    stl_be_p(tmp, strlen(name));
    g_byte_array_append(b, tmp, 4);
    g_byte_array_append(b, (const guint8 *)name, strlen(name));
    stl_be_p(tmp, n);
    g_byte_array_append(b, tmp, 4);
    for (int i = 0; i < n; i++) {
        stl_be_p(tmp, strlen(queries[i]));
        g_byte_array_append(b, tmp, 4);
        g_byte_array_append(b, (const guint8 *)queries[i], strlen(queries[i]));
    }
    return b;
}

/* GO on name; returns the transmission flags and sets *size. */
static uint16_t go(int fd, const char *name, uint64_t *size)
{
    g_autoptr(GByteArray) p = info_payload(name, NULL, 0);
    uint16_t flags = 0;
    OptReply r;

    send_opt(fd, NBD_OPT_GO, p->data, p->len);
    for (;;) {
        recv_opt_reply(fd, NBD_OPT_GO, &r);
        if (r.type != NBD_REP_INFO) {
            break;
        }
        if (lduw_be_p(r.data) == NBD_INFO_EXPORT) {
            g_assert_cmpuint(r.len, ==, 12);
            *size = ldq_be_p(r.data + 2);
            flags = lduw_be_p(r.data + 10);
        }
    }
    g_assert_cmphex(r.type, ==, NBD_REP_ACK);
    return flags;
}

/* A connection in transmission phase on name. */
static int open_export(const char *name, bool structured, bool meta)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE |
                              NBD_FLAG_C_NO_ZEROES);
    uint64_t size;

    if (structured) {
        g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0),
                        ==, NBD_REP_ACK);
    }
    if (meta) {
        const char *q[] = { "base:allocation", NULL };
        g_autoptr(GByteArray) p = meta_payload(name, q);
        OptReply r;

        send_opt(fd, NBD_OPT_SET_META_CONTEXT, p->data, p->len);
        recv_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, &r);
        g_assert_cmphex(r.type, ==, NBD_REP_META_CONTEXT);
        recv_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, &r);
        g_assert_cmphex(r.type, ==, NBD_REP_ACK);
    }
    go(fd, name, &size);
    return fd;
}

/* Transmission helpers */

static void send_req(int fd, uint16_t flags, uint16_t type, uint64_t handle,
                     uint64_t offset, uint32_t len, const void *data)
{
    uint8_t hdr[28];

    stl_be_p(hdr, NBD_REQUEST_MAGIC);
    stw_be_p(hdr + 4, flags);
    stw_be_p(hdr + 6, type);
    stq_be_p(hdr + 8, handle);
    stq_be_p(hdr + 16, offset);
    stl_be_p(hdr + 24, len);
    xwrite(fd, hdr, sizeof(hdr));
    if (data) {
        xwrite(fd, data, len);
    }
}

/* A simple reply's error, checking the handle; data read if no error. */
static uint32_t recv_simple(int fd, uint64_t handle, void *data, size_t len)
{
    uint8_t hdr[16];
    uint32_t err;

    g_assert_true(xread(fd, hdr, sizeof(hdr)));
    g_assert_cmphex(ldl_be_p(hdr), ==, NBD_SIMPLE_REPLY_MAGIC);
    g_assert_cmphex(ldq_be_p(hdr + 8), ==, handle);
    err = ldl_be_p(hdr + 4);
    if (!err && data) {
        g_assert_true(xread(fd, data, len));
    }
    return err;
}

typedef struct Chunk {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint32_t len;
    uint8_t *payload;
} Chunk;

/* Any reply: a simple one comes back as type NONE with error in flags. */
static void recv_chunk(int fd, Chunk *c)
{
    uint8_t hdr[20];

    g_assert_true(xread(fd, hdr, 16));
    if (ldl_be_p(hdr) == NBD_SIMPLE_REPLY_MAGIC) {
        c->flags = NBD_REPLY_FLAG_DONE;
        c->type = ldl_be_p(hdr + 4) ? NBD_REPLY_TYPE_ERROR
                                    : NBD_REPLY_TYPE_NONE;
        c->handle = ldq_be_p(hdr + 8);
        c->len = 0;
        c->payload = g_malloc(6);
        stl_be_p(c->payload, ldl_be_p(hdr + 4));
        return;
    }
    g_assert_true(xread(fd, hdr + 16, 4));
    g_assert_cmphex(ldl_be_p(hdr), ==, NBD_STRUCTURED_REPLY_MAGIC);
    c->flags = lduw_be_p(hdr + 4);
    c->type = lduw_be_p(hdr + 6);
    c->handle = ldq_be_p(hdr + 8);
    c->len = ldl_be_p(hdr + 16);
    c->payload = g_malloc(c->len + 6);
    g_assert_true(xread(fd, c->payload, c->len));
}

/* Structured error reply to handle: returns the NBD error. */
static uint32_t recv_error_chunk(int fd, uint64_t handle)
{
    Chunk c;
    uint32_t err;

    recv_chunk(fd, &c);
    g_assert_cmphex(c.handle, ==, handle);
    g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_ERROR);
    g_assert_cmphex(c.flags, ==, NBD_REPLY_FLAG_DONE);
    err = ldl_be_p(c.payload);
    if (c.len) {
        g_assert_cmpuint(lduw_be_p(c.payload + 4), ==, c.len - 6);
    }
    g_free(c.payload);
    return err;
}

static void disc(int fd)
{
    send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0, NULL);
    assert_closed(fd);
}

/* The server still serves a well-behaved client: write, read back. */
static void check_server_alive(void)
{
    int fd = open_export("rw", false, false);
    uint8_t buf[512], back[512];

    memset(buf, 0x77, sizeof(buf));
    send_req(fd, 0, NBD_CMD_WRITE, 1, RW_SIZE - 512, 512, buf);
    g_assert_cmpuint(recv_simple(fd, 1, NULL, 0), ==, 0);
    send_req(fd, 0, NBD_CMD_READ, 2, RW_SIZE - 512, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 2, back, 512), ==, 0);
    g_assert_cmpmem(buf, 512, back, 512);
    disc(fd);
}

/* Handshake tests */

static void test_unknown_client_flags(void)
{
    assert_closed(greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | 0x100));
    check_server_alive();
}

static void test_bad_option_magic(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t junk[16] = "not an option!!";

    xwrite(fd, junk, sizeof(junk));
    assert_closed(fd);
    check_server_alive();
}

static void test_unknown_options(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t data[100] = { 0 };

    g_assert_cmphex(opt_roundtrip(fd, 4, data, 10), ==, NBD_REP_ERR_UNSUP);
    g_assert_cmphex(opt_roundtrip(fd, 11, NULL, 0), ==, NBD_REP_ERR_UNSUP);
    g_assert_cmphex(opt_roundtrip(fd, 0xdeadbeef, data, 100), ==,
                    NBD_REP_ERR_UNSUP);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STARTTLS, NULL, 0), ==,
                    NBD_REP_ERR_POLICY);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STARTTLS, data, 1), ==,
                    NBD_REP_ERR_INVALID);
    /* Still negotiating normally. */
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0), ==,
                    NBD_REP_ACK);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, data, 4), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_ABORT, NULL, 0), ==,
                    NBD_REP_ACK);
    assert_closed(fd);
}

static void test_oversized_option(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    OptReply r;

    /* Announce 1 GiB of data and send none: refused, closed. */
    send_opt_header(fd, NBD_OPT_INFO, 1024 * 1024 * 1024);
    recv_opt_reply(fd, NBD_OPT_INFO, &r);
    g_assert_cmphex(r.type, ==, NBD_REP_ERR_TOO_BIG);
    assert_closed(fd);

    fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt_header(fd, NBD_OPT_EXPORT_NAME, 0xffffffff);
    assert_closed(fd);
    check_server_alive();
}

static void test_list(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t data[4] = { 0 };
    OptReply r;

    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_LIST, data, 4), ==,
                    NBD_REP_ERR_INVALID);
    send_opt(fd, NBD_OPT_LIST, NULL, 0);
    recv_opt_reply(fd, NBD_OPT_LIST, &r);
    g_assert_cmphex(r.type, ==, NBD_REP_SERVER);
    g_assert_cmpuint(ldl_be_p(r.data), ==, 2);
    g_assert_cmpmem(r.data + 4, r.len - 4, "rw", 2);
    recv_opt_reply(fd, NBD_OPT_LIST, &r);
    g_assert_cmphex(r.type, ==, NBD_REP_SERVER);
    g_assert_cmpuint(ldl_be_p(r.data), ==, 2);
    g_assert_cmpmem(r.data + 4, r.len - 4, "roread-only disk", 16);
    recv_opt_reply(fd, NBD_OPT_LIST, &r);
    g_assert_cmphex(r.type, ==, NBD_REP_ACK);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_ABORT, NULL, 0), ==,
                    NBD_REP_ACK);
    assert_closed(fd);
}

static void test_info(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
                        NBD_INFO_BLOCK_SIZE, 999, NBD_INFO_NAME };
    g_autoptr(GByteArray) p = info_payload("ro", reqs, G_N_ELEMENTS(reqs));
    g_autoptr(GByteArray) unknown = info_payload("nope", NULL, 0);
    bool seen[4] = { false };
    OptReply r;

    send_opt(fd, NBD_OPT_INFO, unknown->data, unknown->len);
    recv_opt_reply(fd, NBD_OPT_INFO, &r);
    g_assert_cmphex(r.type, ==, NBD_REP_ERR_UNKNOWN);
    g_assert_cmpuint(r.len, >, 0);

    /* Name length past the data, request count not matching the data. */
    stl_be_p(unknown->data, 1000);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_INFO, unknown->data,
                                  unknown->len), ==, NBD_REP_ERR_INVALID);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_GO, p->data, p->len - 1), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_GO, p->data, 3), ==,
                    NBD_REP_ERR_INVALID);

    send_opt(fd, NBD_OPT_INFO, p->data, p->len);
    for (;;) {
        uint16_t type;

        recv_opt_reply(fd, NBD_OPT_INFO, &r);
        if (r.type != NBD_REP_INFO) {
            break;
        }
        type = lduw_be_p(r.data);
        if (type >= G_N_ELEMENTS(seen)) {
            g_assert_not_reached();
        }
        g_assert_false(seen[type]);
        seen[type] = true;
        switch (type) {
        case NBD_INFO_EXPORT:
            g_assert_cmpuint(ldq_be_p(r.data + 2), ==, RO_SIZE);
            /* Read-only, no structured replies: no DF either. */
            g_assert_cmphex(lduw_be_p(r.data + 10), ==, 0x050f);
            break;
        case NBD_INFO_NAME:
            g_assert_cmpmem(r.data + 2, r.len - 2, "ro", 2);
            break;
        case NBD_INFO_DESCRIPTION:
            g_assert_cmpmem(r.data + 2, r.len - 2, "read-only disk", 14);
            break;
        case NBD_INFO_BLOCK_SIZE:
            g_assert_cmpuint(r.len, ==, 14);
            g_assert_cmpuint(ldl_be_p(r.data + 2), ==, 1);
            g_assert_cmpuint(ldl_be_p(r.data + 6), ==, 4096);
            g_assert_cmpuint(ldl_be_p(r.data + 10), ==, MAX_BUF);
            break;
        }
    }
    g_assert_cmphex(r.type, ==, NBD_REP_ACK);
    g_assert_true(seen[0] && seen[1] && seen[2] && seen[3]);

    /* The same export after STRUCTURED_REPLY, by GO. */
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0), ==,
                    NBD_REP_ACK);
    {
        uint64_t size;
        g_assert_cmphex(go(fd, "rw", &size), ==, 0x0ded);
        g_assert_cmpuint(size, ==, RW_SIZE);
    }
    disc(fd);
}

static void test_export_name(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint8_t buf[134];

    send_opt(fd, NBD_OPT_EXPORT_NAME, "nope", 4);
    assert_closed(fd);

    fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(fd, NBD_OPT_EXPORT_NAME, "rw", 2);
    g_assert_true(xread(fd, buf, sizeof(buf)));
    g_assert_cmpuint(ldq_be_p(buf), ==, RW_SIZE);
    g_assert_cmphex(lduw_be_p(buf + 8), ==, 0x0d6d);
    for (int i = 10; i < 134; i++) {
        g_assert_cmpuint(buf[i], ==, 0);
    }
    disc(fd);

    /* With NO_ZEROES the request follows right after the flags. */
    fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(fd, NBD_OPT_EXPORT_NAME, "ro", 2);
    g_assert_true(xread(fd, buf, 10));
    g_assert_cmpuint(ldq_be_p(buf), ==, RO_SIZE);
    g_assert_cmphex(lduw_be_p(buf + 8), ==, 0x050f);
    send_req(fd, 0, NBD_CMD_READ, 5, 0, 16, NULL);
    g_assert_cmpuint(recv_simple(fd, 5, buf, 16), ==, 0);
    disc(fd);
}

static void meta_expect(int fd, uint32_t opt, const char *name,
                        const char **queries, bool found)
{
    g_autoptr(GByteArray) p = meta_payload(name, queries);
    OptReply r;

    send_opt(fd, opt, p->data, p->len);
    recv_opt_reply(fd, opt, &r);
    if (found) {
        g_assert_cmphex(r.type, ==, NBD_REP_META_CONTEXT);
        g_assert_cmpuint(ldl_be_p(r.data), ==, 0);
        g_assert_cmpmem(r.data + 4, r.len - 4, "base:allocation", 15);
        recv_opt_reply(fd, opt, &r);
    }
    g_assert_cmphex(r.type, ==, NBD_REP_ACK);
}

static void test_meta_context(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    const char *base[] = { "base:", NULL };
    const char *alloc[] = { "base:allocation", NULL };
    const char *other[] = { "qemu:dirty-bitmap:b", "base:nothing",
                            "x-foo:bar", "nocolon", NULL };
    const char *mixed[] = { "qemu:allocation-depth", "base:allocation",
                            "base:allocation", NULL };
    g_autoptr(GByteArray) p = meta_payload("rw", alloc);
    g_autoptr(GByteArray) unknown = meta_payload("nope", alloc);

    /* Needs structured replies first. */
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_SET_META_CONTEXT, p->data,
                                  p->len), ==, NBD_REP_ERR_INVALID);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0), ==,
                    NBD_REP_ACK);
    meta_expect(fd, NBD_OPT_LIST_META_CONTEXT, "rw", NULL, true);
    meta_expect(fd, NBD_OPT_LIST_META_CONTEXT, "rw", base, true);
    meta_expect(fd, NBD_OPT_LIST_META_CONTEXT, "rw", other, false);
    meta_expect(fd, NBD_OPT_SET_META_CONTEXT, "rw", NULL, false);
    meta_expect(fd, NBD_OPT_SET_META_CONTEXT, "rw", base, false);
    meta_expect(fd, NBD_OPT_SET_META_CONTEXT, "rw", other, false);
    meta_expect(fd, NBD_OPT_SET_META_CONTEXT, "rw", mixed, true);
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_LIST_META_CONTEXT,
                                  unknown->data, unknown->len), ==,
                    NBD_REP_ERR_UNKNOWN);
    /* Truncated query list, trailing garbage. */
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_SET_META_CONTEXT, p->data,
                                  p->len - 1), ==, NBD_REP_ERR_INVALID);
    {
        g_autoptr(GByteArray) q = meta_payload("rw", alloc);
        g_byte_array_append(q, (const guint8 *)"x", 1);
        g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_SET_META_CONTEXT, q->data,
                                      q->len), ==, NBD_REP_ERR_INVALID);
    }
    /* The failed SET cleared the selection: block status is refused. */
    {
        uint64_t size;
        go(fd, "rw", &size);
    }
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 9, 0, 4096, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 9), ==, NBD_EINVAL);
    disc(fd);
}

/* Transmission tests */

static void test_read_write_simple(void)
{
    int fd = open_export("rw", false, false);
    g_autofree uint8_t *buf = g_malloc(65536);
    g_autofree uint8_t *back = g_malloc(65536);

    /* The image's initial data. */
    send_req(fd, 0, NBD_CMD_READ, 1, 64 * 1024, 65536, NULL);
    g_assert_cmpuint(recv_simple(fd, 1, back, 65536), ==, 0);
    for (int i = 0; i < 65536; i++) {
        g_assert_cmpuint(back[i], ==, 0xab);
    }

    memset(buf, 0x11, 65536);
    send_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 2, 1024 * 1024 + 7, 65536,
             buf);
    g_assert_cmpuint(recv_simple(fd, 2, NULL, 0), ==, 0);
    send_req(fd, 0, NBD_CMD_READ, 3, 1024 * 1024 + 7, 65536, NULL);
    g_assert_cmpuint(recv_simple(fd, 3, back, 65536), ==, 0);
    g_assert_cmpmem(buf, 65536, back, 65536);

    send_req(fd, 0, NBD_CMD_FLUSH, 4, 0, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 4, NULL, 0), ==, 0);
    send_req(fd, 0, NBD_CMD_CACHE, 5, 0, 65536, NULL);
    g_assert_cmpuint(recv_simple(fd, 5, NULL, 0), ==, 0);

    send_req(fd, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 6,
             1024 * 1024 + 7, 1000, NULL);
    g_assert_cmpuint(recv_simple(fd, 6, NULL, 0), ==, 0);
    send_req(fd, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 7,
             1024 * 1024 + 1007, 1000, NULL);
    g_assert_cmpuint(recv_simple(fd, 7, NULL, 0), ==, 0);
    send_req(fd, 0, NBD_CMD_READ, 8, 1024 * 1024 + 7, 2001, NULL);
    g_assert_cmpuint(recv_simple(fd, 8, back, 2001), ==, 0);
    for (int i = 0; i < 2000; i++) {
        g_assert_cmpuint(back[i], ==, 0);
    }
    g_assert_cmpuint(back[2000], ==, 0x11);

    send_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_TRIM, 9, 2 * 1024 * 1024, 65536,
             NULL);
    g_assert_cmpuint(recv_simple(fd, 9, NULL, 0), ==, 0);

    /* Zero-length requests succeed. */
    send_req(fd, 0, NBD_CMD_READ, 10, 0, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 10, NULL, 0), ==, 0);
    send_req(fd, 0, NBD_CMD_WRITE, 11, RW_SIZE, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 11, NULL, 0), ==, 0);
    disc(fd);
}

static void test_errors_simple(void)
{
    int fd = open_export("rw", false, false);
    uint8_t buf[4096] = { 0 };

    send_req(fd, 0, NBD_CMD_READ, 1, RW_SIZE - 512, 1024, NULL);
    g_assert_cmpuint(recv_simple(fd, 1, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_READ, 2, UINT64_MAX - 10, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 2, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_WRITE, 3, RW_SIZE - 512, 1024, buf);
    g_assert_cmpuint(recv_simple(fd, 3, NULL, 0), ==, NBD_ENOSPC);
    send_req(fd, 0, NBD_CMD_WRITE_ZEROES, 4, RW_SIZE, 1, NULL);
    g_assert_cmpuint(recv_simple(fd, 4, NULL, 0), ==, NBD_ENOSPC);
    send_req(fd, 0, NBD_CMD_TRIM, 5, RW_SIZE, 4096, NULL);
    g_assert_cmpuint(recv_simple(fd, 5, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_CACHE, 6, RW_SIZE + 1, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 6, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, 99, 7, 0, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 7, NULL, 0), ==, NBD_EINVAL);
    /* DF needs structured replies; REQ_ONE is for block status only. */
    send_req(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 8, 0, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 8, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_WRITE, 9, 0, 512, buf);
    g_assert_cmpuint(recv_simple(fd, 9, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0x8000, NBD_CMD_FLUSH, 10, 0, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 10, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 11, 0, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 11, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_READ, 12, 0, MAX_BUF + 1, NULL);
    g_assert_cmpuint(recv_simple(fd, 12, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_CACHE, 13, 0, 0xffffffff, NULL);
    g_assert_cmpuint(recv_simple(fd, 13, NULL, 0), ==, NBD_EINVAL);
    /* Still in step after all that. */
    send_req(fd, 0, NBD_CMD_READ, 14, 0, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 14, buf, 512), ==, 0);
    disc(fd);
}

static void test_oversized_write(void)
{
    int fd = open_export("rw", false, false);
    size_t len = MAX_BUF + 4096;
    g_autofree uint8_t *buf = g_malloc0(len);
    uint8_t back[512];

    /* Refused, but its payload is skipped so the next request parses. */
    send_req(fd, 0, NBD_CMD_WRITE, 1, 0, len, buf);
    g_assert_cmpuint(recv_simple(fd, 1, NULL, 0), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_READ, 2, 64 * 1024, 512, NULL);
    g_assert_cmpuint(recv_simple(fd, 2, back, 512), ==, 0);
    g_assert_cmpuint(back[0], ==, 0xab);
    disc(fd);
}

static void test_read_only(void)
{
    int fd = open_export("ro", true, false);
    uint8_t buf[512] = { 0 };

    send_req(fd, 0, NBD_CMD_WRITE, 1, 0, 512, buf);
    g_assert_cmpuint(recv_error_chunk(fd, 1), ==, NBD_EPERM);
    send_req(fd, 0, NBD_CMD_TRIM, 2, 0, 512, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 2), ==, NBD_EPERM);
    send_req(fd, 0, NBD_CMD_WRITE_ZEROES, 3, 0, 512, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 3), ==, NBD_EPERM);
    /* A refused oversized write on a read-only export keeps step too. */
    {
        g_autofree uint8_t *big = g_malloc0(MAX_BUF + 1);
        send_req(fd, 0, NBD_CMD_WRITE, 4, 0, MAX_BUF + 1, big);
        g_assert_cmpuint(recv_error_chunk(fd, 4), ==, NBD_EPERM);
    }
    send_req(fd, 0, NBD_CMD_FLUSH, 5, 0, 0, NULL);
    g_assert_cmpuint(recv_simple(fd, 5, NULL, 0), ==, 0);
    disc(fd);
}

static void test_structured(void)
{
    int fd = open_export("rw", true, true);
    Chunk c;

    send_req(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 1, 64 * 1024 - 8, 24, NULL);
    recv_chunk(fd, &c);
    g_assert_cmphex(c.handle, ==, 1);
    g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_OFFSET_DATA);
    g_assert_cmphex(c.flags, ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(c.len, ==, 32);
    g_assert_cmpuint(ldq_be_p(c.payload), ==, 64 * 1024 - 8);
    g_assert_cmpuint(c.payload[8 + 7], ==, 0);
    g_assert_cmpuint(c.payload[8 + 8], ==, 0xab);
    g_free(c.payload);

    send_req(fd, 0, NBD_CMD_READ, 2, RW_SIZE, 1, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 2), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_READ, 3, 0, 0, NULL);
    recv_chunk(fd, &c);
    g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_NONE);
    g_assert_cmphex(c.flags, ==, NBD_REPLY_FLAG_DONE);
    g_free(c.payload);
    send_req(fd, 0, 42, 4, 0, 0, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 4), ==, NBD_EINVAL);
    disc(fd);
}

static void expect_extents(int fd, uint64_t handle, const uint32_t *ext,
                           int n)
{
    Chunk c;

    recv_chunk(fd, &c);
    g_assert_cmphex(c.handle, ==, handle);
    g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_BLOCK_STATUS);
    g_assert_cmphex(c.flags, ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(c.len, ==, 4 + 8 * n);
    g_assert_cmpuint(ldl_be_p(c.payload), ==, 0);
    for (int i = 0; i < 2 * n; i++) {
        g_assert_cmpuint(ldl_be_p(c.payload + 4 + 4 * i), ==, ext[i]);
    }
    g_free(c.payload);
}

static void test_block_status(void)
{
    int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    uint32_t map[] = { 64 * 1024, 3, 64 * 1024, 0, 64 * 1024, 3 };
    uint32_t one[] = { 16 * 1024, 3 };
    uint32_t tail[] = { 32 * 1024, 0, 32 * 1024, 3 };
    const char *q[] = { "base:allocation", NULL };
    uint64_t size;

    /* Metadata selected for "ro", GO on "rw": no context for "rw". */
    g_assert_cmphex(opt_roundtrip(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0), ==,
                    NBD_REP_ACK);
    meta_expect(fd, NBD_OPT_SET_META_CONTEXT, "ro", q, true);
    go(fd, "rw", &size);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 1), ==, NBD_EINVAL);
    disc(fd);

    /* Fresh "ro" image: hole, data [64K, 128K), hole. */
    fd = open_export("ro", true, true);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 2, 0, 192 * 1024, NULL);
    expect_extents(fd, 2, map, 3);
    send_req(fd, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 3, 0, 16 * 1024,
             NULL);
    expect_extents(fd, 3, one, 1);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 4, 96 * 1024, 64 * 1024, NULL);
    expect_extents(fd, 4, tail, 2);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 5, RO_SIZE - 512, 1024, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 5), ==, NBD_EINVAL);
    send_req(fd, 0, NBD_CMD_BLOCK_STATUS, 6, 0, 0, NULL);
    g_assert_cmpuint(recv_error_chunk(fd, 6), ==, NBD_EINVAL);
    disc(fd);
}

/* Many requests in flight on one connection, answered in any order. */
static void test_pipelining(void)
{
    enum { N = 100, LEN = 64 * 1024 };
    int fd = open_export("rw", true, false);
    g_autofree uint8_t *buf = g_malloc(LEN);
    bool seen[2 * N] = { false };

    for (int i = 0; i < N; i++) {
        memset(buf, i, LEN);
        send_req(fd, 0, NBD_CMD_WRITE, i, 2 * 1024 * 1024 + i * LEN / 4,
                 LEN / 4, buf);
    }
    for (int i = 0; i < N; i++) {
        send_req(fd, 0, NBD_CMD_READ, N + i, 2 * 1024 * 1024, 1024, NULL);
    }
    for (int i = 0; i < 2 * N; i++) {
        Chunk c;
        recv_chunk(fd, &c);
        g_assert_cmpuint(c.handle, <, 2 * N);
        g_assert_false(seen[c.handle]);
        seen[c.handle] = true;
        g_assert_cmphex(c.flags, ==, NBD_REPLY_FLAG_DONE);
        g_assert_cmphex(c.type, ==, c.handle < N ? NBD_REPLY_TYPE_NONE
                                                 : NBD_REPLY_TYPE_OFFSET_DATA);
        g_free(c.payload);
    }
    /* A flush after all the write replies; then the data is all there. */
    send_req(fd, 0, NBD_CMD_FLUSH, 1000, 0, 0, NULL);
    {
        Chunk c;
        recv_chunk(fd, &c);
        g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_NONE);
        g_free(c.payload);
    }
    for (int i = 0; i < N; i++) {
        uint8_t b;
        g_assert_cmpint(blk_pread(rw_blk, 2 * 1024 * 1024 + i * LEN / 4, 1,
                                  &b, 0), ==, 0);
        g_assert_cmpuint(b, ==, i);
    }
    disc(fd);
}

/* Misbehaving clients: the server survives and goes on serving. */
static void test_bad_request_magic(void)
{
    int fd = open_export("rw", false, false);
    uint8_t junk[28] = { 0x12, 0x34 };

    xwrite(fd, junk, sizeof(junk));
    assert_closed(fd);
    check_server_alive();
}

static void test_truncated(void)
{
    uint8_t hdr[28];
    int fd;

    /* Half a request header. */
    fd = open_export("rw", false, false);
    stl_be_p(hdr, NBD_REQUEST_MAGIC);
    xwrite(fd, hdr, 10);
    close(fd);

    /* A write whose payload stops short. */
    fd = open_export("rw", false, false);
    send_req(fd, 0, NBD_CMD_WRITE, 1, 0, 65536, NULL);
    xwrite(fd, hdr, sizeof(hdr));
    close(fd);

    /* Half an option. */
    fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt_header(fd, NBD_OPT_GO, 100);
    xwrite(fd, hdr, 10);
    close(fd);

    /* Nothing at all after connecting, or after the greeting. */
    close(connect_unix(sock_path));
    close(greet(sock_path, 0));
    check_server_alive();
}

static void test_disconnect_in_flight(void)
{
    g_autofree uint8_t *buf = g_malloc0(1024 * 1024);

    /* Requests in flight whose replies nobody reads. */
    for (int round = 0; round < 5; round++) {
        int fd = open_export("rw", round & 1, false);
        for (int i = 0; i < 20; i++) {
            send_req(fd, 0, NBD_CMD_WRITE, i, 1024 * 1024, 1024 * 1024, buf);
            send_req(fd, 0, NBD_CMD_READ, 100 + i, 1024 * 1024, 1024 * 1024,
                     NULL);
        }
        close(fd);
    }
    check_server_alive();
}

/* DISC after writes: all are answered and done before the close. */
static void test_disc_completes(void)
{
    int fd = open_export("rw", false, false);
    uint8_t buf[4096], back[4096];

    for (int i = 0; i < 16; i++) {
        memset(buf, 0x40 + i, sizeof(buf));
        send_req(fd, 0, NBD_CMD_WRITE, i, 3 * 1024 * 1024 + i * 4096, 4096,
                 buf);
    }
    send_req(fd, 0, NBD_CMD_DISC, 99, 0, 0, NULL);
    for (int i = 0; i < 16; i++) {
        uint8_t hdr[16];
        g_assert_true(xread(fd, hdr, sizeof(hdr)));
        g_assert_cmpuint(ldl_be_p(hdr + 4), ==, 0);
        g_assert_cmpuint(ldq_be_p(hdr + 8), <, 16);
    }
    assert_closed(fd);

    fd = open_export("rw", false, false);
    for (int i = 0; i < 16; i++) {
        memset(buf, 0x40 + i, sizeof(buf));
        send_req(fd, 0, NBD_CMD_READ, i, 3 * 1024 * 1024 + i * 4096, 4096,
                 NULL);
        g_assert_cmpuint(recv_simple(fd, i, back, 4096), ==, 0);
        g_assert_cmpmem(buf, 4096, back, 4096);
    }
    disc(fd);
}

/* Several connections writing and verifying their own regions at once. */
static gpointer concurrent_worker(gpointer opaque)
{
    int id = GPOINTER_TO_INT(opaque);
    int fd = open_export("rw", id & 1, false);
    uint64_t base = 2 * 1024 * 1024 + id * 128 * 1024;
    uint8_t buf[8192], back[8192];

    for (int iter = 0; iter < 50; iter++) {
        uint64_t off = base + (iter % 16) * 8192;
        memset(buf, id * 16 + iter, sizeof(buf));
        send_req(fd, NBD_CMD_FLAG_FUA * (iter & 1), NBD_CMD_WRITE, iter, off,
                 sizeof(buf), buf);
        send_req(fd, 0, NBD_CMD_FLUSH, 1000 + iter, 0, 0, NULL);
        for (int r = 0; r < 2; r++) {
            Chunk c;
            recv_chunk(fd, &c);
            g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_NONE);
            g_free(c.payload);
        }
        send_req(fd, 0, NBD_CMD_READ, 2000 + iter, off, sizeof(back), NULL);
        if (id & 1) {
            Chunk c;
            recv_chunk(fd, &c);
            g_assert_cmphex(c.type, ==, NBD_REPLY_TYPE_OFFSET_DATA);
            memcpy(back, c.payload + 8, sizeof(back));
            g_free(c.payload);
        } else {
            g_assert_cmpuint(recv_simple(fd, 2000 + iter, back, sizeof(back)),
                             ==, 0);
        }
        g_assert_cmpmem(buf, sizeof(buf), back, sizeof(back));
    }
    disc(fd);
    return NULL;
}

static void test_concurrent_clients(void)
{
    GThread *t[8];

    for (int i = 0; i < 8; i++) {
        t[i] = g_thread_new("client", concurrent_worker, GINT_TO_POINTER(i));
    }
    for (int i = 0; i < 8; i++) {
        g_thread_join(t[i]);
    }
}

/*
 * Seeded random garbage: raw bytes, random options, random requests with
 * valid framing.  Every option and request must get a well-formed answer
 * (or the documented close), and the server must keep serving.
 */
static void fuzz_raw_bytes(GRand *rand)
{
    for (int i = 0; i < 30; i++) {
        int fd = greet(sock_path, g_rand_int_range(rand, 0, 4));
        uint8_t junk[256];
        int len = g_rand_int_range(rand, 0, sizeof(junk));

        for (int j = 0; j < len; j++) {
            junk[j] = g_rand_int(rand);
        }
        /* The server may hang up half-way: ignore send errors. */
        if (send(fd, junk, len, MSG_NOSIGNAL) < 0) {
            g_assert_true(errno == EPIPE || errno == ECONNRESET);
        }
        close(fd);
    }
}

/* Reply types of one option up to its final one; false if closed. */
static bool fuzz_option_replies(int fd, uint32_t opt, uint32_t *last)
{
    uint8_t hdr[20];
    g_autofree uint8_t *data = NULL;

    for (;;) {
        uint32_t len;

        if (!xread(fd, hdr, sizeof(hdr))) {
            return false;
        }
        g_assert_cmphex(ldq_be_p(hdr), ==, NBD_REP_MAGIC);
        g_assert_cmphex(ldl_be_p(hdr + 8), ==, opt);
        *last = ldl_be_p(hdr + 12);
        len = ldl_be_p(hdr + 16);
        g_assert_cmpuint(len, <=, 64 * 1024);
        data = g_realloc(data, len);
        g_assert_true(xread(fd, data, len));
        if (*last == NBD_REP_ACK || (*last & NBD_REP_FLAG_ERROR)) {
            return true;
        }
        g_assert_true(*last == NBD_REP_SERVER || *last == NBD_REP_INFO ||
                      *last == NBD_REP_META_CONTEXT);
    }
}

static void fuzz_options(GRand *rand)
{
    static const char *names[] = { "rw", "ro", "", "nope" };

    for (int i = 0; i < 40; i++) {
        int fd = greet(sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
        bool open = true;

        for (int k = 0; k < 10 && open; k++) {
            uint32_t opt = g_rand_int_range(rand, 0, 13), last;
            g_autoptr(GByteArray) p = NULL;

            if (opt == NBD_OPT_INFO || opt == NBD_OPT_GO) {
                uint16_t reqs[3] = { g_rand_int_range(rand, 0, 6), 3, 1 };
                p = info_payload(names[g_rand_int_range(rand, 0, 4)], reqs,
                                 g_rand_int_range(rand, 0, 4));
            } else if (opt == NBD_OPT_LIST_META_CONTEXT ||
                       opt == NBD_OPT_SET_META_CONTEXT) {
                const char *q[] = { "base:", "base:allocation", "x:y", NULL };
                p = meta_payload(names[g_rand_int_range(rand, 0, 4)],
                                 q + g_rand_int_range(rand, 0, 4));
            } else {
                p = g_byte_array_new();
                g_byte_array_set_size(p, g_rand_int_range(rand, 0, 3) ?
                                         0 : g_rand_int_range(rand, 0, 64));
            }
            /* Corrupt some of the payloads. */
            if (p->len && !g_rand_int_range(rand, 0, 3)) {
                p->data[g_rand_int_range(rand, 0, p->len)] = g_rand_int(rand);
                g_byte_array_set_size(p, g_rand_int_range(rand, 0,
                                                          p->len + 1));
            }
            send_opt(fd, opt, p->data, p->len);
            if (opt == NBD_OPT_EXPORT_NAME) {
                break;      /* transmission or close: nothing to check */
            }
            open = fuzz_option_replies(fd, opt, &last);
            g_assert_true(open || opt == NBD_OPT_ABORT);
            if ((opt == NBD_OPT_GO && last == NBD_REP_ACK) ||
                opt == NBD_OPT_ABORT) {
                break;
            }
        }
        close(fd);
    }
}

/* Read one whole reply (all chunks) to handle. */
static void fuzz_read_reply(int fd, uint64_t handle, bool structured)
{
    Chunk c;

    do {
        recv_chunk(fd, &c);
        g_assert_cmphex(c.handle, ==, handle);
        g_assert_true(structured || c.len == 0);
        g_free(c.payload);
    } while (!(c.flags & NBD_REPLY_FLAG_DONE));
}

static void fuzz_requests(GRand *rand)
{
    g_autofree uint8_t *buf = g_malloc0(1024 * 1024);

    for (int i = 0; i < 20; i++) {
        bool structured = g_rand_boolean(rand);
        int fd = open_export(g_rand_boolean(rand) ? "rw" : "ro", structured,
                             structured && g_rand_boolean(rand));

        for (int k = 0; k < 50; k++) {
            uint16_t type = g_rand_int_range(rand, 0, 10);
            uint16_t flags = g_rand_int(rand) % (g_rand_boolean(rand) ? 65536
                                                                     : 32);
            uint64_t offset = g_rand_boolean(rand)
                ? g_rand_int(rand) % RO_SIZE
                : ((uint64_t)g_rand_int(rand) << 32) | g_rand_int(rand);
            uint32_t len = g_rand_int(rand) % (g_rand_boolean(rand)
                                               ? 1024 * 1024 : UINT32_MAX);

            if (type == NBD_CMD_DISC) {
                continue;
            }
            if (type == NBD_CMD_WRITE) {
                len %= 1024 * 1024;     /* the payload has to be sent */
            }
            send_req(fd, flags, type, k, offset, len,
                     type == NBD_CMD_WRITE ? buf : NULL);
            if (type == NBD_CMD_READ && !structured) {
                /* Success carries len bytes of data. */
                uint8_t hdr[16];
                g_assert_true(xread(fd, hdr, sizeof(hdr)));
                g_assert_cmphex(ldl_be_p(hdr), ==, NBD_SIMPLE_REPLY_MAGIC);
                g_assert_cmphex(ldq_be_p(hdr + 8), ==, k);
                if (!ldl_be_p(hdr + 4)) {
                    g_autofree uint8_t *data = g_malloc(len);
                    g_assert_true(xread(fd, data, len));
                }
            } else {
                fuzz_read_reply(fd, k, structured);
            }
        }
        disc(fd);
    }
}

static void test_fuzz(void)
{
    g_autoptr(GRand) rand = g_rand_new_with_seed(20221214);

    fuzz_raw_bytes(rand);
    fuzz_options(rand);
    fuzz_requests(rand);
    check_server_alive();
}

/* Server lifecycle tests (own servers) */

static NBDServer *start_unix(const char *name, uint32_t max_conn,
                             char **path)
{
    NBDServerAddr addr = { .type = NBD_ADDR_UNIX };

    *path = g_build_filename(tmpdir, name, NULL);
    addr.path = *path;
    return nbd_server_start(&addr, max_conn, &error_abort);
}

static void test_max_connections(void)
{
    g_autofree char *path = NULL;
    NBDServer *s = start_unix("max.sock", 2, &path);
    uint8_t greeting[18];
    int a, b, c;

    nbd_export_add(s, "x", NULL, ro_blk, false, &error_abort);
    a = greet(path, NBD_FLAG_C_FIXED_NEWSTYLE);
    b = greet(path, NBD_FLAG_C_FIXED_NEWSTYLE);
    c = connect_unix(path);
    assert_closed(c);
    close(a);
    /* The slot frees once the server has noticed the close. */
    for (int i = 0; i < 100; i++) {
        c = connect_unix(path);
        if (xread(c, greeting, sizeof(greeting))) {
            break;
        }
        close(c);
        c = -1;
        g_usleep(10000);
    }
    g_assert_cmpint(c, >=, 0);
    close(c);
    close(b);
    nbd_server_stop(s);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void test_stale_socket_and_tcp(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "stale.sock", NULL);
    NBDServerAddr addr = { .type = NBD_ADDR_UNIX, .path = path };
    NBDServer *s;
    Error *err = NULL;
    int fd;

    /* A stale socket file is replaced. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
        g_assert_cmpint(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), ==,
                        0);
    }
    close(fd);
    s = nbd_server_start(&addr, 0, &error_abort);
    nbd_server_stop(s);

    /* A regular file in the way is an error, not silently removed. */
    g_assert_true(g_file_set_contents(path, "x", 1, NULL));
    g_assert_null(nbd_server_start(&addr, 0, &err));
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    unlink(path);

    /* TCP on loopback, ephemeral port range probed. */
    addr.type = NBD_ADDR_INET;
    addr.host = (char *)"127.0.0.1";
    addr.port = (char *)"notaport";
    g_assert_null(nbd_server_start(&addr, 0, &err));
    error_free(err);
    err = NULL;
    s = NULL;
    for (int port = 20000 + g_random_int_range(0, 20000); !s; port++) {
        g_autofree char *p = g_strdup_printf("%d", port);
        struct sockaddr_in sin = { .sin_family = AF_INET,
                                   .sin_port = htons(port),
                                   .sin_addr.s_addr = htonl(0x7f000001) };
        uint8_t greeting[18];

        addr.port = p;
        s = nbd_server_start(&addr, 0, NULL);
        if (!s) {
            continue;
        }
        fd = socket(AF_INET, SOCK_STREAM, 0);
        g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), ==,
                        0);
        g_assert_true(xread(fd, greeting, sizeof(greeting)));
        g_assert_cmphex(ldq_be_p(greeting), ==, NBD_MAGIC);
        close(fd);
    }
    nbd_server_stop(s);
}

/* The empty name is an ordinary name: EXPORT_NAME and GO with no data. */
static void test_default_export(void)
{
    g_autofree char *path = NULL;
    NBDServer *s = start_unix("default.sock", 0, &path);
    uint8_t buf[10];
    uint64_t size;
    int fd;

    nbd_export_add(s, "", NULL, ro_blk, false, &error_abort);
    fd = greet(path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(fd, NBD_OPT_EXPORT_NAME, NULL, 0);
    g_assert_true(xread(fd, buf, sizeof(buf)));
    g_assert_cmpuint(ldq_be_p(buf), ==, RO_SIZE);
    close(fd);

    fd = greet(path, NBD_FLAG_C_FIXED_NEWSTYLE);
    g_assert_cmphex(go(fd, "", &size), ==, 0x050f);
    g_assert_cmpuint(size, ==, RO_SIZE);
    close(fd);
    nbd_server_stop(s);
}

static void test_export_remove(void)
{
    g_autofree char *path = NULL;
    NBDServer *s = start_unix("remove.sock", 0, &path);
    NBDExport *exp;
    char *saved = sock_path;
    uint8_t buf[512];
    int fd, idle;

    g_assert_null(nbd_export_add(s, "x", NULL, ro_blk, true, NULL));
    exp = nbd_export_add(s, "x", NULL, rw_blk, true, &error_abort);
    g_assert_null(nbd_export_add(s, "x", NULL, rw_blk, true, NULL));
    g_assert_true(nbd_export_find(s, "x") == exp);
    g_assert_cmpstr(nbd_export_name(exp), ==, "x");

    sock_path = path;
    fd = open_export("x", false, false);
    idle = greet(path, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_req(fd, 0, NBD_CMD_READ, 1, 0, 512, NULL);
    nbd_export_remove(s, exp);
    /*
     * The read was answered if the server had taken it before the
     * removal, else dropped; either way the connection is closed.
     */
    {
        uint8_t hdr[16];
        if (xread(fd, hdr, sizeof(hdr))) {
            g_assert_cmphex(ldl_be_p(hdr), ==, NBD_SIMPLE_REPLY_MAGIC);
            g_assert_cmpuint(ldl_be_p(hdr + 4), ==, 0);
            g_assert_true(xread(fd, buf, sizeof(buf)));
        }
    }
    assert_closed(fd);
    g_assert_null(nbd_export_find(s, "x"));

    /* The client still negotiating is unaffected, but the export is gone. */
    {
        g_autoptr(GByteArray) p = info_payload("x", NULL, 0);
        g_assert_cmphex(opt_roundtrip(idle, NBD_OPT_GO, p->data, p->len), ==,
                        NBD_REP_ERR_UNKNOWN);
    }
    sock_path = saved;

    /* Stop with a client in the middle of the handshake. */
    nbd_server_stop(s);
    assert_closed(idle);
}

static void test_stop_with_busy_clients(void)
{
    g_autofree char *path = NULL;
    NBDServer *s = start_unix("stop.sock", 0, &path);
    char *saved = sock_path;
    g_autofree uint8_t *buf = g_malloc0(1024 * 1024);
    int fds[4];
    gint64 start;

    nbd_export_add(s, "rw", NULL, rw_blk, true, &error_abort);
    sock_path = path;
    for (int i = 0; i < 4; i++) {
        fds[i] = open_export("rw", false, false);
    }
    sock_path = saved;
    /* One client fills the pipe with reads it never collects. */
    for (int i = 0; i < 40; i++) {
        send_req(fds[0], 0, NBD_CMD_READ, i, 0, 1024 * 1024, NULL);
    }
    /* Another one has a write acknowledged. */
    memset(buf, 0x5c, 1024 * 1024);
    send_req(fds[1], 0, NBD_CMD_WRITE, 1, 0, 1024 * 1024, buf);
    g_assert_cmpuint(recv_simple(fds[1], 1, NULL, 0), ==, 0);
    /* Make sure the server is stuck sending to the first one. */
    g_usleep(200 * 1000);

    start = g_get_monotonic_time();
    nbd_server_stop(s);
    /* Bounded by the grace period for the client that does not read. */
    g_assert_cmpint(g_get_monotonic_time() - start, <, 10 * G_USEC_PER_SEC);
    for (int i = 1; i < 4; i++) {
        assert_closed(fds[i]);
    }
    close(fds[0]);
    {
        uint8_t b[2];
        g_assert_cmpint(blk_pread(rw_blk, 1024 * 1024 - 2, 2, b, 0), ==, 0);
        g_assert_cmpuint(b[0], ==, 0x5c);
        g_assert_cmpuint(b[1], ==, 0x5c);
    }
}

/* Setup */

static BlockBackend *make_image(const char *name, int64_t size, bool rw)
{
    g_autofree char *path = g_build_filename(tmpdir, name, NULL);
    QDict *opts = qdict_new();
    BlockBackend *blk;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    uint8_t data[65536];

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    memset(data, 0xab, sizeof(data));
    g_assert_cmpint(pwrite(fd, data, sizeof(data), 64 * 1024), ==,
                    sizeof(data));
    close(fd);
    qdict_put_str(opts, "driver", "raw");
    blk = blk_new_open(path, opts, rw ? BDRV_O_RDWR | BDRV_O_UNMAP : 0,
                       &error_abort);
    return blk;
}

int main(int argc, char **argv)
{
    NBDServerAddr addr = { .type = NBD_ADDR_UNIX };
    int ret;

    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    tmpdir = g_dir_make_tmp("nbd-test-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    rw_blk = make_image("rw.raw", RW_SIZE, true);
    ro_blk = make_image("ro.raw", RO_SIZE, false);
    sock_path = g_build_filename(tmpdir, "nbd.sock", NULL);
    addr.path = sock_path;
    server = nbd_server_start(&addr, 0, &error_abort);
    nbd_export_add(server, "rw", NULL, rw_blk, true, &error_abort);
    nbd_export_add(server, "ro", "read-only disk", ro_blk, false,
                   &error_abort);

    g_test_add_func("/nbd/handshake/unknown-client-flags",
                    test_unknown_client_flags);
    g_test_add_func("/nbd/handshake/bad-option-magic", test_bad_option_magic);
    g_test_add_func("/nbd/handshake/unknown-options", test_unknown_options);
    g_test_add_func("/nbd/handshake/oversized-option", test_oversized_option);
    g_test_add_func("/nbd/handshake/list", test_list);
    g_test_add_func("/nbd/handshake/info", test_info);
    g_test_add_func("/nbd/handshake/export-name", test_export_name);
    g_test_add_func("/nbd/handshake/meta-context", test_meta_context);
    g_test_add_func("/nbd/io/read-write-simple", test_read_write_simple);
    g_test_add_func("/nbd/io/errors-simple", test_errors_simple);
    g_test_add_func("/nbd/io/oversized-write", test_oversized_write);
    g_test_add_func("/nbd/io/read-only", test_read_only);
    g_test_add_func("/nbd/io/structured", test_structured);
    g_test_add_func("/nbd/io/block-status", test_block_status);
    g_test_add_func("/nbd/io/pipelining", test_pipelining);
    g_test_add_func("/nbd/robust/bad-request-magic", test_bad_request_magic);
    g_test_add_func("/nbd/robust/truncated", test_truncated);
    g_test_add_func("/nbd/robust/disconnect-in-flight",
                    test_disconnect_in_flight);
    g_test_add_func("/nbd/robust/disc-completes", test_disc_completes);
    g_test_add_func("/nbd/robust/concurrent-clients",
                    test_concurrent_clients);
    g_test_add_func("/nbd/robust/fuzz", test_fuzz);
    g_test_add_func("/nbd/server/max-connections", test_max_connections);
    g_test_add_func("/nbd/server/stale-socket-and-tcp",
                    test_stale_socket_and_tcp);
    g_test_add_func("/nbd/server/default-export", test_default_export);
    g_test_add_func("/nbd/server/export-remove", test_export_remove);
    g_test_add_func("/nbd/server/stop-with-busy-clients",
                    test_stop_with_busy_clients);
    ret = g_test_run();

    nbd_server_stop(server);
    blk_unref(rw_blk);
    blk_unref(ro_blk);
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) {
            ret = ret ? ret : 1;
        }
    }
    g_free(sock_path);
    g_free(tmpdir);
    return ret;
}

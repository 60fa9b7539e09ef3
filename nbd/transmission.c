/*
 * NBD transmission phase: read requests, run them on worker threads, reply.
 *
 * The connection thread reads and checks each request (and a WRITE's
 * payload) and pushes it to the connection's GThreadPool; workers do the
 * block I/O through the export's BlockBackend and send the reply under the
 * connection's send lock, so replies leave in completion order.  At most
 * NBD_MAX_IN_FLIGHT requests and NBD_MAX_IN_FLIGHT_BYTES of buffers are in
 * flight per connection; the reader waits for room before taking more.
 *
 * Ordering guarantees come from the block layer: a write is answered only
 * once it completed, and blk_flush() makes every completed write durable,
 * so a FLUSH covers every write answered before it.  FUA writes flush
 * before their reply.
 *
 * Error rules (NBD error values):
 *   unknown command, unknown or inapplicable flag        EINVAL
 *   READ/WRITE/CACHE longer than NBD_MAX_BUFFER_SIZE     EINVAL
 *   WRITE, TRIM, WRITE_ZEROES on a read-only export      EPERM
 *   range past the end: WRITE, WRITE_ZEROES              ENOSPC
 *                       READ, TRIM, CACHE, BLOCK_STATUS  EINVAL
 *   BLOCK_STATUS without base:allocation, or length 0    EINVAL
 *   FAST_ZERO that would need a slow fallback            ENOTSUP
 * A WRITE that is refused still has its payload read (in small pieces,
 * never allocated) so the stream stays in step.  A bad request magic or a
 * short read closes the connection.  Requests of length 0 succeed.
 *
 * Once structured replies are negotiated, READ answers with one
 * OFFSET_DATA chunk (never fragmented, so DF always holds) and errors of
 * any command go out as an ERROR chunk with a message; other successes
 * use simple replies.
 */
#include "qemu/osdep.h"
#include "nbd-internal.h"

typedef struct NBDRequest {
    uint64_t handle;
    uint64_t offset;
    uint32_t len;
    uint16_t flags;
    uint16_t type;
    void *data;                 /* WRITE payload */
    uint64_t cost;              /* bytes counted in in_flight_bytes */
} NBDRequest;

uint16_t nbd_transmission_flags(NBDExport *exp, bool structured_reply)
{
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                     NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN |
                     NBD_FLAG_SEND_CACHE;

    if (structured_reply) {
        flags |= NBD_FLAG_SEND_DF;
    }
    if (exp->writable) {
        flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                 NBD_FLAG_SEND_FAST_ZERO;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    return flags;
}

/* The protocol allows ENOTSUP only for a failed fast zero request. */
static uint32_t nbd_errno_to_wire(int err, bool fast_zero)
{
    switch (err) {
    case EPERM:
    case EACCES:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return fast_zero ? NBD_ENOTSUP : NBD_EIO;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* Replies */

static int nbd_send_simple_reply(NBDClient *client, NBDRequest *req,
                                 uint32_t error, void *data, size_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = data, .iov_len = len },
    };

    stl_be_p(hdr, NBD_SIMPLE_REPLY_MAGIC);
    stl_be_p(hdr + 4, error);
    stq_be_p(hdr + 8, req->handle);
    return nbd_client_send(client, iov, 2);
}

/* One final structured chunk; its payload is iov[1..niov-1]. */
static int nbd_send_chunk(NBDClient *client, NBDRequest *req, uint16_t type,
                          struct iovec *iov, int niov)
{
    uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE];
    size_t len = 0;

    for (int i = 1; i < niov; i++) {
        len += iov[i].iov_len;
    }
    stl_be_p(hdr, NBD_STRUCTURED_REPLY_MAGIC);
    stw_be_p(hdr + 4, NBD_REPLY_FLAG_DONE);
    stw_be_p(hdr + 6, type);
    stq_be_p(hdr + 8, req->handle);
    stl_be_p(hdr + 16, len);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    return nbd_client_send(client, iov, niov);
}

static int nbd_send_error(NBDClient *client, NBDRequest *req, uint32_t error,
                          const char *msg)
{
    uint8_t head[6];
    size_t msg_len = MIN(strlen(msg), NBD_MAX_STRING_SIZE);
    struct iovec iov[3] = {
        [1] = { .iov_base = head, .iov_len = sizeof(head) },
        [2] = { .iov_base = (void *)msg, .iov_len = msg_len },
    };

    if (!client->structured_reply) {
        return nbd_send_simple_reply(client, req, error, NULL, 0);
    }
    stl_be_p(head, error);
    stw_be_p(head + 4, msg_len);
    return nbd_send_chunk(client, req, NBD_REPLY_TYPE_ERROR, iov, 3);
}

static int nbd_send_errno(NBDClient *client, NBDRequest *req, int ret)
{
    bool fast_zero = req->type == NBD_CMD_WRITE_ZEROES &&
                     (req->flags & NBD_CMD_FLAG_FAST_ZERO);
    g_autofree char *msg = g_strdup_printf("Request failed: %s",
                                           g_strerror(-ret));

    return nbd_send_error(client, req, nbd_errno_to_wire(-ret, fast_zero),
                          msg);
}

/* Commands */

static void nbd_do_read(NBDClient *client, NBDRequest *req)
{
    BlockBackend *blk = client->exp->blk;
    uint8_t offset_be[8];
    struct iovec iov[3];
    void *buf = NULL;
    int ret = 0;

    if (req->len) {
        buf = qemu_try_blockalign(req->len);
        ret = buf ? blk_pread(blk, req->offset, req->len, buf, 0) : -ENOMEM;
    }
    if (ret < 0) {
        nbd_send_errno(client, req, ret);
    } else if (!client->structured_reply) {
        nbd_send_simple_reply(client, req, 0, buf, req->len);
    } else if (!req->len) {
        nbd_send_chunk(client, req, NBD_REPLY_TYPE_NONE, iov, 1);
    } else {
        stq_be_p(offset_be, req->offset);
        iov[1] = (struct iovec) { .iov_base = offset_be, .iov_len = 8 };
        iov[2] = (struct iovec) { .iov_base = buf, .iov_len = req->len };
        nbd_send_chunk(client, req, NBD_REPLY_TYPE_OFFSET_DATA, iov, 3);
    }
    qemu_vfree(buf);
}

static uint32_t nbd_allocation_flags(int status)
{
    return (status & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
           (status & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
}

/*
 * base:allocation extents of the request's range as (length, flags)
 * pairs; neighbours with equal flags are merged.
 */
static int nbd_collect_extents(NBDClient *client, NBDRequest *req,
                               GArray *extents)
{
    BlockDriverState *bs = blk_bs(client->exp->blk);
    uint64_t offset = req->offset;
    uint64_t end = req->offset + req->len;
    uint32_t *last = NULL;

    while (offset < end && extents->len < 2 * NBD_MAX_EXTENTS) {
        int64_t pnum;
        int ret = bdrv_block_status_above(bs, NULL, offset, end - offset,
                                          &pnum, NULL, NULL, NULL);
        uint32_t flags;

        if (ret < 0) {
            return ret;
        }
        if (pnum <= 0) {
            break;
        }
        flags = nbd_allocation_flags(ret);
        if (last && last[1] == flags) {
            last[0] += pnum;
        } else {
            uint32_t ext[2] = { pnum, flags };
            g_array_append_vals(extents, ext, 2);
            last = &g_array_index(extents, uint32_t, extents->len - 2);
        }
        offset += pnum;
        if (req->flags & NBD_CMD_FLAG_REQ_ONE) {
            break;
        }
    }
    return extents->len ? 0 : -EIO;
}

static void nbd_do_block_status(NBDClient *client, NBDRequest *req)
{
    g_autoptr(GArray) extents = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    g_autofree uint8_t *payload = NULL;
    struct iovec iov[2];
    int ret = nbd_collect_extents(client, req, extents);

    if (ret < 0) {
        nbd_send_errno(client, req, ret);
        return;
    }
    payload = g_malloc(4 + extents->len * 4);
    stl_be_p(payload, 0);       /* context id of base:allocation */
    for (guint i = 0; i < extents->len; i++) {
        stl_be_p(payload + 4 + i * 4, g_array_index(extents, uint32_t, i));
    }
    iov[1] = (struct iovec) { .iov_base = payload,
                              .iov_len = 4 + extents->len * 4 };
    nbd_send_chunk(client, req, NBD_REPLY_TYPE_BLOCK_STATUS, iov, 2);
}

static int nbd_do_write_zeroes(BlockBackend *blk, NBDRequest *req)
{
    BdrvRequestFlags flags = 0;

    if (req->flags & NBD_CMD_FLAG_FUA) {
        flags |= BDRV_REQ_FUA;
    }
    if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
        flags |= BDRV_REQ_NO_FALLBACK;
    }
    return blk_pwrite_zeroes(blk, req->offset, req->len, flags);
}

/* Commands whose reply carries no data; 0 or -errno. */
static int nbd_do_command(NBDClient *client, NBDRequest *req)
{
    BlockBackend *blk = client->exp->blk;
    bool fua = req->flags & NBD_CMD_FLAG_FUA;
    int ret;

    if (!req->len && req->type != NBD_CMD_FLUSH) {
        return 0;
    }
    switch (req->type) {
    case NBD_CMD_WRITE:
        return blk_pwrite(blk, req->offset, req->len, req->data,
                          fua ? BDRV_REQ_FUA : 0);
    case NBD_CMD_FLUSH:
        return blk_flush(blk);
    case NBD_CMD_TRIM:
        ret = blk_pdiscard(blk, req->offset, req->len);
        return ret < 0 || !fua ? ret : blk_flush(blk);
    case NBD_CMD_WRITE_ZEROES:
        return nbd_do_write_zeroes(blk, req);
    case NBD_CMD_CACHE:
        return 0;   /* only a hint; the host page cache does the rest */
    default:
        g_assert_not_reached();
    }
}

static void nbd_request_free(NBDRequest *req)
{
    qemu_vfree(req->data);
    g_free(req);
}

static void nbd_request_done(NBDClient *client, NBDRequest *req)
{
    g_mutex_lock(&client->lock);
    client->in_flight--;
    client->in_flight_bytes -= req->cost;
    g_cond_broadcast(&client->cond);
    g_mutex_unlock(&client->lock);
    nbd_request_free(req);
}

/* Worker: run one request and answer it. */
static void nbd_request_run(gpointer data, gpointer opaque)
{
    NBDRequest *req = data;
    NBDClient *client = opaque;
    int ret;

    switch (req->type) {
    case NBD_CMD_READ:
        nbd_do_read(client, req);
        break;
    case NBD_CMD_BLOCK_STATUS:
        nbd_do_block_status(client, req);
        break;
    default:
        ret = nbd_do_command(client, req);
        if (ret < 0) {
            nbd_send_errno(client, req, ret);
        } else {
            nbd_send_simple_reply(client, req, 0, NULL, 0);
        }
    }
    nbd_request_done(client, req);
}

/* Receiving */

/* NBD error for a request that must not run, with a message; 0 if valid. */
static uint32_t nbd_request_check(NBDClient *client, NBDRequest *req,
                                  const char **msg)
{
    uint16_t valid_flags = NBD_CMD_FLAG_FUA;
    uint32_t past_end = NBD_EINVAL;
    bool writes = false, bounded = false, ranged = true;

    switch (req->type) {
    case NBD_CMD_READ:
        valid_flags |= client->structured_reply ? NBD_CMD_FLAG_DF : 0;
        bounded = true;
        break;
    case NBD_CMD_WRITE:
        writes = bounded = true;
        past_end = NBD_ENOSPC;
        break;
    case NBD_CMD_FLUSH:
        ranged = false;     /* offset and length are reserved */
        break;
    case NBD_CMD_TRIM:
        writes = true;
        break;
    case NBD_CMD_CACHE:
        bounded = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        valid_flags |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        writes = true;
        past_end = NBD_ENOSPC;
        break;
    case NBD_CMD_BLOCK_STATUS:
        valid_flags |= NBD_CMD_FLAG_REQ_ONE;
        if (!client->base_allocation) {
            *msg = "No metadata context was negotiated";
            return NBD_EINVAL;
        }
        if (!req->len) {
            *msg = "Block status of an empty range";
            return NBD_EINVAL;
        }
        break;
    default:
        *msg = "Unknown command";
        return NBD_EINVAL;
    }
    if (req->flags & ~valid_flags) {
        *msg = "Unsupported command flags";
        return NBD_EINVAL;
    }
    if (writes && !client->exp->writable) {
        *msg = "Export is read-only";
        return NBD_EPERM;
    }
    if (bounded && req->len > NBD_MAX_BUFFER_SIZE) {
        *msg = "Request length exceeds the maximum block size";
        return NBD_EINVAL;
    }
    if (ranged && (req->offset > (uint64_t)client->size ||
                   req->len > (uint64_t)client->size - req->offset)) {
        *msg = "Request range goes past the end of the export";
        return past_end;
    }
    return 0;
}

static int nbd_read_request(NBDClient *client, NBDRequest *req)
{
    uint8_t buf[NBD_REQUEST_SIZE];
    int ret = nbd_read_full(client->fd, buf, sizeof(buf));

    if (ret < 0) {
        return ret;
    }
    if (ldl_be_p(buf) != NBD_REQUEST_MAGIC) {
        return -EPROTO;
    }
    req->flags = lduw_be_p(buf + 4);
    req->type = lduw_be_p(buf + 6);
    req->handle = ldq_be_p(buf + 8);
    req->offset = ldq_be_p(buf + 16);
    req->len = ldl_be_p(buf + 24);
    return 0;
}

/* Wait for room to take one more request; false when closing. */
static bool nbd_reserve_slot(NBDClient *client, uint64_t cost)
{
    bool ok;

    g_mutex_lock(&client->lock);
    while (!g_atomic_int_get(&client->closing) && client->in_flight > 0 &&
           (client->in_flight >= NBD_MAX_IN_FLIGHT ||
            client->in_flight_bytes + cost > NBD_MAX_IN_FLIGHT_BYTES)) {
        g_cond_wait(&client->cond, &client->lock);
    }
    ok = !g_atomic_int_get(&client->closing);
    if (ok) {
        client->in_flight++;
        client->in_flight_bytes += cost;
    }
    g_mutex_unlock(&client->lock);
    return ok;
}

/* Read a WRITE payload into a new buffer, or skip it if refused. */
static int nbd_read_payload(NBDClient *client, NBDRequest *req,
                            uint32_t *error, const char **msg)
{
    if (!*error && req->len) {
        req->data = qemu_try_blockalign(req->len);
        if (!req->data) {
            *error = NBD_ENOMEM;
            *msg = "Out of memory for the write payload";
        }
    }
    if (req->data) {
        return nbd_read_full(client->fd, req->data, req->len);
    }
    return nbd_discard(client->fd, req->len);
}

/* Read and dispatch one request: 0 to go on, -errno (or DISC) to stop. */
static int nbd_receive_request(NBDClient *client)
{
    NBDRequest *req = g_new0(NBDRequest, 1);
    const char *msg = NULL;
    uint32_t error;
    int ret = nbd_read_request(client, req);

    if (ret < 0 || req->type == NBD_CMD_DISC) {
        g_free(req);
        return ret < 0 ? ret : -ESHUTDOWN;
    }
    error = nbd_request_check(client, req, &msg);
    if (!error && (req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE)) {
        req->cost = req->len;
    }
    if (!nbd_reserve_slot(client, req->cost)) {
        g_free(req);
        return -ESHUTDOWN;
    }
    if (req->type == NBD_CMD_WRITE) {
        ret = nbd_read_payload(client, req, &error, &msg);
    }
    if (ret < 0 || error) {
        if (ret == 0) {
            nbd_send_error(client, req, error, msg);
        }
        nbd_request_done(client, req);
        return ret;
    }
    g_thread_pool_push(client->pool, req, NULL);
    return 0;
}

void nbd_transmission_run(NBDClient *client)
{
    client->pool = g_thread_pool_new(nbd_request_run, client, NBD_WORKERS,
                                     FALSE, NULL);
    while (!g_atomic_int_get(&client->closing) &&
           nbd_receive_request(client) == 0) {
        /* next request */
    }
    /* Requests already received finish and are answered first. */
    g_thread_pool_free(client->pool, FALSE, TRUE);
    client->pool = NULL;
}

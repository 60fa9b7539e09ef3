/*
 * Blocking socket I/O for the NBD server: every call moves a whole message
 * or fails.  Sends use MSG_NOSIGNAL so that a client that went away yields
 * -EPIPE instead of killing the process with SIGPIPE.
 */
#include "qemu/osdep.h"
#include <sys/socket.h>
#include "nbd-internal.h"

int nbd_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -EPIPE;
        }
        p += n;
        len -= n;
    }
    return 0;
}

/* Skip a payload we will not use, without allocating it. */
int nbd_discard(int fd, uint64_t len)
{
    char buf[16 * KiB];

    while (len > 0) {
        size_t n = MIN(len, sizeof(buf));
        int ret = nbd_read_full(fd, buf, n);

        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

int nbd_writev_full(int fd, struct iovec *iov, int niov)
{
    while (niov > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        /* Drop what went out; iov is the caller's scratch array. */
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

int nbd_write_full(int fd, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_writev_full(fd, &iov, 1);
}

int nbd_client_send(NBDClient *client, struct iovec *iov, int niov)
{
    int ret = -EPIPE;

    g_mutex_lock(&client->send_lock);
    if (!client->send_failed) {
        ret = nbd_writev_full(client->fd, iov, niov);
        if (ret < 0) {
            /*
             * A partial message desynchronises the stream: stop all
             * further sends and wake the reader so the connection ends.
             */
            client->send_failed = true;
            shutdown(client->fd, SHUT_RDWR);
        }
    }
    g_mutex_unlock(&client->send_lock);
    return ret;
}

/*
 * NBD server internals shared by server.c (listener, exports, connection
 * lifecycle), handshake.c (option haggling) and transmission.c (requests).
 *
 * Threads and locks:
 *   - one listener thread accepts connections and joins finished ones;
 *   - one thread per connection runs the handshake, then reads requests
 *     and hands each to the connection's worker pool;
 *   - worker threads do the block I/O and send the replies.
 * server->lock protects the export list, the client list and the
 * export/client links (NBDExport.users, NBDClient.exp, NBDClient.fd once
 * the connection is closed).  client->lock protects the in-flight
 * accounting, client->send_lock serialises everything written to the
 * socket.  Lock order: server->lock, then client->lock.
 */
#ifndef NBD_INTERNAL_H
#define NBD_INTERNAL_H

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "block/nbd.h"
#include "protocol.h"

/* Largest READ/WRITE/CACHE length, also advertised as maximum block size. */
#define NBD_MAX_BUFFER_SIZE     (32 * MiB)
#define NBD_MIN_BLOCK_SIZE      1
#define NBD_PREFERRED_BLOCK_SIZE 4096
/* Option data beyond this closes the connection without being read. */
#define NBD_MAX_OPTION_SIZE     (64 * KiB)
/* Requests of one connection queued or running at once, and their bytes. */
#define NBD_MAX_IN_FLIGHT       64
#define NBD_MAX_IN_FLIGHT_BYTES (64 * MiB)
/* Worker threads per connection. */
#define NBD_WORKERS             16
/* Descriptors in one BLOCK_STATUS reply; the client asks again for more. */
#define NBD_MAX_EXTENTS         8192
/* How long closing waits for replies to drain before cutting sockets. */
#define NBD_CLOSE_GRACE_US      (5 * G_USEC_PER_SEC)

struct NBDExport {
    NBDServer *server;
    char *name;
    char *description;          /* NULL: none */
    BlockBackend *blk;          /* our own backend on the exported node */
    bool writable;
    unsigned users;             /* clients looking at or attached to it */
    bool removed;               /* no longer found by name */
};

typedef struct NBDClient {
    NBDServer *server;
    int fd;                     /* -1 once closed */
    GThread *thread;
    bool finished;              /* thread done, to be joined */
    gint closing;               /* atomic: stop reading requests */

    /* Handshake state (connection thread only) */
    bool structured_reply;
    bool no_zeroes;
    char *meta_export;          /* export of the last SET_META_CONTEXT */
    bool meta_base_allocation;  /* ... and whether it selected ours */

    /* Transmission state, fixed once the export is chosen */
    NBDExport *exp;             /* counted in exp->users */
    int64_t size;
    uint16_t tx_flags;
    bool base_allocation;

    GMutex send_lock;
    bool send_failed;           /* under send_lock */

    GThreadPool *pool;
    GMutex lock;
    GCond cond;                 /* in-flight accounting changed, or closing */
    unsigned in_flight;
    uint64_t in_flight_bytes;
} NBDClient;

/* sockio.c: whole-message socket I/O; 0 or -errno (-EPIPE on EOF). */
int nbd_read_full(int fd, void *buf, size_t len);
int nbd_discard(int fd, uint64_t len);
int nbd_writev_full(int fd, struct iovec *iov, int niov);
int nbd_write_full(int fd, const void *buf, size_t len);
/* Send a message under client->send_lock; a failed send poisons the socket. */
int nbd_client_send(NBDClient *client, struct iovec *iov, int niov);

/* server.c: export lookup for the handshake. */
NBDExport *nbd_export_get(NBDServer *server, NBDClient *client,
                          const char *name);
void nbd_export_put(NBDServer *server, NBDClient *client);
/* Call fn for each export, under server->lock: fn must not block. */
void nbd_export_foreach(NBDServer *server,
                        void (*fn)(NBDExport *exp, void *opaque), void *opaque);

/* handshake.c: 0 once the transmission phase starts, else -errno. */
int nbd_negotiate(NBDClient *client);

/* transmission.c */
uint16_t nbd_transmission_flags(NBDExport *exp, bool structured_reply);
void nbd_transmission_run(NBDClient *client);

#endif

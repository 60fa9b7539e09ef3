/*
 * NBD server: exports block nodes over the NBD protocol (fixed newstyle).
 *
 * One server listens on one socket; it serves any number of named exports,
 * each backed by a BlockBackend.  Connections are served concurrently and
 * each may have many requests in flight.  All functions are thread-safe.
 */
#ifndef BLOCK_NBD_H
#define BLOCK_NBD_H

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "sysemu/block-backend.h"

typedef struct NBDServer NBDServer;
typedef struct NBDExport NBDExport;

typedef enum NBDAddrType {
    NBD_ADDR_UNIX,
    NBD_ADDR_INET,
} NBDAddrType;

typedef struct NBDServerAddr {
    NBDAddrType type;
    char *path;     /* NBD_ADDR_UNIX */
    char *host;     /* NBD_ADDR_INET */
    char *port;     /* NBD_ADDR_INET */
} NBDServerAddr;

/* Start listening; max_connections 0 means unlimited. */
NBDServer *nbd_server_start(const NBDServerAddr *addr, uint32_t max_connections,
                            Error **errp);
/*
 * Close the listener and every connection (in-flight requests complete) and
 * remove every export: NBDExport pointers are invalid afterwards.
 */
void nbd_server_stop(NBDServer *server);

/*
 * Export blk's node under name: the export opens its own BlockBackend on
 * that node (with blk's write-cache setting); the caller keeps blk.
 * writable exports accept WRITE, TRIM, WRITE_ZEROES and FLUSH.
 */
NBDExport *nbd_export_add(NBDServer *server, const char *name,
                          const char *description, BlockBackend *blk,
                          bool writable, Error **errp);
NBDExport *nbd_export_find(NBDServer *server, const char *name);
/* Remove an export: connections using it are closed first. */
void nbd_export_remove(NBDServer *server, NBDExport *exp);
const char *nbd_export_name(NBDExport *exp);
BlockBackend *nbd_export_blk(NBDExport *exp);

#endif

/*
 * The QMP server: monitors on listening UNIX sockets, any number of
 * clients each, all served from the GLib main loop of the main thread.
 */
#ifndef MONITOR_QMP_H
#define MONITOR_QMP_H

#include "qemu/osdep.h"
#include <json-glib/json-glib.h>

/* The largest request accepted; a client sending more is disconnected. */
#define QMP_MAX_REQUEST_SIZE (16 * 1024 * 1024)

/*
 * Serve QMP on listen_fd (a listening socket; ownership moves here).
 * client_fd >= 0 is a connection already accepted on it (wait=on).
 * pretty indents every message.
 */
void qmp_monitor_new(int listen_fd, int client_fd, bool pretty);

/* Send an event to every client past negotiation; data (may be NULL) is
 * taken over. */
void qmp_event_send(const char *name, JsonObject *data);

/* Write out what is queued for each client (bounded wait), close all. */
void qmp_monitor_cleanup(void);

#endif

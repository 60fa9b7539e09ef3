/*
 * The QMP command handlers (one per command of the schema in qapi/) and the
 * daemon-level operations the command line shares with them.
 */
#ifndef MONITOR_QMP_COMMANDS_H
#define MONITOR_QMP_COMMANDS_H

#include "qmp-dispatch.h"
#include "block/block.h"

/* qmp-cmds-control.c */
QmpCommandFunc qmp_qmp_capabilities;
QmpCommandFunc qmp_query_version;
QmpCommandFunc qmp_query_commands;
QmpCommandFunc qmp_quit;
/* The VersionInfo object of query-version and the greeting. */
JsonNode *qmp_version_info(void);
/* What quit does once the exports are gone: end the daemon's main loop. */
void qmp_set_quit_handler(void (*fn)(void));

/* qmp-cmds-block.c */
QmpCommandFunc qmp_blockdev_add;
QmpCommandFunc qmp_blockdev_del;
QmpCommandFunc qmp_query_named_block_nodes;
QmpCommandFunc qmp_query_blockstats;
QmpCommandFunc qmp_block_pause_dedup;
QmpCommandFunc qmp_block_resume_dedup;
/*
 * Open a node graph from flat options (taken over) and keep it as owned by
 * the monitor (--blockdev and blockdev-add).
 */
BlockDriverState *qmp_blockdev_open(QDict *opts, Error **errp);
/* Flush and close every owned node, newest first. */
void qmp_blockdev_close_all(void);

/* qmp-cmds-export.c */
QmpCommandFunc qmp_nbd_server_start;
QmpCommandFunc qmp_nbd_server_stop;
QmpCommandFunc qmp_block_export_add;
QmpCommandFunc qmp_block_export_del;
QmpCommandFunc qmp_query_block_exports;
/* --nbd-server: opts is a checked NbdServerOptions object. */
bool qmp_nbd_server_start_options(JsonObject *opts, Error **errp);
/* --export: opts is a checked BlockExportOptions object. */
bool qmp_block_export_add_options(JsonObject *opts, Error **errp);
bool qmp_node_is_exported(BlockDriverState *bs);
/* Remove every export (each emits BLOCK_EXPORT_DELETED), stop the server. */
void qmp_exports_shutdown(void);

#endif

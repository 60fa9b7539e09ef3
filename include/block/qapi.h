/*
 * Image information in the form the tools print it: the ImageInfo JSON
 * object of "qemu-img info --output=json" (also what a QMP query would
 * return for a node) and its human-readable rendering.
 */
#ifndef BLOCK_QAPI_H
#define BLOCK_QAPI_H

#include "block/block.h"

/*
 * The ImageInfo object of bs: virtual-size, filename, format, and when
 * known cluster-size, actual-size, format-specific, backing file names and
 * dirty-flag.  NULL with errp set if even the size cannot be read.
 */
JsonNode *bdrv_image_info(BlockDriverState *bs, Error **errp);

/*
 * Append the human form of an ImageInfo object ("image: ...",
 * "virtual size: ...", "Format specific information:" ...) to out.
 */
void bdrv_image_info_dump(GString *out, JsonNode *info);

/* The "ID TAG VM SIZE DATE VM CLOCK ICOUNT" table of internal snapshots. */
void bdrv_snapshot_dump_header(GString *out);
void bdrv_snapshot_dump(GString *out, const QEMUSnapshotInfo *sn);

/*
 * The path under which a backing file named backing is found for an image
 * opened as image_filename: backing itself when absolute or when the image
 * name has no directory part, else backing relative to the image's
 * directory ("sub/top.qcow2" + "base.qcow2" = "sub/base.qcow2").
 */
char *bdrv_backing_full_path(const char *image_filename, const char *backing);

#endif

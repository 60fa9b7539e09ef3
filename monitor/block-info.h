/*
 * JSON descriptions of block nodes, in the layout of QEMU's QAPI types
 * (member names and order as stock QEMU 7.2 prints them, so scripts and
 * diffs against stock output work):
 *   ImageInfo        - what "qemu-img info --output=json" shows of a node,
 *                      with the backing chain nested in "backing-image"
 *   BlockDeviceInfo  - one element of query-named-block-nodes
 *   BlockStats       - one element of query-blockstats (query-nodes)
 */
#ifndef MONITOR_BLOCK_INFO_H
#define MONITOR_BLOCK_INFO_H

#include "block/block.h"

/* NULL if not even the node's size can be read. */
JsonNode *block_image_info(BlockDriverState *bs);
JsonNode *block_device_info(BlockDriverState *bs);
JsonNode *block_stats_info(BlockDriverState *bs);

#endif

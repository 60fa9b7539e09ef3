/*
 * NBD wire protocol constants (fixed newstyle handshake, simple and
 * structured replies, base:allocation), as defined by the NBD protocol
 * document (doc/proto.md of the NetworkBlockDevice project).
 *
 * Everything on the wire is big-endian.  Message layouts:
 *
 *   server greeting   u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
 *   client flags      u32
 *   option request    u64 IHAVEOPT, u32 option, u32 length, data
 *   option reply      u64 NBD_REP_MAGIC, u32 option, u32 type, u32 length,
 *                     data
 *   EXPORT_NAME reply u64 size, u16 transmission flags, 124 zero bytes
 *                     (omitted after NBD_FLAG_C_NO_ZEROES)
 *   request           u32 magic, u16 flags, u16 type, u64 handle,
 *                     u64 offset, u32 length, data (WRITE only)
 *   simple reply      u32 magic, u32 error, u64 handle, data (READ only)
 *   structured chunk  u32 magic, u16 flags, u16 type, u64 handle,
 *                     u32 length, payload
 */
#ifndef NBD_PROTOCOL_H
#define NBD_PROTOCOL_H

/* Handshake */
#define NBD_MAGIC                   0x4e42444d41474943ULL  /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC              0x49484156454f5054ULL  /* "IHAVEOPT" */
#define NBD_REP_MAGIC               0x0003e889045565a9ULL

#define NBD_FLAG_FIXED_NEWSTYLE     (1 << 0)
#define NBD_FLAG_NO_ZEROES          (1 << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE   (1 << 0)
#define NBD_FLAG_C_NO_ZEROES        (1 << 1)

#define NBD_GREETING_SIZE           18
#define NBD_OPT_HEADER_SIZE         16
#define NBD_OPT_REPLY_HEADER_SIZE   20
#define NBD_EXPORT_NAME_PAD         124

/* Options */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10

/* Option reply types; errors have bit 31 set */
#define NBD_REP_ACK                 1
#define NBD_REP_SERVER              2
#define NBD_REP_INFO                3
#define NBD_REP_META_CONTEXT        4
#define NBD_REP_FLAG_ERROR          (1U << 31)
#define NBD_REP_ERR_UNSUP           (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY          (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID         (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM        (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD        (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN         (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN        (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG         (NBD_REP_FLAG_ERROR | 9)

/* NBD_REP_INFO payloads: u16 type, then type-specific data */
#define NBD_INFO_EXPORT             0   /* u64 size, u16 transmission flags */
#define NBD_INFO_NAME               1   /* string */
#define NBD_INFO_DESCRIPTION        2   /* string */
#define NBD_INFO_BLOCK_SIZE         3   /* u32 minimum, preferred, maximum */

/* Transmission flags */
#define NBD_FLAG_HAS_FLAGS          (1 << 0)
#define NBD_FLAG_READ_ONLY          (1 << 1)
#define NBD_FLAG_SEND_FLUSH         (1 << 2)
#define NBD_FLAG_SEND_FUA           (1 << 3)
#define NBD_FLAG_ROTATIONAL         (1 << 4)
#define NBD_FLAG_SEND_TRIM          (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1 << 6)
#define NBD_FLAG_SEND_DF            (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1 << 8)
#define NBD_FLAG_SEND_RESIZE        (1 << 9)
#define NBD_FLAG_SEND_CACHE         (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1 << 11)

/* Requests */
#define NBD_REQUEST_MAGIC           0x25609513
#define NBD_REQUEST_SIZE            28

#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_CACHE               5
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

#define NBD_CMD_FLAG_FUA            (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1 << 1)
#define NBD_CMD_FLAG_DF             (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1 << 4)

/* Replies */
#define NBD_SIMPLE_REPLY_MAGIC      0x67446698
#define NBD_SIMPLE_REPLY_SIZE       16
#define NBD_STRUCTURED_REPLY_MAGIC  0x668e33ef
#define NBD_STRUCTURED_REPLY_SIZE   20

#define NBD_REPLY_FLAG_DONE         (1 << 0)

#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1 << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1 << 15) | 2)

/* Error values on the wire (not necessarily the host's errno values) */
#define NBD_SUCCESS                 0
#define NBD_EPERM                   1
#define NBD_EIO                     5
#define NBD_ENOMEM                  12
#define NBD_EINVAL                  22
#define NBD_ENOSPC                  28
#define NBD_EOVERFLOW               75
#define NBD_ENOTSUP                 95
#define NBD_ESHUTDOWN               108

/* The base:allocation metadata context */
#define NBD_META_NS_BASE            "base:"
#define NBD_META_BASE_ALLOCATION    "base:allocation"
#define NBD_STATE_HOLE              (1 << 0)
#define NBD_STATE_ZERO              (1 << 1)

/* Longest string (export name, description, query, message) allowed */
#define NBD_MAX_STRING_SIZE         4096

#endif

/*
 * qcow2 driver: probing, opening and creating images, the header and its
 * extensions, guest I/O, and the driver table.
 *
 * Header (cluster 0), big-endian:
 *   0 magic  4 version  8 backing_file_offset  16 backing_file_size
 *  20 cluster_bits  24 size  32 crypt_method  36 l1_size  40 l1_table_offset
 *  48 refcount_table_offset  56 refcount_table_clusters  60 nb_snapshots
 *  64 snapshots_offset; version 3 adds  72 incompatible_features
 *  80 compatible_features  88 autoclear_features  96 refcount_order
 * 100 header_length  104 compression_type  105..111 padding.
 * Extensions follow (u32 magic, u32 length, data padded to 8), ended by a
 * zero magic; the backing file name comes last, still in cluster 0.
 *
 * Fields updated in place are grouped so that one small write switches them
 * together: l1_size + l1_table_offset (36..47), refcount_table_offset +
 * refcount_table_clusters (48..59).
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qcow2.h"
#include "qcow2-dedup.h"

typedef struct Qcow2Feature {
    uint8_t type;       /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[46];
} QEMU_PACKED Qcow2Feature;

enum {
    QCOW2_FEAT_TYPE_INCOMPATIBLE = 0,
    QCOW2_FEAT_TYPE_COMPATIBLE = 1,
    QCOW2_FEAT_TYPE_AUTOCLEAR = 2,
};

/* The feature name table written into every v3 image we create or update. */
static const Qcow2Feature qcow2_feature_names[] = {
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 0, "dirty bit" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 1, "corrupt bit" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 2, "external data file" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 3, "compression type" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 4, "extended L2 entries" },
    { QCOW2_FEAT_TYPE_COMPATIBLE, 0, "lazy refcounts" },
    { QCOW2_FEAT_TYPE_AUTOCLEAR, 0, "bitmaps" },
    { QCOW2_FEAT_TYPE_AUTOCLEAR, 1, "raw external data" },
    { QCOW2_FEAT_TYPE_AUTOCLEAR, 32, "deduplication index" },
};

/* Runtime options QEMU users pass; the ones we don't act on are accepted. */
static const char *const qcow2_accepted_options[] = {
    "cache-clean-interval", "pass-discard-request", "pass-discard-snapshot",
    "pass-discard-other", "overlap-check", "overlap-check.template",
    "l2-cache-entry-size", NULL
};

#define DEFAULT_L2_CACHE_MAX_SIZE (32 * MiB)
#define MIN_L2_CACHE_TABLES 2
#define MIN_REFCOUNT_CACHE_TABLES 4

static int qcow2_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    (void)filename;
    if (buf_size >= 8 && ldl_be_p(buf) == QCOW_MAGIC &&
        ldl_be_p(buf + 4) >= 2) {
        return 100;
    }
    return 0;
}

/* Header */

static void header_to_be(QCowHeader *h)
{
    h->magic = GUINT32_TO_BE(h->magic);
    h->version = GUINT32_TO_BE(h->version);
    h->backing_file_offset = GUINT64_TO_BE(h->backing_file_offset);
    h->backing_file_size = GUINT32_TO_BE(h->backing_file_size);
    h->cluster_bits = GUINT32_TO_BE(h->cluster_bits);
    h->size = GUINT64_TO_BE(h->size);
    h->crypt_method = GUINT32_TO_BE(h->crypt_method);
    h->l1_size = GUINT32_TO_BE(h->l1_size);
    h->l1_table_offset = GUINT64_TO_BE(h->l1_table_offset);
    h->refcount_table_offset = GUINT64_TO_BE(h->refcount_table_offset);
    h->refcount_table_clusters = GUINT32_TO_BE(h->refcount_table_clusters);
    h->nb_snapshots = GUINT32_TO_BE(h->nb_snapshots);
    h->snapshots_offset = GUINT64_TO_BE(h->snapshots_offset);
    h->incompatible_features = GUINT64_TO_BE(h->incompatible_features);
    h->compatible_features = GUINT64_TO_BE(h->compatible_features);
    h->autoclear_features = GUINT64_TO_BE(h->autoclear_features);
    h->refcount_order = GUINT32_TO_BE(h->refcount_order);
    h->header_length = GUINT32_TO_BE(h->header_length);
}

/* The conversion is its own inverse. */
#define header_from_be header_to_be

/* Append one extension to the header buffer at *pos; -ENOSPC if it won't fit. */
static int put_extension(uint8_t *buf, size_t buf_size, size_t *pos,
                         uint32_t magic, const void *data, uint32_t len)
{
    size_t padded = ROUND_UP(len, 8);

    if (*pos + 8 + padded > buf_size) {
        return -ENOSPC;
    }
    stl_be_p(buf + *pos, magic);
    stl_be_p(buf + *pos + 4, len);
    if (len) {
        memcpy(buf + *pos + 8, data, len);
    }
    memset(buf + *pos + 8 + len, 0, padded - len);
    *pos += 8 + padded;
    return 0;
}

/*
 * The feature name table only improves error messages, so it goes in only
 * if reserve bytes (what must follow it) still fit; the dedup entry only
 * when the image has deduplication (512-byte clusters have little room).
 */
static int put_feature_table(uint8_t *buf, size_t buf_size, size_t *pos,
                             bool with_dedup, size_t reserve)
{
    size_t len = sizeof(qcow2_feature_names) -
                 (with_dedup ? 0 : sizeof(qcow2_feature_names[0]));

    if (*pos + 8 + len + reserve > buf_size) {
        return 0;
    }
    return put_extension(buf, buf_size, pos, QCOW2_EXT_MAGIC_FEATURE_TABLE,
                         qcow2_feature_names, len);
}

/* Serialise the whole of cluster 0 from the in-memory state and write it. */
int qcow2_update_header(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    size_t buf_size = s->cluster_size, pos;
    g_autofree uint8_t *buf = g_malloc0(buf_size);
    QCowHeader *h = (QCowHeader *)buf;
    size_t backing_len = strlen(bs->backing_file);
    int ret = 0;

    h->magic = QCOW_MAGIC;
    h->version = s->qcow_version;
    h->cluster_bits = s->cluster_bits;
    h->size = s->size;
    h->l1_size = s->l1_size;
    h->l1_table_offset = s->l1_table_offset;
    h->refcount_table_offset = s->refcount_table_offset;
    h->refcount_table_clusters = size_to_clusters(s, (uint64_t)
                                                  s->refcount_table_size * 8);
    h->nb_snapshots = s->nb_snapshots;
    h->snapshots_offset = s->snapshots_offset;
    if (s->qcow_version >= 3) {
        h->incompatible_features = s->incompatible_features;
        h->compatible_features = s->compatible_features;
        h->autoclear_features = s->autoclear_features;
        h->refcount_order = s->refcount_order;
        h->header_length = QCOW_V3_HEADER_LENGTH +
                           s->unknown_header_fields_size;
        h->compression_type = s->compression_type;
        if (s->unknown_header_fields_size) {
            memcpy(buf + QCOW_V3_HEADER_LENGTH, s->unknown_header_fields,
                   s->unknown_header_fields_size);
        }
        pos = h->header_length;
    } else {
        pos = QCOW_V2_HEADER_LENGTH;
    }
    /* Before the extensions: in version 2 they overlay the v3 fields. */
    header_to_be(h);

    if (backing_len && bs->backing_format[0]) {
        ret = put_extension(buf, buf_size, &pos, QCOW2_EXT_MAGIC_BACKING_FORMAT,
                            bs->backing_format, strlen(bs->backing_format));
    }
    if (ret == 0 && s->qcow_version >= 3) {
        size_t reserve = 8 + backing_len + (s->dedup ? 8 + 64 : 0);
        for (GSList *l = s->unknown_header_ext; l; l = l->next) {
            reserve += 8 + ROUND_UP(((Qcow2UnknownHeaderExtension *)
                                     l->data)->len, 8);
        }
        ret = put_feature_table(buf, buf_size, &pos, s->dedup != NULL,
                                reserve);
    }
    if (ret == 0 && s->dedup) {
        uint8_t ext[64];
        size_t len = qcow2_dedup_serialize_ext(bs, ext);
        ret = put_extension(buf, buf_size, &pos, QCOW2_EXT_MAGIC_DEDUP, ext,
                            len);
    }
    for (GSList *l = s->unknown_header_ext; l && ret == 0; l = l->next) {
        Qcow2UnknownHeaderExtension *ext = l->data;
        ret = put_extension(buf, buf_size, &pos, ext->magic, ext->data,
                            ext->len);
    }
    if (ret == 0) {
        ret = put_extension(buf, buf_size, &pos, QCOW2_EXT_MAGIC_END, NULL, 0);
    }
    if (ret == 0 && backing_len) {
        if (pos + backing_len > buf_size) {
            ret = -ENOSPC;
        } else {
            stq_be_p(&h->backing_file_offset, pos);
            stl_be_p(&h->backing_file_size, backing_len);
            memcpy(buf + pos, bs->backing_file, backing_len);
        }
    }
    if (ret < 0) {
        return ret;
    }
    return bdrv_pwrite(bs->file, 0, buf_size, buf, 0);
}

static int write_incompatible_features(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t be[8];

    stq_be_p(be, s->incompatible_features);
    return bdrv_pwrite_sync(bs->file,
                            offsetof(QCowHeader, incompatible_features),
                            sizeof(be), be, 0);
}

int qcow2_mark_dirty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        return 0;
    }
    /* Anything written before must not be mistaken for consistent state. */
    ret = bdrv_flush(bs->file);
    if (ret < 0) {
        return ret;
    }
    s->incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    ret = write_incompatible_features(bs);
    if (ret < 0) {
        s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    }
    return ret;
}

/* Call only with every cache flushed and the limbo empty. */
int qcow2_mark_clean(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    int ret;

    if (!(s->incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        return ret;
    }
    s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    return write_incompatible_features(bs);
}

int qcow2_mark_corrupt(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    s->incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    return write_incompatible_features(bs);
}

void qcow2_signal_corruption(BlockDriverState *bs, int64_t offset,
                             int64_t size, const char *fmt, ...)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree char *msg = NULL;
    va_list ap;

    if (s->corrupt_signalled) {
        return;
    }
    s->corrupt_signalled = true;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (bs->read_only) {
        error_report("qcow2: Image is corrupt: %s", msg);
        return;
    }
    error_report("qcow2: Marking image as corrupt: %s; further corruption "
                 "events will be suppressed", msg);
    (void)offset;
    (void)size;
    qcow2_mark_corrupt(bs);
    /* Refuse all further writes: a corrupt image must not get worse. */
    bs->read_only = true;
}

/* Opening */

static int read_feature_table_names(const uint8_t *data, uint32_t len,
                                    uint64_t unknown, GString *out)
{
    for (uint32_t off = 0; off + sizeof(Qcow2Feature) <= len;
         off += sizeof(Qcow2Feature)) {
        const Qcow2Feature *f = (const Qcow2Feature *)(data + off);
        if (f->type == QCOW2_FEAT_TYPE_INCOMPATIBLE && f->bit < 64 &&
            (unknown & (1ULL << f->bit))) {
            g_string_append_printf(out, "%s%.46s", out->len ? ", " : "",
                                   f->name);
            unknown &= ~(1ULL << f->bit);
        }
    }
    if (unknown) {
        g_string_append_printf(out, "%sUnknown incompatible feature: %" PRIx64,
                               out->len ? ", " : "", unknown);
    }
    return 0;
}

static void free_unknown_extensions(BDRVQcow2State *s)
{
    g_slist_free_full(s->unknown_header_ext, g_free);
    s->unknown_header_ext = NULL;
}

/*
 * Walk the header extensions in [start, end) of buf.  Unknown ones are
 * kept; feature names are collected in *features for error messages.
 */
static int read_extensions(BlockDriverState *bs, const uint8_t *buf,
                           size_t start, size_t end,
                           const uint8_t **features, uint32_t *features_len,
                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    size_t pos = start;

    while (pos < end) {
        uint32_t magic, len;

        if (end - pos < 8) {
            error_setg(errp, "qcow2_read_extension: ERROR: pending fragment");
            return -EINVAL;
        }
        magic = ldl_be_p(buf + pos);
        len = ldl_be_p(buf + pos + 4);
        pos += 8;
        if (len > end - pos) {
            error_setg(errp, "Header extension too large");
            return -EINVAL;
        }
        const uint8_t *data = buf + pos;
        switch (magic) {
        case QCOW2_EXT_MAGIC_END:
            return 0;
        case QCOW2_EXT_MAGIC_BACKING_FORMAT:
            if (len >= sizeof(bs->backing_format)) {
                error_setg(errp, "ERROR: ext_backing_format: len=%u too large "
                           "(>=%zu)", len, sizeof(bs->backing_format));
                return -EINVAL;
            }
            memcpy(bs->backing_format, data, len);
            bs->backing_format[len] = '\0';
            break;
        case QCOW2_EXT_MAGIC_FEATURE_TABLE:
            *features = data;
            *features_len = len;
            break;
        case QCOW2_EXT_MAGIC_BITMAPS:
            if (len != 24) {
                error_setg(errp, "bitmaps_ext: Invalid extension length");
                return -EINVAL;
            }
            s->has_bitmaps_ext = true;
            s->nb_bitmaps = ldl_be_p(data);
            s->bitmap_directory_size = ldq_be_p(data + 8);
            s->bitmap_directory_offset = ldq_be_p(data + 16);
            break;
        case QCOW2_EXT_MAGIC_DEDUP:
            g_free(s->dedup_ext);
            s->dedup_ext = g_memdup2(data, len);
            s->dedup_ext_len = len;
            break;
        case QCOW2_EXT_MAGIC_CRYPTO_HEADER:
        case QCOW2_EXT_MAGIC_DATA_FILE:
            /* Only used with features we refuse (encryption, data file). */
            break;
        default: {
            Qcow2UnknownHeaderExtension *ext = g_malloc(sizeof(*ext) + len);
            ext->magic = magic;
            ext->len = len;
            memcpy(ext->data, data, len);
            s->unknown_header_ext = g_slist_append(s->unknown_header_ext, ext);
            break;
        }
        }
        pos += ROUND_UP(len, 8);
    }
    return 0;
}

/* Sanity checks on header fields before anything is allocated from them. */
static int validate_header(BlockDriverState *bs, QCowHeader *h,
                           int64_t file_len, Error **errp)
{
    if (h->magic != QCOW_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
        return -EINVAL;
    }
    if (h->version < 2 || h->version > 3) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32, h->version);
        return -ENOTSUP;
    }
    if (h->cluster_bits < QCOW_MIN_CLUSTER_BITS ||
        h->cluster_bits > QCOW_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32,
                   h->cluster_bits);
        return -EINVAL;
    }
    uint64_t cluster_size = 1ULL << h->cluster_bits;
    if (h->version >= 3 && (h->header_length < QCOW_V3_MIN_HEADER_LENGTH ||
                            h->header_length % 8 ||
                            h->header_length > cluster_size)) {
        error_setg(errp, "qcow2 header length %" PRIu32 " is invalid",
                   h->header_length);
        return -EINVAL;
    }
    if (h->refcount_order > 6) {
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    if (h->crypt_method) {
        error_setg(errp, "Encrypted qcow2 images are not supported");
        return -ENOTSUP;
    }
    if (h->backing_file_offset > cluster_size ||
        h->backing_file_size > QCOW_MAX_BACKING_FILE_SIZE ||
        h->backing_file_offset + h->backing_file_size > cluster_size) {
        error_setg(errp, "Invalid backing file offset or name length");
        return -EINVAL;
    }
    if (h->size > INT64_MAX) {
        error_setg(errp, "Image size is too large");
        return -EFBIG;
    }
    if ((h->l1_table_offset | h->refcount_table_offset |
         h->snapshots_offset) & (cluster_size - 1)) {
        error_setg(errp, "Invalid metadata table offset (unaligned)");
        return -EINVAL;
    }
    if (h->refcount_table_clusters == 0 ||
        (uint64_t)h->refcount_table_clusters * cluster_size >
        QCOW_MAX_REFTABLE_SIZE) {
        error_setg(errp, "Reference count table size invalid");
        return -EINVAL;
    }
    if ((uint64_t)h->l1_size * 8 > QCOW_MAX_L1_SIZE) {
        error_setg(errp, "Active L1 table too large");
        return -EFBIG;
    }
    if (h->nb_snapshots > QCOW_MAX_SNAPSHOTS) {
        error_setg(errp, "Too many snapshots");
        return -EINVAL;
    }
    /* A table larger than the file only yields zeroes: refuse the lie. */
    if (h->refcount_table_offset >= (uint64_t)file_len ||
        (h->l1_size && h->l1_table_offset >= (uint64_t)file_len)) {
        error_setg(errp, "Metadata table offset beyond the end of the image");
        return -EINVAL;
    }
    (void)bs;
    return 0;
}

static void qcow2_set_geometry(BDRVQcow2State *s, const QCowHeader *h)
{
    s->cluster_bits = h->cluster_bits;
    s->cluster_size = 1 << s->cluster_bits;
    s->l2_bits = s->cluster_bits - 3;
    s->l2_size = 1 << s->l2_bits;
    s->refcount_order = h->refcount_order;
    s->refcount_bits = 1 << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX
                      : (1ULL << s->refcount_bits) - 1;
    s->refcount_block_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refcount_block_size = 1 << s->refcount_block_bits;
}

static int read_l1_table(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    int ret;

    s->l1_table = g_try_malloc0(MAX(bytes, 8));
    if (!s->l1_table) {
        error_setg(errp, "Could not allocate L1 table");
        return -ENOMEM;
    }
    if (!bytes) {
        return 0;
    }
    ret = bdrv_pread(bs->file, s->l1_table_offset, bytes, s->l1_table, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read L1 table");
        return ret;
    }
    for (int i = 0; i < s->l1_size; i++) {
        s->l1_table[i] = GUINT64_FROM_BE(s->l1_table[i]);
    }
    return 0;
}

static int setup_caches(BlockDriverState *bs, QDict *options, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Error *local_err = NULL;
    uint64_t image_l2 = qcow2_l1_entries_for(s, s->size) * s->cluster_size;
    uint64_t l2_bytes = MIN(image_l2, DEFAULT_L2_CACHE_MAX_SIZE);
    uint64_t total = qdict_get_try_size(options, "cache-size", 0, &local_err);
    uint64_t rc_bytes;

    if (total) {
        l2_bytes = MIN(total * 4 / 5, image_l2);
    }
    l2_bytes = qdict_get_try_size(options, "l2-cache-size", l2_bytes,
                                  &local_err);
    rc_bytes = qdict_get_try_size(options, "refcount-cache-size",
                                  MAX(l2_bytes / 4, 1), &local_err);
    qdict_del(options, "cache-size");
    qdict_del(options, "l2-cache-size");
    qdict_del(options, "refcount-cache-size");
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    int l2_tables = MAX(l2_bytes / s->cluster_size, MIN_L2_CACHE_TABLES);
    int rc_tables = MAX(rc_bytes / s->cluster_size, MIN_REFCOUNT_CACHE_TABLES);
    s->l2_table_cache = qcow2_cache_create(bs, l2_tables, s->cluster_size);
    s->refcount_block_cache = qcow2_cache_create(bs, rc_tables,
                                                 s->cluster_size);
    if (!s->l2_table_cache || !s->refcount_block_cache) {
        error_setg(errp, "Could not allocate metadata caches");
        return -ENOMEM;
    }
    return 0;
}

static int read_backing_name(BlockDriverState *bs, const uint8_t *buf,
                             const QCowHeader *h)
{
    if (!h->backing_file_offset) {
        return 0;
    }
    memcpy(bs->backing_file, buf + h->backing_file_offset,
           h->backing_file_size);
    bs->backing_file[h->backing_file_size] = '\0';
    return 0;
}

static int check_incompatible_features(BlockDriverState *bs, uint64_t incompat,
                                       const uint8_t *features,
                                       uint32_t features_len, Error **errp)
{
    uint64_t unknown = incompat & ~QCOW2_INCOMPAT_SUPPORTED;

    if (incompat & QCOW2_INCOMPAT_DATA_FILE) {
        error_setg(errp, "External data files are not supported");
        return -ENOTSUP;
    }
    if (incompat & QCOW2_INCOMPAT_EXTL2) {
        error_setg(errp, "Extended L2 entries (subclusters) are not supported");
        return -ENOTSUP;
    }
    if (unknown) {
        g_autoptr(GString) names = g_string_new(NULL);
        read_feature_table_names(features, features_len, unknown, names);
        error_setg(errp, "Unsupported qcow2 feature(s): %s", names->str);
        return -ENOTSUP;
    }
    (void)bs;
    return 0;
}

/*
 * The dedup index was left by another program's write (or is unreadable):
 * repair what that program may have left (COPIED flags after its copy on
 * write, our index clusters now unreferenced) and start a new, empty index.
 */
static int reset_stale_dedup(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2DedupOptions o;
    BdrvCheckResult res;
    int ret;

    warn_report("qcow2: the deduplication index was invalidated by another "
                "program; starting a new one (run 'qemu-img amend -o "
                "dedup=sha256' to index the existing data again)");
    qcow2_dedup_stale_options(bs, &o);
    g_free(s->dedup_ext);
    s->dedup_ext = NULL;
    s->dedup_stale = false;
    ret = qcow2_check_refcounts(bs, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);
    if (ret < 0 || res.corruptions || res.check_errors) {
        error_setg(errp, "Could not repair the image after another program "
                   "wrote it");
        return ret < 0 ? ret : -EIO;
    }
    return qcow2_dedup_enable(bs, &o, errp);
}

/* Writable opens: repair a dirty image, clear autoclear bits we don't know. */
static int open_for_writing(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                   "read/write");
        return -EACCES;
    }
    if (s->has_bitmaps_ext && (s->autoclear_features &
                               QCOW2_AUTOCLEAR_BITMAPS)) {
        error_setg(errp, "Images with persistent dirty bitmaps are not "
                   "supported for writing; open the image read-only");
        return -ENOTSUP;
    }
    if ((s->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
        !(flags & BDRV_O_CHECK)) {
        BdrvCheckResult res;
        ret = qcow2_check_refcounts(bs, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);
        if (ret < 0 || res.check_errors || res.corruptions) {
            error_setg_errno(errp, ret < 0 ? -ret : EIO,
                             "Could not repair dirty image");
            return ret < 0 ? ret : -EIO;
        }
        ret = qcow2_mark_clean(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not clear the dirty bit");
            return ret;
        }
    }
    if (s->dedup_stale && !(flags & BDRV_O_CHECK)) {
        ret = reset_stale_dedup(bs, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if (s->autoclear_features & ~QCOW2_AUTOCLEAR_KNOWN) {
        s->autoclear_features &= QCOW2_AUTOCLEAR_KNOWN;
        ret = qcow2_update_header(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not update qcow2 header");
            return ret;
        }
    }
    return (flags & BDRV_O_CHECK) ? 0 : qcow2_dedup_start(bs, errp);
}

static bool take_lazy_refcounts_option(QDict *options, bool def, Error **errp)
{
    bool v = qdict_get_try_bool(options, "lazy-refcounts", def, errp);

    qdict_del(options, "lazy-refcounts");
    return v;
}

static void qcow2_free_state(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    qcow2_dedup_free(bs);
    qcow2_cache_destroy(s->l2_table_cache);
    qcow2_cache_destroy(s->refcount_block_cache);
    s->l2_table_cache = s->refcount_block_cache = NULL;
    qcow2_refcount_close(bs);
    qcow2_free_snapshots(bs);
    free_unknown_extensions(s);
    g_free(s->l1_table);
    g_free(s->unknown_header_fields);
    if (s->metadata_clusters) {
        g_hash_table_destroy(s->metadata_clusters);
    }
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->alloc_cond);
}

static int qcow2_do_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = NULL;
    const uint8_t *features = NULL;
    uint32_t features_len = 0;
    QCowHeader h;
    Error *local_err = NULL;
    int64_t file_len = bdrv_getlength(bs->file);
    int ret;

    if (file_len < 0) {
        error_setg_errno(errp, -file_len, "Could not get image size");
        return file_len;
    }
    memset(&h, 0, sizeof(h));
    ret = bdrv_pread(bs->file, 0, MIN(file_len, (int64_t)sizeof(h)), &h, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    header_from_be(&h);
    if (file_len < QCOW_V2_HEADER_LENGTH) {
        error_setg(errp, "Image is not in qcow2 format");
        return -EINVAL;
    }
    if (h.version == 2) {
        h.incompatible_features = h.compatible_features = 0;
        h.autoclear_features = 0;
        h.refcount_order = 4;
        h.header_length = QCOW_V2_HEADER_LENGTH;
        h.compression_type = 0;
    } else if (h.header_length < QCOW_V3_HEADER_LENGTH) {
        h.compression_type = 0;
    }
    ret = validate_header(bs, &h, file_len, errp);
    if (ret < 0) {
        return ret;
    }
    qcow2_set_geometry(s, &h);

    buf = g_malloc0(s->cluster_size);
    ret = bdrv_pread(bs->file, 0, MIN(file_len, s->cluster_size), buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    s->qcow_version = h.version;
    s->header_length = h.header_length;
    if (h.header_length > QCOW_V3_HEADER_LENGTH) {
        s->unknown_header_fields_size = h.header_length - QCOW_V3_HEADER_LENGTH;
        s->unknown_header_fields = g_memdup2(buf + QCOW_V3_HEADER_LENGTH,
                                             s->unknown_header_fields_size);
    }
    size_t ext_end = h.backing_file_offset ? h.backing_file_offset
                                           : (uint64_t)s->cluster_size;
    ret = read_extensions(bs, buf, h.header_length, ext_end, &features,
                          &features_len, errp);
    if (ret < 0) {
        return ret;
    }
    ret = check_incompatible_features(bs, h.incompatible_features, features,
                                      features_len, errp);
    if (ret < 0) {
        return ret;
    }
    if ((h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION) !=
        (h.compression_type ? QCOW2_INCOMPAT_COMPRESSION : 0) ||
        h.compression_type > QCOW2_COMPRESSION_TYPE_ZSTD) {
        error_setg(errp, "qcow2: Invalid compression type %u or feature bit",
                   h.compression_type);
        return -EINVAL;
    }
    s->incompatible_features = h.incompatible_features;
    s->compatible_features = h.compatible_features;
    s->autoclear_features = h.autoclear_features;
    s->compression_type = h.compression_type;
    s->size = h.size;
    s->l1_size = h.l1_size;
    s->l1_table_offset = h.l1_table_offset;
    s->refcount_table_offset = h.refcount_table_offset;
    s->refcount_table_size = (uint64_t)h.refcount_table_clusters *
                             s->cluster_size / 8;
    s->nb_snapshots = h.nb_snapshots;
    s->snapshots_offset = h.snapshots_offset;
    s->l1_vm_state_index = qcow2_l1_entries_for(s, s->size);
    if (s->l1_vm_state_index > INT_MAX ||
        (uint64_t)s->l1_size < s->l1_vm_state_index) {
        error_setg(errp, "L1 table is too small");
        return -EINVAL;
    }
    read_backing_name(bs, buf, &h);
    if (h.backing_file_offset && h.backing_file_size == 0) {
        bs->backing_file[0] = '\0';
    }

    s->use_lazy_refcounts = take_lazy_refcounts_option(
        options, s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS,
        &local_err);
    for (int i = 0; qcow2_accepted_options[i]; i++) {
        qdict_del(options, qcow2_accepted_options[i]);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (s->use_lazy_refcounts && s->qcow_version < 3) {
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least "
                   "qemu 1.1 compatibility level");
        return -EINVAL;
    }

    ret = read_l1_table(bs, errp);
    if (ret < 0) {
        return ret;
    }
    ret = setup_caches(bs, options, errp);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_refcount_init(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read refcount table");
        return ret;
    }
    s->free_cluster_index = 0;
    if (s->nb_snapshots) {
        ret = qcow2_read_snapshots(bs, errp);
        if (ret < 0) {
            return ret;
        }
    }
    s->metadata_clusters = g_hash_table_new(g_direct_hash, g_direct_equal);
    qcow2_metadata_build(bs);
    ret = qcow2_dedup_open(bs, flags, errp);
    if (ret < 0) {
        return ret;
    }

    if (flags & BDRV_O_RDWR) {
        ret = open_for_writing(bs, flags, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int qcow2_open(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    g_mutex_init(&s->lock);
    g_cond_init(&s->alloc_cond);
    ret = qcow2_do_open(bs, options, flags, errp);
    if (ret < 0) {
        qcow2_free_state(bs);
    }
    return ret;
}

/* Write back everything, apply the whole limbo, and leave the image clean. */
static int qcow2_write_back_all(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    ret = qcow2_flush_caches(bs);
    if (ret == 0) {
        ret = qcow2_process_limbo(bs, true);
    }
    if (ret == 0) {
        ret = qcow2_dedup_close(bs);
    }
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    if (ret == 0 && (s->incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        ret = qcow2_mark_clean(bs);
    }
    return ret;
}

static void qcow2_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!bs->read_only) {
        g_mutex_lock(&s->lock);
        int ret = qcow2_write_back_all(bs);
        g_mutex_unlock(&s->lock);
        if (ret < 0) {
            error_report("qcow2: failed to write back metadata on close: %s",
                         g_strerror(-ret));
        }
    }
    qcow2_free_state(bs);
}

/* Guest reads */

static int read_from_backing(BlockDriverState *bs, uint64_t offset,
                             uint64_t bytes, QEMUIOVector *qiov)
{
    int64_t backing_len;
    uint64_t n = 0;
    int ret;

    if (bs->backing) {
        backing_len = bdrv_getlength(bs->backing);
        if (backing_len < 0) {
            return backing_len;
        }
        if ((int64_t)offset < backing_len) {
            n = MIN(bytes, backing_len - offset);
            ret = bdrv_preadv(bs->backing, offset, n, qiov, 0);
            if (ret < 0) {
                return ret;
            }
        }
    }
    qemu_iovec_memset(qiov, n, 0, bytes - n);
    return 0;
}

static int read_compressed(BlockDriverState *bs, uint64_t l2_entry,
                           uint64_t offset, uint64_t bytes, QEMUIOVector *qiov)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t coffset;
    int csize, ret;
    g_autofree uint8_t *in = NULL;
    uint8_t *out;

    qcow2_parse_compressed_l2_entry(bs, l2_entry, &coffset, &csize);
    in = g_try_malloc(csize);
    out = qemu_try_blockalign(s->cluster_size);
    if (!in || !out) {
        qemu_vfree(out);
        return -ENOMEM;
    }
    ret = bdrv_pread(bs->file, coffset, csize, in, 0);
    if (ret == 0) {
        ret = qcow2_decompress(s->compression_type, out, s->cluster_size, in,
                               csize);
    }
    if (ret == 0) {
        qemu_iovec_from_buf(qiov, 0, out + offset_into_cluster(s, offset),
                            bytes);
    }
    qemu_vfree(out);
    return ret;
}

static bool type_reads_host(QCow2ClusterType type)
{
    return type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_COMPRESSED;
}

static int qcow2_read_range(BlockDriverState *bs, uint64_t offset,
                            uint64_t bytes, QCow2ClusterType type,
                            uint64_t host, QEMUIOVector *qiov)
{
    switch (type) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return read_from_backing(bs, offset, bytes, qiov);
    case QCOW2_CLUSTER_ZERO_PLAIN:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        qemu_iovec_memset(qiov, 0, 0, bytes);
        return 0;
    case QCOW2_CLUSTER_NORMAL:
        return bdrv_preadv(bs->file, host, bytes, qiov, 0);
    case QCOW2_CLUSTER_COMPRESSED:
        return read_compressed(bs, host, offset, bytes, qiov);
    }
    return -EIO;
}

static int qcow2_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t done = 0;

    (void)flags;
    while (done < (uint64_t)bytes) {
        uint64_t cur = bytes - done, host, seq = 0;
        QCow2ClusterType type;
        QEMUIOVector slice;
        int ret;

        g_mutex_lock(&s->lock);
        ret = qcow2_get_host_offset(bs, offset + done, &cur, &host, &type);
        if (ret == 0 && type_reads_host(type)) {
            seq = qcow2_io_begin(bs);
        }
        g_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        if (type == QCOW2_CLUSTER_COMPRESSED) {
            cur = MIN(cur, s->cluster_size - offset_into_cluster(s, offset +
                                                                 done));
        }
        qemu_iovec_init_slice(&slice, qiov, done, cur);
        ret = qcow2_read_range(bs, offset + done, cur, type, host, &slice);
        qemu_iovec_destroy(&slice);
        if (seq) {
            g_mutex_lock(&s->lock);
            qcow2_io_end(bs, seq);
            g_mutex_unlock(&s->lock);
        }
        if (ret < 0) {
            return ret;
        }
        done += cur;
    }
    return 0;
}

/* Guest writes */

/* Lazy refcounts and dedup keep the image marked dirty while it changes. */
static int prepare_metadata_change(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    return (s->use_lazy_refcounts || s->dedup) ? qcow2_mark_dirty(bs) : 0;
}

/*
 * Write the guest data of an allocating request together with the bytes of
 * its first and last cluster it does not cover (read from the old mapping),
 * as one write to the new clusters.
 */
static int write_with_cow(BlockDriverState *bs, QCowL2Meta *m,
                          QEMUIOVector *data)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *head = NULL, *tail = NULL;
    QEMUIOVector merged, part;
    int ret = 0;

    qemu_iovec_init(&merged, data->niov + 2);
    if (m->cow_start.nb_bytes) {
        head = qemu_try_blockalign(m->cow_start.nb_bytes);
        ret = head ? 0 : -ENOMEM;
        if (ret == 0) {
            qemu_iovec_init_buf(&part, head, m->cow_start.nb_bytes);
            ret = qcow2_preadv(bs, m->guest_offset + m->cow_start.offset,
                               m->cow_start.nb_bytes, &part, 0);
        }
        qemu_iovec_add(&merged, head, m->cow_start.nb_bytes);
    }
    qemu_iovec_concat(&merged, data, 0, data->size);
    if (ret == 0 && m->cow_end.nb_bytes) {
        tail = qemu_try_blockalign(m->cow_end.nb_bytes);
        ret = tail ? 0 : -ENOMEM;
        if (ret == 0) {
            qemu_iovec_init_buf(&part, tail, m->cow_end.nb_bytes);
            ret = qcow2_preadv(bs, m->guest_offset + m->cow_end.offset,
                               m->cow_end.nb_bytes, &part, 0);
            qemu_iovec_add(&merged, tail, m->cow_end.nb_bytes);
        }
    }
    if (ret == 0) {
        ret = bdrv_pwritev(bs->file, m->alloc_offset, merged.size, &merged, 0);
    }
    qemu_iovec_destroy(&merged);
    qemu_vfree(head);
    qemu_vfree(tail);
    (void)s;
    return ret;
}

int qcow2_plain_pwritev(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        QEMUIOVector *qiov)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t done = 0;

    while (done < bytes) {
        uint64_t cur = bytes - done, host, seq;
        QCowL2Meta *m = NULL;
        QEMUIOVector slice;
        int ret;

        g_mutex_lock(&s->lock);
        ret = prepare_metadata_change(bs);
        if (ret == 0) {
            ret = qcow2_alloc_host_offset(bs, offset + done, &cur, &host, &m);
        }
        if (ret == 0) {
            ret = m ? qcow2_check_data_write(bs, m->alloc_offset,
                                             (uint64_t)m->nb_clusters <<
                                             s->cluster_bits)
                    : qcow2_check_data_write(bs, host, cur);
            if (ret < 0 && m) {
                qcow2_alloc_cluster_abort(bs, m);
            }
        }
        if (ret < 0) {
            g_mutex_unlock(&s->lock);
            return ret;
        }
        seq = qcow2_io_begin(bs);
        g_mutex_unlock(&s->lock);

        qemu_iovec_init_slice(&slice, qiov, done, cur);
        ret = m ? write_with_cow(bs, m, &slice)
                : bdrv_pwritev(bs->file, host, cur, &slice, 0);
        qemu_iovec_destroy(&slice);

        g_mutex_lock(&s->lock);
        qcow2_io_end(bs, seq);
        if (m) {
            if (ret < 0) {
                qcow2_alloc_cluster_abort(bs, m);
            } else {
                ret = qcow2_alloc_cluster_link_l2(bs, m);
            }
        }
        g_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        done += cur;
    }
    return 0;
}

/* Compressed data never replaces anything: -EIO if offset is mapped. */
static int cluster_has_host_data(BlockDriverState *bs, uint64_t offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = s->cluster_size, host;
    QCow2ClusterType type;
    int ret = qcow2_get_host_offset(bs, offset, &bytes, &host, &type);

    if (ret < 0) {
        return ret;
    }
    return (type == QCOW2_CLUSTER_UNALLOCATED ||
            type == QCOW2_CLUSTER_ZERO_PLAIN) ? 0 : -EIO;
}

/* Store compressed data for one guest cluster and link it. */
static int write_compressed_cluster(BlockDriverState *bs, uint64_t offset,
                                    const void *data, int csize)
{
    BDRVQcow2State *s = bs->opaque;
    QCowL2Meta *m;
    int64_t host;
    uint64_t seq;
    int ret;

    g_mutex_lock(&s->lock);
    ret = prepare_metadata_change(bs);
    qcow2_wait_for_allocs(bs, offset, s->cluster_size);
    if (ret == 0) {
        ret = cluster_has_host_data(bs, offset);
    }
    host = ret < 0 ? ret : qcow2_alloc_bytes(bs, csize);
    if (host < 0) {
        g_mutex_unlock(&s->lock);
        return host;
    }
    ret = qcow2_check_data_write(bs, host, csize);
    m = qcow2_register_alloc(bs, offset, 1, host);
    seq = qcow2_io_begin(bs);
    g_mutex_unlock(&s->lock);

    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, host, csize, data, 0);
    }

    g_mutex_lock(&s->lock);
    qcow2_io_end(bs, seq);
    if (ret == 0) {
        ret = qcow2_link_compressed_cluster(bs, offset, host, csize);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, host, csize);
    }
    qcow2_retire_alloc(bs, m);
    g_mutex_unlock(&s->lock);
    return ret;
}

/*
 * Compressed writes cover one whole cluster (or the end of the image); data
 * that does not shrink by at least a sector is stored uncompressed.
 */
static int compress_one_cluster(BlockDriverState *bs, uint64_t offset,
                                uint64_t bytes, QEMUIOVector *qiov,
                                size_t qiov_offset)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *in = g_malloc0(s->cluster_size);
    g_autofree uint8_t *out = g_malloc(s->cluster_size);
    ssize_t csize;

    qemu_iovec_to_buf(qiov, qiov_offset, in, bytes);
    csize = qcow2_compress(s->compression_type, out, s->cluster_size - 512,
                           in, s->cluster_size);
    if (csize == -ENOMEM) {
        QEMUIOVector slice;
        int ret;
        qemu_iovec_init_slice(&slice, qiov, qiov_offset, bytes);
        ret = qcow2_plain_pwritev(bs, offset, bytes, &slice);
        qemu_iovec_destroy(&slice);
        return ret;
    }
    return csize < 0 ? csize : write_compressed_cluster(bs, offset, out, csize);
}

static int qcow2_pwrite_compressed(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    if (offset_into_cluster(s, offset) ||
        (offset_into_cluster(s, bytes) && (uint64_t)(offset + bytes) != s->size)) {
        return -EINVAL;
    }
    for (uint64_t done = 0; done < (uint64_t)bytes && ret == 0;
         done += s->cluster_size) {
        ret = compress_one_cluster(bs, offset + done,
                                   MIN((uint64_t)bytes - done,
                                       (uint64_t)s->cluster_size),
                                   qiov, done);
    }
    return ret;
}

static int qcow2_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    if (qcow2_dedup_active(bs) && !(flags & BDRV_REQ_NO_DEDUP)) {
        return qcow2_dedup_pwritev(bs, offset, bytes, qiov);
    }
    return qcow2_plain_pwritev(bs, offset, bytes, qiov);
}

/* True if every byte of the clusters around [offset, +bytes) reads as zero. */
static bool cluster_reads_zero(BlockDriverState *bs, uint64_t offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = s->cluster_size, host;
    QCow2ClusterType type;

    if (qcow2_get_host_offset(bs, start_of_cluster(s, offset), &bytes, &host,
                              &type) < 0) {
        return false;
    }
    return type == QCOW2_CLUSTER_ZERO_PLAIN ||
           type == QCOW2_CLUSTER_ZERO_ALLOC ||
           (type == QCOW2_CLUSTER_UNALLOCATED && !bs->backing);
}

static int write_zero_buffer(BlockDriverState *bs, uint64_t offset,
                             uint64_t bytes)
{
    void *buf = qemu_try_blockalign(bytes);
    QEMUIOVector qiov;
    int ret;

    if (!buf) {
        return -ENOMEM;
    }
    memset(buf, 0, bytes);
    qemu_iovec_init_buf(&qiov, buf, bytes);
    ret = qcow2_plain_pwritev(bs, offset, bytes, &qiov);
    qemu_vfree(buf);
    return ret;
}

/*
 * Zero part of a cluster: if the whole cluster already reads as zero it
 * becomes a zero cluster (as QEMU does), otherwise zeroes are written.
 */
static int zero_partial_cluster(BlockDriverState *bs, uint64_t offset,
                                uint64_t bytes, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;
    bool zero;

    if (!bytes) {
        return 0;
    }
    g_mutex_lock(&s->lock);
    /*
     * Decide only once no allocating write is in flight on the cluster:
     * its data would otherwise be replaced by the zero flag.
     */
    qcow2_wait_for_allocs(bs, start_of_cluster(s, offset), s->cluster_size);
    zero = cluster_reads_zero(bs, offset);
    if (zero) {
        ret = prepare_metadata_change(bs);
        if (ret == 0) {
            ret = qcow2_cluster_zeroize(bs, start_of_cluster(s, offset),
                                        s->cluster_size,
                                        flags & BDRV_REQ_MAY_UNMAP);
        }
    }
    g_mutex_unlock(&s->lock);
    if (zero) {
        return ret;
    }
    return (flags & BDRV_REQ_NO_FALLBACK) ? -ENOTSUP
                                          : write_zero_buffer(bs, offset, bytes);
}

/* Version 2 has no zero flag: write zeroes where the guest sees data. */
static int zero_without_flag(BlockDriverState *bs, uint64_t offset,
                             uint64_t bytes, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        uint64_t n = MIN(bytes, s->cluster_size - offset_into_cluster(s, offset));
        bool zero;

        g_mutex_lock(&s->lock);
        zero = cluster_reads_zero(bs, offset);
        g_mutex_unlock(&s->lock);
        if (!zero) {
            ret = (flags & BDRV_REQ_NO_FALLBACK) ? -ENOTSUP
                                                 : write_zero_buffer(bs, offset, n);
        }
        offset += n;
        bytes -= n;
    }
    return ret;
}

static int qcow2_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_UP(offset, s->cluster_size);
    uint64_t end = QEMU_ALIGN_DOWN(offset + bytes, s->cluster_size);
    bool unmap = flags & BDRV_REQ_MAY_UNMAP;
    int ret;

    if (s->qcow_version < 3) {
        return zero_without_flag(bs, offset, bytes, flags);
    }
    if (start >= end) {
        /* Within one cluster, or straddling one boundary. */
        uint64_t split = MIN((uint64_t)offset + bytes, start);
        ret = zero_partial_cluster(bs, offset, split - offset, flags);
        if (ret == 0 && split < (uint64_t)offset + bytes) {
            ret = zero_partial_cluster(bs, split, offset + bytes - split,
                                       flags);
        }
        return ret;
    }
    ret = zero_partial_cluster(bs, offset, start - offset, flags);
    if (ret == 0) {
        ret = zero_partial_cluster(bs, end, offset + bytes - end, flags);
    }
    if (ret < 0) {
        return ret;
    }
    g_mutex_lock(&s->lock);
    ret = prepare_metadata_change(bs);
    if (ret == 0) {
        ret = qcow2_cluster_zeroize(bs, start, end - start, unmap);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

static int qcow2_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_UP(offset, s->cluster_size);
    uint64_t end = QEMU_ALIGN_DOWN(offset + bytes, s->cluster_size);
    int64_t len = s->size;
    int ret;

    /* The partial cluster at the end of the image counts as whole. */
    if ((uint64_t)offset + bytes == (uint64_t)len) {
        end = ROUND_UP(len, s->cluster_size);
    }
    if (start >= end) {
        return 0;
    }
    g_mutex_lock(&s->lock);
    ret = prepare_metadata_change(bs);
    if (ret == 0) {
        ret = qcow2_cluster_discard(bs, start, end - start);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

static int qcow2_flush_to_os(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    g_mutex_lock(&s->lock);
    if (s->limbo->len) {
        /* Make the L2 changes durable so the limbo can be applied. */
        ret = qcow2_flush_caches(bs);
        if (ret == 0) {
            ret = qcow2_process_limbo(bs, false);
        }
    }
    if (ret == 0) {
        ret = qcow2_write_caches(bs);
    }
    if (ret == 0) {
        ret = qcow2_dedup_flush(bs);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

/* End of the last cluster with a non-zero refcount (s->lock held). */
static int64_t image_end(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    for (int64_t t = (int64_t)s->refcount_table_size - 1; t >= 0; t--) {
        uint64_t first = (uint64_t)t << s->refcount_block_bits;
        if (!(s->refcount_table[t] & REFT_OFFSET_MASK)) {
            continue;
        }
        for (int64_t i = s->refcount_block_size - 1; i >= 0; i--) {
            uint64_t refcount;
            int ret = qcow2_get_refcount(bs, first + i, &refcount);
            if (ret < 0) {
                return ret;
            }
            if (refcount) {
                return (int64_t)(first + i + 1) << s->cluster_bits;
            }
        }
    }
    return 0;
}

/* Clusters with a non-zero refcount (s->lock held). */
static int64_t count_allocated_clusters(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t end = image_end(bs), n = 0;

    for (int64_t c = 0; end > 0 && c < end >> s->cluster_bits; c++) {
        uint64_t refcount;
        if (qcow2_get_refcount(bs, c, &refcount) < 0) {
            return -EIO;
        }
        n += refcount > 0;
    }
    return n;
}

/*
 * Only images with metadata preallocation have data clusters that were
 * never written: they hold more allocated clusters than the host file has
 * space for.  Decided once per open.
 */
static bool looks_preallocated(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (s->preallocation_known) {
        return s->preallocated;
    }
    g_mutex_lock(&s->lock);
    int64_t clusters = count_allocated_clusters(bs);
    g_mutex_unlock(&s->lock);
    int64_t host = bdrv_get_allocated_file_size(bs->file);
    s->preallocated = clusters > 0 && host >= 0 &&
                      clusters > DIV_ROUND_UP(host, s->cluster_size);
    s->preallocation_known = true;
    return s->preallocated;
}

static int qcow2_block_status(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, int64_t *pnum, int64_t *map,
                              BlockDriverState **file)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cur = bytes, host;
    QCow2ClusterType type;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_get_host_offset(bs, offset, &cur, &host, &type);
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = cur;
    switch (type) {
    case QCOW2_CLUSTER_NORMAL:
        *map = host;
        *file = bs->file;
        /* Preallocated clusters may be holes: let the caller look. */
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
               (looks_preallocated(bs) ? BDRV_BLOCK_RECURSE : 0);
    case QCOW2_CLUSTER_ZERO_ALLOC:
        *map = host;
        *file = bs->file;
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    case QCOW2_CLUSTER_ZERO_PLAIN:
        return BDRV_BLOCK_ZERO;
    case QCOW2_CLUSTER_COMPRESSED:
        *pnum = MIN(cur, s->cluster_size - offset_into_cluster(s, offset));
        return BDRV_BLOCK_DATA | BDRV_BLOCK_COMPRESSED;
    default:
        return 0;
    }
}

static int64_t qcow2_getlength(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    return s->size;
}

static int qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    BDRVQcow2State *s = bs->opaque;

    bdi->cluster_size = s->cluster_size;
    bdi->vm_state_offset = (int64_t)s->l1_vm_state_index <<
                           (s->cluster_bits + s->l2_bits);
    bdi->is_dirty = s->incompatible_features & QCOW2_INCOMPAT_DIRTY;
    return 0;
}

/* The VM state area starts after the guest disk, at an L2-table boundary. */
static int qcow2_vmstate_rw(BlockDriverState *bs, QEMUIOVector *qiov,
                            int64_t pos, bool write)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = (s->l1_vm_state_index << (s->cluster_bits + s->l2_bits))
                      + pos;

    return write ? qcow2_pwritev(bs, offset, qiov->size, qiov, 0)
                 : qcow2_preadv(bs, offset, qiov->size, qiov, 0);
}

static void qcow2_get_specific_info(BlockDriverState *bs, JsonBuilder *b)
{
    BDRVQcow2State *s = bs->opaque;

    json_builder_set_member_name(b, "compat");
    json_builder_add_string_value(b, s->qcow_version >= 3 ? "1.1" : "0.10");
    json_builder_set_member_name(b, "compression-type");
    json_builder_add_string_value(b, s->compression_type ? "zstd" : "zlib");
    if (s->qcow_version >= 3) {
        json_builder_set_member_name(b, "lazy-refcounts");
        json_builder_add_boolean_value(b, s->compatible_features &
                                       QCOW2_COMPAT_LAZY_REFCOUNTS);
    }
    json_builder_set_member_name(b, "refcount-bits");
    json_builder_add_int_value(b, s->refcount_bits);
    if (s->qcow_version >= 3) {
        json_builder_set_member_name(b, "corrupt");
        json_builder_add_boolean_value(b, s->incompatible_features &
                                       QCOW2_INCOMPAT_CORRUPT);
        json_builder_set_member_name(b, "extended-l2");
        json_builder_add_boolean_value(b, false);
    }
    if (s->dedup || s->dedup_stale) {
        json_builder_set_member_name(b, "dedup");
        json_builder_begin_object(b);
        g_mutex_lock(&s->lock);
        qcow2_dedup_query(bs, b);
        g_mutex_unlock(&s->lock);
        json_builder_end_object(b);
    }
}

static bool qcow2_bdrv_dedup_query(BlockDriverState *bs, JsonBuilder *b)
{
    BDRVQcow2State *s = bs->opaque;
    bool ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_dedup_query(bs, b);
    g_mutex_unlock(&s->lock);
    return ret;
}

static int qcow2_check(BlockDriverState *bs, BdrvCheckResult *res,
                       BdrvCheckMode fix)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_check_refcounts(bs, res, fix);
    if (ret == 0 && (fix & BDRV_FIX_ERRORS) && !bs->read_only &&
        s->dedup_stale && !res->corruptions && !res->check_errors) {
        /* Its clusters were freed as leaks: drop the extension too. */
        g_free(s->dedup_ext);
        s->dedup_ext = NULL;
        s->dedup_stale = false;
        s->autoclear_features &= ~QCOW2_AUTOCLEAR_DEDUP;
        ret = qcow2_update_header(bs);
    }
    if (ret == 0 && (fix & (BDRV_FIX_LEAKS | BDRV_FIX_ERRORS)) &&
        !bs->read_only && !res->corruptions &&
        !res->check_errors) {
        if (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
            s->incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT;
            ret = write_incompatible_features(bs);
        }
        if (ret == 0) {
            ret = qcow2_mark_clean(bs);
        }
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

/* Resize */

static int write_size(BlockDriverState *bs, uint64_t size)
{
    uint8_t be[8];

    stq_be_p(be, size);
    return bdrv_pwrite_sync(bs->file, offsetof(QCowHeader, size), 8, be, 0);
}


static int qcow2_grow(BlockDriverState *bs, uint64_t new_size,
                      PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_size = s->size;
    int ret;

    ret = qcow2_grow_l1_table(bs, qcow2_l1_entries_for(s, new_size));
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to grow the L1 table");
        return ret;
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        ret = qcow2_preallocate_metadata(bs, old_size, new_size);
        if (ret == 0) {
            ret = qcow2_flush_caches(bs);
        }
        if (ret == 0) {
            /* Like QEMU, the file covers the clusters (as a hole). */
            int64_t end = image_end(bs);
            if (end > bdrv_getlength(bs->file)) {
                ret = bdrv_truncate(bs->file, end, false, PREALLOC_MODE_OFF,
                                    NULL);
            }
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Preallocation failed");
            return ret;
        }
    }
    if (prealloc == PREALLOC_MODE_FALLOC || prealloc == PREALLOC_MODE_FULL) {
        uint64_t end = 0;
        int64_t file_len = bdrv_getlength(bs->file);
        /* Allocated clusters may lie past the end of the file: cover them. */
        for (int64_t c = size_to_clusters(s, file_len); ; c++) {
            uint64_t rc;
            if (qcow2_get_refcount(bs, c, &rc) < 0 || rc == 0) {
                end = (uint64_t)c << s->cluster_bits;
                break;
            }
        }
        if (end > (uint64_t)file_len) {
            ret = bdrv_truncate(bs->file, end, false, prealloc, errp);
            if (ret < 0) {
                return ret;
            }
        }
    }
    ret = write_size(bs, new_size);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image size");
        return ret;
    }
    s->size = new_size;
    s->l1_vm_state_index = qcow2_l1_entries_for(s, new_size);
    return 0;
}

/*
 * Shrink: drop every mapping past the new end (the data there is gone),
 * free L2 tables no longer needed, and give the freed tail of the file back.
 * Called with s->lock held and no request in flight.
 */
static int qcow2_shrink(BlockDriverState *bs, uint64_t new_size, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_UP(new_size, s->cluster_size);
    uint64_t end = ROUND_UP(s->size, s->cluster_size);
    uint64_t new_l1 = qcow2_l1_entries_for(s, new_size);
    int64_t file_end;
    int ret = 0;

    if (start < end) {
        ret = qcow2_cluster_drop(bs, start, end - start);
    }
    for (uint64_t i = new_l1; i < (uint64_t)s->l1_size && ret == 0; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        s->l1_table[i] = 0;
        ret = qcow2_write_l1_entry(bs, i);
        qcow2_cache_discard(s->l2_table_cache, l2);
        qcow2_free_clusters(bs, l2, s->cluster_size);
    }
    if (ret == 0) {
        ret = write_size(bs, new_size);
    }
    /* Apply the frees now (nothing is in flight) and cut the file. */
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    if (ret == 0) {
        ret = qcow2_process_limbo(bs, true);
    }
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to shrink the image");
        return ret;
    }
    s->size = new_size;
    s->l1_vm_state_index = new_l1;
    file_end = image_end(bs);
    if (file_end > 0 && file_end < bdrv_getlength(bs->file)) {
        /* Only space is at stake: a failure here is not an error. */
        bdrv_truncate(bs->file, file_end, false, PREALLOC_MODE_OFF, NULL);
    }
    return 0;
}

/*
 * A grown area must read as zeroes even where a longer backing file has
 * data (as in QEMU): zero what the backing file would show through.
 */
static int hide_backing_tail(BlockDriverState *bs, uint64_t old_size,
                             uint64_t new_size, Error **errp)
{
    int64_t backing_len = bdrv_getlength(bs->backing);
    int ret;

    if (backing_len < 0 || (uint64_t)backing_len <= old_size) {
        return 0;
    }
    ret = qcow2_pwrite_zeroes(bs, old_size,
                              MIN(new_size, (uint64_t)backing_len) - old_size,
                              0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to zero the grown area");
    }
    return ret;
}

static int qcow2_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                          PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    (void)exact;
    if (offset % 512) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (s->nb_snapshots) {
        error_setg(errp, "Can't resize an image which has snapshots");
        return -ENOTSUP;
    }
    if ((uint64_t)offset < s->size && prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Preallocation can't be used for shrinking an "
                   "image");
        return -EINVAL;
    }
    uint64_t old_size = s->size;
    g_mutex_lock(&s->lock);
    ret = prepare_metadata_change(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not mark the image dirty");
    } else if ((uint64_t)offset < s->size) {
        ret = qcow2_shrink(bs, offset, errp);
    } else {
        ret = qcow2_grow(bs, offset, prealloc, errp);
    }
    g_mutex_unlock(&s->lock);
    if (ret == 0 && bs->backing && (uint64_t)offset > old_size) {
        ret = hide_backing_tail(bs, old_size, offset, errp);
    }
    return ret;
}

/* Creation */

typedef struct Qcow2CreateOptions {
    uint64_t size;
    int version;
    int cluster_bits;
    int refcount_order;
    bool lazy_refcounts;
    uint8_t compression_type;
    PreallocMode prealloc;
    const char *backing_file;
    const char *backing_fmt;
    bool dedup;
    Qcow2DedupOptions dedup_opts;
} Qcow2CreateOptions;

static int parse_compat(const char *compat, int *version, bool amend,
                        Error **errp)
{
    if (!compat || !strcmp(compat, "1.1") || !strcmp(compat, "v3")) {
        *version = 3;
    } else if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) {
        *version = 2;
    } else {
        if (amend) {
            error_setg(errp, "Unknown compatibility level %s", compat);
        } else {
            error_setg(errp, "Parameter 'version' does not accept value '%s'",
                       compat);
        }
        return -EINVAL;
    }
    return 0;
}

static int parse_refcount_bits(uint64_t bits, int version, int *order,
                               Error **errp)
{
    if (bits > 64 || !is_power_of_2(bits)) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    if (version < 3 && bits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    *order = __builtin_ctzll(bits);
    return 0;
}

static int parse_dedup_options(QDict *opts, int version, bool *enable,
                               Qcow2DedupOptions *o, Error **errp)
{
    const char *algo = qemu_opt_get(opts, "dedup");

    *enable = false;
    memset(o, 0, sizeof(*o));
    if (algo && strcmp(algo, "off") && strcmp(algo, "sha256")) {
        error_setg(errp, "Unsupported dedup algorithm '%s' (use sha256 or "
                   "off)", algo);
        return -EINVAL;
    }
    *enable = algo && !strcmp(algo, "sha256");
    if (*enable && version < 3) {
        error_setg(errp, "Deduplication requires compat=1.1 or later");
        return -EINVAL;
    }
    o->verify = qemu_opt_get_bool(opts, "dedup_verify", false);
    o->log_entries = qemu_opt_get_number(opts, "dedup_log_entries", 0);
    o->max_incarnations = qemu_opt_get_number(opts, "dedup_max_incarnations",
                                              0);
    if (o->max_incarnations > 65535) {
        error_setg(errp, "dedup_max_incarnations may not exceed 65535");
        return -EINVAL;
    }
    if (o->log_entries > ((uint64_t)QCOW2_DEDUP_BUCKET_SLOTS << 24)) {
        error_setg(errp, "dedup_log_entries may not exceed %u",
                   QCOW2_DEDUP_BUCKET_SLOTS << 24);
        return -EINVAL;
    }
    return 0;
}

static int unsupported_create_option(QDict *opts, Error **errp)
{
    static const char *const refused[] = {
        "data_file", "data_file_raw", "encrypt.format", "encryption", NULL
    };

    if (qemu_opt_get_bool(opts, "extended_l2", false)) {
        if (qemu_opt_get_size(opts, "cluster_size", DEFAULT_CLUSTER_SIZE) <
            16384) {
            error_setg(errp, "Extended L2 entries are only supported with "
                       "cluster sizes of at least 16384 bytes");
            return -EINVAL;
        }
        error_setg(errp, "Extended L2 entries (subclusters) are not "
                   "supported");
        return -ENOTSUP;
    }
    for (int i = 0; refused[i]; i++) {
        const char *v = qemu_opt_get(opts, refused[i]);
        if (v && strcmp(v, "off") && strcmp(v, "false")) {
            error_setg(errp, "Option '%s' is not supported", refused[i]);
            return -ENOTSUP;
        }
    }
    return 0;
}

static int parse_create_options(QDict *opts, Qcow2CreateOptions *o,
                                Error **errp)
{
    uint64_t cluster_size = qemu_opt_get_size(opts, "cluster_size",
                                              DEFAULT_CLUSTER_SIZE);
    const char *ctype = qemu_opt_get(opts, "compression_type");
    const char *prealloc = qemu_opt_get(opts, "preallocation");
    int ret;

    memset(o, 0, sizeof(*o));
    ret = unsupported_create_option(opts, errp);
    if (ret < 0) {
        return ret;
    }
    o->size = ROUND_UP(qemu_opt_get_size(opts, "size", 0), 512);
    ret = parse_compat(qemu_opt_get(opts, "compat"), &o->version, false,
                       errp);
    if (ret < 0) {
        return ret;
    }
    if (!is_power_of_2(cluster_size) || cluster_size < 512 ||
        cluster_size > 2 * MiB) {
        error_setg(errp, "Cluster size must be a power of two between 512 and "
                   "2048k");
        return -EINVAL;
    }
    o->cluster_bits = __builtin_ctzll(cluster_size);
    /* The L1 table must be able to map the whole disk. */
    uint64_t l2_bytes = (uint64_t)cluster_size / 8 * cluster_size;
    if (DIV_ROUND_UP(o->size, l2_bytes) > QCOW_MAX_L1_SIZE / 8) {
        error_setg(errp, "The image size is too large for file format "
                   "'qcow2' (try using a larger cluster size)");
        return -EFBIG;
    }
    ret = parse_refcount_bits(qemu_opt_get_number(opts, "refcount_bits", 16),
                              o->version, &o->refcount_order, errp);
    if (ret < 0) {
        return ret;
    }
    o->lazy_refcounts = qemu_opt_get_bool(opts, "lazy_refcounts", false);
    if (o->lazy_refcounts && o->version < 3) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (ctype && strcmp(ctype, "zlib") && strcmp(ctype, "zstd")) {
        error_setg(errp, "Parameter 'compression-type' does not accept value "
                   "'%s'", ctype);
        return -EINVAL;
    }
    o->compression_type = (ctype && !strcmp(ctype, "zstd"))
                          ? QCOW2_COMPRESSION_TYPE_ZSTD
                          : QCOW2_COMPRESSION_TYPE_ZLIB;
    if (o->compression_type && o->version < 3) {
        error_setg(errp, "Non-zlib compression type is only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    o->prealloc = prealloc ? prealloc_mode_parse(prealloc) : PREALLOC_MODE_OFF;
    if ((int)o->prealloc < 0) {
        error_setg(errp, "Parameter 'preallocation' does not accept value "
                   "'%s'", prealloc);
        return -EINVAL;
    }
    o->backing_file = qemu_opt_get(opts, "backing_file");
    o->backing_fmt = qemu_opt_get(opts, "backing_fmt");
    if (o->backing_fmt && !o->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    if (o->backing_file && strlen(o->backing_file) >
        QCOW_MAX_BACKING_FILE_SIZE) {
        error_setg(errp, "Backing file name too long");
        return -EINVAL;
    }
    ret = parse_dedup_options(opts, o->version, &o->dedup, &o->dedup_opts,
                              errp);
    if (ret < 0) {
        return ret;
    }
    if (o->backing_file && o->prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Backing file and preallocation can only be used at "
                   "the same time if extended_l2 is on");
        return -EINVAL;
    }
    return 0;
}

/*
 * Lay down an empty image: header in cluster 0, refcount table in cluster
 * 1, refcount block in cluster 2 (counting clusters 0-2), no L1 yet.
 */
static int write_initial_layout(BlockDriverState *file,
                                const Qcow2CreateOptions *o)
{
    size_t cs = 1 << o->cluster_bits;
    g_autofree uint8_t *buf = g_malloc0(3 * cs);
    QCowHeader *h = (QCowHeader *)buf;
    size_t pos;
    int ret;

    h->magic = QCOW_MAGIC;
    h->version = o->version;
    h->cluster_bits = o->cluster_bits;
    h->refcount_table_offset = cs;
    h->refcount_table_clusters = 1;
    h->l1_table_offset = 3 * cs;
    if (o->version >= 3) {
        h->header_length = QCOW_V3_HEADER_LENGTH;
        h->refcount_order = o->refcount_order;
        h->compression_type = o->compression_type;
        if (o->compression_type) {
            h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
        }
        if (o->lazy_refcounts) {
            h->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        }
        pos = QCOW_V3_HEADER_LENGTH;
    } else {
        pos = QCOW_V2_HEADER_LENGTH;
    }
    /* Before the extensions: in version 2 they overlay the v3 fields. */
    header_to_be(h);
    if (o->backing_file && o->backing_fmt) {
        ret = put_extension(buf, cs, &pos, QCOW2_EXT_MAGIC_BACKING_FORMAT,
                            o->backing_fmt, strlen(o->backing_fmt));
        if (ret < 0) {
            return ret;
        }
    }
    if (o->version >= 3 &&
        (ret = put_feature_table(buf, cs, &pos, false,
                                 8 + (o->backing_file ?
                                      strlen(o->backing_file) : 0))) < 0) {
        return ret;
    }
    if ((ret = put_extension(buf, cs, &pos, QCOW2_EXT_MAGIC_END, NULL, 0)) < 0) {
        return ret;
    }
    if (o->backing_file) {
        size_t len = strlen(o->backing_file);
        if (pos + len > cs) {
            return -ENOSPC;
        }
        stq_be_p(&h->backing_file_offset, pos);
        stl_be_p(&h->backing_file_size, len);
        memcpy(buf + pos, o->backing_file, len);
    }
    stq_be_p(buf + cs, 2 * cs);      /* refcount table entry 0 */
    for (int i = 0; i < 3; i++) {
        qcow2_refcount_entry_set(buf + 2 * cs, i, o->refcount_order, 1);
    }
    ret = bdrv_pwrite(file, 0, 3 * cs, buf, 0);
    return ret < 0 ? ret : bdrv_flush(file);
}

static int qcow2_create(BlockDriverState *file, QDict *opts, Error **errp)
{
    Qcow2CreateOptions o;
    BlockDriverState *bs;
    QDict *open_opts;
    int ret;

    ret = parse_create_options(opts, &o, errp);
    if (ret < 0) {
        /* Like QEMU, a qcow2 that could not be made leaves no file behind. */
        unlink(bdrv_get_filename(file));
        return ret;
    }
    ret = write_initial_layout(file, &o);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
        return ret;
    }
    /* Grow to the requested size through the driver's own allocator. */
    open_opts = qdict_new();
    qdict_put_bool(open_opts, "lazy-refcounts", false);
    bs = bdrv_open_format_on(file, &bdrv_qcow2, open_opts,
                             BDRV_O_RDWR | BDRV_O_NO_BACKING, errp);
    if (!bs) {
        return -EIO;
    }
    ret = bdrv_truncate(bs, o.size, true, o.prealloc, errp);
    if (ret == 0 && o.dedup) {
        BDRVQcow2State *s = bs->opaque;
        g_mutex_lock(&s->lock);
        ret = qcow2_dedup_enable(bs, &o.dedup_opts, errp);
        g_mutex_unlock(&s->lock);
    }
    bdrv_unref(bs);
    return ret;
}

/*
 * Guests write 4 KiB blocks and files land at 4 KiB offsets: with larger
 * clusters most writes are partial and not deduplicated, and similar disk
 * images share far fewer clusters (docs/dedup-performance.rst).
 */
#define DEDUP_DEFAULT_CLUSTER_SIZE "4096"

static void qcow2_create_defaults(QDict *opts)
{
    const char *dedup = qemu_opt_get(opts, "dedup");

    if (dedup && !strcmp(dedup, "sha256") &&
        !qdict_haskey(opts, "cluster_size")) {
        qdict_put_str(opts, "cluster_size", DEDUP_DEFAULT_CLUSTER_SIZE);
    }
}

/* Amend */

/*
 * Version 2 has no zero flag: zero clusters become unallocated (nothing
 * below them) or real clusters of zeroes.  Active tables only; images
 * with snapshots are refused by the caller.
 */
static int expand_zero_clusters(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    for (uint64_t off = 0; off < s->size && ret == 0;
         off += s->cluster_size) {
        uint64_t bytes = s->cluster_size, host;
        QCow2ClusterType type;

        ret = qcow2_get_host_offset(bs, off, &bytes, &host, &type);
        if (ret < 0 || (type != QCOW2_CLUSTER_ZERO_PLAIN &&
                        type != QCOW2_CLUSTER_ZERO_ALLOC)) {
            continue;
        }
        if (type == QCOW2_CLUSTER_ZERO_PLAIN && !bs->backing) {
            ret = qcow2_cluster_drop(bs, off, s->cluster_size);
            continue;
        }
        g_mutex_unlock(&s->lock);
        ret = write_zero_buffer(bs, off, MIN((uint64_t)s->cluster_size,
                                             s->size - off));
        g_mutex_lock(&s->lock);
    }
    return ret;
}

static int downgrade_to_v2(BlockDriverState *bs,
                           BlockDriverAmendStatusCB *cb, void *opaque,
                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->nb_snapshots) {
        error_setg(errp, "Cannot downgrade an image with snapshots to "
                   "compat=0.10 (not supported yet)");
        return -ENOTSUP;
    }
    /* Zeroes written now must not land back in zero clusters. */
    s->qcow_version = 2;
    ret = expand_zero_clusters(bs);
    if (ret == 0) {
        ret = qcow2_write_back_all(bs);
    }
    if (ret < 0) {
        s->qcow_version = 3;
        error_setg_errno(errp, -ret, "Failed to turn zero clusters into data");
        return ret;
    }
    s->incompatible_features = 0;
    s->compatible_features = 0;
    s->autoclear_features = 0;
    s->use_lazy_refcounts = false;
    if (cb) {
        cb(bs, 1, 1, opaque);
    }
    return 0;
}

static int amend_compat(BlockDriverState *bs, int version,
                        BlockDriverAmendStatusCB *cb, void *opaque,
                        Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    if (version == s->qcow_version) {
        return 0;
    }
    if (version < s->qcow_version) {
        if (s->refcount_order != 4 || s->compression_type ||
            (s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS)) {
            error_setg(errp, "Cannot downgrade an image with refcount_bits "
                       "other than 16, non-zlib compression or lazy "
                       "refcounts to compat=0.10");
            return -ENOTSUP;
        }
        return downgrade_to_v2(bs, cb, opaque, errp);
    }
    s->qcow_version = version;
    return 0;
}

static int amend_lazy_refcounts(BlockDriverState *bs, bool lazy, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    if (lazy && s->qcow_version < 3) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (lazy) {
        s->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    } else {
        ret = qcow2_write_back_all(bs);
        s->compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    s->use_lazy_refcounts = (s->compatible_features &
                             QCOW2_COMPAT_LAZY_REFCOUNTS) || s->dedup;
    return ret;
}

static int amend_dedup(BlockDriverState *bs, QDict *opts,
                       BlockDriverAmendStatusCB *cb, void *opaque,
                       Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2DedupOptions o;
    bool enable;
    int ret;

    ret = parse_dedup_options(opts, s->qcow_version, &enable, &o, errp);
    if (ret < 0) {
        return ret;
    }
    if (!qdict_haskey(opts, "dedup")) {
        enable = s->dedup != NULL;
    }
    if (!enable) {
        return qcow2_dedup_disable(bs, errp);
    }
    if (!s->dedup && !qdict_haskey(opts, "dedup")) {
        error_setg(errp, "The image has no deduplication; use -o dedup=sha256");
        return -EINVAL;
    }
    if (qcow2_dedup_geometry_differs(bs, &o)) {
        /* Another geometry is another index: rebuild it from the data. */
        ret = qcow2_dedup_disable(bs, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if (!s->dedup) {
        ret = qcow2_dedup_enable(bs, &o, errp);
        if (ret < 0) {
            return ret;
        }
    } else if (qdict_haskey(opts, "dedup_verify")) {
        ret = qcow2_dedup_set_verify(bs, o.verify);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not update the dedup state");
            return ret;
        }
    }
    if (!qdict_haskey(opts, "dedup")) {
        return 0;
    }
    /* Offline deduplication of what the image already holds. */
    ret = qcow2_mark_dirty(bs);
    if (ret == 0) {
        ret = qcow2_dedup_index_existing(bs, true, cb, opaque);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not index the existing data");
    }
    return ret;
}

static const char *const qcow2_amendable[] = {
    "compat", "lazy_refcounts", "size", "backing_file", "backing_fmt",
    "dedup", "dedup_verify", "dedup_log_entries", "dedup_max_incarnations",
    NULL
};

static bool amendable(const char *key)
{
    for (int i = 0; qcow2_amendable[i]; i++) {
        if (!strcmp(key, qcow2_amendable[i])) {
            return true;
        }
    }
    return false;
}

static bool has_dedup_option(QDict *opts)
{
    for (size_t i = 0; i < qdict_size(opts); i++) {
        if (g_str_has_prefix(qdict_key_at(opts, i), "dedup")) {
            return true;
        }
    }
    return false;
}

static int qcow2_amend_options(BlockDriverState *bs, QDict *opts,
                               BlockDriverAmendStatusCB *cb, void *opaque,
                               bool force, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    const char *compat = qemu_opt_get(opts, "compat");
    int version = s->qcow_version;
    int ret = 0;

    (void)force;
    for (size_t i = 0; i < qdict_size(opts); i++) {
        if (!amendable(qdict_key_at(opts, i))) {
            error_setg(errp, "Changing option '%s' is not supported",
                       qdict_key_at(opts, i));
            return -ENOTSUP;
        }
    }
    if (compat && parse_compat(compat, &version, true, errp) < 0) {
        return -EINVAL;
    }
    if (version < 3 && qemu_opt_get_bool(opts, "lazy_refcounts", false)) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    g_mutex_lock(&s->lock);
    if (version < s->qcow_version && qdict_haskey(opts, "lazy_refcounts")) {
        /* Turning lazy refcounts off is part of the downgrade. */
        s->compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    ret = amend_compat(bs, version, cb, opaque, errp);
    if (ret == 0 && qdict_haskey(opts, "lazy_refcounts")) {
        ret = amend_lazy_refcounts(bs, qemu_opt_get_bool(opts, "lazy_refcounts",
                                                         false), errp);
    }
    if (ret == 0 && has_dedup_option(opts)) {
        ret = amend_dedup(bs, opts, cb, opaque, errp);
    }
    if (ret == 0 && qdict_haskey(opts, "backing_file")) {
        g_strlcpy(bs->backing_file, qemu_opt_get(opts, "backing_file"),
                  sizeof(bs->backing_file));
        g_strlcpy(bs->backing_format, qemu_opt_get(opts, "backing_fmt") ?: "",
                  sizeof(bs->backing_format));
    }
    if (ret == 0) {
        ret = qcow2_update_header(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to update the image header");
        }
    }
    g_mutex_unlock(&s->lock);
    if (ret == 0 && qdict_haskey(opts, "size")) {
        ret = bdrv_truncate(bs, qemu_opt_get_size(opts, "size", 0), false,
                            PREALLOC_MODE_OFF, errp);
    }
    return ret;
}

static int qcow2_change_backing_file(BlockDriverState *bs,
                                     const char *backing_file,
                                     const char *backing_fmt)
{
    BDRVQcow2State *s = bs->opaque;
    char old_file[PATH_MAX], old_fmt[16];
    int ret;

    if (backing_file && strlen(backing_file) > QCOW_MAX_BACKING_FILE_SIZE) {
        return -EINVAL;
    }
    g_mutex_lock(&s->lock);
    g_strlcpy(old_file, bs->backing_file, sizeof(old_file));
    g_strlcpy(old_fmt, bs->backing_format, sizeof(old_fmt));
    g_strlcpy(bs->backing_file, backing_file ? backing_file : "",
              sizeof(bs->backing_file));
    g_strlcpy(bs->backing_format, backing_fmt ? backing_fmt : "",
              sizeof(bs->backing_format));
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        g_strlcpy(bs->backing_file, old_file, sizeof(bs->backing_file));
        g_strlcpy(bs->backing_format, old_fmt, sizeof(bs->backing_format));
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

/* In QEMU's order: qemu-img prints the "Formatting" line in table order. */
static const QemuOptDesc qcow2_create_opts[] = {
    { "encryption", QEMU_OPT_BOOL, "Encrypt the image (not supported)", NULL },
    { "encrypt.format", QEMU_OPT_STRING,
      "Encrypt the image, format choices: 'aes', 'luks' (not supported)",
      NULL },
    { "cluster_size", QEMU_OPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", QEMU_OPT_BOOL,
      "Extended L2 tables (only 'off' is supported)", "off" },
    { "preallocation", QEMU_OPT_STRING,
      "Preallocation mode (allowed values: off, metadata, falloc, full)",
      NULL },
    { "compression_type", QEMU_OPT_STRING,
      "Compression method used for image cluster compression", "zlib" },
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "compat", QEMU_OPT_STRING,
      "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "backing_file", QEMU_OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", QEMU_OPT_STRING, "Image format of the base image", NULL },
    { "data_file", QEMU_OPT_STRING,
      "File name of an external data file (not supported)", NULL },
    { "data_file_raw", QEMU_OPT_BOOL,
      "The external data file must stay valid as a raw image (not "
      "supported)", NULL },
    { "lazy_refcounts", QEMU_OPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", QEMU_OPT_NUMBER,
      "Width of a reference count entry in bits", "16" },
    { "dedup", QEMU_OPT_STRING,
      "Deduplicate identical clusters by content hash (off, sha256)", NULL },
    { "dedup_verify", QEMU_OPT_BOOL,
      "Read back and compare every deduplication hit before using it", NULL },
    { "dedup_log_entries", QEMU_OPT_NUMBER,
      "Entries of the in-memory dedup log store (default: from the image "
      "size)", NULL },
    { "dedup_max_incarnations", QEMU_OPT_NUMBER,
      "Frozen dedup index tables kept before the oldest is dropped "
      "(default: from the image size)", NULL },
    { NULL },
};

static const QemuOptDesc qcow2_amend_opts[] = {
    { "backing_file", QEMU_OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", QEMU_OPT_STRING, "Image format of the base image", NULL },
    { "compat", QEMU_OPT_STRING,
      "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "lazy_refcounts", QEMU_OPT_BOOL, "Postpone refcount updates", NULL },
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "dedup", QEMU_OPT_STRING,
      "Deduplicate identical clusters by content hash (off, sha256)", NULL },
    { "dedup_verify", QEMU_OPT_BOOL,
      "Read back and compare every deduplication hit before using it", NULL },
    { "dedup_log_entries", QEMU_OPT_NUMBER,
      "Entries of the in-memory dedup log store (default: from the image "
      "size)", NULL },
    { "dedup_max_incarnations", QEMU_OPT_NUMBER,
      "Frozen dedup index tables kept before the oldest is dropped "
      "(default: from the image size)", NULL },
    { NULL },
};

BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(BDRVQcow2State),
    .supports_backing = true,
    .bdrv_probe = qcow2_probe,
    .bdrv_open = qcow2_open,
    .bdrv_close = qcow2_close,
    .bdrv_create = qcow2_create,
    .create_opts = qcow2_create_opts,
    .bdrv_create_defaults = qcow2_create_defaults,
    .amend_opts = qcow2_amend_opts,
    .bdrv_preadv = qcow2_preadv,
    .bdrv_pwritev = qcow2_pwritev,
    .bdrv_pwrite_zeroes = qcow2_pwrite_zeroes,
    .bdrv_pdiscard = qcow2_pdiscard,
    .bdrv_pwrite_compressed = qcow2_pwrite_compressed,
    .bdrv_flush_to_os = qcow2_flush_to_os,
    .bdrv_block_status = qcow2_block_status,
    .bdrv_getlength = qcow2_getlength,
    .bdrv_truncate = qcow2_truncate,
    .bdrv_check = qcow2_check,
    .bdrv_get_info = qcow2_get_info,
    .bdrv_snapshot_list = qcow2_snapshot_list,
    .bdrv_vmstate_rw = qcow2_vmstate_rw,
    .bdrv_get_specific_info = qcow2_get_specific_info,
    .bdrv_amend_options = qcow2_amend_options,
    .bdrv_change_backing_file = qcow2_change_backing_file,
    .bdrv_dedup_set_paused = qcow2_dedup_set_paused,
    .bdrv_dedup_query = qcow2_bdrv_dedup_query,
};

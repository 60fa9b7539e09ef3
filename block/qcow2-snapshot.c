/*
 * qcow2 internal snapshots: reading the snapshot table.
 *
 * Table entry (each padded to a multiple of 8 bytes):
 *   0  u64 l1_table_offset     8  u32 l1_size
 *  12  u16 id_str_size        14  u16 name_size
 *  16  u32 date_sec           20  u32 date_nsec
 *  24  u64 vm_clock_nsec      32  u32 vm_state_size
 *  36  u32 extra_data_size    40  extra data, then id_str, then name
 * Extra data: 0 u64 vm_state_size_large, 8 u64 disk_size, 16 u64 icount.
 *
 * The table is kept intact across header rewrites; snapshot L1 and L2
 * tables and the clusters they reach hold references that writes to the
 * active image respect (shared clusters are copied on write).
 */
#include "qemu/osdep.h"
#include "qcow2.h"

#define SNAPSHOT_HEADER_SIZE 40
/* Extra data we look at: vm_state_size_large and disk_size. */
#define SNAPSHOT_EXTRA_KNOWN 24

void qcow2_free_snapshots(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    for (int i = 0; i < s->nb_snapshots; i++) {
        g_free(s->snapshots[i].id_str);
        g_free(s->snapshots[i].name);
        g_free(s->snapshots[i].unknown_extra_data);
    }
    g_free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

static int read_bytes(BlockDriverState *bs, uint64_t *offset, void *buf,
                      size_t len, uint64_t end, Error **errp)
{
    int ret;

    if (*offset + len > end) {
        error_setg(errp, "Snapshot table is truncated or too large");
        return -EFBIG;
    }
    ret = bdrv_pread(bs->file, *offset, len, buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read snapshot table");
        return ret;
    }
    *offset += len;
    return 0;
}

static int read_one_snapshot(BlockDriverState *bs, uint64_t *offset,
                             uint64_t end, QCowSnapshot *sn, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t h[SNAPSHOT_HEADER_SIZE];
    uint8_t extra[SNAPSHOT_EXTRA_KNOWN] = { 0 };
    uint16_t id_size, name_size;
    int ret;

    ret = read_bytes(bs, offset, h, sizeof(h), end, errp);
    if (ret < 0) {
        return ret;
    }
    sn->l1_table_offset = ldq_be_p(h);
    sn->l1_size = ldl_be_p(h + 8);
    id_size = lduw_be_p(h + 12);
    name_size = lduw_be_p(h + 14);
    sn->date_sec = ldl_be_p(h + 16);
    sn->date_nsec = ldl_be_p(h + 20);
    sn->vm_clock_nsec = ldq_be_p(h + 24);
    sn->vm_state_size = ldl_be_p(h + 32);
    sn->extra_data_size = ldl_be_p(h + 36);
    sn->icount = UINT64_MAX;

    if (sn->extra_data_size > 1024) {
        error_setg(errp, "Too much extra metadata in snapshot table entry");
        return -EFBIG;
    }
    size_t known = MIN(sn->extra_data_size, (uint32_t)SNAPSHOT_EXTRA_KNOWN);
    ret = read_bytes(bs, offset, extra, known, end, errp);
    if (ret < 0) {
        return ret;
    }
    if (sn->extra_data_size > known) {
        sn->unknown_extra_data = g_malloc(sn->extra_data_size - known);
        ret = read_bytes(bs, offset, sn->unknown_extra_data,
                         sn->extra_data_size - known, end, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if (known >= 8) {
        sn->vm_state_size = ldq_be_p(extra);
    }
    sn->disk_size = known >= 16 ? ldq_be_p(extra + 8) : s->size;
    if (known >= 24) {
        sn->icount = ldq_be_p(extra + 16);
    }
    sn->id_str = g_malloc0(id_size + 1);
    sn->name = g_malloc0(name_size + 1);
    ret = read_bytes(bs, offset, sn->id_str, id_size, end, errp);
    if (ret == 0) {
        ret = read_bytes(bs, offset, sn->name, name_size, end, errp);
    }
    if (ret < 0) {
        return ret;
    }
    *offset = ROUND_UP(*offset, 8);

    if (offset_into_cluster(s, sn->l1_table_offset) ||
        sn->l1_size > QCOW_MAX_L1_SIZE / 8) {
        error_setg(errp, "Snapshot L1 table offset invalid or too large");
        return -EINVAL;
    }
    return 0;
}

int qcow2_snapshot_list(BlockDriverState *bs, QEMUSnapshotInfo **list)
{
    BDRVQcow2State *s = bs->opaque;
    QEMUSnapshotInfo *out = g_new0(QEMUSnapshotInfo, MAX(s->nb_snapshots, 1));

    for (int i = 0; i < s->nb_snapshots; i++) {
        const QCowSnapshot *sn = &s->snapshots[i];
        out[i] = (QEMUSnapshotInfo) {
            .id_str = g_strdup(sn->id_str),
            .name = g_strdup(sn->name),
            .vm_state_size = sn->vm_state_size,
            .date_sec = sn->date_sec,
            .date_nsec = sn->date_nsec,
            .vm_clock_nsec = sn->vm_clock_nsec,
            .icount = sn->icount,
        };
    }
    *list = out;
    return s->nb_snapshots;
}

int qcow2_read_snapshots(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int nb = s->nb_snapshots;
    uint64_t offset = s->snapshots_offset;
    /* The table may not grow past what a sane image would hold. */
    uint64_t end = offset + QCOW_MAX_SNAPSHOTS * 1024ULL;
    int ret;

    s->snapshots = g_new0(QCowSnapshot, MAX(nb, 1));
    for (int i = 0; i < nb; i++) {
        s->nb_snapshots = i + 1;
        ret = read_one_snapshot(bs, &offset, end, &s->snapshots[i], errp);
        if (ret < 0) {
            qcow2_free_snapshots(bs);
            return ret;
        }
    }
    s->nb_snapshots = nb;
    s->snapshots_size = offset - s->snapshots_offset;
    return 0;
}

/*
 * The "file" protocol: images in host files (or block and character
 * devices) accessed with pread/pwrite from whichever thread issues the
 * request.
 *
 * With cache.direct=on the file is opened O_DIRECT; the core then aligns
 * request offsets and lengths to request_alignment, and this driver bounces
 * buffers whose memory is not aligned.
 *
 * Image locking, compatible with QEMU (so that QEMU and these tools keep
 * each other off an image in use).  While a node is open its descriptor
 * holds shared open-file-description locks (F_OFD_SETLK, F_RDLCK) on single
 * bytes of the file that publish what this user does and what it forbids:
 *
 *   byte 100 + i   held while we use permission i
 *   byte 200 + i   held while we forbid others to use permission i
 *
 * with permission bits i: 0 consistent read, 1 write, 2 write unchanged,
 * 3 resize.  Locks only ever conflict with a write-lock probe, so any
 * number of users can hold the same bytes.  After taking its bytes a user
 * probes (F_OFD_GETLK with F_WRLCK) byte 200 + i of every permission it
 * uses and byte 100 + i of every permission it forbids; a lock found there
 * belongs to another open file and is a conflict.  Taking before probing
 * means that of two users opening at the same time at least one sees the
 * other.  Bytes past the end of the file can be locked, so tiny images work.
 *
 * What a node asks for: consistent read unless the user only looks at
 * metadata (BDRV_O_NO_IO); write and resize when writable.  Unless opened
 * with BDRV_O_FORCE_SHARE it forbids others to write or resize, as QEMU
 * does for the file under an image format: so a writer excludes every
 * other user but BDRV_O_FORCE_SHARE readers, and a reader every writer.
 *
 * All nodes of one process on the same file lock through one shared open
 * file description (a dup of the first one's descriptor), counting per
 * byte how many nodes need it.  Other processes see the union of their
 * needs, and the nodes never conflict among themselves: QEMU only locks
 * for nodes that have users, so a process may well open an image twice.
 *
 * Creation locks its own descriptor, taking write and resize and
 * forbidding resizing until the file has its new size; it empties the
 * file only after that, so creating (or converting) over an image that
 * is open anywhere, this process included, fails and destroys nothing.
 * The runtime option locking=off (or locking=auto where the host has no
 * OFD locks) leaves a node out of all this.
 */
#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qemu/cutils.h"
#include "qemu/units.h"

#include <linux/falloc.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

/* Permissions, as bits of the lock byte offsets above. */
enum {
    PERM_CONSISTENT_READ = 1 << 0,
    PERM_WRITE           = 1 << 1,
    PERM_WRITE_UNCHANGED = 1 << 2,
    PERM_RESIZE          = 1 << 3,
};
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200

static const char *const perm_names[] = {
    "consistent read", "write", "write unchanged", "resize",
};

/* Permissions used and denied, as bit masks of the above. */
typedef struct FileLocks {
    unsigned perm;
    unsigned unshared;
} FileLocks;

/*
 * An open file description that holds lock bytes for one or more users,
 * with per byte the number of users needing it.  The process-wide ones
 * are shared by every node on the file (dev, ino).
 */
typedef struct FileLockOwner {
    int fd;
    int count[2][G_N_ELEMENTS(perm_names)];     /* [0] perm, [1] unshared */
    dev_t dev;
    ino_t ino;
    int users;
} FileLockOwner;

typedef struct BDRVFileState {
    int fd;
    bool direct;
    FileLockOwner *lock_owner;  /* NULL with locking off */
    FileLocks locks;
} BDRVFileState;

/* Locks */

static int lock_byte(int fd, int byte, bool lock)
{
    struct flock fl = {
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
        .l_type = lock ? F_RDLCK : F_UNLCK,
    };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 0 if no other open file holds byte, -EAGAIN if one does, else -errno. */
static int probe_byte(int fd, int byte)
{
    struct flock fl = {
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
        .l_type = F_WRLCK,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

static unsigned file_locks_mask(FileLocks locks, int kind)
{
    return kind ? locks.unshared : locks.perm;
}

/* Users give back the lock bytes of locks; bytes nobody needs are freed. */
static void file_unlock(FileLockOwner *o, FileLocks locks)
{
    for (int kind = 0; kind < 2; kind++) {
        int base = kind ? LOCK_SHARED_BASE : LOCK_PERM_BASE;

        for (int i = 0; i < (int)G_N_ELEMENTS(perm_names); i++) {
            if ((file_locks_mask(locks, kind) & (1u << i)) &&
                --o->count[kind][i] == 0) {
                /* Fails only for a bad descriptor: nothing left to free. */
                lock_byte(o->fd, base + i, false);
            }
        }
    }
}

/* Take the lock bytes of want that o does not hold yet. */
static int file_take_locks(FileLockOwner *o, FileLocks want, Error **errp)
{
    FileLocks taken = { 0, 0 };

    for (int kind = 0; kind < 2; kind++) {
        int base = kind ? LOCK_SHARED_BASE : LOCK_PERM_BASE;
        unsigned *taken_mask = kind ? &taken.unshared : &taken.perm;

        for (int i = 0; i < (int)G_N_ELEMENTS(perm_names); i++) {
            int ret;

            if (!(file_locks_mask(want, kind) & (1u << i))) {
                continue;
            }
            ret = o->count[kind][i] ? 0 : lock_byte(o->fd, base + i, true);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to lock byte %d",
                                 base + i);
                file_unlock(o, taken);
                return ret;
            }
            o->count[kind][i]++;
            *taken_mask |= 1u << i;
        }
    }
    return 0;
}

/* Does another open file deny what we use, or use what we deny? */
static int file_check_locks(int fd, FileLocks want, Error **errp)
{
    for (int i = 0; i < (int)G_N_ELEMENTS(perm_names); i++) {
        if ((want.perm & (1u << i)) && probe_byte(fd, LOCK_SHARED_BASE + i)) {
            error_setg(errp, "Failed to get \"%s\" lock", perm_names[i]);
            return -EAGAIN;
        }
    }
    for (int i = 0; i < (int)G_N_ELEMENTS(perm_names); i++) {
        if ((want.unshared & (1u << i)) && probe_byte(fd, LOCK_PERM_BASE + i)) {
            error_setg(errp, "Failed to get shared \"%s\" lock",
                       perm_names[i]);
            return -EAGAIN;
        }
    }
    return 0;
}

/*
 * Add want to what o holds, then check that no other open file conflicts
 * with it; on a conflict give it back.  The hint names the image.
 */
static int file_lock(FileLockOwner *o, FileLocks want, const char *filename,
                     Error **errp)
{
    int ret = file_take_locks(o, want, errp);

    if (ret == 0) {
        ret = file_check_locks(o->fd, want, errp);
        if (ret < 0) {
            error_append_hint(errp, "Is another process using the image "
                              "[%s]?\n", filename);
            file_unlock(o, want);
        }
    }
    return ret;
}

/* The process-wide lock owners, by file. */
static GMutex lock_owners_mutex;
static GSList *lock_owners;

/* The owner for the file of fd (described by st), shared or new. */
static FileLockOwner *file_lock_owner_get(int fd, const struct stat *st,
                                          Error **errp)
{
    FileLockOwner *o;

    for (GSList *l = lock_owners; l; l = l->next) {
        o = l->data;
        if (o->dev == st->st_dev && o->ino == st->st_ino) {
            o->users++;
            return o;
        }
    }
    o = g_new0(FileLockOwner, 1);
    o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (o->fd < 0) {
        error_setg_errno(errp, errno, "Could not get a descriptor for "
                         "locking");
        g_free(o);
        return NULL;
    }
    o->dev = st->st_dev;
    o->ino = st->st_ino;
    o->users = 1;
    lock_owners = g_slist_prepend(lock_owners, o);
    return o;
}

static void file_lock_owner_put(FileLockOwner *o)
{
    if (--o->users == 0) {
        lock_owners = g_slist_remove(lock_owners, o);
        close(o->fd);
        g_free(o);
    }
}

/* The locks a node opened with flags asks for (see the top of the file). */
static FileLocks file_locks_for_flags(int flags)
{
    FileLocks want = { 0, 0 };

    if (!(flags & BDRV_O_NO_IO)) {
        want.perm |= PERM_CONSISTENT_READ;
    }
    if (flags & BDRV_O_RDWR) {
        want.perm |= PERM_WRITE | PERM_RESIZE;
    }
    if (!(flags & BDRV_O_FORCE_SHARE)) {
        want.unshared = PERM_WRITE | PERM_RESIZE;
    }
    return want;
}

/* Join the file's lock owner with the locks of flags. */
static int file_lock_node(BDRVFileState *s, const struct stat *st, int flags,
                          const char *filename, Error **errp)
{
    FileLockOwner *o;
    int ret;

    g_mutex_lock(&lock_owners_mutex);
    o = file_lock_owner_get(s->fd, st, errp);
    if (!o) {
        ret = -EMFILE;
    } else {
        s->locks = file_locks_for_flags(flags);
        ret = file_lock(o, s->locks, filename, errp);
        if (ret < 0) {
            file_lock_owner_put(o);
        } else {
            s->lock_owner = o;
        }
    }
    g_mutex_unlock(&lock_owners_mutex);
    return ret;
}

static void file_unlock_node(BDRVFileState *s)
{
    g_mutex_lock(&lock_owners_mutex);
    file_unlock(s->lock_owner, s->locks);
    file_lock_owner_put(s->lock_owner);
    g_mutex_unlock(&lock_owners_mutex);
}

/* Open */

static int file_probe_alignment(int fd)
{
    void *buf = qemu_blockalign(4096);
    int align = 4096;

    /* A 512-byte O_DIRECT read fails with EINVAL on 4k-sector storage. */
    if (pread(fd, buf, 512, 0) >= 0) {
        align = 512;
    }
    qemu_vfree(buf);
    return align;
}

typedef enum FileLocking {
    FILE_LOCKING_AUTO,
    FILE_LOCKING_ON,
    FILE_LOCKING_OFF,
} FileLocking;

static int parse_locking(const char *value, FileLocking *locking,
                         Error **errp)
{
    static const char *const names[] = { "auto", "on", "off" };

    if (!value) {
        *locking = FILE_LOCKING_AUTO;
        return 0;
    }
    for (int i = 0; i < (int)G_N_ELEMENTS(names); i++) {
        if (!strcmp(value, names[i])) {
            *locking = i;
            return 0;
        }
    }
    error_setg(errp, "invalid parameter value: %s", value);
    return -EINVAL;
}

/*
 * Check the runtime options.  aio=native and aio=io_uring are accepted for
 * compatibility (requests are served by the calling thread all the same),
 * as are QEMU's cache-dropping switches, which only matter for migration.
 */
static int file_check_options(const QDict *options, int flags,
                              FileLocking *locking, Error **errp)
{
    static const char *const bool_opts[] = {
        "drop-cache", "x-check-cache-dropped",
    };
    const char *aio = qdict_get_str(options, "aio");
    const char *pr_manager = qdict_get_str(options, "pr-manager");
    Error *local_err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(bool_opts) && !local_err; i++) {
        qdict_get_try_bool(options, bool_opts[i], false, &local_err);
    }
    if (!local_err) {
        qdict_get_try_int(options, "aio-max-batch", 0, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (aio && strcmp(aio, "threads") && strcmp(aio, "native") &&
        strcmp(aio, "io_uring")) {
        error_setg(errp, "invalid parameter value: %s", aio);
        return -EINVAL;
    }
    if (parse_locking(qdict_get_str(options, "locking"), locking, errp) < 0) {
        return -EINVAL;
    }
    if (pr_manager) {
        error_setg(errp, "No persistent reservation manager with id '%s'",
                   pr_manager);
        return -EINVAL;
    }
    if (aio && !strcmp(aio, "native") && !(flags & BDRV_O_NOCACHE)) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return -EINVAL;
    }
    return 0;
}

/*
 * Consume the options this driver knows.  Anything left over is an error
 * to report before taking locks, so that a mistyped option never collides
 * with another user of the image first.
 */
static int file_consume_options(QDict *options, Error **errp)
{
    static const char *const known[] = {
        "filename", "aio", "aio-max-batch", "locking", "drop-cache",
        "x-check-cache-dropped",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(known); i++) {
        qdict_del(options, known[i]);
    }
    if (qdict_size(options)) {
        error_setg(errp, "Block protocol 'file' doesn't support the option "
                   "'%s'", qdict_key_at(options, 0));
        return -EINVAL;
    }
    return 0;
}

/* locking=auto means on where the host has OFD locks. */
static bool file_use_lock(int fd, FileLocking locking)
{
    if (locking == FILE_LOCKING_AUTO) {
        return probe_byte(fd, LOCK_PERM_BASE) != -EINVAL;
    }
    return locking == FILE_LOCKING_ON;
}

static int file_open(BlockDriverState *bs, QDict *options, int flags,
                     Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int oflags = O_CLOEXEC | ((flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY);
    FileLocking locking;
    struct stat st;
    int ret;

    if (!bs->filename[0]) {
        error_setg(errp, "The 'file' block driver requires a file name");
        return -EINVAL;
    }
    ret = file_check_options(options, flags, &locking, errp);
    if (ret < 0) {
        return ret;
    }
    if (flags & BDRV_O_NOCACHE) {
        oflags |= O_DIRECT;
        s->direct = true;
    }
    s->fd = open(bs->filename, oflags);
    if (s->fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not open '%s'", bs->filename);
        return ret;
    }
    if (fstat(s->fd, &st) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not stat '%s'", bs->filename);
        goto fail;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode)) {
        error_setg(errp, "'file' driver requires '%s' to be a regular file",
                   bs->filename);
        ret = -EINVAL;
        goto fail;
    }
    ret = file_consume_options(options, errp);
    if (ret < 0) {
        goto fail;
    }
    if (file_use_lock(s->fd, locking)) {
        ret = file_lock_node(s, &st, flags, bs->filename, errp);
        if (ret < 0) {
            goto fail;
        }
    }
    if (s->direct) {
        bs->request_alignment = file_probe_alignment(s->fd);
    }
    return 0;

fail:
    close(s->fd);
    return ret;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    if (s->lock_owner) {
        file_unlock_node(s);
    }
    close(s->fd);
}

static bool file_qiov_aligned(BDRVFileState *s, QEMUIOVector *qiov)
{
    if (!s->direct) {
        return true;
    }
    for (int i = 0; i < qiov->niov; i++) {
        if ((uintptr_t)qiov->iov[i].iov_base % QEMU_BUFFER_ALIGN ||
            qiov->iov[i].iov_len % QEMU_BUFFER_ALIGN) {
            return false;
        }
    }
    return true;
}

/* Full-length preadv/pwritev over a copy of the vector; zeroes past EOF. */
static int file_rw_vector(BDRVFileState *s, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, bool write)
{
    QEMUIOVector rest;
    int64_t done = 0;
    int ret = 0;

    while (done < bytes) {
        ssize_t n;

        qemu_iovec_init_slice(&rest, qiov, done, bytes - done);
        do {
            n = write ? pwritev(s->fd, rest.iov, MIN(rest.niov, IOV_MAX),
                                offset + done)
                      : preadv(s->fd, rest.iov, MIN(rest.niov, IOV_MAX),
                               offset + done);
        } while (n < 0 && errno == EINTR);
        qemu_iovec_destroy(&rest);
        if (n < 0) {
            ret = -errno;
            break;
        }
        if (n == 0) {
            if (write) {
                ret = -EIO;
            } else {
                qemu_iovec_memset(qiov, done, 0, bytes - done);
                done = bytes;
            }
            break;
        }
        done += n;
    }
    return ret;
}

static int file_rw(BlockDriverState *bs, int64_t offset, int64_t bytes,
                   QEMUIOVector *qiov, bool write)
{
    BDRVFileState *s = bs->opaque;
    QEMUIOVector bounce_qiov;
    void *bounce;
    int ret;

    if (file_qiov_aligned(s, qiov)) {
        return file_rw_vector(s, offset, bytes, qiov, write);
    }
    bounce = qemu_try_blockalign(bytes);
    if (!bounce) {
        return -ENOMEM;
    }
    if (write) {
        qemu_iovec_to_buf(qiov, 0, bounce, bytes);
    }
    qemu_iovec_init_buf(&bounce_qiov, bounce, bytes);
    ret = file_rw_vector(s, offset, bytes, &bounce_qiov, write);
    if (!write && ret >= 0) {
        qemu_iovec_from_buf(qiov, 0, bounce, bytes);
    }
    qemu_vfree(bounce);
    return ret;
}

static int file_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    (void)flags;
    return file_rw(bs, offset, bytes, qiov, false);
}

static int file_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    (void)flags;
    return file_rw(bs, offset, bytes, qiov, true);
}

static int64_t file_fd_length(int fd)
{
    off_t len = lseek(fd, 0, SEEK_END);

    return len < 0 ? -errno : len;
}

static int file_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int64_t len = file_fd_length(s->fd);
    int mode = (flags & BDRV_REQ_MAY_UNMAP)
               ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
               : FALLOC_FL_ZERO_RANGE;

    if (len < 0) {
        return len;
    }
    if (offset >= len) {
        /* Growing the file leaves zeroes behind its old end. */
        return ftruncate(s->fd, offset + bytes) < 0 ? -errno : 0;
    }
    if (fallocate(s->fd, mode, offset, bytes) < 0) {
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? -ENOTSUP : -errno;
    }
    if (offset + bytes > len && (mode & FALLOC_FL_KEEP_SIZE) &&
        ftruncate(s->fd, offset + bytes) < 0) {
        return -errno;
    }
    return 0;
}

static int file_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVFileState *s = bs->opaque;

    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  offset, bytes) < 0) {
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? -ENOTSUP : -errno;
    }
    return 0;
}

static int file_flush_to_disk(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int64_t file_getlength(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    return file_fd_length(s->fd);
}

static int64_t file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static int file_block_status(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, int64_t *pnum, int64_t *map,
                             BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    off_t data, hole;

    *map = offset;
    *file = bs;
    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        /* Only a hole up to the end of the file follows. */
        *pnum = bytes;
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data < 0) {
        *pnum = bytes;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    hole = lseek(s->fd, offset, SEEK_HOLE);
    *pnum = (hole < 0 || hole <= offset) ? bytes : MIN(bytes, hole - offset);
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}


static int file_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    (void)bs;
    (void)bdi;
    /* Nothing to add, but "qemu-img info" then shows dirty-flag as QEMU. */
    return 0;
}

/* Size changes */

/*
 * Write zeroes over the start of a file that was empty: probing the
 * O_DIRECT alignment later must read allocated storage, because a read of
 * a hole succeeds at any alignment.  Failure only loses that, so it is
 * ignored.  Like QEMU, this writes at least 512 bytes, even past new_len.
 */
static void file_allocate_first_block(int fd, int64_t new_len)
{
    size_t len = new_len < 4096 ? 512 : 4096;
    void *zeros = qemu_blockalign0(4096);
    ssize_t n;

    do {
        n = pwrite(fd, zeros, len, 0);
    } while (n < 0 && errno == EINTR);
    qemu_vfree(zeros);
}

/* Fill [old_len, new_len) of a file already that long with zeroes. */
static int file_write_zeroes_from(int fd, int64_t old_len, int64_t new_len,
                                  Error **errp)
{
    size_t chunk = 64 * KiB;
    void *zeros = qemu_blockalign0(chunk);
    int ret = 0;

    for (int64_t off = old_len; off < new_len && ret == 0; ) {
        ssize_t n = pwrite(fd, zeros, MIN((int64_t)chunk, new_len - off), off);
        if (n >= 0) {
            off += n;
        } else if (errno != EINTR) {
            ret = -errno;
            error_setg_errno(errp, -ret,
                             "Could not write zeros for preallocation");
        }
    }
    qemu_vfree(zeros);
    if (ret == 0 && fsync(fd) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not flush file to disk");
    }
    return ret;
}

/*
 * Give a regular file exactly new_len bytes, preallocating what is added.
 * The mode is checked before anything changes, and a failed preallocation
 * restores the old length.
 */
static int file_resize_regular(int fd, int64_t new_len, PreallocMode prealloc,
                               Error **errp)
{
    struct stat st;
    int64_t old_len;
    int ret = 0;

    if (fstat(fd, &st) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not stat file");
        return ret;
    }
    old_len = st.st_size;
    if (old_len > new_len && prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Cannot use preallocation for shrinking files");
        return -ENOTSUP;
    }
    switch (prealloc) {
    case PREALLOC_MODE_OFF:
        if (ftruncate(fd, new_len) < 0) {
            ret = -errno;
            error_setg_errno(errp, -ret, "Could not resize file");
            return ret;
        }
        break;
    case PREALLOC_MODE_FALLOC:
        if (new_len > old_len) {
            /* posix_fallocate() returns the error instead of setting errno. */
            ret = -posix_fallocate(fd, old_len, new_len - old_len);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not preallocate new data");
            }
        }
        break;
    case PREALLOC_MODE_FULL:
        if (ftruncate(fd, new_len) < 0) {
            ret = -errno;
            error_setg_errno(errp, -ret, "Could not resize file");
        } else {
            ret = file_write_zeroes_from(fd, old_len, new_len, errp);
        }
        break;
    default:
        error_setg(errp, "Unsupported preallocation mode: %s",
                   PreallocMode_str[prealloc]);
        return -ENOTSUP;
    }
    if (ret < 0) {
        if (ftruncate(fd, old_len) < 0) {
            error_report("Failed to restore old file length: %s",
                         strerror(errno));
        }
        return ret;
    }
    if (old_len == 0 && new_len > 0 && prealloc != PREALLOC_MODE_FULL) {
        file_allocate_first_block(fd, new_len);
    }
    return 0;
}

/*
 * Regular files always get exactly the length asked for (exact only
 * matters for devices, whose size cannot change: a smaller length is fine
 * unless it must be exact).
 */
static int file_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;
    int64_t len;

    if (fstat(s->fd, &st) < 0) {
        int ret = -errno;
        error_setg_errno(errp, -ret, "Could not stat file");
        return ret;
    }
    if (S_ISREG(st.st_mode)) {
        return file_resize_regular(s->fd, offset, prealloc, errp);
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Preallocation mode '%s' unsupported for this "
                   "non-regular file", PreallocMode_str[prealloc]);
        return -ENOTSUP;
    }
    len = file_fd_length(s->fd);
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get file length");
        return len;
    }
    if (offset != len && exact) {
        error_setg(errp, "Cannot resize device files");
        return -ENOTSUP;
    }
    if (offset > len) {
        error_setg(errp, "Cannot grow device files");
        return -EINVAL;
    }
    return 0;
}

/* Create */

/* Best effort, as in QEMU: copy-on-write only costs performance. */
static void file_set_nocow(int fd)
{
    int attr;

    if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
        attr |= FS_NOCOW_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &attr);
    }
}

/*
 * Ask the filesystem (XFS honours it) to allocate in extents of hint
 * bytes, which keeps images that grow by small writes less fragmented.  A
 * failure is worth a warning only if the user chose a hint.
 */
static void file_set_extent_size_hint(int fd, uint64_t hint, bool chosen)
{
    struct fsxattr attr;
    int ret = ioctl(fd, FS_IOC_FSGETXATTR, &attr);

    if (ret == 0) {
        attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
        attr.fsx_extsize = hint;
        ret = ioctl(fd, FS_IOC_FSSETXATTR, &attr);
    }
    if (ret < 0 && chosen && hint) {
        warn_report("Failed to set extent size hint: %s", strerror(errno));
    }
}

/*
 * The file is opened without O_TRUNC and only emptied once its locks show
 * that nobody else uses it, so creating over an image in use fails before
 * it destroys anything.  The size is rounded up to whole 512-byte sectors.
 */
static int file_create(const char *filename, QDict *opts, Error **errp)
{
    uint64_t size = ROUND_UP(qemu_opt_get_size(opts, "size", 0), 512);
    const char *mode = qemu_opt_get(opts, "preallocation");
    int prealloc = mode ? prealloc_mode_parse(mode) : PREALLOC_MODE_OFF;
    bool hint_chosen = qemu_opt_get(opts, "extent_size_hint") != NULL;
    uint64_t hint = qemu_opt_get_size(opts, "extent_size_hint", 1 * MiB);
    FileLocks want = { PERM_WRITE | PERM_RESIZE, PERM_RESIZE };
    FileLockOwner own = { 0 };
    int fd, ret;

    if (prealloc < 0) {
        error_setg(errp, "invalid parameter value: %s", mode);
        return -EINVAL;
    }
    if (hint > UINT32_MAX) {
        error_setg(errp, "Extent size hint is too large");
        return -EINVAL;
    }
    fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not create '%s'", filename);
        return ret;
    }
    own.fd = fd;
    ret = file_lock(&own, want, filename, errp);
    if (ret == 0) {
        ret = file_resize_regular(fd, 0, PREALLOC_MODE_OFF, errp);
        if (ret == 0) {
            if (qemu_opt_get_bool(opts, "nocow", false)) {
                file_set_nocow(fd);
            }
            file_set_extent_size_hint(fd, hint, hint_chosen);
            ret = file_resize_regular(fd, size, prealloc, errp);
        }
        file_unlock(&own, want);
    }
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not close the new file");
    }
    return ret;
}

/* In QEMU's order, which the "Formatting ..." line of qemu-img follows. */
static const QemuOptDesc file_create_opts[] = {
    { "size", QEMU_OPT_SIZE, "Virtual disk size", NULL },
    { "nocow", QEMU_OPT_BOOL,
      "Turn off copy-on-write (valid only on btrfs)", "off" },
    { "preallocation", QEMU_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", "off" },
    { "extent_size_hint", QEMU_OPT_SIZE,
      "Extent size hint for the image file, 0 to disable", NULL },
    { NULL },
};

BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(BDRVFileState),
    .is_protocol = true,
    .bdrv_open = file_open,
    .bdrv_close = file_close,
    .bdrv_create_file = file_create,
    .create_opts = file_create_opts,
    .bdrv_preadv = file_preadv,
    .bdrv_pwritev = file_pwritev,
    .bdrv_pwrite_zeroes = file_pwrite_zeroes,
    .bdrv_pdiscard = file_pdiscard,
    .bdrv_flush_to_disk = file_flush_to_disk,
    .bdrv_block_status = file_block_status,
    .bdrv_getlength = file_getlength,
    .bdrv_get_allocated_file_size = file_get_allocated_file_size,
    .bdrv_truncate = file_truncate,
    .bdrv_get_info = file_get_info,
};

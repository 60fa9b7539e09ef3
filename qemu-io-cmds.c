/*
 * qemu-io commands: the command table, argument parsing shared by the
 * commands, and every command that works on an open image.
 *
 * Numbers: offsets and lengths accept qemu_strtosz() sizes ("64k",
 * "0x200"); one request moves at most QEMUIO_MAX_REQUEST bytes, the largest
 * 512-byte multiple that fits in an int, as in the stock tool.
 *
 * Report lines after a request (print_report()):
 *     <op> <bytes>/<bytes> bytes at offset <offset>
 *     <human size>, 1 ops; <elapsed> (<human rate>/sec and <n> ops/sec)
 * or, with -C, one machine-readable line
 *     <bytes>,1,<h:mm:ss.cc>,<bytes/sec>,<ops/sec>
 * Read buffers start out filled with 0xab, write buffers with 0xcd.
 *
 * Asynchronous requests: each aio_read/aio_write becomes an AioRequest run
 * by a worker thread of a GThreadPool.  A finished request is only marked
 * done (and a byte written to a notification pipe); its result is printed
 * by the main thread in qemuio_aio_report(), see qemu-io.h for when.
 * aio_lock protects the request list and the in-flight count.
 */
#include "qemu/osdep.h"
#include "qemu-io.h"
#include "qemu/cutils.h"
#include "qapi/qjson.h"

#include <getopt.h>
#include <glib-unix.h>
#include <math.h>
#include <poll.h>
#include <signal.h>

#define QEMUIO_MAX_REQUEST  ((int64_t)(INT_MAX & ~511))
#define SECTOR_SIZE         512
#define MISALIGN_OFFSET     16
#define AIO_MAX_THREADS     64

bool qemuio_misalign;

static GPtrArray *commands;     /* QemuIOCommand *, sorted by name */

/* ------------------------------------------------------------ helpers */

/* A size argument (qemu_strtosz()), or a negative errno after saying why. */
static int64_t parse_num(const char *arg)
{
    uint64_t value;
    int ret = qemu_strtosz(arg, &value);

    if (ret == 0 && value > INT64_MAX) {
        ret = -ERANGE;
    }
    switch (ret) {
    case 0:
        return value;
    case -EINVAL:
        printf("Parsing error: non-numeric argument,"
               " or extraneous/unrecognized suffix -- %s\n", arg);
        break;
    case -ERANGE:
        printf("Parsing error: argument too large -- %s\n", arg);
        break;
    default:
        printf("Parsing error: %s\n", arg);
    }
    return ret;
}

/* A pattern byte 0..255 in C syntax, or -1 after printing why not. */
static int parse_pattern(const char *arg)
{
    char *end;
    long v = strtol(arg, &end, 0);

    if (*end || v < 0 || v > UCHAR_MAX) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return v;
}

/* VM state (-b) and compressed (-c) requests work in whole sectors. */
static int check_sector_aligned(int64_t offset, int64_t bytes)
{
    if (!QEMU_IS_ALIGNED(offset, SECTOR_SIZE)) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n",
               offset);
        return -EINVAL;
    }
    if (!QEMU_IS_ALIGNED(bytes, SECTOR_SIZE)) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n",
               bytes);
        return -EINVAL;
    }
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

/* I/O buffers, filled with a recognisable byte; see qemuio_misalign. */
static void *io_alloc(int64_t len, int fill)
{
    size_t skew = qemuio_misalign ? MISALIGN_OFFSET : 0;
    uint8_t *buf = qemu_try_blockalign(len + skew);

    if (!buf) {
        printf("cannot allocate %" PRId64 " bytes: %s\n", len,
               strerror(ENOMEM));
        return NULL;
    }
    memset(buf, fill, len + skew);
    return buf + skew;
}

static void io_free(void *buf)
{
    if (buf) {
        qemu_vfree((uint8_t *)buf - (qemuio_misalign ? MISALIGN_OFFSET : 0));
    }
}

/* A write buffer holding the contents of path, repeated as needed. */
static void *io_alloc_from_file(int64_t len, const char *path)
{
    FILE *f = fopen(path, "r");
    uint8_t *buf;
    size_t got;

    if (!f) {
        perror(path);
        return NULL;
    }
    buf = io_alloc(len, 0);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    got = fread(buf, 1, len, f);
    if (ferror(f)) {
        perror(path);
        goto fail;
    }
    if (got == 0) {
        fprintf(stderr, "%s: file is empty\n", path);
        goto fail;
    }
    for (int64_t off = got; off < len; off += got) {
        memcpy(buf + off, buf, MIN((int64_t)got, len - off));
    }
    fclose(f);
    return buf;

fail:
    fclose(f);
    io_free(buf);
    return NULL;
}

static bool buffer_has_pattern(const uint8_t *buf, int pattern, int64_t len)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            return false;
        }
    }
    return true;
}

/* Check len bytes that were read from image offset offset. */
static int verify_pattern(const uint8_t *buf, int pattern, int64_t offset,
                          int64_t len)
{
    if (buffer_has_pattern(buf, pattern, len)) {
        return 0;
    }
    printf("Pattern verification failed at offset %" PRId64 ", %" PRId64
           " bytes\n", offset, len);
    return -EINVAL;
}

/* Hex and alphanumeric dump, 16 bytes a line, labelled by image offset. */
static void dump_buffer(const uint8_t *buf, int64_t offset, int64_t len)
{
    for (int64_t i = 0; i < len; i += 16) {
        int n = MIN(16, len - i);

        printf("%08" PRIx64 ":  ", offset + i);
        for (int j = 0; j < n; j++) {
            printf("%02x ", buf[i + j]);
        }
        putchar(' ');
        for (int j = 0; j < n; j++) {
            putchar(g_ascii_isalnum(buf[i + j]) ? buf[i + j] : '.');
        }
        putchar('\n');
    }
}

/* Elapsed time: "SS.cc sec" under a second, else "h:mm:ss.cc". */
static char *elapsed_str(int64_t ns, bool machine)
{
    int64_t secs = ns / 1000000000;
    unsigned centis = (ns / 10000000) % 100;

    if (!machine && secs == 0) {
        return g_strdup_printf("00.%02u sec", centis);
    }
    return g_strdup_printf("%u:%02u:%02u.%02u", (unsigned)(secs / 3600),
                           (unsigned)(secs / 60 % 60), (unsigned)(secs % 60),
                           centis);
}

/* The result of one request of bytes at offset (see the top of the file). */
static void print_report(const char *op, int64_t elapsed_ns, int64_t offset,
                         int64_t bytes, bool machine)
{
    double secs = elapsed_ns / 1e9;
    /* Faster than the clock can tell: infinite rates, never 0 / 0. */
    double byte_rate = secs > 0 ? bytes / secs : bytes ? INFINITY : 0;
    double op_rate = secs > 0 ? 1 / secs : INFINITY;
    g_autofree char *t = elapsed_str(elapsed_ns, machine);

    if (machine) {
        printf("%" PRId64 ",1,%s,%.3f,%.3f\n", bytes, t, byte_rate, op_rate);
        return;
    }
    g_autofree char *amount = size_to_io_str(bytes);
    g_autofree char *rate = size_to_io_str(byte_rate);
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n",
           op, bytes, bytes, offset);
    printf("%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n",
           amount, t, rate, op_rate);
}

/*
 * The length arguments of readv/writev/aio_*: one buffer of their total
 * size, cut into one iovec per argument.  Returns the buffer or NULL.
 */
static void *create_iovec(QEMUIOVector *qiov, char **args, int nr, int fill)
{
    g_autofree int64_t *lens = g_new(int64_t, nr);
    int64_t total = 0;
    uint8_t *buf, *p;

    for (int i = 0; i < nr; i++) {
        lens[i] = parse_num(args[i]);
        if (lens[i] < 0) {
            return NULL;
        }
        if (lens[i] > QEMUIO_MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %" PRId64 "\n",
                   args[i], QEMUIO_MAX_REQUEST);
            return NULL;
        }
        if (total + lens[i] > QEMUIO_MAX_REQUEST) {
            printf("The total number of bytes exceed the maximum size %"
                   PRId64 "\n", QEMUIO_MAX_REQUEST);
            return NULL;
        }
        total += lens[i];
    }
    buf = io_alloc(total, fill);
    if (!buf) {
        return NULL;
    }
    qemu_iovec_init(qiov, nr);
    p = buf;
    for (int i = 0; i < nr; i++) {
        qemu_iovec_add(qiov, p, lens[i]);
        p += lens[i];
    }
    return buf;
}

/*
 * A synchronous request that really did I/O is where the stock tool's
 * event loop runs, so asynchronous requests finished by then are reported
 * before the request's own result.
 */
static void sync_io_done(int ret, int64_t bytes)
{
    if (ret >= 0 && bytes > 0) {
        qemuio_aio_report();
    }
}

/* ------------------------------------------------------ command table */

static int compare_commands(gconstpointer a, gconstpointer b)
{
    const QemuIOCommand *x = *(QemuIOCommand *const *)a;
    const QemuIOCommand *y = *(QemuIOCommand *const *)b;

    return strcmp(x->name, y->name);
}

static void init_commands(void);

void qemuio_add_command(const QemuIOCommand *cmd)
{
    init_commands();
    g_ptr_array_add(commands, (gpointer)cmd);
    g_ptr_array_sort(commands, compare_commands);
}

static const QemuIOCommand *find_command(const char *name)
{
    init_commands();
    for (guint i = 0; i < commands->len; i++) {
        const QemuIOCommand *ct = g_ptr_array_index(commands, i);
        if (!strcmp(ct->name, name) ||
            (ct->altname && !strcmp(ct->altname, name))) {
            return ct;
        }
    }
    return NULL;
}

static void print_oneline(const char *name, const QemuIOCommand *ct)
{
    if (ct->args) {
        printf("%s %s -- %s\n", name, ct->args, ct->oneline);
    } else {
        printf("%s -- %s\n", name, ct->oneline);
    }
}

void qemuio_command_usage(const QemuIOCommand *cmd)
{
    print_oneline(cmd->name, cmd);
}

/* What must hold before a command runs; prints the reason if not. */
static bool command_allowed(BlockBackend *blk, const QemuIOCommand *ct,
                            const char *name, int nargs)
{
    if ((ct->flags & QEMUIO_CMD_NEEDS_FILE) && !blk) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return false;
    }
    if (nargs < ct->argmin || (ct->argmax >= 0 && nargs > ct->argmax)) {
        fprintf(stderr, "bad argument count %d to %s, expected ", nargs, name);
        if (ct->argmax < 0) {
            fprintf(stderr, "at least %d arguments\n", ct->argmin);
        } else if (ct->argmin == ct->argmax) {
            fprintf(stderr, "%d arguments\n", ct->argmin);
        } else {
            fprintf(stderr, "between %d and %d arguments\n",
                    ct->argmin, ct->argmax);
        }
        return false;
    }
    if ((ct->flags & QEMUIO_CMD_NEEDS_WRITE) && !blk_is_writable(blk)) {
        error_report("Block node is read-only");
        return false;
    }
    return true;
}

/* Words separated by runs of spaces (only spaces, as in the stock tool). */
static char **split_command(const char *line, int *argc)
{
    GPtrArray *words = g_ptr_array_new();
    const char *p = line;

    while (*p) {
        const char *start;

        while (*p == ' ') {
            p++;
        }
        if (!*p) {
            break;
        }
        start = p;
        while (*p && *p != ' ') {
            p++;
        }
        g_ptr_array_add(words, g_strndup(start, p - start));
    }
    *argc = words->len;
    g_ptr_array_add(words, NULL);
    return (char **)g_ptr_array_free(words, FALSE);
}

int qemuio_command(BlockBackend *blk, const char *line)
{
    int argc;
    g_auto(GStrv) argv = split_command(line, &argc);
    const QemuIOCommand *ct;

    if (argc == 0) {
        return 0;
    }
    ct = find_command(argv[0]);
    if (!ct) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        return -EINVAL;
    }
    if (!command_allowed(blk, ct, argv[0], argc - 1)) {
        return -EINVAL;
    }
    /* Commands use getopt(); 0 makes glibc forget the previous vector. */
    optind = 0;
    return ct->func(blk, argc, argv);
}

/* --------------------------------------------------------- read/write */

static const QemuIOCommand read_cmd, readv_cmd, write_cmd, writev_cmd,
                           aio_read_cmd, aio_write_cmd, discard_cmd,
                           truncate_cmd;

static void read_help(void)
{
    printf(
" Read len bytes at offset off of the image.\n"
"\n"
" Example: 'read -P 0x5a 64k 4k' reads 4 KiB at 64 KiB and checks that every\n"
" byte is 0x5a.\n"
"\n"
" -b, -- access the VM state area instead of the disk\n"
" -C, -- print the statistics as one machine-readable line\n"
" -l, -- with -P: number of bytes to check\n"
" -p, -- accepted and ignored\n"
" -P, -- check the data against this byte value\n"
" -q, -- print nothing on success\n"
" -s, -- with -P: where the checked range starts within the data\n"
" -v, -- hex dump of the data\n"
"\n");
}

static int read_f(BlockBackend *blk, int argc, char **argv)
{
    bool machine = false, quiet = false, dump = false, vmstate = false;
    bool check = false, have_start = false, have_len = false;
    int pattern = 0, c, ret;
    int64_t offset, count, vstart = 0, vlen = 0, start, elapsed;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'C':
            machine = true;
            break;
        case 'l':
            have_len = true;
            vlen = parse_num(optarg);
            if (vlen < 0) {
                return vlen;
            }
            break;
        case 'p':
            break;
        case 'P':
            check = true;
            pattern = parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            have_start = true;
            vstart = parse_num(optarg);
            if (vstart < 0) {
                return vstart;
            }
            break;
        case 'v':
            dump = true;
            break;
        default:
            qemuio_command_usage(&read_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        qemuio_command_usage(&read_cmd);
        return -EINVAL;
    }
    offset = parse_num(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    count = parse_num(argv[optind + 1]);
    if (count < 0) {
        return count;
    }
    if (count > QEMUIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRId64 ", given %s\n",
               QEMUIO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    if (!check && (have_start || have_len)) {
        qemuio_command_usage(&read_cmd);
        return -EINVAL;
    }
    if (!have_len) {
        vlen = count - vstart;
    }
    if (vlen < 0 || vstart > count || vlen > count - vstart) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (vmstate && check_sector_aligned(offset, count) < 0) {
        return -EINVAL;
    }

    buf = io_alloc(count, 0xab);
    if (!buf) {
        return -ENOMEM;
    }
    start = now_ns();
    ret = vmstate ? blk_load_vmstate(blk, buf, offset, count)
                  : blk_pread(blk, offset, count, buf, 0);
    elapsed = now_ns() - start;
    sync_io_done(ret, count);
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = 0;
    if (check) {
        ret = verify_pattern(buf + vstart, pattern, offset + vstart, vlen);
    }
    if (quiet) {
        goto out;
    }
    if (dump) {
        dump_buffer(buf, offset, count);
    }
    print_report("read", elapsed, offset, count, machine);
out:
    io_free(buf);
    return ret;
}

static const QemuIOCommand read_cmd = {
    .name = "read",
    .altname = "r",
    .func = read_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .args = "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    .oneline = "reads a number of bytes at a specified offset",
    .help = read_help,
};

static void readv_help(void)
{
    printf(
" Read into one buffer per len argument, as a single vectored request\n"
" starting at offset off.\n"
"\n"
" Example: 'readv 0 512 3584' reads 4 KiB at 0 into two buffers.\n"
"\n"
" -C, -- print the statistics as one machine-readable line\n"
" -P, -- check all the data against this byte value\n"
" -v, -- hex dump of the data\n"
" -q, -- print nothing on success\n"
"\n");
}

static int readv_f(BlockBackend *blk, int argc, char **argv)
{
    bool machine = false, quiet = false, dump = false, check = false;
    int pattern = 0, c, ret;
    int64_t offset, start, elapsed;
    QEMUIOVector qiov;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "CP:qv")) != -1) {
        switch (c) {
        case 'C':
            machine = true;
            break;
        case 'P':
            check = true;
            pattern = parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'v':
            dump = true;
            break;
        default:
            qemuio_command_usage(&readv_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qemuio_command_usage(&readv_cmd);
        return -EINVAL;
    }
    offset = parse_num(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    buf = create_iovec(&qiov, &argv[optind + 1], argc - optind - 1, 0xab);
    if (!buf) {
        return -EINVAL;
    }
    start = now_ns();
    ret = blk_preadv(blk, offset, qiov.size, &qiov, 0);
    elapsed = now_ns() - start;
    sync_io_done(ret, qiov.size);
    if (ret < 0) {
        printf("readv failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = 0;
    if (check) {
        ret = verify_pattern(buf, pattern, offset, qiov.size);
    }
    if (quiet) {
        goto out;
    }
    if (dump) {
        dump_buffer(buf, offset, qiov.size);
    }
    print_report("read", elapsed, offset, qiov.size, machine);
out:
    qemu_iovec_destroy(&qiov);
    io_free(buf);
    return ret;
}

static const QemuIOCommand readv_cmd = {
    .name = "readv",
    .func = readv_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .args = "[-Cqv] [-P pattern] off len [len..]",
    .oneline = "reads a number of bytes at a specified offset",
    .help = readv_help,
};

static void write_help(void)
{
    printf(
" Write len bytes at offset off of the image.  The data is the byte 0xcd\n"
" unless -P, -s or -z says otherwise.\n"
"\n"
" Example: 'write -P 0x5a 64k 4k' fills 4 KiB at 64 KiB with 0x5a.\n"
"\n"
" -b, -- access the VM state area instead of the disk\n"
" -c, -- write compressed data (formats that support it)\n"
" -f, -- Force Unit Access: the data is durable when the write completes\n"
" -n, -- with -z: fail rather than fall back to writing a zero buffer\n"
" -p, -- accepted and ignored\n"
" -P, -- fill the data with this byte value\n"
" -s, -- fill the data with the contents of this file, repeated\n"
" -C, -- print the statistics as one machine-readable line\n"
" -q, -- print nothing on success\n"
" -u, -- with -z: the range may be deallocated\n"
" -z, -- write zeroes without a data buffer\n"
"\n");
}

static int write_f(BlockBackend *blk, int argc, char **argv)
{
    bool machine = false, quiet = false, vmstate = false, compress = false;
    bool zero = false, have_pattern = false, from_file = false;
    BdrvRequestFlags flags = 0;
    const char *path = NULL;
    int pattern = 0xcd, c, ret;
    int64_t offset, count, start, elapsed;
    uint8_t *buf = NULL;

    while ((c = getopt(argc, argv, "bcCfnpP:qs:uz")) != -1) {
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'c':
            compress = true;
            break;
        case 'C':
            machine = true;
            break;
        case 'f':
            flags |= BDRV_REQ_FUA;
            break;
        case 'n':
            flags |= BDRV_REQ_NO_FALLBACK;
            break;
        case 'p':
            break;
        case 'P':
            have_pattern = true;
            pattern = parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            from_file = true;
            path = optarg;
            break;
        case 'u':
            flags |= BDRV_REQ_MAY_UNMAP;
            break;
        case 'z':
            zero = true;
            break;
        default:
            qemuio_command_usage(&write_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        qemuio_command_usage(&write_cmd);
        return -EINVAL;
    }
    /* The stock tool checks the combinations in this order. */
    if (vmstate && zero) {
        printf("-b and -z cannot be specified at the same time\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_FUA) && (vmstate || compress)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_NO_FALLBACK) && !zero) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_MAY_UNMAP) && !zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (zero + have_pattern + from_file > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -EINVAL;
    }
    offset = parse_num(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    count = parse_num(argv[optind + 1]);
    if (count < 0) {
        return count;
    }
    /* Without a fallback a zero write needs no buffer, so any size goes. */
    if (count > QEMUIO_MAX_REQUEST && !(flags & BDRV_REQ_NO_FALLBACK)) {
        printf("length cannot exceed %" PRId64 " without -n, given %s\n",
               QEMUIO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    if ((vmstate || compress) && check_sector_aligned(offset, count) < 0) {
        return -EINVAL;
    }
    if (!zero) {
        buf = from_file ? io_alloc_from_file(count, path)
                        : io_alloc(count, pattern);
        if (!buf) {
            return -EINVAL;
        }
    }

    start = now_ns();
    if (zero) {
        ret = blk_pwrite_zeroes(blk, offset, count, flags);
    } else if (vmstate) {
        ret = blk_save_vmstate(blk, buf, offset, count);
    } else if (compress) {
        ret = blk_pwrite_compressed(blk, offset, count, buf);
    } else {
        ret = blk_pwrite(blk, offset, count, buf, flags);
    }
    elapsed = now_ns() - start;
    sync_io_done(ret, count);
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = 0;
    if (!quiet) {
        print_report("wrote", elapsed, offset, count, machine);
    }
out:
    io_free(buf);
    return ret;
}

static const QemuIOCommand write_cmd = {
    .name = "write",
    .altname = "w",
    .func = write_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE | QEMUIO_CMD_NEEDS_WRITE,
    .args = "[-bcCfnquz] [-P pattern | -s source_file] off len",
    .oneline = "writes a number of bytes at a specified offset",
    .help = write_help,
};

static void writev_help(void)
{
    printf(
" Write from one buffer per len argument, as a single vectored request\n"
" starting at offset off.  The data is the byte 0xcd unless -P is given.\n"
"\n"
" Example: 'writev 0 512 3584' writes 4 KiB at 0 from two buffers.\n"
"\n"
" -P, -- fill the data with this byte value\n"
" -C, -- print the statistics as one machine-readable line\n"
" -f, -- Force Unit Access: the data is durable when the write completes\n"
" -q, -- print nothing on success\n"
"\n");
}

static int writev_f(BlockBackend *blk, int argc, char **argv)
{
    bool machine = false, quiet = false;
    BdrvRequestFlags flags = 0;
    int pattern = 0xcd, c, ret;
    int64_t offset, start, elapsed;
    QEMUIOVector qiov;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "CfqP:")) != -1) {
        switch (c) {
        case 'C':
            machine = true;
            break;
        case 'f':
            flags |= BDRV_REQ_FUA;
            break;
        case 'q':
            quiet = true;
            break;
        case 'P':
            pattern = parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            qemuio_command_usage(&writev_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qemuio_command_usage(&writev_cmd);
        return -EINVAL;
    }
    offset = parse_num(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    buf = create_iovec(&qiov, &argv[optind + 1], argc - optind - 1, pattern);
    if (!buf) {
        return -EINVAL;
    }
    start = now_ns();
    ret = blk_pwritev(blk, offset, qiov.size, &qiov, flags);
    elapsed = now_ns() - start;
    sync_io_done(ret, qiov.size);
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = 0;
    if (!quiet) {
        print_report("wrote", elapsed, offset, qiov.size, machine);
    }
out:
    qemu_iovec_destroy(&qiov);
    io_free(buf);
    return ret;
}

static const QemuIOCommand writev_cmd = {
    .name = "writev",
    .func = writev_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE | QEMUIO_CMD_NEEDS_WRITE,
    .args = "[-Cfq] [-P pattern] off len [len..]",
    .oneline = "writes a number of bytes at a specified offset",
    .help = writev_help,
};

/* ---------------------------------------------------- asynchronous I/O */

typedef struct AioRequest {
    BlockBackend *blk;
    bool is_write;
    bool zero;                  /* aio_write -z: no buffer */
    BdrvRequestFlags flags;
    int64_t offset;
    int64_t bytes;
    QEMUIOVector qiov;
    uint8_t *buf;
    bool check;                 /* aio_read -P */
    int pattern;
    bool machine, quiet, dump;
    int64_t start_ns, end_ns;
    int ret;
    bool started;               /* under aio_lock */
    bool done;                  /* under aio_lock */
} AioRequest;

static GMutex aio_lock;
static GCond aio_cond;
static GQueue aio_requests = G_QUEUE_INIT;  /* submission order */
static int aio_in_flight;
static GThreadPool *aio_pool;
static int aio_pipe[2] = { -1, -1 };

static void aio_worker(gpointer data, gpointer unused)
{
    AioRequest *req = data;
    char byte = 0;

    (void)unused;
    g_mutex_lock(&aio_lock);
    req->started = true;
    g_cond_broadcast(&aio_cond);
    g_mutex_unlock(&aio_lock);

    if (req->zero) {
        req->ret = blk_pwrite_zeroes(req->blk, req->offset, req->bytes,
                                     req->flags);
    } else if (req->is_write) {
        req->ret = blk_pwritev(req->blk, req->offset, req->bytes, &req->qiov,
                               req->flags);
    } else {
        req->ret = blk_preadv(req->blk, req->offset, req->bytes, &req->qiov,
                              0);
    }
    req->end_ns = now_ns();

    g_mutex_lock(&aio_lock);
    req->done = true;
    aio_in_flight--;
    g_cond_broadcast(&aio_cond);
    g_mutex_unlock(&aio_lock);
    /* Non-blocking: a full pipe already says that something completed. */
    if (write(aio_pipe[1], &byte, 1) < 0 && errno != EAGAIN) {
        g_warning("aio notification failed: %s", strerror(errno));
    }
}

static void aio_init(void)
{
    if (aio_pool) {
        return;
    }
    if (!g_unix_open_pipe(aio_pipe, FD_CLOEXEC, NULL) ||
        !g_unix_set_fd_nonblocking(aio_pipe[0], TRUE, NULL) ||
        !g_unix_set_fd_nonblocking(aio_pipe[1], TRUE, NULL)) {
        g_error("cannot create the aio notification pipe");
    }
    aio_pool = g_thread_pool_new(aio_worker, NULL, AIO_MAX_THREADS, FALSE,
                                 NULL);
}

int qemuio_aio_notifier(void)
{
    aio_init();
    return aio_pipe[0];
}

/*
 * Start req and wait until a worker has taken it, so that it is under way
 * before the next command runs, as a stock aio request is once submitted.
 */
static void aio_submit(AioRequest *req)
{
    aio_init();
    req->start_ns = now_ns();
    g_mutex_lock(&aio_lock);
    g_queue_push_tail(&aio_requests, req);
    aio_in_flight++;
    g_thread_pool_push(aio_pool, req, NULL);
    while (!req->started) {
        g_cond_wait(&aio_cond, &aio_lock);
    }
    g_mutex_unlock(&aio_lock);
}

static void aio_print_result(AioRequest *req)
{
    int64_t elapsed = req->end_ns - req->start_ns;

    if (req->is_write) {
        if (req->ret < 0) {
            printf("aio_write failed: %s\n", strerror(-req->ret));
        } else if (!req->quiet) {
            print_report("wrote", elapsed, req->offset, req->bytes,
                         req->machine);
        }
        return;
    }
    if (req->ret < 0) {
        printf("readv failed: %s\n", strerror(-req->ret));
        return;
    }
    if (req->check) {
        verify_pattern(req->buf, req->pattern, req->offset, req->bytes);
    }
    if (req->quiet) {
        return;
    }
    if (req->dump) {
        dump_buffer(req->buf, req->offset, req->bytes);
    }
    print_report("read", elapsed, req->offset, req->bytes, req->machine);
}

static void aio_free(AioRequest *req)
{
    if (!req->zero) {
        qemu_iovec_destroy(&req->qiov);
        io_free(req->buf);
    }
    g_free(req);
}

void qemuio_aio_report(void)
{
    GQueue done = G_QUEUE_INIT;
    char drain[64];

    if (!aio_pool) {
        return;
    }
    /* Empty the pipe first, so that a later completion still wakes us. */
    while (read(aio_pipe[0], drain, sizeof(drain)) > 0) {
        continue;
    }
    g_mutex_lock(&aio_lock);
    for (GList *l = aio_requests.tail, *prev; l; l = prev) {
        AioRequest *req = l->data;
        prev = l->prev;
        if (req->done) {
            g_queue_delete_link(&aio_requests, l);
            g_queue_push_tail(&done, req);
        }
    }
    g_mutex_unlock(&aio_lock);

    for (AioRequest *req; (req = g_queue_pop_head(&done)); ) {
        aio_print_result(req);
        aio_free(req);
    }
}

void qemuio_aio_drain(void)
{
    g_mutex_lock(&aio_lock);
    while (aio_in_flight > 0) {
        g_cond_wait(&aio_cond, &aio_lock);
    }
    g_mutex_unlock(&aio_lock);
    qemuio_aio_report();
}

static void aio_read_help(void)
{
    printf(
" Like readv, but the request is only started: its result is printed once\n"
" it has completed and qemu-io waits for events (aio_flush, sleep, close,\n"
" the interactive prompt, exit).  The command itself succeeds as soon as\n"
" the request is started; errors and pattern mismatches are only printed.\n"
"\n"
" Example: 'aio_read -P 0x5a 0 4k' then 'aio_flush'.\n"
"\n"
" -C, -- print the statistics as one machine-readable line\n"
" -P, -- check all the data against this byte value\n"
" -i, -- start no request, only say that an invalid one was injected\n"
" -v, -- hex dump of the data\n"
" -q, -- print nothing on success\n"
"\n");
}

static int aio_read_f(BlockBackend *blk, int argc, char **argv)
{
    g_autofree AioRequest *req = g_new0(AioRequest, 1);
    int c;

    while ((c = getopt(argc, argv, "CP:iqv")) != -1) {
        switch (c) {
        case 'C':
            req->machine = true;
            break;
        case 'P':
            req->check = true;
            req->pattern = parse_pattern(optarg);
            if (req->pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'i':
            printf("injecting invalid read request\n");
            return 0;
        case 'q':
            req->quiet = true;
            break;
        case 'v':
            req->dump = true;
            break;
        default:
            qemuio_command_usage(&aio_read_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qemuio_command_usage(&aio_read_cmd);
        return -EINVAL;
    }
    req->offset = parse_num(argv[optind]);
    if (req->offset < 0) {
        return req->offset;
    }
    req->buf = create_iovec(&req->qiov, &argv[optind + 1], argc - optind - 1,
                            0xab);
    if (!req->buf) {
        return -EINVAL;
    }
    req->blk = blk;
    req->bytes = req->qiov.size;
    aio_submit(g_steal_pointer(&req));
    return 0;
}

static const QemuIOCommand aio_read_cmd = {
    .name = "aio_read",
    .func = aio_read_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .args = "[-Ciqv] [-P pattern] off len [len..]",
    .oneline = "asynchronously reads a number of bytes",
    .help = aio_read_help,
};

static void aio_write_help(void)
{
    printf(
" Like writev, but the request is only started: its result is printed once\n"
" it has completed and qemu-io waits for events (aio_flush, sleep, close,\n"
" the interactive prompt, exit).  The command itself succeeds as soon as\n"
" the request is started; errors are only printed.\n"
"\n"
" Example: 'aio_write -P 0x5a 0 4k' then 'aio_flush'.\n"
"\n"
" -P, -- fill the data with this byte value (default 0xcd)\n"
" -C, -- print the statistics as one machine-readable line\n"
" -f, -- Force Unit Access: the data is durable when the write completes\n"
" -i, -- start no request, only say that an invalid one was injected\n"
" -q, -- print nothing on success\n"
" -u, -- with -z: the range may be deallocated\n"
" -z, -- write zeroes without a data buffer (one len only)\n"
"\n");
}

static int aio_write_f(BlockBackend *blk, int argc, char **argv)
{
    g_autofree AioRequest *req = g_new0(AioRequest, 1);
    int pattern = 0xcd, c;

    req->is_write = true;
    while ((c = getopt(argc, argv, "CfiqP:uz")) != -1) {
        switch (c) {
        case 'C':
            req->machine = true;
            break;
        case 'f':
            req->flags |= BDRV_REQ_FUA;
            break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'q':
            req->quiet = true;
            break;
        case 'P':
            pattern = parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'u':
            req->flags |= BDRV_REQ_MAY_UNMAP;
            break;
        case 'z':
            req->zero = true;
            break;
        default:
            qemuio_command_usage(&aio_write_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qemuio_command_usage(&aio_write_cmd);
        return -EINVAL;
    }
    if ((req->flags & BDRV_REQ_MAY_UNMAP) && !req->zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (req->zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    req->offset = parse_num(argv[optind]);
    if (req->offset < 0) {
        return req->offset;
    }
    if (req->zero) {
        req->bytes = parse_num(argv[optind + 1]);
        if (req->bytes < 0) {
            return req->bytes;
        }
    } else {
        req->buf = create_iovec(&req->qiov, &argv[optind + 1],
                                argc - optind - 1, pattern);
        if (!req->buf) {
            return -EINVAL;
        }
        req->bytes = req->qiov.size;
    }
    req->blk = blk;
    aio_submit(g_steal_pointer(&req));
    return 0;
}

static const QemuIOCommand aio_write_cmd = {
    .name = "aio_write",
    .func = aio_write_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE | QEMUIO_CMD_NEEDS_WRITE,
    .args = "[-Cfiquz] [-P pattern] off len [len..]",
    .oneline = "asynchronously writes a number of bytes",
    .help = aio_write_help,
};

static int aio_flush_f(BlockBackend *blk, int argc, char **argv)
{
    (void)blk, (void)argc, (void)argv;
    qemuio_aio_drain();
    return 0;
}

static const QemuIOCommand aio_flush_cmd = {
    .name = "aio_flush",
    .func = aio_flush_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .oneline = "completes all outstanding aio requests",
};

/* --------------------------------------------------- other image ops */

static int flush_f(BlockBackend *blk, int argc, char **argv)
{
    (void)argc, (void)argv;
    return blk_flush(blk);
}

static const QemuIOCommand flush_cmd = {
    .name = "flush",
    .altname = "f",
    .func = flush_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .oneline = "flush all in-core file state to disk",
};

static void discard_help(void)
{
    printf(
" Tell the image that len bytes at offset off are no longer needed.  What\n"
" they read back as afterwards depends on the format and the host.\n"
"\n"
" Example: 'discard 64k 64k' discards the second 64 KiB of the image.\n"
"\n"
" -C, -- print the statistics as one machine-readable line\n"
" -q, -- print nothing on success\n"
"\n");
}

static int discard_f(BlockBackend *blk, int argc, char **argv)
{
    bool machine = false, quiet = false;
    int64_t offset, bytes, start, elapsed;
    int c, ret;

    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C':
            machine = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            qemuio_command_usage(&discard_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        qemuio_command_usage(&discard_cmd);
        return -EINVAL;
    }
    offset = parse_num(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    bytes = parse_num(argv[optind + 1]);
    if (bytes < 0) {
        return bytes;
    }
    if (bytes > QEMUIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRId64 ", given %s\n",
               QEMUIO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    start = now_ns();
    ret = blk_pdiscard(blk, offset, bytes);
    elapsed = now_ns() - start;
    sync_io_done(ret, bytes);
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!quiet) {
        print_report("discard", elapsed, offset, bytes, machine);
    }
    return 0;
}

static const QemuIOCommand discard_cmd = {
    .name = "discard",
    .altname = "d",
    .func = discard_f,
    .argmin = 2,
    .argmax = -1,
    .flags = QEMUIO_CMD_NEEDS_FILE | QEMUIO_CMD_NEEDS_WRITE,
    .args = "[-Cq] off len",
    .oneline = "discards a number of bytes at a specified offset",
    .help = discard_help,
};

static int truncate_f(BlockBackend *blk, int argc, char **argv)
{
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    Error *err = NULL;
    int64_t size;
    int c, ret;

    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            ret = prealloc_mode_parse(optarg);
            if (ret < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            prealloc = ret;
            break;
        default:
            qemuio_command_usage(&truncate_cmd);
            return -EINVAL;
        }
    }
    /* Like the stock tool, words after the size are ignored. */
    if (optind >= argc) {
        qemuio_command_usage(&truncate_cmd);
        return -EINVAL;
    }
    size = parse_num(argv[optind]);
    if (size < 0) {
        return size;
    }
    /* A test tool should fail where the size cannot be met exactly. */
    ret = blk_truncate(blk, size, true, prealloc, &err);
    if (ret < 0) {
        error_report_err(err);
    }
    return ret;
}

static const QemuIOCommand truncate_cmd = {
    .name = "truncate",
    .altname = "t",
    .func = truncate_f,
    .argmin = 1,
    .argmax = 3,
    .flags = QEMUIO_CMD_NEEDS_FILE | QEMUIO_CMD_NEEDS_WRITE,
    .args = "[-m prealloc_mode] off",
    .oneline = "truncates the current file at the given offset",
};

static int length_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t size = blk_getlength(blk);
    g_autofree char *s = NULL;

    (void)argc, (void)argv;
    if (size < 0) {
        printf("getlength: %s\n", strerror(-size));
        return size;
    }
    s = size_to_io_str(size);
    printf("%s\n", s);
    return 0;
}

static const QemuIOCommand length_cmd = {
    .name = "length",
    .altname = "l",
    .func = length_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .oneline = "gets the length of the current file",
};

static int info_f(BlockBackend *blk, int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(blk);
    BlockDriverInfo bdi;
    JsonNode *spec;
    int ret;

    (void)argc, (void)argv;
    printf("format name: %s\n", bdrv_get_format_name(bs));
    ret = bdrv_get_info(bs, &bdi);
    if (ret < 0) {
        return ret;
    }
    g_autofree char *cluster = size_to_io_str(bdi.cluster_size);
    g_autofree char *vmstate = size_to_io_str(bdi.vm_state_offset);
    printf("cluster size: %s\n", cluster);
    printf("vm state offset: %s\n", vmstate);

    spec = bdrv_get_specific_info(bs);
    if (spec) {
        JsonObject *obj = json_node_get_object(spec);
        JsonNode *data = json_object_get_member(obj, "data");
        g_autoptr(GString) text = g_string_new(NULL);

        if (data) {
            qjson_dump_human(text, data, 4);
        }
        printf("Format specific information:\n%s", text->str);
        json_node_unref(spec);
    }
    return 0;
}

static const QemuIOCommand info_cmd = {
    .name = "info",
    .altname = "i",
    .func = info_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .oneline = "prints information about the current file",
};

static int alloc_f(BlockBackend *blk, int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(blk);
    int64_t offset, count = SECTOR_SIZE, pos, remaining, allocated = 0;
    g_autofree char *where = NULL;

    offset = parse_num(argv[1]);
    if (offset < 0) {
        return offset;
    }
    if (argc == 3) {
        count = parse_num(argv[2]);
        if (count < 0) {
            return count;
        }
    }
    /* The part of the range past the end of the image is not counted. */
    for (pos = offset, remaining = count; remaining > 0; ) {
        int64_t num;
        int ret = bdrv_is_allocated(bs, pos, remaining, &num);

        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        if (num == 0) {
            count -= remaining;
            break;
        }
        if (ret) {
            allocated += num;
        }
        pos += num;
        remaining -= num;
    }
    where = size_to_io_str(offset);
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n",
           allocated, count, where);
    return 0;
}

static const QemuIOCommand alloc_cmd = {
    .name = "alloc",
    .altname = "a",
    .func = alloc_f,
    .argmin = 1,
    .argmax = 2,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .args = "offset [count]",
    .oneline = "checks if offset is allocated in the file",
};

/*
 * The allocation status of [offset, offset + bytes) in the top node (as
 * for alloc, backing files do not count), and in *pnum the length of the
 * longest run at offset that shares it.
 */
static int map_extent(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum)
{
    int64_t num;
    int first = bdrv_is_allocated(bs, offset, bytes, &num);

    if (first < 0) {
        return first;
    }
    *pnum = num;
    while (num > 0 && *pnum < bytes) {
        int ret = bdrv_is_allocated(bs, offset + *pnum, bytes - *pnum, &num);
        if (ret < 0) {
            return ret;
        }
        if (ret != first) {
            break;
        }
        *pnum += num;
    }
    return first;
}

static int map_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t length = blk_getlength(blk), offset = 0;

    (void)argc, (void)argv;
    if (length < 0) {
        error_report("Failed to query image length: %s", strerror(-length));
        return length;
    }
    while (offset < length) {
        int64_t num;
        int ret = map_extent(blk_bs(blk), offset, length - offset, &num);

        if (ret < 0) {
            error_report("Failed to get allocation status: %s",
                         strerror(-ret));
            return ret;
        }
        if (num == 0) {
            error_report("Unexpected end of image");
            return -EIO;
        }
        g_autofree char *size = size_to_io_str(num);
        g_autofree char *where = size_to_io_str(offset);
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n",
               size, num, ret ? "    allocated" : "not allocated",
               where, offset);
        offset += num;
    }
    return 0;
}

static const QemuIOCommand map_cmd = {
    .name = "map",
    .func = map_f,
    .flags = QEMUIO_CMD_NEEDS_FILE,
    .args = "",
    .oneline = "prints the allocated areas of a file",
};

/* ------------------------------------------------ process and help */

/* Wait ms milliseconds, reporting asynchronous requests as they finish. */
static int sleep_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t ms, deadline;
    char *end;
    int fd = qemuio_aio_notifier();

    (void)blk, (void)argc;
    errno = 0;
    ms = strtoll(argv[1], &end, 0);
    if (errno || end == argv[1] || *end || ms < 0) {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    deadline = now_ns() + MIN(ms, INT64_MAX / 2000000) * 1000000;
    for (;;) {
        int64_t left = deadline - now_ns();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        if (left <= 0) {
            break;
        }
        if (poll(&pfd, 1, MIN(DIV_ROUND_UP(left, 1000000), INT_MAX)) > 0) {
            qemuio_aio_report();
        }
    }
    qemuio_aio_report();
    return 0;
}

static const QemuIOCommand sleep_cmd = {
    .name = "sleep",
    .func = sleep_f,
    .argmin = 1,
    .argmax = 1,
    .oneline = "waits for the given value in milliseconds",
};

static void sigraise_help(void)
{
    printf(
" Send the signal with the given number to qemu-io itself, e.g. to end it\n"
" the way a crash or a kill would.  Standard output is flushed first.\n"
"\n"
" Example: 'sigraise 9' kills qemu-io.\n"
"\n");
}

static int sigraise_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t sig = parse_num(argv[1]);

    (void)blk, (void)argc;
    if (sig < 0) {
        return sig;
    }
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n",
               argv[1]);
        return -EINVAL;
    }
    /* Whatever was printed so far must survive the signal. */
    fflush(stdout);
    fflush(stderr);
    raise(sig);
    return 0;
}

static const QemuIOCommand sigraise_cmd = {
    .name = "sigraise",
    .func = sigraise_f,
    .argmin = 1,
    .argmax = 1,
    .args = "signal",
    .oneline = "raises a signal",
    .help = sigraise_help,
};

static int abort_f(BlockBackend *blk, int argc, char **argv)
{
    (void)blk, (void)argc, (void)argv;
    abort();
}

static const QemuIOCommand abort_cmd = {
    .name = "abort",
    .func = abort_f,
    .oneline = "simulate a program crash using abort(3)",
};

static int help_f(BlockBackend *blk, int argc, char **argv)
{
    const QemuIOCommand *ct;

    (void)blk;
    if (argc == 1) {
        for (guint i = 0; i < commands->len; i++) {
            ct = g_ptr_array_index(commands, i);
            print_oneline(ct->name, ct);
        }
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    ct = find_command(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    print_oneline(argv[1], ct);
    if (ct->help) {
        printf("\n");
        ct->help();
    }
    return 0;
}

static const QemuIOCommand help_cmd = {
    .name = "help",
    .altname = "?",
    .func = help_f,
    .argmin = 0,
    .argmax = 1,
    .args = "[command]",
    .oneline = "help for one or all commands",
};

static void init_commands(void)
{
    static const QemuIOCommand *const builtin[] = {
        &abort_cmd, &aio_flush_cmd, &aio_read_cmd, &aio_write_cmd,
        &alloc_cmd, &discard_cmd, &flush_cmd, &help_cmd, &info_cmd,
        &length_cmd, &map_cmd, &read_cmd, &readv_cmd, &sigraise_cmd,
        &sleep_cmd, &truncate_cmd, &write_cmd, &writev_cmd,
    };

    if (commands) {
        return;
    }
    commands = g_ptr_array_new();
    for (size_t i = 0; i < G_N_ELEMENTS(builtin); i++) {
        g_ptr_array_add(commands, (gpointer)builtin[i]);
    }
    g_ptr_array_sort(commands, compare_commands);
}

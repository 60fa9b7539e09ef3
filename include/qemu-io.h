/*
 * qemu-io: a command interpreter for exercising one block device.
 *
 * The tool is split in two: qemu-io.c owns the process (command line,
 * the open image, the interactive loop and the commands that replace the
 * image: open, close, quit) and qemu-io-cmds.c owns the command table and
 * every command that works on an open image.
 *
 * Output contract, relied upon byte for byte by golden-output tests:
 *   - command results and most per-command errors go to stdout, which is
 *     left with its default buffering (full buffering into a pipe);
 *   - dispatch errors (unknown command, wrong argument count, no image
 *     open) and Error messages go to stderr, unbuffered.
 * A pipe reader therefore sees stderr lines ahead of earlier stdout text,
 * exactly as with the stock tool, so nothing here flushes stdout except
 * the interactive prompt and sigraise (whose output must survive it).
 *
 * Asynchronous requests (aio_read, aio_write) run on worker threads; their
 * result lines are printed only at the points where the stock tool runs its
 * event loop: aio_flush, sleep, close, while the interactive loop waits for
 * input, at exit, and when a synchronous read, write or discard has done
 * I/O (before its own result).  Requests that finished by the same such
 * point are reported newest submission first, as the stock tool tends to.
 * Requests in flight at the same time, asynchronous or not, complete in no
 * defined order: scripts must aio_flush before they depend on the data.
 */
#ifndef QEMU_IO_H
#define QEMU_IO_H

#include "qemu/osdep.h"
#include "sysemu/block-backend.h"

/* Returns 0 on success or a negative errno; any failure makes exit status 1. */
typedef int (*QemuIOCmdFunc)(BlockBackend *blk, int argc, char **argv);
typedef void (*QemuIOHelpFunc)(void);

/* The command needs an open image ("no file open" otherwise). */
#define QEMUIO_CMD_NEEDS_FILE   0x1
/* The command modifies the image: refused on a read-only backend. */
#define QEMUIO_CMD_NEEDS_WRITE  0x2

typedef struct QemuIOCommand {
    const char *name;
    const char *altname;    /* one-letter shorthand, or NULL */
    QemuIOCmdFunc func;
    int argmin;             /* counted without the command name */
    int argmax;             /* -1: no upper limit */
    unsigned flags;         /* QEMUIO_CMD_* */
    const char *args;       /* synopsis; NULL prints none */
    const char *oneline;
    QemuIOHelpFunc help;    /* extended help, or NULL */
} QemuIOCommand;

/* Add a command to the table (cmd must outlive the program). */
void qemuio_add_command(const QemuIOCommand *cmd);

/* Split a command line at spaces and run it on blk (may be NULL). */
int qemuio_command(BlockBackend *blk, const char *line);

/* Print the one-line synopsis "name args -- oneline" to stdout. */
void qemuio_command_usage(const QemuIOCommand *cmd);

/* Buffers are offset from their alignment (qemu-io -m). */
extern bool qemuio_misalign;

/* Becomes readable whenever an asynchronous request completes. */
int qemuio_aio_notifier(void);
/* Print the results of completed asynchronous requests. */
void qemuio_aio_report(void);
/* Wait for every asynchronous request, then print their results. */
void qemuio_aio_drain(void);

#endif

"""Boot a real guest that writes a data set through NBD into a storage daemon.

The chain is
    guest kernel --virtio-blk--> stock qemu-system-x86_64 --NBD over a UNIX
    socket--> qemu-storage-daemon (ours, or any other) --> qcow2/raw image
with write-cache=on on the virtio device, so the guest's syncs arrive at the
daemon as NBD flushes.

The guest is Debian's cloud kernel (fetch-kernel.sh, cached) and a busybox
initramfs (mkinitramfs.sh) whose /init (init) writes the regions listed in a
payload's layout file, reads them back, prints a GUEST-RESULT line and
powers off.  A payload is a directory holding the layout and its files; this
module makes the two kinds there are:
    test    a duplicated 64 KiB block, seeded random data, their copies at
            cluster-aligned and unaligned offsets, and small partial regions
    images  N similar "disk images": one base made of the initramfs's own
            files (busybox, the kernel modules), each copy with a 4 KiB patch
and builds the raw image the guest's writes must produce, for comparison.

TCG only: a nested /dev/kvm is present on the test machines but hangs
guests.  Python 3 standard library only.
"""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BS = 4096                 # the guest's dd block size: offsets align to it
MiB = 1 << 20
RESULT_TAG = 'GUEST-RESULT: '


class GuestError(Exception):
    pass


def round_up(n, align):
    return (n + align - 1) // align * align


# ---------------------------------------------------------------- payloads

def write_layout(payload, regions):
    """regions: (offset, file, patch or None, patch_offset) tuples."""
    with open(os.path.join(payload, 'layout'), 'w') as f:
        for off, name, patch, patch_off in regions:
            assert off % BS == 0 and patch_off % BS == 0
            line = f'{off} {name}'
            if patch:
                line += f' {patch} {patch_off}'
            f.write(line + '\n')


def write_file(payload, name, data):
    assert len(data) % BS == 0
    with open(os.path.join(payload, name), 'wb') as f:
        f.write(data)


def make_test_payload(payload, seed=1):
    """The data set of the guest test; returns the disk size it needs."""
    rng = random.Random(seed)
    block = rng.randbytes(64 * 1024)
    write_file(payload, 'dup.bin', block * 32)                 # 2 MiB
    write_file(payload, 'unique.bin', rng.randbytes(2 * MiB))
    write_file(payload, 'patch.bin', rng.randbytes(BS))
    write_file(payload, 'tail.bin', rng.randbytes(5 * BS))
    write_layout(payload, [
        (1 * MiB, 'dup.bin', None, 0),
        (4 * MiB, 'unique.bin', None, 0),
        # Not cluster aligned, with one 4 KiB difference.
        (8 * MiB + 3 * BS, 'dup.bin', 'patch.bin', MiB + BS),
        # A copy of data the disk already holds elsewhere.
        (12 * MiB, 'unique.bin', None, 0),
        # Part of one cluster only.
        (16 * MiB + BS, 'tail.bin', None, 0),
    ])
    return 24 * MiB


def base_image(kernel_dir):
    """A few MiB made of the files the initramfs carries anyway."""
    mods = os.path.join(kernel_dir, 'modules')
    files = ['/bin/busybox'] + sorted(
        os.path.join(mods, m) for m in os.listdir(mods) if m.endswith('.ko'))
    data = bytearray()
    for path in files:
        with open(path, 'rb') as f:
            data += f.read()
        data += bytes(round_up(len(data), BS) - len(data))
    return bytes(data)


def make_images_payload(payload, kernel_dir, copies, seed=1):
    """`copies` similar images; returns the disk size they need."""
    rng = random.Random(seed)
    base = base_image(kernel_dir)
    write_file(payload, 'base.img', base)
    stride = round_up(len(base), MiB)
    regions = []
    for i in range(copies):
        patch = f'patch{i}.bin'
        write_file(payload, patch, rng.randbytes(BS))
        patch_off = (i * 37 * BS) % len(base)
        regions.append((i * stride, 'base.img', patch, patch_off))
    write_layout(payload, regions)
    return copies * stride


def make_payload(payload, workload, kernel_dir, copies=8):
    os.makedirs(payload, exist_ok=True)
    if workload == 'test':
        return make_test_payload(payload)
    if workload == 'images':
        return make_images_payload(payload, kernel_dir, copies)
    raise GuestError(f'unknown workload {workload!r} (test, images)')


def write_expected(payload, path, size):
    """The raw image the guest's writes turn a zeroed disk into."""
    with open(path, 'wb') as out:
        out.truncate(size)
        with open(os.path.join(payload, 'layout')) as layout:
            for line in layout:
                off, name, *patch = line.split()
                with open(os.path.join(payload, name), 'rb') as f:
                    data = bytearray(f.read())
                if patch:
                    with open(os.path.join(payload, patch[0]), 'rb') as f:
                        p = f.read()
                    poff = int(patch[1])
                    data[poff:poff + len(p)] = p
                out.seek(int(off))
                out.write(data)


# ------------------------------------------------------------- guest files

def run_script(name, *args):
    proc = subprocess.run(['sh', os.path.join(HERE, name), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode:
        raise GuestError(proc.stdout.strip() or f'{name} failed')


def fetch_kernel(cache):
    run_script('fetch-kernel.sh', cache)
    return os.path.join(cache, 'kernel')


def make_initramfs(kernel_dir, payload, out):
    run_script('mkinitramfs.sh', kernel_dir, payload, out)


# --------------------------------------------------------------------- QMP

class QMP:
    """A minimal QMP client: greeting, capabilities, commands."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile('rwb')
        self._recv()
        self.command('qmp_capabilities')

    def _recv(self):
        line = self.file.readline()
        if not line:
            raise GuestError('QMP connection closed')
        return json.loads(line)

    def command(self, name, **args):
        req = {'execute': name}
        if args:
            req['arguments'] = args
        self.file.write(json.dumps(req).encode() + b'\n')
        self.file.flush()
        while True:
            msg = self._recv()
            if 'event' in msg:
                continue
            if 'error' in msg:
                raise GuestError(f'QMP {name}: {msg["error"]["desc"]}')
            return msg['return']

    def close(self):
        self.file.close()
        self.sock.close()


# ---------------------------------------------------------------- the run

def wait_for(cond, what, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise GuestError(f'{what}: the process exited with '
                             f'status {proc.returncode}')
        if time.monotonic() > deadline:
            raise GuestError(f'timed out after {timeout} s waiting for '
                             f'{what}')
        time.sleep(0.02)


def kill(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def qsd_command(qsd, image, fmt, sock, qmp):
    cmd = [qsd, '--blockdev',
           f'driver=file,node-name=f,filename={image}']
    node = 'f'
    if fmt != 'raw':
        cmd += ['--blockdev', f'driver={fmt},node-name=q,file=f']
        node = 'q'
    return cmd + [
        '--nbd-server', f'addr.type=unix,addr.path={sock}',
        '--export', f'type=nbd,id=e,node-name={node},name=disk,writable=on',
        '--chardev', f'socket,id=m,path={qmp},server=on,wait=off',
        '--monitor', 'chardev=m']


def qemu_command(kernel_dir, initrd, sock):
    return ['qemu-system-x86_64', '-accel', 'tcg', '-m', '256',
            '-nographic', '-no-reboot', '-nic', 'none',
            '-kernel', os.path.join(kernel_dir, 'vmlinuz'),
            '-initrd', initrd,
            '-append', 'console=ttyS0 panic=-1 quiet',
            '-blockdev', 'driver=nbd,node-name=d,server.type=unix,'
            f'server.path={sock},export=disk',
            '-device', 'virtio-blk-pci,drive=d,write-cache=on']


def guest_result(log):
    with open(log, errors='replace') as f:
        lines = [ln.strip() for ln in f if RESULT_TAG in ln]
    if not lines:
        return None
    return lines[-1].split(RESULT_TAG, 1)[1]


def log_tail(path, lines=8):
    """The end of a console log, without the firmware's terminal escapes."""
    with open(path, errors='replace') as f:
        text = re.sub(r'\x1b(\[[0-9;?]*[A-Za-z]|.)|\r', '', f.read())
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return ''.join(f'\n  | {ln}' for ln in tail)


def boot(kernel_dir, initrd, sock, log, timeout):
    """Run the guest to its power-off; returns its result line."""
    start = time.monotonic()
    with open(log, 'wb') as out:
        try:
            subprocess.run(qemu_command(kernel_dir, initrd, sock),
                           stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, timeout=timeout,
                           check=True)
        except subprocess.TimeoutExpired:
            why = f'the guest did not power off within {timeout} s'
        except subprocess.CalledProcessError as e:
            why = f'qemu-system-x86_64 exited with status {e.returncode}'
        else:
            why = None
    result = guest_result(log)
    if why is None and result is None:
        why = 'the guest printed no result'
    if why:
        raise GuestError(f'{why}; console log {log}:{log_tail(log)}')
    return result, time.monotonic() - start


def run(qsd, image, fmt, payload, kernel_dir, workdir, timeout=45):
    """Serve `image` with `qsd`, let the guest write `payload` into it.

    Returns (guest result line, seconds the guest ran, query-blockstats
    with query-nodes).  The daemon is quit cleanly, or killed on any error.
    Logs stay in `workdir`; the sockets live in a short temporary path, as
    UNIX socket paths are limited to about 100 bytes.
    """
    initrd = os.path.join(workdir, 'initrd.cpio.gz')
    make_initramfs(kernel_dir, payload, initrd)
    sockdir = tempfile.mkdtemp(prefix='guest-')
    try:
        return serve_and_boot(qsd, image, fmt, kernel_dir, initrd, workdir,
                              sockdir, timeout)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def serve_and_boot(qsd, image, fmt, kernel_dir, initrd, workdir, sockdir,
                   timeout):
    sock = os.path.join(sockdir, 'nbd.sock')
    qmp_path = os.path.join(sockdir, 'qmp.sock')
    log_path = os.path.join(workdir, 'qsd.log')
    qsd_log = open(log_path, 'wb')
    daemon = subprocess.Popen(qsd_command(qsd, image, fmt, sock, qmp_path),
                              stdin=subprocess.DEVNULL, stdout=qsd_log,
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(sock) and os.path.exists(qmp_path),
                 f'the storage daemon\'s sockets (log {log_path})', 10,
                 daemon)
        result, secs = boot(kernel_dir, initrd, sock,
                            os.path.join(workdir, 'console.log'), timeout)
        qmp = QMP(qmp_path)
        stats = qmp.command('query-blockstats', **{'query-nodes': True})
        qmp.command('quit')
        qmp.close()
        status = daemon.wait(timeout=10)
        daemon = None
    except subprocess.TimeoutExpired:
        raise GuestError('the storage daemon did not quit') from None
    except OSError as e:
        raise GuestError(f'QMP: {e} (daemon log: {log_path})') from None
    finally:
        kill(daemon)
        qsd_log.close()
    if status:
        raise GuestError(f'the storage daemon exited with status {status} '
                         f'(log: {log_path})')
    return result, secs, stats


def node_stats(stats, name):
    """The query-blockstats entry of node `name` (entries nest by parent)."""
    for entry in stats:
        while entry:
            if entry.get('node-name') == name:
                return entry
            entry = entry.get('parent')
    raise GuestError(f'query-blockstats has no node {name!r}')


def image_size(image):
    out = subprocess.run(['qemu-img', 'info', '--output=json', '-U', image],
                         stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out)['virtual-size']


def make_workdir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


# --------------------------------------------------------------------- CLI

def create_image(qemu_img, image, fmt, opts, size):
    cmd = [qemu_img, 'create', '-q', '-f', fmt]
    if opts:
        cmd += ['-o', opts]
    proc = subprocess.run(cmd + [image, str(size)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        raise GuestError(f'{" ".join(cmd)} failed: {proc.stdout.strip()}')


def summary(stats, node):
    entry = node_stats(stats, node)
    s = entry['stats']
    line = (f'node {node}: {s["wr_operations"]} writes '
            f'({s["wr_bytes"]} bytes), {s["flush_operations"]} flushes')
    if 'dedup' in entry:
        line += f', dedup {json.dumps(entry["dedup"], sort_keys=True)}'
    return line


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(
        prog='run-guest.sh',
        description='Boot a TCG guest that writes a data set through NBD '
                    'into a qemu-storage-daemon serving IMAGE.')
    ap.add_argument('image', metavar='IMAGE')
    ap.add_argument('--build', default='build',
                    help='build directory (daemon, qemu-img, guest cache)')
    ap.add_argument('--qsd', help='storage daemon to run '
                    '(default: BUILD/qemu-storage-daemon)')
    ap.add_argument('--format', default='qcow2', choices=['qcow2', 'raw'])
    ap.add_argument('--workload', default='images',
                    choices=['test', 'images'])
    ap.add_argument('--copies', type=int, default=8,
                    help='number of similar images (images workload)')
    ap.add_argument('--create-opts', metavar='OPTS',
                    help='-o options when IMAGE is created (it is created '
                         'with BUILD/qemu-img, at the size needed, when it '
                         'does not exist)')
    ap.add_argument('--workdir', help='scratch directory, emptied first '
                    '(default: BUILD/guest-run)')
    ap.add_argument('--timeout', type=int, default=45,
                    help='seconds the guest may run')
    ap.add_argument('--stats', metavar='FILE',
                    help='write query-blockstats (query-nodes) here')
    ap.add_argument('--expected', metavar='FILE',
                    help='write the raw image the guest must produce here')
    args = ap.parse_args(argv)

    build = os.path.abspath(args.build)
    qsd = args.qsd or os.path.join(build, 'qemu-storage-daemon')
    workdir = make_workdir(args.workdir or os.path.join(build, 'guest-run'))
    image = os.path.abspath(args.image)
    try:
        kernel_dir = fetch_kernel(os.path.join(build, 'guest-cache'))
        payload = os.path.join(workdir, 'payload')
        size = make_payload(payload, args.workload, kernel_dir, args.copies)
        if not os.path.exists(image):
            create_image(os.path.join(build, 'qemu-img'), image, args.format,
                         args.create_opts, size)
        elif image_size(image) < size:
            raise GuestError(f'{image} is smaller than the {size} bytes the '
                             f'{args.workload} workload needs')
        if args.expected:
            write_expected(payload, args.expected, size)
        result, secs, stats = run(qsd, image, args.format, payload,
                                  kernel_dir, workdir, args.timeout)
    except GuestError as e:
        print(f'run-guest: {e}')
        return 1
    if args.stats:
        with open(args.stats, 'w') as f:
            json.dump(stats, f, indent=2)
    print(f'guest: {result} ({secs:.1f} s)')
    print(summary(stats, 'f' if args.format == 'raw' else 'q'))
    return 0 if result.startswith('ok') else 1


if __name__ == '__main__':
    raise SystemExit(main())

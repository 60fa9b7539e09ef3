#!/usr/bin/env python3
"""A real guest writes through NBD into our qemu-storage-daemon.

Stock qemu-system-x86_64 (TCG) boots Debian's cloud kernel with a busybox
initramfs; the guest writes a known data set to its virtio disk, which
stock QEMU's NBD client forwards to our daemon serving a qcow2 image (see
scripts/guest/).  Then:
  - the guest read its data back and checksummed it,
  - query-blockstats of the exported node counts the writes and flushes,
  - stock qemu-img compare finds the image identical to the expected raw
    contents, and stock and our qemu-img check find it clean (stock QEMU
    sees the clusters of a dedup index as leaks, nothing worse),
  - when our qemu-img can create deduplicating images, the image is made
    with -o dedup=sha256 and query-blockstats reports deduplicated
    clusters (the data set repeats a 64 KiB block and a 2 MiB region).
Prints TAP.

Environment (tests/guest/meson.build): QSD, BUILD_ROOT (our qemu-img is
there, and the kernel download is cached in BUILD_ROOT/guest-cache),
WORKDIR (logs stay there after a run), SRCDIR.
"""

import json
import os
import re
import shutil
import subprocess
import sys

SRCDIR = os.environ.get('SRCDIR', '.')
sys.path.insert(0, os.path.join(SRCDIR, 'scripts', 'guest'))
import guest  # noqa: E402

BUILD = os.environ.get('BUILD_ROOT', 'build')
QSD = os.environ.get('QSD', os.path.join(BUILD, 'qemu-storage-daemon'))
OUR_QEMU_IMG = os.path.join(BUILD, 'qemu-img')    # run-guest.sh uses it
WORKDIR = os.environ.get('WORKDIR', os.path.join(BUILD, 'guest-test'))
TIMEOUT = 45              # seconds the guest may take; it needs about 8


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, ok, what, diag=None):
        self.n += 1
        print(f'{"ok" if ok else "not ok"} {self.n} - {what}')
        if not ok:
            self.failed += 1
            for line in str(diag or '').splitlines():
                print(f'# {line}')
        return ok

    def bail(self, why):
        print(f'Bail out! {why}')
        sys.exit(1)

    def done(self):
        print(f'1..{self.n}')
        sys.exit(1 if self.failed else 0)


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout.strip()


def has_dedup():
    rc, out = run([OUR_QEMU_IMG, 'create', '-f', 'qcow2', '-o', 'help'])
    return rc == 0 and 'dedup=' in out


def check_stock(tap, image, dedup):
    """Stock qemu-img check: no corruption, and no leak unless deduplicated.

    Stock QEMU does not know the clusters of the dedup index and reports
    them as leaked (docs/interop/qcow2.txt), which is harmless.
    """
    proc = subprocess.run(['qemu-img', 'check', '--output=json', image],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        res = {}
    bad = res.get('check-errors', 1) + res.get('corruptions', 0)
    leaks = res.get('leaks', 0)
    if dedup:
        print(f'# stock qemu-img check: {leaks} leaked clusters (the dedup '
              'index, unknown to stock QEMU)')
    else:
        bad += leaks
    tap.check(proc.returncode in (0, 3) and bad == 0,
              'stock qemu-img check: no corruption' +
              ('' if dedup else ' and no leak'),
              proc.stdout + proc.stderr)


def main():
    tap = TAP()
    for tool in ('qemu-system-x86_64', 'qemu-img'):
        if not shutil.which(tool):
            print(f'1..0 # SKIP stock {tool} is not installed')
            return
    if not os.access(OUR_QEMU_IMG, os.X_OK):
        print('1..0 # SKIP our qemu-img is not built')
        return
    guest.make_workdir(WORKDIR)
    image = os.path.join(WORKDIR, 'disk.qcow2')
    expected = os.path.join(WORKDIR, 'expected.raw')
    stats_file = os.path.join(WORKDIR, 'blockstats.json')
    dedup = has_dedup()
    print(f'# deduplication: {"on (dedup=sha256)" if dedup else "not built"}')

    # run-guest.sh creates the image with our qemu-img, at the size the
    # data set needs.
    rc, out = run([os.path.join(guest.HERE, 'run-guest.sh'),
                   '--build', BUILD, '--qsd', QSD, '--workload', 'test',
                   '--workdir', os.path.join(WORKDIR, 'run'),
                   '--timeout', str(TIMEOUT), '--stats', stats_file,
                   '--expected', expected]
                  + (['--create-opts', 'dedup=sha256'] if dedup else [])
                  + [image])
    for line in out.splitlines():
        print(f'# {line}')
    written = re.search(r'^guest: ok .*bytes=(\d+)', out, re.M)
    if not tap.check(rc == 0 and written,
                     'the guest wrote, read back and verified its data'):
        tap.bail('the guest run failed')

    with open(stats_file) as f:
        entry = guest.node_stats(json.load(f), 'q')
    st = entry['stats']
    tap.check(st['wr_operations'] > 0 and
              st['wr_bytes'] >= int(written.group(1)),
              'query-blockstats counts the guest\'s writes', json.dumps(st))
    tap.check(st['flush_operations'] > 0,
              'query-blockstats counts the guest\'s flushes', json.dumps(st))
    tap.check(st['failed_wr_operations'] == 0 and
              st['failed_flush_operations'] == 0,
              'no write or flush failed', json.dumps(st))
    if dedup:
        d = entry.get('dedup', {})
        tap.check(d.get('deduplicated-clusters', 0) > 0,
                  'query-blockstats reports deduplicated clusters',
                  json.dumps(entry.get('dedup')))

    rc, out = run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw',
                   image, expected])
    tap.check(rc == 0, 'stock qemu-img compare: identical to the expected '
              'data', out)
    check_stock(tap, image, dedup)
    rc, out = run([OUR_QEMU_IMG, 'check', image])
    tap.check(rc == 0, 'our qemu-img check: clean', out)
    tap.done()


if __name__ == '__main__':
    main()

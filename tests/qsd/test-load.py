#!/usr/bin/env python3
"""Many NBD clients against one export of the storage daemon, on a plain
and on a deduplicated qcow2 image.

Each client thread owns a disjoint region of the disk and keeps a model of
it: it writes unique data, clusters from a pool shared by all clients (so
the dedup image sees duplicates across connections), partial clusters and
zeroes, with FUA now and then, flushes, and reads back and compares, with
up to four requests in flight.  Meanwhile the monitor is queried and, on
the dedup image, deduplication is paused and resumed, and one more client
keeps dropping its connection in the middle of a write.  After a clean
quit, the image must hold exactly the models (stock qemu-img compare) and
pass our check and stock QEMU's.  A last test kills the daemon right after
acknowledged FUA and flushed writes: they must be there after a restart.

QSD_LOAD_SECONDS sets the length of each load run (default 8).
"""

import os
import random
import socket
import struct
import threading
import time
import traceback
import unittest

from nbdclient import (CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLUSH, CMD_READ,
                       CMD_WRITE, CMD_WRITE_ZEROES, TFLAG_CAN_MULTI_CONN,
                       TFLAG_SEND_FLUSH, TFLAG_SEND_FUA,
                       TFLAG_SEND_WRITE_ZEROES, NBDClient, NBDError)
from qsdtest import QsdTestCase, qcow2_export_args, qemu_img

DURATION = float(os.environ.get('QSD_LOAD_SECONDS', '8'))
CLIENTS = 8
REGION = 4 << 20
SIZE = (CLIENTS + 2) * REGION   # the clients, the dropping one, spare
CLUSTER = 4096
POOL = [random.Random(i).randbytes(CLUSTER) for i in range(24)]


def make_batch(rng, region):
    """1-4 non-overlapping requests as (cmd, offset, length, data, flags);
    non-overlapping, so their order of completion does not matter."""
    batch = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choices(['pool', 'unique', 'partial', 'zero', 'read',
                            'flush'], [30, 15, 15, 8, 30, 2])[0]
        flags = CMD_FLAG_FUA if rng.random() < 0.05 else 0
        if kind == 'flush':
            op = (CMD_FLUSH, 0, 0, b'', 0)
        elif kind in ('pool', 'unique'):
            n = rng.randint(1, 16)
            off = rng.randrange(0, region // CLUSTER - n + 1) * CLUSTER
            if kind == 'pool':
                data = b''.join(rng.choice(POOL) if rng.random() < 0.9
                                else bytes(CLUSTER) for _ in range(n))
            else:
                data = rng.randbytes(n * CLUSTER)
            op = (CMD_WRITE, off, len(data), data, flags)
        elif kind == 'partial':
            length = rng.randint(1, 3 * CLUSTER)
            off = rng.randrange(0, region - length)
            if rng.random() < 0.7:
                off &= ~511
            op = (CMD_WRITE, off, length, rng.randbytes(length), flags)
        elif kind == 'zero':
            length = rng.randint(1, 64 * 1024)
            off = rng.randrange(0, region - length)
            flags |= CMD_FLAG_NO_HOLE if rng.random() < 0.5 else 0
            op = (CMD_WRITE_ZEROES, off, length, b'', flags)
        else:
            length = rng.randint(1, 128 * 1024)
            op = (CMD_READ, rng.randrange(0, region - length), length, b'',
                  0)
        if op[2] == 0 or all(op[1] + op[2] <= o[1] or o[1] + o[2] <= op[1]
                             for o in batch):
            batch.append(op)
    return batch


class Load:
    """Client threads writing and verifying their regions until deadline."""

    def __init__(self, nbd, deadline):
        self.nbd = nbd
        self.deadline = deadline
        self.errors = []
        self.models = [bytearray(REGION) for _ in range(CLIENTS + 1)]
        self.ops = [0] * (CLIENTS + 1)
        self.threads = [threading.Thread(target=self.guard, args=(
            self.client, i), name=f'client {i}') for i in range(CLIENTS)]
        self.threads.append(threading.Thread(
            target=self.guard, name='dropper', args=(self.dropper, CLIENTS)))

    def guard(self, fn, i):
        try:
            fn(i)
        except Exception:
            self.errors.append(f'{threading.current_thread().name}:\n'
                               f'{traceback.format_exc()}')

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=max(self.deadline - time.monotonic(), 0) + 30)
            if t.is_alive():
                self.errors.append(f'{t.name} hung')

    def run_batch(self, c, base, model, batch):
        """Send a batch, keep the model up to date, check every reply."""
        sent = []
        for cmd, off, length, data, flags in batch:
            expect = None
            if cmd == CMD_READ:
                expect = bytes(model[off:off + length])
            elif cmd == CMD_WRITE:
                model[off:off + length] = data
            elif cmd == CMD_WRITE_ZEROES:
                model[off:off + length] = bytes(length)
            handle = c.submit(cmd, base + off, length, data, flags)
            sent.append((handle, cmd, base + off, length, flags, expect))
        results = c.complete()
        for handle, cmd, off, length, flags, expect in sent:
            got = results[handle]
            if isinstance(got, NBDError):
                raise AssertionError(f'cmd {cmd} flags {flags} at '
                                     f'{off}+{length}: {got}')
            if expect is not None and got != expect:
                bad = next(i for i in range(length) if got[i] != expect[i])
                raise AssertionError(f'read {off}+{length} differs at '
                                     f'{off + bad}')

    def client(self, i):
        rng = random.Random(1000 + i)
        base, model = i * REGION, self.models[i]
        c = NBDClient(self.nbd, 'q')
        try:
            # What the requests below rely on; MULTI_CONN: a flush on one
            # connection covers the writes of all.
            needed = (TFLAG_SEND_FLUSH | TFLAG_SEND_FUA |
                      TFLAG_SEND_WRITE_ZEROES | TFLAG_CAN_MULTI_CONN)
            if c.tflags & needed != needed or c.size != SIZE:
                raise AssertionError(f'export: size {c.size} flags '
                                     f'{c.tflags:#x}')
            while time.monotonic() < self.deadline:
                self.run_batch(c, base, model, make_batch(rng, REGION))
                self.ops[i] += 1
                if rng.random() < 0.005:     # a new connection now and then
                    c.disconnect()
                    c = NBDClient(self.nbd, 'q')
            c.disconnect()
        finally:
            c.close()

    def dropper(self, i):
        """Acknowledged FUA writes, each followed by a write that the
        connection drops in the middle of; only the first may land."""
        rng = random.Random(2000)
        base, model = i * REGION, self.models[i]
        while time.monotonic() < self.deadline:
            off = rng.randrange(0, REGION // CLUSTER - 16) * CLUSTER
            c = NBDClient(self.nbd, 'q')
            try:
                # What the last dropped write must not have changed.
                self.run_batch(c, base, model,
                               [(CMD_READ, 0, REGION, b'', 0)])
                self.run_batch(c, base, model, [
                    (CMD_WRITE, off, 16 * CLUSTER, rng.choice(POOL) * 8 +
                     rng.randbytes(8 * CLUSTER), CMD_FLAG_FUA)])
                # Drop after the header alone or part of the payload.
                c.send_header(CMD_WRITE, base + off, 16 * CLUSTER)
                c.sock.sendall(os.urandom(rng.choice([0, 1, 8192, 65535])))
            finally:
                c.close()
            self.ops[i] += 1
            if rng.random() < 0.2:       # and once in the handshake
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.nbd)
                    s.recv(18)
                    s.sendall(struct.pack('>I', 1))
            time.sleep(0.05)

    def write_expected(self, path):
        """The raw image the whole load should have produced."""
        with open(path, 'r+b') as f:
            for i, model in enumerate(self.models):
                f.seek(i * REGION)
                f.write(model)


class TestLoad(QsdTestCase):

    def plain_image(self, size=str(SIZE)):
        img = self.path('plain.qcow2')
        qemu_img('create', '-q', '-f', 'qcow2', img, size)
        return img

    def run_load(self, img, dedup):
        nbd = self.path('nbd.sock')
        d = self.daemon(*qcow2_export_args(img, nbd))
        qmp = d.qmp()
        load = Load(nbd, time.monotonic() + DURATION)
        load.start()
        paused = False
        while any(t.is_alive() for t in load.threads):
            stats = qmp.ok('query-blockstats', {'query-nodes': True})
            self.assertEqual(stats[0]['stats']['failed_wr_operations'], 0)
            if dedup:
                qmp.ok('block-resume-dedup' if paused
                       else 'block-pause-dedup', {'node-name': 'q'})
                paused = not paused
            time.sleep(0.3)
        load.join()
        self.assertEqual(load.errors, [], '\n'.join(load.errors))
        self.assertTrue(all(load.ops), load.ops)
        stats = qmp.ok('query-blockstats', {'query-nodes': True})[0]
        for key in ['failed_rd_operations', 'failed_wr_operations',
                    'failed_flush_operations', 'failed_zero_operations',
                    'invalid_wr_operations']:
            self.assertEqual(stats['stats'].get(key, 0), 0, key)
        self.assertGreater(stats['stats']['flush_operations'], 0)
        qmp.ok('quit')
        self.assert_clean_exit(d)
        expected = self.raw_image('expected.raw', str(SIZE))
        load.write_expected(expected)
        self.assert_same_data(img, expected)
        self.assert_qcow2_clean(img, dedup)
        return stats

    def test_plain_qcow2(self):
        self.run_load(self.plain_image(), dedup=False)

    def test_dedup_qcow2(self):
        # A small index, so that it freezes and drops incarnations.
        img = self.dedup_image('dedup.qcow2', str(SIZE),
                               'dedup_log_entries=1024',
                               'dedup_max_incarnations=4')
        stats = self.run_load(img, dedup=True)['dedup']
        self.assertGreater(stats['deduplicated-clusters'], 0)
        self.assertGreater(stats['zero-clusters'], 0)
        self.assertGreater(stats['incarnations'], 0)

    def test_acknowledged_writes_survive_kill(self):
        for dedup in [False, True]:
            with self.subTest(dedup=dedup):
                img = (self.dedup_image('k.qcow2', '8M') if dedup
                       else self.plain_image('8M'))
                self.check_kill(img, dedup)

    def check_kill(self, img, dedup):
        nbd = self.path('nbd.sock')
        d = self.daemon(*qcow2_export_args(img, nbd))
        fua = POOL[0] * 4 + os.urandom(4 * CLUSTER) + POOL[0] * 2
        flushed = os.urandom(CLUSTER) + POOL[1] * 8 + b'\1' * 1000
        c = NBDClient(nbd, 'q')
        c.write(64 * 1024, fua, fua=True)
        c.close()                       # no NBD_CMD_DISC
        c = NBDClient(nbd, 'q')
        c.write(1 << 20, flushed)
        c.write_zeroes(2 << 20, 3 * CLUSTER, CMD_FLAG_NO_HOLE)
        c.flush()
        c.close()
        d.kill()
        self.daemons.remove(d)
        # Stale file left by SIGKILL: the new daemon must replace it.
        self.assertTrue(os.path.exists(nbd))
        d = self.daemon(*qcow2_export_args(img, nbd))
        c = NBDClient(nbd, 'q')
        self.assertEqual(c.read(64 * 1024, len(fua)), fua)
        self.assertEqual(c.read(1 << 20, len(flushed)), flushed)
        self.assertEqual(c.read(2 << 20, 3 * CLUSTER), bytes(3 * CLUSTER))
        c.disconnect()
        qmp = d.qmp()
        qmp.ok('quit')
        qmp.close()
        self.assertEqual(d.wait(), 0, d.stderr)
        self.daemons.remove(d)
        # Opening the crashed image repaired it, as stock QEMU does (and
        # reports) with a dirty image: only a dedup image is left dirty.
        for line in d.stderr.splitlines():
            self.assertTrue(dedup and line.startswith('Repairing '), line)
        self.assert_qcow2_clean(img, dedup)
        expected = self.raw_image('k.raw', '8M')
        with open(expected, 'r+b') as f:
            f.seek(64 * 1024)
            f.write(fua)
            f.seek(1 << 20)
            f.write(flushed)
        self.assert_same_data(img, expected)
        os.unlink(img)
        os.unlink(expected)


if __name__ == '__main__':
    unittest.main()

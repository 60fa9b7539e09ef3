#!/usr/bin/env python3
"""Deduplication control over QMP: block-pause-dedup / block-resume-dedup
on an image exported over NBD, the dedup metrics of query-blockstats, the
paused state kept in the image across a restart, and the errors of both
commands.  Data goes in through stock qemu-io over NBD and is checked
afterwards with stock qemu-img (map, compare, check) and our check."""

import json
import subprocess
import unittest

from qsdtest import (QsdTestCase, TIMEOUT, nbd_uri, our_qemu_img,
                     qcow2_export_args, qemu_img, qemu_io)

CLUSTER = 4096
CHUNK = 64 * 1024               # one qemu-io write: 16 clusters
CHUNK_CLUSTERS = CHUNK // CLUSTER
DEDUP_COUNTERS = ['unique-clusters', 'deduplicated-clusters',
                  'zero-clusters', 'saved-bytes', 'lookups', 'hits',
                  'misses']
MORE = object()


class DedupTestCase(QsdTestCase):
    """A deduplicated image exported as 'q', and a raw file that receives
    the same writes, to compare with at the end."""

    def setUp(self):
        super().setUp()
        self.img = self.dedup_image('d.qcow2', '8M')
        self.nbd = self.path('nbd.sock')
        self.expected = self.raw_image('expected.raw', '8M')

    def start(self):
        d = self.daemon(*qcow2_export_args(self.img, self.nbd))
        return d, d.qmp()

    def quit(self, d, c):
        c.ok('quit')
        self.assert_clean_exit(d)

    def write(self, *cmds):
        """Run qemu-io commands over NBD and on the expected data."""
        args = [a for cmd in cmds for a in ('-c', cmd)]
        qemu_io('-f', 'raw', *args, nbd_uri(self.nbd, 'q'))
        qemu_io('-f', 'raw', *args, self.expected)

    def node_stats(self, c, node='q'):
        for s in c.ok('query-blockstats', {'query-nodes': True}):
            if s['node-name'] == node:
                return s
        raise AssertionError(f'no blockstats for node {node}')

    def dedup(self, c):
        return self.node_stats(c)['dedup']

    def host_offsets(self, start, length):
        """Host offset of each guest cluster in [start, start + length),
        from stock qemu-img map (None where not allocated)."""
        out = qemu_img('map', '--output=json', '-f', 'qcow2', self.img)
        offsets = {}
        for ext in json.loads(out):
            if not ext['data']:
                continue
            for g in range(ext['start'], ext['start'] + ext['length'],
                           CLUSTER):
                offsets[g] = ext['offset'] + g - ext['start']
        return [offsets.get(g) for g in range(start, start + length,
                                              CLUSTER)]

    def our_info(self):
        p = our_qemu_img('info', self.img)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def assert_final_image(self):
        self.assert_qcow2_clean(self.img, dedup=True)
        self.assert_same_data(self.img, self.expected)


class TestPauseResume(DedupTestCase):

    def assert_grew(self, before, after, **deltas):
        """after - before of each dedup counter: as given (MORE: any
        growth), else 0."""
        for key in DEDUP_COUNTERS:
            want = deltas.get(key.replace('-', '_'), 0)
            if want is MORE:
                self.assertGreater(after[key], before[key], key)
            else:
                self.assertEqual(after[key] - before[key], want, key)

    def test_pause_resume_persist(self):
        d, c = self.start()
        s = self.dedup(c)
        self.assertEqual((s['algorithm'], s['state']), ('sha256', 'running'))
        self.assertEqual([s[k] for k in DEDUP_COUNTERS], [0] * 7)

        # 16 equal clusters: one stored, 15 references to it.
        self.write(f'write -P 0x11 0 {CHUNK}')
        s1 = self.dedup(c)
        self.assertEqual(s1['unique-clusters'], 1)
        self.assertEqual(s1['deduplicated-clusters'], CHUNK_CLUSTERS - 1)
        self.assertEqual(s1['hits'], CHUNK_CLUSTERS - 1)
        self.assertEqual(s1['misses'], 1)
        self.assertEqual(s1['saved-bytes'], (CHUNK_CLUSTERS - 1) * CLUSTER)
        self.assertGreater(s1['index-ram'], 0)

        # A later request hits the cluster the first one stored.
        self.write(f'write -P 0x11 {CHUNK} {CHUNK}')
        s2 = self.dedup(c)
        self.assert_grew(s1, s2, deduplicated_clusters=CHUNK_CLUSTERS,
                         hits=CHUNK_CLUSTERS, saved_bytes=CHUNK,
                         lookups=MORE)

        # All-zero clusters are counted apart, without a lookup.
        self.write(f'write -P 0 {7 * CHUNK} {CHUNK}')
        s3 = self.dedup(c)
        self.assert_grew(s2, s3, zero_clusters=CHUNK_CLUSTERS,
                         saved_bytes=CHUNK)

        # Paused: the same content is written as plain data.
        c.ok('block-pause-dedup', {'node-name': 'q'})
        self.assertEqual(self.dedup(c)['state'], 'paused')
        wr = self.node_stats(c)['stats']['wr_bytes']
        self.write(f'write -P 0x11 {2 * CHUNK} {CHUNK}')
        s4 = self.dedup(c)
        self.assert_grew(s3, s4)
        self.assertEqual(self.node_stats(c)['stats']['wr_bytes'] - wr, CHUNK)

        c.ok('block-resume-dedup', {'node-name': 'q'})
        self.assertEqual(self.dedup(c)['state'], 'running')
        self.write(f'write -P 0x11 {3 * CHUNK} {CHUNK}')
        s5 = self.dedup(c)
        self.assert_grew(s4, s5, deduplicated_clusters=CHUNK_CLUSTERS,
                         hits=CHUNK_CLUSTERS, saved_bytes=CHUNK,
                         lookups=MORE)

        # The paused state is kept in the image.
        c.ok('block-pause-dedup', {'node-name': 'q'})
        self.quit(d, c)
        self.assertIn('state: paused', self.our_info())

        d, c = self.start()
        s6 = self.dedup(c)
        self.assertEqual(s6['state'], 'paused')
        for key in ['unique-clusters', 'deduplicated-clusters',
                    'zero-clusters', 'saved-bytes']:
            self.assertEqual(s6[key], s5[key], key)
        self.write(f'write -P 0x11 {4 * CHUNK} {CHUNK}')
        self.assertEqual(self.dedup(c), s6)

        # Resumed after the restart, writes hit the index kept on disk.
        c.ok('block-resume-dedup', {'node-name': 'q'})
        self.write(f'write -P 0x11 {5 * CHUNK} {CHUNK}')
        s7 = self.dedup(c)
        self.assertEqual(s7['state'], 'running')
        self.assert_grew(s6, s7, deduplicated_clusters=CHUNK_CLUSTERS,
                         hits=CHUNK_CLUSTERS, saved_bytes=CHUNK,
                         lookups=MORE)
        self.quit(d, c)
        self.assertIn('state: running', self.our_info())

        # Deduplicated chunks share one host cluster; paused ones got
        # their own clusters each.
        shared = self.host_offsets(0, 1)[0]
        self.assertIsNotNone(shared)
        for chunk in [0, 1, 3, 5]:
            self.assertEqual(self.host_offsets(chunk * CHUNK, CHUNK),
                             [shared] * CHUNK_CLUSTERS, f'chunk {chunk}')
        plain = (self.host_offsets(2 * CHUNK, CHUNK)
                 + self.host_offsets(4 * CHUNK, CHUNK))
        self.assertNotIn(None, plain)
        self.assertNotIn(shared, plain)
        self.assertEqual(len(set(plain)), len(plain))
        self.assertEqual(self.host_offsets(7 * CHUNK, CHUNK),
                         [None] * CHUNK_CLUSTERS)
        self.assert_final_image()

    def test_repeated_commands(self):
        """Pausing a paused node or resuming a running one succeeds and
        changes nothing."""
        d, c = self.start()
        for cmd, state in [('block-resume-dedup', 'running'),
                           ('block-pause-dedup', 'paused'),
                           ('block-pause-dedup', 'paused'),
                           ('block-resume-dedup', 'running'),
                           ('block-resume-dedup', 'running')]:
            c.ok(cmd, {'node-name': 'q'})
            self.assertEqual(self.dedup(c)['state'], state)
        self.quit(d, c)
        self.assertIn('state: running', self.our_info())

    def test_indexed_cluster_overwritten_while_paused(self):
        """An indexed cluster is never written in place, paused or not:
        its content must stay what the index says it is."""
        d, c = self.start()
        # Clusters 0-3 each hold unique, indexed content.
        self.write('write -P 0x21 0 4k', 'write -P 0x22 4k 4k',
                   'write -P 0x23 8k 4k', 'write -P 0x24 12k 4k')
        self.assertEqual(self.dedup(c)['unique-clusters'], 4)
        c.ok('block-pause-dedup', {'node-name': 'q'})
        # Full and partial overwrites while paused, then while running.
        self.write('write -P 0x31 0 4k', 'write -P 0x32 4608 512')
        c.ok('block-resume-dedup', {'node-name': 'q'})
        self.write('write -P 0x33 8k 4k', 'write -P 0x34 13312 1k')
        # The old contents again elsewhere: a stale hit would bring back
        # the overwritten data.
        before = self.dedup(c)
        self.write('write -P 0x21 64k 4k', 'write -P 0x22 68k 4k',
                   'write -P 0x23 72k 4k', 'write -P 0x24 76k 4k')
        after = self.dedup(c)
        self.assertEqual(after['deduplicated-clusters'],
                         before['deduplicated-clusters'])
        qemu_io('-r', '-f', 'raw', '-c', 'read -P 0x31 0 4k',
                '-c', 'read -P 0x22 4k 512', '-c', 'read -P 0x32 4608 512',
                '-c', 'read -P 0x22 5k 3k', '-c', 'read -P 0x33 8k 4k',
                '-c', 'read -P 0x24 12k 1k', '-c', 'read -P 0x34 13k 1k',
                '-c', 'read -P 0x24 14k 2k', '-c', 'read -P 0x21 64k 4k',
                '-c', 'read -P 0x22 68k 4k', '-c', 'read -P 0x23 72k 4k',
                '-c', 'read -P 0x24 76k 4k', nbd_uri(self.nbd, 'q'))
        self.quit(d, c)
        self.assert_final_image()

    def test_saturated_cluster_still_copied_on_write(self):
        """A cluster that leaves the index while still shared must not be
        written in place either.  With refcount_bits=2 a cluster takes
        two references; the third copy is indexed instead of it."""
        self.img = self.dedup_image('r.qcow2', '8M', 'refcount_bits=2')
        d, c = self.start()
        self.write('write -P 0x11 0 4k', 'write -P 0x11 4k 4k',
                   'write -P 0x11 8k 4k',
                   'write -P 0x44 64k 4k', 'write -P 0x44 68k 4k',
                   'write -P 0x44 72k 4k')
        s = self.dedup(c)
        self.assertEqual((s['deduplicated-clusters'], s['saturated']),
                         (2, 2))
        # A partial write while running, a full one while paused, each
        # to the first user of a saturated cluster.
        self.write('write -P 0x22 0 512')
        c.ok('block-pause-dedup', {'node-name': 'q'})
        self.write('write -P 0x55 64k 4k')
        qemu_io('-r', '-f', 'raw', '-c', 'read -P 0x11 4k 4k',
                '-c', 'read -P 0x44 68k 4k', nbd_uri(self.nbd, 'q'))
        self.quit(d, c)
        self.assert_final_image()


class TestErrors(DedupTestCase):

    def test_command_errors(self):
        plain = self.path('plain.qcow2')
        qemu_img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k',
                 plain, '1M')
        ro = self.dedup_image('ro.qcow2', '1M')
        raw = self.raw_image('a.raw')
        d = self.daemon(
            *qcow2_export_args(self.img, self.nbd),
            '--blockdev', f'driver=file,node-name=rf,filename={raw}',
            '--blockdev', 'raw,node-name=r,file=rf',
            '--blockdev', f'qcow2,node-name=p,file.driver=file,'
                          f'file.filename={plain}',
            '--blockdev', f'qcow2,node-name=ro,read-only=on,'
                          f'file.driver=file,file.node-name=rof,'
                          f'file.filename={ro}')
        c = d.qmp()
        cases = [
            ({'node-name': 'r'}, "Node 'r' does not support deduplication"),
            ({'node-name': 'rf'},
             "Node 'rf' does not support deduplication"),
            ({'node-name': 'rof'},
             "Node 'rof' does not support deduplication"),
            ({'node-name': 'p'},
             "Node 'p' does not have deduplication enabled"),
            ({'node-name': 'nosuch'},
             "Failed to find node with node-name='nosuch'"),
            ({'node-name': ''}, "Failed to find node with node-name=''"),
            ({}, "Parameter 'node-name' is missing"),
            ({'node-name': 5},
             "Invalid parameter type for 'node-name', expected: string"),
            ({'node-name': 'q', 'force': True},
             "Parameter 'force' is unexpected"),
        ]
        for cmd in ['block-pause-dedup', 'block-resume-dedup']:
            for args, desc in cases:
                with self.subTest(cmd=cmd, args=args):
                    rsp = c.cmd(cmd, args)
                    self.assertEqual(rsp.get('error'), {
                        'class': 'GenericError', 'desc': desc})
            # A read-only image cannot record the state: refused, unchanged.
            with self.subTest(cmd=cmd, node='ro'):
                rsp = c.cmd(cmd, {'node-name': 'ro'})
                self.assertEqual(rsp['error']['class'], 'GenericError')
                self.assertIn("'ro'", rsp['error']['desc'])
        # Only the deduplicating nodes carry metrics, all still running.
        stats = {s['node-name']: s.get('dedup', {}).get('state')
                 for s in c.ok('query-blockstats', {'query-nodes': True})}
        self.assertLessEqual({'q', 'r', 'rf', 'p', 'ro', 'rof'},
                             set(stats))
        self.assertEqual({n: st for n, st in stats.items() if st},
                         {'q': 'running', 'ro': 'running'})
        self.quit(d, c)
        # Nothing was changed by the refused commands.
        self.assertIn('state: running', self.our_info())
        self.assert_qcow2_clean(plain, dedup=False)
        p = subprocess.run(['qemu-img', 'info', plain], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertNotIn('dedup', p.stdout)


if __name__ == '__main__':
    unittest.main()

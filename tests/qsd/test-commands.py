#!/usr/bin/env python3
"""QMP commands of qemu-storage-daemon: success and error paths, query
round trips, data written over NBD reaching the image."""

import os
import shutil
import socket
import subprocess
import unittest

from qsdtest import QsdTestCase, nbd_uri, qemu_img, qemu_io

OUR_QEMU_IMG = os.environ.get('OUR_QEMU_IMG')


def has_qcow2(d):
    """Whether our block layer was built with the qcow2 driver."""
    c = d.qmp()
    return "'qcow2'" not in c.error('blockdev-add', {
        'driver': 'qcow2', 'node-name': 'probe', 'file': 'no-such-node'})


class TestBlockdev(QsdTestCase):

    def setUp(self):
        super().setUp()
        self.img = self.raw_image('a.raw')
        self.d = self.daemon()
        self.c = self.d.qmp()

    def add_raw(self, name, img=None):
        self.c.ok('blockdev-add', {
            'driver': 'raw', 'node-name': name,
            'file': {'driver': 'file', 'filename': img or self.img}})

    def node_names(self):
        return [n['node-name'] for n in self.c.ok('query-named-block-nodes')]

    def test_add_query_del(self):
        self.assertEqual(self.c.ok('query-named-block-nodes'), [])
        self.c.ok('blockdev-add', {'driver': 'file', 'node-name': 'f',
                                   'filename': self.img,
                                   'cache': {'direct': False,
                                             'no-flush': True},
                                   'discard': 'unmap', 'read-only': False})
        self.c.ok('blockdev-add', {'driver': 'raw', 'node-name': 'r',
                                   'file': 'f', 'detect-zeroes': 'on'})
        nodes = self.c.ok('query-named-block-nodes')
        self.assertEqual([n['node-name'] for n in nodes], ['r', 'f'])
        r, f = nodes
        self.assertEqual(r['drv'], 'raw')
        self.assertEqual(r['file'], self.img)
        self.assertFalse(r['ro'])
        self.assertEqual(r['detect_zeroes'], 'on')
        self.assertEqual(r['backing_file_depth'], 0)
        self.assertEqual(r['image']['virtual-size'], 1 << 20)
        self.assertEqual(r['image']['format'], 'raw')
        self.assertEqual(f['drv'], 'file')
        self.assertEqual(f['cache'], {'no-flush': True, 'direct': False,
                                      'writeback': True})
        self.assertEqual(self.c.error('blockdev-del', {'node-name': 'f'}),
                         'Block device f is in use')
        self.c.ok('blockdev-del', {'node-name': 'r'})
        self.c.ok('blockdev-del', {'node-name': 'f'})
        self.assertEqual(self.c.ok('query-named-block-nodes'), [])

    def test_read_only(self):
        self.c.ok('blockdev-add', {'driver': 'raw', 'node-name': 'r',
                                   'read-only': True,
                                   'file': {'driver': 'file',
                                            'filename': self.img}})
        self.assertTrue(self.c.ok('query-named-block-nodes')[0]['ro'])

    def test_add_errors(self):
        self.add_raw('r')
        cases = [
            ({'driver': 'raw', 'node-name': 'r', 'file': {
                'driver': 'file', 'filename': self.img}},
             "Duplicate nodes with node-name='r'"),
            ({'driver': 'raw', 'node-name': 'n', 'file': {
                'driver': 'file', 'filename': self.path('missing')}},
             "Could not open '%s': No such file or directory"
             % self.path('missing')),
            ({'driver': 'raw', 'node-name': 'n', 'file': 'nosuch'},
             "Cannot find device='' nor node-name='nosuch'"),
            ({'driver': 'bogus', 'node-name': 'n'},
             "Parameter 'driver' does not accept value 'bogus'"),
            ({'node-name': 'n'}, "Parameter 'driver' is missing"),
            ({'driver': 'file', 'filename': self.img},
             "'node-name' must be specified for the root node"),
            ({'driver': 7, 'node-name': 'n'},
             "Invalid parameter type for 'driver', expected: string"),
            ({'driver': 'raw', 'node-name': 5},
             "Invalid parameter type for 'node-name', expected: string"),
            ({'driver': 'file', 'node-name': 'n', 'filename': self.img,
              'discard': 'sometimes'},
             "Invalid discard option 'sometimes'"),
        ]
        for args, desc in cases:
            with self.subTest(args=args):
                self.assertEqual(self.c.error('blockdev-add', args), desc)
        desc = self.c.error('blockdev-add', {
            'driver': 'file', 'node-name': 'n', 'filename': self.img,
            'bogus-option': 1})
        self.assertIn("'bogus-option'", desc)
        self.assertEqual(self.node_names(), ['r'])

    def test_del_errors(self):
        self.c.ok('blockdev-add', {'driver': 'raw', 'node-name': 'r',
                                   'file': {'driver': 'file',
                                            'node-name': 'inner',
                                            'filename': self.img}})
        self.assertEqual(self.c.error('blockdev-del', {'node-name': 'zz'}),
                         "Failed to find node with node-name='zz'")
        self.assertEqual(self.c.error('blockdev-del',
                                      {'node-name': 'inner'}),
                         'Node inner is not owned by the monitor')
        self.assertEqual(self.c.error('blockdev-del', {}),
                         "Parameter 'node-name' is missing")
        self.assertEqual(self.c.error('blockdev-del', {'node-name': 'r',
                                                       'force': True}),
                         "Parameter 'force' is unexpected")
        self.c.ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.path('nbd.sock')}}})
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'r'})
        self.assertEqual(self.c.error('blockdev-del', {'node-name': 'r'}),
                         'Node r is in use')
        self.c.ok('block-export-del', {'id': 'e'})
        self.c.ok('blockdev-del', {'node-name': 'r'})
        self.assertEqual(self.node_names(), [])

    def test_blockstats(self):
        self.assertEqual(self.c.ok('query-blockstats'), [])
        self.add_raw('r')
        self.assertEqual(self.c.ok('query-blockstats'), [])
        self.assertEqual(self.c.ok('query-blockstats',
                                   {'query-nodes': False}), [])
        self.assertEqual(
            self.c.error('query-blockstats', {'query-nodes': 'yes'}),
            "Invalid parameter type for 'query-nodes', expected: boolean")
        self.c.ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.path('nbd.sock')}}})
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'r', 'writable': True})
        qemu_io('-f', 'raw', '-c', 'write -P 0x11 4096 8192',
                '-c', 'read 0 4096', '-c', 'flush',
                nbd_uri(self.path('nbd.sock'), 'r'))
        stats = self.c.ok('query-blockstats', {'query-nodes': True})
        self.assertEqual(len(stats), 1)
        s = stats[0]
        self.assertEqual(s['node-name'], 'r')
        self.assertNotIn('dedup', s)
        self.assertEqual(s['stats']['wr_bytes'], 8192)
        self.assertEqual(s['stats']['wr_operations'], 1)
        self.assertEqual(s['stats']['rd_bytes'], 4096)
        self.assertEqual(s['stats']['wr_highest_offset'], 12288)
        self.assertGreaterEqual(s['stats']['flush_operations'], 1)
        for key in ['rd_operations', 'unmap_bytes', 'unmap_operations',
                    'zero_bytes', 'rd_total_time_ns', 'failed_wr_operations',
                    'invalid_rd_operations', 'timed_stats']:
            self.assertIn(key, s['stats'])
        self.assertEqual(s['parent']['stats']['wr_bytes'], 8192)

    def test_dedup_commands_on_raw(self):
        self.add_raw('r')
        for cmd in ['block-pause-dedup', 'block-resume-dedup']:
            with self.subTest(cmd=cmd):
                self.assertEqual(self.c.error(cmd, {'node-name': 'r'}),
                                 "Node 'r' does not support deduplication")
                self.assertEqual(self.c.error(cmd, {'node-name': 'x'}),
                                 "Failed to find node with node-name='x'")
                self.assertEqual(self.c.error(cmd, {}),
                                 "Parameter 'node-name' is missing")


class TestExports(QsdTestCase):

    def setUp(self):
        super().setUp()
        self.img = self.raw_image('a.raw')
        self.nbd = self.path('nbd.sock')
        self.d = self.daemon('--blockdev', 'driver=file,node-name=f,filename='
                             + self.img, '--blockdev', 'raw,node-name=r,file=f')
        self.c = self.d.qmp()

    def start_server(self):
        self.c.ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.nbd}}})

    def test_server_errors(self):
        self.assertEqual(self.c.error('nbd-server-stop'),
                         'NBD server not running')
        self.assertEqual(self.c.error('block-export-add', {
            'type': 'nbd', 'id': 'e', 'node-name': 'r'}),
            'NBD server not running')
        bad = [
            ({}, "Parameter 'addr' is missing"),
            ({'addr': {'type': 'unix', 'path': self.nbd}},
             "Parameter 'addr.data' is missing"),
            ({'addr': {'type': 'unix', 'data': {}}},
             "Parameter 'addr.data.path' is missing"),
            ({'addr': {'type': 'vsock', 'data': {}}},
             "Parameter 'addr.type' does not accept value 'vsock'"),
            ({'addr': {'type': 'unix', 'data': {'path': self.nbd, 'x': 1}}},
             "Parameter 'addr.data.x' is unexpected"),
            ({'addr': {'type': 'inet', 'data': {'host': '127.0.0.1',
                                                'port': 10809}}},
             "Invalid parameter type for 'addr.data.port', expected: "
             "string"),
            ({'addr': {'type': 'unix', 'data': {'path': self.nbd}},
              'max-connections': -1},
             "Parameter 'max-connections' expects uint32_t"),
            ({'addr': {'type': 'unix', 'data': {'path': self.nbd}},
              'max-connections': 'x'},
             "Parameter 'max-connections' expects uint64"),
            ({'addr': {'type': 'unix', 'data': {'path': '/nonexistent/x'}}},
             None),
        ]
        for args, desc in bad:
            with self.subTest(args=args):
                got = self.c.error('nbd-server-start', args)
                if desc:
                    self.assertEqual(got, desc)
        self.start_server()
        self.assertEqual(self.c.error('nbd-server-start', {'addr': {
            'type': 'unix', 'data': {'path': self.path('other.sock')}}}),
            'NBD server already running')
        self.c.ok('nbd-server-stop')
        self.assertFalse(os.path.exists(self.nbd))

    def test_inet_server(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = str(s.getsockname()[1])
        s.close()
        self.c.ok('nbd-server-start', {'addr': {'type': 'inet', 'data': {
            'host': '127.0.0.1', 'port': port}}, 'max-connections': 2})
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'r', 'name': 'disk'})
        out = qemu_io('-r', '-f', 'raw', '-c', 'read -P 0 0 4096',
                      f'nbd://127.0.0.1:{port}/disk')
        self.assertIn('read 4096/4096 bytes', out)
        self.c.ok('nbd-server-stop')

    def test_export_round_trip(self):
        self.start_server()
        self.assertEqual(self.c.ok('query-block-exports'), [])
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e1',
                                       'node-name': 'r', 'writable': True,
                                       'name': 'disk',
                                       'description': 'a disk'})
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e2',
                                       'node-name': 'f'})
        self.assertEqual(self.c.ok('query-block-exports'), [
            {'node-name': 'r', 'shutting-down': False, 'type': 'nbd',
             'id': 'e1'},
            {'node-name': 'f', 'shutting-down': False, 'type': 'nbd',
             'id': 'e2'}])
        qemu_io('-f', 'raw', '-c', 'write -P 0x5a 0 64k',
                nbd_uri(self.nbd, 'disk'))
        # e2 is read-only and named after its node.
        out = qemu_io('-f', 'raw', '-c', 'write 0 512',
                      nbd_uri(self.nbd, 'f'), check=False)
        self.assertNotIn('wrote', out)
        qemu_io('-r', '-f', 'raw', '-c', 'read -P 0x5a 0 64k',
                nbd_uri(self.nbd, 'f'))
        self.c.ok('block-export-del', {'id': 'e1', 'mode': 'hard'})
        self.assertEqual(self.c.events[-1]['data'], {'id': 'e1'})
        self.c.ok('block-export-del', {'id': 'e2'})
        self.assertEqual(self.c.ok('query-block-exports'), [])
        self.assertEqual(
            [e['data']['id'] for e in self.c.events], ['e1', 'e2'])

    def test_export_errors(self):
        self.start_server()
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'r', 'name': 'disk'})
        self.c.ok('blockdev-add', {'driver': 'raw', 'node-name': 'ro',
                                   'read-only': True, 'file': {
                                       'driver': 'file',
                                       'filename': self.img}})
        cases = [
            ({'type': 'nbd', 'id': 'e', 'node-name': 'r'},
             "Block export id 'e' is already in use"),
            ({'type': 'nbd', 'id': 'e2', 'node-name': 'r', 'name': 'disk'},
             "NBD server already has export named 'disk'"),
            ({'type': 'nbd', 'id': 'e2', 'node-name': 'nosuch'},
             "Cannot find device='' nor node-name='nosuch'"),
            ({'type': 'nbd', 'id': 'e2', 'node-name': 'ro',
              'writable': True},
             'Cannot export read-only node as writable'),
            ({'type': 'nbdx', 'id': 'e2', 'node-name': 'r'},
             "Parameter 'type' does not accept value 'nbdx'"),
            ({'id': 'e2', 'node-name': 'r'}, "Parameter 'type' is missing"),
            ({'type': 'nbd', 'node-name': 'r'}, "Parameter 'id' is missing"),
            ({'type': 'nbd', 'id': 'e2', 'node-name': 'r', 'writable': 1},
             "Invalid parameter type for 'writable', expected: boolean"),
            ({'type': 'nbd', 'id': 'e2', 'node-name': 'r', 'bitmap': 'b'},
             "Parameter 'bitmap' is unexpected"),
        ]
        for args, desc in cases:
            with self.subTest(args=args):
                self.assertEqual(self.c.error('block-export-add', args), desc)
        self.assertEqual(self.c.error('block-export-del', {'id': 'zz'}),
                         "Export 'zz' is not found")
        self.assertEqual(
            self.c.error('block-export-del', {'id': 'e', 'mode': 'bad'}),
            "Parameter 'mode' does not accept value 'bad'")
        self.assertEqual(len(self.c.ok('query-block-exports')), 1)

    def test_server_stop_removes_exports(self):
        self.start_server()
        for i in range(3):
            self.c.ok('block-export-add', {'type': 'nbd', 'id': f'e{i}',
                                           'node-name': 'r',
                                           'name': f'n{i}'})
        self.c.ok('nbd-server-stop')
        self.assertEqual([e['data']['id'] for e in self.c.events],
                         ['e0', 'e1', 'e2'])
        self.assertEqual(self.c.ok('query-block-exports'), [])
        # The nodes are free again.
        self.c.ok('blockdev-del', {'node-name': 'r'})

    def test_quit_flushes_and_reports(self):
        self.start_server()
        self.c.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'r', 'writable': True})
        expected = self.path('expected.raw')
        shutil.copy(self.img, expected)
        pattern = ['-c', 'write -P 0xc3 0 192k', '-c', 'write -z 64k 4k',
                   '-c', 'write -P 0x3c 1020k 4k']
        qemu_io('-f', 'raw', *pattern, nbd_uri(self.nbd, 'r'))
        qemu_io('-f', 'raw', *pattern, expected)
        other = self.d.qmp()
        self.c.send_raw(b'{"execute": "quit", "id": "bye"}')
        # The export's event comes before the reply, on every client.
        ev = self.c.recv()
        self.assertEqual((ev['event'], ev['data']), ('BLOCK_EXPORT_DELETED',
                                                     {'id': 'e'}))
        self.assertEqual(self.c.recv(), {'return': {}, 'id': 'bye'})
        self.assertEqual(other.recv()['event'], 'BLOCK_EXPORT_DELETED')
        self.assert_clean_exit(self.d)
        self.assertFalse(os.path.exists(self.nbd))
        subprocess.run(['qemu-img', 'compare', '-q', '-f', 'raw', '-F', 'raw',
                        self.img, expected], check=True, timeout=10)


class TestQcow2(QsdTestCase):
    """The same round trip on qcow2, checked by stock qemu-img."""

    def test_qcow2_export(self):
        img = self.path('a.qcow2')
        qemu_img('create', '-q', '-f', 'qcow2', img, '4M')
        nbd = self.path('nbd.sock')
        d = self.daemon('--blockdev', 'qcow2,node-name=q,file.driver=file,'
                        'file.filename=' + img,
                        '--nbd-server', 'addr.type=unix,addr.path=' + nbd,
                        '--export', 'nbd,id=e,node-name=q,writable=on')
        if not has_qcow2(d):
            self.skipTest('qcow2 driver not built')
        c = d.qmp()
        node = c.ok('query-named-block-nodes')[0]
        self.assertEqual(node['drv'], 'qcow2')
        self.assertEqual(node['image']['format-specific']['type'], 'qcow2')
        self.assertEqual(node['image']['cluster-size'], 65536)
        self.assertEqual(c.error('block-pause-dedup', {'node-name': 'q'}),
                         "Node 'q' does not have deduplication enabled")
        expected = self.path('expected.raw')
        qemu_img('create', '-q', '-f', 'raw', expected, '4M')
        pattern = ['-c', 'write -P 0x17 0 256k', '-c', 'write -P 0x71 3M 64k',
                   '-c', 'write -z 64k 64k']
        qemu_io('-f', 'raw', *pattern, nbd_uri(nbd, 'q'))
        qemu_io('-f', 'raw', *pattern, expected)
        d.proc.terminate()
        self.assert_clean_exit(d)
        qemu_img('check', '-q', img)
        subprocess.run(['qemu-img', 'compare', '-q', '-f', 'qcow2', '-F',
                        'raw', img, expected], check=True, timeout=10)

    @unittest.skipUnless(OUR_QEMU_IMG, 'our qemu-img not built')
    def test_dedup_commands(self):
        img = self.path('d.qcow2')
        p = subprocess.run([OUR_QEMU_IMG, 'create', '-q', '-f', 'qcow2',
                            '-o', 'dedup=sha256', img, '4M'],
                           capture_output=True, text=True)
        if p.returncode:
            self.skipTest('no dedup support yet: ' + p.stderr.strip())
        d = self.daemon('--blockdev', 'qcow2,node-name=q,file.driver=file,'
                        'file.filename=' + img)
        c = d.qmp()
        stats = c.ok('query-blockstats', {'query-nodes': True})
        self.assertIsInstance(stats[0]['dedup'], dict)
        c.ok('block-pause-dedup', {'node-name': 'q'})
        c.ok('block-resume-dedup', {'node-name': 'q'})
        c.ok('quit')
        self.assert_clean_exit(d)


if __name__ == '__main__':
    unittest.main()

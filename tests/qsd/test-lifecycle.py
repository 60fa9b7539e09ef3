#!/usr/bin/env python3
"""qemu-storage-daemon command line and life cycle: option errors, pidfile,
--daemonize, exit on signals and quit with the image flushed."""

import os
import shutil
import signal
import subprocess
import time
import unittest

from qsdtest import (QMP, QsdTestCase, nbd_uri, qemu_io, run_qsd, wait_for,
                     QSD, TIMEOUT)


class TestOptions(QsdTestCase):

    def test_help_version(self):
        rc, out, err = run_qsd('--help')
        self.assertEqual((rc, err), (0, ''))
        self.assertTrue(out.startswith('Usage: qemu-storage-daemon'))
        for opt in ['--blockdev', '--chardev', '--daemonize', '--export',
                    '--monitor', '--nbd-server', '--pidfile']:
            self.assertIn(opt, out)
        rc, out, err = run_qsd('-V')
        self.assertEqual((rc, err), (0, ''))
        self.assertTrue(out.startswith('qemu-storage-daemon version 7.2.0'))

    def test_errors(self):
        img = self.raw_image('a.raw')
        nbd = self.path('nbd.sock')
        srv = 'addr.type=unix,addr.path=' + nbd
        cases = [
            (['--bogus'], "unrecognized option '--bogus'"),
            (['--pidfile'], "option '--pidfile' requires an argument"),
            (['extra'], 'extra: Unexpected argument'),
            (['--nbd-server', 'addr.type=unix'],
             "--nbd-server addr.type=unix: Parameter 'addr.path' is "
             "missing"),
            (['--nbd-server', srv + ',max-connections=x'],
             f"--nbd-server {srv},max-connections=x: Parameter "
             "'max-connections' expects integer"),
            (['--nbd-server', srv + ',foo=1'],
             f"--nbd-server {srv},foo=1: Parameter 'foo' is unexpected"),
            (['--nbd-server', 'addr.type=inet,addr.host=127.0.0.1'],
             "--nbd-server addr.type=inet,addr.host=127.0.0.1: Parameter "
             "'addr.port' is missing"),
            (['--nbd-server', srv, '--nbd-server', srv],
             f'--nbd-server {srv}: NBD server already running'),
            (['--export', 'type=nbd,id=e,node-name=x'],
             "--export type=nbd,id=e,node-name=x: Cannot find device='' nor "
             "node-name='x'"),
            (['--blockdev', f'file,node-name=x,filename={img}',
              '--export', 'nbd,id=e,node-name=x'],
             '--export nbd,id=e,node-name=x: NBD server not running'),
            (['--nbd-server', srv, '--blockdev',
              f'file,node-name=x,filename={img}',
              '--export', 'nbd,id=e,node-name=x,writable=maybe'],
             "--export nbd,id=e,node-name=x,writable=maybe: Parameter "
             "'writable' expects 'on' or 'off'"),
            (['--nbd-server', srv, '--blockdev',
              f'file,node-name=x,filename={img},read-only=on',
              '--export', 'nbd,id=e,node-name=x,writable=on'],
             '--export nbd,id=e,node-name=x,writable=on: Cannot export '
             'read-only node as writable'),
            (['--nbd-server', srv, '--blockdev',
              f'file,node-name=x,filename={img}',
              '--export', 'nbd,node-name=x'],
             "--export nbd,node-name=x: Parameter 'id' is missing"),
            (['--blockdev', 'file,node-name=x,filename=nonexist'],
             '--blockdev file,node-name=x,filename=nonexist: Could not open '
             "'nonexist': No such file or directory"),
            (['--blockdev', f'file,filename={img}'],
             f"--blockdev file,filename={img}: 'node-name' must be "
             'specified for the root node'),
            (['--blockdev', 'bogus,node-name=x'],
             "--blockdev bogus,node-name=x: Parameter 'driver' does not "
             "accept value 'bogus'"),
            (['--blockdev', f'file,node-name=x,filename={img}',
              '--blockdev', f'file,node-name=x,filename={img}'],
             f"--blockdev file,node-name=x,filename={img}: Duplicate nodes "
             "with node-name='x'"),
            (['--monitor', 'chardev=zz'],
             '--monitor chardev=zz: chardev "zz" not found'),
            (['--chardev', f'socket,id=m,path={nbd},server=on,wait=off',
              '--monitor', 'chardev=m,mode=readline'],
             '--monitor chardev=m,mode=readline: Only QMP is supported'),
            (['--chardev', 'socket,id=m'],
             "--chardev socket,id=m: Parameter 'path' is missing"),
            (['--chardev', 'file,id=m,path=/tmp/x'],
             "--chardev file,id=m,path=/tmp/x: chardev backend 'file' is not "
             "supported (only 'socket')"),
            (['--pidfile', '/nonexistent/dir/p.pid'],
             "cannot create PID file: Could not create "
             "'/nonexistent/dir/p.pid': No such file or directory"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                rc, out, err = run_qsd(*args, cwd=self.tmp)
                self.assertEqual(rc, 1)
                self.assertEqual(err, f'qemu-storage-daemon: {msg}\n')
                self.assertEqual(out, '')

    def test_chardev_wait(self):
        """wait=on: nothing else happens until the first client connects."""
        sock = self.path('wait.sock')
        pid = self.path('p.pid')
        p = subprocess.Popen([QSD, '--chardev', f'socket,id=m,path={sock},'
                              'server=on', '--monitor', 'chardev=m',
                              '--pidfile', pid], stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.exists(sock), 'the socket')
            time.sleep(0.2)
            self.assertFalse(os.path.exists(pid))
            c = QMP(sock)
            wait_for(lambda: os.path.exists(pid), 'the pidfile')
            self.assertEqual(c.ok('quit'), {})
            c.close()
            self.assertEqual(p.wait(timeout=TIMEOUT), 0)
            self.assertIn(b'waiting for a connection', p.stderr.read())
        finally:
            p.kill()
            p.wait()
            p.stderr.close()


class TestLifecycle(QsdTestCase):

    def test_pidfile(self):
        d = self.daemon()
        with open(d.pidfile) as f:
            self.assertEqual(f.read(), f'{d.proc.pid}\n')
        rc, out, err = run_qsd('--pidfile', d.pidfile)
        self.assertEqual(rc, 1)
        self.assertEqual(err, 'qemu-storage-daemon: cannot create PID file: '
                         'Cannot lock pid file: Resource temporarily '
                         'unavailable\n')
        d.qmp().ok('quit')
        self.assert_clean_exit(d)

    def test_daemonize(self):
        img = self.raw_image('a.raw')
        pid = self.path('d.pid')
        sock = self.path('qmp.sock')
        p = subprocess.run([QSD, '--daemonize', '--pidfile', pid,
                            '--blockdev', f'file,node-name=f,filename={img}',
                            '--chardev',
                            f'socket,id=m,path={sock},server=on,wait=off',
                            '--monitor', 'm'],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, b'', b''))
        # Ready as soon as the parent has exited.
        with open(pid) as f:
            daemon_pid = int(f.read())
        c = QMP(sock)
        self.assertEqual(c.ok('query-named-block-nodes')[0]['node-name'],
                         'f')
        c.ok('quit')
        c.close()
        wait_for(lambda: not os.path.exists(f'/proc/{daemon_pid}'),
                 'the daemon to exit')
        self.assertFalse(os.path.exists(pid))
        self.assertFalse(os.path.exists(sock))

    def test_daemonize_failure(self):
        rc, out, err = run_qsd('--daemonize', '--blockdev',
                               'file,node-name=x,filename=/nonexistent')
        self.assertEqual(rc, 1)
        self.assertEqual(err, 'qemu-storage-daemon: --blockdev file,'
                         'node-name=x,filename=/nonexistent: Could not open '
                         "'/nonexistent': No such file or directory\n")

    def write_and_stop(self, stop):
        """Write over NBD, stop the daemon with stop(d, client), check that
        it exited cleanly and the data reached the image."""
        img = self.raw_image('a.raw', '2M')
        expected = self.path('expected.raw')
        shutil.copy(img, expected)
        nbd = self.path('nbd.sock')
        d = self.daemon('--blockdev', f'raw,node-name=r,file.driver=file,'
                        f'file.filename={img},cache.no-flush=off',
                        '--nbd-server', f'addr.type=unix,addr.path={nbd}',
                        '--export', 'nbd,id=exp,node-name=r,writable=on')
        c = d.qmp()
        pattern = ['-c', 'write -P 0x42 0 1M', '-c', 'write -P 0x24 1536k 4k']
        qemu_io('-f', 'raw', *pattern, nbd_uri(nbd, 'r'))
        qemu_io('-f', 'raw', *pattern, expected)
        stop(d, c)
        ev = c.recv()
        self.assertEqual((ev['event'], ev['data']),
                         ('BLOCK_EXPORT_DELETED', {'id': 'exp'}))
        self.assert_clean_exit(d)
        self.assertFalse(os.path.exists(nbd))
        subprocess.run(['qemu-img', 'compare', '-q', '-f', 'raw', '-F', 'raw',
                        img, expected], check=True, timeout=TIMEOUT)

    def test_sigterm(self):
        self.write_and_stop(lambda d, c: d.proc.send_signal(signal.SIGTERM))

    def test_sigint(self):
        self.write_and_stop(lambda d, c: d.proc.send_signal(signal.SIGINT))

    def test_sighup(self):
        self.write_and_stop(lambda d, c: d.proc.send_signal(signal.SIGHUP))

    def test_quit(self):
        def quit(d, c):
            c.send_raw(b'{"execute": "quit"}')
        self.write_and_stop(quit)

    def test_options_in_order(self):
        """Exports see the nodes and server of earlier options only."""
        img = self.raw_image('a.raw')
        nbd = self.path('nbd.sock')
        rc, out, err = run_qsd('--nbd-server', f'addr.type=unix,addr.path='
                               f'{nbd}', '--export', 'nbd,id=e,node-name=r',
                               '--blockdev', f'file,node-name=r,filename={img}')
        self.assertEqual(rc, 1)
        self.assertIn("Cannot find device='' nor node-name='r'", err)


if __name__ == '__main__':
    unittest.main()

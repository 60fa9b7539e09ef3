"""Helpers for the qemu-storage-daemon tests: start a daemon, talk QMP.

Environment (set by tests/qsd/meson.build):
  QSD           our qemu-storage-daemon binary
  SRCDIR        the source tree (for qapi/)
  OUR_QEMU_IMG  our qemu-img (creates and checks deduplicated images)
Stock QEMU tools (qemu-img, qemu-io) come from PATH.
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

QSD = os.environ.get('QSD', 'build/storage-daemon/qemu-storage-daemon')
SRCDIR = os.environ.get('SRCDIR', '.')
OUR_QEMU_IMG = os.environ.get('OUR_QEMU_IMG')
TIMEOUT = 10


def wait_for(cond, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.01)


class QMP:
    """One QMP client connection; messages are dicts."""

    def __init__(self, path, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = b''
        self.events = []
        self.greeting = self.recv()
        if negotiate:
            assert self.cmd('qmp_capabilities') == {'return': {}}

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_line(self):
        while b'\r\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('QMP connection closed')
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def recv(self):
        return json.loads(self.recv_line())

    def reply(self):
        """The next reply; events met on the way are kept in self.events."""
        while True:
            msg = self.recv()
            if 'event' in msg:
                self.events.append(msg)
            else:
                return msg

    def cmd(self, name, args=None, **extra):
        req = {'execute': name, **extra}
        if args is not None:
            req['arguments'] = args
        self.send_raw(json.dumps(req).encode())
        return self.reply()

    def ok(self, name, args=None):
        rsp = self.cmd(name, args)
        if 'return' not in rsp:
            raise AssertionError(f'{name} {args} failed: {rsp}')
        return rsp['return']

    def error(self, name, args=None):
        rsp = self.cmd(name, args)
        if 'error' not in rsp:
            raise AssertionError(f'{name} {args} did not fail: {rsp}')
        return rsp['error']['desc']

    def closed_by_peer(self):
        """True once the server has closed the connection."""
        try:
            while True:
                r, _, _ = select.select([self.sock], [], [], TIMEOUT)
                if not r or not self.sock.recv(65536):
                    return bool(r)
        except ConnectionResetError:
            return True


class Daemon:
    """A qemu-storage-daemon with a QMP socket in a private directory."""

    def __init__(self, tmpdir, *args, monitor=True, pidfile=True):
        self.dir = tmpdir
        self.qmp_path = os.path.join(tmpdir, 'qmp.sock')
        self.pidfile = os.path.join(tmpdir, 'qsd.pid') if pidfile else None
        self.clients = []
        argv = [QSD]
        if monitor:
            argv += ['--chardev', f'socket,id=mon,path={self.qmp_path},'
                                  f'server=on,wait=off',
                     '--monitor', 'chardev=mon']
        if self.pidfile:
            argv += ['--pidfile', self.pidfile]
        argv += list(args)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=tmpdir)
        if self.pidfile:
            wait_for(lambda: os.path.exists(self.pidfile)
                     or self.proc.poll() is not None, 'the pidfile')
        elif monitor:
            wait_for(lambda: os.path.exists(self.qmp_path)
                     or self.proc.poll() is not None, 'the QMP socket')
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f'daemon failed: {err.decode()}')

    def qmp(self, negotiate=True):
        c = QMP(self.qmp_path, negotiate)
        self.clients.append(c)
        return c

    def wait(self):
        """Exit status once the daemon has ended; stderr is checked empty."""
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        self.stderr = err.decode()
        return self.proc.returncode

    def kill(self):
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.communicate()
            # SIGKILL leaves the files a clean exit would remove.
            for f in (self.pidfile, self.qmp_path):
                if f and os.path.exists(f):
                    os.unlink(f)


def run_qsd(*args, cwd=None):
    """Run the daemon to completion (for option errors): (rc, out, err)."""
    p = subprocess.run([QSD, *args], capture_output=True, text=True,
                       timeout=TIMEOUT, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def qemu_img(*args):
    return subprocess.run(['qemu-img', *args], capture_output=True,
                          text=True, timeout=TIMEOUT, check=True).stdout


def qemu_io(*args, check=True):
    p = subprocess.run(['qemu-io', *args], capture_output=True, text=True,
                       timeout=TIMEOUT)
    if check and (p.returncode or 'fail' in p.stdout.lower()):
        raise AssertionError(f'qemu-io {args}: {p.stdout}{p.stderr}')
    return p.stdout


def nbd_uri(sock, name):
    return f'nbd+unix:///{name}?socket={sock}'


def our_qemu_img(*args):
    """Our qemu-img: the CompletedProcess, output as text."""
    return subprocess.run([OUR_QEMU_IMG, *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def qcow2_export_args(img, nbd, node='q'):
    """Daemon arguments serving qcow2 image img, writable, as export node."""
    return ['--blockdev', f'qcow2,node-name={node},file.driver=file,'
                          f'file.filename={img}',
            '--nbd-server', f'addr.type=unix,addr.path={nbd}',
            '--export', f'nbd,id=e,node-name={node},writable=on']


class QsdTestCase(unittest.TestCase):
    """Gives each test a scratch directory and kills leftover daemons."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='qsd-test-')
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def daemon(self, *args, **kwargs):
        d = Daemon(self.tmp, *args, **kwargs)
        self.daemons.append(d)
        return d

    def raw_image(self, name, size='1M'):
        qemu_img('create', '-q', '-f', 'raw', self.path(name), size)
        return self.path(name)

    def dedup_image(self, name, size, *opts):
        """A qcow2 image with 4 KiB clusters deduplicated by our qemu-img;
        skips the test when our tools cannot make one."""
        if not OUR_QEMU_IMG:
            self.skipTest('our qemu-img not built')
        o = ','.join(['dedup=sha256', 'cluster_size=4k', *opts])
        p = our_qemu_img('create', '-q', '-f', 'qcow2', '-o', o,
                         self.path(name), size)
        if p.returncode:
            self.skipTest('no dedup support: ' + p.stderr.strip())
        return self.path(name)

    def assert_qcow2_clean(self, img, dedup):
        """Our check finds nothing; stock QEMU's finds no corruption and,
        on a deduplicated image, only the documented leaks (the clusters
        of our index, unknown to it)."""
        if OUR_QEMU_IMG:
            p = our_qemu_img('check', img)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn('No errors were found on the image.', p.stdout)
        p = subprocess.run(['qemu-img', 'check', '--output=json', img],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertIn(p.returncode, (0, 3) if dedup else (0,),
                      p.stdout + p.stderr)
        self.assertNotIn('ERROR', p.stdout + p.stderr)
        res = json.loads(p.stdout)
        self.assertEqual(res.get('corruptions', 0), 0, p.stdout)
        self.assertEqual(res['check-errors'], 0, p.stdout)
        if not dedup:
            self.assertEqual(res.get('leaks', 0), 0, p.stdout)

    def assert_same_data(self, img, expected):
        """Stock qemu-img compare of qcow2 img with a raw file."""
        p = subprocess.run(['qemu-img', 'compare', '-f', 'qcow2', '-F',
                            'raw', img, expected], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def assert_clean_exit(self, d):
        self.assertEqual(d.wait(), 0, d.stderr)
        self.assertEqual(d.stderr, '')
        if d.pidfile:
            self.assertFalse(os.path.exists(d.pidfile))
        self.assertFalse(os.path.exists(d.qmp_path))

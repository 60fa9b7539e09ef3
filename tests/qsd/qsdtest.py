"""Helpers for the qemu-storage-daemon tests: start a daemon, talk QMP.

Environment (set by tests/qsd/meson.build):
  QSD       our qemu-storage-daemon binary
  SRCDIR    the source tree (for qapi/)
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

    def assert_clean_exit(self, d):
        self.assertEqual(d.wait(), 0, d.stderr)
        self.assertEqual(d.stderr, '')
        if d.pidfile:
            self.assertFalse(os.path.exists(d.pidfile))
        self.assertFalse(os.path.exists(d.qmp_path))

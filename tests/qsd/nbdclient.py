"""A small NBD client for the storage daemon tests (Python standard library).

It speaks only what a load or crash test needs: the fixed-newstyle
handshake with NBD_OPT_GO, then simple replies (structured replies are never
negotiated, so a READ's data follows its simple reply).  Several requests
may be in flight: submit() sends one and returns its handle, complete()
collects replies, which the server may send in any order.

Wire layout (big endian; docs: /work/shared/docs/REFERENCE-NOTES.md sec. 3):
  server greeting   u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
  client flags      u32 (C_FIXED_NEWSTYLE, C_NO_ZEROES when offered)
  option            u64 IHAVEOPT, u32 option, u32 length, data
  option reply      u64 REP_MAGIC, u32 option, u32 type, u32 length, data
  request           u32 REQ_MAGIC, u16 flags, u16 type, u64 handle,
                    u64 offset, u32 length, then the data of a WRITE
  simple reply      u32 SIMPLE_MAGIC, u32 error, u64 handle, then the data
                    of a successful READ
"""

import socket
import struct

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REP_MAGIC = 0x3e889045565a9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR = 1 << 31
INFO_EXPORT = 0

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_WRITE_ZEROES = 6

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1

TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_SEND_WRITE_ZEROES = 1 << 6
TFLAG_CAN_MULTI_CONN = 1 << 8

REQ_HEADER = struct.Struct('>IHHQQI')
SIMPLE_REPLY = struct.Struct('>IIQ')


class NBDError(Exception):
    """A request answered with a non-zero NBD error value."""

    def __init__(self, cmd, error):
        super().__init__(f'NBD command {cmd} failed with error {error}')
        self.error = error


class NBDClient:
    """One connection to one export, in the transmission phase."""

    def __init__(self, path, name, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_handle = 1
        self.pending = {}           # handle -> (cmd, read length)
        self._handshake(name)

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f'NBD server closed the connection after '
                               f'{len(buf)} of {n} bytes')
            buf += chunk
        return bytes(buf)

    def _handshake(self, name):
        magic, opt_magic, hflags = struct.unpack('>QQH', self._recv(18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise ValueError(f'not a newstyle NBD server: {magic:#x} '
                             f'{opt_magic:#x}')
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise ValueError('server is not fixed-newstyle')
        self.sock.sendall(struct.pack(
            '>I', FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)))
        name = name.encode()
        data = struct.pack('>I', len(name)) + name + struct.pack('>H', 0)
        self.sock.sendall(struct.pack('>QII', IHAVEOPT, OPT_GO, len(data))
                          + data)
        self.size = None
        while True:
            magic, opt, rtype, length = struct.unpack('>QIII',
                                                      self._recv(20))
            payload = self._recv(length)
            if magic != REP_MAGIC or opt != OPT_GO:
                raise ValueError(f'bad option reply {magic:#x} {opt}')
            if rtype & REP_ERR:
                raise ValueError(f'NBD_OPT_GO refused ({rtype:#x}): '
                                 f'{payload.decode(errors="replace")}')
            if rtype == REP_INFO and struct.unpack('>H', payload[:2])[0] \
                    == INFO_EXPORT:
                self.size, self.tflags = struct.unpack('>QH', payload[2:12])
            elif rtype == REP_ACK:
                break
        if self.size is None:
            raise ValueError('NBD_OPT_GO succeeded without NBD_INFO_EXPORT')

    def send_header(self, cmd, offset, length, flags=0, data=b''):
        """Send a request, without its WRITE data if not given (a test
        may send it, or part of it, itself); returns its handle."""
        handle = self.next_handle
        self.next_handle += 1
        self.sock.sendall(REQ_HEADER.pack(REQ_MAGIC, flags, cmd, handle,
                                          offset, length) + data)
        return handle

    def submit(self, cmd, offset, length, data=b'', flags=0):
        """Send one request whose reply complete() will collect."""
        handle = self.send_header(cmd, offset, length, flags, data)
        self.pending[handle] = (cmd, length if cmd == CMD_READ else 0)
        return handle

    def complete(self):
        """Wait for every reply in flight: {handle: data or NBDError}."""
        done = {}
        while self.pending:
            magic, error, handle = SIMPLE_REPLY.unpack(
                self._recv(SIMPLE_REPLY.size))
            if magic != SIMPLE_MAGIC or handle not in self.pending:
                raise ValueError(f'bad reply: magic {magic:#x} handle '
                                 f'{handle}')
            cmd, rlen = self.pending.pop(handle)
            if error:
                done[handle] = NBDError(cmd, error)
            else:
                done[handle] = self._recv(rlen) if rlen else b''
        return done

    def _one(self, cmd, offset, length, data=b'', flags=0):
        handle = self.submit(cmd, offset, length, data, flags)
        result = self.complete()[handle]
        if isinstance(result, NBDError):
            raise result
        return result

    def read(self, offset, length):
        return self._one(CMD_READ, offset, length)

    def write(self, offset, data, fua=False):
        self._one(CMD_WRITE, offset, len(data), data,
                  CMD_FLAG_FUA if fua else 0)

    def write_zeroes(self, offset, length, flags=0):
        self._one(CMD_WRITE_ZEROES, offset, length, flags=flags)

    def flush(self):
        self._one(CMD_FLUSH, 0, 0)

    def disconnect(self):
        """The polite end: NBD_CMD_DISC (no reply), then close."""
        self.send_header(CMD_DISC, 0, 0)
        self.close()

    def close(self):
        self.sock.close()

#!/usr/bin/env python3
"""QMP protocol: greeting, negotiation, request envelope, framing, limits,
several clients."""

import json
import socket
import unittest

from qsdtest import QsdTestCase, QMP


class TestQmpProtocol(QsdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.daemon()

    def test_greeting(self):
        c = self.d.qmp(negotiate=False)
        qmp = c.greeting['QMP']
        self.assertEqual(list(c.greeting), ['QMP'])
        self.assertEqual(qmp['version']['qemu'],
                         {'micro': 0, 'minor': 2, 'major': 7})
        self.assertIsInstance(qmp['version']['package'], str)
        self.assertEqual(qmp['capabilities'], ['oob'])

    def test_wire_format(self):
        """Compact JSON in QEMU's layout, each message ending in CRLF."""
        c = self.d.qmp(negotiate=False)
        c.send_raw(b'{"execute": "qmp_capabilities", "id": 7}')
        self.assertEqual(c.recv_line(), b'{"return": {}, "id": 7}')
        c.send_raw(b'{"execute": "nope", "id": "x"}')
        self.assertEqual(c.recv_line(),
                         b'{"id": "x", "error": {"class": "CommandNotFound", '
                         b'"desc": "The command nope has not been found"}}')

    def test_negotiation(self):
        c = self.d.qmp(negotiate=False)
        rsp = c.cmd('query-version')
        self.assertEqual(rsp['error']['class'], 'CommandNotFound')
        self.assertEqual(rsp['error']['desc'], "Expecting capabilities "
                         "negotiation with 'qmp_capabilities'")
        self.assertEqual(c.error('qmp_capabilities', {'enable': ['foo']}),
                         "Parameter 'enable[0]' does not accept value 'foo'")
        self.assertEqual(c.error('qmp_capabilities', {'enable': 'oob'}),
                         "Invalid parameter type for 'enable', expected: "
                         "array")
        self.assertEqual(c.cmd('qmp_capabilities', {'enable': []}),
                         {'return': {}})
        rsp = c.cmd('qmp_capabilities')
        self.assertEqual(rsp['error'], {
            'class': 'CommandNotFound',
            'desc': 'Capabilities negotiation is already complete, command '
                    'ignored'})
        self.assertIn('qemu', c.ok('query-version'))

    def test_oob(self):
        c = self.d.qmp(negotiate=False)
        self.assertEqual(c.ok('qmp_capabilities', {'enable': ['oob']}), {})
        c.send_raw(b'{"exec-oob": "query-version", "id": 1}')
        self.assertEqual(c.reply(), {'id': 1, 'error': {
            'class': 'GenericError',
            'desc': 'The command query-version does not support OOB'}})
        c.send_raw(b'{"exec-oob": "quit", "execute": "quit"}')
        self.assertEqual(c.reply()['error']['desc'], "QMP input member "
                         "'execute' clashes with 'exec-oob'")
        d = self.d.qmp()
        d.send_raw(b'{"exec-oob": "query-version"}')
        self.assertEqual(d.reply()['error']['desc'],
                         "QMP input member 'exec-oob' is unexpected")

    def test_id_echo(self):
        c = self.d.qmp()
        for ident in [1, 'abc', None, {'a': [1, {'b': True}]}, [1, 2], 1.5]:
            rsp = c.cmd('query-version', id=ident)
            self.assertEqual(rsp['id'], ident)
            rsp = c.cmd('no-such-command', id=ident)
            self.assertEqual(rsp['id'], ident)
            self.assertEqual(list(rsp), ['id', 'error'])

    def bad(self, c, raw, desc):
        c.send_raw(raw)
        rsp = c.reply()
        self.assertEqual(rsp['error']['class'], 'GenericError', rsp)
        self.assertEqual(rsp['error']['desc'], desc)

    def test_bad_envelope(self):
        c = self.d.qmp()
        self.bad(c, b'[1, 2]', 'QMP input must be a JSON object')
        self.bad(c, b'"abc"', 'QMP input must be a JSON object')
        self.bad(c, b'42\n', 'QMP input must be a JSON object')
        self.bad(c, b'{"foo": 1}', "QMP input member 'foo' is unexpected")
        self.bad(c, b'{"execute": 1}',
                 "QMP input member 'execute' must be a string")
        self.bad(c, b'{"execute": "query-version", "arguments": [1]}',
                 "QMP input member 'arguments' must be an object")
        self.bad(c, b'{"execute": "query-version", "arguments": null}',
                 "QMP input member 'arguments' must be an object")
        self.bad(c, b'{"id": 3}', "QMP input lacks member 'execute'")
        self.bad(c, b'{}', "QMP input lacks member 'execute'")
        self.assertIn('qemu', c.ok('query-version'))

    def test_bad_json(self):
        c = self.d.qmp()
        for raw in [b'garbage\n', b'{"execute": }', b'{"a" "b"}', b'}',
                    b'{"execute": "query-version",}', b'{"x": tru}',
                    b'{"s": "\xff\xfe"}']:
            c.send_raw(raw)
            rsp = c.reply()
            self.assertTrue(rsp['error']['desc'].startswith(
                'JSON parse error, '), rsp)
        # The connection is still in sync and usable.
        self.assertIn('qemu', c.ok('query-version'))

    def test_framing(self):
        """Requests split across writes, several per write, any spacing."""
        c = self.d.qmp()
        c.send_raw(b'{"execute": "query-ver')
        c.send_raw(b'sion", "id": 1}{"execute":"query-version","id":2}\n\n'
                   b'  \t{"execute": "query-version", "id": "}{\\"x"}\r\n')
        self.assertEqual([c.reply()['id'] for _ in range(3)],
                         [1, 2, '}{"x'])
        msg = b'{"execute": "query-version", "id": 5}'
        for b in msg:
            c.send_raw(bytes([b]))
        self.assertEqual(c.reply()['id'], 5)

    def test_oversized_input(self):
        """A request that never ends is cut off at 16 MiB, memory bounded;
        other clients carry on."""
        victim = self.d.qmp()
        other = self.d.qmp()
        victim.send_raw(b'{"execute": "query-version", "arguments": {"x": "')
        chunk = b'a' * (1 << 20)
        try:
            for _ in range(20):
                victim.send_raw(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertTrue(victim.closed_by_peer())
        self.assertIn('qemu', other.ok('query-version'))

    def test_deep_nesting(self):
        c = self.d.qmp()
        c.send_raw(b'[' * 5000)
        rsp = c.reply()
        self.assertIn('nested deeper', rsp['error']['desc'])
        self.assertTrue(c.closed_by_peer())
        self.assertIn('qemu', self.d.qmp().ok('query-version'))

    def test_large_valid_request(self):
        c = self.d.qmp()
        big = 'x' * (4 << 20)
        rsp = c.cmd('query-version', id=big)
        self.assertEqual(rsp['id'], big)

    def test_concurrent_clients(self):
        clients = [self.d.qmp(negotiate=False) for _ in range(5)]
        for i, c in enumerate(clients):
            if i % 2 == 0:
                c.ok('qmp_capabilities')
        for i, c in enumerate(clients):
            rsp = c.cmd('query-version', id=i)
            self.assertEqual(rsp['id'], i)
            self.assertEqual('return' in rsp, i % 2 == 0)
        clients[0].send_raw(b'garbage\n')
        clients[0].close()
        self.assertIn('qemu', clients[2].ok('query-version'))

    def test_sequential_clients(self):
        for _ in range(3):
            c = self.d.qmp()
            c.ok('query-version')
            c.close()
        # A client that disconnects mid-request does no harm either.
        c = self.d.qmp()
        c.send_raw(b'{"execute": "query-')
        c.close()
        self.assertIn('qemu', self.d.qmp().ok('query-version'))

    def test_events_only_after_negotiation(self):
        img = self.raw_image('a.raw')
        negotiated = self.d.qmp()
        fresh = self.d.qmp(negotiate=False)
        negotiated.ok('blockdev-add', {'driver': 'file', 'node-name': 'f',
                                       'filename': img})
        negotiated.ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.path('nbd.sock')}}})
        negotiated.ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                           'node-name': 'f'})
        negotiated.ok('block-export-del', {'id': 'e'})
        self.assertEqual(len(negotiated.events), 1)
        ev = negotiated.events[0]
        self.assertEqual(list(ev), ['timestamp', 'event', 'data'])
        self.assertEqual(ev['event'], 'BLOCK_EXPORT_DELETED')
        self.assertEqual(ev['data'], {'id': 'e'})
        self.assertEqual(set(ev['timestamp']), {'seconds', 'microseconds'})
        # The un-negotiated client got no event: its next message is the
        # reply to its own request.
        fresh.send_raw(b'{"execute": "qmp_capabilities"}')
        self.assertEqual(fresh.recv(), {'return': {}})

    def test_pretty(self):
        self.d.kill()
        d = self.daemon('--chardev', 'socket,id=m2,path=%s,server=on,wait=off'
                        % self.path('pretty.sock'),
                        '--monitor', 'chardev=m2,pretty=on', monitor=False)
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.path('pretty.sock'))
        data = b''
        while not data.endswith(b'}\r\n'):
            data += s.recv(4096)
        self.assertTrue(data.startswith(b'{\r\n    "QMP": {\r\n'))
        s.close()
        self.assertEqual(json.loads(data)['QMP']['capabilities'], ['oob'])


if __name__ == '__main__':
    unittest.main()

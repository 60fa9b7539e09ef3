#!/usr/bin/env python3
"""The dispatcher implements exactly the QAPI schema in qapi/.

This reads the schema files itself (not through monitor/qapi-gen.py), then
asks a running daemon:
  - query-commands must list exactly the schema's commands;
  - for every command, probes with deliberately wrong arguments must get
    the errors the schema predicts, which pins down each argument's name,
    that it is accepted, and whether it is required.
The probes never run a command: each carries a missing required argument,
a wrongly typed one, or an unknown one.
"""

import json
import os
import unittest

from qsdtest import QsdTestCase, SRCDIR

PROBE = 'x-schema-probe'
WRONG = {'str': 12345, 'bool': 'yes', 'int': 'x', 'int64': 'x',
         'uint32': 'x', 'uint64': 'x', 'size': 'x', 'number': 'x'}
EXPECTED_WORDS = {'str': 'expected: string', 'bool': 'expected: boolean',
                  'int': 'expected: integer', 'int64': 'expected: integer',
                  'uint32': 'expects uint64', 'uint64': 'expects uint64',
                  'size': 'expects uint64', 'number': 'expected: number'}


def load_schema(path):
    """Expressions of a schema file and its includes, in order."""
    exprs = []
    with open(path, encoding='utf-8') as f:
        text = ''.join(l for l in f if not l.lstrip().startswith('#'))
    text = text.replace("'", '"')
    dec = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return exprs
        expr, pos = dec.raw_decode(text, pos)
        if 'include' in expr:
            exprs += load_schema(os.path.join(os.path.dirname(path),
                                              expr['include']))
        else:
            exprs.append(expr)


class Schema:
    def __init__(self, path):
        self.exprs = load_schema(path)
        self.types = {}
        self.commands = {}
        for e in self.exprs:
            for meta in ('enum', 'struct', 'union'):
                if meta in e:
                    self.types[e[meta]] = e
            if 'command' in e:
                self.commands[e['command']] = e

    def members(self, decl):
        """[(name, type, required)] of inline members or a type name; for
        a union, the base members (the branch depends on the value)."""
        if isinstance(decl, dict):
            return [(k.lstrip('*'), t, not k.startswith('*'))
                    for k, t in decl.items()]
        e = self.types[decl]
        if 'union' in e:
            return self.members(e['base'])
        return (self.members(e['base']) if 'base' in e else []) + \
            self.members(e['data'])

    def wrong_value(self, typ):
        """A value of the wrong JSON type for typ, and a phrase its error
        message contains."""
        if isinstance(typ, list):
            return 1, 'expected: array'
        if typ in WRONG:
            return WRONG[typ], EXPECTED_WORDS[typ]
        if 'enum' in self.types[typ]:
            return 12345, 'expected: string'
        return 1, 'expected: object'


class TestSchema(QsdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.schema = Schema(os.path.join(SRCDIR, 'qapi', 'qapi-schema.json'))

    def setUp(self):
        super().setUp()
        self.c = self.daemon().qmp()

    def test_command_names(self):
        names = [c['name'] for c in self.c.ok('query-commands')]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(sorted(names), sorted(self.schema.commands))

    def test_arguments(self):
        for name, expr in self.schema.commands.items():
            if name == 'qmp_capabilities':
                continue    # refused after negotiation; see test-qmp.py
            members = self.schema.members(expr.get('data', {}))
            with self.subTest(command=name):
                self.probe(name, members)

    def probe(self, name, members):
        """For k = 0..n send members[k:] wrongly typed plus an unknown
        member: the first required member before k must be reported
        missing; failing that, members[k] must be reported mistyped; with
        neither, the unknown member must be reported (unless the command
        passes undeclared members through)."""
        for k in range(len(members) + 1):
            args = {PROBE: 0}
            for m, typ, _ in members[k:]:
                args[m] = self.schema.wrong_value(typ)[0]
            desc = self.c.error(name, args)
            missing = [m for m, _, req in members[:k] if req]
            if missing:
                self.assertEqual(desc, f"Parameter '{missing[0]}' is "
                                 "missing", args)
            elif k < len(members):
                m, typ, _ = members[k]
                self.assertIn(f"'{m}'", desc, args)
                self.assertIn(self.schema.wrong_value(typ)[1], desc, args)
            else:
                self.assertEqual(desc, f"Parameter '{PROBE}' is unexpected",
                                 args)

    def test_unknown_commands(self):
        for name in ['query-block', 'blockdev-create', 'device_add', '']:
            rsp = self.c.cmd(name)
            self.assertEqual(rsp['error']['class'], 'CommandNotFound')


if __name__ == '__main__':
    unittest.main()

#!/usr/bin/env python3
"""Compile the QAPI schema (qapi/qapi-schema.json) into a C string of JSON.

usage: qapi-gen.py SCHEMA OUTPUT.c

The schema language is described at the top of qapi/qapi-schema.json.  This
script resolves 'include' expressions, checks that every expression is
well formed and that every type it names exists, and writes

    const char qapi_schema_json[] = "[ {...}, ... ]";

with the expressions in file order.  The daemon parses that string with
json-glib at start-up (monitor/qapi-schema.c), so the schema is the only
place where commands and their arguments are declared.
"""

import json
import os
import sys

BUILTINS = {'str', 'bool', 'int', 'int64', 'uint32', 'uint64', 'size',
            'number', 'any'}
META = {
    'enum': ({'data'}, set()),
    'struct': ({'data'}, {'base'}),
    'union': ({'base', 'discriminator', 'data'}, set()),
    'command': (set(), {'data', 'boxed', 'returns', 'gen'}),
    'event': (set(), {'data'}),
    'include': (set(), set()),
}


class SchemaError(Exception):
    pass


def load_file(path, seen):
    """Expressions of path and the files it includes, in order."""
    path = os.path.realpath(path)
    if path in seen:
        return []
    seen.add(path)
    with open(path, encoding='utf-8') as f:
        lines = [l for l in f if not l.lstrip().startswith('#')]
    # Schema strings never contain quotes, so swapping ' for " yields JSON.
    text = ''.join(lines).replace("'", '"')
    decoder = json.JSONDecoder(object_pairs_hook=no_duplicates)
    exprs, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        try:
            expr, pos = decoder.raw_decode(text, pos)
        except ValueError as e:
            raise SchemaError(f'{path}: {e}') from e
        if not isinstance(expr, dict):
            raise SchemaError(f'{path}: expression is not an object')
        if 'include' in expr:
            sub = os.path.join(os.path.dirname(path), expr['include'])
            exprs += load_file(sub, seen)
        else:
            exprs.append((path, expr))
    return exprs


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f'duplicate key {sorted(dup)[0]!r}')
    return dict(pairs)


def meta_of(path, expr):
    metas = [k for k in expr if k in META]
    if len(metas) != 1:
        raise SchemaError(f'{path}: expression needs exactly one of '
                          f'{sorted(META)}')
    meta = metas[0]
    required, optional = META[meta]
    for key in expr:
        if key != meta and key not in required | optional:
            raise SchemaError(f"{path}: {meta} '{expr[meta]}' has unknown "
                              f"key '{key}'")
    for key in required:
        if key not in expr:
            raise SchemaError(f"{path}: {meta} '{expr[meta]}' lacks '{key}'")
    return meta


def check_type(where, typ, types, allow_inline):
    if isinstance(typ, list):
        if len(typ) != 1:
            raise SchemaError(f'{where}: a list type names one element type')
        check_type(where, typ[0], types, False)
    elif isinstance(typ, dict):
        if not allow_inline:
            raise SchemaError(f'{where}: inline members are not allowed here')
        for name, mtyp in typ.items():
            check_type(f'{where}.{name.lstrip("*")}', mtyp, types, False)
    elif typ not in BUILTINS and typ not in types:
        raise SchemaError(f"{where}: unknown type '{typ}'")


def check(exprs):
    types = {}
    names = set()
    for path, expr in exprs:
        meta = meta_of(path, expr)
        name = expr[meta]
        if (meta, name) in names or (meta != 'command' and name in types):
            raise SchemaError(f"{path}: {meta} '{name}' is defined twice")
        names.add((meta, name))
        if meta in ('enum', 'struct', 'union'):
            types[name] = expr
    for path, expr in exprs:
        meta = meta_of(path, expr)
        where = f'{path}: {meta} {expr[meta]}'
        if meta == 'enum':
            if not all(isinstance(v, str) for v in expr['data']):
                raise SchemaError(f'{where}: values must be strings')
        elif meta in ('struct', 'event'):
            check_type(where, expr.get('data', {}), types, True)
            if 'base' in expr and types.get(expr['base'], {}).get('struct') \
                    is None:
                raise SchemaError(f"{where}: base must be a struct")
        elif meta == 'union':
            check_union(where, expr, types)
        elif meta == 'command':
            check_type(where, expr.get('data', {}), types, True)
            if expr.get('boxed') and not isinstance(expr.get('data'), str):
                raise SchemaError(f'{where}: boxed needs a type name')
            if 'returns' in expr:
                check_type(where, expr['returns'], types, False)


def check_union(where, expr, types):
    base = expr['base']
    check_type(where, base, types, True)
    members = base if isinstance(base, dict) else types[base]['data']
    disc = expr['discriminator']
    enum = types.get(members.get(disc))
    if enum is None or 'enum' not in enum:
        raise SchemaError(f"{where}: discriminator '{disc}' must be a "
                          f"required enum member of the base")
    for value, branch in expr['data'].items():
        if value not in enum['data']:
            raise SchemaError(f"{where}: '{value}' is not a value of "
                              f"'{enum['enum']}'")
        if types.get(branch, {}).get('struct') is None:
            raise SchemaError(f"{where}: branch '{value}' must be a struct")


def c_string(text):
    out = []
    for chunk in (text[i:i + 72] for i in range(0, len(text), 72)):
        esc = chunk.replace('\\', '\\\\').replace('"', '\\"')
        out.append(f'    "{esc}"')
    return '\n'.join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    try:
        exprs = load_file(sys.argv[1], set())
        check(exprs)
    except SchemaError as e:
        sys.exit(f'qapi-gen: {e}')
    text = json.dumps([e for _, e in exprs], separators=(',', ':'))
    with open(sys.argv[2], 'w', encoding='utf-8') as f:
        f.write('/* Generated by monitor/qapi-gen.py from qapi/; '
                'do not edit. */\n')
        f.write('#include "qapi-schema.h"\n\n')
        f.write('const char qapi_schema_json[] =\n')
        f.write(c_string(text) + ';\n')


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Ideal cluster-level deduplication of a set of raw images.

Counts, independently of our qcow2 code, how many distinct non-zero
chunks of CLUSTER bytes the images hold together: the best any
cluster-granular deduplication can reach.  Prints one JSON object:
  {"cluster-size", "total-clusters", "zero-clusters", "unique-clusters",
   "ideal-ratio"}   with ideal-ratio = non-zero clusters / unique clusters.

usage: ideal-dedup.py CLUSTER_SIZE IMAGE...
"""
import hashlib
import json
import sys


def main():
    cs = int(sys.argv[1])
    seen = set()
    total = zero = 0
    zeroes = bytes(cs)
    for path in sys.argv[2:]:
        with open(path, 'rb') as f:
            while True:
                chunk = f.read(cs)
                if not chunk:
                    break
                if len(chunk) < cs:
                    chunk += bytes(cs - len(chunk))
                total += 1
                if chunk == zeroes:
                    zero += 1
                    continue
                seen.add(hashlib.sha256(chunk).digest())
    nonzero = total - zero
    print(json.dumps({
        'cluster-size': cs, 'total-clusters': total, 'zero-clusters': zero,
        'unique-clusters': len(seen),
        'ideal-ratio': round(nonzero / len(seen), 4) if seen else 0.0,
    }))


if __name__ == '__main__':
    main()

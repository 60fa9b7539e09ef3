#!/bin/sh
# Deduplication granularity table: for 4, 16 and 64 KiB clusters, convert a
# set of similar ext4 disk images (scripts/make-disk-images.sh) into one
# dedup qcow2 and report the ratio achieved against the ideal ratio
# (tests/bench/ideal-dedup.py, independent of our code), the convert
# throughput, the metadata size and the index RAM.  Not a test.
#
#   tests/bench/dedup-granularity.sh BUILD_DIR [N_IMAGES]
set -eu

build=$(cd "${1:-build}" && pwd)
n=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
data="$build/demo-images"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/dedup-gran.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$here/../../scripts/make-disk-images.sh" "$data" "$n" >/dev/null
images=$(for k in $(seq 1 "$n"); do printf '%s ' "$data/disk-$k.img"; done)
logical=$(cat $images | wc -c)

printf '%-8s %8s %8s %8s %10s %10s %12s %10s\n' cluster ideal achieved \
    "of-ideal" "MiB/s" "meta-MiB" "index-RAM" "RAM/entry"
for cs in 4096 16384 65536; do
    ideal=$(python3 "$here/ideal-dedup.py" "$cs" $images)
    ideal_ratio=$(echo "$ideal" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ideal-ratio"])')
    nonzero=$(echo "$ideal" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total-clusters"]-d["zero-clusters"])')
    img="$work/g.qcow2"
    rm -f "$img"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$build/qemu-img" convert -O qcow2 -o "dedup=sha256,cluster_size=$cs" $images "$img"
    end=$(date +%s.%N)
    "$build/qemu-img" info --output=json "$img" > "$work/info.json"
    python3 - "$work/info.json" "$cs" "$nonzero" "$ideal_ratio" "$logical" \
        "$start" "$end" "$(stat -c %b "$img")" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
cs, nonzero, ideal = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
logical, start, end = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
on_disk = int(sys.argv[8]) * 512
d = info['format-specific']['data']['dedup']
unique = d['unique-clusters']
achieved = nonzero / unique if unique else 0.0
meta = on_disk - unique * cs
ram = d['index-ram']
print(f"{cs // 1024:>5}KiB {ideal:8.3f} {achieved:8.3f} {achieved / ideal * 100:7.2f}% "
      f"{logical / (end - start) / 2**20:10.1f} {meta / 2**20:10.1f} "
      f"{ram:12d} {ram / max(unique, 1):10.2f}")
PY
done

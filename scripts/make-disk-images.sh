#!/bin/sh
# Build N similar "real" disk images: ext4 file systems filled from this
# machine's own files, the way several VMs installed from the same
# distribution differ.  Every image holds a shared base set of directories;
# image k also holds one directory of its own and a few MiB of its own
# seeded data, and the base is copied in a different order, so files land
# at different offsets in each image.  No root needed (mke2fs -d).
#
#   scripts/make-disk-images.sh OUTDIR [N] [SIZE_MIB]
#
# Writes OUTDIR/disk-1.img .. OUTDIR/disk-N.img (raw).
set -eu

out=${1:?usage: make-disk-images.sh OUTDIR [N] [SIZE_MIB]}
n=${2:-4}
size=${3:-384}

base_dirs="/usr/lib/python3.11 /usr/share/perl /usr/share/doc"
own_dirs="/usr/share/locale/de /usr/share/locale/fr /usr/share/locale/es
/usr/share/locale/it /usr/share/locale/ja /usr/share/locale/pt_BR
/usr/share/locale/ru /usr/share/locale/zh_CN"

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/mkdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

for k in $(seq 1 "$n"); do
    img="$out/disk-$k.img"
    [ -s "$img" ] && continue
    tree="$work/tree-$k"
    rm -rf "$tree"
    mkdir -p "$tree"
    # A different copy order per image moves files to other disk blocks.
    for d in $(printf '%s\n' $base_dirs | awk -v k="$k" \
               '{ print (NR * 7 + k) % 11, $0 }' | sort -n | cut -d' ' -f2); do
        [ -d "$d" ] && cp -a "$d" "$tree/$(echo "$d" | tr / _)" 2>/dev/null || true
    done
    own=$(printf '%s\n' $own_dirs | sed -n "$(( (k - 1) % 8 + 1 ))p")
    [ -d "$own" ] && cp -a "$own" "$tree/own" 2>/dev/null || true
    # Data no other image has: 4 MiB from a generator seeded by k.
    awk -v seed="$k" 'BEGIN { srand(seed);
        for (i = 0; i < 4 * 1024 * 64; i++) printf "%016x", int(rand() * 2^52) }' \
        > "$tree/unique-$k.dat"
    rm -f "$img"
    mke2fs -q -t ext4 -F -b 4096 -d "$tree" "$img" "${size}M" >/dev/null
    rm -rf "$tree"
    echo "made $img"
done

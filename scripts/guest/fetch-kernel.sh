#!/bin/sh
# Fetch Debian's cloud kernel for the test guest into a cache directory.
#
# usage: fetch-kernel.sh CACHE_DIR
#
# Leaves in CACHE_DIR/kernel:
#   vmlinuz        the kernel image
#   modules/*.ko   the virtio-blk driver and the modules it needs
#   modules/order  their names, each after the modules it depends on
#   version        the package the files came from
#
# The cloud kernel builds the serial console, PCI and initramfs support in,
# but virtio, virtio_pci and virtio_blk are modules, so the guest's /init
# has to load them.  No root is needed: `apt-get download` and `dpkg-deb -x`
# work as any user, given apt's package lists (scripts/install-deps.sh runs
# `apt-get update` on a fresh machine).  Once the cache is filled it is used
# as is, so reruns need neither apt nor the network.
set -eu

CACHE=${1:?usage: $0 CACHE_DIR}
OUT=$CACHE/kernel
META=linux-image-cloud-amd64
# virtio_blk sits on the virtio bus; the PCI transport binds the device.
WANTED="virtio_blk virtio_pci"

[ -f "$OUT/version" ] && exit 0

die() {
    echo "fetch-kernel: $*" >&2
    exit 1
}

# The meta package only depends on the versioned package holding the files.
kernel_package() {
    apt-cache depends "$META" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' |
        head -n 1
}
pkg=$(kernel_package)
# Images that install their packages and then drop apt's lists lack them.
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -q >/dev/null 2>&1 || true
    pkg=$(kernel_package)
fi
[ -n "$pkg" ] || die "apt knows no $META (run 'apt-get update' first)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-kernel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >download.log 2>&1) ||
    die "apt-get download $pkg failed: $(tail -n 3 "$tmp/download.log")"
dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/root" ||
    die "cannot unpack $(basename "$tmp"/linux-image-*.deb)"

moddir=$(echo "$tmp"/root/lib/modules/*)
[ -d "$moddir" ] || die "$pkg has no modules directory"

# The package ships no modules.dep (depmod makes it at install time), so the
# dependencies come from each module's own modinfo section.
ko_path() {
    find "$moddir/kernel" -name "$1.ko" | head -n 1
}
ko_depends() {
    grep -a -o 'depends=[a-z0-9_,-]*' "$1" | head -n 1 |
        sed 's/^depends=//; s/,/ /g'
}

mkdir -p "$tmp/out/modules"
: >"$tmp/out/modules/order"
add_module() {
    grep -qx "$1" "$tmp/out/modules/order" && return 0
    ko=$(ko_path "$1")
    [ -n "$ko" ] || die "$pkg has no module $1"
    # Copy before recursing: the recursion reuses $ko.
    cp "$ko" "$tmp/out/modules/"
    for dep in $(ko_depends "$ko"); do
        add_module "$dep"
    done
    echo "$1" >>"$tmp/out/modules/order"
}
for m in $WANTED; do
    add_module "$m"
done

cp "$tmp"/root/boot/vmlinuz-* "$tmp/out/vmlinuz"
echo "$pkg" >"$tmp/out/version"

mkdir -p "$CACHE"
rm -rf "$OUT"
mv "$tmp/out" "$OUT"

#!/bin/sh
# Build the test guest's initramfs: static busybox, scripts/guest/init as
# /init, the virtio modules fetched by fetch-kernel.sh and a payload
# directory (the data set and its layout, see init).
#
# usage: mkinitramfs.sh KERNEL_DIR PAYLOAD_DIR OUT.cpio.gz
#
# No root is needed: the kernel's built-in initramfs already provides
# /dev/console, and /init mounts devtmpfs for the rest.
set -eu

KERNEL=${1:?usage: $0 KERNEL_DIR PAYLOAD_DIR OUT.cpio.gz}
PAYLOAD=${2:?usage: $0 KERNEL_DIR PAYLOAD_DIR OUT.cpio.gz}
OUT=${3:?usage: $0 KERNEL_DIR PAYLOAD_DIR OUT.cpio.gz}
HERE=$(dirname "$0")
BUSYBOX=/bin/busybox

die() {
    echo "mkinitramfs: $*" >&2
    exit 1
}

# A dynamically linked busybox would need its libraries in the initramfs.
if ! [ -x $BUSYBOX ] || ! dpkg-query -W -f='${Status}' busybox-static \
        2>/dev/null | grep -q "ok installed"; then
    die "busybox-static is not installed (scripts/install-deps.sh)"
fi
command -v cpio >/dev/null || die "cpio is not installed"
[ -f "$PAYLOAD/layout" ] || die "$PAYLOAD/layout is missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkinitramfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/bin" "$tmp/root/modules" "$tmp/root/payload"
cp $BUSYBOX "$tmp/root/bin/busybox"
cp "$HERE/init" "$tmp/root/init"
chmod 755 "$tmp/root/init"
cp "$KERNEL"/modules/*.ko "$KERNEL/modules/order" "$tmp/root/modules/"
cp -r "$PAYLOAD"/. "$tmp/root/payload/"

(cd "$tmp/root" && find . | LC_ALL=C sort |
    cpio --quiet -o -H newc --owner 0:0) | gzip -1 >"$tmp/initrd"
mv "$tmp/initrd" "$OUT"

#!/bin/sh
# Install every Debian package the build, the tests and the demo need.
# Idempotent: it asks dpkg first and only calls apt-get for what is missing,
# so `make` can run it every time without network access once all is there.
set -e

PACKAGES="
build-essential meson ninja-build pkg-config
libglib2.0-dev zlib1g-dev libzstd-dev libjson-glib-dev
qemu-utils qemu-system-x86 libnbd-bin fio busybox-static cpio python3
e2fsprogs nettle-dev
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing

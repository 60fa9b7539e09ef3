#!/bin/sh
# Run every benchmark against stock QEMU 7.2 and print their tables
# together at the end.  Benchmarks, not tests: the exit status only says
# whether the scripts ran; the full logs stay in BUILD_DIR/bench/.
#
# usage: run-all.sh BUILD_DIR      (knobs: see lib.sh; BENCHES picks scripts)

set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1/bench
mkdir -p "$out"

rc=0
for b in ${BENCHES:-convert qemu-io nbd-fio}; do
    echo "### $b"
    # bash: the scripts use $EPOCHREALTIME and process substitution
    bash "$here/$b.sh" "$1" 2>&1 | tee "$out/$b.txt"
    # the pipeline's status is tee's; the script's shows in its log
    grep -q '^== .*median' "$out/$b.txt" || rc=1
done

echo
echo "######## summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cpus)"
for b in ${BENCHES:-convert qemu-io nbd-fio}; do
    sed -n '/^== .*median/,/^$/p' "$out/$b.txt"
done
echo "logs with the exact commands: $out/"
exit $rc

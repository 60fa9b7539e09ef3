#!/bin/sh
# Boot a small TCG guest that writes a data set through NBD into a
# qemu-storage-daemon, then report what the guest verified and what the
# daemon counted.  See guest.py (run with --help for the options).
#
#   scripts/guest/run-guest.sh --workload images --copies 8 \
#       --create-opts dedup=sha256 build/demo.qcow2
exec python3 "$(dirname "$0")/guest.py" "$@"

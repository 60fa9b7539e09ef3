#!/usr/bin/env bash
#
# Randomized differential test of the qcow2 driver and our qemu-io.
#
# For each seed, one long random sequence of guest operations -- pattern
# writes (cluster-aligned, sector-aligned and unaligned), zero writes with
# and without unmap, discards and flushes -- is applied twice:
#   - with OUR qemu-io ($QEMU_IO_PROG) to a qcow2 image (created by stock
#     qemu-img with a random cluster size, refcount width and compat level);
#   - with the STOCK qemu-io to a raw file, the reference.  A discard leaves
#     partial clusters alone and makes whole clusters read as zeroes, so the
#     reference gets "write -z" over the whole clusters it covers.
# After every batch stock "qemu-img compare" must find both equal, and at the
# end stock "qemu-img check" must find the qcow2 image clean.
#
# Environment:
#   QEMU_IO_PROG     qemu-io under test (skipped, exit 77, if missing)
#   QEMU_IO_STOCK    reference qemu-io (default /usr/bin/qemu-io)
#   QEMU_IMG_STOCK   reference qemu-img (default /usr/bin/qemu-img)
#   QEMU_TEST_DIR    where to put the work directory (default: $TMPDIR)
#   QEMU_TEST_LONG   non-empty: many more seeds and operations
#   QEMU_TEST_SEED   run this one seed only
#
# On failure the work directory is kept; seed-N.log has the commands.

set -u

QEMU_IO_STOCK=${QEMU_IO_STOCK:-/usr/bin/qemu-io}
QEMU_IMG_STOCK=${QEMU_IMG_STOCK:-/usr/bin/qemu-img}

skip() {
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL (seed $SEED, $GEOMETRY): $*"
    echo "work directory kept: $WORK"
    exit 1
}

[ -n "${QEMU_IO_PROG:-}" ] && [ -x "$QEMU_IO_PROG" ] ||
    skip "QEMU_IO_PROG (the qemu-io under test) is not set or not built"
for tool in "$QEMU_IO_STOCK" "$QEMU_IMG_STOCK"; do
    [ -x "$tool" ] || skip "stock $tool not installed"
done

if [ -n "${QEMU_TEST_LONG:-}" ]; then
    SEEDS=$(seq 1 40)
    BATCHES=40
else
    SEEDS="1 2 3"
    BATCHES=6
fi
[ -n "${QEMU_TEST_SEED:-}" ] && SEEDS=$QEMU_TEST_SEED
OPS_PER_BATCH=25

WORK_PARENT=${QEMU_TEST_DIR:-${TMPDIR:-/tmp}}
WORK=$(mktemp -d "$WORK_PARENT/qcow2-differential.XXXXXX") || exit 1

# R := a random number in [0, $1) (no subshell: it would not advance RANDOM).
rand_below() {
    R=$(( ((RANDOM << 15) | RANDOM) % $1 ))
}

pick() {
    rand_below $#
    shift "$R"
    R=$1
}

# OFF, LEN := a random request, aligned to a cluster, a sector or nothing.
random_range() {
    local unit max_len
    rand_below 10
    if [ "$R" -lt 3 ]; then
        unit=$CS
    elif [ "$R" -lt 5 ]; then
        unit=512
    else
        unit=1
    fi
    rand_below 20
    if [ "$R" -lt 12 ]; then
        max_len=$((2 * CS))
    elif [ "$R" -lt 18 ]; then
        max_len=$((8 * CS))
    else
        max_len=$((SIZE / 4))
    fi
    rand_below $((SIZE / unit))
    OFF=$((R * unit))
    [ "$max_len" -gt $((SIZE - OFF)) ] && max_len=$((SIZE - OFF))
    [ $((max_len / unit)) -lt 1 ] && max_len=$unit
    rand_below $((max_len / unit))
    LEN=$(((R + 1) * unit))
    [ "$LEN" -gt $((SIZE - OFF)) ] && LEN=$((SIZE - OFF))
}

# Append one operation to the command lists of both sides.
random_op() {
    local start end
    rand_below 100
    if [ "$R" -lt 5 ]; then
        IMG_CMDS+=(-c "flush")
        REF_CMDS+=(-c "flush")
        return
    fi
    local kind=$R
    random_range
    if [ "$kind" -lt 55 ]; then
        rand_below 255
        IMG_CMDS+=(-c "write -q -P $((R + 1)) $OFF $LEN")
        REF_CMDS+=(-c "write -q -P $((R + 1)) $OFF $LEN")
    elif [ "$kind" -lt 70 ]; then
        IMG_CMDS+=(-c "write -q -z $OFF $LEN")
        REF_CMDS+=(-c "write -q -z $OFF $LEN")
    elif [ "$kind" -lt 85 ]; then
        IMG_CMDS+=(-c "write -q -z -u $OFF $LEN")
        REF_CMDS+=(-c "write -q -z $OFF $LEN")
    else
        IMG_CMDS+=(-c "discard -q $OFF $LEN")
        start=$(( (OFF + CS - 1) / CS * CS ))
        end=$(( (OFF + LEN) / CS * CS ))
        [ $((OFF + LEN)) -eq "$SIZE" ] && end=$SIZE
        if [ "$start" -lt "$end" ]; then
            REF_CMDS+=(-c "write -q -z $start $((end - start))")
        fi
    fi
}

# Run a qemu-io; any output besides nothing at all is an error (-q is used).
run_io() {
    local out status
    out=$("$@" 2>&1)
    status=$?
    if [ $status -ne 0 ] || [ -n "$out" ]; then
        fail "$1 exited with $status: $out"
    fi
}

run_seed() {
    local img="$WORK/seed-$SEED.qcow2" ref="$WORK/seed-$SEED.raw"
    local log="$WORK/seed-$SEED.log" rb compat clusters out

    RANDOM=$SEED
    pick 512 4096 65536
    CS=$R
    pick 1 2 16 64
    rb=$R
    compat=1.1
    if [ "$rb" -eq 16 ]; then
        pick 0.10 1.1
        compat=$R
    fi
    rand_below 128
    clusters=$((R + 64))
    [ "$CS" -eq 65536 ] && clusters=$((clusters / 4))
    SIZE=$((clusters * CS + 1536))
    GEOMETRY="cluster_size=$CS,refcount_bits=$rb,compat=$compat,size=$SIZE"

    "$QEMU_IMG_STOCK" create -q -f qcow2 \
        -o "cluster_size=$CS,refcount_bits=$rb,compat=$compat" "$img" "$SIZE" ||
        fail "qemu-img create"
    "$QEMU_IMG_STOCK" create -q -f raw "$ref" "$SIZE" || fail "qemu-img create"
    echo "# $GEOMETRY" > "$log"

    for ((batch = 0; batch < BATCHES; batch++)); do
        IMG_CMDS=()
        REF_CMDS=()
        for ((i = 0; i < OPS_PER_BATCH; i++)); do
            random_op
        done
        printf '%s\n' "# batch $batch" "${IMG_CMDS[@]}" >> "$log"
        run_io "$QEMU_IO_PROG" -f qcow2 -d unmap "${IMG_CMDS[@]}" "$img"
        run_io "$QEMU_IO_STOCK" -f raw "${REF_CMDS[@]}" "$ref"
        out=$("$QEMU_IMG_STOCK" compare -f qcow2 -F raw "$img" "$ref" 2>&1) ||
            fail "after batch $batch: $out"
    done
    out=$("$QEMU_IMG_STOCK" check -f qcow2 "$img" 2>&1) || fail "check: $out"
    rm -f "$img" "$ref" "$log"
}

for SEED in $SEEDS; do
    GEOMETRY=
    run_seed
    echo "seed $SEED: $GEOMETRY ok"
done
rmdir "$WORK"

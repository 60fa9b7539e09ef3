#!/bin/bash
# Row 2: I/O through the block layer and the qcow2 driver in one process,
# the job of stock `qemu-img bench` (which our qemu-img lacks).  Both sides
# run the very same qemu-io script from standard input: batches of QD
# `aio_write`/`aio_read` requests, each batch closed by `aio_flush` (which
# waits for every request in flight), so QD requests are outstanding at
# once.  The script is generated once per workload, with fixed random
# offsets, and timed as a whole qemu-io process.
#
# Writes start from an empty image of $SIZE, so they include cluster
# allocation; reads use an image each side filled itself from random data
# with its own `qemu-img convert` (untimed).  Cache mode $QEMU_IO_CACHE
# (writeback: no flush per request, as in qemu-img bench; qemu-io's own
# default, writethrough, would measure fdatasync).
#
# usage: qemu-io.sh BUILD_DIR      (knobs: see lib.sh; RAND_OPS, 4 KiB
#                                   requests per random workload, 65536)

. "$(dirname "$0")/lib.sh"

QEMU_IO_CACHE=${QEMU_IO_CACHE:-writeback}
RAND_OPS=${RAND_OPS:-65536}

# Workloads: "label|command|seq or rand|request size|queue depth"
WORKLOADS_TABLE="
seqwrite-64k-qd8|aio_write|seq|65536|8
randwrite-4k-qd16|aio_write|rand|4096|16
seqread-64k-qd8|aio_read|seq|65536|8
randread-4k-qd16|aio_read|rand|4096|16
"

# Data sets of the writes: "label|awk expression of the -P pattern byte of
# request i".  qemu-io writes a one-byte pattern, so "cycle" gives 255
# distinct blocks; a dedup run wants "const" (all duplicates) too.
DATASETS_TABLE="
cycle|i % 255 + 1
#const|171
"

# Image variants: "label|ours -o|stock -o".  One line adds one.
VARIANTS_TABLE="
plain||
#dedup|dedup=sha256|
"

bench_init "$1" qemu-io

# gen_script FILE CMD MODE BS QD PATTERN_EXPR: the qemu-io command script
gen_script()
{
    local n
    if [ "$3" = seq ]; then n=$((SIZE_BYTES / $4)); else n=$RAND_OPS; fi
    awk -v n="$n" -v cmd="$2" -v mode="$3" -v bs="$4" -v qd="$5" \
        -v span="$SIZE_BYTES" '
        function pat(i) { return '"$6"' }
        BEGIN {
            srand(4242)
            for (i = 0; i < n; i++) {
                off = (mode == "seq") ? i * bs : int(rand() * (span / bs)) * bs
                if (cmd == "aio_write")
                    printf "aio_write -q -P %d %d %d\n", pat(i), off, bs
                else
                    printf "aio_read -q %d %d\n", off, bs
                if ((i + 1) % qd == 0)
                    print "aio_flush"
            }
            print "aio_flush"
        }' >"$1"
    echo $((n * $4))
}

echo "== qemu-io: scratch $SCRATCH, size $SIZE, cache $QEMU_IO_CACHE, $REPS repetitions"
src=$SCRATCH/src.raw
setup gen_random "$src"

while IFS='|' read -r ds pexpr; do
    while read -r vline; do
        var=${vline%%|*}
        # read images, filled once per side
        for tool in ours stock; do
            rm -f "$SCRATCH/read-$tool.qcow2"
            # shellcheck disable=SC2046
            setup "$(bin "$tool" qemu-img)" convert -f raw -O qcow2 \
                $(opt_arg "$(variant_opts "$vline" "$tool")") \
                "$src" "$SCRATCH/read-$tool.qcow2" || exit 1
        done
        while IFS='|' read -r wl cmd mode bs qd; do
            script=$SCRATCH/$wl.cmds
            bytes=$(gen_script "$script" "$cmd" "$mode" "$bs" "$qd" "$pexpr")
            log_cmd 1 "[setup] $script: $(wc -l <"$script") lines," \
                "aio_flush after every $qd: $(head -n 2 "$script" | tr '\n' ';') ..."
            for rep in $(seq "$REPS"); do
                for tool in $(tools_for_rep "$rep"); do
                    img=$SCRATCH/read-$tool.qcow2
                    if [ "$cmd" = aio_write ]; then
                        img=$SCRATCH/write-$tool.qcow2
                        rm -f "$img"
                        # shellcheck disable=SC2046
                        setup "$(bin "$tool" qemu-img)" create -q -f qcow2 \
                            $(opt_arg "$(variant_opts "$vline" "$tool")") \
                            "$img" "$SIZE_BYTES" || exit 1
                    fi
                    BENCH_STDIN=$script run_timed "$rep" qemu-io "$ds" "$var" "$wl" \
                        "$tool" "$bytes" \
                        "$(bin "$tool" qemu-io)" -f qcow2 -t "$QEMU_IO_CACHE" "$img"
                done
            done
            rm -f "$script"
        done < <(selected "$WORKLOADS_TABLE" "${WORKLOADS:-}")
    done < <(selected "$VARIANTS_TABLE" "${VARIANTS:-}")
done < <(selected "$DATASETS_TABLE" "${DATASETS:-}")

bench_report

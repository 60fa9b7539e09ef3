#!/bin/bash
# Row 3: the storage daemon serving a qcow2 image over NBD (UNIX socket),
# driven by fio's nbd engine (libnbd, one connection, QD requests in
# flight).  Ours and stock run with identical options:
#
#   qemu-storage-daemon --blockdev driver=file,node-name=f,filename=IMG
#       --blockdev driver=qcow2,node-name=q,file=f
#       --nbd-server addr.type=unix,addr.path=SOCK
#       --export type=nbd,id=e,node-name=q,name=n,writable=on
#
# Each write run gets a fresh empty image of $SIZE (so the first pass
# allocates clusters, later passes overwrite); read runs use an image each
# side preconditioned once through its own daemon with a sequential 1 MiB
# fio write of the whole image (untimed).  Runs last $RUNTIME seconds; the
# throughput is fio's (bytes moved / its runtime), the CPU time the
# daemon's whole life (start-up is a few ms).  fio and the daemon share the
# machine's cores, as a guest and QEMU would.
#
# usage: nbd-fio.sh BUILD_DIR      (knobs: see lib.sh; RUNTIME, 10)

. "$(dirname "$0")/lib.sh"

RUNTIME=${RUNTIME:-10}

# Workloads: "label|fio rw|block size|iodepth"
WORKLOADS_TABLE="
seqwrite-64k-qd8|write|64k|8
randwrite-4k-qd16|randwrite|4k|16
seqread-64k-qd8|read|64k|8
randread-4k-qd16|randread|4k|16
"

# Data sets: "label|extra fio options for the written buffers".  fio's
# default refills nothing but scrambles each buffer per request, so
# requests differ ("unique" in effect); "dup" makes 80% of the buffers
# repeats of earlier ones.  One line adds one.
DATASETS_TABLE="
default|
#unique|--refill_buffers=1
#dup|--dedupe_percentage=80 --scramble_buffers=0
"

# Image variants: "label|ours -o|stock -o".  One line adds one.
VARIANTS_TABLE="
plain||
#dedup|dedup=sha256|
"

bench_init "$1" nbd-fio
command -v fio >/dev/null || { echo "$0: fio not installed" >&2; exit 2; }

SOCK=$SCRATCH/nbd.sock
QSD_PID=""

# qsd_start TOOL IMG: serve IMG as export "n" on $SOCK
qsd_start()
{
    rm -f "$SOCK"
    QSD_CMD="$(bin "$1" qemu-storage-daemon)
        --blockdev driver=file,node-name=f,filename=$2
        --blockdev driver=qcow2,node-name=q,file=f
        --nbd-server addr.type=unix,addr.path=$SOCK
        --export type=nbd,id=e,node-name=q,name=n,writable=on"
    # shellcheck disable=SC2086
    $QSD_CMD </dev/null >"$SCRATCH/qsd-$1.log" 2>&1 &
    QSD_PID=$!
    BENCH_PIDS="$BENCH_PIDS $QSD_PID"
    if ! wait_for_socket "$SOCK" "$QSD_PID"; then
        echo "$0: $1 storage daemon did not start:" >&2
        cat "$SCRATCH/qsd-$1.log" >&2
        return 1
    fi
}

# qsd_cpu: user + system CPU seconds the running daemon has used (all its
# threads)
qsd_cpu()
{
    sed 's/^.*) //' "/proc/$QSD_PID/stat" |
        awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($12 + $13) / hz }'
}

qsd_stop()
{
    kill "$QSD_PID" 2>/dev/null
    wait "$QSD_PID" 2>/dev/null
    BENCH_PIDS=${BENCH_PIDS% $QSD_PID}
    QSD_PID=""
}

# fio_run OUT RW BS QD DATASET_OPTS [fio options...]: one fio job on the
# export; the JSON report goes to OUT
fio_run()
{
    local out=$1 rw=$2 bs=$3 qd=$4 dsopts=$5
    shift 5
    # shellcheck disable=SC2086
    fio --name=bench --ioengine=nbd --uri="nbd+unix:///n?socket=$SOCK" \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$SIZE_BYTES" \
        --randrepeat=1 $dsopts "$@" --output-format=json --output="$out" </dev/null
}

# new_image TOOL VARIANT_LINE PATH
new_image()
{
    rm -f "$3"
    # shellcheck disable=SC2046
    setup "$(bin "$1" qemu-img)" create -q -f qcow2 \
        $(opt_arg "$(variant_opts "$2" "$1")") "$3" "$SIZE_BYTES"
}

# measure REP DATASET DSOPTS VARIANT WORKLOAD RW BS QD TOOL IMG
measure()
{
    local rep=$1 ds=$2 dsopts=$3 var=$4 wl=$5 rw=$6 bs=$7 qd=$8 tool=$9
    local img=${10} json=$SCRATCH/fio.json dir bytes secs cpu
    qsd_start "$tool" "$img" || { record nbd "$ds" "$var" "$wl" "$tool" 0 FAIL FAIL; return; }
    settle
    log_cmd "$rep" "[nbd/$ds/$var/$wl/$tool] $(echo $QSD_CMD) &"
    log_cmd "$rep" "[nbd/$ds/$var/$wl/$tool] fio --name=bench --ioengine=nbd" \
        "--uri=nbd+unix:///n?socket=$SOCK --rw=$rw --bs=$bs --iodepth=$qd" \
        "--size=$SIZE_BYTES --randrepeat=1 $dsopts --time_based --runtime=$RUNTIME" \
        "--output-format=json"
    if fio_run "$json" "$rw" "$bs" "$qd" "$dsopts" \
        --time_based --runtime="$RUNTIME" >"$SCRATCH/fio.err" 2>&1; then
        cpu=$(qsd_cpu)
        case $rw in *read) dir=read ;; *) dir=write ;; esac
        read -r bytes secs < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]
print(j["io_bytes"], j["runtime"] / 1000.0)' "$json" "$dir")
    else
        echo "FAILED ($tool): fio $wl" >&2
        tail -5 "$SCRATCH/fio.err" >&2
        bytes=0 secs=FAIL cpu=FAIL
    fi
    qsd_stop
    record nbd "$ds" "$var" "$wl" "$tool" "$bytes" "$secs" "$cpu"
}

echo "== nbd-fio: scratch $SCRATCH, size $SIZE, ${RUNTIME}s per run, $REPS repetitions"
while IFS='|' read -r ds dsopts; do
    while read -r vline; do
        var=${vline%%|*}
        for tool in ours stock; do
            img=$SCRATCH/read-$tool.qcow2
            new_image "$tool" "$vline" "$img" || exit 1
            qsd_start "$tool" "$img" || exit 1
            log_cmd 1 "[setup] $(echo $QSD_CMD) &"
            log_cmd 1 "[setup] fio --name=bench --ioengine=nbd" \
                "--uri=nbd+unix:///n?socket=$SOCK --rw=write --bs=1M --iodepth=4" \
                "--size=$SIZE_BYTES --randrepeat=1 $dsopts --output-format=json"
            fio_run "$SCRATCH/precond.json" write 1M 4 "$dsopts" >/dev/null || exit 1
            qsd_stop
        done
        while IFS='|' read -r wl rw bs qd; do
            for rep in $(seq "$REPS"); do
                for tool in $(tools_for_rep "$rep"); do
                    img=$SCRATCH/read-$tool.qcow2
                    case $rw in
                    *write)
                        img=$SCRATCH/write-$tool.qcow2
                        new_image "$tool" "$vline" "$img" || exit 1
                        ;;
                    esac
                    measure "$rep" "$ds" "$dsopts" "$var" "$wl" "$rw" "$bs" "$qd" \
                        "$tool" "$img"
                done
            done
        done < <(selected "$WORKLOADS_TABLE" "${WORKLOADS:-}")
    done < <(selected "$VARIANTS_TABLE" "${VARIANTS:-}")
done < <(selected "$DATASETS_TABLE" "${DATASETS:-}")

bench_report

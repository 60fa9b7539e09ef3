#!/bin/bash
# Profile one benchmark case, ours and stock, to see where we spend more.
# Prints, for each side, the CPU split by binary/library and the hottest
# symbols (self time), from `perf record -e cpu-clock` (software clock:
# this machine has no hardware counters), or with PROFILER=callgrind from
# valgrind (exact instruction counts; slow, so use a small SIZE), plus a
# syscall count summary with STRACE=1.  The perf data / callgrind output
# stay in the scratch directory with KEEP=1, for `perf report -i FILE`.
#
# usage: profile.sh BUILD_DIR CASE     (SIZE defaults to 512M here;
#        OURS_OPTS="dedup=sha256" creates our images with those -o options)
#   CASE: convert-r2q convert-q2r
#         qemu-io-seqwrite qemu-io-randwrite qemu-io-seqread qemu-io-randread
#         nbd-seqwrite nbd-randwrite nbd-seqread nbd-randread

SIZE=${SIZE:-512M}
. "$(dirname "$0")/lib.sh"

PROFILER=${PROFILER:-perf}
TOP=${TOP:-25}
RUNTIME=${RUNTIME:-5}
RAND_OPS=${RAND_OPS:-32768}
case_name=${2:-}
[ -n "$case_name" ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
bench_init "$1" profile

# profiled OUT CMD...: run CMD under the profiler, output to OUT
profiled()
{
    local out=$1
    shift
    sync    # no writeback of the set-up's dirty pages inside the profile
    if [ "${STRACE:-0}" = 1 ]; then
        strace -f -c -o "$out.strace" "$@"
    elif [ "$PROFILER" = callgrind ]; then
        valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$@"
    else
        perf record -q -e cpu-clock -o "$out.perf" -- "$@"
    fi
}

summary()
{
    local out=$1
    if [ "${STRACE:-0}" = 1 ]; then
        head -n $((TOP + 2)) "$out.strace"
    elif [ "$PROFILER" = callgrind ]; then
        callgrind_annotate "$out.cg" 2>/dev/null | sed -n '1,/^-- Auto/p' |
            grep -v '^--' | head -n $((TOP + 12))
    else
        perf report -i "$out.perf" --stdio 2>/dev/null | grep '^# Samples'
        perf report -i "$out.perf" --no-children --stdio --sort dso 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -8
        echo
        perf report -i "$out.perf" --no-children --stdio --sort dso,sym 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -n "$TOP"
    fi
}

# qemu-io script of RAND_OPS (or SIZE/bs) requests, as qemu-io.sh makes
io_script()
{
    local cmd=$1 mode=$2 bs=$3 qd=$4 n
    if [ "$mode" = seq ]; then n=$((SIZE_BYTES / bs)); else n=$RAND_OPS; fi
    awk -v n="$n" -v cmd="$cmd" -v mode="$mode" -v bs="$bs" -v qd="$qd" \
        -v span="$SIZE_BYTES" 'BEGIN {
            srand(4242)
            for (i = 0; i < n; i++) {
                off = (mode == "seq") ? i * bs : int(rand() * (span / bs)) * bs
                if (cmd == "aio_write")
                    printf "aio_write -q -P %d %d %d\n", i % 255 + 1, off, bs
                else
                    printf "aio_read -q %d %d\n", off, bs
                if ((i + 1) % qd == 0) print "aio_flush"
            }
            print "aio_flush"
        }'
}

# daemon_below PID: the qemu-storage-daemon process among PID's descendants
daemon_below()
{
    local p kids
    for p in $(ps -o pid= --ppid "$1"); do
        case $(ps -o comm= -p "$p") in
        qemu-storage*) echo "$p"; return ;;
        esac
        kids=$(daemon_below "$p")
        [ -n "$kids" ] && { echo "$kids"; return; }
    done
}

# run_nbd OUT TOOL IMG RW BS QD: the daemon under the profiler, fio outside
run_nbd()
{
    local out=$1 tool=$2 img=$3 rw=$4 bs=$5 qd=$6 sock=$SCRATCH/nbd.sock
    local pid daemon
    rm -f "$sock"
    profiled "$out" "$(bin "$tool" qemu-storage-daemon)" \
        --blockdev "driver=file,node-name=f,filename=$img" \
        --blockdev driver=qcow2,node-name=q,file=f \
        --nbd-server "addr.type=unix,addr.path=$sock" \
        --export type=nbd,id=e,node-name=q,name=n,writable=on \
        </dev/null >"$out.log" 2>&1 &
    pid=$!
    BENCH_PIDS="$BENCH_PIDS $pid"
    wait_for_socket "$sock" "$pid" || { cat "$out.log" >&2; return 1; }
    fio --name=p --ioengine=nbd --uri="nbd+unix:///n?socket=$sock" --rw="$rw" \
        --bs="$bs" --iodepth="$qd" --size="$SIZE_BYTES" --randrepeat=1 \
        --time_based --runtime="$RUNTIME" </dev/null | grep -E '^ *(READ|WRITE):'
    # stop the daemon itself, the profiler's child: the profiler then
    # writes its report and exits
    daemon=$(daemon_below "$pid")
    kill "${daemon:-$pid}"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "${daemon:-$pid}" 2>/dev/null
    wait "$pid"
}

# opts_for TOOL: the -o argument of that side's images
opts_for()
{
    if [ "$1" = ours ]; then opt_arg "${OURS_OPTS:-}"; fi
}

new_qcow2()
{
    rm -f "$2"
    # shellcheck disable=SC2046
    "$(bin "$1" qemu-img)" create -q -f qcow2 $(opts_for "$1") "$2" "$SIZE_BYTES"
}

src=$SCRATCH/src.raw
gen_random "$src"
for tool in ours stock; do
    out=$SCRATCH/$tool
    q=$SCRATCH/$tool.qcow2
    img=$(bin "$tool" qemu-img)
    case $case_name in
    convert-r2q)
        rm -f "$q"
        # shellcheck disable=SC2046
        profiled "$out" "$img" convert -f raw -O qcow2 $(opts_for "$tool") "$src" "$q" ;;
    convert-q2r)
        "$img" convert -f raw -O qcow2 $(opts_for "$tool") "$src" "$q"
        profiled "$out" "$img" convert -f qcow2 -O raw "$q" "$SCRATCH/out.raw" ;;
    qemu-io-*write)
        new_qcow2 "$tool" "$q"
        case $case_name in
        *seq*) io_script aio_write seq 65536 8 ;;
        *) io_script aio_write rand 4096 16 ;;
        esac >"$SCRATCH/script"
        profiled "$out" "$(bin "$tool" qemu-io)" -f qcow2 -t writeback "$q" \
            <"$SCRATCH/script" >/dev/null ;;
    qemu-io-*read)
        "$img" convert -f raw -O qcow2 $(opts_for "$tool") "$src" "$q"
        case $case_name in
        *seq*) io_script aio_read seq 65536 8 ;;
        *) io_script aio_read rand 4096 16 ;;
        esac >"$SCRATCH/script"
        profiled "$out" "$(bin "$tool" qemu-io)" -f qcow2 -t writeback "$q" \
            <"$SCRATCH/script" >/dev/null ;;
    nbd-*)
        case $case_name in
        *write) new_qcow2 "$tool" "$q" ;;
        *) "$img" convert -f raw -O qcow2 $(opts_for "$tool") "$src" "$q" ;;
        esac
        case $case_name in
        nbd-seqwrite) run_nbd "$out" "$tool" "$q" write 64k 8 ;;
        nbd-randwrite) run_nbd "$out" "$tool" "$q" randwrite 4k 16 ;;
        nbd-seqread) run_nbd "$out" "$tool" "$q" read 64k 8 ;;
        nbd-randread) run_nbd "$out" "$tool" "$q" randread 4k 16 ;;
        esac ;;
    *)
        echo "$0: unknown case '$case_name'" >&2
        exit 2 ;;
    esac
    rm -f "$SCRATCH/out.raw"
    echo "======== $tool: $case_name ($PROFILER, size $SIZE)"
    summary "$out"
    echo
done

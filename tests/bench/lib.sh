# Shared helpers of the benchmark scripts; sourced, not run.
#
# Model: every measurement is one (row, data set, variant, workload) cell run
# by "ours" (the binaries in BUILD_DIR) and by "stock" (QEMU 7.2 in
# $STOCK_BIN) in alternation, $REPS times; the order flips on every
# repetition so slow drift (page cache, writeback, thermal) hits both sides.
# Each run appends one line to $BENCH_RESULTS:
#
#     row dataset variant workload tool bytes seconds cpu_seconds  (TABs)
#
# where seconds is "FAIL" when the command failed and cpu_seconds is the
# user + system time of the measured process (the daemon, in the nbd row).
# bench_report prints the median throughput of each side and the ratio
# ours/stock (>1.0 = we are faster), the median CPU cost per GiB and its
# ratio stock/ours (>1.0 = we spend less), then the exact commands of the
# first repetition.  CPU per GiB hardly moves when other jobs load the
# machine; wall-clock throughput does.
#
# A variant is "label|ours_opts|stock_opts": the -o options each side's
# image is created with.  Stock QEMU has no dedup, so a dedup variant gives
# ours "dedup=sha256" and stock nothing: the ratio is then the cost of
# deduplication against plain stock qcow2.
#
# Knobs (environment): REPS (3), SIZE (image size, 2G), BENCH_DIR (parent of
# the scratch directory, /var/tmp), STOCK_BIN (/usr/bin), KEEP=1 keeps the
# scratch directory, DATASETS / VARIANTS (space-separated labels to run,
# default: each script's default list).

set -u

REPS=${REPS:-3}
SIZE=${SIZE:-2G}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
STOCK_BIN=${STOCK_BIN:-/usr/bin}
KEEP=${KEEP:-0}

# bench_init BUILD_DIR NAME: resolve binaries, make the scratch directory.
bench_init()
{
    if [ $# -lt 2 ] || [ ! -d "$1" ]; then
        echo "usage: $0 BUILD_DIR" >&2
        exit 2
    fi
    OURS_BIN=$(cd "$1" && pwd)
    BENCH_NAME=$2
    for t in qemu-img qemu-io qemu-storage-daemon; do
        for d in "$OURS_BIN" "$STOCK_BIN"; do
            if [ ! -x "$d/$t" ]; then
                echo "$0: $d/$t not found (run 'make' first)" >&2
                exit 2
            fi
        done
    done
    mkdir -p "$BENCH_DIR"
    # tmpfs would measure RAM, not the file system, and may not hold the images
    if [ "$(stat -f -c %T "$BENCH_DIR")" = tmpfs ]; then
        echo "$0: $BENCH_DIR is tmpfs; set BENCH_DIR to a disk" >&2
        exit 2
    fi
    SCRATCH=$(mktemp -d "$BENCH_DIR/qemu-bench-$BENCH_NAME.XXXXXX")
    BENCH_RESULTS=$SCRATCH/results.tsv
    BENCH_CMDS=$SCRATCH/commands.txt
    : >"$BENCH_RESULTS"
    : >"$BENCH_CMDS"
    BENCH_PIDS=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    SIZE_BYTES=$(size_to_bytes "$SIZE")
}

bench_cleanup()
{
    for p in $BENCH_PIDS; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then
        echo "scratch kept in $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
}

# size_to_bytes 2G -> 2147483648 (suffixes k M G T, powers of 1024)
size_to_bytes()
{
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = toupper(substr(s, length(s)))
        m = (u == "K") ? 2^10 : (u == "M") ? 2^20 : (u == "G") ? 2^30 : (u == "T") ? 2^40 : 1
        printf "%.0f\n", n * m }'
}

# bin TOOL PROGRAM: path of PROGRAM for tool "ours" or "stock"
bin()
{
    if [ "$1" = ours ]; then echo "$OURS_BIN/$2"; else echo "$STOCK_BIN/$2"; fi
}

# tools_for_rep N: the two tools, in the order repetition N runs them
tools_for_rep()
{
    if [ $(($1 % 2)) = 1 ]; then echo "ours stock"; else echo "stock ours"; fi
}

# selected TABLE SELECTION: the lines of TABLE ("label|...") to run.  An
# empty SELECTION means every line not commented out; otherwise the lines
# whose label is listed, commented out or not, so DATASETS="random dup"
# runs a hook without editing the script.
selected()
{
    printf '%s\n' "$1" | awk -F'|' -v want=" $2 " '
        NF == 0 { next }
        want == "  " { if ($1 !~ /^#/) print; next }
        { line = $0; sub(/^# */, "", line); split(line, f, "|")
          if (index(want, " " f[1] " ")) print line }'
}

# variant_opts VARIANT_LINE TOOL: the -o option string for that side
variant_opts()
{
    if [ "$2" = ours ]; then
        printf '%s\n' "$1" | cut -d'|' -f2
    else
        printf '%s\n' "$1" | cut -d'|' -f3
    fi
}

# opt_arg OPTS: "-o OPTS" when OPTS is not empty
opt_arg()
{
    if [ -n "$1" ]; then printf -- '-o %s' "$1"; fi
}

# settle: start every run from the same state: no dirty page cache being
# written back behind the measured process
settle()
{
    sync
}

# log_cmd REP TEXT...: remember the command of the first repetition, with
# the scratch directory written as $S
log_cmd()
{
    local rep=$1
    shift
    if [ "$rep" = 1 ]; then
        printf '%s\n' "$*" | sed "s|$SCRATCH|\$S|g" >>"$BENCH_CMDS"
    fi
}

# setup CMD...: run an untimed preparation step and log it
setup()
{
    log_cmd 1 "[setup] $*"
    "$@" </dev/null
}

# children_cpu: user + system CPU seconds of this shell's finished
# children, in $CHILD_CPU.  `times` must run in this shell, not in a $(...)
# subshell, which has no children of its own.
children_cpu()
{
    times >"$SCRATCH/times"
    CHILD_CPU=$(awk 'NR == 2 {
        split($0, f, /[ ms]+/)
        printf "%.3f\n", f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$SCRATCH/times")
}

# run_timed REP ROW DATASET VARIANT WORKLOAD TOOL BYTES CMD...: run CMD
# with standard input from $BENCH_STDIN (default /dev/null), record its
# wall time and CPU time
run_timed()
{
    local rep=$1 row=$2 ds=$3 var=$4 wl=$5 tool=$6 bytes=$7 t0 t1 c0 c1 secs cpu
    shift 7
    local in=${BENCH_STDIN:-/dev/null}
    log_cmd "$rep" "[$row/$ds/$var/$wl/$tool] $* <$in"
    settle
    children_cpu
    c0=$CHILD_CPU
    t0=$EPOCHREALTIME
    if "$@" <"$in" >"$SCRATCH/last.out" 2>&1; then
        t1=$EPOCHREALTIME
        children_cpu
        c1=$CHILD_CPU
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
        cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
    else
        echo "FAILED ($tool): $*" >&2
        tail -5 "$SCRATCH/last.out" >&2
        secs=FAIL cpu=FAIL
    fi
    record "$row" "$ds" "$var" "$wl" "$tool" "$bytes" "$secs" "$cpu"
}

# record ROW DATASET VARIANT WORKLOAD TOOL BYTES SECONDS CPU_SECONDS
record()
{
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_RESULTS"
    printf '  %-8s %-8s %-8s %-22s %-5s %s\n' "$1" "$2" "$3" "$4" "$5" \
        "$(awk -v b="$6" -v s="$7" -v c="$8" 'BEGIN {
            if (s == "FAIL") print "FAIL"
            else printf "%.1f MiB/s, %.3f s CPU", b / s / 1048576, c }')"
}

# wait_for_socket PATH PID: wait until a daemon listens, or fail if it died
wait_for_socket()
{
    local i
    for i in $(seq 100); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# bench_report: the table of medians and ratios, then the commands
bench_report()
{
    echo
    echo "== $BENCH_NAME: median of $REPS; MiB/s and CPU seconds per GiB moved"
    echo "   ratio = ours/stock throughput, cpu-ratio = stock/ours CPU per GiB"
    echo "   (both >1.0: ours better; cpu-ratio is steadier on a busy machine)"
    awk -F'\t' '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            for (i = 1; i <= n; i++)
                for (j = i + 1; j <= n; j++)
                    if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function cell(key, tool, arr, fmt) {
            if ((key, tool) in fail || !((key, tool) in arr)) return "FAIL"
            return sprintf(fmt, median(arr[key, tool]))
        }
        function ratio(a, b) {
            return (a == "FAIL" || b == "FAIL" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b)
        }
        {
            key = $1 "\t" $2 "\t" $3 "\t" $4
            if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
            if ($7 == "FAIL" || $6 + 0 == 0) { fail[key, $5] = 1; next }
            tp[key, $5] = tp[key, $5] " " ($6 / $7 / 1048576)
            cpu[key, $5] = cpu[key, $5] " " ($8 / ($6 / 1073741824))
        }
        END {
            fmt = "%-8s %-8s %-8s %-22s %9s %9s %6s %8s %8s %6s\n"
            printf fmt, "row", "data", "variant", "workload", "ours", "stock", "ratio",
                   "ours-cpu", "stk-cpu", "cpu-r"
            for (k = 1; k <= nk; k++) {
                key = order[k]
                split(key, f, "\t")
                o = cell(key, "ours", tp, "%.1f"); s = cell(key, "stock", tp, "%.1f")
                oc = cell(key, "ours", cpu, "%.3f"); sc = cell(key, "stock", cpu, "%.3f")
                printf fmt, f[1], f[2], f[3], f[4], o, s, ratio(o, s), oc, sc, ratio(sc, oc)
            }
        }' "$BENCH_RESULTS"
    echo
    echo "-- commands of the first repetition, with S=$SCRATCH"
    awk '!seen[$0]++' "$BENCH_CMDS"
}

# Raw data sets of $SIZE_BYTES, shared by the scripts that convert or copy
# a guest image.  Each writes PATH once; the page cache keeps it warm for
# both sides alike.

# gen_random PATH: incompressible, every cluster unique
gen_random()
{
    head -c "$SIZE_BYTES" /dev/urandom >"$1"
}

# gen_sparse PATH: a hole with 64 KiB of random data every 16 MiB (0.4%)
gen_sparse()
{
    local off=0 step=$((16 << 20))
    truncate -s "$SIZE_BYTES" "$1"
    while [ "$off" -lt "$SIZE_BYTES" ]; do
        head -c 65536 /dev/urandom |
            dd of="$1" bs=64k seek=$((off / 65536)) conv=notrunc status=none
        off=$((off + step))
    done
}

# gen_dup PATH: the same 1 MiB of random data over and over: every 64 KiB
# cluster is one of 16, the best case for deduplication
gen_dup()
{
    local i n=$((SIZE_BYTES >> 20))
    head -c 1M /dev/urandom >"$1.blk"
    for i in $(seq "$n"); do cat "$1.blk"; done >"$1"
    rm -f "$1.blk"
}

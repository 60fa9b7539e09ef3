#!/bin/bash
#
# The NBD server against real clients from Debian: nbdinfo and nbdcopy
# (libnbd), stock qemu-io and qemu-img (QEMU's NBD client) and fio's nbd
# engine.  The server is nbd-test-server; images are raw, plus qcow2 once
# our block layer has it.  Prints TAP.
#
# usage: test-nbd-clients.sh PATH/TO/nbd-test-server

set -u
SERVER=$(readlink -f "${1:?usage: $0 nbd-test-server}")

for tool in nbdinfo nbdcopy qemu-io qemu-img fio cmp; do
    if ! command -v "$tool" >/dev/null; then
        echo "1..0 # SKIP $tool is not installed"
        exit 0
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nbd-clients.XXXXXX") || exit 1
SERVER_PID=
n=0
failed=0

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
# Whatever the clients leave behind stays in the scratch directory.
cd "$WORK" || exit 1

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

not_ok() {
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    sed 's/^/# /' "$WORK/out" 2>/dev/null
}

# check DESCRIPTION COMMAND...: the command must succeed; output kept.
check() {
    local desc=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        ok "$desc"
    else
        not_ok "$desc"
    fi
}

# check_fails DESCRIPTION COMMAND...: the command must fail.
check_fails() {
    local desc=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        not_ok "$desc"
    else
        ok "$desc"
    fi
}

# start_server ARGS...: run nbd-test-server and wait for "ready".
start_server() {
    "$SERVER" "$@" >"$WORK/server.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q ready "$WORK/server.out" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    SERVER_PID=
    return 1
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID"
        local rc=$?
        SERVER_PID=
        return $rc
    fi
}

# qemu-io that fails on any failed command, pattern mismatch included.
qio() {
    local out
    out=$(qemu-io -f raw "$@" 2>&1)
    local rc=$?
    echo "$out"
    [ $rc -eq 0 ] && ! grep -qi "fail\|error" <<<"$out"
}

# The tests for one image format.
run_suite() {
    local fmt=$1
    local img=$WORK/disk.$fmt
    local sock=$WORK/nbd.sock
    local uri="nbd+unix:///disk?socket=$sock"
    local t="[$fmt]"

    qemu-img create -q -f "$fmt" "$img" 64M || return 1
    if ! start_server --socket "$sock" --name disk --description "test disk" \
            --fmt "$fmt" --discard "$img"; then
        if grep -qi "unknown driver\|not supported\|unknown format" \
                "$WORK/server.out"; then
            n=$((n + 1))
            echo "ok $n - $t # SKIP format not built in"
            return 0
        fi
        cp "$WORK/server.out" "$WORK/out"
        not_ok "$t server starts"
        return 1
    fi

    # nbdinfo: listing and what the export advertises.
    check "$t nbdinfo --list" nbdinfo --list "nbd+unix:///?socket=$sock"
    if grep -q 'export="disk"' "$WORK/out" &&
       grep -q 'description: test disk' "$WORK/out" &&
       grep -q 'export-size: 67108864' "$WORK/out" &&
       grep -q 'is_read_only: false' "$WORK/out" &&
       grep -q 'can_multi_conn: true' "$WORK/out" &&
       grep -q 'can_fast_zero: true' "$WORK/out" &&
       grep -q 'block_size_maximum: 33554432' "$WORK/out" &&
       grep -q 'base:allocation' "$WORK/out"; then
        ok "$t nbdinfo --list content"
    else
        not_ok "$t nbdinfo --list content"
    fi

    # qemu-io: patterns written and read back through QEMU's client.
    check "$t qemu-io write" qio -c "write -P 0x11 0 1M" \
        -c "write -P 0x22 4M 64k" -c "write -z 8M 1M" \
        -c "write -P 0x33 63M 1M" -c "flush" "$uri"
    check "$t qemu-io read back" qio -c "read -P 0x11 0 1M" \
        -c "read -P 0x22 4M 64k" -c "read -P 0 8M 1M" \
        -c "read -P 0 1M 3M" -c "read -P 0x33 63M 1M" "$uri"
    check "$t qemu-io unaligned" qio -c "write -P 0x44 5000 3333" \
        -c "read -P 0x44 5000 3333" -c "read -P 0x11 4096 904" "$uri"
    check_fails "$t qemu-io read past the end" qio -c "read 64M 512" "$uri"

    # base:allocation as libnbd and qemu-img see it.
    check "$t nbdinfo --map" nbdinfo --map "$uri"
    if awk '$1 == 0 && $4 == "data" { d = 1 } $4 == "hole,zero" { h = 1 }
            END { exit !(d && h) }' "$WORK/out"; then
        ok "$t nbdinfo --map shows data and holes"
    else
        not_ok "$t nbdinfo --map shows data and holes"
    fi
    check "$t qemu-img map" qemu-img map -f raw --output=json "$uri"
    if grep -q '"start": 0, "length": [0-9]*, "depth": 0, "present": true, "zero": false, "data": true' "$WORK/out"; then
        ok "$t qemu-img map shows the data"
    else
        not_ok "$t qemu-img map shows the data"
    fi

    # nbdcopy both ways, compared with cmp and qemu-img compare.
    head -c 48M /dev/urandom >"$WORK/src.bin"
    truncate -s 64M "$WORK/src.bin"
    check "$t nbdcopy to the export" nbdcopy "$WORK/src.bin" "$uri"
    check "$t nbdcopy from the export" nbdcopy "$uri" "$WORK/dst.bin"
    check "$t copies are identical" cmp "$WORK/src.bin" "$WORK/dst.bin"
    check "$t qemu-img compare" qemu-img compare -f raw -F raw "$uri" \
        "$WORK/src.bin"
    check "$t qemu-img convert from the export" qemu-img convert -f raw \
        -O raw "$uri" "$WORK/conv.bin"
    check "$t converted copy is identical" cmp "$WORK/src.bin" "$WORK/conv.bin"
    rm -f "$WORK/dst.bin" "$WORK/conv.bin"

    # fio: verified random writes at queue depth 16, then a mixed run on
    # four connections at once.
    check "$t fio verify iodepth 16" fio --name=verify --ioengine=nbd \
        --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 --size=16M \
        --offset=16M --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --verify_state_save=0
    check "$t fio 4 jobs mixed" fio --name=mixed --ioengine=nbd \
        --uri="$uri" --rw=randrw --bs=64k --iodepth=16 --size=16M \
        --offset=32M --numjobs=4 --time_based --runtime=2 \
        --group_reporting
    check "$t fio verify after mixed load" fio --name=verify2 \
        --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=4 \
        --size=8M --offset=48M --verify=md5 --do_verify=1 --verify_fatal=1 \
        --verify_state_save=0

    # Several clients at once, each on its own region.
    local pids=()
    for i in 0 1 2 3 4 5; do
        qio -c "write -P $((0x50 + i)) $((i * 2))M 2M" "$uri" \
            >"$WORK/par$i.out" 2>&1 &
        pids+=($!)
    done
    local par_ok=1
    for pid in "${pids[@]}"; do
        wait "$pid" || par_ok=0
    done
    if [ $par_ok = 1 ]; then
        ok "$t concurrent qemu-io writers"
    else
        cat "$WORK"/par*.out >"$WORK/out"
        not_ok "$t concurrent qemu-io writers"
    fi
    check "$t concurrent writes all landed" qio \
        -c "read -P 0x50 0M 2M" -c "read -P 0x51 2M 2M" \
        -c "read -P 0x52 4M 2M" -c "read -P 0x53 6M 2M" \
        -c "read -P 0x54 8M 2M" -c "read -P 0x55 10M 2M" "$uri"

    # Discard and write zeroes as QEMU sends them.
    check "$t qemu-io discard and zero" qio -c "discard 12M 1M" \
        -c "write -z -u 13M 1M" -c "read -P 0 13M 1M" "$uri"

    check "$t server exits on SIGTERM" stop_server
    if [ -e "$sock" ]; then
        not_ok "$t socket removed on exit"
    else
        ok "$t socket removed on exit"
    fi

    # Data survives the server: check it with the stock qemu-io directly.
    check "$t data on disk after stop" qemu-io -f "$fmt" \
        -c "read -P 0x55 10M 2M" "$img"
    if [ "$fmt" != raw ]; then
        check "$t stock qemu-img check" qemu-img check -f "$fmt" "$img"
    fi

    # Read-only export.
    start_server --socket "$sock" --name disk --read-only --fmt "$fmt" "$img"
    check "$t read-only nbdinfo" nbdinfo "$uri"
    if grep -q 'is_read_only: true' "$WORK/out" &&
       grep -q 'can_trim: false' "$WORK/out"; then
        ok "$t read-only advertised"
    else
        not_ok "$t read-only advertised"
    fi
    # QEMU's client sees READ_ONLY and refuses to open for writing.
    check_fails "$t read-only refuses write access" qio -c "write 0 4k" "$uri"
    check "$t read-only reads" qio -r -c "read -P 0x55 10M 2M" "$uri"
    check "$t read-only server exits" stop_server
}

# TCP on loopback: probe for a free port.
run_tcp() {
    local img=$WORK/tcp.raw port=
    qemu-img create -q -f raw "$img" 1M
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 20000))
        if start_server --tcp "127.0.0.1:$port" --name disk --fmt raw \
                "$img"; then
            break
        fi
        port=
    done
    if [ -z "$port" ]; then
        cp "$WORK/server.out" "$WORK/out"
        not_ok "[tcp] server starts"
        return
    fi
    check "[tcp] qemu-io" qio -c "write -P 0x66 0 64k" \
        -c "read -P 0x66 0 64k" "nbd://127.0.0.1:$port/disk"
    check "[tcp] nbdcopy" nbdcopy "nbd://127.0.0.1:$port/disk" "$WORK/tcp.out"
    check "[tcp] same data" cmp "$img" "$WORK/tcp.out"
    check "[tcp] server exits" stop_server
}

run_suite raw
run_suite qcow2
run_tcp

echo "1..$n"
[ $failed -eq 0 ]

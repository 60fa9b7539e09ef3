#!/bin/bash
# Row 1: qemu-img convert raw -> qcow2 and qcow2 -> raw of a $SIZE image,
# ours vs stock.  Each side converts the raw data set into a qcow2 of its
# own (timed), then that qcow2 back into raw (timed); the first repetition
# checks the round trip byte for byte, since a fast wrong answer is no
# result.  Throughput is virtual size / wall time, so the sparse data set
# shows how well holes are skipped.
#
# usage: convert.sh BUILD_DIR      (knobs: see lib.sh)

. "$(dirname "$0")/lib.sh"

# Data sets: "label|generator" (generators in lib.sh).  One line adds one.
DATASETS_TABLE="
random|gen_random
sparse|gen_sparse
#dup|gen_dup
"

# Image variants: "label|ours -o|stock -o".  One line adds one.
VARIANTS_TABLE="
plain||
#dedup|dedup=sha256|
"

bench_init "$1" convert

# convert_pair REP DATASET VARIANT_LINE SRC TOOL
convert_pair()
{
    local rep=$1 ds=$2 vline=$3 src=$4 tool=$5 var img
    local q=$SCRATCH/$tool.qcow2 r=$SCRATCH/$tool.raw
    var=${vline%%|*}
    img=$(bin "$tool" qemu-img)
    rm -f "$q" "$r"
    # shellcheck disable=SC2046
    run_timed "$rep" convert "$ds" "$var" raw-to-qcow2 "$tool" "$SIZE_BYTES" \
        "$img" convert -f raw -O qcow2 $(opt_arg "$(variant_opts "$vline" "$tool")") \
        "$src" "$q"
    run_timed "$rep" convert "$ds" "$var" qcow2-to-raw "$tool" "$SIZE_BYTES" \
        "$img" convert -f qcow2 -O raw "$q" "$r"
    if [ "$rep" = 1 ] && ! cmp -s "$src" "$r"; then
        echo "WARNING: $tool round trip of $ds/$var differs from the source" >&2
        record convert "$ds" "$var" round-trip-MISMATCH "$tool" 0 FAIL
    fi
    rm -f "$q" "$r"
}

echo "== convert: scratch $SCRATCH, size $SIZE, $REPS repetitions"
while IFS='|' read -r ds gen; do
    src=$SCRATCH/src-$ds.raw
    setup "$gen" "$src"
    while read -r vline; do
        for rep in $(seq "$REPS"); do
            for tool in $(tools_for_rep "$rep"); do
                convert_pair "$rep" "$ds" "$vline" "$src" "$tool"
            done
        done
    done < <(selected "$VARIANTS_TABLE" "${VARIANTS:-}")
    rm -f "$src"
done < <(selected "$DATASETS_TABLE" "${DATASETS:-}")

bench_report

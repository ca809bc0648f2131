#!/usr/bin/env bash
# Scaling across shards (issue #15): records/s of 100-byte records over many partitions, with a
# fresh broker of 1, 2, ... N shards (one shard per core, cores 0..N-1), each run by
# `spate-bench produce --spawn-broker`, and the ratio of each to 1 shard. Not a timed test:
# figures for bench/README.md. Needs only built binaries (spate-bench and spate-broker in one
# directory) and coreutils/awk; no cargo.
#
# Placement, printed with every row: the broker gets cores 0..N-1; the load generator gets the
# cores above them (SPATE_BENCH_LOAD_CORES overrides), or, when none are left, every core,
# shared with the broker. A shared row measures the broker and the load generator together, so
# its ratio understates the broker's scaling; the table says so on that row.
#
# usage: bench/scripts/scaling.sh [SHARD_COUNT...]     (default: 1 2 4 ... up to the cores, and
#                                                      the core count itself)
#   e.g. bench/scripts/scaling.sh 1 2
# Environment:
#   SPATE_BENCH_BIN              directory of spate-bench and spate-broker (default target/release)
#   SPATE_BENCH_OUT              where the per-run JSON, logs and scaling.json go (default: $OUT
#                                when set, else a new directory under target/)
#   SPATE_BENCH_PARTITIONS_PER_SHARD (default 64), SPATE_BENCH_PRODUCERS_PER_SHARD (default 1,
#                                at least 2 producers in all), SPATE_BENCH_MESSAGE_BYTES (100),
#                                SPATE_BENCH_BATCH_BYTES (65536), SPATE_BENCH_ACKS (all),
#                                SPATE_BENCH_DURATION_MS (10000), SPATE_BENCH_WARMUP_MS (1000)
#   SPATE_BENCH_LOAD_CORES       load-generator cores for every row, like 8-15 (default above)
#   SPATE_BENCH_DATA_DIR         the brokers' data root (default: spate-bench's; not a tmpfs)
#   SPATE_BENCH_EXTRA            more spate-bench flags, e.g. "--with-limits"
set -euo pipefail

bin=${SPATE_BENCH_BIN:-target/release}
cores=$(nproc)
if [[ $# -gt 0 ]]; then
    counts=("$@")
else
    counts=()
    for (( count = 1; count <= cores; count *= 2 )); do counts+=("$count"); done
    if [[ ${counts[-1]} -ne $cores ]]; then counts+=("$cores"); fi
fi
out=${SPATE_BENCH_OUT:-${OUT:-}}
if [[ -z "$out" ]]; then
    mkdir -p target
    out=$(mktemp -d -p target scaling-XXXXXX)
fi
mkdir -p "$out"
partitions_per_shard=${SPATE_BENCH_PARTITIONS_PER_SHARD:-64}
producers_per_shard=${SPATE_BENCH_PRODUCERS_PER_SHARD:-1}
message_bytes=${SPATE_BENCH_MESSAGE_BYTES:-100}
batch_bytes=${SPATE_BENCH_BATCH_BYTES:-65536}
acks=${SPATE_BENCH_ACKS:-all}
duration_ms=${SPATE_BENCH_DURATION_MS:-10000}
warmup_ms=${SPATE_BENCH_WARMUP_MS:-1000}
data_flags=()
if [[ -n "${SPATE_BENCH_DATA_DIR:-}" ]]; then data_flags=(--data-dir "$SPATE_BENCH_DATA_DIR"); fi
# shellcheck disable=SC2206 # word splitting of extra flags is the point
extra=(${SPATE_BENCH_EXTRA:-})

for binary in spate-bench spate-broker; do
    if [[ ! -x "$bin/$binary" ]]; then
        echo "no $bin/$binary: build with cargo build --release -p spate-broker -p spate-bench," \
            "or set SPATE_BENCH_BIN" >&2
        exit 2
    fi
done

# The top-level "records_per_sec" of a spate-bench JSON file (pretty-printed: two spaces deep).
records_per_sec() {
    sed -n 's/^  "records_per_sec": \([0-9.eE+-]*\),\{0,1\}$/\1/p' "$1" | head -1
}

echo "scaling: ${message_bytes} B records, ${partitions_per_shard} partitions and" \
    "${producers_per_shard} producer(s) per shard, acks=$acks, ${duration_ms} ms per run;" \
    "machine: $cores cores, $(uname -r), load [$(cut -d' ' -f1-3 /proc/loadavg)]; results in $out"
printf '%-7s %-12s %-12s %-8s %-11s %-10s %14s %8s\n' shards broker_cores load_cores shared \
    partitions producers records/s "x 1 shard"
base=
rows=()
status=0
for shards in "${counts[@]}"; do
    if (( shards < 1 || shards > cores )); then
        echo "skipping $shards shards: this machine has $cores cores" >&2
        continue
    fi
    broker_cores="0-$(( shards - 1 ))"
    if [[ -n "${SPATE_BENCH_LOAD_CORES:-}" ]]; then
        load_cores=$SPATE_BENCH_LOAD_CORES
    elif (( shards < cores )); then
        load_cores="$shards-$(( cores - 1 ))"
    else
        load_cores="0-$(( cores - 1 ))"
    fi
    # Shared when the load generator's lowest core is one of the broker's 0..N-1 (load cores
    # are given lowest first, as a range like 8-15 or a list like 8,9).
    load_first=$(echo "$load_cores" | sed 's/[^0-9].*//')
    broker_last=$(( shards - 1 ))
    shared=false
    if (( load_first <= broker_last )); then shared=true; fi
    partitions=$(( shards * partitions_per_shard ))
    producers=$(( shards * producers_per_shard ))
    if (( producers < 2 )); then producers=2; fi
    json="$out/scaling-${shards}.json"
    log="$out/scaling-${shards}.log"
    if ! "$bin/spate-bench" produce --spawn-broker --broker-binary "$bin/spate-broker" \
        --broker-cores "$broker_cores" --load-cores "$load_cores" "${data_flags[@]}" \
        --partitions "$partitions" --producers "$producers" --message-bytes "$message_bytes" \
        --batch-bytes "$batch_bytes" --linger-us 1000 --acks "$acks" \
        --durability group-commit --duration-ms "$duration_ms" --warmup-ms "$warmup_ms" \
        --name "scaling ${shards} shard(s)" --no-progress --json "$json" "${extra[@]}" \
        > "$log" 2>&1; then
        echo "$shards shards: spate-bench failed (exit $?); see $log" >&2
        status=1
    fi
    rate=$( [[ -f "$json" ]] && records_per_sec "$json" || true )
    rate=${rate:-0}
    if [[ -z "$base" ]]; then base=$rate; fi
    ratio=$(awk -v rate="$rate" -v base="$base" 'BEGIN { if (base > 0) printf "%.2f", rate / base; else print "null" }')
    note=
    if [[ $shared == true ]]; then note="  (load generator SHARES the broker's cores)"; fi
    printf '%-7s %-12s %-12s %-8s %-11s %-10s %14.0f %8s%s\n' "$shards" "$broker_cores" \
        "$load_cores" "$shared" "$partitions" "$producers" "$rate" "$ratio" "$note"
    rows+=("{\"shards\": $shards, \"broker_cores\": \"$broker_cores\", \"load_cores\": \"$load_cores\", \"load_shares_broker_cores\": $shared, \"partitions\": $partitions, \"producers\": $producers, \"records_per_sec\": $rate, \"ratio_to_first\": $ratio, \"json\": \"$(basename "$json")\"}")
done

{
    echo "{"
    echo "  \"workload\": \"scaling\","
    echo "  \"machine\": {\"cores\": $cores, \"kernel\": \"$(uname -r)\"},"
    echo "  \"message_bytes\": $message_bytes, \"partitions_per_shard\": $partitions_per_shard,"
    echo "  \"producers_per_shard\": $producers_per_shard, \"batch_bytes\": $batch_bytes,"
    echo "  \"acks\": \"$acks\", \"duration_ms\": $duration_ms, \"warmup_ms\": $warmup_ms,"
    echo "  \"first_shard_count\": ${counts[0]},"
    echo "  \"runs\": ["
    for index in "${!rows[@]}"; do
        separator=,
        if (( index == ${#rows[@]} - 1 )); then separator=; fi
        echo "    ${rows[$index]}$separator"
    done
    echo "  ]"
    echo "}"
} > "$out/scaling.json"
echo "ratios are to the first row (${counts[0]} shard(s)); JSON: $out/scaling.json"
exit $status

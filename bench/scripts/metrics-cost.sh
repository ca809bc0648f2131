#!/usr/bin/env bash
# What the broker's metrics cost (issue #16): the same workload against a fresh broker with
# metrics on (the default) and with `--metrics false`, alternated in pairs (on, off, on, off,
# ...) within one run of this script, so that drift of the machine (disk, noisy neighbours)
# falls on both sides alike. Each side's figure is the median of its runs; the table gives
# off/on ratios. Not a timed test: figures for tuning/README.md. Needs only built binaries
# (spate-bench and spate-broker in one directory) and coreutils/awk; no cargo.
#
# Workloads: 100-byte records in 64 KiB batches (records/s, CPU-bound) and 100-byte records in
# 1 KiB batches (requests/s: the per-request counting and clock reads are paid per batch).
#
# usage: bench/scripts/metrics-cost.sh [ROUNDS]            (default 3 pairs per workload)
# Environment:
#   SPATE_BENCH_BIN          directory of spate-bench and spate-broker (default target/release)
#   SPATE_BENCH_OUT          where the per-run JSON and logs go (default: a new directory under
#                            target/)
#   SPATE_BENCH_BROKER_CORES (default 0), SPATE_BENCH_LOAD_CORES (default 1)
#   SPATE_BENCH_DURATION_MS  (default 5000), SPATE_BENCH_WARMUP_MS (default 1000)
#   SPATE_BENCH_DATA_DIR     the brokers' data root (default: spate-bench's; not a tmpfs)
#   SPATE_BENCH_ACKS         all (default) or leader: leader takes the fsync out of the answer,
#                            so the CPU the counting costs is not hidden behind the disk
set -euo pipefail

source "$(dirname "$0")/lib.sh"
cost_setup metrics-cost "${1:-3}" spate-bench spate-broker

echo "metrics cost: $rounds pairs per workload, ${duration_ms} ms per run, broker on core(s)" \
    "$broker_cores, load on $load_cores; $(machine_summary);" \
    "results in $out"
printf '%-26s %-8s %14s %14s %12s\n' workload metrics records/s bytes/s p99_us
status=0
summary=()
for workload in "batches-64k 65536" "batches-1k 1024"; do
    read -r name batch_bytes <<< "$workload"
    for round in $(seq 1 "$rounds"); do
        for metrics in true false; do
            json="$out/$name-metrics-$metrics-$round.json"
            log="$out/$name-metrics-$metrics-$round.log"
            if ! "$bin/spate-bench" produce --spawn-broker --broker-binary "$bin/spate-broker" \
                --broker-arg=--metrics --broker-arg="$metrics" \
                --broker-cores "$broker_cores" --load-cores "$load_cores" "${data_flags[@]}" \
                --partitions 4 --producers 2 --message-bytes 100 --batch-bytes "$batch_bytes" \
                --linger-us 1000 --acks "${SPATE_BENCH_ACKS:-all}" --durability group-commit \
                --duration-ms "$duration_ms" --warmup-ms "$warmup_ms" \
                --name "metrics-cost $name metrics=$metrics #$round" --no-progress \
                --json "$json" > "$log" 2>&1; then
                echo "$name metrics=$metrics #$round: spate-bench failed; see $log" >&2
                status=1
                continue
            fi
            records=$(figure "$json" records_per_sec)
            bytes=$(figure "$json" throughput_bytes_per_sec)
            p99=$(p99 "$json")
            printf '%-26s %-8s %14.0f %14.0f %12s\n' "$name #$round" "$metrics" \
                "${records:-0}" "${bytes:-0}" "${p99:-?}"
            echo "$records" >> "$out/$name-$metrics.records"
        done
    done
    on=$(median < "$out/$name-true.records")
    off=$(median < "$out/$name-false.records")
    ratio=$(awk -v on="$on" -v off="$off" 'BEGIN { if (off > 0) printf "%.3f", on / off; else print "null" }')
    summary+=("$(printf '%-12s median records/s: metrics on %.0f, off %.0f; on/off %s' "$name" "$on" "$off" "$ratio")")
done
echo
printf '%s\n' "${summary[@]}"
exit $status

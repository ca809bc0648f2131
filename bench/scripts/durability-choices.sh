#!/usr/bin/env bash
# The durability choices of tuning/README.md, measured (issue #16): one produce workload (1 KiB
# records, 64 KiB batches, 4 partitions, 2 producers) against a fresh one-shard broker per row,
# all rows in one run of this script, with this machine's limits (loopback, O_DIRECT write with
# fdatasync) from the same run. Rows:
#   acks=all    durability=group-commit        the default: the answer waits for the fsync,
#                                               appends in flight share it
#   acks=all    durability=fsync-every-append  one fsync per append
#   acks=leader durability=group-commit        answered once written, fsynced by the group
#                                               commit bound (group.commit.us)
# Not a timed test: figures for tuning/README.md. Needs only built binaries.
#
# usage: bench/scripts/durability-choices.sh
# Environment: SPATE_BENCH_BIN (default target/release), SPATE_BENCH_OUT (default: a new
#   directory under target/), SPATE_BENCH_DURATION_MS (default 8000), SPATE_BENCH_DATA_DIR,
#   SPATE_BENCH_BROKER_CORES (default 0), SPATE_BENCH_LOAD_CORES (default 1)
set -euo pipefail

bin=${SPATE_BENCH_BIN:-target/release}
out=${SPATE_BENCH_OUT:-}
if [[ -z "$out" ]]; then
    mkdir -p target
    out=$(mktemp -d -p target durability-XXXXXX)
fi
mkdir -p "$out"
duration_ms=${SPATE_BENCH_DURATION_MS:-8000}
broker_cores=${SPATE_BENCH_BROKER_CORES:-0}
load_cores=${SPATE_BENCH_LOAD_CORES:-1}
data_flags=()
if [[ -n "${SPATE_BENCH_DATA_DIR:-}" ]]; then data_flags=(--data-dir "$SPATE_BENCH_DATA_DIR"); fi

echo "durability choices: 1 KiB records, 64 KiB batches, 4 partitions, 2 producers," \
    "${duration_ms} ms per row; machine: $(nproc) cores, $(uname -r)," \
    "load [$(cut -d' ' -f1-3 /proc/loadavg)]; results in $out"
first=--with-limits
for row in "all group-commit" "all fsync-every-append" "leader group-commit"; do
    read -r acks durability <<< "$row"
    name="acks-$acks-$durability"
    "$bin/spate-bench" produce --spawn-broker --broker-binary "$bin/spate-broker" \
        --broker-cores "$broker_cores" --load-cores "$load_cores" "${data_flags[@]}" \
        --partitions 4 --producers 2 --message-bytes 1024 --batch-bytes 65536 \
        --acks "$acks" --durability "$durability" --duration-ms "$duration_ms" \
        --warmup-ms 1000 --name "$name" --no-progress --json "$out/$name.json" $first \
        > "$out/$name.log" 2>&1 || { echo "$name failed; see $out/$name.log" >&2; exit 1; }
    first=
    cat "$out/$name.log"
done

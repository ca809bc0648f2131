#!/usr/bin/env bash
# One-shot scaling run for a machine with many cores (issue #15: the goal is >= 14x records/s
# from 1 to 16 shards), with release binaries built elsewhere: runs bench/scripts/scaling.sh for
# 1, 2, 4, 8 and 16 shards (those the machine has cores for) and writes everything under
# $OUT/scaling when OUT is set (else under target/). Needs nothing but the two binaries, bash,
# coreutils and awk: no cargo, no network.
#
# usage: bench/scripts/device-scaling.sh BIN_DIR [SHARD_COUNT...]
#   BIN_DIR holds spate-bench and spate-broker, e.g. built here with
#     cargo build --release -p spate-broker -p spate-bench
#     mkdir -p bench-bin && cp target/release/spate-bench target/release/spate-broker bench-bin/
#   and carried to the machine. The environment of scaling.sh applies (SPATE_BENCH_DURATION_MS,
#   SPATE_BENCH_PARTITIONS_PER_SHARD, ...).
#
# Placement: N shards on cores 0..N-1, the load generator on the cores above; at 16 shards on 16
# cores the load generator shares the broker's cores, which the table marks on that row.
set -euo pipefail

bin=${1:?usage: device-scaling.sh BIN_DIR [SHARD_COUNT...]}
shift
counts=("$@")
if [[ ${#counts[@]} -eq 0 ]]; then counts=(1 2 4 8 16); fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n "${OUT:-}" ]]; then
    out="$OUT/scaling"
else
    mkdir -p target
    out=$(mktemp -d -p target device-scaling-XXXXXX)
fi
mkdir -p "$out"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "cores: $(nproc)"
    lscpu 2>/dev/null || true
    free -g 2>/dev/null || true
    df -h "${SPATE_BENCH_DATA_DIR:-${TMPDIR:-/tmp}}" 2>/dev/null || true
    echo "spate-bench: $("$bin/spate-bench" --version 2>&1 || true)"
} > "$out/machine.txt"
SPATE_BENCH_BIN="$bin" SPATE_BENCH_OUT="$out" "$here/scaling.sh" "${counts[@]}" \
    2>&1 | tee "$out/scaling.txt"

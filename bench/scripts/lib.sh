#!/usr/bin/env bash
# What the cost scripts share (tls-cost.sh, metrics-cost.sh, authz-cost.sh): their common
# environment and output directory, the check that the binaries are built, reading a figure out
# of a spate-bench JSON file, and the median of a column of numbers. Sourced, never run: it
# sets variables in the calling script and exits it on a missing binary.
#
# Environment (every cost script):
#   SPATE_BENCH_BIN          directory of the binaries (default target/release)
#   SPATE_BENCH_OUT          where the per-run JSON and logs go (default: a new directory under
#                            target/)
#   SPATE_BENCH_BROKER_CORES (default 0), SPATE_BENCH_LOAD_CORES (default 1)
#   SPATE_BENCH_DURATION_MS  (default 5000), SPATE_BENCH_WARMUP_MS (default 1000)
#   SPATE_BENCH_DATA_DIR     the brokers' data root (default: spate-bench's; not a tmpfs)

# cost_setup NAME ROUNDS BINARY...: sets rounds, bin, out (target/NAME-XXXXXX unless
# SPATE_BENCH_OUT says where), broker_cores, load_cores, duration_ms, warmup_ms and data_flags
# (spate-bench's --data-dir, or nothing); exits 2 when one of the binaries is not in $bin.
cost_setup() {
    local name=$1
    rounds=$2
    shift 2
    bin=${SPATE_BENCH_BIN:-target/release}
    out=${SPATE_BENCH_OUT:-}
    if [[ -z "$out" ]]; then
        mkdir -p target
        out=$(mktemp -d -p target "$name-XXXXXX")
    fi
    mkdir -p "$out"
    broker_cores=${SPATE_BENCH_BROKER_CORES:-0}
    load_cores=${SPATE_BENCH_LOAD_CORES:-1}
    duration_ms=${SPATE_BENCH_DURATION_MS:-5000}
    warmup_ms=${SPATE_BENCH_WARMUP_MS:-1000}
    data_flags=()
    if [[ -n "${SPATE_BENCH_DATA_DIR:-}" ]]; then data_flags=(--data-dir "$SPATE_BENCH_DATA_DIR"); fi
    local binary
    for binary in "$@"; do
        if [[ ! -x "$bin/$binary" ]]; then
            echo "no $bin/$binary: build with cargo build --release -p spate-broker" \
                "-p spate-bench -p spate-client, or set SPATE_BENCH_BIN" >&2
            exit 2
        fi
    done
}

# The machine a run was made on, for the first line of a script's output.
machine_summary() {
    echo "machine: $(nproc) cores, $(uname -r), load [$(cut -d' ' -f1-3 /proc/loadavg)]"
}

# figure FILE NAME: a top-level figure of a spate-bench JSON file (pretty-printed: two spaces
# deep).
figure() {
    sed -n "s/^  \"$2\": \([0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -1
}

# p99 FILE: the first p99 latency of a spate-bench JSON file (four spaces deep), microseconds.
p99() {
    sed -n 's/^    "p99": \([0-9.eE+-]*\),\{0,1\}$/\1/p' "$1" | head -1
}

# The median of the numbers on standard input, one a line (0 for none).
median() {
    sort -g | awk '{ values[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print values[(NR + 1) / 2]; else print (values[NR / 2] + values[NR / 2 + 1]) / 2 }'
}

#!/usr/bin/env bash
# Restart time after kill -9 (issue #18): how long a broker takes to serve ("broker ready") and
# to have every partition open ("all partitions open") after a crash, for an empty broker, 1 GiB
# and 10 GiB over 4 partitions, and 1 GiB over 1,000 partitions. Each data set is written with
# `spate produce` (1 KiB records, acks=leader; 4 partitions: one writer per partition; 1,000
# partitions: one writer, records keyed by number), the broker is killed with SIGKILL right
# after the last write, and then started and killed again twice per mode, alternating:
#   after:  the default recovery (--recovery-scan checkpoints): scan from the last index entry,
#           replay producers from the recovery point;
#   before: --recovery-scan full: every active segment checked from its first byte, as the
#           broker did before recovery points (what the open read is in "scanned").
# Not a timed test: figures for bench/README.md. The data lives under target/ on the real disk
# (refused on tmpfs) and is deleted at the end.
#
# usage: bench/scripts/restart_time.sh
# Environment: SPATE_BENCH_BIN (default target/release), SPATE_BENCH_SHARDS (default 2),
# SPATE_BENCH_LARGE_GIB (default 10), SPATE_BENCH_ROUNDS (default 2).
set -euo pipefail

bin=${SPATE_BENCH_BIN:-target/release}
shards=${SPATE_BENCH_SHARDS:-2}
large_gib=${SPATE_BENCH_LARGE_GIB:-10}
rounds=${SPATE_BENCH_ROUNDS:-2}
root=target/spate-bench-data
mkdir -p "$root"
filesystem=$(stat -f -c %T "$root")
if [[ $filesystem == tmpfs || $filesystem == ramfs ]]; then
    echo "refusing: $root is on $filesystem, not a disk" >&2; exit 1
fi
data=
log=
pid=
port=$(( 20000 + RANDOM % 20000 ))
address=127.0.0.1:$port

cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null || true; fi
    if [[ -n "$data" ]]; then rm -rf "$data" "$log"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# A record value: 1023 bytes and the newline that ends it.
value=$(head -c 1023 /dev/zero | tr '\0' 'x')

wait_for_line() {
    until grep -q "$1" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "broker exited before logging '$1':" >&2; tail -5 "$log" >&2; exit 1
        fi
        sleep 0.01
    done
}

# start_broker [flags...]: sets `result` to the wall times from launch to serving and to every
# partition open, and what the opens read (summed over the shards). Not run in a subshell: it
# sets `pid`.
start_broker() {
    : > "$log"
    # A killed broker's listening socket outlives it until the kernel has torn down its
    # io_uring rings (longer with reads in flight, on a loaded host); that wait is the kernel's,
    # not recovery, so it is reported apart and not counted.
    local waiting; waiting=$(now_ms)
    while ss -Hltn "sport = :$port" | grep -q .; do sleep 0.01; done
    port_wait_ms=$(( $(now_ms) - waiting ))
    local started; started=$(now_ms)
    # The Kafka listener on a port of its own (never 9092); by environment, which older builds
    # compared in the same run ignore.
    SPATE_KAFKA_LISTEN=127.0.0.1:0 SPATE_ADMIN_LISTEN=127.0.0.1:0 "$bin/spate-broker" --data-dir "$data" --listen "$address" --shards "$shards" \
        --log-level info "$@" 2>>"$log" &
    pid=$!
    wait_for_line "broker ready"
    local ready_ms=$(( $(now_ms) - started ))
    wait_for_line "all partitions open"
    local open_ms=$(( $(now_ms) - started ))
    local scanned replayed
    scanned=$(grep "partitions recovered" "$log" | sed -n 's/.*recovery_bytes_scanned=\([0-9]*\).*/\1/p' | awk '{s += $1} END {printf "%d", s / 1000000}')
    replayed=$(grep "partitions recovered" "$log" | sed -n 's/.*recovery_bytes_replayed=\([0-9]*\).*/\1/p' | awk '{s += $1} END {printf "%d", s / 1000000}')
    result="ready_ms=$ready_ms all_open_ms=$open_ms scanned_mb=$scanned replayed_mb=$replayed port_wait_ms=$port_wait_ms"
}

crash_broker() {
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

# data_set NAME PARTITIONS GIB: a fresh broker holding GIB GiB over PARTITIONS partitions, then
# kill -9 and the restarts.
data_set() {
    local name=$1 partitions=$2 gib=$3
    data=$(mktemp -d -p "$root" restart-XXXXXX)
    log="$data.log"
    start_broker
    local written_ms=0
    if (( partitions > 0 )); then
        local records=$(( gib * 1024 * 1024 ))
        local topic="restart-$name"
        "$bin/spate" -b "$address" topic create "$topic" --partitions "$partitions" > /dev/null
        local writing; writing=$(now_ms)
        if (( partitions <= 4 )); then
            local writers=()
            for partition in $(seq 0 $(( partitions - 1 ))); do
                { yes "$value" || true; } | head -n $(( records / partitions )) \
                    | "$bin/spate" -b "$address" produce "$topic" --partition "$partition" \
                        --acks leader > /dev/null &
                writers+=($!)
            done
            for writer in "${writers[@]}"; do wait "$writer"; done
        else
            seq 1 "$records" | awk -v value="$value" '{ print $1 " " value }' \
                | "$bin/spate" -b "$address" produce "$topic" -K ' ' --acks leader > /dev/null
        fi
        written_ms=$(( $(now_ms) - writing ))
    fi
    crash_broker
    echo "$name: partitions=$partitions data=$(du -sm "$data" | cut -f1)MB written_ms=$written_ms (then kill -9)"
    for round in $(seq 1 "$rounds"); do
        start_broker; crash_broker
        echo "  after  (checkpoints): $result"
        start_broker --recovery-scan full; crash_broker
        echo "  before (full scan):   $result"
    done
    rm -rf "$data" "$log"
    data=
}

echo "restart time after kill -9: shards=$shards data_fs=$filesystem load=[$(cut -d' ' -f1-3 /proc/loadavg)]"
data_set empty 0 0
data_set 1gib 4 1
data_set "${large_gib}gib" 4 "$large_gib"
data_set 1000-partitions 1000 1
echo "load=[$(cut -d' ' -f1-3 /proc/loadavg)]"

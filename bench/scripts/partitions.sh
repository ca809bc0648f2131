#!/usr/bin/env bash
# Many partitions on one broker (issue #18): creates TOTAL partitions as topics of 1000, then
# reports create time, the time from start to serving ("broker ready") and to every partition
# open ("all partitions open"), the time from SIGTERM to exit, RSS, open descriptors and idle
# CPU. Not a timed test: figures for bench/README.md.
#
# With SPATE_BENCH_BIN_BEFORE set to another build's directory (e.g. main before a change), the
# same data directory is then stopped and started by that build and by this one in turn, so the
# two builds' start and stop times come from one run on the same data.
#
# usage: bench/scripts/partitions.sh TOTAL [broker flags...]
#   e.g. bench/scripts/partitions.sh 10000
#        bench/scripts/partitions.sh 10000 --open-files-per-shard-max 1000000   # no cache
#        SPATE_BENCH_BIN_BEFORE=target/before bench/scripts/partitions.sh 100000
# Environment: SPATE_BENCH_BIN (default target/release), SPATE_BENCH_SHARDS (default 2),
# SPATE_BENCH_IDLE_S (default 10), SPATE_BENCH_BIN_BEFORE (default: none).
set -euo pipefail

total=${1:?usage: partitions.sh TOTAL [broker flags...]}
shift
bin=${SPATE_BENCH_BIN:-target/release}
before_bin=${SPATE_BENCH_BIN_BEFORE:-}
shards=${SPATE_BENCH_SHARDS:-2}
idle_s=${SPATE_BENCH_IDLE_S:-10}
per_topic=1000
topics=$(( (total + per_topic - 1) / per_topic ))
# Not /tmp: it may be tmpfs, which is not a disk.
root=target/spate-bench-data
mkdir -p "$root"
data=$(mktemp -d -p "$root" partitions-XXXXXX)
log="$data.log"
port=$(( 20000 + RANDOM % 20000 ))
address=127.0.0.1:$port
pid=

cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    rm -rf "$data" "$log"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# Waits until the broker's log has a line matching $1; fails if the broker exits first.
wait_for_line() {
    until grep -q "$1" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "broker exited before logging '$1':" >&2; tail -5 "$log" >&2; exit 1
        fi
        sleep 0.05
    done
}

# start_broker BIN [flags...]: serving time, and (for a build that serves before its partitions
# are open) the time until every partition is open. Older builds open all before serving.
start_broker() {
    local broker_bin=$1; shift
    : > "$log"
    # The Kafka listener on a port of its own (never 9092); by environment, which older builds
    # compared in the same run ignore.
    SPATE_KAFKA_LISTEN=127.0.0.1:0 SPATE_ADMIN_LISTEN=127.0.0.1:0 "$broker_bin/spate-broker" --data-dir "$data" --listen "$address" --shards "$shards" \
        --log-level info "$@" 2>>"$log" &
    pid=$!
    local started; started=$(now_ms)
    wait_for_line "broker ready"
    local ready_ms=$(( $(now_ms) - started ))
    if grep -q "all partitions open" "$broker_bin/spate-broker"; then
        wait_for_line "all partitions open"
        echo "ready_ms=$ready_ms all_open_ms=$(( $(now_ms) - started ))"
    else
        echo "ready_ms=$ready_ms all_open_ms=$ready_ms"
    fi
}

# RSS, descriptors and the CPU the idle broker used over idle_s seconds.
measure() {
    local ticks; ticks=$(getconf CLK_TCK)
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$idle_s"
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    local rss_kb; rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    local descriptors; descriptors=$(ls "/proc/$pid/fd" | wc -l)
    echo "rss_mb=$(( rss_kb / 1024 )) descriptors=$descriptors idle_cpu_percent=$(
        awk -v t=$(( after - before )) -v hz="$ticks" -v s="$idle_s" \
            'BEGIN { printf "%.2f", 100 * t / hz / s }')"
}

# SIGTERM, then the time until the process has exited.
stop_broker() {
    local stopping; stopping=$(now_ms)
    kill -TERM "$pid"
    wait "$pid" || { echo "broker exited with $?" >&2; exit 1; }
    echo "stop_ms=$(( $(now_ms) - stopping ))"
    pid=
}

echo "partitions=$total topics=$topics shards=$shards ulimit_n=$(ulimit -n) flags=[$*]" \
    "load=[$(cut -d' ' -f1-3 /proc/loadavg)] data_fs=$(stat -f -c %T "$data")"
echo -n "first start: "
start_broker "$bin" "$@"
created=$(now_ms)
for topic in $(seq 1 "$topics"); do
    "$bin/spate" -b "$address" topic create "t$topic" --partitions "$per_topic" > /dev/null
done
echo "create_ms=$(( $(now_ms) - created ))"
echo "after create: $(measure)"
echo -n "stop after create: "
stop_broker
echo -n "restart: "
start_broker "$bin" "$@"
echo "after restart: $(measure)"
# Every partition is still there: write to and read from the last partition of the last topic.
echo hello | "$bin/spate" -b "$address" produce "t$topics" --partition $(( per_topic - 1 ))
echo "after a produce: $(ls "/proc/$pid/fd" | wc -l) descriptors"
echo -n "stop: "
stop_broker
if [[ -n "$before_bin" ]]; then
    # The same idle data, stopped and started by each build in turn.
    for build in before after before after; do
        build_bin=$bin
        if [[ $build == before ]]; then build_bin=$before_bin; fi
        echo -n "$build: start: "
        start_broker "$build_bin" "$@"
        echo -n "$build: stop: "
        stop_broker
    done
fi
echo "load=[$(cut -d' ' -f1-3 /proc/loadavg)]"

#!/usr/bin/env bash
# Many partitions on one broker (issue #18): creates TOTAL partitions as topics of 1000, then
# reports create time, start time after SIGTERM, RSS, open descriptors and idle CPU, before and
# after the restart. Not a timed test: figures for bench/README.md.
#
# usage: bench/scripts/partitions.sh TOTAL [broker flags...]
#   e.g. bench/scripts/partitions.sh 10000
#        bench/scripts/partitions.sh 10000 --open-files-per-shard-max 1000000   # no cache
# Environment: SPATE_BENCH_BIN (default target/release), SPATE_BENCH_SHARDS (default 2),
# SPATE_BENCH_IDLE_S (default 10).
set -euo pipefail

total=${1:?usage: partitions.sh TOTAL [broker flags...]}
shift
bin=${SPATE_BENCH_BIN:-target/release}
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

start_broker() {
    : > "$log"
    "$bin/spate-broker" --data-dir "$data" --listen "$address" --shards "$shards" \
        --log-level info "$@" 2>>"$log" &
    pid=$!
    local started; started=$(now_ms)
    until grep -q "broker ready" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "broker exited before it was ready:" >&2; tail -5 "$log" >&2; exit 1
        fi
        sleep 0.05
    done
    echo "start_ms=$(( $(now_ms) - started ))"
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

stop_broker() {
    kill -TERM "$pid"
    wait "$pid" || { echo "broker exited with $?" >&2; exit 1; }
    pid=
}

echo "partitions=$total topics=$topics shards=$shards ulimit_n=$(ulimit -n) flags=[$*]"
echo -n "first start: "
start_broker "$@"
created=$(now_ms)
for topic in $(seq 1 "$topics"); do
    "$bin/spate" -b "$address" topic create "t$topic" --partitions "$per_topic" > /dev/null
done
echo "create_ms=$(( $(now_ms) - created ))"
echo "after create: $(measure)"
stop_broker
echo -n "restart: "
start_broker "$@"
echo "after restart: $(measure)"
# Every partition is still there: write to and read from the last partition of the last topic.
echo hello | "$bin/spate" -b "$address" produce "t$topics" --partition $(( per_topic - 1 ))
echo "after a produce: $(ls "/proc/$pid/fd" | wc -l) descriptors"
stop_broker

#!/usr/bin/env bash
# spate-streams against Kafka Streams 4.1.1 per core (issue #19, "Performance"), in one run on
# one broker: for a stateless map-filter and a 1-minute tumbling windowed count, each processor
# (the spate-streams instance: streams/benches/kafka_streams_comparison.rs; the Kafka Streams
# one: tests/compat/streams-differential/StreamsApp.java, a JVM) is pinned to one core with
# taskset and reads the same preloaded input (one partition) into its own output topic; the
# figure is input records per second from its first output record to its last (so neither a
# JVM's start nor a group join counts). Then, for the map-filter, p50/p99 latency from when an
# input record was due (open loop) to when a consumer reads its output, at half of the side's
# own maximum rate. Not a timed test: figures for bench/README.md and the issue.
#
# The machine must be quiet: the script refuses to run when the 1-minute load average is 1.0 or
# more (STREAMS_BENCH_FORCE=1 runs it anyway, and the figures say so).
#
# usage: bench/scripts/streams-vs-kafka-streams.sh
# Environment:
#   STREAMS_BENCH_RECORDS     input records per topology (default 1000000)
#   STREAMS_BENCH_BROKER_CORE core of the broker and the measuring steps (default 0)
#   STREAMS_BENCH_CORE        core of each processor, in turn (default 1)
#   STREAMS_BENCH_SECONDS     length of each latency run (default 20)
#   STREAMS_BENCH_OUT         where logs and results go (default: a new directory under target/)
#   STREAMS_BENCH_PROFILE     release (default), or debug for a quick check that the script works
# Needs cargo, a JDK 17+ and Maven (tests/compat/streams-differential/install.sh), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v load="$load" 'BEGIN { exit !(load >= 1.0) }' && [[ "${STREAMS_BENCH_FORCE:-0}" != 1 ]]; then
    echo "load average $load >= 1.0: other work would be in the figures; not running" \
        "(STREAMS_BENCH_FORCE=1 to run anyway)" >&2
    exit 3
fi
records=${STREAMS_BENCH_RECORDS:-1000000}
broker_core=${STREAMS_BENCH_BROKER_CORE:-0}
processor_core=${STREAMS_BENCH_CORE:-1}
latency_seconds=${STREAMS_BENCH_SECONDS:-20}
out=${STREAMS_BENCH_OUT:-}
if [[ -z "$out" ]]; then
    mkdir -p target
    out=$(mktemp -d -p target streams-vs-kafka-streams-XXXXXX)
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

profile=${STREAMS_BENCH_PROFILE:-release}
profile_flags=()
if [[ "$profile" == release ]]; then profile_flags=(--release); fi
echo "building ($profile) and compiling the Java side"
cargo build "${profile_flags[@]}" -q -p spate-broker
harness=$(cargo test "${profile_flags[@]}" -q -p spate-streams --bench kafka_streams_comparison --no-run \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] == "kafka_streams_comparison":
        print(message["executable"])')
java_project=tests/compat/streams-differential
(cd "$java_project" && mvn -o -q -B -Dstyle.color=never compile dependency:build-classpath \
    -Dmdep.outputFile=target/classpath.txt)
classpath="$java_project/target/classes:$(cat "$java_project/target/classpath.txt")"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
}
trap cleanup EXIT

taskset -c "$broker_core" "target/$profile/spate-broker" --data-dir "$out/data" \
    --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --shards 1 \
    --log-level info > "$out/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    grep -qs "broker ready" "$out/broker.log" && break
    sleep 0.1
done
# "... broker ready: ... address=127.0.0.1:P kafka_address=127.0.0.1:Q ..." (tracing, no ANSI).
native=$(sed -n '/broker ready/s/.* address=\([0-9.:]*\).*/\1/p' "$out/broker.log" | head -1)
kafka=$(sed -n '/broker ready/s/.* kafka_address=\([0-9.:]*\).*/\1/p' "$out/broker.log" | head -1)
if [[ -z "$native" || -z "$kafka" ]]; then
    echo "the broker did not start; see $out/broker.log" >&2
    exit 1
fi
export BENCH_BROKER=$native

# One step of the Rust harness (an ignored test), on core $1, with the given BENCH_* settings.
step() {
    local core=$1 name=$2
    shift 2
    env "$@" taskset -c "$core" "$harness" --ignored --exact "$name" --nocapture --quiet \
        2>> "$out/harness.log" | grep '^{'
}

# Starts side $1's processor for topology $2 from $3 into $4 on the processor core; sets $processor.
start_processor() {
    local side=$1 topology=$2 input=$3 output=$4 application="$1-$2-$3"
    if [[ "$side" == spate-streams ]]; then
        BENCH_TOPOLOGY=$topology BENCH_INPUT=$input BENCH_OUTPUT=$output \
            BENCH_APPLICATION=$application taskset -c "$processor_core" "$harness" --ignored \
            --exact spate_streams_processor --nocapture > "$out/$application.log" 2>&1 &
    else
        taskset -c "$processor_core" java -Xmx1g -XX:+UseParallelGC \
            -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$classpath" \
            spate.compat.streamsdiff.StreamsApp "$topology" "$kafka" "$application" "$input" \
            "$out/state-$application" "$output" > "$out/$application.log" 2>&1 &
    fi
    processor=$!
    pids+=("$processor")
}

results="$out/results.jsonl"
echo "spate-streams vs Kafka Streams: $records records per topology; broker on core $broker_core," \
    "each processor on core $processor_core; machine: $(nproc) cores, $(uname -r)," \
    "load [$(cut -d' ' -f1-3 /proc/loadavg)]; results in $out"
printf '%-15s %-14s %18s %10s %10s\n' topology side records/s/core p50_us p99_us
for topology in map-filter windowed-count; do
    input="in-$topology"
    outputs="out-$topology-spate-streams,out-$topology-kafka-streams"
    step "$broker_core" preload BENCH_INPUT="$input" BENCH_OUTPUTS="$outputs" \
        BENCH_RECORDS="$records" > /dev/null
    for side in spate-streams kafka-streams; do
        output="out-$topology-$side"
        start_processor "$side" "$topology" "$input" "$output"
        throughput=$(step "$broker_core" measure_throughput BENCH_OUTPUT="$output" \
            BENCH_TOPOLOGY="$topology" BENCH_RECORDS="$records" BENCH_TIMEOUT_S=600)
        kill "$processor"
        rate=$(echo "$throughput" | python3 -c \
            'import json, sys; print(json.load(sys.stdin)["input_records_per_second"])')
        p50=- p99=-
        if [[ "$topology" == map-filter ]]; then
            # Half of this side's own maximum, on fresh topics and a fresh processor.
            latency_input="latency-in-$side"
            latency_output="latency-out-$side"
            step "$broker_core" preload BENCH_INPUT="$latency_input" \
                BENCH_OUTPUTS="$latency_output" BENCH_RECORDS=1 > /dev/null
            start_processor "$side" map-filter "$latency_input" "$latency_output"
            # The one preloaded record's output says the processor runs.
            step "$broker_core" measure_throughput BENCH_OUTPUT="$latency_output" \
                BENCH_TOPOLOGY=map-filter BENCH_RECORDS=1 BENCH_TIMEOUT_S=120 > /dev/null
            latency=$(step "$broker_core" measure_latency BENCH_INPUT="$latency_input" \
                BENCH_OUTPUT="$latency_output" BENCH_RATE=$((rate / 2)) \
                BENCH_SECONDS="$latency_seconds")
            kill "$processor"
            p50=$(echo "$latency" | python3 -c 'import json, sys; print(json.load(sys.stdin)["p50_us"])')
            p99=$(echo "$latency" | python3 -c 'import json, sys; print(json.load(sys.stdin)["p99_us"])')
            echo "{\"topology\": \"$topology\", \"side\": \"$side\", \"latency\": $latency}" >> "$results"
        fi
        echo "{\"topology\": \"$topology\", \"side\": \"$side\", \"throughput\": $throughput}" >> "$results"
        printf '%-15s %-14s %18s %10s %10s\n' "$topology" "$side" "$rate" "$p50" "$p99"
    done
done

#!/usr/bin/env bash
# Kafka Connect 4.1.1 against $KAFKA_BOOTSTRAP: a distributed worker (ConnectDistributed from
# connect-runtime, its config, offset and status topics created by the worker, compacted) runs
# FileStreamSource (a file into a topic the worker creates) and FileStreamSink (the topic into a
# file). The source file grows during the whole run; once the sink file has a third of the lines,
# the worker is killed with SIGKILL and started again. Checks: both connectors and
# their tasks RUNNING (REST) before and after the restart; every line of the source file arrives in
# the sink file (at-least-once: set equality, nothing missing; duplicates are reported, not
# failed); the three internal topics have cleanup.policy=compact (DescribeConfigs), and the broker
# compacted the offset topic (fewer records than offsets written).
# COMPAT_CONNECT_LINES (default 6000) lines are appended over COMPAT_CONNECT_APPEND_S (30) s.
# Exit 0 only if every check passed. install.sh resolves the jars and compiles Inspect first.
set -uo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT}"
if [ ! -f target/classpath.txt ] || [ ! -d target/classes ]; then
  echo "run.sh: not installed; run tests/compat/kafka-connect/install.sh first" >&2
  exit 2
fi
classpath="target/classes:$(cat target/classpath.txt)"
lines="${COMPAT_CONNECT_LINES:-6000}"
append_s="${COMPAT_CONNECT_APPEND_S:-30}"
wait_s="${COMPAT_CONNECT_WAIT_S:-120}"
compaction_wait_s="${COMPAT_CONNECT_COMPACTION_WAIT_S:-60}"
work="$(mktemp -d /tmp/compat-connect.XXXXXX)"
run_id="$(date +%s)-$$"
topic="file-lines-$run_id"
configs="connect-configs-$run_id"
offsets="connect-offsets-$run_id"
statuses="connect-status-$run_id"
worker_pid=
appender_pid=
failures=0
started=$SECONDS

cleanup() {
  [ -n "$appender_pid" ] && kill "$appender_pid" 2>/dev/null
  if [ -n "$worker_pid" ]; then
    kill -9 "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

check() { # NAME STATUS
  if [ "$2" -eq 0 ]; then
    echo "PASS $1"
  else
    echo "FAIL $1"
    failures=$((failures + 1))
  fi
}

rest_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
rest="http://127.0.0.1:$rest_port"
cat >"$work/worker.properties" <<PROPERTIES
bootstrap.servers=$KAFKA_BOOTSTRAP
group.id=connect-$run_id
listeners=$rest
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
config.storage.topic=$configs
offset.storage.topic=$offsets
status.storage.topic=$statuses
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=3
# Source offsets are committed every second, so a crash repeats little; the offset topic rolls a
# segment every 2 s and is cleaned at any dirty ratio, so the run leaves it something to compact.
offset.flush.interval.ms=1000
offset.storage.segment.ms=2000
offset.storage.min.cleanable.dirty.ratio=0.01
# The killed worker leaves the group when its session expires: 10 s instead of 45 s.
session.timeout.ms=10000
heartbeat.interval.ms=1000
scheduled.rebalance.max.delay.ms=0
plugin.discovery=only_scan
PROPERTIES

start_worker() { # $1: instance number
  java -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${COMPAT_CONNECT_LOG_LEVEL:-warn}" \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$classpath" org.apache.kafka.connect.cli.ConnectDistributed "$work/worker.properties" \
    >"$work/worker-$1.log" 2>&1 &
  worker_pid=$!
  echo "  worker $1 started (pid $worker_pid)"
}

# until_true SECONDS COMMAND...: polls every half second
until_true() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    kill -0 "$worker_pid" 2>/dev/null || { echo "  the worker exited"; return 1; }
    sleep 0.5
  done
}

rest_up() { curl -sf "$rest/connectors" >/dev/null; }

# Both connectors and their task RUNNING.
running() {
  local name state
  for name in file-source file-sink; do
    state="$(curl -sf "$rest/connectors/$name/status")" || return 1
    python3 -c '
import json, sys
status = json.loads(sys.argv[1])
tasks = status["tasks"]
sys.exit(0 if status["connector"]["state"] == "RUNNING" and tasks and all(t["state"] == "RUNNING" for t in tasks) else 1)
' "$state" || return 1
  done
}

sink_has() { # $1: the number of distinct lines wanted
  [ -f "$work/sink.txt" ] && [ "$(sort -u "$work/sink.txt" | wc -l)" -ge "$1" ]
}

show_worker_log() {
  echo "  --- the last lines of $1"
  grep -v "^\s*at " "$work/$1" | tail -20 | sed 's/^/  | /'
}

echo "== kafka-connect: Connect 4.1.1 distributed worker against $KAFKA_BOOTSTRAP"
: >"$work/source.txt"
# The source file grows at a steady rate during the whole run (also while the worker is down),
# so that the kill lands while lines flow.
(
  for chunk in $(seq 0 $((lines / 50 - 1))); do
    seq $((chunk * 50 + 1)) $((chunk * 50 + 50)) |
      awk '{ printf "line %06d of the source file\n", $1 }' >>"$work/source.txt"
    sleep "$(awk -v s="$append_s" -v n="$lines" 'BEGIN { print s * 50 / n }')"
  done
) &
appender_pid=$!

start_worker 1
until_true "$wait_s" rest_up
check "the worker's REST API answers (worker 1)" $?

curl -sf -X POST -H 'Content-Type: application/json' "$rest/connectors" --data @- >"$work/out" <<JSON
{"name": "file-source", "config": {
  "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "tasks.max": "1",
  "file": "$work/source.txt", "topic": "$topic", "batch.size": "500",
  "topic.creation.default.partitions": "3", "topic.creation.default.replication.factor": "1"}}
JSON
check "POST /connectors file-source" $?
curl -sf -X POST -H 'Content-Type: application/json' "$rest/connectors" --data @- >"$work/out" <<JSON
{"name": "file-sink", "config": {
  "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector", "tasks.max": "1",
  "file": "$work/sink.txt", "topics": "$topic"}}
JSON
check "POST /connectors file-sink" $?
until_true "$wait_s" running
check "both connectors and their tasks are RUNNING (worker 1)" $?

until_true "$wait_s" sink_has $((lines / 3))
check "the sink file has a third of the lines before the worker is killed" $?
echo "  worker 1 killed with SIGKILL: $(wc -l <"$work/sink.txt" 2>/dev/null || echo 0) lines in the sink file," \
  "$(wc -l <"$work/source.txt") in the source file"
kill -9 "$worker_pid"
wait "$worker_pid" 2>/dev/null
sleep 2

start_worker 2
until_true "$wait_s" rest_up
check "the worker's REST API answers (worker 2)" $?
until_true "$wait_s" running
check "both connectors and their tasks are RUNNING again (worker 2)" $?
wait "$appender_pid"
appender_pid=
until_true "$wait_s" sink_has "$lines"
sort -u "$work/source.txt" >"$work/want.txt"
sort -u "$work/sink.txt" >"$work/got.txt" 2>/dev/null
missing=$(comm -23 "$work/want.txt" "$work/got.txt" | wc -l)
unexpected=$(comm -13 "$work/want.txt" "$work/got.txt" | wc -l)
sink_lines=$(wc -l <"$work/sink.txt" 2>/dev/null || echo 0)
duplicates=$((sink_lines - $(wc -l <"$work/got.txt")))
[ "$missing" -eq 0 ] && [ "$unexpected" -eq 0 ]
check "every line of the source file ($lines) arrived in the sink file: $missing missing, $unexpected unexpected" $?
echo "  the sink file has $sink_lines lines: $duplicates duplicates (at-least-once across the SIGKILL)"

# The internal topics: compacted by policy, and the offset topic compacted by the broker.
deadline=$((SECONDS + compaction_wait_s))
while :; do
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$classpath" spate.compat.connect.Inspect "$KAFKA_BOOTSTRAP" "$configs" "$offsets" "$statuses" \
    >"$work/inspect.txt" 2>"$work/inspect.err"
  read -r _ _ records start end keys < <(grep "^$offsets " "$work/inspect.txt")
  if [ -n "${records:-}" ] && [ "$records" -ge 1 ] && [ "$records" -lt $((end - start)) ]; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 3
done
cat "$work/inspect.err" | grep -v "^\s*at " | tail -5
for internal in "$configs" "$offsets" "$statuses"; do
  read -r _ policy _ <<<"$(grep "^$internal " "$work/inspect.txt")"
  [ "${policy:-}" = compact ]
  check "$internal has cleanup.policy=compact (got ${policy:-nothing})" $?
done
[ -n "${records:-}" ] && [ "$records" -ge 1 ] && [ "$records" -lt $((end - start)) ]
check "the broker compacted $offsets within ${compaction_wait_s}s: ${records:-?} records left of $((${end:-0} - ${start:-0})) written (${keys:-?} keys)" $?

kill -TERM "$worker_pid" 2>/dev/null
for _ in $(seq 60); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.5; done
if [ "$failures" -ne 0 ]; then
  show_worker_log worker-1.log
  show_worker_log worker-2.log
  echo "kafka-connect: $failures check(s) failed ($((SECONDS - started)) s)"
  exit 1
fi
echo "kafka-connect: all checks passed ($((SECONDS - started)) s)"

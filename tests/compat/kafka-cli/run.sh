#!/usr/bin/env bash
# Apache Kafka 4.1.1's own command-line tools against $KAFKA_BOOTSTRAP, as users run them
# (`kafka-topics.sh` is `java org.apache.kafka.tools.TopicCommand`, and so on): TopicCommand,
# ConsoleProducer, ConsoleConsumer, GetOffsetShell, ConsumerGroupCommand (--list, --describe,
# --reset-offsets --execute, --delete), ConfigCommand (topic configs), DeleteRecordsCommand,
# ProducerPerformance and ConsumerPerformance. Each step checks the tool's output, not only its
# exit status (several tools print an error and exit 0). install.sh resolves the jars first.
# Exit 0 only if every check passed.
# No `set -e`: a failed check is recorded and the run goes on to the next.
set -uo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT}"
if [ ! -f target/classpath.txt ]; then
  echo "run.sh: not installed; run tests/compat/kafka-cli/install.sh first" >&2
  exit 2
fi
classpath="$(cat target/classpath.txt)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A run of its own: names that a previous run on the same broker cannot have left behind.
run_id="$(date +%s)-$$"
topic="cli-$run_id"
group="cli-group-$run_id"
perf_topic="cli-perf-$run_id"
B="$KAFKA_BOOTSTRAP"
tools=org.apache.kafka.tools
failures=0

# One JVM per tool, as the distribution's scripts do; C1 only and a small heap start it faster.
tool() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${COMPAT_KAFKA_CLI_LOG_LEVEL:-warn}" \
    -cp "$classpath" "$@"
}

# check NAME CONDITION-EXIT-STATUS [OUTPUT-FILE]: records and prints a result line.
check() {
  if [ "$2" -eq 0 ]; then
    echo "PASS $1"
  else
    echo "FAIL $1"
    [ -n "${3:-}" ] && sed 's/^/    | /' "$3" | tail -20
    failures=$((failures + 1))
  fi
}

# Runs a tool into $work/out (stdout and stderr together), then checks that it contains a line
# matching the extended regex: step NAME REGEX TOOL-ARGS...
step() {
  local name="$1" regex="$2"
  shift 2
  tool "$@" >"$work/out" 2>&1 || true
  grep -Eq -- "$regex" "$work/out"
  check "$name" $? "$work/out"
}

# Runs a tool and checks only its exit status (tools that print nothing on success):
# step_ok NAME TOOL-ARGS...
step_ok() {
  local name="$1"
  shift
  tool "$@" >"$work/out" 2>&1
  check "$name" $? "$work/out"
}

# Sum of the offsets GetOffsetShell prints (topic:partition:offset lines) at TIME.
offsets_sum() {
  tool $tools.GetOffsetShell --bootstrap-server "$B" --topic "$topic" --time "$1" 2>/dev/null |
    awk -F: -v t="$topic" '$1 == t { s += $3; n++ } END { print n + 0, s + 0 }'
}

# The summed CURRENT-OFFSET and LAG of the group's rows for our topic (ConsumerGroupCommand
# --describe), as "rows current lag".
group_offsets() {
  tool $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --describe \
    --group "$group" 2>/dev/null |
    awk -v t="$topic" '$2 == t { n++; c += $4; l += $6 } END { print n + 0, c + 0, l + 0 }'
}

echo "== kafka-cli: Apache Kafka 4.1.1 tools against $B"

# --- TopicCommand
step "TopicCommand --create" "^Created topic $topic\.\$" \
  $tools.TopicCommand --bootstrap-server "$B" --create --topic "$topic" --partitions 3 \
  --replication-factor 1 --config retention.ms=86400000
step "TopicCommand --list" "^$topic\$" $tools.TopicCommand --bootstrap-server "$B" --list
step_ok "TopicCommand --alter --partitions 4" \
  $tools.TopicCommand --bootstrap-server "$B" --alter --topic "$topic" --partitions 4
step "TopicCommand --describe (4 partitions, the config set at creation)" \
  "PartitionCount: 4.*Configs: .*retention\.ms=86400000" \
  $tools.TopicCommand --bootstrap-server "$B" --describe --topic "$topic"
step "TopicCommand --create of an existing topic is refused" "TopicExistsException" \
  $tools.TopicCommand --bootstrap-server "$B" --create --topic "$topic"

# --- ConsoleProducer / ConsoleConsumer: 200 records with a key and a header each (the reader
# refuses an empty headers field, so every record has one)
records=200
seq 1 "$records" | awk '{ printf "n:%d\tk%d\tv%d\n", $1, $1, $1 }' \
  >"$work/records.txt"
tool $tools.ConsoleProducer --bootstrap-server "$B" --topic "$topic" \
  --property parse.key=true --property parse.headers=true --property key.separator=$'\t' \
  --property headers.delimiter=$'\t' --compression-codec lz4 \
  <"$work/records.txt" >"$work/out" 2>&1
check "ConsoleProducer (200 records, lz4, keys, headers)" $? "$work/out"

read -r partitions sum <<<"$(offsets_sum -1)"
[ "$partitions" -eq 4 ] && [ "$sum" -eq "$records" ]
check "GetOffsetShell --time -1 (4 partitions, ends sum to $records; got $partitions, $sum)" $?
read -r partitions sum <<<"$(offsets_sum -2)"
[ "$partitions" -eq 4 ] && [ "$sum" -eq 0 ]
check "GetOffsetShell --time -2 (all start at 0; got $partitions, $sum)" $?

timeout 60 java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$classpath" \
  $tools.consumer.ConsoleConsumer --bootstrap-server "$B" --topic "$topic" --group "$group" \
  --from-beginning --max-messages "$records" --timeout-ms 30000 \
  --property print.key=true --property print.headers=true \
  >"$work/consumed.txt" 2>"$work/consumer.err" || true
sort "$work/consumed.txt" >"$work/got.txt"
sort "$work/records.txt" >"$work/want.txt"
cmp -s "$work/got.txt" "$work/want.txt"
check "ConsoleConsumer --group --from-beginning reads every record once: headers, keys, values" \
  $? "$work/consumer.err"

# --- ConsumerGroupCommand
step "ConsumerGroupCommand --list" "^$group\$" \
  $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --list
read -r rows current lag <<<"$(group_offsets)"
[ "$rows" -eq 4 ] && [ "$current" -eq "$records" ] && [ "$lag" -eq 0 ]
check "ConsumerGroupCommand --describe (committed $records, lag 0; got rows $rows, $current, $lag)" $?
step "ConsumerGroupCommand --describe --state (Empty)" "^$group .* Empty " \
  $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --describe \
  --group "$group" --state
step "ConsumerGroupCommand --reset-offsets --to-earliest --execute" "^$group +$topic +0 +0 " \
  $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --reset-offsets \
  --group "$group" --topic "$topic" --to-earliest --execute
read -r rows current lag <<<"$(group_offsets)"
[ "$rows" -eq 4 ] && [ "$current" -eq 0 ] && [ "$lag" -eq "$records" ]
check "ConsumerGroupCommand --describe after the reset (lag $records; got $rows, $current, $lag)" $?
step "ConsumerGroupCommand --reset-offsets --to-offset 1 on partition 0" "^$group +$topic +0 +1 " \
  $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --reset-offsets \
  --group "$group" --topic "$topic:0" --to-offset 1 --execute
read -r rows current lag <<<"$(group_offsets)"
[ "$current" -eq 1 ]
check "ConsumerGroupCommand --describe after --to-offset (current 1; got $current)" $?

# --- ConfigCommand (topic configs)
config=kafka.admin.ConfigCommand
step "ConfigCommand --alter --add-config" "Completed updating config" \
  $config --bootstrap-server "$B" --alter --entity-type topics --entity-name "$topic" \
  --add-config retention.ms=3600000,max.message.bytes=100000
step "ConfigCommand --describe shows the change" "^ +max\.message\.bytes=100000 .*DYNAMIC_TOPIC_CONFIG" \
  $config --bootstrap-server "$B" --describe --entity-type topics --entity-name "$topic"
grep -Eq "^ +retention\.ms=3600000 " "$work/out"
check "ConfigCommand --describe shows retention.ms=3600000" $? "$work/out"
step "ConfigCommand --alter --delete-config" "Completed updating config" \
  $config --bootstrap-server "$B" --alter --entity-type topics --entity-name "$topic" \
  --delete-config max.message.bytes
tool $config --bootstrap-server "$B" --describe --entity-type topics --entity-name "$topic" \
  >"$work/out" 2>&1 || true
! grep -q "max\.message\.bytes=100000" "$work/out"
check "ConfigCommand --describe no longer shows the deleted config" $? "$work/out"
step "ConfigCommand refuses an unknown config" "InvalidConfigurationException" \
  $config --bootstrap-server "$B" --alter --entity-type topics --entity-name "$topic" \
  --add-config no.such.config=1

# --- DeleteRecordsCommand: partition 0 up to offset 2 (it holds more than 2 records of 200
# over 4 partitions by murmur2 of k1..k200).
end0="$(tool $tools.GetOffsetShell --bootstrap-server "$B" --topic "$topic" --partitions 0 \
  --time -1 2>/dev/null | awk -F: '{ print $3 }')"
printf '{"version":1,"partitions":[{"topic":"%s","partition":0,"offset":2}]}\n' "$topic" \
  >"$work/delete.json"
step "DeleteRecordsCommand (partition 0 before offset 2; its end was $end0)" \
  "partition: $topic-0[[:space:]]+low_watermark: 2" \
  $tools.DeleteRecordsCommand --bootstrap-server "$B" --offset-json-file "$work/delete.json"
step "GetOffsetShell --time -2 after DeleteRecords" "^$topic:0:2\$" \
  $tools.GetOffsetShell --bootstrap-server "$B" --topic "$topic" --partitions 0 --time -2

# --- ConsumerGroupCommand --delete
step "ConsumerGroupCommand --delete" "Deletion of requested consumer groups .* was successful" \
  $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --delete --group "$group"
tool $tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$B" --list \
  >"$work/out" 2>&1 || true
! grep -qx "$group" "$work/out"
check "ConsumerGroupCommand --list no longer lists the deleted group" $? "$work/out"

# --- ProducerPerformance / ConsumerPerformance (Java client defaults: idempotent, acks=all)
perf_records=20000
step "TopicCommand --create (perf topic)" "^Created topic" \
  $tools.TopicCommand --bootstrap-server "$B" --create --topic "$perf_topic" --partitions 2
step "ProducerPerformance ($perf_records x 1 KiB, acks=all)" "^$perf_records records sent, " \
  $tools.ProducerPerformance --topic "$perf_topic" --num-records "$perf_records" \
  --record-size 1024 --throughput -1 --producer-props bootstrap.servers="$B" acks=all
grep -E "records sent" "$work/out" | tail -1
step "ConsumerPerformance reads them all" \
  "^[0-9: -]+, [0-9: -]+, [0-9.]+, [0-9.]+, $perf_records, " \
  $tools.ConsumerPerformance --bootstrap-server "$B" --topic "$perf_topic" \
  --messages "$perf_records" --timeout 30000
tail -1 "$work/out"

# --- TopicCommand --delete
step_ok "TopicCommand --delete" \
  $tools.TopicCommand --bootstrap-server "$B" --delete --topic "$topic"
tool $tools.TopicCommand --bootstrap-server "$B" --delete --topic "$perf_topic" >/dev/null 2>&1 || true
tool $tools.TopicCommand --bootstrap-server "$B" --list >"$work/out" 2>&1 || true
! grep -qx "$topic" "$work/out"
check "TopicCommand --list no longer lists the deleted topic" $? "$work/out"

if [ "$failures" -ne 0 ]; then
  echo "kafka-cli: $failures check(s) failed"
  exit 1
fi
echo "kafka-cli: all checks passed"

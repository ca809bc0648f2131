#!/usr/bin/env bash
# The reference broker: Apache Kafka 4.1.1 (single node, KRaft, from the kafka_2.13 jars in ~/.m2
# that tests/compat/kafka-cli/install.sh resolves), with the same commands as broker.sh, so that a
# compat folder's run.sh can be proved against Kafka itself before it is run against Spate: a
# check that passes here and fails on Spate points at Spate.
#
#   apache-kafka.sh run CLIENT...   for each folder: install.sh, a fresh Kafka, run.sh (with
#                                   KAFKA_BOOTSTRAP and SPATE_COMPAT_CONTROL=this script), stop;
#                                   exits non-zero if any run.sh failed
#   apache-kafka.sh start|restart|kill9|stop|env   as broker.sh (SPATE_COMPAT_STATE: its state)
#
# The broker is tuned for tests as Spate's compat runs are: one partition for the internal
# topics' replication factor, no initial rebalance delay, and a log cleaner that looks every
# second (so that compacted topics with small segments are cleaned within a run).
set -euo pipefail
compat_dir="$(cd "$(dirname "$0")" && pwd)"
self="$compat_dir/apache-kafka.sh"
ready_timeout_s=120

log() { echo "apache-kafka.sh: $*" >&2; }

classpath() {
  local file="$compat_dir/kafka-cli/target/classpath.txt"
  if [ ! -f "$file" ]; then
    bash "$compat_dir/kafka-cli/install.sh" >&2
  fi
  cat "$file"
}

alive() { # $1: pid; a zombie counts as gone
  local status
  status=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$status" ] && [ "$status" != Z ]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_cmd() {
  java -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$(classpath)" "$@"
}

launch() {
  local state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE}" kafka controller pid deadline
  read -r kafka controller <"$state/ports"
  echo "--- start $(date -u +%FT%TZ) kafka=127.0.0.1:$kafka" >>"$state/broker.log"
  setsid java -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$(classpath)" \
    kafka.Kafka "$state/server.properties" </dev/null >>"$state/broker.log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/pid"
  deadline=$((SECONDS + ready_timeout_s))
  until port_open "$kafka"; do
    if ! alive "$pid"; then
      log "Kafka exited during start; its log:"
      tail -40 "$state/broker.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "Kafka's port did not open within ${ready_timeout_s}s"
      kill -9 "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

start() {
  local state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE}" kafka controller
  mkdir -p "$state/data"
  python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
' >"$state/ports"
  read -r kafka controller <"$state/ports"
  cat >"$state/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$kafka,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
PROPERTIES
  java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
    -c "$state/server.properties" >>"$state/broker.log" 2>&1
  launch
}

restart() {
  local state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE}"
  if [ -f "$state/pid" ] && alive "$(cat "$state/pid")"; then
    log "restart: Kafka (pid $(cat "$state/pid")) is still running"
    return 1
  fi
  launch
}

kill9() {
  local state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE}" pid
  pid=$(cat "$state/pid")
  kill -9 "$pid" 2>/dev/null || true
  while alive "$pid"; do sleep 0.05; done
  echo "--- killed with SIGKILL $(date -u +%FT%TZ)" >>"$state/broker.log"
}

stop() {
  local state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE}" pid
  [ -f "$state/pid" ] || return 0
  pid=$(cat "$state/pid")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -9 "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
}

print_env() {
  local kafka controller
  read -r kafka controller <"${SPATE_COMPAT_STATE:?}/ports"
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$kafka"
}

run() {
  local failures=0 client status
  for client in "$@"; do
    client="${client%/}"
    export SPATE_COMPAT_STATE
    SPATE_COMPAT_STATE="$(mktemp -d /tmp/apache-kafka-compat.XXXXXX)"
    echo "== apache-kafka: $client (state $SPATE_COMPAT_STATE)"
    bash "$compat_dir/$client/install.sh" >"$SPATE_COMPAT_STATE/install.log" 2>&1 ||
      { tail -30 "$SPATE_COMPAT_STATE/install.log"; failures=$((failures + 1)); continue; }
    start
    eval "$(print_env | sed 's/^/export /')"
    export SPATE_COMPAT_CONTROL="$self"
    status=0
    (cd "$compat_dir/$client" && bash ./run.sh) || status=$?
    stop || true
    if [ "$status" = 0 ]; then
      echo "== apache-kafka: $client PASS"
      rm -rf "$SPATE_COMPAT_STATE"
    else
      echo "== apache-kafka: $client FAIL (exit $status; logs in $SPATE_COMPAT_STATE)"
      rm -rf "$SPATE_COMPAT_STATE/data"
      failures=$((failures + 1))
    fi
  done
  [ "$failures" = 0 ]
}

command="${1:-}"
shift || true
case "$command" in
  run) run "$@" ;;
  start) start ;;
  restart) restart ;;
  kill9) kill9 ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: apache-kafka.sh run CLIENT... | start|restart|kill9|stop|env" >&2; exit 2 ;;
esac

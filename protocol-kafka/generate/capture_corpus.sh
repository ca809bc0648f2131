#!/usr/bin/env bash
# Captures real clients' Kafka request frames into protocol-kafka/tests/corpus/ (replayed by
# tests/corpus.rs). Starts an Apache Kafka 4.1.1 broker (KRaft, one node) on free ports with its
# advertised listener on record_proxy.py, then runs each client in corpus_clients/ through the
# proxy, which keeps a few distinct frames per client, API key and version.
#
# Needs: Java 17 + Maven (the broker and the Java client), kcat (apt-get install -y kcat),
# Python 3 with kafka-python and confluent-kafka (pip; or PYTHON pointing at a venv that has them),
# and what tests/compat/{kafkajs,sarama,franz-go}/install.sh need (Node.js + npm, Go).
# Usage (from the repository root): protocol-kafka/generate/capture_corpus.sh [CLIENT...]
# (default: kcat kafka-python confluent-kafka java kafkajs sarama franz-go)
# KAFKA_LIBS may name a folder holding the kafka_2.13:4.1.1 runtime jars; otherwise Maven fetches
# them into a temporary folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/.." && pwd)/tests/corpus
python=${PYTHON:-python3}
clients=${*:-kcat kafka-python confluent-kafka java kafkajs sarama franz-go}
work=$(mktemp -d /tmp/kafka-corpus.XXXXXX)
broker_pid=
proxy_pid=
cleanup() {
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${KAFKA_LIBS:-}" ]; then
    KAFKA_LIBS=$work/libs
    cat >"$work/pom.xml" <<'POM'
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>spate</groupId><artifactId>kafka-corpus</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>4.1.1</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
    (cd "$work" && mvn -q dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS")
fi

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=$(free_port)
controller_port=$(free_port)
proxy_port=$(free_port)
cat >"$work/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$proxy_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$work/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
java=(java -Xmx512m -cp "$KAFKA_LIBS/*")
"${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
    -c "$work/server.properties" >"$work/format.log" 2>&1
"${java[@]}" kafka.Kafka "$work/server.properties" >"$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 120); do
    if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $broker_port), 1)" 2>/dev/null; then break; fi
    sleep 1
done

mkdir -p "$out"
bootstrap=127.0.0.1:$proxy_port
javac -cp "$KAFKA_LIBS/*" -d "$work" "$here/corpus_clients/JavaClient.java"
run_client() {
    local label=$1
    shift
    "$python" "$here/record_proxy.py" "$proxy_port" "$broker_port" "$out" "$label" &
    proxy_pid=$!
    sleep 1
    echo "== $label"
    "$@" >"$work/$label.log" 2>&1 || { echo "$label exited with $?"; tail -20 "$work/$label.log"; }
    tail -2 "$work/$label.log"
    kill "$proxy_pid"
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=
}
wanted() { [[ " $clients " == *" $1 "* ]]; }
wanted kcat && run_client kcat bash "$here/corpus_clients/kcat.sh" "$bootstrap"
wanted kafka-python && run_client kafka-python "$python" "$here/corpus_clients/kafka_python_client.py" "$bootstrap"
wanted confluent-kafka && run_client confluent-kafka "$python" "$here/corpus_clients/confluent_client.py" "$bootstrap"
wanted java && run_client java "${java[@]}:$work" JavaClient "$bootstrap"
# The compatibility programs of tests/compat/ whose clients speak older or other versions
# (kafkajs: only non-flexible versions; sarama: Kafka 2.8's; franz-go: the newest), each
# installed by its own install.sh.
compat=$(cd "$here/../../tests/compat" && pwd)
for client in kafkajs sarama franz-go; do
    wanted "$client" || continue
    if bash "$compat/$client/install.sh" >"$work/$client-install.log" 2>&1; then
        run_client "$client" env KAFKA_BOOTSTRAP="$bootstrap" bash "$compat/$client/run.sh"
    else
        echo "$client: install.sh failed"; tail -5 "$work/$client-install.log"
    fi
done
ls "$out" | wc -l

#!/usr/bin/env bash
# Kafka Streams 4.1.1 against $KAFKA_BOOTSTRAP: a word count with
# processing.guarantee=exactly_once_v2 (WordCountApp, a child JVM) over sentences of known
# content; the application is killed with SIGKILL and restarted mid-run, and the broker is killed
# with SIGKILL once and restarted ($SPATE_COMPAT_CONTROL kill9, restart). Checks (Driver.java):
# the final counts read with read_committed equal the exact counts computed from the input, one
# output record per word read, each word's counts 1..n in order; the changelog topic has
# cleanup.policy=compact and the broker compacted it (fewer records than written, every word's last
# value intact). COMPAT_STREAMS_SENTENCES (default 1200) sizes the input.
# Exit 0 only if every check passed. install.sh compiles first.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT}"
: "${SPATE_COMPAT_CONTROL:?set SPATE_COMPAT_CONTROL to the broker control script (tests/compat/broker.sh)}"
if [ ! -f target/classpath.txt ] || [ ! -d target/classes ]; then
  echo "run.sh: not compiled; run tests/compat/kafka-streams/install.sh first" >&2
  exit 2
fi
work="$(mktemp -d /tmp/compat-streams.XXXXXX)"
trap 'rm -rf "$work"' EXIT
status=0
java -Xmx384m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${COMPAT_JAVA_LOG_LEVEL:-warn}" \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient=error \
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.producer.internals.Sender=error \
  -cp "target/classes:$(cat target/classpath.txt)" spate.compat.streams.Driver "$work" || status=$?
if [ "$status" != 0 ]; then
  for log in "$work"/app-*.log; do
    [ -f "$log" ] || continue
    echo "--- the last lines of $(basename "$log")"
    grep -v "^\s*at " "$log" | tail -25
  done
fi
exit "$status"

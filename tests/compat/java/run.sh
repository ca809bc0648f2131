#!/usr/bin/env bash
# Runs the Java kafka-clients 4.1 compatibility tests against $KAFKA_BOOTSTRAP: `basic` (the
# issue's program), `native-reads-java`, `java-reads-native` and `group-across-protocols` (need
# $SPATE_BIN and $SPATE_BROKER), `kill9-restart` (needs $SPATE_COMPAT_CONTROL),
# `group-assignors-static` (the four classic assignors and static membership); all by default,
# or those named.
# Exit 0 only if every test passed. install.sh compiles first.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT}"
if [ ! -f target/classpath.txt ] || [ ! -d target/classes ]; then
  echo "run.sh: not compiled; run tests/compat/java/install.sh first" >&2
  exit 2
fi
# The clients' own warnings (retries, rebalances) go to stderr; info is too chatty for CI logs.
exec java -Dorg.slf4j.simpleLogger.defaultLogLevel="${COMPAT_JAVA_LOG_LEVEL:-warn}" \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -cp "target/classes:$(cat target/classpath.txt)" spate.compat.Main "$@"

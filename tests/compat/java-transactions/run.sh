#!/usr/bin/env bash
# Kafka transactions with the Java client (kafka-clients 4.1.1) against $KAFKA_BOOTSTRAP:
# `commit-abort` (committed and aborted transactions mixed: read_committed sees every committed
# record once and in order and no aborted one, read_uncommitted sees both; the read_committed end
# offset is the last stable offset while a transaction is open), `zombie-fenced` (a second producer
# with the same transactional.id fences the first and aborts its transaction),
# `consume-transform-produce` (sendOffsetsToTransaction with the group metadata, an aborted batch,
# a processor that dies with its transaction open; the output holds every input record once and
# the group's offsets are those committed in transactions). All by default, or those named.
# Exit 0 only if every test passed. install.sh compiles first.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT}"
if [ ! -f target/classpath.txt ] || [ ! -d target/classes ]; then
  echo "run.sh: not compiled; run tests/compat/java-transactions/install.sh first" >&2
  exit 2
fi
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${COMPAT_JAVA_LOG_LEVEL:-warn}" \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -cp "target/classes:$(cat target/classpath.txt)" spate.compat.txn.Transactions "$@"

#!/usr/bin/env bash
# Installs what the Kafka Streams side of the differential test and of
# bench/scripts/streams-vs-kafka-streams.sh needs (a JDK 17+ and Maven, from apt when missing),
# resolves kafka-streams 4.1.1 (with its RocksDB) into ~/.m2 and compiles StreamsApp, so that
# `mvn -o` (streams/tests/differential.rs) works offline afterwards. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi
java -version 2>&1 | head -1
mvn -B -q -Dstyle.color=never compile dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
echo "compiled; classpath in target/classpath.txt"

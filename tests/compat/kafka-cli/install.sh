#!/usr/bin/env bash
# Installs what Apache Kafka's command-line tools need (a JDK 17+ and Maven, from apt when
# missing) and resolves kafka_2.13 and kafka-tools 4.1.1 with their dependencies into ~/.m2,
# writing the classpath to target/classpath.txt, so that run.sh works offline afterwards.
# Idempotent: a second run only re-reads ~/.m2.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi
java -version 2>&1 | head -1
mkdir -p target
mvn -B -q -Dstyle.color=never dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
echo "resolved; classpath in target/classpath.txt"

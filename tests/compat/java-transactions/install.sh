#!/usr/bin/env bash
# Installs what the Java transactions program needs (a JDK 17+ and Maven, from apt when missing),
# resolves kafka-clients 4.1.1 into ~/.m2 and compiles the program, so that run.sh works offline
# afterwards. Idempotent.
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

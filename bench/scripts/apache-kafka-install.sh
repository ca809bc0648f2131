#!/usr/bin/env bash
# Installs what `spate-bench --spawn-broker --driver apache-kafka,...` needs on a fresh
# Debian/Ubuntu machine: a JDK 17+ and Maven (from apt when missing), then Apache Kafka 4.1.1's
# jars (kafka_2.13 with its dependencies) from Maven Central into ~/.m2. The classpath goes to
# tests/compat/kafka-cli/target/classpath.txt, where spate-bench looks by default
# (--apache-kafka-classpath FILE names another). Shared with the compat tests' Kafka tools and
# reference broker (tests/compat/apache-kafka.sh). Idempotent: a second run only re-reads ~/.m2.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/tests/compat/kafka-cli/install.sh"
echo "Apache Kafka classpath: $root/tests/compat/kafka-cli/target/classpath.txt"

#!/usr/bin/env bash
# Runs the kafkajs compatibility program against $KAFKA_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
# The program uses kafkajs' default (murmur2) partitioner on purpose; no warning about it.
export KAFKAJS_NO_PARTITIONER_WARNING=1
exec node compat.js

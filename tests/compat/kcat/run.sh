#!/usr/bin/env bash
# kcat (librdkafka) against $KAFKA_BOOTSTRAP; the checks are in run.py. Needs $SPATE_BIN and
# $SPATE_BROKER too (kcat has no admin API: the spate tool creates and deletes the topic).
set -euo pipefail
cd "$(dirname "$0")"
exec python3 run.py "$@"

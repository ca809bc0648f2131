#!/usr/bin/env bash
# Kafka transactions with confluent-kafka (librdkafka) against $KAFKA_BOOTSTRAP: committed and
# aborted transactions read with read_committed and read_uncommitted, the last stable offset, a
# fenced zombie, consume-transform-produce with send_offsets_to_transaction (transactions.py).
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
exec ../confluent-kafka-python/.venv/bin/python -u transactions.py

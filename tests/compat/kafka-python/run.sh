#!/usr/bin/env bash
# Runs the kafka-python compatibility program against $KAFKA_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
exec .venv/bin/python -u compat.py

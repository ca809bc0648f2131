#!/usr/bin/env bash
# Runs the sarama compatibility program (built by install.sh) against $KAFKA_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")"
: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
exec ./bin/compat

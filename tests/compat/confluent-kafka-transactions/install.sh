#!/usr/bin/env bash
# The transactions program runs in confluent-kafka-python's virtual environment (the same pinned
# confluent-kafka, its wheel bundling librdkafka): this installs that folder. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
bash ../confluent-kafka-python/install.sh

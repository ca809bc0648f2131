#!/usr/bin/env bash
# Installs confluent-kafka (pinned in requirements.txt; its wheel bundles librdkafka) into a
# virtual environment in this folder (.venv, ignored by git). Idempotent: a venv that already
# has the pinned versions is left as it is.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian's own python3 ships venv and ensurepip in a separate package.
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if ! .venv/bin/pip freeze 2>/dev/null | diff -q - requirements.txt >/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
fi
.venv/bin/python -c 'import confluent_kafka; print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0])'

#!/usr/bin/env bash
# Installs kcat (with its bundled librdkafka) from Debian when missing. Idempotent.
set -euo pipefail
if ! command -v kcat >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq kcat >/dev/null
fi
kcat -V | grep -m1 Version
command -v python3 >/dev/null

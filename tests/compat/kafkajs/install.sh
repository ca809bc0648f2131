#!/usr/bin/env bash
# Installs kafkajs and kafkajs-snappy exactly as pinned in package-lock.json into node_modules/
# (ignored by git). Idempotent: an install that matches the lock file is left as it is.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
node --version
if ! npm ls --depth=0 >/dev/null 2>&1 || [ ! -d node_modules/kafkajs ]; then
  npm ci --no-audit --no-fund
fi
node -e 'console.log("kafkajs", require("kafkajs/package.json").version)'

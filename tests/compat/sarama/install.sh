#!/usr/bin/env bash
# Fetches the pinned modules (go.mod, go.sum: sarama from the Go module proxy)
# and builds the program into bin/ (ignored by git). Idempotent: go caches both.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v go >/dev/null 2>&1; then
  echo "install.sh: no go command on PATH (this machine's Go is in /usr/local/go/bin)" >&2
  exit 1
fi
go version
go mod download
go build -o bin/compat .

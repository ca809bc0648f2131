#!/usr/bin/env bash
# kcat (librdkafka): metadata, keyed produce (idempotent, acks=all) once per codec, a group
# consume with commits, offset queries. Usage: kcat.sh BOOTSTRAP
set -euo pipefail
bootstrap=$1
topic=corpus-kcat
kcat -b "$bootstrap" -L >/dev/null
for codec in none gzip snappy lz4 zstd; do
    printf 'k1:%s-one\nk2:%s-two\nk3:%s-three\n' "$codec" "$codec" "$codec" |
        kcat -b "$bootstrap" -t "$topic" -P -K: -z "$codec" -X enable.idempotence=true -X acks=all
done
kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q >/dev/null
timeout 30 kcat -b "$bootstrap" -G corpus-kcat-group -o beginning -e -q "$topic" >/dev/null || true
kcat -b "$bootstrap" -Q -t "$topic:0:-1" >/dev/null
kcat -b "$bootstrap" -Q -t "$topic:0:1" >/dev/null

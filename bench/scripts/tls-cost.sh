#!/usr/bin/env bash
# What TLS costs on the native listener (issue #17): the same workload against a fresh broker
# in plaintext and with TLS (rustls, user space: kTLS is not available here), alternated in
# pairs (plain, tls, plain, tls, ...) within one run of this script, so that drift of the
# machine falls on both sides alike. Each side's figure is the median of its runs; the table
# gives tls/plain ratios. Not a timed test: figures for ARCHITECTURE.md and the issue. Needs
# built binaries (spate-bench and spate-broker in one directory), openssl (for the test
# certificates) and coreutils/awk; no cargo.
#
# Workloads: produce of 1 KiB records in 64 KiB batches (bytes/s: encryption is paid per byte)
# and consume of the same (the broker encrypts what it used to send with one vectored sendmsg).
#
# usage: bench/scripts/tls-cost.sh [ROUNDS]            (default 3 pairs per workload)
# Environment:
#   SPATE_BENCH_BIN          directory of spate-bench and spate-broker (default target/release)
#   SPATE_BENCH_OUT          where the per-run JSON, logs and certificates go (default: a new
#                            directory under target/)
#   SPATE_BENCH_BROKER_CORES (default 0), SPATE_BENCH_LOAD_CORES (default 1)
#   SPATE_BENCH_DURATION_MS  (default 5000), SPATE_BENCH_WARMUP_MS (default 1000)
#   SPATE_BENCH_DATA_DIR     the brokers' data root (default: spate-bench's; not a tmpfs)
#   SPATE_BENCH_ACKS         leader (default: the disk's fsync stays out of the figure, so the
#                            CPU that TLS costs shows) or all
set -euo pipefail

source "$(dirname "$0")/lib.sh"
cost_setup tls-cost "${1:-3}" spate-bench spate-broker

# A CA and a server certificate for 127.0.0.1 (ECDSA P-256, as rustls negotiates by default).
certificates="$out/certificates"
mkdir -p "$certificates"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=tls-cost CA" -keyout "$certificates/ca.key" -out "$certificates/ca.pem" \
    2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$certificates/server.key" -out "$certificates/server.csr" \
    2> /dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$certificates/server.ext"
openssl x509 -req -in "$certificates/server.csr" -CA "$certificates/ca.pem" \
    -CAkey "$certificates/ca.key" -CAcreateserial -days 2 -extfile "$certificates/server.ext" \
    -out "$certificates/server.pem" 2> /dev/null

echo "TLS cost: $rounds pairs per workload, ${duration_ms} ms per run, broker on core(s)" \
    "$broker_cores, load on $load_cores; $(machine_summary);" \
    "results in $out"
printf '%-20s %-6s %14s %14s %12s\n' workload side records/s bytes/s p99_us
status=0
summary=()
for workload in produce consume; do
    for round in $(seq 1 "$rounds"); do
        for side in plain tls; do
            json="$out/$workload-$side-$round.json"
            log="$out/$workload-$side-$round.log"
            tls_flags=()
            if [[ "$side" == tls ]]; then
                tls_flags=(--tls-ca "$certificates/ca.pem"
                    --broker-arg=--tls-cert-file --broker-arg="$certificates/server.pem"
                    --broker-arg=--tls-key-file --broker-arg="$certificates/server.key")
            fi
            if ! "$bin/spate-bench" "$workload" --spawn-broker --broker-binary "$bin/spate-broker" \
                "${tls_flags[@]}" \
                --broker-cores "$broker_cores" --load-cores "$load_cores" "${data_flags[@]}" \
                --partitions 4 --producers 2 --consumers 2 --message-bytes 1024 \
                --batch-bytes 65536 --linger-us 1000 --acks "${SPATE_BENCH_ACKS:-leader}" \
                --durability group-commit \
                --duration-ms "$duration_ms" --warmup-ms "$warmup_ms" \
                --name "tls-cost $workload $side #$round" --no-progress \
                --json "$json" > "$log" 2>&1; then
                echo "$workload $side #$round: spate-bench failed; see $log" >&2
                status=1
                continue
            fi
            records=$(figure "$json" records_per_sec)
            bytes=$(figure "$json" throughput_bytes_per_sec)
            p99=$(p99 "$json")
            printf '%-20s %-6s %14.0f %14.0f %12s\n' "$workload #$round" "$side" \
                "${records:-0}" "${bytes:-0}" "${p99:-?}"
            echo "$bytes" >> "$out/$workload-$side.bytes"
        done
    done
    plain=$(median < "$out/$workload-plain.bytes")
    tls=$(median < "$out/$workload-tls.bytes")
    ratio=$(awk -v plain="$plain" -v tls="$tls" 'BEGIN { if (plain > 0) printf "%.3f", tls / plain; else print "null" }')
    summary+=("$(printf '%-8s median bytes/s: plaintext %.0f, TLS %.0f; tls/plain %s' "$workload" "$plain" "$tls" "$ratio")")
done
echo
printf '%s\n' "${summary[@]}"
exit $status

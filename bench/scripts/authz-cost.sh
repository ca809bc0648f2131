#!/usr/bin/env bash
# What authorization costs on the native listener (issue #17): the same workload, over SASL
# (SCRAM-SHA-512, plaintext transport, so the login is paid on both sides alike), against a
# broker with `--authorization false` and one with `--authorization true`, where the bench's
# user has literal Create, Write, Read and Delete ACLs on the topic and the broker holds 1,000
# unrelated bindings besides (500 of other principals on the same topic, 500 on a prefix no
# run uses), so that every check searches a full table. Runs alternate in pairs (off, on, off,
# on, ...) within one run of this script, so that drift of the machine falls on both sides
# alike; each side's figure is the median of its runs, and the summary gives on/off ratios.
# Not a timed test: figures for bench/README.md and the issue. Needs built binaries
# (spate-bench, spate-broker and spate in one directory), taskset and coreutils/awk; no cargo.
#
# The users and ACLs are made once, in a template data directory (users offline with
# `spate-broker user create`, ACLs with `spate acl add` as the super user against a broker
# started on it); each run starts a broker of its own on a fresh copy of it, pinned to the
# broker cores, and spate-bench drives it as an external broker (--broker) with --sasl-*.
#
# Workloads: produce of 1 KiB records in 64 KiB batches, and 100-byte records in 1 KiB batches
# (requests/s: the checks are paid per request, per topic), then consume of 1 KiB records.
#
# usage: bench/scripts/authz-cost.sh [ROUNDS]            (default 3 pairs per workload)
# Environment: as lib.sh says, and
#   SPATE_BENCH_ACKS         leader (default: the disk's fsync stays out of the figure, so the
#                            CPU the checks cost shows) or all
set -euo pipefail

source "$(dirname "$0")/lib.sh"
cost_setup authz-cost "${1:-3}" spate-bench spate-broker spate

topic=authz-cost
user=bench
admin_password=authz-cost-admin
user_password=authz-cost-bench
unrelated_principals=250
data_root=${SPATE_BENCH_DATA_DIR:-$out}

# start_broker DATA_DIR AUTHORIZATION LOG: starts a broker on DATA_DIR pinned to the broker
# cores, with SCRAM on the native listener; sets broker_pid and broker_address.
start_broker() {
    # The log exists before the broker does, so that the wait below never reads a missing file.
    : > "$3"
    taskset -c "$broker_cores" "$bin/spate-broker" --data-dir "$1" --cores "$broker_cores" \
        --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --sasl-mechanisms SCRAM-SHA-512 --super-users User:admin --authorization "$2" \
        --log-level info > "$3" 2>&1 &
    broker_pid=$!
    broker_address=
    local waited
    for waited in $(seq 1 300); do
        broker_address=$(sed -n 's/.*broker ready.* address=\([0-9.:]*\).*/\1/p' "$3" | head -1)
        if [[ -n "$broker_address" ]]; then return 0; fi
        if ! kill -0 "$broker_pid" 2> /dev/null; then break; fi
        sleep 0.1
    done
    echo "the broker on $1 did not start; see $3" >&2
    stop_broker
    return 1
}

stop_broker() {
    if [[ -n "${broker_pid:-}" ]]; then
        kill "$broker_pid" 2> /dev/null || true
        wait "$broker_pid" 2> /dev/null || true
        broker_pid=
    fi
}
trap stop_broker EXIT

as_admin() {
    "$bin/spate" --broker "$broker_address" --sasl-mechanism SCRAM-SHA-512 \
        --sasl-username admin --sasl-password "$admin_password" "$@"
}

# The template: the users, then the ACLs made through a broker started on it.
template="$data_root/authz-cost-template"
rm -rf "$template"
for account in "admin $admin_password" "$user $user_password"; do
    read -r name password <<< "$account"
    "$bin/spate-broker" user create --data-dir "$template" --name "$name" \
        --password "$password" --mechanism SCRAM-SHA-512 > /dev/null
done
start_broker "$template" true "$out/template-broker.log"
as_admin acl add --principal "User:$user" --operation Create --operation Write \
    --operation Read --operation Delete --topic "$topic" > /dev/null
others=()
for number in $(seq 1 "$unrelated_principals"); do others+=(--principal "User:other-$number"); done
as_admin acl add "${others[@]}" --operation Write --operation Read --topic "$topic" > /dev/null
as_admin acl add "${others[@]}" --operation Write --operation Read --topic unrelated- \
    --prefixed > /dev/null
bindings=$(as_admin acl list --json | grep -o '"principal"' | wc -l)
stop_broker
expected=$((4 + 4 * unrelated_principals))
if [[ "$bindings" -ne "$expected" ]]; then
    echo "the template holds $bindings bindings, not $expected" >&2
    exit 1
fi

export SPATE_BENCH_SASL_PASSWORD=$user_password
echo "authorization cost: $rounds pairs per workload, ${duration_ms} ms per run, $bindings" \
    "bindings, broker on core(s) $broker_cores, load on $load_cores; $(machine_summary);" \
    "results in $out"
printf '%-22s %-6s %14s %14s %12s\n' workload authz records/s bytes/s p99_us
status=0
summary=()
for workload in "produce-64k produce 1024 65536" "produce-1k produce 100 1024" \
    "consume consume 1024 65536"; do
    read -r name kind message_bytes batch_bytes <<< "$workload"
    for round in $(seq 1 "$rounds"); do
        for authorization in false true; do
            run="$name-authz-$authorization-$round"
            rm -rf "$data_root/$run"
            cp -a "$template" "$data_root/$run"
            if ! start_broker "$data_root/$run" "$authorization" "$out/$run-broker.log"; then
                status=1
                continue
            fi
            if ! "$bin/spate-bench" "$kind" --broker "$broker_address" \
                --load-cores "$load_cores" --topic "$topic" \
                --sasl-mechanism SCRAM-SHA-512 --sasl-username "$user" \
                --partitions 4 --producers 2 --consumers 2 --message-bytes "$message_bytes" \
                --batch-bytes "$batch_bytes" --linger-us 1000 \
                --acks "${SPATE_BENCH_ACKS:-leader}" --durability group-commit \
                --duration-ms "$duration_ms" --warmup-ms "$warmup_ms" \
                --name "authz-cost $name authorization=$authorization #$round" --no-progress \
                --json "$out/$run.json" > "$out/$run.log" 2>&1; then
                echo "$name authorization=$authorization #$round: spate-bench failed;" \
                    "see $out/$run.log" >&2
                status=1
                stop_broker
                continue
            fi
            stop_broker
            rm -rf "${data_root:?}/$run"
            records=$(figure "$out/$run.json" records_per_sec)
            bytes=$(figure "$out/$run.json" throughput_bytes_per_sec)
            latency=$(p99 "$out/$run.json")
            printf '%-22s %-6s %14.0f %14.0f %12s\n' "$name #$round" "$authorization" \
                "${records:-0}" "${bytes:-0}" "${latency:-?}"
            echo "${records:-0}" >> "$out/$name-$authorization.records"
        done
    done
    off=$(median < "$out/$name-false.records")
    on=$(median < "$out/$name-true.records")
    ratio=$(awk -v on="$on" -v off="$off" 'BEGIN { if (off > 0) printf "%.3f", on / off; else print "null" }')
    summary+=("$(printf '%-12s median records/s: authorization off %.0f, on %.0f; on/off %s' "$name" "$off" "$on" "$ratio")")
done
rm -rf "$template"
echo
printf '%s\n' "${summary[@]}"
exit $status

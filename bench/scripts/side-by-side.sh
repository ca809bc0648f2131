#!/usr/bin/env bash
# The side-by-side runs of bench/README.md ("Side by side with Apache Kafka and Redis", issue
# #15), in one go, one after the other on an otherwise idle machine: every workload of the issue
# against Spate (native), Spate's Kafka API, Apache Kafka at its defaults and with
# flush.messages=1, and Redis Streams, each with the machine's limits measured in the same run.
# Not a test: figures for the README. Each run's JSON and output land in OUT_DIR.
#
# usage: bench/scripts/side-by-side.sh OUT_DIR [RUN...]
#   RUN: any of the names below (default: all, in this order)
# Needs: release binaries with the kafka driver
#   (cargo build --release -p spate-broker -p spate-bench --features spate-bench/kafka),
#   redis-server on PATH, and Apache Kafka's jars (bash bench/scripts/apache-kafka-install.sh).
# Environment: SPATE_BENCH_BIN (directory of spate-bench and spate-broker, default
#   target/release); SPATE_BENCH_EXTRA (more flags for every run, e.g. --data-dir DIR).
set -euo pipefail

out=${1:?usage: side-by-side.sh OUT_DIR [RUN...]}
shift
mkdir -p "$out"
bin=${SPATE_BENCH_BIN:-target/release}
workloads="$(cd "$(dirname "$0")/../workloads" && pwd)"
all=spate,kafka,apache-kafka,apache-kafka-flush,redis
# Steady state writes 2.2x the dirty limit per system (about 11 GB here): the systems that
# acknowledge before the disk has the data are the ones it is for; Redis would hold it in memory.
steady=spate,apache-kafka,apache-kafka-flush
extra=${SPATE_BENCH_EXTRA:-}

run() { # name, then spate-bench arguments
    local name=$1
    shift
    echo "== $name: spate-bench $* (started $(date -u +%T))"
    # shellcheck disable=SC2086
    if "$bin/spate-bench" "$@" --spawn-broker --with-limits --json "$out/$name.json" $extra \
        >"$out/$name.txt" 2>&1; then
        echo "   ok ($(date -u +%T))"
    else
        echo "   exit $? ($(date -u +%T)); see $out/$name.txt"
    fi
}

runs=("$@")
if [[ ${#runs[@]} -eq 0 ]]; then
    runs=(produce-1kib produce-100b round-trip partitions-1000 e2e e2e-write-caching consume
          produce-1kib-steady produce-100b-steady consume-steady)
fi
for name in "${runs[@]}"; do
    case "$name" in
        produce-1kib) run "$name" produce --workload "$workloads/produce-all-group-commit.toml" --driver "$all" ;;
        produce-100b) run "$name" produce --workload "$workloads/produce-100b.toml" --driver "$all" ;;
        round-trip) run "$name" produce --workload "$workloads/produce-round-trip.toml" --driver "$all" ;;
        partitions-1000) run "$name" produce --workload "$workloads/produce-1000-partitions.toml" --driver "$all" ;;
        e2e) run "$name" e2e --workload "$workloads/e2e-half-max.toml" --driver "$all" ;;
        # Spate with write caching (consumers read records once written) against Kafka at its
        # defaults (acks=leader: the page cache), each at 50% of its own maximum.
        e2e-write-caching) run "$name" e2e --workload "$workloads/e2e-half-max-leader.toml" \
            --write-caching true --driver spate,apache-kafka ;;
        consume) run "$name" consume --workload "$workloads/consume-drain.toml" --acks all \
            --driver spate,kafka,apache-kafka,apache-kafka-flush ;;
        produce-1kib-steady) run "$name" produce --workload "$workloads/produce-all-group-commit.toml" \
            --steady-state --driver "$steady" ;;
        produce-100b-steady) run "$name" produce --workload "$workloads/produce-100b.toml" \
            --steady-state --driver "$steady" ;;
        # Pre-fills 2.2x the dirty limit per system, then drains it: a page-cache system can no
        # longer serve it all from memory.
        consume-steady) run "$name" consume --workload "$workloads/consume-drain.toml" --acks all \
            --steady-state --driver "$steady" ;;
        *) echo "unknown run $name" >&2; exit 2 ;;
    esac
done

#!/usr/bin/env bash
# Runs `spate-broker iotune` and fio with matching jobs on the same directory, in one run, and
# prints both figures side by side with their ratio (iotune / fio).
#
#   tuning/iotune-vs-fio.sh DIR [SIZE_BYTES] [DURATION_MS]
#
# DIR must be on the disk to measure (not tmpfs); it gets iotune.toml and two scratch files,
# which are removed at the end. SIZE_BYTES (default 1G; K/M/G suffixes) is the scratch file of
# the transfer points, DURATION_MS (default 2000) how long each point runs, for both tools.
# The broker binary is $SPATE_BROKER, else target/release/spate-broker, else target/debug/.
#
# Matching jobs: sequential O_DIRECT (direct=1) through io_uring (ioengine=io_uring), the same
# block size, queue depth (fio's iodepth: that many in flight, as iotune's), file size and time,
# over a file written whole first (as iotune lays out its scratch file), one job at a time
# (stonewall). The sync job is `--rw=write --bs=4k --fdatasync=1` appending past the end of a
# fresh file into blocks reserved with FALLOC_FL_KEEP_SIZE (fallocate=keep), as iotune's sync
# test and a partition's durable appends do, for as many rounds as iotune ran.
# Needs fio (apt-get install fio) and python3 (3.11+, for tomllib).
set -euo pipefail

dir=${1:?usage: $0 DIR [SIZE_BYTES] [DURATION_MS]}
size=${2:-1G}
duration_ms=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
broker=${SPATE_BROKER:-}
if [[ -z $broker ]]; then
    for candidate in "$root/target/release/spate-broker" "$root/target/debug/spate-broker"; do
        if [[ -x $candidate ]]; then broker=$candidate; break; fi
    done
fi
[[ -n $broker ]] || { echo "no spate-broker binary: cargo build -p spate-broker" >&2; exit 2; }
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 2; }
mkdir -p "$dir"
work=$(mktemp -d)
fio_file="$dir/.fio-scratch"
fio_sync_file="$dir/.fio-sync-scratch"
cleanup() { rm -rf "$work" "$fio_file" "$fio_sync_file"; }
trap cleanup EXIT

echo "== spate-broker iotune ($broker)"
"$broker" iotune --data-dir "$dir" --size-bytes "$size" --duration-ms "$duration_ms" \
    | tee "$work/iotune.out"

# The grid and the sizes iotune used, from its result file.
python3 - "$dir/iotune.toml" "$work" <<'PY'
import sys, tomllib
result = tomllib.load(open(sys.argv[1], "rb"))
work = sys.argv[2]
run = result["run"]
with open(f"{work}/jobs.fio", "w") as jobs:
    jobs.write("[global]\nioengine=io_uring\ndirect=1\nthread=1\n")
    jobs.write(f"filename={work}/FILE\nsize={run['size_bytes']}\n")
    jobs.write("[layout]\nrw=write\nbs=1M\niodepth=4\n")
    for kind, rw in (("write", "write"), ("read", "read")):
        for point in result[kind]:
            jobs.write(
                f"[{kind}-{point['block_bytes']}-{point['queue_depth']}]\nstonewall\n"
                f"rw={rw}\nbs={point['block_bytes']}\niodepth={point['queue_depth']}\n"
                f"time_based=1\nruntime={run['duration_ms']}ms\n"
            )
with open(f"{work}/sync-rounds", "w") as rounds:
    rounds.write(str(result["sync"]["rounds"]))
PY
sed -i "s|$work/FILE|$fio_file|" "$work/jobs.fio"
rounds=$(cat "$work/sync-rounds")

echo "== fio $(fio --version): the same grid"
fio --output-format=json --output="$work/transfers.json" "$work/jobs.fio"
echo "== fio: fdatasync after each 4 KiB appended write, $rounds rounds"
fio --output-format=json --output="$work/sync.json" --name=sync --filename="$fio_sync_file" \
    --rw=write --bs=4k --fdatasync=1 --direct=1 --ioengine=io_uring --iodepth=1 \
    --fallocate=keep --size=$((rounds * 4096)) --percentile_list=50:90:99:99.9:99.99

python3 - "$dir/iotune.toml" "$work/transfers.json" "$work/sync.json" <<'PY'
import json, sys, tomllib
result = tomllib.load(open(sys.argv[1], "rb"))
fio_jobs = {job["jobname"]: job for job in json.load(open(sys.argv[2]))["jobs"]}
sync = json.load(open(sys.argv[3]))["jobs"][0]["sync"]["lat_ns"]

def size(bytes_):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if bytes_ < 1024:
            return f"{bytes_:g} {unit}"
        bytes_ /= 1024
    return f"{bytes_:g} TiB"

print()
print(f"{'':6} {'block':>8} {'depth':>5} {'iotune MB/s':>12} {'fio MB/s':>10} {'ratio':>6}"
      f" {'iotune IOPS':>12} {'fio IOPS':>10}")
ratios = []
for kind in ("write", "read"):
    for point in result[kind]:
        job = fio_jobs[f"{kind}-{point['block_bytes']}-{point['queue_depth']}"][kind]
        ours, theirs = point["bytes_per_second"] / 1e6, job["bw_bytes"] / 1e6
        ratio = ours / theirs if theirs else float("nan")
        ratios.append(ratio)
        print(f"{kind:6} {size(point['block_bytes']):>8} {point['queue_depth']:>5} {ours:>12.1f}"
              f" {theirs:>10.1f} {ratio:>6.2f} {point['operations_per_second']:>12.0f}"
              f" {job['iops']:>10.0f}")
ours = result["sync"]
theirs = sync["percentile"]
print()
print(f"fdatasync latency (us) {'iotune':>10} {'fio':>10} {'ratio':>6}")
for label, key, fio_key in (("p50", "p50_ns", "50.000000"), ("p90", "p90_ns", "90.000000"),
                            ("p99", "p99_ns", "99.000000"), ("p99.9", "p99_9_ns", "99.900000"),
                            ("p99.99", "p99_99_ns", "99.990000")):
    mine, fio = ours[key] / 1e3, theirs[fio_key] / 1e3
    print(f"{label:22} {mine:>10.1f} {fio:>10.1f} {mine / fio if fio else float('nan'):>6.2f}")
within = sum(1 for ratio in ratios if 0.9 <= ratio <= 1.1)
print(f"\n{within} of {len(ratios)} transfer points within 10% of fio")
PY

#!/usr/bin/env bash
# Runs `spate-broker iotune` and fio with matching jobs on the same directory, in one run, and
# prints both figures side by side with their ratio (iotune / fio).
#
#   tuning/iotune-vs-fio.sh DIR [SIZE_BYTES] [DURATION_MS] [ROUNDS]
#
# DIR must be on the disk to measure (not tmpfs); it gets iotune.toml and two scratch files,
# which are removed at the end. SIZE_BYTES (default 1G; K/M/G suffixes) is the scratch file of
# the transfer points, DURATION_MS (default 2000) how long each point runs, for both tools.
# ROUNDS (default 3): iotune and fio run alternately this many times each, and the table shows
# each tool's median per point, with the spread of its rounds (max / min), so that a disk whose
# speed drifts between minutes (a VM's virtual disk does) shows as such instead of as a
# difference between the tools.
# The broker binary is $SPATE_BROKER, else target/release/spate-broker, else target/debug/.
#
# Matching jobs: sequential O_DIRECT (direct=1) through io_uring (ioengine=io_uring), the same
# block size, queue depth (fio's iodepth: that many in flight, as iotune's), file size and time,
# over a file written whole first (as iotune lays out its scratch file), one job at a time
# (stonewall), submitting and reaping as glommio's reactor does: it reaps every completion
# there is, the slots queue their next transfers, and one io_uring_enter submits them all
# (iodepth_batch_submit and iodepth_batch_complete_max at the depth; fio's defaults submit each
# I/O with its own system call, which on the development VM halved fio's 4 KiB rates at depth
# 32: 70k against 133k IOPS in one run). The sync job is `--rw=write --bs=4k --fdatasync=1`
# appending past the end of a fresh file into blocks reserved with FALLOC_FL_KEEP_SIZE
# (fallocate=keep), as iotune's sync test and a partition's durable appends do, for as many
# rounds as iotune ran.
# Needs fio (apt-get install fio) and python3 (3.11+, for tomllib).
set -euo pipefail

dir=${1:?usage: $0 DIR [SIZE_BYTES] [DURATION_MS] [ROUNDS]}
size=${2:-1G}
duration_ms=${3:-2000}
rounds=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
broker=${SPATE_BROKER:-}
if [[ -z $broker ]]; then
    for candidate in "$root/target/release/spate-broker" "$root/target/debug/spate-broker"; do
        if [[ -x $candidate ]]; then broker=$candidate; break; fi
    done
fi
[[ -n $broker ]] || { echo "no spate-broker binary: cargo build -p spate-broker" >&2; exit 2; }
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive number" >&2; exit 2; }
mkdir -p "$dir"
work=$(mktemp -d)
fio_file="$dir/.fio-scratch"
fio_sync_file="$dir/.fio-sync-scratch"
hugepages_before=
cleanup() {
    rm -rf "$work" "$fio_file" "$fio_sync_file"
    if [[ -n $hugepages_before ]]; then echo "$hugepages_before" > /proc/sys/vm/nr_hugepages; fi
}
trap cleanup EXIT

# fio's transfer buffers in huge pages when this process may reserve them (root). Why: a
# request's buffer pages are its scatter-gather segments, and a device takes few per request
# (virtio-blk on the development VM: 254), so a 4 MiB transfer from scattered 4 KiB pages is
# split into five requests, while one from contiguous memory is one. glommio's buffers, which
# iotune and the broker use, behave as contiguous here: with fio's default buffers its 4 MiB
# reads at depth 1 ran at 1125-1182 MB/s, with `iomem=shmhuge` at 2639-3088 MB/s, and iotune's
# at about 2350. Without huge pages the large-block rows compare different memory, and say so.
fio_memory=()
huge_page_bytes=$((2 * 1024 * 1024))
hugepages_wanted=$(( (4 * 1024 * 1024 * 32) / huge_page_bytes + 16 ))
if [[ -w /proc/sys/vm/nr_hugepages ]] && grep -q '^Hugepagesize: *2048 kB' /proc/meminfo; then
    hugepages_before=$(cat /proc/sys/vm/nr_hugepages)
    echo $((hugepages_before + hugepages_wanted)) > /proc/sys/vm/nr_hugepages
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    if (( free >= hugepages_wanted )); then
        fio_memory=(--iomem=shmhuge)
        echo "fio's buffers: $hugepages_wanted huge pages reserved for the run (iomem=shmhuge)"
    fi
fi
if [[ ${#fio_memory[@]} == 0 ]]; then
    echo "fio's buffers: 4 KiB pages (no huge pages could be reserved: not root?); large-block" \
        "rows may differ by how the device splits scattered buffers, not by the tools"
fi

for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds: spate-broker iotune ($broker)"
    "$broker" iotune --data-dir "$dir" --size-bytes "$size" --duration-ms "$duration_ms" \
        | tee "$work/iotune-$round.out"
    cp "$dir/iotune.toml" "$work/iotune-$round.toml"

    if [[ $round == 1 ]]; then
        # The grid and the sizes iotune used, from its result file.
        python3 - "$work/iotune-1.toml" "$work" <<'PY'
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
            depth = point["queue_depth"]
            jobs.write(
                f"[{kind}-{point['block_bytes']}-{depth}]\nstonewall\n"
                f"rw={rw}\nbs={point['block_bytes']}\niodepth={depth}\n"
                f"iodepth_batch_submit={depth}\niodepth_batch_complete_max={depth}\n"
                f"time_based=1\nruntime={run['duration_ms']}ms\n"
            )
with open(f"{work}/sync-rounds", "w") as rounds:
    rounds.write(str(result["sync"]["rounds"]))
PY
        sed -i "s|$work/FILE|$fio_file|" "$work/jobs.fio"
    fi
    sync_rounds=$(cat "$work/sync-rounds")

    echo "== round $round of $rounds: fio $(fio --version), the same grid"
    rm -f "$fio_file" "$fio_sync_file"
    fio --output-format=json --output="$work/transfers-$round.json" "${fio_memory[@]}" \
        "$work/jobs.fio"
    echo "== round $round of $rounds: fio, fdatasync after each 4 KiB appended write, $sync_rounds rounds"
    fio --output-format=json --output="$work/sync-$round.json" --name=sync \
        --filename="$fio_sync_file" --rw=write --bs=4k --fdatasync=1 --direct=1 \
        --ioengine=io_uring --iodepth=1 --fallocate=keep --size=$((sync_rounds * 4096)) \
        --percentile_list=50:90:99:99.9:99.99
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys, tomllib
work, rounds = sys.argv[1], int(sys.argv[2])
ours_rounds = [tomllib.load(open(f"{work}/iotune-{r}.toml", "rb")) for r in range(1, rounds + 1)]
fio_rounds = [{job["jobname"]: job for job in json.load(open(f"{work}/transfers-{r}.json"))["jobs"]}
              for r in range(1, rounds + 1)]
fio_syncs = [json.load(open(f"{work}/sync-{r}.json"))["jobs"][0]["sync"]["lat_ns"]["percentile"]
             for r in range(1, rounds + 1)]

def size(bytes_):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if bytes_ < 1024:
            return f"{bytes_:g} {unit}"
        bytes_ /= 1024
    return f"{bytes_:g} TiB"

def spread(values):
    return max(values) / min(values) if min(values) > 0 else float("nan")

print()
print(f"medians of {rounds} alternating rounds; spread: that tool's max / min over its rounds")
print(f"{'':6} {'block':>8} {'depth':>5} {'iotune MB/s':>12} {'fio MB/s':>10} {'ratio':>6}"
      f" {'iotune IOPS':>12} {'fio IOPS':>10} {'spread iotune':>14} {'fio':>6}")
ratios = []
for kind in ("write", "read"):
    for index, point in enumerate(ours_rounds[0][kind]):
        name = f"{kind}-{point['block_bytes']}-{point['queue_depth']}"
        ours = [result[kind][index]["bytes_per_second"] / 1e6 for result in ours_rounds]
        ours_iops = [result[kind][index]["operations_per_second"] for result in ours_rounds]
        theirs = [jobs[name][kind]["bw_bytes"] / 1e6 for jobs in fio_rounds]
        theirs_iops = [jobs[name][kind]["iops"] for jobs in fio_rounds]
        mine, fio = statistics.median(ours), statistics.median(theirs)
        ratio = mine / fio if fio else float("nan")
        ratios.append(ratio)
        print(f"{kind:6} {size(point['block_bytes']):>8} {point['queue_depth']:>5} {mine:>12.1f}"
              f" {fio:>10.1f} {ratio:>6.2f} {statistics.median(ours_iops):>12.0f}"
              f" {statistics.median(theirs_iops):>10.0f} {spread(ours):>14.2f}"
              f" {spread(theirs):>6.2f}")
print()
print(f"fdatasync latency (us, medians) {'iotune':>10} {'fio':>10} {'ratio':>6}")
for label, key, fio_key in (("p50", "p50_ns", "50.000000"), ("p90", "p90_ns", "90.000000"),
                            ("p99", "p99_ns", "99.000000"), ("p99.9", "p99_9_ns", "99.900000"),
                            ("p99.99", "p99_99_ns", "99.990000")):
    mine = statistics.median(result["sync"][key] for result in ours_rounds) / 1e3
    fio = statistics.median(sync[fio_key] for sync in fio_syncs) / 1e3
    print(f"{label:31} {mine:>10.1f} {fio:>10.1f} {mine / fio if fio else float('nan'):>6.2f}")
within = sum(1 for ratio in ratios if 0.9 <= ratio <= 1.1)
print(f"\n{within} of {len(ratios)} transfer points within 10% of fio")
PY

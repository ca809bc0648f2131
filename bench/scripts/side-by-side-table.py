#!/usr/bin/env python3
"""Markdown tables from the JSON files of bench/scripts/side-by-side.sh (issue #15).

usage: bench/scripts/side-by-side-table.py OUT_DIR

For each run: one row per system (throughput, records/s, latency percentiles, the ratio of
Spate's throughput to it, its promise), then the limits measured in the same run.
"""
import json
import os
import sys


def megabytes(value):
    return "-" if value is None else f"{value / 1e6:.1f} MB/s"


def milliseconds(value):
    return "-" if value is None else f"{value / 1000:.2f} ms"


def rows(report):
    yield report
    yield from report.get("peers") or []


def table(name, report):
    latency_kind = (report.get("latency_us") or {}).get("kind", "")
    lines = [f"#### {name}: {report['workload']} ({latency_kind}; {report.get('load', {}).get('mode', 'burst')})", ""]
    lines.append("| system | promise | throughput | records/s | p50 | p99 | p99.99 | Spate / it |")
    lines.append("|---|---|---|---|---|---|---|---|")
    subject = report["throughput_bytes_per_sec"]
    for row in rows(report):
        latency = row.get("latency_us") or {}
        end_to_end = row.get("end_to_end") or {}
        if end_to_end.get("latency_us"):
            latency = end_to_end["latency_us"]
        throughput = row.get("throughput_bytes_per_sec")
        ratio = "-" if not throughput else f"{subject / throughput:.2f}x"
        lines.append(
            f"| {row['driver']} | {row.get('promise', '')} | {megabytes(throughput)} | "
            f"{row.get('records_per_sec') or 0:,.0f} | {milliseconds(latency.get('p50'))} | "
            f"{milliseconds(latency.get('p99'))} | {milliseconds(latency.get('p9999'))} | {ratio} |"
        )
        target = end_to_end.get("target_records_per_sec")
        if target:
            lines.append(
                f"|  | e2e: target {target:,.0f}/s of max "
                f"{end_to_end.get('calibration_max_records_per_sec') or 0:,.0f}/s, held "
                f"{end_to_end.get('rate_held')} | | | | | | |"
            )
    limits = report.get("limits") or {}
    if limits:
        reads = ", ".join(
            f"QD{read['queue_depth']} {megabytes(read['bytes_per_sec'])}"
            for read in limits.get("disk_reads") or []
        )
        sync = limits.get("disk_sync_latency") or {}
        lines.append("")
        lines.append(
            f"Limits in the same run: loopback {megabytes(limits.get('loopback_bytes_per_sec'))} "
            f"(RTT p50 {limits.get('loopback_rtt_us') or 0:.0f} us); O_DIRECT write+fdatasync "
            f"{megabytes(limits.get('disk_direct_write_bytes_per_sec'))}; O_DIRECT read {reads}; "
            f"fdatasync p50/p99/p99.99 {sync.get('p50', 0):.0f}/{sync.get('p99', 0):.0f}/"
            f"{sync.get('p9999', 0):.0f} us. Ratios: {json.dumps({k: round(v, 3) for k, v in report['ratios'].items() if isinstance(v, float) and k.startswith('throughput_vs')})}"
        )
    lines.append("")
    return "\n".join(lines)


def main():
    directory = sys.argv[1]
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as file:
                print(table(name[:-5], json.load(file)))


if __name__ == "__main__":
    main()

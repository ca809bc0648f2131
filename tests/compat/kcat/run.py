#!/usr/bin/env python3
"""kcat (librdkafka) against the broker at $KAFKA_BOOTSTRAP: the issue's checks as far as kcat
can do them. Metadata (-L) with topic auto-creation; keyed produce (-K) with librdkafka's defaults,
with idempotence, and with each codec; a balanced consumer group of two (-G) that must deliver
every record exactly once; resume at the committed offsets; consume from an offset inside a
compressed batch (-o); offsets by timestamp, beginning and end (-Q). kcat has no admin API: the
3-partition topic is created and deleted with the spate tool ($SPATE_BIN, $SPATE_BROKER).
Exit 0 only if every check passed."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP")
TIMEOUT_S = 90
PARTITIONS = 3
CODECS = ["gzip", "snappy", "lz4", "zstd"]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def log(message):
    print("  " + message, flush=True)


def kcat(arguments, stdin=None, timeout=TIMEOUT_S):
    """Runs kcat; returns (stdout, stderr); fails on a non-zero exit."""
    command = ["kcat", "-b", BOOTSTRAP] + arguments
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        raise CheckFailed(f"{' '.join(command)} did not finish within {timeout} s; stderr: {expired.stderr}")
    check(done.returncode == 0, f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout, done.stderr


def spate(arguments):
    binary = os.environ.get("SPATE_BIN")
    broker = os.environ.get("SPATE_BROKER")
    check(binary and broker, "this test needs $SPATE_BIN and $SPATE_BROKER (run-all.sh sets them): kcat cannot "
          "create or delete topics")
    done = subprocess.run([binary, "--broker", broker] + arguments, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    check(done.returncode == 0, f"spate {' '.join(arguments)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def metadata(topic):
    out, _ = kcat(["-L", "-J", "-t", topic])
    return json.loads(out)


def wait_for_metadata(topic, partitions):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        listed = metadata(topic)
        topics = [t for t in listed.get("topics", []) if t["topic"] == topic]
        if topics and not topics[0].get("error") and len(topics[0]["partitions"]) == partitions and all(
                p.get("leader", -1) >= 0 for p in topics[0]["partitions"]):
            return listed
        check(time.monotonic() < deadline, f"metadata of {topic} never showed {partitions} partitions with leaders: "
              f"{listed}")
        time.sleep(0.2)


def consume_json(arguments, timeout=TIMEOUT_S):
    out, err = kcat(arguments + ["-J"], timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()], err


def produce(topic, lines, extra, run):
    """Produces `key:value` lines with a header naming the run; returns the (key, value) pairs."""
    text = "".join(f"{key}:{value}\n" for key, value in lines)
    kcat(["-P", "-t", topic, "-K", ":", "-H", f"run={run}", "-H", "source=kcat"] + extra, stdin=text)
    return lines


def records_of(run, first, count, keys=25):
    return [(f"key-{i % keys}", f"{run}-{i} " + "lorem ipsum " * (i % 4)) for i in range(first, first + count)]


def check_exact(what, expected, delivered):
    """Every expected (key, value) is delivered exactly once with its key and the run header;
    records of one key stay in one partition, in produce order; offsets are contiguous."""
    by_value = {value: key for key, value in expected}
    check(len(by_value) == len(expected), f"{what}: test values are not unique")
    seen = {}
    problems = []
    for record in delivered:
        where = f"{record['topic']}/{record['partition']}@{record['offset']}"
        value = record["payload"]
        if value in seen:
            problems.append(f"delivered twice: {value!r} at {where} and {seen[value]}")
            continue
        seen[value] = where
        if value not in by_value:
            problems.append(f"never produced: {value!r} at {where}")
            continue
        if record.get("key") != by_value[value]:
            problems.append(f"{where}: key {record.get('key')!r}, produced {by_value[value]!r}")
        headers = record.get("headers") or []
        # kcat prints headers as a flat [name, value, ...] list.
        pairs = dict(zip(headers[0::2], headers[1::2])) if isinstance(headers, list) else headers
        if pairs.get("source") != "kcat" or pairs.get("run") != value.split("-")[0]:
            problems.append(f"{where}: headers {headers}")
    missing = [value for _, value in expected if value not in seen]
    for value in missing[:10]:
        problems.append(f"never delivered: {value!r}")
    if problems:
        raise CheckFailed(f"{what}: {len(problems)} problems ({len(delivered)} delivered, {len(expected)} "
                          f"expected): " + "; ".join(problems[:10]))


def check_partition_order(what, delivered, produced_order):
    """Per partition: offsets contiguous and increasing in delivery order; per key: produce order."""
    position = {value: index for index, (_, value) in enumerate(produced_order)}
    last_offset = {}
    last_of_key = {}
    partition_of_key = {}
    for record in delivered:
        partition = record["partition"]
        offset = record["offset"]
        if partition in last_offset:
            check(offset == last_offset[partition] + 1, f"{what}: partition {partition} offset {offset} after "
                  f"{last_offset[partition]} (a consumer reading one partition sees contiguous offsets)")
        last_offset[partition] = offset
        key = record["key"]
        check(partition_of_key.setdefault(key, partition) == partition,
              f"{what}: key {key} in partitions {partition_of_key[key]} and {partition}")
        index = position[record["payload"]]
        check(last_of_key.get(key, -1) < index, f"{what}: key {key}: {record['payload']!r} delivered after a "
              "later record of the same key")
        last_of_key[key] = index


def group_member(group, topic):
    # -e: exit when every assigned partition reached its end; auto commit (librdkafka's default)
    # commits what was delivered, also on revocation and at close.
    return subprocess.Popen(
        ["kcat", "-b", BOOTSTRAP, "-G", group, "-J", "-e", "-X", "auto.offset.reset=earliest", topic],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, what):
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise CheckFailed(f"{what} did not reach the end within {TIMEOUT_S} s; stderr: {err[-2000:]}")
    check(process.returncode == 0, f"{what} exited {process.returncode}: {err[-2000:]}")
    return [json.loads(line) for line in out.splitlines() if line.strip()], err


class Member:
    """A kcat -G member that runs until stopped; threads collect its records and its latest
    assignment (kcat logs `% Group G rebalanced (memberid M): assigned: T [0], T [1]`)."""

    def __init__(self, group, topic):
        self.topic = topic
        self.records = []
        self.assigned = None  # the partitions of the latest assignment, None before any
        self.stderr = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            ["kcat", "-b", BOOTSTRAP, "-G", group, "-J", "-u", "-X", "auto.offset.reset=earliest", topic],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_records, daemon=True).start()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_records(self):
        for line in self.process.stdout:
            if line.strip():
                with self.lock:
                    self.records.append(json.loads(line))

    def _read_log(self):
        for line in self.process.stderr:
            with self.lock:
                self.stderr.append(line)
                if "rebalanced" in line and "assigned:" in line:
                    self.assigned = frozenset(int(p) for p in re.findall(r"\[(\d+)\]", line.split("assigned:")[1]))
                elif "rebalanced" in line and "revoked:" in line:
                    self.assigned = frozenset()

    def stop(self):
        """SIGTERM: kcat closes the consumer, which commits what it delivered."""
        self.process.terminate()
        try:
            self.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise CheckFailed("a kcat group member did not exit within 90 s of SIGTERM")


def wait_for(what, condition, timeout=TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        check(time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def test_metadata_and_auto_create():
    topic = unique("compat-kcat-auto")
    # Producing to a topic that does not exist creates it (auto.create.topics.enable).
    produced = produce(topic, records_of("auto", 0, 20), [], "auto")
    listed = metadata(topic)
    topics = [t for t in listed.get("topics", []) if t["topic"] == topic]
    check(topics and not topics[0].get("error") and topics[0]["partitions"], f"-L -t {topic} after producing to "
          f"it: {listed}")
    brokers = listed.get("brokers", [])
    check(len(brokers) == 1, f"metadata lists brokers {brokers}, expected exactly one")
    host, port = BOOTSTRAP.rsplit(":", 1)
    check(brokers[0]["name"] == f"{host}:{port}", f"the advertised broker is {brokers[0]['name']}, the bootstrap "
          f"is {BOOTSTRAP}")
    delivered, _ = consume_json(["-C", "-t", topic, "-o", "beginning", "-e"])
    check_exact("auto-created topic", produced, delivered)
    log(f"-L lists one broker at {brokers[0]['name']}; producing to a new topic created it; 20 records back")
    spate(["topic", "delete", topic])


def produce_runs(topic, runs, run_starts):
    produced = []
    index = 0
    for run, extra in runs:
        time.sleep(0.05)  # distinct timestamps between runs
        run_starts.append((run, int(time.time() * 1000)))
        # librdkafka's consistent_random partitioner differs from Java's; murmur2_random is
        # Kafka's, so that both clients put a key in the same partition.
        produced += produce(topic, records_of(run, index, 300), ["-X", "partitioner=murmur2_random"] + extra, run)
        index += 300
    return produced


def test_main():
    topic = unique("compat-kcat")
    group = unique("compat-kcat-group")
    spate(["topic", "create", topic, "--partitions", str(PARTITIONS)])
    wait_for_metadata(topic, PARTITIONS)
    log(f"created {topic} ({PARTITIONS} partitions) with the spate tool; -L shows it")

    run_starts = []  # (run, first wall-clock ms) for the by-timestamp queries
    runs = [("default", []), ("idempotent", ["-X", "enable.idempotence=true"])]
    runs += [(codec, ["-X", "enable.idempotence=true", "-X", f"compression.codec={codec}"]) for codec in CODECS]

    # A group of two: both members own partitions before the records arrive, so each reads its own.
    members = [Member(group, topic) for _ in range(2)]
    try:
        def stable():
            owned = [member.assigned for member in members]
            return all(owned) and not (owned[0] & owned[1]) and (owned[0] | owned[1]) == set(range(PARTITIONS))
        wait_for("both kcat -G members to own partitions (a stable group of two)", stable)
        owned = [sorted(member.assigned) for member in members]
        produced = produce_runs(topic, runs, run_starts)
        log(f"the group of two owns {owned}; produced {len(produced)} keyed records: defaults, idempotent, "
            f"and idempotent with {CODECS}")
        wait_for(f"the group to deliver {len(produced)} records",
                 lambda: sum(len(member.records) for member in members) >= len(produced))
        time.sleep(1)  # anything delivered twice would show up now
    finally:
        for member in members:
            member.stop()
    delivered = [record for member in members for record in member.records]
    check_exact("group of two", produced, delivered)
    for n, member in enumerate(members):
        check_partition_order(f"group member {n}", member.records, produced)
        check(all(record["partition"] in owned[n] for record in member.records),
              f"group member {n} owns {owned[n]} but delivered records of other partitions")
    log(f"group of two delivered all {len(delivered)} records exactly once ({[len(m.records) for m in members]} "
        "each, each from its own partitions)")
    index = len(produced)

    # Resume: a new member reads exactly what was produced after the group's commits.
    later = produce(topic, records_of("later", index, 60), ["-X", "partitioner=murmur2_random"], "later")
    index += 60
    resumed, _ = finish(group_member(group, topic), "restarted member")
    check_exact("restarted member", later, resumed)
    log(f"a restarted member resumed at the committed offsets: exactly the {len(later)} new records")

    everything = produced + later
    all_records, _ = consume_json(["-C", "-t", topic, "-o", "beginning", "-e"])
    check_exact("plain consumer", everything, all_records)
    check_partition_order("plain consumer", sorted(all_records, key=lambda r: (r["partition"], r["offset"])),
                          everything)
    ends = {}
    for record in all_records:
        ends[record["partition"]] = max(ends.get(record["partition"], -1), record["offset"] + 1)

    # -o inside a compressed batch: the zstd run's middle record in some partition.
    zstd = sorted((r for r in all_records if r["payload"].startswith("zstd-")), key=lambda r: r["offset"])
    middle = zstd[len(zstd) // 2]
    partition, offset = middle["partition"], middle["offset"]
    tail, _ = consume_json(["-C", "-t", topic, "-p", str(partition), "-o", str(offset), "-e"])
    expected_tail = sorted((r for r in all_records if r["partition"] == partition and r["offset"] >= offset),
                           key=lambda r: r["offset"])
    check([r["offset"] for r in tail] == [r["offset"] for r in expected_tail],
          f"-p {partition} -o {offset}: offsets {[r['offset'] for r in tail][:5]}..., expected from {offset}")
    check(all(a["payload"] == b["payload"] for a, b in zip(tail, expected_tail)), "-o: payloads differ")
    log(f"-p {partition} -o {offset} (inside the zstd run) starts exactly there and reads {len(tail)} records")

    # -Q: beginning (-2), end (-1), and by timestamp at each run's start and after everything.
    check_query_offsets(topic, ends)
    for run, started in run_starts[1:] + [("after", int(time.time() * 1000) + 60_000)]:
        arguments = []
        for p in range(PARTITIONS):
            arguments += ["-t", f"{topic}:{p}:{started}"]
        out, _ = kcat(["-Q"] + arguments)
        got = parse_query(out)
        for p in range(PARTITIONS):
            candidates = [r["offset"] for r in all_records if r["partition"] == p and r["ts"] >= started]
            expected = min(candidates) if candidates else -1
            # No record at or after the time: the broker answers offset -1.
            check(got.get(p) == expected,
                  f"-Q {topic}:{p}:{started} (start of run {run}) gave {got.get(p)}, expected {expected}: {out}")
    log(f"-Q by timestamp ({len(run_starts)} targets) exact in every partition; beginning and end right")

    spate(["topic", "delete", topic])
    log(f"deleted {topic} with the spate tool")


def parse_query(out):
    """kcat -Q prints `<topic> [<partition>] offset <offset>` per answer."""
    answers = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-2] == "offset":
            answers[int(parts[1].strip("[]"))] = int(parts[-1])
    return answers


def check_query_offsets(topic, ends):
    for p, end in ends.items():
        out, _ = kcat(["-Q", "-t", f"{topic}:{p}:-1"])
        got = parse_query(out).get(p)
        check(got == end, f"-Q {topic}:{p}:-1 (end) gave {got}, expected {end}: {out}")
        out, _ = kcat(["-Q", "-t", f"{topic}:{p}:-2"])
        got = parse_query(out).get(p)
        check(got == 0, f"-Q {topic}:{p}:-2 (beginning) gave {got}, expected 0: {out}")


def main():
    if not BOOTSTRAP:
        print("error: set KAFKA_BOOTSTRAP to the Kafka listener, HOST:PORT", file=sys.stderr)
        return 2
    tests = {"metadata-auto-create": test_metadata_and_auto_create, "main": test_main}
    chosen = sys.argv[1:] or list(tests)
    passed = failed = 0
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            tests[name]()
            passed += 1
            outcome = "PASS"
        except CheckFailed as failure:
            failed += 1
            outcome = "FAIL"
            print(f"  FAILED: {failure}", flush=True)
        print(f"{outcome} {name} ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Spate's Kafka-API compatibility program for confluent-kafka (Python over librdkafka).

Runs the plan every client folder under tests/compat/ runs (run-all.sh starts the broker) against
$KAFKA_BOOTSTRAP: create a topic with the admin API, produce keyed records with the client's
defaults, idempotently, and once per compression codec, consume them with a group of two members
and check every record exactly, commit, restart a consumer and check it resumes at the committed
offset, list offsets and describe configs, delete the topic. Exits 0 only if every check passed.
"""

import os
import sys
import threading
import time
import uuid

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
    libversion,
    version,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

CLIENT = "confluent-kafka-python"
PARTITIONS = 3
RETENTION_MS = "86400000"  # a topic-level override describe must report as such
CODECS = ["gzip", "snappy", "lz4", "zstd"]
# Records per produce phase. Keys repeat (key-0..key-9) so each key's partition is checked to be
# the same in every phase.
DEFAULT_RECORDS = 30
PHASE_RECORDS = 10
AFTER_RECORDS = 12
DEADLINE_S = 60.0

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "")
RUN_ID = uuid.uuid4().hex[:8]
TOPIC = f"compat-{CLIENT}-{RUN_ID}"
GROUP = f"compat-{CLIENT}-group-{RUN_ID}"


class Checks:
    """Counts and prints every check; a failed check is printed with what was seen."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok   {name}", flush=True)
        else:
            self.failed.append(name)
            print(f"  FAIL {name}: {detail}", flush=True)
        return ok


checks = Checks()


STARTED = time.monotonic()


def step(name):
    print(f"== [{time.monotonic() - STARTED:5.1f} s] {name}", flush=True)


class Fatal(Exception):
    """A failure after which later steps cannot run."""


def wait_until(what, predicate, timeout_s=DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    print(f"  (timed out after {timeout_s:.0f} s waiting for {what})", flush=True)
    return False


def log_errors(prefix):
    def callback(error):
        print(f"  [{prefix}] client error: {error}", flush=True)

    return callback


def common_config():
    return {"bootstrap.servers": BOOTSTRAP, "error_cb": log_errors("client")}


# ---------------------------------------------------------------------------------------------
# Produce: the model of what was acknowledged, keyed by (partition, offset).


class Produced:
    def __init__(self):
        self.records = {}  # (partition, offset) -> (key, value, headers)
        self.partition_of_key = {}

    def by_partition(self):
        out = {p: [] for p in range(PARTITIONS)}
        for (partition, offset), record in sorted(self.records.items()):
            out[partition].append((offset, record))
        return out

    def end_offsets(self):
        # Offsets within a partition are dense from 0: every acknowledged record takes one.
        return {p: len(records) for p, records in self.by_partition().items()}


def produce_phase(produced, phase, count, extra_config):
    step(f"produce {count} keyed records: {phase}")
    config = common_config()
    config.update(extra_config)
    producer = Producer(config)
    reports = []

    def on_delivery(error, message):
        reports.append((error, message))

    sent = {}  # value -> headers: librdkafka's delivery reports carry no headers
    for i in range(count):
        key = f"key-{i % 10}".encode()
        value = f"{phase}-{i}".encode()
        headers = [("phase", phase.encode()), ("index", str(i).encode())]
        sent[value] = headers
        producer.produce(TOPIC, key=key, value=value, headers=headers, on_delivery=on_delivery)
    left = producer.flush(DEADLINE_S)
    checks.check(f"{phase}: every record acknowledged", left == 0 and len(reports) == count,
                 f"{left} still queued, {len(reports)} of {count} reports")
    errors = [str(e) for e, _ in reports if e is not None]
    checks.check(f"{phase}: no delivery error", not errors, "; ".join(errors[:5]))
    fresh = True
    for error, message in reports:
        if error is not None:
            continue
        slot = (message.partition(), message.offset())
        if slot in produced.records:
            fresh = False
            print(f"  two records acknowledged at partition {slot[0]} offset {slot[1]}")
        produced.records[slot] = (message.key(), message.value(), sent[message.value()])
        previous = produced.partition_of_key.setdefault(message.key(), message.partition())
        if previous != message.partition():
            checks.check(f"{phase}: key {message.key()!r} stays on one partition", False,
                         f"partition {message.partition()}, earlier {previous}")
    checks.check(f"{phase}: every acknowledged offset is distinct", fresh)
    return [time_ms for time_ms in (m.timestamp()[1] for e, m in reports if e is None)]


# ---------------------------------------------------------------------------------------------
# Consume: group members, each in its own thread.


class Member(threading.Thread):
    """One consumer of the group, polling in its own thread until told to stop, then committing
    (when told to) and closing (when told to)."""

    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.lock = threading.Lock()
        self.assignment = set()
        self.received = []  # (partition, offset, key, value, headers, timestamp_ms)
        self.errors = []
        self.stop_polling = threading.Event()
        self.commit_requested = threading.Event()
        self.commit_done = threading.Event()
        self.commit_result = None
        self.close_requested = threading.Event()
        self.closed = threading.Event()
        config = common_config()
        config.update({
            "group.id": GROUP,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        self.consumer = Consumer(config)

    def on_assign(self, consumer, partitions):
        with self.lock:
            self.assignment |= {tp.partition for tp in partitions}
        print(f"  [{self.name}] assigned {sorted(tp.partition for tp in partitions)}", flush=True)

    def on_revoke(self, consumer, partitions):
        with self.lock:
            self.assignment -= {tp.partition for tp in partitions}
        print(f"  [{self.name}] revoked {sorted(tp.partition for tp in partitions)}", flush=True)

    def run(self):
        try:
            self.consumer.subscribe([TOPIC], on_assign=self.on_assign, on_revoke=self.on_revoke)
            while not self.stop_polling.is_set():
                message = self.consumer.poll(0.1)
                if message is None:
                    continue
                if message.error():
                    self.errors.append(str(message.error()))
                    continue
                headers = [(k, bytes(v)) for k, v in (message.headers() or [])]
                with self.lock:
                    self.received.append((message.partition(), message.offset(), message.key(),
                                          message.value(), headers, message.timestamp()[1]))
            deadline = time.monotonic() + DEADLINE_S
            while not self.close_requested.is_set() and time.monotonic() < deadline:
                if self.commit_requested.is_set() and not self.commit_done.is_set():
                    try:
                        self.commit_result = self.consumer.commit(asynchronous=False)
                    except KafkaException as error:
                        self.commit_result = error
                    self.commit_done.set()
                time.sleep(0.01)
        except Exception as error:  # reported as a failed check by the main thread
            self.errors.append(f"{type(error).__name__}: {error}")
            self.commit_done.set()
        finally:
            self.consumer.close()
            self.closed.set()

    def snapshot(self):
        with self.lock:
            return set(self.assignment), list(self.received)


def check_consumed(label, members, produced, start_offsets):
    """Every acknowledged record at or after start_offsets is received exactly once, by the member
    that owns its partition, in offset order, with its key, value and headers."""
    expected = produced.by_partition()
    owner = {}
    ok = True
    for member in members:
        _, received = member.snapshot()
        per_partition = {}
        for partition, offset, key, value, headers, _ in received:
            per_partition.setdefault(partition, []).append((offset, key, value, headers))
        for partition, got in per_partition.items():
            if partition in owner:
                ok = checks.check(f"{label}: partition {partition} read by one member", False,
                                  f"read by {owner[partition]} and {member.name}")
            owner[partition] = member.name
            want = [(offset, r[0], r[1], r[2]) for offset, r in expected[partition]
                    if offset >= start_offsets[partition]]
            if got != want:
                ok = False
                got_offsets = [g[0] for g in got]
                want_offsets = [w[0] for w in want]
                detail = f"offsets {got_offsets} want {want_offsets}"
                if got_offsets == want_offsets:
                    wrong = [(g, w) for g, w in zip(got, want) if g != w][:3]
                    detail = f"records differ (got, want): {wrong}"
                checks.check(f"{label}: partition {partition} records exact", False, detail)
    for partition in range(PARTITIONS):
        want = [o for o, _ in expected[partition] if o >= start_offsets[partition]]
        if want and partition not in owner:
            ok = checks.check(f"{label}: partition {partition} read", False,
                              f"none of offsets {want} received")
    return checks.check(f"{label}: every record exactly once, in order, exact", ok)


def total_received(members):
    return sum(len(m.snapshot()[1]) for m in members)


def consume_group(produced, admin):
    step("consume with a group of two members")
    members = [Member(f"{CLIENT}-member-{n}") for n in (1, 2)]
    for member in members:
        member.start()

    def balanced():
        assignments = [m.snapshot()[0] for m in members]
        union = set().union(*assignments)
        disjoint = sum(len(a) for a in assignments) == len(union)
        return all(assignments) and disjoint and union == set(range(PARTITIONS))

    checks.check("both members share the partitions", wait_until("a balanced group", balanced),
                 f"assignments {[sorted(m.snapshot()[0]) for m in members]}")
    return members


def finish_group(members, produced, admin):
    expected_total = len(produced.records)
    wait_until(f"{expected_total} records", lambda: total_received(members) >= expected_total)
    # A short grace period in which a duplicate would show up as an extra record.
    time.sleep(1.0)
    for member in members:
        member.stop_polling.set()
    check_consumed("group", members, produced, {p: 0 for p in range(PARTITIONS)})
    errors = [e for m in members for e in m.errors]
    checks.check("group: no consumer error", not errors, "; ".join(errors[:5]))

    step("commit from each member")
    for member in members:
        member.commit_requested.set()
    for member in members:
        member.commit_done.wait(DEADLINE_S)
        result = member.commit_result
        if isinstance(result, Exception) or result is None:
            checks.check(f"{member.name}: commit", False, repr(result))
            continue
        failed = [f"{tp.partition}: {tp.error}" for tp in result if tp.error]
        checks.check(f"{member.name}: commit of {sorted(tp.partition for tp in result)}",
                     not failed, "; ".join(failed))
    for member in members:
        member.close_requested.set()
    for member in members:
        member.closed.wait(DEADLINE_S)

    end_offsets = produced.end_offsets()
    request = [ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])]
    try:
        result = admin.list_consumer_group_offsets(request)[GROUP].result(DEADLINE_S)
        committed = {tp.partition: tp.offset for tp in result.topic_partitions}
        checks.check("committed offsets read back (OffsetFetch) equal the end offsets",
                     committed == end_offsets, f"committed {committed}, want {end_offsets}")
    except KafkaException as error:
        checks.check("committed offsets read back (OffsetFetch)", False, str(error))
    return end_offsets


def resume(produced, committed):
    step("restart a consumer in the group: it resumes at the committed offsets")
    member = Member(f"{CLIENT}-member-3")
    member.start()
    checks.check("restarted member gets every partition",
                 wait_until("the assignment", lambda: member.snapshot()[0] == set(range(PARTITIONS))),
                 f"assignment {sorted(member.snapshot()[0])}")
    want = len(produced.records) - sum(committed.values())
    wait_until(f"{want} new records", lambda: len(member.snapshot()[1]) >= want)
    time.sleep(1.0)
    member.stop_polling.set()
    _, received = member.snapshot()
    first = {}
    for partition, offset, *_ in received:
        first.setdefault(partition, offset)
    want_first = {p: committed[p] for p in first}
    checks.check("first offset read per partition is the committed one", first == want_first,
                 f"first {first}, committed {committed}")
    check_consumed("resumed", [member], produced, committed)
    member.close_requested.set()
    member.closed.wait(DEADLINE_S)
    return received


# ---------------------------------------------------------------------------------------------
# Admin.


def create_topic(admin):
    step(f"create topic {TOPIC} ({PARTITIONS} partitions, retention.ms={RETENTION_MS})")
    topic = NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1,
                     config={"retention.ms": RETENTION_MS})
    try:
        admin.create_topics([topic])[TOPIC].result(DEADLINE_S)
        checks.check("create_topics", True)
    except KafkaException as error:
        checks.check("create_topics", False, str(error))
        raise Fatal("no topic")

    def visible():
        metadata = admin.list_topics(timeout=5)
        topic = metadata.topics.get(TOPIC)
        return topic is not None and topic.error is None and len(topic.partitions) == PARTITIONS

    if not checks.check(f"metadata shows {PARTITIONS} partitions", wait_until("metadata", visible)):
        raise Fatal("topic not visible")


def list_offsets(admin, produced, after_ms, all_records):
    step("list offsets: earliest, latest, by timestamp, max timestamp")
    end_offsets = produced.end_offsets()
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]

    def query(label, spec):
        try:
            futures = admin.list_offsets({tp: spec for tp in partitions})
            return {tp.partition: f.result(DEADLINE_S) for tp, f in futures.items()}
        except KafkaException as error:
            checks.check(f"list offsets {label}", False, str(error))
            return None

    earliest = query("earliest", OffsetSpec.earliest())
    if earliest is not None:
        got = {p: r.offset for p, r in earliest.items()}
        checks.check("earliest offsets are 0", got == {p: 0 for p in range(PARTITIONS)}, str(got))
    latest = query("latest", OffsetSpec.latest())
    if latest is not None:
        got = {p: r.offset for p, r in latest.items()}
        checks.check("latest offsets are the record counts", got == end_offsets,
                     f"got {got}, want {end_offsets}")

    # The first offset whose timestamp is at or after after_ms, per partition (Kafka answers per
    # record, not per batch); -1 where no record is that late.
    timestamps = {(p, o): ts for p, o, ts in all_records}
    want = {}
    for partition in range(PARTITIONS):
        late = sorted(o for (p, o), ts in timestamps.items() if p == partition and ts >= after_ms)
        want[partition] = late[0] if late else -1
    by_time = query("by timestamp", OffsetSpec.for_timestamp(after_ms))
    if by_time is not None:
        got = {p: r.offset for p, r in by_time.items()}
        checks.check(f"offsets for timestamp {after_ms} are the first records at or after it",
                     got == want, f"got {got}, want {want}")
    zero = query("by timestamp 0", OffsetSpec.for_timestamp(0))
    if zero is not None:
        got = {p: r.offset for p, r in zero.items()}
        checks.check("offsets for timestamp 0 are 0", got == {p: 0 for p in range(PARTITIONS)},
                     str(got))
    max_ts = query("max timestamp", OffsetSpec.max_timestamp())
    if max_ts is not None:
        ok = True
        detail = []
        for partition, result in max_ts.items():
            stamps = [ts for (p, _), ts in timestamps.items() if p == partition]
            if not stamps:
                continue
            at = timestamps.get((partition, result.offset))
            if result.timestamp != max(stamps) or at != max(stamps):
                ok = False
                detail.append(f"partition {partition}: offset {result.offset} timestamp "
                              f"{result.timestamp} (record's {at}), max {max(stamps)}")
        checks.check("max-timestamp offsets point at a record with the largest timestamp", ok,
                     "; ".join(detail))


def describe_configs(admin):
    step("describe topic configs")
    resource = ConfigResource(ResourceType.TOPIC, TOPIC)
    try:
        configs = admin.describe_configs([resource])[resource].result(DEADLINE_S)
    except KafkaException as error:
        checks.check("describe_configs", False, str(error))
        return
    retention = configs.get("retention.ms")
    checks.check("retention.ms is the value set at creation",
                 retention is not None and retention.value == RETENTION_MS,
                 f"got {retention.value if retention else None!r}")
    checks.check("retention.ms is reported as a topic override",
                 retention is not None and retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
                 and not retention.is_default,
                 f"source {retention.source if retention else None}")
    # Kafka reports every topic config, defaults included, not only the overridden ones.
    for name in ("cleanup.policy", "max.message.bytes", "retention.bytes", "segment.bytes"):
        entry = configs.get(name)
        checks.check(f"{name} is reported (default)", entry is not None and entry.value,
                     f"keys reported: {sorted(configs)}")
    policy = configs.get("cleanup.policy")
    checks.check("cleanup.policy is delete", policy is not None and policy.value == "delete",
                 f"got {policy.value if policy else None!r}")


def delete_topic(admin):
    step("delete topic")
    try:
        admin.delete_topics([TOPIC])[TOPIC].result(DEADLINE_S)
        checks.check("delete_topics", True)
    except KafkaException as error:
        checks.check("delete_topics", False, str(error))
        return

    def gone():
        return TOPIC not in admin.list_topics(timeout=5).topics

    checks.check("topic gone from metadata", wait_until("the topic to go", gone))


def main():
    if not BOOTSTRAP:
        print("KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    print(f"{CLIENT} {version()} (librdkafka {libversion()}) against {BOOTSTRAP}")
    admin = AdminClient(common_config())
    produced = Produced()
    try:
        create_topic(admin)
        members = consume_group(produced, admin)
        produce_phase(produced, "defaults", DEFAULT_RECORDS, {})
        produce_phase(produced, "idempotent", PHASE_RECORDS,
                      {"enable.idempotence": True, "acks": "all"})
        for codec in CODECS:
            produce_phase(produced, f"compression-{codec}", PHASE_RECORDS,
                          {"enable.idempotence": True, "compression.type": codec})
        committed = finish_group(members, produced, admin)
        group_records = [(p, o, ts) for m in members for p, o, *_, ts in m.snapshot()[1]]
        # Records produced from here on carry timestamps strictly after every earlier record.
        latest_ms = max((ts for _, _, ts in group_records), default=0)
        wait_until("the clock to pass the last record", lambda: time.time() * 1000 > latest_ms + 1)
        after_ms = int(time.time() * 1000)
        produce_phase(produced, "after-commit", AFTER_RECORDS, {})
        resumed = resume(produced, committed)
        all_records = group_records + [(p, o, ts) for p, o, *_, ts in resumed]
        list_offsets(admin, produced, after_ms, all_records)
        describe_configs(admin)
        delete_topic(admin)
    except Fatal as error:
        print(f"  stopped: {error}")
    total = checks.passed + len(checks.failed)
    if checks.failed:
        print(f"RESULT {CLIENT}: {len(checks.failed)} of {total} checks FAILED: "
              + ", ".join(checks.failed))
        return 1
    print(f"RESULT {CLIENT}: all {total} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

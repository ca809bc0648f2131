#!/usr/bin/env python3
"""Kafka transactions with confluent-kafka (Python over librdkafka) against $KAFKA_BOOTSTRAP.

- commit-abort: 24 transactions of 12 records over 3 partitions, every third aborted (flushed
  first, so the broker's abort path is what is tested); the read_committed end offset is the last
  stable offset while a transaction is open; read_committed sees every committed record once, in
  order, and no aborted one; read_uncommitted sees both.
- zombie-fenced: a second producer with the same transactional.id fences the first (a fatal error
  for librdkafka) and aborts its open transaction.
- consume-transform-produce: a read_committed group consumer and a transactional producer that
  commits the group's offsets with send_offsets_to_transaction(consumer_group_metadata()); one
  batch aborted and re-processed; the output holds every input record once and the group's
  committed offsets are those of the committed transactions.
Exits 0 only if every check passed.
"""

import os
import sys
import time
import uuid

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
    libversion,
    version,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

PARTITIONS = 3
DEADLINE_S = 90.0
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "")
RUN_ID = uuid.uuid4().hex[:8]
STARTED = time.monotonic()
failures = []


def check(name, ok, detail=""):
    if ok:
        print(f"  ok   {name}", flush=True)
    else:
        failures.append(name)
        print(f"  FAIL {name}: {detail}", flush=True)
    return ok


def step(name):
    print(f"== [{time.monotonic() - STARTED:5.1f} s] {name}", flush=True)


ADMIN = []  # one AdminClient for the run: a client dropped before its futures resolve fails them


def admin():
    if not ADMIN:
        ADMIN.append(AdminClient({"bootstrap.servers": BOOTSTRAP}))
    return ADMIN[0]


def create_topic(name):
    futures = admin().create_topics([NewTopic(name, PARTITIONS, 1)], operation_timeout=30)
    futures[name].result(60)


def end_offsets(topic, isolation):
    """Each partition's end offset for `isolation` (the last stable offset for read_committed)."""
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    futures = admin().list_offsets(request, isolation_level=isolation, request_timeout=30)
    return {tp.partition: future.result(60).offset for tp, future in futures.items()}


def transactional_producer(transactional_id):
    return Producer({
        "bootstrap.servers": BOOTSTRAP,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    })


def read_to_end(topic, isolation):
    """Every record (key, value, partition, offset) from the start up to `isolation`'s end."""
    isolation_level = IsolationLevel.READ_COMMITTED if isolation == "read_committed" else IsolationLevel.READ_UNCOMMITTED
    ends = end_offsets(topic, isolation_level)
    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": f"unused-{RUN_ID}",  # librdkafka needs one; nothing is committed
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    records = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(done) < PARTITIONS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{isolation} read of {topic} did not reach the ends {ends} within {DEADLINE_S} s")
            for message in consumer.consume(500, 0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        if message.offset() >= ends[message.partition()]:
                            done.add(message.partition())
                        continue
                    raise KafkaException(message.error())
                records.append((message.key().decode(), message.value().decode(), message.partition(), message.offset()))
    finally:
        consumer.close()
    return records


def compare(name, expected_keys, records, in_order=None):
    keys = [key for key, _, _, _ in records]
    duplicates = len(keys) - len(set(keys))
    missing = set(expected_keys) - set(keys)
    unexpected = set(keys) - set(expected_keys)
    ok = check(f"{name}: {len(expected_keys)} records, each once",
               duplicates == 0 and not missing and not unexpected,
               f"{duplicates} duplicates, {len(missing)} missing (e.g. {sorted(missing)[:5]}), "
               f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:5]})")
    if ok and in_order is not None:
        for partition in range(PARTITIONS):
            got = [key for key, _, p, _ in records if p == partition]
            check(f"{name}: partition {partition} in commit order", got == in_order[partition],
                  f"got {got[:6]}..., expected {in_order[partition][:6]}...")


def commit_abort():
    step("commit-abort")
    topic = f"txn-commit-abort-{RUN_ID}"
    create_topic(topic)
    producer = transactional_producer(f"tx-{RUN_ID}")
    producer.init_transactions(60)
    committed, aborted = [], []
    in_order = {p: [] for p in range(PARTITIONS)}
    failed_deliveries = []

    def delivered(error, message):
        if error is not None:
            failed_deliveries.append((message.key(), error))

    for transaction in range(24):
        abort = transaction % 3 == 2
        producer.begin_transaction()
        keys = []
        for index in range(12):
            key = f"t{transaction}-r{index}"
            keys.append(key)
            producer.produce(topic, key=key, value=("aborted:" if abort else "committed:") + key,
                             partition=index % PARTITIONS, on_delivery=delivered)
        if transaction == 13:
            producer.flush(60)
            stable = end_offsets(topic, IsolationLevel.READ_COMMITTED)
            high = end_offsets(topic, IsolationLevel.READ_UNCOMMITTED)
            # 4 records of this transaction in each partition, after 13 closed transactions.
            check("with a transaction open, the read_committed end offset is the last stable offset",
                  all(high[p] - stable[p] == 4 for p in range(PARTITIONS)),
                  f"read_committed ends {stable}, read_uncommitted ends {high}")
        if abort:
            producer.flush(60)
            producer.abort_transaction(60)
            aborted += keys
        else:
            producer.commit_transaction(60)
            committed += keys
            for index, key in enumerate(keys):
                in_order[index % PARTITIONS].append(key)
    producer.flush(60)
    check("every committed send was delivered", not failed_deliveries, str(failed_deliveries[:3]))
    print(f"  produced {len(committed)} committed and {len(aborted)} aborted records", flush=True)

    records = read_to_end(topic, "read_committed")
    compare("read_committed", committed, records, in_order)
    check("read_committed: every value is a committed one",
          all(value == "committed:" + key for key, value, _, _ in records))
    compare("read_uncommitted (committed and aborted)", committed + aborted, read_to_end(topic, "read_uncommitted"))


def zombie_fenced():
    step("zombie-fenced")
    topic = f"txn-zombie-{RUN_ID}"
    create_topic(topic)
    transactional_id = f"tx-zombie-{RUN_ID}"
    zombie = transactional_producer(transactional_id)
    zombie.init_transactions(60)
    zombie.begin_transaction()
    for index in range(6):
        zombie.produce(topic, key=f"zombie-{index}", value="zombie", partition=index % PARTITIONS)
    zombie.flush(60)

    successor = transactional_producer(transactional_id)
    successor.init_transactions(60)
    fenced = None
    try:
        zombie.produce(topic, key="zombie-late", value="zombie", partition=0)
        zombie.commit_transaction(60)
    except KafkaException as error:
        fenced = error.args[0]
    check("the zombie producer cannot commit after a successor with its transactional.id initialized",
          fenced is not None, "its commit succeeded")
    if fenced is not None:
        print(f"  the zombie failed with {fenced.name()} (fatal: {fenced.fatal()}): {fenced.str()}", flush=True)
        check("the zombie's error is fencing (fatal _FENCED / PRODUCER_FENCED or INVALID_PRODUCER_EPOCH)",
              fenced.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH),
              fenced.name())
    successor.begin_transaction()
    keys = [f"successor-{index}" for index in range(6)]
    for index, key in enumerate(keys):
        successor.produce(topic, key=key, value="successor", partition=index % PARTITIONS)
    successor.commit_transaction(60)
    compare("read_committed after fencing: only the successor's records", keys, read_to_end(topic, "read_committed"))
    late = [key for key, _, _, _ in read_to_end(topic, "read_uncommitted") if key == "zombie-late"]
    check("the fenced zombie's late record was not written", not late)


def consume_transform_produce():
    step("consume-transform-produce")
    source, target, group = f"ctp-input-{RUN_ID}", f"ctp-output-{RUN_ID}", f"ctp-group-{RUN_ID}"
    create_topic(source)
    create_topic(target)
    producer = transactional_producer(f"tx-input-{RUN_ID}")
    producer.init_transactions(60)
    input_keys = []
    for transaction in range(16):
        abort = transaction % 4 == 3
        producer.begin_transaction()
        for index in range(20):
            key = f"in-{transaction}-{index}"
            producer.produce(source, key=key, value=key, partition=index % PARTITIONS)
            if not abort:
                input_keys.append(key)
        if abort:
            producer.flush(60)
            producer.abort_transaction(60)
        else:
            producer.commit_transaction(60)
    ends = end_offsets(source, IsolationLevel.READ_COMMITTED)
    print(f"  input: {len(input_keys)} committed records (and 80 aborted), ends {ends}", flush=True)

    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    processor = transactional_producer(f"tx-ctp-{RUN_ID}")
    processor.init_transactions(60)
    consumer.subscribe([source])
    batch = 0
    processed = set()
    given_again = []
    last_offsets = {}
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            positions = {tp.partition: tp.offset for tp in consumer.position(
                [TopicPartition(source, p) for p in range(PARTITIONS)])}
            if all(positions.get(p, -1) >= ends[p] for p in range(PARTITIONS)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the processor did not reach the input's end within {DEADLINE_S} s: {positions}")
            messages = [m for m in consumer.consume(40, 0.5) if not m.error()]
            if not messages:
                continue
            batch += 1
            offsets = {}
            processor.begin_transaction()
            for message in messages:
                processor.produce(target, key=message.key(), value=b"out:" + message.value(), partition=message.partition())
                offsets[message.partition()] = message.offset() + 1
            processor.send_offsets_to_transaction(
                [TopicPartition(source, p, o) for p, o in offsets.items()], consumer.consumer_group_metadata(), 60)
            if batch == 3:
                processor.flush(60)
                processor.abort_transaction(60)
                committed_offsets = consumer.committed([TopicPartition(source, p) for p in range(PARTITIONS)], 60)
                for tp in committed_offsets:
                    consumer.seek(TopicPartition(source, tp.partition, tp.offset if tp.offset >= 0 else 0))
                print(f"  batch 3 ({len(messages)} records) aborted; the consumer rewound to its committed offsets",
                      flush=True)
                continue
            processor.commit_transaction(60)
            for message in messages:
                key = message.key().decode()
                if key in processed:
                    given_again.append(key)
                processed.add(key)
                last_offsets[message.partition()] = message.offset()
    finally:
        consumer.close()
    check("the consumer was never given a record a committed transaction had consumed", not given_again,
          f"given again: {given_again[:5]}")
    records = read_to_end(target, "read_committed")
    compare("output read_committed: every committed input record once", input_keys, records)
    uncommitted = read_to_end(target, "read_uncommitted")
    check("output read_uncommitted also sees the aborted batch", len(uncommitted) > len(records),
          f"{len(uncommitted)} records, read_committed {len(records)}")
    futures = admin().list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])
    committed = {tp.partition: tp.offset for tp in futures[group].result(60).topic_partitions if tp.topic == source}
    expected = {p: offset + 1 for p, offset in last_offsets.items()}
    check("the group's offsets are those committed in transactions", committed == expected,
          f"committed {committed}, expected {expected}")


def main():
    if not BOOTSTRAP:
        print("error: set KAFKA_BOOTSTRAP to the broker's Kafka listener, HOST:PORT", file=sys.stderr)
        return 2
    print(f"confluent-kafka {version()[0]}, librdkafka {libversion()[0]}, against {BOOTSTRAP}", flush=True)
    for test in (commit_abort, zombie_fenced, consume_transform_produce):
        try:
            test()
        except Exception as error:  # a failure stops this test, the next one still runs
            check(f"{test.__name__} ran to its end", False, repr(error))
    step("done")
    if failures:
        print(f"confluent-kafka-transactions: {len(failures)} check(s) failed", flush=True)
        return 1
    print("confluent-kafka-transactions: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

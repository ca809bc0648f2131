"""confluent-kafka (librdkafka): admin create/describe/list offsets/delete, keyed idempotent
produce once per codec, a group consume with commits. Usage: confluent_client.py BOOTSTRAP"""

import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

bootstrap = sys.argv[1]
topic = "corpus-confluent"
admin = AdminClient({"bootstrap.servers": bootstrap})
for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
    future.result()
for future in admin.describe_configs([ConfigResource("topic", topic)]).values():
    future.result()
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "compression.type": codec})
    for index in range(3):
        producer.produce(topic, key=f"k{index}", value=f"{codec}-{index}")
    producer.flush(10)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "corpus-confluent-group",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe([topic])
received = 0
for _ in range(40):
    message = consumer.poll(0.5)
    if message is not None and message.error() is None:
        received += 1
        consumer.commit(message=message, asynchronous=False)
    if received >= 15:
        break
consumer.close()
offsets = {TopicPartition(topic, 0): OffsetSpec.latest(), TopicPartition(topic, 1): OffsetSpec.earliest()}
for future in admin.list_offsets(offsets).values():
    future.result()
for future in admin.delete_topics([topic]).values():
    future.result()
print(f"confluent-kafka: consumed {received} records")

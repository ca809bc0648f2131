"""kafka-python: admin calls (create, describe configs/cluster/topics/log dirs, create partitions,
delete records, groups, offsets, delete), keyed produce (acks=all) with each codec it has
libraries for, a group consume with commits, offsets by time and end offsets.
Usage: kafka_python_client.py BOOTSTRAP"""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

bootstrap = sys.argv[1]
topic = "corpus-kafka-python"
group = "corpus-kafka-python-group"
admin = KafkaAdminClient(bootstrap_servers=bootstrap)


def attempt(name, call):
    """An admin call whose failure (an API this kafka-python lacks) does not end the run."""
    try:
        call()
    except Exception as error:
        print(f"kafka-python: {name} failed: {error!r}")


admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
attempt("describe_configs", lambda: admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
attempt("describe_cluster", admin.describe_cluster)
attempt("describe_topics", lambda: admin.describe_topics([topic]))
attempt("describe_topic_partitions", lambda: admin.describe_topic_partitions([topic]))
attempt("create_partitions", lambda: admin.create_partitions({topic: NewPartitions(3)}))
for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec)
    except Exception as error:  # the codec's library is missing
        print(f"kafka-python: skipping {codec}: {error}")
        continue
    for index in range(3):
        producer.send(topic, key=f"k{index}".encode(), value=f"{codec}-{index}".encode())
    producer.flush()
    producer.close()
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=5000)
records = list(consumer)
consumer.commit()
partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
consumer.end_offsets(partitions)
consumer.offsets_for_times({partition: int(time.time() * 1000) - 60_000 for partition in partitions})
consumer.close()
attempt("list_groups", admin.list_groups)
attempt("describe_groups", lambda: admin.describe_groups([group]))
attempt("list_group_offsets", lambda: admin.list_group_offsets({group: None}))
attempt("delete_records", lambda: admin.delete_records({TopicPartition(topic, 0): 1}))
attempt("describe_log_dirs", admin.describe_log_dirs)
attempt("delete_groups", lambda: admin.delete_groups([group]))
admin.delete_topics([topic])
admin.close()
print(f"kafka-python: consumed {len(records)} records")

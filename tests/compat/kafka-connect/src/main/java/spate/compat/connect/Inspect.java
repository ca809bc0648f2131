// Prints, for each topic named, what run.sh checks of Kafka Connect's internal topics: its
// cleanup.policy (DescribeConfigs) and whether the broker compacted it. Connect writes these topics
// without transactions, so their offsets are contiguous until something removes records: fewer
// records readable than offsets between the log start and the end means compaction removed some.
// One line per topic: TOPIC POLICY RECORDS START END KEYS
//
//   Inspect BOOTSTRAP TOPIC...
package spate.compat.connect;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Bytes;

public final class Inspect {
  private Inspect() {}

  public static void main(String[] arguments) throws Exception {
    String bootstrap = arguments[0];
    Properties adminConfig = new Properties();
    adminConfig.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    Properties consumerConfig = new Properties();
    consumerConfig.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    consumerConfig.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    try (Admin admin = Admin.create(adminConfig);
        KafkaConsumer<byte[], byte[]> consumer =
            new KafkaConsumer<>(consumerConfig, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      for (int index = 1; index < arguments.length; index++) {
        String topic = arguments[index];
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = admin.describeConfigs(List.of(resource)).all().get(60, TimeUnit.SECONDS).get(resource);
        String policy = config.get("cleanup.policy") == null ? "none" : config.get("cleanup.policy").value();

        List<TopicPartition> partitions = new ArrayList<>();
        consumer.partitionsFor(topic, Duration.ofSeconds(60))
            .forEach(info -> partitions.add(new TopicPartition(topic, info.partition())));
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        Map<TopicPartition, Long> starts = consumer.beginningOffsets(partitions, Duration.ofSeconds(60));
        Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, Duration.ofSeconds(60));
        long records = 0;
        Set<Bytes> keys = new HashSet<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!reached(consumer, ends) && System.nanoTime() < deadline) {
          for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
            records++;
            keys.add(record.key() == null ? Bytes.wrap(new byte[0]) : Bytes.wrap(record.key()));
          }
        }
        long start = starts.values().stream().mapToLong(Long::longValue).sum();
        long end = ends.values().stream().mapToLong(Long::longValue).sum();
        System.out.println(topic + " " + policy + " " + records + " " + start + " " + end + " " + keys.size());
      }
    }
  }

  static boolean reached(KafkaConsumer<?, ?> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (consumer.position(end.getKey()) < end.getValue()) {
        return false;
      }
    }
    return true;
  }
}

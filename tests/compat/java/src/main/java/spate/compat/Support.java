// Shared pieces of the Java compatibility programs: client configs, a producer that records
// what each send callback acknowledged, exact record comparison, and deadline-bounded waits.
package spate.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

final class Support {
  private Support() {}

  /** Every wait for the broker is bounded by this (a debug broker on a busy 2-core machine). */
  static final Duration WAIT = Duration.ofSeconds(90);

  /** A check that did not hold: the test stops with this message. */
  static final class CheckFailed extends RuntimeException {
    private static final long serialVersionUID = 1L;

    CheckFailed(String message) {
      super(message);
    }
  }

  static void check(boolean condition, String message) {
    if (!condition) {
      throw new CheckFailed(message);
    }
  }

  static void log(String message) {
    System.out.println("  " + message);
    System.out.flush();
  }

  static String unique(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static byte[] utf8(String text) {
    return text == null ? null : text.getBytes(StandardCharsets.UTF_8);
  }

  static String show(byte[] bytes) {
    if (bytes == null) {
      return "null";
    }
    String text = new String(bytes, StandardCharsets.UTF_8);
    return text.length() > 60 ? "\"" + text.substring(0, 60) + "...\"(" + bytes.length + " B)" : "\"" + text + "\"";
  }

  /** Waits until `condition` holds, polling; fails with `what` after `WAIT`. */
  static void waitUntil(String what, BooleanSupplier condition) throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new CheckFailed("timed out after " + WAIT.toSeconds() + " s waiting for " + what);
      }
      Thread.sleep(100);
    }
  }

  static Properties adminConfig(String bootstrap) {
    Properties config = new Properties();
    config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-java-admin");
    return config;
  }

  static Admin admin(String bootstrap) {
    return Admin.create(adminConfig(bootstrap));
  }

  /** The producer's defaults (idempotent, acks=all since Kafka 3.0) plus `overrides`. */
  static KafkaProducer<byte[], byte[]> producer(String bootstrap, Map<String, Object> overrides) {
    Properties config = new Properties();
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ProducerConfig.CLIENT_ID_CONFIG, "compat-java-producer");
    config.putAll(overrides);
    return new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
  }

  static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String groupId, Map<String, Object> overrides) {
    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-java-consumer");
    if (groupId != null) {
      config.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
    }
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    config.putAll(overrides);
    return new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
  }

  /** A header as sent and as it must come back (value may be null in Kafka). */
  record SentHeader(String key, byte[] value) {
    boolean sameAs(Header header) {
      return key.equals(header.key()) && Arrays.equals(value, header.value());
    }

    @Override
    public String toString() {
      return key + "=" + show(value);
    }
  }

  /** One record the broker acknowledged: what was sent and where the broker said it put it. */
  record Sent(String topic, int partition, long offset, long timestamp, byte[] key, byte[] value,
      List<SentHeader> headers) {
    TopicPartition topicPartition() {
      return new TopicPartition(topic, partition);
    }

    String where() {
      return topic + "/" + partition + "@" + offset;
    }
  }

  static ProducerRecord<byte[], byte[]> record(String topic, Integer partition, Long timestamp, byte[] key,
      byte[] value, List<SentHeader> headers) {
    List<Header> kafkaHeaders = new ArrayList<>();
    for (SentHeader header : headers) {
      kafkaHeaders.add(new RecordHeader(header.key(), header.value()));
    }
    return new ProducerRecord<>(topic, partition, timestamp, key, value, kafkaHeaders);
  }

  static List<SentHeader> headersOf(ProducerRecord<byte[], byte[]> record) {
    List<SentHeader> headers = new ArrayList<>();
    for (Header header : record.headers()) {
      headers.add(new SentHeader(header.key(), header.value()));
    }
    return headers;
  }

  /**
   * Sends every record, flushes, and returns what the broker acknowledged, in send order. Any
   * failed send fails the check (a fresh topic on a healthy broker must take every record).
   */
  static List<Sent> produceAll(KafkaProducer<byte[], byte[]> producer, List<ProducerRecord<byte[], byte[]>> records)
      throws InterruptedException {
    int count = records.size();
    Sent[] acknowledged = new Sent[count];
    AtomicReference<Exception> firstError = new AtomicReference<>();
    CountDownLatch answered = new CountDownLatch(count);
    for (int index = 0; index < count; index++) {
      ProducerRecord<byte[], byte[]> record = records.get(index);
      int slot = index;
      producer.send(record, (metadata, error) -> {
        if (error != null) {
          firstError.compareAndSet(null, error);
        } else {
          long timestamp = record.timestamp() != null ? record.timestamp() : metadata.timestamp();
          acknowledged[slot] = new Sent(record.topic(), metadata.partition(), metadata.offset(), timestamp,
              record.key(), record.value(), headersOf(record));
        }
        answered.countDown();
      });
    }
    producer.flush();
    check(answered.await(WAIT.toSeconds(), TimeUnit.SECONDS), "not every send was answered within " + WAIT);
    if (firstError.get() != null) {
      throw new CheckFailed("a send failed: " + firstError.get());
    }
    List<Sent> result = new ArrayList<>(Arrays.asList(acknowledged));
    for (Sent sent : result) {
      check(sent.offset() >= 0, "acknowledged offset " + sent.offset() + " for " + sent.where()
          + " (an idempotent producer with acks=all must get a real offset)");
    }
    return result;
  }

  /** Per partition, the acknowledged offsets are 0..n-1 without gaps or repeats. */
  static Map<TopicPartition, Long> checkContiguous(String what, Collection<Sent> sent, long startOffset) {
    Map<TopicPartition, List<Long>> offsets = new HashMap<>();
    for (Sent record : sent) {
      offsets.computeIfAbsent(record.topicPartition(), ignored -> new ArrayList<>()).add(record.offset());
    }
    Map<TopicPartition, Long> ends = new HashMap<>();
    for (Map.Entry<TopicPartition, List<Long>> entry : offsets.entrySet()) {
      List<Long> list = entry.getValue();
      list.sort(null);
      for (int index = 0; index < list.size(); index++) {
        long expected = startOffset + index;
        check(list.get(index) == expected, what + ": offsets of " + entry.getKey() + " are not contiguous: "
            + "position " + index + " has offset " + list.get(index) + ", expected " + expected);
      }
      ends.put(entry.getKey(), startOffset + list.size());
    }
    return ends;
  }

  /**
   * Every expected record came back exactly once with the same partition, offset, timestamp,
   * key, value and headers, and nothing else came back. Reports up to 10 differences.
   */
  static void compareExactly(String what, Collection<Sent> expected, Collection<ConsumerRecord<byte[], byte[]>> got) {
    Map<String, Sent> wanted = new TreeMap<>();
    for (Sent sent : expected) {
      Sent previous = wanted.put(sent.where(), sent);
      check(previous == null, what + ": the broker acknowledged two records at " + sent.where());
    }
    List<String> problems = new ArrayList<>();
    Map<String, ConsumerRecord<byte[], byte[]>> seen = new HashMap<>();
    for (ConsumerRecord<byte[], byte[]> record : got) {
      String where = record.topic() + "/" + record.partition() + "@" + record.offset();
      if (seen.put(where, record) != null) {
        problems.add("delivered twice: " + where);
        continue;
      }
      Sent sent = wanted.get(where);
      if (sent == null) {
        problems.add("delivered but never acknowledged: " + where + " key=" + show(record.key()));
        continue;
      }
      String difference = difference(sent, record);
      if (difference != null) {
        problems.add(where + ": " + difference);
      }
    }
    for (String where : wanted.keySet()) {
      if (!seen.containsKey(where)) {
        problems.add("acknowledged but never delivered: " + where);
      }
    }
    if (!problems.isEmpty()) {
      StringBuilder message = new StringBuilder(what + ": " + problems.size() + " differences (expected "
          + expected.size() + " records, got " + got.size() + ")");
      for (String problem : problems.subList(0, Math.min(10, problems.size()))) {
        message.append("\n      ").append(problem);
      }
      throw new CheckFailed(message.toString());
    }
  }

  /** What differs between a sent record and the delivered one, or null. */
  static String difference(Sent sent, ConsumerRecord<byte[], byte[]> record) {
    if (!Arrays.equals(sent.key(), record.key())) {
      return "key " + show(record.key()) + ", sent " + show(sent.key());
    }
    if (!Arrays.equals(sent.value(), record.value())) {
      return "value " + show(record.value()) + ", sent " + show(sent.value());
    }
    if (sent.timestamp() != record.timestamp()) {
      return "timestamp " + record.timestamp() + " (" + record.timestampType() + "), sent " + sent.timestamp();
    }
    Header[] headers = record.headers().toArray();
    boolean same = headers.length == sent.headers().size();
    for (int index = 0; same && index < headers.length; index++) {
      same = sent.headers().get(index).sameAs(headers[index]);
    }
    if (!same) {
      List<String> shown = new ArrayList<>();
      for (Header header : headers) {
        shown.add(header.key() + "=" + show(header.value()));
      }
      return "headers " + shown + ", sent " + sent.headers();
    }
    return null;
  }

  /**
   * Reads every partition of `topic` from `from` (per partition) up to its end offset at the
   * time of the call, without a group; checks per-partition order.
   */
  static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic, Map<TopicPartition, Long> from)
      throws InterruptedException {
    try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, null, Map.of())) {
      List<TopicPartition> partitions = new ArrayList<>();
      consumer.partitionsFor(topic, WAIT).forEach(info -> partitions.add(new TopicPartition(topic, info.partition())));
      consumer.assign(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, WAIT);
      for (TopicPartition partition : partitions) {
        long start = from == null ? 0 : from.getOrDefault(partition, 0L);
        consumer.seek(partition, start);
      }
      List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
      Map<TopicPartition, Long> last = new HashMap<>();
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!reachedEnds(consumer, ends)) {
        check(System.nanoTime() < deadline, "reading " + topic + " did not reach the end offsets " + ends
            + " within " + WAIT + " (read " + records.size() + ")");
        for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
          TopicPartition partition = new TopicPartition(record.topic(), record.partition());
          Long previous = last.put(partition, record.offset());
          check(previous == null || record.offset() > previous, "out of order in " + partition + ": offset "
              + record.offset() + " after " + previous);
          records.add(record);
        }
      }
      return records;
    }
  }

  private static boolean reachedEnds(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (consumer.position(end.getKey(), WAIT) < end.getValue()) {
        return false;
      }
    }
    return true;
  }

  static boolean sameSet(Set<?> a, Set<?> b) {
    return Objects.equals(a, b);
  }
}

// Across protocols: the Java producer writes (every codec) and the native `spate consume` reads
// every record back exactly; the native `spate produce` writes and the Java consumer checks
// every record. Needs $SPATE_BIN (the spate tool) and $SPATE_BROKER (the native listener).
package spate.compat;

import static spate.compat.Support.WAIT;
import static spate.compat.Support.check;
import static spate.compat.Support.log;
import static spate.compat.Support.utf8;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.time.Duration;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.utils.Utils;

final class CrossProtocol {
  private CrossProtocol() {}

  static final int PARTITIONS = 3;

  static String requireEnv(String name, String what) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new Support.CheckFailed("this test needs $" + name + " (" + what + "); tests/compat/run-all.sh sets it");
    }
    return value;
  }

  /** Runs the spate tool; returns its stdout; fails on a non-zero exit or after `WAIT`. */
  static String spate(List<String> arguments, String stdin) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(requireEnv("SPATE_BIN", "the spate tool"));
    command.add("--broker");
    command.add(requireEnv("SPATE_BROKER", "the broker's native listener, HOST:PORT"));
    command.addAll(arguments);
    File output = File.createTempFile("compat-java-spate", ".out");
    File errors = File.createTempFile("compat-java-spate", ".err");
    try {
      ProcessBuilder builder = new ProcessBuilder(command).redirectOutput(output).redirectError(errors);
      Process process = builder.start();
      if (stdin != null) {
        process.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
      }
      process.getOutputStream().close();
      if (!process.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS)) {
        process.destroyForcibly();
        throw new Support.CheckFailed(String.join(" ", command) + " did not finish within " + WAIT);
      }
      String error = Files.readString(errors.toPath());
      check(process.exitValue() == 0, String.join(" ", command) + " exited " + process.exitValue() + ": " + error);
      return Files.readString(output.toPath());
    } finally {
      output.delete();
      errors.delete();
    }
  }

  /** Java writes with each codec; `spate consume --json` must give back every record exactly. */
  static void nativeReadsJava(String bootstrap) throws Exception {
    String topic = Support.unique("compat-j2n");
    long baseTimestamp = System.currentTimeMillis() - 60_000;
    List<Support.Sent> sent = new ArrayList<>();
    // Created through the native protocol: one topic to both protocols.
    spate(List.of("topic", "create", topic, "--partitions", String.valueOf(PARTITIONS)), null);
    int index = 0;
    for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
      List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
      for (int count = 0; count < 150; count++, index++) {
        byte[] value = index % 37 == 0 ? null : utf8(codec + "-" + index + " " + "payload ".repeat(index % 9));
        // Native header values are bytes, never null: the cross test sends no null header value.
        List<Support.SentHeader> headers = List.of(new Support.SentHeader("codec", utf8(codec)),
            new Support.SentHeader("bytes", new byte[] {0, (byte) 255, (byte) index}));
        records.add(Support.record(topic, null, baseTimestamp + index, utf8("key-" + index % 23), value, headers));
      }
      try (KafkaProducer<byte[], byte[]> producer =
          Support.producer(bootstrap, Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec))) {
        sent.addAll(Support.produceAll(producer, records));
      }
    }
    Support.checkContiguous("produced", sent, 0);

    String lines = spate(List.of("consume", topic, "--from-beginning", "--exit-at-end", "--json",
        "--encoding", "base64"), null);
    compareNative("spate consume of Java-written records", sent, lines);
    log("spate consume read all " + sent.size() + " Java-written records (none, gzip, snappy, lz4, zstd) exactly");
  }

  /** `spate consume --json --encoding base64` output holds exactly the expected records. */
  static void compareNative(String what, List<Support.Sent> sent, String lines) throws Exception {
    ObjectMapper json = new ObjectMapper();
    Map<String, JsonNode> byPlace = new HashMap<>();
    int count = 0;
    for (String line : lines.split("\n")) {
      if (line.isBlank()) {
        continue;
      }
      count++;
      JsonNode record = json.readTree(line);
      String where = record.get("topic").asText() + "/" + record.get("partition").asInt() + "@" + record.get("offset").asLong();
      check(byPlace.put(where, record) == null, what + ": " + where + " printed twice");
    }
    List<String> problems = new ArrayList<>();
    for (Support.Sent expected : sent) {
      JsonNode record = byPlace.remove(expected.where());
      if (record == null) {
        problems.add("missing " + expected.where());
        continue;
      }
      String difference = nativeDifference(expected, record);
      if (difference != null) {
        problems.add(expected.where() + ": " + difference);
      }
    }
    for (String extra : byPlace.keySet()) {
      problems.add("not expected: " + extra);
    }
    if (!problems.isEmpty()) {
      throw new Support.CheckFailed(what + ": " + problems.size() + " differences (" + count + " lines, "
          + sent.size() + " expected): " + problems.subList(0, Math.min(10, problems.size())));
    }
  }

  /** Keyed records with headers, explicit increasing timestamps, the client's defaults. */
  static List<Support.Sent> produceKeyed(String bootstrap, String topic, String run, int first, int count)
      throws Exception {
    long baseTimestamp = System.currentTimeMillis() - 60_000;
    List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
    for (int index = first; index < first + count; index++) {
      List<Support.SentHeader> headers = List.of(new Support.SentHeader("run", utf8(run)));
      records.add(Support.record(topic, null, baseTimestamp + index, utf8("key-" + index % 17),
          utf8(run + "-" + index), headers));
    }
    try (KafkaProducer<byte[], byte[]> producer = Support.producer(bootstrap, Map.of())) {
      return Support.produceAll(producer, records);
    }
  }

  /**
   * One group, one set of committed offsets, whichever protocol committed them: a native group
   * member reads and commits, a Java member resumes there and commits, a native member resumes
   * at the Java commit.
   */
  static void groupAcrossProtocols(String bootstrap) throws Exception {
    String topic = Support.unique("compat-group-x");
    String group = Support.unique("compat-group-x");
    spate(List.of("topic", "create", topic, "--partitions", String.valueOf(PARTITIONS)), null);
    try (Admin admin = Support.admin(bootstrap)) {
      List<Support.Sent> first = produceKeyed(bootstrap, topic, "first", 0, 300);
      Map<TopicPartition, Long> ends = Support.checkContiguous("produced", first, 0);
      String lines = spate(List.of("consume", topic, "--group", group, "--from-beginning", "--exit-at-end", "--json",
          "--encoding", "base64"), null);
      compareNative("a native group member", first, lines);
      Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
          .partitionsToOffsetAndMetadata().get(WAIT.toSeconds(), TimeUnit.SECONDS);
      for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
        OffsetAndMetadata offset = committed.get(end.getKey());
        check(offset != null && offset.offset() == end.getValue(), "after the native member, the Kafka OffsetFetch of "
            + end.getKey() + " gives " + offset + ", expected " + end.getValue());
      }
      log("a native member of " + group + " read all 300 records; Kafka's OffsetFetch shows its commits");

      List<Support.Sent> second = produceKeyed(bootstrap, topic, "second", 300, 60);
      List<ConsumerRecord<byte[], byte[]>> resumed = new ArrayList<>();
      try (KafkaConsumer<byte[], byte[]> consumer = Support.consumer(bootstrap, group, Map.of())) {
        consumer.subscribe(List.of(topic));
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (resumed.size() < second.size()) {
          check(System.nanoTime() < deadline, "the Java member read " + resumed.size() + " of " + second.size());
          consumer.poll(Duration.ofMillis(200)).forEach(resumed::add);
        }
        consumer.poll(Duration.ofMillis(500)).forEach(resumed::add);
        consumer.commitSync();
      }
      Support.compareExactly("a Java member after the native member's commits", second, resumed);
      log("a Java member resumed at the native commits: exactly the 60 new records; it committed");

      List<Support.Sent> third = produceKeyed(bootstrap, topic, "third", 360, 40);
      String after = spate(List.of("consume", topic, "--group", group, "--exit-at-end", "--json", "--encoding",
          "base64"), null);
      compareNative("a native member after the Java member's commits", third, after);
      log("a native member resumed at the Java commits: exactly the 40 newest records");
    }
  }

  private static byte[] decoded(JsonNode node) {
    return node == null || node.isNull() ? null : Base64.getDecoder().decode(node.asText());
  }

  private static String nativeDifference(Support.Sent expected, JsonNode record) {
    if (record.get("timestamp").asLong() != expected.timestamp()) {
      return "timestamp " + record.get("timestamp") + ", sent " + expected.timestamp();
    }
    if (!Arrays.equals(decoded(record.get("key")), expected.key())) {
      return "key " + record.get("key") + ", sent " + Support.show(expected.key());
    }
    if (!Arrays.equals(decoded(record.get("value")), expected.value())) {
      return "value " + record.get("value") + ", sent " + Support.show(expected.value());
    }
    JsonNode headers = record.get("headers");
    boolean same = headers != null && headers.size() == expected.headers().size();
    for (int index = 0; same && index < headers.size(); index++) {
      Support.SentHeader header = expected.headers().get(index);
      same = header.key().equals(headers.get(index).get(0).asText())
          && Arrays.equals(header.value(), decoded(headers.get(index).get(1)));
    }
    return same ? null : "headers " + headers + ", sent " + expected.headers();
  }

  /** `spate produce` writes keyed lines with a header; the Java consumer checks each record. */
  static void javaReadsNative(String bootstrap) throws Exception {
    String topic = Support.unique("compat-n2j");
    int count = 500;
    int keys = 40;
    spate(List.of("topic", "create", topic, "--partitions", String.valueOf(PARTITIONS)), null);
    long started = System.currentTimeMillis();
    StringBuilder input = new StringBuilder();
    for (int index = 0; index < count; index++) {
      input.append("key-").append(index % keys).append('\t').append("native-value-").append(index).append('\n');
    }
    spate(List.of("produce", topic, "--key-separator", "\\t", "--header", "source=native"), input.toString());
    long finished = System.currentTimeMillis();

    List<ConsumerRecord<byte[], byte[]>> records = Support.readAll(bootstrap, topic, null);
    check(records.size() == count, "the Java consumer read " + records.size() + " records, spate produce wrote " + count);
    boolean[] seen = new boolean[count];
    Map<String, Integer> lastIndexOfKey = new HashMap<>();
    Map<TopicPartition, Long> nextOffset = new HashMap<>();
    for (ConsumerRecord<byte[], byte[]> record : records) {
      String where = record.topic() + "/" + record.partition() + "@" + record.offset();
      String value = new String(record.value(), StandardCharsets.UTF_8);
      check(value.startsWith("native-value-"), where + ": value " + value);
      int index = Integer.parseInt(value.substring("native-value-".length()));
      check(index >= 0 && index < count && !seen[index], where + ": record " + index + " delivered twice or unknown");
      seen[index] = true;
      String key = new String(record.key(), StandardCharsets.UTF_8);
      check(key.equals("key-" + index % keys), where + ": key " + key + " with value " + value);
      int expectedPartition = Utils.toPositive(Utils.murmur2(record.key())) % PARTITIONS;
      check(record.partition() == expectedPartition, where + ": key " + key + " is in partition " + record.partition()
          + ", Kafka's murmur2 partitioner puts it in " + expectedPartition);
      Integer previous = lastIndexOfKey.put(key, index);
      check(previous == null || previous < index, where + ": key " + key + " record " + index + " after " + previous);
      TopicPartition partition = new TopicPartition(record.topic(), record.partition());
      long expectedOffset = nextOffset.getOrDefault(partition, 0L);
      check(record.offset() == expectedOffset, where + ": expected offset " + expectedOffset + " (contiguous from 0)");
      nextOffset.put(partition, expectedOffset + 1);
      Header[] headers = record.headers().toArray();
      check(headers.length == 1 && headers[0].key().equals("source")
          && Arrays.equals(headers[0].value(), utf8("native")), where + ": headers " + Arrays.toString(headers));
      check(record.timestamp() >= started - 5_000 && record.timestamp() <= finished + 5_000,
          where + ": timestamp " + record.timestamp() + " is outside the produce run [" + started + ", " + finished + "]");
    }
    log("the Java consumer read all " + count + " records written by spate produce: keys, values, header, "
        + "murmur2 partitions, per-key order, contiguous offsets, timestamps");
  }
}

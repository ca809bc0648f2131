// Kafka transactions with the Java client (kafka-clients 4.1.1) against $KAFKA_BOOTSTRAP:
// committed and aborted transactions mixed, read back with read_committed (every committed record
// exactly once, in order, no aborted one) and read_uncommitted (both); the last stable offset
// while a transaction is open; a zombie producer fenced by a new one with the same
// transactional.id; consume-transform-produce with sendOffsetsToTransaction(groupMetadata), an
// aborted batch and a processor that dies with its transaction open. Prints one PASS/FAIL line per
// test and exits 0 only if all passed.
package spate.compat.txn;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Transactions {
  private Transactions() {}

  /** Every wait for the broker is bounded by this (a debug broker on a busy 2-core machine). */
  static final Duration WAIT = Duration.ofSeconds(90);

  static final int PARTITIONS = 3;

  static final class CheckFailed extends RuntimeException {
    private static final long serialVersionUID = 1L;

    CheckFailed(String message) {
      super(message);
    }
  }

  interface Test {
    void run(String bootstrap) throws Exception;
  }

  public static void main(String[] arguments) {
    Map<String, Test> tests = new LinkedHashMap<>();
    tests.put("commit-abort", Transactions::commitAbort);
    tests.put("zombie-fenced", Transactions::zombieFenced);
    tests.put("consume-transform-produce", Transactions::consumeTransformProduce);
    String bootstrap = System.getenv("KAFKA_BOOTSTRAP");
    if (bootstrap == null || bootstrap.isEmpty()) {
      System.err.println("error: set KAFKA_BOOTSTRAP to the broker's Kafka listener, HOST:PORT");
      System.exit(2);
    }
    List<String> chosen = arguments.length == 0 ? new ArrayList<>(tests.keySet()) : List.of(arguments);
    int failed = 0;
    for (String name : chosen) {
      Test test = tests.get(name);
      if (test == null) {
        System.err.println("error: unknown test " + name + "; the tests are " + tests.keySet());
        System.exit(2);
      }
      System.out.println("== " + name);
      long started = System.nanoTime();
      String outcome = "PASS";
      try {
        test.run(bootstrap);
      } catch (CheckFailed failure) {
        failed++;
        outcome = "FAIL";
        System.out.println("  FAILED: " + failure.getMessage());
      } catch (Throwable error) {
        failed++;
        outcome = "FAIL";
        System.out.println("  FAILED with an exception:");
        error.printStackTrace(System.out);
      }
      System.out.printf("%s %s (%.1f s)%n", outcome, name, (System.nanoTime() - started) / 1e9);
      System.out.flush();
    }
    System.out.println((chosen.size() - failed) + " passed, " + failed + " failed");
    System.out.flush();
    System.exit(failed == 0 ? 0 : 1);
  }

  // ---- the tests

  /**
   * 30 transactions of 12 records over 3 partitions, every third aborted; the 16th is held open
   * while the read_committed end offsets are checked against the last stable offset.
   */
  static void commitAbort(String bootstrap) throws Exception {
    String topic = unique("txn-commit-abort");
    createTopic(bootstrap, topic);
    List<String> committed = new ArrayList<>();
    List<String> aborted = new ArrayList<>();
    try (KafkaProducer<String, String> producer = transactionalProducer(bootstrap, unique("tx"))) {
      producer.initTransactions();
      for (int transaction = 0; transaction < 30; transaction++) {
        boolean abort = transaction % 3 == 2;
        producer.beginTransaction();
        List<Future<RecordMetadata>> sends = new ArrayList<>();
        List<String> keys = new ArrayList<>();
        for (int index = 0; index < 12; index++) {
          String key = "t" + transaction + "-r" + index;
          keys.add(key);
          sends.add(producer.send(new ProducerRecord<>(topic, index % PARTITIONS, key, valueOf(key, abort))));
        }
        if (transaction == 15) {
          checkLastStableOffset(bootstrap, topic, producer, sends);
        }
        if (abort) {
          // Flushed first: an abort discards unsent records in the client, and the broker's abort
          // path is what is under test.
          producer.flush();
          producer.abortTransaction();
          aborted.addAll(keys);
        } else {
          producer.commitTransaction();
          committed.addAll(keys);
          for (Future<RecordMetadata> send : sends) {
            check(send.isDone() && !isFailed(send), "a send of a committed transaction did not succeed");
          }
        }
      }
    }
    log("produced " + committed.size() + " committed and " + aborted.size() + " aborted records in 30 transactions");

    List<ConsumerRecord<String, String>> readCommitted = readToEnd(bootstrap, topic, "read_committed");
    checkExactly("read_committed", committed, readCommitted);
    for (ConsumerRecord<String, String> record : readCommitted) {
      check(record.value().equals(valueOf(record.key(), false)), "read_committed: " + record.key() + " has value " + record.value());
    }
    log("read_committed: all " + committed.size() + " committed records once each, in order, no aborted one");

    List<String> everything = new ArrayList<>(committed);
    everything.addAll(aborted);
    List<ConsumerRecord<String, String>> readUncommitted = readToEnd(bootstrap, topic, "read_uncommitted");
    checkSameSet("read_uncommitted", everything, readUncommitted);
    log("read_uncommitted: all " + everything.size() + " records (committed and aborted) once each");
  }

  /** With a transaction open, the read_committed end of each partition is its first record. */
  static void checkLastStableOffset(
      String bootstrap, String topic, KafkaProducer<String, String> producer, List<Future<RecordMetadata>> sends)
      throws Exception {
    producer.flush();
    Map<TopicPartition, Long> firstOpen = new HashMap<>();
    Map<TopicPartition, Long> lastOpen = new HashMap<>();
    for (Future<RecordMetadata> send : sends) {
      RecordMetadata metadata = send.get();
      TopicPartition partition = new TopicPartition(metadata.topic(), metadata.partition());
      firstOpen.merge(partition, metadata.offset(), Math::min);
      lastOpen.merge(partition, metadata.offset(), Math::max);
    }
    Map<TopicPartition, Long> stable = endOffsets(bootstrap, topic, "read_committed");
    Map<TopicPartition, Long> high = endOffsets(bootstrap, topic, "read_uncommitted");
    for (TopicPartition partition : firstOpen.keySet()) {
      check(stable.get(partition).equals(firstOpen.get(partition)),
          "read_committed end offset of " + partition + " with a transaction open is " + stable.get(partition)
              + ", not the open transaction's first offset " + firstOpen.get(partition) + " (the last stable offset)");
      check(high.get(partition) == lastOpen.get(partition) + 1,
          "read_uncommitted end offset of " + partition + " is " + high.get(partition) + ", not " + (lastOpen.get(partition) + 1));
    }
    log("with a transaction open: read_committed end offsets " + new TreeMap<>(toNames(stable))
        + " (its first offsets), read_uncommitted " + new TreeMap<>(toNames(high)));
  }

  /** A second producer with the same transactional.id fences the first and aborts its transaction. */
  static void zombieFenced(String bootstrap) throws Exception {
    String topic = unique("txn-zombie");
    createTopic(bootstrap, topic);
    String transactionalId = unique("tx-zombie");
    List<String> successorKeys = new ArrayList<>();
    try (KafkaProducer<String, String> zombie = transactionalProducer(bootstrap, transactionalId)) {
      zombie.initTransactions();
      zombie.beginTransaction();
      for (int index = 0; index < 6; index++) {
        zombie.send(new ProducerRecord<>(topic, index % PARTITIONS, "zombie-" + index, "zombie"));
      }
      zombie.flush();
      try (KafkaProducer<String, String> successor = transactionalProducer(bootstrap, transactionalId)) {
        successor.initTransactions();
        log("the successor's initTransactions returned (the zombie's open transaction is aborted)");
        Throwable fenced = null;
        try {
          zombie.send(new ProducerRecord<>(topic, 0, "zombie-late", "zombie")).get();
          zombie.commitTransaction();
        } catch (ExecutionException error) {
          fenced = error.getCause();
        } catch (KafkaException error) {
          fenced = error;
        }
        check(fenced != null, "the zombie producer committed after a successor with its transactional.id initialized");
        check(fenced instanceof ProducerFencedException || fenced instanceof InvalidProducerEpochException,
            "the zombie failed with " + fenced + ", not ProducerFencedException/InvalidProducerEpochException");
        log("the zombie is fenced: " + fenced.getClass().getSimpleName() + ": " + fenced.getMessage());
        successor.beginTransaction();
        for (int index = 0; index < 6; index++) {
          String key = "successor-" + index;
          successorKeys.add(key);
          successor.send(new ProducerRecord<>(topic, index % PARTITIONS, key, "successor"));
        }
        successor.commitTransaction();
      }
    }
    List<ConsumerRecord<String, String>> readCommitted = readToEnd(bootstrap, topic, "read_committed");
    checkSameSet("read_committed after fencing", successorKeys, readCommitted);
    List<ConsumerRecord<String, String>> readUncommitted = readToEnd(bootstrap, topic, "read_uncommitted");
    int zombieRecords = 0;
    for (ConsumerRecord<String, String> record : readUncommitted) {
      if (record.key().startsWith("zombie")) {
        zombieRecords++;
      }
    }
    check(zombieRecords >= 6, "read_uncommitted sees " + zombieRecords + " of the zombie's 6 flushed records");
    check(readUncommitted.stream().noneMatch(record -> record.key().equals("zombie-late")),
        "the fenced zombie's late record was written");
    log("read_committed sees the successor's " + successorKeys.size() + " records and none of the zombie's "
        + zombieRecords + " (read_uncommitted sees them; the late send after fencing was refused)");
  }

  /**
   * Reads an input topic (committed and aborted transactions) with read_committed in a group and
   * writes each record, transformed, to an output topic in transactions that also commit the
   * group's offsets (sendOffsetsToTransaction with the consumer's group metadata). One batch is
   * aborted and re-processed; the first processor then dies with a transaction open (records and
   * offsets sent, no commit), and a second one with the same transactional.id finishes.
   */
  static void consumeTransformProduce(String bootstrap) throws Exception {
    String input = unique("ctp-input");
    String output = unique("ctp-output");
    String group = unique("ctp-group");
    String transactionalId = unique("tx-ctp");
    createTopic(bootstrap, input);
    createTopic(bootstrap, output);

    List<String> inputKeys = new ArrayList<>();
    try (KafkaProducer<String, String> producer = transactionalProducer(bootstrap, unique("tx-input"))) {
      producer.initTransactions();
      for (int transaction = 0; transaction < 20; transaction++) {
        boolean abort = transaction % 4 == 3;
        producer.beginTransaction();
        for (int index = 0; index < 20; index++) {
          String key = "in-" + transaction + "-" + index;
          producer.send(new ProducerRecord<>(input, index % PARTITIONS, key, valueOf(key, abort)));
          if (!abort) {
            inputKeys.add(key);
          }
        }
        if (abort) {
          producer.flush();
          producer.abortTransaction();
        } else {
          producer.commitTransaction();
        }
      }
    }
    Map<TopicPartition, Long> inputEnds = endOffsets(bootstrap, input, "read_committed");
    log("input: " + inputKeys.size() + " committed records (and 100 aborted), ends " + new TreeMap<>(toNames(inputEnds)));

    Map<TopicPartition, Long> lastInputOffset = new HashMap<>();
    Set<String> processed = new HashSet<>();
    int half = inputKeys.size() / 2;
    // The first processor: commits batches until half the input is done, aborting its third
    // batch (and rewinding to the committed offsets), then dies with a transaction open.
    try (KafkaConsumer<String, String> consumer = groupConsumer(bootstrap, group);
        KafkaProducer<String, String> producer = transactionalProducer(bootstrap, transactionalId)) {
      producer.initTransactions();
      consumer.subscribe(List.of(input));
      int batch = 0;
      boolean diedOpen = false;
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!diedOpen) {
        check(System.nanoTime() < deadline, "the first processor made no progress for " + WAIT.toSeconds() + " s");
        ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
        if (records.isEmpty()) {
          continue;
        }
        batch++;
        boolean abort = batch == 3;
        boolean die = !abort && processed.size() >= half;
        producer.beginTransaction();
        Map<TopicPartition, OffsetAndMetadata> offsets = transform(producer, output, records);
        producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
        if (abort) {
          producer.flush();
          producer.abortTransaction();
          rewindToCommitted(consumer);
          log("batch 3 (" + records.count() + " records) aborted; the consumer rewound to its committed offsets");
        } else if (die) {
          producer.flush();
          diedOpen = true;
          log("the first processor dies with batch " + batch + " (" + records.count() + " records and its offsets) sent, not committed");
        } else {
          producer.commitTransaction();
          for (ConsumerRecord<String, String> record : records) {
            processed.add(record.key());
          }
        }
      }
      // A crash: the producer's transaction stays open (close(0) sends no EndTxn).
      producer.close(Duration.ZERO);
    }
    log("the first processor committed " + processed.size() + " records");

    // The second processor: the same transactional.id (initTransactions aborts the open
    // transaction) and the same group (it resumes from the offsets committed in transactions).
    try (KafkaConsumer<String, String> consumer = groupConsumer(bootstrap, group);
        KafkaProducer<String, String> producer = transactionalProducer(bootstrap, transactionalId)) {
      producer.initTransactions();
      consumer.subscribe(List.of(input));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!reachedEnds(consumer, inputEnds)) {
        check(System.nanoTime() < deadline, "the second processor did not reach the input's end within "
            + WAIT.toSeconds() + " s; positions " + positions(consumer) + ", ends " + toNames(inputEnds));
        ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
        if (records.isEmpty()) {
          continue;
        }
        producer.beginTransaction();
        Map<TopicPartition, OffsetAndMetadata> offsets = transform(producer, output, records);
        producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
        producer.commitTransaction();
        for (ConsumerRecord<String, String> record : records) {
          check(processed.add(record.key()), "the second processor was given " + record.key()
              + " again, which a committed transaction had already consumed");
        }
      }
    }
    for (ConsumerRecord<String, String> record : readToEnd(bootstrap, input, "read_committed")) {
      lastInputOffset.merge(new TopicPartition(record.topic(), record.partition()), record.offset(), Math::max);
    }

    List<ConsumerRecord<String, String>> readCommitted = readToEnd(bootstrap, output, "read_committed");
    checkSameSet("output read_committed", inputKeys, readCommitted);
    for (ConsumerRecord<String, String> record : readCommitted) {
      check(record.value().equals("out:" + valueOf(record.key(), false)), "output " + record.key() + " has value " + record.value());
    }
    List<ConsumerRecord<String, String>> readUncommitted = readToEnd(bootstrap, output, "read_uncommitted");
    check(readUncommitted.size() > readCommitted.size(), "read_uncommitted sees " + readUncommitted.size()
        + " output records, not more than read_committed's " + readCommitted.size() + " (the aborted batch and the dead processor's)");
    log("output: every committed input record exactly once (" + readCommitted.size() + ") with read_committed; "
        + (readUncommitted.size() - readCommitted.size()) + " more with read_uncommitted (aborted)");

    Map<TopicPartition, OffsetAndMetadata> committedOffsets;
    try (Admin admin = admin(bootstrap)) {
      committedOffsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
    }
    for (Map.Entry<TopicPartition, Long> last : lastInputOffset.entrySet()) {
      OffsetAndMetadata offset = committedOffsets.get(last.getKey());
      check(offset != null && offset.offset() == last.getValue() + 1, "the group's committed offset of " + last.getKey()
          + " is " + offset + ", not " + (last.getValue() + 1) + " (after its last committed input record)");
    }
    log("the group's offsets, committed only in transactions: " + new TreeMap<>(toNames(committedOffsets)));
  }

  static Map<TopicPartition, OffsetAndMetadata> transform(
      KafkaProducer<String, String> producer, String output, ConsumerRecords<String, String> records) {
    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
    for (ConsumerRecord<String, String> record : records) {
      producer.send(new ProducerRecord<>(output, record.partition(), record.key(), "out:" + record.value()));
      offsets.put(new TopicPartition(record.topic(), record.partition()), new OffsetAndMetadata(record.offset() + 1));
    }
    return offsets;
  }

  static void rewindToCommitted(KafkaConsumer<String, String> consumer) {
    Set<TopicPartition> assigned = consumer.assignment();
    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
    for (TopicPartition partition : assigned) {
      OffsetAndMetadata offset = committed.get(partition);
      if (offset == null) {
        consumer.seekToBeginning(List.of(partition));
      } else {
        consumer.seek(partition, offset.offset());
      }
    }
  }

  // ---- helpers

  static String valueOf(String key, boolean aborted) {
    return (aborted ? "aborted:" : "committed:") + key;
  }

  static boolean isFailed(Future<RecordMetadata> send) {
    try {
      send.get();
      return false;
    } catch (InterruptedException | ExecutionException error) {
      return true;
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

  static Admin admin(String bootstrap) {
    Properties config = new Properties();
    config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    return Admin.create(config);
  }

  static void createTopic(String bootstrap, String topic) throws Exception {
    try (Admin admin = admin(bootstrap)) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
    }
  }

  static KafkaProducer<String, String> transactionalProducer(String bootstrap, String transactionalId) {
    Properties config = new Properties();
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
    config.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60_000);
    config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    return new KafkaProducer<>(config, new StringSerializer(), new StringSerializer());
  }

  static KafkaConsumer<String, String> plainConsumer(String bootstrap, String isolation, String group) {
    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (group != null) {
      config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      config.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 40);
    }
    return new KafkaConsumer<>(config, new StringDeserializer(), new StringDeserializer());
  }

  static KafkaConsumer<String, String> groupConsumer(String bootstrap, String group) {
    return plainConsumer(bootstrap, "read_committed", group);
  }

  static List<TopicPartition> partitionsOf(String topic) {
    List<TopicPartition> partitions = new ArrayList<>();
    for (int partition = 0; partition < PARTITIONS; partition++) {
      partitions.add(new TopicPartition(topic, partition));
    }
    return partitions;
  }

  static Map<TopicPartition, Long> endOffsets(String bootstrap, String topic, String isolation) {
    try (KafkaConsumer<String, String> consumer = plainConsumer(bootstrap, isolation, null)) {
      return consumer.endOffsets(partitionsOf(topic), WAIT);
    }
  }

  /** Every record from the beginning up to the end offsets of `isolation` (the LSO or the HW). */
  static List<ConsumerRecord<String, String>> readToEnd(String bootstrap, String topic, String isolation) {
    try (KafkaConsumer<String, String> consumer = plainConsumer(bootstrap, isolation, null)) {
      List<TopicPartition> partitions = partitionsOf(topic);
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, WAIT);
      List<ConsumerRecord<String, String>> records = new ArrayList<>();
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!reachedEnds(consumer, ends)) {
        check(System.nanoTime() < deadline, isolation + " read of " + topic + " did not reach the ends " + toNames(ends)
            + " within " + WAIT.toSeconds() + " s; positions " + positions(consumer));
        for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
          records.add(record);
        }
      }
      return records;
    }
  }

  static boolean reachedEnds(KafkaConsumer<String, String> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (!consumer.assignment().contains(end.getKey()) || consumer.position(end.getKey(), WAIT) < end.getValue()) {
        return false;
      }
    }
    return true;
  }

  static Map<String, Long> positions(KafkaConsumer<String, String> consumer) {
    Map<String, Long> positions = new TreeMap<>();
    for (TopicPartition partition : consumer.assignment()) {
      positions.put(partition.toString(), consumer.position(partition, WAIT));
    }
    return positions;
  }

  static Map<String, Object> toNames(Map<TopicPartition, ?> byPartition) {
    Map<String, Object> named = new TreeMap<>();
    byPartition.forEach((partition, value) -> named.put(partition.toString(),
        value instanceof OffsetAndMetadata ? ((OffsetAndMetadata) value).offset() : value));
    return named;
  }

  /** `got` holds exactly the keys of `expected`, each once, and in send order per partition. */
  static void checkExactly(String what, List<String> expected, List<ConsumerRecord<String, String>> got) {
    checkSameSet(what, expected, got);
    Map<Integer, List<String>> expectedByPartition = new HashMap<>();
    for (String key : expected) {
      int index = Integer.parseInt(key.substring(key.indexOf("-r") + 2));
      expectedByPartition.computeIfAbsent(index % PARTITIONS, ignored -> new ArrayList<>()).add(key);
    }
    Map<Integer, List<String>> gotByPartition = new HashMap<>();
    for (ConsumerRecord<String, String> record : got) {
      gotByPartition.computeIfAbsent(record.partition(), ignored -> new ArrayList<>()).add(record.key());
    }
    for (Map.Entry<Integer, List<String>> partition : expectedByPartition.entrySet()) {
      check(partition.getValue().equals(gotByPartition.get(partition.getKey())),
          what + ": partition " + partition.getKey() + " holds the records in another order than they were committed");
    }
  }

  static void checkSameSet(String what, Collection<String> expected, List<ConsumerRecord<String, String>> got) {
    Set<String> seen = new HashSet<>();
    List<String> duplicates = new ArrayList<>();
    for (ConsumerRecord<String, String> record : got) {
      if (!seen.add(record.key())) {
        duplicates.add(record.key() + "@" + record.partition() + ":" + record.offset());
      }
    }
    Set<String> missing = new HashSet<>(expected);
    missing.removeAll(seen);
    Set<String> unexpected = new HashSet<>(seen);
    unexpected.removeAll(new HashSet<>(expected));
    check(duplicates.isEmpty(), what + ": " + duplicates.size() + " records seen twice, e.g. " + first(duplicates));
    check(missing.isEmpty(), what + ": " + missing.size() + " of " + expected.size() + " records missing, e.g. " + first(missing));
    check(unexpected.isEmpty(), what + ": " + unexpected.size() + " records that should not be there, e.g. " + first(unexpected));
  }

  static List<String> first(Collection<String> values) {
    return values.stream().sorted().limit(5).toList();
  }
}

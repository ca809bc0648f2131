// The program for the Java client: admin create, keyed produce with the defaults and
// with every codec, a group of two consumers checking every record, commit/restart/resume,
// ListOffsets, DescribeConfigs, delete.
package spate.compat;

import static spate.compat.Support.WAIT;
import static spate.compat.Support.check;
import static spate.compat.Support.log;
import static spate.compat.Support.utf8;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

final class Basic {

  static final int PARTITIONS = 3;
  static final String RETENTION_MS = "86400000";
  static final String COMMIT_METADATA = "compat-java: committed by a group member";
  static final List<String> CODECS = List.of("gzip", "snappy", "lz4", "zstd");

  private final String bootstrap;
  private final String topic = Support.unique("compat-java");
  private final String group = Support.unique("compat-java-group");
  /** Timestamps are explicit and increasing, so by-timestamp lookups have exact answers. */
  private final long baseTimestamp = System.currentTimeMillis() - 3_600_000;
  private int nextIndex = 0;
  private final List<Support.Sent> sent = new ArrayList<>();

  Basic(String bootstrap) {
    this.bootstrap = bootstrap;
  }

  static void run(String bootstrap) throws Exception {
    new Basic(bootstrap).all();
  }

  void all() throws Exception {
    try (Admin admin = Support.admin(bootstrap)) {
      createTopic(admin);
      produceWithDefaults(600, "default");
      for (String codec : CODECS) {
        produce(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec), 400, codec);
      }
      Map<TopicPartition, Long> ends = Support.checkContiguous("produced", sent, 0);
      check(ends.size() == PARTITIONS, "the keys landed in " + ends.size() + " partitions, expected " + PARTITIONS);
      log("produced " + sent.size() + " records (defaults, " + CODECS + "), ends " + ends);

      consumeWithGroupOfTwo(ends);
      resumeAtCommitted(admin, ends);
      Map<TopicPartition, Long> endsNow = Support.checkContiguous("produced", sent, 0);
      listOffsets(admin, endsNow);
      describeConfigs(admin);
      deleteTopic(admin);
    }
  }

  private void createTopic(Admin admin) throws Exception {
    NewTopic newTopic = new NewTopic(topic, PARTITIONS, (short) 1).configs(Map.of("retention.ms", RETENTION_MS));
    admin.createTopics(List.of(newTopic)).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    Support.waitUntil("the new topic in the metadata with " + PARTITIONS + " partitions", () -> {
      try {
        TopicDescription description =
            admin.describeTopics(List.of(topic)).allTopicNames().get(WAIT.toSeconds(), TimeUnit.SECONDS).get(topic);
        return description.partitions().size() == PARTITIONS
            && description.partitions().stream().allMatch(partition -> partition.leader() != null);
      } catch (ExecutionException error) {
        return false;
      } catch (Exception error) {
        throw new RuntimeException(error);
      }
    });
    log("created " + topic + " with " + PARTITIONS + " partitions and retention.ms=" + RETENTION_MS);

    ExecutionException again = expectFailure(() -> admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)))
        .all().get(WAIT.toSeconds(), TimeUnit.SECONDS));
    check(again.getCause() instanceof TopicExistsException,
        "creating " + topic + " again: expected TopicExistsException, got " + again.getCause());

    String refused = Support.unique("compat-java-badconfig");
    ExecutionException bad = expectFailure(() -> admin.createTopics(List.of(
        new NewTopic(refused, 1, (short) 1).configs(Map.of("compat.no.such.config", "1"))))
        .all().get(WAIT.toSeconds(), TimeUnit.SECONDS));
    check(bad.getCause() instanceof InvalidConfigurationException,
        "a topic with an unknown config: expected InvalidConfigurationException, got " + bad.getCause());
    log("create again: TopicExistsException; unknown config: InvalidConfigurationException");
  }

  interface Action {
    void run() throws Exception;
  }

  static ExecutionException expectFailure(Action action) throws Exception {
    try {
      action.run();
    } catch (ExecutionException error) {
      return error;
    }
    throw new Support.CheckFailed("expected the call to fail, but it succeeded");
  }

  private void produceWithDefaults(int count, String run) throws Exception {
    produce(Map.of(), count, run);
  }

  /**
   * Keyed records (50 keys) with headers; some values null or empty, some header values null,
   * and values long enough that compression has something to do.
   */
  private void produce(Map<String, Object> overrides, int count, String run) throws Exception {
    List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
    for (int index = 0; index < count; index++) {
      int global = nextIndex++;
      byte[] key = utf8("key-" + (global % 50));
      byte[] value;
      if (global % 97 == 0) {
        value = null;
      } else if (global % 101 == 0) {
        value = new byte[0];
      } else {
        value = utf8("value-" + run + "-" + global + " " + "lorem ipsum dolor sit amet ".repeat(1 + global % 5));
      }
      List<Support.SentHeader> headers = new ArrayList<>();
      headers.add(new Support.SentHeader("run", utf8(run)));
      headers.add(new Support.SentHeader("index", ByteBuffer.allocate(4).putInt(global).array()));
      if (global % 7 == 0) {
        headers.add(new Support.SentHeader("nullable", null));
      }
      if (global % 11 == 0) {
        headers.add(new Support.SentHeader("run", utf8("repeated key")));
      }
      records.add(Support.record(topic, null, baseTimestamp + global, key, value, headers));
    }
    try (KafkaProducer<byte[], byte[]> producer = Support.producer(bootstrap, overrides)) {
      sent.addAll(Support.produceAll(producer, records));
    }
  }

  /**
   * Two members of one group, each in its own thread, commit after every poll and on revocation,
   * so no record is delivered twice across the rebalance when the second member joins. Ends
   * when every record was delivered and both members own partitions.
   */
  private void consumeWithGroupOfTwo(Map<TopicPartition, Long> ends) throws Exception {
    ConcurrentLinkedQueue<ConsumerRecord<byte[], byte[]>> delivered = new ConcurrentLinkedQueue<>();
    Map<String, Set<TopicPartition>> assignments = new ConcurrentHashMap<>();
    AtomicBoolean stop = new AtomicBoolean(false);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    List<Thread> members = new ArrayList<>();
    for (String member : List.of("member-a", "member-b")) {
      Thread thread = new Thread(() -> {
        try {
          runMember(member, delivered, assignments, stop);
        } catch (Throwable error) {
          failure.compareAndSet(null, new RuntimeException(member + ": " + error, error));
        }
      }, member);
      members.add(thread);
      thread.start();
    }
    // The assignments while both members ran (closing revokes them).
    AtomicReference<List<Set<TopicPartition>>> owned = new AtomicReference<>();
    try {
      Support.waitUntil("the group of two to deliver " + sent.size() + " records with both members assigned "
          + "(delivered so far: " + delivered.size() + ")", () -> {
        if (failure.get() != null) {
          return true;
        }
        Set<TopicPartition> a = assignments.getOrDefault("member-a", Set.of());
        Set<TopicPartition> b = assignments.getOrDefault("member-b", Set.of());
        owned.set(List.of(a, b));
        return delivered.size() >= sent.size() && !a.isEmpty() && !b.isEmpty();
      });
    } finally {
      stop.set(true);
      for (Thread thread : members) {
        thread.join(WAIT.toMillis());
      }
    }
    if (failure.get() != null) {
      throw new Support.CheckFailed("a group member failed: " + failure.get());
    }
    Set<TopicPartition> a = owned.get().get(0);
    Set<TopicPartition> b = owned.get().get(1);
    Set<TopicPartition> both = new HashSet<>(a);
    both.retainAll(b);
    check(both.isEmpty(), "both members own " + both);
    Set<TopicPartition> union = new HashSet<>(a);
    union.addAll(b);
    check(union.equals(ends.keySet()), "the members own " + union + ", expected every partition " + ends.keySet());
    Support.compareExactly("group of two", sent, delivered);
    log("group of two delivered all " + delivered.size() + " records exactly once; member-a " + a + ", member-b " + b);
  }

  private void runMember(String member, Collection<ConsumerRecord<byte[], byte[]>> delivered,
      Map<String, Set<TopicPartition>> assignments, AtomicBoolean stop) {
    Map<String, Object> overrides = Map.of("client.id", "compat-java-" + member);
    try (KafkaConsumer<byte[], byte[]> consumer = Support.consumer(bootstrap, group, overrides)) {
      Map<TopicPartition, Long> lastOffset = new HashMap<>();
      consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
          consumer.commitSync(positions(consumer, partitions));
          assignments.put(member, Set.of());
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
          assignments.put(member, Set.copyOf(consumer.assignment()));
        }
      });
      while (!stop.get()) {
        var records = consumer.poll(Duration.ofMillis(200));
        for (ConsumerRecord<byte[], byte[]> record : records) {
          TopicPartition partition = new TopicPartition(record.topic(), record.partition());
          Long previous = lastOffset.put(partition, record.offset());
          check(previous == null || record.offset() > previous,
              member + " got " + partition + " offset " + record.offset() + " after " + previous);
          delivered.add(record);
        }
        if (!records.isEmpty()) {
          consumer.commitSync(positions(consumer, consumer.assignment()));
        }
      }
      consumer.commitSync(positions(consumer, consumer.assignment()));
    }
  }

  private static Map<TopicPartition, OffsetAndMetadata> positions(KafkaConsumer<byte[], byte[]> consumer,
      Collection<TopicPartition> partitions) {
    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
    for (TopicPartition partition : partitions) {
      offsets.put(partition, new OffsetAndMetadata(consumer.position(partition), COMMIT_METADATA));
    }
    return offsets;
  }

  /**
   * The group's committed offsets are the ends (with the metadata string); records written
   * after the group closed are read by a restarted member from exactly there; then a commit
   * in the middle of a compressed batch makes the next member start at exactly that record.
   */
  private void resumeAtCommitted(Admin admin, Map<TopicPartition, Long> ends) throws Exception {
    Map<TopicPartition, OffsetAndMetadata> committed =
        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      OffsetAndMetadata offset = committed.get(end.getKey());
      check(offset != null && offset.offset() == end.getValue(),
          "committed offset of " + end.getKey() + " is " + offset + ", expected " + end.getValue());
      check(COMMIT_METADATA.equals(offset.metadata()),
          "the commit metadata did not round-trip: got \"" + offset.metadata() + "\"");
    }
    log("committed offsets are the ends, metadata round-trips: " + committed);

    int before = sent.size();
    produceWithDefaults(90, "after-restart");
    List<Support.Sent> newer = new ArrayList<>(sent.subList(before, sent.size()));
    List<ConsumerRecord<byte[], byte[]>> resumed = consumeInGroup(newer.size(), ends);
    Support.compareExactly("restarted member", newer, resumed);
    log("a restarted member resumed at the committed offsets and read exactly the " + newer.size() + " new records");

    // A zstd record in the middle of its run in some partition: most likely not the first
    // record of its batch, so the broker serves the whole batch and the client skips ahead.
    List<Support.Sent> zstd = sent.stream().filter(s -> "zstd".equals(new String(s.headers().get(0).value()))).toList();
    Support.Sent middle = zstd.get(zstd.size() / 2);
    TopicPartition rewound = middle.topicPartition();
    try (KafkaConsumer<byte[], byte[]> committer = Support.consumer(bootstrap, group, Map.of())) {
      committer.commitSync(Map.of(rewound, new OffsetAndMetadata(middle.offset(), "rewound")));
    }
    List<Support.Sent> fromMiddle = sent.stream()
        .filter(s -> s.topicPartition().equals(rewound) && s.offset() >= middle.offset()).toList();
    List<ConsumerRecord<byte[], byte[]>> again = consumeInGroup(fromMiddle.size(), null);
    Support.compareExactly("member after a commit inside a compressed batch", fromMiddle, again);
    log("a commit at " + middle.where() + " (inside the zstd run) made the next member start exactly there");
  }

  /**
   * One member subscribes, reads `count` records (and briefly more, to see any extra), checks
   * that each partition starts at `startsAt` where given, commits and closes.
   */
  private List<ConsumerRecord<byte[], byte[]>> consumeInGroup(int count, Map<TopicPartition, Long> startsAt)
      throws Exception {
    List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> consumer = Support.consumer(bootstrap, group, Map.of())) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + WAIT.toNanos();
      Map<TopicPartition, Long> first = new HashMap<>();
      while (records.size() < count) {
        check(System.nanoTime() < deadline, "a restarted member read " + records.size() + " of " + count
            + " records within " + WAIT);
        for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
          first.putIfAbsent(new TopicPartition(record.topic(), record.partition()), record.offset());
          records.add(record);
        }
      }
      // Anything more would be a record delivered again or one not expected.
      for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(1000))) {
        records.add(record);
      }
      if (startsAt != null) {
        for (Map.Entry<TopicPartition, Long> entry : first.entrySet()) {
          check(entry.getValue().equals(startsAt.get(entry.getKey())), "a restarted member started "
              + entry.getKey() + " at " + entry.getValue() + ", the committed offset is " + startsAt.get(entry.getKey()));
        }
      }
      consumer.commitSync();
    }
    return records;
  }

  private void listOffsets(Admin admin, Map<TopicPartition, Long> ends) throws Exception {
    Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
    Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
    Map<TopicPartition, OffsetSpec> maxTimestamp = new HashMap<>();
    for (TopicPartition partition : ends.keySet()) {
      earliest.put(partition, OffsetSpec.earliest());
      latest.put(partition, OffsetSpec.latest());
      maxTimestamp.put(partition, OffsetSpec.maxTimestamp());
    }
    Map<TopicPartition, ListOffsetsResultInfo> first =
        admin.listOffsets(earliest).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    Map<TopicPartition, ListOffsetsResultInfo> last =
        admin.listOffsets(latest).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    Map<TopicPartition, ListOffsetsResultInfo> newest =
        admin.listOffsets(maxTimestamp).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    for (TopicPartition partition : ends.keySet()) {
      check(first.get(partition).offset() == 0, "earliest of " + partition + " is " + first.get(partition) + ", expected 0");
      check(last.get(partition).offset() == ends.get(partition),
          "latest of " + partition + " is " + last.get(partition) + ", expected " + ends.get(partition));
      Support.Sent maximum = sent.stream().filter(s -> s.topicPartition().equals(partition))
          .max((x, y) -> Long.compare(x.timestamp(), y.timestamp())).orElseThrow();
      check(newest.get(partition).offset() == maximum.offset() && newest.get(partition).timestamp() == maximum.timestamp(),
          "max timestamp of " + partition + " is " + newest.get(partition) + ", expected offset " + maximum.offset()
              + " timestamp " + maximum.timestamp());
    }
    log("ListOffsets earliest, latest and max timestamp are right for every partition");

    // By timestamp: before everything, in the middle of each codec's run (inside compressed
    // batches), and after everything.
    List<Long> targets = new ArrayList<>();
    targets.add(baseTimestamp - 1000);
    targets.add(baseTimestamp + 301);
    for (int run = 0; run < CODECS.size(); run++) {
      targets.add(baseTimestamp + 600 + run * 400L + 133);
    }
    targets.add(baseTimestamp + nextIndex - 45);
    targets.add(baseTimestamp + nextIndex + 1000);
    try (KafkaConsumer<byte[], byte[]> consumer = Support.consumer(bootstrap, null, Map.of())) {
      for (long target : targets) {
        Map<TopicPartition, OffsetSpec> query = new HashMap<>();
        Map<TopicPartition, Long> consumerQuery = new HashMap<>();
        for (TopicPartition partition : ends.keySet()) {
          query.put(partition, OffsetSpec.forTimestamp(target));
          consumerQuery.put(partition, target);
        }
        Map<TopicPartition, ListOffsetsResultInfo> byAdmin =
            admin.listOffsets(query).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
        Map<TopicPartition, OffsetAndTimestamp> byConsumer = consumer.offsetsForTimes(consumerQuery, WAIT);
        for (TopicPartition partition : ends.keySet()) {
          Support.Sent expected = sent.stream()
              .filter(s -> s.topicPartition().equals(partition) && s.timestamp() >= target)
              .min((x, y) -> Long.compare(x.offset(), y.offset())).orElse(null);
          ListOffsetsResultInfo answer = byAdmin.get(partition);
          OffsetAndTimestamp consumerAnswer = byConsumer.get(partition);
          if (expected == null) {
            check(answer.offset() == -1, "offset for timestamp " + target + " (after every record) in " + partition
                + " is " + answer + ", expected -1");
            check(consumerAnswer == null, "consumer offsetsForTimes after every record in " + partition + " is "
                + consumerAnswer + ", expected none");
          } else {
            check(answer.offset() == expected.offset() && answer.timestamp() == expected.timestamp(),
                "offset for timestamp " + target + " in " + partition + " is " + answer + ", expected offset "
                    + expected.offset() + " timestamp " + expected.timestamp());
            check(consumerAnswer != null && consumerAnswer.offset() == expected.offset(),
                "consumer offsetsForTimes " + target + " in " + partition + " is " + consumerAnswer + ", expected "
                    + expected.offset());
          }
        }
      }
      Map<TopicPartition, Long> beginnings = consumer.beginningOffsets(ends.keySet(), WAIT);
      Map<TopicPartition, Long> consumerEnds = consumer.endOffsets(ends.keySet(), WAIT);
      for (TopicPartition partition : ends.keySet()) {
        check(beginnings.get(partition) == 0, "consumer beginningOffsets " + beginnings);
        check(consumerEnds.get(partition).equals(ends.get(partition)), "consumer endOffsets " + consumerEnds
            + ", expected " + ends);
      }
    }
    log("ListOffsets by timestamp (" + targets.size() + " targets, admin and consumer) exact in every partition");
  }

  private void describeConfigs(Admin admin) throws Exception {
    ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    Config config = admin.describeConfigs(List.of(resource), new DescribeConfigsOptions().includeSynonyms(true))
        .all().get(WAIT.toSeconds(), TimeUnit.SECONDS).get(resource);
    ConfigEntry retention = config.get("retention.ms");
    check(retention != null, "DescribeConfigs has no retention.ms: " + config);
    check(RETENTION_MS.equals(retention.value()), "retention.ms is " + retention.value() + ", set " + RETENTION_MS);
    check(retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
        "retention.ms source is " + retention.source() + ", expected DYNAMIC_TOPIC_CONFIG");
    check(!retention.isDefault(), "retention.ms set at creation is reported as a default");
    check(!retention.synonyms().isEmpty(), "retention.ms has no synonyms although they were asked for");
    ConfigEntry.ConfigSynonym winner = retention.synonyms().get(0);
    check(winner.source() == retention.source() && RETENTION_MS.equals(winner.value()),
        "the first synonym of retention.ms (the one in force) is " + winner + ", expected the topic's " + RETENTION_MS);
    for (String name : List.of("cleanup.policy", "max.message.bytes", "segment.bytes", "retention.bytes")) {
      ConfigEntry entry = config.get(name);
      check(entry != null && entry.value() != null, "DescribeConfigs has no value for the default " + name);
      check(entry.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
          name + " was never set on the topic but its source is " + entry.source());
    }
    check("delete".equals(config.get("cleanup.policy").value()), "cleanup.policy is " + config.get("cleanup.policy"));
    Long.parseLong(config.get("max.message.bytes").value());
    Long.parseLong(config.get("segment.bytes").value());
    log("DescribeConfigs: retention.ms set (DYNAMIC_TOPIC_CONFIG, synonyms), defaults present ("
        + config.entries().size() + " entries)");
  }

  private void deleteTopic(Admin admin) throws Exception {
    admin.deleteTopics(List.of(topic)).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    Support.waitUntil("the deleted topic to leave the topic list", () -> {
      try {
        return !admin.listTopics().names().get(WAIT.toSeconds(), TimeUnit.SECONDS).contains(topic);
      } catch (Exception error) {
        throw new RuntimeException(error);
      }
    });
    ExecutionException gone = expectFailure(() -> admin.describeTopics(List.of(topic)).allTopicNames()
        .get(WAIT.toSeconds(), TimeUnit.SECONDS));
    check(gone.getCause() instanceof UnknownTopicOrPartitionException,
        "describing the deleted topic: expected UnknownTopicOrPartitionException, got " + gone.getCause());
    log("deleted " + topic + "; describing it now gives UnknownTopicOrPartitionException");
  }
}

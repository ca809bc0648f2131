// Stateful failover of a Spate cluster with the Java client (kafka-clients 4.1.1), driven by the
// Rust test tests/tests/cluster_kafka_failover.rs, which owns the brokers: this program asks it on
// stdout to `KILL <node>` (kill -9) or `RESTART <node>` a broker and waits on stdin for `KILLED`
// or `RESTARTED` before it goes on. Two scenarios, in this order:
//
// - `group`: a consumer group's committed offsets survive the kill -9 of the broker that leads
//   the group's __consumer_offsets partition (its coordinator). One member consumes part of an
//   RF=3 topic and commits; with the group stable, the coordinator's broker is killed; a new member
//   of the same group (auto.offset.reset=none: a lost commit is an error, never a silent re-read)
//   joins through the new coordinator and must start exactly at the committed offsets and read
//   the rest: nothing read twice, nothing skipped.
// - `transactions`: a transactional producer runs transactions (some aborted) into an RF=3 topic;
//   with one transaction open and its records acknowledged, the broker of the transaction
//   coordinator (the leader of the id's __transaction_state partition) is killed, the producer
//   commits that transaction through the new coordinator and runs more. A read_committed consumer
//   must then see every committed record exactly once, in order, and no aborted one.
//
// Lines starting with `FIGURE` are the figures the Rust test prints. Exits 0 only if both passed;
// the last line is `N passed, N failed`.
package spate.compat.txn;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class ClusterFailover {
  private ClusterFailover() {}

  static final int PARTITIONS = Transactions.PARTITIONS;
  static final short REPLICATION_FACTOR = 3;
  static final Duration WAIT = Transactions.WAIT;

  static final BufferedReader CONTROL =
      new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

  public static void main(String[] arguments) {
    Map<String, Transactions.Test> scenarios = new LinkedHashMap<>();
    scenarios.put("group", ClusterFailover::group);
    scenarios.put("transactions", ClusterFailover::transactions);
    String bootstrap = System.getenv("KAFKA_BOOTSTRAP");
    if (bootstrap == null || bootstrap.isEmpty()) {
      System.err.println("error: set KAFKA_BOOTSTRAP to the cluster's Kafka listeners");
      System.exit(2);
    }
    List<String> chosen = arguments.length == 0 ? new ArrayList<>(scenarios.keySet()) : List.of(arguments);
    int failed = 0;
    for (String name : chosen) {
      Transactions.Test scenario = scenarios.get(name);
      if (scenario == null) {
        System.err.println("error: unknown scenario " + name + "; they are " + scenarios.keySet());
        System.exit(2);
      }
      System.out.println("== " + name);
      long started = System.nanoTime();
      String outcome = "PASS";
      try {
        scenario.run(bootstrap);
      } catch (Transactions.CheckFailed failure) {
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

  // ---- group: committed offsets across the coordinator's kill

  static final int GROUP_RECORDS = 600;
  /** What the first member processes and commits before the kill. */
  static final int GROUP_COMMITTED = 300;

  static void group(String bootstrap) throws Exception {
    int[] killed = {-1};
    try {
      groupAcrossKill(bootstrap, killed);
    } finally {
      // Whatever happened, the next scenario needs all three brokers.
      if (killed[0] >= 0) {
        restart(killed[0]);
      }
    }
  }

  static void groupAcrossKill(String bootstrap, int[] killed) throws Exception {
    String topic = Transactions.unique("failover-group");
    String group = Transactions.unique("failover-group");
    createReplicatedTopic(bootstrap, topic);
    List<String> keys = new ArrayList<>();
    try (KafkaProducer<String, String> producer = idempotentProducer(bootstrap)) {
      List<Future<RecordMetadata>> sends = new ArrayList<>();
      for (int index = 0; index < GROUP_RECORDS; index++) {
        String key = "g-r" + index;
        keys.add(key);
        sends.add(producer.send(new ProducerRecord<>(topic, index % PARTITIONS, key, "v" + index)));
      }
      for (Future<RecordMetadata> send : sends) {
        send.get();
      }
    }
    Map<String, String> processed = new HashMap<>();
    Map<TopicPartition, OffsetAndMetadata> committed = new HashMap<>();
    int coordinator = -1;
    long killedAt;
    KafkaConsumer<String, String> first = groupConsumer(bootstrap, group, "earliest");
    try {
      first.subscribe(List.of(topic));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (processed.size() < GROUP_COMMITTED) {
        Transactions.check(System.nanoTime() < deadline, "the first member read " + processed.size()
            + " records within " + WAIT.toSeconds() + " s");
        for (ConsumerRecord<String, String> record : first.poll(Duration.ofMillis(200))) {
          if (processed.size() == GROUP_COMMITTED) {
            break; // fetched but not processed: the next member must read it
          }
          Transactions.check(processed.put(record.key(), record.partition() + ":" + record.offset()) == null,
              "the first member read " + record.key() + " twice");
          committed.put(new TopicPartition(topic, record.partition()), new OffsetAndMetadata(record.offset() + 1));
        }
      }
      // A partition it read nothing of is committed at 0, so that every partition has a
      // committed offset the new member must find (it has no reset policy).
      for (TopicPartition partition : first.assignment()) {
        committed.putIfAbsent(partition, new OffsetAndMetadata(0));
      }
      Transactions.check(committed.size() == PARTITIONS, "the first member holds " + first.assignment());
      first.commitSync(committed, WAIT);
      Transactions.log("first member processed " + processed.size() + " records and committed "
          + Transactions.toNames(committed));
      ConsumerGroupDescription described = describeGroup(bootstrap, group);
      Transactions.check(described.groupState().toString().equalsIgnoreCase("stable"),
          "the group is " + described.groupState() + " before the kill, not stable");
      coordinator = described.coordinator().id();
      figure("group " + group + " is stable with " + described.members().size()
          + " member; its coordinator is broker " + coordinator);
      killedAt = System.nanoTime();
      kill(coordinator);
      killed[0] = coordinator;
    } finally {
      // Its LeaveGroup goes to the new coordinator or nowhere: do not wait long for it.
      first.close(CloseOptions.timeout(Duration.ofSeconds(5)));
    }
    // The new member's join completes once the new coordinator has the group (and, if the first
    // member's LeaveGroup was lost with its coordinator, once that member's session expired).
    Map<TopicPartition, Long> firstOffsets = new TreeMap<>(java.util.Comparator.comparing(TopicPartition::toString));
    List<ConsumerRecord<String, String>> rest = new ArrayList<>();
    double firstRecordSeconds = -1;
    try (KafkaConsumer<String, String> second = groupConsumer(bootstrap, group, "none")) {
      second.subscribe(List.of(topic));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (processed.size() + rest.size() < GROUP_RECORDS) {
        Transactions.check(System.nanoTime() < deadline, "after the kill the new member read " + rest.size()
            + " of the " + (GROUP_RECORDS - processed.size()) + " records left within " + WAIT.toSeconds() + " s");
        for (ConsumerRecord<String, String> record : second.poll(Duration.ofMillis(200))) {
          if (firstRecordSeconds < 0) {
            firstRecordSeconds = (System.nanoTime() - killedAt) / 1e9;
          }
          firstOffsets.putIfAbsent(new TopicPartition(topic, record.partition()), record.offset());
          rest.add(record);
        }
      }
      second.commitSync(WAIT);
    }
    Map<TopicPartition, Long> ends = Transactions.endOffsets(bootstrap, topic, "read_uncommitted");
    for (Map.Entry<TopicPartition, OffsetAndMetadata> offset : committed.entrySet()) {
      // A partition committed at its end has nothing left to read.
      Long expected = offset.getValue().offset() < ends.get(offset.getKey()) ? offset.getValue().offset() : null;
      Long started = firstOffsets.get(offset.getKey());
      Transactions.check(java.util.Objects.equals(started, expected), "the new member started "
          + offset.getKey() + " at " + started + ", not at the committed offset " + offset.getValue().offset()
          + " (end " + ends.get(offset.getKey()) + ")");
    }
    List<String> all = new ArrayList<>();
    for (ConsumerRecord<String, String> record : rest) {
      Transactions.check(!processed.containsKey(record.key()), "record " + record.key()
          + " was processed before the kill and read again after it (at " + record.partition() + ":"
          + record.offset() + ")");
      all.add(record.key());
    }
    all.addAll(processed.keySet());
    Transactions.check(all.size() == GROUP_RECORDS && new java.util.HashSet<>(all).containsAll(keys),
        "the two members read " + all.size() + " records in all, not the " + GROUP_RECORDS + " produced once each");
    ConsumerGroupDescription after = describeGroup(bootstrap, group);
    Transactions.check(after.coordinator().id() != coordinator,
        "the group's coordinator is still the killed broker " + coordinator);
    Map<TopicPartition, OffsetAndMetadata> finalOffsets;
    try (Admin admin = Transactions.admin(bootstrap)) {
      finalOffsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
    }
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      OffsetAndMetadata offset = finalOffsets.get(end.getKey());
      Transactions.check(offset != null && offset.offset() == end.getValue(), "the committed offset of "
          + end.getKey() + " is " + offset + " after the new member's commit, not its end " + end.getValue());
    }
    figure("group coordinator moved from broker " + coordinator + " to broker " + after.coordinator().id()
        + "; committed before the kill " + Transactions.toNames(committed) + "; the new member started at "
        + Transactions.toNames(firstOffsets) + String.format(" (first record %.1f s after the kill)", firstRecordSeconds)
        + "; " + processed.size() + " + " + rest.size() + " = " + GROUP_RECORDS + " records, each once");
  }

  // ---- transactions: a transaction committed across its coordinator's kill

  static final int TRANSACTIONS = 16;
  static final int RECORDS_PER_TRANSACTION = 30;
  /** The transaction held open (its records acknowledged) while its coordinator is killed. */
  static final int KILLED_DURING = 6;

  static void transactions(String bootstrap) throws Exception {
    String topic = Transactions.unique("failover-txn");
    String transactionalId = Transactions.unique("failover-tx");
    createReplicatedTopic(bootstrap, topic);
    List<String> committed = new ArrayList<>();
    List<String> aborted = new ArrayList<>();
    int coordinator = -1;
    int coordinatorAfter = -1;
    double commitSeconds = -1;
    try (KafkaProducer<String, String> producer = Transactions.transactionalProducer(bootstrap, transactionalId)) {
      producer.initTransactions();
      for (int transaction = 0; transaction < TRANSACTIONS; transaction++) {
        boolean abort = transaction % 5 == 3;
        producer.beginTransaction();
        List<String> keys = new ArrayList<>();
        List<Future<RecordMetadata>> sends = new ArrayList<>();
        for (int record = 0; record < RECORDS_PER_TRANSACTION; record++) {
          int index = transaction * RECORDS_PER_TRANSACTION + record;
          String key = "t" + transaction + "-r" + index;
          keys.add(key);
          sends.add(producer.send(new ProducerRecord<>(topic, index % PARTITIONS, key,
              Transactions.valueOf(key, abort))));
        }
        producer.flush();
        for (Future<RecordMetadata> send : sends) {
          send.get();
        }
        if (transaction == KILLED_DURING) {
          coordinator = transactionCoordinator(bootstrap, transactionalId);
          figure("transaction " + transaction + " is open with " + keys.size()
              + " acknowledged records; its coordinator is broker " + coordinator);
          kill(coordinator);
          long killedAt = System.nanoTime();
          commitAcrossFailover(producer);
          commitSeconds = (System.nanoTime() - killedAt) / 1e9;
          coordinatorAfter = transactionCoordinator(bootstrap, transactionalId);
          Transactions.check(coordinatorAfter != coordinator,
              "the transaction coordinator is still the killed broker " + coordinator);
        } else if (abort) {
          producer.abortTransaction();
        } else {
          producer.commitTransaction();
        }
        (abort ? aborted : committed).addAll(keys);
      }
    }
    List<ConsumerRecord<String, String>> readCommitted = Transactions.readToEnd(bootstrap, topic, "read_committed");
    for (ConsumerRecord<String, String> record : readCommitted) {
      Transactions.check(record.value().startsWith("committed:"), "read_committed returned the aborted record "
          + record.key() + " at " + record.partition() + ":" + record.offset());
    }
    Transactions.checkExactly("read_committed after the coordinator's kill", committed, readCommitted);
    List<ConsumerRecord<String, String>> readUncommitted = Transactions.readToEnd(bootstrap, topic, "read_uncommitted");
    Transactions.check(readUncommitted.size() == committed.size() + aborted.size(), "read_uncommitted returned "
        + readUncommitted.size() + " records, not the " + (committed.size() + aborted.size()) + " written");
    figure("transaction coordinator moved from broker " + coordinator + " to broker " + coordinatorAfter
        + String.format("; the open transaction committed %.1f s after the kill", commitSeconds) + "; "
        + TRANSACTIONS + " transactions (" + aborted.size() / RECORDS_PER_TRANSACTION + " aborted): read_committed "
        + readCommitted.size() + " records = every committed one once, in order; read_uncommitted "
        + readUncommitted.size());
  }

  /** Commits the open transaction while its coordinator fails over: the client finds the new
   * coordinator and retries EndTxn by itself; a commit that outlasts max.block.ms is retried. */
  static void commitAcrossFailover(KafkaProducer<String, String> producer) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (true) {
      try {
        producer.commitTransaction();
        return;
      } catch (TimeoutException timedOut) {
        Transactions.check(System.nanoTime() < deadline,
            "the transaction did not commit within " + WAIT.toSeconds() + " s of its coordinator's kill");
        Transactions.log("commit timed out during the failover; retrying: " + timedOut.getMessage());
      }
    }
  }

  // ---- the cluster's side

  static void kill(int node) throws Exception {
    control("KILL " + node, "KILLED");
  }

  static void restart(int node) throws Exception {
    control("RESTART " + node, "RESTARTED");
  }

  /** Asks the driving test to act and waits for its answer. */
  static void control(String request, String expected) throws Exception {
    System.out.println(request);
    System.out.flush();
    String answer = CONTROL.readLine();
    Transactions.check(expected.equals(answer), "asked the test to " + request + "; it answered " + answer);
  }

  static void figure(String line) {
    System.out.println("FIGURE " + line);
    System.out.flush();
  }

  // ---- clients

  /** An RF=3 topic with min.insync.replicas=2 (set at creation and checked with DescribeConfigs). */
  static void createReplicatedTopic(String bootstrap, String topic) throws Exception {
    try (Admin admin = Transactions.admin(bootstrap)) {
      NewTopic replicated = new NewTopic(topic, PARTITIONS, REPLICATION_FACTOR)
          .configs(Map.of("min.insync.replicas", "2"));
      admin.createTopics(List.of(replicated)).all().get();
      ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
      String minInsync = config.get("min.insync.replicas").value();
      Transactions.check("2".equals(minInsync), "min.insync.replicas of " + topic + " is " + minInsync + ", not 2");
      int replicas = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic)
          .partitions().get(0).replicas().size();
      Transactions.check(replicas == REPLICATION_FACTOR, topic + " has " + replicas + " replicas, not " + REPLICATION_FACTOR);
    }
  }

  static KafkaProducer<String, String> idempotentProducer(String bootstrap) {
    Properties config = new Properties();
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    return new KafkaProducer<>(config, new StringSerializer(), new StringSerializer());
  }

  static KafkaConsumer<String, String> groupConsumer(String bootstrap, String group, String reset) {
    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, reset);
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    config.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
    // A member left behind on a dead coordinator is dropped after this, not Kafka's 45 s.
    config.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
    config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
    return new KafkaConsumer<>(config, new StringDeserializer(), new StringDeserializer());
  }

  static ConsumerGroupDescription describeGroup(String bootstrap, String group) throws Exception {
    try (Admin admin = Transactions.admin(bootstrap)) {
      return admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
    }
  }

  static int transactionCoordinator(String bootstrap, String transactionalId) throws Exception {
    try (Admin admin = Transactions.admin(bootstrap)) {
      return admin.describeTransactions(List.of(transactionalId)).description(transactionalId).get().coordinatorId();
    }
  }
}

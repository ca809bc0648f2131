// `group-assignors-static`: the classic protocol's client-side assignors (range, round-robin,
// sticky, cooperative-sticky) and static membership (group.instance.id), issue #12. Each
// assignor: a group of two, then three members over one multi-partition topic; after each
// rebalance every partition is owned by exactly one member (as the members and the broker's
// DescribeGroups both say), every record is delivered exactly once, and cooperative-sticky
// revokes only the partitions that moved. Static members: a closed member stays in the group, its
// restart with the same instance id gets the same generation and assignment (no rebalance), and a
// second process with that instance id fences the first (FencedInstanceIdException).
//
// The members of one group are polled in turn from one thread (short polls): the classic
// consumer keeps a pending JoinGroup across polls, and its heartbeat thread keeps each member
// alive meanwhile, so the test controls exactly when each member joins.
package spate.compat;

import static spate.compat.Support.WAIT;
import static spate.compat.Support.check;
import static spate.compat.Support.log;
import static spate.compat.Support.utf8;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedInstanceIdException;

final class GroupAssignors {
  private GroupAssignors() {}

  static final int PARTITIONS = 6;
  static final int RECORDS_PER_ROUND = 60;

  /** Kafka's name of an assignor (what DescribeGroups reports as the protocol) and its class. */
  record Assignor(String name, Class<?> type, boolean cooperative, boolean sticky) {}

  static final List<Assignor> ASSIGNORS = List.of(
      new Assignor("range", RangeAssignor.class, false, false),
      new Assignor("roundrobin", RoundRobinAssignor.class, false, false),
      new Assignor("sticky", StickyAssignor.class, false, true),
      new Assignor("cooperative-sticky", CooperativeStickyAssignor.class, true, true));

  static void run(String bootstrap) throws Exception {
    String topic = Support.unique("compat-java-assignors");
    try (Admin admin = Support.admin(bootstrap);
        KafkaProducer<byte[], byte[]> producer = Support.producer(bootstrap, Map.of())) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all()
          .get(WAIT.toSeconds(), TimeUnit.SECONDS);
      Set<TopicPartition> all = new TreeSet<>(GroupAssignors::compare);
      for (int partition = 0; partition < PARTITIONS; partition++) {
        all.add(new TopicPartition(topic, partition));
      }
      Scenario scenario = new Scenario(bootstrap, admin, producer, topic, all);
      for (Assignor assignor : ASSIGNORS) {
        long started = System.nanoTime();
        scenario.assignor(assignor);
        log(String.format("%s: passed in %.1f s", assignor.name(), (System.nanoTime() - started) / 1e9));
      }
      long started = System.nanoTime();
      scenario.staticMembership();
      log(String.format("static membership: passed in %.1f s", (System.nanoTime() - started) / 1e9));
      admin.deleteTopics(List.of(topic)).all().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    }
  }

  static int compare(TopicPartition a, TopicPartition b) {
    int byTopic = a.topic().compareTo(b.topic());
    return byTopic != 0 ? byTopic : Integer.compare(a.partition(), b.partition());
  }

  /** One group member with what its rebalance listener saw. Used from the test's thread only. */
  static final class Member implements ConsumerRebalanceListener {
    final String name;
    final KafkaConsumer<byte[], byte[]> consumer;
    /** Every non-empty onPartitionsRevoked, in order. */
    final List<Set<TopicPartition>> revocations = new ArrayList<>();
    final List<Set<TopicPartition>> losses = new ArrayList<>();
    int assignedCalls = 0;
    /** The last offset this member read of each partition it owns (its commit is this + 1). */
    final Map<TopicPartition, Long> lastOffset = new HashMap<>();
    boolean closed = false;

    Member(String bootstrap, String group, String name, String topic, Map<String, Object> overrides) {
      this.name = name;
      Map<String, Object> config = new HashMap<>(overrides);
      config.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-java-" + name);
      // Rebalances are noticed on the next heartbeat: keep the test fast.
      config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 300);
      this.consumer = Support.consumer(bootstrap, group, config);
      consumer.subscribe(List.of(topic), this);
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
      if (!partitions.isEmpty()) {
        revocations.add(Set.copyOf(partitions));
      }
      // Commit what was read, so that the next owner starts after it (exactly once).
      commit(partitions);
      partitions.forEach(lastOffset::remove);
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
      assignedCalls++;
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> partitions) {
      if (!partitions.isEmpty()) {
        losses.add(Set.copyOf(partitions));
      }
      partitions.forEach(lastOffset::remove);
    }

    void commit(Collection<TopicPartition> partitions) {
      Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
      for (TopicPartition partition : partitions) {
        Long last = lastOffset.get(partition);
        if (last != null) {
          offsets.put(partition, new OffsetAndMetadata(last + 1));
        }
      }
      if (!offsets.isEmpty()) {
        consumer.commitSync(offsets);
      }
    }

    /** One short poll; records go to `delivered` and are committed at once. */
    void poll(Collection<ConsumerRecord<byte[], byte[]>> delivered) {
      var records = consumer.poll(Duration.ofMillis(50));
      for (ConsumerRecord<byte[], byte[]> record : records) {
        TopicPartition partition = new TopicPartition(record.topic(), record.partition());
        Long previous = lastOffset.put(partition, record.offset());
        check(previous == null || record.offset() > previous,
            name + " got " + partition + " offset " + record.offset() + " after " + previous);
        delivered.add(record);
      }
      if (!records.isEmpty()) {
        commit(records.partitions());
      }
    }

    Set<TopicPartition> owned() {
      Set<TopicPartition> owned = new TreeSet<>(GroupAssignors::compare);
      owned.addAll(consumer.assignment());
      return owned;
    }

    int generation() {
      return consumer.groupMetadata().generationId();
    }

    String memberId() {
      return consumer.groupMetadata().memberId();
    }

    void close() {
      if (!closed) {
        closed = true;
        consumer.close();
      }
    }
  }

  static final class Scenario {
    final String bootstrap;
    final Admin admin;
    final KafkaProducer<byte[], byte[]> producer;
    final String topic;
    final Set<TopicPartition> all;
    final List<Support.Sent> sent = new ArrayList<>();
    final List<ConsumerRecord<byte[], byte[]>> delivered = new ArrayList<>();
    int round = 0;

    Scenario(String bootstrap, Admin admin, KafkaProducer<byte[], byte[]> producer, String topic,
        Set<TopicPartition> all) {
      this.bootstrap = bootstrap;
      this.admin = admin;
      this.producer = producer;
      this.topic = topic;
      this.all = all;
    }

    /** RECORDS_PER_ROUND records spread over every partition. */
    void produceRound() throws InterruptedException {
      round++;
      List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
      for (int index = 0; index < RECORDS_PER_ROUND; index++) {
        String key = "round-" + round + "-" + index;
        records.add(Support.record(topic, index % PARTITIONS, null, utf8(key), utf8("value of " + key), List.of()));
      }
      sent.addAll(Support.produceAll(producer, records));
    }

    /** The records of this topic a group has not read yet: what it must deliver now. */
    List<Support.Sent> sentFrom(Map<TopicPartition, Long> start) {
      List<Support.Sent> expected = new ArrayList<>();
      for (Support.Sent record : sent) {
        if (record.offset() >= start.getOrDefault(record.topicPartition(), 0L)) {
          expected.add(record);
        }
      }
      return expected;
    }

    Map<TopicPartition, Long> ends() {
      Map<TopicPartition, Long> ends = new HashMap<>();
      for (Support.Sent record : sent) {
        ends.merge(record.topicPartition(), record.offset() + 1, Math::max);
      }
      return ends;
    }

    /** Polls every open member in turn until `done` holds (checked between rounds). */
    void pollUntil(String what, List<Member> members, BooleanSupplier done) {
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (true) {
        for (Member member : members) {
          if (!member.closed) {
            member.poll(delivered);
          }
        }
        if (done.getAsBoolean()) {
          return;
        }
        if (System.nanoTime() > deadline) {
          StringBuilder state = new StringBuilder();
          for (Member member : members) {
            state.append("\n      ").append(member.name).append(": generation ").append(member.generation())
                .append(", owns ").append(member.owned());
          }
          throw new Support.CheckFailed("timed out after " + WAIT.toSeconds() + " s waiting for " + what + state);
        }
      }
    }

    /** Every member owns something, no partition twice, every partition once, one generation. */
    static boolean settled(List<Member> members, Set<TopicPartition> all) {
      Set<TopicPartition> union = new HashSet<>();
      int total = 0;
      int generation = members.get(0).generation();
      for (Member member : members) {
        Set<TopicPartition> owned = member.owned();
        if (owned.isEmpty() || member.generation() != generation) {
          return false;
        }
        union.addAll(owned);
        total += owned.size();
      }
      return total == all.size() && union.equals(all);
    }

    /** The broker's view: a Stable group of exactly these members, each owning what it says. */
    void checkDescribed(String group, String protocol, List<Member> members) throws Exception {
      ConsumerGroupDescription description = admin.describeConsumerGroups(List.of(group)).all()
          .get(WAIT.toSeconds(), TimeUnit.SECONDS).get(group);
      check(description.groupState() == GroupState.STABLE,
          group + ": DescribeGroups says " + description.groupState() + ", expected STABLE");
      check(protocol.equals(description.partitionAssignor()),
          group + ": DescribeGroups says assignor " + description.partitionAssignor() + ", expected " + protocol);
      Map<String, Set<TopicPartition>> described = new HashMap<>();
      for (MemberDescription member : description.members()) {
        Set<TopicPartition> owned = new TreeSet<>(GroupAssignors::compare);
        owned.addAll(member.assignment().topicPartitions());
        described.put(member.consumerId(), owned);
      }
      Map<String, Set<TopicPartition>> expected = new HashMap<>();
      for (Member member : members) {
        expected.put(member.memberId(), member.owned());
      }
      check(described.equals(expected), group + ": DescribeGroups says members " + described
          + ", the members say " + expected);
    }

    static void checkBalanced(String what, List<Member> members) {
      int fewest = Integer.MAX_VALUE;
      int most = 0;
      for (Member member : members) {
        fewest = Math.min(fewest, member.owned().size());
        most = Math.max(most, member.owned().size());
      }
      check(most - fewest <= 1, what + ": unbalanced assignment, " + fewest + " to " + most + " partitions");
    }

    static String owners(List<Member> members) {
      StringBuilder text = new StringBuilder();
      for (Member member : members) {
        text.append(text.length() == 0 ? "" : ", ").append(member.name).append(' ')
            .append(member.owned().stream().map(TopicPartition::partition).toList());
      }
      return text.toString();
    }

    void assignor(Assignor assignor) throws Exception {
      String group = Support.unique("compat-java-" + assignor.name());
      Map<String, Object> overrides = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
          assignor.type().getName());
      // A new group starts at the earliest offsets: it reads every earlier round too.
      Map<TopicPartition, Long> start = Map.of();
      int deliveredBefore = delivered.size();
      produceRound();
      List<Member> members = new ArrayList<>();
      try {
        members.add(new Member(bootstrap, group, assignor.name() + "-1", topic, overrides));
        members.add(new Member(bootstrap, group, assignor.name() + "-2", topic, overrides));
        pollUntil(assignor.name() + ": two members to settle", members, () -> settled(members, all));
        checkBalanced(assignor.name() + " (two members)", members);
        checkDescribed(group, assignor.name(), members);
        log(assignor.name() + ": two members, generation " + members.get(0).generation() + ": " + owners(members));

        // The third member joins while records are waiting.
        Map<Member, Set<TopicPartition>> before = new HashMap<>();
        for (Member member : members) {
          before.put(member, member.owned());
          member.revocations.clear();
        }
        int generationBefore = members.get(0).generation();
        produceRound();
        members.add(new Member(bootstrap, group, assignor.name() + "-3", topic, overrides));
        pollUntil(assignor.name() + ": three members to settle", members, () -> settled(members, all));
        checkBalanced(assignor.name() + " (three members)", members);
        checkDescribed(group, assignor.name(), members);
        int generationAfter = members.get(0).generation();
        check(generationAfter > generationBefore, assignor.name() + ": generation " + generationAfter
            + " after the third member joined, " + generationBefore + " before");
        log(assignor.name() + ": three members, generation " + generationAfter + ": " + owners(members));

        for (Member member : before.keySet()) {
          Set<TopicPartition> had = before.get(member);
          Set<TopicPartition> has = member.owned();
          Set<TopicPartition> revoked = new TreeSet<>(GroupAssignors::compare);
          member.revocations.forEach(revoked::addAll);
          check(member.losses.isEmpty(), member.name + " lost partitions " + member.losses);
          if (assignor.sticky()) {
            check(had.containsAll(has), member.name + " (sticky) owned " + had + " and now owns " + has
                + ": a kept member must only give partitions up when a member joins");
          }
          if (assignor.cooperative()) {
            Set<TopicPartition> moved = new TreeSet<>(GroupAssignors::compare);
            moved.addAll(had);
            moved.removeAll(has);
            check(revoked.equals(moved), member.name + " (cooperative) was revoked " + member.revocations
                + ", but only " + moved + " moved (owned " + had + ", owns " + has + ")");
          } else {
            check(member.revocations.size() == 1 && revoked.equals(had), member.name
                + " (eager) was revoked " + member.revocations + ", expected all of " + had + " once");
          }
        }

        pollUntil(assignor.name() + ": every record delivered", members,
            () -> delivered.size() - deliveredBefore >= sentFrom(start).size());
        Support.compareExactly(assignor.name(), sentFrom(start), delivered.subList(deliveredBefore, delivered.size()));
      } finally {
        for (Member member : members) {
          member.close();
        }
      }
    }

    /**
     * Static members: a close sends no LeaveGroup, the restart takes its place without a
     * rebalance, and a second incarnation of an instance id fences the running one.
     */
    void staticMembership() throws Exception {
      String group = Support.unique("compat-java-static");
      String name = "static";
      Map<String, Object> base = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName(),
          // Long enough that the closed member is not expired before its restart.
          ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
      Map<String, Object> first = new HashMap<>(base);
      first.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1");
      Map<String, Object> second = new HashMap<>(base);
      second.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-2");
      // A new group starts at the earliest offsets: it reads every earlier round too.
      Map<TopicPartition, Long> start = Map.of();
      int deliveredBefore = delivered.size();
      produceRound();
      List<Member> members = new ArrayList<>();
      try {
        // The first member joins alone, so it is the leader: its restart below is the case
        // where Kafka answers JoinGroup v9+ with skipAssignment (KIP-814).
        Member one = new Member(bootstrap, group, name + "-1", topic, first);
        members.add(one);
        pollUntil(name + ": the first static member to own every partition", members,
            () -> one.owned().equals(all));
        Member two = new Member(bootstrap, group, name + "-2", topic, second);
        members.add(two);
        pollUntil(name + ": two static members to settle", members, () -> settled(members, all));
        checkDescribed(group, "range", members);
        pollUntil(name + ": the first round delivered", members,
            () -> delivered.size() - deliveredBefore >= sentFrom(start).size());
        int generation = one.generation();
        Set<TopicPartition> ownedByOne = one.owned();
        Set<TopicPartition> ownedByTwo = two.owned();
        String oldMemberId = one.memberId();
        int twoAssignedCalls = two.assignedCalls;
        two.revocations.clear();
        log(name + ": generation " + generation + ": " + owners(members));

        // A static member's close sends no LeaveGroup: the group keeps it until its session ends.
        one.close();
        ConsumerGroupDescription afterClose = admin.describeConsumerGroups(List.of(group)).all()
            .get(WAIT.toSeconds(), TimeUnit.SECONDS).get(group);
        Set<String> instances = new TreeSet<>();
        afterClose.members().forEach(member -> instances.add(member.groupInstanceId().orElse("(none)")));
        check(afterClose.groupState() == GroupState.STABLE && instances.equals(Set.of("instance-1", "instance-2")),
            name + ": after a static member's close the group is " + afterClose.groupState() + " with instances "
                + instances + ", expected STABLE with both (no LeaveGroup)");

        // The restart takes the old place: same generation, same assignment, no rebalance.
        produceRound();
        Member restarted = new Member(bootstrap, group, name + "-1-restarted", topic, first);
        members.add(restarted);
        pollUntil(name + ": the restarted member to get its assignment", members,
            () -> !restarted.owned().isEmpty());
        check(restarted.generation() == generation && restarted.owned().equals(ownedByOne),
            name + ": the restarted member has generation " + restarted.generation() + " and " + restarted.owned()
                + ", expected generation " + generation + " and " + ownedByOne + " (no rebalance)");
        check(!restarted.memberId().equals(oldMemberId), name + ": the restart kept member id " + oldMemberId);
        pollUntil(name + ": the second round delivered", members,
            () -> delivered.size() - deliveredBefore >= sentFrom(start).size());
        check(two.generation() == generation && two.owned().equals(ownedByTwo) && two.revocations.isEmpty()
            && two.assignedCalls == twoAssignedCalls, name + ": the other member saw a rebalance: generation "
                + two.generation() + ", owns " + two.owned() + ", revoked " + two.revocations);
        checkDescribed(group, "range", List.of(restarted, two));
        Support.compareExactly(name, sentFrom(start), delivered.subList(deliveredBefore, delivered.size()));
        log(name + ": restart kept generation " + generation + " and " + ownedByOne.stream()
            .map(TopicPartition::partition).toList() + " without a rebalance");

        // A second process with the same instance id fences the running one.
        Member intruder = new Member(bootstrap, group, name + "-1-second-process", topic, first);
        members.add(intruder);
        List<Member> others = List.of(intruder, two);
        pollUntil(name + ": the second process to get the instance's assignment", others,
            () -> !intruder.owned().isEmpty());
        check(intruder.owned().equals(ownedByOne) && intruder.generation() == generation, name
            + ": the second process owns " + intruder.owned() + " at generation " + intruder.generation()
            + ", expected the instance's " + ownedByOne + " at generation " + generation + " (no rebalance)");
        FencedInstanceIdException fenced = null;
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (fenced == null) {
          check(System.nanoTime() < deadline, name + ": the first process was not fenced within " + WAIT);
          try {
            restarted.poll(delivered);
          } catch (FencedInstanceIdException error) {
            fenced = error;
          }
          intruder.poll(delivered);
          two.poll(delivered);
        }
        restarted.closed = true;
        try {
          restarted.consumer.close(CloseOptions.timeout(Duration.ofSeconds(1)));
        } catch (RuntimeException ignored) {
          // A fenced consumer may fail its close; it is out of the group either way.
        }
        log(name + ": the second process fenced the first: " + fenced.getMessage()
            + "; it owns " + intruder.owned().stream().map(TopicPartition::partition).toList()
            + " at generation " + intruder.generation());
      } finally {
        for (Member member : members) {
          try {
            member.close();
          } catch (RuntimeException ignored) {
            // Closing after a failed check must not hide the failure.
          }
        }
      }
    }
  }
}

// kill -9 of the broker in the middle of an idempotent producer's run, then a restart on the same
// data directory and port: the producer (client defaults: idempotent, acks=all, retries until
// delivery.timeout.ms) carries on, and afterwards every acknowledged record is in the log exactly
// once, at the offset it was acknowledged with, in send order per partition. Needs
// $SPATE_COMPAT_CONTROL (tests/compat/broker.sh, with its state in $SPATE_COMPAT_STATE).
package spate.compat;

import static spate.compat.Support.WAIT;
import static spate.compat.Support.check;
import static spate.compat.Support.log;
import static spate.compat.Support.utf8;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

final class RestartProducer {
  private RestartProducer() {}

  static final int RECORDS = 6000;
  static final int KILL_AFTER_ACKNOWLEDGED = 1500;
  /** Records sent per millisecond-ish step: the run spans the kill and the restart. */
  static final int PAUSE_EVERY = 20;

  record Place(int partition, long offset) {}

  static void control(String action) throws Exception {
    String script = CrossProtocol.requireEnv("SPATE_COMPAT_CONTROL", "the broker control script, tests/compat/broker.sh");
    Process process = new ProcessBuilder("bash", script, action).inheritIO().start();
    check(process.waitFor(WAIT.toSeconds() + 30, TimeUnit.SECONDS), "broker.sh " + action + " did not finish");
    check(process.exitValue() == 0, "broker.sh " + action + " exited " + process.exitValue());
  }

  static void run(String bootstrap) throws Exception {
    CrossProtocol.requireEnv("SPATE_COMPAT_CONTROL", "the broker control script, tests/compat/broker.sh");
    String topic = Support.unique("compat-kill9");
    // Created with the spate tool (the test needs it anyway), so that it needs no Kafka admin API.
    CrossProtocol.spate(List.of("topic", "create", topic, "--partitions", "3"), null);
    Map<Integer, Place> acknowledged = new ConcurrentHashMap<>();
    Map<Integer, Exception> failed = new ConcurrentHashMap<>();
    CountDownLatch answered = new CountDownLatch(RECORDS);
    AtomicInteger acknowledgedCount = new AtomicInteger();
    int acknowledgedAtKill;
    int sentAtKill;
    int acknowledgedAtRestart;
    long downMillis;
    // The client's defaults: idempotent, acks=all, retries until delivery.timeout.ms (120 s).
    try (KafkaProducer<byte[], byte[]> producer = Support.producer(bootstrap, Map.of())) {
      int next = 0;
      // First part: until enough records are acknowledged that the kill is mid-run.
      while (acknowledgedCount.get() < KILL_AFTER_ACKNOWLEDGED) {
        check(next < RECORDS / 2, "only " + acknowledgedCount.get() + " of " + next + " records acknowledged before the kill");
        send(producer, topic, next++, acknowledged, failed, answered, acknowledgedCount);
        if (next % PAUSE_EVERY == 0) {
          Thread.sleep(2);
        }
      }
      // Records in flight while the broker dies: keep sending from another thread meanwhile.
      sentAtKill = next;
      int startFrom = next;
      Thread sender = new Thread(() -> {
        try {
          for (int index = startFrom; index < RECORDS; index++) {
            send(producer, topic, index, acknowledged, failed, answered, acknowledgedCount);
            if (index % PAUSE_EVERY == 0) {
              Thread.sleep(2);
            }
          }
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
        }
      }, "sender");
      sender.start();
      acknowledgedAtKill = acknowledgedCount.get();
      long killed = System.nanoTime();
      control("kill9");
      control("restart");
      downMillis = (System.nanoTime() - killed) / 1_000_000;
      acknowledgedAtRestart = acknowledgedCount.get();
      sender.join(WAIT.toMillis());
      check(!sender.isAlive(), "the sender thread did not finish");
      producer.flush();
      check(answered.await(WAIT.toSeconds() + 120, TimeUnit.SECONDS), "not every send was answered");
    }
    log("sent " + RECORDS + " records; killed the broker (kill -9) after " + sentAtKill + " sends and "
        + acknowledgedAtKill + " acknowledgements, restarted it " + downMillis + " ms later ("
        + acknowledgedAtRestart + " acknowledged by then); " + acknowledged.size() + " acknowledged, "
        + failed.size() + " failed");

    List<ConsumerRecord<byte[], byte[]>> records = Support.readAll(bootstrap, topic, null);
    Map<Integer, Place> found = new HashMap<>();
    Map<Integer, Integer> lastIndexOfPartition = new HashMap<>();
    Map<Integer, Long> nextOffsetOfPartition = new HashMap<>();
    for (ConsumerRecord<byte[], byte[]> record : records) {
      String where = topic + "/" + record.partition() + "@" + record.offset();
      int index = Integer.parseInt(new String(record.value(), StandardCharsets.UTF_8));
      Place previous = found.put(index, new Place(record.partition(), record.offset()));
      check(previous == null, "record " + index + " is in the log twice: at " + where + " and at " + previous);
      check(new String(record.key(), StandardCharsets.UTF_8).equals(keyOf(index)), where + ": wrong key");
      Integer before = lastIndexOfPartition.put(record.partition(), index);
      check(before == null || before < index, where + ": record " + index + " after record " + before
          + " (an idempotent producer keeps send order per partition)");
      long expectedOffset = nextOffsetOfPartition.getOrDefault(record.partition(), 0L);
      check(record.offset() == expectedOffset, where + ": expected offset " + expectedOffset);
      nextOffsetOfPartition.put(record.partition(), expectedOffset + 1);
    }
    int lost = 0;
    StringBuilder lostList = new StringBuilder();
    for (Map.Entry<Integer, Place> entry : acknowledged.entrySet()) {
      Place place = found.get(entry.getKey());
      if (!entry.getValue().equals(place)) {
        lost++;
        if (lost <= 10) {
          lostList.append(" ").append(entry.getKey()).append(" acknowledged at ").append(entry.getValue())
              .append(", found at ").append(place).append(";");
        }
      }
    }
    check(lost == 0, lost + " acknowledged records are missing or elsewhere:" + lostList);
    for (Integer index : found.keySet()) {
      check(acknowledged.containsKey(index) || failed.containsKey(index), "record " + index + " is in the log but was "
          + "neither acknowledged nor failed");
    }
    log("every acknowledged record is in the log exactly once at its acknowledged offset (" + records.size()
        + " records read, " + (records.size() - acknowledged.size()) + " of them from failed sends)");
    if (!failed.isEmpty()) {
      Exception example = failed.values().iterator().next();
      throw new Support.CheckFailed(failed.size() + " sends failed across the restart (an idempotent producer with "
          + "the default 120 s delivery timeout must carry every record over a restart of a few seconds): " + example);
    }
  }

  static String keyOf(int index) {
    return "key-" + index % 30;
  }

  static void send(KafkaProducer<byte[], byte[]> producer, String topic, int index, Map<Integer, Place> acknowledged,
      Map<Integer, Exception> failed, CountDownLatch answered, AtomicInteger acknowledgedCount) {
    ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, utf8(keyOf(index)), utf8(String.valueOf(index)));
    producer.send(record, (metadata, error) -> {
      if (error == null) {
        acknowledged.put(index, new Place(metadata.partition(), metadata.offset()));
        acknowledgedCount.incrementAndGet();
      } else {
        failed.put(index, error);
      }
      answered.countDown();
    });
  }
}

// Drives the word-count run against $KAFKA_BOOTSTRAP and checks it: produces sentences of known
// content in three parts, runs WordCountApp as a child JVM, kills it with SIGKILL after it has
// made progress and starts it again, kills the broker with SIGKILL once while the application
// runs ($SPATE_COMPAT_CONTROL kill9, then restart), and meanwhile reads the output topic with
// read_committed. Checks at the end:
//   - every word's count read from the output is the exact count computed from the input, and
//     the output holds exactly one record per word read (caches are off), each word's counts
//     being 1, 2, ..., n in order: no double count, no loss;
//   - the changelog topic has cleanup.policy=compact (DescribeConfigs);
//   - the changelog was compacted by the broker: with read_committed it holds fewer records than
//     the application wrote (one per word read), and every word's last value is its final count.
// Exits 0 only if every check passed.
package spate.compat.streams;

import java.io.File;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Driver {
  private Driver() {}

  static final int PARTITIONS = 3;
  static final int SENTENCES = intFromEnv("COMPAT_STREAMS_SENTENCES", 1200);
  /** How long the run may take to reach each milestone (a debug broker on a busy 2-core machine). */
  /** Over how long the input is produced (the application runs at least that long). */
  static final int PRODUCE_SECONDS = intFromEnv("COMPAT_STREAMS_PRODUCE_S", 40);
  static final Duration WAIT = Duration.ofSeconds(intFromEnv("COMPAT_STREAMS_WAIT_S", 120));
  /** How long the broker gets to compact the changelog after the run. */
  static final Duration COMPACTION_WAIT = Duration.ofSeconds(intFromEnv("COMPAT_STREAMS_COMPACTION_WAIT_S", 60));

  static int failures = 0;

  static void check(boolean condition, String what) {
    System.out.println((condition ? "PASS " : "FAIL ") + what);
    System.out.flush();
    if (!condition) {
      failures++;
    }
  }

  static void log(String message) {
    System.out.println("  " + message);
    System.out.flush();
  }

  static int intFromEnv(String name, int fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : Integer.parseInt(value);
  }

  public static void main(String[] arguments) throws Exception {
    String bootstrap = System.getenv("KAFKA_BOOTSTRAP");
    String control = System.getenv("SPATE_COMPAT_CONTROL");
    if (bootstrap == null || control == null || arguments.length != 1) {
      System.err.println("usage: KAFKA_BOOTSTRAP=... SPATE_COMPAT_CONTROL=broker.sh Driver WORK_DIR");
      System.exit(2);
    }
    File work = new File(arguments[0]);
    String run = UUID.randomUUID().toString().substring(0, 8);
    String applicationId = "wordcount-" + run;
    String input = "sentences-" + run;
    String output = "word-counts-" + run;
    String changelog = applicationId + "-counts-changelog";
    long started = System.nanoTime();

    // The input: sentences of 4 to 12 words from a vocabulary of 120.
    Random random = new Random(13);
    List<String> vocabulary = new ArrayList<>();
    for (int index = 0; index < 120; index++) {
      vocabulary.add("word" + index);
    }
    List<String> sentences = new ArrayList<>();
    Map<String, Long> expected = new TreeMap<>();
    long wordsTotal = 0;
    for (int index = 0; index < SENTENCES; index++) {
      StringBuilder sentence = new StringBuilder();
      int length = 4 + random.nextInt(9);
      for (int word = 0; word < length; word++) {
        // Skewed: a few words are frequent, most are rare, as in text; some in capitals.
        String chosen = vocabulary.get((int) Math.floor(vocabulary.size() * Math.pow(random.nextDouble(), 2.5)));
        sentence.append(word == 0 ? "" : " ").append(word % 5 == 0 ? chosen.toUpperCase(Locale.ROOT) : chosen);
        expected.merge(chosen, 1L, Long::sum);
        wordsTotal++;
      }
      sentences.add(sentence.toString());
    }
    log(SENTENCES + " sentences, " + wordsTotal + " words, " + expected.size() + " distinct, sent over "
        + PRODUCE_SECONDS + " s");

    try (Admin admin = Admin.create(adminConfig(bootstrap))) {
      admin.createTopics(List.of(new NewTopic(input, PARTITIONS, (short) 1), new NewTopic(output, PARTITIONS, (short) 1)))
          .all().get(60, TimeUnit.SECONDS);
    }

    OutputReader reader = new OutputReader(bootstrap, output);
    Thread readerThread = new Thread(reader, "output-reader");
    readerThread.setDaemon(true);
    readerThread.start();
    // The input flows at a steady rate during the whole run, so that both kills land while the
    // application has input to read (not after it caught up).
    InputWriter writer = new InputWriter(bootstrap, input, sentences, PRODUCE_SECONDS);
    Thread writerThread = new Thread(writer, "input-writer");
    writerThread.setDaemon(true);
    App app = new App(bootstrap, applicationId, input, output, work);
    boolean ranToEnd = false;
    try {
      writerThread.start();
      app.start();
      waitFor(reader, app, wordsTotal / 5, "the first instance counts a fifth of the words");
      long atKill = reader.records();
      app.kill();
      log("application killed with SIGKILL after " + atKill + " of " + wordsTotal + " counts were committed, "
          + writer.sent() + " of " + sentences.size() + " sentences sent");
      app.start();
      waitFor(reader, app, wordsTotal * 11 / 20, "the second instance counts past the half");
      long atBrokerKill = reader.records();
      broker(control, "kill9");
      log("broker killed with SIGKILL after " + atBrokerKill + " counts, " + writer.sent() + " sentences sent; restarting it");
      broker(control, "restart");
      writerThread.join(WAIT.toMillis());
      check(writer.error.get() == null && writer.sent() == sentences.size(),
          "every sentence was acknowledged (" + writer.sent() + " of " + sentences.size() + "; " + writer.error.get() + ")");
      waitFor(reader, app, wordsTotal, "all " + wordsTotal + " counts");
      // A double count would show as more records than words: give it time to appear.
      Thread.sleep(3000);
      ranToEnd = true;
    } catch (Exception error) {
      check(false, "the run reached its end: " + error);
    } finally {
      app.stop();
      reader.stop();
      readerThread.join(30_000);
    }
    log("run took " + (System.nanoTime() - started) / 1_000_000_000 + " s; output error: " + reader.error.get());

    check(reader.records() == wordsTotal,
        "the output holds one record per word read: " + reader.records() + " records for " + wordsTotal + " words");
    Map<String, Long> finalCounts = reader.lastCounts();
    List<String> wrong = new ArrayList<>();
    for (Map.Entry<String, Long> word : expected.entrySet()) {
      Long got = finalCounts.get(word.getKey());
      if (!word.getValue().equals(got)) {
        wrong.add(word.getKey() + "=" + got + " (expected " + word.getValue() + ")");
      }
    }
    for (String word : finalCounts.keySet()) {
      if (!expected.containsKey(word)) {
        wrong.add(word + " (not in the input)");
      }
    }
    check(wrong.isEmpty(), "every word's final count equals the count computed from the input (" + expected.size()
        + " words)" + (wrong.isEmpty() ? "" : "; wrong: " + wrong.subList(0, Math.min(10, wrong.size()))));
    check(reader.outOfSequence().isEmpty(), "every word's counts arrive as 1, 2, ..., n (no double count, no gap)"
        + (reader.outOfSequence().isEmpty() ? "" : "; first breaks: " + reader.outOfSequence()));

    // A run that did not reach its end gives the compactor no time: its failure is already told.
    checkChangelog(bootstrap, changelog, expected, wordsTotal, ranToEnd ? COMPACTION_WAIT : Duration.ZERO);
    log("total " + (System.nanoTime() - started) / 1_000_000_000 + " s");
    System.out.println(failures == 0 ? "kafka-streams: all checks passed" : "kafka-streams: " + failures + " check(s) failed");
    System.exit(failures == 0 ? 0 : 1);
  }

  static void checkChangelog(
      String bootstrap, String changelog, Map<String, Long> expected, long written, Duration compactionWait)
      throws Exception {
    String policy;
    try (Admin admin = Admin.create(adminConfig(bootstrap))) {
      ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
      Config config = admin.describeConfigs(List.of(resource)).all().get(60, TimeUnit.SECONDS).get(resource);
      policy = config.get("cleanup.policy") == null ? null : config.get("cleanup.policy").value();
    }
    check("compact".equals(policy), "the changelog " + changelog + " has cleanup.policy=compact (got " + policy + ")");

    long deadline = System.nanoTime() + compactionWait.toNanos();
    long records;
    Map<String, Long> last;
    while (true) {
      Map<String, Long> lastValues = new HashMap<>();
      records = readChangelog(bootstrap, changelog, lastValues);
      last = lastValues;
      if (compacted(records, written, expected.size()) || System.nanoTime() > deadline) {
        break;
      }
      Thread.sleep(3000);
    }
    check(records <= written, "the changelog holds no more committed records than updates were made: "
        + records + " for " + written);
    check(compacted(records, written, expected.size()), "the broker compacted the changelog within " + compactionWait.toSeconds() + " s: "
        + records + " records left of the " + written + " written (read_committed)");
    check(last.equals(expected), "every word's last value in the changelog is its final count ("
        + last.size() + " keys, " + expected.size() + " words)");
  }

  /** Fewer records than written, but at least one per word (an empty read is no compaction). */
  static boolean compacted(long records, long written, int words) {
    return records < written && records >= words;
  }

  /** Reads the changelog with read_committed; fills each key's last count; returns the record count. */
  static long readChangelog(String bootstrap, String changelog, Map<String, Long> last) {
    Properties config = consumerConfig(bootstrap);
    long records = 0;
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> partitions = new ArrayList<>();
      consumer.partitionsFor(changelog, Duration.ofSeconds(60))
          .forEach(info -> partitions.add(new TopicPartition(changelog, info.partition())));
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, Duration.ofSeconds(60));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!reached(consumer, ends) && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(200))) {
          records++;
          // A timestamped store's changelog value: 8 bytes of timestamp, then the count.
          byte[] value = record.value();
          if (value == null) {
            last.remove(record.key());
          } else {
            last.put(record.key(), ByteBuffer.wrap(value, value.length - 8, 8).getLong());
          }
        }
      }
    }
    return records;
  }

  static boolean reached(KafkaConsumer<?, ?> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (consumer.position(end.getKey()) < end.getValue()) {
        return false;
      }
    }
    return true;
  }

  static void waitFor(OutputReader reader, App app, long records, String what) throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (reader.records() < records) {
      if (!app.process.isAlive()) {
        throw new IllegalStateException("the application exited (status " + app.process.exitValue()
            + ", see app-" + app.instance + ".log below) while waiting for " + what);
      }
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("timed out after " + WAIT.toSeconds() + " s waiting for " + what
            + " (" + reader.records() + " of " + records + " counts committed)");
      }
      Thread.sleep(100);
    }
    log(what + ": " + reader.records() + " counts committed");
  }

  /** Sends the sentences at a steady rate with an idempotent producer, in a thread of its own. */
  static final class InputWriter implements Runnable {
    final String bootstrap;
    final String topic;
    final List<String> sentences;
    final long nanosPerSentence;
    final AtomicReference<String> error = new AtomicReference<>();
    private final java.util.concurrent.atomic.AtomicLong acknowledged = new java.util.concurrent.atomic.AtomicLong();

    InputWriter(String bootstrap, String topic, List<String> sentences, int seconds) {
      this.bootstrap = bootstrap;
      this.topic = topic;
      this.sentences = sentences;
      this.nanosPerSentence = TimeUnit.SECONDS.toNanos(seconds) / sentences.size();
    }

    long sent() {
      return acknowledged.get();
    }

    @Override
    public void run() {
      Properties config = new Properties();
      config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
      try (KafkaProducer<String, String> producer =
          new KafkaProducer<>(config, new StringSerializer(), new StringSerializer())) {
        long started = System.nanoTime();
        for (int index = 0; index < sentences.size(); index++) {
          long due = started + index * nanosPerSentence;
          long early = due - System.nanoTime();
          if (early > 0) {
            TimeUnit.NANOSECONDS.sleep(early);
          }
          producer.send(new ProducerRecord<>(topic, "s" + index, sentences.get(index)), (metadata, failure) -> {
            if (failure != null) {
              error.compareAndSet(null, failure.toString());
            } else {
              acknowledged.incrementAndGet();
            }
          });
        }
        producer.flush();
      } catch (Exception failure) {
        error.compareAndSet(null, failure.toString());
      }
    }
  }

  static void broker(String control, String command) throws Exception {
    Process process = new ProcessBuilder("bash", control, command).inheritIO().start();
    if (!process.waitFor(150, TimeUnit.SECONDS) || process.exitValue() != 0) {
      throw new IllegalStateException("broker control `" + command + "` failed");
    }
  }

  static Properties adminConfig(String bootstrap) {
    Properties config = new Properties();
    config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    return config;
  }

  static Properties consumerConfig(String bootstrap) {
    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    return config;
  }

  /** The application as a child JVM: started, killed with SIGKILL, stopped with SIGTERM. */
  static final class App {
    final List<String> command;
    final File work;
    Process process;
    int instance = 0;

    App(String bootstrap, String applicationId, String input, String output, File work) {
      this.work = work;
      this.command = List.of(
          new File(System.getProperty("java.home"), "bin/java").getPath(),
          "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true",
          "-cp", System.getProperty("java.class.path"), WordCountApp.class.getName(),
          bootstrap, applicationId, input, output, new File(work, "state").getPath());
    }

    void start() throws Exception {
      instance++;
      File logFile = new File(work, "app-" + instance + ".log");
      process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(logFile).start();
      log("application instance " + instance + " started (pid " + process.pid() + ", log " + logFile + ")");
    }

    void kill() throws Exception {
      process.destroyForcibly(); // SIGKILL on Linux
      process.waitFor(30, TimeUnit.SECONDS);
    }

    void stop() throws Exception {
      if (process == null || !process.isAlive()) {
        return;
      }
      process.destroy(); // SIGTERM: the application closes its streams
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
      }
    }
  }

  /** Reads the output topic with read_committed from the start, in a thread of its own. */
  static final class OutputReader implements Runnable {
    final String bootstrap;
    final String topic;
    final AtomicReference<String> error = new AtomicReference<>();
    private final Map<String, Long> lastCounts = new HashMap<>();
    private final Map<String, String> outOfSequence = new TreeMap<>();
    private long records = 0;
    private volatile boolean stopping = false;

    OutputReader(String bootstrap, String topic) {
      this.bootstrap = bootstrap;
      this.topic = topic;
    }

    synchronized long records() {
      return records;
    }

    synchronized Map<String, Long> lastCounts() {
      return new TreeMap<>(lastCounts);
    }

    synchronized Map<String, String> outOfSequence() {
      return new TreeMap<>(outOfSequence);
    }

    void stop() {
      stopping = true;
    }

    @Override
    public void run() {
      try (KafkaConsumer<String, Long> consumer =
          new KafkaConsumer<>(consumerConfig(bootstrap), new StringDeserializer(), new LongDeserializer())) {
        List<TopicPartition> partitions = new ArrayList<>();
        for (int partition = 0; partition < PARTITIONS; partition++) {
          partitions.add(new TopicPartition(topic, partition));
        }
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        while (!stopping) {
          for (ConsumerRecord<String, Long> record : consumer.poll(Duration.ofMillis(200))) {
            synchronized (this) {
              records++;
              long previous = lastCounts.getOrDefault(record.key(), 0L);
              if (record.value() != previous + 1 && !outOfSequence.containsKey(record.key())) {
                outOfSequence.put(record.key(), previous + " then " + record.value() + " at "
                    + record.partition() + ":" + record.offset());
              }
              lastCounts.put(record.key(), record.value());
            }
          }
        }
      } catch (RuntimeException failure) {
        error.set(failure.toString());
      }
    }
  }
}

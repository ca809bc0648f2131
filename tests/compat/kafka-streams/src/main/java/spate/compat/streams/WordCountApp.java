// The Kafka Streams 4.1.1 application under test: a word count with
// processing.guarantee=exactly_once_v2. Sentences from the input topic are split into words,
// repartitioned by word, counted in the state store "counts" (changelog topic
// <application.id>-counts-changelog, compacted) and every new count is written to the output
// topic. Record caches are off, so every word read gives exactly one changelog record and one
// output record: the driver can tell a double count from a lost one. Runs until killed.
//
//   WordCountApp BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR
package spate.compat.streams;

import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

public final class WordCountApp {
  private WordCountApp() {}

  public static void main(String[] arguments) throws InterruptedException {
    if (arguments.length != 5) {
      System.err.println("usage: WordCountApp BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR");
      System.exit(2);
    }
    String input = arguments[2];
    String output = arguments[3];
    Properties config = new Properties();
    config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, arguments[0]);
    config.put(StreamsConfig.APPLICATION_ID_CONFIG, arguments[1]);
    config.put(StreamsConfig.STATE_DIR_CONFIG, arguments[4]);
    config.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    config.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    config.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    // One changelog and one output record per word read (no cache folds updates together).
    config.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    // Internal topics (changelog, repartition) roll a segment every few seconds and are cleaned
    // at any dirty ratio, so that a run of a minute leaves closed segments for the compactor.
    config.put(StreamsConfig.topicPrefix("segment.ms"), "3000");
    config.put(StreamsConfig.topicPrefix("min.cleanable.dirty.ratio"), "0.01");
    // The killed instance's member leaves the group when its session expires: 10 s instead of
    // 45 s, so that the restarted instance gets its tasks sooner.
    config.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10_000);
    config.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1_000);
    config.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    config.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);

    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
        .flatMapValues(sentence -> Arrays.asList(sentence.toLowerCase(Locale.ROOT).split("\\s+")))
        .filter((key, word) -> !word.isEmpty())
        .groupBy((key, word) -> word, Grouped.with("counts", Serdes.String(), Serdes.String()))
        .count(Materialized.as("counts"))
        .toStream()
        .to(output, Produced.with(Serdes.String(), Serdes.Long()));

    KafkaStreams streams = new KafkaStreams(builder.build(), config);
    // A broker killed under the application can fail a stream thread; a real deployment replaces
    // it (exactly-once holds across that: the new thread's producer fences the old one's).
    streams.setUncaughtExceptionHandler(error -> {
      System.err.println("word-count: a stream thread failed, replacing it: " + error);
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
    });
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((newState, oldState) -> {
      System.err.println("word-count: state " + oldState + " -> " + newState);
      // Streams gave up (every thread failed): exit, so that the driver sees it at once.
      if (newState == KafkaStreams.State.ERROR || newState == KafkaStreams.State.NOT_RUNNING) {
        stopped.countDown();
      }
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(20));
      stopped.countDown();
    }));
    streams.start();
    stopped.await();
    System.err.println("word-count: stopped in state " + streams.state());
    System.exit(3);
  }
}

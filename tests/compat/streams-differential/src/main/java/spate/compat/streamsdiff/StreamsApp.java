// The Kafka Streams 4.1.1 side of the differential test (streams/tests/differential.rs) and of
// the benchmark (bench/scripts/streams-vs-kafka-streams.sh). The same topologies are written with
// spate-streams in those files; both sides write keys and counts as UTF-8 text, so that the two
// output topics can be compared byte for byte as tables. At least once (the default guarantee),
// record caches off (every update is written), commits every 100 ms. Runs until killed.
//
//   StreamsApp TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT STATE_DIR OUTPUT...
//
// TOPOLOGY is one of
//   differential    two outputs: word counts of the values (repartitioned by word), and counts
//                   per record key in tumbling 1-minute windows with 10 s grace, keyed
//                   "<key>@<window start ms>";
//   map-filter      one output: values not ending in "7", upper-cased;
//   windowed-count  one output: the windowed count above.
package spate.compat.streamsdiff;

import java.time.Duration;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

public final class StreamsApp {
  /** The windowed count's window and grace; the Rust side uses the same numbers. */
  static final Duration WINDOW_SIZE = Duration.ofMinutes(1);
  static final Duration WINDOW_GRACE = Duration.ofSeconds(10);

  private StreamsApp() {}

  public static void main(String[] arguments) throws InterruptedException {
    if (arguments.length < 6) {
      System.err.println(
          "usage: StreamsApp TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT STATE_DIR OUTPUT...");
      System.exit(2);
    }
    String topology = arguments[0];
    String input = arguments[3];
    String[] outputs = Arrays.copyOfRange(arguments, 5, arguments.length);
    Properties config = new Properties();
    config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, arguments[1]);
    config.put(StreamsConfig.APPLICATION_ID_CONFIG, arguments[2]);
    config.put(StreamsConfig.STATE_DIR_CONFIG, arguments[4]);
    config.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    config.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    // Every update is written (no cache folds them), as spate-streams does, and soon.
    config.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    config.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    config.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    config.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);

    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> records =
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));
    switch (topology) {
      case "differential" -> {
        expectOutputs(outputs, 2);
        wordCount(records, outputs[0]);
        windowedCount(records, outputs[1]);
      }
      case "map-filter" -> {
        expectOutputs(outputs, 1);
        records
            .filter((key, value) -> !value.endsWith("7"))
            .mapValues(value -> value.toUpperCase(java.util.Locale.ROOT))
            .to(outputs[0], Produced.with(Serdes.String(), Serdes.String()));
      }
      case "windowed-count" -> {
        expectOutputs(outputs, 1);
        windowedCount(records, outputs[0]);
      }
      default -> {
        System.err.println("unknown topology " + topology);
        System.exit(2);
      }
    }

    KafkaStreams streams = new KafkaStreams(builder.build(), config);
    CountDownLatch stopped = new CountDownLatch(1);
    // A failure ends the process with a status the caller sees, instead of a silent retry.
    streams.setUncaughtExceptionHandler(
        exception -> {
          exception.printStackTrace();
          stopped.countDown();
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    streams.setStateListener(
        (now, before) -> {
          System.err.println("state " + before + " -> " + now);
          if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
            stopped.countDown();
          }
        });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(5))));
    streams.start();
    stopped.await();
    System.exit(1);
  }

  private static void expectOutputs(String[] outputs, int count) {
    if (outputs.length != count) {
      System.err.println("this topology writes " + count + " output topic(s)");
      System.exit(2);
    }
  }

  /** The space-separated words of the values, repartitioned by word and counted. */
  private static void wordCount(KStream<String, String> records, String output) {
    records
        .flatMapValues(line -> Arrays.asList(line.split(" ")))
        .filter((key, word) -> !word.isEmpty())
        .groupBy((key, word) -> word, Grouped.with(Serdes.String(), Serdes.String()))
        .count()
        .toStream()
        .mapValues(count -> Long.toString(count))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
  }

  /** Records per key in tumbling windows of event time (the record timestamps). */
  private static void windowedCount(KStream<String, String> records, String output) {
    records
        .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
        .windowedBy(TimeWindows.ofSizeAndGrace(WINDOW_SIZE, WINDOW_GRACE))
        .count()
        .toStream()
        .map(
            (window, count) ->
                KeyValue.pair(
                    window.key() + "@" + window.window().start(), Long.toString(count)))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
  }
}

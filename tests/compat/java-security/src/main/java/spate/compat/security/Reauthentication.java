/*
 * KIP-368 re-authentication with the Java client (kafka-clients 4.1.1) against a Spate broker whose
 * Kafka listener requires SCRAM-SHA-512 over plaintext (SASL_PLAINTEXT) and answers a session
 * lifetime (connections_max_reauth_ms). Started by tests/tests/reauthentication.rs.
 *
 * A producer sends one record at a time, each acknowledged (acks=all) before the next, for
 * DURATION_MS, which the test makes several session lifetimes long. kafka-clients re-authenticates
 * on its own before each lifetime ends (KIP-368); the broker closes a connection whose lifetime
 * passed, so a send that fails, or connections opened beyond the first ones, would show that it
 * did not. The producer's own metrics say how many re-authentications succeeded and failed.
 *
 * Environment: KAFKA_BOOTSTRAP (host:port), USER_NAME, USER_PASSWORD, TOPIC, DURATION_MS.
 * Prints "sent <n> reauthenticated <m> reauthentication-failed <f> connections <c>" and exits 0
 * when every send succeeded; any failure is printed and exits 1.
 */
package spate.compat.security;

import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Reauthentication {
  /** Between two sends: a steady trickle, so a re-authentication falls between sends. */
  private static final long PAUSE_MS = 100;

  private Reauthentication() {}

  public static void main(String[] arguments) throws Exception {
    String user = env("USER_NAME");
    String password = env("USER_PASSWORD");
    String topic = env("TOPIC");
    long durationMs = Long.parseLong(env("DURATION_MS"));

    Properties properties = new Properties();
    properties.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, env("KAFKA_BOOTSTRAP"));
    properties.put("security.protocol", "SASL_PLAINTEXT");
    properties.put("sasl.mechanism", "SCRAM-SHA-512");
    properties.put(
        "sasl.jaas.config",
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user
            + "\" password=\""
            + password
            + "\";");
    properties.put(ProducerConfig.ACKS_CONFIG, "all");
    properties.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    properties.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    // No retry may hide a closed connection: the first failure fails the program.
    properties.put(ProducerConfig.RETRIES_CONFIG, "0");
    properties.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
    properties.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "20000");
    properties.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");

    long sent = 0;
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(properties)) {
      long end = System.currentTimeMillis() + durationMs;
      while (System.currentTimeMillis() < end) {
        try {
          producer.send(new ProducerRecord<>(topic, "record-" + sent)).get();
        } catch (Exception error) {
          System.out.println("FAIL send " + sent + ": " + error);
          System.exit(1);
        }
        sent += 1;
        Thread.sleep(PAUSE_MS);
      }
      Map<MetricName, ? extends Metric> metrics = producer.metrics();
      System.out.println(
          "sent "
              + sent
              + " reauthenticated "
              + (long) total(metrics, "successful-reauthentication-total")
              + " reauthentication-failed "
              + (long) total(metrics, "failed-reauthentication-total")
              + " connections "
              + (long) total(metrics, "connection-creation-total"));
    }
  }

  /** The producer-wide value of a selector metric (group producer-metrics), 0 when absent. */
  private static double total(Map<MetricName, ? extends Metric> metrics, String name) {
    for (Map.Entry<MetricName, ? extends Metric> entry : metrics.entrySet()) {
      MetricName metric = entry.getKey();
      if (metric.name().equals(name) && metric.group().equals("producer-metrics")) {
        Object value = entry.getValue().metricValue();
        return value instanceof Number number ? number.doubleValue() : 0;
      }
    }
    return 0;
  }

  private static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException("environment variable " + name + " is not set");
    }
    return value;
  }
}

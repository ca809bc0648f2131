/*
 * The Java Kafka client (kafka-clients 4.1.1) against a Spate broker whose Kafka listener requires
 * TLS and SCRAM-SHA-512 (SASL_SSL) with authorization on (issue #17). Started by
 * tests/tests/security_end_to_end.rs, which made the CA, the broker's certificate and the super
 * user `admin`; every Java case runs in this one JVM, because a JVM start costs seconds on the
 * test machine.
 *
 * The cases, in order (later ones use what earlier ones made):
 *   admin-creates-users-and-acls   an AdminClient as admin creates the topic, two SCRAM users
 *                                  (alterUserScramCredentials) and the ACLs of one of them
 *                                  (createAcls), and reads the ACLs back (describeAcls);
 *   user-produces-and-consumes     the new user logs in, produces, and consumes in a consumer
 *                                  group what it produced, exactly, and commits its offsets;
 *   wrong-password-is-refused      SaslAuthenticationException, for an admin and a producer;
 *   no-acl-is-refused              the user without ACLs gets TopicAuthorizationException from
 *                                  a producer and a consumer, and nothing is written.
 *
 * Environment: KAFKA_BOOTSTRAP (host:port), CA_FILE (the PEM CA bundle), ADMIN_PASSWORD, TOPIC,
 * GROUP, USER_NAME and STRANGER (the users to create), USER_PASSWORD.
 * Prints "PASS <case>" or "FAIL <case>: <why>" per case, then "<n> passed, <m> failed", and exits
 * 0 only when every case passed.
 */
package spate.compat.security;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class SecureClients {
  private static final int RECORDS = 50;
  private static final Duration CONSUME_TIMEOUT = Duration.ofSeconds(30);

  private final String bootstrap = env("KAFKA_BOOTSTRAP");
  private final String caFile = env("CA_FILE");
  private final String adminPassword = env("ADMIN_PASSWORD");
  private final String topic = env("TOPIC");
  private final String group = env("GROUP");
  private final String user = env("USER_NAME");
  private final String stranger = env("STRANGER");
  private final String userPassword = env("USER_PASSWORD");

  private int passed;
  private int failed;

  public static void main(String[] arguments) {
    SecureClients run = new SecureClients();
    run.check("admin-creates-users-and-acls", run::adminCreatesUsersAndAcls);
    run.check("user-produces-and-consumes", run::userProducesAndConsumes);
    run.check("wrong-password-is-refused", run::wrongPasswordIsRefused);
    run.check("no-acl-is-refused", run::noAclIsRefused);
    System.out.println(run.passed + " passed, " + run.failed + " failed");
    System.exit(run.failed == 0 ? 0 : 1);
  }

  private interface Case {
    void run() throws Exception;
  }

  private void check(String name, Case test) {
    try {
      test.run();
      passed++;
      System.out.println("PASS " + name);
    } catch (Throwable failure) {
      failed++;
      System.out.println("FAIL " + name + ": " + failure);
      failure.printStackTrace();
    }
    System.out.flush();
  }

  private static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException("set " + name);
    }
    return value;
  }

  /** SASL_SSL with SCRAM-SHA-512 as `name`, trusting the test's CA from its PEM file. */
  private Properties secured(String name, String password) {
    Properties properties = new Properties();
    properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    properties.put("security.protocol", "SASL_SSL");
    properties.put("sasl.mechanism", "SCRAM-SHA-512");
    properties.put(
        "sasl.jaas.config",
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + name
            + "\" password=\""
            + password
            + "\";");
    properties.put("ssl.truststore.type", "PEM");
    properties.put("ssl.truststore.location", caFile);
    // Without this the client retries a refused login for a minute and more.
    properties.put("reconnect.backoff.max.ms", "1000");
    return properties;
  }

  private Admin admin(String name, String password) {
    Properties properties = secured(name, password);
    properties.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
    properties.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    return Admin.create(properties);
  }

  private KafkaProducer<String, String> producer(String name, String password) {
    Properties properties = secured(name, password);
    properties.put(ProducerConfig.ACKS_CONFIG, "all");
    properties.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
    properties.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "20000");
    properties.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    return new KafkaProducer<>(properties, new StringSerializer(), new StringSerializer());
  }

  private KafkaConsumer<String, String> consumer(String name, String password) {
    Properties properties = secured(name, password);
    properties.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    properties.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    properties.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    properties.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
    properties.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
    return new KafkaConsumer<>(properties, new StringDeserializer(), new StringDeserializer());
  }

  private static void expect(boolean condition, String why) {
    if (!condition) {
      throw new AssertionError(why);
    }
  }

  private static AclBinding allow(ResourceType type, String name, String user, AclOperation op) {
    return new AclBinding(
        new ResourcePattern(type, name, PatternType.LITERAL),
        new AccessControlEntry("User:" + user, "*", op, AclPermissionType.ALLOW));
  }

  private void adminCreatesUsersAndAcls() throws Exception {
    try (Admin admin = admin("admin", adminPassword)) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
      ScramCredentialInfo info = new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096);
      admin
          .alterUserScramCredentials(
              List.of(
                  new UserScramCredentialUpsertion(user, info, userPassword),
                  new UserScramCredentialUpsertion(stranger, info, userPassword)))
          .all()
          .get();
      var described = admin.describeUserScramCredentials(List.of(user, stranger)).all().get();
      expect(described.size() == 2, "both users described: " + described);
      List<AclBinding> bindings =
          List.of(
              allow(ResourceType.TOPIC, topic, user, AclOperation.WRITE),
              allow(ResourceType.TOPIC, topic, user, AclOperation.READ),
              allow(ResourceType.GROUP, group, user, AclOperation.READ));
      admin.createAcls(bindings).all().get();
      Collection<AclBinding> listed = admin.describeAcls(AclBindingFilter.ANY).values().get();
      expect(listed.containsAll(bindings), "describeAcls lists the new ACLs: " + listed);
    }
  }

  private void userProducesAndConsumes() throws Exception {
    List<String> sent = new ArrayList<>();
    try (KafkaProducer<String, String> producer = producer(user, userPassword)) {
      for (int number = 0; number < RECORDS; number++) {
        String value = "java-value-" + number + "-" + "x".repeat(number * 37);
        sent.add("java-key-" + number + "=" + value);
        producer.send(new ProducerRecord<>(topic, 0, "java-key-" + number, value)).get();
      }
    }
    List<String> received = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer = consumer(user, userPassword)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + CONSUME_TIMEOUT.toNanos();
      while (received.size() < RECORDS && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
          received.add(record.key() + "=" + record.value());
        }
      }
      expect(received.equals(sent), "consumed exactly what was produced, got " + received);
      consumer.commitSync();
      TopicPartition partition = new TopicPartition(topic, 0);
      Map<TopicPartition, OffsetAndMetadata> committed =
          consumer.committed(java.util.Set.of(partition));
      expect(
          committed.get(partition) != null && committed.get(partition).offset() == RECORDS,
          "the group's committed offset is the end: " + committed);
    }
  }

  private static Throwable root(Throwable error) {
    Throwable cause = error;
    while (cause instanceof ExecutionException && cause.getCause() != null) {
      cause = cause.getCause();
    }
    return cause;
  }

  private void wrongPasswordIsRefused() throws Exception {
    try (Admin admin = admin("admin", "not-the-password")) {
      try {
        admin.describeCluster().clusterId().get();
        throw new AssertionError("describeCluster with a wrong password succeeded");
      } catch (ExecutionException error) {
        expect(
            root(error) instanceof SaslAuthenticationException,
            "an admin with a wrong password: SaslAuthenticationException, got " + root(error));
      }
    }
    try (KafkaProducer<String, String> producer = producer(user, "not-the-password")) {
      try {
        producer.send(new ProducerRecord<>(topic, 0, "never", "written")).get();
        throw new AssertionError("a producer with a wrong password delivered");
      } catch (SaslAuthenticationException error) {
        // send() itself throws when the metadata wait saw the failed login.
      } catch (ExecutionException error) {
        expect(
            root(error) instanceof SaslAuthenticationException,
            "a producer with a wrong password: SaslAuthenticationException, got " + root(error));
      }
    }
  }

  private void noAclIsRefused() throws Exception {
    try (KafkaProducer<String, String> producer = producer(stranger, userPassword)) {
      try {
        producer.send(new ProducerRecord<>(topic, 0, "never", "written")).get();
        throw new AssertionError("a producer without ACLs delivered");
      } catch (TopicAuthorizationException error) {
        expect(error.unauthorizedTopics().contains(topic), "names the topic: " + error);
      } catch (ExecutionException error) {
        expect(
            root(error) instanceof TopicAuthorizationException,
            "a producer without ACLs: TopicAuthorizationException, got " + root(error));
      }
    }
    Properties properties = secured(stranger, userPassword);
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(properties, new StringDeserializer(), new StringDeserializer())) {
      consumer.assign(List.of(new TopicPartition(topic, 0)));
      consumer.seekToBeginning(List.of(new TopicPartition(topic, 0)));
      try {
        consumer.poll(Duration.ofSeconds(10));
        throw new AssertionError("a consumer without ACLs polled without an error");
      } catch (TopicAuthorizationException error) {
        expect(error.unauthorizedTopics().contains(topic), "names the topic: " + error);
      }
    }
    try (Admin admin = admin("admin", adminPassword)) {
      TopicPartition partition = new TopicPartition(topic, 0);
      long end =
          admin
              .listOffsets(
                  Map.of(partition, org.apache.kafka.clients.admin.OffsetSpec.latest()))
              .partitionResult(partition)
              .get()
              .offset();
      expect(end == RECORDS, "nothing more was written: end offset " + end);
    }
  }
}

// The Java kafka-clients producer, consumer and AdminClient: create/describe/list offsets/delete,
// keyed idempotent produce (acks=all) once per codec, a group consume with commits.
// Usage: java -cp 'KAFKA_LIBS/*:.' JavaClient BOOTSTRAP
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class JavaClient {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = "corpus-java";
        Properties adminProperties = new Properties();
        adminProperties.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(adminProperties)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
            admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, topic))).all().get();
            for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
                Properties properties = new Properties();
                properties.put("bootstrap.servers", bootstrap);
                properties.put("compression.type", codec);
                properties.put("key.serializer", StringSerializer.class.getName());
                properties.put("value.serializer", StringSerializer.class.getName());
                try (KafkaProducer<String, String> producer = new KafkaProducer<>(properties)) {
                    for (int index = 0; index < 3; index++) {
                        producer.send(new ProducerRecord<>(topic, "k" + index, codec + "-" + index)).get();
                    }
                }
            }
            Properties properties = new Properties();
            properties.put("bootstrap.servers", bootstrap);
            properties.put("group.id", "corpus-java-group");
            properties.put("auto.offset.reset", "earliest");
            properties.put("enable.auto.commit", "false");
            properties.put("key.deserializer", StringDeserializer.class.getName());
            properties.put("value.deserializer", StringDeserializer.class.getName());
            int received = 0;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(properties)) {
                consumer.subscribe(List.of(topic));
                for (int poll = 0; poll < 20 && received < 15; poll++) {
                    received += consumer.poll(Duration.ofMillis(500)).count();
                    consumer.commitSync();
                }
            }
            admin.listOffsets(Map.of(new TopicPartition(topic, 0), OffsetSpec.latest(),
                    new TopicPartition(topic, 1), OffsetSpec.maxTimestamp())).all().get();
            admin.listConsumerGroupOffsets("corpus-java-group").partitionsToOffsetAndMetadata().get();
            admin.describeConsumerGroups(List.of("corpus-java-group")).all().get();
            admin.deleteTopics(List.of(topic)).all().get();
            System.out.println("java: consumed " + received + " records");
        }
    }
}

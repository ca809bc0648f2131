//! The Kafka driver, on librdkafka (the `rdkafka` crate, built from its bundled sources with the
//! `kafka` feature): any Kafka-API broker, Spate's Kafka listener (`kafka`) and Apache Kafka
//! (`apache-kafka`, `apache-kafka-flush`) with the same client and the same workloads. Only the
//! topic configs differ: Spate's durability settings for Spate, none for Apache Kafka at its
//! defaults, `flush.messages=1` for Apache Kafka with an fsync before every answer.
//!
//! Used the way an application would use librdkafka: one client (its own threads and connection)
//! per producer or consumer, topics created and deleted with the Kafka AdminClient (CreateTopics
//! with the workload's durability as topic configs, which Spate accepts under the same names),
//! records produced with an explicit partition and no key, consumed by assignment from the
//! earliest offset (a group id, which librdkafka requires for assignment, but no join and no
//! commit).
//!
//! Settings follow the native driver's, so both clients do the same work: the producer is
//! idempotent under acks=all (as Spate's client and Kafka 3+ clients are by default), batches
//! up to `batch_bytes` for up to `linger_us`, holds at most `buffer_bytes` unacknowledged, and
//! disables Nagle (librdkafka's default leaves it on; the native client sets TCP_NODELAY).
//!
//! Acknowledgements: librdkafka reports each record on its own (a delivery report per message,
//! on the producer's polling thread), so each record is its own acknowledgement group, timed
//! when its report is seen. A record's [`SendMark`] travels as its delivery opaque.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::spate::topic_configs;
use super::{AcknowledgementCallback, Acknowledgements, ConsumerDriver, ConsumerSettings};
use super::{Driver, DriverError, DriverKind, ProducerDriver, ProducerSettings, StartPosition};
use super::{SendMark, TopicSpec};
use crate::stats::now_nanos;
use crate::workload::AcksSetting;

const DRIVER: &str = "kafka";
const CLIENT_ID: &str = "spate-bench";
/// How long admin requests and the connect check may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `flush` waits for every outstanding record before it reports a failure.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// The pause before a send that found librdkafka's queue full tries again (the producer's own
/// thread drains it meanwhile).
const QUEUE_FULL_RETRY_INTERVAL: Duration = Duration::from_micros(100);
/// Records one consumer `poll` hands over at most: librdkafka returns one record per call, and
/// the runner checks its clock between polls.
const RECORDS_PER_POLL_MAX: usize = 10_000;
/// librdkafka's largest `queue.buffering.max.kbytes`.
const QUEUE_KILOBYTES_MAX: usize = 2_147_483_647;

fn operation_error(operation: &'static str) -> impl Fn(KafkaError) -> DriverError {
    move |error| DriverError::Operation {
        driver: DRIVER,
        operation,
        message: error.to_string(),
    }
}

/// A Kafka-API broker, reached through its bootstrap address.
pub struct KafkaDriver {
    bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
    /// Which broker this is (`Kafka`, `ApacheKafka` or `ApacheKafkaFlush`): decides the topic
    /// configs.
    kind: DriverKind,
}

impl KafkaDriver {
    /// Starts an admin client and checks the broker answers (Metadata). `kind` is one of the
    /// Kafka-API drivers.
    pub fn connect(address: SocketAddr, kind: DriverKind) -> Result<KafkaDriver, DriverError> {
        assert!(
            kind == DriverKind::Kafka || kind.is_apache_kafka(),
            "{kind:?} is no Kafka-API driver"
        );
        let bootstrap = address.to_string();
        let connect_error = |error: KafkaError| DriverError::Connect {
            driver: DRIVER,
            address: bootstrap.clone(),
            message: error.to_string(),
        };
        let admin: AdminClient<DefaultClientContext> =
            base_config(&bootstrap).create().map_err(connect_error)?;
        admin
            .inner()
            .fetch_metadata(None, ADMIN_TIMEOUT)
            .map_err(connect_error)?;
        Ok(KafkaDriver {
            bootstrap,
            admin,
            kind,
        })
    }
}

/// The topic configs that give `topic` its durability on the broker `kind`.
fn topic_configs_of(kind: DriverKind, topic: &TopicSpec) -> Vec<(String, String)> {
    match kind {
        // Kafka's defaults: no flush (the OS writes the page cache back when it chooses).
        DriverKind::ApacheKafka => Vec::new(),
        // Kafka flushes the log when this many messages are unflushed, inside the append and
        // so before the produce answer: one fsync per append (a batch of records).
        DriverKind::ApacheKafkaFlush => vec![("flush.messages".into(), "1".into())],
        _ => topic_configs(topic),
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", CLIENT_ID)
        .set("socket.nagle.disable", "true")
        .set("log_level", "3");
    config
}

/// `key=value` pairs separated by `;`, applied over the driver's own settings of every client
/// it makes ([`KAFKA_CONFIG_ENVIRONMENT`]): for trying librdkafka settings without a rebuild.
fn apply_overrides(config: &mut ClientConfig, overrides: &str) {
    for pair in overrides.split(';').filter(|pair| !pair.trim().is_empty()) {
        if let Some((key, value)) = pair.split_once('=') {
            config.set(key.trim(), value.trim());
        }
    }
}

/// Environment variable with librdkafka settings over the driver's (see [`apply_overrides`]).
pub const KAFKA_CONFIG_ENVIRONMENT: &str = "SPATE_BENCH_KAFKA_CONFIG";

fn with_overrides(mut config: ClientConfig) -> ClientConfig {
    if let Ok(overrides) = std::env::var(KAFKA_CONFIG_ENVIRONMENT) {
        apply_overrides(&mut config, &overrides);
    }
    config
}

fn acks_of(acks: AcksSetting) -> &'static str {
    match acks {
        AcksSetting::None => "0",
        AcksSetting::Leader => "1",
        AcksSetting::All => "all",
    }
}

/// librdkafka's producer settings for `settings`.
fn producer_config(bootstrap: &str, settings: &ProducerSettings) -> ClientConfig {
    let mut config = base_config(bootstrap);
    let idempotent = settings.acks == AcksSetting::All;
    // librdkafka allows at most 5 in flight for an idempotent producer, as Kafka does.
    let in_flight = settings.inflight_requests_per_partition.unwrap_or(5);
    let queue_kilobytes = (settings.buffer_bytes / 1024).clamp(1, QUEUE_KILOBYTES_MAX);
    config
        .set("acks", acks_of(settings.acks))
        .set("enable.idempotence", idempotent.to_string())
        .set(
            "linger.ms",
            format!("{}", settings.linger_us as f64 / 1000.0),
        )
        .set("batch.size", settings.batch_bytes.to_string())
        // A batch is one message set; its framing must fit under the request limit.
        .set(
            "message.max.bytes",
            (settings.batch_bytes + 64 * 1024)
                .max(1_000_000)
                .to_string(),
        )
        .set("queue.buffering.max.kbytes", queue_kilobytes.to_string())
        .set("queue.buffering.max.messages", "2147483647")
        .set(
            "max.in.flight.requests.per.connection",
            in_flight.to_string(),
        )
        .set("compression.type", "none");
    config
}

/// librdkafka's consumer settings for `settings`.
fn consumer_config(bootstrap: &str, settings: &ConsumerSettings) -> ClientConfig {
    let mut config = base_config(bootstrap);
    let partition_fetch_bytes = settings.fetch_bytes_max.min(1024 * 1024);
    config
        .set("fetch.max.bytes", settings.fetch_bytes_max.to_string())
        .set(
            "max.partition.fetch.bytes",
            partition_fetch_bytes.to_string(),
        )
        // librdkafka requires receive.message.max.bytes >= fetch.max.bytes + 512.
        .set(
            "receive.message.max.bytes",
            (settings.fetch_bytes_max + 64 * 1024)
                .max(100_000_000)
                .to_string(),
        )
        // librdkafka assigns partitions only to a consumer with a group id; nothing is committed
        // and no group is joined (assignment, not subscription).
        .set("group.id", CLIENT_ID)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    config
}

impl Driver for KafkaDriver {
    fn kind(&self) -> DriverKind {
        self.kind
    }

    fn create_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        let configs = topic_configs_of(self.kind, topic);
        let partitions = i32::try_from(topic.partitions).map_err(|_| DriverError::Unsupported {
            driver: DRIVER,
            what: "more than 2^31 partitions",
        })?;
        let mut new_topic = NewTopic::new(&topic.name, partitions, TopicReplication::Fixed(1));
        for (name, value) in &configs {
            new_topic = new_topic.set(name, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = block_on(self.admin.create_topics([&new_topic], &options))
            .map_err(operation_error("create topic"))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(DriverError::Server {
                    driver: DRIVER,
                    operation: "create topic",
                    message: format!("{name}: {code}"),
                });
            }
        }
        Ok(())
    }

    fn delete_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = block_on(self.admin.delete_topics(&[topic.name.as_str()], &options))
            .map_err(operation_error("delete topic"))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(DriverError::Server {
                    driver: DRIVER,
                    operation: "delete topic",
                    message: format!("{name}: {code}"),
                });
            }
        }
        Ok(())
    }

    fn producer(
        &self,
        topic: &TopicSpec,
        settings: &ProducerSettings,
        on_acknowledgement: AcknowledgementCallback,
    ) -> Result<Box<dyn ProducerDriver>, DriverError> {
        let context = DeliveryContext {
            value_bytes: settings.message_bytes,
            on_acknowledgement: Mutex::new(on_acknowledgement),
        };
        let producer: ThreadedProducer<DeliveryContext> =
            with_overrides(producer_config(&self.bootstrap, settings))
                .create_with_context(context)
                .map_err(operation_error("create producer"))?;
        Ok(Box::new(KafkaProducer {
            producer,
            topic: topic.name.clone(),
        }))
    }

    fn consumer(
        &self,
        topic: &TopicSpec,
        partitions: &[u32],
        settings: &ConsumerSettings,
    ) -> Result<Box<dyn ConsumerDriver>, DriverError> {
        let consumer: BaseConsumer = with_overrides(consumer_config(&self.bootstrap, settings))
            .create()
            .map_err(operation_error("create consumer"))?;
        let offset = match settings.start {
            StartPosition::Earliest => Offset::Beginning,
        };
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let partition = i32::try_from(*partition).map_err(|_| DriverError::Unsupported {
                driver: DRIVER,
                what: "partition numbers above 2^31",
            })?;
            assignment
                .add_partition_offset(&topic.name, partition, offset)
                .map_err(operation_error("assign partitions"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(operation_error("assign partitions"))?;
        Ok(Box::new(KafkaConsumer { consumer }))
    }
}

/// Receives librdkafka's delivery reports on the producer's polling thread.
struct DeliveryContext {
    value_bytes: usize,
    /// Only the polling thread calls it; the lock is uncontended.
    on_acknowledgement: Mutex<AcknowledgementCallback>,
}

impl ClientContext for DeliveryContext {
    /// librdkafka's log lines (errors, or what `debug` in [`KAFKA_CONFIG_ENVIRONMENT`] asks for)
    /// go to stderr: the harness has no logger.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

impl ProducerContext for DeliveryContext {
    /// The record's [`SendMark`] bits.
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, mark_bits: usize) {
        let acknowledged_nanos = now_nanos();
        let outcome = match delivery_result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(DriverError::Operation {
                driver: DRIVER,
                operation: "produce",
                message: error.to_string(),
            }),
        };
        let mut marks = std::iter::once(SendMark::from_bits(mark_bits as u64));
        let mut on_acknowledgement = self
            .on_acknowledgement
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        on_acknowledgement(Acknowledgements {
            acknowledged_nanos,
            value_bytes: self.value_bytes,
            outcome,
            marks: &mut marks,
        });
    }
}

struct KafkaProducer {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
}

impl ProducerDriver for KafkaProducer {
    fn send(&mut self, partition: u32, value: &[u8], mark: SendMark) -> Result<(), DriverError> {
        const _: () = assert!(usize::BITS == 64, "a send mark travels as a usize");
        let partition = i32::try_from(partition).map_err(|_| DriverError::Unsupported {
            driver: DRIVER,
            what: "partition numbers above 2^31",
        })?;
        let mut record =
            BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, mark.to_bits() as usize)
                .partition(partition)
                .payload(value);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // The closed loop's back-pressure: wait for acknowledgements to free room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(QUEUE_FULL_RETRY_INTERVAL);
                }
                Err((error, _)) => return Err(operation_error("send")(error)),
            }
        }
    }

    fn flush(&mut self) -> Result<(), DriverError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(operation_error("flush"))
    }
}

struct KafkaConsumer {
    consumer: BaseConsumer,
}

impl ConsumerDriver for KafkaConsumer {
    fn poll(
        &mut self,
        wait: Duration,
        on_record: &mut dyn FnMut(u32, &[u8]),
    ) -> Result<usize, DriverError> {
        let mut delivered = 0;
        let mut timeout = wait;
        while delivered < RECORDS_PER_POLL_MAX {
            let Some(result) = self.consumer.poll(timeout) else {
                break;
            };
            let message = result.map_err(operation_error("poll"))?;
            let partition = u32::try_from(message.partition()).unwrap_or_default();
            on_record(partition, message.payload().unwrap_or_default());
            delivered += 1;
            // Whatever else is already fetched, without waiting again.
            timeout = Duration::ZERO;
        }
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(acks: AcksSetting) -> ProducerSettings {
        ProducerSettings {
            batch_bytes: 1024 * 1024,
            linger_us: 500,
            acks,
            message_bytes: 1024,
            buffer_bytes: 64 * 1024 * 1024,
            inflight_requests_per_partition: None,
        }
    }

    #[test]
    fn producer_settings_follow_the_workload() {
        let config = producer_config("127.0.0.1:9092", &settings(AcksSetting::All));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("linger.ms"), Some("0.5"));
        assert_eq!(config.get("batch.size"), Some("1048576"));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("65536"));
        assert_eq!(config.get("socket.nagle.disable"), Some("true"));
        let config = producer_config("127.0.0.1:9092", &settings(AcksSetting::Leader));
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("enable.idempotence"), Some("false"));
    }

    #[test]
    fn a_round_trip_workload_sends_at_once() {
        let round_trip = ProducerSettings {
            linger_us: 0,
            batch_bytes: 16384,
            ..settings(AcksSetting::All)
        };
        let config = producer_config("127.0.0.1:9092", &round_trip);
        assert_eq!(config.get("linger.ms"), Some("0"));
        assert_eq!(config.get("batch.size"), Some("16384"));
    }

    #[test]
    fn overrides_replace_and_add_settings() {
        let mut config = producer_config("127.0.0.1:9092", &settings(AcksSetting::All));
        apply_overrides(&mut config, "linger.ms=5; batch.num.messages = 100000;;");
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("batch.num.messages"), Some("100000"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn apache_kafka_topics_keep_kafkas_defaults_or_flush_every_message() {
        let topic = TopicSpec {
            name: "t".into(),
            partitions: 1,
            durability: crate::workload::DurabilitySetting::GroupCommit,
            group_commit_us: 2_000,
            group_commit_bytes: 1 << 20,
            write_caching: false,
        };
        assert!(topic_configs_of(DriverKind::ApacheKafka, &topic).is_empty());
        assert_eq!(
            topic_configs_of(DriverKind::ApacheKafkaFlush, &topic),
            vec![("flush.messages".to_string(), "1".to_string())]
        );
        assert_eq!(
            topic_configs_of(DriverKind::Kafka, &topic),
            topic_configs(&topic)
        );
    }
}

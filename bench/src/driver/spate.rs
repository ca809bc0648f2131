//! The Spate driver, on the native client library (`spate-client`), used the way an
//! application would use it: one `Client` (one connection, one I/O thread) per producer or
//! consumer, topics created through `Admin` with the workload's durability settings, records
//! sent with an explicit partition and a tag (the record's [`SendMark`]) that the producer's
//! delivery handler gets back with the rest of its batch, consumed with `poll` and read
//! zero-copy from the fetched batches.
//!
//! The delivery handler runs on the client's I/O thread once per acknowledged batch, as soon as
//! the produce response is decoded (after the next request went out): produce-to-ack latency
//! includes the client's own work but never waits for the load-generator thread. It reads the
//! clock once per batch; every record's latency runs from its own send instant to that reading.

use std::net::SocketAddr;
use std::time::Duration;

use spate_client::{
    Acks, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer, SaslMechanism,
    TlsConfig,
};
use spate_client::{DeliveredBatch, ProducerConfig, ProducerRecord, StartAt};

use super::{AcknowledgementCallback, Acknowledgements, ConsumerDriver, ConsumerSettings};
use super::{Driver, DriverError, DriverKind, ProducerDriver, ProducerSettings, StartPosition};
use super::{SendMark, TopicSpec};
use crate::stats::now_nanos;
use crate::workload::{AcksSetting, DurabilitySetting};

const DRIVER: &str = "spate";
const CLIENT_ID: &str = "spate-bench";

fn client_error(operation: &'static str) -> impl Fn(spate_client::Error) -> DriverError {
    move |error| DriverError::Operation {
        driver: DRIVER,
        operation,
        message: error.to_string(),
    }
}

/// How every client of the driver reaches the broker: TLS (`--tls-*`) and SASL (`--sasl-*`),
/// each optional; the default is plaintext without authentication.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub tls: Option<TlsConfig>,
    /// Mechanism, user name and password.
    pub sasl: Option<(SaslMechanism, String, String)>,
}

/// A Spate broker, reached through its bootstrap address.
pub struct SpateDriver {
    address: SocketAddr,
    admin_client: Client,
    /// TLS and SASL for every client this driver makes.
    security: Security,
}

impl SpateDriver {
    /// Starts a client and checks the broker answers (lists topics), with `security` for it
    /// and every later client.
    pub fn connect(address: SocketAddr, security: Security) -> Result<SpateDriver, DriverError> {
        let admin_client = new_client(address, &security)?;
        admin_client
            .admin()
            .list_topics()
            .wait()
            .map_err(|error| DriverError::Connect {
                driver: DRIVER,
                address: address.to_string(),
                message: error.to_string(),
            })?;
        Ok(SpateDriver {
            address,
            admin_client,
            security,
        })
    }
}

fn new_client(address: SocketAddr, security: &Security) -> Result<Client, DriverError> {
    let mut config = ClientConfig {
        tls: security.tls.clone(),
        ..ClientConfig::new(address.to_string()).with_client_id(CLIENT_ID)
    };
    if let Some((mechanism, username, password)) = &security.sasl {
        config = config.with_sasl(*mechanism, username, password);
    }
    Client::new(config).map_err(client_error("start a client"))
}

fn acks_of(acks: AcksSetting) -> Acks {
    match acks {
        AcksSetting::None => Acks::None,
        AcksSetting::Leader => Acks::Leader,
        AcksSetting::All => Acks::All,
    }
}

/// The topic configuration entries for a workload's durability.
pub fn topic_configs(topic: &TopicSpec) -> Vec<(String, String)> {
    let mut configs = match topic.durability {
        DurabilitySetting::GroupCommit => vec![
            ("durability".into(), "group-commit".into()),
            ("group.commit.us".into(), topic.group_commit_us.to_string()),
            (
                "group.commit.bytes".into(),
                topic.group_commit_bytes.to_string(),
            ),
        ],
        DurabilitySetting::FsyncEveryAppend => {
            vec![("durability".into(), "fsync-every-append".into())]
        }
    };
    if topic.write_caching {
        configs.push(("write.caching".into(), "true".into()));
    }
    configs
}

impl Driver for SpateDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Spate
    }

    fn create_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        let mut new_topic = NewTopic::new(topic.name.clone(), topic.partitions);
        for (name, value) in topic_configs(topic) {
            new_topic = new_topic.with_config(name, value);
        }
        self.admin_client
            .admin()
            .create_topic(new_topic)
            .wait()
            .map_err(client_error("create topic"))
    }

    fn delete_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        self.admin_client
            .admin()
            .delete_topic(&topic.name)
            .wait()
            .map_err(client_error("delete topic"))
    }

    fn producer(
        &self,
        topic: &TopicSpec,
        settings: &ProducerSettings,
        on_acknowledgement: AcknowledgementCallback,
    ) -> Result<Box<dyn ProducerDriver>, DriverError> {
        let client = new_client(self.address, &self.security)?;
        let defaults = ProducerConfig::default();
        let config = ProducerConfig {
            acks: acks_of(settings.acks),
            batch_bytes: settings.batch_bytes,
            linger: Duration::from_micros(settings.linger_us),
            buffer_bytes_max: settings.buffer_bytes,
            partition_inflight_requests_max: settings
                .inflight_requests_per_partition
                .unwrap_or(defaults.partition_inflight_requests_max),
            ..defaults
        };
        let value_bytes = settings.message_bytes;
        let mut on_acknowledgement = on_acknowledgement;
        let handler = move |batch: &DeliveredBatch<'_>| {
            let acknowledged_nanos = now_nanos();
            let outcome = batch.result().map_err(|error| DriverError::Operation {
                driver: DRIVER,
                operation: "produce",
                message: error.to_string(),
            });
            on_acknowledgement(Acknowledgements {
                acknowledged_nanos,
                value_bytes,
                outcome,
                marks: &mut batch.tags().map(SendMark::from_bits),
            });
        };
        let producer = client
            .producer_with_handler(config, handler)
            .map_err(client_error("create producer"))?;
        Ok(Box::new(SpateProducer {
            producer,
            _client: client,
            topic: topic.name.clone(),
            value_bytes,
        }))
    }

    fn consumer(
        &self,
        topic: &TopicSpec,
        partitions: &[u32],
        settings: &ConsumerSettings,
    ) -> Result<Box<dyn ConsumerDriver>, DriverError> {
        let client = new_client(self.address, &self.security)?;
        let defaults = ConsumerConfig::default();
        let fetch_bytes_max = settings.fetch_bytes_max;
        let config = ConsumerConfig {
            fetch_bytes_max,
            partition_fetch_bytes_max: defaults.partition_fetch_bytes_max.min(fetch_bytes_max),
            prefetch_bytes_max: defaults.prefetch_bytes_max.max(fetch_bytes_max),
            ..defaults
        };
        let consumer = client
            .consumer(config)
            .map_err(client_error("create consumer"))?;
        let start = match settings.start {
            StartPosition::Earliest => StartAt::Earliest,
        };
        consumer
            .assign(&topic.name, Some(partitions), start)
            .wait()
            .map_err(client_error("assign partitions"))?;
        Ok(Box::new(SpateConsumer {
            consumer,
            _client: client,
        }))
    }
}

struct SpateProducer {
    producer: Producer,
    /// Kept so the I/O thread lives as long as the producer.
    _client: Client,
    topic: String,
    /// Every record's value size (the workload's), as reported with its acknowledgement.
    value_bytes: usize,
}

impl ProducerDriver for SpateProducer {
    fn send(&mut self, partition: u32, value: &[u8], mark: SendMark) -> Result<(), DriverError> {
        debug_assert_eq!(
            value.len(),
            self.value_bytes,
            "records have the workload's size"
        );
        let record = ProducerRecord::new(&self.topic, value).with_partition(partition);
        self.producer
            .send_tagged_blocking(record, mark.to_bits())
            .map_err(client_error("send"))
    }

    fn flush(&mut self) -> Result<(), DriverError> {
        self.producer.flush().wait().map_err(client_error("flush"))
    }
}

impl Drop for SpateProducer {
    fn drop(&mut self) {
        let _ = self.producer.close().wait();
    }
}

struct SpateConsumer {
    consumer: Consumer,
    _client: Client,
}

impl ConsumerDriver for SpateConsumer {
    fn poll(
        &mut self,
        wait: Duration,
        on_record: &mut dyn FnMut(u32, &[u8]),
    ) -> Result<usize, DriverError> {
        let polled = self.consumer.poll(wait).map_err(client_error("poll"))?;
        let mut delivered = 0;
        for record in &polled {
            on_record(record.partition(), record.value().unwrap_or_default());
            delivered += 1;
        }
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_commit_topics_carry_both_intervals() {
        let topic = TopicSpec {
            name: "t".into(),
            partitions: 1,
            durability: DurabilitySetting::GroupCommit,
            group_commit_us: 500,
            group_commit_bytes: 65536,
            write_caching: false,
        };
        let configs = topic_configs(&topic);
        assert!(configs.contains(&("durability".into(), "group-commit".into())));
        assert!(configs.contains(&("group.commit.us".into(), "500".into())));
        assert!(configs.contains(&("group.commit.bytes".into(), "65536".into())));
    }

    #[test]
    fn every_append_topics_name_only_the_policy() {
        let topic = TopicSpec {
            name: "t".into(),
            partitions: 1,
            durability: DurabilitySetting::FsyncEveryAppend,
            group_commit_us: 500,
            group_commit_bytes: 65536,
            write_caching: false,
        };
        assert_eq!(
            topic_configs(&topic),
            vec![("durability".to_string(), "fsync-every-append".to_string())]
        );
    }
}

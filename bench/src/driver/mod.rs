//! The one small interface between a workload and a system under test, so that the same
//! produce, consume and e2e workloads run against Spate (native), a Kafka-API broker (Spate's
//! Kafka listener, or Apache Kafka) and Redis Streams.
//!
//! Apache Kafka has two drivers, one per durability setting (`apache-kafka` at Kafka's defaults,
//! `apache-kafka-flush` with `flush.messages=1`), so that one run reports both; every run says
//! which [`Promise`] its acknowledgements made.
//!
//! A driver connects to a running system (starting it is `target`'s job), prepares a topic,
//! and hands out producers and consumers. A producer reports acknowledgements through a
//! callback that runs on the driver's own thread the moment they are seen, so the
//! load-generator thread never has to stop sending to notice one. Records the system
//! acknowledges together (one Spate produce batch, one Redis reply) are reported in one call. Workload logic (rates,
//! stop conditions, measurement) lives in `runner`, never here.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod redis;
pub mod resp;
pub mod spate;

use std::time::Duration;

use serde::Serialize;

use crate::workload::{AcksSetting, DurabilitySetting};

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// Spate through its native client.
    Spate,
    /// A Kafka-API broker through librdkafka: Spate's Kafka listener when spawned.
    Kafka,
    /// Apache Kafka through librdkafka, at its defaults: acknowledged from the page cache.
    ApacheKafka,
    /// Apache Kafka with `flush.messages=1` on the topic: an fsync before every answer.
    ApacheKafkaFlush,
    /// Redis Streams.
    Redis,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Spate => "spate",
            DriverKind::Kafka => "kafka",
            DriverKind::ApacheKafka => "apache-kafka",
            DriverKind::ApacheKafkaFlush => "apache-kafka-flush",
            DriverKind::Redis => "redis",
        }
    }

    /// The name as part of a JSON key (`throughput_vs_apache_kafka`).
    pub fn key(self) -> String {
        self.name().replace('-', "_")
    }

    /// Whether the driver is Apache Kafka (either durability setting).
    pub fn is_apache_kafka(self) -> bool {
        matches!(self, DriverKind::ApacheKafka | DriverKind::ApacheKafkaFlush)
    }

    /// What an acknowledgement of this system promises under `acks` (for a system the harness
    /// spawned, or one at its defaults).
    pub fn promise(self, acks: AcksSetting) -> Promise {
        match (self, acks) {
            (_, AcksSetting::None) => Promise::NoAcknowledgement,
            (DriverKind::Spate | DriverKind::Kafka, AcksSetting::All) => Promise::FsyncBeforeAck,
            (DriverKind::Spate | DriverKind::Kafka, AcksSetting::Leader) => {
                Promise::WrittenSyncedAfterAck
            }
            (DriverKind::ApacheKafka, _) => Promise::PageCache,
            (DriverKind::ApacheKafkaFlush, _) => Promise::FsyncBeforeAck,
            // The harness starts redis-server with `appendfsync always` under acks=all.
            (DriverKind::Redis, AcksSetting::All) => Promise::FsyncBeforeAck,
            (DriverKind::Redis, AcksSetting::Leader) => Promise::PageCacheSyncedEverySecond,
        }
    }
}

/// What a system has done with a record when it acknowledges it: the durability each row of a
/// comparison makes, said plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Promise {
    /// The record is on disk (an fsync covered it) before the answer: it survives power loss.
    #[serde(rename = "fsync before ack")]
    FsyncBeforeAck,
    /// Written to the disk before the answer, synced within the group-commit interval after it
    /// (Spate's acks=leader).
    #[serde(rename = "written, fsync after ack")]
    WrittenSyncedAfterAck,
    /// In the operating system's page cache: it survives the process, not a power loss or a
    /// kernel crash (Apache Kafka's default; the OS writes it back later).
    #[serde(rename = "page cache")]
    PageCache,
    /// In the page cache, synced once a second (Redis `appendfsync everysec`).
    #[serde(rename = "page cache, fsync every second")]
    PageCacheSyncedEverySecond,
    /// Not acknowledged at all (acks=none).
    #[serde(rename = "none (acks=none)")]
    NoAcknowledgement,
    /// An external system whose durability setting the harness did not choose.
    #[serde(rename = "the external server's own setting")]
    External,
}

impl Promise {
    /// The label of the table and the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Promise::FsyncBeforeAck => "fsync before ack",
            Promise::WrittenSyncedAfterAck => "written, fsync after ack",
            Promise::PageCache => "page cache",
            Promise::PageCacheSyncedEverySecond => "page cache, fsync every second",
            Promise::NoAcknowledgement => "none (acks=none)",
            Promise::External => "the external server's own setting",
        }
    }
}

/// The topic a workload writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub durability: DurabilitySetting,
    pub group_commit_us: u64,
    pub group_commit_bytes: u64,
    /// Spate's `write.caching`: consumers see records once written, before their fsync.
    pub write_caching: bool,
}

/// How a producer batches and what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSettings {
    pub batch_bytes: usize,
    pub linger_us: u64,
    pub acks: AcksSetting,
    /// Size of each record's value (the workload's; sizes pipelines counted in records).
    pub message_bytes: usize,
    /// Memory for records accepted but not acknowledged; `send` blocks when it is used up.
    pub buffer_bytes: usize,
    /// Requests in flight per partition; `None` leaves the system's default (Redis pipelines
    /// are bounded by `buffer_bytes` alone).
    pub inflight_requests_per_partition: Option<usize>,
}

/// Where a consumer starts in each of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
}

/// How a consumer fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub fetch_bytes_max: usize,
    pub message_bytes: usize,
    pub start: StartPosition,
}

/// How the load generator tags a record it sends; handed back with its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendMark {
    /// When the record was sent: nanoseconds on the harness clock (`stats::now_nanos`), below
    /// 2^63.
    pub sent_nanos: u64,
    /// Whether the record counts towards the measurement (sent after the warm-up).
    pub counted: bool,
}

impl SendMark {
    const COUNTED_BIT: u64 = 1 << 63;

    /// The mark as one `u64` (a Spate record tag): the send instant, and the top bit for
    /// `counted`.
    pub fn to_bits(self) -> u64 {
        debug_assert!(
            self.sent_nanos < Self::COUNTED_BIT,
            "a run lasts under 292 years"
        );
        self.sent_nanos | if self.counted { Self::COUNTED_BIT } else { 0 }
    }

    /// The mark [`SendMark::to_bits`] encoded.
    pub fn from_bits(bits: u64) -> SendMark {
        SendMark {
            sent_nanos: bits & !Self::COUNTED_BIT,
            counted: bits & Self::COUNTED_BIT != 0,
        }
    }
}

/// Records a producer handed over that the system acknowledged (or failed) together.
pub struct Acknowledgements<'a> {
    /// When the driver saw them, on the harness clock: one clock reading for all of them.
    pub acknowledged_nanos: u64,
    /// The value size of each record.
    pub value_bytes: usize,
    /// Shared by every record of the group.
    pub outcome: Result<(), DriverError>,
    /// Each record's mark, in send order.
    pub marks: &'a mut dyn Iterator<Item = SendMark>,
}

/// Receives every acknowledgement of one producer, in the order the driver sees them, on a
/// thread of the driver's.
pub type AcknowledgementCallback = Box<dyn FnMut(Acknowledgements<'_>) + Send>;

/// Why a driver operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    #[error("{driver}: cannot connect to {address}: {message}")]
    Connect {
        driver: &'static str,
        address: String,
        message: String,
    },
    #[error("{driver}: {operation} failed: {message}")]
    Operation {
        driver: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error("{driver}: the server answered {operation} with an error: {message}")]
    Server {
        driver: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error("{driver}: {what} is not supported by this driver")]
    Unsupported {
        driver: &'static str,
        what: &'static str,
    },
}

/// A connection to a system under test.
pub trait Driver: Send + Sync {
    fn kind(&self) -> DriverKind;

    /// Creates the topic (it must not exist yet: runs use fresh names).
    fn create_topic(&self, topic: &TopicSpec) -> Result<(), DriverError>;

    /// Removes the topic and its data, best effort (an external system is left as found).
    fn delete_topic(&self, topic: &TopicSpec) -> Result<(), DriverError>;

    /// A producer for `topic`; `on_acknowledgement` sees every record it acknowledges or fails.
    fn producer(
        &self,
        topic: &TopicSpec,
        settings: &ProducerSettings,
        on_acknowledgement: AcknowledgementCallback,
    ) -> Result<Box<dyn ProducerDriver>, DriverError>;

    /// A consumer reading `partitions` of `topic`.
    fn consumer(
        &self,
        topic: &TopicSpec,
        partitions: &[u32],
        settings: &ConsumerSettings,
    ) -> Result<Box<dyn ConsumerDriver>, DriverError>;
}

/// One producer, used by one load-generator thread.
pub trait ProducerDriver: Send {
    /// Hands one record of the workload's `message_bytes` to the system. Blocks while the
    /// producer's buffer is full; `mark` comes back in the record's [`Acknowledgements`].
    fn send(&mut self, partition: u32, value: &[u8], mark: SendMark) -> Result<(), DriverError>;

    /// The load generator is about to wait (open-loop pacing): push out anything buffered that
    /// the driver would otherwise hold.
    fn idle(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Waits until every record handed over has been acknowledged or failed.
    fn flush(&mut self) -> Result<(), DriverError>;
}

/// One consumer, used by one load-generator thread.
pub trait ConsumerDriver: Send {
    /// Waits at most `wait` for records and hands each to `on_record(partition, value)`.
    /// Returns how many it handed over.
    fn poll(
        &mut self,
        wait: Duration,
        on_record: &mut dyn FnMut(u32, &[u8]),
    ) -> Result<usize, DriverError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_mark_survives_its_bits() {
        for mark in [
            SendMark {
                sent_nanos: 0,
                counted: false,
            },
            SendMark {
                sent_nanos: 123_456_789,
                counted: true,
            },
            SendMark {
                sent_nanos: (1 << 63) - 1,
                counted: true,
            },
        ] {
            assert_eq!(SendMark::from_bits(mark.to_bits()), mark);
        }
    }

    #[test]
    fn apache_kafka_promises_the_page_cache_unless_it_flushes_every_message() {
        assert_eq!(
            DriverKind::ApacheKafka.promise(AcksSetting::All),
            Promise::PageCache
        );
        assert_eq!(
            DriverKind::ApacheKafkaFlush.promise(AcksSetting::All),
            Promise::FsyncBeforeAck
        );
        assert_eq!(
            DriverKind::Spate.promise(AcksSetting::All),
            Promise::FsyncBeforeAck
        );
        assert_eq!(
            DriverKind::Redis.promise(AcksSetting::Leader),
            Promise::PageCacheSyncedEverySecond
        );
        for kind in [DriverKind::Spate, DriverKind::ApacheKafkaFlush] {
            assert_eq!(kind.promise(AcksSetting::None), Promise::NoAcknowledgement);
        }
        for promise in [
            Promise::FsyncBeforeAck,
            Promise::PageCache,
            Promise::External,
        ] {
            assert_eq!(serde_json::to_value(promise).unwrap(), promise.label());
        }
        assert_eq!(DriverKind::ApacheKafkaFlush.key(), "apache_kafka_flush");
        assert_eq!(
            serde_json::to_value(DriverKind::ApacheKafka).unwrap(),
            "apache-kafka"
        );
    }
}

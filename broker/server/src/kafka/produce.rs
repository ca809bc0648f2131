//! Kafka Produce (v3–13): each partition's RecordBatch v2 is checked
//! (`spate_protocol::batch::kafka::wrap`: header, counts, CRC-32C, what a producer may send) and
//! stored as received behind Spate's batch header (payload format 2), never re-encoded; the
//! owning shard stamps its offset, enforces the topic's `max.message.bytes` and runs the
//! idempotent-producer checks exactly as for a native batch (`shard::Shard::produce`, through
//! `handlers::data::route`).
//!
//! As Kafka does (`KafkaApis.handleProduceRequest`, `ProduceRequest.validateRecords`): each
//! partition is answered on its own; a partition's records must be exactly one v2 batch
//! (INVALID_RECORD otherwise, magic v0/v1 included; a bad CRC is CORRUPT_MESSAGE); zstd needs
//! v7+ (UNSUPPORTED_COMPRESSION_TYPE); an unknown topic is UNKNOWN_TOPIC_OR_PARTITION and is not
//! created here (Kafka creates topics on Metadata, which every producer asks first); acks other
//! than 0, 1 and -1 is INVALID_REQUIRED_ACKS; a duplicate of one of an idempotent producer's
//! last batches is answered with the original offsets and no error. acks=0 gets no answer at all
//! (`KafkaBody::expects_answer`).
//!
//! Transactional batches (KIP-98) need the request's `transactional_id` (else the whole request
//! is TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers a producer it may not let write
//! transactionally) and one producer id and epoch across the request (else
//! INVALID_PRODUCER_ID_MAPPING for all of it). The first transactional batch of a producer's
//! transaction in a partition is verified with the transaction coordinator before it is
//! appended (KIP-890 part 1, `handlers::data::produce_partitions`): a partition the producer
//! never added is refused TRANSACTION_ABORTABLE (v11+) or INVALID_TXN_STATE with Kafka's
//! message "Partition was not added to the transaction" (v10 and below), and a coordinator
//! that cannot answer now makes it NOT_ENOUGH_REPLICAS (retriable, no metadata refresh), as
//! Kafka 4.1's `ReplicaManager` does. Produce v12 (KIP-890 part 2) does not add partitions
//! implicitly here: Spate does not finalize `transaction.version` 2, so clients add partitions
//! with AddPartitionsToTxn and cap transactional produce at v11, and a v12 transactional batch
//! of an unadded partition is refused like a v11 one.
//!
//! Replication: a broker that does not lead a partition answers NOT_LEADER_OR_FOLLOWER, and
//! from v10 (KIP-951) names the leader it knows (`current_leader`, and its Kafka endpoint in
//! `node_endpoints`) so the producer can go there without a metadata round trip. acks=all on a
//! replicated partition is NOT_ENOUGH_REPLICAS when the ISR is below `min.insync.replicas`,
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND when it fell below while the write waited, and
//! REQUEST_TIMED_OUT when the ISR did not take it within the request's `timeout_ms` (the owning
//! shard decides each).

use std::time::{Duration, Instant};

use spate_kafka_protocol::kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use spate_kafka_protocol::kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::batch::kafka::{field, wrap, Compression, KAFKA_MAGIC};
use spate_protocol::error::BatchError;

use super::data::{named_topic, owned_partition};
use super::errors::kafka_code;
use super::KafkaContext;
use crate::catalog::{is_internal_topic, CatalogSnapshot, ShardId};
use crate::handlers::data::{produce_partitions, transactional_producer};
use crate::handlers::partition_error_code;
use crate::shard::messages::{PartitionError, ProduceAcks, ProducePartition};
use spate_security::Operation;

/// First Produce version that names topics by id (KIP-516).
const TOPIC_IDS_VERSION: i16 = 13;
/// First Produce version whose partition answers carry an error message.
const ERROR_MESSAGE_VERSION: i16 = 8;
/// First Produce version that may carry zstd batches (KIP-110).
const ZSTD_VERSION: i16 = 7;
/// Kafka's transactional batch attribute (bit 4, the same bit in Spate's header).
const TRANSACTIONAL_ATTRIBUTE: u16 = spate_protocol::batch::header::attributes::TRANSACTIONAL;
/// First Produce version whose clients know TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE_VERSION: i16 = 11;

/// The producer's `acks`, as Kafka numbers it; `None`: a value Kafka refuses.
pub(super) fn produce_acks(acks: i16) -> Option<ProduceAcks> {
    match acks {
        0 => Some(ProduceAcks::None),
        1 => Some(ProduceAcks::Leader),
        -1 => Some(ProduceAcks::All),
        _ => None,
    }
}

/// Why a partition was answered without reaching its owner: a Kafka code and, for the
/// versions that carry one, a message saying what was wrong.
#[derive(Debug)]
struct Refusal {
    code: i16,
    message: Option<String>,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code: error.code(),
            message: Some(message.into()),
        }
    }

    fn code(code: i16) -> Refusal {
        Refusal {
            code,
            message: None,
        }
    }
}

pub(crate) async fn produce(
    context: &KafkaContext<'_>,
    version: i16,
    request: ProduceRequest,
) -> ProduceResponse {
    // A partition still opening after the start is waited for as long as the producer waits.
    let timeout_ms = u64::try_from(request.timeout_ms).unwrap_or(0);
    let opening_wait_until = Instant::now() + Duration::from_millis(timeout_ms);
    let acks = produce_acks(request.acks);
    let by_id = version >= TOPIC_IDS_VERSION;
    let snapshot = context.services.snapshot();

    let mut topics = Vec::with_capacity(request.topic_data.len());
    // Where each routed partition's answer goes: (topic index, partition index).
    let mut routed_slots: Vec<(usize, usize)> = Vec::new();
    let mut routed: Vec<Result<(ShardId, ProducePartition), PartitionError>> = Vec::new();
    // Over every partition's first batch, whatever happens to it below, as Kafka's
    // `ProduceRequest.hasTransactionalRecords`.
    let mut has_transactional_records = false;
    for topic in request.topic_data {
        let mut answer = TopicProduceResponse::default();
        if by_id {
            answer.topic_id = topic.topic_id;
        } else {
            answer.name = topic.name.clone();
        }
        let found = named_topic(
            context,
            &snapshot,
            by_id,
            &topic.name,
            topic.topic_id,
            Operation::Write,
        );
        for partition in topic.partition_data {
            let index = partition.index;
            has_transactional_records |= partition
                .records
                .as_deref()
                .is_some_and(is_transactional_kafka_batch);
            let prepared = acks
                .ok_or_else(|| {
                    Refusal::new(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks {} is none of 0, 1 and -1", request.acks),
                    )
                })
                .and_then(|_| found.as_ref().map_err(|code| Refusal::code(*code)))
                .and_then(|topic| {
                    if is_internal_topic(&topic.name) {
                        return Err(Refusal::new(
                            ResponseError::InvalidTopicException,
                            "the topic is internal to the broker; clients may not write it",
                        ));
                    }
                    owned_partition(topic, index)
                        .ok_or(Refusal::code(ResponseError::UnknownTopicOrPartition.code()))
                })
                .and_then(|(owner, key)| {
                    let records = partition.records.as_deref().unwrap_or_default();
                    let batch = stored_batch(version, records)?;
                    Ok((
                        owner,
                        ProducePartition {
                            key,
                            batches: vec![batch],
                            verification: None,
                        },
                    ))
                });
            match prepared {
                Ok(item) => {
                    routed_slots.push((topics.len(), answer.partition_responses.len()));
                    routed.push(Ok(item));
                    answer
                        .partition_responses
                        .push(PartitionProduceResponse::default().with_index(index));
                }
                Err(refusal) => {
                    tracing::debug!(
                        partition = index,
                        code = refusal.code,
                        message = refusal.message.as_deref(),
                        "Kafka produce refused"
                    );
                    answer
                        .partition_responses
                        .push(refused(version, index, refusal));
                }
            }
        }
        topics.push(answer);
    }

    // Transactional records need Write on the transactional id (Kafka checks it only then).
    let transactional_id_authorized = request.transactional_id.as_ref().map(|id| {
        !has_transactional_records
            || context.transactional_id_authorized(Operation::Write, id.as_str())
    });
    let refusal = transactional_refusal(
        has_transactional_records,
        transactional_id_authorized,
        &routed,
    );
    if let Some(refusal) = refusal {
        tracing::debug!(
            code = refusal.code,
            message = refusal.message.as_deref(),
            "Kafka transactional produce refused"
        );
        for topic in &mut topics {
            for answer in &mut topic.partition_responses {
                let refusal = Refusal {
                    code: refusal.code,
                    message: refusal.message.clone(),
                };
                *answer = refused(version, answer.index, refusal);
            }
        }
        return ProduceResponse::default().with_responses(topics);
    }

    let mut leaders_named: Vec<spate_protocol::NodeId> = Vec::new();
    if let Some(acks) = acks {
        let transactional_id = request.transactional_id.map(|id| id.0.to_string());
        let results = produce_partitions(
            context.services,
            acks,
            transactional_id,
            routed,
            opening_wait_until,
        )
        .await;
        for ((topic, slot), result) in routed_slots.into_iter().zip(results) {
            let answer = &mut topics[topic].partition_responses[slot];
            match result {
                Ok(outcome) => {
                    answer.base_offset = outcome.base_offset as i64;
                    answer.log_start_offset = outcome.log_start_offset as i64;
                }
                Err(error) => {
                    tracing::debug!(partition = answer.index, %error, "Kafka produce refused");
                    *answer = refused(version, answer.index, owner_refusal(version, &error));
                    if let PartitionError::NotLeaderOrFollower {
                        leader: Some(leader),
                        leader_epoch,
                    } = error
                    {
                        answer.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(leader_epoch);
                        if !leaders_named.contains(&leader) {
                            leaders_named.push(leader);
                        }
                    }
                }
            }
        }
    }
    ProduceResponse::default()
        .with_responses(topics)
        .with_node_endpoints(node_endpoints(&snapshot, &leaders_named))
}

/// The Kafka endpoints of `nodes` this broker knows (KIP-951's `node_endpoints`, sent from v10).
fn node_endpoints(
    snapshot: &CatalogSnapshot,
    nodes: &[spate_protocol::NodeId],
) -> Vec<NodeEndpoint> {
    nodes
        .iter()
        .filter_map(|node| {
            let broker = snapshot.brokers.get(node)?;
            let (host, port) = broker.kafka.as_ref()?;
            Some(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(*node))
                    .with_host(StrBytes::from_string(host.clone()))
                    .with_port(i32::from(*port))
                    .with_rack(broker.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// Whether a request with transactional batches may go on, as Kafka's `KafkaApis` and
/// `ReplicaManager.handleProduceAppend` decide before anything is appended: transactional
/// records (in any partition's first batch) need the request's transactional id and Write on it
/// (`transactional_id_authorized`: `None` without an id), and the transactional batches of the
/// partitions that go on belong to one producer. `None`: no refusal (also when no batch is
/// transactional).
fn transactional_refusal(
    has_transactional_records: bool,
    transactional_id_authorized: Option<bool>,
    routed: &[Result<(ShardId, ProducePartition), PartitionError>],
) -> Option<Refusal> {
    match transactional_id_authorized {
        None if has_transactional_records => {
            return Some(Refusal::new(
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactional records need the request's transactional id",
            ))
        }
        Some(false) if has_transactional_records => {
            return Some(Refusal::new(
                ResponseError::TransactionalIdAuthorizationFailed,
                "the principal may not write with this transactional id",
            ))
        }
        _ => {}
    }
    let mut producer = None;
    for (_, partition) in routed.iter().flatten() {
        let Some(this) = transactional_producer(&partition.batches) else {
            continue;
        };
        if producer.is_some_and(|first| first != this) {
            return Some(Refusal::new(
                ResponseError::InvalidProducerIdMapping,
                "Transactional records contained more than one producer ID",
            ));
        }
        producer = Some(this);
    }
    None
}

/// An owner's refusal as Kafka 4.1 answers it. The transaction coordinator's verdicts are
/// translated as `ReplicaManager` does: a partition not in the transaction is
/// TRANSACTION_ABORTABLE for clients that know it (v11+, KIP-890) and INVALID_TXN_STATE with
/// Kafka's own message for older ones; a coordinator that cannot answer now is
/// NOT_ENOUGH_REPLICAS, which every client retries without refreshing metadata.
fn owner_refusal(version: i16, error: &PartitionError) -> Refusal {
    match error {
        PartitionError::TransactionAbortable(_) if version >= TRANSACTION_ABORTABLE_VERSION => {
            Refusal::code(ResponseError::TransactionAbortable.code())
        }
        PartitionError::TransactionAbortable(_) => Refusal::new(
            ResponseError::InvalidTxnState,
            "Partition was not added to the transaction",
        ),
        PartitionError::TransactionVerificationUnavailable(underlying) => Refusal::new(
            ResponseError::NotEnoughReplicas,
            format!(
                "Unable to verify the partition has been added to the transaction. Underlying \
                 error: {underlying}"
            ),
        ),
        // The native protocol answers such a batch InvalidRequest; Kafka has its own code.
        PartitionError::InvalidRecord(_) => Refusal {
            code: ResponseError::InvalidRecord.code(),
            message: Some(error.to_string()),
        },
        error => Refusal {
            code: kafka_code(partition_error_code(error)),
            message: Some(error.to_string()),
        },
    }
}

/// A refused partition's answer: Kafka's -1 offsets, and the message from v8 on.
fn refused(version: i16, index: i32, refusal: Refusal) -> PartitionProduceResponse {
    let answer = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(refusal.code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= ERROR_MESSAGE_VERSION {
        answer.with_error_message(refusal.message.map(StrBytes::from_string))
    } else {
        answer
    }
}

/// The format-2 batch to store for a partition's `records`, which must be exactly one Kafka
/// RecordBatch v2 (Kafka's `ProduceRequest.validateRecords`, then the batch checks of
/// `batch::kafka::wrap`).
fn stored_batch(version: i16, records: &[u8]) -> Result<bytes::BytesMut, Refusal> {
    let invalid = |reason: &str| {
        Refusal::new(
            ResponseError::InvalidRecord,
            format!("Produce requests with version {version} {reason}"),
        )
    };
    let Some(batch_bytes) = first_batch_bytes(records) else {
        return Err(invalid("must have at least one record batch per partition"));
    };
    if records.get(field::MAGIC).copied() != Some(KAFKA_MAGIC) {
        return Err(invalid(
            "are only allowed to contain record batches with magic version 2",
        ));
    }
    let batch = &records[..batch_bytes];
    if records.len() > batch_bytes {
        return Err(invalid(
            "are only allowed to contain exactly one record batch per partition",
        ));
    }
    if let Some(&[high, low]) = batch.get(field::ATTRIBUTES..field::ATTRIBUTES + 2) {
        let attributes = u16::from_be_bytes([high, low]);
        let zstd = Compression::from_attributes(attributes) == Some(Compression::Zstd);
        if zstd && version < ZSTD_VERSION {
            return Err(Refusal::new(
                ResponseError::UnsupportedCompressionType,
                format!("Produce requests with version {version} are not allowed to use ZStandard compression"),
            ));
        }
    }
    wrap(batch).map_err(batch_refusal)
}

/// Whether `records` begin with a v2 batch whose transactional attribute is set (Kafka's
/// `firstBatch().isTransactional()`; anything shorter or older is not transactional).
fn is_transactional_kafka_batch(records: &[u8]) -> bool {
    let attributes = records.get(field::ATTRIBUTES..field::ATTRIBUTES + 2);
    records.get(field::MAGIC) == Some(&KAFKA_MAGIC)
        && attributes.is_some_and(|bytes| {
            u16::from_be_bytes([bytes[0], bytes[1]]) & TRANSACTIONAL_ATTRIBUTE != 0
        })
}

/// The size of the first whole batch in `records` (`batchLength` + 12), if one is there.
fn first_batch_bytes(records: &[u8]) -> Option<usize> {
    let length = records.get(field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH)?;
    let length = i32::from_be_bytes(length.try_into().ok()?);
    let bytes = usize::try_from(length).ok()? + field::LENGTH_OVERHEAD;
    (bytes <= records.len() && bytes > field::MAGIC).then_some(bytes)
}

/// A batch `wrap` refused, as Kafka answers it: a CRC or a header that does not hold together
/// is CORRUPT_MESSAGE (`CorruptRecordException`), a batch no producer may send is
/// INVALID_RECORD (`InvalidRecordException`).
fn batch_refusal(error: BatchError) -> Refusal {
    let code = match error {
        BatchError::KafkaInvalidRecord { .. } | BatchError::KafkaMessageFormatTooOld { .. } => {
            ResponseError::InvalidRecord
        }
        _ => ResponseError::CorruptMessage,
    };
    Refusal::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_shorter_than_a_batch_are_no_batch() {
        assert_eq!(first_batch_bytes(&[]), None);
        let mut records = vec![0u8; 30];
        records[8..12].copy_from_slice(&100i32.to_be_bytes());
        assert_eq!(
            first_batch_bytes(&records),
            None,
            "declares more than present"
        );
        records[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(first_batch_bytes(&records), None, "negative length");
        records[8..12].copy_from_slice(&18i32.to_be_bytes());
        assert_eq!(first_batch_bytes(&records), Some(30));
    }

    #[test]
    fn a_legacy_message_set_is_an_invalid_record() {
        // A magic v1 message: offset, size, crc, magic 1 at byte 16.
        let mut records = vec![0u8; 40];
        records[8..12].copy_from_slice(&28i32.to_be_bytes());
        records[16] = 1;
        let refusal = stored_batch(9, &records).expect_err("refused");
        assert_eq!(refusal.code, ResponseError::InvalidRecord.code());
        assert!(refusal.message.unwrap().contains("magic version 2"));
    }

    /// A valid producer batch of `count` records, as a Kafka client encodes it.
    fn producer_batch(count: usize, compression: Compression) -> Vec<u8> {
        use spate_kafka_protocol::kafka_protocol::records::{
            Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..count)
            .map(|index| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                sequence: index as i32 - 1,
                timestamp: 1_000 + index as i64,
                key: Some(bytes::Bytes::from(format!("key-{index}"))),
                value: Some(bytes::Bytes::from(vec![index as u8; 40])),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let codec = match compression {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        };
        let mut buffer = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buffer,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .expect("encode");
        buffer.to_vec()
    }

    /// `records` as stored: the partition leader epoch (outside Kafka's CRC) stamped 0 until
    /// the owner stamps its own.
    fn as_stored(records: &[u8]) -> Vec<u8> {
        let mut expected = records.to_vec();
        expected[field::PARTITION_LEADER_EPOCH..field::MAGIC].fill(0);
        expected
    }

    #[test]
    fn a_producer_batch_is_stored_as_sent_behind_the_spate_header() {
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = producer_batch(5, codec);
            let stored = stored_batch(9, &batch).expect("a valid batch");
            assert_eq!(&stored[64..], &as_stored(&batch)[..], "{codec:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a producer sends as a partition's records, the produce checks answer without
        /// panicking, and what they accept is exactly the bytes sent behind a Spate header.
        #[test]
        fn damaged_records_are_refused_or_stored_as_sent(
            count in 1usize..6,
            flips in proptest::collection::vec((0usize..4096, 1u8..=255), 0..4),
            cut in proptest::option::of(0usize..4096),
            extra in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            version in 3i16..=13,
        ) {
            let mut records = producer_batch(count, Compression::None);
            for (at, mask) in flips {
                let at = at % records.len();
                records[at] ^= mask;
            }
            if let Some(cut) = cut {
                records.truncate(cut % (records.len() + 1));
            }
            records.extend_from_slice(&extra);
            if let Ok(stored) = stored_batch(version, &records) {
                proptest::prop_assert_eq!(&stored[64..], &as_stored(&records)[..]);
            }
        }

        #[test]
        fn random_bytes_never_panic(
            records in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            version in 3i16..=13,
        ) {
            let _ = stored_batch(version, &records);
        }
    }

    #[test]
    fn a_partition_not_in_the_transaction_is_answered_by_the_clients_version() {
        let not_added = PartitionError::TransactionAbortable("not added".into());
        for version in 3..=10 {
            let refusal = owner_refusal(version, &not_added);
            assert_eq!(refusal.code, ResponseError::InvalidTxnState.code());
            assert_eq!(
                refusal.message.as_deref(),
                Some("Partition was not added to the transaction")
            );
        }
        for version in 11..=13 {
            let refusal = owner_refusal(version, &not_added);
            assert_eq!(refusal.code, ResponseError::TransactionAbortable.code());
            assert_eq!(refusal.message, None, "Kafka gives no message here");
        }
        let busy =
            PartitionError::TransactionVerificationUnavailable("CONCURRENT_TRANSACTIONS".into());
        let refusal = owner_refusal(9, &busy);
        assert_eq!(refusal.code, ResponseError::NotEnoughReplicas.code());
        assert!(refusal
            .message
            .unwrap()
            .ends_with("Underlying error: CONCURRENT_TRANSACTIONS"));
        let overtaken = PartitionError::InvalidTxnState("a marker came in between".into());
        assert_eq!(
            owner_refusal(11, &overtaken).code,
            ResponseError::InvalidTxnState.code()
        );
    }

    #[test]
    fn only_a_v2_batch_with_the_transactional_bit_is_transactional() {
        let mut batch = producer_batch(1, Compression::None);
        assert!(!is_transactional_kafka_batch(&batch));
        batch[field::ATTRIBUTES + 1] |= TRANSACTIONAL_ATTRIBUTE as u8;
        assert!(is_transactional_kafka_batch(&batch));
        batch[field::MAGIC] = 1;
        assert!(!is_transactional_kafka_batch(&batch));
        assert!(!is_transactional_kafka_batch(&batch[..field::ATTRIBUTES]));
    }

    #[test]
    fn only_acks_zero_one_and_all_are_taken() {
        assert_eq!(produce_acks(0), Some(ProduceAcks::None));
        assert_eq!(produce_acks(1), Some(ProduceAcks::Leader));
        assert_eq!(produce_acks(-1), Some(ProduceAcks::All));
        assert_eq!(produce_acks(2), None);
        assert_eq!(produce_acks(-2), None);
    }
}

//! Rewriting a stored batch with only some of its records: what log compaction does to each
//! batch it cleans, for both payload formats. Pure functions of bytes.
//!
//! Kafka's rule (`MemoryRecords.filterTo`): a rewritten batch keeps its base offset, its offset
//! range (last offset delta), its producer id, epoch and base sequence, its attributes and its
//! leader epoch; every retained record keeps its offset, timestamp, key, value and headers, in
//! order. The timestamps of the batch become those of what it retains: the first retained
//! record's (base) and the largest (max); a log-append-time batch keeps its own. A Kafka batch
//! (payload format 2) is recompressed with its own codec. A batch left with no record is not
//! built here: [`empty_batch`] makes the header-only batch that stands for it when one is needed
//! (Kafka keeps one so a producer's last sequence survives), without compression, both
//! timestamps set to the given one.
//!
//! Deciding which records to keep (the key map, tombstones, transactions) is the storage
//! engine's job (`spate-storage`'s `compaction`); this file only rebuilds bytes.

use bytes::{BufMut, BytesMut};

use crate::batch::builder::{BatchBuilder, BatchOptions};
use crate::batch::header::{attributes, stamp, BatchHeader, PayloadFormat, BATCH_HEADER_BYTES};
use crate::batch::kafka::compression::{compress, decompress};
use crate::batch::kafka::records::KafkaRecords;
use crate::batch::kafka::varint::{put_varint, put_varlong, varint_bytes, varlong_bytes};
use crate::batch::kafka::{self, field, Compression, KafkaBatchInfo, KAFKA_BATCH_HEADER_BYTES};
use crate::batch::view::{BatchView, RecordView};
use crate::constants::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use crate::error::BatchError;

/// What [`retain`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record is kept: the stored bytes stay as they are.
    Unchanged,
    /// No record is kept.
    Nothing,
    /// Some records are kept: the rewritten batch, stamped with the original base offset and
    /// leader epoch, both CRCs valid.
    Rewritten(BytesMut),
}

/// Calls `visit` with every record of a validated stored batch, in order, decompressing a
/// Kafka batch's records first (into at most [`DECOMPRESSED_BATCH_BYTES_MAX`] bytes).
pub fn for_each_record(
    view: &BatchView<'_>,
    mut visit: impl FnMut(&RecordView<'_>),
) -> Result<(), BatchError> {
    if view.compression() == Compression::None {
        view.records()?.for_each(|record| visit(&record));
        return Ok(());
    }
    let compressed = &kafka::kafka_bytes(view.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
    let records = decompress(view.compression(), compressed, DECOMPRESSED_BATCH_BYTES_MAX)?;
    view.kafka_records(&records)?
        .for_each(|record| visit(&record));
    Ok(())
}

/// Rebuilds the stored batch `stored` (one whole batch, as storage holds it) keeping the
/// records for which `keep` returns true (it sees each record once, in order). A control batch
/// must not be given (their records are never filtered one by one): it panics.
pub fn retain(
    stored: &[u8],
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Retained, BatchError> {
    let view = BatchView::validate(stored, BATCH_BYTES_MAX)?;
    assert_eq!(
        view.attributes() & attributes::CONTROL,
        0,
        "control batches are kept or dropped whole"
    );
    match view.payload_format() {
        PayloadFormat::Rkyv => retain_native(&view, &mut keep),
        PayloadFormat::KafkaV2 => retain_kafka(&view, &mut keep),
    }
}

/// A batch with no record spanning `offset_count` offsets from `base_offset`, stamped with it
/// and `leader_epoch`: payload format 1, a header and an empty archive (72 bytes). `like`
/// gives the producer fields and the transactional and timestamp-type attributes to keep
/// (Kafka's empty batch for a producer's last sequence); `None` makes a batch of no producer.
pub fn empty_batch(
    base_offset: u64,
    offset_count: u32,
    leader_epoch: u32,
    like: Option<&BatchHeader>,
    timestamp_ms: i64,
) -> BytesMut {
    let mut options = BatchOptions {
        initial_capacity_bytes: 0,
        ..BatchOptions::default()
    };
    if let Some(header) = like {
        options.producer_id = header.producer_id;
        options.producer_epoch = header.producer_epoch;
        options.base_sequence = header.base_sequence;
        options.attributes =
            header.attributes & (attributes::TRANSACTIONAL | attributes::TIMESTAMP_LOG_APPEND);
    }
    let mut batch = BatchBuilder::new(options).seal_spanning(offset_count, timestamp_ms);
    stamp(&mut batch, base_offset, leader_epoch);
    batch
}

fn retain_native(
    view: &BatchView<'_>,
    keep: &mut impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Retained, BatchError> {
    let header = *view.header();
    let mut builder = BatchBuilder::new(BatchOptions {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        attributes: header.attributes,
        batch_bytes_max: BATCH_BYTES_MAX,
        initial_capacity_bytes: view.batch_length(),
    });
    let mut dropped = false;
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    for record in view.records()? {
        if !keep(&record) {
            dropped = true;
            continue;
        }
        headers.clear();
        headers.extend(record.headers());
        // The deltas come from a validated batch: they rise and stay below offset_count.
        let offset_delta = (record.offset() - header.base_offset) as u32;
        builder
            .append_at(
                offset_delta,
                record.key(),
                record.value(),
                &headers,
                record.timestamp(),
            )
            // A subset of a valid batch's records fits where the whole batch did; should a
            // batch built another way not, the caller keeps it as it is.
            .map_err(|error| BatchError::InvalidPayload {
                reason: format!("rebuilding the retained records: {error}"),
            })?;
    }
    if !dropped {
        return Ok(Retained::Unchanged);
    }
    if builder.is_empty() {
        return Ok(Retained::Nothing);
    }
    let mut batch = builder.seal_spanning(header.offset_count, 0);
    stamp(&mut batch, header.base_offset, header.leader_epoch);
    Ok(Retained::Rewritten(batch))
}

fn retain_kafka(
    view: &BatchView<'_>,
    keep: &mut impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Retained, BatchError> {
    let info = view.kafka_info().expect("payload format 2");
    let codec = info.compression();
    let stored_records = &kafka::kafka_bytes(view.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
    let inflated;
    let records: &[u8] = if codec == Compression::None {
        stored_records
    } else {
        inflated = decompress(codec, stored_records, DECOMPRESSED_BATCH_BYTES_MAX)?;
        &inflated
    };
    // The same records twice: as views for `keep`, raw for the rewrite (header values stay
    // null where they were).
    let views = view.kafka_records(records)?;
    let raw = KafkaRecords::validate(records, &info)?;
    let mut kept = Vec::with_capacity(raw.len());
    for (record, raw) in views.zip(raw) {
        if keep(&record) {
            kept.push(raw);
        }
    }
    if kept.len() == info.record_count as usize {
        return Ok(Retained::Unchanged);
    }
    if kept.is_empty() {
        return Ok(Retained::Nothing);
    }
    let (base_timestamp, max_timestamp) = if info.is_log_append_time() {
        (info.max_timestamp, info.max_timestamp)
    } else {
        let first = kept[0].timestamp;
        let max = kept.iter().map(|record| record.timestamp).max();
        (first, max.unwrap_or(first))
    };
    let mut body = Vec::with_capacity(records.len());
    for record in &kept {
        put_kafka_record(&mut body, record, info.base_offset as u64, base_timestamp);
    }
    let body = compress(codec, &body)?;
    let rewritten = KafkaBatchInfo {
        base_timestamp,
        max_timestamp,
        // Fits: fewer records than the original batch held.
        record_count: kept.len() as i32,
        batch_bytes: KAFKA_BATCH_HEADER_BYTES + body.len(),
        ..info
    };
    Ok(Retained::Rewritten(wrap_stored(&rewritten, &body)))
}

/// The stored format-2 batch for a Kafka header `info` (base offset and leader epoch as they
/// are stamped) and its records' bytes (compressed as `info` says): both headers, both CRCs.
fn wrap_stored(info: &KafkaBatchInfo, records: &[u8]) -> BytesMut {
    let mut batch = BytesMut::with_capacity(BATCH_HEADER_BYTES + info.batch_bytes);
    batch.resize(BATCH_HEADER_BYTES, 0);
    batch.put_i64(info.base_offset);
    // Fits: the rewritten batch is smaller than the checked original.
    batch.put_i32((info.batch_bytes - field::LENGTH_OVERHEAD) as i32);
    batch.put_i32(info.partition_leader_epoch);
    batch.put_u8(kafka::KAFKA_MAGIC);
    batch.put_u32(0);
    batch.put_u16(info.attributes);
    batch.put_i32(info.last_offset_delta);
    batch.put_i64(info.base_timestamp);
    batch.put_i64(info.max_timestamp);
    batch.put_i64(info.producer_id);
    batch.put_i16(info.producer_epoch);
    batch.put_i32(info.base_sequence);
    batch.put_i32(info.record_count);
    batch.put_slice(records);
    let kafka_crc = crc32c::crc32c(&batch[BATCH_HEADER_BYTES + field::CRC_START..]);
    batch[BATCH_HEADER_BYTES + field::CRC..][..4].copy_from_slice(&kafka_crc.to_be_bytes());
    kafka::spate_header_for(info).encode(&mut batch);
    let crc = kafka::compute_spate_crc(&batch);
    batch[crate::batch::header::field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(batch.len(), BATCH_HEADER_BYTES + info.batch_bytes);
    batch
}

/// Appends one Kafka record (`DefaultRecord`) with its offset and timestamp as deltas from the
/// rewritten batch's base, and its headers' bytes exactly as they were.
fn put_kafka_record(
    target: &mut Vec<u8>,
    record: &kafka::records::KafkaRecord<'_>,
    base_offset: u64,
    base_timestamp: i64,
) {
    let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
    // Fits: a validated delta is at most lastOffsetDelta, an i32.
    let offset_delta = (record.offset - base_offset) as i32;
    let nullable_bytes = |bytes: Option<&[u8]>| {
        bytes.map_or(varint_bytes(-1), |bytes| {
            varint_bytes(bytes.len() as i32) + bytes.len()
        })
    };
    let body_bytes = 1
        + varlong_bytes(timestamp_delta)
        + varint_bytes(offset_delta)
        + nullable_bytes(record.key)
        + nullable_bytes(record.value)
        + varint_bytes(record.header_count as i32)
        + record.headers.len();
    // Fits: one record is smaller than its 16 MiB batch.
    put_varint(target, body_bytes as i32);
    let body_start = target.len();
    target.put_u8(0);
    put_varlong(target, timestamp_delta);
    put_varint(target, offset_delta);
    for bytes in [record.key, record.value] {
        match bytes {
            Some(bytes) => {
                put_varint(target, bytes.len() as i32);
                target.put_slice(bytes);
            }
            None => put_varint(target, -1),
        }
    }
    put_varint(target, record.header_count as i32);
    target.put_slice(record.headers);
    debug_assert_eq!(target.len() - body_start, body_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::record::Record;
    use crate::batch::NO_HEADERS;

    /// Key, value, timestamp.
    type TestRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

    fn native_batch(records: &[TestRecord<'_>], base_offset: u64) -> BytesMut {
        let mut builder = BatchBuilder::new(BatchOptions {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 40,
            ..BatchOptions::default()
        });
        for (key, value, timestamp) in records {
            builder
                .append(*key, *value, NO_HEADERS, *timestamp)
                .expect("fits");
        }
        let mut batch = builder.seal().expect("not empty");
        stamp(&mut batch, base_offset, 3);
        batch
    }

    fn records_of(batch: &[u8]) -> Vec<Record> {
        let view = BatchView::validate(batch, BATCH_BYTES_MAX).expect("valid");
        let mut records = Vec::new();
        for_each_record(&view, |record| records.push(record.to_record())).expect("records");
        records
    }

    #[test]
    fn a_native_batch_keeps_offsets_timestamps_and_its_range() {
        let batch = native_batch(
            &[
                (Some(b"a"), Some(b"1"), 500),
                (Some(b"b"), Some(b"2"), 400),
                (Some(b"a"), None, 600),
            ],
            100,
        );
        let Retained::Rewritten(rewritten) =
            retain(&batch, |record| record.offset() != 100).expect("retain")
        else {
            panic!("expected a rewrite");
        };
        let view = BatchView::validate(&rewritten, BATCH_BYTES_MAX).expect("valid");
        let header = view.header();
        assert_eq!(header.base_offset, 100);
        assert_eq!(header.leader_epoch, 3);
        assert_eq!(header.offset_count, 3);
        assert_eq!(header.record_count, 2);
        assert_eq!((header.producer_id, header.base_sequence), (7, 40));
        assert_eq!((header.first_timestamp, header.max_timestamp), (400, 600));
        let records = records_of(&rewritten);
        assert_eq!(
            records
                .iter()
                .map(|record| (record.offset, record.timestamp, record.value.is_none()))
                .collect::<Vec<_>>(),
            vec![(101, 400, false), (102, 600, true)]
        );
    }

    #[test]
    fn keeping_all_or_nothing_builds_nothing() {
        let batch = native_batch(&[(Some(b"a"), Some(b"1"), 5)], 0);
        assert_eq!(
            retain(&batch, |_| true).expect("retain"),
            Retained::Unchanged
        );
        assert_eq!(
            retain(&batch, |_| false).expect("retain"),
            Retained::Nothing
        );
    }

    #[test]
    fn an_empty_batch_spans_its_offsets_with_no_record() {
        let header = BatchHeader::decode(&native_batch(&[(None, None, 1)], 0)).expect("header");
        let batch = empty_batch(50, 9, 0, Some(&header), 77);
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("valid");
        assert_eq!(view.base_offset(), 50);
        assert_eq!(view.next_offset(), 59);
        assert_eq!(view.record_count(), 0);
        assert_eq!(view.base_sequence(), 40);
        assert_eq!((view.first_timestamp(), view.max_timestamp()), (77, 77));
        assert_eq!(view.records().expect("records").count(), 0);
        assert_eq!(batch.len(), 72);
        let filler = empty_batch(50, 9, 0, None, -1);
        assert_eq!(
            BatchView::validate(&filler, BATCH_BYTES_MAX)
                .expect("valid")
                .producer_id(),
            -1
        );
    }

    fn kafka_batch(codec: Compression) -> BytesMut {
        use kafka_protocol::records::{
            Compression as KafkaCompression, Record as KafkaRecord, RecordBatchEncoder,
            RecordEncodeOptions, TimestampType,
        };
        let compression = match codec {
            Compression::None => KafkaCompression::None,
            Compression::Gzip => KafkaCompression::Gzip,
            Compression::Snappy => KafkaCompression::Snappy,
            Compression::Lz4 => KafkaCompression::Lz4,
            Compression::Zstd => KafkaCompression::Zstd,
        };
        let record = |offset: i64, key: &'static [u8], value: Option<&'static [u8]>| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 9,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_000 + offset,
            key: Some(bytes::Bytes::from_static(key)),
            value: value.map(bytes::Bytes::from_static),
            headers: [(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                None,
            )]
            .into_iter()
            .collect(),
        };
        let records = vec![
            record(0, b"a", Some(b"1")),
            record(1, b"b", Some(b"2")),
            record(2, b"a", None),
            record(3, b"c", Some(b"3")),
        ];
        let mut encoded = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut encoded,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        let mut stored = kafka::wrap(&encoded).expect("wrap");
        stamp(&mut stored, 70, 2);
        stored
    }

    #[test]
    fn a_kafka_batch_is_rewritten_and_recompressed_with_its_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let stored = kafka_batch(codec);
            let Retained::Rewritten(rewritten) =
                retain(&stored, |record| record.key() != Some(b"a")).expect("retain")
            else {
                panic!("expected a rewrite");
            };
            let view = BatchView::validate(&rewritten, BATCH_BYTES_MAX).expect("valid");
            assert_eq!(view.compression(), codec, "{codec:?}");
            let info = view.kafka_info().expect("format 2");
            assert_eq!(info.base_offset, 70);
            assert_eq!(info.partition_leader_epoch, 2);
            assert_eq!(info.last_offset_delta, 3);
            assert_eq!(info.record_count, 2);
            assert_eq!((info.base_sequence, info.producer_id), (0, 9));
            assert_eq!((info.base_timestamp, info.max_timestamp), (1_001, 1_003));
            let records = records_of(&rewritten);
            assert_eq!(
                records
                    .iter()
                    .map(|record| (record.offset, record.timestamp, record.headers.len()))
                    .collect::<Vec<_>>(),
                vec![(71, 1_001, 1), (73, 1_003, 1)],
                "{codec:?}"
            );
            // The null header value stays null in the Kafka bytes a Kafka consumer reads.
            let decoded = kafka_protocol::records::RecordBatchDecoder::decode(
                &mut bytes::Bytes::copy_from_slice(kafka::kafka_bytes(&rewritten)),
            )
            .expect("Kafka decodes it");
            let values: Vec<_> = decoded.records[0].headers.values().cloned().collect();
            assert_eq!(values, vec![None], "{codec:?}");
        }
    }
}

//! Kafka's produce rule for compacted topics: every record has a key. Compaction keeps the last
//! record of each key, so a record without one has no place in the log (Kafka refuses it with
//! INVALID_RECORD, "Compacted topic cannot accept message without key").
//!
//! The check reads the records of each batch as they will be stored, both payload formats:
//! native rkyv records in place, a Kafka v2 batch's records in place or, when compressed,
//! inflated once into at most `kafka_decompressed_bytes_max` bytes (as ListOffsets does) and
//! freed at once. A batch whose header or CRC is bad is left to the storage engine, which
//! refuses it with its own error; control batches (transaction markers) are not records of the
//! topic's data and are not checked.
//!
//! What is not here: which topics are compacted (the partition knows its configuration).

use spate_protocol::batch::header::attributes;
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::{kafka_bytes, Compression, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::{BatchView, PayloadFormat};
use spate_protocol::BatchError;

use super::messages::PartitionError;

/// Refuses `batch` if one of its records has no key (Kafka: INVALID_RECORD), or if its records
/// cannot be read to tell (a compressed batch larger than `decompressed_bytes_max` once
/// inflated, records that do not parse).
pub fn check_every_record_has_a_key(
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Result<(), PartitionError> {
    let Ok(view) = BatchView::validate(batch, usize::MAX) else {
        // The storage engine validates every batch before it appends any, and answers this one.
        return Ok(());
    };
    if view.attributes() & attributes::CONTROL != 0 {
        return Ok(());
    }
    let unreadable = |error: BatchError| {
        PartitionError::InvalidRecord(format!(
            "the records of a batch for a compacted topic must be readable to check their keys: \
             {error}"
        ))
    };
    let codec = view.compression();
    let inflated;
    let records = if view.payload_format() == PayloadFormat::KafkaV2 && codec != Compression::None {
        let compressed = &kafka_bytes(view.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
        inflated = decompress(codec, compressed, decompressed_bytes_max).map_err(unreadable)?;
        view.kafka_records(&inflated).map_err(unreadable)?
    } else {
        view.records().map_err(unreadable)?
    };
    for record in records {
        if record.key().is_none() {
            return Err(PartitionError::InvalidRecord(format!(
                "a compacted topic cannot accept a record without a key (the record at offset \
                 delta {} of the batch has none)",
                record.offset() - view.base_offset()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};

    fn native_batch(keys: &[Option<&[u8]>]) -> bytes::BytesMut {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for key in keys {
            builder
                .append(*key, Some(b"value"), NO_HEADERS, 1_000)
                .expect("fits");
        }
        builder.seal().expect("seals")
    }

    #[test]
    fn native_batch_with_every_key_passes() {
        let batch = native_batch(&[Some(b"a"), Some(b""), Some(b"c")]);
        assert_eq!(check_every_record_has_a_key(&batch, 1 << 20), Ok(()));
    }

    #[test]
    fn native_batch_with_a_keyless_record_is_refused_naming_it() {
        let batch = native_batch(&[Some(b"a"), None, Some(b"c")]);
        let error = check_every_record_has_a_key(&batch, 1 << 20).unwrap_err();
        let PartitionError::InvalidRecord(message) = error else {
            panic!("refused as {error:?}");
        };
        assert!(message.contains("offset delta 1"), "{message}");
    }
}

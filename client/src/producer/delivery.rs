//! Batched delivery reports: a producer-wide [`DeliveryHandler`] that hears once per settled
//! batch about every record sent to it with a tag (`Producer::send_tagged`).
//!
//! This is the cheap way to learn each record's fate when sending many: the record carries a
//! plain `u64` (no allocation, no boxed callback), and the I/O thread makes one call per batch
//! (typically hundreds or thousands of records) instead of one per record. It is librdkafka's
//! delivery-report callback with a per-message opaque value. This file defines what the handler
//! sees; the sender (`sender`) calls it, the accumulator (`accumulator`) keeps the tags.

use crate::error::Error;
use crate::producer::accumulator::TaggedRecord;

/// The tagged records of one batch, settled together: all delivered, or all failed.
///
/// Records are listed in the order `send_tagged` accepted them, which is their offset order.
#[derive(Debug, Clone, Copy)]
pub struct DeliveredBatch<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: u32,
    /// The batch's base offset (`None` under `Acks::None`), or why it failed.
    pub(crate) outcome: Result<Option<u64>, &'a Error>,
    pub(crate) records: &'a [TaggedRecord],
}

impl<'a> DeliveredBatch<'a> {
    /// The topic the records were written to.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The partition the records were written to.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// `Ok` when every record of the batch was written; the error that failed them all
    /// otherwise (after the producer's retries).
    pub fn result(&self) -> Result<(), &'a Error> {
        self.outcome.map(|_| ())
    }

    /// How many tagged records the batch held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch held no tagged record (the handler is not called then).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records' tags, in offset order.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = u64> + 'a {
        self.records.iter().map(|record| record.tag)
    }

    /// Each record's tag and offset; the offset is `None` when the batch failed or under
    /// `Acks::None`, where the broker does not answer.
    pub fn records(&self) -> impl ExactSizeIterator<Item = (u64, Option<u64>)> + 'a {
        let base_offset = self.outcome.ok().flatten();
        self.records.iter().map(move |record| {
            let offset = base_offset.map(|base| base + u64::from(record.offset_delta));
            (record.tag, offset)
        })
    }
}

/// Hears about every record sent with `Producer::send_tagged`, one call per batch.
///
/// It runs on the client's I/O thread, so it must not block (it may hand the report to another
/// thread). Any `FnMut(&DeliveredBatch<'_>) + Send + 'static` closure is a handler.
pub trait DeliveryHandler: Send + 'static {
    /// Called once for each settled batch that holds tagged records.
    fn delivered(&mut self, batch: &DeliveredBatch<'_>);
}

impl<F> DeliveryHandler for F
where
    F: FnMut(&DeliveredBatch<'_>) + Send + 'static,
{
    fn delivered(&mut self, batch: &DeliveredBatch<'_>) {
        self(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(offset_delta: u32, tag: u64) -> TaggedRecord {
        TaggedRecord { offset_delta, tag }
    }

    #[test]
    fn each_record_gets_the_base_offset_plus_its_delta() {
        let records = [tagged(0, 70), tagged(2, 72), tagged(3, 73)];
        let batch = DeliveredBatch {
            topic: "t",
            partition: 4,
            outcome: Ok(Some(100)),
            records: &records,
        };
        let seen: Vec<_> = batch.records().collect();
        assert_eq!(
            seen,
            vec![(70, Some(100)), (72, Some(102)), (73, Some(103))]
        );
        assert_eq!(batch.tags().collect::<Vec<_>>(), vec![70, 72, 73]);
        assert!(batch.result().is_ok());
    }

    #[test]
    fn a_failed_batch_reports_its_error_and_no_offsets() {
        let error = Error::Closed { what: "producer" };
        let records = [tagged(0, 1)];
        let batch = DeliveredBatch {
            topic: "t",
            partition: 0,
            outcome: Err(&error),
            records: &records,
        };
        assert!(matches!(batch.result(), Err(Error::Closed { .. })));
        assert_eq!(batch.records().collect::<Vec<_>>(), vec![(1, None)]);
    }
}

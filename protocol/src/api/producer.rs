//! InitProducerId: a producer asks the broker for an identity (producer id and epoch) before it
//! sends idempotent batches.
//!
//! An idempotent producer stamps every batch with its producer id, epoch and a per-partition
//! `base_sequence` (see `batch::sequence`); the owning shard accepts a batch only if its sequence
//! follows the last one it stored for that producer, and answers a retried copy of one of the
//! last [`PRODUCER_BATCHES_RETAINED`](crate::constants::PRODUCER_BATCHES_RETAINED) batches with
//! the offset the original got. So retries neither duplicate nor reorder records, and a producer
//! may keep several requests in flight per partition.
//!
//! A request with `producer_id` = [`NO_PRODUCER_ID`] asks for a new id (epoch 0). A request
//! naming the id and epoch the producer holds asks for the same id with the next epoch (Kafka's
//! KIP-360 epoch bump): a producer does that after an unrecoverable sequence error, and the new
//! epoch restarts every partition's sequence at 0. When the epoch would overflow, the broker
//! hands out a new id instead.
//!
//! Version 1 adds the transactional producer's `transactional_id` and transaction timeout
//! (Kafka's InitProducerId fields). With an id, the transaction coordinator answers: the id's
//! producer id with the next epoch, which fences every older instance of the producer (their
//! transactional requests and batches are refused from then on) and aborts a transaction the
//! old instance left open. Without one it is the version 0 request. This file does not know how
//! the broker allocates ids or keeps them unique.

use crate::api::wire::{wire, OptionalTransactionalId};
use crate::batch::header::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use crate::error::ErrorCode;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InitProducerIdRequest {
        /// [`NO_PRODUCER_ID`] for a new producer, else the id the producer holds.
        pub producer_id: i64 as i64,
        /// [`NO_PRODUCER_EPOCH`] for a new producer, else the epoch the producer holds.
        pub producer_epoch: i16 as i16,
        /// A transactional producer's id; `None` for an idempotent producer.
        #[since = 1]
        pub transactional_id: Option<String> as OptionalTransactionalId,
        /// How long a transaction may stay open before the coordinator aborts it; ignored
        /// without a transactional id.
        #[since = 1]
        pub transaction_timeout_ms: u32 as u32,
    }
}

impl Default for InitProducerIdRequest {
    fn default() -> Self {
        Self {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            transactional_id: None,
            transaction_timeout_ms: 0,
        }
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InitProducerIdResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
    }
}

impl Default for InitProducerIdResponse {
    fn default() -> Self {
        Self {
            error_code: ErrorCode::None,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Message;
    use bytes::BytesMut;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn init_producer_id_messages_round_trip(
            producer_id in any::<i64>(),
            producer_epoch in any::<i16>(),
            code in 0u16..64,
        ) {
            let request = InitProducerIdRequest {
                producer_id,
                producer_epoch,
                ..InitProducerIdRequest::default()
            };
            let mut bytes = BytesMut::new();
            Message::encode(&request, 0, &mut bytes).unwrap();
            prop_assert_eq!(<InitProducerIdRequest as Message>::decode(0, bytes.freeze()).unwrap(), request);

            let response = InitProducerIdResponse {
                error_code: ErrorCode::from_u16_lossy(code),
                producer_id,
                producer_epoch,
            };
            let mut bytes = BytesMut::new();
            Message::encode(&response, 0, &mut bytes).unwrap();
            prop_assert_eq!(<InitProducerIdResponse as Message>::decode(0, bytes.freeze()).unwrap(), response);
        }

        #[test]
        fn init_producer_id_decoders_never_panic(body in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = <InitProducerIdRequest as Message>::decode(0, body.clone().into());
            let _ = <InitProducerIdResponse as Message>::decode(0, body.into());
        }
    }
}

//! Transactions: the requests a transactional producer sends besides its produce requests,
//! with Kafka's meaning (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit).
//!
//! A transactional producer first gets its identity with InitProducerId (version 1, with its
//! `transactional_id`), which fences older instances. In a transaction it names each partition
//! to the coordinator (AddPartitionsToTxn) before the partition's first batch, names the group
//! whose offsets it will commit (AddOffsetsToTxn) before committing them with TxnOffsetCommit
//! (held by the group coordinator until the transaction ends), and ends the transaction with
//! EndTxn: commit or abort, written as markers to every partition and group of the transaction.
//! Every request carries the producer id and epoch, so a fenced instance is refused
//! (`ProducerFenced`). This file holds the messages only; the state machine is the broker's.

use crate::api::group::{OffsetCommitPartition, PartitionResult, TopicPartitionList};
use crate::api::wire::TransactionalId;
use crate::api::wire::{wire, ErrorText, GroupId, GroupInstanceId, List, MemberId};
use crate::api::TopicPartitions;
use crate::constants::TOPICS_PER_MESSAGE_MAX;
use crate::error::ErrorCode;

wire! {
    /// Adds partitions to the producer's ongoing transaction (starting it with the first).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AddPartitionsToTxnRequest {
        pub transactional_id: String as TransactionalId,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        pub topics: Vec<TopicPartitionList> as List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AddPartitionsToTxnResponse {
        /// A failure of the whole request (fenced, wrong state, coordinator); the partitions
        /// then repeat it.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// Each partition's outcome; when one fails, the others are answered
        /// `OperationNotAttempted`, as in Kafka.
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// Adds a consumer group's offsets partition to the transaction, before TxnOffsetCommit.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AddOffsetsToTxnRequest {
        pub transactional_id: String as TransactionalId,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        pub group_id: String as GroupId,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AddOffsetsToTxnResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    /// Commits or aborts the producer's ongoing transaction.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct EndTxnRequest {
        pub transactional_id: String as TransactionalId,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        /// `true` commits, `false` aborts.
        pub commit: bool as bool,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct EndTxnResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    /// Commits a group's offsets inside the producer's transaction: they become visible to
    /// the group when the transaction commits and are dropped if it aborts. The member fields
    /// (KIP-447) let the group coordinator refuse a commit from a member fenced by a rebalance.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TxnOffsetCommitRequest {
        pub transactional_id: String as TransactionalId,
        pub group_id: String as GroupId,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        /// The consumer's generation, or `GENERATION_NONE` for a consumer outside a group.
        pub generation_id: i32 as i32,
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        pub topics: Vec<TopicPartitions<OffsetCommitPartition>>
            as List<TopicPartitions<OffsetCommitPartition>, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TxnOffsetCommitResponse {
        /// A failure of the whole request; the partitions then repeat it.
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Message;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn round_trip<M: Message + Clone + core::fmt::Debug + PartialEq>(message: &M) -> M {
        let mut bytes = BytesMut::new();
        Message::encode(message, 0, &mut bytes).unwrap();
        <M as Message>::decode(0, bytes.freeze()).unwrap()
    }

    proptest! {
        #[test]
        fn transaction_messages_round_trip(
            transactional_id in "[a-z0-9-]{0,40}",
            producer_id in any::<i64>(),
            producer_epoch in any::<i16>(),
            commit in any::<bool>(),
            partitions in proptest::collection::vec(any::<u32>(), 0..4),
        ) {
            let add = AddPartitionsToTxnRequest {
                transactional_id: transactional_id.clone(),
                producer_id,
                producer_epoch,
                topics: vec![TopicPartitionList { name: "t".into(), partitions }],
            };
            prop_assert_eq!(round_trip(&add), add);
            let end = EndTxnRequest { transactional_id, producer_id, producer_epoch, commit };
            prop_assert_eq!(round_trip(&end), end);
        }

        #[test]
        fn transaction_decoders_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = <AddPartitionsToTxnRequest as Message>::decode(0, body.clone().into());
            let _ = <AddPartitionsToTxnResponse as Message>::decode(0, body.clone().into());
            let _ = <AddOffsetsToTxnRequest as Message>::decode(0, body.clone().into());
            let _ = <EndTxnRequest as Message>::decode(0, body.clone().into());
            let _ = <TxnOffsetCommitRequest as Message>::decode(0, body.clone().into());
            let _ = <TxnOffsetCommitResponse as Message>::decode(0, body.into());
        }
    }

    #[test]
    fn an_end_txn_commit_flag_other_than_zero_or_one_is_refused() {
        let mut bytes = BytesMut::new();
        let end = EndTxnRequest {
            transactional_id: "t".into(),
            commit: true,
            ..EndTxnRequest::default()
        };
        Message::encode(&end, 0, &mut bytes).unwrap();
        let last = bytes.len() - 1;
        bytes[last] = 2;
        assert!(<EndTxnRequest as Message>::decode(0, bytes.freeze()).is_err());
    }
}

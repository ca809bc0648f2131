//! The transaction state machine against Kafka's rules, one transition at a time.

use crate::limits::TxnLimits;
use crate::state::*;

const NOW: i64 = 1_000_000;

fn init(
    txn: &mut Txn,
    expected: Option<(i64, i16)>,
    new_id: Option<i64>,
) -> Result<InitStep, TxnError> {
    txn.prepare_init(
        InitRequest {
            timeout_ms: 60_000,
            expected,
            now_ms: NOW,
        },
        new_id,
    )
}

/// Runs a transition to completion (as if its write succeeded).
fn done<T>(txn: &mut Txn, result: Result<T, TxnError>) -> Result<T, TxnError> {
    if result.is_ok() && txn.is_pending() {
        txn.complete_transition();
    }
    result
}

fn initialized() -> Txn {
    let mut txn = Txn::new("t", 7, 60_000, NOW);
    let step = init(&mut txn, None, None);
    done(&mut txn, step).unwrap();
    txn
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    (topic.to_string(), partition)
}

fn add(
    txn: &mut Txn,
    epoch: i16,
    partitions: &[TopicPartition],
) -> Result<Option<TxnRecord>, TxnError> {
    let result = txn.prepare_add(7, epoch, partitions, &[], &TxnLimits::default(), NOW);
    done(txn, result)
}

#[test]
fn a_new_id_starts_at_epoch_zero_and_each_init_bumps_it() {
    let mut txn = Txn::new("t", 7, 60_000, NOW);
    assert_eq!(txn.current.producer_epoch, NO_PRODUCER_EPOCH);
    let step = init(&mut txn, None, None);
    let Ok(InitStep::Write(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!((record.producer_id, record.producer_epoch), (7, 0));
    assert_eq!(txn.current.state, TxnState::Empty);
    let step = init(&mut txn, None, None);
    let Ok(InitStep::Write(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!((record.producer_id, record.producer_epoch), (7, 1));
    assert_eq!(record.last_producer_epoch, NO_PRODUCER_EPOCH);
}

#[test]
fn commit_goes_through_prepare_and_complete_and_clears_the_partitions() {
    let mut txn = initialized();
    add(&mut txn, 0, &[tp("a", 0)]).unwrap().unwrap();
    assert_eq!(txn.current.state, TxnState::Ongoing);
    assert_eq!(txn.current.start_timestamp_ms, NOW);
    // Adding what is there already writes nothing.
    assert_eq!(add(&mut txn, 0, &[tp("a", 0)]), Ok(None));
    let step = txn.prepare_end(7, 0, true, NOW + 5);
    let Ok(EndStep::Write(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!(record.state, TxnState::PrepareCommit);
    assert_eq!(
        record.marker(),
        MarkerSpec {
            producer_id: 7,
            producer_epoch: 0,
            commit: true
        }
    );
    // While markers are written: adds and a second commit wait, an abort is wrong.
    assert_eq!(
        add(&mut txn, 0, &[tp("b", 0)]),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        txn.prepare_end(7, 0, true, NOW),
        Err(TxnError::ConcurrentTransactions)
    );
    assert!(matches!(
        txn.prepare_end(7, 0, false, NOW),
        Err(TxnError::InvalidTxnState(_))
    ));
    let complete = txn.prepare_complete(NOW + 9);
    txn.complete_transition();
    assert_eq!(complete.state, TxnState::CompleteCommit);
    assert!(txn.current.partitions.is_empty());
    // A retried commit succeeds without a write; an abort now is wrong.
    assert_eq!(
        txn.prepare_end(7, 0, true, NOW),
        Ok(EndStep::AlreadyComplete)
    );
    assert!(matches!(
        txn.prepare_end(7, 0, false, NOW),
        Err(TxnError::InvalidTxnState(_))
    ));
    // The next transaction starts afresh.
    add(&mut txn, 0, &[tp("b", 1)]).unwrap().unwrap();
    assert_eq!(txn.current.partitions.len(), 1);
}

#[test]
fn end_without_a_transaction_is_an_invalid_state() {
    let mut txn = initialized();
    assert!(matches!(
        txn.prepare_end(7, 0, true, NOW),
        Err(TxnError::InvalidTxnState(_))
    ));
}

#[test]
fn a_new_producer_fences_the_open_transaction_by_aborting_it_at_a_higher_epoch() {
    let mut txn = initialized();
    add(&mut txn, 0, &[tp("a", 0)]).unwrap();
    let step = init(&mut txn, None, None);
    let Ok(InitStep::Fence(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!(record.state, TxnState::PrepareAbort);
    assert_eq!(record.producer_epoch, 1);
    assert_eq!(
        record.marker(),
        MarkerSpec {
            producer_id: 7,
            producer_epoch: 1,
            commit: false
        }
    );
    // The old producer can do nothing now.
    assert_eq!(
        add(&mut txn, 0, &[tp("a", 1)]),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        txn.prepare_end(7, 0, true, NOW),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        txn.verify(7, 0, &[tp("a", 0)]),
        Err(TxnError::ProducerFenced)
    );
    // Until the abort completes, the new producer waits.
    assert_eq!(
        init(&mut txn, None, None),
        Err(TxnError::ConcurrentTransactions)
    );
    txn.prepare_complete(NOW);
    txn.complete_transition();
    let step = init(&mut txn, None, None);
    let Ok(InitStep::Write(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!(record.producer_epoch, 2);
}

#[test]
fn kip_360_bump_with_the_current_identity_and_its_retry_get_the_same_epoch() {
    let mut txn = initialized();
    let step = init(&mut txn, Some((7, 0)), None);
    let Ok(InitStep::Write(first)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!((first.producer_epoch, first.last_producer_epoch), (1, 0));
    // The answer was lost; the producer asks again with its old identity.
    let step = init(&mut txn, Some((7, 0)), None);
    let Ok(InitStep::Write(retry)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!(retry.producer_epoch, 1);
    // A stale epoch, or another id, is fenced.
    let step = init(&mut txn, Some((7, 5)), None);
    assert_eq!(step, Err(TxnError::ProducerFenced));
    assert_eq!(
        init(&mut txn, Some((99, 1)), None),
        Err(TxnError::ProducerFenced)
    );
    // A new producer (no identity) resets the last epoch: the old retry is now fenced.
    let step = init(&mut txn, None, None);
    done(&mut txn, step).unwrap();
    assert_eq!(
        init(&mut txn, Some((7, 0)), None),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let mut txn = initialized();
    txn.current.producer_epoch = i16::MAX - 1;
    assert!(txn.init_needs_new_producer_id(None));
    let exhausted = Some((7, i16::MAX - 1));
    let step = init(&mut txn, exhausted, Some(8));
    let Ok(InitStep::Write(record)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!((record.producer_id, record.producer_epoch), (8, 0));
    assert_eq!(record.previous_producer_id, 7);
    // A retry of the rotation with the old identity is recognised and answered the same.
    let step = init(&mut txn, exhausted, None);
    let Ok(InitStep::Write(retry)) = done(&mut txn, step) else {
        panic!()
    };
    assert_eq!((retry.producer_id, retry.producer_epoch), (8, 0));
    // After a rotation a new producer asked for (no identity), the old identity is fenced.
    let mut txn = initialized();
    txn.current.producer_epoch = i16::MAX - 1;
    let step = init(&mut txn, None, Some(8));
    done(&mut txn, step).unwrap();
    assert_eq!(
        init(&mut txn, exhausted, None),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn requests_with_a_wrong_identity_are_refused_as_kafka_does() {
    let mut txn = initialized();
    assert_eq!(
        txn.prepare_add(8, 0, &[tp("a", 0)], &[], &TxnLimits::default(), NOW),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        add(&mut txn, 3, &[tp("a", 0)]),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        txn.prepare_end(8, 0, true, NOW),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn a_pending_write_makes_every_change_wait_and_a_failed_write_changes_nothing() {
    let mut txn = initialized();
    let before = txn.current.clone();
    txn.prepare_add(7, 0, &[tp("a", 0)], &[], &TxnLimits::default(), NOW)
        .unwrap();
    assert_eq!(
        add(&mut txn, 0, &[tp("b", 0)]),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        init(&mut txn, None, None),
        Err(TxnError::ConcurrentTransactions)
    );
    txn.abandon_transition();
    assert_eq!(txn.current, before);
}

#[test]
fn verification_says_which_partitions_are_in_the_open_transaction() {
    let mut txn = initialized();
    assert_eq!(
        txn.verify(7, 0, &[tp("a", 0)]),
        Ok(vec![Err(TxnError::TransactionAbortable)])
    );
    add(&mut txn, 0, &[tp("a", 0)]).unwrap();
    assert_eq!(
        txn.verify(7, 0, &[tp("a", 0), tp("a", 1)]),
        Ok(vec![Ok(()), Err(TxnError::TransactionAbortable)])
    );
    let step = txn.prepare_end(7, 0, false, NOW);
    done(&mut txn, step).unwrap();
    assert_eq!(
        txn.verify(7, 0, &[tp("a", 0)]),
        Err(TxnError::ConcurrentTransactions)
    );
}

#[test]
fn a_timeout_aborts_at_a_bumped_epoch_so_the_producer_is_fenced() {
    let mut txn = initialized();
    add(&mut txn, 0, &[tp("a", 0)]).unwrap();
    assert!(!txn.timed_out(NOW + 59_999));
    assert!(txn.timed_out(NOW + 60_000));
    let record = txn.prepare_timeout_abort(NOW + 60_000);
    assert_eq!(txn.pending, Some(TxnState::PrepareEpochFence));
    txn.complete_transition();
    assert_eq!(
        (record.state, record.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
    assert_eq!(
        txn.prepare_end(7, 0, true, NOW),
        Err(TxnError::ProducerFenced)
    );
    // The producer's KIP-360 recovery with its old epoch is fenced too (as in Kafka).
    txn.prepare_complete(NOW);
    txn.complete_transition();
    assert_eq!(
        init(&mut txn, Some((7, 0)), None),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn an_idle_id_expires_and_an_open_one_does_not() {
    let mut txn = initialized();
    assert!(txn.expired(NOW + 10, 10));
    add(&mut txn, 0, &[tp("a", 0)]).unwrap();
    assert!(!txn.expired(NOW + 1_000_000, 10));
}

#[test]
fn a_transaction_over_its_partition_bound_is_refused() {
    let mut txn = initialized();
    let limits = TxnLimits {
        partitions_per_transaction_max: 2,
        ..TxnLimits::default()
    };
    let too_many = [tp("a", 0), tp("a", 1), tp("a", 2)];
    assert!(matches!(
        txn.prepare_add(7, 0, &too_many, &[], &limits, NOW),
        Err(TxnError::InvalidRequest(_))
    ));
    assert!(!txn.is_pending());
}

#[test]
fn state_names_are_kafkas_and_parse_back_ignoring_case() {
    for state in ALL_STATES {
        assert_eq!(
            TxnState::from_name(&state.name().to_uppercase()),
            Some(state)
        );
    }
    assert_eq!(TxnState::from_name("Running"), None);
}

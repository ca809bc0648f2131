//! Where a request goes and what a failure means for where it goes next: pure decisions, no
//! I/O, so that they are tested without brokers.
//!
//! A cluster's metadata names every broker and each partition's leader. Produce, fetch, list
//! offsets and delete records go to the partition's leader; group and transaction requests go
//! to the coordinator FindCoordinator names; anything else (metadata, topic changes, producer
//! ids) goes to any broker. A single broker (metadata naming at most one broker, or a broker
//! that predates cluster metadata) is reached through the bootstrap addresses exactly as
//! before clustering: the address it advertises is not trusted over the one the user gave.
//!
//! After a failure, [`recovery_for`] says whether the client's view is stale (refresh metadata,
//! or find the coordinator again) before the retry the caller's policy allows.

use std::collections::BTreeMap;

use spate_protocol::{ErrorCode, NodeId};

use crate::error::Error;

/// The brokers of the cluster as the last metadata answer named them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BrokerDirectory {
    /// Each broker's native listener, `host:port`.
    pub(crate) brokers: BTreeMap<NodeId, String>,
    pub(crate) controller: Option<NodeId>,
}

impl BrokerDirectory {
    /// Whether requests are routed per broker: more than one broker is known.
    pub(crate) fn is_cluster(&self) -> bool {
        self.brokers.len() > 1
    }
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Any broker, through the bootstrap addresses (a single broker, or a request any broker
    /// answers).
    Bootstrap,
    /// This broker, at this address.
    Broker { id: NodeId, address: String },
    /// The partition has no leader now (an election is under way, or every replica is down):
    /// wait, refresh metadata, try again.
    NoLeader,
    /// The leader is a broker the directory does not list (metadata answers from two brokers
    /// that disagree): refresh metadata.
    UnknownBroker(NodeId),
}

/// Where a request for a partition led by `leader` goes (`None`: no leader, as metadata said).
pub(crate) fn route_to_leader(leader: Option<NodeId>, directory: &BrokerDirectory) -> Route {
    if !directory.is_cluster() {
        return Route::Bootstrap;
    }
    match leader {
        None => Route::NoLeader,
        Some(id) => route_to_broker(id, directory),
    }
}

/// Where a request for broker `id` (a coordinator) goes.
pub(crate) fn route_to_broker(id: NodeId, directory: &BrokerDirectory) -> Route {
    if !directory.is_cluster() {
        return Route::Bootstrap;
    }
    match directory.brokers.get(&id) {
        Some(address) => Route::Broker {
            id,
            address: address.clone(),
        },
        None => Route::UnknownBroker(id),
    }
}

/// What a failed request says about the client's view of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The partition's leader moved, has none yet, or the broker that led it is unreachable:
    /// ask for metadata again before the retry.
    RefreshMetadata,
    /// The coordinator moved or is not ready: find it again before the retry.
    FindCoordinator,
    /// The view is fine; the retry (if the error is retriable) goes to the same place.
    Keep,
}

/// Whether `code` means the partition is led elsewhere (or by no one yet).
pub(crate) fn leader_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            // The ISR shrank: the leader may be about to lose its place; look again.
            | ErrorCode::NotEnoughReplicas
            // A broker that does not host the partition (moved by a reassignment) says so.
            | ErrorCode::UnknownTopicOrPartition
    )
}

/// Whether `code` means the coordinator is elsewhere (or not ready).
pub(crate) fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
    )
}

/// What `error`, met by a request for a partition (`for_coordinator`: by a group or
/// transaction request), says to do before retrying.
pub(crate) fn recovery_for(error: &Error, for_coordinator: bool) -> Recovery {
    match error.root() {
        // The broker may be dead; its partitions get new leaders, its groups new coordinators.
        Error::Connect { .. } | Error::ConnectionLost { .. } | Error::Timeout { .. } => {
            if for_coordinator {
                Recovery::FindCoordinator
            } else {
                Recovery::RefreshMetadata
            }
        }
        Error::UnknownTopic { .. } if !for_coordinator => Recovery::RefreshMetadata,
        root => match root.code() {
            Some(code) if for_coordinator && coordinator_moved(code) => Recovery::FindCoordinator,
            Some(code) if !for_coordinator && leader_moved(code) => Recovery::RefreshMetadata,
            _ => Recovery::Keep,
        },
    }
}

/// Groups `items` by where each goes, keeping their order within a group and the groups in
/// the order their first item came. Items whose route is [`Route::NoLeader`] or
/// [`Route::UnknownBroker`] come back apart: they cannot be sent now.
pub(crate) fn group_by_route<T>(
    items: Vec<T>,
    route_of: impl Fn(&T) -> Route,
) -> (Vec<(Route, Vec<T>)>, Vec<T>) {
    let mut groups: Vec<(Route, Vec<T>)> = Vec::new();
    let mut unroutable = Vec::new();
    for item in items {
        let route = route_of(&item);
        if matches!(route, Route::NoLeader | Route::UnknownBroker(_)) {
            unroutable.push(item);
            continue;
        }
        match groups.iter_mut().find(|(existing, _)| *existing == route) {
            Some((_, group)) => group.push(item),
            None => groups.push((route, vec![item])),
        }
    }
    (groups, unroutable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn directory(ids: &[NodeId]) -> BrokerDirectory {
        BrokerDirectory {
            brokers: ids
                .iter()
                .map(|id| (*id, format!("127.0.0.{}:9192", id + 1)))
                .collect(),
            controller: ids.first().copied(),
        }
    }

    fn refused(code: ErrorCode) -> Error {
        Error::broker("produce", Some("t"), Some(0), code, None)
    }

    #[test]
    fn a_single_broker_is_reached_through_the_bootstrap_addresses_whatever_it_advertises() {
        for single in [directory(&[]), directory(&[7])] {
            assert_eq!(route_to_leader(Some(7), &single), Route::Bootstrap);
            assert_eq!(route_to_leader(None, &single), Route::Bootstrap);
            assert_eq!(route_to_broker(3, &single), Route::Bootstrap);
        }
    }

    #[test]
    fn in_a_cluster_a_partition_goes_to_its_leader_at_its_advertised_address() {
        let cluster = directory(&[0, 1, 2]);
        assert_eq!(
            route_to_leader(Some(2), &cluster),
            Route::Broker {
                id: 2,
                address: "127.0.0.3:9192".into()
            }
        );
        assert_eq!(route_to_leader(None, &cluster), Route::NoLeader);
        assert_eq!(route_to_leader(Some(9), &cluster), Route::UnknownBroker(9));
    }

    #[test]
    fn leader_changes_and_lost_connections_refresh_metadata_before_the_retry() {
        for code in [
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::LeaderNotAvailable,
            ErrorCode::FencedLeaderEpoch,
            ErrorCode::UnknownLeaderEpoch,
            ErrorCode::NotEnoughReplicas,
        ] {
            let error = refused(code);
            assert!(error.is_retriable(), "{code:?} is retried");
            assert_eq!(recovery_for(&error, false), Recovery::RefreshMetadata);
        }
        let lost = Error::ConnectionLost {
            address: "127.0.0.2:9192".into(),
            operation: "produce",
            reason: "reset".into(),
        };
        assert_eq!(recovery_for(&lost, false), Recovery::RefreshMetadata);
        let refused_connect = Error::Connect {
            address: "127.0.0.2:9192".into(),
            source: Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(refused_connect),
        };
        assert_eq!(recovery_for(&exhausted, false), Recovery::RefreshMetadata);
    }

    #[test]
    fn other_refusals_keep_the_view() {
        for code in [
            ErrorCode::BrokerBusy,
            ErrorCode::OutOfOrderSequence,
            ErrorCode::InvalidConfig,
            ErrorCode::MessageTooLarge,
        ] {
            assert_eq!(recovery_for(&refused(code), false), Recovery::Keep);
        }
        // A leader-change code on a group request says nothing about the coordinator.
        assert_eq!(
            recovery_for(&refused(ErrorCode::NotLeaderOrFollower), true),
            Recovery::Keep
        );
    }

    #[test]
    fn a_moved_or_unready_coordinator_is_found_again() {
        for code in [
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorNotAvailable,
        ] {
            assert_eq!(
                recovery_for(&refused(code), true),
                Recovery::FindCoordinator
            );
            assert_eq!(recovery_for(&refused(code), false), Recovery::Keep);
        }
        let lost = Error::Timeout {
            operation: "heartbeat",
            elapsed: std::time::Duration::from_secs(1),
        };
        assert_eq!(recovery_for(&lost, true), Recovery::FindCoordinator);
    }

    #[test]
    fn grouping_keeps_each_route_in_order_and_sets_aside_what_cannot_be_sent() {
        let cluster = directory(&[0, 1]);
        let leaders = [Some(1), Some(0), None, Some(1), Some(5), Some(0)];
        let items: Vec<usize> = (0..leaders.len()).collect();
        let (groups, unroutable) =
            group_by_route(items, |item| route_to_leader(leaders[*item], &cluster));
        let summary: Vec<(Route, Vec<usize>)> = groups;
        assert_eq!(summary.len(), 2);
        assert_eq!(summary[0].1, vec![0, 3], "broker 1 first, in order");
        assert_eq!(summary[1].1, vec![1, 5]);
        assert_eq!(unroutable, vec![2, 4]);
    }
}

//! The rules of a follower's fetch, on both sides: the leader's check of the follower's
//! position against its own leader epochs (KIP-320's diverging epoch), the follower's choice of
//! where to truncate when told it diverged (KIP-101/KIP-279), and which leader answers a
//! follower may still apply.
//!
//! Both sides answer "where does epoch E end?" from their leader-epoch cache
//! (`end_offset_for_epoch`: the largest epoch at or below E and the offset where it ends, the
//! log end for the latest epoch), passed in here.

use super::{NodeId, NO_EPOCH};

/// The diverging epoch a leader answers a follower's fetch with: the follower's log is not a
/// prefix of the leader's from `end_offset` on (Kafka's `DivergingEpoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivergingEpoch {
    /// The largest epoch of the leader's at or below the follower's last fetched epoch
    /// ([`NO_EPOCH`] when the leader holds none).
    pub epoch: i32,
    /// Where that epoch ends on the leader.
    pub end_offset: u64,
}

/// The leader's check of a follower fetching from `fetch_offset` whose last batch has
/// `last_fetched_epoch` ([`NO_EPOCH`]: an empty log). `leader_end_for_epoch`: the leader's
/// `end_offset_for_epoch(last_fetched_epoch)`. `None`: the follower's log agrees with the
/// leader's up to `fetch_offset`, and it may be served from there.
pub fn diverging_epoch(
    fetch_offset: u64,
    last_fetched_epoch: i32,
    leader_end_for_epoch: Option<(i32, u64)>,
    leader_log_start: u64,
    leader_log_end: u64,
) -> Option<DivergingEpoch> {
    if last_fetched_epoch == NO_EPOCH {
        // Nothing to compare; a follower cannot hold more than the leader.
        return (fetch_offset > leader_log_end).then_some(DivergingEpoch {
            epoch: NO_EPOCH,
            end_offset: leader_log_end,
        });
    }
    match leader_end_for_epoch {
        // Every epoch the leader holds is newer: the follower's batches are not the leader's
        // (or lie below the leader's log start).
        None => Some(DivergingEpoch {
            epoch: NO_EPOCH,
            end_offset: leader_log_start,
        }),
        Some((epoch, end_offset)) if epoch < last_fetched_epoch || end_offset < fetch_offset => {
            Some(DivergingEpoch { epoch, end_offset })
        }
        Some(_) => None,
    }
}

/// Where a follower truncates to when told `diverging`, and whether that settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub offset: u64,
    /// False when the follower holds no batch of the leader's epoch and truncated only to the
    /// end of its own epoch below: it fetches again and the leader checks again.
    pub complete: bool,
}

/// The follower's answer to `diverging` (Kafka's `truncateOnFetchResponse`): its
/// `local_end_for_epoch` is its own `end_offset_for_epoch(diverging.epoch)`, `local_log_end`
/// its log end. Never above its log end.
pub fn truncation_for(
    diverging: DivergingEpoch,
    local_end_for_epoch: Option<(i32, u64)>,
    local_log_end: u64,
) -> Truncation {
    if diverging.epoch == NO_EPOCH {
        return Truncation {
            offset: diverging.end_offset.min(local_log_end),
            complete: true,
        };
    }
    match local_end_for_epoch {
        None => Truncation {
            offset: diverging.end_offset.min(local_log_end),
            complete: true,
        },
        Some((epoch, end_offset)) if epoch != diverging.epoch => Truncation {
            offset: end_offset.min(local_log_end),
            complete: false,
        },
        Some((_, end_offset)) => Truncation {
            offset: diverging.end_offset.min(end_offset).min(local_log_end),
            complete: true,
        },
    }
}

/// What a follower knows of its leader: answers from another leader or an older epoch are
/// dropped (they were meant for a role that has ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerRole {
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
}

impl FollowerRole {
    /// Whether an answer from `leader`, to a fetch sent at `leader_epoch`, still applies.
    pub fn accepts(&self, leader: NodeId, leader_epoch: i32) -> bool {
        self.leader == Some(leader) && self.leader_epoch == leader_epoch
    }
}

/// The committed offset a follower may record from its leader's high watermark: never past its
/// own log end (it may not have those batches yet).
pub fn follower_committed_offset(leader_high_watermark: u64, local_log_end: u64) -> u64 {
    leader_high_watermark.min(local_log_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_on_the_leaders_log_is_served() {
        // Leader: epoch 3 ends at 40, epoch 5 is current up to 60.
        assert_eq!(diverging_epoch(40, 3, Some((3, 40)), 0, 60), None);
        assert_eq!(diverging_epoch(55, 5, Some((5, 60)), 0, 60), None);
        assert_eq!(diverging_epoch(60, 5, Some((5, 60)), 0, 60), None);
        assert_eq!(diverging_epoch(0, NO_EPOCH, None, 0, 60), None);
    }

    #[test]
    fn a_follower_ahead_within_an_epoch_diverges_at_the_epochs_end() {
        assert_eq!(
            diverging_epoch(45, 3, Some((3, 40)), 0, 60),
            Some(DivergingEpoch {
                epoch: 3,
                end_offset: 40
            })
        );
    }

    #[test]
    fn a_follower_with_an_epoch_the_leader_never_had_diverges() {
        // The follower wrote epoch 4 as a leader that lost; the leader went from 3 to 5.
        assert_eq!(
            diverging_epoch(50, 4, Some((3, 40)), 0, 60),
            Some(DivergingEpoch {
                epoch: 3,
                end_offset: 40
            })
        );
        assert_eq!(
            diverging_epoch(50, 2, None, 10, 60),
            Some(DivergingEpoch {
                epoch: NO_EPOCH,
                end_offset: 10
            })
        );
        assert_eq!(
            diverging_epoch(70, NO_EPOCH, None, 0, 60),
            Some(DivergingEpoch {
                epoch: NO_EPOCH,
                end_offset: 60
            })
        );
    }

    #[test]
    fn truncation_stops_at_the_shorter_end_of_the_shared_epoch() {
        let diverging = DivergingEpoch {
            epoch: 3,
            end_offset: 40,
        };
        // The follower's epoch 3 ends at 45 (its log end): truncate to 40.
        assert_eq!(
            truncation_for(diverging, Some((3, 45)), 50),
            Truncation {
                offset: 40,
                complete: true
            }
        );
        // The follower's epoch 3 ends earlier, at 38: keep up to 38.
        assert_eq!(truncation_for(diverging, Some((3, 38)), 50).offset, 38);
    }

    #[test]
    fn truncation_without_the_leaders_epoch_goes_to_the_followers_epoch_below_and_asks_again() {
        let diverging = DivergingEpoch {
            epoch: 3,
            end_offset: 40,
        };
        // The follower has epochs 2 (ends 30) and 4; it never had 3.
        assert_eq!(
            truncation_for(diverging, Some((2, 30)), 50),
            Truncation {
                offset: 30,
                complete: false
            }
        );
        assert_eq!(
            truncation_for(diverging, None, 50),
            Truncation {
                offset: 40,
                complete: true
            }
        );
        assert_eq!(
            truncation_for(
                DivergingEpoch {
                    epoch: NO_EPOCH,
                    end_offset: 70
                },
                None,
                50
            )
            .offset,
            50
        );
    }

    #[test]
    fn a_follower_drops_answers_meant_for_another_role() {
        let role = FollowerRole {
            leader: Some(2),
            leader_epoch: 6,
        };
        assert!(role.accepts(2, 6));
        assert!(!role.accepts(2, 5));
        assert!(!role.accepts(3, 6));
        assert_eq!(follower_committed_offset(100, 80), 80);
        assert_eq!(follower_committed_offset(70, 80), 70);
    }
}

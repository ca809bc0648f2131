//! One partition as its leader sees it, for one leadership (one leader epoch): the in-sync
//! replicas the metadata applied, each follower's progress, the high watermark, and the ISR
//! changes due.
//!
//! High watermark: the smallest log end among the in-sync replicas, each follower's as its
//! latest fetch reported it (a follower fetches from its log end, which is durable there) and
//! the leader's durable end; it never moves back within a leadership. While an ISR expansion
//! is proposed and not yet applied the new member counts too (Kafka's "maximal ISR"), so that
//! the high watermark is right whichever way the proposal ends; a proposal retried after
//! `isr_change_retry_ms` keeps the members every earlier one of the same partition epoch
//! added, since any of them may be the one the metadata applies.
//!
//! Caught up: a follower whose fetch reached the leader's durable end at that moment, or the
//! leader's durable end at its previous fetch (Kafka's rule, with the durable end where Kafka
//! has the log end, because a follower can only be served durable data). One that has not for
//! `replica_lag_time_max_ms` is proposed out of the ISR; a follower outside the ISR whose log
//! end reached the high watermark and this epoch's first offset is proposed in.

use std::collections::BTreeMap;

use super::{IsrProposal, NodeId, ReplicaLimits};

/// What the leader knows of one follower in this leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end as its latest valid fetch reported it; `None` until it fetched in
    /// this leadership.
    pub log_end: Option<u64>,
    /// When its latest fetch came.
    pub last_fetch_ms: u64,
    /// The leader's durable end at that fetch.
    pub last_fetch_leader_end: u64,
    /// The last time its log end reached the leader's durable end (leadership start at first).
    pub last_caught_up_ms: u64,
}

/// A proposed ISR change the metadata has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingIsrChange {
    new_isr: Vec<NodeId>,
    proposed_ms: u64,
}

/// The role the metadata gives a partition's leader (one leader epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRole {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// `min.insync.replicas`: acks=all needs at least this many in-sync replicas.
    pub min_insync: u16,
}

/// Leader-side replication state of one partition. Lives as long as the leadership: a new
/// leader epoch starts a new one.
#[derive(Debug, Clone)]
pub struct LeaderState {
    local: NodeId,
    role: LeaderRole,
    /// The log end when the leadership began: a follower below it has not yet fetched (and so
    /// not truncated) in this epoch.
    epoch_start_offset: u64,
    high_watermark: u64,
    followers: BTreeMap<NodeId, FollowerProgress>,
    pending: Option<PendingIsrChange>,
    /// Members added by any proposal at the current partition epoch: counted for the high
    /// watermark until the metadata applies a change (which makes the others stale). Never
    /// dropped on a timeout: a leader that did not hear the outcome cannot tell an applied
    /// proposal from a lost one.
    pending_added: Vec<NodeId>,
}

impl LeaderState {
    /// A leadership beginning at `now_ms`. `epoch_start_offset`: the log end at which the new
    /// epoch's first batch goes; `committed_offset`: what the log already knew committed (the
    /// high watermark starts there; never above the log end). Every follower counts as caught
    /// up now (it gets `replica_lag_time_max_ms` to fetch).
    pub fn new(
        local: NodeId,
        role: LeaderRole,
        epoch_start_offset: u64,
        committed_offset: u64,
        now_ms: u64,
    ) -> Self {
        assert!(
            role.isr.contains(&local),
            "a leader is always in its own ISR"
        );
        assert!(committed_offset <= epoch_start_offset);
        let followers = role
            .replicas
            .iter()
            .filter(|&&node| node != local)
            .map(|&node| (node, Self::fresh_progress(now_ms)))
            .collect();
        Self {
            local,
            role,
            epoch_start_offset,
            high_watermark: committed_offset,
            followers,
            pending: None,
            pending_added: Vec::new(),
        }
    }

    fn fresh_progress(now_ms: u64) -> FollowerProgress {
        FollowerProgress {
            log_end: None,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: 0,
            last_caught_up_ms: now_ms,
        }
    }

    /// The metadata applied a change of this leadership's replicas or ISR (same leader epoch,
    /// newer partition epoch): use it from now on. Pending proposals end with a newer
    /// partition epoch (applied, or overtaken: stale at apply). Returns the high watermark if
    /// it moved.
    pub fn update_role(
        &mut self,
        role: LeaderRole,
        leader_durable_end: u64,
        now_ms: u64,
    ) -> Option<u64> {
        assert_eq!(role.leader_epoch, self.role.leader_epoch);
        assert!(role.isr.contains(&self.local));
        if role.partition_epoch > self.role.partition_epoch {
            self.pending = None;
            self.pending_added.clear();
        }
        // A member the metadata took out of the ISR (the controller fences a broker it stopped
        // hearing from) must fetch again before it can be proposed back: its last fetch may be
        // from before it died, and on an idle partition that fetch would still look caught up.
        for node in &self.role.isr {
            if !role.isr.contains(node) {
                if let Some(progress) = self.followers.get_mut(node) {
                    progress.log_end = None;
                }
            }
        }
        self.followers
            .retain(|node, _| role.replicas.contains(node));
        for &node in &role.replicas {
            if node != self.local {
                self.followers
                    .entry(node)
                    .or_insert_with(|| Self::fresh_progress(now_ms));
            }
        }
        self.role = role;
        self.advance_high_watermark(leader_durable_end)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.role.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.role.partition_epoch
    }

    pub fn role(&self) -> &LeaderRole {
        &self.role
    }

    pub fn isr(&self) -> &[NodeId] {
        &self.role.isr
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn epoch_start_offset(&self) -> u64 {
        self.epoch_start_offset
    }

    pub fn follower(&self, node: NodeId) -> Option<&FollowerProgress> {
        self.followers.get(&node)
    }

    /// Whether the applied ISR is large enough for acks=all (`min.insync.replicas`).
    pub fn has_min_insync(&self) -> bool {
        self.role.isr.len() >= usize::from(self.role.min_insync)
    }

    pub fn min_insync(&self) -> u16 {
        self.role.min_insync
    }

    /// Whether `node` is one of this partition's followers.
    pub fn is_follower(&self, node: NodeId) -> bool {
        self.followers.contains_key(&node)
    }

    /// A follower fetched from `fetch_offset`, its log end, after the leader checked that its
    /// log agrees with the leader's up to there (no diverging epoch). Records its progress and
    /// returns the high watermark if it moved. A fetch from a node that is not a follower, or
    /// past the leader's log end, is ignored (the caller refuses it).
    pub fn record_fetch(
        &mut self,
        follower: NodeId,
        fetch_offset: u64,
        leader_durable_end: u64,
        leader_log_end: u64,
        now_ms: u64,
    ) -> Option<u64> {
        if fetch_offset > leader_log_end {
            return None;
        }
        let progress = self.followers.get_mut(&follower)?;
        if fetch_offset >= leader_durable_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= progress.last_fetch_leader_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.log_end = Some(fetch_offset);
        progress.last_fetch_ms = now_ms;
        progress.last_fetch_leader_end = leader_durable_end;
        self.advance_high_watermark(leader_durable_end)
    }

    /// The ISR members counted for the high watermark: the applied ISR and any member a
    /// pending expansion adds.
    fn maximal_isr(&self) -> impl Iterator<Item = NodeId> + '_ {
        let added = self
            .pending_added
            .iter()
            .filter(|node| !self.role.isr.contains(node));
        self.role.isr.iter().chain(added).copied()
    }

    /// Moves the high watermark to the smallest log end of the maximal ISR (the leader's own:
    /// `leader_durable_end`), if that is ahead of it. Returns the new one if it moved.
    pub fn advance_high_watermark(&mut self, leader_durable_end: u64) -> Option<u64> {
        let mut candidate = leader_durable_end;
        for node in self.maximal_isr() {
            if node == self.local {
                continue;
            }
            match self
                .followers
                .get(&node)
                .and_then(|progress| progress.log_end)
            {
                Some(log_end) => candidate = candidate.min(log_end),
                // An ISR member that has not fetched in this leadership holds the mark.
                None => return None,
            }
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }

    /// The ISR change this leader should propose now, if any: lagging members out, caught-up
    /// replicas in. Marks it pending: no other is proposed until the metadata applies a change
    /// or `isr_change_retry_ms` passes.
    pub fn isr_change_due(&mut self, now_ms: u64, limits: &ReplicaLimits) -> Option<IsrProposal> {
        if let Some(pending) = &self.pending {
            if now_ms
                < pending
                    .proposed_ms
                    .saturating_add(limits.isr_change_retry_ms)
            {
                return None;
            }
        }
        let lagging = |node: &NodeId| {
            self.followers.get(node).is_some_and(|progress| {
                now_ms.saturating_sub(progress.last_caught_up_ms) > limits.replica_lag_time_max_ms
            })
        };
        // Caught up to join: its log end reached the high watermark and this epoch's start, at
        // a fetch recent enough that it is still fetching (a dead follower's last fetch on an
        // idle partition would otherwise qualify forever).
        let caught_up = |node: &NodeId| {
            self.followers.get(node).is_some_and(|progress| {
                progress.log_end.is_some_and(|log_end| {
                    log_end >= self.high_watermark && log_end >= self.epoch_start_offset
                }) && now_ms.saturating_sub(progress.last_fetch_ms)
                    <= limits.replica_lag_time_max_ms
            })
        };
        let mut new_isr: Vec<NodeId> = self
            .role
            .isr
            .iter()
            .copied()
            .filter(|node| *node == self.local || !lagging(node))
            .collect();
        for &node in &self.role.replicas {
            if !new_isr.contains(&node) && !self.role.isr.contains(&node) && caught_up(&node) {
                new_isr.push(node);
            }
        }
        if new_isr == self.role.isr {
            self.pending = None;
            return None;
        }
        for &node in &new_isr {
            if !self.role.isr.contains(&node) && !self.pending_added.contains(&node) {
                self.pending_added.push(node);
            }
        }
        self.pending = Some(PendingIsrChange {
            new_isr: new_isr.clone(),
            proposed_ms: now_ms,
        });
        Some(IsrProposal {
            leader_epoch: self.role.leader_epoch,
            partition_epoch: self.role.partition_epoch,
            new_isr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: NodeId = 1;

    fn role(isr: &[NodeId], min_insync: u16) -> LeaderRole {
        LeaderRole {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader_epoch: 4,
            partition_epoch: 7,
            min_insync,
        }
    }

    fn limits() -> ReplicaLimits {
        ReplicaLimits {
            replica_lag_time_max_ms: 1_000,
            isr_change_retry_ms: 500,
            acks_all_waiters_max: 8,
            txn_marker_commit_wait_ms: 1_000,
        }
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end_and_the_leader_durable_end() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2, 3], 2), 10, 5, 0);
        assert_eq!(leader.high_watermark(), 5);
        // Node 3 has not fetched yet: the mark holds.
        assert_eq!(leader.record_fetch(2, 10, 20, 20, 1), None);
        assert_eq!(leader.record_fetch(3, 8, 20, 20, 1), Some(8));
        assert_eq!(leader.record_fetch(3, 20, 20, 20, 2), Some(10));
        assert_eq!(leader.record_fetch(2, 20, 20, 20, 3), Some(20));
        // The leader's own durable end bounds it.
        assert_eq!(leader.record_fetch(2, 25, 22, 25, 4), None);
        assert_eq!(leader.high_watermark(), 20);
        assert_eq!(leader.record_fetch(3, 25, 22, 25, 4), Some(22));
        assert_eq!(leader.advance_high_watermark(25), Some(25));
    }

    #[test]
    fn high_watermark_never_moves_back_within_a_leadership() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 1), 10, 0, 0);
        assert_eq!(leader.record_fetch(2, 10, 10, 10, 1), Some(10));
        // A stale (reordered) fetch with a smaller offset does not lower it.
        assert_eq!(leader.record_fetch(2, 4, 10, 10, 2), None);
        assert_eq!(leader.high_watermark(), 10);
        assert_eq!(leader.follower(2).unwrap().log_end, Some(4));
    }

    #[test]
    fn a_follower_outside_the_isr_does_not_hold_the_high_watermark() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 2), 0, 0, 0);
        assert_eq!(leader.record_fetch(2, 30, 30, 30, 1), Some(30));
        assert_eq!(leader.record_fetch(3, 0, 30, 30, 1), None);
        assert_eq!(leader.high_watermark(), 30);
    }

    #[test]
    fn a_fetch_past_the_log_end_or_from_a_stranger_is_ignored() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 1), 0, 0, 0);
        assert_eq!(leader.record_fetch(2, 11, 10, 10, 1), None);
        assert_eq!(leader.follower(2).unwrap().log_end, None);
        assert_eq!(leader.record_fetch(9, 5, 10, 10, 1), None);
        assert!(leader.follower(9).is_none());
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_after_the_lag_time() {
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2, 3], 2), 0, 0, 0);
        leader.record_fetch(2, 0, 0, 0, 100);
        leader.record_fetch(3, 0, 0, 0, 100);
        // Node 2 keeps up with the leader's durable end; node 3 stays at 0.
        for now in (200..=1_200).step_by(100) {
            let end = now;
            leader.record_fetch(2, end, end, end, now);
            leader.record_fetch(3, 0, end, end, now);
        }
        assert_eq!(leader.isr_change_due(1_100, &limits), None);
        let proposal = leader.isr_change_due(1_201, &limits).expect("node 3 lags");
        assert_eq!(proposal.new_isr, vec![1, 2]);
        assert_eq!((proposal.leader_epoch, proposal.partition_epoch), (4, 7));
        // Pending: not proposed again before the retry time.
        assert_eq!(leader.isr_change_due(1_300, &limits), None);
        assert!(leader.isr_change_due(1_701, &limits).is_some());
        // Until applied, the shrink does not count: node 3 still holds the high watermark.
        assert_eq!(leader.high_watermark(), 0);
        assert!(leader.update_role(role(&[1, 2], 2), 1_200, 1_800).is_some());
        assert_eq!(leader.high_watermark(), 1_200);
        assert_eq!(leader.isr_change_due(1_801, &limits), None);
    }

    #[test]
    fn a_follower_that_keeps_up_with_a_moving_log_stays_in_sync() {
        // Each fetch reaches the end the previous fetch saw, never the current one.
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 2), 0, 0, 0);
        let mut previous_end = 0;
        for now in (50..5_000).step_by(50) {
            let end = now * 10;
            leader.record_fetch(2, previous_end, end, end, now);
            previous_end = end;
            assert_eq!(leader.isr_change_due(now, &limits), None, "at {now}");
        }
    }

    #[test]
    fn a_caught_up_follower_is_proposed_in_and_counts_while_pending() {
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 2), 10, 10, 0);
        leader.record_fetch(2, 20, 20, 20, 1);
        assert_eq!(leader.high_watermark(), 20);
        // Node 3 below the high watermark: not yet.
        leader.record_fetch(3, 15, 20, 20, 1);
        assert_eq!(leader.isr_change_due(2, &limits), None);
        leader.record_fetch(3, 20, 20, 20, 3);
        let proposal = leader.isr_change_due(4, &limits).expect("node 3 caught up");
        assert_eq!(proposal.new_isr, vec![1, 2, 3]);
        // While the expansion is pending node 3 counts for the high watermark.
        leader.record_fetch(2, 30, 30, 30, 5);
        assert_eq!(leader.high_watermark(), 20);
        leader.record_fetch(3, 30, 30, 30, 5);
        assert_eq!(leader.high_watermark(), 30);
    }

    #[test]
    fn a_member_a_pending_proposal_adds_holds_the_high_watermark_until_applied() {
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 1), 0, 0, 0);
        leader.record_fetch(2, 10, 10, 10, 1);
        leader.record_fetch(3, 10, 10, 10, 1);
        assert_eq!(
            leader.isr_change_due(2, &limits).map(|p| p.new_isr),
            Some(vec![1, 2, 3])
        );
        // Node 3 stops fetching: while the proposal may still be applied it holds the high
        // watermark, and the retry proposes it again.
        leader.record_fetch(2, 20, 20, 20, 3);
        assert_eq!(leader.high_watermark(), 10);
        assert_eq!(
            leader.isr_change_due(600, &limits).map(|p| p.new_isr),
            Some(vec![1, 2, 3])
        );
        assert_eq!(leader.high_watermark(), 10);
        // The metadata applies the first proposal: node 3 is a member now.
        let mut applied = role(&[1, 2, 3], 1);
        applied.partition_epoch = 8;
        leader.update_role(applied, 20, 700);
        assert_eq!(leader.high_watermark(), 10);
        leader.record_fetch(3, 20, 20, 20, 701);
        assert_eq!(leader.high_watermark(), 20);
    }

    #[test]
    fn a_follower_below_the_epoch_start_is_not_proposed_in() {
        let limits = limits();
        // New leadership at log end 50 whose committed offset is only 40.
        let mut leader = LeaderState::new(LOCAL, role(&[1], 1), 50, 40, 0);
        leader.record_fetch(2, 45, 50, 50, 1);
        assert_eq!(leader.isr_change_due(2, &limits), None);
        leader.record_fetch(2, 50, 50, 50, 3);
        assert_eq!(
            leader.isr_change_due(4, &limits).map(|p| p.new_isr),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn min_insync_follows_the_applied_isr() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 2), 0, 0, 0);
        assert!(leader.has_min_insync());
        leader.update_role(role(&[1], 2), 0, 1);
        assert!(!leader.has_min_insync());
    }

    #[test]
    fn a_removed_replica_is_forgotten_and_an_added_one_tracked() {
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2, 3], 2), 0, 0, 0);
        let mut moved = role(&[1, 2], 2);
        moved.replicas = vec![1, 2, 4];
        moved.partition_epoch = 8;
        leader.update_role(moved, 0, 5);
        assert!(leader.follower(3).is_none());
        assert_eq!(leader.follower(4).unwrap().last_caught_up_ms, 5);
    }

    #[test]
    fn a_member_the_metadata_took_out_must_fetch_again_before_it_is_proposed_back() {
        // An idle partition: every replica holds the whole log, then node 3 dies and the
        // controller fences it, taking it out of the ISR.
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2, 3], 2), 10, 10, 0);
        leader.record_fetch(2, 10, 10, 10, 1);
        leader.record_fetch(3, 10, 10, 10, 1);
        let mut fenced = role(&[1, 2], 2);
        fenced.partition_epoch = 8;
        leader.update_role(fenced, 10, 2);
        // Its last fetch reached the high watermark, but it is from before it was taken out.
        leader.record_fetch(2, 10, 10, 10, 3);
        assert_eq!(leader.isr_change_due(4, &limits), None);
        // Back and fetching: proposed in.
        leader.record_fetch(3, 10, 10, 10, 5);
        assert_eq!(
            leader.isr_change_due(6, &limits).map(|p| p.new_isr),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_follower_that_stopped_fetching_is_not_proposed_in() {
        let limits = limits();
        let mut leader = LeaderState::new(LOCAL, role(&[1, 2], 2), 10, 10, 0);
        leader.record_fetch(2, 10, 10, 10, 1);
        // Node 3 fetched once, caught up, and went silent longer than the lag time.
        leader.record_fetch(3, 10, 10, 10, 1);
        leader.record_fetch(2, 10, 10, 10, 1_400);
        assert_eq!(leader.isr_change_due(1_500, &limits), None);
    }
}

//! [`GroupConsumer`]: a consumer whose partitions come from a consumer group.
//!
//! The application subscribes to topics and polls; the group decides which partitions this
//! member reads. Membership runs in two places: heartbeats on the client's I/O thread (so a
//! slow batch of processing does not cost the member its place), and everything the
//! application must see, in `poll` on the application's thread: when the coordinator asks for a
//! rebalance, `poll` commits what was processed, revokes the partitions (callback), joins the new
//! generation, and assigns the new partitions from their committed offsets (callback).
//!
//! Delivery is at least once: a record counts as processed once `poll` is called again after
//! returning it, and only processed positions are committed (every auto-commit interval, on
//! revocation and on close, or when the application calls `commit_sync` / `commit_async`).
//! Records after the last commit of a member that dies are read again by the next owner.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::config::{defaults, GroupConfig};
use super::member::{self, GroupShared};
use crate::client::Client;
use crate::completion::Completion;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::consumer::records::Polled;
use crate::consumer::{Consumer, StartAt, TopicPartition};
use crate::error::Error;
use spate_protocol::api::IsolationLevel;

/// Told when the group takes partitions away from this member or gives it new ones. Both run
/// on the application's thread, inside `poll`.
pub trait RebalanceListener: Send {
    /// Before the partitions go (their processed positions are already committed).
    fn partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// After the new partitions are assigned, before records of them are returned.
    fn partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// A group member as a transactional producer names it when it commits offsets inside a
/// transaction (Kafka's `ConsumerGroupMetadata`): the group coordinator refuses the commit if
/// the member was fenced (its generation is over, or another instance took its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The consumer group.
    pub group_id: String,
    /// The member's generation; [`GENERATION_NONE`](spate_protocol::api::GENERATION_NONE)
    /// for offsets committed from outside the membership.
    pub generation_id: i32,
    /// The member id; empty from outside the membership.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if the member has one.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Offsets of `group_id` committed from outside its membership (a consumer that assigns
    /// its partitions itself), as a group without members accepts them.
    pub fn outside_membership(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: spate_protocol::api::GENERATION_NONE,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// A listener that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRebalanceListener;

impl RebalanceListener for NoRebalanceListener {}

/// A member of a consumer group. Made with [`GroupConsumer::new`]; nothing happens until
/// [`GroupConsumer::subscribe`] and the first [`GroupConsumer::poll`].
///
/// ```no_run
/// use std::time::Duration;
/// use spate_client::group::{GroupConfig, GroupConsumer};
/// use spate_client::{Client, ConsumerConfig};
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let mut consumer = GroupConsumer::new(&client, ConsumerConfig::default(), GroupConfig::new("billing"))?;
/// consumer.subscribe(&["orders"])?;
/// loop {
///     for record in &consumer.poll(Duration::from_millis(500))? {
///         println!("{}/{} {}", record.partition(), record.offset(), String::from_utf8_lossy(record.value().unwrap_or_default()));
///     }
///     // Returning to poll marks those records processed; they are committed every 5 s.
/// }
/// # Ok::<(), spate_client::Error>(())
/// ```
pub struct GroupConsumer {
    client: Client,
    consumer: Consumer,
    shared: Arc<GroupShared>,
    topics: Vec<String>,
    listener: Box<dyn RebalanceListener>,
    last_commit: Instant,
    closed: bool,
}

impl GroupConsumer {
    /// A member of `group.group_id` reading with `consumer` settings. Starts its heartbeat task;
    /// joins nothing until it subscribes and polls.
    pub fn new(
        client: &Client,
        consumer: ConsumerConfig,
        group: GroupConfig,
    ) -> Result<Self, Error> {
        group.check()?;
        let consumer = client.consumer(consumer)?;
        let shared = Arc::new(GroupShared::new(group, client.network().clone()));
        client.spawn_detached(member::run_heartbeats(shared.clone()));
        Ok(Self {
            client: client.clone(),
            consumer,
            shared,
            topics: Vec::new(),
            listener: Box::new(NoRebalanceListener),
            last_commit: Instant::now(),
            closed: false,
        })
    }

    /// The group settings.
    pub fn group_config(&self) -> &GroupConfig {
        &self.shared.config
    }

    /// Reads `topics` as a member of the group, replacing any earlier subscription. The next
    /// `poll` joins (or rejoins) the group.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        if topics.is_empty() {
            return Err(Error::invalid("subscription", "no topics"));
        }
        self.topics = topics.iter().map(|topic| topic.to_string()).collect();
        self.shared.state().rejoin_needed = true;
        Ok(())
    }

    /// Like [`GroupConsumer::subscribe`], with callbacks for revoked and assigned partitions.
    pub fn subscribe_with_listener(
        &mut self,
        topics: &[&str],
        listener: impl RebalanceListener + 'static,
    ) -> Result<(), Error> {
        self.listener = Box::new(listener);
        self.subscribe(topics)
    }

    /// Waits up to `timeout` for records of the assigned partitions. Runs the group's duties
    /// first: commits due processed positions, and rebalances when the group asks (which may
    /// take up to the rebalance timeout). Returning here again marks the records returned now
    /// as processed.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            block_on(self.run_duties())?;
            let left = deadline.saturating_duration_since(Instant::now());
            let polled = self.consumer.poll(left.min(defaults::POLL_SLICE))?;
            if !polled.is_empty() || Instant::now() >= deadline {
                return Ok(polled);
            }
        }
    }

    /// Like [`GroupConsumer::poll`], for async code on any runtime. Callbacks still run inside
    /// the call, on the task that polls.
    pub async fn poll_async(&mut self, timeout: Duration) -> Result<Polled, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.run_duties().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let polled = self
                .consumer
                .poll_async(left.min(defaults::POLL_SLICE))
                .await?;
            if !polled.is_empty() || Instant::now() >= deadline {
                return Ok(polled);
            }
        }
    }

    /// Like [`GroupConsumer::poll`], with records that own (share) their bytes.
    pub fn poll_owned(&mut self, timeout: Duration) -> Result<Vec<crate::OwnedRecord>, Error> {
        Ok(self.poll(timeout)?.to_owned_records())
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// The next offset `poll` returns for an owned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.consumer.position(topic, partition)
    }

    /// Moves an owned partition's position to `offset`: the next `poll` returns records from
    /// there. After an aborted transaction of consume-transform-produce, seeking back to the
    /// committed offsets reads the input of the aborted transaction again.
    pub fn seek(&self, topic: &str, partition: u32, offset: u64) -> Result<(), Error> {
        self.consumer.seek(topic, partition, offset)
    }

    /// Records between the position and the last high watermark seen, for an owned partition.
    pub fn lag(&self, topic: &str, partition: u32) -> Option<u64> {
        self.consumer.lag(topic, partition)
    }

    /// The member id the coordinator gave this member (empty before the first join).
    pub fn member_id(&self) -> String {
        self.shared.state().member_id.clone()
    }

    /// The generation this member is in (`-1` before the first join).
    pub fn generation(&self) -> i32 {
        self.shared.state().generation
    }

    /// This member as a transactional producer names it when it commits the member's offsets
    /// inside a transaction
    /// ([`Producer::send_offsets_to_transaction`](crate::Producer::send_offsets_to_transaction)):
    /// group, generation, member id and instance id, read now. Take it after the `poll` whose
    /// records the transaction processed.
    pub fn group_metadata(&self) -> ConsumerGroupMetadata {
        let state = self.shared.state();
        ConsumerGroupMetadata {
            group_id: self.shared.config.group_id.clone(),
            generation_id: state.generation,
            member_id: state.member_id.clone(),
            group_instance_id: self.shared.config.group_instance_id.clone(),
        }
    }

    /// Commits the positions of every owned partition (what `poll` has returned so far) and
    /// waits for the broker's acknowledgement. Call it after processing.
    pub fn commit_sync(&mut self) -> Result<(), Error> {
        let result = self.commit_async().wait();
        if result.is_ok() {
            self.last_commit = Instant::now();
        }
        result
    }

    /// Like [`GroupConsumer::commit_sync`], without waiting: the [`Completion`] says how it
    /// went.
    pub fn commit_async(&mut self) -> Completion<()> {
        let offsets = self.positions();
        self.commit_offsets(offsets)
    }

    /// Commits explicit positions (the next offset to read) as this member.
    pub fn commit_offsets(&self, offsets: Vec<(TopicPartition, u64)>) -> Completion<()> {
        let network = self.client.network().clone();
        let group_id = self.shared.config.group_id.clone();
        let identity = {
            let state = self.shared.state();
            (
                state.member_id.clone(),
                state.generation,
                self.shared.config.group_instance_id.clone(),
            )
        };
        let shared = self.shared.clone();
        self.client.spawn("commit offsets", async move {
            let result = member::commit(&network, &group_id, Some(identity), offsets).await;
            if let Err(error) = &result {
                if matches!(
                    error.code(),
                    Some(
                        spate_protocol::ErrorCode::RebalanceInProgress
                            | spate_protocol::ErrorCode::IllegalGeneration
                    )
                ) {
                    shared.state().rejoin_needed = true;
                }
            }
            result
        })
    }

    /// The group's committed offsets of `partitions`, in order (`None`: nothing committed).
    pub fn committed(&self, partitions: &[TopicPartition]) -> Completion<Vec<Option<u64>>> {
        let network = self.client.network().clone();
        let group_id = self.shared.config.group_id.clone();
        let partitions = partitions.to_vec();
        // A read_committed member waits for offsets pending in a transaction (Kafka's
        // consumer asks with `require_stable` under read_committed too).
        let require_stable =
            self.consumer.config().isolation_level == IsolationLevel::ReadCommitted;
        self.client.spawn("fetch offsets", async move {
            member::committed(&network, &group_id, &partitions, require_stable).await
        })
    }

    /// Commits processed positions (with auto-commit on), then leaves the group. A static
    /// member does not leave: it keeps its place for a restart within the session timeout.
    pub fn close(mut self) -> Result<(), Error> {
        self.shut_down(true)
    }

    /// Stops without committing or leaving, as if the process had died: the group notices
    /// after the session timeout, and the next owners re-read what was not committed.
    pub fn close_without_leaving(mut self) {
        self.closed = true;
        self.stop_heartbeats();
    }

    fn shut_down(&mut self, commit: bool) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let committed =
            if commit && self.shared.config.auto_commit_interval.is_some() && self.is_joined() {
                self.commit_async().wait()
            } else {
                Ok(())
            };
        self.stop_heartbeats();
        let left = if self.shared.config.group_instance_id.is_none() {
            let shared = self.shared.clone();
            self.client
                .spawn("leave group", async move { member::leave(&shared).await })
                .wait()
        } else {
            Ok(())
        };
        committed.and(left)
    }

    fn stop_heartbeats(&self) {
        self.shared.state().closed = true;
        self.shared.wake.notify_one();
    }

    fn is_joined(&self) -> bool {
        self.shared.state().joined
    }

    fn positions(&self) -> Vec<(TopicPartition, u64)> {
        self.consumer
            .assignment()
            .into_iter()
            .filter_map(|partition| {
                let position = self
                    .consumer
                    .position(&partition.topic, partition.partition)?;
                Some((partition, position))
            })
            .collect()
    }

    /// What `poll` does before reading: report a fatal failure, rebalance if asked, commit
    /// when the interval is up.
    async fn run_duties(&mut self) -> Result<(), Error> {
        let (rejoin, joined) = {
            let mut state = self.shared.state();
            state.last_poll = Instant::now();
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
            }
            (state.rejoin_needed, state.joined)
        };
        if self.topics.is_empty() {
            return Ok(());
        }
        if rejoin || !joined {
            return self.rebalance().await;
        }
        if let Some(interval) = self.shared.config.auto_commit_interval {
            if self.last_commit.elapsed() >= interval {
                // A failed auto-commit is retried at the next interval; what it would have
                // committed is committed then, or read again after a rebalance.
                drop(self.commit_async());
                self.last_commit = Instant::now();
            }
        }
        Ok(())
    }

    /// Gives up the current partitions (committing what was processed) and joins the new
    /// generation.
    async fn rebalance(&mut self) -> Result<(), Error> {
        let owned = self.consumer.assignment();
        if !owned.is_empty() {
            if self.is_joined() {
                // At least once: what was processed is committed before anyone else reads it.
                // If the group already fenced this generation, the next owner re-reads.
                let _ = self.commit_async().await;
            }
            self.listener.partitions_revoked(&owned);
            let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for partition in &owned {
                by_topic
                    .entry(&partition.topic)
                    .or_default()
                    .push(partition.partition);
            }
            for (topic, partitions) in by_topic {
                self.consumer.unassign(topic, &partitions);
            }
        }
        self.shared.state().joined = false;
        let assigned = self
            .client
            .spawn(
                "join group",
                member::join_and_sync(
                    self.shared.clone(),
                    self.client.network().clone(),
                    self.topics.clone(),
                    owned,
                ),
            )
            .await?;
        self.assign(&assigned).await?;
        self.last_commit = Instant::now();
        self.listener.partitions_assigned(&assigned);
        Ok(())
    }

    /// Starts reading `assigned` from the group's committed offsets (or `offset_reset` where
    /// nothing is committed).
    async fn assign(&mut self, assigned: &[TopicPartition]) -> Result<(), Error> {
        if assigned.is_empty() {
            return Ok(());
        }
        let committed = self.committed(assigned).await?;
        let mut starts: Vec<Completion<()>> = Vec::with_capacity(assigned.len());
        for (partition, offset) in assigned.iter().zip(committed) {
            let start = match (offset, self.shared.config.offset_reset) {
                (Some(offset), _) => StartAt::Offset(offset),
                (None, OffsetReset::Earliest) => StartAt::Earliest,
                (None, OffsetReset::Latest) => StartAt::Latest,
                (None, OffsetReset::Error) => {
                    return Err(Error::invalid(
                        "group assignment",
                        format!("{partition} has no committed offset and offset_reset is Error"),
                    ))
                }
            };
            starts.push(self.consumer.assign(
                &partition.topic,
                Some(&[partition.partition]),
                start,
            ));
        }
        for start in starts {
            start.await?;
        }
        Ok(())
    }
}

/// Runs `future` to completion on this thread, parking it while the future waits. For the
/// blocking API: the futures awaited here are [`Completion`]s, which the I/O thread completes.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let _ = self.shut_down(true);
    }
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupConsumer")
            .field("group_id", &self.shared.config.group_id)
            .field("topics", &self.topics)
            .field("assignment", &self.assignment())
            .finish()
    }
}

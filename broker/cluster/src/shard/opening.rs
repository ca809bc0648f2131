//! Partitions a shard has not opened yet, and the broker's readiness.
//!
//! The broker serves as soon as its catalog is loaded; each shard then opens the partitions the
//! catalog places on it in the background, a bounded number at a time ([`Opening::run`]). A
//! request for a partition that is still opening waits for that partition's open to end (an
//! event per partition, not a poll), within the request's own timeout ([`Opening::wait`]); a
//! partition someone waits for is opened before the ones nobody asked for yet.
//!
//! [`Readiness`] counts, for the whole broker, how many partitions there are to open, how many
//! opened and how many ended offline, and when the broker began serving and finished opening:
//! the start-up log lines report it, and an admin API can.
//!
//! What is not here: how one partition is opened and what the shard does with it (`shard`,
//! `shard::partition`). Everything but [`Readiness`] is shard-local (`Rc`) and lives as long as
//! its shard.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use super::messages::PartitionKey;

/// One partition not opened yet.
struct Pending<T> {
    /// What the opener needs to open it (the shard's: the topic's metadata).
    target: T,
    /// An open of it has begun.
    started: bool,
    /// Never has permits: closed when the open ends, which wakes every waiter at once.
    ended: Rc<Semaphore>,
}

/// The partitions one shard still has to open, in the order it opens them. Shard-local.
pub struct Opening<T> {
    pending: RefCell<HashMap<PartitionKey, Pending<T>>>,
    /// Keys in the order they were added.
    queue: RefCell<VecDeque<PartitionKey>>,
    /// Keys a request waits for, opened before the queue's. A key may also still sit in `queue`;
    /// whichever comes first starts it, the other is skipped.
    wanted: RefCell<VecDeque<PartitionKey>>,
    /// No new opens begin (shutdown); opens already running finish.
    stopped: Cell<bool>,
}

impl<T> Default for Opening<T> {
    fn default() -> Self {
        Opening {
            pending: RefCell::new(HashMap::new()),
            queue: RefCell::new(VecDeque::new()),
            wanted: RefCell::new(VecDeque::new()),
            stopped: Cell::new(false),
        }
    }
}

impl<T: Clone + 'static> Opening<T> {
    /// Queues `key` to be opened. A key already pending is left as it is.
    pub fn add(&self, key: PartitionKey, target: T) {
        let mut pending = self.pending.borrow_mut();
        if pending.contains_key(&key) {
            return;
        }
        pending.insert(
            key,
            Pending {
                target,
                started: false,
                ended: Rc::new(Semaphore::new(0)),
            },
        );
        self.queue.borrow_mut().push_back(key);
    }

    /// Whether `key` is queued or being opened.
    pub fn is_pending(&self, key: &PartitionKey) -> bool {
        self.pending.borrow().contains_key(key)
    }

    /// How many partitions are queued or being opened.
    pub fn pending_count(&self) -> usize {
        self.pending.borrow().len()
    }

    /// The pending keys that `select` picks (a topic being deleted, say).
    pub fn pending_keys(&self, select: impl Fn(&PartitionKey) -> bool) -> Vec<PartitionKey> {
        self.pending
            .borrow()
            .keys()
            .filter(|key| select(key))
            .copied()
            .collect()
    }

    /// Waits until the open of `key` has ended (opened or offline: the caller looks again), or
    /// `deadline` passes; `None` waits as long as it takes. Returns whether the open ended (true
    /// as well when `key` was not pending). A key not started yet is opened next.
    pub async fn wait(&self, key: &PartitionKey, deadline: Option<Instant>) -> bool {
        let ended = {
            let pending = self.pending.borrow();
            let Some(entry) = pending.get(key) else {
                return true;
            };
            if !entry.started {
                self.wanted.borrow_mut().push_back(*key);
            }
            entry.ended.clone()
        };
        // Closing the event is the only way the acquire ends (it has no permits to give).
        let ended_wait = async {
            let _ = ended.acquire(1).await;
            true
        };
        match deadline {
            None => ended_wait.await,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left == Duration::ZERO {
                    return false;
                }
                futures_lite::future::or(ended_wait, async {
                    glommio::timer::sleep(left).await;
                    false
                })
                .await
            }
        }
    }

    /// Removes `key` if its open has not begun (its topic is being deleted); its waiters wake and
    /// look again. Returns false when the open is running (wait for it instead) or `key` is not
    /// pending.
    pub fn cancel(&self, key: &PartitionKey) -> bool {
        let mut pending = self.pending.borrow_mut();
        match pending.get(key) {
            Some(entry) if !entry.started => {
                let entry = pending.remove(key).expect("present");
                entry.ended.close();
                true
            }
            _ => false,
        }
    }

    /// No open begins after this (shutdown); the running ones finish and [`Opening::run`]
    /// returns. The partitions never started stay pending.
    pub fn stop(&self) {
        self.stopped.set(true);
    }

    /// The next key to open, marked started: a wanted one first, else the queue's next.
    fn next(&self) -> Option<(PartitionKey, T)> {
        if self.stopped.get() {
            return None;
        }
        let mut pending = self.pending.borrow_mut();
        for source in [&self.wanted, &self.queue] {
            while let Some(key) = source.borrow_mut().pop_front() {
                if let Some(entry) = pending.get_mut(&key) {
                    if !entry.started {
                        entry.started = true;
                        return Some((key, entry.target.clone()));
                    }
                }
            }
        }
        None
    }

    /// The open of `key` ended: wakes its waiters.
    fn finish(&self, key: &PartitionKey) {
        let entry = self.pending.borrow_mut().remove(key);
        assert!(
            entry.as_ref().is_some_and(|entry| entry.started),
            "an open ended for a partition that was not being opened"
        );
        if let Some(entry) = entry {
            entry.ended.close();
        }
    }

    /// Opens every pending partition with `open`, at most `in_flight` at once, until none is
    /// left or [`Opening::stop`] is called. `open` must have put the partition where requests
    /// find it (or taken it offline) by the time its future ends: the waiters wake then.
    pub async fn run<F, O>(self: &Rc<Self>, in_flight: usize, open: F)
    where
        F: Fn(PartitionKey, T) -> O + 'static,
        O: Future<Output = ()> + 'static,
    {
        assert!(in_flight > 0, "at least one open at a time");
        let open = Rc::new(open);
        let workers: Vec<glommio::Task<()>> = (0..in_flight)
            .map(|_| {
                let opening = self.clone();
                let open = open.clone();
                glommio::spawn_local(async move {
                    while let Some((key, target)) = opening.next() {
                        open(key, target).await;
                        opening.finish(&key);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await;
        }
    }
}

/// Not yet: the value of an instant in [`Readiness`] before it happened.
const NOT_YET_MS: u64 = u64::MAX;

/// The broker's readiness, shared by every shard thread: how many partitions the start had to
/// open and how that went, and when serving began and opening ended. Counts only the opens of
/// the start, not those of topics created later.
#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    shards_opening: AtomicUsize,
    partitions_total: AtomicUsize,
    partitions_opened: AtomicUsize,
    partitions_offline: AtomicUsize,
    serving_after_ms: AtomicU64,
    opened_after_ms: AtomicU64,
}

/// A copy of [`Readiness`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessReport {
    /// Partitions the catalog placed on the shards at the start.
    pub partitions_total: usize,
    pub partitions_opened: usize,
    /// Partitions that could not be opened (offline, logged with their reason).
    pub partitions_offline: usize,
    /// Milliseconds from the start to serving (every shard listening), once it happened.
    pub serving_after_ms: Option<u64>,
    /// Milliseconds from the start until every shard had opened its partitions, once it did.
    pub opened_after_ms: Option<u64>,
}

impl ReadinessReport {
    /// Partitions still being opened or waiting to be.
    pub fn partitions_opening(&self) -> usize {
        self.partitions_total
            .saturating_sub(self.partitions_opened + self.partitions_offline)
    }
}

impl Readiness {
    /// `started`: when the broker began starting, from which the times are counted.
    pub fn new(shard_count: usize, started: Instant) -> Self {
        Readiness {
            started,
            shards_opening: AtomicUsize::new(shard_count),
            partitions_total: AtomicUsize::new(0),
            partitions_opened: AtomicUsize::new(0),
            partitions_offline: AtomicUsize::new(0),
            serving_after_ms: AtomicU64::new(NOT_YET_MS),
            opened_after_ms: AtomicU64::new(NOT_YET_MS),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NOT_YET_MS - 1)
    }

    /// A shard found `count` partitions to open.
    pub fn add_partitions(&self, count: usize) {
        self.partitions_total.fetch_add(count, Ordering::SeqCst);
    }

    pub fn partition_opened(&self) {
        self.partitions_opened.fetch_add(1, Ordering::SeqCst);
    }

    pub fn partition_offline(&self) {
        self.partitions_offline.fetch_add(1, Ordering::SeqCst);
    }

    /// Every shard listens: the broker serves from now on.
    pub fn serving(&self) {
        self.serving_after_ms
            .store(self.elapsed_ms(), Ordering::SeqCst);
    }

    /// A shard ended its start-up opens (all done, or stopped by shutdown). Returns true for the
    /// last shard to do so, which then reports for the broker.
    pub fn shard_opened(&self) -> bool {
        let before = self.shards_opening.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "more shards ended their opens than there are");
        if before == 1 {
            self.opened_after_ms
                .store(self.elapsed_ms(), Ordering::SeqCst);
            return true;
        }
        false
    }

    pub fn report(&self) -> ReadinessReport {
        let instant = |value: &AtomicU64| match value.load(Ordering::SeqCst) {
            NOT_YET_MS => None,
            milliseconds => Some(milliseconds),
        };
        ReadinessReport {
            partitions_total: self.partitions_total.load(Ordering::SeqCst),
            partitions_opened: self.partitions_opened.load(Ordering::SeqCst),
            partitions_offline: self.partitions_offline.load(Ordering::SeqCst),
            serving_after_ms: instant(&self.serving_after_ms),
            opened_after_ms: instant(&self.opened_after_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutor;
    use std::collections::HashSet;

    fn key(partition: u32) -> PartitionKey {
        PartitionKey {
            topic_id: 1,
            partition,
        }
    }

    /// What a shard's opener does, reduced to its effect: the partition becomes findable. The
    /// open of a partition in `held` does not end until its gate is closed by the test, which
    /// stands for an open with much recovery to do, without any timing.
    struct Harness {
        opening: Rc<Opening<()>>,
        open: Rc<RefCell<HashSet<PartitionKey>>>,
        order: Rc<RefCell<Vec<PartitionKey>>>,
        gates: Rc<RefCell<HashMap<PartitionKey, Rc<Semaphore>>>>,
        /// Closed when the open of the key begins.
        starts: Rc<HashMap<PartitionKey, Rc<Semaphore>>>,
    }

    impl Harness {
        fn new(keys: &[PartitionKey], held: &[PartitionKey]) -> Harness {
            let opening = Rc::new(Opening::default());
            for key in keys {
                opening.add(*key, ());
            }
            let gates = held
                .iter()
                .map(|key| (*key, Rc::new(Semaphore::new(0))))
                .collect();
            let starts = keys
                .iter()
                .map(|key| (*key, Rc::new(Semaphore::new(0))))
                .collect();
            Harness {
                opening,
                open: Rc::default(),
                order: Rc::default(),
                gates: Rc::new(RefCell::new(gates)),
                starts: Rc::new(starts),
            }
        }

        /// Runs the opens in the background with `in_flight` at once.
        fn run(&self, in_flight: usize) -> glommio::Task<()> {
            let opening = self.opening.clone();
            let open = self.open.clone();
            let order = self.order.clone();
            let gates = self.gates.clone();
            let starts = self.starts.clone();
            glommio::spawn_local(async move {
                opening
                    .run(in_flight, move |key, ()| {
                        let open = open.clone();
                        let order = order.clone();
                        let gate = gates.borrow().get(&key).cloned();
                        let start = starts[&key].clone();
                        async move {
                            order.borrow_mut().push(key);
                            start.close();
                            if let Some(gate) = gate {
                                let _ = gate.acquire(1).await;
                            }
                            open.borrow_mut().insert(key);
                        }
                    })
                    .await
            })
        }

        /// Ends when the open of `key` has begun.
        async fn started(&self, key: PartitionKey) {
            let _ = self.starts[&key].acquire(1).await;
        }

        /// A request for `key` with `timeout`, in a task of its own: returns whether the open
        /// ended and whether the partition was open then, and a flag that is set once the
        /// request is parked on the open's event.
        fn request(
            &self,
            key: PartitionKey,
            timeout: Option<Duration>,
        ) -> (glommio::Task<(bool, bool)>, Rc<Cell<bool>>) {
            let opening = self.opening.clone();
            let open = self.open.clone();
            let parked = Rc::new(Cell::new(false));
            let flag = parked.clone();
            let task = glommio::spawn_local(async move {
                // Nothing can suspend this task between here and the wait's own await, so a
                // test that sees the flag knows the request is waiting on the event.
                flag.set(true);
                let ended = opening
                    .wait(&key, timeout.map(|timeout| Instant::now() + timeout))
                    .await;
                (ended, open.borrow().contains(&key))
            });
            (task, parked)
        }

        fn release(&self, key: PartitionKey) {
            self.gates.borrow()[&key].close();
        }

        fn is_open(&self, key: PartitionKey) -> bool {
            self.open.borrow().contains(&key)
        }
    }

    #[test]
    fn a_partition_is_served_while_another_is_still_opening() {
        LocalExecutor::default().run(async {
            let slow = key(0);
            let fast = key(1);
            let harness = Harness::new(&[slow, fast], &[slow]);
            let running = harness.run(16);
            // Waiting is what a request does: it ends when the open of `fast` ends.
            assert!(harness.opening.wait(&fast, None).await);
            assert!(harness.is_open(fast));
            assert!(!harness.opening.is_pending(&fast));
            assert!(
                harness.opening.is_pending(&slow),
                "the slow one is still opening"
            );
            assert!(!harness.is_open(slow));
            harness.release(slow);
            running.await;
            assert!(harness.is_open(slow));
            assert_eq!(harness.opening.pending_count(), 0);
        });
    }

    #[test]
    fn a_request_for_an_opening_partition_waits_and_then_succeeds() {
        LocalExecutor::default().run(async {
            let slow = key(0);
            let harness = Harness::new(&[slow], &[slow]);
            let running = harness.run(16);
            harness.started(slow).await;
            // A request whose timeout has passed gets the retriable answer at once.
            assert!(!harness.opening.wait(&slow, Some(Instant::now())).await);
            let (request, parked) = harness.request(slow, Some(Duration::from_secs(3600)));
            glommio::executor().yield_task_queue_now().await;
            assert!(parked.get(), "the request is waiting");
            assert!(!harness.is_open(slow));
            harness.release(slow);
            assert_eq!(request.await, (true, true), "it waited, then found it open");
            running.await;
        });
    }

    #[test]
    fn a_partition_a_request_waits_for_opens_before_the_queued_ones() {
        LocalExecutor::default().run(async {
            let keys: Vec<PartitionKey> = (0..4).map(key).collect();
            let harness = Harness::new(&keys, &[keys[0]]);
            let running = harness.run(1);
            // One open at a time: partition 0 holds the only slot when a request wants 3.
            harness.started(keys[0]).await;
            let (request, parked) = harness.request(keys[3], None);
            glommio::executor().yield_task_queue_now().await;
            assert!(parked.get());
            harness.release(keys[0]);
            assert_eq!(request.await, (true, true));
            running.await;
            assert_eq!(
                *harness.order.borrow(),
                vec![keys[0], keys[3], keys[1], keys[2]]
            );
        });
    }

    #[test]
    fn stopping_lets_running_opens_finish_and_starts_no_more() {
        LocalExecutor::default().run(async {
            let keys: Vec<PartitionKey> = (0..3).map(key).collect();
            let harness = Harness::new(&keys, &[keys[0]]);
            let running = harness.run(1);
            harness.started(keys[0]).await;
            harness.opening.stop();
            harness.release(keys[0]);
            running.await;
            assert!(harness.is_open(keys[0]));
            assert_eq!(harness.opening.pending_count(), 2);
            assert!(!harness.is_open(keys[1]));
        });
    }

    #[test]
    fn a_cancelled_partition_wakes_its_waiters_and_is_never_opened() {
        LocalExecutor::default().run(async {
            let keys: Vec<PartitionKey> = (0..2).map(key).collect();
            let harness = Harness::new(&keys, &[keys[0]]);
            let running = harness.run(1);
            harness.started(keys[0]).await;
            assert!(!harness.opening.cancel(&keys[0]), "already being opened");
            let (request, parked) = harness.request(keys[1], None);
            glommio::executor().yield_task_queue_now().await;
            assert!(parked.get());
            assert!(harness.opening.cancel(&keys[1]));
            assert_eq!(
                request.await,
                (true, false),
                "woken, and it was never opened"
            );
            harness.release(keys[0]);
            running.await;
            assert_eq!(*harness.order.borrow(), vec![keys[0]]);
        });
    }

    #[test]
    fn readiness_counts_the_start_and_names_the_last_shard() {
        let readiness = Readiness::new(2, Instant::now());
        readiness.add_partitions(3);
        readiness.add_partitions(2);
        readiness.partition_opened();
        readiness.partition_offline();
        readiness.serving();
        let report = readiness.report();
        assert_eq!(report.partitions_opening(), 3);
        assert!(report.serving_after_ms.is_some());
        assert_eq!(report.opened_after_ms, None);
        assert!(!readiness.shard_opened());
        assert!(readiness.shard_opened());
        assert!(readiness.report().opened_after_ms.is_some());
    }
}

//! Typed cross-shard calls: "run this on shard N with its services and give me its `T`", as
//! Seastar's `sharded<T>::invoke_on`. A call is a closure sent over a bounded glommio channel
//! mesh; the answer comes back in a slot typed by the closure's output, so a wrong-shaped answer
//! does not compile.
//!
//! Each shard holds one `Mesh` (shard-local, lives as long as the shard's executor) inside the
//! services registered beside its [`Shard`](super::Shard) (see [`ShardServices`]). A call takes
//! a fresh id, parks a one-slot local channel under it, and sends `Envelope::Call` with the
//! closure and a shared slot for its answer; the peer's receiver task runs the closure in a task
//! of its own, stores the answer in the slot and sends `Envelope::Answered` back, which this
//! shard's receiver task delivers to the parked channel. The queues between shards are the
//! mesh's bounded channels, `cross_shard_queue_depth` deep (set where the mesh is built).
//!
//! Architecture invariant: a receiver task never waits on a send. Calls are handed to new tasks
//! and answers go into one-slot channels that have exactly one message, so two shards that call
//! each other with full channels cannot deadlock: both keep draining.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;

use super::messages::PartitionError;
use super::Shard;
use crate::catalog::ShardId;
use crate::storage::FileSystem;

/// A shard and the services registered beside it (the group coordinator, ...), as one shard's
/// executor holds them: what a cross-shard call runs against. Each layer that adds a per-shard
/// service extends this trait with an accessor for it (`group::GroupServices`); the server
/// defines the one type that implements them all. Derefs to the shard.
pub trait ShardServices: Deref<Target = Shard<Self::Files>> + Sized + 'static {
    /// The file system the shard's partitions live on.
    type Files: FileSystem + 'static;
    fn shard(&self) -> &Rc<Shard<Self::Files>>;
    fn mesh(&self) -> &Mesh<Self>;

    /// A cluster member's way to create and grow topics (through the controller); `None` for a
    /// single broker, whose catalog does it (`topic_creation`).
    fn cluster_topics(&self) -> Option<Rc<dyn super::topic_creation::ClusterTopics>> {
        None
    }
}

/// The call was not run or its answer cannot arrive: the target shard's end of the mesh is gone,
/// which happens only while the broker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the target shard is stopping")]
pub struct ShardStopping;

impl From<ShardStopping> for PartitionError {
    fn from(_: ShardStopping) -> Self {
        PartitionError::ShuttingDown
    }
}

/// A call as it travels: runs on the target with the target's services and stores its answer.
type Job<S> = Box<dyn FnOnce(Rc<S>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// What travels between shards.
pub enum Envelope<S> {
    Call {
        id: u64,
        job: Job<S>,
    },
    /// The call `id` stored its answer in its slot.
    Answered {
        id: u64,
    },
}

/// One shard's end of the mesh.
pub struct Mesh<S> {
    senders: Senders<Envelope<S>>,
    /// Calls waiting for their answer: the target shard and the one-slot channel to wake.
    pending: RefCell<HashMap<u64, (ShardId, LocalSender<()>)>>,
    /// Peers whose end of the mesh is gone (they stopped): calls to them fail at once.
    stopped: RefCell<Vec<ShardId>>,
    /// Per peer, never has permits: closed when the peer stops, which wakes a call blocked on
    /// sending to it (its queue full, and nobody left to drain it).
    peer_gone: RefCell<HashMap<ShardId, Rc<Semaphore>>>,
    /// Never has permits: closed by [`Mesh::stop`], which ends the receiver tasks.
    stopping: Rc<Semaphore>,
    /// The receiver tasks, one per peer: [`Mesh::stop`] waits for them to end.
    receivers: RefCell<Vec<glommio::Task<()>>>,
    next_id: Cell<u64>,
}

/// Runs `call` on shard `target` with that shard's services and returns its answer: directly
/// when `target` is this shard, else through the mesh.
pub async fn invoke_on<S, T, F, Fut>(
    services: &Rc<S>,
    target: ShardId,
    call: F,
) -> Result<T, ShardStopping>
where
    S: ShardServices,
    F: FnOnce(Rc<S>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if target == services.id {
        return Ok(call(services.clone()).await);
    }
    spate_metrics::shard(|metrics| metrics.cross_shard_calls_sent.increment());
    services.mesh().call(target, call).await
}

impl<S: ShardServices> Mesh<S> {
    pub fn new(senders: Senders<Envelope<S>>) -> Mesh<S> {
        Mesh {
            senders,
            pending: RefCell::new(HashMap::new()),
            stopped: RefCell::new(Vec::new()),
            peer_gone: RefCell::new(HashMap::new()),
            stopping: Rc::new(Semaphore::new(0)),
            receivers: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
        }
    }

    /// This shard's id: its index in the mesh.
    pub fn shard_id(&self) -> ShardId {
        self.senders.peer_id()
    }

    /// Sends `call` to `target` (never this shard) and waits for its answer.
    async fn call<T, F, Fut>(&self, target: ShardId, call: F) -> Result<T, ShardStopping>
    where
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        assert_ne!(
            target,
            self.shard_id(),
            "local calls do not travel through the mesh"
        );
        // Written once by the target before it sends `Answered`, read once here after that
        // message arrived: the lock is never contended, it only makes the handover `Sync`.
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let target_slot = slot.clone();
        let job: Job<S> = Box::new(move |services: Rc<S>| {
            Box::pin(async move {
                let answer = call(services).await;
                *target_slot
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner()) = Some(answer);
            })
        });
        if self.stopped.borrow().contains(&target) {
            return Err(ShardStopping);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, (target, sender));
        // Removes the parked sender whether the call completes, fails or is cancelled.
        let _forget = Forget { mesh: self, id };
        // The send waits while the target's queue is full; if the target stops meanwhile (or
        // this shard does) nobody drains it, so either ends the wait.
        let gone = self.peer_gone(target);
        let stopping = self.stopping.clone();
        let sent = futures_lite::future::or(
            async {
                self.senders
                    .send_to(target, Envelope::Call { id, job })
                    .await
                    .is_ok()
            },
            async {
                futures_lite::future::or(
                    async {
                        let _ = gone.acquire(1).await;
                    },
                    async {
                        let _ = stopping.acquire(1).await;
                    },
                )
                .await;
                false
            },
        )
        .await;
        if !sent {
            return Err(ShardStopping);
        }
        receiver.recv().await.ok_or(ShardStopping)?;
        let answer = slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        Ok(answer.expect("a call stores its answer before it says it answered"))
    }

    /// Starts one receiver task per peer. Calls run in their own tasks with `services`, this
    /// shard's. When a peer's end of the mesh goes (its executor ended), the calls waiting for
    /// its answers fail with [`ShardStopping`]: a call it had not run, or was running, is lost
    /// with it, and its answer can never arrive.
    pub fn spawn_receivers(&self, mut receivers: Receivers<Envelope<S>>, services: &Rc<S>) {
        for (peer, receiver) in receivers.streams() {
            let services = services.clone();
            let stopping = self.stopping.clone();
            let task = glommio::spawn_local(async move {
                loop {
                    let next =
                        futures_lite::future::or(async { Some(receiver.recv().await) }, async {
                            let _ = stopping.acquire(1).await;
                            None
                        })
                        .await;
                    match next {
                        Some(Some(envelope)) => {
                            if matches!(envelope, Envelope::Call { .. }) {
                                spate_metrics::shard(|metrics| {
                                    metrics.cross_shard_calls_run.increment()
                                });
                            }
                            receive(&services, peer, envelope)
                        }
                        Some(None) => {
                            services.mesh().peer_stopped(peer);
                            break;
                        }
                        // This shard stops: the receiver goes with the task.
                        None => break,
                    }
                }
            });
            self.receivers.borrow_mut().push(task);
        }
    }

    /// This shard's end of the mesh goes: the receiver tasks end (peers' sends to this shard
    /// fail), the senders close (peers' calls waiting on this shard fail with
    /// [`ShardStopping`]), and this shard's own waiting calls fail the same way. Call it when
    /// the shard stops: glommio does not drop a task when its executor ends, so without it the
    /// mesh end would outlive the shard and peers' calls would wait forever. Calls this shard was
    /// running for peers are abandoned with it (their callers get `ShardStopping`).
    pub async fn stop(&self) {
        self.stopping.close();
        self.senders.close();
        self.pending.borrow_mut().clear();
        let receivers = std::mem::take(&mut *self.receivers.borrow_mut());
        for receiver in receivers {
            receiver.await;
        }
    }

    /// The semaphore closed when `peer` stops.
    fn peer_gone(&self, peer: ShardId) -> Rc<Semaphore> {
        self.peer_gone
            .borrow_mut()
            .entry(peer)
            .or_insert_with(|| Rc::new(Semaphore::new(0)))
            .clone()
    }

    /// Fails every call waiting on `peer` (dropping its one-slot channel wakes it with
    /// `ShardStopping`) and every later one.
    fn peer_stopped(&self, peer: ShardId) {
        self.stopped.borrow_mut().push(peer);
        self.peer_gone(peer).close();
        self.pending
            .borrow_mut()
            .retain(|_, (target, _)| *target != peer);
    }
}

fn receive<S: ShardServices>(services: &Rc<S>, peer: ShardId, envelope: Envelope<S>) {
    match envelope {
        Envelope::Call { id, job } => {
            let running = job(services.clone());
            let services = services.clone();
            glommio::spawn_local(async move {
                running.await;
                // The peer is gone only when the broker is stopping; the answer has no reader.
                let _ = services
                    .mesh()
                    .senders
                    .send_to(peer, Envelope::Answered { id })
                    .await;
            })
            .detach();
        }
        Envelope::Answered { id } => {
            if let Some((_, sender)) = services.mesh().pending.borrow_mut().remove(&id) {
                // One slot, one message: this never fails for lack of room; it fails only if
                // the caller stopped waiting, and then nobody needs the answer.
                let _ = sender.try_send(());
            }
        }
    }
}

struct Forget<'a, S> {
    mesh: &'a Mesh<S>,
    id: u64,
}

impl<S> Drop for Forget<'_, S> {
    fn drop(&mut self) {
        self.mesh.pending.borrow_mut().remove(&self.id);
    }
}

//! Cross-shard calls: a request sent to another shard over a bounded glommio channel mesh, and
//! its response routed back to the task that asked.
//!
//! Each shard holds one `Mesh` (shard-local, lives as long as the shard's executor). A call takes
//! a fresh id, parks a one-slot local channel under it, and sends `Envelope::Request`; the peer's
//! receiver task runs the request in its own task and sends `Envelope::Response` back, which this
//! shard's receiver task delivers to the parked channel.
//!
//! Architecture invariant: a receiver task never waits on a send. Requests are handed to new
//! tasks and responses go into one-slot channels that have exactly one message, so two shards
//! that call each other with full channels cannot deadlock: both keep draining.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

use super::messages::{PartitionError, ShardRequest, ShardResponse};

/// What travels between shards.
#[derive(Debug)]
pub enum Envelope {
    Request { id: u64, request: ShardRequest },
    Response { id: u64, response: ShardResponse },
}

/// Runs a request on the shard that received it, producing the response.
pub type RequestExecutor = Rc<dyn Fn(ShardRequest) -> Pin<Box<dyn Future<Output = ShardResponse>>>>;

/// One shard's end of the mesh.
pub struct Mesh {
    senders: Senders<Envelope>,
    pending: RefCell<HashMap<u64, LocalSender<ShardResponse>>>,
    next_id: Cell<u64>,
}

impl Mesh {
    pub fn new(senders: Senders<Envelope>) -> Rc<Self> {
        Rc::new(Mesh {
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        })
    }

    /// This shard's id: its index in the mesh.
    pub fn shard_id(&self) -> usize {
        self.senders.peer_id()
    }

    /// Sends `request` to `target` (never this shard) and waits for its response.
    pub async fn call(
        &self,
        target: usize,
        request: ShardRequest,
    ) -> Result<ShardResponse, PartitionError> {
        assert_ne!(
            target,
            self.shard_id(),
            "local requests do not travel through the mesh"
        );
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, sender);
        // Removes the parked sender whether the call completes, fails or is cancelled.
        let _forget = Forget { mesh: self, id };
        if self
            .senders
            .send_to(target, Envelope::Request { id, request })
            .await
            .is_err()
        {
            return Err(PartitionError::ShuttingDown);
        }
        receiver.recv().await.ok_or(PartitionError::ShuttingDown)
    }

    /// Starts one receiver task per peer. Requests run in their own tasks through `execute`.
    pub fn spawn_receivers(
        self: &Rc<Self>,
        mut receivers: Receivers<Envelope>,
        execute: RequestExecutor,
    ) {
        for (peer, receiver) in receivers.streams() {
            let mesh = self.clone();
            let execute = execute.clone();
            glommio::spawn_local(async move {
                while let Some(envelope) = receiver.recv().await {
                    mesh.receive(peer, envelope, &execute);
                }
            })
            .detach();
        }
    }

    fn receive(self: &Rc<Self>, peer: usize, envelope: Envelope, execute: &RequestExecutor) {
        match envelope {
            Envelope::Request { id, request } => {
                let running = execute(request);
                let mesh = self.clone();
                glommio::spawn_local(async move {
                    let response = running.await;
                    // The peer is gone only when the broker is stopping; the answer has no reader.
                    let _ = mesh
                        .senders
                        .send_to(peer, Envelope::Response { id, response })
                        .await;
                })
                .detach();
            }
            Envelope::Response { id, response } => {
                if let Some(sender) = self.pending.borrow_mut().remove(&id) {
                    // One slot, one message: this never fails for lack of room; it fails only if
                    // the caller stopped waiting, and then nobody needs the response.
                    let _ = sender.try_send(response);
                }
            }
        }
    }
}

struct Forget<'a> {
    mesh: &'a Mesh,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.mesh.pending.borrow_mut().remove(&self.id);
    }
}

//! Memory budgets: the bytes a connection, and all connections of a shard together, may hold in
//! request frames and pending responses.
//!
//! A budget is a glommio semaphore counted in bytes. A connection's reader takes a permit from its
//! own budget, then from the shard's, before it reads further; the permits ride with the request
//! until its response is written. When a budget is spent the reader simply waits, so the socket's
//! receive buffer fills and TCP flow control slows the peer: a producer that outruns the disk is
//! slowed, never buffered without bound. Shard-local: each budget belongs to one executor thread.

use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};

/// A byte budget owned by one shard thread (`Rc`: shared by that shard's tasks only).
#[derive(Debug, Clone)]
pub struct ByteBudget {
    semaphore: Rc<Semaphore>,
    capacity_bytes: usize,
}

/// Bytes held from a connection budget and its shard budget; returned to both when dropped.
#[derive(Debug, Default)]
pub struct HeldBytes {
    permits: Vec<StaticPermit>,
    bytes: usize,
}

impl HeldBytes {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds more held bytes (e.g. a fetch's response reservation) to this request's holding.
    pub fn absorb(&mut self, other: HeldBytes) {
        self.bytes += other.bytes;
        self.permits.extend(other.permits);
    }
}

impl ByteBudget {
    pub fn new(capacity_bytes: usize) -> Self {
        assert!(capacity_bytes > 0, "a budget must allow at least one byte");
        ByteBudget {
            semaphore: Rc::new(Semaphore::new(capacity_bytes as u64)),
            capacity_bytes,
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    pub fn available_bytes(&self) -> usize {
        self.semaphore.available() as usize
    }

    /// Waits until `bytes` are free in this budget and then in `outer`, and holds them.
    /// `bytes` above a capacity is clamped to it so a request can never wait forever; the
    /// configuration guarantees a largest frame fits (see `Config::check`).
    /// Returns `None` if a budget was closed (shutdown).
    pub async fn hold(&self, outer: &ByteBudget, bytes: usize) -> Option<HeldBytes> {
        let inner_bytes = bytes.min(self.capacity_bytes) as u64;
        let outer_bytes = bytes.min(outer.capacity_bytes) as u64;
        let inner = self
            .semaphore
            .acquire_static_permit(inner_bytes)
            .await
            .ok()?;
        let outer_permit = outer
            .semaphore
            .acquire_static_permit(outer_bytes)
            .await
            .ok()?;
        Some(HeldBytes {
            permits: vec![inner, outer_permit],
            bytes,
        })
    }

    /// Wakes every waiter with an error; used when a connection or shard shuts down.
    pub fn close(&self) {
        self.semaphore.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutor;

    #[test]
    fn held_bytes_return_to_both_budgets_when_dropped() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(100);
            let shard = ByteBudget::new(150);
            let held = connection.hold(&shard, 60).await.unwrap();
            assert_eq!(connection.available_bytes(), 40);
            assert_eq!(shard.available_bytes(), 90);
            drop(held);
            assert_eq!(connection.available_bytes(), 100);
            assert_eq!(shard.available_bytes(), 150);
        });
    }

    #[test]
    fn a_spent_budget_makes_the_next_holder_wait_until_bytes_return() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(100);
            let shard = ByteBudget::new(100);
            let first = connection.hold(&shard, 80).await.unwrap();
            let waiter = {
                let connection = connection.clone();
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    connection.hold(&shard, 50).await.map(|held| held.bytes())
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(
                connection.available_bytes(),
                20,
                "the waiter must not have taken bytes"
            );
            drop(first);
            assert_eq!(waiter.await, Some(50));
        });
    }

    #[test]
    fn requests_larger_than_the_budget_are_clamped_instead_of_waiting_forever() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(10);
            let shard = ByteBudget::new(10);
            let held = connection.hold(&shard, 1000).await.unwrap();
            assert_eq!(connection.available_bytes(), 0);
            drop(held);
        });
    }
}

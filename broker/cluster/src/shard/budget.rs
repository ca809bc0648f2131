//! Memory budgets: the bytes a connection, and all connections of a shard together, may hold in
//! request frames and pending responses.
//!
//! A budget is a byte counter with waiters. A connection's reader takes bytes from its own budget,
//! then from the shard's, before it reads further; the bytes ride with the request until its
//! response is written. When a budget is spent the reader simply waits, so the socket's receive
//! buffer fills and TCP flow control slows the peer: a producer that outruns the disk is slowed,
//! never buffered without bound.
//!
//! A frame's bytes are held in two steps (see `server::connection`): its first read chunk from
//! the shard's small arrival budget, the rest, once that chunk has arrived, from the shard's large
//! budget. Holders of the large budget never wait for the arrival budget, so the two cannot hold
//! each other up. Waiters are not queued in order: every release wakes them all and each takes
//! what it needs if it is free. Shard-local: each budget belongs to one executor thread and dies
//! with it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A byte budget owned by one shard thread (`Rc`: shared by that shard's tasks only).
#[derive(Debug, Clone)]
pub struct ByteBudget {
    state: Rc<State>,
}

#[derive(Debug)]
struct State {
    capacity_bytes: usize,
    available_bytes: Cell<usize>,
    /// Bytes charged beyond what was available; paid back first by every release.
    overdrawn_bytes: Cell<usize>,
    closed: Cell<bool>,
    next_waiter: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl State {
    fn release(&self, bytes: usize) {
        let overdrawn = self.overdrawn_bytes.get();
        let repaid = bytes.min(overdrawn);
        self.overdrawn_bytes.set(overdrawn - repaid);
        let available = self.available_bytes.get() + (bytes - repaid);
        assert!(
            available <= self.capacity_bytes,
            "a budget got back more bytes than it lent"
        );
        self.available_bytes.set(available);
        self.wake_all();
    }

    fn wake_all(&self) {
        if self.waiters.borrow().is_empty() {
            return;
        }
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .drain()
            .map(|(_, waker)| waker)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Takes `bytes` if they are free.
    fn try_take(&self, bytes: usize) -> bool {
        let available = self.available_bytes.get();
        if available >= bytes {
            self.available_bytes.set(available - bytes);
            true
        } else {
            false
        }
    }
}

/// Bytes held from several budgets (a connection's and a shard's); returned to each when dropped.
#[derive(Debug, Default)]
pub struct HeldBytes {
    /// Each budget held from, with the bytes held from it (the same unless clamped).
    parts: Vec<(Rc<State>, usize)>,
    bytes: usize,
}

impl HeldBytes {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds more held bytes (the next read step, a fetch's response allowance) to this holding.
    pub fn absorb(&mut self, mut other: HeldBytes) {
        self.bytes += other.bytes;
        for (state, bytes) in other.parts.drain(..) {
            match self
                .parts
                .iter_mut()
                .find(|(mine, _)| Rc::ptr_eq(mine, &state))
            {
                Some((_, held)) => *held += bytes,
                None => self.parts.push((state, bytes)),
            }
        }
    }

    /// Splits `bytes` off this holding into a holding of their own (a complete frame leaving the
    /// reader's holding with its request). `bytes` above what is held is a broken invariant.
    pub fn split_off(&mut self, bytes: usize) -> HeldBytes {
        assert!(
            bytes <= self.bytes,
            "splitting off more bytes than are held"
        );
        self.bytes -= bytes;
        let parts = self
            .parts
            .iter_mut()
            .map(|(state, held)| {
                let moved = bytes.min(*held);
                *held -= moved;
                (state.clone(), moved)
            })
            .collect();
        HeldBytes { parts, bytes }
    }

    /// Returns the parts held from `released` to their budgets and holds `replacement`'s instead
    /// (a complete small frame moving from the arrival budgets to the large one).
    pub fn exchange(&mut self, released: &[&ByteBudget], mut replacement: HeldBytes) {
        self.parts.retain(|(state, bytes)| {
            let release = released
                .iter()
                .any(|budget| Rc::ptr_eq(&budget.state, state));
            if release && *bytes > 0 {
                state.release(*bytes);
            }
            !release
        });
        self.parts.append(&mut replacement.parts);
    }

    /// Returns what is held beyond `bytes` to the budgets.
    pub fn release_beyond(&mut self, bytes: usize) {
        if self.bytes > bytes {
            drop(self.split_off(self.bytes - bytes));
        }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        for (state, bytes) in self.parts.drain(..) {
            if bytes > 0 {
                state.release(bytes);
            }
        }
    }
}

impl ByteBudget {
    pub fn new(capacity_bytes: usize) -> Self {
        assert!(capacity_bytes > 0, "a budget must allow at least one byte");
        ByteBudget {
            state: Rc::new(State {
                capacity_bytes,
                available_bytes: Cell::new(capacity_bytes),
                overdrawn_bytes: Cell::new(0),
                closed: Cell::new(false),
                next_waiter: Cell::new(0),
                waiters: RefCell::new(HashMap::new()),
            }),
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.state.capacity_bytes
    }

    pub fn available_bytes(&self) -> usize {
        self.state.available_bytes.get()
    }

    /// Bytes held beyond the capacity (by [`charge`]); zero unless overdrawn.
    pub fn overdrawn_bytes(&self) -> usize {
        self.state.overdrawn_bytes.get()
    }

    /// Resolves once the budget is not overdrawn (`true`), or when it is closed (`false`).
    pub async fn within_capacity(&self) -> bool {
        WithinCapacity {
            state: &self.state,
            waiter: None,
        }
        .await
    }

    /// Wakes every waiter with `None`; used when a connection or shard shuts down.
    pub fn close(&self) {
        self.state.closed.set(true);
        self.state.wake_all();
    }
}

/// Waits until `bytes` are free in each budget, in the order given, and holds them. `bytes` above
/// a budget's capacity is clamped to it so a request can never wait forever; the configuration
/// guarantees a largest frame fits (see `Config::check`). Returns `None` if a budget was closed
/// (shutdown); what was taken by then is returned.
pub async fn hold(budgets: &[&ByteBudget], bytes: usize) -> Option<HeldBytes> {
    let mut held = HeldBytes {
        parts: Vec::with_capacity(budgets.len()),
        bytes,
    };
    for budget in budgets {
        let taken = Take {
            state: &budget.state,
            bytes: bytes.min(budget.state.capacity_bytes),
            waiter: None,
        }
        .await?;
        held.parts.push((budget.state.clone(), taken));
    }
    Some(held)
}

/// Holds `bytes` of each budget if all are free now; never waits.
pub fn try_hold(budgets: &[&ByteBudget], bytes: usize) -> Option<HeldBytes> {
    let mut held = HeldBytes {
        parts: Vec::with_capacity(budgets.len()),
        bytes,
    };
    for budget in budgets {
        let state = &budget.state;
        let wanted = bytes.min(state.capacity_bytes);
        if state.closed.get() || !state.try_take(wanted) {
            return None;
        }
        held.parts.push((state.clone(), wanted));
    }
    Some(held)
}

/// Holds `bytes` of each budget at once, never waiting: for memory that already exists. What a
/// budget does not have free overdraws it (see the module's comment); no clamping to capacity.
pub fn charge(budgets: &[&ByteBudget], bytes: usize) -> HeldBytes {
    let mut held = HeldBytes {
        parts: Vec::with_capacity(budgets.len()),
        bytes,
    };
    for budget in budgets {
        let state = &budget.state;
        let available = state.available_bytes.get();
        let taken = bytes.min(available);
        state.available_bytes.set(available - taken);
        state
            .overdrawn_bytes
            .set(state.overdrawn_bytes.get() + (bytes - taken));
        held.parts.push((state.clone(), bytes));
    }
    held
}

/// Waits until a budget is not overdrawn.
struct WithinCapacity<'a> {
    state: &'a Rc<State>,
    waiter: Option<u64>,
}

impl Future for WithinCapacity<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<bool> {
        let state = self.state;
        if state.closed.get() || state.overdrawn_bytes.get() == 0 {
            if let Some(id) = self.waiter.take() {
                state.waiters.borrow_mut().remove(&id);
            }
            return Poll::Ready(!state.closed.get());
        }
        let id = *self.waiter.get_or_insert_with(|| {
            let id = state.next_waiter.get();
            state.next_waiter.set(id + 1);
            id
        });
        state
            .waiters
            .borrow_mut()
            .insert(id, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for WithinCapacity<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.waiter {
            self.state.waiters.borrow_mut().remove(&id);
        }
    }
}

/// Waits for `bytes` of one budget, then takes them.
struct Take<'a> {
    state: &'a Rc<State>,
    bytes: usize,
    waiter: Option<u64>,
}

impl Future for Take<'_> {
    type Output = Option<usize>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<usize>> {
        let state = self.state;
        if state.closed.get() {
            return Poll::Ready(None);
        }
        if state.try_take(self.bytes) {
            if let Some(id) = self.waiter.take() {
                state.waiters.borrow_mut().remove(&id);
            }
            return Poll::Ready(Some(self.bytes));
        }
        let id = *self.waiter.get_or_insert_with(|| {
            let id = state.next_waiter.get();
            state.next_waiter.set(id + 1);
            id
        });
        state
            .waiters
            .borrow_mut()
            .insert(id, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for Take<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.waiter {
            self.state.waiters.borrow_mut().remove(&id);
        }
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
            let held = hold(&[&connection, &shard], 60).await.unwrap();
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
            let first = hold(&[&connection, &shard], 80).await.unwrap();
            let waiter = {
                let connection = connection.clone();
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    hold(&[&connection, &shard], 50)
                        .await
                        .map(|held| held.bytes())
                })
            };
            glommio::executor().yield_task_queue_now().await;
            assert_eq!(
                connection.available_bytes(),
                20,
                "the waiter must not have taken bytes"
            );
            assert!(try_hold(&[&connection, &shard], 50).is_none());
            drop(first);
            assert_eq!(waiter.await, Some(50));
        });
    }

    #[test]
    fn requests_larger_than_the_budget_are_clamped_instead_of_waiting_forever() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(10);
            let shard = ByteBudget::new(10);
            let held = hold(&[&connection, &shard], 1000).await.unwrap();
            assert_eq!(connection.available_bytes(), 0);
            drop(held);
            assert_eq!(shard.available_bytes(), 10);
        });
    }

    #[test]
    fn a_split_off_part_returns_its_bytes_alone() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(100);
            let shard = ByteBudget::new(100);
            let mut held = try_hold(&[&connection, &shard], 60).unwrap();
            held.absorb(try_hold(&[&connection, &shard], 20).unwrap());
            let frame = held.split_off(50);
            assert_eq!((frame.bytes(), held.bytes()), (50, 30));
            drop(frame);
            assert_eq!(shard.available_bytes(), 70);
            held.release_beyond(10);
            assert_eq!(connection.available_bytes(), 90);
            drop(held);
            assert_eq!(shard.available_bytes(), 100);
        });
    }

    #[test]
    fn an_exchange_moves_a_holding_from_one_budget_to_another() {
        let connection = ByteBudget::new(100);
        let arrival = ByteBudget::new(100);
        let large = ByteBudget::new(100);
        let mut held = try_hold(&[&connection, &arrival], 40).unwrap();
        held.exchange(&[&arrival], try_hold(&[&large], 40).unwrap());
        assert_eq!(held.bytes(), 40);
        assert_eq!(arrival.available_bytes(), 100);
        assert_eq!(large.available_bytes(), 60);
        drop(held);
        assert_eq!(
            (connection.available_bytes(), large.available_bytes()),
            (100, 100)
        );
    }

    #[test]
    fn a_failed_try_takes_nothing() {
        let connection = ByteBudget::new(100);
        let shard = ByteBudget::new(10);
        assert!(try_hold(&[&connection, &shard], 50).is_some_and(|held| held.bytes() == 50));
        let _spent = try_hold(&[&shard], 10).unwrap();
        assert!(try_hold(&[&connection, &shard], 5).is_none());
        assert_eq!(connection.available_bytes(), 100);
    }

    #[test]
    fn a_charge_overdraws_and_the_overdraft_is_repaid_before_anything_is_lent() {
        LocalExecutor::default().run(async {
            let budget = ByteBudget::new(100);
            let held = try_hold(&[&budget], 60).unwrap();
            let charged = charge(&[&budget], 70);
            assert_eq!(
                (budget.available_bytes(), budget.overdrawn_bytes()),
                (0, 30)
            );
            assert!(try_hold(&[&budget], 1).is_none());
            let waiter = {
                let budget = budget.clone();
                glommio::spawn_local(async move { budget.within_capacity().await })
            };
            glommio::executor().yield_task_queue_now().await;
            // Releasing 60 pays the 30 overdrawn first: 30 free, and no longer overdrawn.
            drop(held);
            assert_eq!(
                (budget.available_bytes(), budget.overdrawn_bytes()),
                (30, 0)
            );
            assert!(waiter.await);
            drop(charged);
            assert_eq!(
                (budget.available_bytes(), budget.overdrawn_bytes()),
                (100, 0)
            );
        });
    }

    #[test]
    fn a_wait_for_capacity_ends_when_the_budget_closes() {
        LocalExecutor::default().run(async {
            let budget = ByteBudget::new(10);
            let _charged = charge(&[&budget], 11);
            let waiter = {
                let budget = budget.clone();
                glommio::spawn_local(async move { budget.within_capacity().await })
            };
            glommio::executor().yield_task_queue_now().await;
            budget.close();
            assert!(!waiter.await);
        });
    }

    #[test]
    fn closing_a_budget_ends_every_wait() {
        LocalExecutor::default().run(async {
            let connection = ByteBudget::new(10);
            let shard = ByteBudget::new(10);
            let first = try_hold(&[&connection, &shard], 10).unwrap();
            let waiter = {
                let connection = connection.clone();
                let shard = shard.clone();
                glommio::spawn_local(async move { hold(&[&connection, &shard], 5).await.is_none() })
            };
            glommio::executor().yield_task_queue_now().await;
            connection.close();
            assert!(waiter.await);
            drop(first);
        });
    }
}

//! Which connections the broker takes: Kafka's `max.connections` and `max.connections.per.ip`
//! for the whole broker (every shard counts into one [`Admission`]), capped by the share of the
//! file-descriptor limit that connections may use, and a throttle for the log lines a flood of
//! refused or failed accepts would otherwise write.
//!
//! A source address that failed to authenticate too often lately
//! (`failed_authentications_per_address_max`, counted in `auth::failures`) is refused the same
//! way, before anything is read from it.
//!
//! A refused connection is accepted and closed at once: the client sees a clean close instead of
//! waiting in the kernel's backlog, and the descriptor is back before the next accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::failures::{AddressRefusal, FailedAuthentications};

/// Open connections of the whole broker, in total and per client address. Shared by every shard
/// (`Arc`); a connection counts from its accept until its [`Admitted`] is dropped.
#[derive(Debug)]
pub struct Admission {
    connections_max: usize,
    connections_per_ip_max: usize,
    open: AtomicUsize,
    open_per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Failed logins per address, counted by the sessions of every shard.
    failed_authentications: Arc<FailedAuthentications>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the broker has its most connections open ({limit}; connections_max or the file descriptor limit)")]
    BrokerFull { limit: usize },
    #[error("{address} has its most connections open ({limit}; connections_per_ip_max)")]
    AddressFull { address: IpAddr, limit: usize },
    #[error(
        "{address} failed to authenticate {} times lately (failed_authentications_per_address_max); \
         its connections are refused for {} ms more",
        refusal.failures,
        refusal.remaining.as_millis()
    )]
    FailedAuthentications {
        address: IpAddr,
        refusal: AddressRefusal,
    },
}

impl Refusal {
    /// Whether the accept path should log this refusal: a failed-authentication refusal once
    /// per address per window (its own throttle), the others through the accept log throttle.
    pub fn is_first_of_its_window(&self) -> Option<bool> {
        match self {
            Refusal::FailedAuthentications { refusal, .. } => Some(refusal.first_in_window),
            _ => None,
        }
    }
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub fn new(
        connections_max: usize,
        connections_per_ip_max: usize,
        failed_authentications: Arc<FailedAuthentications>,
    ) -> Self {
        Admission {
            connections_max,
            connections_per_ip_max,
            open: AtomicUsize::new(0),
            open_per_ip: Mutex::new(HashMap::new()),
            failed_authentications,
        }
    }

    /// The failed-login counts the sessions add to (`Services::failed_authentications`).
    pub fn failed_authentications(&self) -> &Arc<FailedAuthentications> {
        &self.failed_authentications
    }

    pub fn connections_max(&self) -> usize {
        self.connections_max
    }

    /// Counts a new connection from `address` in, or says which limit it would pass.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Refusal> {
        if let Some(refusal) = self.failed_authentications.refusal(address, Instant::now()) {
            return Err(Refusal::FailedAuthentications { address, refusal });
        }
        let mut per_ip = self
            .open_per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.open.load(Ordering::SeqCst) >= self.connections_max {
            return Err(Refusal::BrokerFull {
                limit: self.connections_max,
            });
        }
        let from_address = per_ip.entry(address).or_insert(0);
        if *from_address >= self.connections_per_ip_max {
            return Err(Refusal::AddressFull {
                address,
                limit: self.connections_per_ip_max,
            });
        }
        *from_address += 1;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Admitted {
            admission: self.clone(),
            address,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self
            .admission
            .open_per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = per_ip.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.address);
            }
        }
        self.admission.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub use crate::log_throttle::LogThrottle;

/// The next pause after a failed accept: from 10 ms, doubling, up to 1 s. Accepting fails when
/// descriptors run out (EMFILE/ENFILE); retrying at once would spin and log without end.
pub fn accept_backoff(previous: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);
    previous.map_or(FIRST, |pause| (pause * 2).min(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn admission(connections_max: usize, connections_per_ip_max: usize) -> Arc<Admission> {
        Arc::new(Admission::new(
            connections_max,
            connections_per_ip_max,
            Arc::new(FailedAuthentications::new(2, Duration::from_secs(60))),
        ))
    }

    #[test]
    fn connections_beyond_the_broker_limit_are_refused_until_one_closes() {
        let admission = admission(2, 10);
        let first = admission.admit(local(1)).unwrap();
        let _second = admission.admit(local(2)).unwrap();
        assert_eq!(
            admission.admit(local(3)).unwrap_err(),
            Refusal::BrokerFull { limit: 2 }
        );
        drop(first);
        assert!(admission.admit(local(3)).is_ok());
    }

    #[test]
    fn connections_beyond_the_per_address_limit_are_refused_for_that_address_only() {
        let admission = admission(10, 1);
        let _first = admission.admit(local(1)).unwrap();
        assert!(matches!(
            admission.admit(local(1)),
            Err(Refusal::AddressFull { limit: 1, .. })
        ));
        assert!(admission.admit(local(2)).is_ok());
        assert_eq!(admission.open_connections(), 1);
    }

    #[test]
    fn an_address_that_failed_to_authenticate_too_often_is_refused_and_counts_no_connection() {
        let admission = admission(10, 10);
        let now = Instant::now();
        admission.failed_authentications().record(local(1), now);
        let _admitted = admission.admit(local(1)).expect("one failure of two");
        admission.failed_authentications().record(local(1), now);
        let refusal = admission.admit(local(1)).unwrap_err();
        assert!(matches!(refusal, Refusal::FailedAuthentications { .. }));
        assert_eq!(refusal.is_first_of_its_window(), Some(true));
        let again = admission.admit(local(1)).unwrap_err();
        assert_eq!(again.is_first_of_its_window(), Some(false), "logged once");
        let _other = admission.admit(local(2)).expect("other addresses");
        assert_eq!(admission.open_connections(), 2, "refusals hold no place");
    }

    #[test]
    fn accept_backoff_doubles_up_to_a_second() {
        assert_eq!(accept_backoff(None), Duration::from_millis(10));
        assert_eq!(
            accept_backoff(Some(Duration::from_millis(640))),
            Duration::from_secs(1)
        );
        assert_eq!(
            accept_backoff(Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }
}

//! Failed authentications per source address, for the whole broker: an address that failed
//! `failed_authentications_per_address_max` times within `failed_authentication_window_ms` is
//! refused at accept (closed before anything is read) until that window has passed.
//!
//! `failed_authentication_delay_ms` bounds how fast one connection can guess; this bounds how
//! fast one address can, whatever number of connections it opens. Kafka has no such rule (it
//! leaves it to `max.connections.per.ip` and the delay); a broker reachable by many needs it.
//!
//! Shared by every shard (`Arc`, one mutex: taken once per failed login and once per accept, both
//! rare next to requests). The table has a fixed number of addresses
//! ([`FAILED_AUTHENTICATION_ADDRESSES_MAX`]); a new address in a full table takes the place of
//! the one whose window started first, so a flood of addresses costs a bounded amount of memory
//! and forgets the oldest guessers first. What a connection learns and what is logged is the
//! accept path's (`crate::admission`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Source addresses the broker remembers failures of; a new one past it evicts the address
/// whose window started first.
pub const FAILED_AUTHENTICATION_ADDRESSES_MAX: usize = 4096;

/// The failures of every address that failed recently. See the module documentation.
#[derive(Debug)]
pub struct FailedAuthentications {
    /// Failures an address may have per window before it is refused; 0: never refused.
    failures_max: u32,
    window: Duration,
    table: Mutex<HashMap<IpAddr, Window>>,
}

/// One address's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    /// Whether a refusal in this window was already logged (one line per address per window).
    refusal_logged: bool,
}

/// An address refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRefusal {
    pub failures: u32,
    /// Until the window ends, from now.
    pub remaining: Duration,
    /// The first refusal of this window: the one to log.
    pub first_in_window: bool,
}

impl FailedAuthentications {
    pub fn new(failures_max: u32, window: Duration) -> FailedAuthentications {
        assert!(
            failures_max == 0 || !window.is_zero(),
            "a failure limit needs a window to count in"
        );
        FailedAuthentications {
            failures_max,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one failed authentication from `address` at `now`.
    pub fn record(&self, address: IpAddr, now: Instant) {
        if self.failures_max == 0 {
            return;
        }
        let mut table = self.lock();
        if !table.contains_key(&address) && table.len() >= FAILED_AUTHENTICATION_ADDRESSES_MAX {
            // Full: the oldest window goes (it is the nearest to ending anyway).
            let oldest = table
                .iter()
                .min_by_key(|(_, window)| window.started)
                .map(|(address, _)| *address)
                .expect("a full table has entries");
            table.remove(&oldest);
        }
        let window = table.entry(address).or_insert(Window {
            started: now,
            failures: 0,
            refusal_logged: false,
        });
        if now.duration_since(window.started) >= self.window {
            *window = Window {
                started: now,
                failures: 0,
                refusal_logged: false,
            };
        }
        window.failures = window.failures.saturating_add(1);
        debug_assert!(table.len() <= FAILED_AUTHENTICATION_ADDRESSES_MAX);
    }

    /// Whether a connection from `address` is refused at `now`: it already failed the most
    /// times its window allows. A window that has passed is forgotten here.
    pub fn refusal(&self, address: IpAddr, now: Instant) -> Option<AddressRefusal> {
        if self.failures_max == 0 {
            return None;
        }
        let mut table = self.lock();
        let window = table.get_mut(&address)?;
        let elapsed = now.duration_since(window.started);
        if elapsed >= self.window {
            table.remove(&address);
            return None;
        }
        if window.failures < self.failures_max {
            return None;
        }
        let first_in_window = !window.refusal_logged;
        window.refusal_logged = true;
        Some(AddressRefusal {
            failures: window.failures,
            remaining: self.window - elapsed,
            first_in_window,
        })
    }

    /// Addresses remembered now (tests, and the bound's check).
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // A panic while holding it left counts, nothing half-written that matters.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn address(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_is_refused_once_it_failed_the_most_times_until_its_window_passes() {
        let failures = FailedAuthentications::new(3, WINDOW);
        let start = Instant::now();
        for _ in 0..2 {
            failures.record(address(1), start);
        }
        assert_eq!(failures.refusal(address(1), start), None, "two of three");
        failures.record(address(1), start + Duration::from_secs(1));
        let refused = failures
            .refusal(address(1), start + Duration::from_secs(10))
            .expect("three failures: refused");
        assert_eq!(refused.failures, 3);
        assert_eq!(refused.remaining, Duration::from_secs(50));
        assert!(refused.first_in_window, "the first refusal is logged");
        let again = failures
            .refusal(address(1), start + Duration::from_secs(20))
            .expect("still refused");
        assert!(!again.first_in_window, "logged once per window");
        assert_eq!(failures.refusal(address(2), start), None, "other addresses");
        assert_eq!(
            failures.refusal(address(1), start + WINDOW),
            None,
            "the window passed"
        );
        assert_eq!(failures.addresses(), 0, "and was forgotten");
    }

    #[test]
    fn failures_after_the_window_start_a_new_one() {
        let failures = FailedAuthentications::new(2, WINDOW);
        let start = Instant::now();
        failures.record(address(1), start);
        failures.record(address(1), start + WINDOW + Duration::from_secs(1));
        assert_eq!(
            failures.refusal(address(1), start + WINDOW + Duration::from_secs(2)),
            None,
            "one failure in the new window"
        );
    }

    #[test]
    fn a_limit_of_zero_counts_nothing() {
        let failures = FailedAuthentications::new(0, Duration::ZERO);
        let now = Instant::now();
        for _ in 0..100 {
            failures.record(address(1), now);
        }
        assert_eq!(failures.refusal(address(1), now), None);
        assert_eq!(failures.addresses(), 0);
    }

    #[test]
    fn the_table_stays_bounded_and_evicts_the_oldest_window() {
        let failures = FailedAuthentications::new(1, WINDOW);
        let start = Instant::now();
        let addresses = FAILED_AUTHENTICATION_ADDRESSES_MAX as u32 + 10;
        for index in 0..addresses {
            let at = start + Duration::from_millis(u64::from(index));
            failures.record(IpAddr::from((index + 1).to_be_bytes()), at);
        }
        assert_eq!(failures.addresses(), FAILED_AUTHENTICATION_ADDRESSES_MAX);
        let later = start + Duration::from_secs(5);
        assert_eq!(
            failures.refusal(IpAddr::from(1u32.to_be_bytes()), later),
            None,
            "the oldest were evicted"
        );
        assert!(failures
            .refusal(IpAddr::from(addresses.to_be_bytes()), later)
            .is_some());
    }
}

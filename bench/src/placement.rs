//! Which CPUs the system under test gets and which the load generator gets, and pinning threads
//! to them.
//!
//! The broker (or redis-server) and the load generator are kept on disjoint cores whenever the
//! machine has at least two; on one core they share it, and the report says so. Threads a
//! driver starts inside a client library inherit the affinity of the thread that created the
//! client, so the harness restricts its main thread to the load cores before creating any.

use std::str::FromStr;

use serde::Serialize;

/// A list of CPU ids written `0-3` or `0,2,4-7`, in the order listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreList(pub Vec<usize>);

impl FromStr for CoreList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        spate_protocol::core_list::parse_core_list(text).map(CoreList)
    }
}

impl std::fmt::Display for CoreList {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: Vec<String> = self.0.iter().map(usize::to_string).collect();
        formatter.write_str(&text.join(","))
    }
}

/// Where everything runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// CPUs the system under test is pinned to (one broker shard each). Empty for an external
    /// broker whose cores were not given.
    pub broker_cores: Vec<usize>,
    /// CPUs the load generator's threads are pinned to, round-robin.
    pub load_cores: Vec<usize>,
    /// Whether the two sets overlap (too few cores to keep them apart).
    pub shared: bool,
}

impl Placement {
    /// Splits `available` between the broker and the load generator. Explicit lists win; with
    /// neither given, the broker takes the first half, rounded down (at least one core), and the load
    /// generator the rest.
    pub fn plan(
        available: &[usize],
        broker_cores: Option<&CoreList>,
        load_cores: Option<&CoreList>,
        broker_is_spawned: bool,
    ) -> Placement {
        let available = if available.is_empty() {
            vec![0]
        } else {
            available.to_vec()
        };
        let broker: Vec<usize> = match (broker_cores, broker_is_spawned) {
            (Some(list), _) => list.0.clone(),
            (None, true) => available[..(available.len() / 2).max(1)].to_vec(),
            (None, false) => Vec::new(),
        };
        let load: Vec<usize> = match load_cores {
            Some(list) => list.0.clone(),
            None => {
                let rest: Vec<usize> = available
                    .iter()
                    .copied()
                    .filter(|core| !broker.contains(core))
                    .collect();
                if rest.is_empty() {
                    available.clone()
                } else {
                    rest
                }
            }
        };
        let shared = load.iter().any(|core| broker.contains(core));
        Placement {
            broker_cores: broker,
            load_cores: load,
            shared,
        }
    }

    /// The core the load-generator thread number `index` runs on.
    pub fn load_core(&self, index: usize) -> usize {
        assert!(
            !self.load_cores.is_empty(),
            "a placement always has load cores"
        );
        self.load_cores[index % self.load_cores.len()]
    }

    /// The core the "broker side" of a limit measurement runs on.
    pub fn broker_side_core(&self) -> usize {
        self.broker_cores
            .first()
            .copied()
            .unwrap_or_else(|| self.load_core(1))
    }
}

/// The CPUs this process may run on, ascending.
pub fn available_cores() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let result =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        let count = std::thread::available_parallelism().map_or(1, |count| count.get());
        return (0..count).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `core` is below CPU_SETSIZE, the size of the set.
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect()
}

/// Pins the calling thread to one core. Returns whether the kernel accepted it (a core outside
/// the process's cgroup is refused; the thread then runs unpinned and the caller says so).
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Restricts the calling thread (and every thread it creates later) to `cores`.
pub fn restrict_current_thread(cores: &[usize]) -> std::io::Result<()> {
    let set = cpu_set(cores);
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let result =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A CPU set holding `cores` (those beyond CPU_SETSIZE are left out).
pub fn cpu_set(cores: &[usize]) -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores
        .iter()
        .filter(|&&core| core < libc::CPU_SETSIZE as usize)
    {
        // SAFETY: `core` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> CoreList {
        text.parse().unwrap()
    }

    #[test]
    fn core_lists_accept_ranges_and_single_cores() {
        assert_eq!(list("0-3").0, vec![0, 1, 2, 3]);
        assert_eq!(list("0,2,4-5").0, vec![0, 2, 4, 5]);
        assert!("3-1".parse::<CoreList>().is_err());
        assert!("1,1".parse::<CoreList>().is_err());
        assert!("x".parse::<CoreList>().is_err());
        assert!("".parse::<CoreList>().is_err());
        assert_eq!(list("0-2,5").to_string(), "0,1,2,5");
    }

    #[test]
    fn two_cores_give_one_to_the_broker_and_one_to_the_load() {
        let placement = Placement::plan(&[0, 1], None, None, true);
        assert_eq!(placement.broker_cores, vec![0]);
        assert_eq!(placement.load_cores, vec![1]);
        assert!(!placement.shared);
    }

    #[test]
    fn eight_cores_are_split_in_half() {
        let placement = Placement::plan(&(0..8).collect::<Vec<_>>(), None, None, true);
        assert_eq!(placement.broker_cores, vec![0, 1, 2, 3]);
        assert_eq!(placement.load_cores, vec![4, 5, 6, 7]);
    }

    #[test]
    fn one_core_is_shared_and_reported_as_shared() {
        let placement = Placement::plan(&[0], None, None, true);
        assert_eq!(placement.broker_cores, vec![0]);
        assert_eq!(placement.load_cores, vec![0]);
        assert!(placement.shared);
    }

    #[test]
    fn explicit_broker_cores_leave_the_rest_to_the_load() {
        let placement = Placement::plan(&[0, 1, 2, 3], Some(&list("0-2")), None, true);
        assert_eq!(placement.load_cores, vec![3]);
        let all_taken = Placement::plan(&[0, 1], Some(&list("0-1")), None, true);
        assert_eq!(all_taken.load_cores, vec![0, 1]);
        assert!(all_taken.shared);
    }

    #[test]
    fn an_external_broker_leaves_every_core_to_the_load() {
        let placement = Placement::plan(&[0, 1], None, None, false);
        assert!(placement.broker_cores.is_empty());
        assert_eq!(placement.load_cores, vec![0, 1]);
        assert!(!placement.shared);
    }

    #[test]
    fn load_threads_are_dealt_round_robin() {
        let placement = Placement::plan(&[0, 1, 2], Some(&list("0")), None, true);
        assert_eq!(placement.load_core(0), 1);
        assert_eq!(placement.load_core(1), 2);
        assert_eq!(placement.load_core(2), 1);
    }
}

//! Every check against fake hosts: trees of `/proc`, `/sys` and `fake/` files built in a
//! temporary directory, one per kind of machine (a tuned NVMe host, a stock one, a VM with a
//! virtio disk, a tmpfs data directory, a container with a seccomp filter), and `--apply`
//! writing the fake tree's files.

use std::path::{Path, PathBuf};

use spate_host::apply::{apply, ApplyError};
use spate_host::cli::{run, CheckFlags};
use spate_host::{check_host, CheckOptions, FakeHost, Finding, Severity, CHECK_NAMES};

/// A fake host under construction.
struct Tree {
    directory: tempfile::TempDir,
}

impl Tree {
    fn empty() -> Tree {
        Tree {
            directory: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn root(&self) -> &Path {
        self.directory.path()
    }

    fn place(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    fn file(&self, path: &str, text: &str) -> &Tree {
        let place = self.place(path);
        std::fs::create_dir_all(place.parent().expect("a parent")).expect("create parent");
        std::fs::write(place, text).expect("write fake file");
        self
    }

    fn directory(&self, path: &str) -> &Tree {
        std::fs::create_dir_all(self.place(path)).expect("create fake directory");
        self
    }

    /// A relative symlink, as sysfs has them.
    fn link(&self, path: &str, target: &str) -> &Tree {
        let place = self.place(path);
        std::fs::create_dir_all(place.parent().expect("a parent")).expect("create parent");
        let _ = std::fs::remove_file(&place);
        std::os::unix::fs::symlink(target, place).expect("create fake symlink");
        self
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.place(path)).expect("read fake file")
    }

    fn host(&self) -> FakeHost {
        FakeHost::new(self.root())
    }
}

const NVME_DEVICE: &str = "/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0";
const NIC_DEVICE: &str = "/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0";

/// Settings every host shares: a root shell, no container, 4 cores on one node, a tuned kernel.
fn tuned_common(tree: &Tree) {
    tree.file("/fake/euid", "0")
        .file("/fake/rlimit_memlock", "unlimited unlimited")
        .file("/fake/rlimit_nofile", "1048576 1048576")
        .file("/fake/io_uring_setup", "ok")
        .file(
            "/proc/self/status",
            "Name:\tspate-broker\nSeccomp:\t0\nSeccomp_filters:\t0\n",
        )
        .file("/proc/1/cgroup", "0::/init.scope\n")
        .file("/proc/sys/kernel/io_uring_disabled", "0\n")
        .file("/proc/sys/fs/aio-max-nr", "1048576\n")
        .file("/proc/sys/vm/swappiness", "1\n")
        .file("/proc/sys/net/core/somaxconn", "4096\n")
        .file("/proc/sys/net/ipv4/tcp_max_syn_backlog", "8192\n")
        .file("/proc/sys/net/core/rmem_max", "16777216\n")
        .file("/proc/sys/net/core/wmem_max", "16777216\n")
        .file("/proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t16777216\n")
        .file("/proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t16777216\n")
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "always defer defer+madvise [madvise] never\n",
        )
        .file(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc\n",
        )
        .file(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm\n",
        )
        .file("/sys/devices/system/cpu/online", "0-3\n")
        .file("/sys/devices/system/node/node0/cpulist", "0-3\n")
        .file(
            "/sys/devices/system/cpu/cpuidle/current_driver",
            "intel_idle\n",
        )
        .file("/sys/module/intel_idle/parameters/max_cstate", "1\n");
    for core in 0..4 {
        let cpu = format!("/sys/devices/system/cpu/cpu{core}");
        tree.file(&format!("{cpu}/cpufreq/scaling_governor"), "performance\n");
        for (state, name, latency, disable) in
            [(0, "POLL", 0, 0), (1, "C1", 2, 0), (2, "C6", 133, 1)]
        {
            let directory = format!("{cpu}/cpuidle/state{state}");
            tree.file(&format!("{directory}/name"), &format!("{name}\n"))
                .file(&format!("{directory}/latency"), &format!("{latency}\n"))
                .file(&format!("{directory}/disable"), &format!("{disable}\n"));
        }
    }
    // A NIC with two queues, each interrupt on its own core.
    tree.directory(NIC_DEVICE)
        .link(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:00:1c.0/0000:02:00.0",
        )
        .directory("/sys/class/net/lo")
        .file("/proc/irq/40/smp_affinity_list", "0\n")
        .file("/proc/irq/41/smp_affinity_list", "2\n");
    tree.directory("/var/lib/spate");
}

/// /proc/interrupts for 4 CPUs: NVMe admin and 4 I/O queues (IRQs 30-34), the NIC (40, 41).
const INTERRUPTS: &str = "           CPU0       CPU1       CPU2       CPU3
   0:         44          0          0          0   IO-APIC   2-edge      timer
  30:         10          0          0          0  PCI-MSIX-0000:3b:00.0   0-edge      nvme0q0
  31:        100          0          0          0  PCI-MSIX-0000:3b:00.0   1-edge      nvme0q1
  32:          0        100          0          0  PCI-MSIX-0000:3b:00.0   2-edge      nvme0q2
  33:          0          0        100          0  PCI-MSIX-0000:3b:00.0   3-edge      nvme0q3
  34:          0          0          0        100  PCI-MSIX-0000:3b:00.0   4-edge      nvme0q4
  40:       5000          0          0          0  PCI-MSIX-0000:02:00.0   0-edge      eth0-TxRx-0
  41:          0          0       5000          0  PCI-MSIX-0000:02:00.0   1-edge      eth0-TxRx-1
 NMI:          0          0          0          0   Non-maskable interrupts
";

/// A bare-metal host tuned as recommended: /var/lib/spate on XFS on nvme0n1p1, noatime.
fn tuned_nvme_host() -> Tree {
    let tree = Tree::empty();
    tuned_common(&tree);
    let disk = format!("{NVME_DEVICE}/nvme0n1");
    tree.file(&format!("{NVME_DEVICE}/numa_node"), "0\n")
        .link(&format!("{disk}/device"), "../../nvme0")
        .file(&format!("{disk}/queue/scheduler"), "[none] mq-deadline kyber\n")
        .file(&format!("{disk}/queue/nomerges"), "2\n")
        .file(&format!("{disk}/queue/read_ahead_kb"), "128\n")
        .file(&format!("{disk}/queue/write_cache"), "write through\n")
        .file(&format!("{disk}/queue/nr_requests"), "1023\n")
        .file(&format!("{disk}/queue/rotational"), "0\n")
        .file(&format!("{disk}/queue/io_poll"), "0\n")
        .file(&format!("{disk}/nvme0n1p1/partition"), "1\n")
        .link("/sys/dev/block/259:1", "../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/nvme0n1p1")
        .link("/sys/class/block/nvme0n1", "../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1")
        .file("/proc/interrupts", INTERRUPTS)
        .file(
            "/proc/self/mountinfo",
            "1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
             30 1 259:1 / /var/lib/spate rw,noatime shared:2 - xfs /dev/nvme0n1p1 rw,attr2,inode64\n",
        );
    for queue in 0..4 {
        tree.directory(&format!("{disk}/mq/{queue}"));
    }
    for (irq, core) in [(30, 0), (31, 0), (32, 1), (33, 2), (34, 3)] {
        tree.file(
            &format!("/proc/irq/{irq}/smp_affinity_list"),
            &format!("{core}\n"),
        );
    }
    tree
}

/// A cloud VM: /var/lib/spate on ext4 on a virtio disk, no cpufreq, kvm-clock.
fn virtio_vm() -> Tree {
    let tree = Tree::empty();
    tuned_common(&tree);
    let disk = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
    tree.file(&format!("{disk}/queue/scheduler"), "[none] mq-deadline\n")
        .file(&format!("{disk}/queue/nomerges"), "0\n")
        .file(&format!("{disk}/queue/read_ahead_kb"), "128\n")
        .file(&format!("{disk}/queue/write_cache"), "write back\n")
        .file(&format!("{disk}/queue/nr_requests"), "256\n")
        .file(&format!("{disk}/queue/rotational"), "1\n")
        .link(
            "/sys/dev/block/254:0",
            "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
        )
        .file(
            "/proc/self/mountinfo",
            "27 1 254:0 / / rw,noatime - ext4 /dev/vda rw\n",
        )
        .file(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "kvm-clock\n",
        )
        .file(
            "/proc/interrupts",
            "           CPU0       CPU1\n  25:   10   20   PCI-MSI 1-edge   virtio0-input.0\n",
        )
        .file("/proc/irq/25/smp_affinity_list", "0-3\n");
    std::fs::remove_dir_all(tree.place("/sys/class/net/eth0")).expect("remove NVMe host NIC");
    tree.directory("/sys/devices/pci0000:00/0000:00:03.0/virtio0")
        .link(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:00:03.0/virtio0",
        );
    for core in 0..4 {
        std::fs::remove_dir_all(tree.place(&format!("/sys/devices/system/cpu/cpu{core}/cpufreq")))
            .expect("remove cpufreq");
    }
    tree
}

fn options(cores: &[usize]) -> CheckOptions {
    CheckOptions {
        data_dir: PathBuf::from("/var/lib/spate"),
        shard_cores: cores.to_vec(),
        shards_pinned: true,
        io_memory_bytes: 16 << 20,
    }
}

fn finding<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
    findings
        .iter()
        .find(|finding| finding.name == name)
        .unwrap_or_else(|| panic!("no finding {name}"))
}

fn severities(findings: &[Finding]) -> Vec<(&'static str, Severity)> {
    findings
        .iter()
        .map(|finding| (finding.name, finding.severity))
        .collect()
}

#[test]
fn a_tuned_nvme_host_passes_every_check() {
    let tree = tuned_nvme_host();
    let findings = check_host(&tree.host(), &options(&[0, 1, 2, 3]));
    let not_ok: Vec<_> = severities(&findings)
        .into_iter()
        .filter(|(_, severity)| *severity != Severity::Ok)
        .collect();
    assert!(not_ok.is_empty(), "{not_ok:?}\n{findings:#?}");
    assert!(finding(&findings, "disk_rotational")
        .current
        .contains("nvme0n1p1 -> nvme0n1"));
    assert_eq!(
        finding(&findings, "nvme_queues").current,
        "4 hardware queues (nvme0n1)"
    );
    assert!(finding(&findings, "irq_nvme")
        .current
        .starts_with("4 I/O queue IRQs of nvme0"));
    assert!(finding(&findings, "irq_nic")
        .current
        .starts_with("2 IRQs of eth0"));
    assert!(finding(&findings, "numa")
        .current
        .contains("data disk on node 0"));
    assert!(findings
        .iter()
        .all(|finding| finding.fix.is_none() && finding.changes.is_empty()));
}

#[test]
fn every_check_reports_once_even_on_an_empty_host() {
    let tree = Tree::empty();
    let findings = check_host(&tree.host(), &options(&[0]));
    let names: Vec<&str> = findings.iter().map(|finding| finding.name).collect();
    assert_eq!(names, CHECK_NAMES);
    for finding in &findings {
        assert!(!finding.why.is_empty(), "{} says why", finding.name);
        assert_ne!(
            finding.severity,
            Severity::Fail,
            "{}: a host we cannot read is not a failure",
            finding.name
        );
    }
    assert_eq!(finding(&findings, "vm_swappiness").current, "not available");
}

#[test]
fn a_stock_host_gets_warnings_with_fixes_and_changes() {
    let tree = tuned_nvme_host();
    let disk = format!("{NVME_DEVICE}/nvme0n1");
    tree.file("/proc/sys/vm/swappiness", "60\n")
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "[always] defer defer+madvise madvise never\n",
        )
        .file(
            "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "powersave\n",
        )
        .file(
            "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "schedutil\n",
        )
        .file("/sys/devices/system/cpu/cpu1/cpuidle/state2/disable", "0\n")
        .file(
            &format!("{disk}/queue/scheduler"),
            "none [mq-deadline] kyber\n",
        )
        .file(&format!("{disk}/queue/nomerges"), "0\n")
        .file(&format!("{disk}/queue/read_ahead_kb"), "4096\n")
        .file(&format!("{disk}/queue/nr_requests"), "32\n")
        .file("/proc/sys/net/core/somaxconn", "128\n")
        .file("/proc/sys/net/ipv4/tcp_wmem", "4096 16384 4194304\n")
        .file(
            "/proc/self/mountinfo",
            "30 1 259:1 / /var/lib/spate rw,relatime - xfs /dev/nvme0n1p1 rw\n",
        );
    let findings = check_host(&tree.host(), &options(&[0, 1, 2, 3]));
    let warned: Vec<&str> = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Warn)
        .map(|finding| finding.name)
        .collect();
    assert_eq!(
        warned,
        [
            "cpu_governor",
            "cpu_idle",
            "transparent_hugepages",
            "transparent_hugepages_defrag",
            "vm_swappiness",
            "mount_options",
            "disk_scheduler",
            "disk_nomerges",
            "disk_read_ahead",
            "disk_queue_depth",
            "net_somaxconn",
            "net_tcp_wmem",
        ]
    );
    assert!(findings
        .iter()
        .all(|finding| finding.severity != Severity::Fail));
    let governor = finding(&findings, "cpu_governor");
    assert_eq!(
        governor.current,
        "performance on 0-1; powersave on 2; schedutil on 3"
    );
    assert_eq!(
        governor.fix.as_deref(),
        Some("cpupower -c 2-3 frequency-set -g performance")
    );
    assert_eq!(governor.changes.len(), 2);
    assert!(finding(&findings, "cpu_idle")
        .current
        .contains("deepest enabled C6 (133 µs)"));
    assert_eq!(
        finding(&findings, "cpu_idle")
            .fix
            .as_deref()
            .map(|fix| fix.starts_with("cpupower -c 1 idle-set -D 20")),
        Some(true)
    );
    let scheduler = finding(&findings, "disk_scheduler");
    assert_eq!(
        scheduler.fix.as_deref(),
        Some("echo none > /sys/block/nvme0n1/queue/scheduler")
    );
    assert_eq!(
        scheduler.changes[0].persist.line,
        "ACTION==\"add|change\", SUBSYSTEM==\"block\", KERNEL==\"nvme0n1\", ATTR{queue/scheduler}=\"none\""
    );
    assert_eq!(
        finding(&findings, "net_tcp_wmem").fix.as_deref(),
        Some("sysctl -w net.ipv4.tcp_wmem=\"4096 16384 16777216\"")
    );
    assert_eq!(
        finding(&findings, "mount_options").fix.as_deref(),
        Some("mount -o remount,noatime /var/lib/spate; add noatime to its line in /etc/fstab")
    );
    // Neither mount options nor the queue depth are changed by --apply.
    assert!(finding(&findings, "mount_options").changes.is_empty());
    assert!(finding(&findings, "disk_queue_depth").changes.is_empty());
}

#[test]
fn a_virtio_vm_reports_what_it_lacks_as_not_available() {
    let tree = virtio_vm();
    let findings = check_host(&tree.host(), &options(&[0, 1]));
    assert_eq!(
        finding(&findings, "cpu_governor").severity,
        Severity::NotAvailable
    );
    assert!(finding(&findings, "cpu_governor")
        .why
        .contains("no cpufreq"));
    for name in ["nvme_queues", "nvme_io_poll"] {
        let nvme = finding(&findings, name);
        assert_eq!(nvme.severity, Severity::NotAvailable);
        assert_eq!(nvme.why, "vda is a virtio disk, not NVMe");
    }
    assert_eq!(finding(&findings, "irq_nvme").why, "vda is not NVMe");
    // The virtio disk says it spins; it is tuned as flash all the same, and said to be doubtful.
    assert_eq!(finding(&findings, "disk_scheduler").severity, Severity::Ok);
    assert_eq!(finding(&findings, "disk_nomerges").severity, Severity::Warn);
    let rotational = finding(&findings, "disk_rotational");
    assert_eq!(rotational.severity, Severity::Warn);
    assert!(rotational.why.contains("hypervisors often leave the flag"));
    assert_eq!(finding(&findings, "clocksource").severity, Severity::Ok);
    assert_eq!(
        finding(&findings, "filesystem").current,
        "ext4 (/dev/vda on /)"
    );
    // virtio-net's interrupts are named for the virtio device, not the interface.
    assert_eq!(
        finding(&findings, "irq_nic").current,
        "1 IRQs of eth0 on cores 0-3"
    );
    assert!(findings
        .iter()
        .all(|finding| finding.severity != Severity::Fail));
}

#[test]
fn a_data_directory_on_tmpfs_fails_and_has_no_disk() {
    let tree = tuned_nvme_host();
    tree.file(
        "/proc/self/mountinfo",
        "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n25 1 0:23 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=24683664k\n",
    )
    .directory("/dev/shm/spate");
    let mut options = options(&[0, 1, 2, 3]);
    // Not created yet: its nearest existing ancestor is looked at.
    options.data_dir = PathBuf::from("/dev/shm/spate/data");
    let findings = check_host(&tree.host(), &options);
    let file_system = finding(&findings, "filesystem");
    assert_eq!(file_system.severity, Severity::Fail);
    assert!(
        file_system.why.contains("gone at reboot"),
        "{}",
        file_system.why
    );
    assert!(file_system
        .fix
        .as_deref()
        .unwrap_or("")
        .contains("/dev/shm/spate"));
    let scheduler = finding(&findings, "disk_scheduler");
    assert_eq!(scheduler.severity, Severity::NotAvailable);
    assert!(
        scheduler.why.contains("has no block device (device 0:23)"),
        "{}",
        scheduler.why
    );
}

#[test]
fn a_container_whose_seccomp_filter_blocks_io_uring_fails() {
    let tree = tuned_nvme_host();
    tree.file("/.dockerenv", "")
        .file("/proc/self/status", "Name:\tspate-broker\nSeccomp:\t2\nSeccomp_filters:\t1\n")
        .file("/fake/io_uring_setup", "EPERM")
        .file("/proc/self/mountinfo", "700 600 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n");
    let findings = check_host(&tree.host(), &options(&[0, 1]));
    let seccomp = finding(&findings, "seccomp");
    assert_eq!(
        seccomp.current,
        "mode 2 (filter), in a container (/.dockerenv exists)"
    );
    assert_eq!(seccomp.severity, Severity::Fail);
    assert!(seccomp
        .fix
        .as_deref()
        .unwrap_or("")
        .contains("--security-opt seccomp="));
    let setup = finding(&findings, "io_uring_setup");
    assert_eq!(setup.severity, Severity::Fail);
    assert!(setup.why.starts_with("EPERM"), "{}", setup.why);
    assert_eq!(finding(&findings, "filesystem").severity, Severity::Fail);
}

#[test]
fn a_seccomp_filter_that_allows_io_uring_is_fine() {
    let tree = tuned_nvme_host();
    tree.file("/proc/1/cgroup", "0::/kubepods/besteffort/pod1/abc\n")
        .file("/proc/self/status", "Seccomp:\t2\n");
    let findings = check_host(&tree.host(), &options(&[0, 1]));
    let seccomp = finding(&findings, "seccomp");
    assert_eq!(seccomp.severity, Severity::Ok);
    assert!(
        seccomp.current.contains("/proc/1/cgroup names kubepods"),
        "{}",
        seccomp.current
    );
}

#[test]
fn io_uring_disabled_is_judged_by_its_value() {
    let tree = tuned_nvme_host();
    let judge = |value: Option<&str>| {
        match value {
            Some(value) => {
                tree.file("/proc/sys/kernel/io_uring_disabled", value);
            }
            None => std::fs::remove_file(tree.place("/proc/sys/kernel/io_uring_disabled"))
                .expect("remove"),
        }
        finding(
            &check_host(&tree.host(), &options(&[0])),
            "io_uring_disabled",
        )
        .severity
    };
    assert_eq!(judge(Some("1\n")), Severity::Warn);
    assert_eq!(judge(Some("2\n")), Severity::Fail);
    assert_eq!(judge(Some("0\n")), Severity::Ok);
    assert_eq!(judge(None), Severity::Ok);
}

#[test]
fn memlock_is_judged_against_the_shards_buffers_unless_root() {
    let tree = tuned_nvme_host();
    tree.file("/fake/euid", "1000")
        .file("/fake/rlimit_memlock", "8388608 8388608");
    let findings = check_host(&tree.host(), &options(&[0, 1]));
    let memlock = finding(&findings, "memlock");
    assert_eq!(memlock.severity, Severity::Warn);
    assert_eq!(memlock.recommended, "unlimited (at least 96 MiB)");
    tree.file("/fake/rlimit_memlock", "65536 65536");
    assert_eq!(
        finding(&check_host(&tree.host(), &options(&[0, 1])), "memlock").severity,
        Severity::Fail
    );
    tree.file("/fake/euid", "0");
    let as_root = check_host(&tree.host(), &options(&[0, 1]));
    assert_eq!(finding(&as_root, "memlock").severity, Severity::Ok);
    assert_eq!(
        finding(&as_root, "memlock").current,
        "64 KiB (CAP_IPC_LOCK: exempt)"
    );
    // Root in a Docker container: its default capabilities (CapEff a80425fb) lack CAP_IPC_LOCK.
    tree.file(
        "/proc/self/status",
        "Seccomp:\t0\nCapEff:\t00000000a80425fb\n",
    );
    let in_container = check_host(&tree.host(), &options(&[0, 1]));
    assert_eq!(finding(&in_container, "memlock").severity, Severity::Fail);
    tree.file(
        "/proc/self/status",
        "Seccomp:\t0\nCapEff:\t000001ffffffffff\n",
    );
    let with_capability = check_host(&tree.host(), &options(&[0, 1]));
    assert_eq!(finding(&with_capability, "memlock").severity, Severity::Ok);
    tree.file("/fake/rlimit_nofile", "1024 4096");
    let open_files = finding(&check_host(&tree.host(), &options(&[0])), "open_files").clone();
    assert_eq!(
        (open_files.current.as_str(), open_files.severity),
        ("soft 1024, hard 4096", Severity::Warn)
    );
}

#[test]
fn numa_flags_shards_across_nodes_a_remote_disk_and_missing_cores() {
    let tree = tuned_nvme_host();
    tree.file("/sys/devices/system/node/node0/cpulist", "0-1\n")
        .file("/sys/devices/system/node/node1/cpulist", "2-3\n");
    let across = check_host(&tree.host(), &options(&[1, 2]));
    assert_eq!(finding(&across, "numa").severity, Severity::Warn);
    assert!(finding(&across, "numa")
        .current
        .contains("1 on node 0, 2 on node 1"));
    let remote = check_host(&tree.host(), &options(&[2, 3]));
    assert_eq!(finding(&remote, "numa").severity, Severity::Warn);
    assert_eq!(
        finding(&remote, "numa").fix.as_deref(),
        Some("--cores from node 0 (cat /sys/devices/system/node/node0/cpulist)")
    );
    let missing = check_host(&tree.host(), &options(&[0, 9]));
    assert_eq!(finding(&missing, "numa").severity, Severity::Fail);
}

#[test]
fn nic_interrupts_on_shard_cores_with_a_spare_core_are_flagged() {
    let tree = tuned_nvme_host();
    tree.file("/proc/irq/40/smp_affinity_list", "1\n");
    let findings = check_host(&tree.host(), &options(&[1, 2, 3]));
    let nic = finding(&findings, "irq_nic");
    assert_eq!(nic.severity, Severity::Warn);
    assert!(
        nic.fix
            .as_deref()
            .unwrap_or("")
            .contains("for irq in 40 41; do echo 0 > /proc/irq/$irq/smp_affinity_list"),
        "{:?}",
        nic.fix
    );
    assert!(nic.changes.is_empty(), "IRQs are never moved by --apply");
    // Shard core 0 has no NVMe queue of its own once queue 1's interrupt moves away.
    tree.file("/proc/irq/30/smp_affinity_list", "1\n")
        .file("/proc/irq/31/smp_affinity_list", "1\n");
    let findings = check_host(&tree.host(), &options(&[0, 1, 2, 3]));
    assert_eq!(finding(&findings, "irq_nvme").severity, Severity::Warn);
    assert!(finding(&findings, "irq_nvme")
        .why
        .starts_with("shard cores 0 have"));
}

#[test]
fn nobarrier_and_read_only_mounts_fail() {
    let tree = tuned_nvme_host();
    tree.file(
        "/proc/self/mountinfo",
        "30 1 259:1 / /var/lib/spate rw,noatime - ext4 /dev/nvme0n1p1 rw,nobarrier\n",
    );
    assert_eq!(
        finding(&check_host(&tree.host(), &options(&[0])), "mount_options").severity,
        Severity::Fail
    );
    tree.file(
        "/proc/self/mountinfo",
        "30 1 259:1 / /var/lib/spate ro,noatime - ext4 /dev/nvme0n1p1 ro\n",
    );
    assert_eq!(
        finding(&check_host(&tree.host(), &options(&[0])), "mount_options").severity,
        Severity::Fail
    );
}

#[test]
fn apply_writes_the_fake_tree_and_reports_old_and_new() {
    let tree = tuned_nvme_host();
    let disk = format!("{NVME_DEVICE}/nvme0n1");
    tree.file("/proc/sys/vm/swappiness", "60\n")
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        )
        .file(
            "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "powersave\n",
        )
        .file(
            &format!("{disk}/queue/scheduler"),
            "none [mq-deadline] kyber\n",
        )
        .file("/proc/sys/net/ipv4/tcp_rmem", "4096 131072 6291456\n")
        .link(
            "/sys/block/nvme0n1",
            "../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1",
        );
    let host = tree.host();
    let findings = check_host(&host, &options(&[0, 1, 2, 3]));
    let outcome = apply(&host, &findings).expect("root may apply");
    assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
    let changes: Vec<(String, String, String)> = outcome
        .applied
        .iter()
        .map(|change| {
            (
                change.path.display().to_string(),
                change.old.clone(),
                change.new.clone(),
            )
        })
        .collect();
    let expect =
        |path: &str, old: &str, new: &str| (path.to_string(), old.to_string(), new.to_string());
    assert_eq!(
        changes,
        [
            expect(
                "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
                "powersave",
                "performance"
            ),
            expect(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "always",
                "madvise"
            ),
            expect("/proc/sys/vm/swappiness", "60", "1"),
            expect("/sys/block/nvme0n1/queue/scheduler", "mq-deadline", "none"),
            expect(
                "/proc/sys/net/ipv4/tcp_rmem",
                "4096 131072 6291456",
                "4096 131072 16777216"
            ),
        ]
    );
    assert_eq!(tree.read("/proc/sys/vm/swappiness"), "1");
    assert_eq!(
        tree.read("/proc/sys/net/ipv4/tcp_rmem"),
        "4096 131072 16777216"
    );
    assert_eq!(outcome.applied[2].persist.line, "vm.swappiness = 1");
    assert_eq!(
        outcome.applied[2].persist.file,
        "/etc/sysctl.d/90-spate.conf"
    );
    assert_eq!(
        outcome.applied[1].persist.line,
        "w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise"
    );
    // A fake sysfs file is plain text, so the scheduler now reads "none", which is what a real
    // kernel shows too (as "[none] mq-deadline kyber").
    let after = check_host(&host, &options(&[0, 1, 2, 3]));
    assert!(
        after.iter().all(|finding| finding.severity == Severity::Ok),
        "{:#?}",
        severities(&after)
    );
}

#[test]
fn apply_refuses_without_root_and_changes_nothing() {
    let tree = tuned_nvme_host();
    tree.file("/fake/euid", "1000")
        .file("/proc/sys/vm/swappiness", "60\n");
    let host = tree.host();
    let findings = check_host(&host, &options(&[0]));
    assert!(matches!(apply(&host, &findings), Err(ApplyError::NotRoot)));
    assert_eq!(tree.read("/proc/sys/vm/swappiness"), "60\n");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let flags = CheckFlags {
        apply: true,
        ..CheckFlags::default()
    };
    assert_eq!(run(&host, &options(&[0]), flags, &mut out, &mut err), 2);
    assert!(String::from_utf8_lossy(&err).contains("needs root"));
    assert!(out.is_empty());
}

#[test]
fn the_command_exits_1_on_a_failure_and_prints_table_and_json() {
    let tree = tuned_nvme_host();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run(
            &tree.host(),
            &options(&[0]),
            CheckFlags::default(),
            &mut out,
            &mut err
        ),
        0
    );
    let table = String::from_utf8(out).expect("utf-8");
    for name in CHECK_NAMES {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{name} in\n{table}"
        );
    }
    tree.file("/proc/sys/kernel/io_uring_disabled", "2\n")
        .file("/proc/sys/vm/swappiness", "60\n");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let flags = CheckFlags {
        json: true,
        ..CheckFlags::default()
    };
    assert_eq!(
        run(&tree.host(), &options(&[0]), flags, &mut out, &mut err),
        1
    );
    let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(json["fail"], true);
    let findings = json["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), CHECK_NAMES.len());
    let swappiness = findings
        .iter()
        .find(|finding| finding["name"] == "vm_swappiness")
        .expect("swappiness");
    assert_eq!(swappiness["severity"], "warn");
    assert_eq!(swappiness["fix"], "sysctl -w vm.swappiness=1");
    assert_eq!(swappiness["changes"][0]["path"], "/proc/sys/vm/swappiness");
}

#[test]
fn apply_through_the_command_prints_changes_and_persistence() {
    let tree = tuned_nvme_host();
    tree.file("/proc/sys/vm/swappiness", "60\n")
        .file("/proc/sys/net/core/somaxconn", "128\n");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let flags = CheckFlags {
        apply: true,
        ..CheckFlags::default()
    };
    assert_eq!(
        run(
            &tree.host(),
            &options(&[0, 1, 2, 3]),
            flags,
            &mut out,
            &mut err
        ),
        0
    );
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("changed /proc/sys/vm/swappiness (vm_swappiness): 60 -> 1"),
        "{text}"
    );
    assert!(
        text.contains("changed /proc/sys/net/core/somaxconn (net_somaxconn): 128 -> 4096"),
        "{text}"
    );
    assert!(text.contains("  /etc/sysctl.d/90-spate.conf:\n    vm.swappiness = 1\n    net.core.somaxconn = 4096\n"), "{text}");
    assert!(text.contains("0 warn, 0 fail"), "{text}");
}

#[test]
fn a_device_mapper_volume_is_followed_to_its_nvme_disk() {
    let tree = tuned_nvme_host();
    tree.directory("/sys/devices/virtual/block/dm-0/queue")
        .directory("/sys/devices/virtual/block/dm-0/slaves/nvme0n1p1")
        .link("/sys/dev/block/253:0", "../../devices/virtual/block/dm-0")
        .link(
            "/sys/class/block/nvme0n1p1",
            "../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/nvme0n1p1",
        )
        .directory("/srv/spate data")
        .file(
            "/proc/self/mountinfo",
            "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
             31 1 253:0 / /srv/spate\\040data rw,noatime - xfs /dev/mapper/vg-spate rw\n",
        );
    let mut options = options(&[0, 1, 2, 3]);
    options.data_dir = PathBuf::from("/srv/spate data");
    let findings = check_host(&tree.host(), &options);
    assert_eq!(
        finding(&findings, "disk_rotational").current,
        "0 (nvme0n1, via dm-0 -> nvme0n1p1 -> nvme0n1)"
    );
    assert_eq!(
        finding(&findings, "filesystem").current,
        "xfs (/dev/mapper/vg-spate on /srv/spate data)"
    );
    assert_eq!(finding(&findings, "nvme_queues").severity, Severity::Ok);
}

//! The one door to the host: [`HostView`] reads files under `/proc`, `/sys` and `/etc`, lists
//! directories, resolves symlinks, reads process limits, says whether we are root, probes
//! io_uring, and writes a sysctl or sysfs value. Nothing else is run or touched.
//!
//! [`RealHost`] is the machine itself, rooted at `/`. [`FakeHost`] is a directory tree that
//! stands in for it (tests build `proc/`, `sys/`, `etc/` under a temporary directory); what a
//! tree cannot hold as a plain file (limits, our uid, the io_uring probe's answer) it reads from
//! files under `fake/` in the same tree, so a test states the whole host as files.

use std::io;
use std::path::{Component, Path, PathBuf};

/// A resource limit; `None` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The process limits the checker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// RLIMIT_MEMLOCK, in bytes.
    LockedMemory,
    /// RLIMIT_NOFILE, in descriptors.
    OpenFiles,
}

/// Everything the checks may know about, and do to, a host. Paths are absolute host paths
/// (`/proc/sys/vm/swappiness`); an implementation maps them to where it keeps them.
pub trait HostView {
    /// The whole file as text.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names in a directory, sorted.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The path with every symlink resolved, as a host path. The path must exist.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf>;
    /// Whether something exists at the path.
    fn exists(&self, path: &Path) -> bool;
    /// This process's limit.
    fn limit(&self, kind: LimitKind) -> io::Result<Limit>;
    /// Whether we run with uid 0 (and so CAP_IPC_LOCK and the right to write sysctls).
    fn is_root(&self) -> bool;
    /// Sets up, and closes at once, a one-entry io_uring: what `io_uring_setup` says here.
    fn probe_io_uring(&self) -> io::Result<()>;
    /// Writes a value to an existing sysctl or sysfs file (never creates one).
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
}

/// The machine this process runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl HostView for RealHost {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        list_directory(path)
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn limit(&self, kind: LimitKind) -> io::Result<Limit> {
        let resource = match kind {
            LimitKind::LockedMemory => rustix::process::Resource::Memlock,
            LimitKind::OpenFiles => rustix::process::Resource::Nofile,
        };
        let limit = rustix::process::getrlimit(resource);
        Ok(Limit {
            soft: limit.current,
            hard: limit.maximum,
        })
    }

    fn is_root(&self) -> bool {
        rustix::process::geteuid().is_root()
    }

    fn probe_io_uring(&self) -> io::Result<()> {
        let mut parameters = rustix::io_uring::io_uring_params::default();
        // SAFETY: no flags are set, so in particular not IORING_SETUP_ATTACH_WQ, the one case
        // in which the kernel reads a descriptor (`wq_fd`) from the parameters.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut parameters) }?;
        drop(ring);
        Ok(())
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // sysfs and procfs files exist or the setting does not: never create one.
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        std::io::Write::write_all(&mut file, value.as_bytes())
    }
}

/// A host made of files under `root`: `root/proc/...`, `root/sys/...`, and `root/fake/` for
/// what is not a file on a real host:
/// - `fake/rlimit_memlock`, `fake/rlimit_nofile`: `SOFT HARD`, each a number or `unlimited`;
/// - `fake/euid`: a number (absent: 1000, not root);
/// - `fake/io_uring_setup`: `ok`, or the errno the probe fails with (`EPERM`, `ENOSYS`, a
///   number; absent: `ok`).
#[derive(Debug, Clone)]
pub struct FakeHost {
    root: PathBuf,
}

impl FakeHost {
    pub fn new(root: impl Into<PathBuf>) -> FakeHost {
        FakeHost { root: root.into() }
    }

    /// Where a host path lives in the tree.
    pub fn place(&self, path: &Path) -> PathBuf {
        let relative: PathBuf = path
            .components()
            .filter(|component| matches!(component, Component::Normal(_)))
            .collect();
        self.root.join(relative)
    }

    fn fake_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join("fake").join(name))
            .ok()
            .map(|text| text.trim().to_string())
    }
}

impl HostView for FakeHost {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(self.place(path))
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        list_directory(&self.place(path))
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let root = std::fs::canonicalize(&self.root)?;
        let resolved = std::fs::canonicalize(self.place(path))?;
        let inside = resolved.strip_prefix(&root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} leads out of the fake tree", path.display()),
            )
        })?;
        Ok(Path::new("/").join(inside))
    }

    fn exists(&self, path: &Path) -> bool {
        self.place(path).exists()
    }

    fn limit(&self, kind: LimitKind) -> io::Result<Limit> {
        let name = match kind {
            LimitKind::LockedMemory => "rlimit_memlock",
            LimitKind::OpenFiles => "rlimit_nofile",
        };
        let text = self.fake_file(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no fake/{name} in the tree"),
            )
        })?;
        let invalid =
            || io::Error::new(io::ErrorKind::InvalidData, format!("fake/{name}: {text:?}"));
        let mut values = text.split_whitespace().map(|word| match word {
            "unlimited" => Ok(None),
            number => number.parse::<u64>().map(Some).map_err(|_| invalid()),
        });
        let soft = values.next().ok_or_else(invalid)??;
        let hard = values.next().ok_or_else(invalid)??;
        Ok(Limit { soft, hard })
    }

    fn is_root(&self) -> bool {
        self.fake_file("euid").is_some_and(|uid| uid == "0")
    }

    fn probe_io_uring(&self) -> io::Result<()> {
        match self.fake_file("io_uring_setup").as_deref() {
            None | Some("ok") => Ok(()),
            Some("EPERM") => Err(io::Error::from_raw_os_error(1)),
            Some("EACCES") => Err(io::Error::from_raw_os_error(13)),
            Some("ENOSYS") => Err(io::Error::from_raw_os_error(38)),
            Some(other) => Err(other
                .parse::<i32>()
                .map(io::Error::from_raw_os_error)
                .unwrap_or_else(|_| io::Error::other(other.to_string()))),
        }
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let place = self.place(path);
        if !place.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ));
        }
        std::fs::write(place, value)
    }
}

fn list_directory(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

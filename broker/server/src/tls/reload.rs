//! Certificate reload without a restart: a thread that looks at every TLS listener's files
//! every `tls_reload_check_interval_ms` and at once on SIGHUP, and publishes a rebuilt
//! `ServerConfig` (new connections use it; open ones keep theirs). A file that does not build
//! keeps the config in force and is logged as an error, so a renewal written in two steps
//! (certificate, then key) never takes a listener down.
//!
//! Why a thread and not a shard task: the files are read with blocking std I/O, and the
//! configs are shared by every shard anyway (`Arc`). It sleeps between looks; SIGHUP reaches
//! it through signal-hook's own thread, as SIGTERM reaches the shutdown flag (`SignalListener`).
//! SIGHUP is handled only while some listener has TLS: otherwise it keeps its default action.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use super::{ListenerCertificates, ReloadCause};

/// What wakes the reload thread before its interval is over.
enum Wake {
    Hangup,
    Stop,
}

/// The running reload thread and its SIGHUP forwarder; dropping it stops and joins both.
pub struct CertificateReloader {
    stop: mpsc::Sender<Wake>,
    hangups: signal_hook::iterator::Handle,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CertificateReloader {
    /// Starts watching `listeners`' files every `interval`, and on SIGHUP.
    pub fn start(
        listeners: Vec<Arc<ListenerCertificates>>,
        interval: Duration,
    ) -> std::io::Result<CertificateReloader> {
        let (wake, woken) = mpsc::channel();
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
        let hangups = signals.handle();
        let forward = wake.clone();
        let forwarder = std::thread::Builder::new()
            .name("tls-sighup".to_string())
            .spawn(move || {
                for _ in signals.forever() {
                    if forward.send(Wake::Hangup).is_err() {
                        return;
                    }
                }
            })?;
        let watcher = std::thread::Builder::new()
            .name("tls-reload".to_string())
            .spawn(move || loop {
                let cause = match woken.recv_timeout(interval) {
                    Ok(Wake::Hangup) => ReloadCause::Hangup,
                    Err(RecvTimeoutError::Timeout) => ReloadCause::FilesChanged,
                    Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                };
                for listener in &listeners {
                    reload(listener, cause);
                }
            })?;
        Ok(CertificateReloader {
            stop: wake,
            hangups,
            threads: vec![forwarder, watcher],
        })
    }
}

fn reload(listener: &ListenerCertificates, cause: ReloadCause) {
    match listener.reload(cause) {
        Ok(false) => {}
        Ok(true) => tracing::info!(
            listener = listener.listener,
            ?cause,
            "TLS certificates reloaded; new connections use them"
        ),
        Err(error) => tracing::error!(
            listener = listener.listener,
            ?cause,
            %error,
            "TLS certificates not reloaded; the previous ones stay in use"
        ),
    }
}

impl Drop for CertificateReloader {
    fn drop(&mut self) {
        self.hangups.close();
        let _ = self.stop.send(Wake::Stop);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

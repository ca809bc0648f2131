//! Authentication (issue #17): SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on the native and the
//! Kafka listener, over `spate_security`'s sans-IO mechanisms.
//!
//! Each connection has one [`Session`] (in its dialect, `kafka::Kafka` or `handlers::Native`),
//! shard-local and dropped with the connection. A listener without mechanisms leaves every
//! session authenticated from the start as `User:ANONYMOUS`, exactly the behaviour from before
//! authentication existed. With mechanisms, a session takes only ApiVersions, a handshake (the
//! mechanism) and authenticate steps until one succeeds; the dialects close the connection on
//! anything else, as Kafka does. What each protocol answers is its own; the exchange itself
//! (which step comes next, the credential lookup, the failure log) is here, once.
//!
//! The credentials come from one immutable snapshot (`credentials::CredentialStore`), read once
//! per authentication; PLAIN's password check (PBKDF2, milliseconds) runs on glommio's blocking
//! pool, off the shard. Failures are logged at most once per interval per source address.

pub mod acls;
pub mod authorizer;
pub mod credentials;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distributions::{Alphanumeric, DistString};
use spate_security::{parse_plain, Principal, ScramMechanism, ScramServer};

use crate::log_throttle::LogThrottle;
pub use acls::AclStore;
pub use authorizer::Authorizer;
pub use credentials::CredentialStore;

/// A SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// RFC 4616: the password travels (use TLS); checked against the stored SCRAM credential.
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    /// The mechanism's SASL name, as clients send it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (SASL names are case-sensitive upper case; Kafka matches them
    /// exactly).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    /// The SCRAM variant, `None` for PLAIN.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            SaslMechanism::Plain => None,
            SaslMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            SaslMechanism::ScramSha512 => Some(ScramMechanism::Sha512),
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A listener setting (`sasl_mechanisms`, `kafka_sasl_mechanisms`): comma-separated mechanism
/// names, each once; empty: no authentication.
pub fn parse_mechanisms(text: &str) -> Result<Vec<SaslMechanism>, String> {
    let mut mechanisms = Vec::new();
    for name in text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
            format!("unknown SASL mechanism {name:?} (known: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if mechanisms.contains(&mechanism) {
            return Err(format!("SASL mechanism {name} is named twice"));
        }
        mechanisms.push(mechanism);
    }
    Ok(mechanisms)
}

/// Why a handshake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The listener does not offer the mechanism (the connection closes after the answer).
    UnsupportedMechanism,
    /// Not the time for a handshake: already authenticated, or one was already made.
    IllegalState,
}

/// What one authenticate step sends back.
#[derive(Debug)]
pub enum Step {
    /// The exchange goes on: send these bytes (SCRAM's server-first-message).
    Challenge(Vec<u8>),
    /// Authenticated: send these bytes (SCRAM's server-final-message; empty for PLAIN).
    Authenticated(Vec<u8>),
    /// Refused; the connection closes after the answer.
    Refused(Refusal),
}

/// A refused authenticate step: its kind and the message the answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Wrong password, unknown user, a malformed or out-of-order message.
    Failed,
    /// No handshake chose a mechanism first, or the session is already authenticated.
    IllegalState,
}

/// Where one connection's authentication stands.
enum State {
    /// SASL on; no mechanism chosen yet.
    AwaitingHandshake,
    /// The handshake chose this mechanism; its first authenticate step comes next.
    Chosen(SaslMechanism),
    /// SCRAM after the client-first-message: the client-final-message comes next.
    Scram(Box<ScramServer>),
    /// A step is running (PLAIN's check on the blocking pool).
    Busy,
    Authenticated(Principal),
    /// A step failed: the connection is closing, nothing more is taken.
    Failed,
}

/// One connection's authentication: the listener's mechanisms and where the exchange stands.
/// Shard-local, owned by the connection's dialect; dies with the connection.
pub struct Session {
    /// What the listener offers; empty: no authentication.
    mechanisms: Arc<[SaslMechanism]>,
    peer: Option<SocketAddr>,
    state: RefCell<State>,
    /// The authorizer's remembered answers for this connection (`authorizer::DecisionCache`).
    decisions: RefCell<authorizer::DecisionCache>,
    /// Kafka's SaslHandshake v0: the exchange's messages come as bare length-prefixed tokens,
    /// without Kafka headers, until it ends.
    raw_tokens: std::cell::Cell<bool>,
}

impl Session {
    pub fn new(mechanisms: Arc<[SaslMechanism]>, peer: Option<SocketAddr>) -> Session {
        let state = if mechanisms.is_empty() {
            State::Authenticated(Principal::anonymous())
        } else {
            State::AwaitingHandshake
        };
        Session {
            mechanisms,
            peer,
            state: RefCell::new(state),
            decisions: RefCell::default(),
            raw_tokens: std::cell::Cell::new(false),
        }
    }

    /// On a listener without SASL, the connection acts for the transport's principal when it
    /// has one (a mutual-TLS client certificate's `User:<CN>`) instead of `User:ANONYMOUS`.
    /// With SASL, the SASL exchange decides, as in Kafka's SASL_SSL.
    pub fn use_transport_principal(&self, principal: Option<&str>) {
        let Some(principal) = principal.and_then(Principal::parse) else {
            return;
        };
        if self.is_sasl_enabled() {
            return;
        }
        *self.state.borrow_mut() = State::Authenticated(principal);
    }

    /// A session authenticated from the start as `principal`, on a listener without SASL
    /// mechanisms (tests, and identities a transport proves, such as a TLS client certificate).
    pub fn authenticated_as(principal: Principal, peer: Option<SocketAddr>) -> Session {
        Session {
            mechanisms: Arc::from(Vec::new()),
            peer,
            state: RefCell::new(State::Authenticated(principal)),
            decisions: RefCell::default(),
            raw_tokens: std::cell::Cell::new(false),
        }
    }

    /// Runs `read` on the principal, without copying it; `None` before authentication.
    pub fn with_principal<T>(&self, read: impl FnOnce(&Principal) -> T) -> Option<T> {
        match &*self.state.borrow() {
            State::Authenticated(principal) => Some(read(principal)),
            _ => None,
        }
    }

    /// Whether the listener asks for authentication at all.
    pub fn is_sasl_enabled(&self) -> bool {
        !self.mechanisms.is_empty()
    }

    /// The mechanisms the listener offers, by name (a handshake's answer lists them).
    pub fn mechanism_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.mechanisms.iter().map(|mechanism| mechanism.name())
    }

    /// Whether requests other than the handshake's may run.
    pub fn is_authenticated(&self) -> bool {
        matches!(*self.state.borrow(), State::Authenticated(_))
    }

    /// Whether the next frame is a bare SASL token (after Kafka's SaslHandshake v0, until the
    /// exchange ends).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens.get()
            && matches!(
                *self.state.borrow(),
                State::Chosen(_) | State::Scram(_) | State::Busy
            )
    }

    /// Kafka's SaslHandshake v0 chose the mechanism: its tokens come bare (`expects_raw_token`).
    pub fn use_raw_tokens(&self) {
        self.raw_tokens.set(true);
    }

    /// Whether a handshake or authenticate step failed: the connection closes after its answer.
    pub fn has_failed(&self) -> bool {
        matches!(*self.state.borrow(), State::Failed)
    }

    /// Who the connection acts for once authenticated (`User:ANONYMOUS` without SASL); the
    /// authorizer (ACLs) reads it per request.
    pub fn principal(&self) -> Option<Principal> {
        match &*self.state.borrow() {
            State::Authenticated(principal) => Some(principal.clone()),
            _ => None,
        }
    }

    /// The handshake: the client names its mechanism.
    pub fn handshake(&self, name: &str) -> Result<SaslMechanism, HandshakeRefusal> {
        let mut state = self.state.borrow_mut();
        match *state {
            State::AwaitingHandshake => {}
            // Answered, and the authenticated connection goes on (Kafka's request handler).
            State::Authenticated(_) => return Err(HandshakeRefusal::IllegalState),
            // A second handshake in the middle of an exchange ends the connection.
            _ => {
                *state = State::Failed;
                return Err(HandshakeRefusal::IllegalState);
            }
        }
        let offered =
            SaslMechanism::from_name(name).filter(|mechanism| self.mechanisms.contains(mechanism));
        match offered {
            Some(mechanism) => {
                *state = State::Chosen(mechanism);
                Ok(mechanism)
            }
            None => {
                *state = State::Failed;
                Err(HandshakeRefusal::UnsupportedMechanism)
            }
        }
    }

    /// One authenticate step with the client's `token`. A failure is logged (rate-limited per
    /// source address) and leaves the session failed.
    ///
    /// A failed login is answered only after `failure_delay` (Kafka's
    /// `connection.failed.authentication.delay.ms`), which bounds how fast one connection can
    /// guess passwords; the connection closes after the answer.
    pub async fn authenticate(
        &self,
        store: &CredentialStore,
        token: &[u8],
        failure_delay: Duration,
    ) -> Step {
        let taken = std::mem::replace(&mut *self.state.borrow_mut(), State::Busy);
        let (next, step) = match taken {
            State::Chosen(SaslMechanism::Plain) => self.plain(store, token).await,
            State::Chosen(mechanism) => self.scram_first(store, mechanism, token),
            State::Scram(server) => scram_final(*server, token),
            State::Authenticated(principal) => (
                State::Authenticated(principal),
                Step::Refused(Refusal {
                    kind: RefusalKind::IllegalState,
                    message: "already authenticated; re-authentication is not offered".into(),
                }),
            ),
            state @ (State::AwaitingHandshake | State::Busy | State::Failed) => {
                let message = match state {
                    State::AwaitingHandshake => "authenticate before a handshake chose a mechanism",
                    _ => "authenticate while another step runs or after a failure",
                };
                (
                    State::Failed,
                    Step::Refused(Refusal {
                        kind: RefusalKind::IllegalState,
                        message: message.into(),
                    }),
                )
            }
        };
        if let Step::Refused(refusal) = &step {
            log_failure(self.peer, &refusal.message);
        }
        if let State::Authenticated(principal) = &next {
            tracing::debug!(peer = ?self.peer, %principal, "authenticated");
        }
        *self.state.borrow_mut() = next;
        if matches!(
            &step,
            Step::Refused(Refusal {
                kind: RefusalKind::Failed,
                ..
            })
        ) && !failure_delay.is_zero()
        {
            glommio::timer::sleep(failure_delay).await;
        }
        step
    }

    /// PLAIN: one message, checked against the user's SCRAM credential on the blocking pool.
    async fn plain(&self, store: &CredentialStore, token: &[u8]) -> (State, Step) {
        let request = match parse_plain(token) {
            Ok(request) => request,
            Err(error) => return failed(format!("PLAIN: malformed message: {error}")),
        };
        if !request.authorization_id.is_empty() && request.authorization_id != request.user {
            return failed(format!(
                "PLAIN: user {} asked to act as another user ({}), which is not offered",
                request.user, request.authorization_id
            ));
        }
        let snapshot = store.snapshot();
        // Either SCRAM credential proves the password; the stronger one is tried first.
        let credential = [ScramMechanism::Sha512, ScramMechanism::Sha256]
            .into_iter()
            .find_map(|mechanism| snapshot.get(&request.user, mechanism).cloned());
        drop(snapshot);
        let Some(credential) = credential else {
            return failed(format!("PLAIN: unknown user {}", request.user));
        };
        let password = request.password;
        let matches = glommio::executor()
            .spawn_blocking(move || credential.verify_password(password.as_bytes()))
            .await;
        if matches {
            authenticated(&request.user, Vec::new())
        } else {
            failed(format!("PLAIN: wrong password for user {}", request.user))
        }
    }

    /// SCRAM's client-first-message: the user's credential for this mechanism from the snapshot.
    fn scram_first(
        &self,
        store: &CredentialStore,
        mechanism: SaslMechanism,
        token: &[u8],
    ) -> (State, Step) {
        let scram = mechanism
            .scram()
            .expect("PLAIN is handled before SCRAM's first step");
        let mut server = ScramServer::new(scram, server_nonce());
        let snapshot = store.snapshot();
        let lookup = |user: &str| snapshot.get(user, scram).cloned();
        match server.client_first(token, lookup) {
            Ok(server_first) => (
                State::Scram(Box::new(server)),
                Step::Challenge(server_first),
            ),
            Err(error) => failed(format!("{mechanism}: {error}")),
        }
    }
}

/// SCRAM's client-final-message: the proof checked, the server signature sent.
fn scram_final(mut server: ScramServer, token: &[u8]) -> (State, Step) {
    match server.client_final(token) {
        Ok((server_final, user)) => authenticated(&user, server_final),
        Err(error) => failed(format!("SCRAM: {error}")),
    }
}

fn authenticated(user: &str, answer: Vec<u8>) -> (State, Step) {
    (
        State::Authenticated(Principal::user(user)),
        Step::Authenticated(answer),
    )
}

fn failed(message: String) -> (State, Step) {
    (
        State::Failed,
        Step::Refused(Refusal {
            kind: RefusalKind::Failed,
            message,
        }),
    )
}

/// The server's part of a SCRAM nonce: printable (RFC 5802 forbids ','), and long enough that
/// it never repeats.
fn server_nonce() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), SERVER_NONCE_CHARACTERS)
}

const SERVER_NONCE_CHARACTERS: usize = 32;

/// At most one failure line per source address per this interval (the rest are counted).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Source addresses a shard remembers for its failure log; past it, entries whose interval is
/// over are forgotten, and when none is, the addresses beyond share one throttle.
const FAILURE_LOG_ADDRESSES_MAX: usize = 4096;

/// The shard's failure log throttles, one per source address (shard-local: one per executor
/// thread, as `kafka::sessions`).
struct FailureLog {
    by_address: HashMap<IpAddr, (Instant, LogThrottle)>,
    overflow: LogThrottle,
}

thread_local! {
    static FAILURE_LOG: RefCell<FailureLog> = RefCell::new(FailureLog {
        by_address: HashMap::new(),
        overflow: LogThrottle::new(FAILURE_LOG_INTERVAL),
    });
}

/// Logs a failed authentication, at most once per interval per source address, with the count of
/// those held back: a password-guessing client costs a line every few seconds, not one per try.
fn log_failure(peer: Option<SocketAddr>, reason: &str) {
    let address = peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
    let now = Instant::now();
    let due = FAILURE_LOG.with(|log| log.borrow_mut().due(address, now));
    if let Some(suppressed) = due {
        tracing::warn!(
            peer = ?peer,
            suppressed,
            "authentication failed: {reason}; closing the connection"
        );
    }
}

impl FailureLog {
    fn due(&mut self, address: IpAddr, now: Instant) -> Option<u64> {
        if !self.by_address.contains_key(&address)
            && self.by_address.len() >= FAILURE_LOG_ADDRESSES_MAX
        {
            self.by_address
                .retain(|_, (last, _)| now.duration_since(*last) < FAILURE_LOG_INTERVAL);
            if self.by_address.len() >= FAILURE_LOG_ADDRESSES_MAX {
                return self.overflow.due(now);
            }
        }
        let (last, throttle) = self
            .by_address
            .entry(address)
            .or_insert_with(|| (now, LogThrottle::new(FAILURE_LOG_INTERVAL)));
        *last = now;
        throttle.due(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_parse_from_a_comma_separated_list_and_refuse_unknown_or_repeated_names() {
        assert_eq!(parse_mechanisms(""), Ok(vec![]));
        assert_eq!(parse_mechanisms(" , "), Ok(vec![]));
        assert_eq!(
            parse_mechanisms("PLAIN, SCRAM-SHA-512"),
            Ok(vec![SaslMechanism::Plain, SaslMechanism::ScramSha512])
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
        assert!(parse_mechanisms("plain").is_err());
        assert!(parse_mechanisms("PLAIN,PLAIN").is_err());
    }

    fn session(mechanisms: &[SaslMechanism]) -> Session {
        Session::new(mechanisms.to_vec().into(), None)
    }

    #[test]
    fn without_mechanisms_a_session_is_anonymous_and_refuses_a_handshake() {
        let open = session(&[]);
        assert!(!open.is_sasl_enabled());
        assert!(open.is_authenticated());
        assert_eq!(open.principal(), Some(Principal::anonymous()));
        assert_eq!(open.handshake("PLAIN"), Err(HandshakeRefusal::IllegalState));
        assert!(!open.has_failed(), "the connection goes on");
    }

    #[test]
    fn a_handshake_chooses_an_offered_mechanism_once() {
        let chosen = session(&[SaslMechanism::ScramSha512]);
        assert!(!chosen.is_authenticated());
        assert_eq!(chosen.principal(), None);
        assert_eq!(
            chosen.handshake("SCRAM-SHA-512"),
            Ok(SaslMechanism::ScramSha512)
        );
        assert!(
            !chosen.expects_raw_token(),
            "v1: framed SaslAuthenticate steps"
        );
        chosen.use_raw_tokens();
        assert!(chosen.expects_raw_token(), "v0: bare tokens until the end");
        assert_eq!(
            chosen.handshake("SCRAM-SHA-512"),
            Err(HandshakeRefusal::IllegalState)
        );
        assert!(
            chosen.has_failed(),
            "a second handshake mid-exchange ends it"
        );
        assert!(!chosen.expects_raw_token());

        let refused = session(&[SaslMechanism::ScramSha512]);
        assert_eq!(
            refused.handshake("PLAIN"),
            Err(HandshakeRefusal::UnsupportedMechanism)
        );
        assert!(refused.has_failed());
        let unknown = session(&[SaslMechanism::ScramSha512]);
        assert_eq!(
            unknown.handshake("GSSAPI"),
            Err(HandshakeRefusal::UnsupportedMechanism)
        );
    }

    #[test]
    fn the_failure_log_lets_one_line_per_address_through_per_interval() {
        let mut log = FailureLog {
            by_address: HashMap::new(),
            overflow: LogThrottle::new(FAILURE_LOG_INTERVAL),
        };
        let start = Instant::now();
        let first = IpAddr::from([10, 0, 0, 1]);
        let second = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(log.due(first, start), Some(0));
        assert_eq!(log.due(first, start + Duration::from_secs(1)), None);
        assert_eq!(log.due(second, start + Duration::from_secs(1)), Some(0));
        assert_eq!(
            log.due(first, start + FAILURE_LOG_INTERVAL + Duration::from_secs(2)),
            Some(1)
        );
    }

    #[test]
    fn the_failure_log_stays_bounded_under_many_addresses() {
        let mut log = FailureLog {
            by_address: HashMap::new(),
            overflow: LogThrottle::new(FAILURE_LOG_INTERVAL),
        };
        let now = Instant::now();
        for index in 0..(FAILURE_LOG_ADDRESSES_MAX as u32 + 10) {
            log.due(IpAddr::from(index.to_be_bytes()), now);
        }
        assert_eq!(log.by_address.len(), FAILURE_LOG_ADDRESSES_MAX);
    }
}

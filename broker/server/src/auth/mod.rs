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
//! pool, off the shard. Failures are logged at most once per interval per source address, and
//! counted per address for the whole broker (`failures`: too many refuse the address at accept).
//!
//! An unknown user costs and answers what a wrong password does, so the exchange does not tell
//! which user names exist: PLAIN runs its PBKDF2 check against a fixed dummy credential (the
//! default iterations) before refusing, and SCRAM answers a server-first-message for a made-up
//! credential whose salt is derived from the user name and a secret of this broker process
//! (RFC 5802 section 5), so the same unknown name gets the same salt each time and the exchange
//! fails at the proof, exactly as for a wrong password. Only the log line says which it was.
//!
//! Re-authentication (Kafka's KIP-368, `connections_max_reauth_ms`): with a session lifetime, a
//! successful authentication lasts that long; the client may authenticate again on the same
//! connection (a handshake and its steps), as the same principal only, and the connection keeps
//! acting for the principal meanwhile. Once the lifetime has passed without that, the dialects
//! close the connection at its next request other than the handshake's, as Kafka does.

pub mod acls;
pub mod authorizer;
pub mod credentials;
pub mod failures;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use spate_security::{parse_plain, Principal, ScramCredential, ScramMechanism, ScramServer};

use crate::log_throttle::LogThrottle;
pub use acls::AclStore;
pub use authorizer::Authorizer;
pub use credentials::CredentialStore;
pub use failures::FailedAuthentications;

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
    /// A re-authentication named another mechanism than the connection authenticated with
    /// (Kafka refuses it too); the connection closes after the answer.
    MechanismChanged,
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
    /// A re-authentication proved another principal than the connection's (Kafka refuses it
    /// with SASL_AUTHENTICATION_FAILED and says why; the connection closes).
    PrincipalChanged,
}

/// Where one connection's authentication stands.
enum State {
    /// SASL on; no mechanism chosen yet.
    AwaitingHandshake,
    /// The handshake chose this mechanism; its first authenticate step comes next.
    Chosen(SaslMechanism),
    /// SCRAM after the client-first-message: the client-final-message comes next. `unknown`:
    /// the server-first-message came from a made-up credential (`unknown_user_credential`), so
    /// the exchange fails at the proof; the log says why.
    Scram {
        server: Box<ScramServer>,
        unknown: Option<String>,
    },
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
    raw_tokens: Cell<bool>,
    /// How long an authentication lasts (`connections_max_reauth_ms`); `None`: for the life of
    /// the connection, and no re-authentication is taken.
    session_lifetime: Option<Duration>,
    /// When the current authentication's lifetime ends (`None`: never).
    expires_at: Cell<Option<Instant>>,
    /// During a re-authentication, who the connection authenticated as: it goes on acting for
    /// them until the exchange ends, which must prove the same principal.
    reauthenticating: RefCell<Option<Principal>>,
    /// The mechanism the last handshake chose: a re-authentication must name it again.
    mechanism: Cell<Option<SaslMechanism>>,
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
            raw_tokens: Cell::new(false),
            session_lifetime: None,
            expires_at: Cell::new(None),
            reauthenticating: RefCell::new(None),
            mechanism: Cell::new(None),
        }
    }

    /// Authentications on this session last `lifetime` (`connections_max_reauth_ms`; `None` or
    /// zero: forever), and the client may authenticate again before it ends (KIP-368).
    pub fn with_session_lifetime(mut self, lifetime: Option<Duration>) -> Session {
        self.session_lifetime = lifetime.filter(|lifetime| !lifetime.is_zero());
        self
    }

    /// The session lifetime the answer to a successful authentication carries, in milliseconds
    /// (Kafka's `session_lifetime_ms`); 0: no re-authentication is asked for.
    pub fn session_lifetime_ms(&self) -> i64 {
        self.session_lifetime.map_or(0, |lifetime| {
            i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)
        })
    }

    /// Whether the session's authentication lifetime has passed at `now` without a new
    /// authentication: no request but a re-authentication's is taken any more.
    pub fn has_expired(&self, now: Instant) -> bool {
        self.is_authenticated()
            && self
                .expires_at
                .get()
                .is_some_and(|expires_at| now >= expires_at)
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
            raw_tokens: Cell::new(false),
            session_lifetime: None,
            expires_at: Cell::new(None),
            reauthenticating: RefCell::new(None),
            mechanism: Cell::new(None),
        }
    }

    /// Runs `read` on the principal, without copying it; `None` before authentication.
    /// During a re-authentication, the principal authenticated before.
    pub fn with_principal<T>(&self, read: impl FnOnce(&Principal) -> T) -> Option<T> {
        match &*self.state.borrow() {
            State::Authenticated(principal) => Some(read(principal)),
            _ => self.reauthenticating.borrow().as_ref().map(read),
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
                State::Chosen(_) | State::Scram { .. } | State::Busy
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
        self.with_principal(Principal::clone)
    }

    /// The handshake: the client names its mechanism. On an authenticated session with a
    /// lifetime it begins a re-authentication.
    pub fn handshake(&self, name: &str) -> Result<SaslMechanism, HandshakeRefusal> {
        let mut state = self.state.borrow_mut();
        // Each exchange says for itself whether its tokens come bare (Kafka's v0 handshake).
        self.raw_tokens.set(false);
        match &*state {
            State::AwaitingHandshake => {}
            State::Authenticated(principal)
                if self.session_lifetime.is_some() && self.is_sasl_enabled() =>
            {
                *self.reauthenticating.borrow_mut() = Some(principal.clone());
            }
            // Answered, and the authenticated connection goes on (Kafka's request handler).
            State::Authenticated(_) => return Err(HandshakeRefusal::IllegalState),
            // A second handshake in the middle of an exchange ends the connection.
            _ => {
                *state = State::Failed;
                self.reauthenticating.borrow_mut().take();
                return Err(HandshakeRefusal::IllegalState);
            }
        }
        let offered =
            SaslMechanism::from_name(name).filter(|mechanism| self.mechanisms.contains(mechanism));
        let reauthenticating = self.reauthenticating.borrow().is_some();
        let refusal = match offered {
            Some(mechanism) if reauthenticating && self.mechanism.get() != Some(mechanism) => {
                HandshakeRefusal::MechanismChanged
            }
            Some(mechanism) => {
                self.mechanism.set(Some(mechanism));
                *state = State::Chosen(mechanism);
                return Ok(mechanism);
            }
            None => HandshakeRefusal::UnsupportedMechanism,
        };
        *state = State::Failed;
        self.reauthenticating.borrow_mut().take();
        Err(refusal)
    }

    /// One authenticate step with the client's `token`. A failure is logged (rate-limited per
    /// source address), counted against the address in `failures`, and leaves the session
    /// failed.
    ///
    /// A failed login is answered only after `failure_delay` (Kafka's
    /// `connection.failed.authentication.delay.ms`), which bounds how fast one connection can
    /// guess passwords; the connection closes after the answer.
    pub async fn authenticate(
        &self,
        store: &CredentialStore,
        token: &[u8],
        failure_delay: Duration,
        failures: &FailedAuthentications,
    ) -> Step {
        let taken = std::mem::replace(&mut *self.state.borrow_mut(), State::Busy);
        let (next, step) = match taken {
            State::Chosen(SaslMechanism::Plain) => self.plain(store, token).await,
            State::Chosen(mechanism) => self.scram_first(store, mechanism, token),
            State::Scram { server, unknown } => scram_final(*server, unknown, token),
            State::Authenticated(principal) => (
                State::Authenticated(principal),
                Step::Refused(Refusal {
                    kind: RefusalKind::IllegalState,
                    message: "already authenticated; authenticate again after a handshake \
                              (re-authentication, when connections_max_reauth_ms is set)"
                        .into(),
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
        let (next, step) = self.same_principal_on_reauthentication(next, step);
        if let Step::Refused(refusal) = &step {
            log_failure(self.peer, &refusal.message);
            if refusal.kind == RefusalKind::Failed {
                let address = self.peer.map_or(UNKNOWN_ADDRESS, |peer| peer.ip());
                failures.record(address, Instant::now());
            }
        }
        if let State::Authenticated(principal) = &next {
            tracing::debug!(peer = ?self.peer, %principal, "authenticated");
            let expires_at = self
                .session_lifetime
                .and_then(|lifetime| Instant::now().checked_add(lifetime));
            self.expires_at.set(expires_at);
        }
        if !matches!(next, State::Scram { .. } | State::Chosen(_)) {
            // The exchange ended: the principal authenticated before is no longer needed.
            self.reauthenticating.borrow_mut().take();
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

    /// A re-authentication that proved another principal than the connection's is refused
    /// (Kafka: "Cannot change principals during re-authentication"); anything else passes.
    fn same_principal_on_reauthentication(&self, next: State, step: Step) -> (State, Step) {
        let State::Authenticated(principal) = &next else {
            return (next, step);
        };
        let reauthenticating = self.reauthenticating.borrow();
        match reauthenticating.as_ref() {
            Some(previous) if previous != principal => (
                State::Failed,
                Step::Refused(Refusal {
                    kind: RefusalKind::PrincipalChanged,
                    message: format!(
                        "Cannot change principals during re-authentication from {previous}: \
                         {principal}"
                    ),
                }),
            ),
            _ => (next, step),
        }
    }

    /// PLAIN: one message, checked against the user's SCRAM credential on the blocking pool.
    /// An unknown user's password is checked against a dummy credential first, so that it costs
    /// what a wrong password does.
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
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(|| unknown_user_plain_credential().clone());
        let password = request.password;
        let matches = glommio::executor()
            .spawn_blocking(move || credential.verify_password(password.as_bytes()))
            .await;
        match (known, matches) {
            (true, true) => authenticated(&request.user, Vec::new()),
            (true, false) => failed(format!("PLAIN: wrong password for user {}", request.user)),
            // The dummy's password is random: nobody knows it, but refuse whatever it said.
            (false, _) => failed(format!("PLAIN: unknown user {}", request.user)),
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
        let mut unknown = None;
        let lookup = |user: &str| {
            snapshot.get(user, scram).cloned().or_else(|| {
                unknown = Some(user.to_string());
                Some(unknown_user_credential(scram, user))
            })
        };
        match server.client_first(token, lookup) {
            Ok(server_first) => (
                State::Scram {
                    server: Box::new(server),
                    unknown,
                },
                Step::Challenge(server_first),
            ),
            Err(error) => failed(format!("{mechanism}: {error}")),
        }
    }
}

/// SCRAM's client-final-message: the proof checked, the server signature sent. For an unknown
/// user (`unknown`) the proof cannot match a made-up credential's keys; refused whatever it is.
fn scram_final(mut server: ScramServer, unknown: Option<String>, token: &[u8]) -> (State, Step) {
    match (server.client_final(token), unknown) {
        (Ok((server_final, user)), None) => authenticated(&user, server_final),
        (_, Some(user)) => failed(format!("SCRAM: unknown user {user}")),
        (Err(error), None) => failed(format!("SCRAM: {error}")),
    }
}

/// Where a failure from a connection without a known peer address is counted.
const UNKNOWN_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// PBKDF2 iterations of the credentials made up for unknown users: what `spate-broker user
/// create` and the tests use by default, so that an unknown user costs what most real ones do.
const UNKNOWN_USER_ITERATIONS: u32 = 8192;

/// Bytes of the salt made up for an unknown user, as long as `spate-broker user create`'s.
const UNKNOWN_USER_SALT_BYTES: usize = 32;

/// This broker process's secret for made-up credentials (random, made once): an observer cannot
/// compute an unknown user's salt, and sees the same one each time it asks.
fn unknown_user_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        secret
    })
}

/// A SCRAM credential for a user that does not exist (RFC 5802 section 5): derived from the
/// name and the process secret, so the same name gets the same salt on every try.
fn unknown_user_credential(mechanism: ScramMechanism, user: &str) -> ScramCredential {
    ScramCredential::for_unknown_user(
        mechanism,
        user,
        unknown_user_secret(),
        UNKNOWN_USER_ITERATIONS,
        UNKNOWN_USER_SALT_BYTES,
    )
}

/// The credential an unknown user's PLAIN password is checked against: a random password, the
/// default iterations, made once per process (the check, not the making, is what must cost).
fn unknown_user_plain_credential() -> &'static ScramCredential {
    static DUMMY: OnceLock<ScramCredential> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut password = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut password);
        let mut salt = vec![0u8; UNKNOWN_USER_SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramCredential::from_password(
            ScramMechanism::Sha512,
            &password,
            salt,
            UNKNOWN_USER_ITERATIONS,
        )
    })
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

    /// A credential store in a temporary directory with `users`, each with a credential of
    /// both SCRAM mechanisms for `password-of-<user>` at the default iterations.
    fn store_with(users: &[&str]) -> (tempfile::TempDir, CredentialStore) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = CredentialStore::open(directory.path()).expect("opens");
        store
            .change_blocking(|credentials| {
                for user in users {
                    let password = format!("password-of-{user}");
                    for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                        let credential = ScramCredential::from_password(
                            mechanism,
                            password.as_bytes(),
                            salt_of(user),
                            UNKNOWN_USER_ITERATIONS,
                        );
                        credentials.upsert(user, credential);
                    }
                }
            })
            .expect("writes");
        (directory, store)
    }

    /// A salt as long as the made-up ones (so the answers can be compared).
    fn salt_of(user: &str) -> Vec<u8> {
        let mut salt = user.as_bytes().to_vec();
        salt.resize(UNKNOWN_USER_SALT_BYTES, b'.');
        salt
    }

    const PEER: &str = "127.0.0.9:40000";

    fn failures() -> FailedAuthentications {
        FailedAuthentications::new(100, Duration::from_secs(60))
    }

    fn scram_session(lifetime: Option<Duration>) -> Session {
        Session::new(
            vec![SaslMechanism::ScramSha256].into(),
            Some(PEER.parse().expect("an address")),
        )
        .with_session_lifetime(lifetime)
    }

    /// One authenticate step, outside an executor: SCRAM steps never wait (no failure delay).
    fn step(
        session: &Session,
        store: &CredentialStore,
        failures: &FailedAuthentications,
        token: &[u8],
    ) -> Step {
        futures_lite::future::block_on(session.authenticate(store, token, Duration::ZERO, failures))
    }

    /// A SCRAM-SHA-256 exchange as `user` with `password`: the server-first-message and the
    /// last step.
    fn scram_login(
        session: &Session,
        store: &CredentialStore,
        failures: &FailedAuthentications,
        user: &str,
        password: &str,
    ) -> (String, Step) {
        assert_eq!(
            session.handshake("SCRAM-SHA-256"),
            Ok(SaslMechanism::ScramSha256)
        );
        let mut client = spate_security::ScramClient::new(
            ScramMechanism::Sha256,
            user,
            password,
            "clientnonce".into(),
        );
        let Step::Challenge(server_first) = step(session, store, failures, &client.client_first())
        else {
            panic!("client-first is answered with a server-first-message");
        };
        let client_final = client
            .server_first(&server_first)
            .expect("a valid server-first");
        let last = step(session, store, failures, &client_final);
        (String::from_utf8(server_first).expect("text"), last)
    }

    /// `r=<nonce>,s=<salt>,i=<iterations>` without the nonce, which changes every time.
    fn salt_and_iterations(server_first: &str) -> &str {
        server_first.split_once(',').expect("three attributes").1
    }

    #[test]
    fn an_unknown_scram_user_gets_a_stable_server_first_and_fails_at_the_proof_like_a_wrong_password(
    ) {
        let (_directory, store) = store_with(&["alice"]);
        let failures = failures();
        let refused_at_proof = |user: &str, password: &str| {
            let session = scram_session(None);
            let (server_first, last) = scram_login(&session, &store, &failures, user, password);
            let Step::Refused(refusal) = last else {
                panic!("{user} with {password} is refused");
            };
            assert_eq!(refusal.kind, RefusalKind::Failed);
            assert!(session.has_failed());
            server_first
        };
        let wrong_password = refused_at_proof("alice", "guess");
        let unknown = refused_at_proof("mallory", "guess");
        let unknown_again = refused_at_proof("mallory", "other guess");
        let other_unknown = refused_at_proof("trudy", "guess");
        assert_eq!(
            salt_and_iterations(&unknown),
            salt_and_iterations(&unknown_again),
            "the same unknown user gets the same salt each time, as a real one does"
        );
        assert_ne!(
            salt_and_iterations(&unknown),
            salt_and_iterations(&other_unknown)
        );
        let iterations =
            |server_first: &str| server_first.rsplit_once(",i=").expect("i=").1.to_string();
        assert_eq!(iterations(&unknown), iterations(&wrong_password));
        let salt_bytes = |server_first: &str| {
            let salt = server_first
                .split(",s=")
                .nth(1)
                .expect("s=")
                .split(',')
                .next()
                .expect("salt");
            salt.len()
        };
        assert_eq!(
            salt_bytes(&unknown),
            salt_bytes(&wrong_password),
            "salts of the same length"
        );
        let address = PEER.parse::<SocketAddr>().expect("an address").ip();
        let counted = FailedAuthentications::new(4, Duration::from_secs(60));
        for user in ["alice", "mallory", "trudy"] {
            let session = scram_session(None);
            scram_login(&session, &store, &counted, user, "guess");
        }
        assert!(
            counted.refusal(address, Instant::now()).is_none(),
            "three of four"
        );
        let session = scram_session(None);
        scram_login(&session, &store, &counted, "alice", "password-of-alice");
        assert!(
            counted.refusal(address, Instant::now()).is_none(),
            "a success is not counted"
        );
        let session = scram_session(None);
        scram_login(&session, &store, &counted, "nobody", "guess");
        assert!(
            counted.refusal(address, Instant::now()).is_some(),
            "every failure counts"
        );
    }

    #[test]
    fn without_a_lifetime_an_authenticated_session_refuses_a_second_handshake_and_goes_on() {
        let (_directory, store) = store_with(&["alice"]);
        let session = scram_session(None);
        let (_, last) = scram_login(&session, &store, &failures(), "alice", "password-of-alice");
        assert!(matches!(last, Step::Authenticated(_)));
        assert_eq!(session.session_lifetime_ms(), 0);
        assert!(!session.has_expired(Instant::now() + Duration::from_secs(86_400 * 365)));
        assert_eq!(
            session.handshake("SCRAM-SHA-256"),
            Err(HandshakeRefusal::IllegalState)
        );
        assert!(session.is_authenticated() && !session.has_failed());
    }

    #[test]
    fn a_session_with_a_lifetime_expires_unless_the_same_principal_authenticates_again() {
        let (_directory, store) = store_with(&["alice", "bob"]);
        let failures = failures();
        let lifetime = Duration::from_secs(30);
        let session = scram_session(Some(lifetime));
        let before = Instant::now();
        let (_, last) = scram_login(&session, &store, &failures, "alice", "password-of-alice");
        assert!(matches!(last, Step::Authenticated(_)));
        assert_eq!(session.session_lifetime_ms(), 30_000);
        assert!(!session.has_expired(before));
        assert!(
            session.has_expired(Instant::now() + lifetime),
            "past its lifetime"
        );

        // Re-authentication: the connection acts for alice throughout, and the lifetime restarts.
        assert_eq!(
            session.handshake("SCRAM-SHA-256"),
            Ok(SaslMechanism::ScramSha256)
        );
        assert_eq!(
            session.principal(),
            Some(Principal::user("alice")),
            "during the exchange"
        );
        assert!(
            !session.is_authenticated(),
            "only the exchange's requests are taken meanwhile"
        );
        assert!(
            !session.has_expired(Instant::now() + lifetime),
            "an exchange is not expired"
        );
        let (_, last) = {
            let mut client = spate_security::ScramClient::new(
                ScramMechanism::Sha256,
                "alice",
                "password-of-alice",
                "againnonce".into(),
            );
            let Step::Challenge(server_first) =
                step(&session, &store, &failures, &client.client_first())
            else {
                panic!("a server-first-message");
            };
            let client_final = client.server_first(&server_first).expect("valid");
            ((), step(&session, &store, &failures, &client_final))
        };
        assert!(matches!(last, Step::Authenticated(_)), "alice again");
        assert_eq!(session.principal(), Some(Principal::user("alice")));
        let renewed = Instant::now();
        assert!(!session.has_expired(renewed + lifetime / 2));

        // Another principal: refused, and the connection closes.
        let (_, last) = scram_login(&session, &store, &failures, "bob", "password-of-bob");
        let Step::Refused(refusal) = last else {
            panic!("bob cannot take over alice's connection");
        };
        assert_eq!(refusal.kind, RefusalKind::PrincipalChanged);
        assert!(refusal.message.contains("User:alice") && refusal.message.contains("User:bob"));
        assert!(session.has_failed());
        assert_eq!(
            session.principal(),
            None,
            "the connection acts for nobody any more"
        );
    }

    #[test]
    fn a_reauthentication_must_name_the_mechanism_the_connection_authenticated_with() {
        let (_directory, store) = store_with(&["alice"]);
        let session = Session::new(
            vec![SaslMechanism::ScramSha256, SaslMechanism::Plain].into(),
            None,
        )
        .with_session_lifetime(Some(Duration::from_secs(30)));
        let (_, last) = scram_login(&session, &store, &failures(), "alice", "password-of-alice");
        assert!(matches!(last, Step::Authenticated(_)));
        assert_eq!(
            session.handshake("PLAIN"),
            Err(HandshakeRefusal::MechanismChanged)
        );
        assert!(session.has_failed(), "the connection closes");
        assert_eq!(session.principal(), None);
    }

    #[test]
    fn an_unknown_plain_user_costs_a_password_check() {
        let (_directory, store) = store_with(&["alice"]);
        let failures = failures();
        // The cost of one check at the default iterations, at its quickest on this machine.
        let check_cost = (0..3)
            .map(|_| {
                let started = Instant::now();
                assert!(!unknown_user_plain_credential().verify_password(b"guess"));
                started.elapsed()
            })
            .min()
            .expect("three runs");
        let executor = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let login = |user: &'static str| {
                    let store = &store;
                    let failures = &failures;
                    async move {
                        let session = Session::new(vec![SaslMechanism::Plain].into(), None);
                        session.handshake("PLAIN").expect("offered");
                        let token = spate_security::encode_plain(user, "guess");
                        let started = Instant::now();
                        let step = session
                            .authenticate(store, &token, Duration::ZERO, failures)
                            .await;
                        assert!(matches!(
                            step,
                            Step::Refused(Refusal {
                                kind: RefusalKind::Failed,
                                ..
                            })
                        ));
                        started.elapsed()
                    }
                };
                (login("mallory").await, login("alice").await)
            })
            .expect("an executor");
        let (unknown, wrong_password) = executor.join().expect("the executor ends");
        // A lower bound only: a busy machine makes both slower, never faster.
        assert!(
            unknown >= check_cost / 2 && wrong_password >= check_cost / 2,
            "an unknown user ({unknown:?}) costs a check ({check_cost:?}), as a wrong password ({wrong_password:?}) does"
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

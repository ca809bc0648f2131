//! Kafka's authentication and user APIs: SaslHandshake (v0–1; v0's bare tokens in
//! `raw_authenticate`), SaslAuthenticate (v0–2),
//! DescribeUserScramCredentials and AlterUserScramCredentials (v0), over `crate::auth`.
//!
//! The exchange is the connection's `auth::Session`; this file gives it Kafka's shape: the
//! handshake answers the enabled mechanisms (UNSUPPORTED_SASL_MECHANISM for another one, after
//! which the connection closes), each SaslAuthenticate carries one SASL message each way, a
//! failure is SASL_AUTHENTICATION_FAILED with a message that does not tell an unknown user from
//! a wrong password (the log line does), and success answers `session_lifetime_ms`: 0 (no
//! re-authentication asked for) unless `connections_max_reauth_ms` is set (KIP-368). Then a
//! handshake on an authenticated connection begins a re-authentication, with the same mechanism
//! (UNSUPPORTED_SASL_MECHANISM and the close otherwise), which must prove the same principal (SASL_AUTHENTICATION_FAILED with Kafka's message otherwise, and the close);
//! without it, after authentication both SASL APIs are answered ILLEGAL_SASL_STATE and the
//! connection goes on, as Kafka's request handler does.
//!
//! The user APIs follow Kafka's rules and codes: an empty or null user list describes every
//! user; a user named twice is DUPLICATE_RESOURCE, an unknown one RESOURCE_NOT_FOUND; an
//! alteration with an unknown mechanism is UNSUPPORTED_SASL_MECHANISM, iterations outside
//! 4096..=16384 (or an empty salt or salted password) UNACCEPTABLE_CREDENTIAL, the same user and
//! mechanism twice DUPLICATE_RESOURCE, a deletion of a credential that does not exist
//! RESOURCE_NOT_FOUND; an error fails all of that user's alterations and only them. The
//! changes of one request are written durably in one step before the answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use spate_kafka_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use spate_kafka_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_security::{Operation, ScramCredential, ScramMechanism};

use super::KafkaContext;
use crate::auth::credentials::{
    change, check_upsertion, ChangeOutcome, CredentialChange, UpsertionRefusal,
};
use crate::auth::{HandshakeRefusal, RefusalKind, Step};
use crate::connection::Reply;

pub(crate) async fn sasl_handshake(
    context: &KafkaContext<'_>,
    version: i16,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mechanisms = context
        .session
        .mechanism_names()
        .map(StrBytes::from_static_str)
        .collect();
    let error = match context.session.handshake(request.mechanism.as_str()) {
        Ok(_) => {
            if version == 0 {
                context.session.use_raw_tokens();
            }
            None
        }
        Err(HandshakeRefusal::UnsupportedMechanism) => {
            tracing::info!(
                peer = ?context.peer,
                mechanism = %request.mechanism.as_str(),
                "closing a Kafka connection: SASL mechanism not enabled on this listener"
            );
            Some(ResponseError::UnsupportedSaslMechanism)
        }
        Err(HandshakeRefusal::MechanismChanged) => {
            tracing::info!(
                peer = ?context.peer,
                mechanism = %request.mechanism.as_str(),
                "closing a Kafka connection: a re-authentication must use the mechanism the \
                 connection authenticated with"
            );
            Some(ResponseError::UnsupportedSaslMechanism)
        }
        Err(HandshakeRefusal::IllegalState) => Some(ResponseError::IllegalSaslState),
    };
    SaslHandshakeResponse::default()
        .with_error_code(error.map_or(0, |error| error.code()))
        .with_mechanisms(mechanisms)
}

pub(crate) async fn sasl_authenticate(
    context: &KafkaContext<'_>,
    _version: i16,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let step = context
        .session
        .authenticate(
            &context.services.credentials,
            &request.auth_bytes,
            failure_delay(context),
            &context.services.failed_authentications,
        )
        .await;
    let response = SaslAuthenticateResponse::default();
    match step {
        Step::Challenge(message) => response.with_auth_bytes(Bytes::from(message)),
        // 0 asks for no re-authentication; a lifetime asks the client to authenticate again
        // before it ends (KIP-368; v0 cannot carry it, and such a client is closed at expiry).
        Step::Authenticated(message) => response
            .with_auth_bytes(Bytes::from(message))
            .with_session_lifetime_ms(context.session.session_lifetime_ms()),
        Step::Refused(refusal) => {
            let (error, message) = match refusal.kind {
                // The client is not told which part was wrong; the broker's log says it.
                RefusalKind::Failed => (
                    ResponseError::SaslAuthenticationFailed,
                    "Authentication failed: invalid credentials".to_string(),
                ),
                RefusalKind::PrincipalChanged => {
                    (ResponseError::SaslAuthenticationFailed, refusal.message)
                }
                RefusalKind::IllegalState => (ResponseError::IllegalSaslState, refusal.message),
            };
            response
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    }
}

/// How long a failed login's answer waits (`failed_authentication_delay_ms`).
fn failure_delay(context: &KafkaContext<'_>) -> Duration {
    Duration::from_millis(context.config().limits.failed_authentication_delay_ms)
}

/// One bare SASL token after SaslHandshake v0, answered bare (a size and the token). A failure
/// has no way to be told in this framing: the connection closes, as Kafka closes it.
pub(crate) async fn raw_authenticate(
    context: &KafkaContext<'_>,
    request: SaslAuthenticateRequest,
) -> Reply {
    let step = context
        .session
        .authenticate(
            &context.services.credentials,
            &request.auth_bytes,
            failure_delay(context),
            &context.services.failed_authentications,
        )
        .await;
    match step {
        Step::Challenge(message) | Step::Authenticated(message) => {
            let Ok(size) = i32::try_from(message.len()) else {
                return Reply::Close;
            };
            let mut frame = Vec::with_capacity(4 + message.len());
            frame.extend_from_slice(&size.to_be_bytes());
            frame.extend_from_slice(&message);
            Reply::Send(vec![Bytes::from(frame)])
        }
        Step::Refused(_) => Reply::Close,
    }
}

pub(crate) async fn describe_user_scram_credentials(
    context: &KafkaContext<'_>,
    _version: i16,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !context.cluster_authorized(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")));
    }
    let snapshot = context.services.credentials.snapshot();
    let described: BTreeMap<&str, Vec<CredentialInfo>> = snapshot
        .users()
        .map(|(user, credentials)| {
            let infos = credentials
                .into_iter()
                .map(|(mechanism, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism.kafka_type())
                        .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                })
                .collect();
            (user, infos)
        })
        .collect();
    let result = |user: &str| {
        DescribeUserScramCredentialsResult::default().with_user(user.to_string().into())
    };
    let results = match request.users {
        Some(users) if !users.is_empty() => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for user in &users {
                *counts.entry(user.name.as_str()).or_default() += 1;
            }
            let mut answered = HashSet::new();
            users
                .iter()
                .filter(|user| answered.insert(user.name.as_str()))
                .map(|user| {
                    let name = user.name.as_str();
                    if counts[name] > 1 {
                        return refused(
                            result(name),
                            ResponseError::DuplicateResource,
                            format!(
                                "Cannot describe SCRAM credentials for the same user twice \
                                 in a single request: {name}"
                            ),
                        );
                    }
                    match described.get(name) {
                        Some(infos) => result(name).with_credential_infos(infos.clone()),
                        None => refused(
                            result(name),
                            ResponseError::ResourceNotFound,
                            format!(
                                "Attempt to describe a user credential that does not exist: \
                                 {name}"
                            ),
                        ),
                    }
                })
                .collect()
        }
        _ => described
            .iter()
            .map(|(user, infos)| result(user).with_credential_infos(infos.clone()))
            .collect(),
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

fn refused(
    result: DescribeUserScramCredentialsResult,
    error: ResponseError,
    message: String,
) -> DescribeUserScramCredentialsResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// One user's alterations in a request, and the first reason to refuse them all.
#[derive(Default)]
struct UserAlterations {
    changes: Vec<CredentialChange>,
    refusal: Option<(ResponseError, String)>,
}

impl UserAlterations {
    fn refuse(&mut self, error: ResponseError, message: String) {
        self.refusal.get_or_insert((error, message));
    }
}

/// The user's alterations, remembering the order users first appear in (the answer's order).
fn alterations_of<'a>(
    users: &'a mut HashMap<String, UserAlterations>,
    order: &mut Vec<String>,
    name: &str,
) -> &'a mut UserAlterations {
    if !users.contains_key(name) {
        order.push(name.to_string());
    }
    users.entry(name.to_string()).or_default()
}

pub(crate) async fn alter_user_scram_credentials(
    context: &KafkaContext<'_>,
    _version: i16,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !context.cluster_authorized(Operation::Alter) {
        // Each user the request names, once, refused (Kafka's error answer).
        let mut named: Vec<&str> = Vec::new();
        let names = request
            .deletions
            .iter()
            .map(|deletion| deletion.name.as_str())
            .chain(
                request
                    .upsertions
                    .iter()
                    .map(|upsertion| upsertion.name.as_str()),
            );
        for name in names {
            if !named.contains(&name) {
                named.push(name);
            }
        }
        let results = named
            .into_iter()
            .map(|name| {
                AlterUserScramCredentialsResult::default()
                    .with_user(name.to_string().into())
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let snapshot = context.services.credentials.snapshot();
    let mut order: Vec<String> = Vec::new();
    let mut users: HashMap<String, UserAlterations> = HashMap::new();
    let mut seen: HashSet<(String, i8)> = HashSet::new();
    for deletion in &request.deletions {
        let name = deletion.name.as_str();
        let first = seen.insert((name.to_string(), deletion.mechanism));
        let alterations = alterations_of(&mut users, &mut order, name);
        if !first {
            alterations.refuse(
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
        }
        if name.is_empty() {
            alterations.refuse(
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            );
        }
        match ScramMechanism::from_kafka_type(deletion.mechanism) {
            None => alterations.refuse(
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {}", deletion.mechanism),
            ),
            Some(mechanism) if snapshot.get(name, mechanism).is_none() => alterations.refuse(
                ResponseError::ResourceNotFound,
                format!("Attempt to delete a user credential that does not exist: {name}"),
            ),
            Some(mechanism) => alterations.changes.push(CredentialChange::Delete {
                user: name.to_string(),
                mechanism,
            }),
        }
    }
    for upsertion in &request.upsertions {
        let name = upsertion.name.as_str();
        let first = seen.insert((name.to_string(), upsertion.mechanism));
        let alterations = alterations_of(&mut users, &mut order, name);
        if !first {
            alterations.refuse(
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
        }
        let Some(mechanism) = ScramMechanism::from_kafka_type(upsertion.mechanism) else {
            alterations.refuse(
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {}", upsertion.mechanism),
            );
            continue;
        };
        match check_upsertion(
            name,
            i64::from(upsertion.iterations),
            &upsertion.salt,
            &upsertion.salted_password,
        ) {
            Err(UpsertionRefusal::Unacceptable(message)) => {
                alterations.refuse(ResponseError::UnacceptableCredential, message)
            }
            Ok(iterations) => alterations.changes.push(CredentialChange::Upsert {
                user: name.to_string(),
                credential: ScramCredential::from_salted_password(
                    mechanism,
                    &upsertion.salted_password,
                    upsertion.salt.to_vec(),
                    iterations,
                ),
            }),
        }
    }
    drop(snapshot);
    // The accepted users' changes, written together; each change remembers its user.
    let mut owners = Vec::new();
    let mut changes = Vec::new();
    for name in &order {
        let alterations = users
            .get_mut(name)
            .expect("every ordered user has alterations");
        if alterations.refusal.is_none() {
            for change in alterations.changes.drain(..) {
                owners.push(name.clone());
                changes.push(change);
            }
        }
    }
    if !changes.is_empty() {
        match change(context.services, changes).await {
            Ok(outcomes) => {
                for (owner, outcome) in owners.iter().zip(outcomes) {
                    if outcome == ChangeOutcome::NotFound {
                        // Deleted by another request since the check above.
                        users.get_mut(owner).expect("owner known").refuse(
                            ResponseError::ResourceNotFound,
                            format!(
                                "Attempt to delete a user credential that does not exist: {owner}"
                            ),
                        );
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot change SCRAM credentials");
                for owner in &owners {
                    users.get_mut(owner).expect("owner known").refuse(
                        ResponseError::UnknownServerError,
                        format!("the credentials could not be written: {error}"),
                    );
                }
            }
        }
    }
    let results = order
        .iter()
        .map(|name| {
            let result = AlterUserScramCredentialsResult::default().with_user(name.clone().into());
            match users
                .remove(name)
                .and_then(|alterations| alterations.refusal)
            {
                None => result,
                Some((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

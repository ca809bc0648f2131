//! The native authentication and user APIs: SaslHandshake and SaslAuthenticate over the
//! connection's `auth::Session` (the same exchange as Kafka's, `kafka::sasl`), and UpsertUser,
//! DeleteUser and ListUsers over the shared credential store (`auth::credentials`), with the
//! checks Kafka's AlterUserScramCredentials makes.
//!
//! On a listener without SASL the handshake is answered `IllegalSaslState` with no mechanisms:
//! there is nothing to authenticate, and a client configured for SASL learns the broker does
//! not ask for it. A failed step is answered, then the connection closes (`Native::execute`).
//!
//! Re-authentication is Kafka's (`auth::Session`): SaslAuthenticate v1 carries the session's
//! lifetime (`session_lifetime_ms`, 0: none), and with one a handshake on an authenticated
//! connection begins a new exchange, which must prove the same principal.

use std::time::Duration;

use bytes::Bytes;
use spate_protocol::api::{
    DeleteUserRequest, DeleteUserResponse, ListUsersResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, UpsertUserRequest,
    UpsertUserResponse, UserCredentialInfo, UserListing,
};
use spate_protocol::error::ErrorCode;
use spate_security::{ScramCredential, ScramMechanism};

use crate::auth::credentials::{
    change, check_upsertion, ChangeOutcome, CredentialChange, UpsertionRefusal,
};
use crate::auth::{HandshakeRefusal, RefusalKind, Session, Step};
use crate::services::Services;

pub(crate) fn sasl_handshake(
    session: &Session,
    request: &SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mechanisms = session.mechanism_names().map(str::to_string).collect();
    let error_code = match session.handshake(&request.mechanism) {
        Ok(_) => ErrorCode::None,
        Err(HandshakeRefusal::UnsupportedMechanism) => {
            tracing::info!(
                mechanism = %request.mechanism,
                "closing a native connection: SASL mechanism not enabled on this listener"
            );
            ErrorCode::UnsupportedSaslMechanism
        }
        Err(HandshakeRefusal::MechanismChanged) => {
            tracing::info!(
                mechanism = %request.mechanism,
                "closing a native connection: a re-authentication must use the mechanism the \
                 connection authenticated with"
            );
            ErrorCode::UnsupportedSaslMechanism
        }
        Err(HandshakeRefusal::IllegalState) => ErrorCode::IllegalSaslState,
    };
    SaslHandshakeResponse {
        error_code,
        mechanisms,
    }
}

pub(crate) async fn sasl_authenticate(
    services: &Services,
    session: &Session,
    request: &SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    match session
        .authenticate(
            &services.credentials,
            &request.auth_bytes,
            Duration::from_millis(services.config.limits.failed_authentication_delay_ms),
            &services.failed_authentications,
        )
        .await
    {
        Step::Challenge(message) => SaslAuthenticateResponse {
            error_code: ErrorCode::None,
            error_message: None,
            auth_bytes: Bytes::from(message),
            session_lifetime_ms: 0,
        },
        Step::Authenticated(message) => SaslAuthenticateResponse {
            error_code: ErrorCode::None,
            error_message: None,
            auth_bytes: Bytes::from(message),
            session_lifetime_ms: session.session_lifetime_ms(),
        },
        Step::Refused(refusal) => {
            let (error_code, message) = match refusal.kind {
                // The client is not told which part was wrong; the broker's log says it.
                RefusalKind::Failed => (
                    ErrorCode::SaslAuthenticationFailed,
                    "authentication failed: invalid credentials".to_string(),
                ),
                RefusalKind::PrincipalChanged => {
                    (ErrorCode::SaslAuthenticationFailed, refusal.message)
                }
                RefusalKind::IllegalState => (ErrorCode::IllegalSaslState, refusal.message),
            };
            SaslAuthenticateResponse {
                error_code,
                error_message: Some(message),
                auth_bytes: Bytes::new(),
                session_lifetime_ms: 0,
            }
        }
    }
}

fn mechanism(name: &str) -> Result<ScramMechanism, (ErrorCode, String)> {
    ScramMechanism::from_name(name).ok_or_else(|| {
        (
            ErrorCode::UnsupportedSaslMechanism,
            format!("{name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"),
        )
    })
}

pub(crate) async fn upsert_user(
    services: &std::rc::Rc<Services>,
    request: &UpsertUserRequest,
) -> UpsertUserResponse {
    let outcome = async {
        let mechanism = mechanism(&request.mechanism)?;
        let iterations = check_upsertion(
            &request.name,
            i64::from(request.iterations),
            &request.salt,
            &request.salted_password,
        )
        .map_err(|UpsertionRefusal::Unacceptable(message)| {
            (ErrorCode::UnacceptableCredential, message)
        })?;
        let credential = ScramCredential::from_salted_password(
            mechanism,
            &request.salted_password,
            request.salt.to_vec(),
            iterations,
        );
        let changes = vec![CredentialChange::Upsert {
            user: request.name.clone(),
            credential,
        }];
        change(services, changes)
            .await
            .map_err(|error| (error.error_code(), error.to_string()))?;
        Ok(())
    }
    .await;
    let (error_code, error_message) = split(outcome);
    UpsertUserResponse {
        error_code,
        error_message,
    }
}

pub(crate) async fn delete_user(
    services: &std::rc::Rc<Services>,
    request: &DeleteUserRequest,
) -> DeleteUserResponse {
    let outcome = async {
        let mechanism = mechanism(&request.mechanism)?;
        let changes = vec![CredentialChange::Delete {
            user: request.name.clone(),
            mechanism,
        }];
        let outcomes = change(services, changes)
            .await
            .map_err(|error| (error.error_code(), error.to_string()))?;
        match outcomes.first() {
            Some(ChangeOutcome::Done) => Ok(()),
            _ => Err((
                ErrorCode::ResourceNotFound,
                format!(
                    "user {} has no {} credential",
                    request.name,
                    mechanism.name()
                ),
            )),
        }
    }
    .await;
    let (error_code, error_message) = split(outcome);
    DeleteUserResponse {
        error_code,
        error_message,
    }
}

pub(crate) fn list_users(services: &Services) -> ListUsersResponse {
    let snapshot = services.credentials.snapshot();
    let users = snapshot
        .users()
        .map(|(name, credentials)| UserListing {
            name: name.to_string(),
            credentials: credentials
                .into_iter()
                .map(|(mechanism, iterations)| UserCredentialInfo {
                    mechanism: mechanism.name().to_string(),
                    iterations,
                })
                .collect(),
        })
        .collect();
    ListUsersResponse {
        error_code: ErrorCode::None,
        users,
    }
}

fn split(outcome: Result<(), (ErrorCode, String)>) -> (ErrorCode, Option<String>) {
    match outcome {
        Ok(()) => (ErrorCode::None, None),
        Err((code, message)) => (code, Some(message)),
    }
}

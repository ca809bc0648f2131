//! SCRAM against published and independently computed vectors, client against server, and the
//! ways an exchange must fail: wrong password, unknown user, tampered proof or signature, nonce
//! mismatch, channel binding, out-of-order calls, and arbitrary bytes (never a panic).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::sync::OnceLock;

use proptest::prelude::*;
use spate_security::{ScramClient, ScramCredential, ScramError, ScramMechanism, ScramServer};

const USER: &str = "user";
const PASSWORD: &str = "pencil";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT_BASE64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const ITERATIONS: u32 = 4096;

const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

/// The exchange of RFC 7677 section 3, SCRAM-SHA-256, byte for byte.
const SHA256_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// The same inputs with SHA-512. No RFC publishes a SCRAM-SHA-512 vector; these messages were
/// computed by tests/scram_vector.py with Python's hashlib.pbkdf2_hmac and hmac, an
/// implementation independent of the RustCrypto crates this crate uses.
const SHA512_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
const SHA512_SERVER_FINAL: &str =
    "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==";

fn salt() -> Vec<u8> {
    BASE64.decode(SALT_BASE64).unwrap()
}

fn credential(mechanism: ScramMechanism, password: &str) -> ScramCredential {
    ScramCredential::from_password(mechanism, password.as_bytes(), salt(), ITERATIONS)
}

/// The vector's credential, computed once: PBKDF2 in a debug build is slow enough that the
/// property tests' hundreds of cases would otherwise take most of the run.
fn vector_credential(mechanism: ScramMechanism) -> ScramCredential {
    static CREDENTIALS: OnceLock<[ScramCredential; 2]> = OnceLock::new();
    let credentials = CREDENTIALS.get_or_init(|| {
        [
            credential(ScramMechanism::Sha256, PASSWORD),
            credential(ScramMechanism::Sha512, PASSWORD),
        ]
    });
    match mechanism {
        ScramMechanism::Sha256 => credentials[0].clone(),
        ScramMechanism::Sha512 => credentials[1].clone(),
    }
}

fn vector(mechanism: ScramMechanism) -> (&'static str, &'static str) {
    match mechanism {
        ScramMechanism::Sha256 => (SHA256_CLIENT_FINAL, SHA256_SERVER_FINAL),
        ScramMechanism::Sha512 => (SHA512_CLIENT_FINAL, SHA512_SERVER_FINAL),
    }
}

fn client_matches_vector(mechanism: ScramMechanism) {
    let (client_final, server_final) = vector(mechanism);
    let mut client = ScramClient::new(mechanism, USER, PASSWORD, CLIENT_NONCE.to_string());
    assert_eq!(client.client_first(), CLIENT_FIRST.as_bytes());
    assert_eq!(
        String::from_utf8(client.server_first(SERVER_FIRST.as_bytes()).unwrap()).unwrap(),
        client_final
    );
    client.server_final(server_final.as_bytes()).unwrap();
}

fn server_matches_vector(mechanism: ScramMechanism) {
    let (client_final, server_final) = vector(mechanism);
    let mut server = ScramServer::new(mechanism, SERVER_NONCE.to_string());
    let answer = server
        .client_first(CLIENT_FIRST.as_bytes(), |user| {
            assert_eq!(user, USER);
            Some(credential(mechanism, PASSWORD))
        })
        .unwrap();
    assert_eq!(String::from_utf8(answer).unwrap(), SERVER_FIRST);
    let (answer, user) = server.client_final(client_final.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(answer).unwrap(), server_final);
    assert_eq!(user, USER);
}

#[test]
fn sha256_client_writes_rfc7677_messages() {
    client_matches_vector(ScramMechanism::Sha256);
}

#[test]
fn sha256_server_writes_rfc7677_messages() {
    server_matches_vector(ScramMechanism::Sha256);
}

#[test]
fn sha512_client_writes_the_python_computed_messages() {
    client_matches_vector(ScramMechanism::Sha512);
}

#[test]
fn sha512_server_writes_the_python_computed_messages() {
    server_matches_vector(ScramMechanism::Sha512);
}

#[test]
fn credential_keys_match_the_python_computed_keys() {
    let sha256 = credential(ScramMechanism::Sha256, PASSWORD);
    assert_eq!(
        BASE64.encode(&sha256.stored_key),
        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    );
    assert_eq!(
        BASE64.encode(&sha256.server_key),
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
    );
    let sha512 = credential(ScramMechanism::Sha512, PASSWORD);
    assert_eq!(
        BASE64.encode(&sha512.stored_key),
        "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg=="
    );
    assert_eq!(
        BASE64.encode(&sha512.server_key),
        "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA=="
    );
}

#[test]
fn credential_from_salted_password_equals_from_password() {
    for mechanism in ScramMechanism::ALL {
        let salted =
            ScramCredential::salted_password(mechanism, PASSWORD.as_bytes(), &salt(), ITERATIONS);
        assert_eq!(salted.len(), mechanism.hash_bytes());
        assert_eq!(
            ScramCredential::from_salted_password(mechanism, &salted, salt(), ITERATIONS),
            credential(mechanism, PASSWORD)
        );
    }
}

#[test]
fn verify_password_accepts_only_the_password() {
    for mechanism in ScramMechanism::ALL {
        let credential = credential(mechanism, PASSWORD);
        assert!(credential.verify_password(PASSWORD.as_bytes()));
        assert!(!credential.verify_password(b"pencil "));
        assert!(!credential.verify_password(b""));
    }
}

#[test]
fn verify_password_refuses_credentials_outside_the_bounds() {
    for iterations in [1, 4095, 16385] {
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", salt(), iterations);
        assert!(!credential.verify_password(b"pencil"), "{iterations}");
    }
    let mut short_key = credential(ScramMechanism::Sha256, PASSWORD);
    short_key.stored_key.pop();
    assert!(!short_key.verify_password(PASSWORD.as_bytes()));
}

#[test]
fn an_unknown_users_credential_is_stable_per_name_and_secret_and_proves_nothing() {
    let secret = b"a secret of this broker process";
    for mechanism in ScramMechanism::ALL {
        let mallory = ScramCredential::for_unknown_user(mechanism, "mallory", secret, 8192, 32);
        assert_eq!(
            mallory.check(),
            Ok(()),
            "well-formed, so the exchange goes on"
        );
        assert_eq!(mallory.salt.len(), 32);
        assert_eq!(mallory.iterations, 8192);
        assert_eq!(
            mallory,
            ScramCredential::for_unknown_user(mechanism, "mallory", secret, 8192, 32),
            "the same name gets the same salt every time"
        );
        let trudy = ScramCredential::for_unknown_user(mechanism, "trudy", secret, 8192, 32);
        assert_ne!(mallory.salt, trudy.salt);
        let elsewhere = ScramCredential::for_unknown_user(mechanism, "mallory", b"other", 8192, 32);
        assert_ne!(
            mallory.salt, elsewhere.salt,
            "the salt depends on the secret"
        );
        assert_ne!(mallory.stored_key, mallory.server_key);
        // A salt longer than one HMAC block is still derived, not padded.
        let long = ScramCredential::for_unknown_user(mechanism, "mallory", secret, 8192, 100);
        assert_eq!(long.salt.len(), 100);
        assert_eq!(long.salt[..32], mallory.salt[..]);
        assert!(!long.salt[64..].iter().all(|byte| *byte == 0));

        // An exchange against it runs to the proof, which no password satisfies.
        let mut server = ScramServer::new(mechanism, SERVER_NONCE.into());
        let mut client = ScramClient::new(mechanism, "mallory", "guess", CLIENT_NONCE.into());
        let server_first = server
            .client_first(&client.client_first(), |_| Some(mallory.clone()))
            .expect("answered like a real user");
        let client_final = client.server_first(&server_first).expect("valid");
        assert_eq!(
            server.client_final(&client_final).unwrap_err(),
            ScramError::BadProof
        );
    }
}

#[test]
fn credential_debug_hides_the_keys() {
    let text = format!("{:?}", credential(ScramMechanism::Sha256, PASSWORD));
    assert!(
        !text.contains("stored_key") && !text.contains("server_key"),
        "{text}"
    );
}

#[test]
fn nonces_from_random_bytes_are_accepted_by_both_sides() {
    let client_nonce = spate_security::scram::nonce_from_random(&[0xfb; 18]);
    let server_nonce = spate_security::scram::nonce_from_random(&[0xff, 0x00, 0x3e]);
    assert_eq!(client_nonce.len(), 24);
    let mut client = ScramClient::new(ScramMechanism::Sha256, USER, PASSWORD, client_nonce);
    let mut server = ScramServer::new(ScramMechanism::Sha256, server_nonce);
    let server_first = server
        .client_first(&client.client_first(), |_| {
            Some(vector_credential(ScramMechanism::Sha256))
        })
        .unwrap();
    let (server_final, _) = server
        .client_final(&client.server_first(&server_first).unwrap())
        .unwrap();
    client.server_final(&server_final).unwrap();
}

#[test]
fn mechanism_names_and_kafka_codes_round_trip() {
    assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
    assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
    assert_eq!(ScramMechanism::Sha256.kafka_type(), 1);
    assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
    for mechanism in ScramMechanism::ALL {
        assert_eq!(ScramMechanism::from_name(mechanism.name()), Some(mechanism));
        assert_eq!(
            ScramMechanism::from_kafka_type(mechanism.kafka_type()),
            Some(mechanism)
        );
    }
    assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::from_kafka_type(0), None);
    assert_eq!(ScramMechanism::from_kafka_type(3), None);
}

/// What a full exchange between a client with `password` and a server holding `credential`
/// for `USER` ends in: the server's verdict, then the client's.
fn exchange(
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
    credential: Option<ScramCredential>,
) -> Result<String, ScramError> {
    let mut client = ScramClient::new(mechanism, user, password, "client-nonce".to_string());
    let mut server = ScramServer::new(mechanism, "server-nonce".to_string());
    let server_first = server.client_first(&client.client_first(), |_| credential)?;
    let client_final = client.server_first(&server_first)?;
    let (server_final, authenticated) = server.client_final(&client_final)?;
    client.server_final(&server_final)?;
    Ok(authenticated)
}

#[test]
fn client_and_server_agree_on_both_mechanisms() {
    for mechanism in ScramMechanism::ALL {
        let stored = credential(mechanism, "sécret,=pass");
        assert_eq!(
            exchange(mechanism, "al=ice,x", "sécret,=pass", Some(stored)).unwrap(),
            "al=ice,x"
        );
    }
}

#[test]
fn wrong_password_is_a_bad_proof() {
    for mechanism in ScramMechanism::ALL {
        let stored = credential(mechanism, PASSWORD);
        assert_eq!(
            exchange(mechanism, USER, "pencil2", Some(stored)),
            Err(ScramError::BadProof)
        );
    }
}

#[test]
fn unknown_user_fails_at_the_first_message() {
    assert_eq!(
        exchange(ScramMechanism::Sha256, USER, PASSWORD, None),
        Err(ScramError::UnknownUser)
    );
}

#[test]
fn lookup_gets_the_unescaped_user_name() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
    let mut looked_up = String::new();
    let _ = server.client_first(b"n,,n=a=2Cb=3Dc,r=x", |user| {
        looked_up = user.to_string();
        None
    });
    assert_eq!(looked_up, "a,b=c");
}

#[test]
fn credential_of_the_other_mechanism_is_refused() {
    let stored = credential(ScramMechanism::Sha512, PASSWORD);
    assert_eq!(
        exchange(ScramMechanism::Sha256, USER, PASSWORD, Some(stored)),
        Err(ScramError::CredentialMismatch)
    );
}

#[test]
fn credential_with_too_few_iterations_is_refused() {
    let stored = ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", salt(), 4095);
    assert_eq!(
        exchange(ScramMechanism::Sha256, USER, PASSWORD, Some(stored)),
        Err(ScramError::TooFewIterations { iterations: 4095 })
    );
}

fn server_after_vector_first(mechanism: ScramMechanism) -> ScramServer {
    let mut server = ScramServer::new(mechanism, SERVER_NONCE.to_string());
    server
        .client_first(CLIENT_FIRST.as_bytes(), |_| {
            Some(vector_credential(mechanism))
        })
        .unwrap();
    server
}

#[test]
fn tampered_proof_is_refused() {
    let proof_start = SHA256_CLIENT_FINAL.find(",p=").unwrap() + 3;
    let proof = BASE64.decode(&SHA256_CLIENT_FINAL[proof_start..]).unwrap();
    for byte_index in [0, 15, 31] {
        let mut tampered_proof = proof.clone();
        tampered_proof[byte_index] ^= 0x01;
        let message = format!(
            "{}{}",
            &SHA256_CLIENT_FINAL[..proof_start],
            BASE64.encode(&tampered_proof)
        );
        let mut server = server_after_vector_first(ScramMechanism::Sha256);
        assert_eq!(
            server.client_final(message.as_bytes()),
            Err(ScramError::BadProof)
        );
    }
    // A proof of the wrong length, such as a SHA-512 proof on a SHA-256 exchange.
    let short = format!("{}AAEC", &SHA256_CLIENT_FINAL[..proof_start]);
    let mut server = server_after_vector_first(ScramMechanism::Sha256);
    assert_eq!(
        server.client_final(short.as_bytes()),
        Err(ScramError::BadProof)
    );
}

#[test]
fn nonce_mismatch_in_client_final_is_refused() {
    let message = SHA256_CLIENT_FINAL.replace("k0,p=", "k1,p=");
    let mut server = server_after_vector_first(ScramMechanism::Sha256);
    assert_eq!(
        server.client_final(message.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
}

#[test]
fn changed_gs2_header_in_client_final_is_refused() {
    // "biws" is base64 of "n,,"; "eSws" is "y,,".
    let message = SHA256_CLIENT_FINAL.replace("c=biws", "c=eSws");
    let mut server = server_after_vector_first(ScramMechanism::Sha256);
    assert_eq!(
        server.client_final(message.as_bytes()),
        Err(ScramError::ChannelBinding)
    );
}

#[test]
fn authorization_id_must_equal_the_user() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
    assert_eq!(
        server.client_first(b"n,a=admin,n=user,r=x", |_| Some(credential(
            ScramMechanism::Sha256,
            PASSWORD
        ))),
        Err(ScramError::AuthorizationId)
    );
    // Equal to the user: accepted, and the client-final must repeat that header.
    let mut server = ScramServer::new(ScramMechanism::Sha256, SERVER_NONCE.to_string());
    server
        .client_first(b"n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO", |_| {
            Some(credential(ScramMechanism::Sha256, PASSWORD))
        })
        .unwrap();
    // The RFC vector's client-final carries "n,," and its proof covers other bytes.
    assert_eq!(
        server.client_final(SHA256_CLIENT_FINAL.as_bytes()),
        Err(ScramError::ChannelBinding)
    );
}

#[test]
fn unknown_client_first_extensions_are_ignored_but_covered_by_the_proof() {
    // Computed by tests/scram_vector.py with ",foo=bar" in client-first-message-bare.
    let client_first = format!("{CLIENT_FIRST},foo=bar");
    let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=9miuRqxg5gNbr/H1msFgDIiwPHKP+nnq9zpc2J4ss0k=";
    let mut server = ScramServer::new(ScramMechanism::Sha256, SERVER_NONCE.to_string());
    server
        .client_first(client_first.as_bytes(), |_| {
            Some(vector_credential(ScramMechanism::Sha256))
        })
        .unwrap();
    let (server_final, user) = server.client_final(client_final.as_bytes()).unwrap();
    assert_eq!(
        server_final,
        b"v=y6Q8MhtPdsKpYfJwEQDk2RusiGYRudLhaUeH3Tft5a8="
    );
    assert_eq!(user, USER);

    // The proof of the exchange without the extension does not fit this one.
    let mut server = ScramServer::new(ScramMechanism::Sha256, SERVER_NONCE.to_string());
    server
        .client_first(client_first.as_bytes(), |_| {
            Some(vector_credential(ScramMechanism::Sha256))
        })
        .unwrap();
    assert_eq!(
        server.client_final(SHA256_CLIENT_FINAL.as_bytes()),
        Err(ScramError::BadProof)
    );
}

#[test]
fn channel_binding_and_token_extension_are_refused() {
    for (message, error) in [
        (&b"y,,n=user,r=x"[..], ScramError::ChannelBinding),
        (
            b"p=tls-server-end-point,,n=user,r=x",
            ScramError::ChannelBinding,
        ),
        (
            b"n,,n=user,r=x,tokenauth=true",
            ScramError::UnsupportedExtension,
        ),
    ] {
        let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
        assert_eq!(server.client_first(message, |_| None), Err(error));
    }
}

#[test]
fn client_refuses_a_server_nonce_that_does_not_extend_its_own() {
    for server_first in [
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=XOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    ] {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            USER,
            PASSWORD,
            CLIENT_NONCE.to_string(),
        );
        client.client_first();
        assert_eq!(
            client.server_first(server_first.as_bytes()),
            Err(ScramError::NonceMismatch)
        );
    }
}

#[test]
fn client_refuses_iterations_outside_kafkas_bounds() {
    for (iterations, error) in [
        (4095, ScramError::TooFewIterations { iterations: 4095 }),
        (16385, ScramError::TooManyIterations { iterations: 16385 }),
    ] {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            USER,
            PASSWORD,
            CLIENT_NONCE.to_string(),
        );
        client.client_first();
        let message = SERVER_FIRST.replace("i=4096", &format!("i={iterations}"));
        assert_eq!(client.server_first(message.as_bytes()), Err(error));
    }
}

#[test]
fn client_refuses_a_tampered_server_signature_and_reports_server_errors() {
    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        USER,
        PASSWORD,
        CLIENT_NONCE.to_string(),
    );
    client.client_first();
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    let tampered = SHA256_SERVER_FINAL.replace("v=6", "v=7");
    assert_eq!(
        client.server_final(tampered.as_bytes()),
        Err(ScramError::ServerSignature)
    );

    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        USER,
        PASSWORD,
        CLIENT_NONCE.to_string(),
    );
    client.client_first();
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(b"e=invalid-proof"),
        Err(ScramError::ServerError("invalid-proof".to_string()))
    );
}

#[test]
fn calls_out_of_order_or_after_the_end_are_refused() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
    assert_eq!(
        server.client_final(b"c=biws,r=x,p=AAEC"),
        Err(ScramError::OutOfOrder)
    );

    // After a failure nothing more is accepted, not even a good first message.
    let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
    assert!(server.client_first(b"junk", |_| None).is_err());
    assert_eq!(
        server.client_first(CLIENT_FIRST.as_bytes(), |_| Some(credential(
            ScramMechanism::Sha256,
            PASSWORD
        ))),
        Err(ScramError::OutOfOrder)
    );

    // After success too.
    let mut server = server_after_vector_first(ScramMechanism::Sha256);
    server.client_final(SHA256_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(
        server.client_final(SHA256_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );

    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        USER,
        PASSWORD,
        CLIENT_NONCE.to_string(),
    );
    assert_eq!(
        client.server_first(SERVER_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
    assert_eq!(
        client.server_final(SHA256_SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
#[should_panic(expected = "nonce")]
fn server_nonce_with_a_comma_is_a_bug() {
    ScramServer::new(ScramMechanism::Sha256, "a,b".to_string());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_never_panics_on_arbitrary_client_first(message in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
        let _ = server.client_first(&message, |_| Some(credential_cheap()));
    }

    #[test]
    fn server_never_panics_on_arbitrary_client_final(message in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut server = server_with_cheap_credential();
        let _ = server.client_final(&message);
    }

    #[test]
    fn server_never_panics_on_mutated_client_final(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut server = server_after_vector_first(ScramMechanism::Sha256);
        let mut message = SHA256_CLIENT_FINAL.as_bytes().to_vec();
        let position = index.index(message.len());
        let original = message[position];
        message[position] = byte;
        let result = server.client_final(&message);
        if byte != original {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn server_never_panics_on_structured_garbage(
        fields in proptest::collection::vec("[a-z=,]{0,3}(=[A-Za-z0-9+/=,]{0,12})?", 0..8),
    ) {
        let message = fields.join(",");
        let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
        let _ = server.client_first(message.as_bytes(), |_| Some(credential_cheap()));
        let mut server = server_with_cheap_credential();
        let _ = server.client_final(message.as_bytes());
    }

    #[test]
    fn client_never_panics_on_arbitrary_server_messages(
        first in proptest::collection::vec(any::<u8>(), 0..300),
        last in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut client = ScramClient::new(ScramMechanism::Sha256, USER, PASSWORD, "c".to_string());
        client.client_first();
        let _ = client.server_first(&first);
        let _ = client.server_final(&last);
    }
}

proptest! {
    // Each case runs PBKDF2 twice; a few dozen cases cover the escapes and UTF-8.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_user_and_password_authenticate(
        user in "\\PC{1,20}",
        password in "\\PC{0,20}",
        sha512 in any::<bool>(),
    ) {
        let mechanism = if sha512 { ScramMechanism::Sha512 } else { ScramMechanism::Sha256 };
        let stored = ScramCredential::from_password(mechanism, password.as_bytes(), vec![1, 2, 3], 4096);
        prop_assert_eq!(exchange(mechanism, &user, &password, Some(stored)), Ok(user.clone()));
    }
}

/// A credential with the fewest iterations allowed, for the property tests' many cases.
fn credential_cheap() -> ScramCredential {
    ScramCredential::from_salted_password(ScramMechanism::Sha256, &[7; 32], vec![1, 2, 3], 4096)
}

/// A server past a client-first-message that used `credential_cheap`.
fn server_with_cheap_credential() -> ScramServer {
    let mut server = ScramServer::new(ScramMechanism::Sha256, "s".to_string());
    server
        .client_first(b"n,,n=user,r=c", |_| Some(credential_cheap()))
        .unwrap();
    server
}

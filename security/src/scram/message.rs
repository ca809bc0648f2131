//! The SCRAM messages' grammar (RFC 5802 section 7): parsing with bounds and typed errors,
//! formatting, and the saslname escapes ("=2C" for ',', "=3D" for '=').
//!
//! Parsers take untrusted bytes: each checks the length first, then UTF-8, then the attributes
//! in the RFC's order, and returns [`ScramError`] for anything else; none can panic.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::ScramError;
use crate::limits::SCRAM_MESSAGE_BYTES_MAX;

/// A parsed client-first-message.
#[derive(Debug)]
pub(super) struct ClientFirst<'a> {
    /// "n,," or "n,a=<saslname>,": repeated (base64) in the client-final-message's "c=".
    pub gs2_header: &'a str,
    /// The authorization id with escapes undone, when the client sent one.
    pub authorization_id: Option<String>,
    /// The user name with escapes undone.
    pub user: String,
    pub client_nonce: &'a str,
    /// The message without the gs2 header: the first part of the AuthMessage.
    pub bare: &'a str,
}

/// A parsed server-first-message.
#[derive(Debug)]
pub(super) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// A parsed client-final-message.
#[derive(Debug)]
pub(super) struct ClientFinal<'a> {
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
    /// The message up to the proof: the last part of the AuthMessage.
    pub without_proof: &'a str,
}

/// A parsed server-final-message.
#[derive(Debug)]
pub(super) enum ServerFinal {
    Verifier(Vec<u8>),
    Error(String),
}

/// The longest decimal iteration count accepted: u32's ten digits, with leading zeros allowed
/// up to this many.
const ITERATIONS_DIGITS_MAX: usize = 16;

/// Kafka's client-first extension for delegation tokens.
const TOKEN_AUTHENTICATION_EXTENSION: &str = "tokenauth";

fn check_text(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::TooLong {
            message_bytes: message.len(),
            limit_bytes: SCRAM_MESSAGE_BYTES_MAX,
        });
    }
    std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// The value of attribute `name` ("n", "r", …) at the head of `field`.
fn attribute<'a>(field: &'a str, name: char, what: &'static str) -> Result<&'a str, ScramError> {
    field
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or(ScramError::Malformed(what))
}

/// Whether `field` looks like an attribute or extension "key=value": RFC 5802's keys are one
/// letter, Kafka's extensions ("tokenauth=true") longer, so any printable key is taken.
fn is_attribute(field: &str) -> bool {
    match field.split_once('=') {
        Some((key, _)) => !key.is_empty() && is_printable(key),
        None => false,
    }
}

/// RFC 5802's printable: %x21-7E except ','.
fn is_printable(text: &str) -> bool {
    text.bytes()
        .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b',')
}

/// Whether `nonce` is a valid nonce (part): non-empty and printable.
pub(super) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && is_printable(nonce)
}

fn parse_nonce(field: &str) -> Result<&str, ScramError> {
    let nonce = attribute(field, 'r', "expected the nonce r=")?;
    if !is_valid_nonce(nonce) {
        return Err(ScramError::Malformed("nonce is empty or not printable"));
    }
    Ok(nonce)
}

fn parse_base64(value: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| ScramError::Malformed(what))
}

pub(super) fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// A saslname with "=2C" and "=3D" undone; any other '=' is malformed, as is an empty name.
pub(super) fn decode_saslname(saslname: &str) -> Result<String, ScramError> {
    if saslname.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    let mut name = String::with_capacity(saslname.len());
    let mut rest = saslname;
    while let Some(position) = rest.find('=') {
        name.push_str(&rest[..position]);
        let escape = &rest[position..];
        if escape.starts_with("=2C") {
            name.push(',');
        } else if escape.starts_with("=3D") {
            name.push('=');
        } else {
            return Err(ScramError::Malformed(
                "'=' in a user name not escaped as =2C or =3D",
            ));
        }
        rest = &escape[3..];
    }
    name.push_str(rest);
    Ok(name)
}

/// A user name as a saslname: ',' and '=' escaped.
pub(super) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Parses a client-first-message: gs2-header ("n," then an optional "a=authzid", then ','),
/// then "n=user,r=nonce", then extensions. Channel binding ("y", "p=") is refused, as Kafka
/// refuses it. Extensions are ignored, as Kafka ignores the ones it does not know (they stay in
/// `bare`, so the AuthMessage covers them), except Kafka's `tokenauth=true`: that one means the
/// user name is a delegation token id, and Spate has no delegation tokens.
pub(super) fn parse_client_first(message: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let text = check_text(message)?;
    let after_flag = match text.as_bytes().first() {
        Some(b'n') => text[1..]
            .strip_prefix(',')
            .ok_or(ScramError::Malformed("expected ',' after the gs2 flag"))?,
        Some(b'y') | Some(b'p') => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("expected the gs2 flag n")),
    };
    let (authorization_field, bare) = after_flag
        .split_once(',')
        .ok_or(ScramError::Malformed("expected the gs2 header's end"))?;
    let authorization_id = if authorization_field.is_empty() {
        None
    } else {
        let saslname = attribute(authorization_field, 'a', "expected the authorization id a=")?;
        Some(decode_saslname(saslname)?)
    };
    let gs2_header = &text[..text.len() - bare.len()];

    let mut fields = bare.split(',');
    let user_field = fields.next().unwrap_or_default();
    if user_field.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension);
    }
    let user = decode_saslname(attribute(user_field, 'n', "expected the user name n=")?)?;
    let client_nonce = parse_nonce(
        fields
            .next()
            .ok_or(ScramError::Malformed("expected the nonce r="))?,
    )?;
    for extension in fields {
        let (key, value) = extension
            .split_once('=')
            .filter(|_| is_attribute(extension))
            .ok_or(ScramError::Malformed(
                "unexpected text after the attributes",
            ))?;
        // Java's Boolean.parseBoolean, which Kafka reads the value with.
        if key == TOKEN_AUTHENTICATION_EXTENSION && value.eq_ignore_ascii_case("true") {
            return Err(ScramError::UnsupportedExtension);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authorization_id,
        user,
        client_nonce,
        bare,
    })
}

/// Whatever follows the known attributes of a client-final-message: an extension is refused
/// as unsupported (Kafka leaves them out of its AuthMessage, so no client can use them with
/// Kafka either), anything else is malformed.
fn refuse_extensions<'a>(mut fields: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    match fields.next() {
        None => Ok(()),
        Some(field) if is_attribute(field) => Err(ScramError::UnsupportedExtension),
        Some(_) => Err(ScramError::Malformed(
            "unexpected text after the attributes",
        )),
    }
}

/// Formats a server-first-message.
pub(super) fn format_server_first(nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={nonce},s={},i={iterations}", encode_base64(salt))
}

/// Parses a server-first-message: "r=nonce,s=salt,i=iterations", then extensions, which a
/// client ignores (RFC 5802 section 5.1); the mandatory extension "m=" is refused.
pub(super) fn parse_server_first(message: &[u8]) -> Result<ServerFirst<'_>, ScramError> {
    let text = check_text(message)?;
    let mut fields = text.split(',');
    let nonce_field = fields.next().unwrap_or_default();
    if nonce_field.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension);
    }
    let nonce = parse_nonce(nonce_field)?;
    let salt_field = fields
        .next()
        .ok_or(ScramError::Malformed("expected the salt s="))?;
    let salt = parse_base64(
        attribute(salt_field, 's', "expected the salt s=")?,
        "salt is not base64",
    )?;
    if salt.is_empty() {
        return Err(ScramError::Malformed("empty salt"));
    }
    let iterations_field = fields
        .next()
        .ok_or(ScramError::Malformed("expected the iterations i="))?;
    let iterations = parse_iterations(attribute(
        iterations_field,
        'i',
        "expected the iterations i=",
    )?)?;
    for field in fields {
        if !is_attribute(field) {
            return Err(ScramError::Malformed(
                "unexpected text after the attributes",
            ));
        }
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

fn parse_iterations(digits: &str) -> Result<u32, ScramError> {
    if digits.is_empty()
        || digits.len() > ITERATIONS_DIGITS_MAX
        || !digits.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(ScramError::Malformed("iterations is not a decimal number"));
    }
    // At most 16 digits fit a u64; above u32, the count is simply too many.
    let iterations = digits
        .parse::<u64>()
        .map_err(|_| ScramError::Malformed("iterations is not a decimal number"))?;
    u32::try_from(iterations).map_err(|_| ScramError::TooManyIterations {
        iterations: u32::MAX,
    })
}

/// Formats a client-final-message without its proof.
pub(super) fn format_client_final_without_proof(gs2_header: &str, nonce: &str) -> String {
    format!("c={},r={nonce}", encode_base64(gs2_header.as_bytes()))
}

/// Parses a client-final-message: "c=binding,r=nonce", then "p=proof" last. Extensions
/// between them are refused.
pub(super) fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let text = check_text(message)?;
    let (without_proof, proof_value) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("expected the proof p= last"))?;
    let mut fields = without_proof.split(',');
    let binding_field = fields.next().unwrap_or_default();
    let channel_binding = parse_base64(
        attribute(binding_field, 'c', "expected the channel binding c=")?,
        "channel binding is not base64",
    )?;
    let nonce = parse_nonce(
        fields
            .next()
            .ok_or(ScramError::Malformed("expected the nonce r="))?,
    )?;
    refuse_extensions(fields)?;
    let proof = parse_base64(proof_value, "proof is not base64")?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// Formats a successful server-final-message.
pub(super) fn format_server_final(server_signature: &[u8]) -> String {
    format!("v={}", encode_base64(server_signature))
}

/// Parses a server-final-message: "v=verifier" or "e=error", then ignored extensions.
pub(super) fn parse_server_final(message: &[u8]) -> Result<ServerFinal, ScramError> {
    let text = check_text(message)?;
    let mut fields = text.split(',');
    let first = fields.next().unwrap_or_default();
    for field in fields {
        if !is_attribute(field) {
            return Err(ScramError::Malformed(
                "unexpected text after the attributes",
            ));
        }
    }
    if let Some(error) = first.strip_prefix("e=") {
        return Ok(ServerFinal::Error(error.to_string()));
    }
    let verifier = attribute(first, 'v', "expected the verifier v= or an error e=")?;
    Ok(ServerFinal::Verifier(parse_base64(
        verifier,
        "verifier is not base64",
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes_round_trip() {
        let name = "a,b=c==,";
        assert_eq!(encode_saslname(name), "a=2Cb=3Dc=3D=3D=2C");
        assert_eq!(decode_saslname(&encode_saslname(name)).unwrap(), name);
    }

    #[test]
    fn saslname_refuses_bare_equals_and_empty() {
        for saslname in ["a=b", "a=", "a=2", "=2c", ""] {
            assert!(
                matches!(decode_saslname(saslname), Err(ScramError::Malformed(_))),
                "{saslname}"
            );
        }
    }

    #[test]
    fn client_first_parses_gs2_header_and_bare_part() {
        let parsed = parse_client_first(b"n,a=us=2Cer,n=us=2Cer,r=abc").unwrap();
        assert_eq!(parsed.gs2_header, "n,a=us=2Cer,");
        assert_eq!(parsed.authorization_id.as_deref(), Some("us,er"));
        assert_eq!(parsed.user, "us,er");
        assert_eq!(parsed.client_nonce, "abc");
        assert_eq!(parsed.bare, "n=us=2Cer,r=abc");
    }

    #[test]
    fn client_first_ignores_extensions_other_than_token_authentication() {
        let parsed = parse_client_first(b"n,,n=user,r=abc,foo=bar,tokenauth=false").unwrap();
        assert_eq!(parsed.bare, "n=user,r=abc,foo=bar,tokenauth=false");
        assert_eq!(
            parse_client_first(b"n,,n=user,r=abc,foo=bar,tokenauth=TRUE").unwrap_err(),
            ScramError::UnsupportedExtension
        );
    }

    #[test]
    fn client_first_refuses_channel_binding_extensions_and_junk() {
        let cases: [(&[u8], ScramError); 9] = [
            (b"y,,n=user,r=abc", ScramError::ChannelBinding),
            (b"p=tls-unique,,n=user,r=abc", ScramError::ChannelBinding),
            (
                b"n,,n=user,r=abc,tokenauth=true",
                ScramError::UnsupportedExtension,
            ),
            (b"n,,m=x,n=user,r=abc", ScramError::UnsupportedExtension),
            (
                b"n,,n=user,r=abc,",
                ScramError::Malformed("unexpected text after the attributes"),
            ),
            (b"n,,n=user", ScramError::Malformed("expected the nonce r=")),
            (
                b"n,,n=user,r=",
                ScramError::Malformed("nonce is empty or not printable"),
            ),
            (
                b"n,x=a,n=user,r=abc",
                ScramError::Malformed("expected the authorization id a="),
            ),
            (b"", ScramError::Malformed("expected the gs2 flag n")),
        ];
        for (message, error) in cases {
            assert_eq!(
                parse_client_first(message).unwrap_err(),
                error,
                "{message:?}"
            );
        }
    }

    #[test]
    fn messages_over_the_limit_are_refused_before_parsing() {
        let message = vec![b'n'; SCRAM_MESSAGE_BYTES_MAX + 1];
        assert!(matches!(
            parse_client_first(&message),
            Err(ScramError::TooLong { .. })
        ));
        assert!(matches!(
            parse_client_final(&message),
            Err(ScramError::TooLong { .. })
        ));
        assert!(matches!(
            parse_server_first(&message),
            Err(ScramError::TooLong { .. })
        ));
        assert!(matches!(
            parse_server_final(&message),
            Err(ScramError::TooLong { .. })
        ));
    }

    #[test]
    fn server_first_reads_iterations_and_ignores_extensions() {
        let parsed = parse_server_first(b"r=abcdef,s=AAEC,i=04096,x=y").unwrap();
        assert_eq!(parsed.nonce, "abcdef");
        assert_eq!(parsed.salt, vec![0, 1, 2]);
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(
            parse_server_first(b"r=a,s=AAEC,i=99999999999").unwrap_err(),
            ScramError::TooManyIterations {
                iterations: u32::MAX
            }
        );
        assert!(matches!(
            parse_server_first(b"r=a,s=AAEC,i=-1"),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            parse_server_first(b"r=a,s=,i=4096"),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            parse_server_first(b"r=a,s=!!,i=4096"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn client_final_splits_off_the_proof() {
        let parsed = parse_client_final(b"c=biws,r=abc,p=AAEC").unwrap();
        assert_eq!(parsed.channel_binding, b"n,,");
        assert_eq!(parsed.nonce, "abc");
        assert_eq!(parsed.proof, vec![0, 1, 2]);
        assert_eq!(parsed.without_proof, "c=biws,r=abc");
        assert_eq!(
            parse_client_final(b"c=biws,r=abc,x=1,p=AAEC").unwrap_err(),
            ScramError::UnsupportedExtension
        );
        assert!(matches!(
            parse_client_final(b"c=biws,r=abc"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn server_final_reads_verifier_or_error() {
        assert!(
            matches!(parse_server_final(b"v=AAEC"), Ok(ServerFinal::Verifier(v)) if v == [0, 1, 2])
        );
        assert!(
            matches!(parse_server_final(b"e=unknown-user"), Ok(ServerFinal::Error(e)) if e == "unknown-user")
        );
        assert!(matches!(
            parse_server_final(b"x=1"),
            Err(ScramError::Malformed(_))
        ));
    }
}

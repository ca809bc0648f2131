//! The principal of a verified client certificate: `User:<subject CN>`, or `User:<subject DN>`
//! (RFC 4514, as Kafka's default `ssl.principal.mapping.rules` prints it) when the subject has
//! no common name.
//!
//! The certificate has already been verified by rustls (webpki) when this runs, so it is
//! well-formed DER; the reader still checks every length against the bytes it has and answers
//! `None` rather than panic. Only the subject is read: a small DER walk, instead of a whole
//! X.509 parser in the broker for one field.

/// `User:<CN>` of the certificate `der`, or `User:<DN>` when the subject has no CN; `None` when
/// the subject cannot be read.
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let attributes = subject_attributes(der)?;
    // RFC 4514 prints the most specific RDN first, which DER stores last.
    let common_name = attributes
        .iter()
        .rev()
        .flatten()
        .find(|attribute| attribute.oid == COMMON_NAME_OID);
    if let Some(common_name) = common_name {
        return Some(format!("User:{}", common_name.value));
    }
    if attributes.is_empty() {
        return None;
    }
    Some(format!("User:{}", distinguished_name(&attributes)))
}

/// The DER body of OID 2.5.4.3, commonName.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;

/// One attribute of a relative distinguished name.
#[derive(Debug)]
struct Attribute<'a> {
    oid: &'a [u8],
    value: String,
}

/// The subject's RDNs in DER order, each a set of attributes.
fn subject_attributes(der: &[u8]) -> Option<Vec<Vec<Attribute<'_>>>> {
    let (certificate, _) = expect(der, TAG_SEQUENCE)?;
    let (to_be_signed, _) = expect(certificate, TAG_SEQUENCE)?;
    let mut rest = to_be_signed;
    if rest.first() == Some(&TAG_VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (subject, _) = expect(rest, TAG_SEQUENCE)?;
    let mut names = Vec::new();
    let mut remaining = subject;
    while !remaining.is_empty() {
        let (set, after) = expect(remaining, TAG_SET)?;
        remaining = after;
        let mut attributes = Vec::new();
        let mut in_set = set;
        while !in_set.is_empty() {
            let (pair, after) = expect(in_set, TAG_SEQUENCE)?;
            in_set = after;
            let (oid, value_rest) = expect(pair, TAG_OID)?;
            let (tag, value, _) = element(value_rest)?;
            attributes.push(Attribute {
                oid,
                value: decode_string(tag, value)?,
            });
        }
        names.push(attributes);
    }
    Some(names)
}

/// The next element of `input` if it has tag `tag`: its contents and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(input)?;
    (found == tag).then_some((contents, rest))
}

/// The next DER element of `input`: its tag, contents and what follows it. Single-byte tags
/// only (all an X.509 name uses); definite lengths of up to four bytes.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
    };
    if rest.len() < length {
        return None;
    }
    let (contents, after) = rest.split_at(length);
    Some((tag, contents, after))
}

/// A directory string as text: UTF8String, PrintableString, IA5String, TeletexString (read as
/// Latin-1, as most software does), BMPString (UCS-2). Other types are printed `#<hex>` (RFC 4514).
fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c => String::from_utf8(value.to_vec()).ok(),
        0x13 | 0x16 | 0x14 => Some(value.iter().map(|byte| char::from(*byte)).collect()),
        0x1e => {
            if value.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => {
            let hex: String = value.iter().map(|byte| format!("{byte:02x}")).collect();
            Some(format!("#{hex}"))
        }
    }
}

/// RFC 4514: RDNs most specific first, joined by `,`; attributes of one RDN by `+`.
fn distinguished_name(names: &[Vec<Attribute<'_>>]) -> String {
    names
        .iter()
        .rev()
        .map(|attributes| {
            attributes
                .iter()
                .map(|attribute| {
                    format!(
                        "{}={}",
                        attribute_name(attribute.oid),
                        escape(&attribute.value)
                    )
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4514's short names, else the dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".to_string(),
        [0x55, 0x04, 0x06] => "C".to_string(),
        [0x55, 0x04, 0x07] => "L".to_string(),
        [0x55, 0x04, 0x08] => "ST".to_string(),
        [0x55, 0x04, 0x09] => "STREET".to_string(),
        [0x55, 0x04, 0x0a] => "O".to_string(),
        [0x55, 0x04, 0x0b] => "OU".to_string(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".to_string(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".to_string(),
        _ => dotted_oid(oid),
    }
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RFC 4514 section 2.4: `, + " \ < > ;` escaped, and a leading `#` or space and a trailing
/// space.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (character == '#' || character == ' '))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_principal_is_the_subject_common_name() {
        let der = certificate(&[
            (rcgen::DnType::OrganizationName, "Acme"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(certificate_principal(&der).as_deref(), Some("User:alice"));
    }

    #[test]
    fn without_a_common_name_the_principal_is_the_whole_subject_escaped() {
        let der = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Acme, Inc"),
            (rcgen::DnType::OrganizationalUnitName, "payments"),
        ]);
        assert_eq!(
            certificate_principal(&der).as_deref(),
            Some("User:OU=payments,O=Acme\\, Inc,C=DE")
        );
    }

    #[test]
    fn truncated_or_garbage_certificates_give_no_principal() {
        let der = certificate(&[(rcgen::DnType::CommonName, "alice")]);
        for length in 0..der.len() {
            // Never a panic; a cut certificate reads as nothing (or, cut after the subject,
            // still as alice).
            let principal = certificate_principal(&der[..length]);
            assert!(principal.is_none() || principal.as_deref() == Some("User:alice"));
        }
        assert_eq!(
            certificate_principal(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(
            dotted_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}

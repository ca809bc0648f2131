//! Byte and time encodings of the command line: hex and base64 for keys and values that are not
//! text, RFC 3339 for timestamps (printed by `%d`, read by `--offset @TIME`), and relative times
//! (`-1h`).
//!
//! Each is a few lines and exact, so they are written here rather than pulled in as crates. What
//! gets encoded, and when, is `format`'s and `consume`'s business.

use std::io::{self, Write};

/// How key and value bytes are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// As they are (in JSON: UTF-8 text, each invalid sequence as U+FFFD).
    #[default]
    Text,
    /// Two lowercase hex digits per byte.
    Hex,
    /// Standard base64 with padding (RFC 4648).
    Base64,
}

impl Encoding {
    /// The encoding a template modifier names (`%v{hex}`).
    pub fn from_modifier(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }
}

/// Writes `bytes` as lowercase hex.
pub fn write_hex(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 128];
    for chunk in bytes.chunks(buffer.len() / 2) {
        for (index, byte) in chunk.iter().enumerate() {
            buffer[2 * index] = DIGITS[usize::from(byte >> 4)];
            buffer[2 * index + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        output.write_all(&buffer[..2 * chunk.len()])?;
    }
    Ok(())
}

/// Writes `bytes` as standard, padded base64.
pub fn write_base64(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut buffer = [0u8; 128];
    // 96 input bytes make 128 output characters.
    for chunk in bytes.chunks(96) {
        let mut length = 0;
        for triple in chunk.chunks(3) {
            let value = (u32::from(triple[0]) << 16)
                | (u32::from(*triple.get(1).unwrap_or(&0)) << 8)
                | u32::from(*triple.get(2).unwrap_or(&0));
            for position in 0..4 {
                buffer[length + position] = if position <= triple.len() {
                    ALPHABET[((value >> (18 - 6 * position)) & 0x3f) as usize]
                } else {
                    b'='
                };
            }
            length += 4;
        }
        output.write_all(&buffer[..length])?;
    }
    Ok(())
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian; Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count from 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes ms since the epoch as RFC 3339 in UTC with milliseconds: `2026-01-01T00:00:00.000Z`.
pub fn write_rfc3339(output: &mut impl Write, timestamp_ms: i64) -> io::Result<()> {
    let days = timestamp_ms.div_euclid(86_400_000);
    let ms_of_day = timestamp_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    write!(
        output,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// The directives [`write_strftime`] knows, as C's and rpk's strftime spell them.
const STRFTIME_DIRECTIVES: &[u8] = b"YmdHMSLFTsjabZ%";

/// True when every `%` in `pattern` starts a directive [`write_strftime`] knows, so a bad
/// pattern is refused once, when the template is compiled, not on each record.
pub fn check_strftime(pattern: &str) -> bool {
    let mut bytes = pattern.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%'
            && !bytes
                .next()
                .is_some_and(|directive| STRFTIME_DIRECTIVES.contains(&directive))
        {
            return false;
        }
    }
    true
}

/// Writes ms since the epoch through a strftime pattern, in UTC: %Y year, %m month, %d day,
/// %H %M %S hour, minute, second, %L milliseconds, %F = %Y-%m-%d, %T = %H:%M:%S, %s seconds
/// since the epoch, %j day of the year, %a %b weekday and month names, %Z `UTC`, %% a percent
/// sign. The pattern is checked by [`check_strftime`] first.
pub fn write_strftime(output: &mut impl Write, pattern: &str, timestamp_ms: i64) -> io::Result<()> {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = timestamp_ms.div_euclid(86_400_000);
    let ms_of_day = timestamp_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
    );
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        output.write_all(&rest.as_bytes()[..at])?;
        let directive = rest.as_bytes().get(at + 1).copied();
        rest = &rest[(at + 2).min(rest.len())..];
        match directive {
            Some(b'Y') => write!(output, "{year:04}")?,
            Some(b'm') => write!(output, "{month:02}")?,
            Some(b'd') => write!(output, "{day:02}")?,
            Some(b'H') => write!(output, "{hour:02}")?,
            Some(b'M') => write!(output, "{minute:02}")?,
            Some(b'S') => write!(output, "{second:02}")?,
            Some(b'L') => write!(output, "{:03}", ms_of_day % 1000)?,
            Some(b'F') => write!(output, "{year:04}-{month:02}-{day:02}")?,
            Some(b'T') => write!(output, "{hour:02}:{minute:02}:{second:02}")?,
            Some(b's') => write!(output, "{}", timestamp_ms.div_euclid(1000))?,
            Some(b'j') => write!(output, "{:03}", days - days_from_civil(year, 1, 1) + 1)?,
            Some(b'a') => output.write_all(WEEKDAYS[days.rem_euclid(7) as usize].as_bytes())?,
            Some(b'b') => output.write_all(MONTHS[month as usize - 1].as_bytes())?,
            Some(b'Z') => output.write_all(b"UTC")?,
            Some(b'%') => output.write_all(b"%")?,
            other => unreachable!("strftime pattern not checked: %{other:?}"),
        }
    }
    output.write_all(rest.as_bytes())
}

/// Parses an RFC 3339 date (`2026-01-01`, midnight UTC) or date-time
/// (`2026-01-01T10:00:00Z`, `...T10:00:00.250+02:00`; `T` or a space) into ms since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let number = |part: &str| -> Option<u32> {
        (!part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let date = text.get(..10)?;
    let year = number(date.get(..4)?)?;
    let month = number(date.get(5..7)?)?;
    let day = number(date.get(8..10)?)?;
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(i64::from(year), month, day) * 86_400_000;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let hour = number(rest.get(..2)?)?;
    let minute = number(rest.get(3..5)?)?;
    let second = number(rest.get(6..8)?)?;
    if rest.as_bytes()[2] != b':' || rest.as_bytes()[5] != b':' {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000;
    let mut rest = &rest[8..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let millis: String = fraction[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        ms += i64::from(number(&millis)?);
        rest = &fraction[digits..];
    }
    match rest {
        "Z" | "z" => Some(ms),
        offset if offset.len() == 6 && (offset.starts_with('+') || offset.starts_with('-')) => {
            let hours = number(&offset[1..3])?;
            let minutes = number(&offset[4..6])?;
            if offset.as_bytes()[3] != b':' {
                return None;
            }
            let shift = (i64::from(hours) * 60 + i64::from(minutes)) * 60_000;
            Some(if offset.starts_with('+') {
                ms - shift
            } else {
                ms + shift
            })
        }
        _ => None,
    }
}

/// Parses a duration such as `90s`, `15m`, `1h`, `2d`, `500ms` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let amount: i64 = text[..digits].parse().ok()?;
    let unit_ms = match &text[digits..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    amount.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut output = Vec::new();
        write(&mut output).unwrap();
        String::from_utf8(output).unwrap()
    }

    #[test]
    fn hex_and_base64_match_their_rfc_examples() {
        assert_eq!(text(|o| write_hex(o, b"\x00\xffAz")), "00ff417a");
        // RFC 4648 section 10.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(text(|o| write_base64(o, input.as_bytes())), expected);
        }
        let long = vec![0xabu8; 1000];
        let encoded = text(|o| write_base64(o, &long));
        assert_eq!(encoded.len(), 1336);
        assert!(encoded.ends_with("qw=="), "{encoded}");
    }

    #[test]
    fn strftime_patterns_print_utc_fields_and_refuse_unknown_directives() {
        // 2026-03-01T07:08:09.045Z, a Sunday, day 60 of the year.
        let timestamp_ms = 1_772_348_889_045;
        let formatted =
            |pattern: &str| text(|output| write_strftime(output, pattern, timestamp_ms));
        assert_eq!(formatted("%Y-%m-%d %H:%M:%S.%L"), "2026-03-01 07:08:09.045");
        assert_eq!(formatted("%F %T %Z"), "2026-03-01 07:08:09 UTC");
        assert_eq!(
            formatted("%a %b %j %s 100%%"),
            "Sun Mar 060 1772348889 100%"
        );
        assert_eq!(formatted("no directives"), "no directives");
        assert!(check_strftime("%F %T.%L"));
        assert!(!check_strftime("%Q"));
        assert!(!check_strftime("ends with %"));
    }

    #[test]
    fn rfc3339_round_trips_and_reads_offsets_dates_and_fractions() {
        assert_eq!(text(|o| write_rfc3339(o, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            text(|o| write_rfc3339(o, 1_767_225_600_123)),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(text(|o| write_rfc3339(o, -1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339("2026-01-01"), Some(1_767_225_600_000));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00.123Z"),
            Some(1_767_225_600_123)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T02:00:00+02:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29 12:30:05.5Z"),
            Some(1_709_209_805_500)
        );
        for bad in [
            "2026-13-01",
            "2026-01-01T25:00:00Z",
            "yesterday",
            "2026-01-01T00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("h"), None);
    }
}

//! `spate consume --offset SPEC`: where each partition starts and, for a range, where it stops,
//! in kcat's and rpk's terms.
//!
//! `start`, `end`, `N` (absolute), `-N` (N before each partition's end), `+N` (N after each
//! partition's start), `@TIME` (ms since the epoch, an RFC 3339 date or date-time, or `@-1h`
//! before now), and a range `FROM:TO` with TO one of `end` (the end as of the start), `N`
//! (up to, not including, offset N), `+N` (N records) or `@TIME`. Parsing is pure; turning a spec
//! into per-partition offsets needs the partitions' bounds, which `consume` asks the broker for.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::encoding::{parse_duration_ms, parse_rfc3339};

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Start,
    End,
    /// This offset, where the partition has it.
    Absolute(u64),
    /// This many records before the end.
    FromEnd(u64),
    /// This many records after the start.
    FromStart(u64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// The consumer group's committed offset (`-o stored`, with `--group` only; `consume`
    /// refuses it without one, so no plan ever resolves it).
    Stored,
}

/// Where a partition stops (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The end as of the start.
    End,
    /// Before this offset.
    Absolute(u64),
    /// After this many records from the start position.
    Count(u64),
    /// Before the first record at or after this time, as of the start.
    Time(i64),
}

/// A parsed `--offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetSpec {
    pub from: Position,
    pub to: Option<Stop>,
}

/// A partition's bounds as of now: its log start and its end (the next offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub log_start: u64,
    pub end: u64,
}

/// What one partition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// From `start`, up to (not including) `stop` if there is one.
    Read { start: u64, stop: Option<u64> },
    /// The absolute start offset is past this partition's end.
    PastEnd,
}

impl Plan {
    /// `position` resolved against `bounds`; `time_offset` answers a time lookup (the end when
    /// no record is that late).
    pub fn resolve(spec: &OffsetSpec, bounds: Bounds, start_at_time: Option<u64>) -> Self {
        let Bounds { log_start, end } = bounds;
        let start = match spec.from {
            Position::Start => log_start,
            Position::End => end,
            Position::Absolute(offset) if offset > end => return Self::PastEnd,
            Position::Absolute(offset) => offset.max(log_start),
            Position::FromEnd(count) => end.saturating_sub(count).max(log_start),
            Position::FromStart(count) => log_start.saturating_add(count).min(end),
            Position::Time(_) => start_at_time.unwrap_or(end).max(log_start),
            Position::Stored => unreachable!("-o stored is refused without --group"),
        };
        Self::Read { start, stop: None }
    }

    /// This plan with `stop` applied; `stop_at_time` answers a time lookup.
    pub fn with_stop(self, stop: Stop, end: u64, stop_at_time: Option<u64>) -> Self {
        let Self::Read { start, .. } = self else {
            return self;
        };
        let stop = match stop {
            Stop::End => end,
            Stop::Absolute(offset) => offset,
            Stop::Count(count) => start.saturating_add(count),
            Stop::Time(_) => stop_at_time.unwrap_or(end),
        };
        Self::Read {
            start,
            stop: Some(stop.max(start)),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Parses `@TIME`'s TIME: ms since the epoch, an RFC 3339 date or date-time, or `-DURATION`
/// before now.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Some(ago) = text.strip_prefix('-') {
        return Some(now_ms() - parse_duration_ms(ago)?);
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse().ok();
    }
    parse_rfc3339(text)
}

fn parse_count(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn parse_position(text: &str) -> Option<Position> {
    Some(match text {
        "" | "start" | "beginning" | "earliest" | "oldest" => Position::Start,
        "end" | "latest" | "newest" => Position::End,
        _ => {
            if let Some(time) = text.strip_prefix('@') {
                Position::Time(parse_time(time)?)
            } else if let Some(count) = text.strip_prefix('-') {
                Position::FromEnd(parse_count(count)?)
            } else if let Some(count) = text.strip_prefix('+') {
                Position::FromStart(parse_count(count)?)
            } else {
                Position::Absolute(parse_count(text)?)
            }
        }
    })
}

fn parse_stop(text: &str) -> Option<Stop> {
    Some(match text {
        "end" | "latest" | "newest" => Stop::End,
        _ => {
            if let Some(time) = text.strip_prefix('@') {
                Stop::Time(parse_time(time)?)
            } else if let Some(count) = text.strip_prefix('+') {
                Stop::Count(parse_count(count)?)
            } else {
                Stop::Absolute(parse_count(text)?)
            }
        }
    })
}

/// Parses an `--offset` for clap.
pub fn parse_offset_spec(text: &str) -> Result<OffsetSpec, String> {
    // A group's committed offsets are a start only: a range from them has no meaning to kcat.
    if text == "stored" {
        return Ok(OffsetSpec {
            from: Position::Stored,
            to: None,
        });
    }
    if let Some(from) = parse_position(text).filter(|_| !text.is_empty()) {
        return Ok(OffsetSpec { from, to: None });
    }
    // Times hold colons too: the range split is the last colon that leaves two valid halves.
    for (at, _) in text.rmatch_indices(':') {
        if let (Some(from), Some(to)) = (parse_position(&text[..at]), parse_stop(&text[at + 1..])) {
            return Ok(OffsetSpec { from, to: Some(to) });
        }
    }
    Err(
        "expected start, end, stored, N, -N, +N, @TIME (ms, RFC 3339 or -1h) or FROM:TO \
         (TO: end, N, +N or @TIME)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(from: Position, to: Option<Stop>) -> OffsetSpec {
        OffsetSpec { from, to }
    }

    #[test]
    fn offset_specs_read_as_kcat_and_rpk_write_them() {
        let cases = [
            ("start", spec(Position::Start, None)),
            ("end", spec(Position::End, None)),
            ("stored", spec(Position::Stored, None)),
            ("42", spec(Position::Absolute(42), None)),
            ("-10", spec(Position::FromEnd(10), None)),
            ("+3", spec(Position::FromStart(3), None)),
            (
                "@1767225600000",
                spec(Position::Time(1_767_225_600_000), None),
            ),
            ("@2026-01-01", spec(Position::Time(1_767_225_600_000), None)),
            (
                "@2026-01-01T00:00:00Z",
                spec(Position::Time(1_767_225_600_000), None),
            ),
            ("start:end", spec(Position::Start, Some(Stop::End))),
            (":end", spec(Position::Start, Some(Stop::End))),
            (
                "5:10",
                spec(Position::Absolute(5), Some(Stop::Absolute(10))),
            ),
            ("-10:+5", spec(Position::FromEnd(10), Some(Stop::Count(5)))),
            (
                "@2026-01-01T00:00:00Z:@2026-01-02",
                spec(
                    Position::Time(1_767_225_600_000),
                    Some(Stop::Time(1_767_312_000_000)),
                ),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_offset_spec(text), Ok(expected), "{text}");
        }
        for bad in [
            "stored:end",
            "",
            "soon",
            "-x",
            "5:",
            "5:-3",
            "@yesterday",
            "1:2:3",
        ] {
            assert!(parse_offset_spec(bad).is_err(), "{bad}");
        }
        let Ok(OffsetSpec {
            from: Position::Time(hour_ago),
            ..
        }) = parse_offset_spec("@-1h")
        else {
            panic!("@-1h is a time");
        };
        assert!((now_ms() - hour_ago - 3_600_000).abs() < 60_000);
    }

    #[test]
    fn plans_clamp_to_each_partitions_log_and_skip_partitions_too_short() {
        let bounds = Bounds {
            log_start: 10,
            end: 100,
        };
        let read = |start, stop| Plan::Read { start, stop };
        let start_of = |from| Plan::resolve(&spec(from, None), bounds, None);
        assert_eq!(start_of(Position::Start), read(10, None));
        assert_eq!(start_of(Position::End), read(100, None));
        assert_eq!(start_of(Position::Absolute(5)), read(10, None));
        assert_eq!(start_of(Position::Absolute(100)), read(100, None));
        assert_eq!(start_of(Position::Absolute(101)), Plan::PastEnd);
        assert_eq!(start_of(Position::FromEnd(30)), read(70, None));
        assert_eq!(start_of(Position::FromEnd(300)), read(10, None));
        assert_eq!(start_of(Position::FromStart(5)), read(15, None));
        assert_eq!(start_of(Position::FromStart(500)), read(100, None));
        assert_eq!(
            Plan::resolve(&spec(Position::Time(7), None), bounds, Some(42)),
            read(42, None)
        );
        assert_eq!(
            Plan::resolve(&spec(Position::Time(7), None), bounds, None),
            read(100, None)
        );
        assert_eq!(
            read(70, None).with_stop(Stop::Count(5), 100, None),
            read(70, Some(75))
        );
        assert_eq!(
            read(70, None).with_stop(Stop::Absolute(50), 100, None),
            read(70, Some(70))
        );
        assert_eq!(
            read(70, None).with_stop(Stop::End, 100, None),
            read(70, Some(100))
        );
        assert_eq!(Plan::PastEnd.with_stop(Stop::End, 100, None), Plan::PastEnd);
    }
}

//! Reading a status time in any of the forms gateways use, and the zone it is read in.

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc,
};
use std::{fmt, str::FromStr};

/// How far in the future a status time may lie before it is refused: clocks drift, but a
/// receipt from tomorrow is a wrong zone or a wrong field.
pub const MAX_FUTURE: Duration = Duration::days(1);

/// The zone in which a gateway's times without an explicit offset are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayZone {
    /// A fixed offset from UTC, `UTC` itself included.
    Fixed(FixedOffset),
    /// A named IANA zone such as `Europe/Nicosia`, with its daylight-saving rules.
    Named(chrono_tz::Tz),
}

impl Default for GatewayZone {
    fn default() -> Self {
        GatewayZone::Fixed(Utc.fix())
    }
}

impl FromStr for GatewayZone {
    type Err = String;

    /// Accepts `UTC`, `Z`, an offset such as `+03:00`, `-0530` or `+3`, or an IANA name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
            return Ok(GatewayZone::default());
        }
        if let Some(offset) = parse_offset(text) {
            return Ok(GatewayZone::Fixed(offset));
        }
        text.parse::<chrono_tz::Tz>()
            .map(GatewayZone::Named)
            .map_err(|_| {
                format!("`{text}` is neither UTC, an offset like +03:00, nor an IANA zone name")
            })
    }
}

impl fmt::Display for GatewayZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayZone::Fixed(offset) => write!(f, "{offset}"),
            GatewayZone::Named(tz) => write!(f, "{}", tz.name()),
        }
    }
}

impl GatewayZone {
    /// Places a wall-clock time in this zone. In a daylight-saving overlap the earlier
    /// instant is taken; a time that does not exist (the hour skipped in spring) is refused.
    fn resolve(&self, local: NaiveDateTime) -> Result<DateTime<Utc>, String> {
        let resolved = match self {
            GatewayZone::Fixed(offset) => offset.from_local_datetime(&local).map(|t| t.to_utc()),
            GatewayZone::Named(tz) => tz.from_local_datetime(&local).map(|t| t.to_utc()),
        };
        match resolved {
            LocalResult::Single(t) => Ok(t),
            LocalResult::Ambiguous(earlier, _) => Ok(earlier),
            LocalResult::None => Err(format!("{local} does not exist in the gateway zone {self}")),
        }
    }
}

/// Reads a status time and returns it in UTC.
///
/// Accepted forms:
/// - `YYYY-MM-DD HH:MM[:SS[.fraction]]`, with a space or `T`, optionally followed by `Z`,
///   `UTC` or an offset (`+02:00`, `+0200`, `+02`); an offset whose `+` was decoded to a
///   space by form encoding (`... 10:00:00 02:00`) is read as positive;
/// - Unix seconds (10 digits, optionally with a fraction) or milliseconds (13 digits);
/// - SMPP `YYMMDDhhmm` (10 digits) and `YYMMDDhhmmss` (12 digits), and `YYYYMMDDhhmmss`.
///
/// Ten digits are ambiguous between Unix seconds and SMPP `YYMMDDhhmm`. They are read as
/// Unix seconds unless that instant lies more than a day ahead of `now`, in which case they
/// are read as SMPP. SMPP times of 2017 and earlier are therefore misread as Unix seconds,
/// a limit accepted because such receipts are years stale.
///
/// Times without a zone are read in `zone`. Times before 2000 or more than
/// [`MAX_FUTURE`] ahead of `now` are refused.
pub fn parse_status_time(
    raw: &str,
    zone: &GatewayZone,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }

    let parsed = if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        parse_numeric(text, zone, now)?
    } else {
        parse_calendar(text, zone)?
    };

    check_bounds(parsed, now)
}

fn check_bounds(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    if t < earliest {
        return Err(format!("{} is before the year 2000", t.to_rfc3339()));
    }
    if t > now + MAX_FUTURE {
        return Err(format!(
            "{} is more than a day in the future",
            t.to_rfc3339()
        ));
    }
    Ok(t)
}

fn parse_numeric(
    text: &str,
    zone: &GatewayZone,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    if let Some((whole, fraction)) = text.split_once('.') {
        return unix_seconds_with_fraction(whole, fraction);
    }

    match text.len() {
        13 => {
            let millis: i64 = text.parse().map_err(|_| "is not a number".to_string())?;
            DateTime::from_timestamp_millis(millis)
                .ok_or_else(|| "is out of range as Unix milliseconds".to_string())
        }
        12 => zone.resolve(smpp(text, true)?),
        14 => zone.resolve(compact_with_century(text)?),
        10 => {
            let seconds: i64 = text.parse().map_err(|_| "is not a number".to_string())?;
            match DateTime::from_timestamp(seconds, 0) {
                Some(t) if t <= now + MAX_FUTURE => Ok(t),
                _ => zone.resolve(smpp(text, false)?),
            }
        }
        8 | 9 => {
            let seconds: i64 = text.parse().map_err(|_| "is not a number".to_string())?;
            DateTime::from_timestamp(seconds, 0)
                .ok_or_else(|| "is out of range as Unix seconds".to_string())
        }
        n => Err(format!(
            "has {n} digits; expected Unix seconds (10), milliseconds (13), \
             or SMPP YYMMDDhhmm (10) / YYMMDDhhmmss (12)"
        )),
    }
}

fn unix_seconds_with_fraction(whole: &str, fraction: &str) -> Result<DateTime<Utc>, String> {
    let valid = !whole.is_empty()
        && whole.len() <= 11
        && !fraction.is_empty()
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err("is not Unix seconds with a fraction".into());
    }

    let seconds: i64 = whole.parse().map_err(|_| "is not a number".to_string())?;
    let nanos: u32 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| "has an unreadable fraction".to_string())?;
    DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| "is out of range as Unix seconds".to_string())
}

/// Reads SMPP `YYMMDDhhmm[ss]`; the two-digit year is taken in 2000-2099.
fn smpp(text: &str, with_seconds: bool) -> Result<NaiveDateTime, String> {
    let n = |i: usize| -> u32 { text[i..i + 2].parse().unwrap_or(u32::MAX) };
    let seconds = if with_seconds { n(10) } else { 0 };
    calendar(2000 + n(0) as i32, n(2), n(4), n(6), n(8), seconds, 0)
        .ok_or_else(|| format!("`{text}` is not a valid SMPP date YYMMDDhhmm[ss]"))
}

fn compact_with_century(text: &str) -> Result<NaiveDateTime, String> {
    let n = |i: usize| -> u32 { text[i..i + 2].parse().unwrap_or(u32::MAX) };
    let year: i32 = text[..4].parse().unwrap_or(-1);
    calendar(year, n(4), n(6), n(8), n(10), n(12), 0)
        .ok_or_else(|| format!("`{text}` is not a valid date YYYYMMDDhhmmss"))
}

fn calendar(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time))
}

/// Reads `YYYY-MM-DD[ T]HH:MM[:SS[.f]][zone]`.
fn parse_calendar(text: &str, zone: &GatewayZone) -> Result<DateTime<Utc>, String> {
    let expected = "is not a date and time like 2026-12-03 14:05:00, \
                    Unix seconds or an SMPP date";
    if text.len() < 16 || !text.is_char_boundary(10) || !text.is_char_boundary(11) {
        return Err(expected.into());
    }
    let (date, rest) = (&text[..10], &text[11..]);
    if !matches!(text.as_bytes()[10], b' ' | b'T' | b't') {
        return Err(expected.into());
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| expected.to_string())?;

    let clock_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b':' || *b == b'.')
        .count();
    let (clock, suffix) = rest.split_at(clock_len);
    let time = parse_clock(clock).ok_or_else(|| expected.to_string())?;
    let local = date.and_time(time);

    let suffix = suffix.trim_start_matches(' ');
    if suffix.is_empty() {
        return zone.resolve(local);
    }
    let offset = if suffix.eq_ignore_ascii_case("z") || suffix.eq_ignore_ascii_case("utc") {
        Some(Utc.fix())
    } else {
        parse_offset(suffix).or_else(|| parse_offset(&format!("+{suffix}")))
    };
    let offset = offset.ok_or_else(|| format!("has an unreadable zone `{suffix}`"))?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.to_utc())
        .ok_or_else(|| expected.to_string())
}

fn parse_clock(clock: &str) -> Option<NaiveTime> {
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let two = |s: &str| -> Option<u32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (hour, minute, second) = match parts.as_slice() {
        [h, m] if fraction.is_none() => (two(h)?, two(m)?, 0),
        [h, m, s] => (two(h)?, two(m)?, two(s)?),
        _ => return None,
    };
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<9}").parse().ok()?
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
}

/// Reads `+HH:MM`, `+HHMM` or `+HH` (and the same with `-`).
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || text[1..].matches(':').count() > 1 {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 18 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
    }

    fn utc(text: &str) -> Result<String, String> {
        parse_status_time(text, &GatewayZone::default(), now()).map(|t| t.to_rfc3339())
    }

    #[test]
    fn calendar_forms_with_and_without_zone_are_read() {
        let expected = "2026-12-03T10:00:00+00:00";
        for text in [
            "2026-12-03 10:00:00",
            "2026-12-03T10:00:00",
            "2026-12-03T10:00:00Z",
            "2026-12-03 10:00",
            "2026-12-03T12:00:00+02:00",
            "2026-12-03T12:00:00+0200",
            "2026-12-03 12:00:00 02:00",
            "2026-12-03T07:30:00-02:30",
        ] {
            assert_eq!(utc(text).as_deref(), Ok(expected), "{text}");
        }
        assert_eq!(
            utc("2026-12-03 10:00:00.250Z").as_deref(),
            Ok("2026-12-03T10:00:00.250+00:00")
        );
    }

    #[test]
    fn numeric_forms_are_read() {
        assert_eq!(
            utc("1796292000").as_deref(),
            Ok("2026-12-03T10:00:00+00:00")
        );
        assert_eq!(
            utc("1796292000500").as_deref(),
            Ok("2026-12-03T10:00:00.500+00:00")
        );
        assert_eq!(
            utc("2612031000").as_deref(),
            Ok("2026-12-03T10:00:00+00:00")
        );
        assert_eq!(
            utc("261203100005").as_deref(),
            Ok("2026-12-03T10:00:05+00:00")
        );
        assert_eq!(
            utc("20261203100005").as_deref(),
            Ok("2026-12-03T10:00:05+00:00")
        );
    }

    #[test]
    fn zoneless_times_are_read_in_the_gateway_zone() {
        let zone: GatewayZone = "Europe/Nicosia".parse().unwrap();
        let t = parse_status_time("2026-12-03 12:00:00", &zone, now()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-03T10:00:00+00:00");

        let zone: GatewayZone = "+05:30".parse().unwrap();
        let t = parse_status_time("2612031530", &zone, now()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-03T10:00:00+00:00");
    }

    #[test]
    fn times_out_of_bounds_or_malformed_are_refused() {
        for text in [
            "2026-12-05 10:00:00",
            "1999-12-31 23:59:59Z",
            "2026-13-03 10:00:00",
            "2026-12-03",
            "yesterday",
            "12345",
            "2026-12-03 10:00:00 Mars",
            "2612321000",
        ] {
            assert!(utc(text).is_err(), "{text} should be refused");
        }
    }
}

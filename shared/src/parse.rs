//! Turning the fields of a gateway request into a validated [`Report`].
//!
//! A request arrives as `(key, value)` pairs from two parts, the query string and the body.
//! Keys are matched to report fields by alias after folding (case, `_`, `-`, space and `/`
//! are ignored). Within one part, two keys for the same field must agree; between parts,
//! the body wins. Every problem is collected, so a 400 names every bad field at once.

use crate::{
    report::{MsgId, PhoneNumber, RawFields, Report, SenderId, StatusAt, StatusAtSource},
    rules::Rules,
    time::{parse_status_time, GatewayZone},
};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use std::{collections::BTreeMap, fmt};

/// A report field, named as the issue and the 400 bodies name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// The message id.
    MsgId,
    /// The recipient number.
    Recipient,
    /// The sender id.
    Sender,
    /// The status word.
    Status,
    /// The status time.
    StatusAt,
    /// The optional error code.
    ErrorCode,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::MsgId,
        Field::Recipient,
        Field::Sender,
        Field::Status,
        Field::StatusAt,
        Field::ErrorCode,
    ];

    /// The field's name in error bodies: the gateway's own key names.
    pub fn name(self) -> &'static str {
        match self {
            Field::MsgId => "msgid",
            Field::Recipient => "mno",
            Field::Sender => "sid",
            Field::Status => "status",
            Field::StatusAt => "datetime",
            Field::ErrorCode => "err",
        }
    }

    /// The folded keys accepted for this field.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::MsgId => &["msgid", "messageid", "id", "smsid"],
            Field::Recipient => &["mno", "msisdn", "to", "mobile", "recipient", "destination"],
            Field::Sender => &["sid", "from", "sender", "senderid", "source"],
            Field::Status => &["status", "stat", "dlrstatus", "response", "messagestatus"],
            Field::StatusAt => &[
                "datetime",
                "date",
                "time",
                "dt",
                "timestamp",
                "statusdate",
                "donedate",
            ],
            Field::ErrorCode => &["err", "error", "errorcode"],
        }
    }

    /// The field whose error name is `name`.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field a key already folded by [`fold_key`] stands for by the built-in aliases.
    pub fn for_folded(folded: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.aliases().contains(&folded))
    }
}

/// Folds a key for alias matching: lowercase, without `_`, `-`, space and `/`.
pub fn fold_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '/'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Longest value accepted in a known field; longer values are refused, not cut.
pub const FIELD_VALUE_MAX_LEN: usize = 256;

/// One problem with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's name, as in [`Field::name`].
    pub field: &'static str,
    /// What is wrong, in words a gateway operator can act on.
    pub reason: String,
}

/// Every problem found in a request that is not a valid report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidReport {
    /// The problems, one per field, in field order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.reason))
            .collect();
        write!(f, "invalid report: {}", parts.join("; "))
    }
}

impl std::error::Error for InvalidReport {}

/// What parsing needs besides the fields: the zone for zoneless times, the receive time
/// and any aliases taught at run time.
///
/// Times are kept to the microsecond, the precision PostgreSQL stores, so a report reads
/// back exactly as it was written.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext<'a> {
    /// The zone in which times without an offset are read.
    pub zone: GatewayZone,
    /// When the request was received; it bounds future times and stands in for a
    /// missing status time.
    pub received_at: DateTime<Utc>,
    /// Aliases taught at run time.
    pub rules: &'a Rules,
}

/// Validates the pairs of a request's query string and body into a [`Report`].
pub fn parse_report(
    query: &[(String, String)],
    body: &[(String, String)],
    ctx: &ParseContext,
) -> Result<Report, InvalidReport> {
    let raw = RawFields::from_pairs(query, body);
    parse_raw(raw, ctx)
}

/// Validates a report from fields already recorded as [`RawFields`]; used again when
/// quarantined requests are replayed under newer rules.
pub fn parse_raw(raw: RawFields, ctx: &ParseContext) -> Result<Report, InvalidReport> {
    let query = classify(&raw.query, ctx.rules);
    let body = classify(&raw.body, ctx.rules);
    let mut errors = Vec::new();

    let mut values: Vec<(Field, Option<String>)> = Vec::new();
    for field in Field::ALL {
        let from_body = pick(field, &body);
        let from_query = pick(field, &query);
        let chosen = match (from_body, from_query) {
            (Ok(Some(v)), _) => Some(v),
            (Ok(None), Ok(q)) => q,
            (Err(why), _) | (Ok(None), Err(why)) => {
                errors.push(FieldError {
                    field: field.name(),
                    reason: why,
                });
                continue;
            }
        };
        values.push((field, chosen));
    }
    let value = |field: Field| -> Option<&str> {
        values
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, v)| v.as_deref())
    };

    let msg_id = check(&mut errors, Field::MsgId, value(Field::MsgId), MsgId::parse);
    let recipient = check(
        &mut errors,
        Field::Recipient,
        value(Field::Recipient),
        PhoneNumber::parse,
    );
    let sender = check(
        &mut errors,
        Field::Sender,
        value(Field::Sender),
        SenderId::parse,
    );
    let status = check(&mut errors, Field::Status, value(Field::Status), |v| {
        ctx.rules.status_for(v).ok_or_else(|| {
            format!(
                "`{}` is not a known status; expected delivered, undelivered, rejected, \
                 failed, expired or an SMPP receipt word",
                clip(v)
            )
        })
    });
    let status_at = read_status_at(&mut errors, value(Field::StatusAt), ctx);
    let error_code = value(Field::ErrorCode)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);

    match (msg_id, recipient, sender, status, status_at) {
        (Some(msg_id), Some(recipient), Some(sender), Some(status), Some(status_at))
            if errors.is_empty() =>
        {
            Ok(Report {
                msg_id,
                recipient,
                sender,
                status,
                status_raw: value(Field::Status).unwrap_or_default().trim().to_owned(),
                status_at,
                received_at: ctx.received_at.trunc_subsecs(6),
                error_code,
                raw,
            })
        }
        _ => {
            errors.sort_by_key(|e| Field::ALL.iter().position(|f| f.name() == e.field));
            Err(InvalidReport { errors })
        }
    }
}

/// A key and value of one part, with the field the key stands for.
type Classified<'a> = (Option<Field>, &'a str, &'a str);

/// Works out once per pair which field its key stands for, so that looking up each of
/// the six fields does not fold every key again.
fn classify<'a>(part: &'a BTreeMap<String, Vec<String>>, rules: &Rules) -> Vec<Classified<'a>> {
    part.iter()
        .flat_map(|(k, vs)| {
            let field = rules.field_for(k);
            vs.iter().map(move |v| (field, k.as_str(), v.as_str()))
        })
        .collect()
}

/// Finds the one value a part gives for a field. Two keys that disagree are an error,
/// except a `date` and a `time` key that together make one date and time.
fn pick(field: Field, pairs: &[Classified<'_>]) -> Result<Option<String>, String> {
    let found: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(f, _, _)| *f == Some(field))
        .map(|(_, k, v)| (*k, *v))
        .collect();

    let Some((_, first)) = found.first() else {
        return Ok(None);
    };
    if let Some((_, long)) = found.iter().find(|(_, v)| v.len() > FIELD_VALUE_MAX_LEN) {
        return Err(format!(
            "is {} bytes long; at most {FIELD_VALUE_MAX_LEN} are accepted",
            long.len()
        ));
    }

    let mut distinct: Vec<&str> = found.iter().map(|(_, v)| v.trim()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    match distinct.as_slice() {
        [_] => Ok(Some((*first).to_owned())),
        [a, b] if field == Field::StatusAt => join_date_and_time(a, b)
            .map(Some)
            .ok_or_else(|| conflict(&found)),
        _ => Err(conflict(&found)),
    }
}

fn conflict(found: &[(&str, &str)]) -> String {
    let keys: Vec<String> = found
        .iter()
        .map(|(k, _)| format!("`{}`", clip(k)))
        .collect();
    format!(
        "is given more than once with different values (keys {})",
        keys.join(", ")
    )
}

/// Joins `2026-12-03` and `10:00:00`, in either order, into `2026-12-03 10:00:00`.
fn join_date_and_time(a: &str, b: &str) -> Option<String> {
    let is_date = |s: &str| s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let is_clock = |s: &str| (5..=18).contains(&s.len()) && s.as_bytes().get(2) == Some(&b':');
    match (is_date(a), is_clock(b), is_date(b), is_clock(a)) {
        (true, true, _, _) => Some(format!("{a} {b}")),
        (_, _, true, true) => Some(format!("{b} {a}")),
        _ => None,
    }
}

fn check<T>(
    errors: &mut Vec<FieldError>,
    field: Field,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let outcome = match value {
        None => Err(missing(field)),
        Some(v) => parse(v),
    };
    outcome
        .map_err(|reason| {
            if !errors.iter().any(|e| e.field == field.name()) {
                errors.push(FieldError {
                    field: field.name(),
                    reason,
                });
            }
        })
        .ok()
}

fn missing(field: Field) -> String {
    format!(
        "is missing; send it as one of: {}",
        field.aliases().join(", ")
    )
}

fn read_status_at(
    errors: &mut Vec<FieldError>,
    value: Option<&str>,
    ctx: &ParseContext,
) -> Option<StatusAt> {
    let Some(text) = value.filter(|v| !v.trim().is_empty()) else {
        return Some(StatusAt {
            at: ctx.received_at.trunc_subsecs(6),
            source: StatusAtSource::Received,
            raw: None,
        });
    };
    match parse_status_time(text, &ctx.zone, ctx.received_at) {
        Ok(at) => Some(StatusAt {
            at: at.trunc_subsecs(6),
            source: StatusAtSource::Gateway,
            raw: Some(text.to_owned()),
        }),
        Err(why) => {
            if !errors.iter().any(|e| e.field == Field::StatusAt.name()) {
                errors.push(FieldError {
                    field: Field::StatusAt.name(),
                    reason: format!("`{}` {why}", clip(text)),
                });
            }
            None
        }
    }
}

/// Shortens text quoted back in an error so a hostile value cannot bloat the response.
fn clip(text: &str) -> String {
    const MAX: usize = 40;
    let printable: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if printable.chars().count() <= MAX {
        printable
    } else {
        let head: String = printable.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use chrono::TimeZone;

    static RULES: std::sync::LazyLock<Rules> = std::sync::LazyLock::new(Rules::default);

    fn ctx() -> ParseContext<'static> {
        ParseContext {
            rules: &RULES,
            zone: GatewayZone::default(),
            received_at: Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap(),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn aliases_in_any_spelling_fill_every_field() {
        let body = pairs(&[
            ("Message-ID", "abc-1"),
            ("MSISDN", "+357 99-123456"),
            ("Sender_ID", "ACME"),
            ("DLR Status", "DELIVRD"),
            ("date/time", "2026-12-03 10:00:00"),
            ("Error_Code", "000"),
            ("campaign", "winter"),
        ]);

        let report = parse_report(&[], &body, &ctx()).unwrap();

        assert_eq!(report.msg_id.as_str(), "abc-1");
        assert_eq!(report.recipient.as_str(), "35799123456");
        assert_eq!(report.sender.as_str(), "ACME");
        assert_eq!(report.status, Status::Delivered);
        assert_eq!(report.status_raw, "DELIVRD");
        assert_eq!(report.status_at.source, StatusAtSource::Gateway);
        assert_eq!(report.error_code.as_deref(), Some("000"));
        assert_eq!(report.raw.body["campaign"], vec!["winter".to_string()]);
    }

    #[test]
    fn body_wins_over_query_and_missing_time_uses_receive_time() {
        let query = pairs(&[("msgid", "q"), ("mno", "35799123456"), ("sid", "A")]);
        let body = pairs(&[("msgid", "b"), ("status", "expired")]);

        let report = parse_report(&query, &body, &ctx()).unwrap();

        assert_eq!(report.msg_id.as_str(), "b");
        assert_eq!(report.status_at.source, StatusAtSource::Received);
        assert_eq!(report.status_at.at, ctx().received_at);
    }

    #[test]
    fn separate_date_and_time_keys_are_joined() {
        let body = pairs(&[
            ("id", "1"),
            ("to", "35799123456"),
            ("from", "A"),
            ("stat", "UNDELIV"),
            ("time", "09:30:00"),
            ("date", "2026-12-03"),
        ]);

        let report = parse_report(&[], &body, &ctx()).unwrap();

        assert_eq!(
            report.status_at.at.to_rfc3339(),
            "2026-12-03T09:30:00+00:00"
        );
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let body = pairs(&[
            ("msgid", "1"),
            ("id", "2"),
            ("mno", "12ab"),
            ("status", "lost"),
            ("datetime", "2030-01-01 00:00:00"),
        ]);

        let err = parse_report(&[], &body, &ctx()).unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field).collect();

        assert_eq!(fields, ["msgid", "mno", "sid", "status", "datetime"]);
        assert!(err.errors[2].reason.starts_with("is missing"));
    }
}

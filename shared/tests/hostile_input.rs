//! Property tests of the parser and the raw-field bounds against hostile input: random
//! text, control characters and NUL bytes, huge and repeated keys, and numbers and
//! times at and just past their bounds. Parsing must never panic, must refuse what is
//! out of bounds, and whatever it accepts must hold the report's invariants.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use shared::{
    bounds::{self, check_raw_fields},
    parse::{Field, FIELD_VALUE_MAX_LEN},
    parse_report, GatewayZone, ParseContext,
};

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
}

static RULES: std::sync::LazyLock<shared::Rules> = std::sync::LazyLock::new(Default::default);

fn ctx() -> ParseContext<'static> {
    ParseContext {
        rules: &RULES,
        zone: GatewayZone::default(),
        received_at: received_at(),
    }
}

fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A valid report's fields, to corrupt one at a time.
fn valid_fields() -> Vec<(String, String)> {
    owned(&[
        ("msgid", "m-1"),
        ("mno", "35799123456"),
        ("sid", "ACME"),
        ("status", "DELIVRD"),
        ("datetime", "2026-12-01 10:00:00"),
    ])
}

fn with(field: &str, value: &str) -> Vec<(String, String)> {
    let mut fields = valid_fields();
    fields.retain(|(k, _)| k != field);
    fields.push((field.to_owned(), value.to_owned()));
    fields
}

/// Keys a gateway or an attacker might send: every alias, in odd spellings, and noise.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "msgid",
            "Message-ID",
            "id",
            "mno",
            "MSISDN",
            "to",
            "sid",
            "from",
            "status",
            "DLR Status",
            "datetime",
            "date",
            "time",
            "err",
            "token",
            "",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[a-z]{60,80}",
    ]
}

/// Values with the characters and sizes that break naive parsers.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,20}",
        "[0-9 +-]{0,20}",
        "[\\x00-\\x1f\\x7f]{1,4}",
        "[a-z]{250,260}",
        "-?[0-9]{1,12}(\\.[0-9]{0,10})?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?([+-][0-9]{2}:?[0-9]{2}|Z)?",
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((key(), value()), 0..12)
}

/// Inserts `bad` at a character boundary of `text` chosen by `at`.
fn insert_at(text: &str, at: usize, bad: char) -> String {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let cut = boundaries[at % boundaries.len()];
    format!("{}{bad}{}", &text[..cut], &text[cut..])
}

proptest! {
    #[test]
    fn any_pairs_parse_without_panic_and_accepted_reports_hold_their_invariants(
        query in pairs(),
        mut body in pairs(),
        from_valid in any::<bool>(),
    ) {
        if from_valid {
            body.splice(0..0, valid_fields());
        }
        let Ok(report) = parse_report(&query, &body, &ctx()) else {
            return Ok(());
        };

        let msg_id = report.msg_id.as_str();
        prop_assert!(!msg_id.is_empty() && msg_id.chars().count() <= 128);
        prop_assert!(!msg_id.chars().any(char::is_control));
        let digits = report.recipient.as_str();
        prop_assert!((6..=15).contains(&digits.len()));
        prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(report.sender.as_str().chars().count() <= 32);
        let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        prop_assert!(report.status_at.at >= earliest);
        prop_assert!(report.status_at.at <= received_at() + chrono::Duration::days(1));
    }

    #[test]
    fn a_control_character_anywhere_breaks_the_bounds(
        mut query in pairs(),
        mut body in pairs(),
        in_body in any::<bool>(),
        in_key in any::<bool>(),
        index in any::<usize>(),
        at in any::<usize>(),
        bad in prop_oneof![Just('\0'), Just('\n'), Just('\u{7f}'), Just('\u{9b}'),
                           prop::char::range('\u{1}', '\u{1f}')],
    ) {
        let part = if in_body { &mut body } else { &mut query };
        if part.is_empty() {
            part.push(("k".into(), "v".into()));
        }
        let slot = index % part.len();
        let pair = &mut part[slot];
        if in_key {
            pair.0 = insert_at(&pair.0, at, bad);
        } else {
            pair.1 = insert_at(&pair.1, at, bad);
        }

        prop_assert!(check_raw_fields(&query, &body).is_err());
    }

    #[test]
    fn printable_fields_within_every_bound_pass_the_bounds(
        fields in prop::collection::vec(
            ("[a-zA-Z0-9_ -]{1,64}", "[^\\p{Cc}]{0,40}"),
            0..=bounds::MAX_FIELDS,
        ),
    ) {
        prop_assert_eq!(check_raw_fields(&fields, &[]), Ok(()));
    }

    #[test]
    fn too_many_fields_or_too_long_keys_and_values_break_the_bounds(
        extra in 1usize..50,
        key_len in (bounds::KEY_MAX_LEN + 1)..500,
        value_len in (bounds::VALUE_MAX_LEN + 1)..20_000,
    ) {
        let many: Vec<(String, String)> = (0..bounds::MAX_FIELDS + extra)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        let long_key = vec![("k".repeat(key_len), "v".to_owned())];
        let long_value = vec![("k".to_owned(), "v".repeat(value_len))];

        prop_assert!(check_raw_fields(&many, &[]).is_err());
        prop_assert!(check_raw_fields(&[], &long_key).is_err());
        prop_assert!(check_raw_fields(&long_value, &[]).is_err());
    }

    #[test]
    fn a_field_repeated_with_different_values_is_refused_by_name(
        field in prop::sample::select(vec![Field::MsgId, Field::Recipient, Field::Sender,
                                           Field::Status]),
        aliases in (0usize..8, 0usize..8),
        values in ("[a-z0-9]{1,10}", "[a-z0-9]{1,10}"),
    ) {
        prop_assume!(values.0 != values.1);
        let names = field.aliases();
        let mut body = valid_fields();
        body.push((names[aliases.0 % names.len()].to_owned(), values.0));
        body.push((names[aliases.1 % names.len()].to_owned(), values.1));

        let refused = parse_report(&[], &body, &ctx()).unwrap_err();

        prop_assert!(refused.errors.iter().any(|e| e.field == field.name()));
    }

    #[test]
    fn unix_times_are_accepted_exactly_from_2000_to_one_day_ahead(
        offset in -5_000i64..5_000,
        at_start in any::<bool>(),
    ) {
        let earliest = 946_684_800i64;
        let latest = received_at().timestamp() + 86_400;
        let seconds = if at_start { earliest + offset } else { latest + offset };

        let parsed = parse_report(&[], &with("datetime", &format!("{seconds}.0")), &ctx());

        let inside = (earliest..=latest).contains(&seconds);
        prop_assert_eq!(parsed.is_ok(), inside, "seconds {}", seconds);
    }

    #[test]
    fn calendar_parts_past_their_range_are_refused(
        month in 13u32..100,
        day in 32u32..100,
        hour in 24u32..100,
        minute in 60u32..100,
        which in 0usize..4,
    ) {
        let parts = [
            format!("2026-{month:02}-01 10:00:00"),
            format!("2026-11-{day:02} 10:00:00"),
            format!("2026-11-01 {hour:02}:00:00"),
            format!("2026-11-01 10:{minute:02}:00"),
        ];

        let parsed = parse_report(&[], &with("datetime", &parts[which]), &ctx());

        prop_assert!(parsed.is_err(), "{}", parts[which]);
    }

    #[test]
    fn lengths_are_accepted_up_to_their_bound_and_refused_past_it(
        digits in 1usize..20,
        id_len in 120usize..140,
        sender_len in 25usize..40,
        status_pad in 0usize..300,
    ) {
        let number = "9".repeat(digits);
        let id = "i".repeat(id_len);
        let sender = "s".repeat(sender_len);
        let status = format!("{}delivered", " ".repeat(status_pad));

        let by_number = parse_report(&[], &with("mno", &number), &ctx());
        let by_id = parse_report(&[], &with("msgid", &id), &ctx());
        let by_sender = parse_report(&[], &with("sid", &sender), &ctx());
        let by_status = parse_report(&[], &with("status", &status), &ctx());

        prop_assert_eq!(by_number.is_ok(), (6..=15).contains(&digits));
        prop_assert_eq!(by_id.is_ok(), id_len <= 128);
        prop_assert_eq!(by_sender.is_ok(), sender_len <= 32);
        prop_assert_eq!(by_status.is_ok(), status.len() <= FIELD_VALUE_MAX_LEN);
    }
}

//! Bounds on a request's raw fields, checked before they are parsed, kept or published.
//!
//! [`crate::parse::FIELD_VALUE_MAX_LEN`] bounds the values of the six report fields; the
//! checks here bound everything else a request can carry: how many pairs, how long a key
//! or any value is, how many bytes all of them add up to, and which characters they may
//! hold. A request past any bound is malformed as a whole, not a report with a bad field,
//! so it is refused before anything of it is stored: PostgreSQL cannot hold a NUL in
//! `text` or `jsonb`, and unbounded unknown keys would let one request bloat every row.

/// Most `(key, value)` pairs a request may carry, query string and body together.
pub const MAX_FIELDS: usize = 64;

/// Longest key accepted, in bytes.
pub const KEY_MAX_LEN: usize = 64;

/// Longest value accepted for any key, in bytes; report fields have the lower
/// [`crate::parse::FIELD_VALUE_MAX_LEN`].
pub const VALUE_MAX_LEN: usize = 2048;

/// Most bytes of keys and values together, query string and body included.
pub const RAW_MAX_BYTES: usize = 16 * 1024;

/// Checks the pairs of both parts against every bound, returning the first problem found
/// in words a gateway operator can act on. A hostile key is never quoted back; a value's
/// key is quoted only once it is known to be short and printable.
pub fn check_raw_fields(
    query: &[(String, String)],
    body: &[(String, String)],
) -> Result<(), String> {
    let count = query.len() + body.len();
    if count > MAX_FIELDS {
        return Err(format!(
            "the request carries {count} fields; at most {MAX_FIELDS} are accepted"
        ));
    }

    let mut total = 0usize;
    for (part, pairs) in [("query string", query), ("body", body)] {
        for (key, value) in pairs {
            check_pair(part, key, value)?;
            total += key.len() + value.len();
        }
    }

    if total > RAW_MAX_BYTES {
        return Err(format!(
            "the fields add up to {total} bytes; at most {RAW_MAX_BYTES} are accepted"
        ));
    }
    Ok(())
}

fn check_pair(part: &str, key: &str, value: &str) -> Result<(), String> {
    if key.len() > KEY_MAX_LEN {
        return Err(format!(
            "a key in the {part} is {} bytes long; at most {KEY_MAX_LEN} are accepted",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!(
            "a key in the {part} contains a control character (such as NUL)"
        ));
    }

    if value.len() > VALUE_MAX_LEN {
        return Err(format!(
            "the value of `{key}` in the {part} is {} bytes long; at most {VALUE_MAX_LEN} \
             are accepted",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the value of `{key}` in the {part} contains a control character (such as NUL)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ordinary_fields_pass() {
        let query = pairs(&[("msgid", "1"), ("campaign", "winter sale")]);
        let body = pairs(&[("status", "DELIVRD"), ("note", "ünïcödé €")]);

        assert_eq!(check_raw_fields(&query, &body), Ok(()));
    }

    #[test]
    fn nul_and_other_controls_are_refused_in_keys_and_values() {
        for (key, value) in [
            ("msgid", "a\0b"),
            ("ms\0gid", "a"),
            ("note", "line\nbreak"),
            ("note", "tab\there"),
            ("note", "c1 \u{85} control"),
            ("del\u{7f}", "x"),
        ] {
            let refused = check_raw_fields(&[], &pairs(&[(key, value)]));

            assert!(refused.is_err(), "{key:?}={value:?}");
        }
    }

    #[test]
    fn each_bound_is_inclusive_and_one_more_is_refused() {
        let at_key = "k".repeat(KEY_MAX_LEN);
        let at_value = "v".repeat(VALUE_MAX_LEN);
        let many: Vec<(String, String)> = (0..MAX_FIELDS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();

        assert!(check_raw_fields(&pairs(&[(&at_key, &at_value)]), &[]).is_ok());
        assert!(check_raw_fields(&many, &[]).is_ok());
        let long_key = format!("{at_key}k");
        assert!(check_raw_fields(&pairs(&[(&long_key, "v")]), &[]).is_err());
        let long_value = format!("{at_value}v");
        assert!(check_raw_fields(&[], &pairs(&[("k", &long_value)])).is_err());
        assert!(check_raw_fields(&many, &pairs(&[("one", "more")])).is_err());
    }

    #[test]
    fn the_total_size_is_bounded_across_both_parts() {
        let value = "v".repeat(VALUE_MAX_LEN);
        let half: Vec<(String, String)> =
            (0..5).map(|i| (format!("k{i}"), value.clone())).collect();

        let refused = check_raw_fields(&half, &half).unwrap_err();

        assert!(refused.contains("add up to"), "{refused}");
    }
}

//! Reading a request's query string into typed values, collecting every problem.
//!
//! A query may only hold the parameters its route documents, each at most once. Each
//! value is parsed where it is taken; the first problem of every parameter is kept, and
//! [`QueryParams::finish`] turns them all into one 400 that names each parameter.

use super::error::ApiError;
use actix_web::web;
use chrono::{DateTime, Utc};
use shared::FieldError;

/// The parameters of one request, taken one by one.
pub struct QueryParams {
    pairs: Vec<(&'static str, String)>,
    errors: Vec<FieldError>,
}

impl QueryParams {
    /// Decodes `query_string`, refusing a parameter not in `allowed` or given twice.
    pub fn parse(query: &str, allowed: &[&'static str]) -> Result<QueryParams, ApiError> {
        let decoded = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| ApiError::invalid("query", "is not a valid URL-encoded string"))?;

        let mut params = QueryParams {
            pairs: Vec::new(),
            errors: Vec::new(),
        };
        for (key, value) in decoded.into_inner() {
            let Some(name) = allowed.iter().copied().find(|name| *name == key) else {
                let reason = format!(
                    "has an unknown parameter `{}`; this route accepts {}",
                    printable(&key),
                    allowed.join(", ")
                );
                params.reject("query", reason);
                continue;
            };
            if params.pairs.iter().any(|(seen, _)| *seen == name) {
                params.reject(name, "is given more than once".into());
                continue;
            }
            params.pairs.push((name, value));
        }
        Ok(params)
    }

    /// Records a problem with `name`, unless one is already recorded for it.
    pub fn reject(&mut self, name: &'static str, reason: String) {
        if !self
            .errors
            .iter()
            .any(|e| e.field == name && name != "query")
        {
            self.errors.push(FieldError {
                field: name,
                reason,
            });
        }
    }

    /// The raw value of `name`, trimmed; `None` when absent or empty.
    pub fn text(&self, name: &'static str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed by `parse`; `None` when absent or invalid (the problem is recorded).
    pub fn parsed<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let outcome = parse(self.text(name)?);
        match outcome {
            Ok(value) => Some(value),
            Err(reason) => {
                self.reject(name, reason);
                None
            }
        }
    }

    /// Every problem found, as one 400.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidParameters(self.errors))
        }
    }
}

/// Reads an RFC 3339 time such as `2026-12-03T10:00:00Z`.
pub fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| "is not an RFC 3339 time such as 2026-12-03T10:00:00Z".to_string())
}

/// Reads `true` or `false`.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

/// Reads a whole number within `min..=max`.
pub fn whole_number(text: &str, min: u32, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A user-supplied key shortened and stripped of control characters, for an error body.
fn printable(key: &str) -> String {
    key.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_repeated_and_invalid_parameters_are_all_named() {
        let mut params = QueryParams::parse(
            "limit=0&limit=5&colour=red&from=yesterday",
            &["limit", "from"],
        )
        .unwrap();
        let limit = params.parsed("limit", |t| whole_number(t, 1, 200));
        let from = params.parsed("from", rfc3339);

        assert_eq!((limit, from), (None, None));
        let Err(ApiError::InvalidParameters(errors)) = params.finish() else {
            panic!("expected a 400");
        };
        let names: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(names, ["limit", "query", "from"]);
        assert!(errors[1].reason.contains("`colour`"));
    }

    #[test]
    fn valid_parameters_are_parsed() {
        let mut params = QueryParams::parse(
            "limit=20&from=2026-12-03T10%3A00%3A00%2B02%3A00&mask=false",
            &["limit", "from", "mask"],
        )
        .unwrap();

        assert_eq!(
            params.parsed("limit", |t| whole_number(t, 1, 200)),
            Some(20)
        );
        assert_eq!(
            params.parsed("from", rfc3339).map(|t| t.to_rfc3339()),
            Some("2026-12-03T08:00:00+00:00".to_string())
        );
        assert_eq!(params.parsed("mask", boolean), Some(false));
        assert!(params.finish().is_ok());
    }
}

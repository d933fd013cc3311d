//! The typical delivery report every measurement sends, as a request and as a queue
//! message.
//!
//! Report `i` of a workload has its own message id, so every report is new to the
//! database, the way a gateway reports on many different messages. Everything else is a
//! plain SMPP-style receipt: an international number, an alphanumeric sender, `DELIVRD`,
//! a status time a minute old and an error code.

use chrono::{Duration as ChronoDuration, Utc};
use shared::{parse_report, ParseContext, Report, Rules};
use std::fmt::Write as _;

/// Room for a request path, so writing one does not reallocate.
pub const PATH_CAPACITY: usize = 224;

/// The token ingest is started with (`DLR_TOKENS`) and every request carries in its
/// path, so the measured requests pass the same token check as a gateway's.
pub const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";

/// A family of reports that differ only in their message id.
#[derive(Debug, Clone)]
pub struct Workload {
    tag: String,
    datetime: String,
    rules: Rules,
}

impl Workload {
    /// A workload whose message ids start with `tag`, unique to one measurement run.
    pub fn new(tag: &str) -> Workload {
        let status_time = Utc::now() - ChronoDuration::minutes(1);
        Workload {
            tag: tag.to_owned(),
            datetime: status_time.format("%Y-%m-%d %H:%M:%S").to_string(),
            rules: Rules::default(),
        }
    }

    /// The message id of report `index`.
    pub fn msg_id(&self, index: u64) -> String {
        format!("bench-{}-{index}", self.tag)
    }

    /// Writes the request path of report `index` into `out`, replacing its content.
    pub fn write_path(&self, index: u64, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            "/dlr/{TOKEN}?msgid=bench-{}-{index}&mno=%2B35799123456&sid=ACME&status=DELIVRD\
             &datetime={}&err=000",
            self.tag,
            self.datetime.replace(' ', "+"),
        );
    }

    /// The request fields of report `index`, as ingest decodes them from the path.
    pub fn query_pairs(&self, index: u64) -> Vec<(String, String)> {
        vec![
            ("msgid".into(), self.msg_id(index)),
            ("mno".into(), "+35799123456".into()),
            ("sid".into(), "ACME".into()),
            ("status".into(), "DELIVRD".into()),
            ("datetime".into(), self.datetime.clone()),
            ("err".into(), "000".into()),
        ]
    }

    /// Report `index` as ingest validates it.
    pub fn report(&self, index: u64) -> Option<Report> {
        let ctx = self.context();
        parse_report(&self.query_pairs(index), &[], &ctx).ok()
    }

    /// Report `index` as ingest publishes it: the queue's JSON envelope.
    pub fn envelope(&self, index: u64) -> Vec<u8> {
        self.report(index)
            .map(|r| r.to_envelope_json())
            .unwrap_or_default()
    }

    /// What validation needs besides the fields, as ingest builds it per request.
    pub fn context(&self) -> ParseContext<'_> {
        ParseContext {
            zone: shared::GatewayZone::default(),
            received_at: Utc::now(),
            rules: &self.rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_is_valid_and_has_its_own_message_id() {
        let workload = Workload::new("t");

        let first = workload.report(0).unwrap();
        let second = workload.report(1).unwrap();

        assert_eq!(first.msg_id.as_str(), "bench-t-0");
        assert_ne!(first.msg_id, second.msg_id);
        assert!(!workload.envelope(7).is_empty());
    }

    #[test]
    fn the_path_carries_the_same_fields() {
        let workload = Workload::new("t");
        let mut path = String::new();

        workload.write_path(3, &mut path);
        let query = path.split_once('?').unwrap().1;
        let decoded = ingest::request::decode_form(query.as_bytes()).unwrap();

        assert_eq!(decoded, workload.query_pairs(3));
        assert!(path.len() < PATH_CAPACITY);
    }
}

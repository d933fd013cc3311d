//! The validated delivery report and the envelope it travels in on the queue.

use crate::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::{cmp::Ordering, collections::BTreeMap};

/// The gateway's unique id of a sent message: 1 to 128 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MsgId(String);

/// Longest message id accepted.
pub const MSG_ID_MAX_LEN: usize = 128;

impl MsgId {
    /// Checks and wraps a message id; surrounding blanks are removed.
    pub fn parse(raw: &str) -> Result<MsgId, String> {
        let id = raw.trim();
        if id.is_empty() {
            return Err("is empty".into());
        }
        if id.chars().count() > MSG_ID_MAX_LEN {
            return Err(format!("is longer than {MSG_ID_MAX_LEN} characters"));
        }
        if id.chars().any(char::is_control) {
            return Err("contains control characters".into());
        }
        Ok(MsgId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MsgId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        MsgId::parse(&value)
    }
}

impl From<MsgId> for String {
    fn from(id: MsgId) -> String {
        id.0
    }
}

/// A phone number stored as 6 to 15 digits, without `+`, leading `00`, spaces or dashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Normalises a number as a gateway may write it: `+357 99-123456`, `0035799123456`.
    pub fn parse(raw: &str) -> Result<PhoneNumber, String> {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact
            .strip_prefix('+')
            .or_else(|| compact.strip_prefix("00"))
            .unwrap_or(&compact);

        if digits.is_empty() {
            return Err("is empty".into());
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("may hold only digits, a leading + or 00, spaces and dashes".into());
        }
        if !(6..=15).contains(&digits.len()) {
            return Err(format!("has {} digits; expected 6 to 15", digits.len()));
        }
        Ok(PhoneNumber(digits.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last three digits hidden, for logs.
    pub fn masked(&self) -> String {
        let keep = self.0.len().saturating_sub(3);
        format!("{}{}", "*".repeat(keep), &self.0[keep..])
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(n: PhoneNumber) -> String {
        n.0
    }
}

/// The sender id the message went out under: an alphanumeric name or a number,
/// 1 to 32 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SenderId(String);

/// Longest sender id accepted.
pub const SENDER_MAX_LEN: usize = 32;

impl SenderId {
    /// Checks and wraps a sender id; surrounding blanks are removed.
    pub fn parse(raw: &str) -> Result<SenderId, String> {
        let sender = raw.trim();
        if sender.is_empty() {
            return Err("is empty".into());
        }
        if sender.chars().count() > SENDER_MAX_LEN {
            return Err(format!("is longer than {SENDER_MAX_LEN} characters"));
        }
        if sender.chars().any(char::is_control) {
            return Err("contains control characters".into());
        }
        Ok(SenderId(sender.to_owned()))
    }

    /// The sender id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SenderId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        SenderId::parse(&value)
    }
}

impl From<SenderId> for String {
    fn from(s: SenderId) -> String {
        s.0
    }
}

/// Where a report's status time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusAtSource {
    /// The gateway sent a time and it was read.
    Gateway,
    /// The gateway sent no time; the moment ingest received the report stands in.
    Received,
}

impl StatusAtSource {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusAtSource::Gateway => "gateway",
            StatusAtSource::Received => "received",
        }
    }
}

/// The moment a status took effect, in UTC, with the text it was read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAt {
    /// The instant, in UTC.
    pub at: DateTime<Utc>,
    /// Whether the gateway gave it or the receive time stands in.
    pub source: StatusAtSource,
    /// The text the gateway sent, when it sent one.
    pub raw: Option<String>,
}

/// The fields of a request exactly as received, split by where they came from.
///
/// A key repeated within one part keeps its values in order of arrival.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFields {
    /// Fields from the URL's query string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, Vec<String>>,
    /// Fields from the request body (form, multipart or JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body: BTreeMap<String, Vec<String>>,
}

impl RawFields {
    /// Builds the raw record from ordered `(key, value)` pairs of each part.
    pub fn from_pairs(query: &[(String, String)], body: &[(String, String)]) -> RawFields {
        let collect = |pairs: &[(String, String)]| {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in pairs {
                map.entry(k.clone()).or_default().push(v.clone());
            }
            map
        };
        RawFields {
            query: collect(query),
            body: collect(body),
        }
    }
}

/// A validated delivery report: what ingest publishes and the processor stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The gateway's id of the message this report is about.
    pub msg_id: MsgId,
    /// The recipient's number.
    pub recipient: PhoneNumber,
    /// The sender id the message went out under.
    pub sender: SenderId,
    /// The canonical status.
    pub status: Status,
    /// The status word exactly as the gateway wrote it.
    pub status_raw: String,
    /// When the status took effect.
    pub status_at: StatusAt,
    /// When ingest received the report.
    pub received_at: DateTime<Utc>,
    /// The gateway's error code, if it sent one.
    pub error_code: Option<String>,
    /// Every field of the request as received, unknown keys included.
    pub raw: RawFields,
}

impl Report {
    /// The key that orders reports of one message by truth: final beats intermediate,
    /// then the later status time, then the status rank. The current status of a message
    /// is the report with the greatest key, whatever order reports arrive in.
    pub fn truth_key(&self) -> TruthKey {
        TruthKey::new(self.status, self.status_at.at)
    }
}

/// The order of truth between reports of the same message; see [`Report::truth_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TruthKey {
    /// Final statuses outrank intermediate ones.
    pub is_final: bool,
    /// Among equals, the later status time wins.
    pub status_at: DateTime<Utc>,
    /// Exact ties are broken by [`Status::rank`].
    pub rank: i16,
}

impl TruthKey {
    /// The key of a status reported at a time.
    pub fn new(status: Status, status_at: DateTime<Utc>) -> TruthKey {
        TruthKey {
            is_final: status.is_final(),
            status_at,
            rank: status.rank(),
        }
    }
}

/// Picks the truer of two reports of the same message.
pub fn truer<'a>(a: &'a Report, b: &'a Report) -> &'a Report {
    match a.truth_key().cmp(&b.truth_key()) {
        Ordering::Less => b,
        _ => a,
    }
}

/// The version of the queue message format written by this build.
pub const ENVELOPE_VERSION: u32 = 1;

/// The JSON document that carries a report on the queue, with its format version.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The format version; readers refuse versions they do not know.
    pub version: u32,
    /// The report.
    pub report: Report,
}

/// Why a queue message could not be turned back into a report.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The message was written by a format version this build does not read.
    UnknownVersion(u64),
    /// The message is not a well-formed envelope.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownVersion(v) => write!(f, "unknown envelope version {v}"),
            DecodeError::Malformed(why) => write!(f, "malformed envelope: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Report {
    /// Encodes the report as the queue's JSON envelope.
    pub fn to_envelope_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            version: u32,
            report: &'a Report,
        }
        let envelope = Borrowed {
            version: ENVELOPE_VERSION,
            report: self,
        };
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Decodes a queue message written by [`Report::to_envelope_json`].
    pub fn from_envelope_json(bytes: &[u8]) -> Result<Report, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        let version = serde_json::from_slice::<VersionOnly>(bytes)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?
            .version;
        if version != u64::from(ENVELOPE_VERSION) {
            return Err(DecodeError::UnknownVersion(version));
        }
        serde_json::from_slice::<Envelope>(bytes)
            .map(|e| e.report)
            .map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

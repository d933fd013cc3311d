//! The record kept for a request that failed validation, so no unexpected gateway format
//! is lost: ingest answers 400 and also publishes this record to the quarantine queue,
//! from which the processor's `replay` command can revalidate it under newer rules.

use crate::{parse::InvalidReport, report::RawFields};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of the quarantine record format written by this build.
pub const QUARANTINE_VERSION: u32 = 1;

/// One problem that sent a request to quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineReason {
    /// The field's name, as in the 400 body.
    pub field: String,
    /// What was wrong with it.
    pub reason: String,
}

/// A request that failed validation, as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// The format version.
    pub version: u32,
    /// When ingest received the request; replays judge times against it.
    pub received_at: DateTime<Utc>,
    /// Why it was refused.
    pub reasons: Vec<QuarantineReason>,
    /// Every field of the request.
    pub raw: RawFields,
}

impl QuarantineRecord {
    /// The record of a refused request.
    pub fn new(received_at: DateTime<Utc>, raw: RawFields, invalid: &InvalidReport) -> Self {
        QuarantineRecord {
            version: QUARANTINE_VERSION,
            received_at,
            reasons: invalid
                .errors
                .iter()
                .map(|e| QuarantineReason {
                    field: e.field.to_string(),
                    reason: e.reason.clone(),
                })
                .collect(),
            raw,
        }
    }

    /// The record as JSON for the queue.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record written by [`QuarantineRecord::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<QuarantineRecord, String> {
        let record: QuarantineRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.version != QUARANTINE_VERSION {
            return Err(format!(
                "unknown quarantine record version {}",
                record.version
            ));
        }
        Ok(record)
    }
}

//! The canonical delivery status and the order of truth between reports.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The canonical status of a message, whatever spelling the gateway used.
///
/// Statuses are either *intermediate* (the message may still change state) or *final*
/// (the network has decided). The split follows what a sender can act on: `accepted`,
/// `enroute` and `unknown` say "not decided yet", every other status is an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Intermediate: the state is not known (SMPP `UNKNOWN`).
    Unknown,
    /// Intermediate: the message was accepted by the network (SMPP `ACCEPTD`).
    Accepted,
    /// Intermediate: the message is on its way (SMPP `ENROUTE`).
    Enroute,
    /// Final: the message was deleted before delivery (SMPP `DELETED`).
    Deleted,
    /// Final: the gateway failed to send the message.
    Failed,
    /// Final: the network rejected the message (SMPP `REJECTD`).
    Rejected,
    /// Final: the validity period ran out (SMPP `EXPIRED`).
    Expired,
    /// Final: the message could not be delivered (SMPP `UNDELIV`).
    Undelivered,
    /// Final: the handset received the message (SMPP `DELIVRD`).
    Delivered,
}

impl Status {
    /// Every status, in ascending rank.
    pub const ALL: [Status; 9] = [
        Status::Unknown,
        Status::Accepted,
        Status::Enroute,
        Status::Deleted,
        Status::Failed,
        Status::Rejected,
        Status::Expired,
        Status::Undelivered,
        Status::Delivered,
    ];

    /// Whether no later report may replace this status with an intermediate one.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Unknown | Status::Accepted | Status::Enroute)
    }

    /// The fixed rank that breaks exact ties between two reports of the same message with
    /// the same finality and the same status time; higher wins.
    ///
    /// Among intermediates the further-along state wins; among finals `delivered` wins,
    /// since a handset receipt is the strongest evidence a gateway can give.
    pub fn rank(self) -> i16 {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .map_or(0, |p| p as i16)
    }

    /// The canonical lowercase name, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Accepted => "accepted",
            Status::Enroute => "enroute",
            Status::Deleted => "deleted",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Undelivered => "undelivered",
            Status::Delivered => "delivered",
        }
    }

    /// Reads a status word as a gateway may spell it: any case, surrounding blanks,
    /// the canonical words and the SMPP receipt abbreviations.
    pub fn from_gateway(word: &str) -> Option<Status> {
        let folded: String = word
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect();

        let status = match folded.as_str() {
            "delivered" | "delivrd" => Status::Delivered,
            "undelivered" | "undeliv" | "undeliverable" => Status::Undelivered,
            "rejected" | "rejectd" => Status::Rejected,
            "failed" => Status::Failed,
            "expired" => Status::Expired,
            "deleted" => Status::Deleted,
            "unknown" => Status::Unknown,
            "accepted" | "acceptd" => Status::Accepted,
            "enroute" => Status::Enroute,
            _ => return None,
        };
        Some(status)
    }

    /// Reads the canonical name written by [`Status::as_str`].
    pub fn from_canonical(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smpp_receipt_words_map_to_canonical_statuses() {
        let cases = [
            ("DELIVRD", Status::Delivered),
            ("UNDELIV", Status::Undelivered),
            ("REJECTD", Status::Rejected),
            ("EXPIRED", Status::Expired),
            ("DELETED", Status::Deleted),
            ("UNKNOWN", Status::Unknown),
            ("ACCEPTD", Status::Accepted),
            ("ENROUTE", Status::Enroute),
            (" Delivered ", Status::Delivered),
            ("failed", Status::Failed),
        ];

        for (word, expected) in cases {
            assert_eq!(Status::from_gateway(word), Some(expected), "{word}");
        }
        assert_eq!(Status::from_gateway("sent-ish"), None);
    }

    #[test]
    fn ranks_are_distinct_and_round_trip_through_names() {
        let mut ranks: Vec<i16> = Status::ALL.iter().map(|s| s.rank()).collect();
        ranks.dedup();

        assert_eq!(ranks.len(), Status::ALL.len());
        for status in Status::ALL {
            assert_eq!(Status::from_canonical(status.as_str()), Some(status));
        }
    }
}

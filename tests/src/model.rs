//! A plain reference model of what the database should hold after a set of reports,
//! written independently of the production code so the two can be compared.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// The parts of a report that decide the stored state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelReport {
    /// Message id.
    pub msg_id: String,
    /// Canonical status name.
    pub status: String,
    /// Status time.
    pub status_at: DateTime<Utc>,
}

/// Statuses in the order of their tie-breaking rank, lowest first.
const RANKED: [&str; 9] = [
    "unknown",
    "accepted",
    "enroute",
    "deleted",
    "failed",
    "rejected",
    "expired",
    "undelivered",
    "delivered",
];

fn is_final(status: &str) -> bool {
    !matches!(status, "unknown" | "accepted" | "enroute")
}

fn rank(status: &str) -> usize {
    RANKED.iter().position(|s| *s == status).unwrap_or(0)
}

/// Whether `a` is truer than `b`: final over intermediate, later over earlier,
/// higher rank over lower.
fn truer(a: &ModelReport, b: &ModelReport) -> bool {
    (is_final(&a.status), a.status_at, rank(&a.status))
        > (is_final(&b.status), b.status_at, rank(&b.status))
}

/// The expected database state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Message id to (current status, its status time).
    pub messages: BTreeMap<String, (String, DateTime<Utc>)>,
    /// Every distinct report.
    pub transitions: BTreeSet<ModelReport>,
}

/// Applies the reports one by one, in the given order.
pub fn expected(reports: &[ModelReport]) -> Expected {
    let mut current: BTreeMap<String, ModelReport> = BTreeMap::new();
    let mut transitions = BTreeSet::new();
    for report in reports {
        transitions.insert(report.clone());
        let replace = current
            .get(&report.msg_id)
            .is_none_or(|held| truer(report, held));
        if replace {
            current.insert(report.msg_id.clone(), report.clone());
        }
    }
    Expected {
        messages: current
            .into_iter()
            .map(|(id, r)| (id, (r.status, r.status_at)))
            .collect(),
        transitions,
    }
}

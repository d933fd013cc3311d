//! Keeping requests that failed validation, within a budget per minute.

use crate::broker::Broker;
use chrono::{DateTime, Utc};
use log::warn;
use prometheus::IntCounterVec;
use shared::{quarantine::QuarantineRecord, report::RawFields, InvalidReport};
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Sends refused requests to the quarantine queue, at most `per_minute` a minute per
/// replica, so a flood of garbage cannot fill the broker. Requests over the budget are
/// refused with their 400 like the others but not kept; a warning counts them.
pub struct Quarantine {
    per_minute: u32,
    window: Mutex<(Instant, u32)>,
    results: IntCounterVec,
}

impl Quarantine {
    /// A quarantine that keeps at most `per_minute` requests a minute and counts what
    /// happened to each in `results` (label `result`: `kept`, `over_budget`, `failed`).
    pub fn new(per_minute: u32, results: IntCounterVec) -> Quarantine {
        Quarantine {
            per_minute,
            window: Mutex::new((Instant::now(), 0)),
            results,
        }
    }

    /// Whether the budget of the current minute allows one more record.
    fn admit(&self) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        if window.0.elapsed() >= Duration::from_secs(60) {
            *window = (Instant::now(), 0);
        }
        if window.1 >= self.per_minute {
            return false;
        }
        window.1 += 1;
        true
    }

    /// Publishes the record in the background, so the gateway's 400 does not wait.
    pub fn keep(
        &self,
        broker: &Broker,
        received_at: DateTime<Utc>,
        raw: RawFields,
        invalid: &InvalidReport,
    ) {
        if !self.admit() {
            self.results.with_label_values(&["over_budget"]).inc();
            warn!(
                "quarantine budget of {} a minute used up; request not kept",
                self.per_minute
            );
            return;
        }

        let record = QuarantineRecord::new(received_at, raw, invalid);
        let broker = broker.clone();
        let results = self.results.clone();
        tokio::spawn(async move {
            match broker.publish_quarantine(&record).await {
                Ok(()) => results.with_label_values(&["kept"]).inc(),
                Err(e) => {
                    results.with_label_values(&["failed"]).inc();
                    warn!("refused request not kept in quarantine error={e}");
                }
            }
        });
    }
}

//! Keeping requests that failed validation, within a budget per minute.

use crate::broker::Broker;
use chrono::{DateTime, Utc};
use log::warn;
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
}

impl Quarantine {
    /// A quarantine that keeps at most `per_minute` requests a minute.
    pub fn new(per_minute: u32) -> Quarantine {
        Quarantine {
            per_minute,
            window: Mutex::new((Instant::now(), 0)),
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
            warn!(
                "quarantine budget of {} a minute used up; request not kept",
                self.per_minute
            );
            return;
        }
        let record = QuarantineRecord::new(received_at, raw, invalid);
        let broker = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = broker.publish_quarantine(&record).await {
                warn!("refused request not kept in quarantine error={e}");
            }
        });
    }
}

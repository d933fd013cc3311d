//! A load generator playing the gateway: many reports sent concurrently at a fixed rate,
//! each answer recorded, and the check that every report that got a 200 is stored once.

use crate::TestEnv;
use diesel::{sql_query, sql_types::Text, QueryableByName, RunQueryDsl};
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// What the gateway saw.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// Requests made.
    pub sent: usize,
    /// Message ids that got a 200.
    pub accepted: BTreeSet<String>,
    /// Answers 503.
    pub unavailable: usize,
    /// Other answers and transport errors (connection refused, reset, timeout).
    pub failed: usize,
}

/// Sends `count` reports with ids `{prefix}-{n}` to `base_url` (`http://host:port`) with
/// `concurrency` requests in flight, spread evenly over about `duration`.
pub async fn send_reports(
    base_url: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
    duration: Duration,
) -> Sent {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let sent = Arc::new(Mutex::new(Sent::default()));
    let started = Instant::now();
    let interval = duration.as_secs_f64() / count.max(1) as f64;

    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let client = client.clone();
        let sent = sent.clone();
        let base_url = base_url.to_owned();
        let prefix = prefix.to_owned();
        workers.push(tokio::spawn(async move {
            for n in (worker..count).step_by(concurrency) {
                let due = started + Duration::from_secs_f64(interval * n as f64);
                tokio::time::sleep_until(due.into()).await;

                let id = format!("{prefix}-{n}");
                let url = format!(
                    "{base_url}/dlr?msgid={id}&mno=35799{:06}&sid=LOAD&status=DELIVRD\
                     &datetime=2026-12-01+10:00:00",
                    n % 1_000_000
                );
                let status = client.get(&url).send().await.map(|r| r.status().as_u16());

                let mut sent = sent.lock().unwrap();
                sent.sent += 1;
                match status {
                    Ok(200) => {
                        sent.accepted.insert(id);
                    }
                    Ok(503) => sent.unavailable += 1,
                    _ => sent.failed += 1,
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    sent
}

/// What the database holds for a load run.
#[derive(Debug)]
pub struct Outcome {
    /// The gateway's view.
    pub sent: Sent,
    /// Distinct reports of the run stored.
    pub stored: usize,
    /// Rows in `status_transitions` beyond one per stored report.
    pub duplicates: usize,
    /// Reports that got a 200 and are not stored.
    pub lost: usize,
}

impl Outcome {
    /// One line with every count, as the fault tests print it.
    pub fn summary(&self, scenario: &str) -> String {
        format!(
            "{scenario}: sent={} 200={} 503={} failed={} stored={} duplicates={} lost={}",
            self.sent.sent,
            self.sent.accepted.len(),
            self.sent.unavailable,
            self.sent.failed,
            self.stored,
            self.duplicates,
            self.lost
        )
    }
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    msg_id: String,
}

/// Waits up to `limit` until every accepted report of the run is stored, then counts.
pub fn settle(env: &TestEnv, prefix: &str, sent: Sent, limit: Duration) -> Outcome {
    let pattern = format!("{prefix}-%");
    let load = |env: &TestEnv| -> Vec<String> {
        let mut conn =
            match <diesel::PgConnection as diesel::Connection>::establish(&env.database_url) {
                Ok(conn) => conn,
                Err(_) => return Vec::new(),
            };
        sql_query("SELECT msg_id FROM status_transitions WHERE msg_id LIKE $1")
            .bind::<Text, _>(&pattern)
            .load::<Stored>(&mut conn)
            .map(|rows| rows.into_iter().map(|r| r.msg_id).collect())
            .unwrap_or_default()
    };

    let mut rows = Vec::new();
    env.wait_until(limit, |env| {
        rows = load(env);
        let stored: BTreeSet<&String> = rows.iter().collect();
        sent.accepted.iter().all(|id| stored.contains(id))
    });
    let stored: BTreeSet<String> = rows.iter().cloned().collect();
    Outcome {
        stored: stored.len(),
        duplicates: rows.len() - stored.len(),
        lost: sent.accepted.difference(&stored).count(),
        sent,
    }
}

//! Load drivers: a closed loop for throughput and an open loop for latency.
//!
//! Both hand numbered operations to a fixed set of [`Worker`]s, each running as its own
//! task with its own connection or channel. In the closed loop a worker starts its next
//! operation as soon as the previous one ends, so the rate is whatever the system
//! sustains. In the open loop operation `i` is due at `start + i / rate` whatever
//! happened before it, and its latency is measured from that scheduled time, not from
//! when a worker got round to sending it: a stall delays every operation behind it, and
//! the percentiles show that, as a gateway would see it.

use crate::{
    http::HttpConnection,
    stats::Latencies,
    workload::{Workload, PATH_CAPACITY},
};
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// Something that performs numbered operations one at a time: an HTTP connection, a
/// broker channel.
pub trait Worker: Send + 'static {
    /// Performs operation `index`; `true` when it succeeded. A worker repairs its own
    /// connection after a failure.
    fn call(&mut self, index: u64) -> impl Future<Output = bool> + Send;
}

/// What a closed-loop run achieved.
#[derive(Debug, Clone, Copy)]
pub struct ClosedOutcome {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl ClosedOutcome {
    /// Successful operations a second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `total` operations over `workers`, each starting its next as soon as its previous
/// one ends.
pub async fn closed_loop<W: Worker>(workers: Vec<W>, total: u64) -> ClosedOutcome {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let next = next.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return (ok, failed);
                    }
                    if worker.call(index).await {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
            })
        })
        .collect();

    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        match task.await {
            Ok((o, f)) => {
                ok += o;
                failed += f;
            }
            Err(_) => failed += 1,
        }
    }

    ClosedOutcome {
        ok,
        failed,
        elapsed: started.elapsed(),
    }
}

/// One successful operation of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The operation's number.
    pub index: u64,
    /// When it was due.
    pub scheduled: Instant,
    /// When it completed.
    pub completed: Instant,
}

/// What an open-loop run measured.
#[derive(Debug, Default)]
pub struct OpenOutcome {
    /// Every successful operation.
    pub samples: Vec<Sample>,
    /// Operations that failed.
    pub failed: u64,
    /// From the first operation's due time to the last completion.
    pub elapsed: Duration,
}

impl OpenOutcome {
    /// Latencies from due time to completion.
    pub fn latencies(&self) -> Latencies {
        Latencies::new(
            self.samples
                .iter()
                .map(|s| s.completed.saturating_duration_since(s.scheduled))
                .collect(),
        )
    }

    /// Successful operations a second, over the whole run.
    pub fn achieved_rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `total` operations at `rate` a second over `workers`: operation `i` is due at
/// `start + i / rate`, and a worker that is free early waits for that moment.
pub async fn open_loop<W: Worker>(workers: Vec<W>, rate: f64, total: u64) -> OpenOutcome {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let due = move |index: u64| start + Duration::from_secs_f64(index as f64 / rate);

    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut failed = 0u64;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return (samples, failed);
                    }
                    let scheduled = due(index);
                    tokio::time::sleep_until(scheduled).await;
                    if worker.call(index).await {
                        samples.push(Sample {
                            index,
                            scheduled,
                            completed: Instant::now(),
                        });
                    } else {
                        failed += 1;
                    }
                }
            })
        })
        .collect();

    let mut outcome = OpenOutcome::default();
    for task in tasks {
        match task.await {
            Ok((samples, failed)) => {
                outcome.samples.extend(samples);
                outcome.failed += failed;
            }
            Err(_) => outcome.failed += 1,
        }
    }
    let last = outcome.samples.iter().map(|s| s.completed).max();
    outcome.elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));

    outcome
}

/// Sends the workload's requests to an HTTP server over one keep-alive connection,
/// reconnecting after a failure. A request succeeds when it is answered 200.
pub struct HttpWorker {
    addr: SocketAddr,
    connection: Option<HttpConnection>,
    workload: Arc<Workload>,
    path: String,
}

impl HttpWorker {
    /// `count` workers, each with its connection already open.
    pub async fn connect(
        addr: SocketAddr,
        workload: Arc<Workload>,
        count: usize,
    ) -> std::io::Result<Vec<HttpWorker>> {
        let mut workers = Vec::with_capacity(count);
        for _ in 0..count {
            workers.push(HttpWorker {
                addr,
                connection: Some(HttpConnection::open(addr).await?),
                workload: workload.clone(),
                path: String::with_capacity(PATH_CAPACITY),
            });
        }
        Ok(workers)
    }
}

impl Worker for HttpWorker {
    async fn call(&mut self, index: u64) -> bool {
        self.workload.write_path(index, &mut self.path);
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => match HttpConnection::open(self.addr).await {
                Ok(connection) => self.connection.insert(connection),
                Err(_) => return false,
            },
        };

        match connection.get(&self.path).await {
            Ok(status) => status == 200,
            Err(_) => {
                self.connection = None;
                false
            }
        }
    }
}

//! Our figures: the real release binaries under load, against the sandbox.

use crate::{
    ceilings::rand_tag,
    error::{BenchError, Result},
    load::{closed_loop, open_loop, ClosedOutcome, HttpWorker, OpenOutcome},
    publish::Payloads,
    sandbox::Sandbox,
    services::{Kind, Memory, Service},
    stats::{self, Latencies, LatencySummary},
    workload::Workload,
};
use diesel::{
    sql_query,
    sql_types::{Array, BigInt, Text},
    QueryableByName, RunQueryDsl,
};
use log::info;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// The variables ingest runs with in every measurement.
fn ingest_env(publish_channels: usize) -> Vec<(&'static str, String)> {
    vec![
        ("PUBLISH_CHANNELS", publish_channels.to_string()),
        ("DLR_TOKENS", crate::workload::TOKEN.to_owned()),
    ]
}

/// The variables the processor runs with in every measurement.
fn processor_env(batch_size: usize) -> Vec<(&'static str, String)> {
    vec![("BATCH_SIZE", batch_size.to_string())]
}

/// Ingest's sustained throughput under a closed loop of `connections` keep-alive
/// connections, and its peak memory afterwards.
pub async fn ingest_throughput(
    sandbox: &Sandbox,
    publish_channels: usize,
    connections: usize,
    requests: u64,
) -> Result<(ClosedOutcome, Memory)> {
    let ingest = Service::start(Kind::Ingest, sandbox, &ingest_env(publish_channels)).await?;
    let workload = Arc::new(Workload::new(&format!("tp{}", rand_tag())));

    let warm_up = HttpWorker::connect(ingest.addr, workload.clone(), connections).await?;
    closed_loop(warm_up, requests / 10).await;
    let workers = HttpWorker::connect(ingest.addr, workload, connections).await?;
    let outcome = closed_loop(workers, requests).await;
    let memory = ingest.memory()?;

    ingest.stop().await;
    sandbox.purge().await?;

    Ok((outcome, memory))
}

/// Ingest's latencies at a fixed rate, measured from each request's scheduled time.
pub async fn ingest_latency(
    sandbox: &Sandbox,
    publish_channels: usize,
    connections: usize,
    rate: f64,
    total: u64,
) -> Result<OpenOutcome> {
    let ingest = Service::start(Kind::Ingest, sandbox, &ingest_env(publish_channels)).await?;
    let workload = Arc::new(Workload::new(&format!("lat{}", rand_tag())));

    let workers = HttpWorker::connect(ingest.addr, workload, connections).await?;
    let outcome = open_loop(workers, rate, total).await;

    ingest.stop().await;
    sandbox.purge().await?;

    Ok(outcome)
}

/// How fast the processor drained a pre-filled queue.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Reports stored a second, from the processor being ready to the last row committed.
    pub rate: f64,
    /// The processor's memory when the queue was empty.
    pub memory: Memory,
}

/// Pre-fills the queue with `count` distinct reports, starts the processor with
/// `BATCH_SIZE=batch_size` and times it until every report is a committed row.
///
/// The clock starts when the processor's `/readyz` first answers 200 (a consumer is
/// attached and the database answers), polled every 10 ms, so start-up and migrations
/// are not counted; it stops when `count` rows are committed: the highest transition id
/// is polled every 10 ms, and the rows are counted once it reaches `count`.
pub async fn drain(sandbox: &Sandbox, count: u64, batch_size: usize) -> Result<Drain> {
    sandbox.truncate()?;
    sandbox.purge().await?;
    let workload = Arc::new(Workload::new(&format!("drain{}", rand_tag())));
    sandbox.prefill(&Payloads::Reports(workload), count).await?;

    let processor = Service::start(Kind::Processor, sandbox, &processor_env(batch_size)).await?;
    let started = Instant::now();
    let limit = Duration::from_secs(60 + count / 100);
    let mut conn = sandbox.db()?;
    let finished = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if Sandbox::rows_written(&mut conn)? >= count as i64
                && Sandbox::rows_counted(&mut conn)? >= count as i64
            {
                return Ok(std::time::Instant::now());
            }
            if std::time::Instant::now() > deadline {
                return Err(BenchError(format!(
                    "the processor did not store {count} reports within {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await??;
    let elapsed = finished.saturating_duration_since(started.into_std());
    let memory = processor.memory()?;
    processor.stop().await;

    let stored = sandbox.count_rows()?;
    if stored != count as i64 {
        return Err(BenchError(format!(
            "the drain stored {stored} rows instead of {count}"
        )));
    }
    info!(
        "drained count={count} batch_size={batch_size} elapsed_ms={}",
        elapsed.as_millis()
    );

    Ok(Drain {
        rate: count as f64 / elapsed.as_secs_f64(),
        memory,
    })
}

/// What ingest and the processor sustained together under a closed loop.
#[derive(Debug, Clone, Copy)]
pub struct PipelineRate {
    /// Requests a second answered 200.
    pub accepted: f64,
    /// Reports a second committed by the processor over the same window.
    pub committed: f64,
}

impl PipelineRate {
    /// The pipeline's maximum: what it accepted and also stored, a second.
    pub fn rate(&self) -> f64 {
        self.accepted.min(self.committed)
    }
}

/// The end-to-end maximum: ingest and the processor running together, as in production
/// on a shared machine, under a closed loop of `connections` through ingest.
///
/// After a warm-up whose reports are all stored first, the loop sends `requests` distinct
/// reports; the accepted rate is the loop's, the committed rate is the rows committed
/// between the loop's start and end (counted), divided by the same time. A processor that falls behind shows as a committed rate
/// below the accepted one, and the pipeline's maximum is the smaller of the two.
pub async fn pipeline_throughput(
    sandbox: &Sandbox,
    publish_channels: usize,
    batch_size: usize,
    connections: usize,
    requests: u64,
) -> Result<PipelineRate> {
    sandbox.truncate()?;
    sandbox.purge().await?;
    let processor = Service::start(Kind::Processor, sandbox, &processor_env(batch_size)).await?;
    let ingest = Service::start(Kind::Ingest, sandbox, &ingest_env(publish_channels)).await?;

    let warm_up = Arc::new(Workload::new(&format!("pipewarm{}", rand_tag())));
    let warm_up = HttpWorker::connect(ingest.addr, warm_up, connections).await?;
    let warmed = closed_loop(warm_up, requests / 10).await;
    let mut conn = sandbox.db()?;
    let (mut conn, before) = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let written = Sandbox::rows_counted(&mut conn)?;
            if written >= warmed.ok as i64 {
                return Ok((conn, written));
            }
            if std::time::Instant::now() > deadline {
                return Err(BenchError::new("the warm-up reports were not stored"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await??;

    let workload = Arc::new(Workload::new(&format!("pipe{}", rand_tag())));
    let workers = HttpWorker::connect(ingest.addr, workload, connections).await?;
    let outcome = closed_loop(workers, requests).await;
    let after = tokio::task::spawn_blocking(move || Sandbox::rows_counted(&mut conn)).await??;
    ingest.stop().await;
    processor.stop().await;

    let committed = (after - before).max(0) as f64 / outcome.elapsed.as_secs_f64();
    info!(
        "pipeline accepted={:.0}/s committed={committed:.0}/s",
        outcome.rate()
    );
    Ok(PipelineRate {
        accepted: outcome.rate(),
        committed,
    })
}

/// What an end-to-end run measured.
#[derive(Debug, Clone)]
pub struct EndToEnd {
    /// From the 200 to the row being visible.
    pub latency: LatencySummary,
    /// Requests answered 200.
    pub accepted: usize,
    /// Requests not answered 200.
    pub failed: u64,
    /// Rows that were visible before the client had read the 200; counted as 0 ms.
    pub visible_before_answer: usize,
    /// Ingest's memory at the end.
    pub ingest_memory: Memory,
    /// The processor's memory at the end.
    pub processor_memory: Memory,
}

#[derive(QueryableByName)]
struct NewRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    msg_id: String,
}

/// Sends requests through ingest at `rate` a second with the processor running, and
/// measures for each accepted report the time from its 200 to its row in
/// `status_transitions` being visible.
///
/// Visibility is seen by polling for rows with an id above the last one seen, every
/// 5 ms on its own connection (an index range scan); a row's time is the end of the
/// poll that saw it, so the figure is at most a poll (about 5 ms) late. With two writers
/// a batch with lower ids may commit after one with higher ids, so the ids skipped so
/// far are asked for again by each poll until they appear.
pub async fn end_to_end(
    sandbox: &Sandbox,
    publish_channels: usize,
    batch_size: usize,
    connections: usize,
    rate: f64,
    total: u64,
) -> Result<EndToEnd> {
    sandbox.truncate()?;
    sandbox.purge().await?;
    let processor = Service::start(Kind::Processor, sandbox, &processor_env(batch_size)).await?;
    let ingest = Service::start(Kind::Ingest, sandbox, &ingest_env(publish_channels)).await?;
    let tag = format!("e2e{}", rand_tag());
    let workload = Arc::new(Workload::new(&tag));

    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_error = StopOnDrop(stop.clone());
    let prefix = format!("bench-{tag}-");
    let mut conn = sandbox.db()?;
    let watcher = {
        let (expected, stop) = (expected.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen: Vec<Option<std::time::Instant>> = vec![None; total as usize];
            let (mut last_id, mut count) = (0i64, 0u64);
            let mut holes: Vec<i64> = Vec::new();
            while !stop.load(Ordering::Relaxed) && count < expected.load(Ordering::Relaxed) {
                let rows: Vec<NewRow> = sql_query(
                    "SELECT id, msg_id FROM status_transitions WHERE id > $1 OR id = ANY($2) \
                     ORDER BY id",
                )
                .bind::<BigInt, _>(last_id)
                .bind::<Array<BigInt>, _>(&holes)
                .load(&mut conn)?;
                let now = std::time::Instant::now();
                for row in rows {
                    if row.id > last_id {
                        holes.extend(last_id + 1..row.id);
                        last_id = row.id;
                    } else {
                        holes.retain(|&hole| hole != row.id);
                    }
                    let index = row
                        .msg_id
                        .strip_prefix(&prefix)
                        .and_then(|i| i.parse::<usize>().ok());
                    if let Some(slot) = index.and_then(|i| seen.get_mut(i)) {
                        *slot = Some(now);
                        count += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok::<_, BenchError>(seen)
        })
    };

    let workers = HttpWorker::connect(ingest.addr, workload, connections).await?;
    let outcome = open_loop(workers, rate, total).await;
    expected.store(outcome.samples.len() as u64, Ordering::Relaxed);
    let give_up = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let seen = watcher.await??;
    give_up.abort();
    let ingest_memory = ingest.memory()?;
    let processor_memory = processor.memory()?;
    ingest.stop().await;
    processor.stop().await;

    let mut latencies = Vec::with_capacity(outcome.samples.len());
    let mut early = 0;
    for sample in &outcome.samples {
        let Some(visible) = seen.get(sample.index as usize).copied().flatten() else {
            return Err(BenchError(format!(
                "report {} was accepted but its row never appeared",
                sample.index
            )));
        };
        let answered = sample.completed.into_std();
        if visible < answered {
            early += 1;
        }
        latencies.push(visible.saturating_duration_since(answered));
    }

    Ok(EndToEnd {
        latency: LatencySummary::of(&Latencies::new(latencies)),
        accepted: outcome.samples.len(),
        failed: outcome.failed,
        visible_before_answer: early,
        ingest_memory,
        processor_memory,
    })
}

/// Sets its flag when dropped, so a helper thread stops when the run it serves ends,
/// also on an error path.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Resident memory sampled during a soak run.
#[derive(Debug, Clone, Default)]
pub struct Soak {
    /// Minutes the load ran.
    pub minutes: u64,
    /// Requests a second asked for.
    pub rate: f64,
    /// Requests answered 200.
    pub accepted: usize,
    /// Requests not answered 200.
    pub failed: u64,
    /// `(seconds since start, MiB)` of ingest's resident memory.
    pub ingest: Vec<(f64, f64)>,
    /// `(seconds since start, MiB)` of the processor's resident memory.
    pub processor: Vec<(f64, f64)>,
    /// Ingest's peak resident memory over the run.
    pub ingest_peak: f64,
    /// The processor's peak resident memory over the run.
    pub processor_peak: f64,
}

/// Runs ingest and the processor together at `rate` requests a second for `minutes`,
/// sampling both processes' resident memory every 5 s.
pub async fn soak(
    sandbox: &Sandbox,
    publish_channels: usize,
    batch_size: usize,
    connections: usize,
    minutes: u64,
    rate: f64,
) -> Result<Soak> {
    sandbox.truncate()?;
    sandbox.purge().await?;
    let processor = Service::start(Kind::Processor, sandbox, &processor_env(batch_size)).await?;
    let ingest = Service::start(Kind::Ingest, sandbox, &ingest_env(publish_channels)).await?;
    let (ingest_pid, processor_pid) = (ingest.pid(), processor.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_error = StopOnDrop(stop.clone());
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (mut ingest, mut processor) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let at = started.elapsed().as_secs_f64();
                if let (Ok(i), Ok(p)) = (Memory::of(ingest_pid), Memory::of(processor_pid)) {
                    ingest.push((at, i.current_mib));
                    processor.push((at, p.current_mib));
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            (ingest, processor)
        })
    };

    let workload = Arc::new(Workload::new(&format!("soak{}", rand_tag())));
    let workers = HttpWorker::connect(ingest.addr, workload, connections).await?;
    let total = (rate * minutes as f64 * 60.0) as u64;
    info!("soak started minutes={minutes} rate={rate} requests={total}");
    let outcome = open_loop(workers, rate, total).await;
    stop.store(true, Ordering::Relaxed);
    let (ingest_rss, processor_rss) = sampler.await?;
    let (ingest_peak, processor_peak) = (ingest.memory()?.peak_mib, processor.memory()?.peak_mib);
    ingest.stop().await;
    processor.stop().await;

    Ok(Soak {
        minutes,
        rate,
        accepted: outcome.samples.len(),
        failed: outcome.failed,
        ingest: ingest_rss,
        processor: processor_rss,
        ingest_peak,
        processor_peak,
    })
}

/// How much a process's resident memory grew during a soak run, ignoring its warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// The most it held in the window just after warm-up, MiB.
    pub early_mib: f64,
    /// The most it held in the last window of the run, MiB.
    pub late_mib: f64,
    /// The least-squares trend after warm-up, MiB a minute.
    pub trend_mib_per_min: f64,
}

impl Growth {
    /// Compares the window just after warm-up with the last window. Warm-up and each
    /// window are a fifth of the run, at most a minute.
    pub fn of(samples: &[(f64, f64)]) -> Option<Growth> {
        let end = samples.last()?.0;
        let span = (end / 5.0).min(60.0);
        let after_warm_up: Vec<(f64, f64)> =
            samples.iter().copied().filter(|s| s.0 >= span).collect();
        let most = |from: f64, to: f64| {
            after_warm_up
                .iter()
                .filter(|s| s.0 >= from && s.0 <= to)
                .map(|s| s.1)
                .fold(f64::NAN, f64::max)
        };
        let trend = stats::slope(&after_warm_up).unwrap_or(0.0) * 60.0;

        Some(Growth {
            early_mib: most(span, 2.0 * span),
            late_mib: most(end - span, end),
            trend_mib_per_min: trend,
        })
    }

    /// Growth from the early window to the late one, MiB.
    pub fn grown_mib(&self) -> f64 {
        self.late_mib - self.early_mib
    }

    /// Whether the late window stays within 2 MiB plus 5 % of the early one: allocator
    /// noise, not a leak.
    pub fn is_flat(&self) -> bool {
        self.grown_mib() <= 2.0 + 0.05 * self.early_mib
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_series_after_warm_up_shows_no_growth() {
        let mut samples: Vec<(f64, f64)> =
            (0..12).map(|i| (i as f64 * 5.0, 10.0 + i as f64)).collect();
        samples.extend((12..120).map(|i| (i as f64 * 5.0, 22.0 + (i % 3) as f64 * 0.1)));

        let growth = Growth::of(&samples).unwrap();

        assert!(growth.is_flat(), "{growth:?}");
        assert!(growth.trend_mib_per_min.abs() < 0.1, "{growth:?}");
    }

    #[test]
    fn a_steady_climb_is_growth() {
        let samples: Vec<(f64, f64)> = (0..120)
            .map(|i| (i as f64 * 5.0, 20.0 + i as f64 * 0.2))
            .collect();

        let growth = Growth::of(&samples).unwrap();

        assert!(!growth.is_flat(), "{growth:?}");
        assert!((growth.trend_mib_per_min - 2.4).abs() < 0.01, "{growth:?}");
    }
}

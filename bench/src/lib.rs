//! `dlr-bench`: how fast the pipeline runs, against what the machine allows.
//!
//! A run creates a [`sandbox::Sandbox`] (its own queues, exchanges and database), then
//! measures in turn:
//! - the ceilings ([`ceilings`]): a bare actix-web handler, validation alone, raw lapin
//!   publishing with confirms, raw consuming, and the processor's batched SQL called
//!   directly;
//! - ours ([`ours`]): the release `ingest` and `processor` binaries under a closed-loop
//!   and an open-loop load ([`load`]), draining a pre-filled queue, end to end, and their
//!   resident memory, optionally over a soak run.
//!
//! Each measurement is repeated and its median kept; a ceiling and the figure compared
//! with it are measured alternately, run by run, so that load from other users of the
//! shared machine falls on both. [`results`] turns the figures into one table with ratios
//! and the targets of issue 6. The sandbox is removed when the run ends, however it ends.

pub mod ceilings;
pub mod error;
pub mod http;
pub mod load;
pub mod options;
pub mod ours;
pub mod publish;
pub mod results;
pub mod sandbox;
pub mod services;
pub mod stats;
pub mod workload;

use diesel::{sql_query, sql_types::Text, QueryableByName, RunQueryDsl};
use error::Result;
use log::info;
use options::{Options, Part};
use results::{Figures, LatencyPoint, Machine};
use sandbox::Sandbox;
use services::Kind;
use stats::LatencySummary;
use std::time::Duration;

/// Fractions of ingest's maximum rate at which open-loop latency is measured.
fn latency_fractions(options: &Options) -> Vec<f64> {
    if options.quick {
        vec![0.5]
    } else {
        vec![0.25, 0.5, 0.75]
    }
}

/// HTTP worker threads of ingest, and of the bare handler it is compared with: ingest's
/// default, one per core.
pub fn http_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs the parts of the suite that `options` selects and returns their figures.
pub async fn run(options: &Options) -> Result<Figures> {
    services::binary(Kind::Ingest)?;
    services::binary(Kind::Processor)?;
    let sandbox = Sandbox::create().await?;
    let mut figures = Figures::default();

    if options.runs_part(Part::Ingest) {
        measure_ingest(&sandbox, options, &mut figures).await?;
    }
    if options.runs_part(Part::Processor) {
        measure_processor(&sandbox, options, &mut figures).await?;
    }
    if options.runs_part(Part::EndToEnd) {
        measure_end_to_end(&sandbox, options, &mut figures).await?;
    }
    if options.soak_minutes > 0 {
        info!("soak: {} minutes", options.soak_minutes);
        figures.soak = Some(
            ours::soak(
                &sandbox,
                options.publish_channels,
                options.batch_size,
                options.connections,
                options.soak_minutes,
                options.soak_rate,
            )
            .await?,
        );
    }

    Ok(figures)
}

async fn measure_ingest(sandbox: &Sandbox, o: &Options, figures: &mut Figures) -> Result<()> {
    let requests = o.requests as u64;
    for run in 1..=o.runs {
        info!(
            "run {run}/{}: bare HTTP, validation, raw publish, ingest",
            o.runs
        );
        let bare = ceilings::bare_http(http_workers(), o.connections, requests).await?;
        figures.bare_http.push(bare.rate());
        let validation_time = Duration::from_millis(if o.quick { 300 } else { 1000 });
        figures
            .validation
            .push(ceilings::validation(validation_time).await?);

        let raw = ceilings::raw_publish(sandbox, o.publish_channels, o.connections, requests);
        figures.raw_publish.push(raw.await?.rate());
        let (ours, memory) =
            ours::ingest_throughput(sandbox, o.publish_channels, o.connections, requests).await?;
        figures.ingest_throughput.push(ours.rate());
        figures.ingest_failed += ours.failed;
        figures.ingest_peak.push(memory.peak_mib);
        info!(
            "ingest {:.0}/s, raw publish {:.0}/s, bare {:.0}/s",
            ours.rate(),
            figures.raw_publish.0.last().copied().unwrap_or_default(),
            bare.rate()
        );
    }

    let max = figures.ingest_throughput.median();
    for fraction in latency_fractions(o) {
        let rate = (max * fraction).max(1.0);
        let total = (rate * o.open_seconds) as u64;
        let (mut ingest_runs, mut raw_runs, mut failed) = (Vec::new(), Vec::new(), 0);
        for run in 1..=o.runs {
            info!("run {run}/{}: open loop at {rate:.0}/s", o.runs);
            let raw = ceilings::raw_publish_latency(
                sandbox,
                o.publish_channels,
                o.connections,
                rate,
                total,
            )
            .await?;
            raw_runs.push(LatencySummary::of(&raw.latencies()));
            let ours =
                ours::ingest_latency(sandbox, o.publish_channels, o.connections, rate, total)
                    .await?;
            ingest_runs.push(LatencySummary::of(&ours.latencies()));
            failed += ours.failed;
            info!(
                "p99 ingest {:.2} ms, raw {:.2} ms",
                ingest_runs.last().map_or(f64::NAN, |s| s.p99),
                raw_runs.last().map_or(f64::NAN, |s| s.p99)
            );
        }
        figures.latency.push(LatencyPoint {
            fraction,
            rate,
            ingest: LatencySummary::median_of(&ingest_runs),
            raw: LatencySummary::median_of(&raw_runs),
            ingest_failed: failed,
        });
    }

    Ok(())
}

async fn measure_processor(sandbox: &Sandbox, o: &Options, figures: &mut Figures) -> Result<()> {
    let count = o.drain_count as u64;
    let prefetch =
        processor::consumer::prefetch(o.batch_size, processor::settings::DEFAULT_BATCH_WRITERS);
    for run in 1..=o.runs {
        info!("run {run}/{}: raw consume, raw write, drain", o.runs);
        let consume = ceilings::raw_consume(sandbox, count, prefetch, o.batch_size as u64);
        figures.raw_consume.push(consume.await?);
        let write = ceilings::raw_write(sandbox, count, o.batch_size).await?;
        figures.raw_write.push(write);
        let drain = ours::drain(sandbox, count, o.batch_size).await?;
        figures.drain.push(drain.rate);
        figures.processor_peak.push(drain.memory.peak_mib);
        info!(
            "consume {:.0}/s, write {write:.0}/s, drain {:.0}/s",
            figures.raw_consume.0.last().copied().unwrap_or_default(),
            drain.rate
        );
    }

    for run in 1..=o.runs {
        info!("run {run}/{}: drain with BATCH_SIZE=1", o.runs);
        let single = ours::drain(sandbox, o.drain_single_count as u64, 1).await?;
        figures.drain_single.push(single.rate);
        info!("one per transaction {:.0}/s", single.rate);
    }

    Ok(())
}

async fn measure_end_to_end(sandbox: &Sandbox, o: &Options, figures: &mut Figures) -> Result<()> {
    let max = match o.e2e_rate {
        Some(rate) => rate * 2.0,
        None => {
            for run in 1..=o.runs {
                info!("run {run}/{}: pipeline maximum, closed loop", o.runs);
                let pipeline = ours::pipeline_throughput(
                    sandbox,
                    o.publish_channels,
                    o.batch_size,
                    o.connections,
                    o.requests as u64,
                )
                .await?;
                figures.pipeline_accepted.push(pipeline.accepted);
                figures.pipeline_committed.push(pipeline.committed);
                figures.pipeline_max.push(pipeline.rate());
            }
            figures.pipeline_max.median()
        }
    };
    figures.e2e_rate = max * 0.5;
    figures.e2e = Some(end_to_end_runs(sandbox, o, figures.e2e_rate, figures).await?);

    let ingest_max = figures.ingest_throughput.median();
    if o.e2e_rate.is_none() && !ingest_max.is_nan() {
        let rate = ingest_max * 0.5;
        info!("end to end at half of ingest's own maximum, {rate:.0}/s, for comparison");
        let latency = end_to_end_runs(sandbox, o, rate, figures).await?;
        figures.e2e_at_half_ingest = Some((rate, latency));
    }
    Ok(())
}

/// Runs the end-to-end load `o.runs` times at `rate` and returns the median latencies,
/// counting failures and early rows into `figures`.
async fn end_to_end_runs(
    sandbox: &Sandbox,
    o: &Options,
    rate: f64,
    figures: &mut Figures,
) -> Result<LatencySummary> {
    let total = (rate * o.open_seconds) as u64;
    let mut runs = Vec::new();
    for run in 1..=o.runs {
        info!("run {run}/{}: end to end at {rate:.0}/s", o.runs);
        let e2e = ours::end_to_end(
            sandbox,
            o.publish_channels,
            o.batch_size,
            o.connections,
            rate,
            total,
        )
        .await?;
        info!("end-to-end p99 {:.2} ms", e2e.latency.p99);
        figures.e2e_failed += e2e.failed;
        figures.e2e_early += e2e.visible_before_answer;
        runs.push(e2e.latency);
    }
    Ok(LatencySummary::median_of(&runs))
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    v: String,
}

/// Describes the machine and the software the run measured.
pub fn describe_machine(options: &Options) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    let postgres =
        diesel::Connection::establish(&format!("{}/postgres", sandbox::database_server()))
            .ok()
            .and_then(|mut conn: diesel::PgConnection| {
                sql_query("SELECT current_setting('server_version') AS v")
                    .get_result::<Version>(&mut conn)
                    .ok()
            })
            .map_or_else(|| "unknown".into(), |v| v.v);
    let command_output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };

    Machine {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        cores: http_workers(),
        memory,
        cpu,
        load,
        postgres,
        rabbitmq: command_output("rabbitmqctl", &["version"]),
        commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
        settings: format!(
            "INGEST_WORKERS={}, PUBLISH_CHANNELS={}, BATCH_SIZE={}, BATCH_MAX_WAIT_MS=0 and \
             BATCH_WRITERS=2 (defaults), {} connections, synchronous_commit on",
            http_workers(),
            options.publish_channels,
            options.batch_size,
            options.connections
        ),
    }
}

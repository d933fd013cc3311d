//! The processor's Prometheus metrics, served at `/metrics`, and the task that keeps the
//! queue-depth gauges current.

use crate::settings::Settings;
use lapin::options::QueueDeclareOptions;
use log::debug;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use shared::amqp;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// Every metric the processor exports. Labels never carry message ids or numbers.
pub struct ProcessorMetrics {
    registry: Registry,
    /// Reports written for the first time, by canonical status.
    pub reports: IntCounterVec,
    /// Reports that were already stored (resends and redeliveries).
    pub duplicates: IntCounter,
    /// Deliveries the broker flagged as redelivered.
    pub redeliveries: IntCounter,
    /// Messages sent to the dead-letter queue, by kind: `undecodable` or `refused`.
    pub dead_letters: IntCounterVec,
    /// Batches retried after a transient database failure.
    pub write_retries: IntCounter,
    /// Reports per batch.
    pub batch_size: Histogram,
    /// Time to write one batch, retries excluded.
    pub write_seconds: Histogram,
    /// Age of each report of a committed batch, duplicates included: from ingest receiving
    /// it to the commit. For new reports this is the pipeline's end-to-end latency, read
    /// off the clocks of two hosts; a redelivered report shows how long it was held up.
    pub commit_age_seconds: Histogram,
    /// Messages waiting per queue (`reports` is the consumer lag, `quarantine` the
    /// quarantine size), sampled every few seconds.
    pub queue_messages: IntGaugeVec,
}

impl ProcessorMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<ProcessorMetrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("dlr_processor".into()), None)?;
        let reports = IntCounterVec::new(
            Opts::new(
                "reports_total",
                "Reports written for the first time, by status",
            ),
            &["status"],
        )?;
        let duplicates = IntCounter::new("duplicates_total", "Reports already stored")?;
        let redeliveries = IntCounter::new("redeliveries_total", "Redelivered deliveries")?;
        let dead_letters = IntCounterVec::new(
            Opts::new("dead_letters_total", "Messages dead-lettered, by kind"),
            &["kind"],
        )?;
        let write_retries = IntCounter::new("write_retries_total", "Batches retried")?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("batch_size", "Reports per batch").buckets(vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
        )?;
        let write_seconds = Histogram::with_opts(
            HistogramOpts::new("batch_write_seconds", "Time to write one batch").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let commit_age_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "report_commit_age_seconds",
                "From ingest receiving a report to its commit",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
            ]),
        )?;
        let queue_messages = IntGaugeVec::new(
            Opts::new("queue_messages", "Messages waiting per queue"),
            &["queue"],
        )?;

        registry.register(Box::new(reports.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        registry.register(Box::new(redeliveries.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(write_retries.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(write_seconds.clone()))?;
        registry.register(Box::new(commit_age_seconds.clone()))?;
        registry.register(Box::new(queue_messages.clone()))?;
        Ok(ProcessorMetrics {
            registry,
            reports,
            duplicates,
            redeliveries,
            dead_letters,
            write_retries,
            batch_size,
            write_seconds,
            commit_age_seconds,
            queue_messages,
        })
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// How often the queue depths are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the depth of the report, dead-letter and quarantine queues until shutdown,
/// on a connection of its own so a slow sample never delays consuming.
pub async fn sample_queue_depths(
    settings: Arc<Settings>,
    metrics: Arc<ProcessorMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let queues = [
        ("reports", settings.amqp.queue.clone()),
        ("dead_letter", settings.amqp.dead_letter_queue.clone()),
        ("quarantine", settings.amqp.quarantine_queue.clone()),
    ];
    let mut connection = None;
    loop {
        if connection.is_none() {
            connection = amqp::connect(&settings.amqp, "dlr-processor-metrics")
                .await
                .ok();
        }
        if let Some(conn) = &connection {
            for (label, queue) in &queues {
                let depth = async {
                    let channel = conn.create_channel().await?;
                    let passive = QueueDeclareOptions {
                        passive: true,
                        durable: true,
                        ..QueueDeclareOptions::default()
                    };
                    let declared = channel
                        .queue_declare(queue.as_str().into(), passive, Default::default())
                        .await?;
                    let _ = channel.close(200, "sampled".into()).await;
                    Ok::<_, lapin::Error>(declared.message_count())
                };
                match depth.await {
                    Ok(n) => metrics
                        .queue_messages
                        .with_label_values(&[label])
                        .set(i64::from(n)),
                    Err(e) => debug!("queue depth not sampled queue={queue} error={e}"),
                }
            }
            if !conn.status().connected() {
                connection = None;
            }
        }

        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

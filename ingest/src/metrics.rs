//! Ingest's Prometheus metrics, served at `/metrics`.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

/// Every metric ingest exports. Labels never carry message ids, numbers or secrets.
pub struct IngestMetrics {
    registry: Registry,
    /// Requests to `/dlr` by outcome: `accepted` or the error code of the answer.
    pub requests: IntCounterVec,
    /// Accepted reports by canonical status.
    pub reports: IntCounterVec,
    /// Time from publishing a report to the broker's confirm, for confirmed reports.
    pub confirm_seconds: Histogram,
    /// Refused requests by what happened to them: `kept`, `over_budget` or `failed`.
    pub quarantined: IntCounterVec,
}

impl IngestMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<IngestMetrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("dlr_ingest".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests to /dlr by outcome"),
            &["outcome"],
        )?;
        let reports = IntCounterVec::new(
            Opts::new("reports_total", "Accepted reports by canonical status"),
            &["status"],
        )?;
        let confirm_seconds = Histogram::with_opts(
            HistogramOpts::new("publish_confirm_seconds", "Publish-to-confirm latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
        )?;
        let quarantined = IntCounterVec::new(
            Opts::new("quarantine_total", "Refused requests by quarantine result"),
            &["result"],
        )?;

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(reports.clone()))?;
        registry.register(Box::new(confirm_seconds.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        Ok(IngestMetrics {
            registry,
            requests,
            reports,
            confirm_seconds,
            quarantined,
        })
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

//! The figures of a run, the targets they are held to, and the Markdown they are
//! written as.

use crate::{
    options::Options,
    ours::{Growth, Soak},
    stats::{median, LatencySummary},
};
use std::fmt::Write as _;

/// The values of one measurement over its repeated runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series(pub Vec<f64>);

impl Series {
    /// Adds one run's value.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// The median of the runs; NaN when there are none.
    pub fn median(&self) -> f64 {
        median(&self.0).unwrap_or(f64::NAN)
    }

    /// Every run's value, rounded for reading.
    pub fn runs_text(&self) -> String {
        let runs: Vec<String> = self.0.iter().map(|v| number(*v)).collect();
        runs.join(", ")
    }
}

/// Latencies at one open-loop rate: ingest's and the raw publisher's.
#[derive(Debug, Clone)]
pub struct LatencyPoint {
    /// The rate as a fraction of ingest's closed-loop maximum.
    pub fraction: f64,
    /// Requests (and messages) a second.
    pub rate: f64,
    /// Ingest, from scheduled send to the 200, median of runs.
    pub ingest: LatencySummary,
    /// Raw publish, from scheduled publish to the confirm, median of runs.
    pub raw: LatencySummary,
    /// Ingest requests not answered 200, over all runs.
    pub ingest_failed: u64,
}

/// Everything one benchmark run measured; a part that did not run leaves its fields
/// empty.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Bare actix-web handler, requests a second.
    pub bare_http: Series,
    /// Validation alone on one thread, requests a second.
    pub validation: Series,
    /// Raw publish with confirms, messages a second.
    pub raw_publish: Series,
    /// Ingest under the closed loop, requests a second.
    pub ingest_throughput: Series,
    /// Ingest requests not answered 200 in the closed loop, over all runs.
    pub ingest_failed: u64,
    /// Ingest's peak resident memory after each closed-loop run, MiB.
    pub ingest_peak: Series,
    /// Latencies at each open-loop rate.
    pub latency: Vec<LatencyPoint>,
    /// Raw consume, messages a second.
    pub raw_consume: Series,
    /// Raw batched write, reports a second.
    pub raw_write: Series,
    /// Processor drain with the default batch size, reports a second.
    pub drain: Series,
    /// Processor drain with one report per transaction, reports a second.
    pub drain_single: Series,
    /// The processor's peak resident memory after each batched drain, MiB.
    pub processor_peak: Series,
    /// Ingest and the processor together under a closed loop: requests a second accepted.
    pub pipeline_accepted: Series,
    /// The same runs: reports a second committed.
    pub pipeline_committed: Series,
    /// The same runs: the smaller of the two, the pipeline's maximum.
    pub pipeline_max: Series,
    /// End-to-end rate, requests a second: half the pipeline's maximum.
    pub e2e_rate: f64,
    /// End-to-end latencies, median of runs.
    pub e2e: Option<LatencySummary>,
    /// End-to-end requests not answered 200, over all runs.
    pub e2e_failed: u64,
    /// Rows visible before their 200 was read, over all runs.
    pub e2e_early: usize,
    /// For comparison, end-to-end latencies at half of ingest's own maximum: the rate and
    /// the median of runs.
    pub e2e_at_half_ingest: Option<(f64, LatencySummary)>,
    /// The soak run, when one ran.
    pub soak: Option<Soak>,
}

/// A target from the issue: met, missed, or not measured in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The figure meets its target.
    Pass,
    /// The figure misses its target.
    Short,
    /// There is no figure to judge.
    NotRun,
}

impl Mark {
    fn at_least(value: f64, target: f64) -> Mark {
        Mark::judge(value, value >= target)
    }

    fn at_most(value: f64, target: f64) -> Mark {
        Mark::judge(value, value <= target)
    }

    fn judge(value: f64, met: bool) -> Mark {
        match (value.is_nan(), met) {
            (true, _) => Mark::NotRun,
            (false, true) => Mark::Pass,
            (false, false) => Mark::Short,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Short => "**short**",
            Mark::NotRun => "not run",
        }
    }
}

/// One line of the main table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// Our figure.
    pub ours: String,
    /// The ceiling it is compared with.
    pub ceiling: String,
    /// Ours divided by the ceiling, where that means something.
    pub ratio: String,
    /// The target from the issue.
    pub target: String,
    /// Whether the target is met.
    pub mark: Mark,
}

impl Figures {
    /// The combined ceiling of consuming and writing on a shared CPU:
    /// `1 / (1/consume + 1/write)`.
    pub fn drain_ceiling(&self) -> f64 {
        1.0 / (1.0 / self.raw_consume.median() + 1.0 / self.raw_write.median())
    }

    /// The latency point at half of ingest's maximum rate, if it was measured.
    pub fn half_rate(&self) -> Option<&LatencyPoint> {
        self.latency
            .iter()
            .find(|p| (p.fraction - 0.5).abs() < 1e-9)
    }

    /// The rows of the main table, each with its target and mark.
    pub fn rows(&self, options: &Options) -> Vec<Row> {
        let mut rows = Vec::new();
        let ingest = self.ingest_throughput.median();

        let raw = self.raw_publish.median();
        rows.push(Row {
            what: format!(
                "ingest throughput, closed loop, {} connections",
                options.connections
            ),
            ours: rate(ingest),
            ceiling: format!(
                "raw publish + confirm, {} in flight on {} channels: {}",
                options.connections,
                options.publish_channels,
                rate(raw)
            ),
            ratio: ratio(ingest / raw),
            target: "≥ 0.70".into(),
            mark: Mark::at_least(ingest / raw, 0.7),
        });
        rows.push(Row {
            what: "ingest throughput vs the HTTP stack".into(),
            ours: rate(ingest),
            ceiling: format!("bare actix-web 200: {}", rate(self.bare_http.median())),
            ratio: ratio(ingest / self.bare_http.median()),
            target: "—".into(),
            mark: Mark::NotRun,
        });
        rows.push(Row {
            what: "ingest throughput vs validation".into(),
            ours: rate(ingest),
            ceiling: format!(
                "parse_report alone, one thread: {}",
                rate(self.validation.median())
            ),
            ratio: ratio(ingest / self.validation.median()),
            target: "—".into(),
            mark: Mark::NotRun,
        });

        let (ours_p99, raw_p99, at) = match self.half_rate() {
            Some(p) => (p.ingest.p99, p.raw.p99, rate(p.rate)),
            None => (f64::NAN, f64::NAN, "—".into()),
        };
        rows.push(Row {
            what: format!("ingest p99 latency at half max rate ({at})"),
            ours: ms(ours_p99),
            ceiling: format!("raw confirm p99 at the same rate: {}", ms(raw_p99)),
            ratio: ratio(ours_p99 / raw_p99),
            target: "≤ 5".into(),
            mark: Mark::at_most(ours_p99 / raw_p99, 5.0),
        });

        let drain = self.drain.median();
        let ceiling = self.drain_ceiling();
        rows.push(Row {
            what: format!(
                "processor drain, {} reports, BATCH_SIZE={}",
                options.drain_count, options.batch_size
            ),
            ours: rate(drain),
            ceiling: format!(
                "1/(1/consume + 1/write) = {} (consume {}, write {})",
                rate(ceiling),
                rate(self.raw_consume.median()),
                rate(self.raw_write.median())
            ),
            ratio: ratio(drain / ceiling),
            target: "≥ 0.80".into(),
            mark: Mark::at_least(drain / ceiling, 0.8),
        });

        let single = self.drain_single.median();
        rows.push(Row {
            what: format!(
                "batched vs one report per transaction ({} reports, BATCH_SIZE=1)",
                options.drain_single_count
            ),
            ours: rate(drain),
            ceiling: format!("BATCH_SIZE=1: {}", rate(single)),
            ratio: format!("{:.1}×", drain / single),
            target: "≥ 15×".into(),
            mark: Mark::at_least(drain / single, 15.0),
        });

        let pipeline_max = self.pipeline_max.median();
        if !pipeline_max.is_nan() {
            rows.push(Row {
                what: format!(
                    "pipeline maximum: ingest and processor together, closed loop, {} \
                     connections",
                    options.connections
                ),
                ours: rate(pipeline_max),
                ceiling: format!(
                    "accepted {}, committed {}",
                    rate(self.pipeline_accepted.median()),
                    rate(self.pipeline_committed.median())
                ),
                ratio: "—".into(),
                target: "—".into(),
                mark: Mark::NotRun,
            });
        }
        let e2e_p99 = self.e2e.map_or(f64::NAN, |e| e.p99);
        rows.push(Row {
            what: format!(
                "end-to-end p99, 200 to row visible, at half the pipeline maximum ({})",
                rate(self.e2e_rate)
            ),
            ours: ms(e2e_p99),
            ceiling: "—".into(),
            ratio: "—".into(),
            target: "≤ 100 ms".into(),
            mark: Mark::at_most(e2e_p99, 100.0),
        });
        if let Some((at, latency)) = &self.e2e_at_half_ingest {
            rows.push(Row {
                what: format!(
                    "end-to-end p99 at half of ingest's own maximum ({}), for comparison",
                    rate(*at)
                ),
                ours: ms(latency.p99),
                ceiling: "—".into(),
                ratio: "—".into(),
                target: "—".into(),
                mark: Mark::NotRun,
            });
        }

        let ingest_peak = self.ingest_peak.median();
        rows.push(Row {
            what: "ingest peak resident memory (VmHWM) after the closed loop".into(),
            ours: mib(ingest_peak),
            ceiling: "—".into(),
            ratio: "—".into(),
            target: "≤ 50 MiB".into(),
            mark: Mark::at_most(ingest_peak, 50.0),
        });
        let processor_peak = self.processor_peak.median();
        rows.push(Row {
            what: "processor peak resident memory (VmHWM) after the drain".into(),
            ours: mib(processor_peak),
            ceiling: "—".into(),
            ratio: "—".into(),
            target: "≤ 100 MiB".into(),
            mark: Mark::at_most(processor_peak, 100.0),
        });

        for (name, pick) in [
            (
                "ingest",
                (|s: &Soak| &s.ingest) as fn(&Soak) -> &Vec<(f64, f64)>,
            ),
            ("processor", |s: &Soak| &s.processor),
        ] {
            let growth = self.soak.as_ref().and_then(|s| Growth::of(pick(s)));
            let minutes = self.soak.as_ref().map_or(0, |s| s.minutes);
            rows.push(match growth {
                Some(g) => Row {
                    what: format!("{name} resident memory over a {minutes}-minute soak"),
                    ours: format!("{} → {}", mib(g.early_mib), mib(g.late_mib)),
                    ceiling: "—".into(),
                    ratio: format!("{:+.2} MiB/min trend", g.trend_mib_per_min),
                    target: "no growth".into(),
                    mark: if g.is_flat() { Mark::Pass } else { Mark::Short },
                },
                None => Row {
                    what: format!("{name} resident memory over a soak (`--soak-minutes 10`)"),
                    ours: "—".into(),
                    ceiling: "—".into(),
                    ratio: "—".into(),
                    target: "no growth".into(),
                    mark: Mark::NotRun,
                },
            });
        }

        rows
    }

    /// The whole results document: machine, settings, the main table, latencies and
    /// every run's values.
    pub fn markdown(&self, options: &Options, machine: &Machine) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark results\n");
        let _ = writeln!(
            out,
            "Written by `dlr-bench{}` on {}. Each figure is the median of {} runs; ratios \
             compare figures from this same run.\n",
            if options.quick { " --quick" } else { "" },
            machine.date,
            options.runs
        );

        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        for (key, value) in machine.lines() {
            let _ = writeln!(out, "| {key} | {value} |");
        }

        let _ = writeln!(out, "\n## Figures against ceilings and targets\n");
        let _ = writeln!(
            out,
            "| measurement | ours | ceiling | ratio | target | mark |\n|---|---|---|---|---|---|"
        );
        for row in self.rows(options) {
            let mark = match (row.mark, row.target.as_str()) {
                (Mark::NotRun, "—") => "info",
                (mark, _) => mark.text(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.what, row.ours, row.ceiling, row.ratio, row.target, mark
            );
        }

        self.latency_section(&mut out);
        self.runs_section(&mut out);
        self.soak_section(&mut out);
        out
    }

    fn latency_section(&self, out: &mut String) {
        if self.latency.is_empty() && self.e2e.is_none() {
            return;
        }
        let _ = writeln!(
            out,
            "\n## Latency, open loop (ms, from each request's scheduled time)\n"
        );
        let _ = writeln!(
            out,
            "| load | rate | p50 | p90 | p99 | p99.9 | max | not 200 |\n\
             |---|---|---|---|---|---|---|---|"
        );
        for point in &self.latency {
            let load = format!("{:.0} % of max", point.fraction * 100.0);
            latency_line(
                out,
                &format!("ingest, {load}"),
                point.rate,
                &point.ingest,
                point.ingest_failed,
            );
            latency_line(
                out,
                &format!("raw confirm, {load}"),
                point.rate,
                &point.raw,
                0,
            );
        }
        if let Some(e2e) = &self.e2e {
            latency_line(
                out,
                "end to end, 200 to row visible",
                self.e2e_rate,
                e2e,
                self.e2e_failed,
            );
            if let Some((at, latency)) = &self.e2e_at_half_ingest {
                latency_line(
                    out,
                    "end to end, at half of ingest's own maximum",
                    *at,
                    latency,
                    0,
                );
            }
            let _ = writeln!(
                out,
                "\nEnd to end: {} rows were visible before the client had read their 200 \
                 (counted as 0 ms).",
                self.e2e_early
            );
        }
    }

    fn runs_section(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Every run\n");
        let _ = writeln!(out, "| measurement | median | runs |\n|---|---|---|");
        let series = [
            ("bare actix-web 200, req/s", &self.bare_http),
            ("validation alone, one thread, req/s", &self.validation),
            ("raw publish + confirm, msg/s", &self.raw_publish),
            ("ingest closed loop, req/s", &self.ingest_throughput),
            ("ingest peak RSS, MiB", &self.ingest_peak),
            ("raw consume, msg/s", &self.raw_consume),
            ("raw batched write, reports/s", &self.raw_write),
            ("processor drain, batched, reports/s", &self.drain),
            (
                "processor drain, BATCH_SIZE=1, reports/s",
                &self.drain_single,
            ),
            ("processor peak RSS, MiB", &self.processor_peak),
            (
                "pipeline closed loop, accepted req/s",
                &self.pipeline_accepted,
            ),
            (
                "pipeline closed loop, committed reports/s",
                &self.pipeline_committed,
            ),
        ];
        for (name, values) in series {
            if values.0.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {name} | {} | {} |",
                number(values.median()),
                values.runs_text()
            );
        }
        if self.ingest_failed > 0 {
            let _ = writeln!(
                out,
                "\nIngest answered {} closed-loop requests with something other than 200.",
                self.ingest_failed
            );
        }
    }

    fn soak_section(&self, out: &mut String) {
        let Some(soak) = &self.soak else {
            return;
        };
        let _ = writeln!(
            out,
            "\n## Soak\n\n{} minutes at {} requests a second: {} accepted, {} not 200. \
             Peak RSS: ingest {}, processor {}.\n",
            soak.minutes,
            number(soak.rate),
            soak.accepted,
            soak.failed,
            mib(soak.ingest_peak),
            mib(soak.processor_peak)
        );
        let _ = writeln!(
            out,
            "| minute | ingest RSS | processor RSS |\n|---|---|---|"
        );
        for (i, p) in soak.ingest.iter().zip(&soak.processor) {
            if (i.0 as u64) % 60 < 5 {
                let _ = writeln!(out, "| {:.0} | {} | {} |", i.0 / 60.0, mib(i.1), mib(p.1));
            }
        }
    }
}

fn latency_line(out: &mut String, what: &str, at: f64, l: &LatencySummary, failed: u64) {
    let _ = writeln!(
        out,
        "| {what} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {failed} |",
        rate(at),
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    );
}

/// A rate with thousands separators and `/s`.
fn rate(value: f64) -> String {
    if value.is_nan() {
        return "—".into();
    }
    format!("{}/s", number(value))
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        return "—".into();
    }
    format!("{value:.2} ms")
}

fn mib(value: f64) -> String {
    if value.is_nan() {
        return "—".into();
    }
    format!("{value:.1} MiB")
}

fn ratio(value: f64) -> String {
    if value.is_nan() || value.is_infinite() {
        return "—".into();
    }
    format!("{value:.2}")
}

/// A whole number with thousands separators, or one decimal below 100.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        return "—".into();
    }
    if value.abs() < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

/// What the figures were measured on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// When the run started, UTC.
    pub date: String,
    /// Cores the benchmark may use.
    pub cores: usize,
    /// Total memory.
    pub memory: String,
    /// CPU model.
    pub cpu: String,
    /// Load average when the run started (the machine is shared).
    pub load: String,
    /// PostgreSQL server version.
    pub postgres: String,
    /// RabbitMQ server version.
    pub rabbitmq: String,
    /// Commit of the code measured.
    pub commit: String,
    /// Ingest HTTP workers, processor batch and channel settings.
    pub settings: String,
}

impl Machine {
    fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("date", self.date.clone()),
            ("cores (nproc)", self.cores.to_string()),
            ("memory", self.memory.clone()),
            ("CPU", self.cpu.clone()),
            ("load average at start", self.load.clone()),
            ("PostgreSQL", self.postgres.clone()),
            ("RabbitMQ", self.rabbitmq.clone()),
            ("commit", self.commit.clone()),
            ("settings", self.settings.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(-4500.0), "-4,500");
    }

    #[test]
    fn marks_follow_the_targets_and_missing_figures_are_not_run() {
        assert_eq!(Mark::at_least(0.71, 0.7), Mark::Pass);
        assert_eq!(Mark::at_least(0.69, 0.7), Mark::Short);
        assert_eq!(Mark::at_most(101.0, 100.0), Mark::Short);
        assert_eq!(Mark::at_most(f64::NAN, 100.0), Mark::NotRun);
    }
}

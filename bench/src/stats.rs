//! The statistics every figure goes through: medians of repeated runs and latency
//! percentiles.

use std::time::Duration;

/// The median of `values`: the middle value, or the mean of the two middle values when
/// there is an even number of them. `None` when there are no values. NaN values are
/// ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);

    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        Some(sorted[middle])
    } else {
        Some((sorted[middle - 1] + sorted[middle]) / 2.0)
    }
}

/// The `p`-th percentile (0 to 100) of `sorted`, by the nearest-rank method: the smallest
/// value such that at least `p` per cent of the values are at or below it. `None` when
/// there are no values; `p` outside 0..=100 is clamped.
///
/// `sorted` must be in ascending order, as [`Latencies::new`] keeps it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The small allowance keeps 99.9 % of 1000 at rank 999 despite rounding in `p / 100`.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;

    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latencies of one run, sorted once so that any percentile is a lookup.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    /// Takes the latencies in any order.
    pub fn new(mut latencies: Vec<Duration>) -> Latencies {
        latencies.sort_unstable();
        Latencies { sorted: latencies }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether none were recorded.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile in milliseconds, NaN when there are no latencies.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.sorted, p).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    /// The largest latency in milliseconds, NaN when there are no latencies.
    pub fn max_ms(&self) -> f64 {
        self.percentile_ms(100.0)
    }
}

/// The percentiles reported for every latency measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Median latency, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest latency, ms.
    pub max: f64,
}

impl LatencySummary {
    /// The percentiles of one run.
    pub fn of(latencies: &Latencies) -> LatencySummary {
        LatencySummary {
            p50: latencies.percentile_ms(50.0),
            p90: latencies.percentile_ms(90.0),
            p99: latencies.percentile_ms(99.0),
            p999: latencies.percentile_ms(99.9),
            max: latencies.max_ms(),
        }
    }

    /// Each percentile's median across runs.
    pub fn median_of(runs: &[LatencySummary]) -> LatencySummary {
        let pick = |f: fn(&LatencySummary) -> f64| {
            let values: Vec<f64> = runs.iter().map(f).collect();
            median(&values).unwrap_or(f64::NAN)
        };
        LatencySummary {
            p50: pick(|s| s.p50),
            p90: pick(|s| s.p90),
            p99: pick(|s| s.p99),
            p999: pick(|s| s.p999),
            max: pick(|s| s.max),
        }
    }
}

/// A least-squares line through `(x, y)` points: its slope, `None` with fewer than two
/// distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;

    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if variance == 0.0 {
        return None;
    }

    Some(covariance / variance)
}

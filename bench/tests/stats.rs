//! The statistics every reported figure goes through.

use bench::stats::{median, percentile, slope, Latencies, LatencySummary};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_values() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[7.0]), Some(7.0));
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[f64::NAN, 5.0, 1.0, 3.0]), Some(3.0));
}

#[test]
fn percentiles_follow_the_nearest_rank_definition() {
    let sorted: Vec<Duration> = (1..=100).map(ms).collect();

    assert_eq!(percentile(&sorted, 50.0), Some(ms(50)));
    assert_eq!(percentile(&sorted, 99.0), Some(ms(99)));
    assert_eq!(percentile(&sorted, 99.9), Some(ms(100)));
    assert_eq!(percentile(&sorted, 100.0), Some(ms(100)));
    assert_eq!(percentile(&sorted, 0.0), Some(ms(1)));
    assert_eq!(percentile(&[], 50.0), None);
}

#[test]
fn a_percentile_of_few_values_is_one_of_them() {
    let sorted = [ms(10), ms(20), ms(30), ms(40)];

    assert_eq!(percentile(&sorted, 25.0), Some(ms(10)));
    assert_eq!(percentile(&sorted, 26.0), Some(ms(20)));
    assert_eq!(percentile(&sorted, 75.0), Some(ms(30)));
    assert_eq!(percentile(&sorted, 99.0), Some(ms(40)));
}

#[test]
fn latencies_are_sorted_before_percentiles_are_taken() {
    let shuffled: Vec<Duration> = (1..=1000).rev().map(ms).collect();

    let summary = LatencySummary::of(&Latencies::new(shuffled));

    assert_eq!(summary.p50, 500.0);
    assert_eq!(summary.p90, 900.0);
    assert_eq!(summary.p99, 990.0);
    assert_eq!(summary.p999, 999.0);
    assert_eq!(summary.max, 1000.0);
}

#[test]
fn the_summary_of_runs_takes_each_percentile_median_separately() {
    let run = |p99: f64| LatencySummary {
        p50: 1.0,
        p90: 2.0,
        p99,
        p999: p99 * 2.0,
        max: 50.0,
    };

    let summary = LatencySummary::median_of(&[run(9.0), run(3.0), run(5.0)]);

    assert_eq!(summary.p99, 5.0);
    assert_eq!(summary.p999, 10.0);
}

#[test]
fn the_slope_of_a_line_is_its_gradient() {
    let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 0.5 * x as f64)).collect();

    assert_eq!(slope(&points), Some(0.5));
    assert_eq!(slope(&[(1.0, 1.0)]), None);
    assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
}

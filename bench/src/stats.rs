//! Latency percentiles from every recorded sample.
//!
//! The load generator keeps every latency (8 bytes each: a 10 s run at 20,000 requests per
//! second holds 1.6 MB), so the percentiles are exact rather than bucketed, and no histogram
//! dependency is needed.

use std::time::Duration;

use serde::Serialize;

/// The latency distribution of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many samples it was computed from.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `samples` (nanoseconds, in any order; sorted in place), by the
    /// nearest-rank method: the p-th percentile is the smallest sample with at least p % of
    /// the samples at or below it. `None` without samples.
    pub fn of(samples: &mut [u64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Percentiles {
            samples: samples.len(),
            p50_ms: millis(nearest_rank(samples, 50_000)),
            p99_ms: millis(nearest_rank(samples, 99_000)),
            p999_ms: millis(nearest_rank(samples, 99_900)),
            max_ms: millis(samples.last().copied().unwrap_or_default()),
        })
    }
}

/// Parts per hundred thousand: 99.9 % is 99,900.
const WHOLE: u128 = 100_000;

/// The nearest-rank percentile of `sorted` (ascending, not empty), the percentile given in
/// parts per hundred thousand. Integer arithmetic: in floating point, 99.9 % of 1,000 is
/// 999.0000000000001, whose ceiling would be off by one.
fn nearest_rank(sorted: &[u64], per_hundred_thousand: u128) -> u64 {
    let n = sorted.len() as u128;
    // ceil(n * p / WHOLE) as a 1-based rank, at most n.
    let rank = (n * per_hundred_thousand).div_ceil(WHOLE);
    let index = usize::try_from(rank)
        .unwrap_or(usize::MAX)
        .clamp(1, sorted.len())
        - 1;
    sorted.get(index).copied().unwrap_or_default()
}

fn millis(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// A duration as nanoseconds, saturating (a request never takes 584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> u64 {
        millis * 1_000_000
    }

    #[test]
    fn no_samples_no_percentiles() {
        assert_eq!(Percentiles::of(&mut []), None);
    }

    #[test]
    fn one_to_a_thousand_milliseconds() {
        // Shuffled, so that sorting is part of what is tested.
        let mut samples: Vec<u64> = (1..=1000).rev().map(ms).collect();
        samples.swap(3, 700);
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!(p.samples, 1000);
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let p = Percentiles::of(&mut [ms(3)]).unwrap();
        assert_eq!(
            (p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms),
            (3.0, 3.0, 3.0, 3.0)
        );
    }

    #[test]
    fn a_rare_outlier_shows_in_the_tail_only() {
        // 999 fast requests and one slow one: the median and p99 stay fast, p99.9 is the
        // 999th sample (still fast), the maximum is the outlier.
        let mut samples = vec![ms(1); 999];
        samples.push(ms(50));
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!((p.p50_ms, p.p99_ms, p.p999_ms), (1.0, 1.0, 1.0));
        assert_eq!(p.max_ms, 50.0);
        // Two outliers in a thousand reach p99.9.
        samples[0] = ms(40);
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!(p.p999_ms, 40.0);
        assert_eq!(p.p99_ms, 1.0);
    }

    #[test]
    fn nanoseconds_saturate() {
        assert_eq!(nanos(Duration::from_micros(5)), 5_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}

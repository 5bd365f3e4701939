//! Group commit sized by load: how long the writer lingers for more records before it
//! syncs a batch.
//!
//! Taking only what is already queued makes the writer sync as often as the disk allows
//! whatever the load: at half the broker's peak it synced about 1,650 times a second for
//! 4 or 5 records each, and the syncs and the wake-ups around them were a quarter of the
//! broker's CPU. So the writer keeps a running estimate of the arrival rate and, when it
//! expects more records within a short bound, waits for them before it syncs:
//!
//! - at most the configured bound (`[audit] commit_linger`, [`DEFAULT_LINGER`]) after the
//!   writer took the batch, and never longer than the estimate says the batch takes to
//!   reach [`FILL`] records (a bound of zero turns lingering off);
//! - only when at least [`WORTH_WAITING`] more records are expected in that time, so a
//!   lone request at low load is synced at once and pays nothing;
//! - never when the batch already holds [`FILL`] records, or the log is closing.
//!
//! The rule stays: no credential leaves before its record is durable. Lingering only
//! delays the sync, and with it the answers, by at most that bound.

use std::time::{Duration, Instant};

/// The longest a batch's first record waits for others before the sync, unless
/// `[audit] commit_linger` says otherwise.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1);

/// The most `[audit] commit_linger` may be: beyond it, answers wait on the disk's batch
/// more than on the disk.
pub const MAX_LINGER: Duration = Duration::from_millis(10);

/// A batch this large is synced without waiting.
pub(super) const FILL: usize = 32;

/// Lingering pays only when it is expected to gather at least this many more records.
pub(super) const WORTH_WAITING: f64 = 2.0;

/// How much of a new rate sample goes into the estimate.
const SMOOTHING: f64 = 0.2;

/// The writer's estimate of how fast records arrive.
#[derive(Debug)]
pub(super) struct Pace {
    /// The longest a batch waits for more.
    bound: Duration,
    /// Records per second, smoothed.
    rate: f64,
    /// When the previous batch began (its first record was received).
    last: Option<Instant>,
}

impl Pace {
    /// A pace that lingers at most `bound` (zero: never).
    pub(super) fn new(bound: Duration) -> Self {
        Pace {
            bound,
            rate: 0.0,
            last: None,
        }
    }

    /// How long to wait for more, for a batch of `have` records just taken. `None`: sync
    /// now.
    pub(super) fn linger(&self, have: usize) -> Option<Duration> {
        if have >= FILL || !(self.rate.is_finite() && self.rate > 0.0) {
            return None;
        }
        let missing = (FILL - have) as f64;
        let wait = self.bound.min(Duration::from_secs_f64(missing / self.rate));
        (self.rate * wait.as_secs_f64() >= WORTH_WAITING).then_some(wait)
    }

    /// A batch of `records` began at `began`: the records that arrived since the previous
    /// batch began, over that time, update the estimate.
    pub(super) fn observe(&mut self, records: usize, began: Instant) {
        if let Some(last) = self.last {
            let elapsed = began.saturating_duration_since(last).as_secs_f64();
            // Two batches within a microsecond say nothing about a rate.
            if elapsed > 1e-6 {
                let sample = records as f64 / elapsed;
                self.rate = if self.rate > 0.0 {
                    self.rate + SMOOTHING * (sample - self.rate)
                } else {
                    sample
                };
            }
        }
        self.last = Some(began);
    }

    /// Records per second, as estimated now.
    #[cfg(test)]
    pub(super) fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pace that has seen `per_batch` records every `every` for a while.
    fn steady(per_batch: usize, every: Duration) -> (Pace, Instant) {
        let mut pace = Pace::new(DEFAULT_LINGER);
        let mut at = Instant::now();
        for _ in 0..50 {
            pace.observe(per_batch, at);
            at += every;
        }
        (pace, at)
    }

    #[test]
    fn the_rate_follows_the_arrivals() {
        let (pace, _) = steady(5, Duration::from_micros(625));
        assert!((pace.rate() - 8_000.0).abs() < 1.0, "{}", pace.rate());
        let (pace, _) = steady(1, Duration::from_millis(10));
        assert!((pace.rate() - 100.0).abs() < 0.1, "{}", pace.rate());
        // A first batch gives no rate; one in the same instant changes nothing.
        let mut pace = Pace::new(DEFAULT_LINGER);
        let at = Instant::now();
        pace.observe(10, at);
        assert_eq!(pace.rate(), 0.0);
        pace.observe(10, at);
        assert_eq!(pace.rate(), 0.0);
    }

    #[test]
    fn at_half_load_a_small_batch_waits_a_bounded_time() {
        // 8,000 records a second, five per batch: 27 more take 3.4 ms, so the whole
        // bound and never past it.
        let (pace, began) = steady(5, Duration::from_micros(625));
        assert_eq!(pace.linger(5), Some(DEFAULT_LINGER));
        // A bound of zero: never.
        let mut off = Pace::new(Duration::ZERO);
        for i in 0..50 {
            off.observe(5, began + Duration::from_micros(625) * i);
        }
        assert_eq!(off.linger(5), None);
    }

    #[test]
    fn a_fast_stream_waits_only_until_the_batch_should_fill() {
        // 64,000 a second: 27 more records take about 422 us.
        let (pace, _) = steady(32, Duration::from_micros(500));
        let wait = pace.linger(5).unwrap();
        assert!(
            wait > Duration::from_micros(400) && wait < Duration::from_micros(450),
            "{wait:?}"
        );
        // A full batch goes at once.
        assert_eq!(pace.linger(FILL), None);
        assert_eq!(pace.linger(FILL + 100), None);
    }

    #[test]
    fn at_low_load_nothing_waits() {
        // 1,000 a second: one more record expected within the bound, not worth it.
        let (pace, _) = steady(1, Duration::from_millis(1));
        assert_eq!(pace.linger(1), None);
        // Nothing known yet: no wait either.
        assert_eq!(Pace::new(DEFAULT_LINGER).linger(1), None);
        // Control: at 3,000 a second it is.
        let (pace, _) = steady(3, Duration::from_millis(1));
        assert!(pace.linger(1).is_some());
    }
}

//! Retrying with exponential backoff and jitter, the one way every Mayfly
//! component waits before trying again: the SDK's sources and revocation
//! watch, the agent's sync loop, the broker's Redis change feed.
//!
//! Jitter scales each wait by a random factor in [0.8, 1.0], so that many
//! clients that failed together do not retry in step, and a wait never
//! exceeds its cap.

use std::time::Duration;

/// Doubling waits from a first delay up to a cap, jittered.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice that, and so on up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first.min(cap),
        }
    }

    /// The next wait; each call doubles the one after, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        jittered(delay)
    }

    /// Back to the first wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.cap);
    }

    /// The wait after `failures` failures in a row, without keeping state:
    /// `first` doubled per failure after the first, capped, jittered.
    pub fn after_failures(first: Duration, cap: Duration, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        jittered(first.saturating_mul(1u32 << doublings).min(cap))
    }
}

/// `delay` scaled by a random factor in [0.8, 1.0]. Without randomness, no
/// jitter: the delay itself is still right.
pub fn jittered(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return delay;
    }
    let unit = f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX);
    delay.mul_f64(0.8 + 0.2 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(delay: Duration, nominal: Duration) -> bool {
        delay <= nominal && delay >= nominal.mul_f64(0.8)
    }

    #[test]
    fn waits_double_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for nominal_ms in [100, 200, 400, 800, 1600, 3200, 5000, 5000] {
            let delay = backoff.next_delay();
            let nominal = Duration::from_millis(nominal_ms);
            assert!(within(delay, nominal), "{delay:?} for {nominal:?}");
        }
        backoff.reset();
        assert!(within(backoff.next_delay(), Duration::from_millis(100)));
    }

    #[test]
    fn waits_after_failures_follow_the_same_curve() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        for (failures, nominal) in [(0, 1), (1, 1), (2, 2), (3, 4), (5, 16), (9, 30), (40, 30)] {
            let delay = Backoff::after_failures(first, cap, failures);
            assert!(
                within(delay, Duration::from_secs(nominal)),
                "{failures} failures: {delay:?}"
            );
        }
    }

    #[test]
    fn jitter_varies_and_never_lengthens() {
        let delays: std::collections::HashSet<_> =
            (0..20).map(|_| jittered(Duration::from_secs(10))).collect();
        assert!(delays.len() > 1);
        assert!(delays.iter().all(|d| within(*d, Duration::from_secs(10))));
    }
}

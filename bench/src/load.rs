//! The load itself: a closed loop (N requests always in flight, as fast as the server
//! answers) for peak throughput, and an open loop (requests sent on a fixed schedule,
//! whatever the server does) for latency at a given rate.
//!
//! Both run a warm-up, then a measured window. A request counts when it completes inside
//! the window (closed loop) or was due inside it (open loop). The open loop measures each
//! latency from the moment the request was due, not from when it was sent, so a server
//! that falls behind shows it in the percentiles instead of hiding it by slowing the
//! sender (coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::JoinSet;

use super::paths::Caller;
use super::stats::nanos;

/// How long the warm-up and the measured window last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phases {
    /// Requests sent but not counted.
    pub(crate) warmup: Duration,
    /// The window that is measured.
    pub(crate) measure: Duration,
}

/// What one run of one path measured (a load worker's report, as JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The latency of every request counted, nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// Requests counted that succeeded.
    pub(crate) requests: u64,
    /// Credentials they returned (a batch returns several).
    pub(crate) items: u64,
    /// Requests counted that failed.
    pub(crate) errors: u64,
    /// The first failure of the run, warm-up included.
    pub(crate) first_error: Option<String>,
    /// The measured window.
    pub(crate) window: Duration,
    /// Open loop: requests that were due but could not be sent before the end, because
    /// the in-flight limit was reached (the server fell far behind).
    pub(crate) not_sent: u64,
}

impl Outcome {
    /// Nothing yet, for a window of `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Outcome {
            window,
            ..Outcome::default()
        }
    }

    /// Credentials per second in the window.
    pub(crate) fn items_per_s(&self) -> f64 {
        per_second(self.items, self.window)
    }

    /// Successful requests per second in the window.
    pub(crate) fn requests_per_s(&self) -> f64 {
        per_second(self.requests, self.window)
    }

    fn record(&mut self, result: Result<u64, String>, latency: Duration, counted: bool) {
        match result {
            Ok(items) if counted => {
                self.requests += 1;
                self.items += items;
                self.latencies.push(nanos(latency));
            }
            Ok(_) => {}
            Err(error) => {
                if counted {
                    self.errors += 1;
                }
                self.first_error.get_or_insert(error);
            }
        }
    }

    pub(crate) fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.requests += other.requests;
        self.items += other.items;
        self.errors += other.errors;
        self.not_sent += other.not_sent;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

fn per_second(count: u64, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    count as f64 / window.as_secs_f64()
}

/// `concurrency` workers, each sending its next request as soon as the previous one is
/// answered, spread round robin over `callers` (one per connection).
pub(crate) async fn closed_loop(callers: &[Caller], concurrency: usize, phases: Phases) -> Outcome {
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for id in 0..concurrency {
        if let Some(caller) = callers.get(id % callers.len().max(1)) {
            workers.spawn(worker(caller.clone(), id, concurrency, start, phases));
        }
    }
    let mut total = Outcome::new(phases.measure);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(outcome) => total.merge(outcome),
            Err(error) => {
                total.record(Err(format!("worker failed: {error}")), Duration::ZERO, true)
            }
        }
    }
    total
}

async fn worker(
    mut caller: Caller,
    id: usize,
    stride: usize,
    start: Instant,
    phases: Phases,
) -> Outcome {
    let measure_from = start + phases.warmup;
    let until = measure_from + phases.measure;
    let mut outcome = Outcome::new(phases.measure);
    let mut sequence = id;
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let result = caller.call(sequence).await;
        sequence = sequence.wrapping_add(stride);
        let done = Instant::now();
        let failed = result.is_err();
        outcome.record(result, done - sent, done >= measure_from && done < until);
        if failed {
            // A server that refuses everything would otherwise be asked in a hot loop.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    outcome
}

/// Requests at a fixed `rate` per second, round robin over `callers`, with at most
/// `max_in_flight` outstanding, each timed from the moment it was due.
///
/// A thread of its own paces the requests with `sleep` (tens of microseconds late at
/// most, where the runtime's millisecond timer would send them in bursts and add up to
/// two milliseconds to every latency) and hands each to the runtime when it is due.
pub(crate) async fn open_loop(
    callers: &[Caller],
    rate: f64,
    max_in_flight: usize,
    phases: Phases,
) -> Outcome {
    let mut outcome = Outcome::new(phases.measure);
    if callers.is_empty() || !(rate.is_finite() && rate > 0.0) {
        return outcome;
    }
    let start = Instant::now();
    let schedule = Schedule {
        start,
        until: start + phases.warmup + phases.measure,
        rate,
        max_in_flight,
    };
    let measure_from = start + phases.warmup;
    let (results, mut completed) = mpsc::unbounded_channel();
    let pacer = {
        let callers = callers.to_vec();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || schedule.pace(&runtime, &callers, &results))
    };
    // The results are read once the pacer is done, not as they come: a receiver waiting on
    // each would be woken, on a thread of its own, once per request, and that hand-off
    // would be the load's, on the one core it has, during the measurement.
    let paced = pacer.await;
    // Ends once every request the pacer started has dropped its sender.
    while let Some((due, done, result)) = completed.recv().await {
        let counted = due >= measure_from && due < schedule.until;
        outcome.record(result, done.saturating_duration_since(due), counted);
    }
    match paced {
        Ok(not_sent) => outcome.not_sent = not_sent,
        Err(error) => outcome.record(Err(format!("pacer failed: {error}")), Duration::ZERO, true),
    }
    outcome
}

/// One request's due time, completion time and outcome.
type Completed = (Instant, Instant, Result<u64, String>);

/// When the requests of an open loop are due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    until: Instant,
    rate: f64,
    max_in_flight: usize,
}

impl Schedule {
    /// When request `n` is due.
    fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }

    /// Requests due before the end.
    fn total(&self) -> u64 {
        ((self.until - self.start).as_secs_f64() * self.rate).ceil() as u64
    }

    /// Starts each request on `runtime` when it is due (blocking: runs on a thread of its
    /// own); returns how many the in-flight limit kept from being sent before the end.
    fn pace(
        &self,
        runtime: &tokio::runtime::Handle,
        callers: &[Caller],
        results: &UnboundedSender<Completed>,
    ) -> u64 {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut n: u64 = 0;
        while n < self.total() {
            let due = self.due(n);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
            if in_flight.load(Ordering::Acquire) >= self.max_in_flight {
                if now >= self.until {
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            let index = usize::try_from(n).unwrap_or_default();
            if let Some(caller) = callers.get(index % callers.len().max(1)) {
                let (mut caller, results, in_flight) =
                    (caller.clone(), results.clone(), in_flight.clone());
                in_flight.fetch_add(1, Ordering::AcqRel);
                runtime.spawn(async move {
                    let result = caller.call(index).await;
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    // The receiver only goes away if the run was abandoned.
                    let _ = results.send((due, Instant::now(), result));
                });
            }
            n += 1;
        }
        self.total().saturating_sub(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_counts_only_what_is_in_the_window() {
        let mut outcome = Outcome::new(Duration::from_secs(2));
        outcome.record(Ok(1), Duration::from_millis(1), false);
        outcome.record(Ok(4), Duration::from_millis(2), true);
        outcome.record(Ok(4), Duration::from_millis(3), true);
        outcome.record(Err("early".into()), Duration::ZERO, false);
        outcome.record(Err("late".into()), Duration::ZERO, true);
        assert_eq!(outcome.requests, 2);
        assert_eq!(outcome.items, 8);
        assert_eq!(outcome.errors, 1);
        assert_eq!(outcome.latencies, [2_000_000, 3_000_000]);
        // The first error of the run, even from the warm-up.
        assert_eq!(outcome.first_error.as_deref(), Some("early"));
        assert_eq!(outcome.items_per_s(), 4.0);
        assert_eq!(outcome.requests_per_s(), 1.0);
        assert_eq!(Outcome::default().items_per_s(), 0.0);
    }
}

//! What the sources share: following an agent stream in the background,
//! reconnecting with backoff and jitter, owned by a guard that stops the
//! task when dropped.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::WorkloadError;
use super::client::UpdateStream;

/// The first wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Owns a background task: dropping the guard cancels it.
pub(crate) struct TaskGuard {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl TaskGuard {
    /// Spawns `run` with a token it must watch.
    pub(crate) fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(cancel.clone()));
        TaskGuard { cancel, task }
    }

    /// Whether the task is still running.
    pub(crate) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl fmt::Debug for TaskGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGuard")
            .field("running", &self.is_running())
            .finish()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Exponential backoff, doubling from [`MIN_BACKOFF`] to [`MAX_BACKOFF`],
/// each wait jittered by ±20 % so that many workloads restarted together
/// do not knock on a recovering agent in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { next: MIN_BACKOFF }
    }

    /// The next wait; each call doubles the one after, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(MAX_BACKOFF);
        jittered(delay)
    }

    /// Back to the shortest wait, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// `delay` scaled by a random factor in [0.8, 1.2].
pub(crate) fn jittered(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    // Without randomness, no jitter: the delay itself is still right.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return delay;
    }
    let unit = f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX);
    delay.mul_f64(0.8 + 0.4 * unit)
}

/// Sleeps for `delay`; `true` if cancelled first.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Opens a stream and reads its first update, waiting out an agent that
/// is not there or not ready yet (with backoff). `check` vets the update.
///
/// Refusals (no identity, permission denied, invalid argument) and
/// unusable responses are returned at once, so a misconfigured workload
/// hears why instead of waiting forever; callers bound the wait for an
/// absent agent with `tokio::time::timeout`.
pub(crate) async fn first_update<T, Open, Fut>(
    open: Open,
    check: impl Fn(&T) -> Result<(), WorkloadError>,
    what: &'static str,
) -> Result<(UpdateStream<T>, T), WorkloadError>
where
    Open: Fn() -> Fut,
    Fut: Future<Output = Result<UpdateStream<T>, WorkloadError>>,
{
    let mut backoff = Backoff::new();
    loop {
        let attempt = async {
            let mut stream = open().await?;
            let first = stream
                .next()
                .await
                .unwrap_or(Err(WorkloadError::StreamEnded))?;
            check(&first)?;
            Ok::<_, WorkloadError>((stream, first))
        };
        match attempt.await {
            Ok(found) => return Ok(found),
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "waiting for the agent's first {what}");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Follows a stream of updates until cancelled: `apply` gets each one;
/// when the stream fails or ends, it is reopened after a backoff.
///
/// Every error is retried (an identity can come back, an agent restarts)
/// except those retrying cannot fix (InvalidArgument): then the task stops
/// and says so, and the last applied update stays in use.
pub(crate) async fn follow<T, Open, Fut>(
    first: UpdateStream<T>,
    open: Open,
    mut apply: impl FnMut(T),
    cancel: CancellationToken,
    what: &'static str,
) where
    Open: Fn() -> Fut,
    Fut: Future<Output = Result<UpdateStream<T>, WorkloadError>>,
{
    let mut backoff = Backoff::new();
    let mut stream = Some(first);
    loop {
        let error = match stream.take() {
            Some(mut open_stream) => loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = open_stream.next() => next,
                };
                match next {
                    Some(Ok(update)) => {
                        backoff.reset();
                        apply(update);
                    }
                    Some(Err(error)) => break error,
                    None => break WorkloadError::StreamEnded,
                }
            },
            None => {
                let opened = tokio::select! {
                    () = cancel.cancelled() => return,
                    opened = open() => opened,
                };
                match opened {
                    Ok(opened) => {
                        stream = Some(opened);
                        continue;
                    }
                    Err(error) => error,
                }
            }
        };
        if !error.is_retryable() {
            tracing::error!(
                %error,
                "stopped following the agent's {what}: retrying cannot help; \
                 the last {what} stays in use until it expires"
            );
            return;
        }
        let delay = backoff.next_delay();
        tracing::warn!(%error, ?delay, "the agent's {what} stream failed; reconnecting");
        if sleep_or_cancel(&cancel, delay).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= MIN_BACKOFF.mul_f64(0.8) && first <= MIN_BACKOFF.mul_f64(1.2));
        let second = backoff.next_delay();
        assert!(second >= (MIN_BACKOFF * 2).mul_f64(0.8));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= MAX_BACKOFF.mul_f64(1.2));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= MIN_BACKOFF.mul_f64(1.2));
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| jittered(Duration::from_secs(10))).collect();
        assert!(delays.len() > 1);
    }

    #[tokio::test]
    async fn dropping_the_guard_stops_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = TaskGuard::spawn(|cancel| async move {
            cancel.cancelled().await;
            let _ = tx.send(());
        });
        assert!(guard.is_running());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the task saw the cancellation")
            .expect("the task ended cleanly");
    }
}

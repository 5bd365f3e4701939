//! What the sources share: following an agent stream in the background,
//! reconnecting with backoff and jitter, owned by a guard that stops the
//! task when dropped.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::backoff::Backoff;

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

/// The backoff of sources waiting for the agent: 200 ms doubling to 30 s,
/// jittered, so that many workloads do not knock on a recovering agent in
/// step.
pub(crate) fn agent_backoff() -> Backoff {
    Backoff::new(MIN_BACKOFF, MAX_BACKOFF)
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
    let mut backoff = agent_backoff();
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
    let mut backoff = agent_backoff();
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

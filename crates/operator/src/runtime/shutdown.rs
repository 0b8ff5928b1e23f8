//! Graceful shutdown: a token cancelled at the first SIGTERM or Ctrl-C (SIGINT), and a
//! bounded wait for work to finish after it.
//!
//! The controller stops taking work when the token is cancelled (kube-runtime's
//! graceful shutdown), its in-flight reconciles get `--shutdown-timeout` to finish,
//! whatever still runs then is dropped, the lease is released, and the process exits 0.
//! A second signal during that wait is not treated specially.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or SIGINT. The handlers are registered
/// before this returns, so an early signal is not lost.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutdown requested: no new work is taken");
        cancel.cancel();
    });
    Ok(token)
}

/// Waits for `task`; once `stop` is cancelled it gets `deadline` more, and is aborted
/// if still running then. Returns false when it had to be aborted.
pub async fn finish_within(
    task: &mut JoinHandle<()>,
    stop: &CancellationToken,
    deadline: Duration,
) -> bool {
    tokio::select! {
        _ = &mut *task => return true,
        _ = stop.cancelled() => {}
    }
    if tokio::time::timeout(deadline, &mut *task).await.is_ok() {
        return true;
    }
    task.abort();
    let _ = (&mut *task).await;
    false
}

/// Runs `work` in a task until it ends, or until `stop` is cancelled plus `deadline`.
pub async fn run_until<F>(work: F, stop: &CancellationToken, deadline: Duration) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut task = tokio::spawn(work);
    finish_within(&mut task, stop, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn work_that_stops_in_time_finishes() {
        let stop = CancellationToken::new();
        let done = Arc::new(AtomicBool::new(false));
        let (s, d) = (stop.clone(), done.clone());
        let work = async move {
            s.cancelled().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            d.store(true, Ordering::SeqCst);
        };
        stop.cancel();
        assert!(run_until(work, &stop, Duration::from_secs(10)).await);
        assert!(done.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_dropped() {
        let stop = CancellationToken::new();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let work = async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            d.store(true, Ordering::SeqCst);
        };
        stop.cancel();
        assert!(!run_until(work, &stop, Duration::from_secs(10)).await);
        assert!(!done.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_alone_needs_no_signal() {
        let stop = CancellationToken::new();
        assert!(run_until(async {}, &stop, Duration::from_secs(1)).await);
    }
}

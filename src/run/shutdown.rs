//! When a run is to stop, as a value (as mini-redis's `server::run(listener, shutdown)` takes
//! it): [`crate::run::load`] is handed a future that resolves when the caller wants the run to
//! stop (the CLI's SIGTERM/SIGINT, a test's channel), and every phase of the run holds a
//! [`Shutdown`] to ask whether it came or to wait for it: start-up checks, model and twin
//! checks, sync's reads and writes, an import job's upload, start and polling, the write phase.

use std::future::Future;

use tokio::sync::watch;

use super::messages::StopReason;

/// Whether, and why, the run is to stop. Cheap to clone; every clone sees the same stop.
#[derive(Debug, Clone)]
pub struct Shutdown {
    stop: watch::Receiver<Option<StopReason>>,
}

impl Shutdown {
    /// Listens for `signal` on the current actix System (a tokio `LocalSet`): once it resolves,
    /// every clone reports its reason.
    pub fn listen(signal: impl Future<Output = StopReason> + 'static) -> Shutdown {
        let (sender, stop) = watch::channel(None);
        tokio::task::spawn_local(async move {
            tokio::select! {
                reason = signal => { let _ = sender.send(Some(reason)); }
                // Nobody listens any more (the run is over): stop waiting for the signal.
                _ = sender.closed() => {}
            }
        });
        Shutdown { stop }
    }

    /// A run that stops only at its own end (tests, the demo, a caller without signals).
    pub fn never() -> Shutdown {
        let (_, stop) = watch::channel(None);
        Shutdown { stop }
    }

    /// Already stopped, for this reason (the write phase ended at its deadline, or by its
    /// watchdog: what comes after it is not started either).
    pub fn stopped_by(reason: StopReason) -> Shutdown {
        let (_, stop) = watch::channel(Some(reason));
        Shutdown { stop }
    }

    /// Why the run is to stop, if it is.
    pub fn reason(&self) -> Option<StopReason> {
        self.stop.borrow().clone()
    }

    /// Resolves when the run is to stop (at once if it already is); never, if it never is.
    pub async fn stopped(&self) -> StopReason {
        let mut stop = self.stop.clone();
        let reason = match stop.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The signal's listener is gone without a stop: none will come.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Runs `work` unless the run is to stop first: `Err(reason)` when the stop came before
    /// `work` finished (and `work` is dropped, so a request in flight is abandoned).
    pub async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Result<T, StopReason> {
        if let Some(reason) = self.reason() {
            return Err(reason);
        }
        tokio::select! {
            biased;
            reason = self.stopped() => Err(reason),
            done = work => Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix::test]
    async fn every_clone_sees_the_stop_and_work_in_progress_is_abandoned() {
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::listen(async move {
            let _ = told.await;
            StopReason::Signal("SIGTERM")
        });
        let clone = shutdown.clone();
        assert_eq!(shutdown.reason(), None);
        assert_eq!(shutdown.unless_stopped(async { 7 }).await, Ok(7));
        let _ = tell.send(());
        let abandoned = clone.unless_stopped(std::future::pending::<()>());
        let waited = tokio::time::timeout(Duration::from_secs(5), abandoned).await.expect("the stop ends the wait");
        assert_eq!(waited, Err(StopReason::Signal("SIGTERM")));
        assert_eq!(shutdown.reason(), Some(StopReason::Signal("SIGTERM")));
        assert_eq!(Shutdown::stopped_by(StopReason::Deadline).stopped().await, StopReason::Deadline);
    }

    #[actix::test]
    async fn a_run_that_never_stops_waits_for_its_work() {
        let never = Shutdown::never();
        assert_eq!(never.unless_stopped(async { 1 }).await, Ok(1));
        assert!(tokio::time::timeout(Duration::from_millis(20), never.stopped()).await.is_err());
    }
}

//! SIGTERM and SIGINT: how Azure Batch and Data Factory cancel a task. The CLI hands them to
//! [`crate::run::load`] as its stop ([`on_signal`]); whatever phase the run is in then stops
//! cleanly (no new work, in-flight requests finish, unsent items listed).

use std::future::Future;

use crate::run::messages::StopReason;

/// SIGTERM or SIGINT as the stop of a run, listened for from now on (so a signal that comes
/// while the inputs are read is not lost). Must be called inside the run's runtime.
pub fn on_signal() -> impl Future<Output = StopReason> {
    let signals = StopSignals::install();
    async move {
        let signal = signals.wait().await;
        tracing::warn!("{signal} received: the run stops cleanly, then the summary is written");
        StopReason::Signal(signal)
    }
}

/// SIGTERM and SIGINT, listened for from [`StopSignals::install`] on.
pub struct StopSignals {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Takes over SIGTERM and SIGINT for this process. Must run inside the run's runtime.
    pub fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listeners = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::warn!("cannot listen for SIGTERM/SIGINT; the run stops only at its end or deadline");
                    None
                }
            };
            StopSignals { listeners }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    pub async fn wait(mut self) -> &'static str {
        self.next().await
    }

    /// The next signal, keeping the listeners for later (a wait that comes before the run's
    /// own, such as an import job waiting for another one to end).
    #[cfg(unix)]
    pub async fn next(&mut self) -> &'static str {
        let Some((term, int)) = self.listeners.as_mut() else { return std::future::pending().await };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    pub async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

//! SIGTERM and SIGINT: how Azure Batch and Data Factory cancel a task. Either asks the
//! coordinator to stop cleanly (no new work, in-flight requests finish, unsent items listed).

use actix::Recipient;

use crate::run::messages::{Stop, StopReason};

/// SIGTERM and SIGINT, listened for from [`StopSignals::install`] on (install it before the
/// run's preparation, so a signal that comes while the inputs are read is not lost: the
/// coordinator then stops as soon as it starts).
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

    /// Asks the coordinator to stop cleanly when a signal comes (or came since `install`).
    pub fn forward_to(self, coordinator: Recipient<Stop>) {
        actix::spawn(async move {
            let signal = self.wait().await;
            tracing::warn!(
                "{signal} received: no new work is handed out; in-flight requests finish, then the summary is written"
            );
            coordinator.do_send(Stop(StopReason::Signal(signal)));
        });
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

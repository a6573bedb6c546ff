//! Progress bars on a terminal: one per kind of item (planned, done, rate, ETA), drawn by
//! indicatif from the [`super::tally`]. When stderr is not a terminal (Azure Batch's
//! `stderr.txt`, a CI log) nothing is drawn here and the coordinator's plain progress line at
//! its fixed interval stays the only progress output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::item::ItemKind;

use super::tally;

/// How often the bars are refreshed.
pub const REFRESH: Duration = Duration::from_millis(250);

static SHOWN: AtomicBool = AtomicBool::new(false);

/// Whether bars are on screen now (then the plain progress line is left out, so the two do
/// not fight over the terminal).
pub fn bars_shown() -> bool {
    SHOWN.load(Ordering::Relaxed)
}

/// Bars for the write phase, when stderr is a terminal.
pub struct Bars {
    inner: Arc<Inner>,
    refresher: tokio::task::JoinHandle<()>,
}

struct Inner {
    _multi: MultiProgress,
    bars: Vec<(ItemKind, ProgressBar)>,
    base: tally::Snapshot,
}

impl Bars {
    /// Draws the bars and refreshes them every [`REFRESH`] (on the current actix/tokio local
    /// set); `None` when stderr is not a terminal.
    pub fn start_if_terminal() -> Option<Bars> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{prefix:>13} [{bar:40.cyan/blue}] {pos:>8}/{len:8} {per_sec:>10} ETA {eta:>4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let base = tally::snapshot();
        let bars = ItemKind::ALL
            .iter()
            .map(|kind| {
                let bar = multi.add(ProgressBar::new(base.planned_of(*kind)));
                bar.set_style(style.clone());
                bar.set_prefix(kind.plural());
                (*kind, bar)
            })
            .collect();
        SHOWN.store(true, Ordering::Relaxed);
        let inner = Arc::new(Inner { _multi: multi, bars, base });
        let ticking = Arc::clone(&inner);
        let refresher = actix::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            loop {
                tick.tick().await;
                ticking.update();
            }
        });
        Some(Bars { inner, refresher })
    }

    pub fn finish(self) {
        self.refresher.abort();
        self.inner.update();
        for (_, bar) in &self.inner.bars {
            bar.finish();
        }
        SHOWN.store(false, Ordering::Relaxed);
    }
}

impl Inner {
    /// Moves the bars to the tally's figures.
    fn update(&self) {
        let now = tally::snapshot();
        for (kind, bar) in &self.bars {
            let ended = now.ended_since(&self.base, *kind);
            let failed = ended.saturating_sub(now.done_since(&self.base, *kind));
            bar.set_length(now.planned_of(*kind).max(ended));
            bar.set_position(ended);
            if failed > 0 {
                bar.set_message(format!("{failed} dead-lettered"));
            }
        }
    }
}

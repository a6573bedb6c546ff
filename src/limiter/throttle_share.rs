//! Tells a full instance from one that throttles a share of requests whatever the rate.
//!
//! A 429 from a full instance (its bucket is empty: other loaders, or a capacity below the
//! documented limits) is congestion: sending slower means fewer 429s, so the adaptive rate cuts.
//! A 429 that comes at the same share whatever the rate (ADT scaling internally, the mock's
//! `--fault-429-rate`) is background: cutting for it only loses throughput, and cutting once per
//! round trip drove a load to its floor (a 15% background share took it from 500/s to 20–40/s).
//! So, like TCP undoing a window cut once it learns the loss was spurious, the class keeps its
//! last `HISTORY` windows of replies (at least [`WINDOW`] and [`WINDOW_MIN_REPLIES`] each) and
//! treats its own rate changes as experiments:
//!
//! - Congestion predicts that a window sent at a lower rate `r_lo` gets what the instance gave
//!   at the higher rate `r_hi` and no more: share `q = 1 - (1 - p_hi) · r_hi / r_lo`
//!   (0 once below capacity).
//! - Background predicts the same share at any rate.
//!
//! The kept windows show background when (see `background_in`) they span clearly different
//! rates (the slowest at most `RATE_STEP` of the fastest), they all show one share (a
//! chi-square test of homogeneity: their spread is what sampling alone gives), and that share
//! stands `CLEAR` standard deviations of the slowest window's sample above what congestion
//! would leave there; and two window closes in a row say so. Then the share becomes the
//! background and the cuts are undone. From then on a throttle counts as congestion only when
//! the recent share stands above the background by a clear margin. The background follows later
//! windows (it falls to nothing when the throttling stops) and is capped at [`MAX_BACKGROUND`].
//! Until the windows show background, every throttle is congestion.
//!
//! Known limit: one window's sample (about 200 replies at low rates) puts the floor of what can
//! be recognised near an 8% share; a lower background is taken for congestion. Pooling the slow
//! windows lowered that floor but took several loaders' steady congestion for background.
//!
//! Pure arithmetic on instants passed in, tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Shortest window of replies.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Fewest replies in a window: enough for a share to mean something.
pub const WINDOW_MIN_REPLIES: u64 = 200;
/// A recent throttle share from which on the instance is a wall: a quarter or more of what is
/// sent comes back 429 (above the 10–15% that an instance scaling internally, or the mock's
/// faults, throttle whatever the rate). The whole class then holds off for the server's
/// `Retry-After`, and the rate is cut once per round trip; below it, at most once per
/// [`WINDOW`] unless the share grew since the last cut.
pub const WALL_SHARE: f64 = 0.25;
/// Fewest windows that can show background throttling.
const MIN_WINDOWS: usize = 4;
/// Windows kept for experiments (about this many seconds at full rate).
const HISTORY: usize = 8;
/// The kept windows span clearly different rates when the slowest went at most this share of
/// the fastest's rate.
const RATE_STEP: f64 = 0.8;
/// A background share above this is not believed: it is treated as congestion.
pub const MAX_BACKGROUND: f64 = 0.5;
/// The smallest excess over the background share that counts as congestion.
const MIN_MARGIN: f64 = 0.02;
/// How far apart (in standard deviations of the slowest window's sample) background and
/// congestion's prediction must be.
const CLEAR: f64 = 4.0;
/// [`ThrottleShare::recent_share`] counts over at least this many replies.
pub const WALL_MIN_REPLIES: u64 = 20;
/// How fast the background share follows later windows.
const FOLLOW: f64 = 0.3;

/// The replies of one stretch of time.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    ended: Instant,
    replies: u64,
    throttles: u64,
    /// The highest rate allowed during the window (what an undo restores).
    allowed: f64,
}

impl Window {
    fn open(now: Instant, allowed: f64) -> Window {
        Window { started: now, ended: now, replies: 0, throttles: 0, allowed }
    }

    fn share(&self) -> f64 {
        self.throttles as f64 / (self.replies.max(1)) as f64
    }

    /// Replies per second: what was really sent, whatever was allowed.
    fn rate(&self) -> f64 {
        self.replies as f64 / self.ended.saturating_duration_since(self.started).as_secs_f64().max(1e-3)
    }
}

/// What a closed window taught.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lesson {
    /// Nothing new.
    None,
    /// Throttling is background at this share; the cuts that went with it were spurious: go
    /// back to `restore` (requests/s) if the rate is below it.
    Background { share: f64, restore: f64 },
}

#[derive(Debug, Clone)]
pub struct ThrottleShare {
    current: Window,
    history: VecDeque<Window>,
    background: f64,
    /// The last window closed showed background throttling; one more in a row confirms it.
    seen_once: bool,
}

impl ThrottleShare {
    pub fn new(now: Instant, allowed: f64) -> ThrottleShare {
        ThrottleShare {
            current: Window::open(now, allowed),
            history: VecDeque::new(),
            background: 0.0,
            seen_once: false,
        }
    }

    /// The share of requests the instance throttles whatever the rate, as far as known (0 until
    /// an experiment showed it).
    pub fn background(&self) -> f64 {
        self.background
    }

    /// Records a reply (throttled or not) at `now`, while the class was allowed `allowed`/s.
    pub fn record(&mut self, now: Instant, throttled: bool, allowed: f64) -> Lesson {
        let w = &mut self.current;
        w.replies += 1;
        w.throttles += u64::from(throttled);
        w.ended = now;
        w.allowed = w.allowed.max(allowed);
        if now.saturating_duration_since(w.started) < WINDOW || w.replies < WINDOW_MIN_REPLIES {
            return Lesson::None;
        }
        let closed = std::mem::replace(&mut self.current, Window::open(now, allowed));
        self.close(closed)
    }

    /// Is a throttle now congestion? Yes unless background throttling explains the recent share.
    pub fn is_congestion(&self) -> bool {
        if self.background <= 0.0 {
            return true;
        }
        let (replies, throttles) = self.recent();
        let share = throttles as f64 / replies.max(1) as f64;
        share > self.background + margin(self.background, replies)
    }

    /// The share of recent replies that were throttled (the open window and the last closed
    /// one), counted over at least [`WALL_MIN_REPLIES`] so a first 429 is not a 100% share.
    pub fn recent_share(&self) -> f64 {
        let (replies, throttles) = self.recent();
        throttles as f64 / replies.max(WALL_MIN_REPLIES) as f64
    }

    /// Replies and throttles of the open window and the last closed one.
    fn recent(&self) -> (u64, u64) {
        let (replies, throttles) = self.history.back().map_or((0, 0), |last| (last.replies, last.throttles));
        (replies + self.current.replies, throttles + self.current.throttles)
    }

    fn close(&mut self, newest: Window) -> Lesson {
        self.history.push_back(newest);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        // Two closes in a row must show it: congestion among several loaders can look
        // homogeneous for a moment, but the next window of a loader that cut breaks it.
        let shown = background_in(self.history.make_contiguous());
        let lesson = match (shown, self.seen_once) {
            (Lesson::Background { .. }, true) => shown,
            _ => Lesson::None,
        };
        self.seen_once = shown != Lesson::None;
        match lesson {
            Lesson::Background { share, .. } => self.background = share,
            Lesson::None if self.background > 0.0 => {
                // Follow the background share in windows it explains (so it falls to nothing
                // when the throttling stops); a window above it is congestion and says nothing.
                let p = newest.share();
                if p <= self.background + margin(self.background, newest.replies) {
                    self.background += FOLLOW * (p - self.background);
                    if self.background < MIN_MARGIN / 4.0 {
                        self.background = 0.0;
                    }
                }
            }
            Lesson::None => {}
        }
        lesson
    }
}

/// Background throttling shown by the kept windows, if they show it: windows sent at clearly
/// different rates (the lowest at most [`RATE_STEP`] of the highest) all throttled at one share
/// (a chi-square test of homogeneity: the spread of their shares is what sampling alone
/// gives), and that share clearly above what congestion would leave at the lowest rate.
///
/// Why all windows and not a pair: with other loaders on the instance, one loader's share can
/// hold still for a window while it cuts (another loader ramping up takes what it left), but
/// congestion does not keep the share still across rates and time; loaders that cut and
/// recover leave windows with few or no 429s, and those break the homogeneity.
fn background_in(windows: &[Window]) -> Lesson {
    if windows.len() < MIN_WINDOWS {
        return Lesson::None;
    }
    let by_rate = |a: &&Window, b: &&Window| a.rate().total_cmp(&b.rate());
    let (Some(hi), Some(lo)) = (windows.iter().max_by(by_rate), windows.iter().min_by(by_rate)) else {
        return Lesson::None;
    };
    if lo.rate() > RATE_STEP * hi.rate() {
        return Lesson::None;
    }
    let replies: u64 = windows.iter().map(|w| w.replies).sum();
    let throttles: u64 = windows.iter().map(|w| w.throttles).sum();
    let share = throttles as f64 / replies.max(1) as f64;
    if share <= 0.0 || share > MAX_BACKGROUND {
        return Lesson::None;
    }
    let chi2: f64 = windows
        .iter()
        .map(|w| {
            let expected = w.replies as f64 * share;
            (w.throttles as f64 - expected).powi(2) / (expected * (1.0 - share)).max(1e-9)
        })
        .sum();
    let df = (windows.len() - 1) as f64;
    if chi2 > df + 3.0 * (2.0 * df).sqrt() {
        return Lesson::None;
    }
    // Judged on the slowest window alone. Pooling the slow windows recognised shares down to
    // 2%, but with eight loaders on one instance it also took stretches of steady congestion
    // for background (429s rose to 3.3%); one window's sample sets the floor near 8% instead.
    let congestion = (1.0 - (1.0 - hi.share()) * hi.rate() / lo.rate().max(1e-9)).max(0.0);
    let sigma = (share * (1.0 - share) / lo.replies.max(1) as f64).sqrt();
    if share - congestion < CLEAR * sigma {
        return Lesson::None;
    }
    let restore = windows.iter().map(|w| w.allowed).fold(0.0, f64::max);
    Lesson::Background { share, restore }
}

/// How far above the background a share of `replies` replies must be to be congestion.
pub(crate) fn margin(background: f64, replies: u64) -> f64 {
    let sigma = (background * (1.0 - background) / replies.max(1) as f64).sqrt();
    (3.0 * sigma).max(MIN_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `seconds` of replies at `rate`/s, each throttled when `throttled(i)` says so.
    fn feed(
        s: &mut ThrottleShare,
        t: &mut Instant,
        rate: f64,
        seconds: f64,
        mut throttled: impl FnMut(u64) -> bool,
    ) -> Vec<Lesson> {
        let n = (rate * seconds) as u64;
        let step = Duration::from_secs_f64(1.0 / rate);
        let mut lessons = Vec::new();
        for i in 0..n {
            *t += step;
            let lesson = s.record(*t, throttled(i), rate);
            if lesson != Lesson::None {
                lessons.push(lesson);
            }
        }
        lessons
    }

    /// Every k-th request throttled: a background share of 1/k at any rate.
    fn every(k: u64) -> impl FnMut(u64) -> bool {
        move |i| i % k == 0
    }

    #[test]
    fn the_same_share_at_a_lower_rate_is_background_and_undoes_the_cut() {
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        assert!(feed(&mut s, &mut t, 500.0, 2.0, every(7)).is_empty(), "one rate: no experiment");
        assert!(s.is_congestion(), "unknown background: every throttle is congestion");
        let lessons = feed(&mut s, &mut t, 350.0, 3.0, every(7));
        let Some(Lesson::Background { share, restore }) = lessons.first().copied() else { panic!("{lessons:?}") };
        assert!((share - 1.0 / 7.0).abs() < 0.02, "{share}");
        assert_eq!(restore, 500.0);
        assert!(!s.is_congestion(), "the same share again is background");
    }

    #[test]
    fn a_share_that_falls_with_the_rate_is_congestion() {
        // An instance that gives 400/s: at 500/s a fifth is throttled, at 350/s nothing.
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        feed(&mut s, &mut t, 500.0, 2.0, every(5));
        let lessons = feed(&mut s, &mut t, 350.0, 2.0, |_| false);
        assert!(lessons.is_empty(), "{lessons:?}");
        assert_eq!(s.background(), 0.0);
        assert!(s.is_congestion());
    }

    #[test]
    fn heavy_congestion_is_not_mistaken_for_background() {
        // Capacity 125/s: at 500/s three quarters are throttled; at 350/s, 1 - 125/350.
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        feed(&mut s, &mut t, 500.0, 2.0, |i| i % 4 != 0);
        let mut n = 0u64;
        let lessons = feed(&mut s, &mut t, 350.0, 2.0, |_| {
            n += 1;
            // Every 350/125 = 2.8th request gets through.
            (n as f64 * 125.0 / 350.0).floor() == ((n - 1) as f64 * 125.0 / 350.0).floor()
        });
        assert!(lessons.is_empty(), "{lessons:?}");
        assert!(s.is_congestion());
    }

    #[test]
    fn above_the_background_a_throttle_is_congestion_again_and_the_background_fades() {
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        feed(&mut s, &mut t, 500.0, 2.0, every(10));
        feed(&mut s, &mut t, 350.0, 3.0, every(10));
        assert!(s.background() > 0.05);
        // Background 10%, and now a third of the requests throttled: congestion on top.
        feed(&mut s, &mut t, 350.0, 0.5, every(3));
        assert!(s.is_congestion());
        // The throttling stops: the background follows down to nothing.
        feed(&mut s, &mut t, 350.0, 20.0, |_| false);
        assert_eq!(s.background(), 0.0);
        assert!(s.is_congestion());
    }

    #[test]
    fn a_low_share_is_not_enough_evidence() {
        // 1% at 500/s then 350/s: the predictions (1% vs 0%) are within sampling noise.
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        feed(&mut s, &mut t, 500.0, 2.0, every(100));
        assert!(feed(&mut s, &mut t, 350.0, 2.0, every(100)).is_empty());
        assert!(s.is_congestion());
    }

    #[test]
    fn a_background_share_above_the_cap_is_treated_as_congestion() {
        let t0 = Instant::now();
        let (mut s, mut t) = (ThrottleShare::new(t0, 500.0), t0);
        feed(&mut s, &mut t, 500.0, 2.0, |i| i % 3 != 0);
        assert!(feed(&mut s, &mut t, 350.0, 2.0, |i| i % 3 != 0).is_empty());
        assert!(s.is_congestion());
    }
}

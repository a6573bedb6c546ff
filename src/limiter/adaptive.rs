//! The adaptive rate of one limit class: multiplicative decrease on a throttle, CUBIC recovery
//! back to the configured ceiling (AWS SDK adaptive mode, FIELD.md §3), never above it and
//! never below a floor. It starts below the ceiling: at `initial_share` with a slow start
//! (doubling every [`STARTUP_DOUBLING`] until the ceiling or the first throttle), or, told its
//! share of the instance (`rate_share`), on CUBIC's plateau at that share. Pure arithmetic on
//! instants passed in, so it is tested without sleeping.

use std::time::{Duration, Instant};

use crate::config::AdaptiveRate;

use super::throttle_share::{margin, Lesson, ThrottleShare, WALL_MIN_REPLIES, WALL_SHARE, WINDOW};

/// The slow start doubles the rate this often: from half the ceiling it is there in a second,
/// gradual for ADT (which may throttle while it scales) and cheap for a short load.
pub const STARTUP_DOUBLING: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct AdaptiveState {
    settings: AdaptiveRate,
    ceiling: f64,
    floor: f64,
    rate: f64,
    /// The rate when the last congestion event came (CUBIC's W_max).
    last_max: f64,
    /// When the last congestion event came; `None` once the rate is back at the ceiling.
    last_throttle: Option<Instant>,
    /// When the rate was last cut: a throttle of a request sent before then is an echo of the
    /// same congestion (the cut had not reached it), not news.
    last_cut: Option<Instant>,
    /// The slow start's rate and first instant (set at the first look at the rate).
    start_rate: f64,
    started: Option<Instant>,
    decreases: u64,
    /// The class's recent replies: tells congestion from background throttling.
    share: Option<ThrottleShare>,
    undos: u64,
    /// The recent throttle share when the rate was last cut, and the replies and throttles
    /// since: a share that grew since the cut calls for another cut without waiting a window.
    share_at_cut: f64,
    since_cut: (u64, u64),
}

/// What a throttle meant to the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Congestion, and the rate was cut.
    Cut,
    /// Congestion already answered by a recent cut (an echo of the same event), or the adaptive
    /// rate is off.
    Echo,
    /// Background throttling (the same share whatever the rate): the item waits, the class
    /// goes on.
    Background,
}

impl Throttle {
    pub fn is_congestion(self) -> bool {
        self != Throttle::Background
    }
}

impl AdaptiveState {
    /// `ceiling` is the configured rate in requests/s.
    pub fn new(settings: &AdaptiveRate, ceiling: f64) -> AdaptiveState {
        let ceiling = ceiling.max(f64::MIN_POSITIVE);
        let start_share = settings.rate_share.unwrap_or(settings.initial_share);
        let start = if settings.enabled { ceiling * start_share } else { ceiling };
        AdaptiveState {
            floor: ceiling * settings.floor_share,
            settings: settings.clone(),
            ceiling,
            rate: start,
            last_max: ceiling,
            // Starting below the ceiling is a recovery from a virtual throttle at start.
            last_throttle: None,
            last_cut: None,
            start_rate: start,
            started: None,
            decreases: 0,
            share: None,
            undos: 0,
            share_at_cut: 0.0,
            since_cut: (0, 0),
        }
    }

    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// How many times a throttle cut the rate.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// How many times a cut turned out spurious (background throttling) and was undone.
    pub fn undos(&self) -> u64 {
        self.undos
    }

    /// The share of recent replies that were throttled.
    pub fn recent_share(&self) -> f64 {
        self.share.as_ref().map_or(0.0, ThrottleShare::recent_share)
    }

    /// The share of requests throttled whatever the rate, as far as known (0 until shown).
    pub fn background_share(&self) -> f64 {
        self.share.as_ref().map_or(0.0, ThrottleShare::background)
    }

    /// Records a reply at `now`; a lesson from it (cuts that were spurious) is applied.
    fn record(&mut self, now: Instant, throttled: bool) {
        self.since_cut.0 += 1;
        self.since_cut.1 += u64::from(throttled);
        let allowed = self.rate_at(now);
        let share = self.share.get_or_insert_with(|| ThrottleShare::new(now, allowed));
        if let Lesson::Background { restore, .. } = share.record(now, throttled, allowed) {
            let restore = restore.min(self.ceiling);
            if self.settings.enabled && restore > self.rate {
                // Undo: back to the rate before the spurious cuts, and from there along CUBIC's
                // concave curve to the ceiling (fast at first, careful near it), as if the
                // last congestion had been at the ceiling.
                self.rate = restore;
                self.last_max = self.ceiling;
                if restore < self.ceiling {
                    let c = self.settings.cubic_c;
                    let k = (self.ceiling * (1.0 - self.settings.decrease_factor) / c).cbrt();
                    let k_here = ((self.ceiling - restore) / c).cbrt();
                    let offset = k - k_here;
                    self.last_throttle = Some(if offset >= 0.0 {
                        now.checked_sub(Duration::from_secs_f64(offset)).unwrap_or(now)
                    } else {
                        now + Duration::from_secs_f64(-offset)
                    });
                } else {
                    self.last_throttle = None;
                }
                self.undos += 1;
            }
        }
    }

    /// A reply of this class that was not throttled came back at `now`.
    pub fn on_reply(&mut self, now: Instant) {
        self.record(now, false);
    }

    /// The rate in force at `now` (growing back along the CUBIC curve after a throttle).
    pub fn rate_at(&mut self, now: Instant) -> f64 {
        if let Some(t0) = self.last_throttle {
            let c = self.settings.cubic_c;
            let beta = self.settings.decrease_factor;
            let k = (self.last_max * (1.0 - beta) / c).cbrt();
            let t = signed_seconds(now, t0);
            let cubic = c * (t - k).powi(3) + self.last_max;
            self.rate = cubic.clamp(self.floor, self.ceiling);
            if self.rate >= self.ceiling {
                self.last_throttle = None;
            }
        } else if self.rate < self.ceiling && self.settings.enabled && self.settings.rate_share.is_some() {
            // Told its share (one of N loaders): that share is the last known good rate, so sit
            // on CUBIC's plateau there and probe above it slowly, as after a recovery.
            self.last_max = self.rate;
            let k = (self.last_max * (1.0 - self.settings.decrease_factor) / self.settings.cubic_c).cbrt();
            self.last_throttle = Some(now.checked_sub(Duration::from_secs_f64(k)).unwrap_or(now));
            return self.rate_at(now);
        } else if self.rate < self.ceiling && self.settings.enabled {
            // Slow start (initial_share < 1), until the ceiling or the first throttle.
            let started = *self.started.get_or_insert(now);
            let doublings = now.saturating_duration_since(started).as_secs_f64() / STARTUP_DOUBLING.as_secs_f64();
            self.rate = (self.start_rate * doublings.exp2()).clamp(self.floor, self.ceiling);
        }
        self.rate
    }

    /// A throttle came back at `now`. Background throttling (see [`ThrottleShare`]) leaves the
    /// rate alone. Congestion cuts it, once per congestion event: the 429s of requests sent
    /// before the last cut (`sent_at`, when known) or within the cooldown after it are echoes of
    /// it. So against a wall of 429s the rate falls once per round trip, however short the round
    /// trip, and no faster; against a trickle, once per [`WINDOW`].
    pub fn on_throttle(&mut self, now: Instant, sent_at: Option<Instant>) -> Throttle {
        self.record(now, true);
        if !self.settings.enabled {
            return Throttle::Echo;
        }
        if !self.share.as_ref().is_none_or(ThrottleShare::is_congestion) {
            return Throttle::Background;
        }
        if let Some(cut) = self.last_cut {
            let since = now.saturating_duration_since(cut);
            // Below a wall of 429s, one cut per window: a trickle of throttles is answered by
            // one cut, and the next window shows whether it helped (the experiment that tells
            // background throttling from congestion needs the rate to stay put that long).
            // Unless the share grew since the cut (other loaders ramping up, say): then the
            // cut was not enough, whatever the share.
            let trickle = self.recent_share() < WALL_SHARE && since < WINDOW && !self.worse_since_cut();
            if sent_at.is_some_and(|sent| sent <= cut) || since < self.settings.cooldown || trickle {
                return Throttle::Echo;
            }
        }
        let current = self.rate_at(now);
        self.last_max = current;
        self.rate = (current * self.settings.decrease_factor).max(self.floor);
        self.last_throttle = Some(now);
        self.last_cut = Some(now);
        self.decreases += 1;
        self.share_at_cut = self.recent_share();
        self.since_cut = (0, 0);
        Throttle::Cut
    }

    /// Has the throttle share grown since the last cut, beyond what sampling explains?
    fn worse_since_cut(&self) -> bool {
        let (replies, throttles) = self.since_cut;
        if replies < WALL_MIN_REPLIES {
            return false;
        }
        let share = throttles as f64 / replies as f64;
        share > self.share_at_cut + margin(self.share_at_cut, replies)
    }
}

/// `now - origin` in seconds, negative when the origin is still ahead.
fn signed_seconds(now: Instant, origin: Instant) -> f64 {
    match now.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64(),
        None => -origin.duration_since(now).as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starting at the ceiling, so the cuts and recoveries below are easy to follow.
    fn settings() -> AdaptiveRate {
        AdaptiveRate { initial_share: 1.0, cooldown: Duration::from_millis(1000), ..AdaptiveRate::default() }
    }

    #[test]
    fn starts_at_the_ceiling_and_stays_there_without_throttles() {
        let mut s = AdaptiveState::new(&settings(), 500.0);
        let t = Instant::now();
        assert_eq!(s.rate_at(t), 500.0);
        assert_eq!(s.rate_at(t + Duration::from_secs(100)), 500.0);
    }

    #[test]
    fn a_throttle_cuts_by_the_factor_once_per_cooldown() {
        let mut s = AdaptiveState::new(&settings(), 500.0);
        let t = Instant::now();
        assert_eq!(Throttle::Cut, s.on_throttle(t, None));
        assert!((s.rate_at(t) - 350.0).abs() < 1e-6);
        // In-flight 429s right after are the same event: the rate stays near the cut (CUBIC's
        // steepest climb is right after a cut, ~60/s per s here).
        assert_ne!(Throttle::Cut, s.on_throttle(t + Duration::from_millis(100), None));
        let r = s.rate_at(t + Duration::from_millis(100));
        assert!((350.0..360.0).contains(&r), "{r}");
        // After the cooldown a new throttle cuts again, from where the rate is then.
        let t2 = t + Duration::from_millis(1100);
        let before = s.rate_at(t2);
        assert_eq!(Throttle::Cut, s.on_throttle(t2, None));
        assert!((s.rate_at(t2) - before * 0.7).abs() < 1e-6);
        assert_eq!(s.decreases(), 2);
    }

    #[test]
    fn never_below_the_floor() {
        let mut s = AdaptiveState::new(&settings(), 500.0);
        let mut t = Instant::now();
        for _ in 0..50 {
            s.on_throttle(t, None);
            t += Duration::from_secs(2);
            // Throttle again right away so recovery has no time to lift it.
            s.on_throttle(t, None);
        }
        let floor = 500.0 * settings().floor_share;
        assert!(s.rate_at(t) >= floor - 1e-9, "{}", s.rate_at(t));
    }

    #[test]
    fn recovers_gradually_and_never_above_the_ceiling() {
        let mut s = AdaptiveState::new(&settings(), 500.0);
        let t = Instant::now();
        s.on_throttle(t, None);
        let mut last = s.rate_at(t);
        let mut reached = None;
        for step in 1..=400 {
            let now = t + Duration::from_millis(50 * step);
            let r = s.rate_at(now);
            assert!(r >= last - 1e-9, "recovery never goes down: {last} -> {r}");
            assert!(r <= 500.0);
            if r >= 500.0 && reached.is_none() {
                reached = Some(step);
            }
            last = r;
        }
        // K = cbrt(500*0.3/0.4) ≈ 7.2 s to regain the old maximum: gradual, not instant.
        let reached = reached.expect("back at the ceiling within 20 s") as f64 * 0.05;
        assert!(reached > 5.0 && reached < 12.0, "{reached}");
    }

    #[test]
    fn throttles_of_requests_sent_before_the_last_cut_do_not_cut_again() {
        let mut s = AdaptiveState::new(&AdaptiveRate { cooldown: Duration::from_millis(10), ..settings() }, 500.0);
        let t = Instant::now();
        assert_eq!(Throttle::Cut, s.on_throttle(t, Some(t - Duration::from_millis(5))));
        // Long after the cooldown, but the requests went out before the cut: the same event.
        for i in 1..=30 {
            let echo = s.on_throttle(t + Duration::from_millis(i), Some(t - Duration::from_millis(1)));
            assert_eq!(Throttle::Echo, echo);
        }
        assert_eq!(s.decreases(), 1);
        // Everything comes back throttled (a wall), and a request sent after the cut too: the
        // cut was not enough, cut again (a round trip later, not a window later).
        assert_eq!(Throttle::Cut, s.on_throttle(t + Duration::from_millis(50), Some(t + Duration::from_millis(20))));
        assert_eq!(s.decreases(), 2);
    }

    #[test]
    fn against_a_trickle_of_throttles_the_rate_is_cut_once_per_window() {
        let mut s = AdaptiveState::new(&AdaptiveRate { cooldown: Duration::from_millis(10), ..settings() }, 500.0);
        let t0 = Instant::now();
        for i in 0..100 {
            s.on_reply(t0 + Duration::from_millis(i));
        }
        let t = t0 + Duration::from_millis(100);
        assert_eq!(Throttle::Cut, s.on_throttle(t, Some(t)));
        // Sent after the cut, a round trip later: still the same window, so no second cut yet.
        let later = t + Duration::from_millis(100);
        assert_eq!(Throttle::Echo, s.on_throttle(later, Some(t + Duration::from_millis(50))));
        assert_eq!(s.decreases(), 1);
        let next_window = t + WINDOW + Duration::from_millis(100);
        assert_eq!(Throttle::Cut, s.on_throttle(next_window, Some(t + WINDOW)));
        assert_eq!(s.decreases(), 2);
    }

    #[test]
    fn disabled_means_fixed_at_the_ceiling() {
        let mut off = settings();
        off.enabled = false;
        let mut s = AdaptiveState::new(&off, 100.0);
        assert_ne!(Throttle::Cut, s.on_throttle(Instant::now(), None));
        assert_eq!(s.rate_at(Instant::now()), 100.0);
    }

    #[test]
    fn by_default_a_class_starts_below_its_ceiling_and_ramps_up() {
        let mut s = AdaptiveState::new(&AdaptiveRate::default(), 500.0);
        let t = Instant::now();
        assert!(s.rate_at(t) < 500.0 * 0.75, "{}", s.rate_at(t));
        assert_eq!(s.rate_at(t + Duration::from_secs(60)), 500.0);
    }

    #[test]
    fn a_rate_share_starts_at_the_share_and_probes_above_it_slowly() {
        let shared = AdaptiveRate { rate_share: Some(0.25), ..AdaptiveRate::default() };
        let mut s = AdaptiveState::new(&shared, 500.0);
        let t = Instant::now();
        assert!((s.rate_at(t) - 125.0).abs() < 1.0, "{}", s.rate_at(t));
        // On the plateau for a while (CUBIC's concave-convex shape around the last good rate)…
        let soon = s.rate_at(t + Duration::from_secs(1));
        assert!((125.0..130.0).contains(&soon), "{soon}");
        // …then above it, never above the ceiling.
        let later = s.rate_at(t + Duration::from_secs(15));
        assert!(later > 140.0 && later <= 500.0, "{later}");
        assert_eq!(s.rate_at(t + Duration::from_secs(120)), 500.0);
    }

    #[test]
    fn the_slow_start_doubles_each_second_up_to_the_ceiling_and_a_throttle_ends_it() {
        let mut s = AdaptiveState::new(&AdaptiveRate { initial_share: 0.25, ..settings() }, 400.0);
        let t = Instant::now();
        assert!((s.rate_at(t) - 100.0).abs() < 1e-6);
        assert!((s.rate_at(t + Duration::from_secs(1)) - 200.0).abs() < 1e-6);
        assert!((s.rate_at(t + Duration::from_millis(1500)) - 200.0 * 2f64.sqrt()).abs() < 1e-6);
        assert_eq!(Throttle::Cut, s.on_throttle(t + Duration::from_millis(1500), None));
        let cut = s.rate_at(t + Duration::from_millis(1500));
        assert!((cut - 200.0 * 2f64.sqrt() * 0.7).abs() < 1e-6, "{cut}");
        // From there it recovers along CUBIC, not by doubling.
        assert!(s.rate_at(t + Duration::from_millis(2500)) < 2.0 * cut);
    }

    #[test]
    fn a_low_initial_share_ramps_up_to_the_ceiling() {
        let mut low = settings();
        low.initial_share = 0.5;
        let mut s = AdaptiveState::new(&low, 500.0);
        let t = Instant::now();
        let r0 = s.rate_at(t);
        assert!((r0 - 250.0).abs() < 1.0, "{r0}");
        let r = s.rate_at(t + Duration::from_secs(30));
        assert_eq!(r, 500.0);
    }

    /// What a simulated run saw over its second half.
    struct Simulated {
        /// The loaders' allowed rates summed, averaged.
        rate: f64,
        /// The share of all requests throttled.
        share: f64,
        /// Cuts undone, all loaders (the first half included).
        undos: u64,
    }

    /// `loaders` loaders (ceiling 500/s each) sending at their adaptive rates for `seconds` of
    /// simulated time (10 ms ticks, requests taken in turn, replies at once) to an instance
    /// that gives `capacity`/s (a token bucket of 0.1 s) and throttles every `background`-th
    /// request it would take on top.
    fn simulate_many(loaders: usize, capacity: f64, background: Option<u64>, seconds: u64) -> Simulated {
        let mut states: Vec<AdaptiveState> =
            (0..loaders).map(|_| AdaptiveState::new(&AdaptiveRate::default(), 500.0)).collect();
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let (mut owed, mut tokens, mut n) = (vec![0.0f64; loaders], 0.0f64, 0u64);
        let (mut rate_sum, mut ticks, mut sent, mut throttled) = (0.0, 0u64, 0u64, 0u64);
        for k in 0..seconds * 100 {
            let now = t0 + tick * k as u32;
            tokens = (tokens + capacity * 0.01).min(capacity * 0.1);
            let second_half = k >= seconds * 50;
            let mut total_rate = 0.0;
            for (s, owed) in states.iter_mut().zip(owed.iter_mut()) {
                let rate = s.rate_at(now);
                total_rate += rate;
                *owed += rate * 0.01;
            }
            // Bounded: each pass takes at least one request off a loader that owes one.
            while let Some(i) = (0..loaders).find(|&i| owed[i] >= 1.0) {
                for j in i..loaders {
                    if owed[j] < 1.0 {
                        continue;
                    }
                    owed[j] -= 1.0;
                    n += 1;
                    let noise = background.is_some_and(|b| n % b == 0);
                    let refused = noise || tokens < 1.0;
                    if !refused {
                        tokens -= 1.0;
                    }
                    if refused {
                        states[j].on_throttle(now, Some(now));
                    } else {
                        states[j].on_reply(now);
                    }
                    if second_half {
                        sent += 1;
                        throttled += u64::from(refused);
                    }
                }
            }
            if second_half {
                rate_sum += total_rate;
                ticks += 1;
            }
        }
        Simulated {
            rate: rate_sum / ticks as f64,
            share: throttled as f64 / sent.max(1) as f64,
            undos: states.iter().map(AdaptiveState::undos).sum(),
        }
    }

    /// One loader: (mean allowed rate, throttled share) over the second half.
    fn simulate(capacity: f64, background: Option<u64>, seconds: u64) -> (f64, f64) {
        let s = simulate_many(1, capacity, background, seconds);
        (s.rate, s.share)
    }

    #[test]
    fn loaders_sharing_a_full_instance_converge_on_it_and_never_take_congestion_for_background() {
        for loaders in [2, 4, 8] {
            let s = simulate_many(loaders, 500.0, None, 60);
            assert_eq!(s.undos, 0, "{loaders} loaders");
            assert!(s.rate > 0.6 * 500.0 && s.rate < 1.2 * 500.0, "{loaders} loaders: {}", s.rate);
            assert!(s.share < 0.05, "{loaders} loaders: {}", s.share);
        }
    }

    #[test]
    fn loaders_starting_together_throttle_little_while_they_find_their_share() {
        // The whole run, start included: the ramp of 4 loaders meets the instance at once.
        for loaders in [2, 4] {
            let s = simulate_many(loaders, 500.0, None, 2);
            assert!(s.share < 0.15, "{loaders} loaders, second second: {}", s.share);
        }
    }

    #[test]
    fn background_throttling_does_not_drag_the_rate_down() {
        // 15% of requests throttled whatever the rate, capacity to spare: the rate stays near the
        // ceiling (cutting for each 429 took it to the floor).
        let (rate, share) = simulate(1000.0, Some(7), 60);
        assert!(rate > 0.8 * 500.0, "{rate}");
        assert!((share - 1.0 / 7.0).abs() < 0.03, "{share}");
    }

    #[test]
    fn a_ten_percent_background_share_is_recognised_too() {
        let (rate, _) = simulate(1000.0, Some(10), 90);
        assert!(rate > 0.8 * 500.0, "{rate}");
    }

    #[test]
    fn a_full_instance_brings_the_rate_to_its_capacity_with_few_throttles() {
        let (rate, share) = simulate(250.0, None, 60);
        assert!(rate > 0.6 * 250.0 && rate < 1.1 * 250.0, "{rate}");
        assert!(share < 0.05, "{share}");
    }

    #[test]
    fn background_throttling_on_a_full_instance_still_backs_off_to_its_capacity() {
        let (rate, share) = simulate(250.0, Some(7), 60);
        assert!(rate < 1.25 * 250.0, "{rate}");
        assert!(rate > 0.5 * 250.0, "{rate}");
        assert!(share < 0.3, "{share}");
    }
}

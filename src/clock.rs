//! The gateway's two clocks: a monotonic timeline that measures every
//! duration, and the wall clock that only stamps messages.
//!
//! A Raspberry Pi without a real-time clock boots with a wrong date, and
//! NTP steps it later, by days or years. If delays, shelves, `stale`
//! rules, chatter and flood windows or the outbox's `max_age` were
//! measured on the wall clock, such a step would complete on-delays at
//! once, keep a shelf for a year, raise `stale` work orders and evict the
//! whole offline buffer as "too old". So every duration runs on the
//! **timeline**: milliseconds ([`Timestamp`]) that advance with the
//! kernel's monotonic clock and never jump.
//!
//! # Across restarts
//!
//! Rule state and outbox rows keep timeline moments, so the timeline must
//! go on where it stopped. The store saves an [`Anchor`] (the timeline,
//! the wall clock, the boot and the time since boot, read together), and
//! [`Clock::resume`] continues from it:
//!
//! * same boot of the machine: the time since boot (`CLOCK_BOOTTIME`,
//!   which also counts suspend) says exactly how long the gateway was off;
//! * another boot: the wall clock's advance says it, but only when the
//!   kernel reports the clock synchronised now and at the save, and the
//!   advance is not negative; otherwise the time off is taken as zero.
//!   Ages then count from the last save: data is kept longer, never
//!   evicted early.
//!
//! A new timeline (a new store) starts at the wall clock's reading, so the
//! two agree until the wall clock steps.
//!
//! # Stamps
//!
//! A moment on the timeline is written as wall-clock time through a
//! [`WallMap`] taken when the message is made: the moment that many
//! milliseconds before (or after) the wall clock's "now". A delay that
//! started before a step therefore reads as what the clock says now, and
//! an alarm raised before NTP set the clock reads correctly once it has.
//!
//! Whether the kernel thinks the wall clock is synchronised
//! ([`wall_clock_synced`]) is reported on `/api/status`, `/metrics` and the
//! status page, and data messages taken while it is not say so.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A moment on the gateway's timeline, in milliseconds.
///
/// For a new store the timeline starts at the Unix time of its creation,
/// so the numbers read as wall-clock milliseconds until the wall clock
/// steps. Serialized as the bare integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The moment `ms` milliseconds after the timeline's zero.
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// The same moment, or the end of year 9999 if later: the latest
    /// moment RFC 3339 can write (a shelf "forever" ends there).
    pub fn clamped(self) -> Timestamp {
        Timestamp(self.0.min(253_402_300_799_999))
    }

    /// Milliseconds since the timeline's zero.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later, never
    /// a panic.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds from `earlier` to `self`, saturating at zero.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(d)))
    }

    /// `self - d`, saturating at zero.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis(d)))
    }

    /// The wall-clock time with these Unix milliseconds (for a moment that
    /// is already a wall-clock reading, not a timeline one).
    pub fn to_system_time(self) -> SystemTime {
        // A far-future time (a saturated shelf end) that the platform's
        // `SystemTime` cannot hold becomes the latest one it can.
        // (i32::MAX seconds fits even a 32-bit `time_t`.)
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.0))
            .or_else(|| UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2)))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(i32::MAX as u64))
    }
}

impl From<SystemTime> for Timestamp {
    /// Unix milliseconds of a wall-clock reading, truncated; a time before
    /// 1970 (a clock that was never set) becomes zero.
    fn from(t: SystemTime) -> Timestamp {
        Timestamp(t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0))
    }
}

/// A duration in whole milliseconds, saturating (a delay of 584 million
/// years is as good as forever).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How timeline moments read as wall-clock time, at one instant: the
/// timeline's "now" and the wall clock's offset from it, in whole
/// milliseconds. Pure data, so payloads are written without reading a
/// clock.
///
/// The offset is rounded to the millisecond from readings finer than that,
/// so the same stored moment reads the same in every message while the
/// wall clock does not step (a work order republished after a restart
/// keeps its `created_at` to the millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallMap {
    /// The timeline's "now".
    pub at: Timestamp,
    /// Wall-clock Unix milliseconds minus timeline milliseconds.
    pub offset_ms: i64,
}

impl WallMap {
    /// The map of a timeline that reads as Unix milliseconds (tests, and
    /// tools that show stored moments without a running gateway).
    pub const IDENTITY: WallMap = WallMap {
        at: Timestamp(0),
        offset_ms: 0,
    };

    /// The wall-clock time (Unix milliseconds) of timeline moment `t`.
    pub fn wall(&self, t: Timestamp) -> Timestamp {
        Timestamp(t.0.saturating_add_signed(self.offset_ms))
    }

    /// The wall-clock time of timeline moment `t`, as a `SystemTime`.
    pub fn system_time(&self, t: Timestamp) -> SystemTime {
        self.wall(t).to_system_time()
    }

    /// The map of a timeline that read `at_us` while the wall clock read
    /// `wall_us` (microseconds).
    pub fn of(at_us: u64, wall_us: u64) -> WallMap {
        WallMap {
            at: Timestamp(at_us / 1000),
            offset_ms: offset_ms(at_us, wall_us),
        }
    }
}

/// `wall_us - at_us` in milliseconds, rounded to the nearest.
fn offset_ms(at_us: u64, wall_us: u64) -> i64 {
    let d = i128::from(wall_us) - i128::from(at_us);
    let ms = if d >= 0 {
        (d + 500) / 1000
    } else {
        (d - 500) / 1000
    };
    i64::try_from(ms).unwrap_or(if d >= 0 { i64::MAX } else { i64::MIN })
}

/// What is saved with the store so the timeline goes on after a restart.
/// Times are in microseconds, so that the wall clock's offset from the
/// timeline survives a restart unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The timeline's "now" at the save (µs).
    pub at_us: u64,
    /// The wall clock's "now" at the save (Unix µs).
    pub wall_us: u64,
    /// Whether the kernel reported the wall clock synchronised then.
    pub synced: bool,
    /// The kernel's boot id then (`/proc/sys/kernel/random/boot_id`).
    pub boot: Option<String>,
    /// Time since boot then (`CLOCK_BOOTTIME`, µs).
    pub boottime_us: u64,
}

impl Anchor {
    /// How the timeline read as wall-clock time at the save.
    pub fn wall_map(&self) -> WallMap {
        WallMap::of(self.at_us, self.wall_us)
    }
}

/// How [`Clock::resume`] bridged the time the gateway was off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// A new timeline, starting at the wall clock's reading.
    Fresh,
    /// Same boot: the time off is known exactly (from the last save).
    SameBoot(Duration),
    /// Another boot, both readings synchronised: the wall clock's advance.
    WallClock(Duration),
    /// Another boot and no trustworthy clock: the time off counts as zero.
    Unknown,
}

/// The gateway's clock: the timeline, and the wall clock beside it. A
/// cheap handle; copies share one origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    /// The timeline's value at `origin`, finer than a millisecond (see
    /// [`WallMap`]).
    start: Duration,
}

impl Clock {
    /// A clock whose timeline reads `start` now (tests).
    pub fn starting_at(start: Timestamp) -> Clock {
        Clock {
            origin: Instant::now(),
            start: Duration::from_millis(start.0),
        }
    }

    /// A new timeline, reading as the wall clock does now.
    pub fn fresh() -> Clock {
        let r = Reading::take();
        Clock {
            origin: r.instant,
            start: Duration::from_micros(r.wall_us),
        }
    }

    /// Goes on from `anchor` (saved by an earlier run, or `None` for a new
    /// store), adding the time the gateway was off as far as it can be
    /// known (see the module doc).
    pub fn resume(anchor: Option<&Anchor>) -> (Clock, Resumed) {
        let now = Reading::take();
        let (start_us, how) = bridge(anchor, &now);
        let clock = Clock {
            origin: now.instant,
            start: Duration::from_micros(start_us),
        };
        (clock, how)
    }

    /// The timeline's "now".
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The timeline's moment of `instant` (a monotonic reading taken
    /// earlier, say when a poll started).
    pub fn at(&self, instant: Instant) -> Timestamp {
        Timestamp(millis(self.precise(instant)))
    }

    fn precise(&self, instant: Instant) -> Duration {
        match instant.checked_duration_since(self.origin) {
            Some(d) => self.start.saturating_add(d),
            None => self.start.saturating_sub(self.origin - instant),
        }
    }

    fn precise_us(&self, instant: Instant) -> u64 {
        u64::try_from(self.precise(instant).as_micros()).unwrap_or(u64::MAX)
    }

    /// The timeline and the wall clock, read together now.
    pub fn wall_map(&self) -> WallMap {
        let wall_us = micros_since_epoch(SystemTime::now());
        WallMap::of(self.precise_us(Instant::now()), wall_us)
    }

    /// What to save so a later run goes on from here.
    pub fn anchor(&self) -> Anchor {
        let r = Reading::take();
        Anchor {
            at_us: self.precise_us(r.instant),
            wall_us: r.wall_us,
            synced: r.synced.unwrap_or(false),
            boot: r.boot,
            boottime_us: r.boottime_us,
        }
    }
}

/// The clocks read together once (the three clocks back to back, before
/// the slower questions).
struct Reading {
    wall_us: u64,
    instant: Instant,
    boottime_us: u64,
    synced: Option<bool>,
    boot: Option<String>,
}

impl Reading {
    fn take() -> Reading {
        // The time since boot is paired with the monotonic instant halfway
        // between two readings around it, so that a resume on the same
        // boot does not gain the time between the two calls at every
        // restart (a first call in a new process may take tens of µs).
        let _ = boottime_us();
        let mut best: Option<(Duration, u64, Instant, u64)> = None;
        // A reading interrupted by the scheduler is taken again (a few
        // tries; the closest pair wins).
        for _ in 0..4 {
            let wall_us = micros_since_epoch(SystemTime::now());
            let before = Instant::now();
            let boottime_us = boottime_us();
            let after = Instant::now();
            let gap = after.saturating_duration_since(before);
            let instant = before + gap / 2;
            if best.is_none_or(|b| gap < b.0) {
                best = Some((gap, wall_us, instant, boottime_us));
            }
            if gap < Duration::from_micros(20) {
                break;
            }
        }
        let (_, wall_us, instant, boottime_us) = match best {
            Some(b) => b,
            None => (Duration::ZERO, 0, Instant::now(), 0),
        };
        Reading {
            wall_us,
            instant,
            boottime_us,
            synced: sync_status(),
            boot: boot_id(),
        }
    }
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The timeline's value now (µs), continuing `anchor`: the pure rule of
/// the module doc.
fn bridge(anchor: Option<&Anchor>, now: &Reading) -> (u64, Resumed) {
    let Some(a) = anchor else {
        return (now.wall_us, Resumed::Fresh);
    };
    if a.boot.is_some() && a.boot == now.boot && now.boottime_us >= a.boottime_us {
        let off = now.boottime_us - a.boottime_us;
        return (
            a.at_us.saturating_add(off),
            Resumed::SameBoot(Duration::from_micros(off)),
        );
    }
    if a.synced && now.synced == Some(true) && now.wall_us >= a.wall_us {
        let off = now.wall_us - a.wall_us;
        return (
            a.at_us.saturating_add(off),
            Resumed::WallClock(Duration::from_micros(off)),
        );
    }
    (a.at_us, Resumed::Unknown)
}

/// How long an answer of [`wall_clock_synced`] is reused.
const SYNC_RECHECK: Duration = Duration::from_secs(1);

/// Whether the kernel reports the wall clock synchronised, asked at most
/// once a second (pollers ask on every poll); `None` where it cannot say.
pub fn wall_clock_synced() -> Option<bool> {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    // The answer (0 unknown, 1 yes, 2 no) in the low byte, and when it was
    // taken (ms after ORIGIN, plus one so that 0 means "never") above it.
    static LAST: AtomicU64 = AtomicU64::new(0);
    let origin = *ORIGIN.get_or_init(Instant::now);
    let now_ms = millis(origin.elapsed()).saturating_add(1);
    let last = LAST.load(Ordering::Relaxed);
    let taken = last >> 8;
    if taken != 0 && now_ms.saturating_sub(taken) < millis(SYNC_RECHECK) {
        return match last & 0xff {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        };
    }
    let answer = sync_status();
    let code = match answer {
        Some(true) => 1,
        Some(false) => 2,
        None => 0,
    };
    LAST.store((now_ms << 8) | code, Ordering::Relaxed);
    answer
}

/// Whether the kernel reports the wall clock synchronised (NTP, chrony,
/// timesyncd all tell it through `adjtimex`); `None` where it cannot be
/// asked.
pub fn sync_status() -> Option<bool> {
    // SAFETY: adjtimex with `modes = 0` only reads the kernel's clock
    // state into the zeroed struct we own; it changes nothing.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn boottime_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(t.tv_nsec / 1_000).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn reading(wall_ms: u64, synced: Option<bool>, boot: &str, boottime_ms: u64) -> Reading {
        Reading {
            wall_us: wall_ms * MS,
            instant: Instant::now(),
            boottime_us: boottime_ms * MS,
            synced,
            boot: Some(boot.to_owned()),
        }
    }

    fn anchor(at_ms: u64, wall_ms: u64, synced: bool, boot: &str, boottime_ms: u64) -> Anchor {
        Anchor {
            at_us: at_ms * MS,
            wall_us: wall_ms * MS,
            synced,
            boot: Some(boot.to_owned()),
            boottime_us: boottime_ms * MS,
        }
    }

    #[test]
    fn a_new_timeline_reads_as_the_wall_clock() {
        let now = reading(1_700_000_000_000, Some(true), "b1", 5_000);
        assert_eq!(bridge(None, &now), (1_700_000_000_000 * MS, Resumed::Fresh));
        let c = Clock::fresh();
        assert_eq!(c.wall_map().offset_ms, 0, "no offset on a new timeline");
    }

    #[test]
    fn same_boot_counts_the_time_off_exactly_whatever_the_wall_clock_did() {
        let a = anchor(1_000_000, 2_000_000, false, "b1", 10_000);
        // The wall clock stepped back a year meanwhile: irrelevant.
        let now = reading(5, Some(false), "b1", 70_000);
        assert_eq!(
            bridge(Some(&a), &now),
            (1_060_000 * MS, Resumed::SameBoot(Duration::from_secs(60)))
        );
    }

    #[test]
    fn another_boot_trusts_the_wall_clock_only_when_synchronised_both_times() {
        let a = anchor(1_000_000, 2_000_000, true, "b1", 10_000);
        let synced = reading(2_500_000, Some(true), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &synced),
            (1_500_000 * MS, Resumed::WallClock(Duration::from_secs(500)))
        );
        // Not synchronised now (a Pi without an RTC, before NTP): the
        // wall clock's "advance" means nothing; ages resume from the save.
        let unsynced = reading(900_000_000, Some(false), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &unsynced),
            (1_000_000 * MS, Resumed::Unknown)
        );
        // Synchronised, but behind the save: the saved reading was wrong.
        let behind = reading(1_500_000, Some(true), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &behind),
            (1_000_000 * MS, Resumed::Unknown)
        );
        let a_unsynced = anchor(1_000_000, 2_000_000, false, "b1", 10_000);
        assert_eq!(bridge(Some(&a_unsynced), &synced).1, Resumed::Unknown);
    }

    #[test]
    fn wall_map_places_past_and_future_moments() {
        let m = WallMap::of(1_000 * MS, 1_700_000_000_000 * MS);
        assert_eq!(m.at, Timestamp(1_000));
        assert_eq!(m.wall(Timestamp(1_000)), Timestamp(1_700_000_000_000));
        assert_eq!(m.wall(Timestamp(400)), Timestamp(1_699_999_999_400));
        assert_eq!(m.wall(Timestamp(3_000)), Timestamp(1_700_000_002_000));
        assert_eq!(m.wall(Timestamp(u64::MAX)), Timestamp(u64::MAX));
        assert_eq!(WallMap::IDENTITY.wall(Timestamp(42)), Timestamp(42));
        let early = WallMap::of(1_000_000 * MS, 10 * MS);
        assert_eq!(early.wall(Timestamp(0)), Timestamp(0));
    }

    #[test]
    fn the_offset_rounds_so_readings_a_few_microseconds_apart_agree() {
        // A new timeline: the wall clock read a few µs before or after.
        assert_eq!(offset_ms(5_000_000_400, 5_000_000_000), 0);
        assert_eq!(offset_ms(5_000_000_000, 5_000_000_400), 0);
        // A step of 8 days, give or take a few µs.
        let eight_days_ms = 8 * 86_400_000;
        assert_eq!(
            offset_ms(5_000_000_003, 5_000_000_000 + eight_days_ms * 1_000),
            eight_days_ms as i64
        );
        assert_eq!(offset_ms(5_000_000_000, 4_000_000_000), -1_000_000);
    }

    #[test]
    fn a_resumed_timeline_keeps_the_offset_of_its_anchor() {
        // Saved on this boot a moment ago, 8 days behind the wall clock:
        // resumed, the timeline still reads 8 days behind, to the ms.
        let c = Clock::fresh();
        let mut a = c.anchor();
        let eight_days_us = 8 * 86_400_000_000;
        a.at_us -= eight_days_us;
        let (resumed, how) = Clock::resume(Some(&a));
        assert!(matches!(how, Resumed::SameBoot(_)), "{how:?}");
        assert_eq!(resumed.wall_map().offset_ms, 8 * 86_400_000);
    }

    #[test]
    fn the_timeline_advances_with_the_monotonic_clock() {
        let c = Clock::starting_at(Timestamp(5_000));
        let i = Instant::now();
        let a = c.at(i);
        assert!(a >= Timestamp(5_000));
        assert_eq!(
            c.at(i + Duration::from_secs(2)),
            a.saturating_add(Duration::from_secs(2))
        );
        assert!(c.now() >= a);
    }

    #[test]
    fn the_kernel_answers_about_synchronisation_and_boot() {
        // Any answer is fine; asking must not fail or panic.
        let _ = sync_status();
        assert_eq!(wall_clock_synced(), wall_clock_synced());
        assert!(boottime_us() > 0);
        let a = Clock::fresh().anchor();
        assert!(a.wall_us > 0);
    }

    #[test]
    fn since_saturates_and_system_time_round_trips() {
        assert_eq!(
            Timestamp(10_000).since(Timestamp(4_000)),
            Duration::from_secs(6)
        );
        assert_eq!(Timestamp(4_000).since(Timestamp(10_000)), Duration::ZERO);
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(Timestamp::from(t).to_system_time(), t);
        assert_eq!(
            Timestamp::from(UNIX_EPOCH - Duration::from_secs(5)),
            Timestamp(0)
        );
    }
}

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
/// timeline's and the wall clock's "now", read together. Pure data, so
/// payloads are written without reading a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallMap {
    /// The timeline's "now".
    pub at: Timestamp,
    /// The wall clock's "now", in Unix milliseconds.
    pub wall: Timestamp,
}

impl WallMap {
    /// The map of a timeline that reads as Unix milliseconds (tests, and
    /// tools that show stored moments without a running gateway).
    pub const IDENTITY: WallMap = WallMap {
        at: Timestamp(0),
        wall: Timestamp(0),
    };

    /// The wall-clock time (Unix milliseconds) of timeline moment `t`.
    pub fn wall(&self, t: Timestamp) -> Timestamp {
        if t >= self.at {
            Timestamp(self.wall.0.saturating_add(t.0 - self.at.0))
        } else {
            Timestamp(self.wall.0.saturating_sub(self.at.0 - t.0))
        }
    }

    /// The wall-clock time of timeline moment `t`, as a `SystemTime`.
    pub fn system_time(&self, t: Timestamp) -> SystemTime {
        self.wall(t).to_system_time()
    }
}

/// What is saved with the store so the timeline goes on after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The timeline's "now" at the save.
    pub at: Timestamp,
    /// The wall clock's "now" at the save (Unix milliseconds).
    pub wall: Timestamp,
    /// Whether the kernel reported the wall clock synchronised then.
    pub synced: bool,
    /// The kernel's boot id then (`/proc/sys/kernel/random/boot_id`).
    pub boot: Option<String>,
    /// Milliseconds since boot then (`CLOCK_BOOTTIME`).
    pub boottime: u64,
}

/// How [`Clock::resume`] bridged the time the gateway was off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// A new timeline, starting at the wall clock's reading.
    Fresh,
    /// Same boot: the time off is known exactly.
    SameBoot(Duration),
    /// Another boot, both readings synchronised: the wall clock's advance.
    WallClock(Duration),
    /// Another boot and no trustworthy clock: the time off counts as zero.
    Unknown,
}

/// The gateway's clock: the timeline, and the wall clock beside it. A
/// cheap handle; clones share one origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    /// The timeline's value at `origin`, kept finer than a millisecond so
    /// that a new timeline and the wall clock round alike.
    start: Duration,
}

impl Clock {
    /// A clock whose timeline reads `start` now (tests, and a new store).
    pub fn starting_at(start: Timestamp) -> Clock {
        Clock {
            origin: Instant::now(),
            start: Duration::from_millis(start.0),
        }
    }

    /// A new timeline, reading as the wall clock does now.
    pub fn fresh() -> Clock {
        let wall = SystemTime::now();
        Clock {
            origin: Instant::now(),
            start: wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// Goes on from `anchor` (saved by an earlier run, or `None` for a new
    /// store), adding the time the gateway was off as far as it can be
    /// known (see the module doc).
    pub fn resume(anchor: Option<&Anchor>) -> (Clock, Resumed) {
        let now = Reading::take();
        match bridge(anchor, &now) {
            (_, Resumed::Fresh) => (Clock::fresh(), Resumed::Fresh),
            (start, how) => (Clock::starting_at(start), how),
        }
    }

    /// The timeline's "now".
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The timeline's moment of `instant` (a monotonic reading taken
    /// earlier, say when a poll started).
    pub fn at(&self, instant: Instant) -> Timestamp {
        let t = match instant.checked_duration_since(self.origin) {
            Some(d) => self.start.saturating_add(d),
            None => self.start.saturating_sub(self.origin - instant),
        };
        Timestamp(millis(t))
    }

    /// The timeline and the wall clock, read together now.
    pub fn wall_map(&self) -> WallMap {
        let wall = Timestamp::from(SystemTime::now());
        WallMap {
            at: self.now(),
            wall,
        }
    }

    /// What to save so a later run goes on from here.
    pub fn anchor(&self) -> Anchor {
        let r = Reading::take();
        Anchor {
            at: self.at(r.instant),
            wall: r.wall,
            synced: r.synced.unwrap_or(false),
            boot: r.boot,
            boottime: r.boottime,
        }
    }
}

/// The clocks read together once.
struct Reading {
    wall: Timestamp,
    /// The monotonic clock, read right after `wall`.
    instant: Instant,
    synced: Option<bool>,
    boot: Option<String>,
    boottime: u64,
}

impl Reading {
    fn take() -> Reading {
        Reading {
            wall: Timestamp::from(SystemTime::now()),
            instant: Instant::now(),
            synced: sync_status(),
            boot: boot_id(),
            boottime: boottime_ms(),
        }
    }
}

/// The timeline's value now, continuing `anchor`: the pure rule of the
/// module doc.
fn bridge(anchor: Option<&Anchor>, now: &Reading) -> (Timestamp, Resumed) {
    let Some(a) = anchor else {
        return (now.wall, Resumed::Fresh);
    };
    if a.boot.is_some() && a.boot == now.boot && now.boottime >= a.boottime {
        let off = Duration::from_millis(now.boottime - a.boottime);
        return (a.at.saturating_add(off), Resumed::SameBoot(off));
    }
    if a.synced && now.synced == Some(true) && now.wall >= a.wall {
        let off = now.wall.since(a.wall);
        return (a.at.saturating_add(off), Resumed::WallClock(off));
    }
    (a.at, Resumed::Unknown)
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

fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1000)
        .saturating_add(u64::try_from(t.tv_nsec / 1_000_000).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(wall: u64, synced: Option<bool>, boot: &str, boottime: u64) -> Reading {
        Reading {
            wall: Timestamp(wall),
            instant: Instant::now(),
            synced,
            boot: Some(boot.to_owned()),
            boottime,
        }
    }

    fn anchor(at: u64, wall: u64, synced: bool, boot: &str, boottime: u64) -> Anchor {
        Anchor {
            at: Timestamp(at),
            wall: Timestamp(wall),
            synced,
            boot: Some(boot.to_owned()),
            boottime,
        }
    }

    #[test]
    fn a_new_timeline_reads_as_the_wall_clock() {
        let now = reading(1_700_000_000_000, Some(true), "b1", 5_000);
        assert_eq!(
            bridge(None, &now),
            (Timestamp(1_700_000_000_000), Resumed::Fresh)
        );
    }

    #[test]
    fn same_boot_counts_the_time_off_exactly_whatever_the_wall_clock_did() {
        let a = anchor(1_000_000, 2_000_000, false, "b1", 10_000);
        // The wall clock stepped back a year meanwhile: irrelevant.
        let now = reading(5, Some(false), "b1", 70_000);
        assert_eq!(
            bridge(Some(&a), &now),
            (
                Timestamp(1_060_000),
                Resumed::SameBoot(Duration::from_secs(60))
            )
        );
    }

    #[test]
    fn another_boot_trusts_the_wall_clock_only_when_synchronised_both_times() {
        let a = anchor(1_000_000, 2_000_000, true, "b1", 10_000);
        let synced = reading(2_500_000, Some(true), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &synced),
            (
                Timestamp(1_500_000),
                Resumed::WallClock(Duration::from_secs(500))
            )
        );
        // Not synchronised now (a Pi without an RTC, before NTP): the
        // wall clock's "advance" means nothing; ages resume from the save.
        let unsynced = reading(900_000_000, Some(false), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &unsynced),
            (Timestamp(1_000_000), Resumed::Unknown)
        );
        // Synchronised, but behind the save: the saved reading was wrong.
        let behind = reading(1_500_000, Some(true), "b2", 3_000);
        assert_eq!(
            bridge(Some(&a), &behind),
            (Timestamp(1_000_000), Resumed::Unknown)
        );
        let a_unsynced = anchor(1_000_000, 2_000_000, false, "b1", 10_000);
        assert_eq!(bridge(Some(&a_unsynced), &synced).1, Resumed::Unknown);
    }

    #[test]
    fn wall_map_places_past_and_future_moments() {
        let m = WallMap {
            at: Timestamp(1_000),
            wall: Timestamp(1_700_000_000_000),
        };
        assert_eq!(m.wall(Timestamp(1_000)), Timestamp(1_700_000_000_000));
        assert_eq!(m.wall(Timestamp(400)), Timestamp(1_699_999_999_400));
        assert_eq!(m.wall(Timestamp(3_000)), Timestamp(1_700_000_002_000));
        assert_eq!(m.wall(Timestamp(u64::MAX)), Timestamp(u64::MAX));
        assert_eq!(WallMap::IDENTITY.wall(Timestamp(42)), Timestamp(42));
        let early = WallMap {
            at: Timestamp(1_000_000),
            wall: Timestamp(10),
        };
        assert_eq!(early.wall(Timestamp(0)), Timestamp(0));
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
        assert!(boottime_ms() > 0);
        let a = Clock::fresh().anchor();
        assert!(a.wall.0 > 0);
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

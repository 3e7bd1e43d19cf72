//! Wall-clock time as the rules see it: milliseconds since the Unix epoch.
//!
//! The rules never read a clock; every entry point takes the time as an
//! argument. A plain integer (rather than `Instant`) is what makes the
//! alarm state persistable: a delay that started before a restart is
//! still measured from the same moment afterwards.
//!
//! The wall clock can go backwards (NTP step, RTC reset on a Raspberry Pi
//! without a battery). Nothing here panics on that: [`Timestamp::since`]
//! saturates at zero, and the timers that would be stretched by a backward
//! jump restart from the new "now" instead (see `alarm.rs` and
//! `condition.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A moment, in milliseconds since the Unix epoch (UTC).
///
/// Serialized as the bare integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The moment `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// The same moment, or the end of year 9999 if later: the latest
    /// moment RFC 3339 can write (a shelf "forever" ends there).
    pub fn clamped(self) -> Timestamp {
        Timestamp(self.0.min(253_402_300_799_999))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later (the
    /// clock went backwards), never a panic.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds from `earlier` to `self`, saturating at zero.
    pub(crate) fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(d)))
    }

    /// The same moment as a `SystemTime`.
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
    /// Truncates to the millisecond; a time before 1970 (a clock that was
    /// never set) becomes the epoch itself.
    fn from(t: SystemTime) -> Timestamp {
        Timestamp(t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0))
    }
}

/// A duration in whole milliseconds, saturating (a delay of 584 million
/// years is as good as forever).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_saturates_when_the_clock_goes_back() {
        let a = Timestamp(10_000);
        let b = Timestamp(4_000);
        assert_eq!(a.since(b), Duration::from_secs(6));
        assert_eq!(b.since(a), Duration::ZERO);
    }

    #[test]
    fn system_time_round_trip_and_pre_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(Timestamp::from(t).to_system_time(), t);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Timestamp::from(before), Timestamp(0));
        assert_eq!(
            Timestamp(u64::MAX - 1).saturating_add(Duration::MAX),
            Timestamp(u64::MAX)
        );
    }
}

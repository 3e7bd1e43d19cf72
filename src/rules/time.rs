//! Time as the rules see it: moments on the gateway's monotonic timeline
//! ([`crate::clock`]), never the wall clock.
//!
//! The rules never read a clock; every entry point takes the time as an
//! argument. A plain integer (rather than `Instant`) is what makes the
//! alarm state persistable: the timeline goes on across a restart, so a
//! delay that started before it is still measured from the same moment
//! afterwards. A step of the wall clock moves nothing here; payloads turn
//! moments into wall-clock time when they are written.

pub use crate::clock::Timestamp;
pub(crate) use crate::clock::millis;

//! The persisted form of the rules' state: what the store writes to its
//! `alarms` table and hands back after a restart or a reload.
//!
//! # Exactness
//!
//! A restored engine must produce the same future events as one that never
//! stopped. Two details serve that:
//!
//! * times are [`Timestamp`]s (milliseconds since the epoch), not
//!   `Instant`s, which mean nothing in another process;
//! * floating-point numbers are written as text in Rust's shortest
//!   round-trip form (`"20.5"`, `"1e-7"`, `"NaN"`). serde_json, as this
//!   crate builds it (without `float_roundtrip`), may parse a 17-digit
//!   number one unit in the last place off, and JSON has no NaN or
//!   infinity at all; `str::parse::<f64>` is exact. Plain JSON numbers are
//!   accepted on input too.

use serde::{Deserialize, Serialize};

use super::alarm::SavedAlarm;
use super::condition::SavedCondition;
use super::time::Timestamp;
use crate::reading::{BadReason, Quality};
use crate::tag::Value;

/// Version of the [`SavedEngine`] layout; bumped when a field changes meaning.
pub const SAVED_VERSION: u32 = 1;

/// Everything the rules engine needs to continue exactly where it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedEngine {
    /// Layout version ([`SAVED_VERSION`]).
    pub version: u32,
    /// One entry per rule, keyed by rule name.
    pub rules: Vec<SavedRule>,
    /// Last readings of the tags, keyed by full tag name: `expr` rules
    /// evaluate over the last good values, and work orders snapshot them.
    pub tags: Vec<SavedTag>,
}

/// The state of one rule: its alarm and its condition's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRule {
    /// Rule name (the key; rules are matched by name on restore).
    pub name: String,
    /// The alarm state machine.
    pub alarm: SavedAlarm,
    /// The condition's memory (hysteresis latch, rate window, staleness).
    pub condition: SavedCondition,
}

/// The last reading of one tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTag {
    /// Full tag name (`device.tag`).
    pub name: String,
    /// Quality of the last reading, as published (`good`, `bad:timeout`).
    pub quality: String,
    /// When the last reading was taken.
    pub at: Timestamp,
    /// The last good value.
    pub good: Option<SavedValue>,
    /// When the last good value was read.
    pub good_at: Option<Timestamp>,
}

/// A [`Value`] in persisted form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "v", rename_all = "snake_case")]
pub enum SavedValue {
    /// A bit.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    #[serde(rename = "uint")]
    UInt(u64),
    /// A float, written as text (see the module docs).
    Float(#[serde(with = "f64_text")] f64),
    /// A string.
    Text(String),
}

impl From<&Value> for SavedValue {
    fn from(v: &Value) -> SavedValue {
        match v {
            Value::Bool(b) => SavedValue::Bool(*b),
            Value::Int(i) => SavedValue::Int(*i),
            Value::UInt(u) => SavedValue::UInt(*u),
            Value::Float(x) => SavedValue::Float(*x),
            Value::Text(s) => SavedValue::Text(s.clone()),
        }
    }
}

impl From<&SavedValue> for Value {
    fn from(v: &SavedValue) -> Value {
        match v {
            SavedValue::Bool(b) => Value::Bool(*b),
            SavedValue::Int(i) => Value::Int(*i),
            SavedValue::UInt(u) => Value::UInt(*u),
            SavedValue::Float(x) => Value::Float(*x),
            SavedValue::Text(s) => Value::Text(s.clone()),
        }
    }
}

/// Parses a quality as [`Quality`]'s `Display` writes it. Unknown text (a
/// newer version's reason) reads as `bad:protocol`, never as good: a value
/// of unknown standing must not be trusted.
pub(crate) fn parse_quality(text: &str) -> Quality {
    let reason = match text {
        "good" => return Quality::Good,
        "bad:timeout" => BadReason::Timeout,
        "bad:connection" => BadReason::Connection,
        "bad:protocol" => BadReason::Protocol,
        "bad:decode" => BadReason::Decode,
        other => match other
            .strip_prefix("bad:exception:")
            .and_then(|c| c.parse().ok())
        {
            Some(code) => BadReason::Exception(code),
            None => BadReason::Protocol,
        },
    };
    Quality::Bad(reason)
}

/// serde helpers writing an `f64` as exact text (see the module docs).
pub(crate) mod f64_text {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `x` in Rust's shortest round-trip form.
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{x:?}"))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Number(f64),
    }

    /// Reads the text form, or a plain number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(x) => Ok(x),
            Repr::Text(t) => t
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("\"{t}\" is not a number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_exactly_through_json() {
        for x in [
            0.1 + 0.2,
            1e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            f64::INFINITY,
            123_456.789_012_345_67,
        ] {
            let text = serde_json::to_string(&SavedValue::Float(x)).unwrap_or_default();
            let back: SavedValue = serde_json::from_str(&text).unwrap_or(SavedValue::Bool(false));
            assert_eq!(back, SavedValue::Float(x), "{text}");
        }
        let nan = serde_json::to_string(&SavedValue::Float(f64::NAN)).unwrap_or_default();
        let back: Result<SavedValue, _> = serde_json::from_str(&nan);
        assert!(matches!(back, Ok(SavedValue::Float(x)) if x.is_nan()));
        // A hand-written plain number is accepted.
        let plain: Result<SavedValue, _> = serde_json::from_str(r#"{"type":"float","v":2.5}"#);
        assert!(matches!(plain, Ok(SavedValue::Float(x)) if x == 2.5));
    }

    #[test]
    fn qualities_round_trip() {
        for q in [
            Quality::Good,
            Quality::Bad(BadReason::Timeout),
            Quality::Bad(BadReason::Connection),
            Quality::Bad(BadReason::Exception(2)),
            Quality::Bad(BadReason::Protocol),
            Quality::Bad(BadReason::Decode),
        ] {
            assert_eq!(parse_quality(&q.to_string()), q);
        }
        assert_eq!(
            parse_quality("bad:cosmic-ray"),
            Quality::Bad(BadReason::Protocol)
        );
    }
}

//! The JSON writing every payload shares: timestamps, strings and values,
//! once for the hand-written data messages and once as a serde wrapper for
//! the rules' messages.
//!
//! # Floats
//!
//! A value read from an f32 register is an f32 widened to f64; written
//! with f64's digits it shows noise (`84.71237182617188`). So f32 values
//! are written with f32's shortest digits (`84.71237`). The data messages
//! know each value's tag and decide by its type ([`value`]: an unscaled
//! f32 tag); the rules' messages carry values without their tags and
//! decide by the value ([`Json`]: one that an f32 holds exactly almost
//! always came from an f32 register). A float that is not finite is
//! written as `null`, since JSON has no NaN.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::tag::{DataType, Tag, Value};

/// RFC 3339 UTC with milliseconds, as every payload's `ts`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Writes a value; an unscaled f32 is written with f32's shortest form
/// (21.5, 55.689053) rather than the digits of its f64 widening.
pub fn value(out: &mut String, tag: &Tag, v: &Value) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(x) if !x.is_finite() => out.push_str("null"),
        Value::Float(x) if tag.data_type == DataType::F32 && tag.is_unscaled() => {
            let _ = write!(out, "{}", *x as f32);
            if x.fract() == 0.0 && x.abs() < 1e16 {
                // Keep it a JSON number that reads back as a float.
                out.push_str(".0");
            }
        }
        Value::Float(x) => {
            let _ = write!(out, "{x}");
            if x.fract() == 0.0 && x.abs() < 1e16 {
                out.push_str(".0");
            }
        }
        Value::Text(s) => string(out, s),
    }
}

/// Writes a JSON string with escapes.
///
/// Runs of characters that need none are copied whole (every tag name and
/// unit of a data message is such a run). Working on bytes is safe: every
/// byte escaped is ASCII, which never occurs inside a multi-byte UTF-8
/// sequence, so the slices fall on character boundaries.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// A [`Value`] as JSON.
pub struct Json<'a>(pub Option<&'a Value>);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(Value::Bool(b)) => s.serialize_bool(*b),
            Some(Value::Int(i)) => s.serialize_i64(*i),
            Some(Value::UInt(u)) => s.serialize_u64(*u),
            // A value that an f32 holds exactly almost always came from an
            // f32 register: write f32's shortest digits (84.71237, not
            // 84.71237182617188), as the data messages do.
            Some(Value::Float(x)) if x.is_finite() && f64::from(*x as f32) == *x => {
                s.serialize_f32(*x as f32)
            }
            Some(Value::Float(x)) if x.is_finite() => s.serialize_f64(*x),
            Some(Value::Float(_)) => s.serialize_none(),
            Some(Value::Text(t)) => s.serialize_str(t),
        }
    }
}

#[cfg(test)]
mod string_tests {
    use super::string;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the text, a JSON parser reads back exactly it.
        #[test]
        fn any_text_reads_back(text in any::<String>()) {
            let mut out = String::new();
            string(&mut out, &text);
            let back: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, text);
        }
    }

    #[test]
    fn escapes_as_before() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\re\tf\u{1}g°C");
        assert_eq!(out, r#""a\"b\\c\nd\re\tf\u0001g°C""#);
    }
}

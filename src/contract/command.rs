//! Write-back commands on MQTT: the command payload read into a
//! [`WriteCommand`], and the result payload of a [`WriteReport`]. Pure: no I/O, no
//! clock (the receipt time is an argument).
//!
//! # The command, on `cmd/{device}/{tag}`
//!
//! ```json
//! {"v": 42.5, "id": "wo-4711-1", "by": "jdoe", "ts": "2026-12-07T13:40:00.123Z"}
//! ```
//!
//! * `v` (required): the value in engineering units, a JSON number,
//!   boolean or string. It is not fitted to the tag here: the write desk
//!   does that, so a wrong type is a refusal on the record. An integer
//!   that an f64 does not hold exactly (beyond 2^53) is refused rather
//!   than rounded: writing a neighbouring value to a counter or a code is
//!   worse than writing nothing. A string longer than [`MAX_VALUE_TEXT`]
//!   characters is refused (no register block holds it; cutting it would
//!   write something else than was asked).
//! * `id`: the sender's id for the command, a string or a number (kept as
//!   its text), echoed in the result.
//! * `by`: who asks, a string, for the record.
//! * `ts`: when the sender sent it: milliseconds since the Unix epoch (a
//!   number), or RFC 3339 text with `Z` or an offset (`…T13:40:00.123Z`,
//!   `…T14:40:00+01:00`), the form of every `ts` fieldgate publishes. A
//!   number below 10^11 (before 1973) is refused as a time in seconds sent
//!   by mistake. The desk refuses a command older than `[writes] max_age`.
//!
//! `null` is the same as an absent `id`, `by` or `ts`; other fields are
//! ignored. `id` and `by` are cut to [`MAX_TEXT`] characters (an empty
//! one is none), and so are the device and tag names taken from the topic
//! (such a name matches no tag, and is refused as unknown): nothing from
//! outside grows the history or a log line beyond that.
//!
//! A payload that cannot be read (not JSON, not an object, no `v`, `v`
//! null, an array or an object, a bad `id`, `by` or `ts`) still gives a
//! command, whose value is [`Requested::Malformed`] with a short reason
//! and whose `id` and `by` are whatever could be read: the desk refuses it
//! (`bad_payload`) and the refusal is answered with the sender's id and
//! recorded like any other.
//!
//! # The result, on `cmd/{device}/{tag}/result`
//!
//! [`report_json`]: one JSON object per command (not retained), also the
//! history's detail and the status page's answer;
//! `docs/schemas/write-result.json` is its schema.
//!
//! ```json
//! {"id": "wo-4711-1", "device": "pump1", "tag": "setpoint", "v": 42.5,
//!  "by": "jdoe", "source": "mqtt", "result": "verified", "reason": null,
//!  "message": null, "old": 40.0, "written": 42.5, "read_back": 42.5,
//!  "ts": "2026-12-07T13:40:00.135Z", "received": "2026-12-07T13:40:00.123Z",
//!  "took_ms": 12}
//! ```

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value as JsonValue, json};

use super::inbound::MAX_TEXT;
use super::json::{Json, timestamp};
use crate::command::{Delivery, Requested, Source, WriteCommand, WriteReport, WriteResult};
use crate::tag::Value;

/// Longest string value a command may ask to write, in characters: more
/// than any register block one write can hold (123 registers, 246
/// bytes). A longer one is refused as malformed, never cut.
pub const MAX_VALUE_TEXT: usize = 256;

/// Longest `ts` text read; RFC 3339 with nanoseconds and an offset is 35.
const MAX_TS_TEXT: usize = 64;

/// Times in milliseconds below this (March 1973) are taken for times in
/// seconds sent by mistake.
const MIN_TS_MILLIS: f64 = 1e11;

/// Times in milliseconds from this (year 10000) on are not times.
const MAX_TS_MILLIS: f64 = 253_402_300_800_000.0;

/// Reads a command received on `cmd/{device}/{tag}`: `{"v": 42.5, "id":
/// "…", "by": "…", "ts": …}`. A payload that cannot be read gives a
/// command whose value is [`Requested::Malformed`], so that the refusal
/// is answered and recorded like any other. Never fails, never panics;
/// see the module documentation for the fields.
pub fn read_command(
    device: &str,
    tag: &str,
    payload: &[u8],
    delivery: Delivery,
    received: SystemTime,
) -> WriteCommand {
    let mut command = WriteCommand {
        device: shorten(device),
        tag: shorten(tag),
        value: Requested::Malformed(String::new()),
        id: None,
        by: None,
        sent: None,
        received,
        source: Source::Mqtt,
        delivery,
    };
    command.value = match read_fields(payload, &mut command) {
        Ok(value) => value,
        Err(why) => Requested::Malformed(shorten(&why)),
    };
    command
}

/// Reads the payload's fields into `command` (`id`, `by` and `sent`, as
/// far as they can be read) and returns the value, or why the command
/// cannot be read.
fn read_fields(payload: &[u8], command: &mut WriteCommand) -> Result<Requested, String> {
    let json: JsonValue = serde_json::from_slice(payload)
        .map_err(|e| format!("not JSON: {}", shorten(&e.to_string())))?;
    let JsonValue::Object(mut fields) = json else {
        return Err(format!(
            "expected a JSON object like {{\"v\": 42.5}}, not {}",
            kind(&json)
        ));
    };
    // The sender's id and name first: a refusal for anything else is
    // still answered with them.
    let mut problems = Vec::new();
    match fields.remove("id") {
        None | Some(JsonValue::Null) => {}
        Some(JsonValue::String(s)) => command.id = text(&s),
        Some(JsonValue::Number(n)) => command.id = text(&n.to_string()),
        Some(other) => problems.push(format!(
            "\"id\" must be a string or a number, not {}",
            kind(&other)
        )),
    }
    match fields.remove("by") {
        None | Some(JsonValue::Null) => {}
        Some(JsonValue::String(s)) => command.by = text(&s),
        Some(other) => problems.push(format!("\"by\" must be a string, not {}", kind(&other))),
    }
    match fields.remove("ts").map(|ts| sent_at(&ts)) {
        None | Some(Ok(None)) => {}
        Some(Ok(Some(at))) => command.sent = Some(at),
        Some(Err(why)) => problems.push(why),
    }
    let value = match fields.remove("v") {
        None => Err("no \"v\": send the value to write, e.g. {\"v\": 42.5}".to_owned()),
        Some(v) => requested(v),
    };
    match value {
        Ok(value) if problems.is_empty() => Ok(value),
        Ok(_) => Err(problems.join("; ")),
        Err(why) => {
            problems.insert(0, why);
            Err(problems.join("; "))
        }
    }
}

/// The value asked for, from `v`.
fn requested(v: JsonValue) -> Result<Requested, String> {
    match v {
        JsonValue::Bool(b) => Ok(Requested::Bool(b)),
        JsonValue::Number(n) => number(&n).map(Requested::Number),
        JsonValue::String(s) if s.chars().nth(MAX_VALUE_TEXT).is_some() => Err(format!(
            "\"v\" is a text longer than {MAX_VALUE_TEXT} characters"
        )),
        JsonValue::String(s) => Ok(Requested::Text(s)),
        other => Err(format!(
            "\"v\" must be a number, true/false or a string, not {}",
            kind(&other)
        )),
    }
}

/// A JSON number as an f64, refusing an integer the f64 would round.
fn number(n: &serde_json::Number) -> Result<f64, String> {
    let exact = |whole: i128, x: f64| {
        // `as` saturates, so an f64 one above the integer range compares
        // unequal here rather than equal to the saturated value.
        if x as i128 == whole {
            Ok(x)
        } else {
            Err(format!(
                "\"v\" {whole} is an integer too large to be written exactly (at most 2^53)"
            ))
        }
    };
    if let Some(u) = n.as_u64() {
        return exact(i128::from(u), u as f64);
    }
    if let Some(i) = n.as_i64() {
        return exact(i128::from(i), i as f64);
    }
    match n.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err("\"v\" is not a finite number".to_owned()),
    }
}

/// When the sender says it sent the command: `None` for `null`.
fn sent_at(ts: &JsonValue) -> Result<Option<SystemTime>, String> {
    match ts {
        JsonValue::Null => Ok(None),
        JsonValue::Number(n) => {
            let ms = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..MAX_TS_MILLIS).contains(&ms) {
                return Err(format!(
                    "\"ts\" {} is not a time in milliseconds since the epoch",
                    shorten(&n.to_string())
                ));
            }
            if ms < MIN_TS_MILLIS {
                return Err(format!(
                    "\"ts\" {} looks like seconds: send milliseconds since the epoch or RFC 3339 text",
                    shorten(&n.to_string())
                ));
            }
            // Within range by the checks above: whole milliseconds, then
            // the fraction as nanoseconds.
            let whole = Duration::from_millis(ms.trunc() as u64);
            let fraction = Duration::from_nanos((ms.fract() * 1e6) as u64);
            SystemTime::UNIX_EPOCH
                .checked_add(whole + fraction)
                .map(Some)
                .ok_or_else(|| "\"ts\" is out of range".to_owned())
        }
        JsonValue::String(s) => rfc3339(s).map(Some).ok_or_else(|| {
            format!(
                "\"ts\" {:?} is not RFC 3339 with Z or an offset, like \"2026-12-07T13:40:00.123Z\"",
                shorten(s)
            )
        }),
        other => Err(format!(
            "\"ts\" must be milliseconds since the epoch or RFC 3339 text, not {}",
            kind(other)
        )),
    }
}

/// RFC 3339 text: `YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z` or `±HH:MM`
/// (either case; a space for the `T`, as RFC 3339 allows).
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if !text.is_ascii() || text.len() > MAX_TS_TEXT || text.len() < 20 {
        return None;
    }
    let mut t = text.to_ascii_uppercase();
    if t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    if t.ends_with('Z') {
        return humantime::parse_rfc3339(&t).ok();
    }
    // All ASCII, so every byte index is a character boundary.
    let (local, offset) = t.split_at(t.len() - 6);
    let o = offset.as_bytes();
    let sign = match o[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u64::from(a - b'0') * 10 + u64::from(b - b'0'))
    };
    let (hours, minutes) = (digits(o[1], o[2])?, digits(o[4], o[5])?);
    if o[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    let at_local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    // Local time is UTC plus the offset.
    if sign > 0 {
        at_local.checked_sub(offset)
    } else {
        at_local.checked_add(offset)
    }
}

/// The JSON form of a report: the result payload, the history's detail,
/// the status page's answer (`docs/schemas/write-result.json`).
pub fn report_json(report: &WriteReport) -> JsonValue {
    let command = &report.command;
    let reason = match &report.result {
        WriteResult::Rejected(r) => JsonValue::from(r.code()),
        _ => JsonValue::Null,
    };
    let mut out = Map::new();
    out.insert("id".into(), json!(command.id));
    out.insert("device".into(), json!(command.device));
    out.insert("tag".into(), json!(command.tag));
    out.insert("v".into(), requested_json(&command.value));
    out.insert("by".into(), json!(command.by));
    out.insert("source".into(), json!(command.source.as_str()));
    out.insert("result".into(), json!(report.result.as_str()));
    out.insert("reason".into(), reason);
    out.insert("message".into(), json!(report.result.reason()));
    for (name, value) in [
        ("old", &report.old),
        ("written", &report.written),
        ("read_back", &report.read_back),
    ] {
        out.insert(
            name.into(),
            value.as_ref().map_or(JsonValue::Null, tag_value),
        );
    }
    out.insert("ts".into(), json!(timestamp(report.at)));
    out.insert("received".into(), json!(timestamp(command.received)));
    let took = u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX);
    out.insert("took_ms".into(), json!(took));
    JsonValue::Object(out)
}

/// The result payload published on `cmd/{device}/{tag}/result`.
pub fn result_payload(report: &WriteReport) -> Vec<u8> {
    report_json(report).to_string().into_bytes()
}

/// A tag's value as the rules' messages write it ([`Json`]): a float that
/// an f32 holds exactly with f32's shortest digits (84.71237, not
/// 84.71237182617188), a float that is not finite as `null`. Through a
/// `serde_json::Value` an f32 would be widened again, so its shortest
/// digits are read back as the f64 they print as.
fn tag_value(value: &Value) -> JsonValue {
    match value {
        Value::Float(x) if x.is_finite() && f64::from(*x as f32) == *x => (*x as f32)
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(JsonValue::Null, JsonValue::Number),
        other => serde_json::to_value(Json(Some(other))).unwrap_or(JsonValue::Null),
    }
}

/// The value asked for, as sent; `null` when it could not be read (or is
/// a number JSON cannot hold).
fn requested_json(value: &Requested) -> JsonValue {
    match value {
        Requested::Bool(b) => JsonValue::Bool(*b),
        Requested::Number(x) => {
            serde_json::Number::from_f64(*x).map_or(JsonValue::Null, JsonValue::Number)
        }
        Requested::Text(s) => JsonValue::String(s.clone()),
        Requested::Malformed(_) => JsonValue::Null,
    }
}

/// A JSON value's kind, for reasons (never the value itself: it may be
/// long).
fn kind(v: &JsonValue) -> &'static str {
    match v {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "a boolean",
        JsonValue::Number(_) => "a number",
        JsonValue::String(_) => "a string",
        JsonValue::Array(_) => "an array",
        JsonValue::Object(_) => "an object",
    }
}

/// A text from outside, cut; an empty one is none.
fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| shorten(s))
}

/// Cuts a text from outside to [`MAX_TEXT`] characters (with `…`).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::command::RejectReason;

    /// 2026-12-07T13:40:00.123Z.
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_650_800_123)
    }

    fn read(payload: &str) -> WriteCommand {
        read_command(
            "pump1",
            "setpoint",
            payload.as_bytes(),
            Delivery::Live,
            at(),
        )
    }

    fn malformed(command: &WriteCommand) -> &str {
        match &command.value {
            Requested::Malformed(why) => why,
            other => panic!("expected a malformed command, got {other:?}"),
        }
    }

    #[test]
    fn every_field_is_read() {
        let c =
            read(r#"{"v": 42.5, "id": "wo-1", "by": "jdoe", "ts": 1796650800000, "extra": [1]}"#);
        assert_eq!(
            c,
            WriteCommand {
                device: "pump1".into(),
                tag: "setpoint".into(),
                value: Requested::Number(42.5),
                id: Some("wo-1".into()),
                by: Some("jdoe".into()),
                sent: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_650_800_000)),
                received: at(),
                source: Source::Mqtt,
                delivery: Delivery::Live,
            }
        );
        assert_eq!(read(r#"{"v": true}"#).value, Requested::Bool(true));
        assert_eq!(read(r#"{"v": false}"#).value, Requested::Bool(false));
        assert_eq!(read(r#"{"v": -3}"#).value, Requested::Number(-3.0));
        assert_eq!(read(r#"{"v": 1e3}"#).value, Requested::Number(1000.0));
        assert_eq!(
            read(r#"{"v": "AUTO"}"#).value,
            Requested::Text("AUTO".into())
        );
        assert_eq!(read(r#"{"v": ""}"#).value, Requested::Text(String::new()));
        // 2^53 is exact; an id may be a number; null is absent.
        assert_eq!(
            read(r#"{"v": 9007199254740992}"#).value,
            Requested::Number(9_007_199_254_740_992.0)
        );
        assert_eq!(read(r#"{"v": 1, "id": 4711}"#).id.as_deref(), Some("4711"));
        let nulls = read(r#"{"v": 1, "id": null, "by": null, "ts": null}"#);
        assert_eq!((nulls.id, nulls.by, nulls.sent), (None, None, None));
        // An empty id or name is none.
        let empty = read(r#"{"v": 1, "id": "", "by": ""}"#);
        assert_eq!((empty.id, empty.by), (None, None));
        // Delivery and receipt are the caller's.
        let queued = read_command("d", "t", br#"{"v":1}"#, Delivery::Queued, at());
        assert_eq!((queued.delivery, queued.received), (Delivery::Queued, at()));
    }

    #[test]
    fn ts_is_milliseconds_or_rfc3339() {
        let sent = |ts: &str| read(&format!(r#"{{"v": 1, "ts": {ts}}}"#)).sent;
        let t = |ms: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(sent("1796650800123"), t(1_796_650_800_123));
        assert_eq!(
            sent("1796650800123.5"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_650_800_123_500))
        );
        assert_eq!(sent(r#""2026-12-07T13:40:00.123Z""#), t(1_796_650_800_123));
        assert_eq!(sent(r#""2026-12-07T13:40:00Z""#), t(1_796_650_800_000));
        assert_eq!(sent(r#""2026-12-07t13:40:00.123z""#), t(1_796_650_800_123));
        assert_eq!(sent(r#""2026-12-07 13:40:00.123Z""#), t(1_796_650_800_123));
        assert_eq!(
            sent(r#""2026-12-07T14:40:00.123+01:00""#),
            t(1_796_650_800_123)
        );
        assert_eq!(
            sent(r#""2026-12-07T08:10:00.123-05:30""#),
            t(1_796_650_800_123)
        );
        assert_eq!(
            sent(r#""2026-12-07T13:40:00.123+00:00""#),
            t(1_796_650_800_123)
        );
        // What fieldgate publishes reads back.
        assert_eq!(sent(&format!("{:?}", timestamp(at()))), Some(at()));
    }

    #[test]
    fn a_bad_ts_makes_the_command_malformed() {
        for ts in [
            "1796650800", // seconds
            "0",
            "-5",
            "1e300",
            "true",
            "[1]",
            "{}",
            r#""yesterday""#,
            r#""2026-12-07T13:40:00""#,      // no zone: ambiguous
            r#""2026-12-07T13:40:00+0100""#, // not RFC 3339
            r#""2026-12-07T13:40:00+24:00""#,
            r#""2026-13-07T13:40:00Z""#,
            r#""1969-12-31T23:59:59Z""#,
            r#""2026-12-07T13:40:00.123Zx""#,
            r#""2026-12-07T13:40:00.1²3Z""#,
        ] {
            let c = read(&format!(r#"{{"v": 1, "id": "x", "ts": {ts}}}"#));
            let why = malformed(&c);
            assert!(why.contains("\"ts\""), "{ts}: {why}");
            assert_eq!(c.id.as_deref(), Some("x"), "{ts}: the id is still read");
            assert_eq!(c.sent, None, "{ts}");
        }
        assert!(malformed(&read(r#"{"v":1,"ts":1796650800}"#)).contains("seconds"));
    }

    #[test]
    fn every_malformed_payload_is_still_a_command_with_what_could_be_read() {
        for (payload, says) in [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("42.5", "JSON object"),
            (r#"[{"v":1}]"#, "JSON object"),
            (r#""v""#, "JSON object"),
            (r#"{"id":"a1","by":"jdoe"}"#, "no \"v\""),
            (r#"{"v":null,"id":"a1","by":"jdoe"}"#, "not null"),
            (r#"{"v":[1],"id":"a1","by":"jdoe"}"#, "not an array"),
            (r#"{"v":{"x":1},"id":"a1","by":"jdoe"}"#, "not an object"),
            (
                r#"{"v":9007199254740993,"id":"a1","by":"jdoe"}"#,
                "too large",
            ),
            (
                r#"{"v":18446744073709551615,"id":"a1","by":"jdoe"}"#,
                "too large",
            ),
            (
                r#"{"v":-9007199254740993,"id":"a1","by":"jdoe"}"#,
                "too large",
            ),
            (r#"{"v":1,"id":true,"by":"jdoe"}"#, "\"id\" must be"),
            (r#"{"v":1,"id":"a1","by":7}"#, "\"by\" must be"),
        ] {
            let c = read(payload);
            let why = malformed(&c);
            assert!(why.contains(says), "{payload}: {why}");
            assert_eq!((c.device.as_str(), c.tag.as_str()), ("pump1", "setpoint"));
            if payload.contains("\"a1\"") {
                assert_eq!(c.id.as_deref(), Some("a1"), "{payload}");
            }
            if payload.contains("\"jdoe\"") {
                assert_eq!(c.by.as_deref(), Some("jdoe"), "{payload}");
            }
        }
        let not_utf8 = read_command("d", "t", &[0xff, 0xfe, b'{'], Delivery::Live, at());
        assert!(malformed(&not_utf8).contains("not JSON"));
        // Every problem is said, the value's first.
        let both = read(r#"{"v":null,"ts":"soon"}"#);
        let why = malformed(&both);
        assert!(why.starts_with("\"v\""), "{why}");
        assert!(why.contains("\"ts\""), "{why}");
    }

    #[test]
    fn texts_from_outside_are_bounded() {
        let long = "é".repeat(5000);
        let cut = |s: &str| s.chars().count() <= MAX_TEXT + 1;
        let c = read_command(
            &long,
            &long,
            format!(r#"{{"v":1,"id":"{long}","by":"{long}"}}"#).as_bytes(),
            Delivery::Live,
            at(),
        );
        assert_eq!(c.value, Requested::Number(1.0));
        for text in [
            &c.device,
            &c.tag,
            c.id.as_ref().unwrap(),
            c.by.as_ref().unwrap(),
        ] {
            assert_eq!(text.chars().count(), MAX_TEXT + 1, "cut, with …");
            assert!(text.ends_with('…'));
        }
        // A long value is refused, never cut (that would write another
        // value than was asked).
        let value = "x".repeat(MAX_VALUE_TEXT);
        assert_eq!(
            read(&format!(r#"{{"v":"{value}"}}"#)).value,
            Requested::Text(value.clone())
        );
        let c = read(&format!(r#"{{"v":"{value}y"}}"#));
        assert!(malformed(&c).contains("longer than"));
        // Reasons quote nothing long from the payload.
        for payload in [
            format!(r#"{{"v":1,"ts":"{long}"}}"#),
            format!(r#"{{"v":1,"ts":{}}}"#, "9".repeat(400)),
            format!(r#"{{"v":"{long}"}}"#),
            format!(r#"{{"v":1,"{long}"#),
            long.clone(),
        ] {
            let c = read(&payload);
            assert!(cut(malformed(&c)), "{}", malformed(&c));
        }
    }

    proptest! {
        /// Whatever arrives, a command comes out, with every text bounded.
        #[test]
        fn any_payload_gives_a_bounded_command(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            device in ".{0,300}",
            json_ish in r#"\{("(v|id|by|ts)":(-?[0-9]{1,20}(\.[0-9]{1,5})?|"[^"]{0,300}"|true|null|\[\]),?){0,5}\}"#,
        ) {
            for payload in [&payload[..], json_ish.as_bytes()] {
                let c = read_command(&device, "t", payload, Delivery::Live, at());
                let bounded = |s: &str| s.chars().count() <= MAX_TEXT + 1;
                prop_assert!(bounded(&c.device));
                prop_assert!(c.id.as_deref().is_none_or(bounded));
                prop_assert!(c.by.as_deref().is_none_or(bounded));
                match &c.value {
                    Requested::Malformed(why) => prop_assert!(bounded(why)),
                    Requested::Text(t) => prop_assert!(t.chars().count() <= MAX_VALUE_TEXT),
                    Requested::Number(x) => prop_assert!(x.is_finite()),
                    Requested::Bool(_) => {}
                }
                let json = report_json(&report(c, WriteResult::Verified));
                prop_assert_eq!(json.as_object().map(|o| o.len()), Some(15));
            }
        }
    }

    fn report(command: WriteCommand, result: WriteResult) -> WriteReport {
        WriteReport {
            command,
            old: Some(Value::Float(40.0)),
            written: Some(Value::Float(42.5)),
            read_back: Some(Value::Float(42.5)),
            result,
            at: at() + Duration::from_millis(12),
            took: Duration::from_millis(12),
        }
    }

    fn validator(name: &str) -> jsonschema::Validator {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/schemas")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// Checks `value` against `schema`, with every error.
    fn check(schema: &jsonschema::Validator, value: &JsonValue) {
        let errors: Vec<String> = schema
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
    }

    #[test]
    fn the_report_is_exactly_the_documented_object() {
        let c = read(r#"{"v": 42.5, "id": "abc", "by": "jdoe"}"#);
        let json = report_json(&report(c, WriteResult::Verified));
        assert_eq!(
            json,
            json!({
                "id": "abc", "device": "pump1", "tag": "setpoint", "v": 42.5,
                "by": "jdoe", "source": "mqtt", "result": "verified",
                "reason": null, "message": null,
                "old": 40.0, "written": 42.5, "read_back": 42.5,
                "ts": "2026-12-07T13:40:00.135Z", "received": "2026-12-07T13:40:00.123Z",
                "took_ms": 12
            })
        );
        assert_eq!(
            String::from_utf8(result_payload(&report(
                read(r#"{"v":42.5}"#),
                WriteResult::Verified
            )))
            .unwrap(),
            r#"{"by":null,"device":"pump1","id":null,"message":null,"old":40.0,"read_back":42.5,"reason":null,"received":"2026-12-07T13:40:00.123Z","result":"verified","source":"mqtt","tag":"setpoint","took_ms":12,"ts":"2026-12-07T13:40:00.135Z","v":42.5,"written":42.5}"#
        );
    }

    #[test]
    fn rejections_carry_their_code_and_message() {
        let c = read(r#"{"v": 99, "id": 7}"#);
        let mut r = report(
            c,
            WriteResult::Rejected(RejectReason::OutOfRange("99 is above max 80".into())),
        );
        (r.old, r.written, r.read_back) = (Some(Value::Float(40.0)), None, None);
        let json = report_json(&r);
        assert_eq!(json["id"], "7");
        assert_eq!(json["v"], 99.0);
        assert_eq!(json["result"], "rejected");
        assert_eq!(json["reason"], "out_of_range");
        assert_eq!(json["message"], "out of range: 99 is above max 80");
        assert_eq!(
            (&json["written"], &json["read_back"]),
            (&JsonValue::Null, &JsonValue::Null)
        );

        // Malformed: the value is null, the id still answered.
        let c = read(r#"{"v": null, "id": "x1"}"#);
        let why = malformed(&c).to_owned();
        let json = report_json(&WriteReport {
            old: None,
            written: None,
            read_back: None,
            ..report(c, WriteResult::Rejected(RejectReason::BadPayload(why)))
        });
        assert_eq!((&json["id"], &json["v"]), (&json!("x1"), &JsonValue::Null));
        assert_eq!(json["reason"], "bad_payload");
    }

    #[test]
    fn values_are_written_as_the_data_payloads_write_them() {
        let c = read(r#"{"v": "AUTO"}"#);
        let json = report_json(&WriteReport {
            // An f32 register's value: f32's shortest digits.
            old: Some(Value::Float(f64::from(84.712_37_f32))),
            written: Some(Value::Int(-3)),
            read_back: Some(Value::Float(f64::NAN)),
            ..report(
                c,
                WriteResult::Written {
                    note: Some("read-back differs".into()),
                },
            )
        });
        let text = json.to_string();
        assert!(text.contains(r#""old":84.71237,"#), "{text}");
        assert_eq!(json["written"], -3);
        assert_eq!(json["read_back"], JsonValue::Null);
        assert_eq!(json["v"], "AUTO");
        assert_eq!(json["result"], "written");
        assert_eq!(json["message"], "read-back differs");
        let text_value = report_json(&WriteReport {
            old: Some(Value::Text("MAN".into())),
            written: Some(Value::Bool(true)),
            ..report(read(r#"{"v":1}"#), WriteResult::Verified)
        });
        assert_eq!(
            (&text_value["old"], &text_value["written"]),
            (&json!("MAN"), &json!(true))
        );
    }

    #[test]
    fn reports_match_the_result_schema() {
        let schema = validator("write-result.json");
        let results = [
            WriteResult::Verified,
            WriteResult::Written { note: None },
            WriteResult::Written {
                note: Some("read back 42.4".into()),
            },
            WriteResult::Unknown("no answer within 1s".into()),
            WriteResult::Rejected(RejectReason::UnknownTag {
                device: "pump1".into(),
                tag: "nope".into(),
            }),
            WriteResult::Rejected(RejectReason::NotWritable),
            WriteResult::Rejected(RejectReason::BadPayload("no \"v\"".into())),
            WriteResult::Rejected(RejectReason::WrongType("a text for an f32".into())),
            WriteResult::Rejected(RejectReason::OutOfRange("99 > 80".into())),
            WriteResult::Rejected(RejectReason::NotRepresentable("70000 > 65535".into())),
            WriteResult::Rejected(RejectReason::Rate { per_minute: 6 }),
            WriteResult::Rejected(RejectReason::Stale("retained".into())),
            WriteResult::Rejected(RejectReason::DeviceDown("timeout".into())),
            WriteResult::Rejected(RejectReason::Refused("exception 2".into())),
            WriteResult::Rejected(RejectReason::Busy("stopping".into())),
        ];
        for payload in [
            r#"{"v": 42.5, "id": "abc", "by": "jdoe", "ts": 1796650800000}"#,
            r#"{"v": true, "id": 12}"#,
            r#"{"v": "AUTO"}"#,
            r#"{"v": null}"#,
            "garbage",
        ] {
            for result in &results {
                let mut r = report(read(payload), result.clone());
                for source in [Source::Mqtt, Source::Sparkplug, Source::Http] {
                    r.command.source = source;
                    let value: JsonValue = serde_json::from_slice(&result_payload(&r)).unwrap();
                    check(&schema, &value);
                }
            }
        }
        // The schema holds the line: a rejection without its reason, or a
        // verified write with a reason, is not a result.
        let mut json = report_json(&report(read(r#"{"v":1}"#), WriteResult::Verified));
        json["reason"] = json!("stale");
        assert!(!schema.is_valid(&json));
        json["reason"] = JsonValue::Null;
        json["result"] = json!("rejected");
        assert!(!schema.is_valid(&json));
    }

    #[test]
    fn the_command_schema_takes_what_is_read_and_refuses_what_is_not() {
        let schema = validator("write-command.json");
        let json = |s: &str| serde_json::from_str::<JsonValue>(s).unwrap();
        for good in [
            r#"{"v": 42.5, "id": "wo-1", "by": "jdoe", "ts": 1796650800000}"#,
            r#"{"v": true, "id": 12, "ts": "2026-12-07T13:40:00.123Z"}"#,
            r#"{"v": "AUTO", "ts": "2026-12-07T14:40:00+01:00", "note": "ignored"}"#,
            r#"{"v": -1, "id": null, "by": null, "ts": null}"#,
        ] {
            check(&schema, &json(good));
            assert!(
                !matches!(read(good).value, Requested::Malformed(_)),
                "{good}"
            );
        }
        for bad in [
            r#"{"id": "x"}"#,
            r#"{"v": null}"#,
            r#"{"v": [1]}"#,
            r#"{"v": 1, "ts": 1796650800}"#,
            r#"{"v": 1, "ts": "yesterday"}"#,
            r#"{"v": 1, "id": true}"#,
            r#"{"v": 1, "by": 3}"#,
            "[1]",
        ] {
            assert!(!schema.is_valid(&json(bad)), "{bad}");
            assert!(matches!(read(bad).value, Requested::Malformed(_)), "{bad}");
        }
    }
}

//! Write commands from outside: any topic below the gateway's `cmd` level,
//! any payload and retain flag, read by `inbound::read` and
//! `command::read_command`, then written back as a result with
//! `report_json`. None may panic; a command topic with a payload is always
//! a command (never refused by the parser, never anything else), `/result`
//! is never one, and every text from outside stays bounded in the command,
//! its reason, the errors and the result.
#![no_main]

use std::time::{Duration, SystemTime};

use fieldgate::command::{Delivery, RejectReason, Requested, WriteCommand, WriteReport, WriteResult};
use fieldgate::contract::command::{self, MAX_VALUE_TEXT};
use fieldgate::contract::inbound::{self, MAX_TEXT, Request};
use fieldgate::contract::Topics;
use fieldgate::tag::Value;
use libfuzzer_sys::fuzz_target;

/// A text cut to `MAX_TEXT` characters (and its `…`) at most.
fn bounded(s: &str) -> bool {
    s.chars().count() <= MAX_TEXT + 1
}

/// Every text of a command from outside is bounded.
fn check(c: &WriteCommand) {
    assert!(bounded(&c.device) && bounded(&c.tag), "{c:?}");
    assert!(c.id.as_deref().is_none_or(bounded), "{c:?}");
    assert!(c.by.as_deref().is_none_or(bounded), "{c:?}");
    match &c.value {
        Requested::Malformed(why) => assert!(bounded(why), "{why}"),
        Requested::Text(t) => assert!(t.chars().count() <= MAX_VALUE_TEXT),
        Requested::Number(x) => assert!(x.is_finite()),
        Requested::Bool(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let retained = flags & 1 != 0;
    // The topic's levels after `cmd/`, up to the first NUL; the rest is
    // the payload.
    let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (suffix, payload) = (String::from_utf8_lossy(&rest[..cut]), rest.get(cut + 1..).unwrap_or_default());
    let topics = Topics::new("fieldgate", "fuzz", "gw");
    let topic = format!("fieldgate/fuzz/gw/cmd/{suffix}");
    let received = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let levels: Vec<&str> = suffix.split('/').collect();
    let a_command = levels.len() == 2 && levels.iter().all(|l| !l.is_empty());
    let empty = payload.iter().all(u8::is_ascii_whitespace);

    match inbound::read(&topics, &topic, payload, retained, received) {
        Ok(Some(Request::Write(c))) => {
            assert!(a_command && !empty, "{topic}");
            let delivery = if retained { Delivery::Retained } else { Delivery::Live };
            assert_eq!((c.delivery, c.received), (delivery, received));
            check(&c);
        }
        Ok(Some(other)) => panic!("{topic} asks for {other:?}"),
        Ok(None) => assert!(a_command && empty, "{topic}"),
        Err(e) => {
            assert!(!a_command, "{topic}: {e}");
            // The topic is cut, then quoted with escapes (up to 10
            // characters for one).
            assert!(e.to_string().chars().count() <= 12 * MAX_TEXT, "{e}");
        }
    }
    assert!(topics.parse_inbound(&format!("{topic}/result")).is_none() || levels.len() == 1);

    // The payload reader on its own, whatever the topic held.
    let (device, tag) = suffix.split_once('/').unwrap_or((&suffix, ""));
    let c = command::read_command(device, tag, payload, Delivery::Queued, received);
    check(&c);
    let reason = match &c.value {
        Requested::Malformed(why) => RejectReason::BadPayload(why.clone()),
        _ => RejectReason::Stale("queued while the gateway was away".into()),
    };
    for result in [
        WriteResult::Rejected(reason),
        WriteResult::Verified,
        WriteResult::Written { note: None },
        WriteResult::Unknown("no answer".into()),
    ] {
        let report = WriteReport {
            command: c.clone(),
            old: Some(Value::Float(f64::from(flags))),
            written: Some(Value::Int(-i64::from(flags))),
            read_back: Some(Value::Float(f64::NAN)),
            result,
            at: received + Duration::from_millis(u64::from(flags)),
            took: Duration::from_millis(u64::from(flags)),
        };
        let json = command::report_json(&report);
        let object = json.as_object().expect("a result is an object");
        assert_eq!(object.len(), 15);
        for text in object.values().filter_map(|v| v.as_str()) {
            assert!(text.chars().count() <= MAX_VALUE_TEXT.max(2 * MAX_TEXT), "{text}");
        }
        let back: serde_json::Value =
            serde_json::from_slice(&command::result_payload(&report)).expect("the payload is JSON");
        // Texts read back exactly (floats may differ by a last digit in
        // serde_json's default parsing).
        for (name, value) in object {
            if value.is_string() || value.is_null() {
                assert_eq!(&back[name], value, "{name}");
            }
        }
    }
});

//! The JSON payloads of the data topics (`docs/mqtt.md`), written by hand
//! into one buffer: this runs for every poll, and a generic serializer
//! would build a map per message first.
//!
//! ```json
//! {"ts":"2026-11-21T06:38:25.305Z","store":"01KBX3J8W5R2Q9T7M4N6P0ZC1D","seq":42,
//!  "tags":{"bearing_temp":{"v":55.68,"q":"good","u":"degC"},
//!          "vibration":{"v":null,"q":"bad:timeout","u":"mm/s"}}}
//! ```
//!
//! A poll stamped while the kernel did not report the wall clock
//! synchronised carries `"clock":"unsynced"` after `ts`.

use std::fmt::Write as _;

use super::json::{string, timestamp, value};
use crate::reading::{Batch, Reading};
use crate::tag::Tag;

/// One device poll: the readings at `picked` indexes of the batch, as
/// message `seq` of its topic in the store `store` (the store's identity).
pub fn device_message(batch: &Batch, picked: &[usize], seq: u64, store: &str) -> Vec<u8> {
    let mut out = String::with_capacity(96 + picked.len() * 48);
    out.push_str("{\"ts\":\"");
    out.push_str(&timestamp(batch.timestamp));
    clock_note(&mut out, batch);
    stamp(&mut out, store, seq);
    out.push_str(",\"tags\":{");
    for (n, &i) in picked.iter().enumerate() {
        let Some(reading) = batch.readings.get(i) else {
            continue;
        };
        let Some(tag) = batch.device.tags.get(reading.tag) else {
            continue;
        };
        if n > 0 {
            out.push(',');
        }
        string(&mut out, &tag.name);
        out.push(':');
        reading_object(&mut out, tag, reading);
    }
    out.push_str("}}");
    out.into_bytes()
}

/// One tag on its own topic (`seq` and `store` as for [`device_message`]).
pub fn tag_message(batch: &Batch, reading: &Reading, seq: u64, store: &str) -> Vec<u8> {
    let mut out = String::with_capacity(128);
    out.push_str("{\"ts\":\"");
    out.push_str(&timestamp(batch.timestamp));
    clock_note(&mut out, batch);
    stamp(&mut out, store, seq);
    out.push(',');
    if let Some(tag) = batch.device.tags.get(reading.tag) {
        fields(&mut out, tag, reading);
    }
    out.push('}');
    out.into_bytes()
}

/// Closes the `ts` string and, when the wall clock was not synchronised
/// as the poll was stamped, says so (`"clock":"unsynced"`): a historian
/// can then tell a stamp made before NTP set the clock from a true one.
fn clock_note(out: &mut String, batch: &Batch) {
    out.push('"');
    if batch.unsynced {
        out.push_str(",\"clock\":\"unsynced\"");
    }
}

/// Writes `,"store":…,"seq":N`.
fn stamp(out: &mut String, store: &str, seq: u64) {
    out.push_str(",\"store\":");
    string(out, store);
    let _ = write!(out, ",\"seq\":{seq}");
}

fn reading_object(out: &mut String, tag: &Tag, reading: &Reading) {
    out.push('{');
    fields(out, tag, reading);
    out.push('}');
}

fn fields(out: &mut String, tag: &Tag, reading: &Reading) {
    out.push_str("\"v\":");
    match &reading.value {
        None => out.push_str("null"),
        Some(v) => value(out, tag, v),
    }
    out.push_str(",\"q\":\"");
    let _ = write!(out, "{}", reading.quality);
    out.push('"');
    if let Some(unit) = &tag.unit {
        out.push_str(",\"u\":");
        string(out, unit);
    }
}

//! The desk's judgement of a command, pure: which tag it names, whether
//! that tag may be written, whether the value suits it, whether the
//! command is fresh, and whether the tag's rate allows another write.
//! Time comes in as arguments (the wall clock for the command's age, the
//! monotonic clock for the rate), so every rule is tested without waiting.
//!
//! The order of the checks is the order of the answers a sender needs:
//! an unreadable payload first (nothing else can be said of it), then a
//! copy the broker kept (never a write, whatever it asks), then the tag,
//! then the command's age, then the value, then the rate, which counts
//! only writes that went to the device.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::command::{Delivery, RejectReason, Requested, WriteCommand};
use crate::config::{Config, Device};
use crate::modbus::write::{self, WritePlan};
use crate::tag::{Value, WriteAccess};

/// The window `max_rate` counts writes in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A command the desk may send to the device.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The device.
    pub device: Arc<Device>,
    /// The tag's index in the device's tags.
    pub tag: usize,
    /// The value, fitted to the tag, in engineering units.
    pub value: Value,
    /// How it goes on the wire.
    pub plan: WritePlan,
    /// Read back after the write.
    pub confirm: bool,
}

/// The rate book: when each tag was last written, within the window.
/// Kept across reloads (the desk hands it on), so a reload does not reset
/// a tag's rate.
#[derive(Debug, Default, Clone)]
pub struct Gate {
    recent: HashMap<(String, String), VecDeque<Instant>>,
}

impl Gate {
    /// Judges `command` against `config` at wall-clock `now_wall` and
    /// monotonic `now`. An accepted command is counted against its tag's
    /// rate at once: it is going to the device.
    pub fn judge(
        &mut self,
        config: &Config,
        command: &WriteCommand,
        now_wall: SystemTime,
        now: Instant,
    ) -> Result<Accepted, RejectReason> {
        if let Requested::Malformed(why) = &command.value {
            return Err(RejectReason::BadPayload(why.clone()));
        }
        match command.delivery {
            Delivery::Live => {}
            Delivery::Retained => {
                return Err(RejectReason::Stale(
                    "a retained message: a write is never taken from a copy the broker kept; publish commands without the retain flag (and clear this one with an empty retained message)".into(),
                ));
            }
            Delivery::Queued => {
                return Err(RejectReason::Stale(
                    "queued by the broker while the gateway was disconnected".into(),
                ));
            }
        }
        let unknown = || RejectReason::UnknownTag {
            device: command.device.clone(),
            tag: command.tag.clone(),
        };
        let device = config
            .devices
            .iter()
            .find(|d| d.name == command.device)
            .ok_or_else(unknown)?;
        let (index, tag) = device
            .tags
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == command.tag)
            .ok_or_else(unknown)?;
        let Some(access) = &tag.write else {
            return Err(RejectReason::NotWritable);
        };
        stale(command, config.writes.max_age, now_wall)?;
        let value = write::fit(tag, &command.value)?;
        within_limits(access, &value)?;
        let plan = write::plan(device, tag, &value)?;
        if let Some(per_minute) = access.max_rate {
            let key = (device.name.clone(), tag.name.clone());
            let times = self.recent.entry(key).or_default();
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= per_minute as usize {
                return Err(RejectReason::Rate { per_minute });
            }
            times.push_back(now);
        }
        Ok(Accepted {
            device: Arc::clone(device),
            tag: index,
            value,
            plan,
            confirm: access.confirm,
        })
    }

    /// Forgets tags no longer configured (after a reload).
    pub fn retain_configured(&mut self, config: &Config) {
        self.recent.retain(|(device, tag), _| {
            config
                .device(device)
                .and_then(|d| d.tag(tag))
                .is_some_and(|t| t.write.is_some())
        });
    }
}

/// Refuses a command older than `max_age` by the sender's `ts` or by its
/// arrival, or one whose `ts` is further in the future than `max_age` (a
/// sender's clock that far off cannot say when the command was meant).
fn stale(command: &WriteCommand, max_age: Duration, now: SystemTime) -> Result<(), RejectReason> {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    if let Some(sent) = command.sent {
        match now.duration_since(sent) {
            Ok(age) if age > max_age => {
                return Err(RejectReason::Stale(format!(
                    "sent {} ago (ts); [writes] max_age is {}",
                    secs(age),
                    secs(max_age)
                )));
            }
            Ok(_) => {}
            Err(ahead) if ahead.duration() > max_age => {
                return Err(RejectReason::Stale(format!(
                    "ts is {} in the future: the sender's clock is off",
                    secs(ahead.duration())
                )));
            }
            Err(_) => {}
        }
    }
    if let Ok(waited) = now.duration_since(command.received)
        && waited > max_age
    {
        return Err(RejectReason::Stale(format!(
            "received {} ago and not carried out in time; [writes] max_age is {}",
            secs(waited),
            secs(max_age)
        )));
    }
    Ok(())
}

/// The tag's own limits: `allowed` values, then `min`/`max`.
fn within_limits(access: &WriteAccess, value: &Value) -> Result<(), RejectReason> {
    if !access.allowed.is_empty() && !access.allowed.iter().any(|a| same(a, value)) {
        let list: Vec<String> = access.allowed.iter().map(ToString::to_string).collect();
        return Err(RejectReason::OutOfRange(format!(
            "{value} is not one of the allowed values {}",
            list.join(", ")
        )));
    }
    if let Some(x) = value.as_f64()
        && !matches!(value, Value::Bool(_))
    {
        if let Some(min) = access.min
            && x < min
        {
            return Err(RejectReason::OutOfRange(format!(
                "{value} is below min {min}"
            )));
        }
        if let Some(max) = access.max
            && x > max
        {
            return Err(RejectReason::OutOfRange(format!(
                "{value} is above max {max}"
            )));
        }
    }
    Ok(())
}

/// Equal as values a technician would call equal: numbers by value
/// (`2` and `2.0`), bools and text as they are.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Text(_), _) | (_, Value::Text(_)) => false,
        (Value::Bool(_), _) | (_, Value::Bool(_)) => false,
        (x, y) => x.as_f64() == y.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Source;
    use crate::config::Connection;
    use crate::tag::{Area, DataType, Tag};

    fn config(max_rate: Option<u32>) -> Config {
        let mut setpoint = Tag::new("setpoint", Area::HoldingRegister, 0, DataType::U16);
        setpoint.scale = 0.1;
        setpoint.write = Some(WriteAccess {
            min: Some(0.0),
            max: Some(100.0),
            max_rate,
            ..WriteAccess::default()
        });
        let mut mode = Tag::new("mode", Area::HoldingRegister, 1, DataType::U16);
        mode.write = Some(WriteAccess {
            allowed: vec![Value::Int(0), Value::Int(1), Value::Int(2)],
            ..WriteAccess::default()
        });
        let temp = Tag::new("temp", Area::InputRegister, 0, DataType::U16);
        let device = Device::new(
            "pump1",
            Connection::Tcp {
                host: "127.0.0.1".into(),
                port: 502,
            },
            vec![setpoint, mode, temp],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldgate.toml");
        std::fs::write(&path, "[gateway]\nid = \"gw\"\nsite = \"s\"\n").unwrap();
        let mut c = match crate::config::load_with_env(&path, &[]) {
            Ok(l) => l.config,
            Err(p) => panic!("{p}"),
        };
        c.devices = vec![Arc::new(device)];
        c
    }

    fn command(tag: &str, value: Requested, received: SystemTime) -> WriteCommand {
        WriteCommand {
            device: "pump1".into(),
            tag: tag.into(),
            value,
            id: None,
            by: None,
            sent: None,
            received,
            source: Source::Mqtt,
            delivery: Delivery::Live,
        }
    }

    #[test]
    fn the_checks_answer_in_order() {
        let c = config(None);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = Instant::now();
        let mut gate = Gate::default();
        let reason = |r: Result<Accepted, RejectReason>| r.map(|_| ()).unwrap_err().code();
        let mut bad = command("setpoint", Requested::Malformed("no v".into()), t);
        bad.delivery = Delivery::Retained;
        assert_eq!(reason(gate.judge(&c, &bad, t, now)), "bad_payload");
        let mut retained = command("nope", Requested::Number(1.0), t);
        retained.delivery = Delivery::Retained;
        assert_eq!(reason(gate.judge(&c, &retained, t, now)), "stale");
        let unknown = command("nope", Requested::Number(1.0), t);
        assert_eq!(reason(gate.judge(&c, &unknown, t, now)), "unknown_tag");
        let read_only = command("temp", Requested::Number(1.0), t);
        assert_eq!(reason(gate.judge(&c, &read_only, t, now)), "not_writable");
        let high = command("setpoint", Requested::Number(120.0), t);
        let refusal = gate.judge(&c, &high, t, now).unwrap_err();
        assert_eq!(refusal.code(), "out_of_range");
        assert!(refusal.to_string().contains("max 100"), "{refusal}");
        let not_allowed = command("mode", Requested::Number(3.0), t);
        assert_eq!(reason(gate.judge(&c, &not_allowed, t, now)), "out_of_range");
    }

    #[test]
    fn old_and_future_commands_are_stale() {
        let c = config(None);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = Instant::now();
        let mut gate = Gate::default();
        let mut old = command("setpoint", Requested::Number(1.0), t);
        old.sent = Some(t - Duration::from_secs(11));
        let r = gate.judge(&c, &old, t, now).unwrap_err();
        assert_eq!(r.code(), "stale");
        assert!(r.to_string().contains("11.0 s ago"), "{r}");
        let mut ahead = command("setpoint", Requested::Number(1.0), t);
        ahead.sent = Some(t + Duration::from_secs(60));
        assert_eq!(gate.judge(&c, &ahead, t, now).unwrap_err().code(), "stale");
        // Received long ago and not carried out since (waiting in a queue).
        let waited = command(
            "setpoint",
            Requested::Number(1.0),
            t - Duration::from_secs(30),
        );
        assert_eq!(gate.judge(&c, &waited, t, now).unwrap_err().code(), "stale");
        let mut queued = command("setpoint", Requested::Number(1.0), t);
        queued.delivery = Delivery::Queued;
        assert_eq!(gate.judge(&c, &queued, t, now).unwrap_err().code(), "stale");
    }

    #[test]
    fn the_rate_counts_accepted_writes_in_a_sliding_minute() {
        let c = config(Some(2));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t0 = Instant::now();
        let mut gate = Gate::default();
        let ok = command("setpoint", Requested::Number(42.5), t);
        let high = command("setpoint", Requested::Number(420.0), t);
        // A refused command does not count.
        assert!(gate.judge(&c, &high, t, t0).is_err());
        assert!(gate.judge(&c, &ok, t, t0).is_ok());
        assert!(gate.judge(&c, &ok, t, t0 + Duration::from_secs(10)).is_ok());
        let third = gate
            .judge(&c, &ok, t, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(third.code(), "rate");
        // A minute after the first, one more is allowed.
        assert!(gate.judge(&c, &ok, t, t0 + Duration::from_secs(60)).is_ok());
        assert!(
            gate.judge(&c, &ok, t, t0 + Duration::from_secs(61))
                .is_err()
        );
    }

    #[test]
    fn allowed_values_compare_numbers_by_value() {
        assert!(same(&Value::Int(2), &Value::Float(2.0)));
        assert!(!same(&Value::Int(2), &Value::Bool(true)));
        assert!(!same(&Value::Text("1".into()), &Value::Int(1)));
    }
}

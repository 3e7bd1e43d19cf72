//! The scenario file as the user writes it (serde, TOML).
//!
//! These structs stay close to the text: names, durations and addresses
//! are strings or plain numbers here. [`super::resolve`] checks them all
//! at once and turns them into the plan the simulator runs: what the user
//! writes is kept apart from what the program runs, so either can change
//! without the other. The format is documented in the `sim` module docs.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use super::SimError;
use super::resolve::{self, Plan};

/// A parsed scenario: the devices to serve and the events to play.
///
/// Fields are public so that tests can build or tweak one in code.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every device's noise; the same seed replays the same values.
    #[serde(default)]
    pub seed: u64,
    /// How often the model is stepped and the image refreshed ("100ms").
    #[serde(default)]
    pub tick: Option<String>,
    /// The simulated devices.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Scripted events, at times since the simulator started.
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

/// One simulated device (one unit id on one server).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Unique name, used by events and the test API.
    pub name: String,
    /// Modbus unit (slave) id.
    pub unit: u8,
    /// Modbus TCP listen address (`127.0.0.1:5020`; port 0 picks a free
    /// port). Devices with the same `listen` text share one server.
    #[serde(default)]
    pub listen: Option<String>,
    /// Serial port path for Modbus RTU, or `pty` / `pty:NAME` for an
    /// in-process pseudo terminal. Devices with the same text share a bus.
    #[serde(default)]
    pub serial: Option<String>,
    /// Baud rate of the serial port (default 9600).
    #[serde(default)]
    pub baud: Option<u32>,
    /// Parity of the serial port: `none` (default), `even` or `odd`.
    #[serde(default)]
    pub parity: Option<String>,
    /// Listen address for Modbus RTU framing over TCP.
    #[serde(default)]
    pub rtu_over_tcp: Option<String>,
    /// `pump`, `motor` or `generic` (default).
    #[serde(default)]
    pub model: Option<String>,
    /// Generic load: serve holding registers `0..registers` with a cheap
    /// changing pattern (register i = i + tenths of a second since start).
    #[serde(default)]
    pub registers: u16,
    /// Holding ranges `"start-end"` (inclusive) or `"addr"` that are not
    /// served: any read touching them answers exception 02.
    #[serde(default)]
    pub holes: Vec<String>,
    /// What the device serves at which address.
    #[serde(default)]
    pub points: Vec<PointSpec>,
    /// Function codes the device refuses with exception 01 (illegal
    /// function), like a device that takes only FC16 for register
    /// writes: `refuse_functions = [6]`.
    #[serde(default)]
    pub refuse_functions: Vec<u8>,
}

/// One value served at an address: a model signal, a constant or a ramp.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    /// Optional name, so that `set` and events can address the point.
    #[serde(default)]
    pub name: Option<String>,
    /// Model signal (`bearing_temp`, `vibration`, `current`, `pressure`,
    /// `speed`, `running`, `fault`, `runtime_hours`, `clock_ms`).
    #[serde(default)]
    pub signal: Option<String>,
    /// A constant (number, bool or text for strings).
    #[serde(default)]
    pub value: Option<ConstValue>,
    /// A sawtooth from `from` to `to` repeating every `period`.
    #[serde(default)]
    pub ramp: Option<RampSpec>,
    /// `coil`, `discrete`, `input` or `holding`.
    pub area: String,
    /// 0-based address of the first register or bit.
    pub address: u16,
    /// `bool`, `bit`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64`, `f32`,
    /// `f64` or `string`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Bit index 0–15 for type `bit`.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Length in registers for type `string`.
    #[serde(default)]
    pub length: Option<u16>,
    /// `ABCD` (default), `CDAB`, `BADC` or `DCBA`.
    #[serde(default)]
    pub word_order: Option<String>,
    /// Raw = (engineering − offset) / scale, the inverse of the gateway's
    /// raw × scale + offset. Default 1.
    #[serde(default)]
    pub scale: Option<f64>,
    /// See `scale`. Default 0.
    #[serde(default)]
    pub offset: Option<f64>,
}

/// A constant point value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConstValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text, for string points.
    Text(String),
}

/// A repeating sawtooth.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampSpec {
    /// Value at the start of each period.
    pub from: f64,
    /// Value approached at the end of each period.
    pub to: f64,
    /// Length of one period ("60s").
    pub period: String,
}

/// A scripted event. Exactly one action: `ramp_to` + `over`, `set`,
/// `offline` or `exception`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// When, since start ("30s").
    pub at: String,
    /// Device name.
    pub device: String,
    /// Signal (or point name, for `set`) the action applies to.
    #[serde(default)]
    pub signal: Option<String>,
    /// Ramp the signal to this value ...
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// ... over this long, then hover there with noise.
    #[serde(default)]
    pub over: Option<String>,
    /// Pin the signal (or point) to this exact value.
    #[serde(default)]
    pub set: Option<f64>,
    /// Stop answering for this long ("20s").
    #[serde(default)]
    pub offline: Option<String>,
    /// Answer every request with this exception code ...
    #[serde(default)]
    pub exception: Option<u8>,
    /// ... for this long; for `ramp_to`/`set`, how long until the signal
    /// is handed back to the model. Default: until the end.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
}

impl Scenario {
    /// Parses and checks a scenario; every problem is reported at once.
    pub fn from_toml_str(text: &str) -> Result<Scenario, SimError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.plan()?;
        Ok(scenario)
    }

    /// Reads, parses and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::from_toml_str(&text)
    }

    /// A load-test scenario: `devices` generic devices (at most 247, the
    /// largest unit id; more are left out) on **one** TCP listener, unit
    /// ids 1, 2, ..., named `dev1`, `dev2`, .... Each serves holding
    /// registers `0..registers` with the changing pattern (register i =
    /// i + tenths of a second since start, wrapping) and its wall clock in
    /// ms as a u64 at input registers 0–3.
    pub fn generic(devices: usize, registers: u16, listen: SocketAddr) -> Scenario {
        let listen = listen.to_string();
        let devices = (1..=devices.min(247))
            .map(|i| DeviceSpec {
                name: format!("dev{i}"),
                // ok: `i` <= 247.
                unit: i as u8,
                listen: Some(listen.clone()),
                model: Some("generic".into()),
                registers,
                points: vec![PointSpec {
                    name: Some("clock_ms".into()),
                    signal: Some("clock_ms".into()),
                    area: "input".into(),
                    address: 0,
                    data_type: "u64".into(),
                    ..PointSpec::default()
                }],
                ..DeviceSpec::default()
            })
            .collect();
        Scenario {
            seed: 1,
            tick: None,
            devices,
            events: Vec::new(),
        }
    }

    /// Checks the scenario and resolves it into what the simulator runs.
    pub(crate) fn plan(&self) -> Result<Plan, SimError> {
        resolve::resolve(self).map_err(SimError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let err = Scenario::from_toml_str("seed = 1\nsede = 2\n");
        assert!(matches!(err, Err(SimError::Toml(_))), "{err:?}");
        let text = r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            colour = "red"
        "#;
        assert!(matches!(
            Scenario::from_toml_str(text),
            Err(SimError::Toml(_))
        ));
    }

    #[test]
    fn constants_of_every_kind() {
        let text = r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            points = [
                { area = "holding", address = 0, type = "u16", value = 7 },
                { area = "holding", address = 1, type = "f32", value = 7.5 },
                { area = "coil", address = 0, type = "bool", value = true },
                { area = "holding", address = 3, type = "string", length = 4, value = "P-01" },
            ]
        "#;
        let s = Scenario::from_toml_str(text).map_err(|e| e.to_string());
        let s = s.as_ref().map(|s| &s.devices[0].points);
        let values: Vec<_> = s
            .iter()
            .flat_map(|p| p.iter().map(|p| p.value.clone()))
            .collect();
        assert_eq!(
            values,
            [
                Some(ConstValue::Int(7)),
                Some(ConstValue::Float(7.5)),
                Some(ConstValue::Bool(true)),
                Some(ConstValue::Text("P-01".into()))
            ]
        );
    }

    #[test]
    fn generic_builds_a_valid_scenario() {
        let s = Scenario::generic(300, 100, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(s.devices.len(), 247);
        assert!(s.plan().is_ok());
    }
}

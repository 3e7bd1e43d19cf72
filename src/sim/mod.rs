//! The plant simulator: Modbus servers backed by a seeded plant model.
//!
//! It serves Modbus TCP, RTU on a serial port or an in-process pty, and
//! RTU framing over TCP, for many unit ids at once. It is what
//! `fieldgate sim`, `fieldgate demo` and every integration test talk to.
//!
//! # Layout
//!
//! - [`scenario`](Scenario): the TOML format, as written (serde).
//! - `resolve`: checks a scenario (every problem at once) into a plan.
//! - `plant` ([`Plant`]): pure, seeded pump/motor model; time is an argument.
//! - `script`: pure timeline of the scenario's events.
//! - `point`, `image`, `device`: pure register image of each device,
//!   refreshed by one ticker task (default every 100 ms).
//! - `handler`: one request against the image; `rtu_frame`: RTU framing
//!   (and the PDUs inside TCP frames); `fault`: injected faults (late,
//!   silent, other unit, noise, malformed) for tests of client recovery.
//! - `server`: the TCP / RTU / RTU-over-TCP server tasks.
//! - [`Simulator`]: owns servers and ticker; the API for tests and the CLI.
//!
//! # Scenario format
//!
//! ```toml
//! seed = 42                      # noise seed: same seed, same values
//! tick = "100ms"                 # model step / image refresh (default 100ms)
//!
//! [[devices]]
//! name = "pump1"                 # unique
//! unit = 1                       # unit id (RTU: 1-247)
//! listen = "127.0.0.1:5020"      # Modbus TCP; port 0 = a free port. Or:
//! # serial = "/dev/ttyUSB0"      #   RTU (baud = 9600, parity = "none"|"even"|"odd"),
//! # serial = "pty"               #   RTU on an in-process pty ("pty:NAME" for more),
//! # rtu_over_tcp = "127.0.0.1:5021"  RTU framing on TCP.
//! model = "pump"                 # "pump" | "motor" | "generic" (default)
//! registers = 100                # holding 0..100 with a changing pattern
//! holes = ["50-59", "70"]        # holding addresses not served (exception 02)
//! refuse_functions = [6]         # function codes answered with exception 01
//!                                # (a device that takes only FC16, say)
//!
//! [[devices.points]]
//! signal = "bearing_temp"        # or value = 1.5 / true / "text", or
//!                                # ramp = { from = 0, to = 100, period = "60s" }
//! name = "temp"                  # optional, for set() and events
//! area = "input"                 # coil | discrete | input | holding
//! address = 0                    # 0-based
//! type = "f32"                   # bool bit u16 i16 u32 i32 u64 i64 f32 f64 string
//! # bit = 3                      # for type "bit"; length = 8 for "string"
//! word_order = "ABCD"            # ABCD | CDAB | BADC | DCBA
//! scale = 0.1                    # raw = (value - offset) / scale
//! offset = 0.0
//!
//! [[events]]
//! at = "60s"                     # since start
//! device = "pump1"
//! signal = "bearing_temp"        # then one of:
//! ramp_to = 85.0                 #   ramp_to + over: ramp, then hover with noise
//! over = "20s"
//! # set = 12.0                   #   pin a signal or named point exactly
//! # offline = "30s"              #   stop answering for 30 s
//! # exception = 4                #   answer everything with exception 4
//! # for = "10s"                  # how long ramp_to / set / exception last
//! ```
//!
//! Signals: `bearing_temp` (degC, pump ~55, motor ~60), `vibration` (mm/s,
//! ~2.5 / ~2.0), `current` (A, ~12 / ~18), `pressure` (bar, ~4.2, pumps
//! only), `speed` (rpm), `running`, `fault`, `runtime_hours`, and
//! `clock_ms` (the simulator's wall clock in ms since the Unix epoch,
//! filled in when each request is answered; any model). A machine trips
//! (fault 1, running 0) above 11 mm/s vibration or 95 degC bearing
//! temperature.
//!
//! # Behaviour on the wire
//!
//! - Devices with the same `listen` (or `rtu_over_tcp`, or `serial`) text
//!   share one server, which routes by unit id.
//! - Routing is by exact unit id on every transport (TCP unit 0 and 255
//!   are not special).
//! - Unknown unit id: TCP answers exception 0x0B (gateway target device
//!   failed to respond); RTU (serial and over TCP) does not answer.
//! - Any read or write touching an address not served (including holes):
//!   exception 02. Quantities beyond the protocol limits: exception 03.
//!   Functions other than 1, 2, 3, 4, 5, 6, 15, 16, and those in the
//!   device's `refuse_functions`: exception 01.
//! - Offline device: no answer; when every device of a TCP listener is
//!   offline, its connections are closed and new ones are closed at once.
//! - Writes change the image. Model signals and ramps are re-rendered each
//!   tick, so writes to them are overwritten; writes to constant points
//!   stick; the `registers` pattern is rewritten each tick.

mod device;
mod error;
mod fault;
mod handler;
mod image;
mod plant;
mod point;
mod resolve;
mod rtu_frame;
mod scenario;
mod script;
mod server;
mod simulator;

pub use error::SimError;
pub use fault::{Fault, Faults, Malformation};
pub use plant::{BEARING_TEMP_TRIP, Model, Plant, Signal, VIBRATION_TRIP};
pub use scenario::{ConstValue, DeviceSpec, EventSpec, PointSpec, RampSpec, Scenario};
pub use server::MAX_CONNECTIONS;
pub use simulator::{Simulator, run};

/// Entry points for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes the first RTU request frame in `bytes`: the frame's length
    /// when it is a whole request (served or not), `None` otherwise.
    pub fn rtu_request(bytes: &[u8]) -> Option<usize> {
        match super::rtu_frame::decode(bytes) {
            super::rtu_frame::Decoded::Request { len, .. }
            | super::rtu_frame::Decoded::Unsupported { len, .. } => Some(len),
            _ => None,
        }
    }
}

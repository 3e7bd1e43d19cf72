//! The MQTT contract, in one place: the topic tree, every payload fieldgate
//! publishes, and the parsing of every message it receives into typed
//! requests. `docs/mqtt.md` is its reference and `docs/schemas/` holds a
//! JSON Schema for each payload; tests validate real output against them.
//!
//! ```text
//! {prefix}/{site}/{gateway}/status                    out, retained: online / offline (Last Will)   status
//! {prefix}/{site}/{gateway}/data/{device}             out: one poll of one device                   data
//! {prefix}/{site}/{gateway}/data/{device}/{tag}       out: one tag (when per_tag_topics)            data
//! {prefix}/{site}/{gateway}/alarms/{rule}             out, retained: alarm state                    rules
//! {prefix}/{site}/{gateway}/alarms/{rule}/ack         in                                            inbound
//! {prefix}/{site}/{gateway}/alarms/{rule}/shelve      in                                            inbound
//! {prefix}/{site}/{gateway}/workorders/{id}           out, retained until closed                    rules
//! {prefix}/{site}/{gateway}/workorders/{id}/status    in: from the CMMS                             inbound
//! {prefix}/{site}/{gateway}/meters/{meter}            out, retained                                 rules
//! {prefix}/{site}/{gateway}/cmd/{device}/{tag}         in: a write command                           command
//! {prefix}/{site}/{gateway}/cmd/{device}/{tag}/result  out: what came of it                          command
//! ```
//!
//! * [`topics`]: the topic names, out and in.
//! * [`json`]: timestamps, strings and values as every payload writes them.
//! * [`data`]: the data messages (hand-written: they run for every poll).
//! * [`status`]: the online/offline status.
//! * [`rules`]: alarm, work-order and meter messages (serde).
//! * [`inbound`]: every message received, read into a typed [`Request`].
//! * [`command`]: write commands read into a
//!   [`WriteCommand`](crate::command::WriteCommand), and the result of each.
//! * [`sparkplug`]: the Sparkplug B namespace, payloads and birth certificate.
//! * [`claims`]: how the bridges of a group agree who creates a work order.
//! * [`received`]: fieldgate's own work-order and meter messages read back
//!   (what the CMMS connectors and `fieldgate bridge` deliver).
//!
//! Nothing here does I/O: the forwarder (`mqtt`) moves these bytes, the
//! pipeline decides what to send.

pub mod claims;
pub mod command;
pub(crate) mod data;
pub mod inbound;
pub(crate) mod json;
pub mod received;
pub mod rules;
pub mod sparkplug;
pub(crate) mod status;
pub mod topics;

pub use inbound::{InboundError, OperatorAction, Request, Who};
pub use rules::{ALARM_SCHEMA, METER_SCHEMA, PayloadError, WORKORDER_SCHEMA};
pub use status::{StatusInfo, StoreInfo};
pub use topics::{InboundTopic, Topics};

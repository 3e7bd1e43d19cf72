//! Sparkplug B 3.0: the namespace, the payloads and the birth certificate
//! (`docs/sparkplug.md`). Pure: the edge node (`mqtt::sparkplug`) moves
//! these bytes, the pipeline decides what to keep.
//!
//! ```text
//! spBv1.0/{group}/NBIRTH/{node}            out: the node's metrics, bdSeq, Node Control/Rebirth
//! spBv1.0/{group}/NDEATH/{node}            out: the Last Will (bdSeq), and before a clean stop
//! spBv1.0/{group}/NDATA/{node}             out: node metrics that changed
//! spBv1.0/{group}/NCMD/{node}              in: Node Control/Rebirth
//! spBv1.0/{group}/DBIRTH/{node}/{device}   out: every tag and alarm metric, with aliases
//! spBv1.0/{group}/DDATA/{node}/{device}    out: readings by exception, answers to writes, aliases only
//! spBv1.0/{group}/DDEATH/{node}/{device}   out: the device stopped answering
//! spBv1.0/{group}/DCMD/{node}/{device}     in: writes to metrics of writable tags
//! spBv1.0/STATE/{primary_host}             in: the primary host's JSON state
//! ```
//!
//! * [`proto`]: the payload types, generated from `proto/sparkplug_b.proto`.
//! * [`topics`]: the topic names, out and in.
//! * [`catalog`]: the birth certificate a configuration makes: every
//!   metric's name, alias, datatype and properties.
//! * [`values`]: values and qualities as metrics; what the pipeline keeps
//!   in the outbox (payloads by name, no seq, no alias) and the current
//!   values the births are made of.
//! * [`session`]: one edge-node session on the wire: `seq`, births,
//!   deaths, stored rows turned into DDATA with aliases.
//! * [`inbound`]: NCMD, DCMD and STATE read into typed requests (a DCMD
//!   metric of a writable tag is a write for the desk).

pub mod catalog;
pub mod inbound;
pub mod proto;
pub mod session;
pub mod topics;
pub mod values;

pub use catalog::{Catalog, DeviceCatalog, MetricDef};
pub use inbound::{Command, HostState, MetricWrite, Refusal, SparkplugInboundError};
pub use session::{Session, WireError};
pub use topics::{RowKind, SparkplugTopics};
pub use values::{Current, DeviceNow, SharedCurrent};

/// The first topic level of every Sparkplug B 3.0 message.
pub const NAMESPACE: &str = crate::config::SPARKPLUG_NAMESPACE;

#[cfg(test)]
mod session_tests;

//! Northbound: MQTT.
//!
//! * [`topics`]: the topic tree.
//! * [`forwarder`]: publishes the outbox, deletes on confirmed delivery, passes inbound messages on.
//! * [`client`]: connection options and TLS.
//! * [`status`]: the online/offline status payloads.

pub mod client;
pub mod forwarder;
pub mod payload;
pub mod status;
pub mod topics;

//! Northbound: MQTT, the transport. What goes on the wire (topics and
//! payloads) is [`contract`](crate::contract)'s.
//!
//! * [`forwarder`]: publishes the outbox, deletes on confirmed delivery, passes inbound messages on.
//! * [`client`]: connection options and TLS.

pub mod client;
pub mod forwarder;

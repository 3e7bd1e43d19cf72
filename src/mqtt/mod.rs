//! Northbound: MQTT, the transport. What goes on the wire (topics and
//! payloads) is [`contract`](crate::contract)'s.
//!
//! * [`forwarder`]: publishes the outbox, deletes on confirmed delivery, passes inbound messages on.
//! * [`sparkplug`]: the Sparkplug B edge node: its own connection, births,
//!   the Sparkplug rows of the outbox, deleted once the broker has them.
//! * [`client`]: connection options and TLS.
//! * `driver`: the task that owns a connection's event loop, and the gate.

pub mod client;
pub(crate) mod driver;
pub mod forwarder;
pub mod sparkplug;

//! Northbound: MQTT.
//!
//! * [`topics`]: the topic tree.

pub mod payload;
pub mod topics;

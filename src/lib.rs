//! fieldgate: an edge gateway from Modbus field devices to MQTT.

pub mod modbus;
pub mod sim;
pub mod tag;

//! Southbound: Modbus TCP, RTU and RTU over TCP.
//!
//! Pure parts: [`plan`] (which requests read a device's tags) and
//! [`decode`]/[`encode`] (registers to values and back). The tasks that
//! own connections come with the acquisition issue.

pub mod decode;
pub mod encode;
pub mod plan;

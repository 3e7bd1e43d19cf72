//! Fixtures shared by the integration tests.

pub mod broker;
pub mod cmms;
pub mod forwarder;
pub mod gateway;
pub mod http;
pub mod proxy;
pub mod schema;
pub mod sim;
pub mod sparkplug;
pub mod subscriber;
pub mod tls_broker;
pub mod tracing;
pub mod wait;

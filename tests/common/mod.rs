//! Helpers shared by the integration tests.

pub mod broker;
pub mod gateway;
pub mod http;
pub mod proxy;
pub mod subscriber;
pub mod tls_broker;

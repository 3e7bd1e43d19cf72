//! The integration tests, as one test binary: one module per area of the
//! gateway, and the fixtures they share (embedded broker, simulator, fault
//! proxy, TLS broker, subscriber, Sparkplug host, HTTP client, schemas,
//! tracing, bounded waits) in [`common`], written once.
//!
//! One binary links the crate once instead of once per file, and its tests
//! run side by side in the threads of one process. So a test owns nothing
//! process-wide: every listener binds `127.0.0.1:0` (or takes a port from
//! [`common::broker::free_port`]), every file lives in its own temporary
//! folder, the environment is only set on child processes, and the global
//! tracing subscriber is installed once, by whichever test comes first.
//! Tests that run `fieldgate` use `env!("CARGO_BIN_EXE_fieldgate")`.

mod common;

mod acquisition;
mod cmms_bridge;
mod cmms_flow;
mod cmms_surface;
mod cmms_vendors1;
mod cmms_vendors2;
mod config_check;
mod config_expand;
mod decode_props;
#[cfg(feature = "demo")]
mod demo;
mod field_truth;
mod forwarder;
mod gateway;
mod http;
mod http_limits;
mod inbound;
mod inspect;
mod layers;
mod plan_props;
mod read_cli;
mod rules_flow;
mod rules_props;
mod service;
mod sim;
mod sparkplug;
mod sparkplug_surface;
mod sparkplug_watch;
mod sparkplug_write;
mod store;
mod templates;
mod tls;
mod write_back;
mod write_contract;
mod write_link;
mod writes_cli;

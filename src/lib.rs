#![warn(missing_docs)]
//! fieldgate: an edge gateway from Modbus field devices to MQTT.
//!
//! # Layout
//!
//! * [`config`]: load, resolve and validate `fieldgate.toml` (and CSV tag maps).
//! * [`tag`]: the plant-level types every stage shares.
//! * [`precision`]: how values are shown to people (a tag's decimals).
//! * [`clock`]: the monotonic timeline that measures durations, and wall-clock stamps.
//! * [`reading`]: what a poll yields (readings with a quality, in batches).
//! * [`command`]: write-back commands and their results.
//! * [`contract`]: the MQTT contract: topics, payloads, inbound requests.
//! * [`events`]: named internal events (a log line and a counter each).
//! * [`expr`]: the expression compiler of `expr` rules (knows only tags).
//! * [`cmms`]: REST connectors that deliver work orders to a CMMS.
//! * [`modbus`]: read planning, decoding, transports and pollers.
//! * [`sim`]: the plant simulator behind `demo` and the tests.
//! * [`telemetry`]: the metrics registry and the Prometheus exposition.
//! * [`writeback`]: the write desk: checks, executes and records write commands.
//! * [`http`]: `/healthz`, `/readyz`, `/metrics` and `/api/status`.
//! * [`bridge`]: `fieldgate bridge`, the CMMS connectors for many gateways.
//! * [`demo`]: `fieldgate demo`, the whole system on one machine.
//! * [`cli`]: the subcommands of the `fieldgate` binary.

pub mod app;
pub mod bridge;
pub mod cli;
pub mod clock;
pub mod cmms;
pub mod command;
pub mod config;
pub mod contract;
#[cfg(feature = "demo")]
pub mod demo;
pub mod events;
pub mod expr;
pub mod filter;
pub mod heartbeat;
pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod pipeline;
pub mod precision;
pub mod reading;
pub mod rules;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod systemd;
pub mod tag;
pub mod telemetry;
pub mod writeback;

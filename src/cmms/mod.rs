//! CMMS connectors: work orders (and meter readings) delivered straight to
//! a maintenance system's REST API, with the outbox's promise, and the
//! CMMS's status brought back.
//!
//! # Flow
//!
//! ```text
//! pipeline ──work order + delivery rows, one transaction──► store (sink queue, per connector)
//!                                                              │ in id order
//!                                  delivery task (one per connector) ──HTTP──► CMMS
//!                                      │  2xx: row deleted, reference kept   4xx: parked   5xx/timeout: retried
//!                                      └── status (polled, or pushed to the HTTP server) ──► typed request ──► pipeline
//! ```
//!
//! * [`exchange`]: requests, answers and failures as the pure code sees them.
//! * [`vendor`]: what each CMMS's API wants (pure).
//! * [`route`]: which connectors take which message (pure).

pub mod exchange;
pub mod route;
pub mod vendor;

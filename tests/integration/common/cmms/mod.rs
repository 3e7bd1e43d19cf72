//! Fake CMMS servers: one per vendor, on loopback, each checking the
//! requests it gets the way that vendor's public API reference describes
//! them (paths, headers, required fields, types) and answering as the
//! vendor does, error shapes included. Every deviation is recorded in
//! [`FakeCmms::problems`]; a test asserts it stays empty.

pub mod maintainx;
pub mod maximo;
pub mod upkeep;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`…
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lower-case.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A work order the fake CMMS holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// The CMMS's reference (`wonum`, `id`) as text.
    pub reference: String,
    /// The body it was created with.
    pub body: Value,
    /// The vendor's status text (`WAPPR`, `OPEN`, `open`…), set by the
    /// test with [`FakeCmms::set_status`].
    pub status: String,
}

/// What the fake knows and how it behaves; each vendor's router reads
/// and writes it.
#[derive(Debug, Default)]
pub struct State {
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// Deviations from the vendor's reference.
    pub problems: Vec<String>,
    /// Work orders created, in order.
    pub created: Vec<Held>,
    /// Meter readings recorded: (CMMS meter id, body).
    pub meter_readings: Vec<(String, Value)>,
    /// Answer every request with the vendor's 503.
    pub down: bool,
    /// Assets the CMMS does not know: a create naming one gets the
    /// vendor's 400 (or 404/422) with its error shape.
    pub unknown_assets: Vec<String>,
    /// Delay before every answer.
    pub delay: Duration,
    /// Creates to accept (the work order is then held) and leave
    /// unanswered: the connection is held open until the test ends, like
    /// a gateway killed while the CMMS was answering.
    pub swallow_creates: u32,
    /// The API key / token the fake expects.
    pub secret: String,
}

/// A fake CMMS on loopback.
#[derive(Clone)]
pub struct FakeCmms {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The state behind it.
    pub state: Arc<Mutex<State>>,
}

impl FakeCmms {
    /// Serves `router` (which holds `state`) on 127.0.0.1, a free port.
    pub async fn serve(router: axum::Router, state: Arc<Mutex<State>>) -> FakeCmms {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeCmms { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of the state's field `f`.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Work orders created, in order.
    pub fn created(&self) -> Vec<Held> {
        self.with(|s| s.created.clone())
    }

    /// Deviations from the reference seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.with(|s| s.problems.clone())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    /// Sets the vendor status of the work order `reference`.
    pub fn set_status(&self, reference: &str, status: &str) {
        self.with(|s| {
            for h in s.created.iter_mut().filter(|h| h.reference == reference) {
                h.status = status.to_owned();
            }
        })
    }

    /// Down (503) or up.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down)
    }
}

//! `/healthz` (is the process alive?) and `/readyz` (can it do its job?).
//!
//! Liveness looks only at the pipeline task's heartbeat: a restart helps
//! when that task is stuck, and nothing else. Readiness asks the store,
//! because without the outbox nothing read can be kept. The broker is
//! reported but not required: a gateway buffering through a broker outage
//! is doing exactly its job, and a supervisor that restarted it then
//! would only make things worse.
//!
//! A degraded store (its disk full, read-only or failing: the outbox is
//! held in memory, see `store`) is *not ready*: readiness says "something
//! here needs attention", and a broker outage now would lose what memory
//! cannot hold. Liveness stays `ok` (the pipeline still runs, and a
//! restart would not free the disk), so the watchdog leaves it alone.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{HttpState, LIVENESS_LIMIT, StoreCheck, check_store};
use crate::contract::json::timestamp;
use crate::modbus::DeviceState;

/// `200 ok` while the pipeline task reports; 503 with the reason when not.
pub(super) async fn healthz(State(state): State<HttpState>) -> Response {
    let idle = state.telemetry().pipeline_idle();
    if idle <= LIVENESS_LIMIT {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pipeline task has not reported for {} s\n", idle.as_secs()),
        )
            .into_response()
    }
}

/// 200 when the store answers and is not degraded (the config is loaded,
/// or the server would not run), else 503; the body says how each part
/// stands.
pub(super) async fn readyz(State(state): State<HttpState>) -> Response {
    let mut degraded = None;
    let (store, error) = match check_store(&state.store).await {
        StoreCheck::Open(stats) => match stats.degraded {
            Some(d) => {
                let error = format!("{}: {}", d.fault.as_str(), d.reason);
                degraded = Some(d);
                ("degraded", Some(error))
            }
            None => ("open", None),
        },
        StoreCheck::Failed(e) => ("failed", Some(e.to_string())),
        StoreCheck::NoAnswer => ("not answering", None),
    };
    let ready = store == "open";
    let mqtt = state.telemetry().mqtt_stats();
    let connected = mqtt.connected.load(std::sync::atomic::Ordering::Relaxed);
    let mut counts = [0u64; 3];
    for d in state.telemetry().devices() {
        let i = match d.state() {
            DeviceState::Polling => 0,
            DeviceState::Failing => 1,
            DeviceState::Starting => 2,
        };
        counts[i] += 1;
    }
    let body = json!({
        "ready": ready,
        "config": "loaded",
        "config_hash": state.telemetry().info().config_hash,
        "store": store,
        "store_error": error,
        "store_fault": degraded.as_ref().map(|d| d.fault.as_str()),
        "store_degraded_since": degraded.as_ref().map(|d| timestamp(d.since)),
        "mqtt": if connected { "connected" } else { "disconnected" },
        "devices": { "polling": counts[0], "failing": counts[1], "starting": counts[2] },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

//! `/metrics`: the Prometheus text exposition of a fresh snapshot.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{For, HttpState, gather};
use crate::telemetry::prometheus::{CONTENT_TYPE, render};

/// Every figure, rendered at each scrape (nothing is cached: a scrape
/// every few seconds costs one store round trip and a few kilobytes).
pub(super) async fn metrics(State(state): State<HttpState>) -> Response {
    let snapshot = gather(&state, For::Metrics).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot)).into_response()
}

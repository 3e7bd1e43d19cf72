//! The status page's live feed: server-sent events on `/api/events`, and
//! the trends on `/api/trend`.
//!
//! A page opens one `EventSource` and receives:
//!
//! * `trend` once, first: every tag's last minutes ([`trend_json`]); the
//!   page then extends the lines itself from the statuses that follow;
//! * `status` at once, then every [`status_interval`] (1 s up to 2,000
//!   tags, longer beyond, so a big plant's page costs the gateway about the
//!   same), and sooner, at most every [`MIN_GAP`], when an alarm or a work
//!   order changes, so an acknowledgement shows without waiting. The data
//!   is the document of `/api/status`.
//!
//! Server-sent events rather than a websocket: one direction is all the
//! page needs, browsers reconnect by themselves (after [`RETRY`]), and it
//! is plain HTTP/1.1 through any proxy.
//!
//! # Bounds and shutdown
//!
//! At most [`MAX_STREAMS`] pages are fed at once (more get 503: a
//! forgotten wall of browser tabs must not cost the gateway more). A
//! stream holds no lock and no store request between events, and ends when
//! the server's shutdown fires, so the graceful stop does not wait for
//! open pages.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as JsonValue, json};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::{For, HttpState, gather, status_json};
use crate::contract::json::timestamp;
use crate::shutdown::Shutdown;
use crate::telemetry::trend::{TREND_POINTS, TREND_STEP, step_of, step_start};
use crate::telemetry::{DeviceSeen, RulesView};

/// Pages fed at once.
pub const MAX_STREAMS: usize = 8;

/// The shortest time between two statuses on one stream.
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// How long a browser waits before reconnecting a broken stream.
pub const RETRY: Duration = Duration::from_secs(2);

/// A comment line this often keeps proxies and NAT from closing a quiet
/// stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The regular time between statuses for a plant of `tags` tags: 1 s, plus
/// 1 s per further 2,000 tags (a status costs about 80 bytes per tag).
pub fn status_interval(tags: usize) -> Duration {
    Duration::from_millis((tags as u64 / 2).max(1000))
}

pub(super) async fn events(State(state): State<HttpState>) -> Response {
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} status pages are open already; close one\n"),
        )
            .into_response();
    };
    let feed = Feed {
        rules: state.telemetry().subscribe_rules(),
        stop: state.stop.clone(),
        state,
        sent: None,
        sent_at: None,
        trend_sent: false,
        next: Instant::now(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

pub(super) async fn trend(State(state): State<HttpState>) -> Response {
    Json(trend_json(state.telemetry().seen(), SystemTime::now())).into_response()
}

/// One page's stream.
struct Feed {
    state: HttpState,
    rules: watch::Receiver<Arc<RulesView>>,
    stop: Shutdown,
    /// The rules view of the last status sent.
    sent: Option<Arc<RulesView>>,
    /// When the last status was sent.
    sent_at: Option<Instant>,
    trend_sent: bool,
    /// When the next regular status is due.
    next: Instant,
    /// Counts this stream against [`MAX_STREAMS`] until it ends.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        if !self.trend_sent {
            self.trend_sent = true;
            let doc = trend_json(self.state.telemetry().seen(), SystemTime::now());
            return Some((Ok(event("trend", &doc).retry(RETRY)), self));
        }
        let mut rules_open = true;
        loop {
            tokio::select! {
                _ = self.stop.recv() => return None,
                _ = tokio::time::sleep_until(self.next) => break,
                changed = self.rules.changed(), if rules_open => {
                    if changed.is_err() {
                        rules_open = false;
                        continue;
                    }
                    let view = self.rules.borrow_and_update().clone();
                    if self.sent.as_ref().is_some_and(|s| differs(s, &view)) {
                        // Soon, but not more often than MIN_GAP.
                        let now = Instant::now();
                        let soon = self.sent_at.map_or(now, |t| (t + MIN_GAP).max(now));
                        self.next = self.next.min(soon);
                    }
                }
            }
        }
        let snapshot = gather(&self.state, For::Status).await;
        let telemetry = self.state.telemetry();
        let doc = status_json(&snapshot, telemetry.seen(), self.state.actions.is_some());
        let tags: usize = telemetry
            .devices()
            .iter()
            .map(|d| d.device().tags.len())
            .sum();
        self.sent = Some(snapshot.rules.clone());
        let now = Instant::now();
        self.sent_at = Some(now);
        self.next = now + status_interval(tags);
        Some((Ok(event("status", &doc)), self))
    }
}

/// Whether what a technician acts on (alarms, work orders) changed; meters
/// move every second and wait for the regular status.
fn differs(a: &RulesView, b: &RulesView) -> bool {
    a.alarms != b.alarms || a.work_orders != b.work_orders
}

fn event(name: &str, doc: &JsonValue) -> Event {
    Event::default()
        .event(name)
        .json_data(doc)
        .unwrap_or_else(|_| Event::default().comment("unserializable"))
}

/// Every tag's points, oldest first, for the [`TREND_POINTS`] steps of
/// [`TREND_STEP`] ending with `now`'s:
///
/// ```json
/// {"step_s": 5, "points": 60, "end": "2026-11-21T10:00:05.000Z",
///  "devices": {"pump1": {"bearing_temp": [null, 61.2, …]}}}
/// ```
///
/// `end` is the start of the last step; `null` is no point (not polled,
/// bad quality, a text tag).
pub fn trend_json(devices: &[Arc<DeviceSeen>], now: SystemTime) -> JsonValue {
    let mut by_device = Map::new();
    for d in devices {
        let tags = d.with_trend(|trend| {
            d.device()
                .tags
                .iter()
                .enumerate()
                .map(|(i, tag)| {
                    let points: Vec<JsonValue> = trend
                        .series(i, now)
                        .into_iter()
                        .map(|p| p.map_or(JsonValue::Null, |x| json!(shortest(x))))
                        .collect();
                    (tag.name.clone(), JsonValue::Array(points))
                })
                .collect::<Map<_, _>>()
        });
        by_device.insert(d.device().name.clone(), JsonValue::Object(tags));
    }
    json!({
        "step_s": TREND_STEP.as_secs(),
        "points": TREND_POINTS,
        "end": timestamp(step_start(step_of(now))),
        "devices": by_device,
    })
}

/// An `f32` point with its own shortest digits (not the f64 widening's).
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_plants_get_statuses_less_often() {
        assert_eq!(status_interval(0), Duration::from_secs(1));
        assert_eq!(status_interval(1000), Duration::from_secs(1));
        assert_eq!(status_interval(20_000), Duration::from_secs(10));
    }

    #[test]
    fn points_keep_their_f32_digits() {
        assert_eq!(shortest(55.68), 55.68);
    }
}

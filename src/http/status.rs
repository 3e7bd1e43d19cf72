//! `/api/status`: the read-only view a status page or a technician's
//! `curl` uses. Its JSON Schema is `docs/schemas/api-status.json`.
//!
//! Times are RFC 3339 UTC with milliseconds, as in the MQTT payloads;
//! values are written as in the data payloads (an unscaled `f32` with its
//! own shortest digits, a non-finite float as `null`), in full: each tag
//! and alarm says in `decimals` how many a person should see, and the
//! page rounds.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as JsonValue, json};

use super::{For, HttpState, STORE_WAIT, gather};
use crate::contract::json::timestamp;
use crate::modbus::DeviceSnapshot;
use crate::precision::Precision;
use crate::rules::Timestamp;
use crate::store::{StoreHandle, StoreIdentity, StoreStart};
use crate::tag::{DataType, Tag, Value};
use crate::telemetry::{
    ConnectorSnapshot, DeviceSeen, ParkedView, SinkQueues, Snapshot, SparkplugSnapshot,
};

pub(super) async fn status(State(state): State<HttpState>) -> Response {
    let snapshot = gather(&state, For::Status).await;
    let actions = state.actions.is_some();
    Json(status_json(&snapshot, state.telemetry().seen(), actions)).into_response()
}

/// The status document of `s`, with the last readings kept in `devices`
/// (the same devices, in the same order, as `s.devices`); `actions` says
/// whether acknowledge and shelve are allowed over HTTP.
pub fn status_json(s: &Snapshot, devices: &[Arc<DeviceSeen>], actions: bool) -> JsonValue {
    json!({
        "gateway": {
            "id": s.info.id,
            "site": s.info.site,
            "version": s.info.version,
            "config_hash": s.info.config_hash,
            "started": timestamp(s.info.started),
            "uptime_s": s.uptime.as_secs(),
            "actions": actions,
            "clock_synchronised": s.clock_synced,
        },
        "generated_at": timestamp(s.at),
        "devices": s.devices.iter().zip(devices).map(|(d, m)| device(d, m)).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "label": l.label,
            "connected": l.connected,
            "reconnects": l.reconnects,
            "connect_failures": l.connect_failures,
            "last_success": l.last_success.map(timestamp),
            "devices": s.devices.iter().filter(|d| d.link == l.label).map(|d| d.name.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "alarms": s.rules.alarms.iter().map(|a| json!({
            "rule": a.rule,
            "state": a.state,
            "priority": a.priority.as_str(),
            "active": a.active,
            "since": a.since.map(time),
            "value": a.value.as_ref().map(|v| value(v, None)),
            "limit": a.limit.as_ref().map(|v| value(v, None)),
            "decimals": a.precision.and_then(Precision::decimals),
            "chattering": a.chattering,
            "shelved_until": a.shelved_until.map(time),
        })).collect::<Vec<_>>(),
        "work_orders": s.rules.work_orders.iter().map(|w| json!({
            "id": w.id,
            "type": w.kind.as_str(),
            "status": w.status.as_str(),
            "priority": w.priority.as_str(),
            "asset": w.asset,
            "title": w.title,
            "created_at": time(w.created_at),
            "occurrences": w.occurrences,
            "cmms_ref": w.cmms_ref,
        })).collect::<Vec<_>>(),
        "meters": s.rules.meters.iter().map(|m| json!({
            "name": m.name,
            "measure": m.measure.as_str(),
            "value": finite(m.value),
            "unit": m.unit,
            "next_due": finite(m.next_due),
            "due": m.due,
        })).collect::<Vec<_>>(),
        "outbox": s.store.as_ref().map(|st| json!({
            "messages": st.messages,
            "bytes": st.bytes,
            "oldest_age_s": st.oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0),
            "store": st.identity.as_ref().map(store_identity),
            "state": if st.degraded.is_some() { "degraded" } else { "ok" },
            "fault": st.degraded.as_ref().map(|d| d.fault.as_str()),
            "reason": st.degraded.as_ref().map(|d| d.reason.as_str()),
            "since": st.degraded.as_ref().map(|d| timestamp(d.since)),
            "degraded_s": st.degraded.as_ref().map(|d| d.duration.as_secs_f64()),
            "held": st.held,
            "held_bytes": st.held_bytes,
            "held_max_bytes": st.held_max_bytes,
            "held_evicted": st.held_evicted_readings + st.held_evicted_other,
        })),
        "mqtt": {
            "connected": s.mqtt.connected,
            "reconnects": s.mqtt.reconnects,
            "published": s.mqtt.published,
            "acked": s.mqtt.acked,
            "last_error": s.mqtt.last_error,
        },
        "cmms": s.cmms.iter().map(|c| connector(c, s.at)).collect::<Vec<_>>(),
        "sparkplug": s.sparkplug.as_ref().map(sparkplug),
        "writes": {
            "writable_tags": s.writes.writable_tags,
            "received": s.writes.received,
            "rejected": s.writes.rejected,
            "written": s.writes.written,
            "verified": s.writes.verified,
            "unknown": s.writes.unknown,
            "dropped": s.writes.dropped,
        },
    })
}

/// The Sparkplug edge node (`null` when `[sparkplug]` is off): who it is,
/// its session, its counters since the start and its rows waiting in the
/// outbox (`null` when the store did not say).
fn sparkplug(sp: &SparkplugSnapshot) -> JsonValue {
    json!({
        "group_id": sp.group_id,
        "edge_node_id": sp.edge_node_id,
        "primary_host_id": sp.primary_host_id,
        "primary_host_online": sp.primary_host_online,
        "connected": sp.connected,
        "online": sp.online,
        "bd_seq": sp.bd_seq,
        "sessions": sp.sessions,
        "births": sp.births,
        "rebirth_requests": sp.rebirth_requests,
        "published": sp.published,
        "historical": sp.historical,
        "confirmed": sp.confirmed,
        "dropped": sp.dropped,
        "held": sp.held,
        "inbound_refused": sp.inbound_refused,
        "outbox_messages": sp.outbox_messages,
    })
}

/// What the store holds for the CMMS connectors: every queue's figures
/// and, when `with_parked` and something is parked, the parked
/// deliveries. A part the store did not give within [`STORE_WAIT`] (or
/// refused) is `None`, and its figures are left out.
pub(super) async fn sink_queues(store: &StoreHandle, with_parked: bool) -> SinkQueues {
    let figures = match tokio::time::timeout(STORE_WAIT, store.sink_figures()).await {
        Ok(Ok(figures)) => Some(figures),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the CMMS queues' figures are not available");
            None
        }
        Err(_) => None,
    };
    // The parked list is read whole: only asked for when the figures say
    // there is something in it (refusals are rare; a status is made every
    // second per open page).
    let parked = match &figures {
        Some(f) if with_parked && f.iter().any(|f| f.parked > 0) => {
            match tokio::time::timeout(STORE_WAIT, store.sink_parked()).await {
                Ok(Ok(parked)) => Some(parked),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "the parked CMMS deliveries are not available");
                    None
                }
                Err(_) => None,
            }
        }
        Some(_) if with_parked => Some(Vec::new()),
        _ => None,
    };
    SinkQueues { figures, parked }
}

/// A CMMS connector: its counters since the start, its queue in the store
/// (`null` figures when the store did not say), the newest parked
/// deliveries.
fn connector(c: &ConnectorSnapshot, at: std::time::SystemTime) -> JsonValue {
    json!({
        "name": c.name,
        "kind": c.kind,
        "reachable": c.reachable,
        "delivered": c.delivered,
        "created": c.created,
        "retries": c.retries,
        "statuses": c.statuses,
        "parked_total": c.parked_total,
        "pending": c.queue.map(|q| q.pending),
        "parked": c.queue.map(|q| q.parked),
        "oldest_pending_age_s": c.queue.map(|q| q.oldest_age_s(at)),
        "last_error": c.last_error,
        "parked_deliveries": c.parked.iter().map(parked).collect::<Vec<_>>(),
    })
}

fn parked(p: &ParkedView) -> JsonValue {
    json!({
        "id": p.id,
        "kind": p.kind.as_str(),
        "key": p.key,
        "event": p.event,
        "error": p.error,
        "parked_at": timestamp(p.parked_at),
        "work_order": p.work_order.as_ref().map(|w| json!({
            "id": w.id,
            "title": w.title,
            "asset": w.asset,
        })),
    })
}

/// The store's identity and how this run's store started (a lost store
/// shows here until the next start).
fn store_identity(identity: &StoreIdentity) -> JsonValue {
    let previous = match &identity.start {
        StoreStart::Lost { previous, .. } => previous.as_deref(),
        _ => None,
    };
    json!({
        "id": identity.id,
        "start": identity.start.as_str(),
        "reason": identity.start.reason(),
        "previous": previous,
    })
}

fn device(d: &DeviceSnapshot, m: &DeviceSeen) -> JsonValue {
    let (last_poll, tags) = m.with_last(|batch| match batch {
        Some(b) => (
            Some(timestamp(b.timestamp)),
            b.readings
                .iter()
                .filter_map(|r| {
                    let tag = b.device.tags.get(r.tag)?;
                    Some(json!({
                        "name": tag.name,
                        "value": r.value.as_ref().map(|v| value(v, Some(tag))),
                        "unit": tag.unit,
                        "decimals": decimals(tag),
                        "quality": r.quality.to_string(),
                        "write": write_access(tag),
                    }))
                })
                .collect::<Vec<_>>(),
        ),
        // Not polled yet: the tags, without a value or a quality.
        None => (
            None,
            m.device()
                .tags
                .iter()
                .map(|tag| json!({ "name": tag.name, "value": null, "unit": tag.unit, "decimals": decimals(tag), "quality": null, "write": write_access(tag) }))
                .collect(),
        ),
    });
    json!({
        "name": d.name,
        "link": d.link,
        "state": d.state.as_str(),
        "since": d.since.map(timestamp),
        "last_error": d.last_error,
        "last_response_ms": d.last_response.map(|t| t.as_secs_f64() * 1000.0),
        "last_success": d.last_success.map(timestamp),
        "last_poll": last_poll,
        "polls_ok": d.polls[0],
        "polls_failed": d.polls[1],
        "tags": tags,
    })
}

/// The decimals a tag's value is shown with (its `decimals`, else from
/// its scale); `null` for a float without either, shown with
/// [`SIGNIFICANT`](crate::precision::SIGNIFICANT) significant digits, and
/// for bools and strings. The value itself stays in full.
fn decimals(tag: &Tag) -> Option<u8> {
    if tag.data_type.is_numeric() {
        Precision::of(tag).decimals()
    } else {
        None
    }
}

/// What may be written to a tag (`null` when it is not writable): what
/// the page's write dialog offers and checks before asking the gateway.
fn write_access(tag: &Tag) -> JsonValue {
    let Some(w) = &tag.write else {
        return JsonValue::Null;
    };
    json!({
        "min": w.min,
        "max": w.max,
        "allowed": w.allowed.iter().map(|v| value(v, None)).collect::<Vec<_>>(),
        "max_rate": w.max_rate,
        "confirm": w.confirm,
        "type": tag.data_type.name(),
    })
}

fn time(t: Timestamp) -> String {
    timestamp(t.to_system_time())
}

fn finite(x: f64) -> JsonValue {
    if x.is_finite() {
        json!(x)
    } else {
        JsonValue::Null
    }
}

/// A value as the data payloads write it.
fn value(v: &Value, tag: Option<&Tag>) -> JsonValue {
    match v {
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(x) if !x.is_finite() => JsonValue::Null,
        // An f32 widened to f64 shows digits the device never held
        // (55.68 → 55.68000030517578): go through f32's shortest form.
        Value::Float(x) if tag.is_some_and(|t| t.data_type == DataType::F32 && t.is_unscaled()) => {
            (*x as f32)
                .to_string()
                .parse::<f64>()
                .map_or(JsonValue::Null, |y| json!(y))
        }
        Value::Float(x) => json!(x),
        Value::Text(s) => json!(s),
    }
}

//! Reads the running gateway's `/api/status` over loopback.
//!
//! The live view takes its picture of the plant from the same document a
//! technician's `curl` gets (docs/schemas/api-status.json) rather than
//! from the gateway's insides: it holds everything the view shows (device
//! link state, last values with quality, alarms, work orders, meters,
//! outbox depth, MQTT counters), some of which never reaches MQTT, and it
//! exercises the endpoint. The request is a hand-written HTTP/1.1 GET with
//! `Connection: close`: one small document on loopback needs no client
//! crate.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as JsonValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest the view waits for one answer; past it the view keeps its
/// previous picture and asks again at its next tick.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest answer read (the demo plant's document is a few KiB).
const MAX_ANSWER: u64 = 4 << 20;

/// Why a status document could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing answered (the gateway is still starting, or gone).
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The HTTP address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed half way.
    #[error("reading the answer: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within [`FETCH_TIMEOUT`].
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    /// An answer that is not a 200 with the status document.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// The parts of `/api/status` the demo shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PlantStatus {
    /// Every device, in config order.
    pub devices: Vec<DeviceStatus>,
    /// Alarms away from normal.
    pub alarms: Vec<AlarmStatus>,
    /// Work orders the CMMS has not closed.
    pub work_orders: Vec<WorkOrderStatus>,
    /// Every meter.
    #[serde(default)]
    pub meters: Vec<MeterStatus>,
    /// The outbox; `None` when the store did not answer in time.
    pub outbox: Option<OutboxStatus>,
    /// The broker connection.
    pub mqtt: MqttStatus,
}

/// One device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeviceStatus {
    /// Device name.
    pub name: String,
    /// `tcp:HOST:PORT`, `rtu-over-tcp:HOST:PORT` or `bus:NAME`.
    pub link: String,
    /// `starting`, `polling` or `failing`.
    pub state: String,
    /// While failing, why.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Every tag with its last reading.
    #[serde(default)]
    pub tags: Vec<TagStatus>,
}

/// One tag's last reading.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TagStatus {
    /// Short tag name.
    pub name: String,
    /// The engineering value; null when unknown or bad.
    #[serde(default)]
    pub value: JsonValue,
    /// Engineering unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Decimals the value is shown with; `None`: significant digits.
    #[serde(default)]
    pub decimals: Option<u8>,
    /// `good` or `bad:REASON`; `None` before the first poll.
    #[serde(default)]
    pub quality: Option<String>,
}

/// An alarm away from normal.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AlarmStatus {
    /// The rule.
    pub rule: String,
    /// `active_unacked`, `active_acked`, `returned_unacked` or `shelved`.
    pub state: String,
    /// `low` … `critical`.
    pub priority: String,
    /// The condition holds.
    pub active: bool,
    /// The value the condition last judged.
    #[serde(default)]
    pub value: JsonValue,
    /// What it was compared with.
    #[serde(default)]
    pub limit: JsonValue,
    /// Decimals value and limit are shown with; `None`: significant
    /// digits.
    #[serde(default)]
    pub decimals: Option<u8>,
}

/// A work order not closed yet.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WorkOrderStatus {
    /// ULID.
    pub id: String,
    /// `corrective` or `preventive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `open`, `accepted` or `in_progress`.
    pub status: String,
    /// `low` … `critical`.
    pub priority: String,
    /// The asset.
    pub asset: String,
    /// The title.
    pub title: String,
    /// Activations counted.
    #[serde(default)]
    pub occurrences: u64,
    /// The CMMS's reference, once it sent one.
    #[serde(default)]
    pub cmms_ref: Option<String>,
}

/// A meter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MeterStatus {
    /// Meter name.
    pub name: String,
    /// `runtime` or `count`.
    #[serde(default)]
    pub measure: String,
    /// Its value (`None` when not finite).
    #[serde(default)]
    pub value: Option<f64>,
    /// `h` or `count`.
    pub unit: String,
    /// The next threshold.
    #[serde(default)]
    pub next_due: Option<f64>,
    /// A threshold is reached and its work order not closed.
    pub due: bool,
}

/// The outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct OutboxStatus {
    /// Messages waiting for the broker's acknowledgement.
    pub messages: u64,
}

/// The broker connection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MqttStatus {
    /// A session is up.
    pub connected: bool,
    /// Messages the broker acknowledged since the gateway started.
    #[serde(default)]
    pub acked: u64,
}

/// `GET /api/status` from the gateway's HTTP address.
pub async fn fetch(addr: SocketAddr) -> Result<PlantStatus, StatusError> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, get(addr, "/api/status"))
        .await
        .map_err(|_| StatusError::Timeout)??;
    serde_json::from_slice(&body)
        .map_err(|e| StatusError::Answer(format!("not the status document: {e}")))
}

async fn get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, StatusError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| StatusError::Connect { addr, source })?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw).await?;
    body_of(&raw)
}

/// The body of a raw HTTP/1.1 answer: a 200, plain or chunked.
fn body_of(raw: &[u8]) -> Result<Vec<u8>, StatusError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| StatusError::Answer("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(StatusError::Answer(status_line.to_string()));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        dechunk(body)
    } else {
        Ok(body.to_vec())
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, StatusError> {
    let bad = || StatusError::Answer("malformed chunked body".into());
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or_else(bad)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(body_of(plain).ok(), Some(b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).ok(), Some(b"{\"a\":1}".to_vec()));
        assert!(body_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").is_err());
        assert!(body_of(b"garbage").is_err());
    }

    #[test]
    fn reads_the_documented_example() {
        // The example of docs/metrics.md, trimmed.
        let doc = r#"{
          "gateway": {"id": "gw-line1"},
          "devices": [{"name": "pump1", "link": "tcp:192.168.10.21:502", "state": "failing",
             "last_error": "no answer within 1s", "tags": [{"name": "bearing_temp", "value": null, "unit": "degC", "decimals": 1, "quality": "bad:timeout"}]}],
          "alarms": [{"rule": "pump1_bearing_hot", "state": "active_unacked", "priority": "high", "active": true,
             "since": "2026-11-22T09:12:00.000Z", "value": 82.1, "limit": 80.0, "decimals": 1, "chattering": false, "shelved_until": null}],
          "work_orders": [{"id": "01M7YQ9WAWVEBEAN195PSSWWHW", "type": "corrective", "status": "open", "priority": "high",
             "asset": "P-101", "title": "P-101: bearing", "created_at": "2026-11-22T09:12:00.000Z", "occurrences": 1, "cmms_ref": null}],
          "meters": [{"name": "pump1_runtime", "measure": "runtime", "value": 1234.5, "unit": "h", "next_due": 2000.0, "due": false}],
          "outbox": {"messages": 3, "bytes": 10, "oldest_age_s": 0.0},
          "mqtt": {"connected": true, "reconnects": 2, "published": 9, "acked": 7, "last_error": null}
        }"#;
        let s: PlantStatus = match serde_json::from_str(doc) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.devices[0].state, "failing");
        assert_eq!(s.devices[0].tags[0].quality.as_deref(), Some("bad:timeout"));
        assert_eq!(s.devices[0].tags[0].decimals, Some(1));
        assert_eq!(s.alarms[0].value, serde_json::json!(82.1));
        assert_eq!(s.alarms[0].decimals, Some(1));
        assert_eq!(s.meters[0].measure, "runtime");
        assert_eq!(s.work_orders[0].kind, "corrective");
        assert_eq!(s.meters[0].next_due, Some(2000.0));
        assert_eq!(s.outbox, Some(OutboxStatus { messages: 3 }));
        assert_eq!(s.mqtt.acked, 7);
    }
}

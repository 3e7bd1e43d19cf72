//! The retained status payloads on `{base}/status` (`docs/mqtt.md`,
//! `docs/schemas/status.json`).
//!
//! ```json
//! {"state":"online","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z","ts":"2026-11-21T06:38:25.412Z",
//!  "store":"01KBX3J8W5R2Q9T7M4N6P0ZC1D","store_start":"lost","store_reason":"the store file was unusable and moved aside: …","store_previous":"01KB…"}
//! {"state":"offline","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z","ts":"2026-11-21T06:40:01.007Z"}
//! {"state":"offline","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z"}
//! ```
//!
//! `online` is published on every CONNACK; `offline` on a clean stop (a
//! clean DISCONNECT does not fire the Will). The Last Will is made when the
//! connection options are built, long before the broker sends it, so it
//! has no `ts`. An empty config hash is left out. `store` is the identity
//! the run's messages carry and `store_start` how it came to be (a lost
//! store is said here, retained, until the next start).

use std::time::SystemTime;

use serde::Serialize;

use super::json::timestamp;

/// What every status message says about this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    /// fieldgate version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// SHA-256 (hex) of the configuration and its tag maps.
    pub config: String,
    /// When the process started.
    pub started: SystemTime,
    /// The store's identity, when known.
    pub store: Option<StoreInfo>,
}

/// The store's identity as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// The identity (`store` in every message).
    pub id: String,
    /// `kept`, `new`, `renewed` or `lost`.
    pub start: &'static str,
    /// Why it was renewed or lost.
    pub reason: Option<String>,
    /// The lost store's identity, if known.
    pub previous: Option<String>,
}

impl StatusInfo {
    /// This build's version with the given config hash and start time.
    pub fn new(config: impl Into<String>, started: SystemTime) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION"),
            config: config.into(),
            started,
            store: None,
        }
    }
}

#[derive(Serialize)]
struct Status<'a> {
    state: &'a str,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a str>,
    started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_start: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_previous: Option<&'a str>,
}

fn status(state: &str, info: &StatusInfo, ts: Option<SystemTime>) -> Vec<u8> {
    let status = Status {
        state,
        version: info.version,
        config: Some(info.config.as_str()).filter(|c| !c.is_empty()),
        started: timestamp(info.started),
        ts: ts.map(timestamp),
        store: info.store.as_ref().map(|s| s.id.as_str()),
        store_start: info.store.as_ref().map(|s| s.start),
        store_reason: info.store.as_ref().and_then(|s| s.reason.as_deref()),
        store_previous: info.store.as_ref().and_then(|s| s.previous.as_deref()),
    };
    // Serializing strings and a struct into a Vec cannot fail.
    serde_json::to_vec(&status).unwrap_or_default()
}

/// `{"state":"online",…,"ts":…}`: published (retained) on every CONNACK.
pub fn online(info: &StatusInfo, now: SystemTime) -> Vec<u8> {
    status("online", info, Some(now))
}

/// `{"state":"offline",…}`: with `ts` on a clean stop, without it as the
/// Last Will.
pub fn offline(info: &StatusInfo, now: Option<SystemTime>) -> Vec<u8> {
    status("offline", info, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn info() -> StatusInfo {
        StatusInfo {
            version: "0.1.0",
            config: "ab".repeat(32),
            started: UNIX_EPOCH + Duration::from_millis(1_763_706_000_123),
            store: None,
        }
    }

    #[test]
    fn online_payload() {
        let now = UNIX_EPOCH + Duration::from_millis(1_763_706_001_456);
        let text = String::from_utf8(online(&info(), now)).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"state\":\"online\",\"version\":\"0.1.0\",\"config\":\"{}\",\
                 \"started\":\"2025-11-21T06:20:00.123Z\",\"ts\":\"2025-11-21T06:20:01.456Z\"}}",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn will_has_no_ts_and_clean_stop_has_one() {
        let will: serde_json::Value = serde_json::from_slice(&offline(&info(), None)).unwrap();
        assert_eq!(will["state"], "offline");
        assert_eq!(will["version"], "0.1.0");
        assert!(will.get("ts").is_none());
        assert_eq!(will["started"], "2025-11-21T06:20:00.123Z");

        let stop: serde_json::Value =
            serde_json::from_slice(&offline(&info(), Some(SystemTime::now()))).unwrap();
        assert_eq!(stop["state"], "offline");
        assert!(stop["ts"].is_string());
    }

    #[test]
    fn a_lost_store_is_said_in_every_status() {
        let mut i = info();
        i.store = Some(StoreInfo {
            id: "01KBX3J8W5R2Q9T7M4N6P0ZC1D".into(),
            start: "lost",
            reason: Some("moved aside".into()),
            previous: None,
        });
        for payload in [online(&i, SystemTime::now()), offline(&i, None)] {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(v["store"], "01KBX3J8W5R2Q9T7M4N6P0ZC1D");
            assert_eq!(v["store_start"], "lost");
            assert_eq!(v["store_reason"], "moved aside");
            assert!(v.get("store_previous").is_none());
        }
    }

    #[test]
    fn unknown_config_hash_is_left_out() {
        let mut i = info();
        i.config.clear();
        let v: serde_json::Value = serde_json::from_slice(&online(&i, SystemTime::now())).unwrap();
        assert!(v.get("config").is_none());
    }
}

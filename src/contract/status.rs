//! The retained status payloads on `{base}/status` (`docs/mqtt.md`,
//! `docs/schemas/status.json`).
//!
//! ```json
//! {"state":"online","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z","ts":"2026-11-21T06:38:25.412Z"}
//! {"state":"offline","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z","ts":"2026-11-21T06:40:01.007Z"}
//! {"state":"offline","version":"0.1.0","config":"fb66…","started":"2026-11-21T06:38:25.305Z"}
//! ```
//!
//! `online` is published on every CONNACK; `offline` on a clean stop (a
//! clean DISCONNECT does not fire the Will). The Last Will is made when the
//! connection options are built, long before the broker sends it, so it
//! has no `ts`. An empty config hash is left out.

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
}

impl StatusInfo {
    /// This build's version with the given config hash and start time.
    pub fn new(config: impl Into<String>, started: SystemTime) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION"),
            config: config.into(),
            started,
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
}

fn status(state: &str, info: &StatusInfo, ts: Option<SystemTime>) -> Vec<u8> {
    let status = Status {
        state,
        version: info.version,
        config: Some(info.config.as_str()).filter(|c| !c.is_empty()),
        started: timestamp(info.started),
        ts: ts.map(timestamp),
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
    fn unknown_config_hash_is_left_out() {
        let mut i = info();
        i.config.clear();
        let v: serde_json::Value = serde_json::from_slice(&online(&i, SystemTime::now())).unwrap();
        assert!(v.get("config").is_none());
    }
}

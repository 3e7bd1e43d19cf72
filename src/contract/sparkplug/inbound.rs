//! What the edge node receives: NCMD, DCMD and the primary host's STATE.
//! Every payload is outside input: a malformed one is an error value,
//! never a panic.

use prost::Message as _;

use super::catalog::{Catalog, REBIRTH};
use super::proto::Payload;
use super::proto::payload::metric;

/// A command of an NCMD or DCMD, one per metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Node Control/Rebirth` = true: publish NBIRTH and every DBIRTH again.
    Rebirth,
    /// A metric fieldgate does not take writes to (by name, or `#alias`).
    Refused {
        /// The metric as the command named it.
        metric: String,
    },
}

/// A primary host application's state (`spBv1.0/STATE/{host}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostState {
    /// The host is online.
    pub online: bool,
    /// Its timestamp (ms since the epoch); `None` in the text form of
    /// Sparkplug 2.2 (`ONLINE` / `OFFLINE`).
    pub timestamp: Option<u64>,
}

/// Why an inbound Sparkplug message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkplugInboundError {
    /// Not a Sparkplug B payload.
    #[error("payload does not decode: {0}")]
    Payload(String),
    /// A STATE that is neither the JSON of 3.0 nor the text of 2.2.
    #[error("STATE payload is not {{\"online\":…,\"timestamp\":…}}: {0}")]
    State(String),
}

fn decode(payload: &[u8]) -> Result<Payload, SparkplugInboundError> {
    Payload::decode(payload).map_err(|e| SparkplugInboundError::Payload(e.to_string()))
}

/// The commands of an NCMD. A metric is known by name or by alias.
pub fn node_commands(
    payload: &[u8],
    catalog: &Catalog,
) -> Result<Vec<Command>, SparkplugInboundError> {
    let payload = decode(payload)?;
    Ok(payload
        .metrics
        .iter()
        .map(|m| {
            let name = match (&m.name, m.alias) {
                (Some(name), _) => Some(name.as_str()),
                (None, Some(alias)) => catalog.node_metric_by_alias(alias).map(|d| d.name.as_str()),
                (None, None) => None,
            };
            let truthy = matches!(m.value, Some(metric::Value::BooleanValue(true)));
            match name {
                Some(REBIRTH) if truthy => Command::Rebirth,
                Some(name) => Command::Refused {
                    metric: name.to_owned(),
                },
                None => Command::Refused {
                    metric: m.alias.map_or_else(|| "?".to_owned(), |a| format!("#{a}")),
                },
            }
        })
        .collect())
}

/// The metrics a DCMD asks to write: all refused until write-back exists.
pub fn device_commands(payload: &[u8]) -> Result<Vec<Command>, SparkplugInboundError> {
    let payload = decode(payload)?;
    Ok(payload
        .metrics
        .iter()
        .map(|m| Command::Refused {
            metric: match (&m.name, m.alias) {
                (Some(n), _) => n.clone(),
                (None, Some(a)) => format!("#{a}"),
                (None, None) => "?".to_owned(),
            },
        })
        .collect())
}

/// A STATE payload: `{"online":true,"timestamp":1700000000000}` (3.0), or
/// `ONLINE` / `OFFLINE` (2.2).
pub fn host_state(payload: &[u8]) -> Result<HostState, SparkplugInboundError> {
    #[derive(serde::Deserialize)]
    struct State {
        online: bool,
        timestamp: Option<u64>,
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| SparkplugInboundError::State(e.to_string()))?
        .trim();
    match text {
        "ONLINE" => Ok(HostState {
            online: true,
            timestamp: None,
        }),
        "OFFLINE" => Ok(HostState {
            online: false,
            timestamp: None,
        }),
        _ => serde_json::from_str::<State>(text)
            .map(|s| HostState {
                online: s.online,
                timestamp: s.timestamp,
            })
            .map_err(|e| SparkplugInboundError::State(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::sparkplug::proto::payload::Metric;

    #[test]
    fn states_of_both_versions() {
        assert_eq!(
            host_state(br#"{"online":true,"timestamp":5}"#),
            Ok(HostState {
                online: true,
                timestamp: Some(5)
            })
        );
        assert_eq!(host_state(b"OFFLINE").map(|s| s.online), Ok(false));
        assert!(host_state(b"{}").is_err());
        assert!(host_state(&[0xff, 0xfe]).is_err());
        assert!(host_state(b"").is_err());
    }

    #[test]
    fn rebirth_by_name_and_garbage_refused() {
        let p = Payload {
            metrics: vec![Metric {
                name: Some(REBIRTH.into()),
                value: Some(metric::Value::BooleanValue(true)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let catalog = Catalog::build::<crate::config::Device>(&[], &[]);
        assert_eq!(
            node_commands(&p.encode_to_vec(), &catalog),
            Ok(vec![Command::Rebirth])
        );
        assert!(node_commands(&[0xff, 0xff, 0xff], &catalog).is_err());
        assert!(device_commands(&[0x0a]).is_err());
    }
}

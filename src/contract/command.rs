//! Write-back commands on MQTT: the command payload read into a
//! [`WriteCommand`](crate::command::WriteCommand), and the result payload
//! of a [`WriteReport`](crate::command::WriteReport). Pure.
//!
//! SKELETON: the bodies are filled in by the contract work.

use std::time::SystemTime;

use crate::command::{Delivery, Requested, Source, WriteCommand, WriteReport};

/// Reads a command received on `cmd/{device}/{tag}`: `{"v": 42.5, "id":
/// "…", "by": "…", "ts": …}`. A payload that cannot be read gives a
/// command whose value is [`Requested::Malformed`], so that the refusal
/// is answered and recorded like any other.
pub fn read_command(
    device: &str,
    tag: &str,
    payload: &[u8],
    delivery: Delivery,
    received: SystemTime,
) -> WriteCommand {
    let _ = payload;
    WriteCommand {
        device: device.to_owned(),
        tag: tag.to_owned(),
        value: Requested::Malformed("not implemented".into()),
        id: None,
        by: None,
        sent: None,
        received,
        source: Source::Mqtt,
        delivery,
    }
}

/// The JSON form of a report: the result payload, the history's detail,
/// the status page's answer.
pub fn report_json(report: &WriteReport) -> serde_json::Value {
    serde_json::json!({ "result": report.result.as_str() })
}

/// The result payload published on `cmd/{device}/{tag}/result`.
pub fn result_payload(report: &WriteReport) -> Vec<u8> {
    report_json(report).to_string().into_bytes()
}

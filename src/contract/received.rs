//! fieldgate's own work-order and meter messages, read back: what a CMMS
//! connector delivers. In the gateway they come from the store (the bytes
//! the pipeline made); in `fieldgate bridge` from the broker, written by
//! any fieldgate of any version, so they are outside bytes: read
//! leniently (unknown fields ignored, optional ones may be missing) and
//! never trusted to be small or well formed. Pure: no I/O.

use serde::Deserialize;
use serde_json::Value as Json;

/// The longest message read (a work order is a few kB; a bridge must not
/// parse megabytes someone published on a work-order topic).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// A work order (`fieldgate.workorder/1`) as published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkOrderDoc {
    /// `fieldgate.workorder/1`.
    pub schema: String,
    /// The store identity that numbered it.
    #[serde(default)]
    pub store: String,
    /// Its topic's sequence number.
    #[serde(default)]
    pub seq: u64,
    /// ULID; the last topic level.
    pub id: String,
    /// The idempotency key: the same across retries and republishes.
    pub key: String,
    /// `corrective` or `preventive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `open`, `accepted`, `in_progress`, `closed`.
    pub status: String,
    /// `low`, `medium`, `high`, `critical`.
    pub priority: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub updated_at: String,
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Asset id.
    pub asset: String,
    /// Location.
    #[serde(default)]
    pub location: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The CMMS problem code.
    #[serde(default)]
    pub problem_code: Option<String>,
    /// SOP reference.
    #[serde(default)]
    pub procedure: Option<String>,
    /// What raised it.
    #[serde(default)]
    pub trigger: TriggerDoc,
    /// Activations counted.
    #[serde(default = "one")]
    pub occurrences: u64,
    /// The CMMS's last status report, once there is one.
    #[serde(default)]
    pub cmms: Option<CmmsDoc>,
    /// The message as it was read (a webhook may send it whole).
    #[serde(skip)]
    pub raw: String,
}

fn one() -> u64 {
    1
}

/// The `trigger` of a work order (alarm or meter: the fields of both).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TriggerDoc {
    /// The rule (alarm triggers).
    #[serde(default)]
    pub rule: Option<String>,
    /// The meter (meter triggers).
    #[serde(default)]
    pub meter: Option<String>,
    /// The tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The value that triggered it (any JSON value).
    #[serde(default)]
    pub value: Json,
    /// The limit or threshold.
    #[serde(default)]
    pub limit: Json,
    /// A meter's threshold.
    #[serde(default)]
    pub threshold: Json,
    /// Engineering unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// `above`, `below`, …, or the meter kind.
    #[serde(default)]
    pub condition: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub since: Option<String>,
}

/// The `cmms` object of a work order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CmmsDoc {
    /// The CMMS's reference.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// The last status it reported.
    #[serde(default)]
    pub status: Option<String>,
}

/// A meter message (`fieldgate.meter/1`) as published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MeterDoc {
    /// `fieldgate.meter/1`.
    pub schema: String,
    /// The meter's name.
    pub meter: String,
    /// The tag it counts.
    #[serde(default)]
    pub tag: String,
    /// `runtime` or `count`.
    pub kind: String,
    /// Hours or counts so far.
    pub value: f64,
    /// `h` or `count`.
    #[serde(default)]
    pub unit: String,
    /// RFC 3339.
    pub ts: String,
}

impl WorkOrderDoc {
    /// The rule or meter that raised it.
    pub fn source(&self) -> &str {
        self.trigger
            .rule
            .as_deref()
            .or(self.trigger.meter.as_deref())
            .unwrap_or_default()
    }

    /// Whether it is a preventive work order (a meter's).
    pub fn is_preventive(&self) -> bool {
        self.kind == "preventive"
    }

    /// The CMMS reference it carries, if a CMMS already answered.
    pub fn cmms_ref(&self) -> Option<&str> {
        self.cmms.as_ref()?.reference.as_deref()
    }
}

/// Why a message was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE} a work order or meter may be")]
    TooLong(usize),
    /// Not the JSON of the schema.
    #[error("not a {schema} message: {reason}")]
    Malformed {
        /// The schema expected.
        schema: &'static str,
        /// What is wrong (cut to 200 characters).
        reason: String,
    },
}

/// Reads a work-order message.
pub fn work_order(payload: &[u8]) -> Result<WorkOrderDoc, ReadError> {
    let mut doc: WorkOrderDoc = read(payload, super::WORKORDER_SCHEMA)?;
    // Valid UTF-8: serde_json read it as JSON text.
    doc.raw = String::from_utf8_lossy(payload).into_owned();
    Ok(doc)
}

/// Reads a meter message.
pub fn meter(payload: &[u8]) -> Result<MeterDoc, ReadError> {
    read(payload, super::METER_SCHEMA)
}

trait Schema {
    fn schema(&self) -> &str;
}
impl Schema for WorkOrderDoc {
    fn schema(&self) -> &str {
        &self.schema
    }
}
impl Schema for MeterDoc {
    fn schema(&self) -> &str {
        &self.schema
    }
}

fn read<T: serde::de::DeserializeOwned + Schema>(
    payload: &[u8],
    schema: &'static str,
) -> Result<T, ReadError> {
    if payload.len() > MAX_MESSAGE {
        return Err(ReadError::TooLong(payload.len()));
    }
    let malformed = |reason: String| ReadError::Malformed {
        schema,
        reason: reason.chars().take(200).collect(),
    };
    let doc: T = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    // A later major version may mean other things by the same fields.
    if doc.schema() != schema {
        return Err(malformed(format!("schema is {:?}", doc.schema())));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WO: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01J","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.000Z","updated_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":"d","problem_code":"BRG-HOT","procedure":null,"trigger":{"rule":"pump_hot","tag":"pump1.temp","value":91.5,"limit":80,"unit":"°C","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{},"occurrences":1,"last":{"value":91.5,"at":"2026-12-07T08:00:00.000Z"},"cmms":null}"#;

    #[test]
    fn a_published_work_order_reads_back() {
        let wo = work_order(WO.as_bytes()).unwrap();
        assert_eq!(wo.key, "plant/gw/pump_hot/1");
        assert_eq!(wo.source(), "pump_hot");
        assert_eq!(wo.trigger.value, serde_json::json!(91.5));
        assert_eq!(wo.cmms_ref(), None);
        assert!(!wo.is_preventive());
    }

    #[test]
    fn other_schemas_and_garbage_are_refused() {
        let other = WO.replace("fieldgate.workorder/1", "fieldgate.workorder/2");
        assert!(matches!(
            work_order(other.as_bytes()),
            Err(ReadError::Malformed { .. })
        ));
        assert!(work_order(b"").is_err());
        assert!(work_order(b"{\"id\":1}").is_err());
        assert!(matches!(
            work_order(&vec![b' '; MAX_MESSAGE + 1]),
            Err(ReadError::TooLong(_))
        ));
    }
}

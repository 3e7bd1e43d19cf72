//! Every message fieldgate receives, read into a typed [`Request`]: what
//! operators send on `alarms/{rule}/ack` and `alarms/{rule}/shelve` (an
//! [`OperatorAction`]), what the CMMS sends on `workorders/{id}/status` (a
//! [`StatusUpdate`] for the work-order book), and write commands on
//! `cmd/{device}/{tag}` (a [`WriteCommand`], read by
//! [`command::read_command`](super::command::read_command)). The inbound
//! channel carries these requests, never bytes: the forwarder reads each
//! message once, on receipt, with [`read`]; the status page's actions
//! build the same requests from their bodies. Pure: no I/O, no clock (the
//! receipt time is an argument).
//!
//! A write command is not refused here, whatever it holds: a retained one
//! is read as [`Delivery::Retained`] and one that cannot be read as
//! [`Requested::Malformed`](crate::command::Requested::Malformed), and the
//! write desk refuses them with an answer on the result topic and an entry
//! in the history. Only an empty payload (a retained command being
//! cleared) asks for nothing. Write commands go to the write desk, never to
//! the rules stage.
//!
//! A retained ack or shelve request is refused: it would acknowledge every
//! future alarm at each reconnect. A retained status is read (the CMMS may
//! publish its statuses retained) and marked, so that a status of a work
//! order closed long ago is not worth a warning.
//!
//! Payloads (docs/rules.md has the user's version):
//!
//! * ack: any non-empty payload; a JSON object may say `by` and `note`,
//!   kept in the history. An empty payload is how MQTT clears a retained
//!   message, and the broker delivers that clearing to live subscribers as
//!   an ordinary message: it must not acknowledge anything.
//! * shelve: `{"duration": "2h"}` (text as in the config, or a number of
//!   seconds), or the bare text `2h`; `{"unshelve": true}`, the text
//!   `unshelve` or a zero duration end the shelf early. A shelf longer than
//!   [`MAX_SHELVE`] is shortened to it: a forgotten shelf must not hide an
//!   alarm for ever.
//! * work-order status: `{"status": "accepted" | "in_progress" |
//!   "closed", "ref": "CMMS-123", "by": "...", "note": "..."}`. Only
//!   `status` is required (any case, `-` or a space for `_`); `ref` may be
//!   a string or a number; other fields are ignored. An empty payload is a
//!   retained status being cleared, not a status. `ref`, `by` and `note`
//!   are cut to [`MAX_TEXT`] characters like an operator's texts, so a
//!   message from outside cannot blow up the work order or the history;
//!   so is whatever of a message goes into an error (and so into a log
//!   line): the status, the topic, the reason JSON was refused.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};

use super::command::read_command;
use super::topics::{InboundTopic, Topics};
use crate::command::{Delivery, WriteCommand};
use crate::rules::{StatusUpdate, WoStatus};

/// The longest shelf; longer requests are shortened to this.
pub const MAX_SHELVE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest text from outside kept (an operator's `by` / `note`, the
/// CMMS's `ref`, `by` and `note`); longer ones are cut, so a message cannot
/// blow up the history.
pub const MAX_TEXT: usize = 200;

/// What a message from outside asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// An operator's request about a rule's alarm.
    Alarm {
        /// The rule.
        rule: String,
        /// Acknowledge, shelve or unshelve.
        action: OperatorAction,
    },
    /// The CMMS's status of a work order.
    WorkOrderStatus {
        /// The work order.
        id: String,
        /// What the CMMS says.
        update: StatusUpdate,
        /// The broker sent a stored copy (because we subscribed), not a
        /// message just published.
        retained: bool,
    },
    /// Not a message: the forwarder has a new session with the broker
    /// (the first after start, or a reconnect). The rules stage answers by
    /// publishing the current state of every alarm, open work order and
    /// meter again, committed after every row already in the outbox, so
    /// the broker's retained messages end at the newest state whatever a
    /// backlog resends before them (and a broker that lost its retained
    /// messages gets them back).
    BrokerConnected,
    /// A write command (`cmd/{device}/{tag}`): for the write desk, which
    /// judges and answers it; the rules stage never sees one.
    Write(WriteCommand),
}

/// Why an inbound message asks for nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// Not one of the inbound topics.
    #[error("inbound message on an unknown topic {0:?}; ignored")]
    UnknownTopic(String),
    /// An ack or shelve request with the retain flag.
    #[error(
        "retained alarm request on {topic} ignored; publish acks and shelve requests without the retain flag"
    )]
    Retained {
        /// Where it arrived.
        topic: String,
    },
    /// A shelve request that is not understood.
    #[error("shelve request for {rule} ignored: {error}")]
    Shelve {
        /// The rule.
        rule: String,
        /// What is wrong.
        error: ActionError,
    },
    /// A work-order status that is not understood.
    #[error("work-order status ignored: {0}")]
    Status(StatusError),
}

/// Reads one message received on `topic` (with the broker's retain flag)
/// at `received` into the request it makes: `Ok(None)` for an empty
/// payload (a retained message being cleared, delivered live: it asks for
/// nothing). A write command is read as [`Delivery::Retained`] with the
/// retain flag, else [`Delivery::Live`]: only the forwarder knows whether
/// the broker queued it, and marks it [`Delivery::Queued`] then.
pub fn read(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    retained: bool,
    received: SystemTime,
) -> Result<Option<Request>, InboundError> {
    let Some(parsed) = topics.parse_inbound(topic) else {
        return Err(InboundError::UnknownTopic(shorten(topic.to_owned())));
    };
    match parsed {
        InboundTopic::Ack { .. } | InboundTopic::Shelve { .. } if retained => {
            Err(InboundError::Retained {
                topic: shorten(topic.to_owned()),
            })
        }
        InboundTopic::Ack { rule } => Ok(ack(payload).map(|action| Request::Alarm {
            rule: rule.to_owned(),
            action,
        })),
        InboundTopic::Shelve { rule } => match shelve(payload) {
            Ok(action) => Ok(Some(Request::Alarm {
                rule: rule.to_owned(),
                action,
            })),
            Err(error) => Err(InboundError::Shelve {
                rule: shorten(rule.to_owned()),
                error,
            }),
        },
        InboundTopic::WorkOrderStatus { id } => match work_order_status(id, payload) {
            Ok(update) => Ok(update.map(|update| Request::WorkOrderStatus {
                id: id.to_owned(),
                update,
                retained,
            })),
            Err(e) => Err(InboundError::Status(e)),
        },
        InboundTopic::Command { .. } if payload.iter().all(u8::is_ascii_whitespace) => Ok(None),
        InboundTopic::Command { device, tag } => {
            let delivery = if retained {
                Delivery::Retained
            } else {
                Delivery::Live
            };
            Ok(Some(Request::Write(read_command(
                device, tag, payload, delivery, received,
            ))))
        }
    }
}

/// The status message a CMMS sends on `workorders/{id}/status`, as
/// `fieldgate bridge` publishes it for a connector (read back by
/// [`work_order_status`]).
pub fn status_payload(update: &StatusUpdate) -> Vec<u8> {
    let mut message = serde_json::Map::new();
    message.insert("status".into(), update.status.as_str().into());
    for (name, value) in [
        ("ref", &update.cmms_ref),
        ("by", &update.by),
        ("note", &update.note),
    ] {
        if let Some(v) = value {
            message.insert(name.into(), v.as_str().into());
        }
    }
    serde_json::Value::Object(message).to_string().into_bytes()
}

/// What an operator asked of an alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction {
    /// Acknowledge.
    Ack(Who),
    /// Shelve for a duration (already capped at [`MAX_SHELVE`]).
    Shelve {
        /// How long.
        duration: Duration,
        /// The request was longer than [`MAX_SHELVE`] and was shortened.
        capped: bool,
        /// Who asked.
        who: Who,
    },
    /// End the shelf now.
    Unshelve(Who),
}

/// Who sent a request and why, when they said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// The operator or system (`by`).
    pub by: Option<String>,
    /// Their note.
    pub note: Option<String>,
}

/// Why a shelve request was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Neither a JSON object nor a duration.
    #[error(
        "shelve payload {0:?} is neither JSON like {{\"duration\":\"2h\"}} nor a duration like 2h"
    )]
    Unreadable(String),
    /// A JSON object without `duration` or `unshelve`.
    #[error("shelve payload has no \"duration\" (e.g. \"2h\") and no \"unshelve\": true")]
    NoDuration,
    /// The duration is not one.
    #[error("shelve duration {0:?} is not a duration like 30m, 2h or 1d")]
    BadDuration(String),
}

/// Why a CMMS status message was not understood. Each names the work
/// order, so the log line says which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The message is not the expected JSON object.
    #[error("work order {id}: status message is not valid: {reason}")]
    Malformed {
        /// The work order.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The status is not one the CMMS may report.
    #[error(
        "work order {id}: unknown status \"{status}\"; expected accepted, in_progress or closed"
    )]
    UnknownStatus {
        /// The work order.
        id: String,
        /// What was sent.
        status: String,
    },
}

#[derive(Deserialize)]
struct AckMessage {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationField {
    Seconds(f64),
    Text(String),
}

#[derive(Deserialize)]
struct ShelveMessage {
    #[serde(default)]
    duration: Option<DurationField>,
    #[serde(default)]
    unshelve: bool,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// The CMMS's status message.
#[derive(Debug, Deserialize)]
struct StatusMessage {
    status: String,
    #[serde(default, rename = "ref", deserialize_with = "text_or_number")]
    reference: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// A reference may be sent as a string or a number.
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "ref must be a string or a number, not {other}"
        ))),
    }
}

/// Reads an ack: `None` for an empty payload (a cleared retained
/// message); otherwise an ack, with `by` and `note` if the payload is a
/// JSON object that has them.
pub fn ack(payload: &[u8]) -> Option<OperatorAction> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let who = serde_json::from_slice::<AckMessage>(payload)
        .map(|m| Who::new(m.by, m.note))
        .unwrap_or_default();
    Some(OperatorAction::Ack(who))
}

/// Reads a shelve request.
pub fn shelve(payload: &[u8]) -> Result<OperatorAction, ActionError> {
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    if text.starts_with('{') {
        let message: ShelveMessage = serde_json::from_str(text)
            .map_err(|_| ActionError::Unreadable(shorten(text.to_owned())))?;
        let who = Who::new(message.by, message.note);
        if message.unshelve {
            return Ok(OperatorAction::Unshelve(who));
        }
        let duration = match message.duration {
            None => return Err(ActionError::NoDuration),
            Some(DurationField::Text(t)) => parse_duration(&t)?,
            Some(DurationField::Seconds(s)) if s.is_finite() && s >= 0.0 => {
                Duration::try_from_secs_f64(s).unwrap_or(MAX_SHELVE)
            }
            Some(DurationField::Seconds(s)) => {
                return Err(ActionError::BadDuration(s.to_string()));
            }
        };
        return Ok(shelf(duration, who));
    }
    if text.eq_ignore_ascii_case("unshelve") {
        return Ok(OperatorAction::Unshelve(Who::default()));
    }
    match parse_duration(text) {
        Ok(d) => Ok(shelf(d, Who::default())),
        Err(_) => Err(ActionError::Unreadable(shorten(text.to_owned()))),
    }
}

/// Reads the CMMS's status message for work order `id` (named only in
/// the errors): `None` for an empty payload (a cleared retained message).
pub fn work_order_status(id: &str, payload: &[u8]) -> Result<Option<StatusUpdate>, StatusError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // Everything from outside that goes into the error (and so into a log
    // line) is cut, the work order's id from the topic included.
    let malformed = |reason: String| StatusError::Malformed {
        id: shorten(id.to_owned()),
        reason: shorten(reason),
    };
    let json: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    if !json.is_object() {
        return Err(malformed(format!("expected a JSON object, not {json}")));
    }
    let message = StatusMessage::deserialize(json).map_err(|e| malformed(e.to_string()))?;
    let Some(status) = WoStatus::parse_cmms(&message.status) else {
        return Err(StatusError::UnknownStatus {
            id: shorten(id.to_owned()),
            status: shorten(message.status),
        });
    };
    let clean = |s: Option<String>| s.map(shorten);
    Ok(Some(StatusUpdate {
        status,
        cmms_ref: clean(message.reference),
        by: clean(message.by),
        note: clean(message.note),
    }))
}

fn shelf(duration: Duration, who: Who) -> OperatorAction {
    if duration.is_zero() {
        return OperatorAction::Unshelve(who);
    }
    OperatorAction::Shelve {
        duration: duration.min(MAX_SHELVE),
        capped: duration > MAX_SHELVE,
        who,
    }
}

fn parse_duration(text: &str) -> Result<Duration, ActionError> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|_| ActionError::BadDuration(shorten(t.to_owned())))
}

impl Who {
    /// Who sent it, with texts from outside cut to [`MAX_TEXT`]; an empty
    /// text is none.
    pub fn new(by: Option<String>, note: Option<String>) -> Who {
        let clean = |s: Option<String>| s.map(shorten).filter(|s| !s.is_empty());
        Who {
            by: clean(by),
            note: clean(note),
        }
    }
}

/// Cuts a text from outside to [`MAX_TEXT`] characters.
fn shorten(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_TEXT) {
        s.truncate(i);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_the_bridge_publishes_reads_back() {
        let update = StatusUpdate {
            status: WoStatus::Cancelled,
            cmms_ref: Some("1042".into()),
            by: Some("maximo".into()),
            note: None,
        };
        let payload = status_payload(&update);
        assert_eq!(work_order_status("01J", &payload), Ok(Some(update)));
    }

    #[test]
    fn messages_are_read_into_typed_requests() {
        let topics = Topics::new("fieldgate", "s", "gw");
        let read = |topic: &str, payload: &[u8], retained| {
            read(
                &topics,
                &format!("fieldgate/s/gw/{topic}"),
                payload,
                retained,
                SystemTime::UNIX_EPOCH,
            )
        };
        assert_eq!(
            read("alarms/hot/ack", br#"{"by":"ana"}"#, false),
            Ok(Some(Request::Alarm {
                rule: "hot".into(),
                action: OperatorAction::Ack(Who {
                    by: Some("ana".into()),
                    note: None
                })
            }))
        );
        assert_eq!(read("alarms/hot/ack", b"", false), Ok(None));
        assert!(matches!(
            read("alarms/hot/ack", b"ok", true),
            Err(InboundError::Retained { .. })
        ));
        assert!(matches!(
            read("alarms/hot/shelve", b"soon", false),
            Err(InboundError::Shelve { .. })
        ));
        assert_eq!(
            read("workorders/01J/status", br#"{"status":"closed"}"#, true),
            Ok(Some(Request::WorkOrderStatus {
                id: "01J".into(),
                update: StatusUpdate {
                    status: WoStatus::Closed,
                    cmms_ref: None,
                    by: None,
                    note: None
                },
                retained: true
            }))
        );
        assert!(matches!(
            read("workorders/01J/status", b"{", false),
            Err(InboundError::Status(StatusError::Malformed { .. }))
        ));
        assert!(matches!(
            read("alarms/hot", b"x", false),
            Err(InboundError::UnknownTopic(_))
        ));
    }

    #[test]
    fn write_commands_are_read_never_refused_here() {
        use crate::command::{Requested, Source};
        let topics = Topics::new("fieldgate", "s", "gw");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let read = |topic: &str, payload: &[u8], retained| {
            read(
                &topics,
                &format!("fieldgate/s/gw/{topic}"),
                payload,
                retained,
                at,
            )
        };
        let Ok(Some(Request::Write(live))) =
            read("cmd/pump1/setpoint", br#"{"v":42.5,"id":"a1"}"#, false)
        else {
            panic!("a command is a write request");
        };
        assert_eq!(
            live,
            WriteCommand {
                device: "pump1".into(),
                tag: "setpoint".into(),
                value: Requested::Number(42.5),
                id: Some("a1".into()),
                by: None,
                sent: None,
                received: at,
                source: Source::Mqtt,
                delivery: Delivery::Live,
            }
        );
        // Retained: read, marked, left to the desk to refuse and answer.
        let Ok(Some(Request::Write(retained))) = read("cmd/pump1/setpoint", br#"{"v":1}"#, true)
        else {
            panic!("a retained command is still a write request");
        };
        assert_eq!(retained.delivery, Delivery::Retained);
        // Unreadable: still a command, to be refused with an answer.
        let Ok(Some(Request::Write(bad))) = read("cmd/pump1/setpoint", b"{", false) else {
            panic!("a malformed command is still a write request");
        };
        assert!(matches!(bad.value, Requested::Malformed(_)), "{bad:?}");
        // A retained command being cleared asks for nothing.
        assert_eq!(read("cmd/pump1/setpoint", b"", true), Ok(None));
        assert_eq!(read("cmd/pump1/setpoint", b" \n", false), Ok(None));
        // Our own results are not commands.
        assert!(matches!(
            read("cmd/pump1/setpoint/result", br#"{"v":1}"#, false),
            Err(InboundError::UnknownTopic(_))
        ));
    }

    #[test]
    fn acks_take_any_payload_but_an_empty_one() {
        assert_eq!(ack(b""), None);
        assert_eq!(ack(b" \n"), None);
        assert_eq!(ack(b"ok"), Some(OperatorAction::Ack(Who::default())));
        assert_eq!(
            ack(br#"{"by":"j.smith","note":"checked"}"#),
            Some(OperatorAction::Ack(Who {
                by: Some("j.smith".into()),
                note: Some("checked".into())
            }))
        );
    }

    #[test]
    fn shelve_reads_json_text_and_seconds() {
        let d = |p: &[u8]| match shelve(p) {
            Ok(OperatorAction::Shelve { duration, .. }) => duration,
            other => panic!("{other:?}"),
        };
        assert_eq!(d(br#"{"duration":"2h"}"#), Duration::from_secs(7200));
        assert_eq!(d(br#"{"duration":90}"#), Duration::from_secs(90));
        assert_eq!(d(b"30m"), Duration::from_secs(1800));
        assert_eq!(d(b" 45 "), Duration::from_secs(45));
    }

    #[test]
    fn shelve_ends_early_and_is_capped() {
        assert!(matches!(
            shelve(br#"{"unshelve":true}"#),
            Ok(OperatorAction::Unshelve(_))
        ));
        assert!(matches!(
            shelve(b"unshelve"),
            Ok(OperatorAction::Unshelve(_))
        ));
        assert!(matches!(shelve(b"0s"), Ok(OperatorAction::Unshelve(_))));
        assert_eq!(
            shelve(br#"{"duration":"30d","by":"ops"}"#),
            Ok(OperatorAction::Shelve {
                duration: MAX_SHELVE,
                capped: true,
                who: Who {
                    by: Some("ops".into()),
                    note: None
                }
            })
        );
    }

    #[test]
    fn bad_shelve_payloads_say_what_is_wrong() {
        assert_eq!(shelve(br#"{"by":"x"}"#), Err(ActionError::NoDuration));
        assert!(matches!(
            shelve(br#"{"duration":"soon"}"#),
            Err(ActionError::BadDuration(_))
        ));
        assert!(matches!(
            shelve(br#"{"duration":-5}"#),
            Err(ActionError::BadDuration(_))
        ));
        assert!(matches!(shelve(b""), Err(ActionError::Unreadable(_))));
        assert!(matches!(
            shelve(b"{not json"),
            Err(ActionError::Unreadable(_))
        ));
        assert!(matches!(
            shelve(&[0xff, 0xfe]),
            Err(ActionError::Unreadable(_))
        ));
    }

    /// A bare status: no reference, nobody, no note.
    fn update(status: WoStatus) -> StatusUpdate {
        StatusUpdate {
            status,
            cmms_ref: None,
            by: None,
            note: None,
        }
    }

    #[test]
    fn status_messages_read_case_refs_as_text_or_number_and_ignore_extras() {
        let id = "01J";
        assert_eq!(
            work_order_status(
                id,
                br#"{"status":"accepted","ref":"CMMS-123","by":"planner"}"#
            ),
            Ok(Some(StatusUpdate {
                cmms_ref: Some("CMMS-123".into()),
                by: Some("planner".into()),
                ..update(WoStatus::Accepted)
            }))
        );
        // Any case, `-` for `_`, extra fields ignored.
        assert_eq!(
            work_order_status(id, br#"{"status":"In-Progress","note":"on site","eta":5}"#),
            Ok(Some(StatusUpdate {
                note: Some("on site".into()),
                ..update(WoStatus::InProgress)
            }))
        );
        // A number as the reference.
        assert_eq!(
            work_order_status(id, br#"{"status":"closed","ref":4711}"#),
            Ok(Some(StatusUpdate {
                cmms_ref: Some("4711".into()),
                ..update(WoStatus::Closed)
            }))
        );
        // The CMMS's texts are cut like an operator's: a message from
        // outside cannot blow up the work order or the history.
        let long = "x".repeat(1000);
        let payload =
            format!(r#"{{"status":"closed","note":"{long}","ref":"{long}","by":"{long}"}}"#);
        let Ok(Some(got)) = work_order_status(id, payload.as_bytes()) else {
            panic!("a long status is still a status");
        };
        for text in [&got.note, &got.cmms_ref, &got.by] {
            assert_eq!(text.as_ref().map(|t| t.chars().count()), Some(MAX_TEXT + 1));
        }
    }

    #[test]
    fn bad_status_messages_name_the_work_order_and_the_reason() {
        let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        assert_eq!(
            work_order_status(id, br#"{"status":"done"}"#),
            Err(StatusError::UnknownStatus {
                id: id.into(),
                status: "done".into()
            })
        );
        assert_eq!(
            work_order_status(id, br#"{"status":"open"}"#).map_err(|e| e.to_string()),
            Err(format!(
                "work order {id}: unknown status \"open\"; expected accepted, in_progress or closed"
            ))
        );
        for bad in [
            "not json",
            r#"{"ref":"x"}"#,
            r#"["closed"]"#,
            r#"{"status":3}"#,
            r#"{"status":"closed","ref":[1]}"#,
        ] {
            assert!(
                matches!(
                    work_order_status(id, bad.as_bytes()),
                    Err(StatusError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            work_order_status(id, br#"["closed"]"#).map_err(|e| e.to_string()),
            Err(format!(
                "work order {id}: status message is not valid: expected a JSON object, not [\"closed\"]"
            ))
        );
        // An empty (retained-clearing) message is not a status at all.
        assert_eq!(work_order_status(id, b""), Ok(None));
        assert_eq!(work_order_status("unknown", b" \n"), Ok(None));
    }

    #[test]
    fn texts_from_outside_in_errors_are_cut() {
        let long = "x".repeat(1000);
        let cut = |s: &str| s.chars().count() <= MAX_TEXT + 1;
        match work_order_status(&long, format!(r#"{{"status":"{long}"}}"#).as_bytes()) {
            Err(StatusError::UnknownStatus { id, status }) => assert!(cut(&id) && cut(&status)),
            other => panic!("{other:?}"),
        }
        let array = format!(r#"{{"status":"closed","ref":["{long}"]}}"#);
        match work_order_status("01J", array.as_bytes()) {
            Err(StatusError::Malformed { reason, .. }) => assert!(cut(&reason), "{reason}"),
            other => panic!("{other:?}"),
        }
        match work_order_status("01J", format!(r#"["{long}"]"#).as_bytes()) {
            Err(StatusError::Malformed { reason, .. }) => assert!(cut(&reason), "{reason}"),
            other => panic!("{other:?}"),
        }
        let topics = Topics::new("fieldgate", "s", "gw");
        let topic = format!("fieldgate/s/gw/alarms/{long}/ack");
        match read(&topics, &topic, b"ok", true, SystemTime::UNIX_EPOCH) {
            Err(InboundError::Retained { topic }) => assert!(cut(&topic)),
            other => panic!("{other:?}"),
        }
        let topic = format!("fieldgate/s/gw/alarms/{long}/shelve");
        match read(&topics, &topic, b"soon", false, SystemTime::UNIX_EPOCH) {
            Err(InboundError::Shelve { rule, .. }) => assert!(cut(&rule)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "x".repeat(1000);
        let payload = format!(r#"{{"by":"{long}"}}"#);
        let Some(OperatorAction::Ack(who)) = ack(payload.as_bytes()) else {
            panic!()
        };
        assert_eq!(who.by.map(|b| b.chars().count()), Some(MAX_TEXT + 1));
    }
}

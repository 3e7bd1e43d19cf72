//! What operators send on `alarms/{rule}/ack` and `alarms/{rule}/shelve`,
//! read into an [`OperatorAction`]. Pure: no I/O, no clock.
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
//!
//! Work-order status messages are read by the work-order book itself
//! (`WorkOrderBook::on_status`).

use std::time::Duration;

use serde::Deserialize;

/// The longest shelf; longer requests are shortened to this.
pub const MAX_SHELVE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest `by` / `note` kept (longer ones are cut), so an operator's
/// message cannot blow up the history.
const MAX_TEXT: usize = 200;

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
    fn new(by: Option<String>, note: Option<String>) -> Who {
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

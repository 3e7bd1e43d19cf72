//! The bridges' claims: how two `fieldgate bridge`s of one
//! shared-subscription group agree which of them creates a work order.
//!
//! A shared subscription hands each message to one bridge, but a work
//! order can come twice (its raise, and the copy its gateway republishes
//! when it reconnects), or to every bridge (the retained work orders a
//! new session reads), to two bridges at once. Before creating, a bridge
//! publishes a claim, retained, on the work order's claim topic, to
//! which every bridge of the group subscribes (not shared): a bridge that
//! subscribes later gets the claims made before it, and a broker delivers
//! the messages of one topic in one order to every subscriber, so every
//! bridge sees the same first claim: that bridge creates, the others do
//! not. A bridge claims only what nobody claimed yet, and the claim is
//! cleared (an empty retained message) when the work order is closed.
//! Pure: no I/O.

use serde::{Deserialize, Serialize};

/// The claim topic of one work order:
/// `{prefix}/_bridges/{group}/claims/{site}/{gateway}/{id}`.
pub fn topic(prefix: &str, group: &str, site: &str, gateway: &str, id: &str) -> String {
    format!("{prefix}/_bridges/{group}/claims/{site}/{gateway}/{id}")
}

/// The subscription to every claim of a group.
pub fn filter(prefix: &str, group: &str) -> String {
    format!("{prefix}/_bridges/{group}/claims/#")
}

/// Whether `topic` is one of the group's claim topics.
pub fn is_claim(prefix: &str, group: &str, topic: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .and_then(|t| t.strip_prefix("/_bridges/"))
        .and_then(|t| t.strip_prefix(group))
        .is_some_and(|t| t.starts_with("/claims/"))
}

/// One claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The work-order key.
    pub key: String,
    /// The claiming bridge's id.
    pub bridge: String,
}

impl Claim {
    /// The message.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a claim; `None` for anything else (a claims topic is written
    /// by bridges only, but a broker lets anyone publish there).
    pub fn read(payload: &[u8]) -> Option<Claim> {
        if payload.len() > 4096 {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_reads_back_and_garbage_is_none() {
        let c = Claim {
            key: "plant/gw1/hot/P-1/1-01J".into(),
            bridge: "b1".into(),
        };
        assert_eq!(Claim::read(&c.payload()), Some(c));
        assert_eq!(Claim::read(b"{}"), None);
        assert_eq!(Claim::read(&[0xff; 10]), None);
        let t = topic("fieldgate", "g", "plant", "gw1", "01J");
        assert_eq!(t, "fieldgate/_bridges/g/claims/plant/gw1/01J");
        assert!(is_claim("fieldgate", "g", &t));
        assert!(!is_claim("fieldgate", "h", &t));
        assert!(!is_claim(
            "fieldgate",
            "g",
            "fieldgate/plant/gw1/workorders/01J"
        ));
        assert_eq!(filter("fieldgate", "g"), "fieldgate/_bridges/g/claims/#");
    }
}

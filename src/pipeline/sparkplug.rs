//! The pipeline's side of the Sparkplug edge node: which rows of the
//! Sparkplug lane a poll or an alarm change makes, and the current values
//! the births are made of.
//!
//! Per device, by what its polls say (`contract::sparkplug::values::is_down`):
//!
//! | before | this poll | row                                   |
//! |--------|-----------|---------------------------------------|
//! | up     | answers   | DDATA of the readings the filter kept |
//! | up     | no answer | DDEATH                                |
//! | down   | answers   | DBIRTH with every current value       |
//! | down   | no answer | none                                  |
//!
//! A device the pipeline has not polled yet counts as up (its session
//! birth had no values). An alarm change makes a DDATA row of its device's
//! alarm metrics, except while the device is down: its next DBIRTH
//! carries the state. [`Current`] is updated before the row is made and
//! queued, so a birth taken after a row was offered is never older than it.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::config::Config;
use crate::contract::sparkplug::values::{self, AlarmNow, epoch_millis};
use crate::contract::sparkplug::{Catalog, SharedCurrent, SparkplugTopics};
use crate::reading::Batch;
use crate::rules::AlarmState;
use crate::store::{Kind, OutMessage};
use prost::Message as _;

use super::data::Sequencer;

/// What the pipeline needs to feed the edge node.
#[derive(Debug, Clone)]
pub struct SparkplugOut {
    /// The node's topics.
    pub topics: SparkplugTopics,
    /// The birth certificate (which device owns which rule's alarm).
    pub catalog: Arc<Catalog>,
    /// Shared with the edge node.
    pub current: SharedCurrent,
    /// Readings also go to the JSON tree.
    pub json_readings: bool,
}

impl SparkplugOut {
    /// The Sparkplug side of `config`, when `[sparkplug]` is on; the edge
    /// node reads births from `current`.
    pub fn of(config: &Config, current: SharedCurrent) -> Option<SparkplugOut> {
        let sp = config.sparkplug.as_ref()?;
        Some(SparkplugOut {
            topics: SparkplugTopics::new(&sp.group_id, &sp.edge_node_id),
            catalog: Arc::new(Catalog::of(config)),
            current,
            json_readings: sp.json_readings,
        })
    }

    fn row(
        topic: String,
        payload: Vec<u8>,
        seq: &mut Sequencer,
        kind: Kind,
        created_at: Timestamp,
    ) -> OutMessage {
        // The store numbers every topic; Sparkplug's own `seq` is the
        // session's, given at publish time.
        let n = seq.next(&topic);
        OutMessage {
            topic,
            seq: n,
            payload,
            qos: 0,
            retain: false,
            kind,
            created_at,
        }
    }

    /// The row of one poll (see the module's table), if any.
    pub fn batch(
        &self,
        batch: &Batch,
        picked: &[usize],
        seq: &mut Sequencer,
        created_at: Timestamp,
    ) -> Option<OutMessage> {
        let device = &batch.device.name;
        let down = values::is_down(batch);
        let (was_up, birth) = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            // A device known only from an alarm has not been polled yet.
            let was_up = current.devices.get(device).is_none_or(|d| !d.is_down());
            current.take_batch(batch, !down);
            let birth = (!was_up && !down).then(|| {
                current
                    .device_payload(&batch.device, epoch_millis(batch.timestamp))
                    .encode_to_vec()
            });
            (was_up, birth)
        };
        let (topic, payload) = match (was_up, down) {
            (true, false) if picked.is_empty() => return None,
            (true, false) => (
                self.topics.ddata(device),
                values::batch_payload(batch, picked),
            ),
            (true, true) => (self.topics.ddeath(device), Vec::new()),
            (false, false) => (self.topics.dbirth(device), birth.unwrap_or_default()),
            (false, true) => return None,
        };
        Some(Self::row(topic, payload, seq, Kind::Reading, created_at))
    }

    /// The row of one alarm change: its three metrics on its device (or
    /// the node, for a rule that spans devices); none while the device is
    /// down (its next DBIRTH carries the state).
    pub fn alarm(
        &self,
        rule: &str,
        state: AlarmState,
        at: std::time::SystemTime,
        seq: &mut Sequencer,
        created_at: Timestamp,
    ) -> Option<OutMessage> {
        let owner = self.catalog.rule_owner(rule)?;
        let alarm = AlarmNow {
            state: state.as_str().to_owned(),
            active: state.is_active(),
            acked: !state.is_unacked(),
            at_ms: epoch_millis(at),
        };
        let payload = values::alarm_payload(rule, &alarm);
        let device_down = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            match owner {
                Some(device) => {
                    let now = current.devices.entry(device.to_owned()).or_default();
                    now.alarms.insert(rule.to_owned(), alarm);
                    now.is_down()
                }
                None => {
                    current.node_alarms.insert(rule.to_owned(), alarm);
                    false
                }
            }
        };
        if device_down {
            // No DDATA between a DDEATH and the next DBIRTH: the state is
            // in `Current`, so the device's DBIRTH carries it. A row here
            // would wait in the outbox for a session that births the
            // device first.
            return None;
        }
        let topic = match owner {
            Some(device) => self.topics.ddata(device),
            None => self.topics.ndata(),
        };
        Some(Self::row(topic, payload, seq, Kind::Alarm, created_at))
    }
}

//! From polls to data messages: the report-by-exception filter, the data
//! payloads and the per-topic sequence numbers every outbox message gets.

use std::collections::HashMap;
use std::time::Instant;

use crate::clock::Timestamp;
use crate::contract::data as payload;
use crate::contract::topics::Topics;
use crate::filter::Filter;
use crate::reading::Batch;
use crate::store::{Kind, OutMessage};

use super::sparkplug::SparkplugOut;

/// Numbers the messages of each topic 1, 2, 3, … without gaps, so a
/// consumer can see both duplicates and losses; every number goes out
/// with the store's identity ([`store`](Self::store)), which tells a new
/// store (numbers that may start again) from a duplicate.
#[derive(Debug, Default)]
pub struct Sequencer {
    store: String,
    last: HashMap<String, u64>,
}

impl Sequencer {
    /// Continues from the last numbers committed (after a restart) in the
    /// store whose identity is `store`.
    pub fn resume(store: &str, last: HashMap<String, u64>) -> Sequencer {
        Sequencer {
            store: store.to_owned(),
            last,
        }
    }

    /// The store's identity, carried beside every `seq`.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The next number of `topic`.
    pub fn next(&mut self, topic: &str) -> u64 {
        match self.last.get_mut(topic) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.last.insert(topic.to_string(), 1);
                1
            }
        }
    }
}

/// How a poll becomes messages.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The topic tree.
    pub topics: Topics,
    /// MQTT QoS of data messages.
    pub qos: u8,
    /// Also one message per tag.
    pub per_tag_topics: bool,
    /// The Sparkplug edge node's rows, when `[sparkplug]` is on.
    pub sparkplug: Option<SparkplugOut>,
}

/// Turns one batch into outbox messages (none when the filter keeps nothing).
pub fn messages(
    batch: &Batch,
    filter: &mut Filter,
    sequencer: &mut Sequencer,
    config: &PipelineConfig,
    now: Instant,
    created_at: Timestamp,
) -> Vec<OutMessage> {
    let picked = filter.select(batch, now);
    // The edge node sees every poll: a device's death or return is news
    // even when the filter keeps no reading.
    let sparkplug = config
        .sparkplug
        .as_ref()
        .and_then(|sp| sp.batch(batch, &picked, sequencer, created_at));
    let json = config.sparkplug.as_ref().is_none_or(|sp| sp.json_readings);
    if picked.is_empty() || !json {
        return sparkplug.into_iter().collect();
    }
    let device = &batch.device.name;
    let mut out = Vec::with_capacity(
        2 + if config.per_tag_topics {
            picked.len()
        } else {
            0
        },
    );
    out.extend(sparkplug);
    let topic = config.topics.data(device);
    let seq = sequencer.next(&topic);
    out.push(OutMessage {
        payload: payload::device_message(batch, &picked, seq, sequencer.store()),
        topic,
        seq,
        qos: config.qos,
        retain: false,
        kind: Kind::Reading,
        created_at,
    });
    if config.per_tag_topics {
        for &i in &picked {
            let Some(reading) = batch.readings.get(i) else {
                continue;
            };
            let Some(tag) = batch.device.tags.get(reading.tag) else {
                continue;
            };
            let topic = config.topics.data_tag(device, &tag.name);
            let seq = sequencer.next(&topic);
            out.push(OutMessage {
                payload: payload::tag_message(batch, reading, seq, sequencer.store()),
                topic,
                seq,
                qos: config.qos,
                retain: false,
                kind: Kind::Reading,
                created_at,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_per_topic_and_resume() {
        let mut s = Sequencer::default();
        assert_eq!(s.next("a"), 1);
        assert_eq!(s.next("a"), 2);
        assert_eq!(s.next("b"), 1);
        let mut s = Sequencer::resume("01S", HashMap::from([("a".to_string(), 41)]));
        assert_eq!(s.next("a"), 42);
        assert_eq!(s.store(), "01S");
    }
}

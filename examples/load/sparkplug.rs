//! The Sparkplug B side of a run (`--sparkplug beside|only`): fieldgate's
//! `[sparkplug]` section, and what the subscriber makes of the
//! `spBv1.0/…` messages.
//!
//! # What it counts
//!
//! * Every message of the run's edge node, by type, and its bytes on the
//!   wire ([`Wire`]).
//! * **seq**: NBIRTH carries 0, every later message of the session one
//!   more, modulo 256 (NDEATH carries none and ends the session). A
//!   message whose seq is not the one expected is a *gap*; the messages
//!   it skipped are counted.
//! * **Values**: the metrics of each DDATA, counted once per distinct
//!   payload timestamp of its device (one poll, one timestamp: a DDATA
//!   received twice is a duplicate). Only valid while a device's polls are
//!   at least 1 ms apart, hence W1 and W4 (poll 1 s) only.
//! * **Latency**, one sample per live DDATA: arrival minus the `clock_ms`
//!   metric (the simulator's wall clock when it answered, the same measure
//!   as the JSON side's; its alias is learnt from the DBIRTHs), and
//!   arrival minus the payload's timestamp (fieldgate's wall clock at the
//!   poll).
//!
//! Loss is decided after fieldgate stopped ([`SpTally::loss`]): per
//! device, the DDATA rows its store committed (`topic_seq` of the DDATA
//! topic) against the distinct payloads received plus the rows still in
//! the outbox.

use std::collections::{HashMap, HashSet};

use fieldgate::contract::sparkplug::proto::Payload;
use fieldgate::contract::sparkplug::proto::payload::metric;
use prost::Message as _;

/// The Sparkplug group of every run.
pub const GROUP: &str = "load";
/// The namespace (first topic level).
pub const NAMESPACE: &str = "spBv1.0";

/// `--sparkplug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No `[sparkplug]` section.
    Off,
    /// `[sparkplug]` beside the JSON readings.
    Beside,
    /// `[sparkplug] json_readings = false`: readings in Sparkplug only.
    Only,
}

impl Mode {
    /// `off`, `beside`, `only`.
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "off" => Some(Mode::Off),
            "beside" => Some(Mode::Beside),
            "only" => Some(Mode::Only),
            _ => None,
        }
    }

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Beside => "beside",
            Mode::Only => "only",
        }
    }

    /// The edge node runs.
    pub fn on(self) -> bool {
        self != Mode::Off
    }

    /// Readings also go to the JSON tree.
    pub fn json(self) -> bool {
        self != Mode::Only
    }

    /// fieldgate's `[sparkplug]` section (empty when off).
    pub fn section(self) -> String {
        match self {
            Mode::Off => String::new(),
            Mode::Beside => format!("[sparkplug]\ngroup_id = \"{GROUP}\"\n\n"),
            Mode::Only => {
                format!("[sparkplug]\ngroup_id = \"{GROUP}\"\njson_readings = false\n\n")
            }
        }
    }
}

/// Bytes of one MQTT 3.1.1 PUBLISH packet: the fixed header (1 byte and
/// the remaining length, 1–4 bytes), the topic's 2-byte length and the
/// topic, the packet id at QoS 1 and 2, and the payload. TCP/IP headers
/// and the acknowledgements (PUBACK, 4 bytes, at QoS 1) are not in it.
pub fn publish_bytes(topic: usize, payload: usize, qos: u8) -> u64 {
    let remaining = 2 + topic + if qos > 0 { 2 } else { 0 } + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    (1 + length_bytes + remaining) as u64
}

/// PUBLISH packets and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// Packets.
    pub messages: u64,
    /// Payload bytes.
    pub payload: u64,
    /// Topic bytes (without the 2-byte length).
    pub topic: u64,
    /// Whole packets ([`publish_bytes`]).
    pub packets: u64,
}

impl Wire {
    /// Counts one PUBLISH.
    pub fn add(&mut self, topic: usize, payload: usize, qos: u8) {
        self.messages += 1;
        self.payload += payload as u64;
        self.topic += topic as u64;
        self.packets += publish_bytes(topic, payload, qos);
    }
}

/// One device's DDATA.
#[derive(Debug, Default, Clone)]
pub struct SpDevice {
    /// Payload timestamps received (one per poll).
    stamps: HashSet<u64>,
    /// DDATA messages received, duplicates included.
    pub ddata: u64,
    /// DDATA whose timestamp was already received.
    pub duplicates: u64,
}

impl SpDevice {
    /// Distinct DDATA received.
    pub fn distinct(&self) -> u64 {
        self.stamps.len() as u64
    }
}

/// Counts of a measurement window.
#[derive(Debug, Default, Clone)]
pub struct SpWindow {
    /// Metrics of the distinct DDATA received in it.
    pub values: u64,
    /// Distinct DDATA received in it.
    pub messages: u64,
    /// Arrival minus `clock_ms`, ms, per live DDATA.
    pub latencies: Vec<f64>,
    /// Arrival minus the payload's timestamp, ms, per live DDATA.
    pub stamp_latencies: Vec<f64>,
    /// Every message of the node in it.
    pub wire: Wire,
}

/// Everything the edge node sent so far.
#[derive(Debug, Default)]
pub struct SpTally {
    /// The edge node counted (others in the namespace are passed over).
    pub node: String,
    /// Per device.
    pub devices: HashMap<String, SpDevice>,
    /// NBIRTH, DBIRTH, DDATA, NDATA, DDEATH, NDEATH received.
    pub nbirth: u64,
    /// DBIRTHs.
    pub dbirth: u64,
    /// DDATA, duplicates included.
    pub ddata: u64,
    /// NDATA.
    pub ndata: u64,
    /// DDEATHs.
    pub ddeath: u64,
    /// NDEATHs.
    pub ndeath: u64,
    /// Metrics of distinct DDATA.
    pub values: u64,
    /// Of them, flagged `is_historical`.
    pub historical: u64,
    /// Payloads that did not decode.
    pub undecodable: u64,
    /// Messages whose seq was not the next one.
    pub seq_gaps: u64,
    /// Messages those gaps skipped.
    pub seq_skipped: u64,
    /// NBIRTHs whose seq was not 0.
    pub bad_birth_seq: u64,
    /// The bdSeq of the last NBIRTH.
    pub bd_seq: Option<u64>,
    /// The seq the next message must carry (none outside a session).
    next_seq: Option<u64>,
    /// Aliases of `clock_ms`, from the DBIRTHs.
    clock_aliases: HashSet<u64>,
    /// While measuring.
    pub window: Option<SpWindow>,
}

impl SpTally {
    /// A tally of edge node `node`.
    pub fn new(node: &str) -> SpTally {
        SpTally {
            node: node.to_string(),
            ..SpTally::default()
        }
    }

    /// Counts one message on `topic` (in the namespace); `now_ms` is the
    /// arrival's wall clock.
    pub fn record(&mut self, topic: &str, payload: &[u8], qos: u8, now_ms: f64) {
        let mut levels = topic.split('/');
        let (Some(NAMESPACE), Some(_group), Some(kind), Some(node)) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return;
        };
        if node != self.node {
            return;
        }
        let device = levels.next();
        if let Some(w) = self.window.as_mut() {
            w.wire.add(topic.len(), payload.len(), qos);
        }
        let Ok(p) = Payload::decode(payload) else {
            self.undecodable += 1;
            return;
        };
        match kind {
            "NBIRTH" => {
                self.nbirth += 1;
                if p.seq != Some(0) {
                    self.bad_birth_seq += 1;
                }
                self.bd_seq = p
                    .metrics
                    .iter()
                    .find(|m| m.name.as_deref() == Some("bdSeq"))
                    .and_then(|m| match m.value {
                        Some(metric::Value::LongValue(v)) => Some(v),
                        _ => None,
                    });
                self.next_seq = Some(1);
                return;
            }
            "NDEATH" => {
                self.ndeath += 1;
                self.next_seq = None;
                return;
            }
            _ => {}
        }
        if let (Some(want), Some(got)) = (self.next_seq, p.seq) {
            if got != want {
                self.seq_gaps += 1;
                self.seq_skipped += (got + 256 - want) % 256;
            }
            self.next_seq = Some((got + 1) % 256);
        }
        match (kind, device) {
            ("DBIRTH", Some(_)) => {
                self.dbirth += 1;
                for m in &p.metrics {
                    if let (Some("clock_ms"), Some(alias)) = (m.name.as_deref(), m.alias) {
                        self.clock_aliases.insert(alias);
                    }
                }
            }
            ("DDATA", Some(device)) => self.ddata(device, &p, now_ms),
            ("NDATA", _) => self.ndata += 1,
            ("DDEATH", _) => self.ddeath += 1,
            _ => {}
        }
    }

    fn ddata(&mut self, device: &str, p: &Payload, now_ms: f64) {
        self.ddata += 1;
        let stamp = p.timestamp.unwrap_or(0);
        let d = self.devices.entry(device.to_string()).or_default();
        d.ddata += 1;
        if !d.stamps.insert(stamp) {
            d.duplicates += 1;
            return;
        }
        let values = p.metrics.len() as u64;
        let historical = p
            .metrics
            .iter()
            .filter(|m| m.is_historical == Some(true))
            .count() as u64;
        self.values += values;
        self.historical += historical;
        let Some(w) = self.window.as_mut() else {
            return;
        };
        w.values += values;
        w.messages += 1;
        if historical > 0 {
            return;
        }
        let clock = p.metrics.iter().find_map(|m| {
            let ours = m.alias.is_some_and(|a| self.clock_aliases.contains(&a))
                || m.name.as_deref() == Some("clock_ms");
            match (ours, &m.value) {
                (true, Some(metric::Value::LongValue(v))) => Some(*v),
                _ => None,
            }
        });
        if let Some(clock) = clock {
            w.latencies.push(now_ms - clock as f64);
        }
        if stamp > 0 {
            w.stamp_latencies.push(now_ms - stamp as f64);
        }
    }

    /// DDATA lost and still undelivered: per device, the rows committed
    /// (`committed`: device → DDATA rows the store numbered) that were
    /// neither received nor are still in the outbox (`queued`: device →
    /// payload timestamps of its waiting DDATA rows).
    pub fn loss(
        &self,
        committed: &HashMap<String, u64>,
        queued: &HashMap<String, Vec<u64>>,
    ) -> (u64, u64) {
        let (mut lost, mut waiting) = (0, 0);
        for (device, &rows) in committed {
            let empty = SpDevice::default();
            let got = self.devices.get(device).unwrap_or(&empty);
            let left = queued.get(device).map(Vec::as_slice).unwrap_or(&[]);
            waiting += left.len() as u64;
            let accounted =
                got.distinct() + left.iter().filter(|s| !got.stamps.contains(s)).count() as u64;
            lost += rows.saturating_sub(accounted);
        }
        (lost, waiting)
    }
}

/// The device of a DDATA topic of the run's group, if `topic` is one.
pub fn ddata_device(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(NAMESPACE)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    match (levels.next(), levels.next(), levels.next(), levels.next()) {
        (Some(GROUP), Some("DDATA"), Some(_node), Some(device)) => Some(device),
        _ => None,
    }
}

/// The timestamp of a stored (or sent) Sparkplug payload.
pub fn payload_stamp(payload: &[u8]) -> Option<u64> {
    Payload::decode(payload).ok()?.timestamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldgate::contract::sparkplug::proto::payload::Metric;

    fn payload(seq: Option<u64>, ts: u64, metrics: Vec<Metric>) -> Vec<u8> {
        Payload {
            timestamp: Some(ts),
            seq,
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn long(name: Option<&str>, alias: Option<u64>, v: u64) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias,
            value: Some(metric::Value::LongValue(v)),
            ..Default::default()
        }
    }

    #[test]
    fn packet_sizes() {
        // 1 + 1 + (2 + 10 + 0 + 100)
        assert_eq!(publish_bytes(10, 100, 0), 114);
        // remaining 2 + 10 + 2 + 200 = 214: two length bytes
        assert_eq!(publish_bytes(10, 200, 1), 217);
    }

    #[test]
    fn seq_gaps_duplicates_latency_and_loss() {
        let mut t = SpTally::new("n1");
        let topic = |k: &str, d: &str| format!("spBv1.0/load/{k}/n1{d}");
        t.record(
            &topic("NBIRTH", ""),
            &payload(Some(0), 1, vec![long(Some("bdSeq"), None, 3)]),
            0,
            0.0,
        );
        t.record(
            &topic("DBIRTH", "/dev1"),
            &payload(Some(1), 1, vec![long(Some("clock_ms"), Some(7), 1)]),
            0,
            0.0,
        );
        t.window = Some(SpWindow::default());
        let ddata = topic("DDATA", "/dev1");
        t.record(
            &ddata,
            &payload(Some(2), 1000, vec![long(None, Some(7), 990)]),
            0,
            1005.0,
        );
        // Same poll again: a duplicate, not counted twice.
        t.record(
            &ddata,
            &payload(Some(3), 1000, vec![long(None, Some(7), 990)]),
            0,
            1005.0,
        );
        // seq 4 and 5 never came.
        t.record(
            &ddata,
            &payload(Some(6), 2000, vec![long(None, Some(7), 1990)]),
            0,
            2001.0,
        );
        // Another node's message is passed over.
        t.record(
            "spBv1.0/load/DDATA/n2/dev1",
            &payload(Some(9), 5, vec![]),
            0,
            0.0,
        );
        assert_eq!(t.bd_seq, Some(3));
        assert_eq!((t.seq_gaps, t.seq_skipped), (1, 2));
        assert_eq!((t.values, t.devices["dev1"].duplicates), (2, 1));
        let w = t.window.take().unwrap();
        assert_eq!((w.values, w.messages, w.wire.messages), (2, 2, 3));
        assert_eq!(w.latencies, vec![15.0, 11.0]);
        assert_eq!(w.stamp_latencies, vec![5.0, 1.0]);
        // Four rows committed: two received, one waiting, one lost.
        let committed = HashMap::from([("dev1".to_string(), 4)]);
        let queued = HashMap::from([("dev1".to_string(), vec![2000, 3000])]);
        assert_eq!(t.loss(&committed, &queued), (1, 2));
    }

    #[test]
    fn topics_and_modes() {
        assert_eq!(ddata_device("spBv1.0/load/DDATA/w1-1/dev7"), Some("dev7"));
        assert_eq!(ddata_device("spBv1.0/load/DBIRTH/w1-1/dev7"), None);
        assert_eq!(ddata_device("fgload/bench/w1/data/dev7"), None);
        assert!(Mode::parse("only").is_some_and(|m| m.on() && !m.json()));
        assert!(Mode::Beside.section().contains("group_id = \"load\""));
        assert!(Mode::Only.section().contains("json_readings = false"));
        assert_eq!(Mode::Off.section(), "");
    }
}

//! A small Sparkplug B host application for tests: one MQTT client
//! subscribed to `spBv1.0/#` that decodes every message (prost, the
//! gateway's own generated types), keeps them in arrival order, and can
//! publish NCMD, DCMD and its retained STATE.
//!
//! [`check`] holds the messages against the rules of the specification a
//! host relies on (per session: NBIRTH first, `seq` 0 then +1 mod 256,
//! the NDEATH's `bdSeq`, DBIRTH before DDATA, aliases bound by the births,
//! no DDATA between a DDEATH and the next DBIRTH) and returns every
//! violation in words; each Sparkplug test calls it at its end.
//! [`resolve`] names the metrics of DATA messages through the latest
//! birth, as a host does.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldgate::contract::sparkplug::proto::Payload;
use fieldgate::contract::sparkplug::proto::payload::{Metric, metric, property_value};
use prost::Message as _;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// The message types of the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    NBirth,
    NDeath,
    NData,
    NCmd,
    DBirth,
    DDeath,
    DData,
    DCmd,
    State,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "NBIRTH" => Kind::NBirth,
            "NDEATH" => Kind::NDeath,
            "NDATA" => Kind::NData,
            "NCMD" => Kind::NCmd,
            "DBIRTH" => Kind::DBirth,
            "DDEATH" => Kind::DDeath,
            "DDATA" => Kind::DData,
            "DCMD" => Kind::DCmd,
            _ => return None,
        })
    }

    /// Sent by an edge node (the checker's business), not by a host.
    pub fn is_from_node(self) -> bool {
        !matches!(self, Kind::NCmd | Kind::DCmd | Kind::State)
    }
}

/// One message received, in arrival order.
#[derive(Debug, Clone)]
pub struct SpMessage {
    /// Its place in arrival order, from 0.
    pub index: usize,
    pub topic: String,
    /// `None` for a topic outside the namespace's shapes.
    pub kind: Option<Kind>,
    pub group: String,
    pub node: String,
    pub device: Option<String>,
    /// The decoded payload (`None` for STATE, or when it does not decode).
    pub payload: Option<Payload>,
    pub raw: Vec<u8>,
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

impl SpMessage {
    /// Decodes what arrived on `topic` as the `index`th message.
    pub fn new(index: usize, topic: String, raw: Vec<u8>, retain: bool) -> SpMessage {
        let levels: Vec<&str> = topic.split('/').collect();
        let (kind, group, node, device) = match levels.as_slice() {
            ["spBv1.0", "STATE", host] => {
                (Some(Kind::State), String::new(), host.to_string(), None)
            }
            ["spBv1.0", group, kind, node] => {
                (Kind::parse(kind), group.to_string(), node.to_string(), None)
            }
            ["spBv1.0", group, kind, node, device] => (
                Kind::parse(kind),
                group.to_string(),
                node.to_string(),
                Some(device.to_string()),
            ),
            _ => (None, String::new(), String::new(), None),
        };
        let payload = match kind {
            Some(Kind::State) | None => None,
            Some(_) => Payload::decode(raw.as_slice()).ok(),
        };
        SpMessage {
            index,
            topic,
            kind,
            group,
            node,
            device,
            payload,
            raw,
            retain,
            at: Instant::now(),
        }
    }

    /// The payload's `seq`.
    pub fn seq(&self) -> Option<u64> {
        self.payload.as_ref().and_then(|p| p.seq)
    }

    /// The `bdSeq` metric of an NBIRTH or NDEATH.
    pub fn bd_seq(&self) -> Option<u64> {
        self.payload.as_ref().and_then(bd_seq_of)
    }

    /// A metric by name (births carry names).
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.payload
            .as_ref()?
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
    }
}

fn bd_seq_of(p: &Payload) -> Option<u64> {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(metric::Value::LongValue(v)) => Some(v),
            Some(metric::Value::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// A metric's value, as a test compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    /// `int_value` or `long_value` as sent (two's complement for signed types).
    Int(u64),
    Float(f32),
    Double(f64),
    Text(String),
    Other,
}

impl Val {
    /// Of a metric.
    pub fn of(m: &Metric) -> Val {
        if m.is_null == Some(true) {
            return Val::Null;
        }
        match &m.value {
            None => Val::Null,
            Some(metric::Value::BooleanValue(b)) => Val::Bool(*b),
            Some(metric::Value::IntValue(v)) => Val::Int(u64::from(*v)),
            Some(metric::Value::LongValue(v)) => Val::Int(*v),
            Some(metric::Value::FloatValue(v)) => Val::Float(*v),
            Some(metric::Value::DoubleValue(v)) => Val::Double(*v),
            Some(metric::Value::StringValue(s)) => Val::Text(s.clone()),
            Some(_) => Val::Other,
        }
    }

    /// A number (unsigned reading of integers), if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(v) => Some(*v as f64),
            Val::Float(v) => Some(f64::from(*v)),
            Val::Double(v) => Some(*v),
            _ => None,
        }
    }
}

/// A property of a metric, as an integer or a string.
pub fn property(m: &Metric, key: &str) -> Option<Val> {
    let props = m.properties.as_ref()?;
    let i = props.keys.iter().position(|k| k == key)?;
    Some(match &props.values.get(i)?.value {
        Some(property_value::Value::IntValue(v)) => Val::Int(u64::from(*v)),
        Some(property_value::Value::LongValue(v)) => Val::Int(*v),
        Some(property_value::Value::StringValue(s)) => Val::Text(s.clone()),
        Some(property_value::Value::BooleanValue(b)) => Val::Bool(*b),
        _ => Val::Other,
    })
}

/// The `Quality` property (192 good, 0 bad), if the metric carries it.
pub fn quality(m: &Metric) -> Option<u64> {
    match property(m, "Quality")? {
        Val::Int(q) => Some(q),
        _ => None,
    }
}

/// The host: its client and what it received.
pub struct Host {
    pub client: AsyncClient,
    messages: Arc<Mutex<Vec<SpMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Host {
    /// Connects as `id`, subscribes to `spBv1.0/#` and returns once the
    /// broker confirmed (at most 10 s).
    pub async fn start(broker: SocketAddr, id: &str) -> Host {
        let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        client
            .subscribe("spBv1.0/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = messages.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let mut all = sink.lock().unwrap();
                        let index = all.len();
                        all.push(SpMessage::new(
                            index,
                            p.topic.clone(),
                            p.payload.to_vec(),
                            p.retain,
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("SUBACK within 10 s")
            .unwrap();
        Host {
            client,
            messages,
            task,
        }
    }

    /// A copy of everything so far.
    pub fn messages(&self) -> Vec<SpMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// How many messages so far.
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// The edge node's messages of `kind` so far.
    pub fn of(&self, kind: Kind) -> Vec<SpMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.kind == Some(kind))
            .collect()
    }

    /// Waits (at most `limit`) until `done` holds for what arrived.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[SpMessage]) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if done(&self.messages()) {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `limit`) for a message of `kind` arriving at or
    /// after index `from` (and on `device`, when given); returns it.
    pub async fn wait_for(
        &self,
        limit: Duration,
        from: usize,
        kind: Kind,
        device: Option<&str>,
    ) -> Option<SpMessage> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let found = self.messages().into_iter().skip(from).find(|m| {
                m.kind == Some(kind) && (device.is_none() || m.device.as_deref() == device)
            });
            if found.is_some() {
                return found;
            }
            if tokio::time::Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes `payload` on the NCMD topic of `group`/`node` (QoS 1).
    pub async fn ncmd_raw(&self, group: &str, node: &str, payload: Vec<u8>) {
        self.client
            .publish(
                format!("spBv1.0/{group}/NCMD/{node}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// `Node Control/Rebirth` = true to `group`/`node`.
    pub async fn rebirth(&self, group: &str, node: &str) {
        let payload = Payload {
            timestamp: Some(now_ms()),
            metrics: vec![Metric {
                name: Some("Node Control/Rebirth".into()),
                timestamp: Some(now_ms()),
                datatype: Some(11),
                value: Some(metric::Value::BooleanValue(true)),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.ncmd_raw(group, node, payload.encode_to_vec()).await;
    }

    /// Publishes `payload` on the DCMD topic of a device (QoS 1).
    pub async fn dcmd_raw(&self, group: &str, node: &str, device: &str, payload: Vec<u8>) {
        self.client
            .publish(
                format!("spBv1.0/{group}/DCMD/{node}/{device}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// The host's STATE, retained at QoS 1, as Sparkplug 3.0 writes it.
    pub async fn state(&self, host: &str, online: bool, timestamp: u64) {
        self.client
            .publish(
                format!("spBv1.0/STATE/{host}"),
                QoS::AtLeastOnce,
                true,
                format!(r#"{{"online":{online},"timestamp":{timestamp}}}"#),
            )
            .await
            .unwrap();
    }

    /// [`check`] of everything so far; panics with every violation.
    pub fn assert_valid(&self) {
        let messages = self.messages();
        let violations = check(&messages);
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
            panic!(
                "{} Sparkplug violation(s) in {} messages:\n  {}",
                list.len(),
                messages.len(),
                list.join("\n  ")
            );
        }
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A rule of the specification broken by one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The message's arrival index.
    pub index: usize,
    pub topic: String,
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}: {}", self.index, self.topic, self.rule)
    }
}

/// One device in a session.
#[derive(Debug, Default)]
struct DeviceSeen {
    /// Alias → name, from its latest DBIRTH.
    aliases: HashMap<u64, String>,
    /// Born and not dead since.
    alive: bool,
}

/// One edge node's current session, from its NBIRTH.
#[derive(Debug)]
struct SessionSeen {
    bd_seq: u64,
    last_seq: u64,
    node_aliases: HashMap<u64, String>,
    devices: HashMap<String, DeviceSeen>,
}

/// Every violation of the specification's rules in `messages` (arrival
/// order), per edge node:
/// * NBIRTH has `seq` 0 and a `bdSeq`; NBIRTH before any NDATA, DBIRTH,
///   DDATA or DDEATH of the session;
/// * every other message of the session has the previous `seq` + 1 mod 256
///   (a rebirth NBIRTH starts again at 0); NDEATH has no `seq`;
/// * the NDEATH that ends a session carries that session's `bdSeq`;
/// * every birth metric has a name, a datatype and (but `bdSeq`) an alias,
///   aliases unique across the node;
/// * DBIRTH of a device before its DDATA (after the NBIRTH, and again after
///   its DDEATH); DDEATH only of a device born;
/// * DATA metrics carry an alias bound by the latest birth, and no name;
/// * payloads decode.
pub fn check(messages: &[SpMessage]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut nodes: HashMap<(String, String), Option<SessionSeen>> = HashMap::new();
    for m in messages {
        let Some(kind) = m.kind else {
            out.push(violation(m, "topic outside the Sparkplug B namespace"));
            continue;
        };
        if !kind.is_from_node() {
            continue;
        }
        let Some(p) = &m.payload else {
            let rule = format!(
                "payload ({} bytes) does not decode as a Sparkplug B payload",
                m.raw.len()
            );
            out.push(violation(m, &rule));
            continue;
        };
        let state = nodes.entry((m.group.clone(), m.node.clone())).or_default();
        let mut bad = |rule: String| out.push(violation(m, &rule));
        match kind {
            Kind::NBirth => {
                if p.seq != Some(0) {
                    bad(format!("NBIRTH seq is {:?}, not 0", p.seq));
                }
                let Some(bd_seq) = bd_seq_of(p) else {
                    bad("NBIRTH without a bdSeq metric".into());
                    continue;
                };
                if let Some(s) = state.as_ref()
                    && s.bd_seq != bd_seq
                {
                    bad(format!(
                        "NBIRTH of a new session (bdSeq {bd_seq}) while session bdSeq {} had no NDEATH",
                        s.bd_seq
                    ));
                }
                let mut aliases = HashMap::new();
                for metric in &p.metrics {
                    birth_metric_rules(metric, &mut aliases, &mut bad);
                }
                *state = Some(SessionSeen {
                    bd_seq,
                    last_seq: 0,
                    node_aliases: aliases,
                    devices: HashMap::new(),
                });
            }
            Kind::NDeath => {
                if p.seq.is_some() {
                    bad(format!("NDEATH carries a seq ({:?})", p.seq));
                }
                let Some(bd_seq) = bd_seq_of(p) else {
                    bad("NDEATH without a bdSeq metric".into());
                    continue;
                };
                if let Some(s) = state.take()
                    && s.bd_seq != bd_seq
                {
                    bad(format!(
                        "NDEATH bdSeq {bd_seq} is not the session's NBIRTH bdSeq {}",
                        s.bd_seq
                    ));
                }
            }
            Kind::NData | Kind::DBirth | Kind::DData | Kind::DDeath => {
                let Some(s) = state.as_mut() else {
                    bad(format!("{kind:?} outside a session (no NBIRTH before it)"));
                    continue;
                };
                let want = (s.last_seq + 1) % 256;
                match p.seq {
                    Some(seq) if seq == want => s.last_seq = seq,
                    Some(seq) => {
                        bad(format!("seq {seq}, expected {want}"));
                        s.last_seq = seq;
                    }
                    None => bad(format!("no seq (expected {want})")),
                }
                let device = m.device.clone().unwrap_or_default();
                match kind {
                    Kind::NData => data_rules(p, &s.node_aliases, &mut bad),
                    Kind::DBirth => {
                        let mut aliases = HashMap::new();
                        for metric in &p.metrics {
                            birth_metric_rules(metric, &mut aliases, &mut bad);
                        }
                        let taken: HashSet<u64> = s
                            .node_aliases
                            .keys()
                            .chain(
                                s.devices
                                    .iter()
                                    .filter(|(d, _)| **d != device)
                                    .flat_map(|(_, d)| d.aliases.keys()),
                            )
                            .copied()
                            .collect();
                        for a in aliases.keys() {
                            if taken.contains(a) {
                                bad(format!(
                                    "alias {a} already bound by another birth of the node"
                                ));
                            }
                        }
                        s.devices.insert(
                            device,
                            DeviceSeen {
                                aliases,
                                alive: true,
                            },
                        );
                    }
                    Kind::DData => match s.devices.get(&device) {
                        Some(d) if d.alive => data_rules(p, &d.aliases, &mut bad),
                        Some(_) => bad(format!(
                            "DDATA of {device} after its DDEATH and before a DBIRTH"
                        )),
                        None => bad(format!("DDATA of {device} before its DBIRTH")),
                    },
                    Kind::DDeath => match s.devices.get_mut(&device) {
                        Some(d) if d.alive => d.alive = false,
                        _ => bad(format!("DDEATH of {device}, which is not born")),
                    },
                    _ => {}
                }
            }
            Kind::NCmd | Kind::DCmd | Kind::State => {}
        }
    }
    out
}

fn violation(m: &SpMessage, rule: &str) -> Violation {
    Violation {
        index: m.index,
        topic: m.topic.clone(),
        rule: rule.to_owned(),
    }
}

fn birth_metric_rules(
    m: &Metric,
    aliases: &mut HashMap<u64, String>,
    bad: &mut impl FnMut(String),
) {
    let Some(name) = &m.name else {
        bad(format!("birth metric without a name (alias {:?})", m.alias));
        return;
    };
    if m.datatype.is_none() {
        bad(format!("birth metric {name:?} without a datatype"));
    }
    match (name.as_str(), m.alias) {
        ("bdSeq", _) => {}
        (_, None) => bad(format!("birth metric {name:?} without an alias")),
        (_, Some(a)) => {
            if let Some(other) = aliases.insert(a, name.clone()) {
                bad(format!("alias {a} given to both {other:?} and {name:?}"));
            }
        }
    }
}

fn data_rules(p: &Payload, aliases: &HashMap<u64, String>, bad: &mut impl FnMut(String)) {
    for m in &p.metrics {
        if let Some(name) = &m.name {
            bad(format!("DATA metric carries a name ({name:?})"));
        }
        match m.alias {
            None => bad("DATA metric without an alias".into()),
            Some(a) if !aliases.contains_key(&a) => {
                bad(format!("alias {a} not bound by the latest birth"))
            }
            Some(_) => {}
        }
    }
}

/// One metric of a message, named through the latest birth.
#[derive(Debug, Clone)]
pub struct Named {
    /// The message's arrival index.
    pub index: usize,
    pub kind: Kind,
    pub device: Option<String>,
    pub name: String,
    pub value: Val,
    pub timestamp: Option<u64>,
    pub historical: bool,
    pub quality: Option<u64>,
}

/// Every metric of every NBIRTH, NDATA, DBIRTH and DDATA, in arrival
/// order, named by its own name or by the alias of the latest birth (as a
/// host reads them). Metrics whose alias no birth bound are left out.
pub fn resolve(messages: &[SpMessage]) -> Vec<Named> {
    let mut births: HashMap<(String, String, Option<String>), HashMap<u64, String>> =
        HashMap::new();
    let mut out = Vec::new();
    for m in messages {
        let (Some(kind), Some(p)) = (m.kind, &m.payload) else {
            continue;
        };
        if !matches!(
            kind,
            Kind::NBirth | Kind::NData | Kind::DBirth | Kind::DData
        ) {
            continue;
        }
        let key = (m.group.clone(), m.node.clone(), m.device.clone());
        if matches!(kind, Kind::NBirth | Kind::DBirth) {
            let aliases = p
                .metrics
                .iter()
                .filter_map(|x| Some((x.alias?, x.name.clone()?)))
                .collect();
            births.insert(key.clone(), aliases);
        }
        let aliases = births.get(&key);
        for x in &p.metrics {
            let name = x
                .name
                .clone()
                .or_else(|| x.alias.and_then(|a| aliases?.get(&a).cloned()));
            let Some(name) = name else { continue };
            out.push(Named {
                index: m.index,
                kind,
                device: m.device.clone(),
                name,
                value: Val::of(x),
                timestamp: x.timestamp,
                historical: x.is_historical == Some(true),
                quality: quality(x),
            });
        }
    }
    out
}

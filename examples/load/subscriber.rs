//! The counting subscriber: every data message fieldgate publishes, with
//! its per-device `seq`, its number of tag values and, when it carries the
//! simulator's clock, its end-to-end latency.
//!
//! # What it counts
//!
//! * A *message* is one device poll on `…/data/{device}`; its *values* are
//!   the tags in it (counted as the `"q":"` members, one per tag, without
//!   parsing the whole JSON: at W2 rates a full parse would make the
//!   subscriber the bottleneck).
//! * A message whose `seq` was already received for that device is a
//!   *duplicate* (QoS 1 is at least once); its values are not counted
//!   again.
//! * *Latency* is the subscriber's wall clock at arrival minus the value of
//!   the `clock_ms` tag: the simulator's wall clock (ms since the Unix
//!   epoch) when it answered the request that read it. Same machine, same
//!   clock. The clock's value is truncated to the millisecond, so figures
//!   are up to 1 ms high.
//!
//! Loss is decided at the end of a run against what fieldgate committed
//! (see `report::loss`), not here.
//!
//! With `--sparkplug beside|only` it also subscribes to `spBv1.0/#` and
//! hands the edge node's messages to [`SpTally`] (`sparkplug.rs`). Both
//! sides count their PUBLISH packets' bytes ([`Wire`]).
//!
//! # Session
//!
//! `clean_session = false` and QoS 1, so a broker with persistence keeps
//! the subscription and queues for it while the subscriber is away (the
//! broker's own restart in W3). It resubscribes after every CONNACK
//! anyway. The task ends when the [`Subscriber`] is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, SubscribeFilter};

use crate::sparkplug::{self, SpTally, SpWindow, Wire};

/// What one device's messages looked like.
#[derive(Debug, Default, Clone)]
pub struct DeviceTally {
    /// Seqs received: bit `seq` set (seq starts at 1 with a fresh store).
    seen: Vec<u64>,
    /// Highest seq received.
    pub max_seq: u64,
    /// Distinct seqs received.
    pub distinct: u64,
    /// Messages received more than once.
    pub duplicates: u64,
}

impl DeviceTally {
    /// Records `seq`; false when it was already there.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        self.max_seq = self.max_seq.max(seq);
        if fresh {
            self.distinct += 1;
        } else {
            self.duplicates += 1;
        }
        fresh
    }

    /// True when `seq` was received.
    pub fn has(&self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        self.seen
            .get(word)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// True when every seq from 1 to the highest received is there.
    pub fn contiguous(&self) -> bool {
        self.distinct == self.max_seq
    }
}

/// Everything received so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per device name (the last topic level).
    pub devices: HashMap<String, DeviceTally>,
    /// Data messages received, duplicates included.
    pub messages: u64,
    /// Tag values in distinct messages.
    pub values: u64,
    /// Messages marked `"hist": true` (sent from the backlog).
    pub hist: u64,
    /// Messages on the bare publisher's topic (W5).
    pub bare: u64,
    /// When the last data message arrived.
    pub last_at: Option<Instant>,
    /// While measuring: distinct values and messages received, and latency
    /// samples in ms.
    pub window: Option<Window>,
    /// Connections after the first (the broker went away and came back).
    pub reconnects: u64,
    /// The Sparkplug edge node's messages (`--sparkplug`).
    pub sp: SpTally,
}

/// Counts of a measurement window.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Distinct values received in it.
    pub values: u64,
    /// Distinct messages received in it.
    pub messages: u64,
    /// End-to-end latencies (ms) of the messages with a clock.
    pub latencies: Vec<f64>,
    /// The distinct data messages' PUBLISH packets.
    pub wire: Wire,
    /// The Sparkplug side's counts.
    pub sp: SpWindow,
}

/// Handle on the running subscriber.
pub struct Subscriber {
    /// The shared tally.
    pub tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to `host:port`, subscribes to `filter` at QoS 1 and returns
    /// once the broker has confirmed (bounded: 10 s). Messages whose topic
    /// ends in `/bare` are counted as the bare publisher's. With
    /// `sparkplug_node`, also subscribes to `spBv1.0/#` and counts that
    /// edge node's messages.
    pub async fn start(
        host: &str,
        port: u16,
        id: &str,
        filter: &str,
        sparkplug_node: Option<&str>,
    ) -> Result<Subscriber> {
        let mut options = MqttOptions::new(id, host, port);
        // Long: at each keep-alive ping rumqttc's event loop stalls the
        // messages arriving then by 30-40 ms (measured: the slow messages
        // came every keep-alive interval, 10 s or 7 s as set, whatever the
        // gateway or broker), which would be counted as the gateway's
        // latency. Nothing here is idle for two minutes.
        options.set_keep_alive(Duration::from_secs(120));
        options.set_clean_session(false);
        options.set_max_packet_size(16 << 20, 16 << 20);
        options.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        // Nagle's algorithm (rumqttc's default) may hold a PUBACK back for
        // the peer's delayed ACK: the measuring client adds no delay.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let tally = Arc::new(Mutex::new(Tally {
            sp: SpTally::new(sparkplug_node.unwrap_or_default()),
            ..Tally::default()
        }));
        let mut filters = vec![SubscribeFilter::new(filter.to_string(), QoS::AtLeastOnce)];
        if sparkplug_node.is_some() {
            filters.push(SubscribeFilter::new(
                format!("{}/#", sparkplug::NAMESPACE),
                QoS::AtLeastOnce,
            ));
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = Arc::clone(&tally);
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut connected_once = false;
            // Ends when the task is aborted (the Subscriber is dropped).
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if connected_once {
                            lock(&sink).reconnects += 1;
                        }
                        connected_once = true;
                        // try_: the request channel is never full here.
                        let _ = client.try_subscribe_many(filters.clone());
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let qos = match p.qos {
                            QoS::AtMostOnce => 0,
                            QoS::AtLeastOnce => 1,
                            QoS::ExactlyOnce => 2,
                        };
                        record(&mut lock(&sink), &p.topic, &p.payload, qos);
                    }
                    Ok(_) => {}
                    // The broker is away (W3): try again shortly; polling
                    // again is what reconnects.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => Ok(Subscriber { tally, task }),
            _ => bail!("the subscriber got no SUBACK from {host}:{port} within 10 s"),
        }
    }

    /// Starts a measurement window (counts from now on).
    pub fn start_window(&self) {
        let mut t = lock(&self.tally);
        t.window = Some(Window::default());
        t.sp.window = Some(SpWindow::default());
    }

    /// Ends the window and returns its counts.
    pub fn end_window(&self) -> Window {
        let mut t = lock(&self.tally);
        let mut w = t.window.take().unwrap_or_default();
        w.sp = t.sp.window.take().unwrap_or_default();
        w
    }

    /// Waits until no data message has arrived for `quiet` (bounded by
    /// `within`).
    pub async fn wait_quiet(&self, quiet: Duration, within: Duration) {
        let deadline = Instant::now() + within;
        let start = Instant::now();
        while Instant::now() < deadline {
            let last = lock(&self.tally).last_at.unwrap_or(start).max(start);
            if last.elapsed() >= quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The tally's lock; a panic elsewhere while holding it cannot leave the
/// counts half-updated in a way that matters to a benchmark.
pub fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Counts one received message (`qos`: as delivered).
fn record(t: &mut Tally, topic: &str, payload: &[u8], qos: u8) {
    if topic
        .strip_prefix(sparkplug::NAMESPACE)
        .is_some_and(|rest| rest.starts_with('/'))
    {
        t.last_at = Some(Instant::now());
        t.sp.record(topic, payload, qos, now_ms());
        return;
    }
    if topic.ends_with("/bare") {
        t.bare += 1;
        return;
    }
    let Some((_, device)) = topic.rsplit_once("/data/") else {
        return; // status and anything else
    };
    let Some(seq) = number_after(payload, b"\"seq\":") else {
        return;
    };
    t.messages += 1;
    t.last_at = Some(Instant::now());
    if payload.starts_with(b"{\"hist\":true") {
        t.hist += 1;
    }
    let fresh = t.devices.entry(device.to_string()).or_default().insert(seq);
    if !fresh {
        return;
    }
    let values = count(payload, b"\"q\":\"");
    t.values += values;
    if let Some(w) = t.window.as_mut() {
        w.values += values;
        w.messages += 1;
        w.wire.add(topic.len(), payload.len(), qos);
        if let Some(clock) = number_after(payload, b"\"clock_ms\":{\"v\":") {
            w.latencies.push(now_ms() - clock as f64);
        }
    }
}

/// The unsigned integer right after the first `key` in `hay`.
pub fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(hay, key)? + key.len();
    let digits = hay[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&hay[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Non-overlapping occurrences of `needle` in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> u64 {
    let (mut n, mut at) = (0, 0);
    while let Some(i) = find(&hay[at..], needle) {
        n += 1;
        at += i + needle.len();
    }
    n
}

/// The `p`-th percentile (0–100) of `samples`, sorted in place.
pub fn percentile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples.get(rank.clamp(1, samples.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanning_agrees_with_a_json_parse() {
        let payload = br#"{"hist":true,"ts":"2026-11-21T06:38:25.305Z","seq":1842,"tags":{"clock_ms":{"v":1795000000123,"q":"good"},"r0":{"v":5,"q":"good"},"f0":{"v":null,"q":"bad:timeout","u":"x"}}}"#;
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        assert_eq!(number_after(payload, b"\"seq\":"), v["seq"].as_u64());
        assert_eq!(
            count(payload, b"\"q\":\""),
            v["tags"].as_object().map_or(0, |m| m.len() as u64)
        );
        assert_eq!(
            number_after(payload, b"\"clock_ms\":{\"v\":"),
            v["tags"]["clock_ms"]["v"].as_u64()
        );
        let mut t = Tally::default();
        record(&mut t, "p/s/g/data/dev1", payload, 1);
        record(&mut t, "p/s/g/data/dev1", payload, 1);
        assert_eq!((t.messages, t.values, t.hist), (2, 3, 2));
        assert_eq!(t.devices["dev1"].duplicates, 1);
    }

    #[test]
    fn gaps_and_percentiles() {
        let mut d = DeviceTally::default();
        for s in [1, 2, 3, 5, 5, 70] {
            d.insert(s);
        }
        assert!(d.has(70) && !d.has(4));
        assert!(!d.contiguous());
        assert_eq!(d.duplicates, 1);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
    }
}

//! A test subscriber: connects to a broker, subscribes, waits for the
//! SUBACK, then collects every message it receives. Bounded: it stops
//! when dropped (the task is aborted).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: QoS,
}

impl Received {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// Collects messages in the background.
pub struct Subscriber {
    /// The connection, for tests that also publish.
    pub client: AsyncClient,
    pub messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Subscribes to `filter` at QoS 1 and returns once the broker confirmed.
    pub async fn start(broker: SocketAddr, id: &str, filter: &str) -> Subscriber {
        Subscriber::start_with_qos(broker, id, filter, QoS::AtLeastOnce).await
    }

    /// Subscribes to `filter` at `qos` and returns once the broker confirmed.
    pub async fn start_with_qos(
        broker: SocketAddr,
        id: &str,
        filter: &str,
        qos: QoS,
    ) -> Subscriber {
        let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        client.subscribe(filter, qos).await.unwrap();
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
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            qos: p.qos,
                        });
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
        Subscriber {
            client,
            messages,
            task,
        }
    }

    /// A copy of what arrived so far.
    pub fn received(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// What arrived on topics containing `topic_part`.
    pub fn on(&self, topic_part: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|m| m.topic.contains(topic_part))
            .collect()
    }

    /// Waits (bounded) until `done` holds for what arrived.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if done(&self.received()) {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Per-topic sequence numbers of the data messages received on `topic`.
pub fn seqs(messages: &[Received], topic: &str) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.topic == topic)
        .filter_map(|m| m.json().get("seq").and_then(|s| s.as_u64()))
        .collect()
}

/// True when `seqs` holds every number from 1 to its maximum.
pub fn contiguous(seqs: &[u64]) -> bool {
    let max = seqs.iter().copied().max().unwrap_or(0);
    let have: std::collections::HashSet<u64> = seqs.iter().copied().collect();
    max > 0 && (1..=max).all(|s| have.contains(&s))
}

/// True when `seqs` holds every number from 1 to `seen` (what arrived
/// before a crash) and, from 1 to its maximum, misses at most one run of
/// numbers above `seen`: the crash's gap. A message may have been published
/// and never written, so the seqs a crash may have used are never given
/// again (the next run numbers on above the reservation); the youngest
/// messages before the crash, neither acknowledged nor written yet, fall
/// into the same gap.
pub fn contiguous_across_a_crash(seqs: &[u64], seen: u64) -> bool {
    let have: std::collections::HashSet<u64> = seqs.iter().copied().collect();
    let max = have.iter().copied().max().unwrap_or(0);
    let missing: Vec<u64> = (1..=max).filter(|s| !have.contains(s)).collect();
    let one_run = match (missing.first(), missing.last()) {
        (Some(a), Some(b)) => (b - a + 1) as usize == missing.len() && *a > seen,
        _ => true,
    };
    max > 0 && one_run
}

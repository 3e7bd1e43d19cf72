//! Writes through a link's task, over loopback: the simulator (Modbus TCP,
//! RTU over TCP, RTU on a pty) for every type and word order, and a small
//! Modbus TCP peer written here where the test must see the frames (a
//! write that is never answered is sent once; a device that is down gets
//! no frame; a write between the requests of a poll).
//!
//! The jobs are built as the write desk builds them (`fit`, then `plan`)
//! and sent on the queue `spawn_pollers_writable` hands out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldgate::command::{RejectReason, Requested, WriteResult};
use fieldgate::config::{Config, Device, WriteFunctions};
use fieldgate::modbus::write::{self, WriteDone, WriteJob, Writers};
use fieldgate::modbus::{self, DeviceState, Probes};
use fieldgate::reading::{Batch, Quality};
use fieldgate::shutdown::{self, ShutdownTrigger};
use fieldgate::sim::Simulator;
use fieldgate::tag::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::common::{gateway, sim, tracing, wait};

/// The config of `text` (the pollers need no data folder).
fn load(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    gateway::load(dir.path(), text).0
}

/// Changes device `name` of `config` in place (the settings of issue #19
/// that tests set in code).
fn tweak(config: &mut Config, name: &str, change: impl FnOnce(&mut Device)) {
    let d = config
        .devices
        .iter_mut()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no device {name}"));
    change(Arc::make_mut(d));
}

fn only(codes: &[u8]) -> WriteFunctions {
    WriteFunctions {
        fc5: codes.contains(&5),
        fc6: codes.contains(&6),
        fc15: codes.contains(&15),
        fc16: codes.contains(&16),
    }
}

/// The pollers of `config` with their write queues.
struct Running {
    trigger: ShutdownTrigger,
    handles: Vec<JoinHandle<()>>,
    writers: Writers,
    batches: mpsc::Receiver<Batch>,
    probes: Probes,
    config: Config,
}

fn start(config: Config) -> Running {
    let (trigger, listener) = shutdown::channel();
    let (tx, batches) = mpsc::channel(1024);
    let probes = Probes::new(&config);
    let (handles, writers) = modbus::spawn_pollers_writable(&probes, tx, &listener);
    Running {
        trigger,
        handles,
        writers,
        batches,
        probes,
        config,
    }
}

impl Running {
    fn device(&self, name: &str) -> Arc<Device> {
        self.config
            .devices
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no device {name}"))
    }

    /// Fits, plans and sends one write; its outcome.
    async fn write(&self, device: &str, tag: &str, value: Requested) -> WriteDone {
        self.write_job(device, tag, value, true, None).await
    }

    /// Like [`Self::write`], checking the function code the plan chose.
    async fn write_job(
        &self,
        device: &str,
        tag: &str,
        value: Requested,
        confirm: bool,
        function: Option<u8>,
    ) -> WriteDone {
        let rx = self.send(device, tag, value, confirm, function).await;
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .unwrap_or_else(|_| panic!("no outcome for {device}/{tag} within 10 s"))
            .expect("the link answers every job")
    }

    async fn send(
        &self,
        device: &str,
        tag: &str,
        value: Requested,
        confirm: bool,
        function: Option<u8>,
    ) -> oneshot::Receiver<WriteDone> {
        let d = self.device(device);
        let index = d
            .tags
            .iter()
            .position(|t| t.name == tag)
            .unwrap_or_else(|| panic!("no tag {tag}"));
        let t = &d.tags[index];
        let value = write::fit(t, &value).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let plan = write::plan(&d, t, &value).unwrap_or_else(|e| panic!("{tag}: {e}"));
        if let Some(f) = function {
            assert_eq!(plan.function(), f, "{tag}: {plan:?}");
        }
        let (reply, rx) = oneshot::channel();
        let job = WriteJob {
            device: device.to_string(),
            tag: index,
            value,
            plan,
            confirm,
            reply,
        };
        self.writers
            .sender(device)
            .expect("the device has a queue")
            .send(job)
            .await
            .expect("the link takes jobs");
        rx
    }

    async fn next_batch(&mut self, device: &str) -> Batch {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let batch = tokio::time::timeout_at(deadline, self.batches.recv())
                .await
                .unwrap_or_else(|_| panic!("no batch from {device} within 10 s"))
                .expect("channel open");
            if batch.device.name == device {
                return batch;
            }
        }
    }

    /// The first good batch of `device` from a poll that started after now.
    async fn good_batch_from_now(&mut self, device: &str) -> Batch {
        let now = std::time::Instant::now();
        for _ in 0..100 {
            let b = self.good_batch(device).await;
            if b.started >= now {
                return b;
            }
        }
        panic!("no new poll of {device}");
    }

    /// The first batch of `device` in which every reading is good.
    async fn good_batch(&mut self, device: &str) -> Batch {
        for _ in 0..100 {
            let b = self.next_batch(device).await;
            if b.readings.iter().all(|r| r.quality == Quality::Good) {
                return b;
            }
        }
        panic!("no good poll of {device}");
    }

    async fn stop(self) {
        self.trigger.trigger();
        for h in self.handles {
            tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("poller stops within 5 s of shutdown")
                .unwrap();
        }
    }
}

fn value_in(batch: &Batch, tag: &str) -> Option<Value> {
    let index = batch.device.tags.iter().position(|t| t.name == tag)?;
    batch
        .readings
        .iter()
        .find(|r| r.tag == index)
        .and_then(|r| r.value.clone())
}

// ---------------------------------------------------------------------------
// Every type and word order, through the simulator.

/// Scale, offset and the value written to a scaled tag.
type Scaled = (f64, f64, f64);

/// Type, width, value written unscaled, and the scaled case.
const TYPES: [(&str, u16, f64, Scaled); 8] = [
    ("u16", 1, 40000.0, (0.1, -40.0, 25.3)),
    ("i16", 1, -1234.0, (0.5, 10.0, -500.5)),
    ("u32", 2, 3_000_000_000.0, (0.01, 0.0, 12345.67)),
    ("i32", 2, -123_456_789.0, (0.1, -273.15, -20.05)),
    ("u64", 4, 9_000_000_000_000.0, (0.001, 0.0, 123_456.789)),
    ("i64", 4, -9_000_000_000_000.0, (2.0, 1.0, -99.0)),
    ("f32", 2, 21.5, (0.5, 1.0, 12.25)),
    ("f64", 4, -1234.5678, (10.0, -5.0, 1000.0)),
];
const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

/// The simulator's transport line and the gateway's line for one device.
fn transport(kind: &str) -> &'static str {
    match kind {
        "pty" => "serial = \"pty\"",
        "rtu_over_tcp" => "rtu_over_tcp = \"127.0.0.1:0\"",
        _ => "listen = \"127.0.0.1:0\"",
    }
}

fn reach(sim: &Simulator, kind: &str, device: &str) -> String {
    match kind {
        "pty" => format!(
            "[[buses]]\nname = \"line1\"\nport = \"{}\"\nbaud = 9600\nparity = \"none\"\n\n[[devices]]\nbus = \"line1\"\n",
            sim.serial_path(device).unwrap()
        ),
        "rtu_over_tcp" => format!(
            "[[devices]]\nrtu_over_tcp = \"{}\"\n",
            sim.addr(device).unwrap()
        ),
        _ => format!("[[devices]]\ntcp = \"{}\"\n", sim.addr(device).unwrap()),
    }
}

/// Writes every type in every word order, unscaled and scaled, a coil, a
/// bit of a register and strings, over `kind`; each is verified by its
/// read-back and then seen by the polls.
async fn every_type_over(kind: &str) {
    tracing::init();
    let mut points = String::new();
    let mut tags = String::new();
    let mut address = 0u16;
    // (tag, value written, old value, tolerance of the read-back)
    let mut cases: Vec<(String, Requested, f64, f64)> = Vec::new();
    for (ty, width, plain, (scale, offset, scaled)) in TYPES {
        for order in ORDERS {
            for with_scale in [false, true] {
                // Every point starts at raw 7, so the old value is known.
                points.push_str(&format!(
                    "{{ value = 7, area = \"holding\", address = {address}, type = \"{ty}\", word_order = \"{order}\" }},\n"
                ));
                let name = format!("{ty}_{order}{}", if with_scale { "_scaled" } else { "" });
                let (s, o, v) = if with_scale {
                    (scale, offset, scaled)
                } else {
                    (1.0, 0.0, plain)
                };
                tags.push_str(&format!(
                    "  {{ name = \"{name}\", area = \"holding\", address = {address}, type = \"{ty}\", word_order = \"{order}\", scale = {s:?}, offset = {o:?} }},\n"
                ));
                let tolerance = if ty.starts_with('f') {
                    (v.abs() * 1e-6).max(1e-9)
                } else {
                    s.abs() / 2.0 + 1e-9
                };
                cases.push((name, Requested::Number(v), 7.0 * s + o, tolerance));
                address += width;
            }
        }
    }
    let strings = address;
    for (i, order) in ORDERS.iter().enumerate() {
        let a = strings + 4 * i as u16;
        points.push_str(&format!(
            "{{ value = \"OLD\", area = \"holding\", address = {a}, type = \"string\", length = 4, word_order = \"{order}\" }},\n"
        ));
        tags.push_str(&format!(
            "  {{ name = \"text_{order}\", area = \"holding\", address = {a}, type = \"string\", length = 4, word_order = \"{order}\" }},\n"
        ));
    }
    let flags = strings + 16;
    points.push_str(&format!(
        "{{ value = 165, area = \"holding\", address = {flags}, type = \"u16\" }},\n{{ value = false, area = \"coil\", address = 5, type = \"bool\" }},\n"
    ));
    tags.push_str(&format!(
        "  {{ name = \"flag3\", area = \"holding\", address = {flags}, type = \"bit\", bit = 3, alias = true }},\n  {{ name = \"flags\", area = \"holding\", address = {flags} }},\n  {{ name = \"pump_run\", area = \"coil\", address = 5 }},\n"
    ));
    let sim = sim::start(&format!(
        "seed = 1\n[[devices]]\nname = \"plc\"\nunit = 5\n{}\npoints = [\n{points}]\n",
        transport(kind)
    ))
    .await;
    let config = load(&format!(
        "{}name = \"plc\"\nunit = 5\npoll_interval = \"300ms\"\ntimeout = \"2s\"\ntags = [\n{tags}]\n",
        reach(&sim, kind, "plc")
    ));
    let mut run = start(config);
    run.good_batch("plc").await;

    for (name, value, old, tolerance) in &cases {
        let done = run.write("plc", name, value.clone()).await;
        assert_eq!(done.result, WriteResult::Verified, "{name}: {done:?}");
        let Requested::Number(v) = value else {
            unreachable!()
        };
        let back = done.read_back.as_ref().and_then(Value::as_f64);
        assert!(
            back.is_some_and(|b| (b - v).abs() <= *tolerance),
            "{name}: wrote {v}, read back {back:?}"
        );
        let before = done.old.as_ref().and_then(Value::as_f64);
        assert!(
            before.is_some_and(|b| (b - old).abs() <= 1e-6),
            "{name}: old {before:?}, expected {old}"
        );
    }
    for order in ORDERS {
        let name = format!("text_{order}");
        let done = run
            .write("plc", &name, Requested::Text("NEW-01".into()))
            .await;
        assert_eq!(done.result, WriteResult::Verified, "{name}: {done:?}");
        assert_eq!(done.old, Some(Value::Text("OLD".into())), "{name}");
        assert_eq!(done.read_back, Some(Value::Text("NEW-01".into())), "{name}");
    }
    let done = run.write("plc", "pump_run", Requested::Bool(true)).await;
    assert_eq!(done.result, WriteResult::Verified, "{done:?}");
    assert_eq!(done.old, Some(Value::Bool(false)));
    let done = run.write("plc", "flag3", Requested::Bool(true)).await;
    assert_eq!(done.result, WriteResult::Verified, "{done:?}");
    assert_eq!(done.old, Some(Value::Bool(false)));

    // The polls see what was written.
    let after = run.good_batch_from_now("plc").await;
    for (name, value, _, tolerance) in &cases {
        let Requested::Number(v) = value else {
            unreachable!()
        };
        let polled = value_in(&after, name).as_ref().and_then(Value::as_f64);
        assert!(
            polled.is_some_and(|p| (p - v).abs() <= *tolerance),
            "{name}: wrote {v}, polled {polled:?}"
        );
    }
    assert_eq!(
        value_in(&after, "text_CDAB"),
        Some(Value::Text("NEW-01".into()))
    );
    // 165 = 0b1010_0101; bit 3 set, the others as they were.
    assert_eq!(value_in(&after, "flags"), Some(Value::Int(0b1010_1101)));
    run.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_is_written_and_verified_over_tcp() {
    every_type_over("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_is_written_and_verified_over_rtu_over_tcp() {
    every_type_over("rtu_over_tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_is_written_and_verified_over_a_serial_line() {
    every_type_over("pty").await;
}

// ---------------------------------------------------------------------------
// A bit of a register, while the register is polled.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_is_written_while_its_register_is_polled_and_the_others_stay() {
    tracing::init();
    let sim = sim::start(
        r#"
[[devices]]
name = "plc"
unit = 1
listen = "127.0.0.1:0"
points = [ { value = 0xA5A5, area = "holding", address = 20, type = "u16" } ]
"#,
    )
    .await;
    let config = load(&format!(
        r#"
[[devices]]
name = "plc"
tcp = "{}"
poll_interval = "20ms"
tags = [
  {{ name = "word", area = "holding", address = 20 }},
  {{ name = "b3", area = "holding", address = 20, type = "bit", bit = 3, alias = true }},
  {{ name = "b0", area = "holding", address = 20, type = "bit", bit = 0, alias = true }},
]
"#,
        sim.addr("plc").unwrap()
    ));
    let mut run = start(config);
    run.good_batch("plc").await;
    // Bits 3 and 0 change; the other fourteen must never.
    let others = !0b1001u16;
    let mut polls = 0;
    for k in 0..10 {
        let on = k % 2 == 0;
        let done = run.write("plc", "b3", Requested::Bool(on)).await;
        assert_eq!(done.result, WriteResult::Verified, "b3 {k}: {done:?}");
        let done = run.write("plc", "b0", Requested::Bool(!on)).await;
        assert_eq!(done.result, WriteResult::Verified, "b0 {k}: {done:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
        while let Ok(b) = run.batches.try_recv() {
            let Some(Value::Int(word)) = value_in(&b, "word") else {
                panic!("{b:?}")
            };
            assert_eq!(word as u16 & others, 0xA5A5 & others, "{word:#06x}");
            polls += 1;
        }
    }
    assert!(polls > 0, "polls went on between the writes");
    // Last: b3 off (k = 9), b0 on.
    let b = run.good_batch_from_now("plc").await;
    assert_eq!(value_in(&b, "word"), Some(Value::Int(0xA5A5 & !0b1000 | 1)));
    run.stop().await;
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// Exceptions and a device that takes only FC16.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_refuses_the_write_and_an_fc16_device_gets_fc16() {
    tracing::init();
    let sim = sim::start(
        r#"
[[devices]]
name = "strict"
unit = 1
listen = "127.0.0.1:0"
refuse_functions = [5, 6]
points = [
  { value = 10, area = "holding", address = 0, type = "u16" },
  { value = 0, area = "holding", address = 1, type = "u16" },
  { value = false, area = "coil", address = 0, type = "bool" },
]
[[devices]]
name = "fc16"
unit = 2
listen = "127.0.0.1:0"
refuse_functions = [5, 6]
points = [
  { value = 10, area = "holding", address = 0, type = "u16" },
  { value = 0, area = "holding", address = 1, type = "u16" },
  { value = false, area = "coil", address = 0, type = "bool" },
]
"#,
    )
    .await;
    let addr = sim.addr("strict").unwrap();
    let tags = r#"tags = [
  { name = "sp", area = "holding", address = 0 },
  { name = "flags", area = "holding", address = 1 },
  { name = "f2", area = "holding", address = 1, type = "bit", bit = 2, alias = true },
  { name = "run", area = "coil", address = 0 },
]"#;
    let mut config = load(&format!(
        "[[devices]]\nname = \"strict\"\ntcp = \"{addr}\"\nunit = 1\npoll_interval = \"200ms\"\n{tags}\n\n[[devices]]\nname = \"fc16\"\ntcp = \"{addr}\"\nunit = 2\npoll_interval = \"200ms\"\n{tags}\n"
    ));
    tweak(&mut config, "fc16", |d| d.write_functions = only(&[15, 16]));
    let mut run = start(config);
    run.good_batch("strict").await;
    run.good_batch("fc16").await;

    // The strict device answers FC6 and FC5 with exception 01.
    let refused = RejectReason::Refused("exception 01 (illegal function)".into());
    let done = run
        .write_job("strict", "sp", Requested::Number(42.0), true, Some(6))
        .await;
    assert_eq!(
        done.result,
        WriteResult::Rejected(refused.clone()),
        "{done:?}"
    );
    assert_eq!(done.old, Some(Value::Int(10)));
    let done = run
        .write_job("strict", "run", Requested::Bool(true), true, Some(5))
        .await;
    assert_eq!(
        done.result,
        WriteResult::Rejected(refused.clone()),
        "{done:?}"
    );
    let done = run
        .write_job("strict", "f2", Requested::Bool(true), true, Some(6))
        .await;
    assert_eq!(done.result, WriteResult::Rejected(refused), "{done:?}");
    // Nothing changed.
    let b = run.good_batch_from_now("strict").await;
    assert_eq!(value_in(&b, "sp"), Some(Value::Int(10)));
    assert_eq!(value_in(&b, "flags"), Some(Value::Int(0)));

    // The same writes go as FC16 and FC15 to a device configured so.
    for (tag, value) in [
        ("sp", Requested::Number(42.0)),
        ("f2", Requested::Bool(true)),
    ] {
        let done = run.write_job("fc16", tag, value, true, Some(16)).await;
        assert_eq!(done.result, WriteResult::Verified, "{tag}: {done:?}");
    }
    let done = run
        .write_job("fc16", "run", Requested::Bool(true), true, Some(15))
        .await;
    assert_eq!(done.result, WriteResult::Verified, "{done:?}");
    let b = run.good_batch_from_now("fc16").await;
    assert_eq!(value_in(&b, "sp"), Some(Value::Int(42)));
    assert_eq!(value_in(&b, "flags"), Some(Value::Int(4)));
    assert_eq!(value_in(&b, "run"), Some(Value::Bool(true)));

    // Without confirmation: written, no read-back.
    let done = run
        .write_job("fc16", "sp", Requested::Number(43.0), false, Some(16))
        .await;
    assert_eq!(done.result, WriteResult::Written { note: None });
    assert_eq!((done.old, done.read_back), (Some(Value::Int(42)), None));
    run.stop().await;
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// A Modbus TCP peer that shows its frames.

/// What the peer does and what it saw.
#[derive(Debug, Default)]
struct PeerState {
    /// Holding registers 0..100.
    registers: Vec<u16>,
    /// Every request: function code, address, quantity (or value).
    frames: Vec<(u8, u16, u16)>,
    /// Reads (FC3) are answered.
    answer_reads: bool,
    /// Writes (FC6, FC16) are carried out and answered; otherwise they
    /// are carried out and the answer is swallowed.
    answer_writes: bool,
    /// How long each read's answer takes.
    read_delay: Duration,
}

/// A Modbus TCP device on loopback, serving holding registers.
struct Peer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<PeerState>>,
    task: JoinHandle<()>,
}

impl Peer {
    async fn start(answer_reads: bool, answer_writes: bool, read_delay: Duration) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(PeerState {
            registers: vec![0; 100],
            answer_reads,
            answer_writes,
            read_delay,
            ..PeerState::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: the connections end with the peer.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, shared.clone()));
            }
        });
        Peer { addr, state, task }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().unwrap()
    }

    fn frames(&self) -> Vec<(u8, u16, u16)> {
        self.state().frames.clone()
    }

    fn count(&self, function: u8) -> usize {
        self.frames().iter().filter(|f| f.0 == function).count()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<PeerState>>) {
    loop {
        let mut header = [0u8; 7];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut pdu = vec![0u8; len.saturating_sub(1)];
        if len < 2 || stream.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let word = |i: usize| u16::from_be_bytes([pdu[i], pdu[i + 1]]);
        if pdu.len() < 5 {
            return;
        }
        let (function, address, quantity) = (pdu[0], word(1), word(3));
        let (reply, delay) = {
            let mut s = state.lock().unwrap();
            s.frames.push((function, address, quantity));
            let start = usize::from(address);
            match function {
                3 if start + usize::from(quantity) <= s.registers.len() => {
                    let mut out = vec![3, (quantity * 2) as u8];
                    for r in &s.registers[start..start + usize::from(quantity)] {
                        out.extend_from_slice(&r.to_be_bytes());
                    }
                    (s.answer_reads.then_some(out), s.read_delay)
                }
                6 if start < s.registers.len() => {
                    s.registers[start] = quantity;
                    (s.answer_writes.then(|| pdu[..5].to_vec()), Duration::ZERO)
                }
                16 if start + usize::from(quantity) <= s.registers.len() => {
                    for i in 0..usize::from(quantity) {
                        s.registers[start + i] = word(6 + 2 * i);
                    }
                    (s.answer_writes.then(|| pdu[..5].to_vec()), Duration::ZERO)
                }
                f => (Some(vec![f | 0x80, 2]), Duration::ZERO),
            }
        };
        let Some(reply) = reply else {
            continue;
        };
        tokio::time::sleep(delay).await;
        let mut frame = header[..4].to_vec();
        frame.extend_from_slice(&(reply.len() as u16 + 1).to_be_bytes());
        frame.push(header[6]);
        frame.extend_from_slice(&reply);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn peer_config(peer: &Peer, extra: &str, tags: &str) -> Config {
    load(&format!(
        "[[devices]]\nname = \"dev\"\ntcp = \"{}\"\n{extra}\ntags = [\n{tags}\n]\n",
        peer.addr
    ))
}

// ---------------------------------------------------------------------------
// Unknown, device down, no link, dropped writers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_never_answered_is_unknown_and_sent_once() {
    tracing::init();
    let peer = Peer::start(true, false, Duration::ZERO).await;
    peer.state().registers[7] = 5;
    let config = peer_config(
        &peer,
        "poll_interval = \"100ms\"\ntimeout = \"300ms\"\nretries = 2",
        "{ name = \"reset\", area = \"holding\", address = 7 }",
    );
    let mut run = start(config);
    run.good_batch("dev").await;
    let done = run.write("dev", "reset", Requested::Number(1.0)).await;
    let WriteResult::Unknown(why) = &done.result else {
        panic!("{done:?}")
    };
    assert!(why.contains("not retried"), "{why}");
    assert_eq!(done.old, Some(Value::Int(5)));
    // The polls go on (over a new connection), and the write is never
    // sent again.
    for _ in 0..5 {
        run.good_batch("dev").await;
    }
    assert_eq!(peer.count(6), 1, "{:?}", peer.frames());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_is_down_gets_no_frame() {
    tracing::init();
    // Takes connections, answers nothing.
    let peer = Peer::start(false, false, Duration::ZERO).await;
    let config = peer_config(
        &peer,
        "poll_interval = \"100ms\"\ntimeout = \"200ms\"",
        "{ name = \"sp\", area = \"holding\", address = 7 }",
    );
    let run = start(config);
    let failing = wait::until(Duration::from_secs(10), || {
        run.probes.devices()[0].snapshot().state == DeviceState::Failing
    })
    .await;
    assert!(failing, "the device goes down");
    let before = peer.frames().len();
    let done = run.write("dev", "sp", Requested::Number(1.0)).await;
    assert!(
        matches!(
            done.result,
            WriteResult::Rejected(RejectReason::DeviceDown(_))
        ),
        "{done:?}"
    );
    assert_eq!(done.old, None);
    assert_eq!(peer.frames().len(), before, "{:?}", peer.frames());
    assert_eq!(peer.count(6), 0);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_cannot_connect_refuses_the_write() {
    tracing::init();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = load(&format!(
        "[[devices]]\nname = \"dev\"\ntcp = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntags = [ {{ name = \"sp\", area = \"holding\", address = 7 }} ]\n"
    ));
    let mut run = start(config);
    run.next_batch("dev").await;
    let done = run.write("dev", "sp", Requested::Number(1.0)).await;
    let WriteResult::Rejected(RejectReason::DeviceDown(why)) = &done.result else {
        panic!("{done:?}")
    };
    assert!(why.contains("connect"), "{why}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_writers_do_not_stop_the_polls() {
    tracing::init();
    let peer = Peer::start(true, true, Duration::ZERO).await;
    let config = peer_config(
        &peer,
        "poll_interval = \"50ms\"",
        "{ name = \"sp\", area = \"holding\", address = 7 }",
    );
    let mut run = start(config);
    run.good_batch("dev").await;
    run.writers = Writers::default();
    for _ in 0..5 {
        run.good_batch("dev").await;
    }
    run.stop().await;
}

// ---------------------------------------------------------------------------
// Between the requests of a poll, or after it.

/// Four requests a poll (`max_gap = 0`), each answered after 150 ms; a
/// write is sent as soon as a poll has started. Returns the frames the
/// peer saw from that poll's first request on.
async fn write_during_a_poll(during: bool) -> Vec<(u8, u16, u16)> {
    tracing::init();
    let peer = Peer::start(true, true, Duration::from_millis(150)).await;
    let mut config = peer_config(
        &peer,
        "poll_interval = \"2s\"\ntimeout = \"1s\"\nmax_gap = 0",
        r#"{ name = "a", area = "holding", address = 0 },
{ name = "b", area = "holding", address = 10 },
{ name = "c", area = "holding", address = 20 },
{ name = "sp", area = "holding", address = 30 },"#,
    );
    tweak(&mut config, "dev", |d| d.write_during_poll = during);
    let mut run = start(config);
    run.good_batch("dev").await;
    // The next poll's first request.
    let seen = peer.frames().len();
    let started = wait::until(Duration::from_secs(10), || {
        peer.frames()[seen..].contains(&(3, 0, 1))
    })
    .await;
    assert!(started, "a second poll");
    let from = seen
        + peer.frames()[seen..]
            .iter()
            .position(|f| *f == (3, 0, 1))
            .unwrap_or(0);
    let done = run.write("dev", "sp", Requested::Number(9.0)).await;
    assert_eq!(done.result, WriteResult::Verified, "{done:?}");
    // That poll's batch, then the frames.
    run.good_batch("dev").await;
    let frames = peer.frames()[from..].to_vec();
    run.stop().await;
    frames
}

fn position(frames: &[(u8, u16, u16)], frame: (u8, u16, u16)) -> usize {
    frames
        .iter()
        .position(|f| *f == frame)
        .unwrap_or_else(|| panic!("no {frame:?} in {frames:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_the_poll_under_way() {
    let frames = write_during_a_poll(false).await;
    // The whole poll, then the read before the write, the write, the
    // read-back.
    assert_eq!(
        frames[..7],
        [
            (3, 0, 1),
            (3, 10, 1),
            (3, 20, 1),
            (3, 30, 1),
            (3, 30, 1),
            (6, 30, 9),
            (3, 30, 1)
        ],
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_poll_goes_between_its_requests() {
    let frames = write_during_a_poll(true).await;
    let write = position(&frames, (6, 30, 9));
    let last = frames
        .iter()
        .rposition(|f| *f == (3, 20, 1))
        .unwrap_or_else(|| panic!("{frames:?}"));
    assert!(
        write < last,
        "the write went before the poll ended: {frames:?}"
    );
    assert_eq!(frames[0], (3, 0, 1));
}

//! `fieldgate demo` end to end: the built binary runs its scenario for a
//! bounded time on a fresh data dir, with its embedded broker on a free
//! port; a subscriber on that broker checks what the plant story must
//! produce, and the store file is read after the exit.
//!
//! The scenario's timeline (config/sim/demo.toml) has everything done by
//! about 35 s; the demo runs 50 s, which leaves room for a slow machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::broker::free_port;
use crate::common::schema;
use crate::common::subscriber::{Received, Subscriber};
use fieldgate::store::inspect::Inspector;
use serde_json::Value;

const BASE: &str = "fieldgate/demo-plant/demo";
const DURATION: &str = "50s";
/// The demo's duration plus its start and its orderly stop.
const EXIT_WITHIN: Duration = Duration::from_secs(90);

/// Waits (bounded) until something accepts connections on `addr`.
async fn wait_listening(addr: SocketAddr, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The last level of a work-order topic (`.../workorders/{id}`), not the
/// CMMS's `/status` topics.
fn work_order_id(topic: &str) -> Option<&str> {
    let id = topic.strip_prefix(&format!("{BASE}/workorders/"))?;
    (!id.contains('/')).then_some(id)
}

/// True for `2026-11-21T10:20:02.083125Z  ` (the stamp of the gateway's
/// log lines and two spaces) at the start of a line.
fn timestamped(line: &str) -> bool {
    stamped(line) && line.as_bytes().get(27..29) == Some(b"  ".as_slice())
}

/// True for `2026-11-21T10:20:02.083125Z ` at the start of a line.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() > 28
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && &b[26..28] == b"Z "
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_its_scenario_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .arg("demo")
        .args(["--duration", DURATION])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--broker-port", &broker.port().to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes all along, so the child never blocks on a full one.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    if !wait_listening(broker, Duration::from_secs(20)).await {
        let _ = child.kill();
        panic!("the demo's broker is not up on {broker} after 20 s");
    }
    let sub = Subscriber::start(broker, "demo-test", "fieldgate/#").await;

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            panic!("the demo did not end within {EXIT_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    let got = sub.received();
    let context = || format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    // Readings from every device, the RTU one included.
    for device in ["pump1", "pump2", "motor1", "fan1"] {
        let good = got
            .iter()
            .filter(|m| m.topic == format!("{BASE}/data/{device}"))
            .filter(|m| {
                m.json()["tags"]
                    .as_object()
                    .is_some_and(|tags| tags.values().any(|t| t["q"] == "good"))
            })
            .count();
        assert!(good > 0, "no good reading from {device}\n{}", context());
    }

    // Exactly the expected alarms became active.
    let alarm_schema = schema::validator("alarm.json");
    let mut activated = BTreeSet::new();
    for m in got
        .iter()
        .filter(|m| m.topic.starts_with(&format!("{BASE}/alarms/")))
    {
        if m.payload.is_empty() {
            continue;
        }
        let v = m.json();
        assert!(alarm_schema.is_valid(&v), "{}: {v}", m.topic);
        if v["active"] == true {
            activated.insert(v["rule"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(
        activated,
        BTreeSet::from([
            "motor1_tripped".to_string(),
            "motor1_vibration".into(),
            "pump1_bearing_hot".into(),
            "pump2_silent".into(),
        ]),
        "{}",
        context()
    );

    // Exactly one corrective work order per fault, one preventive for the
    // meter; every one accepted by the CMMS.
    let wo_schema = schema::validator("workorder.json");
    let mut orders: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for m in &got {
        if let Some(id) = work_order_id(&m.topic) {
            orders.entry(id.to_string()).or_default().push(m);
        }
    }
    let mut sources = BTreeMap::new();
    for (id, messages) in &orders {
        let first = messages
            .iter()
            .find(|m| !m.payload.is_empty())
            .unwrap_or_else(|| panic!("work order {id}: only a clear"));
        let v = first.json();
        assert!(wo_schema.is_valid(&v), "{id}: {v}");
        let source = match v["type"].as_str() {
            Some("corrective") => v["trigger"]["rule"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Some("preventive") => format!(
                "meter:{}",
                v["trigger"]["meter"].as_str().unwrap_or_default()
            ),
            other => panic!("{id}: type {other:?}"),
        };
        assert!(
            sources.insert(source.clone(), id.clone()).is_none(),
            "a second work order for {source}\n{}",
            context()
        );
        assert!(
            messages
                .iter()
                .any(|m| !m.payload.is_empty() && m.json()["status"] == "accepted"),
            "work order {id} ({source}) was not accepted\n{}",
            context()
        );
    }
    assert_eq!(
        sources.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "meter:pump1_runtime",
            "motor1_tripped",
            "pump1_bearing_hot",
            "pump2_silent"
        ],
        "{}",
        context()
    );

    // The CMMS closed the drop-out's work order once pump2 was back: its
    // topic was cleared (an empty retained message), and only its.
    let cleared: BTreeSet<&str> = orders
        .iter()
        .filter(|(_, ms)| ms.last().is_some_and(|m| m.payload.is_empty()))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(
        cleared,
        BTreeSet::from([sources["pump2_silent"].as_str()]),
        "{}",
        context()
    );
    let closed_reports = got
        .iter()
        .filter(|m| m.topic == format!("{BASE}/workorders/{}/status", sources["pump2_silent"]))
        .filter(|m| m.json()["status"] == "closed")
        .count();
    assert_eq!(closed_reports, 1);

    // The gateway said goodbye.
    let last_status = got
        .iter()
        .rev()
        .find(|m| m.topic == format!("{BASE}/status"))
        .map(Received::json);
    assert_eq!(
        last_status.as_ref().map(|v| v["state"].clone()),
        Some(Value::from("offline"))
    );

    // Nothing left in the outbox.
    let store = dir.path().join("fieldgate.db");
    let (left, _) = Inspector::open(&store).unwrap().outbox().unwrap();
    assert_eq!(left, 0, "{}", context());

    // Not a terminal: plain lines, each with its timestamp, no escapes.
    assert!(!stdout.contains('\u{1b}'), "escape codes in plain output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() > 20, "{stdout}");
    for line in &lines {
        assert!(timestamped(line), "not a timestamped line: {line:?}");
    }
    // The gateway's log lines (stderr) carry the same stamp: pump2's
    // silence is warned about at least.
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" fieldgate::"))
        .collect();
    assert!(!logs.is_empty(), "{}", context());
    for line in &logs {
        assert!(stamped(line), "a log line with another stamp: {line:?}");
    }
    for expected in [
        &format!("broker:   127.0.0.1:{} (embedded)", broker.port()),
        &format!(
            "sparkplug: spBv1.0/demo/#  (fieldgate sparkplug watch --broker 127.0.0.1:{})",
            broker.port()
        ),
        "metrics:  http://127.0.0.1:",
        "work order raised: preventive",
        "cmms: closed CMMS-",
        "work order closed: P-102",
        "work orders: 4 raised (3 corrective, 1 preventive), 1 closed by the CMMS",
        "outbox after the stop: 0 messages",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
}

#[test]
fn a_taken_broker_port_is_refused_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args([
            "demo",
            "--duration",
            "5s",
            "--broker-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port} is not free")),
        "{stderr}"
    );
}

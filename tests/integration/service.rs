//! `fieldgate run` as systemd runs it: a child process, a fake
//! `NOTIFY_SOCKET`, real signals (SIGTERM, SIGHUP), the simulator and an
//! embedded broker on loopback. Every wait is bounded.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::subscriber::{Received, Subscriber, contiguous, seqs};
use crate::common::{broker, http, sim};
use fieldgate::sim::Simulator;
use fieldgate::store::inspect::Inspector;
use rustix::process::{Pid, Signal, kill_process};

const BASE: &str = "fieldgate/test/gw";

const SCENARIO: &str = r#"
seed = 7
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 20.0, area = "input", address = 0, type = "f32" },
  { name = "flow", value = 3.5, area = "input", address = 2, type = "f32" },
]
[[devices]]
name = "pump2"
unit = 2
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 30.0, area = "input", address = 0, type = "f32" },
]
"#;

struct Plant {
    sim: Simulator,
    pump: SocketAddr,
    pump2: SocketAddr,
    broker: SocketAddr,
    /// The gateway's `[http] listen`.
    http: SocketAddr,
    dir: tempfile::TempDir,
}

impl Plant {
    async fn start() -> Plant {
        let sim = sim::start(SCENARIO).await;
        let pump = sim.addr("pump").unwrap();
        let pump2 = sim.addr("pump2").unwrap();
        Plant {
            sim,
            pump,
            pump2,
            broker: broker::start(),
            http: broker::free_port(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("fieldgate.toml")
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("data").join("fieldgate.db")
    }

    /// Writes the config: `pump` with a rule, plus `pump2` when asked, plus
    /// any trailing text.
    fn write_config(&self, with_pump2: bool, tail: &str) {
        let pump2 = if with_pump2 {
            format!(
                r#"
[[devices]]
name = "pump2"
tcp = "{addr}"
unit = 2
poll_interval = "100ms"
timeout = "300ms"
tags = [{{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }}]
"#,
                addr = self.pump2
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-service-{nonce}"
keep_alive = "5s"

[store]
durability = "full"
flush_interval = "20ms"

[http]
listen = "{http}"

[[devices]]
name = "pump"
tcp = "{pump}"
unit = 1
poll_interval = "100ms"
timeout = "300ms"
tags = [
  {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "flow", area = "input", address = 2, type = "f32", unit = "m3/h" }},
]
{pump2}
[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
{tail}
"#,
            data = self.dir.path().join("data").display(),
            host = self.broker.ip(),
            port = self.broker.port(),
            nonce = std::process::id(),
            pump = self.pump,
            http = self.http,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn spawn(&self, env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fieldgate"));
        cmd.args(["run", "-c"])
            .arg(self.config_path())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("start fieldgate run")
    }
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, signal).unwrap();
}

/// Waits for the child to exit, at most `limit`; kills it past that.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("fieldgate did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn data(messages: &[Received], device: &str) -> usize {
    let topic = format!("{BASE}/data/{device}");
    messages.iter().filter(|m| m.topic == topic).count()
}

/// The fake service manager's side of `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads notifications until one has a line equal to `line`, within
    /// `limit`; returns whether it came.
    fn wait_for(&mut self, line: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = text.lines().any(|l| l == line);
                self.seen.push(text);
                if found {
                    return true;
                }
            }
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let plant = Plant::start().await;
    plant.write_config(false, "");
    let socket = plant.dir.path().join("notify.sock");
    let mut manager = Manager::bind(&socket);
    let mut child = plant.spawn(&[
        ("NOTIFY_SOCKET", socket.to_str().unwrap()),
        ("WATCHDOG_USEC", "1000000"),
    ]);

    assert!(
        manager.wait_for("READY=1", Duration::from_secs(15)),
        "READY=1 sent; saw {:?}",
        manager.seen
    );
    // Ready means the store is open.
    assert!(plant.store_path().exists());
    // Fed twice per second while the main loop turns.
    for _ in 0..3 {
        assert!(
            manager.wait_for("WATCHDOG=1", Duration::from_secs(2)),
            "WATCHDOG=1 every half interval; saw {:?}",
            manager.seen
        );
    }

    plant.write_config(true, "");
    signal(&child, Signal::HUP);
    assert!(manager.wait_for("RELOADING=1", Duration::from_secs(10)));
    assert!(manager.wait_for("READY=1", Duration::from_secs(10)));

    signal(&child, Signal::TERM);
    assert!(manager.wait_for("STOPPING=1", Duration::from_secs(10)));
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "a SIGTERM stop exits 0 ({status})");
    plant.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_loses_nothing() {
    let plant = Plant::start().await;
    plant.write_config(false, "");
    let sub = Subscriber::start(plant.broker, "service-sigterm", &format!("{BASE}/#")).await;
    let topic = format!("{BASE}/data/pump");

    let mut child = plant.spawn(&[]);
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| data(m, "pump") >= 5)
            .await
    );
    signal(&child, Signal::TERM);
    let stopped_at = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "SIGTERM exits 0 ({status})");
    // Within the configured bound (5 s), with room for a slow machine.
    assert!(stopped_at.elapsed() < Duration::from_secs(8));
    assert!(
        sub.wait_until(Duration::from_secs(5), |m| m.iter().any(|r| r.topic
            == format!("{BASE}/status")
            && r.json()["state"] == "offline"))
            .await,
        "offline status published at a clean stop"
    );
    let before = seqs(&sub.received(), &topic).into_iter().max().unwrap();

    let mut child = plant.spawn(&[]);
    let ok = sub
        .wait_until(Duration::from_secs(20), |m| {
            let s = seqs(m, &topic);
            contiguous(&s) && s.iter().max().copied().unwrap_or(0) >= before + 5
        })
        .await;
    signal(&child, Signal::TERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(
        ok,
        "every seq from 1 arrived across the stop: {:?}",
        seqs(&sub.received(), &topic)
    );
    assert!(status.success());
    plant.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_change_and_refuses_an_invalid_one() {
    let plant = Plant::start().await;
    plant.write_config(false, "");
    let sub = Subscriber::start(plant.broker, "service-reload", &format!("{BASE}/#")).await;
    let mut child = plant.spawn(&[]);
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| data(m, "pump") >= 3)
            .await
    );
    // An active alarm before the reload: its rule does not change.
    plant.sim.set("pump", "temp", 85.0).unwrap();
    let alarm = format!("{BASE}/alarms/hot");
    let active = |m: &[Received]| {
        m.iter()
            .filter(|r| r.topic == alarm)
            .filter(|r| r.json()["state"] == "active_unacked")
            .count()
    };
    assert!(
        sub.wait_until(Duration::from_secs(10), |m| active(m) == 1)
            .await
    );
    let status_hash = |m: &[Received]| {
        m.iter()
            .rev()
            .find(|r| r.topic == format!("{BASE}/status") && r.json()["state"] == "online")
            .map(|r| r.json()["config"].as_str().unwrap_or_default().to_owned())
    };
    let first_hash = status_hash(&sub.received()).unwrap();

    // A valid change: a second device.
    plant.write_config(true, "");
    signal(&child, Signal::HUP);
    assert!(
        sub.wait_until(Duration::from_secs(15), |m| data(m, "pump2") >= 3)
            .await,
        "the new device is polled and published after SIGHUP"
    );
    assert!(
        sub.wait_until(Duration::from_secs(5), |m| status_hash(m)
            .is_some_and(|h| h != first_hash))
            .await,
        "the status message carries the new config hash"
    );
    let new_hash = status_hash(&sub.received()).unwrap();
    // ... and in the metrics, on the same HTTP server.
    let polled = |body: &str, device: &str| {
        body.lines().any(|l| {
            l.starts_with("fieldgate_device_polls_total{")
                && l.contains(&format!("device=\"{device}\""))
                && l.contains("result=\"ok\"")
                && !l.ends_with(" 0")
        })
    };
    let metrics = http::get_when_up(plant.http, "/metrics").await;
    assert!(
        polled(&metrics.body, "pump2"),
        "pump2 in /metrics after the reload"
    );
    assert!(polled(&metrics.body, "pump"), "pump still counted");
    assert!(
        metrics.body.contains(&new_hash),
        "build info names the new config"
    );
    // The alarm kept its state: no second activation, no return to normal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(active(&sub.received()), 1);
    assert!(
        !sub.received().iter().any(|r| r.topic == alarm
            && r.json()["state"] == "normal"
            && r.json()["cause"] == "condition"),
        "the alarm did not return to normal across the reload"
    );

    // An invalid change: refused, the running config keeps going.
    plant.write_config(false, "[[devices]]\nname = \"broken\"\n");
    signal(&child, Signal::HUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = data(&sub.received(), "pump2");
    assert!(
        sub.wait_until(Duration::from_secs(5), |m| data(m, "pump2") >= n + 5)
            .await,
        "the old config (with pump2) still runs after a refused reload"
    );
    assert_eq!(status_hash(&sub.received()).unwrap(), new_hash);
    assert!(child.try_wait().unwrap().is_none(), "still running");

    signal(&child, Signal::TERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success());

    // The change-control trail: the start and the applied reload.
    let log = Inspector::open(&plant.store_path())
        .unwrap()
        .config_log(10)
        .unwrap();
    let hashes: Vec<&str> = log.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!(hashes, [first_hash.as_str(), new_hash.as_str()]);
    assert!(log[0].summary.starts_with("started"), "{:?}", log[0]);
    assert_eq!(log[1].summary, "devices added: pump2");
    plant.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fieldgate_reload_checks_signals_and_reports() {
    let plant = Plant::start().await;
    plant.write_config(false, "");
    let mut child = plant.spawn(&[]);
    let reload = || {
        Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["reload", "-c"])
            .arg(plant.config_path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    // Wait until the gateway has recorded its start.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Inspector::open(&plant.store_path())
        .and_then(|i| i.config_log(1))
        .map(|l| l.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the gateway started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = reload();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing to reload"), "{stdout}");
    // Secrets are not in the hash: it says how to apply a changed one.
    assert!(stdout.contains("systemctl reload fieldgate"), "{stdout}");

    plant.write_config(true, "");
    let out = reload();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("applied: devices added: pump2"), "{stdout}");

    plant.write_config(true, "bad = ");
    let out = reload();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fieldgate.toml:"),
        "names the file and line: {stderr}"
    );
    assert!(stderr.contains("not reloaded"), "{stderr}");

    signal(&child, Signal::TERM);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    // The pid file is gone with the gateway.
    assert!(!plant.dir.path().join("data/fieldgate.pid").exists());
    plant.sim.shutdown().await;
}

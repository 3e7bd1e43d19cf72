//! `fieldgate sparkplug watch` against the real edge node: the gateway
//! with `[sparkplug]` on the embedded broker, the simulator behind it, and
//! the watcher's library entry point reading the namespace.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{broker, gateway, sim};
use fieldgate::cli::sparkplug::{WatchLine, WatchOptions, watch};

fn config_text(dir: &Path, sim: SocketAddr, broker: SocketAddr) -> String {
    format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-spwatch-{nonce}"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
listen = ""

[sparkplug]
group_id = "test"

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "500ms"
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "current", area = "input", address = 2, type = "u16", scale = 0.01, unit = "A" }},
]
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
    )
}

/// Waits (at most `limit`) until `done` holds for the lines so far.
async fn wait_for(
    lines: &Mutex<Vec<WatchLine>>,
    limit: Duration,
    done: impl Fn(&[WatchLine]) -> bool,
) -> bool {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if done(&lines.lock().unwrap()) {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn messages(lines: &[WatchLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| match l {
            WatchLine::Message(m) => Some(m.as_str()),
            WatchLine::Notice(_) => None,
        })
        .collect()
}

/// A DDATA of pump with bearing_temp as a number in degC: the name came
/// from the DBIRTH (DDATA carries aliases only), the unit too.
fn is_ddata_with_a_value(line: &str) -> bool {
    line.contains("  DDATA   test/gw/pump  seq=")
        && line.split("bearing_temp=").nth(1).is_some_and(|rest| {
            let value = rest.split(' ').next().unwrap_or("");
            value.parse::<f64>().is_ok() && rest[value.len()..].starts_with(" degC")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_births_and_data_of_a_running_edge_node() {
    let simulator = sim::start(
        r#"
seed = 5
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { signal = "current", area = "input", address = 2, type = "u16", scale = 0.01 },
]
"#,
    )
    .await;
    let sim_addr = simulator.addr("pump").unwrap();
    let broker = broker::start();

    // The watcher first, so it sees the births.
    let lines: Arc<Mutex<Vec<WatchLine>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sink = lines.clone();
    let watcher = tokio::spawn(async move {
        let options = WatchOptions::plain(&broker.ip().to_string(), broker.port(), Some("test"));
        let stop = async move {
            // Bounded even if the test fails before it says stop.
            let _ = tokio::time::timeout(Duration::from_secs(60), stop_rx).await;
        };
        watch(&options, stop, move |line| {
            sink.lock().unwrap().push(line);
            ControlFlow::Continue(())
        })
        .await
    });
    assert!(
        wait_for(&lines, Duration::from_secs(10), |l| l.iter().any(
            |l| matches!(l, WatchLine::Notice(n) if n.starts_with("watching spBv1.0/test/#"))
        ))
        .await,
        "the watcher subscribed: {:?}",
        lines.lock().unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    let (config, _) = gateway::load(dir.path(), &config_text(dir.path(), sim_addr, broker));
    let (stop, task) = gateway::spawn(config);

    let seen_all = wait_for(&lines, Duration::from_secs(20), |l| {
        let m = messages(l);
        m.iter().any(|l| l.contains("  NBIRTH  test/gw  seq=0 bdSeq="))
            // Its values may still be null (bad) if pump was not polled yet.
            && m.iter().any(|l| {
                l.contains("  DBIRTH  test/gw/pump  seq=1  bearing_temp=") && l.contains(", current=")
            })
            && m.iter().any(|l| is_ddata_with_a_value(l))
    })
    .await;
    gateway::stop(stop, task).await;
    // A clean stop publishes the NDEATH of the session: the NBIRTH's bdSeq
    // (a new store starts at a random one).
    let bd_seq = messages(&lines.lock().unwrap())
        .iter()
        .find_map(|l| {
            l.split("  NBIRTH  test/gw  seq=0 bdSeq=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let death = wait_for(&lines, Duration::from_secs(5), |l| {
        messages(l)
            .iter()
            .any(|l| l.contains(&format!("  NDEATH  test/gw  bdSeq={bd_seq}")))
    })
    .await;
    let _ = stop_tx.send(());
    let summary = tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the watcher stops when told")
        .unwrap()
        .expect("the watcher ran");

    let all = lines.lock().unwrap().clone();
    let shown = messages(&all).join("\n");
    assert!(
        seen_all,
        "NBIRTH, DBIRTH and a DDATA with a value:\n{shown}"
    );
    assert!(death, "the NDEATH of a clean stop:\n{shown}");
    assert!(summary.subscribed);
    assert_eq!(summary.messages as usize, messages(&all).len());
    assert!(
        !shown.contains("undecodable") && !shown.contains('#'),
        "every message read, every alias resolved:\n{shown}"
    );
    // The births come first, in order: NBIRTH (seq 0), then the DBIRTH.
    let first: Vec<&str> = messages(&all)
        .iter()
        .take(2)
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(first, ["NBIRTH", "DBIRTH"], "{shown}");
}

//! Inbound requests in the pipeline: a request's token says "done" only
//! once what the request produced is committed to the SQLite file, which
//! is what lets the forwarder acknowledge its MQTT message. The pipeline
//! runs alone here (no pollers, no broker) over a real store file that
//! commits only every second unless asked, and the test reads the file
//! with the store's inspector, as `fieldgate alarms` would.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldgate::config::Config;
use fieldgate::contract::{OperatorAction, Request, Topics, Who};
use fieldgate::modbus::Probes;
use fieldgate::mqtt::forwarder::{INBOUND_CAPACITY, Inbound};
use fieldgate::pipeline::{self, PipelineConfig, RulesStage};
use fieldgate::reading::Batch;
use fieldgate::store::{self, HistoryKind, Inspector};
use fieldgate::telemetry::Telemetry;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::common::{gateway, tracing};

/// One device that is never polled, a rule on it, and a store that
/// commits once a second unless a flush asks for it sooner.
fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"

[mqtt]
host = "127.0.0.1"
port = 1

[store]
flush_interval = "1s"

[http]
listen = ""

[[devices]]
name = "pump"
tcp = "127.0.0.1:1"
tags = [ {{ name = "temp", area = "input", address = 0, type = "f32" }} ]

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
"#,
        data = dir.join("data").display()
    );
    gateway::load(dir, &text).0
}

fn ack(by: &str) -> Request {
    Request::Alarm {
        rule: "hot".into(),
        action: OperatorAction::Ack(Who {
            by: Some(by.into()),
            note: None,
        }),
    }
}

/// The `ack` requests of the rule `hot` in the file's history, by signer.
fn acks_in(path: &Path) -> Vec<String> {
    let history = Inspector::open(path)
        .unwrap()
        .history(Some(HistoryKind::Alarm), 100)
        .unwrap();
    history
        .into_iter()
        .filter(|h| h.entry.subject == "hot" && h.entry.event == "ack")
        .map(|h| h.entry.detail)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_done_only_once_its_effect_is_committed() {
    tracing::init();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let path = config.store.path.clone();
    let store_config = config.store.clone();
    let (store, guard) = tokio::task::spawn_blocking(move || store::open(&store_config))
        .await
        .unwrap()
        .unwrap();
    let topics = Topics::of(&config);
    let rules = RulesStage::new(&config, topics.clone()).unwrap();
    let telemetry = Arc::new(Telemetry::new(
        &config,
        Probes::new(&config),
        SystemTime::now(),
    ));
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(8);
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(INBOUND_CAPACITY);
    let pipeline = tokio::spawn(pipeline::run(
        batch_rx,
        inbound_rx,
        store.clone(),
        PipelineConfig {
            topics,
            qos: 1,
            per_tag_topics: false,
            sparkplug: None,
        },
        rules,
        telemetry,
    ));

    // Done means on disk: the history entry of the ack (and the rules
    // state saved with it) is in the file as soon as the token says so,
    // a second before the store would have committed by itself.
    let (request, handled) = Inbound::tracked(ack("first"));
    inbound_tx.send(request).await.unwrap();
    timeout(Duration::from_secs(5), handled)
        .await
        .expect("handled within 5 s")
        .expect("handled, not dropped");
    let acks = acks_in(&path);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0].contains("first"), "{acks:?}");

    // A request for a rule that does not exist changes nothing, and is
    // done all the same (its message must not come back for ever).
    let (request, handled) = Inbound::tracked(Request::Alarm {
        rule: "no_such_rule".into(),
        action: OperatorAction::Ack(Who::default()),
    });
    inbound_tx.send(request).await.unwrap();
    timeout(Duration::from_secs(5), handled)
        .await
        .expect("judged within 5 s")
        .expect("done, not dropped");

    // The pipeline stops (the pollers are gone) before it takes a
    // request: the request is not done, its message stays unacknowledged.
    drop(batch_tx);
    let drained = timeout(Duration::from_secs(5), pipeline)
        .await
        .expect("the pipeline stops within 5 s")
        .unwrap();
    drained.result.as_ref().unwrap();
    let (request, handled) = Inbound::tracked(ack("late"));
    inbound_tx.send(request).await.unwrap();
    drop(drained);
    assert!(handled.await.is_err(), "not handled: dropped");
    assert_eq!(acks_in(&path).len(), 1);

    drop(store);
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
}

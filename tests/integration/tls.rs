//! The forwarder over TLS: a TLS-terminating proxy with certificates made
//! by rcgen sits in front of the embedded broker. With the right CA (and,
//! when the proxy asks for one, a client certificate) rows are delivered;
//! with a wrong CA the forwarder reports the certificate error and keeps
//! trying without crashing. Every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use fieldgate::config::{MqttConfig, Secret, TlsConfig};
use fieldgate::contract::Topics;
use fieldgate::mqtt::client::MqttError;
use fieldgate::mqtt::forwarder::{self, ForwarderConfig, ForwarderStats};
use fieldgate::shutdown::{self, ShutdownTrigger};
use fieldgate::store::{self, Kind, OutMessage, StoreGuard, StoreHandle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::common::forwarder::{self as forwarder_fixture, mqtt_config, outbox_config};
use crate::common::subscriber::Subscriber;
use crate::common::tls_broker::{TestCa, TlsProxy};
use crate::common::{broker, tracing, wait};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway whose forwarder talks TLS to `addr`, with `rows` rows waiting.
struct Gateway {
    store: StoreHandle,
    guard: Option<StoreGuard>,
    stats: Arc<ForwarderStats>,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<Result<(), MqttError>>>,
    _inbound: mpsc::Receiver<forwarder::Inbound>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(
        dir: tempfile::TempDir,
        addr: SocketAddr,
        gw: &str,
        tls: TlsConfig,
        rows: u64,
    ) -> Gateway {
        let config = outbox_config(dir.path());
        let (store, guard) = tokio::task::spawn_blocking(move || store::open(&config))
            .await
            .unwrap()
            .unwrap();
        let topics = Topics::new("fieldgate", "site", gw);
        let messages = (1..=rows)
            .map(|seq| OutMessage {
                topic: topics.data("pump1"),
                seq,
                payload: format!("{{\"seq\":{seq}}}").into_bytes(),
                qos: 1,
                retain: false,
                kind: Kind::Reading,
                created_at: SystemTime::now().into(),
            })
            .collect();
        store.insert(messages).await.unwrap();
        store.flush().await.unwrap();
        let mqtt = MqttConfig {
            // The proxy's certificate names 127.0.0.1 and localhost.
            host: "localhost".into(),
            tls: Some(tls),
            max_inflight: 10,
            ..mqtt_config(addr, &format!("fg-{gw}"))
        };
        let cfg = ForwarderConfig {
            mqtt,
            topics,
            config_hash: "ab".repeat(32),
            started: SystemTime::now(),
            store: None,
        };
        let started = forwarder_fixture::start(cfg, &store);
        Gateway {
            store,
            guard: Some(guard),
            stats: started.stats,
            trigger: started.trigger,
            task: Some(started.task),
            _inbound: started.inbound,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        forwarder_fixture::stop(&self.trigger, self.task.take().unwrap()).await;
        let guard = self.guard.take().unwrap();
        tokio::task::spawn_blocking(move || guard.close())
            .await
            .unwrap()
            .unwrap();
    }

    async fn waiting(&self) -> u64 {
        self.store.stats().await.unwrap().messages
    }
}

async fn delivers(client_auth: bool) {
    tracing::init();
    let broker = broker::start();
    let server_ca = TestCa::new("fieldgate test server CA");
    let client_ca = TestCa::new("fieldgate test client CA");
    let proxy = TlsProxy::start(
        broker,
        &server_ca.server(&["127.0.0.1", "localhost"]),
        client_auth.then_some(&client_ca),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", server_ca.cert_pem());
    let tls = if client_auth {
        let issued = client_ca.client("gateway gw");
        TlsConfig {
            ca_file: Some(ca_file),
            cert_file: Some(write(dir.path(), "client.pem", &issued.cert_pem)),
            key: Some(Secret::new(issued.key_pem.into_bytes())),
        }
    } else {
        TlsConfig {
            ca_file: Some(ca_file),
            cert_file: None,
            key: None,
        }
    };
    let gw = if client_auth { "mtls" } else { "tls" };
    let sub = Subscriber::start(
        broker,
        &format!("sub-{gw}"),
        &format!("fieldgate/site/{gw}/data/#"),
    )
    .await;
    let gateway = Gateway::start(dir, proxy.addr(), gw, tls, 25).await;
    assert!(
        wait::until(Duration::from_secs(15), || sub.received().len() >= 25).await,
        "only {} of 25 delivered over TLS; last error {:?}, handshake errors {:?}",
        sub.received().len(),
        gateway.stats.last_error(),
        proxy.failed_handshakes()
    );
    let end = Instant::now() + Duration::from_secs(5);
    while gateway.waiting().await > 0 && Instant::now() < end {
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.waiting().await, 0, "outbox not emptied");
    assert!(
        proxy.failed_handshakes().is_empty(),
        "{:?}",
        proxy.failed_handshakes()
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_tls_with_a_ca_file() {
    delivers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_mutual_tls() {
    delivers(true).await;
}

/// A broker certificate from a CA the gateway does not trust: the error
/// says so, nothing is delivered or deleted, and the forwarder keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_reported_and_retried() {
    tracing::init();
    let broker = broker::start();
    let server_ca = TestCa::new("the real server CA");
    let other_ca = TestCa::new("some other CA");
    let proxy = TlsProxy::start(broker, &server_ca.server(&["127.0.0.1", "localhost"]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsConfig {
        ca_file: Some(write(dir.path(), "wrong-ca.pem", other_ca.cert_pem())),
        cert_file: None,
        key: None,
    };
    let gateway = Gateway::start(dir, proxy.addr(), "wrongca", tls, 3).await;
    assert!(
        wait::until(Duration::from_secs(5), || gateway
            .stats
            .last_error()
            .is_some())
        .await,
        "no error recorded"
    );
    let error = gateway.stats.last_error().unwrap();
    assert!(
        error.contains("UnknownIssuer") && error.contains("certificate"),
        "the error should name the certificate problem: {error}"
    );
    // It retries (1 s backoff, then 2 s): at least two attempts reach the proxy.
    assert!(
        wait::until(Duration::from_secs(6), || proxy.failed_handshakes().len()
            >= 2)
        .await,
        "no retry: {:?}",
        proxy.failed_handshakes()
    );
    assert!(!gateway.stats.connected.load(Ordering::Relaxed));
    assert!(
        !gateway.task.as_ref().unwrap().is_finished(),
        "the forwarder gave up"
    );
    assert_eq!(gateway.waiting().await, 3, "nothing may be deleted");
    gateway.stop().await;
}

/// The proxy requires a client certificate and the gateway has none: the
/// broker is never reached and the error is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_is_reported() {
    tracing::init();
    let broker = broker::start();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let proxy = TlsProxy::start(
        broker,
        &server_ca.server(&["127.0.0.1", "localhost"]),
        Some(&client_ca),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsConfig {
        ca_file: Some(write(dir.path(), "ca.pem", server_ca.cert_pem())),
        cert_file: None,
        key: None,
    };
    let gateway = Gateway::start(dir, proxy.addr(), "nocert", tls, 2).await;
    assert!(
        wait::until(Duration::from_secs(5), || gateway
            .stats
            .last_error()
            .is_some())
        .await,
        "no error recorded"
    );
    sleep(Duration::from_millis(300)).await;
    assert!(!gateway.stats.connected.load(Ordering::Relaxed));
    eprintln!("gateway error: {:?}", gateway.stats.last_error());
    eprintln!("proxy saw: {:?}", proxy.failed_handshakes());
    assert!(!proxy.failed_handshakes().is_empty());
    assert_eq!(gateway.waiting().await, 2);
    gateway.stop().await;
}

/// Unreadable TLS files stop `run` at once with an error naming the file.
#[tokio::test]
async fn unreadable_ca_file_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        cert_file: None,
        key: None,
    };
    let config = outbox_config(dir.path());
    let (store, guard) = tokio::task::spawn_blocking(move || store::open(&config))
        .await
        .unwrap()
        .unwrap();
    let mqtt = MqttConfig {
        host: "localhost".into(),
        port: 8883,
        tls: Some(tls),
        keep_alive: Duration::from_secs(30),
        max_inflight: 10,
        ..mqtt_config(SocketAddr::from(([127, 0, 0, 1], 8883)), "fg-x")
    };
    let cfg = ForwarderConfig {
        mqtt,
        topics: Topics::new("fieldgate", "site", "x"),
        config_hash: String::new(),
        started: SystemTime::now(),
        store: None,
    };
    let (tx, _rx) = mpsc::channel(1);
    let (_trigger, shutdown) = shutdown::channel();
    let result = timeout(
        Duration::from_secs(5),
        forwarder::run(
            cfg,
            store,
            tx,
            Arc::new(ForwarderStats::default()),
            shutdown,
        ),
    )
    .await
    .expect("returns at once");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("missing.pem"), "{error}");
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
}

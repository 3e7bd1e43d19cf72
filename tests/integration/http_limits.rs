//! The HTTP server's limits against clients that hold connections
//! (`docs/status-page.md`, Bounds): a client that sends part of a request
//! head and then stalls, or trickles it, is disconnected after
//! [`HEADER_READ_TIMEOUT`]; connections past [`MAX_CONNECTIONS`] wait
//! until open ones close, and the server answers them then. Loopback only,
//! every wait bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::http::{get, get_when_up};
use crate::common::{broker, gateway, sim};
use fieldgate::config::Config;
use fieldgate::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
use fieldgate::sim::Simulator;

/// A gateway polling one simulated device, with its HTTP server on
/// `http` and no broker (nothing listens at the MQTT address: the HTTP
/// side does not need one).
async fn start(dir: &Path) -> (Simulator, Config, SocketAddr) {
    let sim = sim::start(
        r#"
seed = 7
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
]
"#,
    )
    .await;
    let sim_addr = sim.addr("pump").unwrap();
    let broker = broker::free_port();
    let http = broker::free_port();
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
client_id = "fieldgate-http-limits-{nonce}-{http_port}"
keep_alive = "5s"

[http]
listen = "{http}"

[[devices]]
name = "pump"
tcp = "{sim_addr}"
poll_interval = "200ms"
timeout = "300ms"
retries = 0
max_silence = "1h"
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" }},
]
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
        http_port = http.port(),
    );
    (sim, gateway::load(dir, &text).0, http)
}

/// How a client that never finishes its request head ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The server closed the connection (end of stream or reset).
    Closed,
    /// Still open when the test stopped waiting.
    StillOpen,
}

/// Sends `head` (part of a request head), then one byte of a header every
/// `trickle` (never, with `None`) until the server closes the connection
/// or `limit` passes. Returns how it ended and when.
async fn stall(
    http: SocketAddr,
    head: &str,
    trickle: Option<Duration>,
    limit: Duration,
) -> (Ended, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(http).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let end = started + limit;
    // A header that never ends: the head is never complete.
    let filler = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    loop {
        let tick = match trickle {
            Some(every) => Instant::now() + every,
            None => end,
        };
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                // An answer (408 or the like) before the close is fine;
                // only the close counts.
                Ok(n) if n > 0 => {}
                _ => return (Ended::Closed, started.elapsed()),
            },
            () = tokio::time::sleep_until(tick.min(end)) => {
                if Instant::now() >= end {
                    return (Ended::StillOpen, started.elapsed());
                }
                let byte = filler[sent % filler.len()];
                sent += 1;
                if stream.write_all(&[byte]).await.is_err() {
                    return (Ended::Closed, started.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_request_head_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, http) = start(dir.path()).await;
    let (stop, task) = gateway::spawn(config);
    assert_eq!(get_when_up(http, "/healthz").await.status, 200);

    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let half = format!("GET /healthz HTTP/1.1\r\nHost: {http}\r\n");
    let (silent, trickling) = tokio::join!(
        stall(http, &half, None, limit),
        // Slowloris: a byte every half second keeps the socket busy but
        // never completes the head.
        stall(http, &half, Some(Duration::from_millis(500)), limit),
    );
    for (what, (ended, after)) in [("silent", silent), ("trickling", trickling)] {
        assert_eq!(
            ended,
            Ended::Closed,
            "{what} client still open after {after:?}"
        );
        // Closed by the timeout, not at once for another reason.
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "{what} client closed after {after:?}, before the header timeout"
        );
    }
    // The server itself is unharmed.
    assert_eq!(get(http, "/healthz").await.unwrap().status, 200);

    gateway::stop(stop, task).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, http) = start(dir.path()).await;
    let (stop, task) = gateway::spawn(config);
    assert_eq!(get_when_up(http, "/healthz").await.status, 200);

    // Idle connections that take every place (they send nothing).
    let mut idle = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(http).await.unwrap());
    }
    // The server accepts in arrival order, so once these are in, the next
    // connection is the one past the cap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn(get(http, "/healthz"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a connection past the cap of {MAX_CONNECTIONS} was served at once"
    );

    // Well before the header timeout would free them.
    drop(idle);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served within 5 s of the idle connections closing")
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(get(http, "/healthz").await.unwrap().status, 200);

    gateway::stop(stop, task).await;
    sim.shutdown().await;
}

//! The local HTTP server: the status page, health, readiness, metrics and
//! status (`docs/metrics.md`, `docs/status-page.md`).
//!
//! | path | for | answer |
//! |---|---|---|
//! | `/` (`/app.js`, `/app.css`) | a technician's browser | the status page ([`page`]) |
//! | `/api/events` | the status page | server-sent events: trends, then the status, live ([`events`]) |
//! | `/api/trend` | the status page, `curl` | every tag's last minutes, JSON |
//! | `/api/alarms/{rule}/ack`, `…/shelve` | the page's buttons | POST, with the bearer token when `[http] allow_actions` ([`actions`]) |
//! | `/api/tags/{device}/{tag}/write` | the page's write dialog | POST, the same gate; answers with the write's result ([`write`]) |
//! | `/healthz` | liveness (systemd, a supervisor) | `200 ok` while the pipeline task reports, else 503 |
//! | `/readyz` | readiness | 200 when the config is loaded and the store answers, else 503; JSON with each part |
//! | `/metrics` | Prometheus | text format 0.0.4 |
//! | `/api/status` | a status page, a technician's `curl` | JSON (`docs/schemas/api-status.json`) |
//!
//! The server is axum on hyper (HTTP/1.1 only): the page's event stream
//! and buttons fit it without another crate.
//!
//! # Ownership and shutdown
//!
//! [`bind`] opens the socket (a port already taken fails the start, with
//! the address in the message); [`serve`] spawns the one task that owns it
//! and every connection. The task stops accepting when its [`Shutdown`]
//! fires, event streams end at the same moment, requests in progress
//! finish for at most [`GRACE`], then whatever is left is dropped, so the
//! gateway's shutdown deadline holds.
//!
//! # Bounds
//!
//! At most [`MAX_CONNECTIONS`] connections are open at once; past it new
//! ones wait in the kernel's backlog until one closes. A client has
//! [`HEADER_READ_TIMEOUT`] to send each request head, or is disconnected,
//! so neither many connections nor a slow client (slowloris) can take the
//! file descriptors the Modbus and MQTT sides need. At most
//! [`MAX_REQUESTS`] requests are served at once; more get 503 at once
//! rather than a queue. Event streams count apart, at most
//! [`events::MAX_STREAMS`]. A handler waits at most [`STORE_WAIT`] for
//! the store thread: a store too busy to answer shows as `fieldgate_store_up
//! 0` rather than a hung scrape. Only the action endpoints (acknowledge, shelve, write) change
//! anything, and only with the token; there is no TLS, so an address
//! beyond this machine without a token is warned about.

mod actions;
mod cmms_status;
mod events;
mod health;
mod metrics;
mod page;
mod status;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

pub use actions::{ActionRoute, Actions};
pub use events::trend_json;
pub use status::status_json;

use crate::shutdown::Shutdown;
use crate::store::{Stats, StoreError, StoreHandle};
use crate::telemetry::{ProcessStats, SinkQueues, Snapshot, Telemetry, process};

/// Requests served at once; more are answered 503 straight away.
pub const MAX_REQUESTS: usize = 32;

/// Connections open at once. At the cap the server stops accepting: a new
/// connection waits in the kernel's listen backlog (its client sees a slow
/// connect, or its own timeout) until an open one closes, so a client that
/// opens many connections cannot take the file descriptors the Modbus and
/// MQTT sides need. Room for every event stream ([`events::MAX_STREAMS`])
/// and [`MAX_REQUESTS`] requests besides.
pub const MAX_CONNECTIONS: usize = 64;

// The live feed and the requests fit under the connection cap together.
const _: () = assert!(MAX_CONNECTIONS >= MAX_REQUESTS + events::MAX_STREAMS);

/// How long a client has to send a whole request head (request line and
/// headers), counted from when the server starts waiting for one: on a new
/// connection and between requests on a kept-alive one. A client that has
/// not sent it by then is disconnected without an answer, so a slow or
/// idle client (slowloris) does not keep its place under
/// [`MAX_CONNECTIONS`]. A response in progress (an event stream) is not
/// limited by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in progress may finish after the stop.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long a handler waits for the store thread's figures.
pub const STORE_WAIT: Duration = Duration::from_secs(2);

/// `/healthz` fails when the pipeline task has not reported for this long
/// (it reports at least every second while it runs).
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(30);

/// Why the HTTP server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address cannot be bound (port taken, address not on this host).
    #[error(
        "cannot listen on {addr} for health and metrics ([http] listen): {source}; \
         free the port, choose another address, or set listen = \"\" to disable"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound socket, not serving yet.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// The address bound (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the handlers read. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The metrics registry of the running config (a reload replaces it).
    pub telemetry: watch::Receiver<Arc<Telemetry>>,
    /// The outbox, for its figures and as the readiness check.
    pub store: StoreHandle,
    /// Acknowledge and shelve; `None` unless `[http] allow_actions`.
    pub actions: Option<Actions>,
    /// Where CMMS status pushes go (`POST /api/workorders/{id}/status`);
    /// `None`: refused.
    pub status_route: Option<watch::Receiver<ActionRoute>>,
    /// Event streams open (bounded by [`events::MAX_STREAMS`]).
    streams: Arc<Semaphore>,
    /// Ends the event streams.
    stop: Shutdown,
}

impl HttpState {
    /// The state of a server that stops when `stop` fires.
    pub fn new(
        telemetry: watch::Receiver<Arc<Telemetry>>,
        store: StoreHandle,
        actions: Option<Actions>,
        stop: Shutdown,
    ) -> HttpState {
        HttpState {
            telemetry,
            store,
            actions,
            status_route: None,
            streams: Arc::new(Semaphore::new(events::MAX_STREAMS)),
            stop,
        }
    }

    /// Takes CMMS status pushes into `route` (the running pipeline).
    pub fn with_status_route(mut self, route: watch::Receiver<ActionRoute>) -> HttpState {
        self.status_route = Some(route);
        self
    }

    /// The registry of the running config.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.borrow().clone()
    }
}

/// Binds `addr`. Warns when it is reachable from other hosts and no token
/// is configured (`with_token`).
pub async fn bind(addr: SocketAddr, with_token: bool) -> Result<Listener, HttpError> {
    let inner = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let addr = inner
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    if !addr.ip().is_loopback() && !with_token {
        tracing::warn!(
            %addr,
            "the status page, metrics and every tag's value are served without TLS or a \
             token to anyone who can reach this address; listen on 127.0.0.1 behind a \
             reverse proxy with TLS, or set [http] token_file"
        );
    }
    Ok(Listener { inner, addr })
}

/// Serves `listener` until `shutdown` fires (then at most [`GRACE`] more).
///
/// One task accepts, at most [`MAX_CONNECTIONS`] at once, and owns every
/// connection (each its own task in a set, so that what is left after
/// [`GRACE`] is really dropped rather than left running).
pub fn serve(listener: Listener, state: HttpState, shutdown: Shutdown) -> JoinHandle<()> {
    let addr = listener.addr;
    let actions = if state.actions.is_some() {
        "on (bearer token)"
    } else {
        "off"
    };
    tracing::info!(%addr, page = %format!("http://{addr}/"), actions, "HTTP: status page, /healthz /readyz /metrics /api/status");
    let app = router(state);
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        accept(listener.inner, addr, &app, &mut connections, shutdown).await;
        // The socket is closed by now: new connections are refused while
        // the open ones finish.
        let drained = tokio::time::timeout(GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(%addr, grace = ?GRACE, open = connections.len(), "HTTP requests still open at shutdown; dropped");
            connections.shutdown().await;
        }
        tracing::debug!(%addr, "HTTP server stopped");
    })
}

/// Accepts until `stop` fires, each connection into `connections`, and
/// never more than [`MAX_CONNECTIONS`] open: the permit is taken before
/// `accept`, so past the cap a new connection stays in the kernel's
/// backlog rather than costing a file descriptor here.
async fn accept(
    listener: TcpListener,
    addr: SocketAddr,
    app: &Router,
    connections: &mut JoinSet<()>,
    mut stop: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Finished connections leave the set here, so it holds about the
        // open ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = stop.recv() => return,
        };
        // Only a closed semaphore fails, and this one is never closed.
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.recv() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(connection(stream, peer, app.clone(), stop.clone(), permit));
            }
            // The client gave up before it was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors, most likely: retrying at once
                // would spin; a second lets connections close.
                tracing::error!(%addr, error = %e, "HTTP server failed to accept; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.recv() => return,
                }
            }
        }
    }
}

/// Errors of one connection, not of the listening socket.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection (HTTP/1.1) until it closes, or gracefully ends it
/// once `stop` fires; `_permit` is its place under [`MAX_CONNECTIONS`].
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stop: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    // The handlers read the client's address (the actions log it) from
    // the request, as axum's own server would have put it there.
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!(%peer, timeout = ?HEADER_READ_TIMEOUT, "HTTP client sent no whole request head in time; disconnected");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "HTTP connection ended with an error"),
    }
}

/// The routes, with the request limit.
pub fn router(state: HttpState) -> Router {
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS));
    Router::new()
        .route("/", get(page::index))
        .route("/app.css", get(page::css))
        .route("/app.js", get(page::js))
        .route("/api/events", get(events::events))
        .route("/api/trend", get(events::trend))
        .route("/api/alarms/{rule}/ack", post(actions::ack))
        .route("/api/alarms/{rule}/shelve", post(actions::shelve))
        .route("/api/workorders/{id}/status", post(cmms_status::push))
        .route("/api/tags/{device}/{tag}/write", post(write::write))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/status", get(status::status))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(permits, limit))
        .with_state(state)
}

async fn limit(State(permits): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    // Held until the response is built.
    let Ok(_permit) = permits.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n").into_response();
    };
    next.run(request).await
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; fieldgate serves the status page at /, and /healthz /readyz /metrics \
         /api/status /api/events /api/trend\n",
    )
        .into_response()
}

/// The store's answer to a figures request.
#[derive(Debug)]
enum StoreCheck {
    // Boxed: the figures are large beside the other answers.
    Open(Box<Stats>),
    Failed(StoreError),
    NoAnswer,
}

async fn check_store(store: &StoreHandle) -> StoreCheck {
    match tokio::time::timeout(STORE_WAIT, store.stats()).await {
        Ok(Ok(stats)) => StoreCheck::Open(Box::new(stats)),
        Ok(Err(e)) => StoreCheck::Failed(e),
        Err(_) => StoreCheck::NoAnswer,
    }
}

/// What a snapshot is for: the process figures are for the metrics, the
/// parked deliveries for the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum For {
    /// `/metrics`.
    Metrics,
    /// `/api/status` and the page's feed.
    Status,
}

/// Everything at this moment; the process figures only for the metrics
/// (they read `/proc`, on the blocking pool), the CMMS queues only when
/// connectors are configured.
async fn gather(state: &HttpState, purpose: For) -> Snapshot {
    let store = match check_store(&state.store).await {
        StoreCheck::Open(stats) => Some(*stats),
        _ => None,
    };
    let process = if purpose == For::Metrics {
        tokio::task::spawn_blocking(process::sample)
            .await
            .unwrap_or_default()
    } else {
        ProcessStats::default()
    };
    let telemetry = state.telemetry();
    let sinks = if telemetry.has_cmms() {
        status::sink_queues(&state.store, purpose == For::Status).await
    } else {
        SinkQueues::default()
    };
    telemetry.snapshot_with(store, process, &sinks)
}

//! CMMS connector throughput (issue #17): how many work orders a
//! connector delivers to a CMMS on loopback, and the CPU it spends on
//! each. Figures go in BENCHMARKS.md, "CMMS connectors".
//!
//! ```text
//! cargo build --release --example cmms-load
//! target/release/examples/cmms-load webhook|maximo [--n N] [--durability full|normal] [--poll-figures]
//! ```
//!
//! Everything runs in this process, through the library: an outbox in a
//! temporary directory, a minimal CMMS served by axum on 127.0.0.1 (a
//! webhook receiver answering `{"id":"WH-n"}`; a Maximo-like collection
//! answering every lookup with no member and every create with a new
//! `wonum`; nothing is checked), N work orders queued for one connector
//! (`fieldgate.workorder/1`, each its own id and key, event `raised`), then
//! `Connectors::start` and a clock until `StoreHandle::sink_figures` shows
//! the connector's queue empty. The figures are read every 10 ms once the
//! connector's own counters say every delivery was answered (its last
//! `sink_done` may still be committing), not before: they scan the whole
//! queue, payloads included, and reading them every 10 ms from the start
//! (`--poll-figures`) costs the store thread in proportion to the queue's
//! length and slows the connector. Each status the connector
//! reports (the CMMS's reference) is applied at once, as the gateway
//! would.
//!
//! Per work order the connector reads the store (is the key known?),
//! sends its requests (webhook: the create; Maximo: the lookup by key,
//! then the create), reports the reference and waits for it to be
//! applied, and deletes the delivery in a transaction of its own that is
//! committed (with `durability = "full"`, fsynced) before the next one.
//!
//! CPU is the process's (`getrusage`): the connector, its HTTP client, the
//! store thread and also the local CMMS. The CMMS runs on a thread of its
//! own (a current-thread runtime), whose CPU is shown apart, so the
//! gateway's side is the difference. No tracing subscriber is installed:
//! the connector's log line per work order (the journal, in a gateway)
//! is not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fieldgate::cmms::vendor::Event;
use fieldgate::cmms::{self, Connectors, Reported};
use fieldgate::config::{
    CmmsConfig, CmmsKind, Durability, MaximoConfig, Secret, StoreConfig, WebhookAuth, WebhookConfig,
};
use fieldgate::store;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// The longest a run may take before it gives up.
const BOUND: Duration = Duration::from_secs(600);

/// A work order as the gateway publishes it; `@ID@` and `@KEY@` are
/// replaced per work order.
const WORK_ORDER: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"@ID@","key":"@KEY@","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.000Z","updated_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":"Pump P-101 drive-end bearing above 80 degC","problem_code":"BRG-HOT","procedure":null,"trigger":{"rule":"pump_hot","tag":"pump1.temp","value":91.5,"limit":80,"unit":"degC","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{},"occurrences":1,"last":{"value":91.5,"at":"2026-12-07T08:00:00.000Z"},"cmms":null}"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Webhook,
    Maximo,
}

struct Args {
    mode: Mode,
    n: u64,
    durability: Durability,
    /// Read the queue's figures every 10 ms from the start, not only
    /// once the connector has answered every delivery.
    poll_figures: bool,
}

const USAGE: &str = "usage: cmms-load webhook|maximo [--n N (default 2000)] [--durability full|normal] [--poll-figures]";

fn parse_args() -> Result<Args, String> {
    let mut mode = None;
    let mut n = 2000;
    let mut durability = Durability::Full;
    let mut poll_figures = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "webhook" => mode = Some(Mode::Webhook),
            "maximo" => mode = Some(Mode::Maximo),
            "--n" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or("--n needs a positive number")?;
            }
            "--durability" => {
                durability = match args.next().as_deref() {
                    Some("full") => Durability::Full,
                    Some("normal") => Durability::Normal,
                    _ => return Err("--durability is full or normal".into()),
                };
            }
            "--poll-figures" => poll_figures = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mode = mode.ok_or("which mode: webhook or maximo")?;
    Ok(Args {
        mode,
        n,
        durability,
        poll_figures,
    })
}

/// CPU time (user + system) of the process (`RUSAGE_SELF`) or of the
/// calling thread (`RUSAGE_THREAD`).
fn cpu(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` through the pointer, which
    // points to one; an all-zero `rusage` is a valid value either way.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The local CMMS: requests answered, and the next reference.
#[derive(Default)]
struct Cmms {
    requests: AtomicU64,
    next: AtomicU64,
}

type Shared = State<Arc<Cmms>>;

/// A webhook receiver: 200 with the id it gives the work order.
async fn webhook(State(cmms): Shared, _body: Bytes) -> Response {
    cmms.requests.fetch_add(1, Ordering::Relaxed);
    let n = cmms.next.fetch_add(1, Ordering::Relaxed) + 1;
    Json(json!({ "id": format!("WH-{n}") })).into_response()
}

/// A Maximo-like `mxwo` collection: a lookup finds nothing, a create
/// answers 201 with its `wonum` and status (what the `properties` header
/// asks for).
async fn maximo(State(cmms): Shared, method: Method, _body: Bytes) -> Response {
    cmms.requests.fetch_add(1, Ordering::Relaxed);
    match method {
        Method::GET => Json(json!({ "member": [] })).into_response(),
        Method::POST => {
            let n = cmms.next.fetch_add(1, Ordering::Relaxed) + 1001;
            (
                StatusCode::CREATED,
                Json(json!({ "wonum": n.to_string(), "status": "WAPPR" })),
            )
                .into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// The running local CMMS.
struct Server {
    addr: SocketAddr,
    cmms: Arc<Cmms>,
    stop: oneshot::Sender<()>,
    /// Answers the server thread's CPU time once stopped.
    thread: std::thread::JoinHandle<Duration>,
}

/// Serves the local CMMS on a thread of its own, so its CPU can be told
/// apart from the connector's.
fn serve() -> Server {
    let cmms = Arc::new(Cmms::default());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = cmms.clone();
    let thread = std::thread::Builder::new()
        .name("local-cmms".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the local CMMS's runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port on loopback");
                addr_tx
                    .send(listener.local_addr().expect("the local address"))
                    .expect("the benchmark waits for the address");
                let router = axum::Router::new()
                    .route("/hook", post(webhook))
                    .fallback(maximo)
                    .with_state(state);
                tokio::select! {
                    r = axum::serve(listener, router) => r.expect("the local CMMS serves"),
                    _ = stopped => {}
                }
            });
            cpu(libc::RUSAGE_THREAD)
        })
        .expect("the local CMMS's thread");
    let addr = addr_rx.recv().expect("the local CMMS's address");
    Server {
        addr,
        cmms,
        stop,
        thread,
    }
}

fn connector(mode: Mode, addr: SocketAddr) -> CmmsConfig {
    let (kind, url) = match mode {
        Mode::Webhook => (
            CmmsKind::Webhook(WebhookConfig {
                method: "POST".into(),
                headers: Vec::new(),
                auth: WebhookAuth::None,
                body: None,
                content_type: "application/json".into(),
                events: vec!["raised".into(), "updated".into(), "closed".into()],
            }),
            format!("http://{addr}/hook"),
        ),
        Mode::Maximo => (
            CmmsKind::Maximo(MaximoConfig {
                api_key: Secret::new(b"bench-key".to_vec()),
                site_id: "BEDFORD".into(),
                object_structure: "mxwo".into(),
                api_path: "oslc".into(),
                worktype_corrective: "CM".into(),
                worktype_preventive: "PM".into(),
                key_field: "externalrefid".into(),
                priorities: [4, 3, 2, 1],
            }),
            format!("http://{addr}/maximo"),
        ),
    };
    CmmsConfig {
        name: "bench".into(),
        kind,
        url,
        timeout: Duration::from_secs(10),
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        // Statuses are not polled: only deliveries are measured.
        poll_interval: None,
        ca_file: None,
        work_orders: true,
        assets: Default::default(),
        locations: Default::default(),
        meters: Default::default(),
        inbound: None,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store_config = StoreConfig {
        path: dir.path().join("outbox.db"),
        durability: args.durability,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_millis(100),
    };
    // Opening is blocking (it checks the file): before the runtime.
    let (handle, guard) = store::open(&store_config).expect("the store opens");
    let server = serve();
    let config = connector(args.mode, server.addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the runtime");
    let (delivered, cpu_used) = rt.block_on(run(&args, &config, &handle, &server.cmms));
    drop(handle);
    let _ = server.stop.send(());
    // The server idles before and after the run: its thread's CPU is all
    // answering the connector.
    let server_cpu = server.thread.join().unwrap_or_default();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / delivered.max(1) as f64;
    println!(
        "  CPU per work order: {:.0} µs in all = {:.0} µs the local CMMS (its thread) + {:.0} µs the rest (connector, HTTP client, store)",
        per(cpu_used),
        per(server_cpu),
        per(cpu_used.saturating_sub(server_cpu)),
    );
    if let Err(e) = guard.close() {
        eprintln!("store close: {e}");
    }
}

/// Queues the work orders, runs the connector until its queue is empty
/// and prints the figures; returns the work orders delivered and the
/// process's CPU time meanwhile.
async fn run(
    args: &Args,
    config: &CmmsConfig,
    handle: &store::StoreHandle,
    cmms: &Cmms,
) -> (u64, Duration) {
    let now = SystemTime::now();
    let mut queued = Vec::new();
    for i in 0..args.n {
        let id = format!("01JBENCH{i:08}");
        let key = format!("plant/gw/pump_hot/P-101/{i}");
        let payload = WORK_ORDER.replace("@ID@", &id).replace("@KEY@", &key);
        let topic = format!("fieldgate/plant/gw/workorders/{id}");
        queued.extend(cmms::route::work_order(
            std::slice::from_ref(config),
            &key,
            Event::Raised,
            &topic,
            payload.as_bytes(),
            now,
        ));
        if queued.len() >= 500 {
            handle
                .insert_deliveries(std::mem::take(&mut queued))
                .await
                .expect("deliveries queued");
        }
    }
    handle
        .insert_deliveries(queued)
        .await
        .expect("deliveries queued");
    handle.flush().await.expect("deliveries committed");

    // The gateway's side of a report: applied at once.
    let (reports_tx, mut reports_rx) = mpsc::channel::<Reported>(cmms::REPORTS_CAPACITY);
    let reports = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(r) = reports_rx.recv().await {
            let _ = r.applied.send(());
            n += 1;
        }
        n
    });

    let cpu_before = cpu(libc::RUSAGE_SELF);
    let requests_before = cmms.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut connectors = Connectors::start(std::slice::from_ref(config), handle, &reports_tx, &[]);
    drop(reports_tx);
    let stats = connectors
        .stats
        .first()
        .map(|(_, s)| s.clone())
        .expect("the connector's figures");
    let left = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The queue's figures scan the whole queue (payloads included),
        // which costs the store thread in proportion to what waits: until
        // the connector's own counters say every delivery was answered,
        // they are left alone, unless asked for.
        let answered =
            stats.delivered.load(Ordering::Relaxed) + stats.parked.load(Ordering::Relaxed);
        if answered < args.n && !args.poll_figures && started.elapsed() <= BOUND {
            continue;
        }
        let figures = handle.sink_figures().await.expect("sink figures");
        // A sink without deliveries is not listed.
        let (pending, parked) = figures
            .iter()
            .find(|f| f.sink == config.name)
            .map_or((0, 0), |f| (f.pending, f.parked));
        if pending == 0 {
            if parked > 0 {
                eprintln!("{parked} deliveries parked: the local CMMS refused them");
            }
            break parked;
        }
        if started.elapsed() > BOUND {
            eprintln!("gave up after {BOUND:?} with {pending} deliveries pending");
            break pending + parked;
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = cpu(libc::RUSAGE_SELF).saturating_sub(cpu_before);
    let requests = cmms.requests.load(Ordering::Relaxed) - requests_before;
    let delivered = args.n - left;
    connectors.stop().await;
    let (retries, parked) = connectors.stats.first().map_or((0, 0), |(_, s)| {
        (
            s.retries.load(Ordering::Relaxed),
            s.parked.load(Ordering::Relaxed),
        )
    });
    drop(connectors);
    let reported = reports.await.unwrap_or_default();
    let durability = match args.durability {
        Durability::Full => "full",
        Durability::Normal => "normal",
    };
    println!(
        "{:?} n={} durability={durability}{}: {delivered} work orders in {elapsed:.2} s: {:.0} work orders/s, {:.0} requests/s ({requests} requests); CPU {:.0} µs per work order ({:.0} % of one core); {reported} reports applied, {retries} retries, {parked} parked",
        args.mode,
        args.n,
        if args.poll_figures {
            " poll-figures"
        } else {
            ""
        },
        delivered as f64 / elapsed,
        requests as f64 / elapsed,
        cpu_used.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        cpu_used.as_secs_f64() * 100.0 / elapsed,
    );
    (delivered, cpu_used)
}

//! The six workloads (names fixed by issue #9, so figures stay comparable)
//! and how each is run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::bare;
use crate::broker::{Broker, BrokerChoice};
use crate::procs::{self, CpuSnapshot, Proc};
use crate::setup::{self, Fleet, GatewayOptions, StoreState, Transport};
use crate::sparkplug::Mode;
use crate::subscriber::{Subscriber, Tally, lock, percentile};

/// Seconds `strace -c` counts fsyncs for, after the CPU window (and in
/// the middle of an outage).
const FSYNC_WINDOW_S: u64 = 5;

/// Settings shared by every workload (from the command line).
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The `fieldgate` binary under test.
    pub fieldgate: PathBuf,
    /// Where run folders go (`target/load`).
    pub root: PathBuf,
    /// Broker for W1, W2, W4, W6.
    pub broker: BrokerChoice,
    /// Measurement window, overriding each workload's own.
    pub seconds: Option<u64>,
    /// W3: how long the broker is down.
    pub outage: u64,
    /// W5: readings to buffer.
    pub readings: u64,
    /// `[store] flush_interval`, when not fieldgate's default.
    pub flush_interval: Option<String>,
    /// `[store] durability`.
    pub durability: String,
    /// Free text stored with the results (a build variant, say).
    pub label: String,
    /// Keep the run folders (configs, logs, store).
    pub keep: bool,
    /// Tag maps as one CSV file (true, the default) or inline tables.
    pub csv_tags: bool,
    /// Clock ticks per second of `/proc` CPU times.
    pub ticks: f64,
    /// `--sparkplug`: fieldgate's `[sparkplug]` section (W1 and W4).
    pub sparkplug: Mode,
}

/// One of the workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// W1 steady.
    W1,
    /// W2 max rate.
    W2,
    /// W3 outage.
    W3,
    /// W4 scale.
    W4,
    /// W5 backlog.
    W5,
    /// W6 serial.
    W6,
}

impl Workload {
    /// All of them, in order.
    pub const ALL: [Workload; 6] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
    ];

    /// "W1" … "W6" (any case).
    pub fn parse(text: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(text))
    }

    /// "W1" … "W6".
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
        }
    }

    /// Runs it; returns the result record.
    pub async fn run(self, ctx: &Ctx) -> Result<Value> {
        let w1 = |devices| Fleet {
            devices,
            registers: 100,
            u16_tags: 50,
            f32_tags: 25,
            clock: true,
            poll: "1s".into(),
            transport: Transport::Tcp,
        };
        if ctx.sparkplug.on() && !matches!(self, Workload::W1 | Workload::W4) {
            // Its DDATA are told apart by their timestamps (ms): polls of
            // one device must be at least 1 ms apart, and W3 and W5 judge
            // loss across an outage, which needs a host's view of history.
            bail!(
                "--sparkplug {} is measured for W1 and W4 only",
                ctx.sparkplug.name()
            );
        }
        match self {
            Workload::W1 => steady(ctx, "W1 steady", w1(10), ctx.seconds.unwrap_or(60), None).await,
            Workload::W2 => {
                let fleet = Fleet {
                    devices: 1,
                    registers: 1000,
                    u16_tags: 1000,
                    f32_tags: 0,
                    clock: false,
                    poll: "0s".into(),
                    transport: Transport::Tcp,
                };
                steady(ctx, "W2 max rate", fleet, ctx.seconds.unwrap_or(30), None).await
            }
            Workload::W3 => {
                steady(
                    ctx,
                    "W3 outage",
                    w1(10),
                    ctx.seconds.unwrap_or(60),
                    Some(ctx.outage),
                )
                .await
            }
            Workload::W4 => steady(ctx, "W4 scale", w1(200), ctx.seconds.unwrap_or(60), None).await,
            Workload::W5 => backlog(ctx).await,
            Workload::W6 => {
                let fleet = Fleet {
                    devices: 4,
                    registers: 20,
                    u16_tags: 20,
                    f32_tags: 0,
                    clock: false,
                    poll: "0s".into(),
                    transport: Transport::Pty,
                };
                steady(ctx, "W6 serial", fleet, ctx.seconds.unwrap_or(30), None).await
            }
        }
    }
}

/// The processes whose CPU a run samples, by name.
fn watched(fg: &Proc, sim: &Proc, broker: &Broker) -> Vec<(String, u32)> {
    let mut v = vec![
        ("fieldgate".to_string(), fg.pid()),
        ("sim".to_string(), sim.pid()),
        ("harness".to_string(), std::process::id()),
    ];
    if let Some(pid) = broker.pid() {
        v.push(("broker".to_string(), pid));
    }
    v
}

/// Waits (bounded) until `done` holds for the tally.
async fn wait_for(
    sub: &Subscriber,
    within: Duration,
    mut done: impl FnMut(&Tally) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if done(&lock(&sub.tally)) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Loss against what the store committed: per device, every seq from 1 to
/// the last committed must have been received, or still be waiting in the
/// outbox (not delivered *yet*, which is not a loss).
fn loss(tally: &Tally, store: &StoreState) -> (u64, u64) {
    let (mut lost, mut queued) = (0, 0);
    for (device, &upto) in &store.committed {
        let waiting = store.queued.get(device).map(Vec::as_slice).unwrap_or(&[]);
        queued += waiting.len() as u64;
        let got = tally.devices.get(device);
        lost += (1..=upto)
            .filter(|s| !got.is_some_and(|d| d.has(*s)) && !waiting.contains(s))
            .count() as u64;
    }
    (lost, queued)
}

/// The devices' config, writing the shared CSV tag map when asked for.
fn devices_toml(
    ctx: &Ctx,
    dir: &std::path::Path,
    fleet: &Fleet,
    endpoints: &HashMap<String, String>,
) -> Result<String> {
    if !ctx.csv_tags {
        return fleet.devices_toml(endpoints, None);
    }
    std::fs::write(dir.join("tags.csv"), fleet.tags_csv())?;
    fleet.devices_toml(endpoints, Some("tags.csv"))
}

fn pct(cpu_s: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        100.0 * cpu_s / seconds
    } else {
        0.0
    }
}

/// W1, W2, W3, W4 and W6: the simulator, a broker, the subscriber and
/// fieldgate; a warm-up, then a measurement window of `seconds` (W3: with
/// the broker down for `outage` seconds in its middle).
async fn steady(
    ctx: &Ctx,
    name: &str,
    fleet: Fleet,
    seconds: u64,
    outage: Option<u64>,
) -> Result<Value> {
    let short = &name[..2];
    let dir = setup::run_dir(&ctx.root, short)?;
    let (sim, endpoints) = setup::start_sim(&ctx.fieldgate, &dir, &fleet)?;
    let mut extra = serde_json::Map::new();

    // W2: the bare client loop against the same simulator first, which is
    // also the simulator measured alone.
    let mut bare_rate = None;
    if short == "W2" {
        let targets: Vec<_> = endpoints
            .values()
            .map(|a| Ok((a.parse().context("sim address")?, 1)))
            .collect::<Result<_>>()?;
        let bare_for = Duration::from_secs((seconds / 3).clamp(3, 10));
        let procs = vec![
            ("sim".to_string(), sim.pid()),
            ("harness".into(), std::process::id()),
        ];
        let before = CpuSnapshot::take(&procs, ctx.ticks);
        let b = bare::modbus_loop(&targets, fleet.registers, bare_for).await?;
        let after = CpuSnapshot::take(&procs, ctx.ticks);
        let secs = before.seconds(&after);
        for (who, cpu) in before.delta(&after) {
            extra.insert(
                format!("bare_{who}_cpu_pct"),
                json!(round(pct(cpu, secs), 1)),
            );
        }
        extra.insert(
            "bare_registers_per_s".into(),
            json!(b.registers_per_s.round()),
        );
        extra.insert(
            "bare_requests_per_s".into(),
            json!(b.requests_per_s.round()),
        );
        bare_rate = Some(b.registers_per_s);
    }

    let choice = if outage.is_some() {
        BrokerChoice::Mosquitto
    } else {
        ctx.broker.clone()
    };
    let mut broker = Broker::start(&choice, &dir, outage.is_some())?;
    let opts = GatewayOptions {
        id: format!("{}-{}", short.to_lowercase(), std::process::id()),
        mqtt_host: broker.host.clone(),
        mqtt_port: broker.port,
        http_port: procs::free_port()?,
        flush_interval: ctx.flush_interval.clone(),
        durability: ctx.durability.clone(),
        sparkplug: ctx.sparkplug,
    };
    let (json_on, sp_on) = (ctx.sparkplug.json(), ctx.sparkplug.on());
    let sub = Subscriber::start(
        &broker.host,
        broker.port,
        &format!("fgload-sub-{}", opts.id),
        &opts.filter(),
        sp_on.then_some(opts.id.as_str()),
    )
    .await?;
    let config = opts.config(
        &dir.join("data"),
        &devices_toml(ctx, &dir, &fleet, &endpoints)?,
    );
    let mut fg = setup::start_fieldgate(&ctx.fieldgate, &dir, "fieldgate", &config)?;
    let devices = fleet.devices;
    if wait_for(&sub, Duration::from_secs(30), |t| {
        (!json_on || t.devices.len() == devices) && (!sp_on || t.sp.devices.len() == devices)
    })
    .await
    .is_none()
    {
        bail!(
            "{name}: not every device delivered within 30 s (see {})",
            dir.display()
        );
    }
    // Warm-up: connections open, plans settled, the store past its first
    // commits.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let procs = watched(&fg, &sim, &broker);
    let polled = |port| setup::metric(port, "fieldgate_device_registers_read_total");
    let polled_before = polled(opts.http_port);
    let before = CpuSnapshot::take(&procs, ctx.ticks);
    let io_before = procs::io(fg.pid());
    let tcp_before = procs::tcp_bytes(fg.pid(), broker.port);
    sub.start_window();
    match outage {
        None => tokio::time::sleep(Duration::from_secs(seconds)).await,
        Some(out) => {
            let quarter = Duration::from_secs((seconds / 4).max(1));
            tokio::time::sleep(quarter).await;
            let before_max: HashMap<String, u64> = lock(&sub.tally)
                .devices
                .iter()
                .map(|(d, t)| (d.clone(), t.max_seq))
                .collect();
            broker.stop()?;
            let down_at = Instant::now();
            // fsyncs while nothing can be delivered, in the middle of the
            // outage (strace slows the process: W3 is judged on loss and
            // delivery, not CPU).
            let down_window = Duration::from_secs(out.saturating_sub(2).clamp(1, FSYNC_WINDOW_S));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let pid = fg.pid();
            let fsyncs_down =
                tokio::task::spawn_blocking(move || procs::fsyncs_per_s(pid, down_window))
                    .await
                    .ok()
                    .flatten();
            extra.insert(
                "fsyncs_per_s_broker_down".into(),
                json!(fsyncs_down.map(|v| round(v, 2))),
            );
            let until = down_at + Duration::from_secs(out);
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            let messages_before = lock(&sub.tally).messages;
            broker.resume()?;
            let back_at = Instant::now();
            // The polls of the outage (1 s interval), give or take one.
            let want = out.saturating_sub(1);
            let reconnect = wait_for(&sub, Duration::from_secs(90), |t| {
                t.messages > messages_before
            })
            .await;
            let drained = wait_for(&sub, Duration::from_secs(120), |t| {
                before_max.iter().all(|(d, m)| {
                    t.devices
                        .get(d)
                        .is_some_and(|x| x.contiguous() && x.max_seq >= m + want)
                })
            })
            .await
            .map(|_| back_at.elapsed());
            extra.insert(
                "outage_s".into(),
                json!(round(back_at.duration_since(down_at).as_secs_f64(), 1)),
            );
            extra.insert(
                "first_message_after_return_s".into(),
                json!(reconnect.map(|d| round(d.as_secs_f64(), 2))),
            );
            extra.insert(
                "backlog_delivered_after_return_s".into(),
                json!(drained.map(|d| round(d.as_secs_f64(), 2))),
            );
            // The part of it after fieldgate's reconnect (its reconnect
            // backoff decides the rest).
            if let (Some(r), Some(d)) = (reconnect, drained) {
                extra.insert(
                    "backlog_delivered_after_reconnect_s".into(),
                    json!(round(d.saturating_sub(r).as_secs_f64(), 2)),
                );
            }
            tokio::time::sleep(quarter).await;
        }
    }
    let window = sub.end_window();
    let after = CpuSnapshot::take(&procs, ctx.ticks);
    let io_after = procs::io(fg.pid());
    let tcp_after = procs::tcp_bytes(fg.pid(), broker.port);
    // After the CPU window: strace stops the process at every system call.
    let pid = fg.pid();
    let fsyncs = tokio::task::spawn_blocking(move || {
        procs::fsyncs_per_s(pid, Duration::from_secs(FSYNC_WINDOW_S))
    })
    .await
    .ok()
    .flatten();
    let polled_after = polled(opts.http_port);
    let backlog = setup::metric(opts.http_port, "fieldgate_outbox_messages");
    let peak_rss = procs::status_kib(fg.pid(), "VmHWM");
    let end_rss = procs::status_kib(fg.pid(), "VmRSS");
    let clean = fg
        .stop(Duration::from_secs(30))
        .is_some_and(|s| s.success());
    sub.wait_quiet(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let store = setup::read_store(&dir.join("data").join("fieldgate.db"))?;
    let tally = lock(&sub.tally);
    let (json_lost, json_undelivered) = loss(&tally, &store);
    let json_duplicates: u64 = tally.devices.values().map(|d| d.duplicates).sum();
    let (sp_lost, sp_undelivered) = tally.sp.loss(&store.sp_committed, &store.sp_queued);
    let sp_duplicates: u64 = tally.sp.devices.values().map(|d| d.duplicates).sum();
    // Each side's checks count only when that side carries readings.
    let (lost, undelivered, duplicates) = (
        u64::from(json_on) * json_lost + u64::from(sp_on) * sp_lost,
        u64::from(json_on) * json_undelivered + u64::from(sp_on) * sp_undelivered,
        u64::from(json_on) * json_duplicates + u64::from(sp_on) * sp_duplicates,
    );

    let secs = before.seconds(&after);
    let cpu = before.delta(&after);
    let fg_cpu = cpu.iter().find(|c| c.0 == "fieldgate").map_or(0.0, |c| c.1);
    // The values a consumer gets: the JSON side's, or Sparkplug's when
    // readings go there only.
    let delivered = if json_on {
        window.values
    } else {
        window.sp.values
    };
    let values_per_s = delivered as f64 / secs;
    let mut latencies = window.latencies.clone();
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let max = latencies.last().copied();
    let mut record = json!({
        "workload": name,
        "devices": fleet.devices,
        "registers": fleet.registers,
        "tags_per_device": fleet.tags_per_device(),
        "poll": fleet.poll,
        "broker": choice.label(),
        "seconds": round(secs, 2),
        "sparkplug": ctx.sparkplug.name(),
        "values": delivered,
        "messages": window.messages,
        "values_per_s": round(values_per_s, 1),
        "messages_per_s": round(window.messages as f64 / secs, 1),
        "fieldgate_cpu_s": round(fg_cpu, 2),
        "fieldgate_cpu_pct": round(pct(fg_cpu, secs), 3),
        "core_us_per_value": (delivered > 0).then(|| round(1e6 * fg_cpu / delivered as f64, 3)),
        "peak_rss_kib": peak_rss,
        "end_rss_kib": end_rss,
        "store_write_bytes_per_s": io_before.zip(io_after).map(|(a, b)| {
            round(b.write_bytes.saturating_sub(a.write_bytes) as f64 / secs, 0)
        }),
        "write_calls_bytes_per_s": io_before.zip(io_after).map(|(a, b)| {
            round(b.wchar.saturating_sub(a.wchar) as f64 / secs, 0)
        }),
        "fsyncs_per_s": fsyncs.map(|v| round(v, 2)),
        "latency_p50_ms": p50.map(|v| round(v, 1)),
        "latency_p99_ms": p99.map(|v| round(v, 1)),
        "latency_max_ms": max.map(|v| round(v, 1)),
        "lost": lost,
        "duplicates": duplicates,
        "undelivered_at_stop": undelivered,
        "clean_stop": clean,
    });
    for (who, c) in &cpu {
        if who != "fieldgate" {
            extra.insert(format!("{who}_cpu_pct"), json!(round(pct(*c, secs), 2)));
        }
    }
    if let (Some(a), Some(b)) = (polled_before, polled_after) {
        extra.insert(
            "polled_registers_per_s".into(),
            json!(((b - a) / secs).round()),
        );
    }
    if let Some(b) = backlog {
        extra.insert("outbox_backlog_at_end".into(), json!(b));
    }
    if let Some(bare) = bare_rate {
        extra.insert("ratio_to_bare".into(), json!(round(values_per_s / bare, 3)));
    }
    if json_on {
        extra.extend(wire_figures("json", &window.wire, window.values, secs));
    } else {
        extra.insert(
            "json_checks".into(),
            json!("skipped: json_readings = false, no JSON data topic; loss, duplicates and latency are the Sparkplug side's"),
        );
    }
    if sp_on {
        extra.extend(sparkplug_figures(&tally, &window, secs));
        extra.insert("sp_lost".into(), json!(sp_lost));
        extra.insert("sp_duplicates".into(), json!(sp_duplicates));
        extra.insert("sp_undelivered_at_stop".into(), json!(sp_undelivered));
        if json_on {
            extra.insert("json_lost".into(), json!(json_lost));
            extra.insert("json_duplicates".into(), json!(json_duplicates));
        }
    }
    extra.extend(tcp_figures(&tcp_before, &tcp_after, delivered, secs));
    if fleet.transport == Transport::Pty {
        // One poll: request 8 bytes, answer 5 + 2 per register; 11 bits a
        // character (8E1) and 3.5 characters of silence after each frame.
        let chars = 8.0 + 5.0 + 2.0 * f64::from(fleet.registers) + 2.0 * 3.5;
        let per_poll = chars * 11.0 / f64::from(setup::BAUD);
        let polls_per_s = window.messages as f64 / secs;
        extra.insert("polls_per_s".into(), json!(round(polls_per_s, 1)));
        extra.insert("bus_ms_per_poll".into(), json!(round(per_poll * 1000.0, 2)));
        extra.insert(
            "theoretical_polls_per_s".into(),
            json!(round(1.0 / per_poll, 1)),
        );
        extra.insert(
            "bus_time_share".into(),
            json!(round(polls_per_s * per_poll, 2)),
        );
    }
    if let Some(obj) = record.as_object_mut() {
        obj.extend(extra);
    }
    drop(tally);
    drop(sub);
    drop(fg);
    drop(broker);
    drop(sim);
    cleanup(ctx, &dir);
    Ok(record)
}

/// Bytes per value and per message of one side's PUBLISH packets, keys
/// prefixed `side_`.
fn wire_figures(
    side: &str,
    wire: &crate::sparkplug::Wire,
    values: u64,
    secs: f64,
) -> serde_json::Map<String, Value> {
    let per = |n: u64, d: u64| (d > 0).then(|| round(n as f64 / d as f64, 1));
    let mut m = serde_json::Map::new();
    m.insert(
        format!("{side}_wire_bytes_per_value"),
        json!(per(wire.packets, values)),
    );
    m.insert(
        format!("{side}_payload_bytes_per_value"),
        json!(per(wire.payload, values)),
    );
    m.insert(
        format!("{side}_payload_bytes_per_message"),
        json!(per(wire.payload, wire.messages)),
    );
    m.insert(
        format!("{side}_topic_bytes_per_message"),
        json!(per(wire.topic, wire.messages)),
    );
    m.insert(
        format!("{side}_packet_bytes_per_s"),
        json!(round(wire.packets as f64 / secs, 0)),
    );
    m.insert(
        format!("{side}_publishes_per_s"),
        json!(round(wire.messages as f64 / secs, 1)),
    );
    m
}

/// The Sparkplug side of a steady run: its values, bytes, latency and
/// session checks.
fn sparkplug_figures(
    tally: &Tally,
    window: &crate::subscriber::Window,
    secs: f64,
) -> serde_json::Map<String, Value> {
    let sp = &tally.sp;
    let w = &window.sp;
    let mut m = wire_figures("sp", &w.wire, w.values, secs);
    let mut lat = w.latencies.clone();
    let mut stamp = w.stamp_latencies.clone();
    let ms = |v: Option<f64>| json!(v.map(|v| round(v, 1)));
    let figures = [
        ("sp_values", json!(w.values)),
        ("sp_values_per_s", json!(round(w.values as f64 / secs, 1))),
        ("sp_ddata_per_s", json!(round(w.messages as f64 / secs, 1))),
        (
            "sp_values_to_json",
            json!((window.values > 0).then(|| round(w.values as f64 / window.values as f64, 4))),
        ),
        ("sp_latency_p50_ms", ms(percentile(&mut lat, 50.0))),
        ("sp_latency_p99_ms", ms(percentile(&mut lat, 99.0))),
        ("sp_latency_max_ms", ms(lat.last().copied())),
        ("sp_stamp_latency_p50_ms", ms(percentile(&mut stamp, 50.0))),
        ("sp_stamp_latency_p99_ms", ms(percentile(&mut stamp, 99.0))),
        ("sp_seq_gaps", json!(sp.seq_gaps)),
        ("sp_seq_skipped", json!(sp.seq_skipped)),
        ("sp_bad_birth_seq", json!(sp.bad_birth_seq)),
        ("sp_bd_seq", json!(sp.bd_seq)),
        ("sp_nbirth", json!(sp.nbirth)),
        ("sp_dbirth", json!(sp.dbirth)),
        ("sp_ddata", json!(sp.ddata)),
        ("sp_ndata", json!(sp.ndata)),
        ("sp_ddeath", json!(sp.ddeath)),
        ("sp_ndeath", json!(sp.ndeath)),
        ("sp_historical_values", json!(sp.historical)),
        ("sp_undecodable", json!(sp.undecodable)),
    ];
    for (k, v) in figures {
        m.insert(k.into(), v);
    }
    m
}

/// What fieldgate's connections to the broker carried in the window, per
/// connection (by local port) and in all, measured by the kernel: every
/// MQTT packet (PUBLISH, PUBACK, the edge node's UNSUBSCRIBE barriers,
/// pings), without TCP/IP headers.
fn tcp_figures(
    before: &[procs::TcpBytes],
    after: &[procs::TcpBytes],
    values: u64,
    secs: f64,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    let mut connections = Vec::new();
    let (mut sent, mut received) = (0, 0);
    for a in after {
        let b = before.iter().find(|b| b.local_port == a.local_port);
        let s = a.sent.saturating_sub(b.map_or(0, |b| b.sent));
        let r = a.received.saturating_sub(b.map_or(0, |b| b.received));
        sent += s;
        received += r;
        connections.push(json!({
            "local_port": a.local_port,
            "sent_bytes_per_s": round(s as f64 / secs, 0),
            "received_bytes_per_s": round(r as f64 / secs, 0),
        }));
    }
    if after.is_empty() {
        return m;
    }
    m.insert("tcp_connections".into(), json!(connections));
    m.insert(
        "tcp_sent_bytes_per_s".into(),
        json!(round(sent as f64 / secs, 0)),
    );
    m.insert(
        "tcp_received_bytes_per_s".into(),
        json!(round(received as f64 / secs, 0)),
    );
    if values > 0 {
        m.insert(
            "tcp_sent_bytes_per_value".into(),
            json!(round(sent as f64 / values as f64, 1)),
        );
    }
    m
}

/// W5: fill the outbox with `ctx.readings` readings while the broker is
/// down (20 devices × 10 `u16` tags polled back to back: 10 readings per
/// message), stop fieldgate, start the broker and the subscriber, start
/// fieldgate again on the same store and time the drain until the
/// subscriber holds every message; then a bare rumqttc publisher sends as
/// many messages of the same size through the same broker to the same
/// subscriber.
async fn backlog(ctx: &Ctx) -> Result<Value> {
    let name = "W5 backlog";
    let dir = setup::run_dir(&ctx.root, "W5")?;
    let mut fleet = Fleet {
        devices: 20,
        registers: 10,
        u16_tags: 10,
        f32_tags: 0,
        clock: false,
        poll: "0s".into(),
        transport: Transport::Tcp,
    };
    let per_message = fleet.tags_per_device();
    let want_messages = ctx.readings.div_ceil(per_message);
    let (sim, endpoints) = setup::start_sim(&ctx.fieldgate, &dir, &fleet)?;
    // The broker's port is chosen, its process not started yet.
    let mut broker = Broker::start(&BrokerChoice::Mosquitto, &dir, false)?;
    broker.stop()?;
    let opts = GatewayOptions {
        id: format!("w5-{}", std::process::id()),
        mqtt_host: broker.host.clone(),
        mqtt_port: broker.port,
        http_port: procs::free_port()?,
        flush_interval: ctx.flush_interval.clone(),
        durability: ctx.durability.clone(),
        sparkplug: Mode::Off,
    };
    let data = dir.join("data");

    // Fill.
    let config = opts.config(&data, &devices_toml(ctx, &dir, &fleet, &endpoints)?);
    let mut fill = setup::start_fieldgate(&ctx.fieldgate, &dir, "fill", &config)?;
    let fill_start = Instant::now();
    let mut filled = 0.0;
    while fill_start.elapsed() < Duration::from_secs(900) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        filled = setup::metric(opts.http_port, "fieldgate_outbox_messages").unwrap_or(filled);
        if filled >= want_messages as f64 {
            break;
        }
        if !fill.is_running() {
            bail!(
                "{name}: fieldgate stopped while filling (see {})",
                dir.display()
            );
        }
    }
    let fill_s = fill_start.elapsed().as_secs_f64();
    let fill_rss = procs::status_kib(fill.pid(), "VmHWM");
    fill.stop(Duration::from_secs(30));
    drop(fill);
    let stored = setup::read_store(&data.join("fieldgate.db"))?;
    let backlog_messages = stored.rows;
    let backlog_readings = backlog_messages * per_message;

    // Drain: broker, subscriber, then fieldgate on the same store. Its
    // devices now poll once an hour: one live message each beside the
    // backlog.
    broker.resume()?;
    let sub = Subscriber::start(
        &broker.host,
        broker.port,
        &format!("fgload-sub-{}", opts.id),
        &opts.filter(),
        None,
    )
    .await?;
    fleet.poll = "1h".into();
    let config = opts.config(&data, &devices_toml(ctx, &dir, &fleet, &endpoints)?);
    let committed = stored.committed.clone();
    let mut fg = setup::start_fieldgate(&ctx.fieldgate, &dir, "drain", &config)?;
    let (rss_stop, rss_peak) = procs::rss_sampler(fg.pid(), Duration::from_millis(100));
    let procs = watched(&fg, &sim, &broker);
    let before = CpuSnapshot::take(&procs, ctx.ticks);
    let start = Instant::now();
    let first = wait_for(&sub, Duration::from_secs(30), |t| t.messages > 0).await;
    let done = wait_for(&sub, Duration::from_secs(1800), |t| {
        committed.iter().all(|(d, upto)| {
            t.devices
                .get(d)
                .is_some_and(|x| x.distinct >= *upto && x.contiguous())
        })
    })
    .await;
    let drain_s = start.elapsed().as_secs_f64();
    let after = CpuSnapshot::take(&procs, ctx.ticks);
    drop(rss_stop);
    let drain_rss = rss_peak.join().unwrap_or(0);
    let clean = fg
        .stop(Duration::from_secs(30))
        .is_some_and(|s| s.success());
    sub.wait_quiet(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let end = setup::read_store(&data.join("fieldgate.db"))?;
    let (lost, undelivered, duplicates) = {
        let t = lock(&sub.tally);
        let (l, u) = loss(&t, &end);
        (l, u, t.devices.values().map(|d| d.duplicates).sum::<u64>())
    };
    if done.is_none() {
        eprintln!("{name}: the drain did not finish within 30 minutes");
    }
    let secs = before.seconds(&after);
    let cpu = before.delta(&after);
    let fg_cpu = cpu.iter().find(|c| c.0 == "fieldgate").map_or(0.0, |c| c.1);

    // The bare publisher: as many messages of the backlog's mean size,
    // QoS 1, fieldgate's default in-flight window (100), end to end to the
    // same subscriber.
    let size = stored.mean_payload.round() as usize;
    let topic = format!("{}/{}/{}/bare", setup::PREFIX, setup::SITE, opts.id);
    let bare_start = Instant::now();
    let (acked_s, acked) = bare::publisher(
        &broker.host,
        broker.port,
        &topic,
        backlog_messages,
        size,
        100,
        Duration::from_secs(900),
    )
    .await?;
    let bare_done = wait_for(&sub, Duration::from_secs(120), |t| {
        t.bare >= backlog_messages
    })
    .await;
    let bare_s = bare_start.elapsed().as_secs_f64();
    let bare_received = lock(&sub.tally).bare;

    let drain_rate = backlog_messages as f64 / drain_s;
    let bare_rate = bare_received as f64 / bare_s;
    let mut record = json!({
        "workload": name,
        "devices": fleet.devices,
        "tags_per_device": per_message,
        "broker": BrokerChoice::Mosquitto.label(),
        "backlog_messages": backlog_messages,
        "backlog_readings": backlog_readings,
        "mean_payload_bytes": round(stored.mean_payload, 0),
        "fill_s": round(fill_s, 1),
        "fill_readings_per_s": round(backlog_readings as f64 / fill_s, 0),
        "fill_peak_rss_kib": fill_rss,
        "drain_s": round(drain_s, 2),
        "first_message_s": first.map(|d| round(d.as_secs_f64(), 2)),
        "drain_complete": done.is_some(),
        "drain_messages_per_s": round(drain_rate, 0),
        "drain_readings_per_s": round(drain_rate * per_message as f64, 0),
        "fieldgate_cpu_s": round(fg_cpu, 2),
        "fieldgate_cpu_pct": round(pct(fg_cpu, secs), 1),
        "peak_rss_kib": drain_rss,
        "bare_messages": acked,
        "bare_puback_s": round(acked_s, 2),
        "bare_end_to_end_s": round(bare_s, 2),
        "bare_complete": bare_done.is_some(),
        "bare_messages_per_s": round(bare_rate, 0),
        "ratio_to_bare": round(drain_rate / bare_rate, 3),
        "lost": lost,
        "duplicates": duplicates,
        "undelivered_at_stop": undelivered,
        "clean_stop": clean,
    });
    if let Some(obj) = record.as_object_mut() {
        for (who, c) in &cpu {
            if who != "fieldgate" {
                obj.insert(format!("{who}_cpu_pct"), json!(round(pct(*c, secs), 1)));
            }
        }
    }
    drop(sub);
    drop(fg);
    drop(broker);
    drop(sim);
    cleanup(ctx, &dir);
    Ok(record)
}

fn cleanup(ctx: &Ctx, dir: &std::path::Path) {
    if ctx.keep {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Rounds to `digits` decimals (for readable results).
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The one-line summary of a record.
pub fn summary(r: &Value) -> String {
    let f = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let w = f("workload");
    let name = w.as_str().unwrap_or("?");
    let loss = format!(
        "lost {} dup {} undelivered {}",
        f("lost"),
        f("duplicates"),
        f("undelivered_at_stop")
    );
    if name.starts_with("W5") {
        return format!(
            "{name}: {} readings ({} msgs) drained in {} s: {} readings/s, {} msgs/s; bare rumqttc {} msgs/s; ratio {}; fieldgate peak RSS {} KiB; {loss}",
            f("backlog_readings"),
            f("backlog_messages"),
            f("drain_s"),
            f("drain_readings_per_s"),
            f("drain_messages_per_s"),
            f("bare_messages_per_s"),
            f("ratio_to_bare"),
            f("peak_rss_kib"),
        );
    }
    let mut line = format!(
        "{name}: {} values/s, fieldgate CPU {}% of a core ({} core-us/value), peak RSS {} KiB, latency p50 {} ms p99 {} ms; {loss}",
        f("values_per_s"),
        f("fieldgate_cpu_pct"),
        f("core_us_per_value"),
        f("peak_rss_kib"),
        f("latency_p50_ms"),
        f("latency_p99_ms"),
    );
    for k in [
        "ratio_to_bare",
        "bare_registers_per_s",
        "polled_registers_per_s",
        "backlog_delivered_after_return_s",
        "polls_per_s",
        "bus_time_share",
        "fsyncs_per_s",
        "fsyncs_per_s_broker_down",
        "store_write_bytes_per_s",
        "sparkplug",
        "json_checks",
        "json_wire_bytes_per_value",
        "sp_values_per_s",
        "sp_values_to_json",
        "sp_wire_bytes_per_value",
        "sp_publishes_per_s",
        "sp_latency_p50_ms",
        "sp_latency_p99_ms",
        "sp_lost",
        "sp_duplicates",
        "sp_seq_gaps",
        "tcp_sent_bytes_per_value",
    ] {
        if let Some(v) = r.get(k) {
            line.push_str(&format!("; {k} {v}"));
        }
    }
    line
}

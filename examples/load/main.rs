//! `fieldgate-load`: the load harness of issue #9. It runs fieldgate as a
//! separate process against the simulator and a broker on loopback and
//! measures what a plant's IT would ask: values delivered per second, CPU
//! per value, memory, latency, and that nothing is lost.
//!
//! ```text
//! cargo build --release --bin fieldgate --example fieldgate-load
//! target/release/examples/fieldgate-load W1 [--seconds N] [--broker embedded|mosquitto|HOST:PORT]
//!                                           [--results FILE] [--keep] ...
//! target/release/examples/fieldgate-load W1|W4 --sparkplug off|beside|only
//! target/release/examples/fieldgate-load all
//! ```
//!
//! # What a run is
//!
//! * **Simulator**: `fieldgate sim` as a child process, serving the
//!   workload's fleet (each TCP device on a listener of its own, at
//!   127.0.0.N; W6's RTU devices on one in-process pty). W2 measures it
//!   alone first (a bare tokio-modbus loop), and every run records its CPU,
//!   so a figure limited by the simulator shows as such.
//! * **Broker**: rumqttd in a child process (default), a Mosquitto of the
//!   run's own (`--broker mosquitto`; always for W3 and W5), or an existing
//!   broker (`--broker HOST:PORT`). See `broker.rs`.
//! * **fieldgate**: `target/release/fieldgate run` (next to this binary;
//!   `--fieldgate PATH` for another) with a generated config, its store in
//!   `target/load/<run>/data`, logging at `warn`.
//! * **Subscriber**: rumqttc in this process, QoS 1, persistent session;
//!   counts values, checks each device's `seq` and measures latency from the
//!   simulator's clock register (`subscriber.rs`). With `--sparkplug
//!   beside|only` (W1, W4) fieldgate also runs its Sparkplug B edge node
//!   (`[sparkplug] group_id = "load"`; `only`: `json_readings = false`) and
//!   the subscriber decodes its `spBv1.0/…` messages too: values, bytes,
//!   latency, `seq` per session, loss (`sparkplug.rs`).
//!
//! # What is measured
//!
//! * After every device has delivered and 2 s of warm-up, a window of
//!   `--seconds` (default per workload) during which the subscriber counts
//!   the distinct values that arrive, and fieldgate's CPU time
//!   (the sum over its threads of `/proc/PID/task/TID/schedstat`, in ns) is
//!   read at both ends;
//!   CPU per value is the difference over the values delivered.
//! * What fieldgate writes to storage during the window
//!   (`store_write_bytes_per_s`: `write_bytes` of `/proc/PID/io`, what
//!   reaches the block layer — an SD card's wear), and its fsyncs per
//!   second (`fsyncs_per_s`: `strace -c -e trace=fsync,fdatasync` attached
//!   for 5 s right after the window, since strace slows every system call;
//!   for an outage also `fsyncs_per_s_broker_down`, in the middle of it;
//!   `null` without strace).
//! * Peak RSS is fieldgate's `VmHWM` (W5: the highest VmHWM sampled every
//!   100 ms while draining).
//! * **Loss** is decided after fieldgate has stopped (SIGTERM, graceful):
//!   its store says the last `seq` it committed for each device's topic
//!   (table `topic_seq`) and which rows still wait in the outbox. A value is
//!   lost when its message was committed, is not in the outbox, and never
//!   reached the subscriber. Duplicates (a seq received twice, allowed by
//!   QoS 1) are counted apart. Sparkplug DDATA carry no such number: per
//!   device, the rows committed to its DDATA topic against the distinct
//!   payload timestamps received or still in the outbox. With
//!   `--sparkplug only` there is no JSON data topic: values, latency and
//!   loss are the Sparkplug side's.
//! * Bytes on the wire: each side's PUBLISH packets as the subscriber
//!   receives them (fixed header, topic, packet id at QoS 1, payload), per
//!   value; and what fieldgate's connections to the broker carried, from
//!   the kernel (`ss -ti`: bytes sent and received per connection).
//!
//! Every wait is bounded; every child process is stopped when the run ends
//! or fails; only loopback is used. Each run prints one line and appends its
//! record (JSON) to `--results` (default `target/load/results.jsonl`).
//! BENCHMARKS.md has the figures and what limits each.

mod bare;
mod broker;
mod procs;
mod setup;
mod sparkplug;
mod subscriber;
mod workloads;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;
use serde_json::{Value, json};

use broker::BrokerChoice;
use workloads::{Ctx, Workload};

/// Load harness for fieldgate (issue #9): W1 steady, W2 max rate, W3
/// outage, W4 scale, W5 backlog, W6 serial.
#[derive(Debug, Parser)]
#[command(name = "fieldgate-load")]
struct Cli {
    /// W1 … W6, or `all`.
    workload: String,
    /// Measurement window in seconds (default: W1, W3, W4 60; W2, W6 30).
    #[arg(long)]
    seconds: Option<u64>,
    /// Broker: `embedded` (rumqttd in a child process), `mosquitto` (our
    /// own) or `HOST:PORT`. W3 and W5 always start their own Mosquitto.
    #[arg(long, default_value = "embedded")]
    broker: String,
    /// W3: seconds the broker is down.
    #[arg(long, default_value_t = 30)]
    outage: u64,
    /// W5: readings to buffer before the drain.
    #[arg(long, default_value_t = 1_000_000)]
    readings: u64,
    /// `[store] flush_interval` of fieldgate (default: fieldgate's own).
    #[arg(long)]
    flush_interval: Option<String>,
    /// `[store] durability` of fieldgate.
    #[arg(long, default_value = "full")]
    durability: String,
    /// The fieldgate binary (default: `fieldgate` in the folder above this
    /// example, i.e. the same profile's build).
    #[arg(long)]
    fieldgate: Option<PathBuf>,
    /// Results file (JSON lines), appended to.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Free text stored in each record (a build variant, say).
    #[arg(long, default_value = "")]
    label: String,
    /// Keep each run's folder (configs, logs, store) under target/load.
    #[arg(long)]
    keep: bool,
    /// How fieldgate's config gives each device its tags: `csv` (one tag
    /// map file all devices name, as a technician's spreadsheet would) or
    /// `inline` (a `tags = [...]` table per device; loading 15,000 inline
    /// tags costs fieldgate tens of MB at start-up, see BENCHMARKS.md).
    #[arg(long, default_value = "csv", value_parser = ["csv", "inline"])]
    tags: String,
    /// fieldgate's Sparkplug B edge node (W1 and W4): `off`, `beside` the
    /// JSON readings (`[sparkplug] group_id = "load"`), or `only`
    /// (`json_readings = false`).
    #[arg(long, default_value = "off", value_parser = ["off", "beside", "only"])]
    sparkplug: String,
    /// Exit non-zero when a run lost a value or did not stop cleanly (for
    /// CI; speed is never asserted).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The embedded broker's process: `fieldgate-load broker-child PORT`.
    if args.get(1).map(String::as_str) == Some("broker-child") {
        let port = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(1883);
        return match broker::run_child(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fieldgate-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fieldgate-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the asked workloads; false when `--check` found a problem.
async fn run(cli: Cli) -> Result<bool> {
    let exe = std::env::current_exe().context("locating this binary")?;
    // target/<profile>/examples/fieldgate-load
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("this binary is not in target/<profile>/examples")?
        .to_path_buf();
    let target = profile_dir.parent().unwrap_or(&profile_dir).to_path_buf();
    let fieldgate = cli
        .fieldgate
        .clone()
        .unwrap_or_else(|| profile_dir.join("fieldgate"));
    anyhow::ensure!(
        fieldgate.is_file(),
        "{} not found: build it first (cargo build --release --bin fieldgate)",
        fieldgate.display()
    );
    let root = target.join("load");
    std::fs::create_dir_all(&root)?;
    let results = cli
        .results
        .clone()
        .unwrap_or_else(|| root.join("results.jsonl"));
    let ctx = Ctx {
        fieldgate: fieldgate.clone(),
        root,
        broker: BrokerChoice::parse(&cli.broker)?,
        seconds: cli.seconds,
        outage: cli.outage,
        readings: cli.readings,
        flush_interval: cli.flush_interval.clone(),
        durability: cli.durability.clone(),
        label: cli.label.clone(),
        keep: cli.keep,
        csv_tags: cli.tags == "csv",
        ticks: procs::clock_ticks(),
        sparkplug: sparkplug::Mode::parse(&cli.sparkplug)
            .context("--sparkplug: off, beside or only")?,
    };
    let list: Vec<Workload> = if cli.workload.eq_ignore_ascii_case("all") {
        Workload::ALL.to_vec()
    } else {
        vec![
            Workload::parse(&cli.workload)
                .with_context(|| format!("unknown workload {:?}: W1 … W6 or all", cli.workload))?,
        ]
    };
    let common = json!({
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": command_line("git", &["rev-parse", "--short", "HEAD"]),
        "fieldgate_bytes": std::fs::metadata(&fieldgate).map(|m| m.len()).ok(),
        "profile": profile_dir.file_name().map(|n| n.to_string_lossy().to_string()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "label": ctx.label,
        "flush_interval": ctx.flush_interval,
        "durability": ctx.durability,
        "tag_maps": cli.tags,
    });
    let mut ok = true;
    for w in list {
        eprintln!("{}: running…", w.name());
        let mut record = w.run(&ctx).await.with_context(|| w.name().to_string())?;
        if let (Some(r), Some(c)) = (record.as_object_mut(), common.as_object()) {
            for (k, v) in c {
                r.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        println!("{}", workloads::summary(&record));
        append(&results, &record)?;
        let lost = record.get("lost").and_then(Value::as_u64).unwrap_or(1);
        let clean = record.get("clean_stop").and_then(Value::as_bool) == Some(true);
        let drained = record
            .get("backlog_delivered_after_return_s")
            .is_none_or(|v| !v.is_null());
        if cli.check && (lost != 0 || !clean || !drained) {
            eprintln!(
                "{}: FAILED the correctness check (lost {lost}, clean stop {clean}, backlog delivered {drained})",
                w.name()
            );
            ok = false;
        }
    }
    Ok(ok)
}

fn append(path: &std::path::Path, record: &Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{record}")?;
    Ok(())
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

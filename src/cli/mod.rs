//! The command line: subcommands, logging set-up and exit codes.
//!
//! Exit codes: 0 success, 1 the work failed (a config with errors, a
//! device that did not answer), 2 bad usage (clap's own code).

mod alarms;
mod bridge;
mod check;
#[cfg(feature = "demo")]
mod demo;
mod inspect;
mod pidfile;
mod read;
mod reload;
mod run;
mod scan;
mod sim;
pub mod sparkplug;
mod table;
mod workorders;
mod writes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONFIG_PATH;

/// fieldgate: polls Modbus devices, buffers every reading in SQLite, runs
/// maintenance rules and publishes readings, alarms and work orders over MQTT.
#[derive(Debug, Parser)]
#[command(name = "fieldgate", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "FIELDGATE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the journal adds its own timestamps).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The config file option shared by the subcommands that read one.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH, env = "FIELDGATE_CONFIG")]
    pub path: PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check the configuration, then have the running gateway apply it (SIGHUP).
    Reload {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a configuration without touching any device; print every problem.
    Check {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigArg,
        /// Instead of the summary, print the resolved buses, devices, rules
        /// and meters as TOML, every setting written out: all of them, or
        /// one device and the rules and meters on its tags. Problems go to
        /// stderr, so the output can be redirected into a file.
        #[arg(long, value_name = "DEVICE", num_args = 0..=1)]
        expand: Option<Option<String>>,
    },
    /// Run a simulated plant, an MQTT broker, the gateway and a small CMMS
    /// together, with a live view.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Run the plant simulator standalone (Modbus servers backed by a seeded model).
    Sim {
        /// Scenario file (see config/sim/plant.toml).
        #[arg(short = 'c', long = "config")]
        scenario: PathBuf,
    },
    /// Probe a device's address ranges and print what answers.
    Scan(scan::ScanArgs),
    /// Read tags of one device once and print them with their raw registers.
    Read {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigArg,
        /// The device, by name.
        device: String,
        /// Tags to read (default: all of the device's).
        tags: Vec<String>,
    },
    /// Print every rule's alarm and the recent alarm changes, from the store
    /// (works while the gateway runs).
    Alarms(alarms::AlarmsArgs),
    /// Print the kept work orders and the recent work-order changes, from
    /// the store (works while the gateway runs).
    Workorders(workorders::WorkordersArgs),
    /// Print the recorded writes to tags (who, what, old, written, read
    /// back, result), newest last, from the store (works while the
    /// gateway runs).
    Writes(writes::WritesArgs),
    /// Sparkplug B tools: `watch` prints every message of the namespace on
    /// a broker, one line each (docs/sparkplug.md).
    Sparkplug(sparkplug::SparkplugArgs),
    /// Run the CMMS connectors for every gateway on a broker (an IT host's
    /// bridge; see docs/cmms.md).
    Bridge {
        /// The bridge's configuration file.
        #[arg(short = 'c', long = "config", env = "FIELDGATE_BRIDGE_CONFIG", default_value = DEFAULT_BRIDGE_CONFIG_PATH)]
        path: PathBuf,
        /// Only check the configuration and print every problem.
        #[arg(long)]
        check: bool,
    },
}

/// Where `bridge` looks when `-c` is not given.
pub const DEFAULT_BRIDGE_CONFIG_PATH: &str = "/etc/fieldgate/bridge.toml";

/// Sets up `tracing` on stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: the journal and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Sets up logging for `cli`'s command: [`init_logging`], except for
/// `demo`, whose live panel holds the log lines itself.
pub fn init_logging_for(cli: &Cli) {
    match &cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::init_logging(cli.log_format, args),
        _ => init_logging(cli.log_format),
    }
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check {
            config,
            expand: None,
        } => check::run(&config.path),
        Command::Check {
            config,
            expand: Some(device),
        } => check::expand(&config.path, device.as_deref()),
        Command::Run { config } => run::run(&config.path),
        Command::Reload { config } => reload::run(&config.path),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Sim { scenario } => sim::run(&scenario),
        Command::Read {
            config,
            device,
            tags,
        } => read::run(&config.path, &device, &tags),
        Command::Alarms(args) => alarms::run(&args),
        Command::Workorders(args) => workorders::run(&args),
        Command::Writes(args) => writes::run(&args),
        Command::Sparkplug(args) => sparkplug::run(args),
        Command::Bridge { path, check } => bridge::run(&path, check),
    }
}

/// Loads the config at `path`; when it has errors, prints every problem
/// (as `check` does) and `{path}: {refused}: N error(s)`, and gives exit
/// code 1.
fn load_config(path: &std::path::Path, refused: &str) -> Result<crate::config::Loaded, ExitCode> {
    crate::config::load(path).map_err(|problems| {
        eprint!("{problems}");
        eprintln!(
            "{}: {refused}: {} error(s)",
            path.display(),
            problems.error_count()
        );
        ExitCode::from(1)
    })
}

/// A multi-threaded tokio runtime, or exit code 1 with the reason.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("fieldgate: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// Resolves on the first SIGINT or SIGTERM. A second one exits at once
/// (code 130): what was committed is safe in SQLite's WAL; what was still
/// in memory is lost, which is what the operator asked for.
async fn signal() {
    first_signal().await;
    tokio::spawn(async {
        first_signal().await;
        eprintln!("fieldgate: second signal: exiting now");
        std::process::exit(130);
    });
}

async fn first_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

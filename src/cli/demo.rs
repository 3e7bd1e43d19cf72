//! `fieldgate demo`: parse the options, set up logging for the live view,
//! and hand over to [`crate::demo`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::LogFormat;
use crate::demo::{self, DemoOptions, Mode, Policy};

/// Options of `fieldgate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// End by itself after this long (`90s`, `5m`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Keep the store (and the demo's config) in this folder; default: a
    /// temporary folder, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this MQTT broker instead of starting one.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "broker_port")]
    pub broker: Option<String>,
    /// Start the embedded broker on this port; default 1883, or a free
    /// port when 1883 is taken.
    #[arg(long, value_name = "PORT")]
    pub broker_port: Option<u16>,
    /// Run this configuration instead of the built-in config/demo.toml
    /// (its devices are matched to the simulated ones by name).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Simulate this scenario instead of the built-in config/sim/demo.toml.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Print plain timestamped lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

impl DemoArgs {
    fn mode(&self) -> Mode {
        Mode::detect(self.plain)
    }
}

/// What the demo logs unless `RUST_LOG` says otherwise: warnings, but
/// not the rules stage's "alarm active" and "work order raised" (the view
/// reports alarms and work orders itself) nor the embedded broker's own
/// lines (it logs every connection and every disconnect, as errors too;
/// the gateway reports broker trouble itself).
pub const DEFAULT_LOG_FILTER: &str = "warn,fieldgate::pipeline::rules=error,rumqttd=off";

/// Logging for the demo ([`DEFAULT_LOG_FILTER`]). With the live panel the
/// lines are held for the view (a line on stderr would tear the panel);
/// otherwise they go to stderr as usual.
pub fn init_logging(format: LogFormat, args: &DemoArgs) {
    let custom = std::env::var("RUST_LOG").ok();
    let mut filter =
        tracing_subscriber::EnvFilter::new(custom.as_deref().unwrap_or(DEFAULT_LOG_FILTER));
    // A RUST_LOG that does not mention the broker still keeps it quiet.
    if custom.as_deref().is_some_and(|c| !c.contains("rumqttd"))
        && let Ok(quiet) = "rumqttd=off".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match (args.mode(), format) {
        (Mode::Live, LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(demo::log_lines())
            .try_init(),
        (Mode::Live, LogFormat::Json) => builder
            .with_ansi(false)
            .with_writer(demo::log_lines())
            .json()
            .try_init(),
        (Mode::Plain, LogFormat::Text) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
        (Mode::Plain, LogFormat::Json) => builder.with_writer(std::io::stderr).json().try_init(),
    };
}

/// Runs the demo; exit code 1 when it could not run.
pub fn run(args: DemoArgs) -> ExitCode {
    let mode = args.mode();
    let options = DemoOptions {
        duration: args.duration,
        data_dir: args.data_dir,
        broker: args.broker,
        broker_port: args.broker_port,
        config: args.config,
        scenario: args.scenario,
        mode,
        logs_held: mode == Mode::Live,
        policy: Policy::default(),
    };
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(demo::run(options, stop_signal())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            demo::restore_terminal();
            eprintln!("fieldgate demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM (the orderly stop). A second
/// one exits at once, as for `run`, after giving the terminal its cursor
/// back (an exit runs no destructor).
async fn stop_signal() {
    super::first_signal().await;
    tokio::spawn(async {
        super::first_signal().await;
        demo::restore_terminal();
        eprintln!("fieldgate: second signal: exiting now");
        std::process::exit(130);
    });
}

//! `fieldgate sparkplug watch`: a technician's view of the Sparkplug B
//! namespace on a broker, one readable line per message
//! (`docs/sparkplug.md`, "Watching it").
//!
//! The lines are made by the pure [`Viewer`]; this module only connects,
//! subscribes and hands each message over. The watcher is a plain
//! subscriber: its own client id, a clean session, nothing published (it
//! is not a host application: it sends no `STATE` and no command).

mod view;
#[cfg(test)]
mod view_tests;

pub use view::Viewer;

use std::future::Future;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use crate::config::{MqttConfig, Qos, Secret, TlsConfig};
use crate::contract::sparkplug::NAMESPACE;
use crate::mqtt::client::{MqttError, session_options};

/// The largest message the watcher takes: births of big edge nodes run to
/// megabytes, and a larger one would cost the connection.
pub const MAX_INCOMING: usize = 64 << 20;
/// The longest wait between two connection attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Options of `fieldgate sparkplug`.
#[derive(Debug, Clone, Args)]
pub struct SparkplugArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SparkplugCommand,
}

/// Subcommands of `fieldgate sparkplug`.
#[derive(Debug, Clone, Subcommand)]
pub enum SparkplugCommand {
    /// Print every Sparkplug B message on a broker, one line each: births,
    /// data with names resolved, deaths, host states.
    Watch(WatchArgs),
}

/// Options of `fieldgate sparkplug watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Take the broker, TLS and credentials from this gateway
    /// configuration's `[mqtt]` (and the group from its `[sparkplug]`);
    /// the options below override them.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "FIELDGATE_CONFIG"
    )]
    pub config: Option<PathBuf>,
    /// The broker, HOST:PORT (default 127.0.0.1:1883, 8883 with TLS).
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// Only this Sparkplug group (default: the configuration's group,
    /// else every group; `+` for every group).
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    pub group: Option<String>,
    /// TLS with the system's trust store (implied by the files below).
    #[arg(long)]
    pub tls: bool,
    /// TLS: the CA certificate(s) that sign the broker's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// TLS: client certificate for mutual TLS (PEM).
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// TLS: client private key for mutual TLS (PEM).
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// User name on the broker.
    #[arg(long)]
    pub username: Option<String>,
    /// A file holding the password (never on the command line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// End by itself after this long (`30s`, `5m`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// A `--group`: a Sparkplug group id, or `+`.
fn parse_group(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['/', '#']) || (s.contains('+') && s != "+") {
        return Err("a group id (no /, # or +), or + for every group".into());
    }
    Ok(s.to_owned())
}

/// What to watch, and how to reach the broker.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Broker, port, TLS, credentials and keep-alive (its client id is
    /// not used: the watcher has its own, so it never throws a gateway
    /// off the broker).
    pub mqtt: MqttConfig,
    /// The group, or `None` for every group.
    pub group: Option<String>,
}

impl WatchOptions {
    /// Watches `group` (every group for `None`) on `host:port`, without
    /// TLS or credentials.
    pub fn plain(host: &str, port: u16, group: Option<&str>) -> WatchOptions {
        WatchOptions {
            mqtt: bare_mqtt(host, port),
            group: group.map(str::to_owned),
        }
    }

    /// The subscription filters: the group's messages, and the host
    /// applications' `STATE` (already under `spBv1.0/+/#` when every
    /// group is watched, and subscribing twice could bring it twice).
    pub fn filters(&self) -> Vec<String> {
        match self.group.as_deref() {
            None | Some("+") => vec![format!("{NAMESPACE}/+/#")],
            Some(g) => vec![format!("{NAMESPACE}/{g}/#"), format!("{NAMESPACE}/STATE/+")],
        }
    }

    fn mqtt_options(&self) -> Result<MqttOptions, MqttError> {
        let mut mqtt = self.mqtt.clone();
        mqtt.client_id = format!(
            "fieldgate-watch-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut options = session_options(&mqtt)?;
        // A viewer: nothing kept for it while away, messages taken as they come.
        options.set_clean_session(true);
        options.set_manual_acks(false);
        options.set_max_packet_size(MAX_INCOMING, 64 << 10);
        Ok(options)
    }
}

/// `[mqtt]` as a bare broker address gives it.
fn bare_mqtt(host: &str, port: u16) -> MqttConfig {
    MqttConfig {
        host: host.to_owned(),
        port,
        client_id: "fieldgate-watch".into(),
        username: None,
        password: None,
        tls: None,
        topic_prefix: "fieldgate".into(),
        qos: Qos::AtLeastOnce,
        keep_alive: Duration::from_secs(30),
        max_inflight: 10,
        live_share: 0.5,
        per_tag_topics: false,
        max_packet_size: MAX_INCOMING as u64,
    }
}

/// One line of the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchLine {
    /// A message received (stdout).
    Message(String),
    /// The watcher's own news: connected, lost, retrying (stderr).
    Notice(String),
}

/// How a watch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchSummary {
    /// Messages received.
    pub messages: u64,
    /// The broker took the subscriptions at least once.
    pub subscribed: bool,
}

/// Watches until `stop` resolves or `out` says to stop, giving each line
/// to `out`. Connection failures are told as notices and retried (1 s,
/// doubling to 10 s); only TLS set-up errors end it early.
pub async fn watch<F>(
    options: &WatchOptions,
    stop: impl Future<Output = ()>,
    mut out: F,
) -> Result<WatchSummary, MqttError>
where
    F: FnMut(WatchLine) -> ControlFlow<()>,
{
    let mqtt_options = options.mqtt_options()?;
    let broker = format!("{}:{}", options.mqtt.host, options.mqtt.port);
    let filters = options.filters();
    let (client, mut eventloop) = AsyncClient::new(mqtt_options, 16);
    let mut viewer = Viewer::new();
    let mut summary = WatchSummary::default();
    let mut retry = Duration::from_secs(1);
    // The subscriptions of this connection were confirmed and told.
    let mut announced = false;
    let notice = |text: String| WatchLine::Notice(text);
    tokio::pin!(stop);
    loop {
        // Stopping mid-poll is fine: the event loop is not polled again.
        let event = tokio::select! {
            () = &mut stop => break,
            event = eventloop.poll() => event,
        };
        let flow = match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                retry = Duration::from_secs(1);
                announced = false;
                // A clean session: subscribe again on every connection.
                for filter in &filters {
                    if let Err(e) = client.try_subscribe(filter.as_str(), QoS::AtMostOnce) {
                        let _ = out(notice(format!("cannot subscribe to {filter}: {e}")));
                    }
                }
                ControlFlow::Continue(())
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) if !announced => {
                announced = true;
                summary.subscribed = true;
                out(notice(format!(
                    "watching {} on {broker}",
                    filters.join(" and ")
                )))
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                summary.messages += 1;
                out(WatchLine::Message(viewer.line(
                    &p.topic,
                    &p.payload,
                    SystemTime::now(),
                )))
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                let flow = out(notice(format!(
                    "{broker}: {e}; trying again in {}",
                    humantime::format_duration(retry)
                )));
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
                flow
            }
        };
        if flow.is_break() {
            break;
        }
    }
    // A polite goodbye, if the connection is up; a watcher leaves nothing behind.
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(event) = eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
    Ok(summary)
}

/// Runs `fieldgate sparkplug …`.
pub fn run(args: SparkplugArgs) -> ExitCode {
    match args.command {
        SparkplugCommand::Watch(w) => run_watch(&w),
    }
}

fn run_watch(args: &WatchArgs) -> ExitCode {
    let options = match watch_options(args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let duration = args.duration;
    let stop = async move {
        match duration {
            Some(d) => tokio::select! {
                () = super::signal() => {}
                () = tokio::time::sleep(d) => {}
            },
            None => super::signal().await,
        }
    };
    let result = runtime.block_on(watch(&options, stop, |line| match line {
        WatchLine::Message(text) => {
            // A closed pipe (`| head`) ends the watch quietly.
            match writeln!(std::io::stdout().lock(), "{text}") {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        }
        WatchLine::Notice(text) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "fieldgate sparkplug watch: {text}"
            );
            ControlFlow::Continue(())
        }
    }));
    match result {
        Ok(summary) if summary.subscribed => ExitCode::SUCCESS,
        Ok(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "fieldgate sparkplug watch: never connected to {}:{}",
                options.mqtt.host,
                options.mqtt.port
            );
            ExitCode::from(1)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "fieldgate sparkplug watch: {e}");
            ExitCode::from(1)
        }
    }
}

/// The options the command line asks for: the configuration's `[mqtt]`
/// (with `-c`), then the flags over it.
fn watch_options(args: &WatchArgs) -> Result<WatchOptions, ExitCode> {
    let fail = |what: String| {
        let _ = writeln!(std::io::stderr(), "fieldgate sparkplug watch: {what}");
        ExitCode::from(1)
    };
    let (mut mqtt, config_group) = match &args.config {
        Some(path) => {
            let loaded = super::load_config(path, "not watched")?;
            let group = loaded.config.sparkplug.map(|s| s.group_id);
            (loaded.config.mqtt, group)
        }
        None => (bare_mqtt("127.0.0.1", 1883), None),
    };
    let tls_asked =
        args.tls || args.ca_file.is_some() || args.cert_file.is_some() || args.key_file.is_some();
    if tls_asked {
        let mut tls = mqtt.tls.take().unwrap_or(TlsConfig {
            ca_file: None,
            cert_file: None,
            key: None,
        });
        if let Some(ca) = &args.ca_file {
            tls.ca_file = Some(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
            tls.cert_file = Some(cert.clone());
            tls.key = Some(
                Secret::from_file(key)
                    .map_err(|e| fail(format!("cannot read {}: {e}", key.display())))?,
            );
        }
        mqtt.tls = Some(tls);
        if args.config.is_none() {
            mqtt.port = 8883;
        }
    }
    if let Some(broker) = &args.broker {
        let (host, port) = parse_broker(broker).map_err(|e| fail(format!("--broker: {e}")))?;
        mqtt.host = host;
        if let Some(port) = port {
            mqtt.port = port;
        }
    }
    if let Some(user) = &args.username {
        mqtt.username = Some(user.clone());
    }
    if let Some(file) = &args.password_file {
        mqtt.password = Some(
            Secret::from_file(file)
                .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?,
        );
    }
    let group = match args.group.as_deref() {
        Some("+") => None,
        Some(g) => Some(g.to_owned()),
        None => config_group,
    };
    Ok(WatchOptions { mqtt, group })
}

/// `HOST:PORT`, `HOST`, `[IPv6]:PORT` or a bare IPv6 address.
fn parse_broker(s: &str) -> Result<(String, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: no closing ]"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_owned(), Some(port(p)?))),
            None if after.is_empty() => Ok((host.to_owned(), None)),
            None => Err(format!("{s:?}: expected [HOST]:PORT")),
        };
    }
    match s.rsplit_once(':') {
        // Two colons or more: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Ok((s.to_owned(), None)),
        Some((host, p)) if !host.is_empty() => Ok((host.to_owned(), Some(port(p)?))),
        Some(_) => Err(format!("{s:?}: no host")),
        None if s.is_empty() => Err("empty".into()),
        None => Ok((s.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("broker.local:1884"),
            Ok(("broker.local".into(), Some(1884)))
        );
        assert_eq!(
            parse_broker("broker.local"),
            Ok(("broker.local".into(), None))
        );
        assert_eq!(parse_broker("[::1]:1883"), Ok(("::1".into(), Some(1883))));
        assert_eq!(parse_broker("::1"), Ok(("::1".into(), None)));
        assert!(parse_broker("host:port").is_err());
        assert!(parse_broker(":1883").is_err());
        assert!(parse_broker("").is_err());
    }

    #[test]
    fn groups_and_filters() {
        assert!(parse_group("plant/a").is_err());
        assert!(parse_group("a+").is_err());
        assert!(parse_group("#").is_err());
        assert_eq!(parse_group("+"), Ok("+".into()));
        let every = WatchOptions::plain("h", 1, None);
        assert_eq!(every.filters(), ["spBv1.0/+/#"]);
        let one = WatchOptions::plain("h", 1, Some("demo"));
        assert_eq!(one.filters(), ["spBv1.0/demo/#", "spBv1.0/STATE/+"]);
    }

    #[test]
    fn the_watcher_never_takes_the_gateways_client_id() {
        let mut o = WatchOptions::plain("h", 1, None);
        o.mqtt.client_id = "gw1".into();
        let options = o.mqtt_options().unwrap();
        assert!(options.client_id().starts_with("fieldgate-watch-"));
        assert!(options.clean_session());
    }
}

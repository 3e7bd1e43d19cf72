//! `fieldgate check`: validate a configuration and print every problem.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::modbus::plan::ReadPlan;
use crate::modbus::poller;

/// Prints every problem (errors and warnings) and, when the config is
/// usable, a summary of what it will do. Exit code 1 when there are errors.
pub fn run(path: &Path) -> ExitCode {
    let (text, code) = match config::load(path) {
        Ok(loaded) => {
            let mut text: String = loaded.warnings.iter().map(|w| format!("{w}\n")).collect();
            text.push_str(&summary(&loaded.config));
            let n = loaded.warnings.len();
            text.push_str(&format!(
                "{}: OK{}\n",
                path.display(),
                if n > 0 {
                    format!(" ({n} warning{})", plural(n))
                } else {
                    String::new()
                }
            ));
            (text, ExitCode::SUCCESS)
        }
        Err(problems) => {
            let (e, w) = (problems.error_count(), problems.warning_count());
            let text = format!(
                "{problems}{}: {e} error{}, {w} warning{}\n",
                path.display(),
                plural(e),
                plural(w)
            );
            (text, ExitCode::from(1))
        }
    };
    // A reader that stops early (`check | head` on a 200-device plant)
    // is no failure of the config: the exit code still tells.
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("fieldgate: cannot write the report: {e}");
            ExitCode::from(1)
        }
        _ => code,
    }
}

/// `check --expand [DEVICE]`: the resolved devices, rules and meters as
/// TOML on stdout and nothing else, so the output can go into a file;
/// problems, warnings and the closing line go to stderr. Exit code 1 when
/// the config has errors or has no such device.
pub fn expand(path: &Path, device: Option<&str>) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprint!("{problems}");
            let (e, w) = (problems.error_count(), problems.warning_count());
            eprintln!(
                "{}: {e} error{}, {w} warning{}; nothing to expand",
                path.display(),
                plural(e),
                plural(w)
            );
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let body = match config::expand(&loaded.config, device) {
        Ok(body) => body,
        Err(unknown) => {
            eprintln!("{}: {unknown}", path.display());
            return ExitCode::from(1);
        }
    };
    let what = match device {
        Some(name) => format!("device {name} and the rules and meters on its tags"),
        None => "every bus, device, rule and meter".to_owned(),
    };
    // The path goes into a comment line, which a line break would end.
    let file: String = path
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let text = format!(
        "# {file} (config {}) as loaded: {what}\n\n{body}",
        loaded.config.short_hash(),
    );
    // A reader that stops early (`| head`) is no failure of the config.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("fieldgate: cannot write the expansion: {e}");
            return ExitCode::from(1);
        }
        return ExitCode::SUCCESS;
    }
    let n = loaded.warnings.len();
    eprintln!(
        "{}: OK{}",
        path.display(),
        if n > 0 {
            format!(" ({n} warning{})", plural(n))
        } else {
            String::new()
        }
    );
    ExitCode::SUCCESS
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What the config will do, device by device.
pub fn summary(config: &Config) -> String {
    let tags: usize = config.devices.iter().map(|d| d.tags.len()).sum();
    let mut out = format!(
        "gateway {}/{} (config {}): {} device{}, {} tag{}, {} bus{}, {} rule{}, {} meter{}\n",
        config.gateway.site,
        config.gateway.id,
        config.short_hash(),
        config.devices.len(),
        plural(config.devices.len()),
        tags,
        plural(tags),
        config.buses.len(),
        if config.buses.len() == 1 { "" } else { "es" },
        config.rules.len(),
        plural(config.rules.len()),
        config.meters.len(),
        plural(config.meters.len()),
    );
    for d in &config.devices {
        let link = match &d.connection {
            config::Connection::Rtu { bus } => format!("rtu on {bus}"),
            config::Connection::Tcp { .. } => {
                format!("tcp {}", d.connection.endpoint().unwrap_or_default())
            }
            config::Connection::RtuOverTcp { .. } => {
                format!(
                    "rtu-over-tcp {}",
                    d.connection.endpoint().unwrap_or_default()
                )
            }
        };
        let plan = ReadPlan::new(&d.tags, poller::limits(d));
        let requests = plan.requests().len();
        let registers: u32 = plan
            .requests()
            .iter()
            .filter(|r| !r.area.is_bit())
            .map(|r| u32::from(r.count))
            .sum();
        let bits: u32 = plan
            .requests()
            .iter()
            .filter(|r| r.area.is_bit())
            .map(|r| u32::from(r.count))
            .sum();
        let mut read = format!("{registers} register{}", plural(registers as usize));
        if bits > 0 {
            read.push_str(&format!(" and {bits} bit{}", plural(bits as usize)));
        }
        out.push_str(&format!(
            "  {:<16} {} unit {}, every {}: {} tag{} in {} request{} reading {}\n",
            d.name,
            link,
            d.unit,
            humantime::format_duration(d.poll_interval),
            d.tags.len(),
            plural(d.tags.len()),
            requests,
            plural(requests),
            read
        ));
    }
    // Templates in the order first used, each with its devices.
    let mut templates: Vec<(&str, usize)> = Vec::new();
    for t in config.devices.iter().filter_map(|d| d.template.as_deref()) {
        match templates.iter_mut().find(|(name, _)| *name == t) {
            Some((_, n)) => *n += 1,
            None => templates.push((t, 1)),
        }
    }
    if !templates.is_empty() {
        let list: Vec<String> = templates
            .iter()
            .map(|(t, n)| format!("{t} ({n} device{})", plural(*n)))
            .collect();
        out.push_str(&format!("  {:<16} {}\n", "templates", list.join(", ")));
    }
    for c in &config.cmms {
        out.push_str(&format!("  cmms {:<11} {}\n", c.name, connector(c)));
    }
    if let Some(s) = &config.sparkplug {
        out.push_str(&format!("  {:<16} {}\n", "sparkplug", s.summary()));
    }
    if let Some(w) = config.writes_summary() {
        out.push_str(&format!("  {:<16} {w}\n", "writes"));
    }
    out
}

/// What a connector delivers, where: only the URL's scheme and host,
/// since its path or query may hold a token.
fn connector(c: &config::CmmsConfig) -> String {
    let to = reqwest::Url::parse(&c.url)
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()))
        .unwrap_or_default();
    let mut what = Vec::new();
    if c.work_orders {
        what.push("work orders".to_owned());
    }
    if !c.meters.is_empty() {
        what.push(format!(
            "{} meter{}",
            c.meters.len(),
            plural(c.meters.len())
        ));
    }
    // A webhook has no status to poll: its endpoint can only push one.
    let status = match (&c.kind, c.poll_interval) {
        (config::CmmsKind::Webhook(_), _) => String::new(),
        (_, Some(every)) => format!(
            ", status polled every {}",
            humantime::format_duration(every)
        ),
        (_, None) => ", status not polled".to_owned(),
    };
    format!(
        "{} {to}: {}{status}",
        c.kind.as_str(),
        if what.is_empty() {
            "nothing".to_owned()
        } else {
            what.join(" and ")
        }
    )
}

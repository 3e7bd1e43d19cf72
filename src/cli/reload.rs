//! `fieldgate reload`: check the configuration, then ask the running
//! gateway to apply it (SIGHUP to the pid in `{data_dir}/fieldgate.pid`)
//! and report what it did, from the store's config log.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::{Pid, Signal, kill_process};

use super::pidfile::{self, PID_FILE};
use crate::store::inspect::Inspector;

/// How long to wait for the gateway to record the new configuration.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// Validates the config at `path`, signals the gateway, waits for the
/// result. Exit 0 when applied (or already running), 1 otherwise.
pub fn run(path: &Path) -> ExitCode {
    let loaded = match super::load_config(
        path,
        "not reloaded (the gateway keeps its running configuration)",
    ) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let config = loaded.config;
    let pid_path = config.gateway.data_dir.join(PID_FILE);
    let pid = match pidfile::read(&pid_path) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!(
                "fieldgate reload: cannot read {}: {e} (is `fieldgate run` running with this config?)",
                pid_path.display()
            );
            return ExitCode::from(1);
        }
    };
    if !is_fieldgate(pid) {
        eprintln!(
            "fieldgate reload: process {pid} from {} is not a running fieldgate (a stale file?)",
            pid_path.display()
        );
        return ExitCode::from(1);
    }
    let running = Inspector::open(&config.store.path)
        .and_then(|i| i.config_log(1))
        .ok()
        .and_then(|log| log.last().map(|r| r.hash.clone()));
    if running.as_deref() == Some(config.hash.as_str()) {
        // The hash leaves secrets out (an inline password must not be
        // guessable from it), so say how to apply a changed secret.
        println!(
            "fieldgate (pid {pid}) already runs configuration {}; nothing to reload (a changed password or secret file is not in the hash: apply it with `systemctl reload fieldgate` or `kill -HUP {pid}`)",
            config.short_hash()
        );
        return ExitCode::SUCCESS;
    }
    let sent_at = SystemTime::now();
    let signalled = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or(rustix::io::Errno::INVAL)
        .and_then(|p| kill_process(p, Signal::HUP));
    if let Err(e) = signalled {
        eprintln!("fieldgate reload: cannot signal process {pid}: {e}");
        return ExitCode::from(1);
    }
    println!(
        "sent SIGHUP to fieldgate (pid {pid}); configuration {}",
        config.short_hash()
    );
    wait_for_record(&config.store.path, &config.hash, sent_at)
}

/// Whether `pid` is a process whose command is fieldgate.
fn is_fieldgate(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().starts_with("fieldgate"))
        // Without /proc (not Linux), trust the pid file.
        .unwrap_or_else(|_| !Path::new("/proc/self").exists())
}

/// Waits until the config log records `hash` after `since`.
fn wait_for_record(store: &Path, hash: &str, since: SystemTime) -> ExitCode {
    let deadline = Instant::now() + APPLY_WAIT;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(inspector) = Inspector::open(store) else {
            continue;
        };
        let Ok(log) = inspector.config_log(5) else {
            continue;
        };
        // Times are kept to the millisecond.
        let since_ms = since - Duration::from_millis(1);
        if let Some(record) = log
            .iter()
            .rev()
            .find(|r| r.hash == hash && r.at >= since_ms)
        {
            println!("applied: {}", record.summary);
            return ExitCode::SUCCESS;
        }
    }
    eprintln!(
        "fieldgate reload: the gateway did not record configuration {} within {APPLY_WAIT:?}; it may have refused it — see its log (journalctl -u fieldgate)",
        &hash[..hash.len().min(12)]
    );
    ExitCode::from(1)
}

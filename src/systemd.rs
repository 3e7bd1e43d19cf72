//! systemd integration (sd_notify(3)): readiness, reload and stop
//! notices, and the watchdog. Without `NOTIFY_SOCKET` (not started by
//! systemd, or `Type=simple`) every call does nothing, so `fieldgate run`
//! works the same from a shell.
//!
//! The watchdog is fed only while the pipeline's [`Heartbeat`] is fresh:
//! a timer alone would keep a gateway whose main loop is stuck alive for
//! ever. When the loop stops beating for a whole watchdog interval,
//! fieldgate stops feeding, and systemd restarts it (`WatchdogSec=`,
//! `Restart=on-failure`).

use std::time::Duration;

use sd_notify::NotifyState;

use crate::heartbeat::Heartbeat;
use crate::shutdown::Shutdown;

/// Tells systemd the gateway is up (config valid, store open).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd a reload has started; [`ready`] ends it.
pub fn reloading() {
    // `Type=notify-reload` wants the monotonic time with RELOADING=1.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd the gateway is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A one-line status for `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Feeds the watchdog twice per `interval` while `heartbeat` is younger
/// than `interval`, until `shutdown`.
pub async fn watchdog(interval: Duration, heartbeat: Heartbeat, mut shutdown: Shutdown) {
    let period = interval / 2;
    let mut starved = false;
    loop {
        tokio::select! {
            () = shutdown.recv() => return,
            () = tokio::time::sleep(period) => {}
        }
        let age = heartbeat.age();
        if age < interval {
            send(&[NotifyState::Watchdog]);
            starved = false;
        } else if !starved {
            // Said once; systemd will restart the service.
            tracing::error!(
                ?age,
                ?interval,
                "main loop stuck: no longer feeding the systemd watchdog"
            );
            starved = true;
        }
    }
}

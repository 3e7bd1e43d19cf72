//! The Sparkplug B edge node as `/metrics`, `/api/status` and the status
//! page show it: who it is (`[sparkplug]`), its figures (written by the
//! edge node's task) and its rows waiting in the outbox (asked of the
//! store at each scrape). Pure: the store's answer is gathered by the
//! caller.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::SparkplugConfig;
use crate::mqtt::sparkplug::EdgeNodeStats;
use crate::store::Stats;

/// The edge node at one moment; there is none when `[sparkplug]` is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparkplugSnapshot {
    /// `[sparkplug] group_id`.
    pub group_id: String,
    /// `[sparkplug] edge_node_id`.
    pub edge_node_id: String,
    /// `[sparkplug] primary_host_id`: the host whose `STATE` gates the
    /// births.
    pub primary_host_id: Option<String>,
    /// A connection to the broker is up.
    pub connected: bool,
    /// The births are out: hosts see the node online and its rows flow.
    pub online: bool,
    /// The primary host's last `STATE` said online; `None` without a
    /// primary host.
    pub primary_host_online: Option<bool>,
    /// The `bdSeq` of the current (or last) session; `None` before the
    /// first session began.
    pub bd_seq: Option<u64>,
    /// Sessions begun (connection attempts), since the start.
    pub sessions: u64,
    /// NBIRTHs published (first births and rebirths).
    pub births: u64,
    /// Rebirth requests received (NCMD), answered or merged.
    pub rebirth_requests: u64,
    /// Rows published live.
    pub published: u64,
    /// Rows published as history (`is_historical`).
    pub historical: u64,
    /// Rows the broker confirmed, deleted from the outbox.
    pub confirmed: u64,
    /// Rows that could never be sent, deleted.
    pub dropped: u64,
    /// Times a row was kept for the next session (its device not born).
    pub held: u64,
    /// Inbound messages refused (malformed, not writable, a stale STATE).
    pub inbound_refused: u64,
    /// Rows of the Sparkplug namespace waiting in the outbox; `None` when
    /// the store did not answer.
    pub outbox_messages: Option<u64>,
}

impl SparkplugSnapshot {
    /// The edge node of `config`: its figures from `stats`, its waiting
    /// rows from `store` (`None`: the store did not answer).
    pub fn of(
        config: &SparkplugConfig,
        stats: &EdgeNodeStats,
        store: Option<&Stats>,
    ) -> SparkplugSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sessions = load(&stats.sessions);
        SparkplugSnapshot {
            group_id: config.group_id.clone(),
            edge_node_id: config.edge_node_id.clone(),
            primary_host_id: config.primary_host_id.clone(),
            connected: stats.connected.load(Ordering::Relaxed),
            online: stats.born.load(Ordering::Relaxed),
            // Only a configured host has a state worth showing: the flag
            // means nothing without one.
            primary_host_online: config
                .primary_host_id
                .as_ref()
                .map(|_| stats.host_online.load(Ordering::Relaxed)),
            // Until a session begins the figure is the counter's zero, not
            // a number hosts saw.
            bd_seq: (sessions > 0).then(|| load(&stats.bd_seq)),
            sessions,
            births: load(&stats.births),
            rebirth_requests: load(&stats.rebirth_requests),
            published: load(&stats.published),
            historical: load(&stats.historical),
            confirmed: load(&stats.confirmed),
            dropped: load(&stats.dropped),
            held: load(&stats.held),
            inbound_refused: load(&stats.inbound_refused),
            outbox_messages: store.map(|s| s.sparkplug_messages),
        }
    }

    /// Connected but not online because the primary host has not said it
    /// is online: the node's rows wait in the outbox meanwhile.
    pub fn waiting_for_host(&self) -> bool {
        self.connected && !self.online && self.primary_host_online == Some(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn config(primary_host_id: Option<&str>) -> SparkplugConfig {
        SparkplugConfig {
            group_id: "plant-a".into(),
            edge_node_id: "gw1".into(),
            primary_host_id: primary_host_id.map(str::to_owned),
            json_readings: true,
            client_id: "gw1-spb".into(),
        }
    }

    #[test]
    fn before_the_first_session_nothing_is_known_but_the_names() {
        let stats = EdgeNodeStats::default();
        let s = SparkplugSnapshot::of(&config(None), &stats, None);
        assert_eq!(
            (s.group_id.as_str(), s.edge_node_id.as_str()),
            ("plant-a", "gw1")
        );
        assert_eq!(s.bd_seq, None);
        assert_eq!(s.primary_host_online, None);
        assert_eq!(s.outbox_messages, None);
        assert!(!s.connected && !s.online && !s.waiting_for_host());
    }

    #[test]
    fn the_figures_the_edge_node_wrote_and_the_rows_waiting() {
        let stats = EdgeNodeStats::default();
        stats.connected.store(true, Ordering::Relaxed);
        stats.bd_seq.store(0, Ordering::Relaxed);
        stats.sessions.store(1, Ordering::Relaxed);
        stats.historical.store(12, Ordering::Relaxed);
        stats.held.store(2, Ordering::Relaxed);
        let store = Stats {
            messages: 40,
            sparkplug_messages: 25,
            ..Stats::default()
        };
        let s = SparkplugSnapshot::of(&config(Some("scada")), &stats, Some(&store));
        // bdSeq 0 of a session that began is a real number.
        assert_eq!(s.bd_seq, Some(0));
        assert_eq!((s.historical, s.held), (12, 2));
        assert_eq!(s.outbox_messages, Some(25));
        assert_eq!(s.primary_host_id.as_deref(), Some("scada"));
        assert_eq!(s.primary_host_online, Some(false));
        assert!(s.waiting_for_host());

        stats.host_online.store(true, Ordering::Relaxed);
        stats.born.store(true, Ordering::Relaxed);
        stats.births.store(1, Ordering::Relaxed);
        let s = SparkplugSnapshot::of(&config(Some("scada")), &stats, Some(&store));
        assert!(s.online && !s.waiting_for_host());
        assert_eq!((s.primary_host_online, s.births), (Some(true), 1));
    }

    #[test]
    fn without_a_primary_host_the_host_flag_is_not_shown() {
        let stats = EdgeNodeStats::default();
        stats.connected.store(true, Ordering::Relaxed);
        // The flag stays false without a host: it must not read as
        // "waiting".
        let s = SparkplugSnapshot::of(&config(None), &stats, None);
        assert_eq!(s.primary_host_online, None);
        assert!(!s.waiting_for_host());
    }
}

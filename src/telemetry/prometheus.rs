//! The Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! Written by hand into one `String`: the format is small and stable, the
//! figures already live in our own atomics, and a metrics crate would keep
//! a second copy of every figure in its own registry. Every name and label
//! is documented in `docs/metrics.md`; a change here changes that file.
//!
//! Conventions: everything is named `fieldgate_…`; counters end in
//! `_total`; units are in the name and are the base units (`_seconds`,
//! `_bytes`); a figure that is not known (a device never answered, `/proc`
//! missing) is left out rather than shown as 0.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Snapshot;
use super::rules_view::PRIORITIES;
use crate::modbus::histogram::{BOUNDS_LE, HistogramSnapshot};
use crate::modbus::probe::{DeviceState, ERROR_REASONS, POLL_RESULTS};
use crate::rules::Measure;
use crate::store::{DiskFault, Stats};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `s` as Prometheus text.
pub fn render(s: &Snapshot) -> String {
    let mut out = Out(String::with_capacity(4096 + s.devices.len() * 3072));
    gateway(&mut out, s);
    devices(&mut out, s);
    suppressed(&mut out, s);
    links(&mut out, s);
    outbox(&mut out, s);
    mqtt(&mut out, s);
    sparkplug(&mut out, s);
    writes(&mut out, s);
    cmms(&mut out, s);
    rules(&mut out, s);
    process(&mut out, s);
    events(&mut out, s);
    out.0
}

fn suppressed(out: &mut Out, s: &Snapshot) {
    if s.devices.is_empty() {
        return;
    }
    out.family(
        "fieldgate_device_readings_suppressed_total",
        "counter",
        "Readings the deadband filter kept back (report by exception): unchanged within the tag's deadband and younger than max_silence.",
    );
    for (d, n) in s.devices.iter().zip(&s.suppressed) {
        out.int(
            "fieldgate_device_readings_suppressed_total",
            &[("device", d.name.as_str())],
            *n,
        );
    }
}

fn events(out: &mut Out, s: &Snapshot) {
    out.family(
        "fieldgate_events_total",
        "counter",
        "Notable occurrences, one per journal line of that kind (readings_evicted and readings_suppressed count readings).",
    );
    for (event, n) in &s.events {
        out.int("fieldgate_events_total", &[("event", event)], *n);
    }
}

fn gateway(out: &mut Out, s: &Snapshot) {
    out.family(
        "fieldgate_build_info",
        "gauge",
        "Always 1; the labels say which build runs which configuration.",
    );
    out.int(
        "fieldgate_build_info",
        &[
            ("version", s.info.version),
            ("config_hash", &s.info.config_hash),
        ],
        1,
    );
    out.family(
        "fieldgate_start_time_seconds",
        "gauge",
        "When the process started, Unix time.",
    );
    out.float("fieldgate_start_time_seconds", &[], unix(s.info.started));
    out.family(
        "fieldgate_pipeline_idle_seconds",
        "gauge",
        "Time since the pipeline task last reported; above 30 s /healthz fails.",
    );
    out.float(
        "fieldgate_pipeline_idle_seconds",
        &[],
        s.pipeline_idle.as_secs_f64(),
    );
    out.family(
        "fieldgate_uptime_seconds",
        "gauge",
        "Time since the process started, by the monotonic clock (a step of the wall clock does not change it).",
    );
    out.float("fieldgate_uptime_seconds", &[], s.uptime.as_secs_f64());
    // Left out when the kernel would not say (not a Linux kernel).
    if let Some(synced) = s.clock_synced {
        out.family(
            "fieldgate_clock_synchronised",
            "gauge",
            "1 when the kernel reports the wall clock synchronised (NTP), 0 when not: timestamps made meanwhile may be wrong.",
        );
        out.int("fieldgate_clock_synchronised", &[], u64::from(synced));
    }
}

fn devices(out: &mut Out, s: &Snapshot) {
    if s.devices.is_empty() {
        return;
    }
    let labels = |d: &super::DeviceSnapshot| [("device", d.name.clone()), ("link", d.link.clone())];

    out.family(
        "fieldgate_device_up",
        "gauge",
        "1 while the device answers its polls, 0 while it fails or before its first poll.",
    );
    for d in &s.devices {
        let l = labels(d);
        out.int(
            "fieldgate_device_up",
            &refs(&l),
            u64::from(d.state == DeviceState::Polling),
        );
    }
    out.family(
        "fieldgate_device_polls_total",
        "counter",
        "Polls by result: ok (answered, possibly in part), failed (no answer, or no connection), skipped (not sent while the device or its link backs off).",
    );
    for d in &s.devices {
        let l = labels(d);
        for (result, n) in POLL_RESULTS.iter().zip(d.polls) {
            out.int(
                "fieldgate_device_polls_total",
                &with(&l, ("result", result)),
                n,
            );
        }
    }
    out.family(
        "fieldgate_device_request_errors_total",
        "counter",
        "Failed Modbus requests by reason (retries included).",
    );
    for d in &s.devices {
        let l = labels(d);
        for (reason, n) in ERROR_REASONS.iter().zip(d.errors) {
            out.int(
                "fieldgate_device_request_errors_total",
                &with(&l, ("reason", reason)),
                n,
            );
        }
    }
    out.family(
        "fieldgate_device_registers_read_total",
        "counter",
        "Registers and coils/inputs received in good answers.",
    );
    for d in &s.devices {
        out.int(
            "fieldgate_device_registers_read_total",
            &refs(&labels(d)),
            d.registers,
        );
    }
    out.family(
        "fieldgate_device_request_duration_seconds",
        "histogram",
        "Time from sending a Modbus request to its answer (good or exception); timeouts are not included.",
    );
    for d in &s.devices {
        out.histogram(
            "fieldgate_device_request_duration_seconds",
            &refs(&labels(d)),
            &d.latency,
        );
    }
    if s.devices.iter().any(|d| d.last_response.is_some()) {
        out.family(
            "fieldgate_device_last_response_seconds",
            "gauge",
            "Latency of the device's last answer.",
        );
        for d in &s.devices {
            if let Some(t) = d.last_response {
                out.float(
                    "fieldgate_device_last_response_seconds",
                    &refs(&labels(d)),
                    t.as_secs_f64(),
                );
            }
        }
    }
    if s.devices.iter().any(|d| d.last_success.is_some()) {
        out.family(
            "fieldgate_device_last_success_timestamp_seconds",
            "gauge",
            "When the device's last answered poll started, Unix time.",
        );
        for d in &s.devices {
            if let Some(t) = d.last_success {
                out.float(
                    "fieldgate_device_last_success_timestamp_seconds",
                    &refs(&labels(d)),
                    unix(t),
                );
            }
        }
    }
    if s.devices.iter().any(|d| d.state == DeviceState::Failing) {
        out.family(
            "fieldgate_device_failing_since_timestamp_seconds",
            "gauge",
            "While the device fails: when its first failed poll started, Unix time.",
        );
        for d in &s.devices {
            if let (DeviceState::Failing, Some(t)) = (d.state, d.since) {
                out.float(
                    "fieldgate_device_failing_since_timestamp_seconds",
                    &refs(&labels(d)),
                    unix(t),
                );
            }
        }
    }
}

fn links(out: &mut Out, s: &Snapshot) {
    if s.links.is_empty() {
        return;
    }
    let labels = |l: &super::LinkSnapshot| [("link", l.label.clone())];
    out.family(
        "fieldgate_link_connected",
        "gauge",
        "1 while the link's TCP connection or serial port is open.",
    );
    for l in &s.links {
        out.int(
            "fieldgate_link_connected",
            &refs(&labels(l)),
            u64::from(l.connected),
        );
    }
    out.family(
        "fieldgate_link_reconnects_total",
        "counter",
        "Connections (or port openings) after the first.",
    );
    for l in &s.links {
        out.int(
            "fieldgate_link_reconnects_total",
            &refs(&labels(l)),
            l.reconnects,
        );
    }
    out.family(
        "fieldgate_link_connect_failures_total",
        "counter",
        "Connection attempts that failed.",
    );
    for l in &s.links {
        out.int(
            "fieldgate_link_connect_failures_total",
            &refs(&labels(l)),
            l.connect_failures,
        );
    }
    out.family(
        "fieldgate_link_polls_total",
        "counter",
        "Polls of the link's devices by result (see fieldgate_device_polls_total).",
    );
    for l in &s.links {
        let lb = labels(l);
        for (result, n) in POLL_RESULTS.iter().zip(l.polls) {
            out.int(
                "fieldgate_link_polls_total",
                &with(&lb, ("result", result)),
                n,
            );
        }
    }
    out.family(
        "fieldgate_link_request_errors_total",
        "counter",
        "Failed requests to the link's devices by reason.",
    );
    for l in &s.links {
        let lb = labels(l);
        for (reason, n) in ERROR_REASONS.iter().zip(l.errors) {
            out.int(
                "fieldgate_link_request_errors_total",
                &with(&lb, ("reason", reason)),
                n,
            );
        }
    }
    out.family(
        "fieldgate_link_registers_read_total",
        "counter",
        "Registers and bits read from the link's devices.",
    );
    for l in &s.links {
        out.int(
            "fieldgate_link_registers_read_total",
            &refs(&labels(l)),
            l.registers,
        );
    }
    out.family(
        "fieldgate_link_request_duration_seconds",
        "histogram",
        "Request latency over all of the link's devices.",
    );
    for l in &s.links {
        out.histogram(
            "fieldgate_link_request_duration_seconds",
            &refs(&labels(l)),
            &l.latency,
        );
    }
    if s.links.iter().any(|l| l.last_success.is_some()) {
        out.family(
            "fieldgate_link_last_success_timestamp_seconds",
            "gauge",
            "When the last answered poll of any of the link's devices started, Unix time.",
        );
        for l in &s.links {
            if let Some(t) = l.last_success {
                out.float(
                    "fieldgate_link_last_success_timestamp_seconds",
                    &refs(&labels(l)),
                    unix(t),
                );
            }
        }
    }
}

fn outbox(out: &mut Out, s: &Snapshot) {
    out.family(
        "fieldgate_store_up",
        "gauge",
        "1 when the outbox's store thread answered this scrape.",
    );
    out.int("fieldgate_store_up", &[], u64::from(s.store.is_some()));
    let Some(st) = &s.store else {
        return;
    };
    let gauges: [(&str, &str, u64); 4] = [
        (
            "fieldgate_outbox_messages",
            "Messages waiting in the outbox for the broker's acknowledgement.",
            st.messages,
        ),
        (
            "fieldgate_outbox_bytes",
            "Bytes of topic and payload waiting in the outbox.",
            st.bytes,
        ),
        (
            "fieldgate_outbox_file_bytes",
            "Size of the database file plus its write-ahead log.",
            st.file_bytes,
        ),
        (
            "fieldgate_outbox_max_bytes",
            "The size bound in force (max_bytes).",
            st.max_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        out.family(name, "gauge", help);
        out.int(name, &[], v);
    }
    out.family(
        "fieldgate_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest waiting message; 0 when the outbox is empty.",
    );
    let age = st.oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    out.float("fieldgate_outbox_oldest_age_seconds", &[], age);
    let counters: [(&str, &str, u64); 4] = [
        (
            "fieldgate_outbox_inserted_total",
            "Messages written to the outbox file since start (not acknowledged by their group commit).",
            st.inserted,
        ),
        (
            "fieldgate_outbox_unwritten_total",
            "Messages the broker acknowledged before their group commit, never written to the disk, since start.",
            st.unwritten,
        ),
        (
            "fieldgate_outbox_acked_total",
            "Messages the broker acknowledged (then deleted from the outbox, or dropped from memory if never written), since start.",
            st.acked,
        ),
        (
            "fieldgate_outbox_rejected_total",
            "Messages refused since start because alone they exceed max_bytes.",
            st.rejected,
        ),
    ];
    for (name, help, v) in counters {
        out.family(name, "counter", help);
        out.int(name, &[], v);
    }
    out.family(
        "fieldgate_outbox_evicted_total",
        "counter",
        "Messages evicted by the size and age bounds, by kind, since the database file was created.",
    );
    out.int(
        "fieldgate_outbox_evicted_total",
        &[("kind", "reading")],
        st.evicted_readings,
    );
    out.int(
        "fieldgate_outbox_evicted_total",
        &[("kind", "other")],
        st.evicted_other,
    );
    if let Some(identity) = &st.identity {
        out.family(
            "fieldgate_store_info",
            "gauge",
            "Always 1: the store identity messages carry this run, and how it started \
             (kept, new, renewed after an unclean stop, or lost: the previous store is gone).",
        );
        out.int(
            "fieldgate_store_info",
            &[("store", &identity.id), ("start", identity.start.as_str())],
            1,
        );
    }
    degraded(out, st);
}

/// The store's health: one series per fault, so that
/// `sum(fieldgate_store_degraded)` is 1 exactly while degraded.
fn degraded(out: &mut Out, st: &Stats) {
    out.family(
        "fieldgate_store_degraded",
        "gauge",
        "1 for the fault that keeps the outbox in memory (the disk is full, read-only, failing, or the file could not be opened); all 0 when the store is ok.",
    );
    let now = st.degraded.as_ref().map(|d| d.fault);
    for fault in DiskFault::ALL {
        out.int(
            "fieldgate_store_degraded",
            &[("fault", fault.as_str())],
            u64::from(now == Some(fault)),
        );
    }
    out.family(
        "fieldgate_store_degraded_seconds",
        "gauge",
        "How long the store has been degraded; 0 when ok.",
    );
    out.float(
        "fieldgate_store_degraded_seconds",
        &[],
        st.degraded
            .as_ref()
            .map_or(0.0, |d| d.duration.as_secs_f64()),
    );
    let gauges: [(&str, &str, u64); 3] = [
        (
            "fieldgate_store_held_messages",
            "Messages in memory, not written: published and waiting for their acknowledgement or group commit, or held because the disk cannot take them (included in fieldgate_outbox_messages).",
            st.held,
        ),
        (
            "fieldgate_store_held_bytes",
            "Their bytes of topic and payload (included in fieldgate_outbox_bytes).",
            st.held_bytes,
        ),
        (
            "fieldgate_store_held_max_bytes",
            "The memory queue's bound (topic, payload and 64 bytes a message).",
            st.held_max_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        out.family(name, "gauge", help);
        out.int(name, &[], v);
    }
    out.family(
        "fieldgate_store_held_evicted_total",
        "counter",
        "Messages evicted from the memory queue at its bound since start, by kind (also counted in fieldgate_outbox_evicted_total).",
    );
    out.int(
        "fieldgate_store_held_evicted_total",
        &[("kind", "reading")],
        st.held_evicted_readings,
    );
    out.int(
        "fieldgate_store_held_evicted_total",
        &[("kind", "other")],
        st.held_evicted_other,
    );
}

fn mqtt(out: &mut Out, s: &Snapshot) {
    let m = &s.mqtt;
    out.family(
        "fieldgate_mqtt_connected",
        "gauge",
        "1 while a session with the broker is up.",
    );
    out.int("fieldgate_mqtt_connected", &[], u64::from(m.connected));
    let counters: [(&str, &str, u64); 6] = [
        (
            "fieldgate_mqtt_reconnects_total",
            "Sessions established after the first.",
            m.reconnects,
        ),
        (
            "fieldgate_mqtt_published_total",
            "Outbox messages written to the broker, resends after a reconnect included.",
            m.published,
        ),
        (
            "fieldgate_mqtt_acked_total",
            "Outbox messages the broker acknowledged (PUBACK, or PUBCOMP at QoS 2).",
            m.acked,
        ),
        (
            "fieldgate_mqtt_inbound_total",
            "Messages received (acks, shelve requests, work-order status) and passed to the rules.",
            m.inbound,
        ),
        (
            "fieldgate_mqtt_inbound_dropped_total",
            "Messages received and dropped because the rules stage was behind.",
            m.inbound_dropped,
        ),
        (
            "fieldgate_mqtt_skipped_total",
            "Outbox messages skipped because they can never be sent (too large, invalid topic), each time met.",
            m.skipped,
        ),
    ];
    for (name, help, v) in counters {
        out.family(name, "counter", help);
        out.int(name, &[], v);
    }
}

/// Write-back: the writable tags and every command's result.
fn writes(out: &mut Out, s: &Snapshot) {
    let w = &s.writes;
    out.family(
        "fieldgate_writable_tags",
        "gauge",
        "Tags the running configuration makes writable (writable = true).",
    );
    out.int("fieldgate_writable_tags", &[], w.writable_tags as u64);
    out.family(
        "fieldgate_writes_received_total",
        "counter",
        "Write commands received (MQTT, Sparkplug DCMD, HTTP), refused ones included.",
    );
    out.int("fieldgate_writes_received_total", &[], w.received);
    out.family(
        "fieldgate_writes_dropped_total",
        "counter",
        "Write commands that never reached the write desk (its queue full, or the gateway stopping): not answered, not recorded, logged.",
    );
    out.int("fieldgate_writes_dropped_total", &[], w.dropped);
    out.family(
        "fieldgate_writes_total",
        "counter",
        "Write commands by result: rejected (nothing written), written, verified (read back equal), unknown (no answer to the write: it may or may not have happened).",
    );
    for (result, n) in [
        ("rejected", w.rejected),
        ("written", w.written),
        ("verified", w.verified),
        ("unknown", w.unknown),
    ] {
        out.int("fieldgate_writes_total", &[("result", result)], n);
    }
}

/// The Sparkplug edge node, only when `[sparkplug]` is on; the primary
/// host's state only with one, `bdSeq` only once a session began, the rows
/// waiting only when the store said them.
fn sparkplug(out: &mut Out, s: &Snapshot) {
    let Some(sp) = &s.sparkplug else {
        return;
    };
    out.family(
        "fieldgate_sparkplug_info",
        "gauge",
        "Always 1; the labels say the edge node's Sparkplug group and id.",
    );
    out.int(
        "fieldgate_sparkplug_info",
        &[("group", &sp.group_id), ("edge_node", &sp.edge_node_id)],
        1,
    );
    let gauges: [(&str, &str, bool); 2] = [
        (
            "fieldgate_sparkplug_connected",
            "1 while the edge node's own connection to the broker is up.",
            sp.connected,
        ),
        (
            "fieldgate_sparkplug_online",
            "1 while the edge node's births are out: hosts see it online and its messages flow.",
            sp.online,
        ),
    ];
    for (name, help, v) in gauges {
        out.family(name, "gauge", help);
        out.int(name, &[], u64::from(v));
    }
    if let (Some(host), Some(online)) = (&sp.primary_host_id, sp.primary_host_online) {
        out.family(
            "fieldgate_sparkplug_primary_host_online",
            "gauge",
            "1 when the primary host's last STATE said online; 0 before any and while it is offline (no births, messages wait in the outbox).",
        );
        out.int(
            "fieldgate_sparkplug_primary_host_online",
            &[("host", host)],
            u64::from(online),
        );
    }
    if let Some(bd_seq) = sp.bd_seq {
        out.family(
            "fieldgate_sparkplug_bd_seq",
            "gauge",
            "The bdSeq of the current (or last) session, 0 to 255: its NBIRTH and NDEATH carry it.",
        );
        out.int("fieldgate_sparkplug_bd_seq", &[], bd_seq);
    }
    let counters: [(&str, &str, u64); 3] = [
        (
            "fieldgate_sparkplug_sessions_total",
            "Edge node sessions begun (connection attempts, each with the next bdSeq), since start.",
            sp.sessions,
        ),
        (
            "fieldgate_sparkplug_births_total",
            "NBIRTHs published, first births and rebirths, since start.",
            sp.births,
        ),
        (
            "fieldgate_sparkplug_rebirth_requests_total",
            "Rebirth requests received (NCMD Node Control/Rebirth), answered or merged into one, since start.",
            sp.rebirth_requests,
        ),
    ];
    for (name, help, v) in counters {
        out.family(name, "counter", help);
        out.int(name, &[], v);
    }
    out.family(
        "fieldgate_sparkplug_published_total",
        "counter",
        "Outbox rows published in the Sparkplug namespace, by kind: live, or historical (sent after the births, flagged is_historical), since start.",
    );
    out.int(
        "fieldgate_sparkplug_published_total",
        &[("kind", "live")],
        sp.published,
    );
    out.int(
        "fieldgate_sparkplug_published_total",
        &[("kind", "historical")],
        sp.historical,
    );
    let counters: [(&str, &str, u64); 4] = [
        (
            "fieldgate_sparkplug_confirmed_total",
            "Sparkplug rows the broker confirmed (by the SUBACK of a later barrier) and deleted from the outbox, since start.",
            sp.confirmed,
        ),
        (
            "fieldgate_sparkplug_dropped_total",
            "Sparkplug rows that could never be sent (a death met as history, a device no longer configured) and were deleted, since start.",
            sp.dropped,
        ),
        (
            "fieldgate_sparkplug_held_total",
            "Times a Sparkplug row was kept in the outbox for the next session because its device was not born in this one, since start.",
            sp.held,
        ),
        (
            "fieldgate_sparkplug_inbound_refused_total",
            "Inbound Sparkplug messages refused: malformed, a command for a metric that takes none, a DCMD, a stale STATE, since start.",
            sp.inbound_refused,
        ),
    ];
    for (name, help, v) in counters {
        out.family(name, "counter", help);
        out.int(name, &[], v);
    }
    if let Some(n) = sp.outbox_messages {
        out.family(
            "fieldgate_sparkplug_outbox_messages",
            "gauge",
            "Rows of the Sparkplug namespace waiting in the outbox (included in fieldgate_outbox_messages).",
        );
        out.int("fieldgate_sparkplug_outbox_messages", &[], n);
    }
}

/// Each CMMS connector, labelled `connector`; its queue's figures only
/// when the store said them.
fn cmms(out: &mut Out, s: &Snapshot) {
    if s.cmms.is_empty() {
        return;
    }
    type Figure = fn(&super::ConnectorSnapshot) -> u64;
    let counters: [(&str, &str, Figure); 5] = [
        (
            "fieldgate_cmms_delivered_total",
            "Deliveries (work-order events, meter readings) the CMMS confirmed, since start.",
            |c| c.delivered,
        ),
        (
            "fieldgate_cmms_created_total",
            "Work orders created in the CMMS, since start.",
            |c| c.created,
        ),
        (
            "fieldgate_cmms_retries_total",
            "Failed exchanges that will be retried (5xx, 408/429, timeout, refused connection), since start.",
            |c| c.retries,
        ),
        (
            "fieldgate_cmms_parked_total",
            "Deliveries the CMMS refused (4xx), parked with its error text until a reload, since start.",
            |c| c.parked_total,
        ),
        (
            "fieldgate_cmms_statuses_total",
            "Work-order statuses the CMMS reported, since start.",
            |c| c.statuses,
        ),
    ];
    for (name, help, figure) in counters {
        out.family(name, "counter", help);
        for c in &s.cmms {
            out.int(name, &[("connector", &c.name)], figure(c));
        }
    }
    out.family(
        "fieldgate_cmms_reachable",
        "gauge",
        "1 when the connector's last exchange with the CMMS got an answer (0 also before the first).",
    );
    for c in &s.cmms {
        out.int(
            "fieldgate_cmms_reachable",
            &[("connector", &c.name)],
            u64::from(c.reachable),
        );
    }
    if !s.cmms.iter().any(|c| c.queue.is_some()) {
        return;
    }
    type QueueFigure = fn(&super::Queue) -> u64;
    let gauges: [(&str, &str, QueueFigure); 2] = [
        (
            "fieldgate_cmms_pending",
            "Deliveries waiting in the store for the CMMS (parked ones not included).",
            |q| q.pending,
        ),
        (
            "fieldgate_cmms_parked",
            "Deliveries parked in the store: refused by the CMMS, waiting for a reload.",
            |q| q.parked,
        ),
    ];
    for (name, help, figure) in gauges {
        out.family(name, "gauge", help);
        for c in &s.cmms {
            if let Some(q) = &c.queue {
                out.int(name, &[("connector", &c.name)], figure(q));
            }
        }
    }
    out.family(
        "fieldgate_cmms_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest delivery waiting for the CMMS; 0 when none waits.",
    );
    for c in &s.cmms {
        if let Some(q) = &c.queue {
            out.float(
                "fieldgate_cmms_oldest_pending_age_seconds",
                &[("connector", &c.name)],
                q.oldest_age_s(s.at),
            );
        }
    }
}

fn rules(out: &mut Out, s: &Snapshot) {
    let r = &s.rules;
    out.family("fieldgate_rules", "gauge", "Rules configured.");
    out.int("fieldgate_rules", &[], r.rules as u64);
    out.family(
        "fieldgate_alarms_active",
        "gauge",
        "Alarms whose condition holds, shelved ones included, by priority.",
    );
    for (p, n) in PRIORITIES.iter().zip(r.active_by_priority) {
        out.int("fieldgate_alarms_active", &[("priority", p.as_str())], n);
    }
    out.family(
        "fieldgate_alarms_unacked",
        "gauge",
        "Alarms awaiting acknowledgement (active or returned), by priority.",
    );
    for (p, n) in PRIORITIES.iter().zip(r.unacked_by_priority) {
        out.int("fieldgate_alarms_unacked", &[("priority", p.as_str())], n);
    }
    out.family("fieldgate_alarms_shelved", "gauge", "Shelved alarms.");
    out.int("fieldgate_alarms_shelved", &[], r.shelved);
    out.family(
        "fieldgate_alarms_chattering",
        "gauge",
        "Alarms flagged as chattering.",
    );
    out.int("fieldgate_alarms_chattering", &[], r.chattering);
    let (corrective, preventive) = r.work_orders_by_type();
    out.family(
        "fieldgate_workorders_open",
        "gauge",
        "Work orders not closed by the CMMS, by type.",
    );
    out.int(
        "fieldgate_workorders_open",
        &[("type", "corrective")],
        corrective,
    );
    out.int(
        "fieldgate_workorders_open",
        &[("type", "preventive")],
        preventive,
    );

    let runtime = || r.meters.iter().filter(|m| m.measure == Measure::Runtime);
    let count = || r.meters.iter().filter(|m| m.measure == Measure::Count);
    if runtime().next().is_some() {
        out.family(
            "fieldgate_meter_runtime_seconds",
            "gauge",
            "Runtime counted by a runtime meter.",
        );
        for m in runtime() {
            out.float(
                "fieldgate_meter_runtime_seconds",
                &[("meter", &m.name)],
                m.value * 3600.0,
            );
        }
        out.family(
            "fieldgate_meter_runtime_threshold_seconds",
            "gauge",
            "The runtime at which the meter is next due (the pending one while due).",
        );
        for m in runtime() {
            out.float(
                "fieldgate_meter_runtime_threshold_seconds",
                &[("meter", &m.name)],
                m.next_due * 3600.0,
            );
        }
    }
    if count().next().is_some() {
        out.family(
            "fieldgate_meter_count",
            "gauge",
            "Rising edges counted by a count meter.",
        );
        for m in count() {
            out.float("fieldgate_meter_count", &[("meter", &m.name)], m.value);
        }
        out.family(
            "fieldgate_meter_count_threshold",
            "gauge",
            "The count at which the meter is next due (the pending one while due).",
        );
        for m in count() {
            out.float(
                "fieldgate_meter_count_threshold",
                &[("meter", &m.name)],
                m.next_due,
            );
        }
    }
    if !r.meters.is_empty() {
        out.family(
            "fieldgate_meter_due",
            "gauge",
            "1 while a meter's threshold is reached and its preventive work order is not closed.",
        );
        for m in &r.meters {
            out.int(
                "fieldgate_meter_due",
                &[("meter", &m.name)],
                u64::from(m.due),
            );
        }
    }
}

fn process(out: &mut Out, s: &Snapshot) {
    let p = &s.process;
    if let Some(v) = p.rss_bytes {
        out.family(
            "fieldgate_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
        );
        out.int("fieldgate_process_resident_memory_bytes", &[], v);
    }
    if let Some(v) = p.cpu_seconds {
        out.family(
            "fieldgate_process_cpu_seconds_total",
            "counter",
            "CPU time of the process, user and system.",
        );
        out.float("fieldgate_process_cpu_seconds_total", &[], v);
    }
    if let Some(v) = p.open_fds {
        out.family(
            "fieldgate_process_open_fds",
            "gauge",
            "Open file descriptors.",
        );
        out.int("fieldgate_process_open_fds", &[], v);
    }
    if let Some(v) = p.threads {
        out.family(
            "fieldgate_process_threads",
            "gauge",
            "Threads of the process.",
        );
        out.int("fieldgate_process_threads", &[], v);
    }
}

/// The output and the line syntax.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} ");
        escape(&mut self.0, help, false);
        let _ = writeln!(self.0, "\n# TYPE {name} {kind}");
    }

    fn int(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.name_labels(name, labels, None);
        let _ = writeln!(self.0, " {v}");
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.name_labels(name, labels, None);
        self.0.push(' ');
        float(&mut self.0, v);
        self.0.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (le, n) in BOUNDS_LE.iter().zip(h.cumulative()) {
            self.name_labels(&bucket, labels, Some(le));
            let _ = writeln!(self.0, " {n}");
        }
        let count = h.count();
        self.name_labels(&bucket, labels, Some("+Inf"));
        let _ = writeln!(self.0, " {count}");
        self.float(&format!("{name}_sum"), labels, h.sum_seconds());
        self.int(&format!("{name}_count"), labels, count);
    }

    fn name_labels(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.0.push_str(name);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        let extra = le.map(|le| ("le", le));
        for (i, (k, v)) in labels.iter().copied().chain(extra).enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(k);
            self.0.push_str("=\"");
            escape(&mut self.0, v, true);
            self.0.push('"');
        }
        self.0.push('}');
    }
}

/// Escapes a label value (`\`, `"`, newline) or a HELP text (`\`, newline).
fn escape(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN`).
fn float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn refs<'a, const N: usize>(labels: &'a [(&'a str, String); N]) -> [(&'a str, &'a str); N] {
    labels.each_ref().map(|(k, v)| (*k, v.as_str()))
}

fn with<'a>(labels: &'a [(&'a str, String)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(std::iter::once(extra))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Priority;
    use crate::modbus::{DeviceSnapshot, LinkSnapshot};
    use crate::store::Stats;
    use crate::telemetry::rules_view::{MeterView, RulesView};
    use crate::telemetry::{
        ConnectorSnapshot, GatewayInfo, MqttSnapshot, ProcessStats, Queue, SparkplugSnapshot,
    };

    fn snapshot() -> Snapshot {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut latency = HistogramSnapshot::default();
        latency.buckets[0] = 3; // ≤ 1 ms
        latency.buckets[2] = 1; // ≤ 5 ms
        latency.buckets[12] = 1; // > 5 s
        latency.sum_us = 3 * 800 + 4_000 + 6_000_000;
        let device = DeviceSnapshot {
            name: "pump \"one\"\\\n".into(),
            link: "tcp:10.0.0.5:502".into(),
            state: DeviceState::Failing,
            since: Some(t),
            last_error: Some("no answer within 1s".into()),
            polls: [10, 2, 5],
            errors: [2, 0, 1, 0],
            registers: 190,
            latency,
            last_response: Some(Duration::from_millis(4)),
            last_success: Some(t),
        };
        let link = LinkSnapshot {
            label: "tcp:10.0.0.5:502".into(),
            connected: false,
            reconnects: 1,
            connect_failures: 3,
            polls: [10, 2, 5],
            errors: [2, 0, 1, 0],
            registers: 190,
            latency,
            last_success: Some(t),
        };
        let mut rules = RulesView {
            rules: 4,
            ..RulesView::default()
        };
        rules.active_by_priority[crate::telemetry::rules_view::priority_index(Priority::High)] = 2;
        rules.meters.push(MeterView {
            name: "pump_hours".into(),
            measure: Measure::Runtime,
            value: 1.5,
            unit: "h",
            next_due: 500.0,
            due: false,
        });
        Snapshot {
            info: GatewayInfo {
                id: "gw".into(),
                site: "s".into(),
                version: "0.1.0",
                config_hash: "ab".repeat(32),
                started: t,
                booted: std::time::Instant::now(),
            },
            at: t + Duration::from_secs(60),
            devices: vec![device],
            links: vec![link],
            store: Some(Stats {
                messages: 7,
                bytes: 900,
                oldest_age: Some(Duration::from_secs(30)),
                inserted: 100,
                acked: 93,
                evicted_readings: 4,
                ..Stats::default()
            }),
            mqtt: MqttSnapshot {
                connected: true,
                published: 95,
                acked: 93,
                ..MqttSnapshot::default()
            },
            rules: Arc::new(rules),
            suppressed: vec![3],
            events: vec![("device_down", 1), ("readings_suppressed", 3)],
            process: ProcessStats {
                rss_bytes: Some(12_345_678),
                cpu_seconds: Some(1.25),
                open_fds: None,
                threads: Some(6),
            },
            cmms: vec![
                connector("maximo", Some((3, 2, 45))),
                connector("hook", Some((0, 0, 0))),
            ],
            writes: crate::telemetry::WritesSnapshot::default(),
            sparkplug: Some(edge_node()),
            pipeline_idle: Duration::from_millis(250),
            uptime: Duration::from_secs(60),
            clock_synced: Some(false),
        }
    }

    /// An edge node waiting for its primary host, after one session that
    /// was born.
    fn edge_node() -> SparkplugSnapshot {
        SparkplugSnapshot {
            group_id: "Plant \"A\"".into(),
            edge_node_id: "gw1".into(),
            primary_host_id: Some("scada".into()),
            connected: true,
            online: false,
            primary_host_online: Some(false),
            bd_seq: Some(4),
            sessions: 2,
            births: 3,
            rebirth_requests: 1,
            published: 120,
            historical: 30,
            confirmed: 140,
            dropped: 1,
            held: 2,
            inbound_refused: 5,
            outbox_messages: Some(9),
        }
    }

    #[test]
    fn the_edge_node_shows_its_figures() {
        let text = render(&snapshot());
        for line in [
            r#"fieldgate_sparkplug_info{group="Plant \"A\"",edge_node="gw1"} 1"#,
            "fieldgate_sparkplug_connected 1",
            "fieldgate_sparkplug_online 0",
            r#"fieldgate_sparkplug_primary_host_online{host="scada"} 0"#,
            "fieldgate_sparkplug_bd_seq 4",
            "fieldgate_sparkplug_sessions_total 2",
            "fieldgate_sparkplug_births_total 3",
            "fieldgate_sparkplug_rebirth_requests_total 1",
            r#"fieldgate_sparkplug_published_total{kind="live"} 120"#,
            r#"fieldgate_sparkplug_published_total{kind="historical"} 30"#,
            "fieldgate_sparkplug_confirmed_total 140",
            "fieldgate_sparkplug_dropped_total 1",
            "fieldgate_sparkplug_held_total 2",
            "fieldgate_sparkplug_inbound_refused_total 5",
            "fieldgate_sparkplug_outbox_messages 9",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn unknown_edge_node_figures_are_left_out_and_none_without_sparkplug() {
        let mut s = snapshot();
        s.sparkplug = Some(SparkplugSnapshot {
            primary_host_id: None,
            primary_host_online: None,
            bd_seq: None,
            outbox_messages: None,
            ..edge_node()
        });
        let text = render(&s);
        assert!(text.contains("fieldgate_sparkplug_connected 1"), "{text}");
        assert!(
            text.contains("fieldgate_sparkplug_sessions_total 2"),
            "{text}"
        );
        for family in [
            "fieldgate_sparkplug_primary_host_online",
            "fieldgate_sparkplug_bd_seq",
            "fieldgate_sparkplug_outbox_messages",
        ] {
            assert!(!text.contains(family), "{family} in\n{text}");
        }
        s.sparkplug = None;
        assert!(!render(&s).contains("fieldgate_sparkplug_"));
    }

    /// A connector; `queue`: pending, parked, age of the oldest (s) at the
    /// snapshot's time.
    fn connector(name: &str, queue: Option<(u64, u64, u64)>) -> ConnectorSnapshot {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_060);
        ConnectorSnapshot {
            name: name.into(),
            kind: "maximo",
            reachable: name == "maximo",
            delivered: 12,
            created: 4,
            retries: 7,
            parked_total: 2,
            statuses: 3,
            last_error: Some("400 Bad Request: BMXAA4195E asset P-9 is not valid".into()),
            queue: queue.map(|(pending, parked, age)| Queue {
                pending,
                parked,
                oldest: (pending > 0).then(|| at - Duration::from_secs(age)),
            }),
            parked: Vec::new(),
        }
    }

    #[test]
    fn connectors_show_their_counters_and_queues() {
        let text = render(&snapshot());
        for line in [
            "fieldgate_cmms_delivered_total{connector=\"maximo\"} 12",
            "fieldgate_cmms_created_total{connector=\"maximo\"} 4",
            "fieldgate_cmms_retries_total{connector=\"maximo\"} 7",
            "fieldgate_cmms_parked_total{connector=\"maximo\"} 2",
            "fieldgate_cmms_statuses_total{connector=\"hook\"} 3",
            "fieldgate_cmms_reachable{connector=\"maximo\"} 1",
            "fieldgate_cmms_reachable{connector=\"hook\"} 0",
            "fieldgate_cmms_pending{connector=\"maximo\"} 3",
            "fieldgate_cmms_parked{connector=\"maximo\"} 2",
            "fieldgate_cmms_parked{connector=\"hook\"} 0",
            "fieldgate_cmms_oldest_pending_age_seconds{connector=\"maximo\"} 45",
            "fieldgate_cmms_oldest_pending_age_seconds{connector=\"hook\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn a_queue_the_store_did_not_say_is_left_out() {
        let mut s = snapshot();
        s.cmms = vec![connector("maximo", None)];
        let text = render(&s);
        assert!(text.contains("fieldgate_cmms_delivered_total{connector=\"maximo\"} 12"));
        assert!(text.contains("fieldgate_cmms_reachable{connector=\"maximo\"} 1"));
        for family in [
            "fieldgate_cmms_pending",
            "fieldgate_cmms_parked ",
            "fieldgate_cmms_parked{",
            "fieldgate_cmms_oldest_pending_age_seconds",
        ] {
            assert!(!text.contains(family), "{family} in\n{text}");
        }
        // No connector configured: no CMMS family at all.
        s.cmms.clear();
        assert!(!render(&s).contains("fieldgate_cmms_"));
    }

    #[test]
    fn samples_labels_and_escapes() {
        let text = render(&snapshot());
        let device = r#"device="pump \"one\"\\\n",link="tcp:10.0.0.5:502""#;
        for line in [
            format!(
                "fieldgate_build_info{{version=\"0.1.0\",config_hash=\"{}\"}} 1",
                "ab".repeat(32)
            ),
            format!("fieldgate_device_polls_total{{{device},result=\"ok\"}} 10"),
            format!("fieldgate_device_polls_total{{{device},result=\"skipped\"}} 5"),
            format!("fieldgate_device_request_errors_total{{{device},reason=\"timeout\"}} 2"),
            format!("fieldgate_device_up{{{device}}} 0"),
            format!("fieldgate_device_request_duration_seconds_bucket{{{device},le=\"0.001\"}} 3"),
            format!("fieldgate_device_request_duration_seconds_bucket{{{device},le=\"0.002\"}} 3"),
            format!("fieldgate_device_request_duration_seconds_bucket{{{device},le=\"5\"}} 4"),
            format!("fieldgate_device_request_duration_seconds_bucket{{{device},le=\"+Inf\"}} 5"),
            format!("fieldgate_device_request_duration_seconds_sum{{{device}}} 6.0064"),
            format!("fieldgate_device_request_duration_seconds_count{{{device}}} 5"),
            format!("fieldgate_device_failing_since_timestamp_seconds{{{device}}} 1700000000"),
            "fieldgate_link_reconnects_total{link=\"tcp:10.0.0.5:502\"} 1".into(),
            "fieldgate_outbox_messages 7".into(),
            "fieldgate_outbox_oldest_age_seconds 30".into(),
            "fieldgate_outbox_evicted_total{kind=\"reading\"} 4".into(),
            "fieldgate_mqtt_connected 1".into(),
            "fieldgate_alarms_active{priority=\"high\"} 2".into(),
            "fieldgate_alarms_active{priority=\"critical\"} 0".into(),
            "fieldgate_meter_runtime_seconds{meter=\"pump_hours\"} 5400".into(),
            "fieldgate_process_cpu_seconds_total 1.25".into(),
            "fieldgate_pipeline_idle_seconds 0.25".into(),
            "fieldgate_uptime_seconds 60".into(),
            "fieldgate_clock_synchronised 0".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // Unknown figures are left out, not shown as 0.
        assert!(!text.contains("fieldgate_process_open_fds"));
        assert!(!text.contains("fieldgate_meter_count"));
    }

    #[test]
    fn every_family_has_help_and_type_once_and_samples_stay_grouped() {
        let text = render(&snapshot());
        let mut typed: Vec<(String, String)> = Vec::new();
        let mut current: Option<(String, String)> = None;
        let mut seen_families = std::collections::HashSet::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                let ty = lines.next().unwrap();
                let kind = ty
                    .strip_prefix(&format!("# TYPE {name} "))
                    .unwrap_or_else(|| panic!("TYPE after HELP of {name}: {ty}"));
                assert!(seen_families.insert(name.clone()), "{name} twice");
                typed.push((name.clone(), kind.to_owned()));
                current = Some((name, kind.to_owned()));
                continue;
            }
            let (family, kind) = current.as_ref().expect("a sample before any TYPE");
            let sample = line.split(['{', ' ']).next().unwrap();
            let ok = match kind.as_str() {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&sample.to_owned()),
                _ => sample == family,
            };
            assert!(ok, "{sample} under {family}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "{line}"
            );
        }
        for (name, kind) in &typed {
            assert!(name.starts_with("fieldgate_"), "{name}");
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}"
            );
        }
    }

    #[test]
    fn the_text_parses_with_a_prometheus_parser() {
        let text = render(&snapshot());
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let polls = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "fieldgate_device_polls_total"
                    && s.labels.get("result") == Some("failed")
            })
            .unwrap();
        // prometheus-parse keeps a label value as written (escapes and
        // all): what matters is that the quotes inside did not end it.
        assert_eq!(polls.labels.get("device"), Some(r#"pump \"one\"\\\n"#));
        assert!(matches!(polls.value, prometheus_parse::Value::Counter(v) if v == 2.0));
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == "fieldgate_link_request_duration_seconds")
            .unwrap();
        match &histogram.value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), 13);
                assert_eq!(buckets.last().map(|b| b.count), Some(5.0));
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }

    #[test]
    fn a_store_that_did_not_answer_is_down_and_its_figures_absent() {
        let mut s = snapshot();
        s.store = None;
        // The edge node's waiting rows come from the same answer.
        if let Some(sp) = s.sparkplug.as_mut() {
            sp.outbox_messages = None;
        }
        let text = render(&s);
        assert!(text.lines().any(|l| l == "fieldgate_store_up 0"));
        assert!(!text.contains("fieldgate_outbox_messages"));
        assert!(!text.contains("fieldgate_sparkplug_outbox_messages"));
    }

    #[test]
    fn a_degraded_store_says_its_fault_on_one_series_of_four() {
        let mut s = snapshot();
        let text = render(&s);
        assert!(text.contains("fieldgate_store_degraded{fault=\"disk_full\"} 0"));
        let st = s.store.as_mut().unwrap();
        st.degraded = Some(crate::store::Degraded {
            fault: DiskFault::Full,
            reason: "database or disk is full".into(),
            since: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(90),
        });
        st.held = 12;
        st.held_evicted_readings = 3;
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        for line in [
            "fieldgate_store_degraded{fault=\"disk_full\"} 1",
            "fieldgate_store_degraded{fault=\"read_only\"} 0",
            "fieldgate_store_degraded_seconds 90",
            "fieldgate_store_held_messages 12",
            "fieldgate_store_held_evicted_total{kind=\"reading\"} 3",
        ] {
            assert!(lines.contains(&line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn floats_render_as_prometheus_reads_them() {
        let mut out = String::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.5, 3.0] {
            float(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "NaN +Inf -Inf 0.5 3 ");
    }
}

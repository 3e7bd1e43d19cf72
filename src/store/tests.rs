//! History through the handle, and the read-only [`Inspector`] beside a
//! running store.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::Durability;

fn config(dir: &Path, flush_interval: Duration) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Normal,
        max_bytes: 64 << 20,
        // The test messages are made in 2023: keep them.
        max_age: Duration::from_secs(100 * 365 * 86_400),
        flush_interval,
    }
}

/// A moment to the millisecond (what the store keeps).
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn message(seq: u64) -> OutMessage {
    OutMessage {
        topic: "fieldgate/s/g/alarms/hot".into(),
        seq,
        payload: format!("{{\"seq\":{seq}}}").into_bytes(),
        qos: 1,
        retain: true,
        kind: Kind::Alarm,
        created_at: at(seq).into(),
    }
}

fn entry(kind: HistoryKind, subject: &str, event: &str, ms: u64) -> HistoryEntry {
    HistoryEntry {
        at: at(ms),
        kind,
        subject: subject.into(),
        event: event.into(),
        detail: format!("{{\"n\":{ms}}}"),
    }
}

/// `created_at` is on the timeline; the inspector reads it through the
/// saved anchor, which for a new store maps it to (about) itself.
fn assert_near(got: SystemTime, want: SystemTime) {
    let off = match got.duration_since(want) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        off < Duration::from_secs(1),
        "{got:?} is {off:?} from {want:?}"
    );
}

fn entries(records: &[HistoryRecord]) -> Vec<HistoryEntry> {
    records.iter().map(|r| r.entry.clone()).collect()
}

#[tokio::test]
async fn history_is_committed_with_the_messages_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    // The longest interval: nothing commits by itself during the checks.
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    h.insert(vec![message(1), message(2)]).await.unwrap();
    let recorded = vec![
        entry(HistoryKind::Alarm, "hot", "active_unacked", 1),
        entry(HistoryKind::WorkOrder, "01HZX", "raised", 2),
    ];
    h.record(recorded.clone()).await.unwrap();
    // Nothing to do, and no command sent.
    h.record(Vec::new()).await.unwrap();

    let peek = Inspector::open(&cfg.path).unwrap();
    // Still queued: neither the messages nor the history are on disk.
    assert_eq!(peek.outbox().unwrap().0, 0);
    assert!(peek.history(None, 10).unwrap().is_empty());

    h.flush().await.unwrap();
    let (waiting, oldest) = peek.outbox().unwrap();
    assert_eq!(waiting, 2);
    assert_near(oldest.unwrap(), at(1));
    let all = peek.history(None, 10).unwrap();
    assert_eq!(entries(&all), recorded);
    assert!(all[0].id < all[1].id);
    assert_eq!(
        entries(&peek.history(Some(HistoryKind::WorkOrder), 10).unwrap()),
        recorded[1..]
    );
    guard.close().unwrap();
}

#[tokio::test]
async fn history_after_a_group_larger_than_one_transaction_rides_with_its_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let n = thread::GROUP_ROWS as u64 + 10;
    h.insert((1..=n).map(message).collect()).await.unwrap();
    h.record(vec![entry(HistoryKind::Alarm, "hot", "normal", 9)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(peek.outbox().unwrap().0, n);
    assert_eq!(peek.history(None, 10).unwrap().len(), 1);
    guard.close().unwrap();
}

#[tokio::test]
async fn history_keeps_the_newest_history_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(10));
    let (h, guard) = open(&cfg).unwrap();
    let total = HISTORY_ROWS as u64 + 3;
    // Two commits: the prune works across groups.
    let batch = |range: std::ops::RangeInclusive<u64>| -> Vec<HistoryEntry> {
        range
            .map(|i| entry(HistoryKind::Alarm, &format!("r{i}"), "normal", i))
            .collect()
    };
    h.record(batch(1..=total - 10)).await.unwrap();
    h.flush().await.unwrap();
    h.record(batch(total - 9..=total)).await.unwrap();
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    let kept = peek.history(None, usize::MAX).unwrap();
    assert_eq!(kept.len(), HISTORY_ROWS);
    // The three oldest went.
    assert_eq!(kept[0].entry.subject, "r4");
    assert_eq!(kept[0].id, 4);
    assert_eq!(kept[HISTORY_ROWS - 1].entry.subject, format!("r{total}"));
    let newest = peek.history(Some(HistoryKind::Alarm), 2).unwrap();
    assert_eq!(
        newest.iter().map(|r| r.id).collect::<Vec<_>>(),
        [total as i64 - 1, total as i64]
    );
    guard.close().unwrap();
}

/// The inspection commands read the file while the gateway has it open
/// and keeps writing.
#[tokio::test]
async fn an_inspector_reads_while_the_store_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(10));
    let (h, guard) = open(&cfg).unwrap();
    h.insert(vec![message(1)]).await.unwrap();
    h.save_state("rules.engine", b"{\"v\":1}".to_vec())
        .await
        .unwrap();
    h.record(vec![entry(HistoryKind::Alarm, "hot", "active_unacked", 1)])
        .await
        .unwrap();
    h.flush().await.unwrap();

    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(peek.schema_version(), schema::SINK_VERSION);
    assert_eq!(
        peek.state("rules.engine").unwrap().as_deref(),
        Some(&b"{\"v\":1}"[..])
    );
    assert!(peek.state_saved_at("rules.engine").unwrap().is_some());
    assert_eq!(peek.state("rules.workorders").unwrap(), None);
    assert_eq!(peek.history(None, 10).unwrap().len(), 1);

    // The store carries on writing (and deleting) while the reader is open,
    // and the reader sees each new commit.
    h.insert(vec![message(2)]).await.unwrap();
    h.save_state("rules.engine", b"{\"v\":2}".to_vec())
        .await
        .unwrap();
    h.record(vec![entry(HistoryKind::Alarm, "hot", "active_acked", 2)])
        .await
        .unwrap();
    h.delete(vec![1]).await.unwrap();
    h.flush().await.unwrap();
    // `created_at` is on the timeline; the inspector reads it through the
    // saved anchor, which for a new store maps it to (about) itself.
    let (waiting, oldest) = peek.outbox().unwrap();
    assert_eq!(waiting, 1);
    assert_near(oldest.unwrap(), at(2));
    assert_eq!(
        peek.state("rules.engine").unwrap().as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    assert_eq!(peek.history(None, 10).unwrap().len(), 2);
    // A second gateway is still kept out.
    let err = open(&cfg).unwrap_err();
    assert!(err.to_string().contains("another fieldgate"), "{err}");

    // Closing the store under an open reader is fine; the reader still
    // sees what was committed.
    guard.close().unwrap();
    assert_eq!(peek.history(None, 10).unwrap().len(), 2);
    drop(peek);
    // And the store opens again afterwards.
    let (_h, guard) = open(&cfg).unwrap();
    guard.close().unwrap();
}

#[test]
fn an_inspector_names_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("outbox.db");
    let err = Inspector::open(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("has `fieldgate run` used this config?"),
        "{err}"
    );
    // Looking created nothing.
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn an_inspector_refuses_a_newer_schema_and_reads_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        // A v2 store: states, no history table.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        conn.execute("INSERT INTO state VALUES ('rules.engine', x'7b7d', 1)", [])
            .unwrap();
    }
    let peek = Inspector::open(&path).unwrap();
    assert_eq!(peek.state("rules.engine").unwrap(), Some(b"{}".to_vec()));
    assert!(peek.history(None, 10).unwrap().is_empty());
    assert_eq!(peek.outbox().unwrap(), (0, None));
    drop(peek);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Inspector::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

/// With a small bound, history keeps to its share of the file: piles of
/// it never make the outbox evict the readings waiting for the broker.
#[tokio::test]
async fn history_never_crowds_out_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_bytes: 1 << 20,
        ..config(dir.path(), Duration::from_millis(10))
    };
    let (h, guard) = open(&cfg).unwrap();
    for batch in 0..20u64 {
        let entries = (0..100)
            .map(|i| HistoryEntry {
                detail: format!("{{\"title\":\"{}\"}}", "x".repeat(2000)),
                ..entry(HistoryKind::WorkOrder, "wo", "updated", batch * 100 + i)
            })
            .collect();
        h.record(entries).await.unwrap();
        h.flush().await.unwrap();
    }
    let now = SystemTime::now();
    h.insert(
        (1..=200)
            .map(|seq| OutMessage {
                created_at: now.into(),
                payload: vec![b'7'; 100],
                ..message(seq)
            })
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let s = h.stats().await.unwrap();
    assert_eq!(
        (s.messages, s.evicted_readings, s.evicted_other),
        (200, 0, 0)
    );
    assert!(s.file_bytes <= 1 << 20, "{s:?}");
    let peek = Inspector::open(&cfg.path).unwrap();
    let kept = peek.history(None, usize::MAX).unwrap();
    // Fewer than recorded, the newest of them.
    assert!(!kept.is_empty() && kept.len() < 500, "{}", kept.len());
    assert_eq!(kept.last().map(|r| r.entry.at), Some(at(1999)));
    guard.close().unwrap();
}

#[tokio::test]
async fn the_config_log_keeps_every_start_and_reload_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(20));
    let (h, guard) = open(&cfg).unwrap();
    h.record_config("aaa", "started: 2 devices, 1 rule")
        .await
        .unwrap();
    h.record_config("bbb", "devices added: pump3")
        .await
        .unwrap();
    // Readable at once (its own transaction), while the store runs.
    let inspector = inspect::Inspector::open(&cfg.path).unwrap();
    let log = inspector.config_log(10).unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.hash.as_str(), r.summary.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("aaa", "started: 2 devices, 1 rule"),
            ("bbb", "devices added: pump3")
        ]
    );
    assert_eq!(inspector.config_log(1).unwrap()[0].hash, "bbb");
    drop(inspector);
    guard.close().unwrap();
}

/// The queue's byte budget makes callers wait, never loses or reorders
/// anything, and lets an insert bigger than the whole budget through.
#[tokio::test]
async fn inserts_beyond_the_byte_budget_wait_and_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(5));
    cfg.max_bytes = 512 << 20;
    let (h, guard) = open(&cfg).unwrap();
    // 3 MiB: under the largest message the store takes (4 MiB).
    let big = |seq: u64| OutMessage {
        payload: vec![b'x'; 3 << 20],
        ..message(seq)
    };
    // Inserts of 6 MiB: the third goes beyond the 16 MiB budget and waits
    // for the first to be taken; then one insert of 18 MiB, beyond the
    // whole budget.
    for seq in [1, 3, 5] {
        h.insert(vec![big(seq), big(seq + 1)]).await.unwrap();
    }
    h.insert((7..=12).map(big).collect()).await.unwrap();
    h.flush().await.unwrap();
    let rows = h.fetch_after(Lane::Json, 0, 100).await.unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r.payload.len() == 3 << 20));
    drop(h);
    guard.close().unwrap();
}

/// Every kind reads back from the name it is stored as; `write` is the
/// write trail's; a name no release wrote is none.
#[test]
fn history_kinds_read_back_from_their_stored_names() {
    for kind in HistoryKind::ALL {
        assert_eq!(HistoryKind::parse(kind.as_str()), Some(kind));
    }
    let names: std::collections::HashSet<_> = HistoryKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), HistoryKind::ALL.len());
    assert_eq!(HistoryKind::parse("write"), Some(HistoryKind::Write));
    assert_eq!(HistoryKind::Write.as_str(), "write");
    assert_eq!(HistoryKind::parse("Write"), None);
    assert_eq!(HistoryKind::parse("writes"), None);
    assert_eq!(HistoryKind::parse(""), None);
    // A new variant does not compile here until it is given a place, and
    // then must be at that place in `ALL`.
    let place = |k: HistoryKind| match k {
        HistoryKind::Alarm => 0,
        HistoryKind::WorkOrder => 1,
        HistoryKind::Write => 2,
    };
    for (i, kind) in HistoryKind::ALL.into_iter().enumerate() {
        assert_eq!(place(kind), i);
    }
    // As many as there are places.
    assert_eq!(HistoryKind::ALL.len(), 3);
}

fn write_entry(subject: &str, result: &str, ms: u64) -> HistoryEntry {
    HistoryEntry {
        detail: format!("{{\"result\":\"{result}\",\"n\":{ms}}}"),
        ..entry(HistoryKind::Write, subject, result, ms)
    }
}

/// The write trail is read by device, tag and time, the newest N of
/// those that match, oldest first.
#[tokio::test]
async fn writes_are_read_by_device_tag_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(10));
    let (h, guard) = open(&cfg).unwrap();
    h.record(vec![
        write_entry("pump1/setpoint", "verified", 1),
        // An alarm whose rule name looks like a write's subject.
        entry(HistoryKind::Alarm, "pump1/setpoint", "normal", 2),
        write_entry("pump10/setpoint", "written", 3),
        write_entry("pump1/mode", "rejected", 4),
        write_entry("pump2/setpoint", "unknown", 5),
        write_entry("pump1/setpoint", "rejected", 6),
        write_entry("pümp/sétpoint", "verified", 7),
    ])
    .await
    .unwrap();
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    let read = |prefix: Option<&str>, suffix: Option<&str>, since: Option<u64>, limit: usize| {
        let q = HistoryQuery {
            kind: Some(HistoryKind::Write),
            subject_prefix: prefix.map(str::to_owned),
            subject_suffix: suffix.map(str::to_owned),
            since: since.map(at),
            limit,
        };
        peek.history_where(&q)
            .unwrap()
            .into_iter()
            .map(|r| (r.entry.subject, r.entry.event))
            .collect::<Vec<_>>()
    };
    let pair = |s: &str, e: &str| (s.to_owned(), e.to_owned());
    assert_eq!(read(None, None, None, 100).len(), 6);
    assert_eq!(
        read(Some("pump1/"), None, None, 100),
        [
            pair("pump1/setpoint", "verified"),
            pair("pump1/mode", "rejected"),
            pair("pump1/setpoint", "rejected")
        ]
    );
    assert_eq!(
        read(None, Some("/setpoint"), None, 2),
        [
            pair("pump2/setpoint", "unknown"),
            pair("pump1/setpoint", "rejected")
        ]
    );
    assert_eq!(
        read(Some("pump1/"), Some("/setpoint"), Some(2), 100),
        [pair("pump1/setpoint", "rejected")]
    );
    // Characters, not bytes.
    assert_eq!(
        read(Some("pümp/"), Some("/sétpoint"), None, 100),
        [pair("pümp/sétpoint", "verified")]
    );
    assert!(read(Some("pump3/"), None, None, 100).is_empty());
    assert!(read(None, None, Some(8), 100).is_empty());
    assert!(read(None, None, None, 0).is_empty());
    // The other kinds are untouched by the filters, and `history` reads
    // as before.
    assert_eq!(peek.history(Some(HistoryKind::Alarm), 10).unwrap().len(), 1);
    assert_eq!(peek.history(None, 10).unwrap().len(), 7);
    guard.close().unwrap();
}

/// An alarm flood beyond `HISTORY_ROWS` prunes alarm changes only: the
/// write trail before it is whole.
#[tokio::test]
async fn an_alarm_flood_never_prunes_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(10));
    let (h, guard) = open(&cfg).unwrap();
    h.record(
        (1..=5)
            .map(|i| write_entry("pump1/setpoint", "verified", i))
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let total = HISTORY_ROWS as u64 + 100;
    h.record(
        (1..=total)
            .map(|i| entry(HistoryKind::Alarm, &format!("r{i}"), "normal", 10 + i))
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    let writes = peek.history(Some(HistoryKind::Write), usize::MAX).unwrap();
    assert_eq!(writes.len(), 5);
    assert_eq!(writes[0].id, 1);
    let alarms = peek.history(Some(HistoryKind::Alarm), usize::MAX).unwrap();
    assert_eq!(alarms.len(), HISTORY_ROWS);
    assert_eq!(alarms[0].entry.subject, "r101");
    drop(peek);
    guard.close().unwrap();
    // After a restart, the trails are measured apart: one more write
    // prunes no alarm.
    let (h, guard) = open(&cfg).unwrap();
    h.record(vec![write_entry("pump1/setpoint", "written", total + 20)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(
        peek.history(Some(HistoryKind::Write), 100).unwrap().len(),
        6
    );
    assert_eq!(
        peek.history(Some(HistoryKind::Alarm), usize::MAX)
            .unwrap()
            .len(),
        HISTORY_ROWS
    );
    guard.close().unwrap();
}

/// Writes keep to their quarter of the history's share of a small file,
/// beside a pile of work-order changes, and the outbox loses nothing.
#[tokio::test]
async fn writes_keep_to_their_share_of_a_small_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_bytes: 1 << 20,
        ..config(dir.path(), Duration::from_millis(10))
    };
    let (h, guard) = open(&cfg).unwrap();
    for batch in 0..10u64 {
        let mut entries: Vec<HistoryEntry> = (0..50)
            .map(|i| HistoryEntry {
                detail: format!("{{\"title\":\"{}\"}}", "x".repeat(2000)),
                ..entry(HistoryKind::WorkOrder, "wo", "updated", batch * 100 + i)
            })
            .collect();
        entries.extend((50..100).map(|i| HistoryEntry {
            detail: format!("{{\"message\":\"{}\"}}", "y".repeat(2000)),
            ..write_entry("pump1/setpoint", "rejected", batch * 100 + i)
        }));
        h.record(entries).await.unwrap();
        h.flush().await.unwrap();
    }
    let peek = Inspector::open(&cfg.path).unwrap();
    let writes = peek.history(Some(HistoryKind::Write), usize::MAX).unwrap();
    let changes = peek
        .history(Some(HistoryKind::WorkOrder), usize::MAX)
        .unwrap();
    // Both trails kept some, the newest of each; the writes about a
    // third as many as the changes (a quarter of the share against three).
    assert!(!writes.is_empty() && writes.len() < 500, "{}", writes.len());
    assert!(
        changes.len() > 2 * writes.len(),
        "{} {}",
        changes.len(),
        writes.len()
    );
    assert_eq!(writes.last().map(|r| r.entry.at), Some(at(999)));
    assert_eq!(changes.last().map(|r| r.entry.at), Some(at(949)));
    let s = h.stats().await.unwrap();
    assert!(s.file_bytes <= 1 << 20, "{s:?}");
    guard.close().unwrap();
}

//! Write-behind: a message is published before it is written, and written
//! only if the broker has not acknowledged it by its group commit; each
//! invariant of the module docs, checked through the file as another
//! process (an `Inspector`) or a crash would find it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Durability;

const DATA: &str = "fieldgate/s/g/data/plc";
const ALARM: &str = "fieldgate/s/g/alarms/hot";

fn config(dir: &Path, flush_interval: Duration) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Full,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval,
    }
}

fn message(topic: &str, seq: u64, kind: Kind) -> OutMessage {
    OutMessage {
        topic: topic.into(),
        seq,
        payload: format!("{{\"seq\":{seq}}}").into_bytes(),
        qos: 1,
        retain: false,
        kind,
        created_at: std::time::SystemTime::now().into(),
    }
}

/// Waits (bounded) until the forwarder's watch offers `id`.
async fn offered(committed: &mut watch::Receiver<i64>, id: i64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while *committed.borrow_and_update() < id {
            committed.changed().await.unwrap();
        }
    })
    .await
    .expect("offered in time");
}

/// What a crash would leave: the rows in the file and the seq marks.
fn on_disk(path: &Path) -> (u64, HashMap<String, u64>) {
    let peek = Inspector::open(path).unwrap();
    let (rows, _) = peek.outbox().unwrap();
    (rows, peek.resume_point().unwrap().1)
}

#[tokio::test]
async fn a_message_acknowledged_in_time_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    // The longest interval: no group commit comes due during the test.
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert((1..=3).map(|s| message(DATA, s, Kind::Reading)).collect())
        .await
        .unwrap();
    // Offered before any commit of the rows.
    offered(&mut committed, 3).await;
    let rows = h.fetch_after(Lane::Json, 0, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let (in_file, marks) = on_disk(&cfg.path);
    assert_eq!(in_file, 0, "published before it is written");
    assert!(marks[DATA] >= 3, "yet its seq is reserved: {marks:?}");

    h.delete(rows.iter().map(|r| r.id).collect()).await.unwrap();
    h.flush().await.unwrap();
    let st = h.stats().await.unwrap();
    assert_eq!((st.inserted, st.unwritten, st.acked), (0, 3, 3));
    assert_eq!((st.messages, st.held), (0, 0));
    assert_eq!(on_disk(&cfg.path).0, 0, "never written");
    drop(h);
    guard.close().unwrap();
}

#[tokio::test]
async fn a_message_not_acknowledged_by_its_group_commit_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(20));
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert(vec![message(DATA, 1, Kind::Reading)])
        .await
        .unwrap();
    offered(&mut committed, 1).await;
    // No acknowledgement: its group commit writes it (bounded wait).
    let mut written = false;
    for _ in 0..500 {
        if on_disk(&cfg.path).0 == 1 {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(written, "the unacknowledged message reached the file");
    let st = h.stats().await.unwrap();
    assert_eq!((st.inserted, st.unwritten, st.messages), (1, 0, 1));
    // Its acknowledgement then deletes the row.
    h.delete(vec![1]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(on_disk(&cfg.path).0, 0);
    drop(h);
    guard.close().unwrap();
}

#[tokio::test]
async fn an_alarm_is_offered_only_once_committed_with_its_rules_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert_step(
        vec![
            message(DATA, 1, Kind::Reading),
            message(ALARM, 1, Kind::Alarm),
            message(DATA, 2, Kind::Reading),
        ],
        Vec::new(),
        vec![("rules".into(), b"after the alarm".to_vec())],
        Vec::new(),
    )
    .await
    .unwrap();
    offered(&mut committed, 2).await;
    // The moment the alarm is offered, the file has it with its state.
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(
        peek.state("rules").unwrap().as_deref(),
        Some(&b"after the alarm"[..])
    );
    let (rows, _) = peek.outbox().unwrap();
    assert!(rows >= 2, "the alarm and what came before it: {rows}");
    // The reading after it was held behind it, and is in the same commit.
    let all = h.fetch_after(Lane::Json, 0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Reading, Kind::Alarm, Kind::Reading]
    );
    drop(h);
    guard.close().unwrap();
}

#[tokio::test]
async fn every_offered_seq_is_reserved_in_the_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    let topics: Vec<String> = (0..20)
        .map(|i| format!("fieldgate/s/g/data/d{i}"))
        .collect();
    let mut last_id = 0;
    let mut after = 0;
    // Fast enough that the reservations are raised several times.
    for seq in 1..=300u64 {
        let batch: Vec<OutMessage> = topics
            .iter()
            .map(|t| message(t, seq, Kind::Reading))
            .collect();
        last_id += batch.len() as i64;
        h.insert(batch).await.unwrap();
        offered(&mut committed, last_id).await;
        // What a power cut now would leave covers every seq offered.
        let (_, marks) = on_disk(&cfg.path);
        for r in h.fetch_after(Lane::Json, after, 100).await.unwrap() {
            assert!(
                marks.get(&r.topic).is_some_and(|m| *m >= r.seq),
                "{} seq {} offered above its mark {:?}",
                r.topic,
                r.seq,
                marks.get(&r.topic)
            );
            after = r.id;
        }
        let acked: Vec<i64> = ((last_id - topics.len() as i64 + 1)..=last_id).collect();
        h.delete(acked).await.unwrap();
    }
    let st = h.stats().await.unwrap();
    assert_eq!(st.unwritten, 6000);
    drop(h);
    guard.close().unwrap();
}

#[tokio::test]
async fn a_crash_leaves_a_gap_in_the_numbering_a_clean_stop_none() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert((1..=10).map(|s| message(DATA, s, Kind::Reading)).collect())
        .await
        .unwrap();
    offered(&mut committed, 10).await;
    h.delete((1..=10).collect()).await.unwrap();
    h.flush().await.unwrap();

    // A power cut now: the file as it stands (the store is idle).
    let crashed = tempfile::tempdir().unwrap();
    for name in ["outbox.db", "outbox.db-wal"] {
        let from = dir.path().join(name);
        if from.exists() {
            std::fs::copy(&from, crashed.path().join(name)).unwrap();
        }
    }
    let (h2, guard2) = open(&config(crashed.path(), MAX_FLUSH_INTERVAL)).unwrap();
    let after_crash = h2.topic_seqs().await.unwrap()[DATA];
    assert!(
        after_crash > 10,
        "seqs 1..=10 were published but never written: numbering goes on above them ({after_crash})"
    );
    drop(h2);
    guard2.close().unwrap();

    // A clean stop writes the seqs used: no gap.
    drop(h);
    guard.close().unwrap();
    let (h, guard) = open(&cfg).unwrap();
    assert_eq!(h.topic_seqs().await.unwrap()[DATA], 10);
    drop(h);
    guard.close().unwrap();
}

/// A raise is only for topics used in this run: one that was not keeps
/// its mark, so its numbering goes on without a gap at the next start.
#[tokio::test]
async fn a_topic_not_used_in_a_run_keeps_its_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(5));
    cfg.durability = Durability::Normal;
    let (h, guard) = open(&cfg).unwrap();
    h.insert(vec![message(DATA, 1, Kind::Reading)])
        .await
        .unwrap();
    guard.close().unwrap();
    let (h, guard) = open(&cfg).unwrap();
    h.insert(vec![message("t/0", 1, Kind::Reading)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.topic_seqs().await.unwrap()[DATA], 1);
    drop(h);
    guard.close().unwrap();
}

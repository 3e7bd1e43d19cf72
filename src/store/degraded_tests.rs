//! Degraded mode through the handle, against real failures: a store path
//! that is a folder (the file cannot be opened at start) and SQLite's page
//! cap (`SQLITE_FULL` on every commit while running). Both work without
//! root, which a read-only folder or a full file system would need to be
//! honest (those run in `tests/interop/disk_full.sh`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Durability;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Normal,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_millis(20),
    }
}

fn message(topic: &str, seq: u64, kind: Kind, bytes: usize) -> OutMessage {
    OutMessage {
        topic: topic.into(),
        seq,
        payload: vec![b'x'; bytes],
        qos: 1,
        retain: false,
        kind,
        created_at: SystemTime::now().into(),
    }
}

fn reading(seq: u64) -> OutMessage {
    message("fieldgate/s/g/data/plc", seq, Kind::Reading, 100)
}

/// Waits (bounded) until the store's figures satisfy `ok`.
async fn until(h: &StoreHandle, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
    for _ in 0..300 {
        let st = h.stats().await.unwrap();
        if ok(&st) {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", h.stats().await.unwrap());
}

/// A file that cannot be opened at start: the store starts on memory,
/// offers what it takes to the forwarder, drops what is acknowledged,
/// keeps a second gateway out, and writes the rest with the same ids once
/// the file opens, without a restart.
#[tokio::test]
async fn a_file_that_cannot_be_opened_starts_degraded_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir(&cfg.path).unwrap();
    let (h, guard) = open(&cfg).unwrap();
    let st = h.stats().await.unwrap();
    let d = st.degraded.clone().expect("degraded");
    assert!(d.reason.contains("outbox.db"), "{d:?}");
    // The lock was taken: a second gateway is kept out.
    let err = open(&cfg).unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");

    let mut committed = h.committed();
    h.insert((1..=5).map(reading).collect()).await.unwrap();
    committed.changed().await.unwrap();
    // No file was ever written: ids start at 1.
    assert_eq!(*committed.borrow(), 5);
    let rows = h.fetch_after(Lane::Json, 0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(h.fetch_newest(Lane::Json, 0, 2).await.unwrap()[0].id, 4);
    // Acknowledged: gone from memory like a deleted row.
    h.delete(vec![1, 2]).await.unwrap();
    assert_eq!(
        h.fetch_after(Lane::Json, 0, 10).await.unwrap()[0].id,
        3,
        "acked rows are not offered again"
    );
    let st = h.stats().await.unwrap();
    assert_eq!((st.held, st.messages), (3, 3));
    assert!(h.flush().await.is_err(), "nothing is on disk");
    // Starting the pipeline does not fail on a degraded store, and a
    // reload numbers on from the seqs used in this run.
    assert_eq!(
        h.topic_seqs().await.unwrap(),
        HashMap::from([("fieldgate/s/g/data/plc".to_string(), 5)])
    );
    assert_eq!(h.load_state("rules").await.unwrap(), None);

    // The disk is fixed: the file opens on a retry, no restart.
    std::fs::remove_dir(&cfg.path).unwrap();
    let st = until(&h, "recovery", |s| s.degraded.is_none()).await;
    assert_eq!((st.held, st.messages), (0, 3));
    h.flush().await.unwrap();
    let rows = h.fetch_after(Lane::Json, 0, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5]);
    // The acked messages' seqs are kept: numbering never repeats them.
    assert_eq!(
        h.topic_seqs().await.unwrap().get("fieldgate/s/g/data/plc"),
        Some(&5)
    );
    h.insert(vec![reading(6)]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.fetch_after(Lane::Json, 5, 10).await.unwrap()[0].id, 6);
    drop(h);
    guard.close().unwrap();
}

/// Commits that meet `SQLITE_FULL` with nothing left to evict: the store
/// goes degraded, never stops taking inserts (well beyond what it once
/// held before stopping), offers them, keeps memory within its bound by
/// evicting readings first (counted), and writes what it holds once the
/// disk takes writes again.
#[tokio::test]
async fn a_full_disk_while_running_holds_in_memory_and_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // Room in memory for about 1,000 readings of 100 bytes.
    let (h, guard) = open_bounded(&cfg, 200 * 1024).unwrap();
    h.insert(vec![reading(1)]).await.unwrap();
    h.flush().await.unwrap();
    h.delete(vec![1]).await.unwrap();
    h.flush().await.unwrap();
    // No page more: the next group cannot be written, and no reading is
    // left to evict for room.
    h.cap_pages(Some(0)).await;
    let alarm = message("fieldgate/s/g/alarms/hot", 1, Kind::Alarm, 6000);
    h.insert(vec![alarm]).await.unwrap();
    assert!(h.flush().await.is_err());
    let st = h.stats().await.unwrap();
    let d = st.degraded.clone().expect("degraded");
    assert_eq!(d.fault, DiskFault::Full, "{d:?}");
    assert_eq!(st.held, 1);

    // 25,000 readings in batches of 100: more than ever waited in memory
    // before the thread stopped reading its queue. None of this waits.
    let inserting = async {
        for b in 0..250u64 {
            h.insert((0..100).map(|i| reading(2 + b * 100 + i)).collect())
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), inserting)
        .await
        .expect("inserts never wait on a failing disk");
    let st = h.stats().await.unwrap();
    assert!(st.held_evicted_readings > 20_000, "{st:?}");
    assert_eq!(
        st.held_evicted_other, 0,
        "the alarm stays while readings go"
    );
    assert!(st.held_bytes <= st.held_max_bytes, "{st:?}");
    let rows = h.fetch_after(Lane::Json, 0, 1).await.unwrap();
    assert_eq!(rows[0].kind, Kind::Alarm);
    assert_eq!(rows[0].id, 2, "ids go on from the file's");
    // The newest rows are offered: live publishing goes on.
    let newest = h.fetch_newest(Lane::Json, 0, 1).await.unwrap();
    assert_eq!(newest[0].id, 2 + 25_000);

    // Room again: the next retry writes everything held.
    let held = st.held;
    h.cap_pages(None).await;
    let st = until(&h, "recovery", |s| s.degraded.is_none()).await;
    assert_eq!(st.held, 0);
    assert_eq!(st.messages, held);
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(peek.outbox().unwrap().0, held);
    drop(h);
    guard.close().unwrap();
}

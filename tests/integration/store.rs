//! The SQLite outbox against real files in temporary folders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fieldgate::clock::Timestamp;
use fieldgate::config::{Durability, StoreConfig};
use fieldgate::store::{self, Kind, Lane, OutMessage, Row, StoreError, StoreGuard, StoreHandle};

const DAY: Duration = Duration::from_secs(86_400);

fn config(dir: &Path, max_bytes: u64) -> StoreConfig {
    StoreConfig {
        // A folder that does not exist yet: the store creates it.
        path: dir.join("state").join("outbox.db"),
        durability: Durability::Full,
        max_bytes,
        max_age: 7 * DAY,
        flush_interval: Duration::from_millis(20),
    }
}

/// Now on the timeline of a new store, which starts at the wall clock's
/// reading.
fn now_ms() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn msg(topic: &str, seq: u64, kind: Kind, payload_len: usize) -> OutMessage {
    OutMessage {
        topic: topic.to_string(),
        seq,
        payload: format!("{{\"seq\":{seq},\"v\":\"{}\"}}", "x".repeat(payload_len)).into_bytes(),
        qos: 1,
        retain: kind != Kind::Reading,
        kind,
        created_at: now_ms(),
    }
}

fn reading(seq: u64) -> OutMessage {
    msg("fieldgate/site/gw/data/pump1", seq, Kind::Reading, 20)
}

fn open(config: &StoreConfig) -> (StoreHandle, StoreGuard) {
    store::open(config).unwrap()
}

async fn all_rows(h: &StoreHandle) -> Vec<Row> {
    h.fetch_after(Lane::Json, 0, usize::MAX).await.unwrap()
}

/// Files next to the store whose name starts with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// Database file, WAL and shared-memory file, from the file system.
fn footprint(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn insert_flush_fetch_returns_rows_in_order_with_all_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    let mut sent = Vec::new();
    for i in 1..=10u64 {
        let kind = match i % 4 {
            0 => Kind::Alarm,
            1 => Kind::Reading,
            2 => Kind::WorkOrder,
            _ => Kind::Meter,
        };
        let mut m = msg(&format!("t/{}", i % 3), i, kind, i as usize);
        m.qos = if i % 2 == 0 { 1 } else { 2 };
        m.created_at = now_ms().saturating_sub(Duration::from_secs(i));
        sent.push(m);
    }
    // A seq beyond i64 survives too.
    sent[9].seq = u64::MAX - 1;
    h.insert(sent[..4].to_vec()).await.unwrap();
    h.insert(sent[4..].to_vec()).await.unwrap();
    h.flush().await.unwrap();

    let rows = all_rows(&h).await;
    assert_eq!(rows.len(), 10);
    for (i, (row, m)) in rows.iter().zip(&sent).enumerate() {
        assert_eq!(row.id, i as i64 + 1);
        assert_eq!(row.topic, m.topic);
        assert_eq!(row.seq, m.seq);
        assert_eq!(row.payload, m.payload);
        assert_eq!(row.qos, m.qos);
        assert_eq!(row.retain, m.retain);
        assert_eq!(row.kind, m.kind);
        assert_eq!(row.created_at, m.created_at);
    }
    // Paging.
    let page = h.fetch_after(Lane::Json, 3, 4).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 5, 6, 7]);
    assert!(h.fetch_after(Lane::Json, 10, 100).await.unwrap().is_empty());
    assert!(h.fetch_after(Lane::Json, 0, 0).await.unwrap().is_empty());
    guard.close().unwrap();
}

#[tokio::test]
async fn fetch_newest_returns_the_newest_in_ascending_order() {
    let dir = tempfile::tempdir().unwrap();
    let (h, guard) = open(&config(dir.path(), 64 << 20));
    h.insert((1..=20).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    let ids = |rows: Vec<Row>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(h.fetch_newest(Lane::Json, 0, 3).await.unwrap()),
        [18, 19, 20]
    );
    assert_eq!(
        ids(h.fetch_newest(Lane::Json, 17, 10).await.unwrap()),
        [18, 19, 20]
    );
    assert_eq!(
        ids(h.fetch_newest(Lane::Json, 20, 10).await.unwrap()),
        Vec::<i64>::new()
    );
    // Deleted rows are skipped, still `limit` rows when there are enough.
    h.delete(vec![19, 20]).await.unwrap();
    assert_eq!(
        ids(h.fetch_newest(Lane::Json, 0, 3).await.unwrap()),
        [16, 17, 18]
    );
    guard.close().unwrap();
}

#[tokio::test]
async fn delete_removes_rows_at_once_and_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert((1..=10).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    // Ids that do not exist are ignored.
    h.delete(vec![2, 3, 4, 99]).await.unwrap();
    // No flush: a fetch after `delete` resolves must not see them.
    let ids: Vec<i64> = all_rows(&h).await.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 5, 6, 7, 8, 9, 10]);
    let page: Vec<i64> = h
        .fetch_after(Lane::Json, 1, 3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, [5, 6, 7]);
    h.flush().await.unwrap();
    let s = h.stats().await.unwrap();
    assert_eq!((s.messages, s.acked, s.inserted), (7, 3, 10));
    guard.close().unwrap();

    let (h, guard) = open(&cfg);
    let ids: Vec<i64> = all_rows(&h).await.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 5, 6, 7, 8, 9, 10]);
    guard.close().unwrap();
}

#[tokio::test]
async fn ids_and_topic_seqs_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    assert!(h.topic_seqs().await.unwrap().is_empty());
    h.insert(vec![
        msg("a", 1, Kind::Reading, 5),
        msg("b", 7, Kind::Alarm, 5),
        msg("a", 2, Kind::Reading, 5),
    ])
    .await
    .unwrap();
    h.flush().await.unwrap();
    // Deliver everything: the newest ids are gone from the table.
    h.delete(vec![1, 2, 3]).await.unwrap();
    h.flush().await.unwrap();
    assert!(all_rows(&h).await.is_empty());
    guard.close().unwrap();

    let (h, guard) = open(&cfg);
    assert_eq!(*h.committed().borrow(), 3);
    let seqs = h.topic_seqs().await.unwrap();
    assert_eq!(seqs, HashMap::from([("a".into(), 2), ("b".into(), 7)]));
    h.insert(vec![msg("a", 3, Kind::Reading, 5)]).await.unwrap();
    h.flush().await.unwrap();
    let rows = all_rows(&h).await;
    assert_eq!(rows.len(), 1);
    // Never reused, although ids 1 to 3 are deleted.
    assert_eq!(rows[0].id, 4);
    assert_eq!(h.topic_seqs().await.unwrap()["a"], 3);
    assert_eq!(h.stats().await.unwrap().last_id, 4);
    guard.close().unwrap();
}

#[tokio::test]
async fn committed_watch_advances_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (h, guard) = open(&config(dir.path(), 64 << 20));
    let mut w = h.committed();
    assert_eq!(*w.borrow_and_update(), 0);
    h.insert((1..=5).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    assert!(w.has_changed().unwrap());
    assert_eq!(*w.borrow_and_update(), 5);
    // Without a flush, the group commits within `flush_interval`; the
    // forwarder just waits on the watch.
    h.insert((6..=7).map(reading).collect()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*w.borrow_and_update(), 7);
    assert_eq!(h.fetch_after(Lane::Json, 5, 10).await.unwrap().len(), 2);
    guard.close().unwrap();
}

#[tokio::test]
async fn stats_report_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    let empty = h.stats().await.unwrap();
    assert_eq!(
        (empty.messages, empty.bytes, empty.oldest_age),
        (0, 0, None)
    );
    assert_eq!(empty.max_bytes, 64 << 20);
    let mut old = msg("t/x", 1, Kind::Alarm, 10);
    old.created_at = now_ms().saturating_sub(Duration::from_secs(600));
    let newer = msg("t/y", 1, Kind::Reading, 30);
    let bytes =
        (old.topic.len() + old.payload.len() + newer.topic.len() + newer.payload.len()) as u64;
    h.insert(vec![newer, old.clone()]).await.unwrap();
    h.flush().await.unwrap();
    let s = h.stats().await.unwrap();
    assert_eq!(s.messages, 2);
    assert_eq!(s.bytes, bytes);
    let age = s.oldest_age.unwrap();
    assert!(
        age >= Duration::from_secs(600) && age < Duration::from_secs(660),
        "{age:?}"
    );
    assert_eq!(s.inserted, 2);
    assert_eq!(s.last_id, 2);
    // The figure is the footprint as of the store's last write; one of its
    // own (the timeline's anchor, upkeep) may land between the two reads,
    // so they must agree once they are read with no write between.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let figure = h.stats().await.unwrap().file_bytes;
        let file = footprint(&cfg.path);
        if figure == file {
            break;
        }
        seen.push((figure, file));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.len() < 20, "stats and the files disagree: {seen:?}");
    assert!(s.file_bytes > 0);
    guard.close().unwrap();
}

#[tokio::test]
async fn concurrent_inserts_keep_each_senders_order() {
    let dir = tempfile::tempdir().unwrap();
    let (h, guard) = open(&config(dir.path(), 64 << 20));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..50u64 {
                let batch = (0..20)
                    .map(|i| msg(&format!("t/{t}"), b * 20 + i + 1, Kind::Reading, 10))
                    .collect();
                h.insert(batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    h.flush().await.unwrap();
    let rows = all_rows(&h).await;
    assert_eq!(rows.len(), 4000);
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.id, i as i64 + 1);
        let prev = last.insert(&r.topic, r.seq).unwrap_or(0);
        assert_eq!(r.seq, prev + 1, "seq order within {}", r.topic);
    }
    let seqs = h.topic_seqs().await.unwrap();
    assert!(seqs.values().all(|&s| s == 1000));
    guard.close().unwrap();
}

#[tokio::test]
async fn close_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        // Long enough that only `close` can have committed the rows.
        flush_interval: Duration::from_secs(1),
        ..config(dir.path(), 64 << 20)
    };
    let (h, guard) = open(&cfg);
    h.insert((1..=50).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    h.insert((51..=100).map(reading).collect()).await.unwrap();
    h.delete(vec![1]).await.unwrap();
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        h.insert(vec![reading(101)]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(h.flush().await, Err(StoreError::Closed)));
    // Closing left no WAL behind.
    let (h, guard) = open(&cfg);
    let rows = all_rows(&h).await;
    assert_eq!(rows.len(), 99);
    assert_eq!(rows[0].id, 2);
    guard.close().unwrap();
}

#[tokio::test]
async fn dropping_the_guard_stops_the_thread_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert((1..=10).map(reading).collect()).await.unwrap();
    drop(guard);
    assert!(matches!(
        h.insert(vec![reading(11)]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(h.stats().await, Err(StoreError::Closed)));
    drop(h);
    let (h, guard) = open(&cfg);
    assert_eq!(all_rows(&h).await.len(), 10);
    guard.close().unwrap();
}

/// Opens, retrying while the previous owner thread still holds the file.
async fn reopen(cfg: &StoreConfig) -> (StoreHandle, StoreGuard) {
    for _ in 0..100 {
        match store::open(cfg) {
            Ok(opened) => return opened,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the store never became free");
}

#[tokio::test]
async fn flushed_rows_survive_an_abrupt_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert((1..=500).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    // No close: the guard is leaked, the handle simply dropped.
    std::mem::forget(guard);
    drop(h);
    let (h, guard) = reopen(&cfg).await;
    let rows = all_rows(&h).await;
    assert_eq!(rows.len(), 500);
    assert_eq!(rows.last().unwrap().seq, 500);
    guard.close().unwrap();
}

const CRASH_DIR: &str = "FIELDGATE_STORE_TEST_CRASH_DIR";

/// The child half of `flushed_rows_survive_kill_9`: does nothing unless
/// started by it.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = config(Path::new(&dir), 64 << 20);
        let (h, guard) = open(&cfg);
        for b in 0..20u64 {
            h.insert((1..=100).map(|i| reading(b * 100 + i)).collect())
                .await
                .unwrap();
        }
        h.flush().await.unwrap();
        println!("FLUSHED {}", *h.committed().borrow());
        // More, never flushed: may or may not be there afterwards.
        h.insert((2001..=2100).map(reading).collect())
            .await
            .unwrap();
        std::mem::forget(guard);
        // kill -9 ourselves: no destructor, no checkpoint, no close.
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    });
}

#[tokio::test]
async fn flushed_rows_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        // The test's full path in this binary (module::name).
        .args([
            concat!(module_path!(), "::crash_child")
                .split_once("::")
                .map_or("crash_child", |(_, path)| path),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child was not killed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let flushed: i64 = stdout
        .lines()
        .find_map(|l| l.split("FLUSHED ").nth(1))
        .unwrap_or_else(|| panic!("child output: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(flushed, 2000);
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    let rows = all_rows(&h).await;
    assert!(rows.len() >= 2000, "{} rows", rows.len());
    for (i, r) in rows.iter().take(2000).enumerate() {
        assert_eq!(r.id, i as i64 + 1);
        assert_eq!(r.seq, i as u64 + 1);
    }
    // Ids carry on above whatever the crash left, and above the ids the
    // dead process may have given to messages it never wrote.
    let last = rows.last().unwrap().id;
    h.insert(vec![reading(9999)]).await.unwrap();
    h.flush().await.unwrap();
    let next = h.fetch_after(Lane::Json, last, 10).await.unwrap()[0].id;
    assert!(next > last && next <= 2101, "{next}");
    guard.close().unwrap();
}

#[tokio::test]
async fn a_bounded_outbox_evicts_readings_first_and_stays_under_max_bytes() {
    const MAX: u64 = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX);
    let (h, guard) = open(&cfg);
    // Watches the files from outside the whole time, not only after flushes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, path) = (stop.clone(), cfg.path.clone());
        std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(footprint(&path));
                samples += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (peak, samples)
        })
    };
    let mut others = Vec::new();
    let mut peak = 0;
    // The broker is "down": nothing is ever deleted.
    for b in 0..500u64 {
        let mut batch: Vec<OutMessage> = (1..=100)
            .map(|i| {
                msg(
                    "fieldgate/site/gw/data/pump1",
                    b * 100 + i,
                    Kind::Reading,
                    170,
                )
            })
            .collect();
        if b % 50 == 10 {
            let alarm = msg("fieldgate/site/gw/alarms/hot", b, Kind::Alarm, 170);
            let wo = msg("fieldgate/site/gw/workorders/x", b, Kind::WorkOrder, 170);
            others.push((alarm.topic.clone(), alarm.seq));
            others.push((wo.topic.clone(), wo.seq));
            batch.insert(50, alarm);
            batch.insert(51, wo);
        }
        h.insert(batch).await.unwrap();
        if b % 10 == 9 {
            h.flush().await.unwrap();
            let s = h.stats().await.unwrap();
            let fs = footprint(&cfg.path);
            assert!(fs <= MAX, "batch {b}: {fs} bytes on disk > {MAX}");
            assert!(s.file_bytes <= MAX, "batch {b}: {s:?}");
            assert_eq!(s.evicted_other, 0);
            peak = peak.max(fs);
        }
    }
    h.flush().await.unwrap();
    let s = h.stats().await.unwrap();
    assert!(footprint(&cfg.path) <= MAX);
    let rows = all_rows(&h).await;
    let readings = rows.iter().filter(|r| r.kind == Kind::Reading).count() as u64;
    assert!(readings > 1000, "only {readings} readings kept in 2 MiB");
    assert_eq!(s.evicted_readings, 50_000 - readings);
    assert_eq!(s.evicted_other, 0);
    assert_eq!(s.messages, rows.len() as u64);
    // Every alarm and work order is still there, in order.
    let kept: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| r.kind != Kind::Reading)
        .map(|r| (r.topic.clone(), r.seq))
        .collect();
    assert_eq!(kept, others);
    // The newest readings are the ones kept.
    assert_eq!(rows.last().unwrap().seq, 50_000);
    let first_kept = rows.iter().find(|r| r.kind == Kind::Reading).unwrap();
    assert_eq!(first_kept.seq, 50_000 - readings + 1);
    eprintln!("peak footprint {peak} of {MAX}, {readings} readings kept");

    // The broker comes back for readings only (say), then alarms flood in.
    let ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.kind == Kind::Reading)
        .map(|r| r.id)
        .collect();
    h.delete(ids).await.unwrap();
    for b in 0..100u64 {
        let batch = (1..=100)
            .map(|i| {
                msg(
                    "fieldgate/site/gw/alarms/flood",
                    b * 100 + i,
                    Kind::Alarm,
                    170,
                )
            })
            .collect();
        h.insert(batch).await.unwrap();
    }
    h.flush().await.unwrap();
    let s2 = h.stats().await.unwrap();
    assert!(footprint(&cfg.path) <= MAX);
    let rows = all_rows(&h).await;
    assert!(rows.iter().all(|r| r.kind != Kind::Reading));
    let alarms = rows.iter().filter(|r| r.kind == Kind::Alarm).count() as u64;
    let workorders = rows.iter().filter(|r| r.kind == Kind::WorkOrder).count();
    assert!(s2.evicted_other > 0);
    // 10 early alarms plus 10,000 flood alarms, less those kept.
    assert_eq!(s2.evicted_other, 10 + 10_000 - alarms);
    // Work orders go last: all ten are still there.
    assert_eq!(workorders, 10);
    assert_eq!(s2.evicted_readings, s.evicted_readings);
    guard.close().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sampled_peak, samples) = sampler.join().unwrap();
    eprintln!("sampled peak footprint {sampled_peak} of {MAX} ({samples} samples)");
    assert!(sampled_peak <= MAX, "{sampled_peak} > {MAX}");

    // The counts survive a restart.
    let (h, guard) = open(&cfg);
    let s3 = h.stats().await.unwrap();
    assert_eq!(
        (s3.evicted_readings, s3.evicted_other),
        (s2.evicted_readings, s2.evicted_other)
    );
    guard.close().unwrap();
    assert!(footprint(&cfg.path) <= MAX);
}

#[tokio::test]
async fn a_lowered_bound_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let big = StoreConfig {
        durability: Durability::Normal,
        ..config(dir.path(), 8 << 20)
    };
    let (h, guard) = open(&big);
    for b in 0..400u64 {
        h.insert(
            (1..=100)
                .map(|i| msg("t", b * 100 + i, Kind::Reading, 170))
                .collect(),
        )
        .await
        .unwrap();
    }
    h.flush().await.unwrap();
    guard.close().unwrap();
    assert!(footprint(&big.path) > 6 << 20);

    const SMALL: u64 = 1 << 20;
    let small = StoreConfig {
        max_bytes: SMALL,
        ..big.clone()
    };
    let (h, guard) = open(&small);
    // Upkeep evicts and hands pages back in steps, between commands: wait
    // until it has settled.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = store::Stats {
        oldest_age: None,
        ..h.stats().await.unwrap()
    };
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The oldest row's age grows by itself: not a change.
        let s = store::Stats {
            oldest_age: None,
            ..h.stats().await.unwrap()
        };
        if s == last && s.file_bytes <= SMALL {
            assert_eq!(s.messages + s.evicted_readings, 40_000);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:?}");
        last = s;
    }
    // And it stays there with new rows coming in.
    h.insert(
        (1..=100)
            .map(|i| msg("t", 40_000 + i, Kind::Reading, 170))
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    assert!(footprint(&small.path) <= SMALL);
    let rows = all_rows(&h).await;
    assert_eq!(rows.last().unwrap().seq, 40_100);
    guard.close().unwrap();
    assert!(footprint(&small.path) <= SMALL);
}

#[tokio::test]
async fn small_bounds_still_work() {
    let dir = tempfile::tempdir().unwrap();
    // Far below what the config loader allows: raised to the minimum.
    let cfg = config(dir.path(), 10_000);
    let (h, guard) = open(&cfg);
    for b in 0..50u64 {
        h.insert((1..=100).map(|i| reading(b * 100 + i)).collect())
            .await
            .unwrap();
    }
    // One message larger than the whole bound is refused, not fatal.
    h.insert(vec![msg("big", 1, Kind::Alarm, 1 << 20)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    let s = h.stats().await.unwrap();
    assert_eq!(s.max_bytes, store::MIN_MAX_BYTES);
    assert_eq!(s.rejected, 1);
    assert!(s.messages > 0);
    assert_eq!(s.messages + s.evicted_readings, 5000);
    assert!(footprint(&cfg.path) <= store::MIN_MAX_BYTES);
    guard.close().unwrap();
}

#[tokio::test]
async fn rows_older_than_max_age_are_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_age: Duration::from_secs(3600),
        ..config(dir.path(), 64 << 20)
    };
    let (h, guard) = open(&cfg);
    let two_hours_ago = now_ms().saturating_sub(Duration::from_secs(7200));
    let mut batch = Vec::new();
    for i in 1..=30u64 {
        let mut m = reading(i);
        // Every third reading is fresh; the old ones are interleaved.
        if i % 3 != 0 {
            m.created_at = two_hours_ago.saturating_add(Duration::from_secs(i));
        }
        batch.push(m);
    }
    let mut old_alarm = msg("t/alarm", 1, Kind::Alarm, 10);
    old_alarm.created_at = two_hours_ago;
    batch.push(old_alarm);
    h.insert(batch).await.unwrap();
    h.flush().await.unwrap();
    let rows = all_rows(&h).await;
    let seqs: Vec<u64> = rows
        .iter()
        .filter(|r| r.kind == Kind::Reading)
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=10).map(|i| i * 3).collect::<Vec<_>>());
    // The old alarm waits while readings remain.
    assert!(rows.iter().any(|r| r.kind == Kind::Alarm));
    let s = h.stats().await.unwrap();
    assert_eq!((s.evicted_readings, s.evicted_other), (20, 0));

    // Once every reading is delivered, the stale alarm goes too (upkeep
    // runs every second when idle).
    h.delete(
        rows.iter()
            .filter(|r| r.kind == Kind::Reading)
            .map(|r| r.id)
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = h.stats().await.unwrap();
        if s.evicted_other == 1 {
            assert_eq!(s.messages, 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    guard.close().unwrap();
}

#[tokio::test]
async fn a_corrupt_file_is_moved_aside_and_a_new_store_started() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let folder = cfg.path.parent().unwrap();
    std::fs::create_dir_all(folder).unwrap();
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&cfg.path, &garbage).unwrap();
    std::fs::write(folder.join("outbox.db-wal"), b"not a wal either").unwrap();

    let (h, guard) = open(&cfg);
    h.insert(vec![reading(1)]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(all_rows(&h).await.len(), 1);
    guard.close().unwrap();

    let moved = files_starting(folder, "outbox.db.corrupt-");
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), garbage);
    assert!(moved[1].to_string_lossy().ends_with("-wal"));
}

/// Rewrites the timeline's saved anchor of a closed store, as if the
/// gateway had stopped `ago` before now by the wall clock, on `boot`, with
/// the clock `synced` or not, and `boottime_ago` before now since boot.
fn rewrite_anchor(path: &Path, ago: Duration, synced: bool, boot: &str, boottime_ago: Duration) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let now = Timestamp::from(SystemTime::now());
    let at = now.saturating_sub(ago);
    let fresh = fieldgate::clock::Clock::fresh().anchor();
    let anchor = serde_json::json!({
        "at_us": at.as_millis() * 1000,
        "wall_us": at.as_millis() * 1000,
        "synced": synced,
        "boot": boot,
        "boottime_us": fresh.boottime_us.saturating_sub(boottime_ago.as_micros() as u64),
    });
    conn.execute(
        "UPDATE state SET value = ?1 WHERE key = 'clock'",
        [anchor.to_string().into_bytes()],
    )
    .unwrap();
    // The rows were made just before that stop.
    conn.execute(
        "UPDATE outbox SET created_at = ?1",
        [at.as_millis() as i64 - 1_000],
    )
    .unwrap();
}

/// A Raspberry Pi without a real-time clock: the gateway buffered, was
/// stopped, and starts again on another boot whose wall clock is 8 days
/// "later" but not synchronised. The rows' age counts from the last save,
/// so `max_age` (7 days) evicts nothing; on the same boot, the time off
/// is known exactly (here 3 s) whatever the wall clock did.
#[tokio::test]
async fn a_clock_step_while_stopped_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert((1..=16).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    guard.close().unwrap();

    rewrite_anchor(&cfg.path, 8 * DAY, false, "another-boot", Duration::ZERO);
    let (h, guard) = open(&cfg);
    // Past the store's age check (every second) and a commit.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    h.insert(vec![reading(17)]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(all_rows(&h).await.len(), 17, "nothing evicted");
    let s = h.stats().await.unwrap();
    assert_eq!(s.evicted_readings, 0);
    let age = s.oldest_age.unwrap();
    assert!(
        age < Duration::from_secs(60),
        "age counts from the last save: {age:?}"
    );
    guard.close().unwrap();

    // Same boot: the anchor's boot is this one, saved 3 s ago by the time
    // since boot; the wall clock "says" 8 days (and is ignored).
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    rewrite_anchor(
        &cfg.path,
        8 * DAY,
        false,
        boot.trim(),
        Duration::from_secs(3),
    );
    let (h, guard) = open(&cfg);
    let age = h.stats().await.unwrap().oldest_age.unwrap();
    assert!(
        age >= Duration::from_secs(4) && age < Duration::from_secs(30),
        "the time off is known on the same boot: {age:?}"
    );
    guard.close().unwrap();
}

#[tokio::test]
async fn another_applications_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let folder = cfg.path.parent().unwrap();
    std::fs::create_dir_all(folder).unwrap();
    {
        let other = rusqlite::Connection::open(&cfg.path).unwrap();
        other
            .execute_batch("CREATE TABLE precious (x); INSERT INTO precious VALUES (42);")
            .unwrap();
    }
    let (h, guard) = open(&cfg);
    assert!(all_rows(&h).await.is_empty());
    guard.close().unwrap();
    let moved = files_starting(folder, "outbox.db.corrupt-");
    assert_eq!(moved.len(), 1, "{moved:?}");
    let other = rusqlite::Connection::open(&moved[0]).unwrap();
    let x: i64 = other
        .query_row("SELECT x FROM precious", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 42);
}

#[tokio::test]
async fn a_file_in_use_is_refused_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert(vec![reading(1)]).await.unwrap();
    h.flush().await.unwrap();
    let err = store::open(&cfg).unwrap_err();
    assert!(
        err.to_string().contains("another fieldgate"),
        "unexpected error: {err}"
    );
    // The first store carries on, nothing was moved.
    h.insert(vec![reading(2)]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(all_rows(&h).await.len(), 2);
    guard.close().unwrap();
    assert!(files_starting(cfg.path.parent().unwrap(), "outbox.db.corrupt").is_empty());
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    h.insert(vec![reading(1)]).await.unwrap();
    guard.close().unwrap();
    {
        let conn = rusqlite::Connection::open(&cfg.path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = store::open(&cfg).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(files_starting(cfg.path.parent().unwrap(), "outbox.db.corrupt").is_empty());
}

/// A folder that cannot be made does not stop the start: the store runs
/// degraded (in memory) and says why; once the way is clear it makes the
/// folder and the file, without a restart.
#[tokio::test]
async fn an_uncreatable_folder_is_a_clear_degraded_state() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"a file, not a folder").unwrap();
    let cfg = StoreConfig {
        path: blocker.join("sub").join("outbox.db"),
        ..config(dir.path(), 64 << 20)
    };
    let (h, guard) = store::open(&cfg).expect("a disk fault is not a failed start");
    let st = h.stats().await.unwrap();
    let degraded = st.degraded.expect("degraded");
    assert!(
        degraded.reason.contains("cannot create the store folder"),
        "{degraded:?}"
    );
    h.insert(vec![reading(1)]).await.unwrap();
    assert_eq!(h.fetch_after(Lane::Json, 0, 10).await.unwrap().len(), 1);
    std::fs::remove_file(&blocker).unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if h.stats().await.unwrap().degraded.is_none() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the folder and the file are made on a retry");
    h.flush().await.unwrap();
    drop(h);
    guard.close().unwrap();
    assert!(cfg.path.is_file());
}

mod model {
    //! A property test: random operations against an in-memory model.

    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// (kind, topic, payload length) per message.
        Insert(Vec<(u8, u8, usize)>),
        Flush,
        /// Acknowledge some committed rows, picked by index.
        Delete(Vec<Index>),
        FetchAfter(Index, usize),
        FetchNewest(Index, usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec((0u8..4, 0u8..3, 0usize..300), 1..10).prop_map(Op::Insert),
            2 => Just(Op::Flush),
            2 => prop::collection::vec(any::<Index>(), 1..6).prop_map(Op::Delete),
            2 => (any::<Index>(), 0usize..12).prop_map(|(i, n)| Op::FetchAfter(i, n)),
            1 => (any::<Index>(), 0usize..12).prop_map(|(i, n)| Op::FetchNewest(i, n)),
            1 => Just(Op::Reopen),
        ]
    }

    #[derive(Default)]
    struct Model {
        /// Rows known to be committed and not deleted.
        committed: BTreeMap<i64, OutMessage>,
        /// Queued rows, with the ids they will get, oldest first.
        queued: Vec<(i64, OutMessage)>,
        next_id: i64,
        seqs: HashMap<String, u64>,
    }

    impl Model {
        fn commit_all(&mut self) {
            for (id, m) in self.queued.drain(..) {
                self.committed.insert(id, m);
            }
        }

        /// Checks a fetch: it must be what `take` makes of the committed
        /// rows plus some prefix of the queued ones (a group may have
        /// committed meanwhile); what it shows committed becomes so.
        fn check(
            &mut self,
            rows: &[Row],
            take: impl Fn(Vec<(i64, &OutMessage)>) -> Vec<(i64, &OutMessage)>,
        ) -> Result<(), TestCaseError> {
            let got: Vec<(i64, &str, u64, &[u8], Kind)> = rows
                .iter()
                .map(|r| (r.id, r.topic.as_str(), r.seq, r.payload.as_slice(), r.kind))
                .collect();
            for j in 0..=self.queued.len() {
                let all: Vec<(i64, &OutMessage)> = self
                    .committed
                    .iter()
                    .map(|(&id, m)| (id, m))
                    .chain(self.queued[..j].iter().map(|(id, m)| (*id, m)))
                    .collect();
                let want: Vec<_> = take(all)
                    .into_iter()
                    .map(|(id, m)| (id, m.topic.as_str(), m.seq, m.payload.as_slice(), m.kind))
                    .collect();
                if want == got {
                    let now_committed: Vec<_> = self.queued.drain(..j).collect();
                    self.committed.extend(now_committed);
                    return Ok(());
                }
            }
            Err(TestCaseError::fail(format!(
                "unexpected fetch result {:?}",
                got.iter().map(|r| r.0).collect::<Vec<_>>()
            )))
        }
    }

    async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            durability: Durability::Normal,
            flush_interval: Duration::from_millis(5),
            ..config(dir.path(), 64 << 20)
        };
        let (mut h, mut guard) = open(&cfg);
        let mut model = Model {
            next_id: 1,
            ..Model::default()
        };
        for op in ops {
            match op {
                Op::Insert(specs) => {
                    let mut batch = Vec::new();
                    for (kind, topic, len) in specs {
                        let kind = [Kind::Reading, Kind::Alarm, Kind::WorkOrder, Kind::Meter]
                            [kind as usize];
                        let topic = format!("t/{topic}");
                        let seq = model.seqs.entry(topic.clone()).or_insert(0);
                        *seq += 1;
                        let m = msg(&topic, *seq, kind, len);
                        model.queued.push((model.next_id, m.clone()));
                        model.next_id += 1;
                        batch.push(m);
                    }
                    h.insert(batch).await.unwrap();
                }
                Op::Flush => {
                    h.flush().await.unwrap();
                    model.commit_all();
                    let s = h.stats().await.unwrap();
                    prop_assert_eq!(s.messages, model.committed.len() as u64);
                    prop_assert_eq!(s.last_id, model.next_id - 1);
                    prop_assert_eq!(&h.topic_seqs().await.unwrap(), &model.seqs);
                }
                Op::Delete(picks) => {
                    if model.committed.is_empty() {
                        continue;
                    }
                    let ids: Vec<i64> = model.committed.keys().copied().collect();
                    let chosen: Vec<i64> = picks.iter().map(|p| ids[p.index(ids.len())]).collect();
                    for id in &chosen {
                        model.committed.remove(id);
                    }
                    h.delete(chosen).await.unwrap();
                }
                Op::FetchAfter(pick, limit) => {
                    let after = pick.index(model.next_id as usize + 1) as i64 - 1;
                    let rows = h.fetch_after(Lane::Json, after, limit).await.unwrap();
                    model.check(&rows, |all| {
                        all.into_iter()
                            .filter(|(id, _)| *id > after)
                            .take(limit)
                            .collect()
                    })?;
                }
                Op::FetchNewest(pick, limit) => {
                    let after = pick.index(model.next_id as usize + 1) as i64 - 1;
                    let rows = h.fetch_newest(Lane::Json, after, limit).await.unwrap();
                    model.check(&rows, |all| {
                        let mut v: Vec<_> = all
                            .into_iter()
                            .filter(|(id, _)| *id > after)
                            .rev()
                            .take(limit)
                            .collect();
                        v.reverse();
                        v
                    })?;
                }
                Op::Reopen => {
                    guard.close().unwrap();
                    model.commit_all();
                    (h, guard) = open(&cfg);
                }
            }
        }
        h.flush().await.unwrap();
        model.commit_all();
        let rows = all_rows(&h).await;
        model.check(&rows, |all| all)?;
        guard.close().unwrap();
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn the_outbox_behaves_like_its_model(ops in prop::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(ops))?;
        }
    }
}

#[tokio::test]
async fn named_state_is_committed_with_the_messages_before_it_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = open(&cfg);
    assert_eq!(h.load_state("rules").await.unwrap(), None);

    h.insert(vec![msg("alarms/hot", 1, Kind::Alarm, 50)])
        .await
        .unwrap();
    h.save_state("rules", b"v1".to_vec()).await.unwrap();
    // Queued but not committed yet: a load sees the newest value.
    assert_eq!(h.load_state("rules").await.unwrap(), Some(b"v1".to_vec()));
    h.save_state("rules", b"v2".to_vec()).await.unwrap();
    h.save_state("book", b"open:1".to_vec()).await.unwrap();
    h.flush().await.unwrap();
    // An abrupt stop: no close, no final checkpoint.
    std::mem::forget(guard);
    drop(h);

    let (h, guard) = open(&cfg);
    assert_eq!(h.load_state("rules").await.unwrap(), Some(b"v2".to_vec()));
    assert_eq!(
        h.load_state("book").await.unwrap(),
        Some(b"open:1".to_vec())
    );
    assert_eq!(all_rows(&h).await.len(), 1, "the alarm committed with it");
    drop(h);
    guard.close().unwrap();
}

// ---------------------------------------------------------------------------
// The store's identity
// ---------------------------------------------------------------------------

/// Opens the store, reads its identity, and closes it cleanly.
async fn identity_of(cfg: &StoreConfig) -> store::StoreIdentity {
    let (h, guard) = reopen(cfg).await;
    let identity = h.identity().clone();
    guard.close().unwrap();
    identity
}

fn is_lost(identity: &store::StoreIdentity, why: &str) -> bool {
    matches!(&identity.start, store::StoreStart::Lost { reason, .. } if reason.contains(why))
}

#[tokio::test]
async fn a_clean_reopen_keeps_the_identity_and_an_unclean_stop_renews_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let first = identity_of(&cfg).await;
    assert_eq!(first.start, store::StoreStart::New);
    assert_eq!(first.id.len(), 26, "a ULID: {}", first.id);
    let again = identity_of(&cfg).await;
    assert_eq!(
        again,
        store::StoreIdentity {
            id: first.id.clone(),
            start: store::StoreStart::Kept
        }
    );

    // The previous run ended without closing the file (the mark a clean
    // close clears is still set, as after a power cut).
    {
        let conn = rusqlite::Connection::open(&cfg.path).unwrap();
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'running'", [])
            .unwrap();
    }
    let renewed = identity_of(&cfg).await;
    assert!(
        matches!(renewed.start, store::StoreStart::Renewed { .. }),
        "{renewed:?}"
    );
    assert!(renewed.id > first.id, "a later identity sorts after");
    // The same file: its rows and seqs are kept.
    assert_eq!(identity_of(&cfg).await.start, store::StoreStart::Kept);
}

#[tokio::test]
async fn a_missing_replaced_or_older_store_file_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 << 20);
    let (h, guard) = reopen(&cfg).await;
    h.insert((1..=5).map(reading).collect()).await.unwrap();
    h.flush().await.unwrap();
    let original = h.identity().id.clone();
    guard.close().unwrap();

    // A copy taken now (a backup), then the store goes on.
    let backup = dir.path().join("backup.db");
    std::fs::copy(&cfg.path, &backup).unwrap();
    assert_eq!(identity_of(&cfg).await.start, store::StoreStart::Kept);

    // The backup put back: the same store at an earlier point.
    std::fs::copy(&backup, &cfg.path).unwrap();
    let restored = identity_of(&cfg).await;
    assert!(is_lost(&restored, "back in time"), "{restored:?}");
    assert_ne!(restored.id, original);
    match &restored.start {
        store::StoreStart::Lost { previous, .. } => {
            assert_eq!(previous.as_deref(), Some(original.as_str()))
        }
        other => panic!("{other:?}"),
    }

    // Another store's file in its place.
    let other_dir = tempfile::tempdir().unwrap();
    let other = config(other_dir.path(), 64 << 20);
    identity_of(&other).await;
    std::fs::copy(&other.path, &cfg.path).unwrap();
    let replaced = identity_of(&cfg).await;
    assert!(is_lost(&replaced, "not the one last used"), "{replaced:?}");

    // The file gone, the data folder not empty.
    std::fs::remove_file(&cfg.path).unwrap();
    let missing = identity_of(&cfg).await;
    assert!(is_lost(&missing, "missing"), "{missing:?}");
    let (h, guard) = reopen(&cfg).await;
    assert_eq!(h.topic_seqs().await.unwrap(), HashMap::new(), "a new store");
    assert_eq!(h.identity().start, store::StoreStart::Kept);
    guard.close().unwrap();
}

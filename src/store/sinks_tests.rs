//! The CMMS sink queues through the handle, against a real file: each
//! promise of `sinks` checked through the file as another process (a
//! read-only connection) or a crash would find it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use super::sinks::SINK_ROWS;
use super::*;
use crate::config::Durability;

const WORKORDERS: &str = "fieldgate/s/g/workorders/wo-1";

fn config(dir: &Path, flush_interval: Duration) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Full,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval,
    }
}

/// A moment to the millisecond (what the store keeps).
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn work_order(seq: u64) -> OutMessage {
    OutMessage {
        topic: WORKORDERS.into(),
        seq,
        payload: format!("{{\"seq\":{seq}}}").into_bytes(),
        qos: 1,
        retain: false,
        kind: Kind::WorkOrder,
        created_at: SystemTime::now().into(),
    }
}

fn reading(seq: u64) -> OutMessage {
    OutMessage {
        topic: "fieldgate/s/g/data/plc".into(),
        seq,
        payload: vec![b'x'; 100],
        qos: 1,
        retain: false,
        kind: Kind::Reading,
        created_at: SystemTime::now().into(),
    }
}

fn delivery(sink: &str, kind: DeliveryKind, key: &str, ms: u64) -> Delivery {
    Delivery {
        sink: sink.into(),
        kind,
        key: key.into(),
        event: match kind {
            DeliveryKind::WorkOrder => "raised".into(),
            DeliveryKind::Meter => "reading".into(),
        },
        topic: WORKORDERS.into(),
        payload: format!("{{\"key\":\"{key}\"}}").into_bytes(),
        created_at: at(ms),
    }
}

fn wo(sink: &str, key: &str, ms: u64) -> Delivery {
    delivery(sink, DeliveryKind::WorkOrder, key, ms)
}

fn meter(sink: &str, key: &str, ms: u64) -> Delivery {
    delivery(sink, DeliveryKind::Meter, key, ms)
}

fn sink_ref(sink: &str, key: &str, status: &str) -> SinkRef {
    SinkRef {
        sink: sink.into(),
        key: key.into(),
        wo_id: format!("wo-{key}"),
        reference: format!("CMMS-{key}"),
        status: status.into(),
        topic: WORKORDERS.into(),
        updated_at: at(7),
    }
}

/// A read-only connection of another process.
fn peek(path: &Path) -> Connection {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Work-order rows in the outbox and rows in the sink queue, as the file
/// holds them.
fn counts(path: &Path) -> (i64, i64) {
    peek(path)
        .query_row(
            "SELECT (SELECT count(*) FROM outbox WHERE kind = 'workorder'),
                    (SELECT count(*) FROM sink_queue)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Waits (bounded) until the watch shows at least `id`.
async fn reaches(w: &mut watch::Receiver<i64>, id: i64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while *w.borrow_and_update() < id {
            w.changed().await.unwrap();
        }
    })
    .await
    .expect("in time");
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

fn ids(p: &[PendingDelivery]) -> Vec<i64> {
    p.iter().map(|p| p.id).collect()
}

/// The moment a work order is offered to the forwarder, its deliveries
/// are in the file with it; both are in one transaction.
#[tokio::test]
async fn deliveries_are_committed_with_their_work_order() {
    let dir = tempfile::tempdir().unwrap();
    // The longest interval: only the work order forces a commit.
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    let mut delivered = h.deliveries();
    assert_eq!(*delivered.borrow_and_update(), 0);
    h.insert_step(
        vec![reading(1), work_order(1)],
        Vec::new(),
        vec![("workorders".into(), b"book".to_vec())],
        vec![wo("maximo", "k1", 1), wo("hook", "k1", 1)],
    )
    .await
    .unwrap();
    reaches(&mut committed, 2).await;
    // Offered: the file has the work order and both deliveries.
    assert_eq!(counts(&cfg.path), (1, 2));
    reaches(&mut delivered, 2).await;
    let got = h.sink_pending("maximo", 0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery, wo("maximo", "k1", 1));
    // That they are one transaction (a crash keeps both or neither) is
    // checked by the next test, which makes the deliveries fail.
    drop(h);
    guard.close().unwrap();
}

/// A group whose deliveries cannot be written is not committed at all:
/// no work order is kept without its deliveries, and once the table is
/// back both are written together.
#[tokio::test]
async fn a_work_order_is_never_committed_without_its_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(20));
    let (h, guard) = open(&cfg).unwrap();
    h.flush().await.unwrap();
    let other = Connection::open(&cfg.path).unwrap();
    other.busy_timeout(Duration::from_secs(5)).unwrap();
    other
        .execute_batch("ALTER TABLE sink_queue RENAME TO gone")
        .unwrap();
    h.insert_step(
        vec![work_order(1)],
        Vec::new(),
        Vec::new(),
        vec![wo("maximo", "k1", 1)],
    )
    .await
    .unwrap();
    assert!(h.flush().await.is_err());
    let outbox: i64 = other
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(outbox, 0, "the work order waits with its delivery");
    let st = h.stats().await.unwrap();
    assert!(st.degraded.is_some(), "{st:?}");
    assert_eq!(st.held_deliveries, 1);
    other
        .execute_batch("ALTER TABLE gone RENAME TO sink_queue")
        .unwrap();
    drop(other);
    until(&h, "recovery", |s| s.degraded.is_none()).await;
    h.flush().await.unwrap();
    assert_eq!(counts(&cfg.path), (1, 1));
    drop(h);
    guard.close().unwrap();
}

/// A power cut at any moment a work order is offered: the copy of the
/// file (and its WAL) as it stands holds every work order offered so far
/// with its deliveries.
#[tokio::test]
async fn a_crash_keeps_work_orders_and_deliveries_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    let mut id = 0;
    for seq in 1..=5u64 {
        let key = format!("k{seq}");
        h.insert_step(
            vec![reading(seq), work_order(seq)],
            Vec::new(),
            Vec::new(),
            vec![wo("maximo", &key, seq), wo("hook", &key, seq)],
        )
        .await
        .unwrap();
        id += 2;
        reaches(&mut committed, id).await;
        let crashed = tempfile::tempdir().unwrap();
        for name in ["outbox.db", "outbox.db-wal"] {
            let from = dir.path().join(name);
            if from.exists() {
                std::fs::copy(&from, crashed.path().join(name)).unwrap();
            }
        }
        let (orders, deliveries) = counts(&crashed.path().join("outbox.db"));
        assert_eq!(orders, seq as i64);
        assert_eq!(deliveries, 2 * orders);
    }
    drop(h);
    guard.close().unwrap();
}

/// Pending deliveries: one sink's, committed, oldest first, after an id;
/// `flush` waits for the bridge's deliveries.
#[tokio::test]
async fn pending_is_per_sink_in_order_after_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let batch: Vec<Delivery> = (1..=6)
        .map(|i| {
            let sink = if i % 2 == 0 { "b" } else { "a" };
            wo(sink, &format!("k{i}"), i)
        })
        .collect();
    h.insert_deliveries(batch).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(counts(&cfg.path).1, 6, "flush waits for the deliveries");
    assert_eq!(*h.deliveries().borrow(), 6);
    let a = h.sink_pending("a", 0, 10).await.unwrap();
    assert_eq!(ids(&a), [1, 3, 5]);
    assert!(a.iter().all(|p| p.delivery.sink == "a"));
    assert_eq!(a[1].delivery, wo("a", "k3", 3));
    assert_eq!(ids(&h.sink_pending("a", 1, 10).await.unwrap()), [3, 5]);
    assert_eq!(ids(&h.sink_pending("a", 0, 2).await.unwrap()), [1, 3]);
    assert_eq!(ids(&h.sink_pending("b", 4, 10).await.unwrap()), [6]);
    assert!(h.sink_pending("a", 5, 10).await.unwrap().is_empty());
    assert!(h.sink_pending("none", 0, 10).await.unwrap().is_empty());
    assert!(h.sink_pending("a", 0, 0).await.unwrap().is_empty());
    let f = h.sink_figures().await.unwrap();
    assert_eq!(
        f,
        [
            SinkFigures {
                sink: "a".into(),
                pending: 3,
                parked: 0,
                oldest: Some(at(1)),
            },
            SinkFigures {
                sink: "b".into(),
                pending: 3,
                parked: 0,
                oldest: Some(at(2)),
            },
        ]
    );
    drop(h);
    guard.close().unwrap();
}

/// `sink_done` deletes the delivery and writes the ref in one transaction
/// committed before it returns; both survive a reopen, and ids are never
/// given again.
#[tokio::test]
async fn done_deletes_and_keeps_the_ref_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    h.insert_deliveries(vec![wo("maximo", "k1", 1), wo("maximo", "k2", 2)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    h.sink_done(2, Some(sink_ref("maximo", "k2", "open")))
        .await
        .unwrap();
    // Committed before the reply: another process sees it at once.
    let (left, refs): (i64, i64) = peek(&cfg.path)
        .query_row(
            "SELECT (SELECT count(*) FROM sink_queue), (SELECT count(*) FROM sink_refs)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((left, refs), (1, 1));

    // A ref that cannot be written: the delivery is not deleted either.
    let other = Connection::open(&cfg.path).unwrap();
    other.busy_timeout(Duration::from_secs(5)).unwrap();
    other
        .execute_batch("ALTER TABLE sink_refs RENAME TO gone")
        .unwrap();
    let err = h.sink_done(1, Some(sink_ref("maximo", "k1", "open"))).await;
    assert!(err.is_err());
    other
        .execute_batch("ALTER TABLE gone RENAME TO sink_refs")
        .unwrap();
    drop(other);
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [1]);
    drop(h);
    guard.close().unwrap();

    let (h, guard) = open(&cfg).unwrap();
    assert_eq!(*h.deliveries().borrow(), 2, "the file's newest id");
    assert_eq!(
        h.sink_ref("maximo", "k2").await.unwrap(),
        Some(sink_ref("maximo", "k2", "open"))
    );
    assert_eq!(h.sink_ref("maximo", "k1").await.unwrap(), None);
    h.sink_done(1, None).await.unwrap();
    assert!(h.sink_pending("maximo", 0, 10).await.unwrap().is_empty());
    // The queue is empty, yet the next id goes on above the last.
    h.insert_deliveries(vec![wo("maximo", "k3", 3)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [3]);
    assert_eq!(*h.deliveries().borrow(), 3);
    // An unknown id is no error.
    h.sink_done(99, None).await.unwrap();
    drop(h);
    guard.close().unwrap();
}

/// A parked delivery leaves the pending queue with its error until it is
/// un-parked, which wakes the connectors.
#[tokio::test]
async fn park_and_unpark() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    h.insert_deliveries(vec![wo("a", "k1", 1), wo("a", "k2", 2), wo("b", "k3", 3)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    h.sink_park(1, "400: unknown asset".into()).await.unwrap();
    h.sink_park(3, "422: bad field".into()).await.unwrap();
    assert_eq!(ids(&h.sink_pending("a", 0, 10).await.unwrap()), [2]);
    let parked = h.sink_parked().await.unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.id, p.error.as_str()))
            .collect::<Vec<_>>(),
        [(1, "400: unknown asset"), (3, "422: bad field")]
    );
    assert_eq!(parked[0].delivery, wo("a", "k1", 1));
    let age = SystemTime::now()
        .duration_since(parked[0].parked_at)
        .unwrap();
    assert!(age < Duration::from_secs(60), "{age:?}");
    let f = h.sink_figures().await.unwrap();
    assert_eq!(
        f.iter()
            .map(|f| (f.sink.as_str(), f.pending, f.parked, f.oldest))
            .collect::<Vec<_>>(),
        [("a", 1, 1, Some(at(2))), ("b", 0, 1, None)]
    );
    // The command line reads the same from the file.
    let inspector = Inspector::open(&cfg.path).unwrap();
    assert_eq!(inspector.parked_deliveries().unwrap(), parked);
    assert_eq!(inspector.sink_figures().unwrap(), f);

    let mut delivered = h.deliveries();
    delivered.borrow_and_update();
    assert_eq!(h.sink_unpark(Some("a".into())).await.unwrap(), 1);
    assert!(delivered.has_changed().unwrap(), "connectors look again");
    assert_eq!(ids(&h.sink_pending("a", 0, 10).await.unwrap()), [1, 2]);
    assert_eq!(h.sink_unpark(Some("a".into())).await.unwrap(), 0);
    assert_eq!(h.sink_unpark(None).await.unwrap(), 1);
    assert!(h.sink_parked().await.unwrap().is_empty());
    assert_eq!(ids(&h.sink_pending("b", 0, 10).await.unwrap()), [3]);
    drop(h);
    guard.close().unwrap();
}

/// Status polling asks only about work orders that have not ended; a ref
/// is replaced by the newer one.
#[tokio::test]
async fn open_refs_leave_out_closed_and_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    for (key, status) in [
        ("k1", "open"),
        ("k2", "accepted"),
        ("k3", "in_progress"),
        ("k4", "closed"),
        ("k5", "cancelled"),
    ] {
        h.sink_put_ref(sink_ref("maximo", key, status))
            .await
            .unwrap();
    }
    h.sink_put_ref(sink_ref("hook", "k9", "open"))
        .await
        .unwrap();
    let open_keys =
        |refs: Vec<SinkRef>| -> Vec<String> { refs.into_iter().map(|r| r.key).collect() };
    assert_eq!(
        open_keys(h.sink_open_refs("maximo").await.unwrap()),
        ["k1", "k2", "k3"]
    );
    h.sink_put_ref(sink_ref("maximo", "k2", "closed"))
        .await
        .unwrap();
    assert_eq!(
        open_keys(h.sink_open_refs("maximo").await.unwrap()),
        ["k1", "k3"]
    );
    assert_eq!(
        h.sink_ref("maximo", "k2").await.unwrap().map(|r| r.status),
        Some("closed".into())
    );
    assert_eq!(open_keys(h.sink_open_refs("hook").await.unwrap()), ["k9"]);
    // Committed before the reply.
    let n: i64 = peek(&cfg.path)
        .query_row("SELECT count(*) FROM sink_refs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);
    drop(h);
    guard.close().unwrap();
}

/// At [`SINK_ROWS`] a connector's oldest meter deliveries go first; work
/// orders are never dropped, and other connectors are not touched.
#[tokio::test]
async fn the_bound_drops_the_oldest_meters_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let full = SINK_ROWS as usize;
    // A full queue: five work orders among meter values.
    let mut batch: Vec<Delivery> = Vec::with_capacity(full);
    for i in 0..full as u64 {
        batch.push(if i % 2_000 == 0 {
            wo("mx", &format!("w{i}"), i)
        } else {
            meter("mx", &format!("m{i}"), i)
        });
    }
    h.insert_deliveries(batch).await.unwrap();
    h.insert_deliveries(vec![meter("other", "m", 0)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.stats().await.unwrap().sink_meters_dropped, 0);
    // Ten more work orders: the ten oldest meters go.
    h.insert_deliveries(
        (0..10)
            .map(|i| wo("mx", &format!("new{i}"), 20_000 + i))
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.stats().await.unwrap().sink_meters_dropped, 10);
    let left = h.sink_pending("mx", 0, 2 * full).await.unwrap();
    assert_eq!(left.len(), full);
    let work_orders = left
        .iter()
        .filter(|p| p.delivery.kind == DeliveryKind::WorkOrder)
        .count();
    assert_eq!(work_orders, 15, "no work order is dropped");
    // The oldest meters (ids 2..=11, around the first work order) went.
    assert_eq!(ids(&left[..2]), [1, 12]);
    assert_eq!(h.sink_pending("other", 0, 10).await.unwrap().len(), 1);

    // A queue of work orders only grows beyond the bound.
    h.insert_deliveries(
        (0..=full as u64)
            .map(|i| wo("wos", &format!("w{i}"), i))
            .collect(),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let f = h.sink_figures().await.unwrap();
    let wos = f.iter().find(|f| f.sink == "wos").unwrap();
    assert_eq!(wos.pending, SINK_ROWS + 1);
    assert_eq!(h.stats().await.unwrap().sink_meters_dropped, 10);
    drop(h);
    guard.close().unwrap();
}

/// The eviction of the outbox (readings first, by the disk budget) never
/// touches the sink queues.
#[tokio::test]
async fn outbox_evictions_leave_the_sink_queues_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(10));
    cfg.max_bytes = evict::MIN_MAX_BYTES;
    cfg.durability = Durability::Normal;
    let (h, guard) = open(&cfg).unwrap();
    h.insert_deliveries((0..20).map(|i| wo("mx", &format!("w{i}"), i)).collect())
        .await
        .unwrap();
    h.flush().await.unwrap();
    // Far more readings than the bound holds.
    for b in 0..40u64 {
        h.insert((0..100).map(|i| reading(1 + b * 100 + i)).collect())
            .await
            .unwrap();
        h.flush().await.unwrap();
    }
    let st = h.stats().await.unwrap();
    assert!(st.evicted_readings > 0, "{st:?}");
    assert_eq!(h.sink_pending("mx", 0, 100).await.unwrap().len(), 20);
    drop(h);
    guard.close().unwrap();
}

/// A v4 file (before the sink queues) opens, keeps its rows and takes
/// deliveries.
#[tokio::test]
async fn a_v4_store_gains_the_sink_queues() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    {
        let conn = Connection::open(&cfg.path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        for (i, sql) in schema::MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO outbox VALUES (1, 't', 1, x'7b7d', 1, 0, 'workorder', 5);
             UPDATE meta SET value = 1 WHERE key = 'last_id';
             INSERT INTO topic_seq VALUES ('t', 1);",
        )
        .unwrap();
    }
    // The inspector reads the old file: no queue yet.
    let inspector = Inspector::open(&cfg.path).unwrap();
    assert!(inspector.sink_figures().unwrap().is_empty());
    assert!(inspector.parked_deliveries().unwrap().is_empty());
    drop(inspector);
    let (h, guard) = open(&cfg).unwrap();
    assert_eq!(*h.deliveries().borrow(), 0);
    assert_eq!(h.fetch_after(Lane::Json, 0, 10).await.unwrap().len(), 1);
    h.insert_deliveries(vec![wo("maximo", "k1", 1)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [1]);
    drop(h);
    guard.close().unwrap();
    let inspector = Inspector::open(&cfg.path).unwrap();
    assert_eq!(inspector.schema_version(), schema::SINK_VERSION);
    assert_eq!(inspector.sink_figures().unwrap().len(), 1);
}

/// A file that cannot be opened: deliveries wait in memory (counted in
/// the figures), the commands that need the file say why they cannot
/// answer, and once the file opens the deliveries are written and the
/// watch moves.
#[tokio::test]
async fn degraded_holds_deliveries_in_memory_and_writes_them_after() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(20));
    std::fs::create_dir(&cfg.path).unwrap();
    let (h, guard) = open(&cfg).unwrap();
    assert!(h.stats().await.unwrap().degraded.is_some());
    let mut delivered = h.deliveries();
    h.insert_step(
        vec![work_order(1)],
        Vec::new(),
        Vec::new(),
        vec![wo("maximo", "k1", 1), meter("maximo", "hours", 2)],
    )
    .await
    .unwrap();
    h.insert_deliveries(vec![wo("hook", "k1", 3)])
        .await
        .unwrap();
    let st = h.stats().await.unwrap();
    assert_eq!(st.held_deliveries, 3);
    for err in [
        h.sink_pending("maximo", 0, 10).await.map(|_| ()),
        h.sink_done(1, None).await,
        h.sink_put_ref(sink_ref("maximo", "k1", "open")).await,
        h.sink_figures().await.map(|_| ()),
    ] {
        match err {
            Err(StoreError::Io(text)) => {
                assert!(text.contains("cannot be opened"), "{text}")
            }
            other => panic!("{other:?}"),
        }
    }

    std::fs::remove_dir(&cfg.path).unwrap();
    until(&h, "recovery", |s| s.degraded.is_none()).await;
    h.flush().await.unwrap();
    reaches(&mut delivered, 3).await;
    assert_eq!(h.stats().await.unwrap().held_deliveries, 0);
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [1, 2]);
    assert_eq!(ids(&h.sink_pending("hook", 0, 10).await.unwrap()), [3]);
    drop(h);
    guard.close().unwrap();
}

/// A full disk while running: deliveries wait in memory with their work
/// order (counted as pending in the figures) and are written when the
/// disk takes writes again.
#[tokio::test]
async fn a_full_disk_holds_deliveries_until_it_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(20));
    cfg.durability = Durability::Normal;
    let (h, guard) = open(&cfg).unwrap();
    h.insert_deliveries(vec![wo("maximo", "k0", 0)])
        .await
        .unwrap();
    h.flush().await.unwrap();
    h.cap_pages(Some(0)).await;
    let big = OutMessage {
        payload: vec![b'x'; 6000],
        ..work_order(1)
    };
    h.insert_step(
        vec![big],
        Vec::new(),
        Vec::new(),
        vec![wo("maximo", "k1", 1)],
    )
    .await
    .unwrap();
    assert!(h.flush().await.is_err());
    let st = h.stats().await.unwrap();
    assert!(st.degraded.is_some(), "{st:?}");
    assert_eq!(st.held_deliveries, 1);
    // The file still answers reads: the committed delivery, and the
    // figures with the one in memory.
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [1]);
    let f = h.sink_figures().await.unwrap();
    assert_eq!(f[0].pending, 2);

    h.cap_pages(None).await;
    until(&h, "recovery", |s| s.degraded.is_none()).await;
    h.flush().await.unwrap();
    assert_eq!(counts(&cfg.path), (1, 2));
    assert_eq!(ids(&h.sink_pending("maximo", 0, 10).await.unwrap()), [1, 2]);
    drop(h);
    guard.close().unwrap();
}

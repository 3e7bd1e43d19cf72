//! Lanes through the handle: the JSON and Sparkplug rows interleave in one
//! id order, in the file and in memory (written or not, degraded or not);
//! each fetch sees only its lane, in id order, and comes back short only
//! when its lane has no more; each lane's deletes leave the other's rows;
//! `Stats::sparkplug_messages` follows every change.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Durability;

fn config(dir: &Path, flush_interval: Duration) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Normal,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval,
    }
}

/// The lane of the message that gets id `id` in a fresh store: runs of
/// unequal length (ids 3, 6, 7, 9, 12, 14, 15… are Sparkplug).
fn sparkplug_id(id: i64) -> bool {
    id % 3 == 0 || id % 7 == 0
}

fn message(id: i64) -> OutMessage {
    // Two topics per lane, by the id's parity; their seqs stay within a
    // topic's first reservation (nothing waits for a commit to be offered).
    let topic = if sparkplug_id(id) {
        format!("{SPARKPLUG_TOPIC_PREFIX}plant/DDATA/gw/d{}", id % 2)
    } else {
        format!("fieldgate/s/g/data/d{}", id % 2)
    };
    OutMessage {
        topic,
        seq: id as u64 / 2 + 1,
        payload: format!("{{\"id\":{id}}}").into_bytes(),
        qos: 1,
        retain: false,
        kind: Kind::Reading,
        created_at: SystemTime::now().into(),
    }
}

/// The messages that get ids `ids` in a fresh store.
fn messages(ids: RangeInclusive<i64>) -> Vec<OutMessage> {
    ids.map(message).collect()
}

fn lane_of(id: i64) -> Lane {
    if sparkplug_id(id) {
        Lane::Sparkplug
    } else {
        Lane::Json
    }
}

/// The ids of `lane` among `ids`.
fn lane_ids(ids: RangeInclusive<i64>, lane: Lane) -> Vec<i64> {
    ids.filter(|id| lane_of(*id) == lane).collect()
}

fn ids(rows: &[Row]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
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

/// Every fetch of `lane` agrees with `want` (its ids, oldest first): all
/// at once, page by page whatever the page size (a page is short only at
/// the end), and the newest, oldest first, above any cursor.
async fn lane_reads(h: &StoreHandle, lane: Lane, want: &[i64]) {
    let all = h.fetch_after(lane, 0, 10_000).await.unwrap();
    assert!(all.iter().all(|r| Lane::of(&r.topic) == lane), "{lane:?}");
    assert_eq!(ids(&all), want, "{lane:?}: everything");
    for limit in [1, 2, 3, 7, 50] {
        let mut got = Vec::new();
        let mut after = 0;
        for _ in 0..=want.len() {
            let rows = h.fetch_after(lane, after, limit).await.unwrap();
            assert!(rows.len() <= limit);
            got.extend(ids(&rows));
            match rows.last() {
                Some(last) if rows.len() == limit => after = last.id,
                _ => break,
            }
        }
        assert_eq!(got, want, "{lane:?}: pages of {limit}");
    }
    for limit in [1, 4, 13, 10_000] {
        let newest = h.fetch_newest(lane, 0, limit).await.unwrap();
        let from = want.len().saturating_sub(limit);
        assert_eq!(ids(&newest), want[from..], "{lane:?}: the newest {limit}");
    }
    for (i, cursor) in want.iter().enumerate() {
        let newest = h.fetch_newest(lane, *cursor, 3).await.unwrap();
        let above = &want[i + 1..];
        assert_eq!(
            ids(&newest),
            above[above.len().saturating_sub(3)..],
            "{lane:?}: the newest 3 above {cursor}"
        );
    }
}

/// Rows in the file and messages held in memory (offered, not written):
/// each lane reads as one run in id order across the two.
#[tokio::test]
async fn each_fetch_sees_only_its_lane_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    // The longest interval: nothing is written by itself during the test.
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert(messages(1..=40)).await.unwrap();
    h.flush().await.unwrap();
    h.insert(messages(41..=60)).await.unwrap();
    offered(&mut committed, 60).await;
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(peek.outbox().unwrap().0, 40, "41..=60 are in memory");
    for lane in [Lane::Json, Lane::Sparkplug] {
        lane_reads(&h, lane, &lane_ids(1..=60, lane)).await;
    }
    let st = h.stats().await.unwrap();
    let spb = lane_ids(1..=60, Lane::Sparkplug).len() as u64;
    assert_eq!((st.messages, st.held, st.sparkplug_messages), (60, 20, spb));
    drop(h);
    guard.close().unwrap();
}

/// Acknowledged rows of one lane (their deletion not yet committed, then
/// committed; in the file and in memory) leave the other lane's rows and
/// never shorten a fetch of either.
#[tokio::test]
async fn deletes_of_one_lane_leave_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    h.insert(messages(1..=60)).await.unwrap();
    h.flush().await.unwrap();
    h.insert(messages(61..=80)).await.unwrap();
    offered(&mut committed, 80).await;
    let (json, spb) = (
        lane_ids(1..=80, Lane::Json),
        lane_ids(1..=80, Lane::Sparkplug),
    );

    // The JSON forwarder acknowledges its rows up to 70: those in the
    // file wait for their deletion's commit (skipped by fetches), those
    // in memory are dropped unwritten.
    let acked: Vec<i64> = json.iter().copied().filter(|id| *id <= 70).collect();
    h.delete(acked.clone()).await.unwrap();
    let json_left: Vec<i64> = json.iter().copied().filter(|id| *id > 70).collect();
    lane_reads(&h, Lane::Json, &json_left).await;
    lane_reads(&h, Lane::Sparkplug, &spb).await;
    // More skipped ids than the limit, of both lanes: still a full page.
    let spb_acked: Vec<i64> = spb.iter().copied().filter(|id| *id <= 40).collect();
    h.delete(spb_acked.clone()).await.unwrap();
    let spb_left: Vec<i64> = spb.iter().copied().filter(|id| *id > 40).collect();
    assert_eq!(
        ids(&h.fetch_after(Lane::Sparkplug, 0, 2).await.unwrap()),
        spb_left[..2]
    );
    assert_eq!(
        ids(&h.fetch_after(Lane::Json, 0, 2).await.unwrap()),
        json_left[..2]
    );
    h.flush().await.unwrap();
    lane_reads(&h, Lane::Json, &json_left).await;
    lane_reads(&h, Lane::Sparkplug, &spb_left).await;
    let st = h.stats().await.unwrap();
    let in_memory_acked = acked.iter().filter(|id| **id > 60).count() as u64;
    assert_eq!(st.unwritten, in_memory_acked);
    assert_eq!(st.acked, (acked.len() + spb_acked.len()) as u64);
    assert_eq!(st.messages, (json_left.len() + spb_left.len()) as u64);
    assert_eq!(st.sparkplug_messages, spb_left.len() as u64);

    // The edge node acknowledges the rest of its lane: the JSON rows stay.
    h.delete(spb_left).await.unwrap();
    h.flush().await.unwrap();
    assert!(
        h.fetch_after(Lane::Sparkplug, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    lane_reads(&h, Lane::Json, &json_left).await;
    let st = h.stats().await.unwrap();
    assert_eq!(
        (st.messages, st.sparkplug_messages),
        (json_left.len() as u64, 0)
    );
    drop(h);
    guard.close().unwrap();
}

/// The Sparkplug count is kept, not counted per call: after inserts
/// (held and written), deletes (unwritten and written), and across a
/// reopen, which counts the file once.
#[tokio::test]
async fn the_sparkplug_count_follows_every_change_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX_FLUSH_INTERVAL);
    let (h, guard) = open(&cfg).unwrap();
    let mut committed = h.committed();
    let count = |ids: RangeInclusive<i64>| lane_ids(ids, Lane::Sparkplug).len() as u64;
    let st = h.stats().await.unwrap();
    assert_eq!(st.sparkplug_messages, 0);
    h.insert(messages(1..=30)).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.stats().await.unwrap().sparkplug_messages, count(1..=30));
    h.insert(messages(31..=50)).await.unwrap();
    offered(&mut committed, 50).await;
    let st = h.stats().await.unwrap();
    assert_eq!(st.held, 20);
    assert_eq!(st.sparkplug_messages, count(1..=50), "held ones count");
    // One written, one held.
    h.delete(vec![3, 42]).await.unwrap();
    h.flush().await.unwrap();
    let st = h.stats().await.unwrap();
    assert_eq!((st.held, st.unwritten), (0, 1));
    assert_eq!(st.sparkplug_messages, count(1..=50) - 2);
    // A JSON delete changes nothing.
    h.delete(vec![1, 2]).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(
        h.stats().await.unwrap().sparkplug_messages,
        count(1..=50) - 2
    );
    drop(h);
    guard.close().unwrap();

    let (h, guard) = open(&cfg).unwrap();
    let st = h.stats().await.unwrap();
    assert_eq!(st.messages, 46);
    assert_eq!(st.sparkplug_messages, count(1..=50) - 2);
    assert_eq!(
        ids(&h.fetch_after(Lane::Sparkplug, 0, 2).await.unwrap()),
        [6, 7]
    );
    drop(h);
    guard.close().unwrap();
}

/// A store whose file cannot be opened runs on memory: its fetches keep
/// to their lane, its count covers what memory holds, and once the file
/// opens the same rows, written with their ids, read the same.
#[tokio::test]
async fn a_degraded_store_keeps_its_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(20));
    std::fs::create_dir(&cfg.path).unwrap();
    let (h, guard) = open(&cfg).unwrap();
    assert!(h.stats().await.unwrap().degraded.is_some());
    let mut committed = h.committed();
    h.insert(messages(1..=30)).await.unwrap();
    offered(&mut committed, 30).await;
    let (json, spb) = (
        lane_ids(1..=30, Lane::Json),
        lane_ids(1..=30, Lane::Sparkplug),
    );
    lane_reads(&h, Lane::Json, &json).await;
    lane_reads(&h, Lane::Sparkplug, &spb).await;
    let st = h.stats().await.unwrap();
    assert_eq!((st.held, st.sparkplug_messages), (30, spb.len() as u64));
    // The edge node's acknowledgement drops its message from memory.
    h.delete(vec![spb[0]]).await.unwrap();
    let spb_left = &spb[1..];
    lane_reads(&h, Lane::Sparkplug, spb_left).await;
    lane_reads(&h, Lane::Json, &json).await;

    std::fs::remove_dir(&cfg.path).unwrap();
    let st = until(&h, "recovery", |s| s.degraded.is_none()).await;
    assert_eq!(st.held, 0);
    assert_eq!(st.sparkplug_messages, spb_left.len() as u64);
    h.flush().await.unwrap();
    let peek = Inspector::open(&cfg.path).unwrap();
    assert_eq!(peek.outbox().unwrap().0, 29, "written with their ids");
    lane_reads(&h, Lane::Sparkplug, spb_left).await;
    lane_reads(&h, Lane::Json, &json).await;
    drop(h);
    guard.close().unwrap();
}

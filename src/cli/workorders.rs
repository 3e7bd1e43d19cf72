//! `fieldgate workorders [--open]`: the work orders the gateway keeps, as
//! it last saved them, then the recent work-order changes from the store's
//! history, then the deliveries the CMMS connectors parked (refused by the
//! CMMS, with its error text) when there are any.

use std::process::ExitCode;

use super::inspect::{self, Reported, ViewArgs};
use super::table::{self, Table};
use crate::clock::WallMap;
use crate::contract::json::timestamp;
use crate::contract::rules as payload;
use crate::rules::{STATE_WORKORDERS, WorkOrder, WorkOrderBook};
use crate::store::{DeliveryKind, HistoryKind, Inspector};
use crate::telemetry::ParkedView;

const COMMAND: &str = "workorders";

/// Titles are cut to this many characters, so a row stays on a wide
/// terminal line.
const TITLE_WIDTH: usize = 40;

/// The CMMS's error text is cut to this many characters in the table (it
/// may be a whole HTML page); `--json` has it whole.
const ERROR_WIDTH: usize = 200;

/// Options of `fieldgate workorders`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkordersArgs {
    /// Where the store is, how much history, which format.
    #[command(flatten)]
    pub view: ViewArgs,

    /// Only work orders not closed yet (open, accepted, in progress).
    #[arg(long)]
    pub open: bool,
}

/// Prints the work orders; exit code 1 when the store cannot be read.
pub fn run(args: &WorkordersArgs) -> ExitCode {
    match show(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reported) => reported.into(),
    }
}

fn show(args: &WorkordersArgs) -> Result<(), Reported> {
    let view = &args.view;
    let store = inspect::open(COMMAND, view)?;
    // The book keeps moments of the gateway's timeline; the file's saved
    // anchor says how they read as wall-clock time.
    let wall = store.wall_map().unwrap_or(WallMap::IDENTITY);
    let book: Option<WorkOrderBook> =
        inspect::load(COMMAND, &store, STATE_WORKORDERS, "work-order book")?;
    // Oldest first (ids are ULIDs, which sort by creation).
    let orders: Vec<&WorkOrder> = match &book {
        Some(book) if args.open => book.open().collect(),
        Some(book) => book.all().collect(),
        None => Vec::new(),
    };
    let parked = parked(&store)?;
    if view.json {
        let items = orders
            .iter()
            .map(|wo| {
                let mut item = as_json(wo, &wall)?;
                with_parked(&mut item, wo, &parked);
                Ok(item)
            })
            .collect::<Result<Vec<_>, Reported>>()?;
        return inspect::print_json(COMMAND, &items);
    }
    let mut out = String::new();
    match &book {
        None => out
            .push_str("No work orders saved yet — the gateway has not run rules on this store.\n"),
        Some(_) if orders.is_empty() => out.push_str(if args.open {
            "No open work orders.\n"
        } else {
            "No work orders kept.\n"
        }),
        Some(book) => {
            out.push_str(&work_order_table(&orders, &wall));
            let open = book.open().count();
            out.push_str(&format!(
                "\n{} kept, {open} open.\n",
                table::count(book.all().count(), "work order")
            ));
        }
    }
    if book.is_some() {
        out.push_str(&inspect::saved_line(COMMAND, &store, STATE_WORKORDERS)?);
    }
    out.push_str(&inspect::recent_changes(
        COMMAND,
        &store,
        HistoryKind::WorkOrder,
        "WORK ORDER",
        view.history,
    )?);
    out.push_str(&inspect::outbox_line(COMMAND, &store)?);
    out.push_str(&parked_section(&parked));
    table::emit(&out);
    Ok(())
}

/// Every parked delivery of every connector, oldest first.
fn parked(store: &Inspector) -> Result<Vec<ParkedView>, Reported> {
    let parked = store.parked_deliveries().map_err(|e| {
        eprintln!("fieldgate {COMMAND}: {e}");
        Reported
    })?;
    let mut views: Vec<ParkedView> = parked.iter().map(ParkedView::of).collect();
    views.sort_by(|a, b| a.parked_at.cmp(&b.parked_at).then(a.id.cmp(&b.id)));
    Ok(views)
}

/// "Parked in CMMS connectors": each delivery a CMMS refused, with its
/// error text; empty when none is parked.
fn parked_section(parked: &[ParkedView]) -> String {
    if parked.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&[
        "CONNECTOR",
        "WORK ORDER",
        "TITLE",
        "EVENT",
        "PARKED (UTC)",
        "CMMS ERROR",
    ]);
    for p in parked {
        let (what, title) = match (&p.work_order, p.kind) {
            (Some(wo), _) => (wo.id.clone(), table::truncate(&wo.title, TITLE_WIDTH)),
            (None, DeliveryKind::Meter) => (format!("meter {}", p.key), "-".to_owned()),
            // Unreadable: the key is all there is to go by.
            (None, DeliveryKind::WorkOrder) => (format!("key {}", p.key), "-".to_owned()),
        };
        t.row(vec![
            p.connector.clone(),
            what,
            title,
            p.event.clone(),
            table::utc(p.parked_at),
            table::truncate(&p.error, ERROR_WIDTH),
        ]);
    }
    let n = match parked.len() {
        1 => "1 delivery".to_owned(),
        n => format!("{n} deliveries"),
    };
    format!(
        "\nParked in CMMS connectors ({n} refused by the CMMS; tried again after a reload), oldest first:\n{}",
        t.render()
    )
}

/// Adds to a work order's JSON the `parked` array of its deliveries a CMMS
/// refused, when it has any (matched by key, or by the id its payload
/// carries).
fn with_parked(item: &mut serde_json::Value, wo: &WorkOrder, parked: &[ParkedView]) {
    let mine: Vec<serde_json::Value> = parked
        .iter()
        .filter(|p| {
            p.kind == DeliveryKind::WorkOrder
                && (p.key == wo.key || p.work_order.as_ref().is_some_and(|w| w.id == wo.id))
        })
        .map(|p| {
            serde_json::json!({
                "connector": p.connector,
                "event": p.event,
                "error": p.error,
                "parked_at": timestamp(p.parked_at),
            })
        })
        .collect();
    if mine.is_empty() {
        return;
    }
    if let Some(map) = item.as_object_mut() {
        map.insert("parked".to_owned(), serde_json::Value::Array(mine));
    }
}

fn work_order_table(orders: &[&WorkOrder], wall: &WallMap) -> String {
    let mut t = Table::new(&[
        "ID",
        "TYPE",
        "STATUS",
        "PRIORITY",
        "ASSET",
        "CREATED (UTC)",
        "OCCURRENCES",
        "CMMS REF",
        "TITLE",
    ]);
    for wo in orders {
        t.row(vec![
            wo.id.clone(),
            wo.kind.as_str().to_owned(),
            wo.status.as_str().to_owned(),
            wo.priority.as_str().to_owned(),
            wo.asset.clone(),
            table::utc(wall.system_time(wo.created_at)),
            wo.occurrences.to_string(),
            wo.cmms_ref.clone().unwrap_or_else(|| "-".to_owned()),
            table::truncate(&wo.title, TITLE_WIDTH),
        ]);
    }
    t.render()
}

/// One work order for scripts: the message published on its topic
/// (`fieldgate.workorder/1`, docs/mqtt.md) without the topic's `seq` and
/// `store`, which belong to a publication, not to the work order.
fn as_json(wo: &WorkOrder, wall: &WallMap) -> Result<serde_json::Value, Reported> {
    let encoded = payload::work_order(wo, 0, "", wall)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        });
    match encoded {
        Ok(mut value) => {
            if let Some(map) = value.as_object_mut() {
                map.remove("seq");
                map.remove("store");
            }
            Ok(value)
        }
        Err(e) => {
            eprintln!("fieldgate {COMMAND}: work order {}: {e}", wo.id);
            Err(Reported)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::telemetry::ParkedWorkOrder;

    fn view(id: i64, kind: DeliveryKind, work_order: Option<ParkedWorkOrder>) -> ParkedView {
        ParkedView {
            connector: "maximo".into(),
            id,
            kind,
            key: "pump_hours".into(),
            event: "raised".into(),
            error: "400 Bad Request:\nBMXAA4195E asset P-9 is not valid".into(),
            parked_at: UNIX_EPOCH + Duration::from_secs(1_795_240_800 + id as u64),
            work_order,
        }
    }

    #[test]
    fn parked_deliveries_read_as_a_table_and_none_as_nothing() {
        assert_eq!(parked_section(&[]), "");
        let wo = ParkedWorkOrder {
            id: "01M7YQ9WAWVEBEAN195PSSWWHW".into(),
            title: "Pump 1 too hot".into(),
            asset: "P-9".into(),
        };
        let out = parked_section(&[
            view(1, DeliveryKind::WorkOrder, Some(wo)),
            view(2, DeliveryKind::Meter, None),
        ]);
        assert!(
            out.contains("Parked in CMMS connectors (2 deliveries"),
            "{out}"
        );
        let rows: Vec<&str> = out.lines().skip(2).collect();
        assert!(rows[0].starts_with("CONNECTOR"), "{out}");
        assert!(
            rows[1].contains("01M7YQ9WAWVEBEAN195PSSWWHW") && rows[1].contains("Pump 1 too hot")
        );
        assert!(rows[1].contains("2026-11-21 06:00:01"), "{out}");
        // The error on one line, whole.
        assert!(rows[1].ends_with("400 Bad Request: BMXAA4195E asset P-9 is not valid"));
        assert!(rows[2].contains("meter pump_hours"), "{out}");
        assert_eq!(rows.len(), 3);
    }
}

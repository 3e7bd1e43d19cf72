//! `fieldgate workorders [--open]`: the work orders the gateway keeps, as
//! it last saved them, then the recent work-order changes from the store's
//! history.

use std::process::ExitCode;

use super::inspect::{self, Reported, ViewArgs};
use super::table::{self, Table};
use crate::clock::WallMap;
use crate::contract::rules as payload;
use crate::rules::{STATE_WORKORDERS, WorkOrder, WorkOrderBook};
use crate::store::HistoryKind;

const COMMAND: &str = "workorders";

/// Titles are cut to this many characters, so a row stays on a wide
/// terminal line.
const TITLE_WIDTH: usize = 40;

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
    if view.json {
        let items = orders
            .iter()
            .map(|wo| as_json(wo, &wall))
            .collect::<Result<Vec<_>, _>>()?;
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
    table::emit(&out);
    Ok(())
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

//! `fieldgate alarms`: every rule's current alarm as the gateway last saved
//! it, then the recent alarm changes from the store's history, so a
//! technician can see what was raised while the network was down.

use std::process::ExitCode;

use serde_json::json;

use super::inspect::{self, Reported, ViewArgs};
use super::table::{self, Table};
use crate::clock::WallMap;
use crate::contract::rules::rfc3339;
use crate::rules::{AlarmState, STATE_ENGINE, SavedEngine, SavedRule};
use crate::store::HistoryKind;

const COMMAND: &str = "alarms";

/// Options of `fieldgate alarms`.
#[derive(Debug, Clone, clap::Args)]
pub struct AlarmsArgs {
    /// Where the store is, how much history, which format.
    #[command(flatten)]
    pub view: ViewArgs,
}

/// Prints the alarms; exit code 1 when the store cannot be read.
pub fn run(args: &AlarmsArgs) -> ExitCode {
    match show(&args.view) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reported) => reported.into(),
    }
}

fn show(args: &ViewArgs) -> Result<(), Reported> {
    let store = inspect::open(COMMAND, args)?;
    // The saved alarms keep moments of the gateway's timeline; the file's
    // saved anchor says how they read as wall-clock time.
    let wall = store.wall_map().unwrap_or(WallMap::IDENTITY);
    let saved: Option<SavedEngine> = inspect::load(COMMAND, &store, STATE_ENGINE, "alarm state")?;
    let mut rules = saved.map(|s| s.rules).unwrap_or_default();
    // Stable: within a rank, the config's order.
    rules.sort_by_key(|r| rank(r.alarm.state));
    if args.json {
        let items: Vec<_> = rules.iter().map(|r| as_json(r, &wall)).collect();
        return inspect::print_json(COMMAND, &items);
    }
    let mut out = String::new();
    if rules.is_empty() {
        out.push_str("No alarm state saved yet — the gateway has not run rules on this store.\n");
    } else {
        out.push_str(&alarm_table(&rules, &wall));
        out.push_str(&inspect::saved_line(COMMAND, &store, STATE_ENGINE)?);
    }
    out.push_str(&inspect::recent_changes(
        COMMAND,
        &store,
        HistoryKind::Alarm,
        "RULE",
        args.history,
    )?);
    out.push_str(&inspect::outbox_line(COMMAND, &store)?);
    table::emit(&out);
    Ok(())
}

/// What needs attention first: active and unacknowledged, then the other
/// unacknowledged, then active, shelved, and normal last.
fn rank(state: AlarmState) -> u8 {
    match state {
        AlarmState::ActiveUnacked => 0,
        AlarmState::ReturnedUnacked => 1,
        AlarmState::ActiveAcked => 2,
        AlarmState::Shelved { .. } => 3,
        AlarmState::Normal => 4,
    }
}

/// The state word, telling a shelved alarm whose condition still holds.
fn state_text(state: AlarmState) -> String {
    match state {
        AlarmState::Shelved { active: true, .. } => "shelved (active)".to_owned(),
        other => other.as_str().to_owned(),
    }
}

fn shelved_until(state: AlarmState) -> Option<crate::rules::Timestamp> {
    match state {
        AlarmState::Shelved { until, .. } => Some(until),
        _ => None,
    }
}

/// The table and a one-line count of what needs attention.
fn alarm_table(rules: &[SavedRule], wall: &WallMap) -> String {
    let mut t = Table::new(&[
        "RULE",
        "STATE",
        "SINCE (UTC)",
        "CHATTERING",
        "SHELVED UNTIL (UTC)",
    ]);
    for r in rules {
        let a = &r.alarm;
        t.row(vec![
            r.name.clone(),
            state_text(a.state),
            a.changed_at
                .map_or_else(|| "-".to_owned(), |at| table::utc(wall.system_time(at))),
            if a.chattering { "yes" } else { "no" }.to_owned(),
            shelved_until(a.state)
                .map_or_else(|| "-".to_owned(), |at| table::utc(wall.system_time(at))),
        ]);
    }
    let active = rules.iter().filter(|r| r.alarm.state.is_active()).count();
    let unacked = rules.iter().filter(|r| r.alarm.state.is_unacked()).count();
    let shelved = rules
        .iter()
        .filter(|r| shelved_until(r.alarm.state).is_some())
        .count();
    format!(
        "{}\n{}: {} active, {} awaiting acknowledgement, {} shelved.\n",
        t.render(),
        table::count(rules.len(), "alarm"),
        active,
        unacked,
        shelved
    )
}

/// One alarm for scripts: the fields of the published alarm message
/// (`fieldgate.alarm/1`) that the saved state holds.
fn as_json(r: &SavedRule, wall: &WallMap) -> serde_json::Value {
    let a = &r.alarm;
    json!({
        "rule": r.name,
        "state": a.state.as_str(),
        "active": a.state.is_active(),
        "acked": !a.state.is_unacked(),
        "since": a.changed_at.map(|t| rfc3339(wall.wall(t))),
        "chattering": a.chattering,
        "shelved_until": shelved_until(a.state).map(|t| rfc3339(wall.wall(t).clamped())),
    })
}

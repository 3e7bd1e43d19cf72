//! Work orders: one open work order per rule (or meter) and asset, the
//! status the CMMS reports back, and the flood guard.
//!
//! Pure like the rest of `rules/`: no I/O, no clock, no randomness of its
//! own. The rules task feeds [`AlarmEvent`]s, meter [`MeterDue`]s and the
//! CMMS's statuses into a [`WorkOrderBook`], commits the book and
//! publishes what the returned [`WoChange`]s say (payloads in
//! [`payload`](crate::rules::payload)). Time comes from the event (or is passed in), and the
//! 80 random bits of each ULID are passed in by the caller, so tests are
//! deterministic.
//!
//! # Slots
//!
//! A *slot* is what a work order is about: a rule, a meter or the flood
//! guard ([`WoSource`]), and an asset. A slot holds at most one open work
//! order (status `open`, `accepted` or `in_progress`); the book keeps an
//! index from slot to that work order.
//!
//! # Raising and updating
//!
//! For each [`AlarmEvent`] of a rule (the asset is the rule's, see
//! [`WoContext::asset_for`]):
//!
//! * an event that is neither an activation nor a release changes
//!   nothing (acks, returns to normal, shelving);
//! * an activation *by the condition* (`cause == Condition`) while the
//!   slot's work order is open **updates** it: `occurrences + 1`, `last`
//!   value and time, `updated_at`, re-rendered texts. This holds even when
//!   the activation may not raise (`raise_work_order == false`: shelved or
//!   chattering): it is still an occurrence the maintainer should count,
//!   and an update never creates a work order. Activations by the end of a
//!   shelf re-announce an alarm whose occurrence was already counted, so
//!   they do not update;
//! * otherwise an activation **raises** a work order only when
//!   `raise_work_order` is true (not shelved, not chattering) and the
//!   rule's template is enabled, subject to the flood guard;
//! * a *release* (`ChatterCleared` with `released` set: an activation
//!   chattering refused is still active as the flag clears) is not an
//!   occurrence: it updates nothing, but raises the refused work order on
//!   the same terms as an activation when none is open, with
//!   `trigger.since` the time of the held activation.
//!
//! A meter's [`MeterDue`] raises a preventive work order the same way
//! (never held by the flood guard: preventive work is scheduled, not an
//! alarm, and the meter reports each threshold only once).
//!
//! # Idempotency key
//!
//! `{site}/{gateway}/{source}/{asset}/{n}-{id}`, where `{source}` is the
//! rule name, `meter:{name}` for a meter or `gateway:alarm_flood` for the
//! flood guard (names cannot hold `:` or `/`, so the three never collide),
//! `n` counts the work orders raised for the slot so far, this one
//! included (1, 2, 3, …), and `{id}` is the work order's ULID. The key is
//! set once, when the work order is raised, and every message about that
//! work order carries it (updates, resends, the republish after a
//! reconnect): a CMMS can drop repeats by key. It is never reused for
//! another work order: the counter alone would start again at 1 with a
//! lost or restored store, and a CMMS would then drop a new work order as
//! a repeat of an old one while the gateway waits for a status on it. A
//! work order is saved in the same transaction as its first message, so
//! one published is never raised again by the same activation.
//!
//! # Status from the CMMS
//!
//! [`WorkOrderBook::on_status`] takes a [`StatusUpdate`]: `accepted`,
//! `in_progress` or `closed`, with the CMMS's reference, who and a note
//! when it gave them. The pipeline reads it from the CMMS's message
//! (`crate::pipeline::inbound` describes the JSON), so the book knows no
//! wire format. A status for an unknown id is an error; otherwise it is
//! recorded in the work order's history. `accepted` and `in_progress`
//! republish the work order ([`WoChange::Updated`]); `closed` frees the
//! slot and yields [`WoChange::Cleared`], for which the caller publishes
//! an empty retained message on the work order's topic. The next
//! activation raises a new work order. A status for a closed work order,
//! or one identical to the last recorded, changes nothing.
//!
//! # Flood guard
//!
//! The guard remembers the times of the last `flood_limit` *attempts* to
//! raise a corrective work order (raised or held; updates are not
//! attempts). An attempt at `t` counts the remembered attempts younger
//! than `flood_window` (`t - a < window`):
//!
//! * fewer than `flood_limit`: the work order is raised ([`WoChange::Raised`])
//!   and any flood is over;
//! * `flood_limit` or more, no flood yet: this attempt starts a flood. It
//!   raises no work order of its own; instead one "alarm flood" work order
//!   (rule `alarm_flood`, asset = gateway id, title `Alarm flood: N work
//!   orders in M minutes`) is raised, or updated if the previous flood's is
//!   still open ([`WoChange::FloodRaised`]);
//! * `flood_limit` or more during a flood: held, the alarm stays an alarm
//!   only ([`WoChange::Held`]).
//!
//! So with the default 10 in 10 minutes, twelve rules activating within a
//! minute give ten work orders, one flood work order and one held
//! activation. Held attempts count towards the window, so the flood lasts
//! until the *attempt* rate falls below the limit, not merely until ten
//! minutes after the last raise. A held activation is not raised later.
//! Memory is bounded: the guard keeps `flood_limit` times at most. Times
//! slightly out of order (batches of two devices) are counted as they
//! come; a clock that went back by more than the window empties it.
//!
//! # Texts
//!
//! Titles and descriptions come from the template (`title`,
//! `description`) with [`PLACEHOLDERS`] filled in, or a default text.
//! They are rendered when raised and again on every update; every
//! placeholder but `{occurrences}` refers to the activation that raised
//! the work order (`{value}`, `{limit}`, `{since}`), so only the count
//! moves. For a meter, `{rule}` and `{meter}` are the meter's name,
//! `{limit}` the threshold and `{condition}` `runtime` or `count`. An
//! alarm's value and limit are written with the precision of its tag
//! (`crate::precision`: its `decimals`, else from its scale) when they are
//! in the tag's units (above, below, outside, equals), stale's seconds
//! with one decimal, other numbers with up to three decimals (`80`,
//! `80.25`, `1.2e-4`); a meter's hours and
//! counts as a counter reads (`2,000`, `12.5`, `1,234`; the default texts
//! say `30 s` for a runtime under a minute); times as RFC 3339 UTC
//! seconds. The JSON keeps every value in full (`trigger`, `readings`).
//!
//! # Persistence and bounds
//!
//! The whole book is serde (`Serialize`/`Deserialize`) and restores
//! exactly, including the flood guard's memory. After restoring, call
//! [`WorkOrderBook::set_config`] with the running config (a reload may
//! have changed the flood guard). The book keeps every open work order, at
//! most [`MAX_CLOSED`] closed ones (oldest dropped first; a late status for
//! a dropped one is an unknown id) and the last [`MAX_HISTORY`] status
//! reports of each.
//!
//! # Layout
//!
//! * `types.rs`: the [`WorkOrder`] and its parts, the [`StatusUpdate`]s
//!   the book takes, the [`WoChange`]s it returns and its [`WoError`].
//! * `book.rs`: the [`WorkOrderBook`]: slots, raising, updating, statuses,
//!   idempotency keys, bounds.
//! * `context.rs`: the [`WoContext`]: assets, locations and units from the
//!   configuration.
//! * `flood.rs`: the flood guard.
//! * `text.rs`: titles, descriptions and how numbers and times are written.
//! * `serde_fields.rs`: serde for values and priorities in the saved book.
//!
//! [`AlarmEvent`]: crate::rules::AlarmEvent
//! [`MeterDue`]: crate::rules::MeterDue
//! [`PLACEHOLDERS`]: crate::config::PLACEHOLDERS

mod book;
mod context;
#[cfg(test)]
mod fixtures;
mod flood;
mod serde_fields;
mod text;
mod types;

pub use book::{BOOK_VERSION, MAX_CLOSED, MAX_HISTORY, WorkOrderBook};
pub use context::{WoContext, value_precision};
pub use text::{format_number, format_time, format_value};
pub use types::{
    FLOOD_RULE, Last, SnapshotEntry, StatusReport, StatusUpdate, WoChange, WoError, WoSource,
    WoStatus, WoTrigger, WoType, WorkOrder,
};

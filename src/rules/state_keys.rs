//! The names under which the rules task saves its state in the store
//! (`StoreHandle::save_state`), and under which `fieldgate alarms` and
//! `fieldgate workorders` read it back: one place, so writer and readers
//! cannot drift apart. Each value is serde JSON.

/// The rules engine: a [`SavedEngine`](super::SavedEngine).
pub const STATE_ENGINE: &str = "rules.engine";

/// The work-order book: a [`WorkOrderBook`](super::WorkOrderBook).
pub const STATE_WORKORDERS: &str = "rules.workorders";

/// The meters: a `Vec` of [`MeterState`](super::MeterState).
pub const STATE_METERS: &str = "rules.meters";

//! What each CMMS's API wants: pure functions from a work order (or a
//! meter reading) to the HTTP requests that deliver it, and from the
//! CMMS's answers to what fieldgate learns (its reference, its status) or
//! why it failed. One file per CMMS; no I/O, no clock: the delivery task
//! sends the requests and keeps the state.

mod maintainx;
mod maximo;
mod upkeep;
mod webhook;

use super::exchange::{Answer, Failure, Found, Request};
use crate::config::{CmmsConfig, CmmsKind};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

pub use maintainx::MaintainX;
pub use maximo::Maximo;
pub use upkeep::UpKeep;
pub use webhook::Webhook;

/// Which work-order message a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new work order (or the flood guard's).
    Raised,
    /// Another occurrence of an open one.
    Updated,
    /// The work order ended (closed or cancelled in a CMMS).
    Closed,
}

impl Event {
    /// The name in the store, the webhook's `{event}` and its
    /// `X-Fieldgate-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Raised => "raised",
            Event::Updated => "updated",
            Event::Closed => "closed",
        }
    }

    /// The event named `text`.
    pub fn parse(text: &str) -> Option<Event> {
        match text {
            "raised" => Some(Event::Raised),
            "updated" => Some(Event::Updated),
            "closed" => Some(Event::Closed),
            _ => None,
        }
    }
}

/// A CMMS's API. Every method is pure.
///
/// Delivering a work order whose key has no CMMS reference yet:
/// [`lookup`](Vendor::lookup) (when the API can search by fieldgate's
/// key) and, when nothing is found, [`create`](Vendor::create). A key
/// with a reference gets [`update`](Vendor::update) for the events the
/// vendor forwards (most forward none: the CMMS owns the work order once
/// created).
pub trait Vendor: Send + Sync {
    /// A request that finds the CMMS's work order carrying `wo.key`, so a
    /// retry after a lost answer never creates a second one; `None` when
    /// the API cannot search by it.
    fn lookup(&self, wo: &WorkOrderDoc) -> Option<Request>;

    /// Reads the lookup's answer: the CMMS's work order carrying
    /// `wo.key`, or `None`. The answer may list other work orders too (an
    /// API that can only narrow the search by title or asset): only one
    /// that carries this key is a match.
    fn read_lookup(&self, wo: &WorkOrderDoc, answer: &Answer) -> Result<Option<Found>, Failure>;

    /// The request that creates the work order (for `Raised`, or for a
    /// first `Updated` of a key never created), or why it cannot be built
    /// (`Failure::Park`: e.g. an asset with no CMMS id when the CMMS
    /// requires one).
    fn create(&self, wo: &WorkOrderDoc, event: Event) -> Result<Request, Failure>;

    /// Reads the create's answer: the reference the CMMS gave (`None`
    /// for a webhook that answers nothing to keep).
    fn read_create(&self, answer: &Answer) -> Result<Option<Found>, Failure>;

    /// The request that forwards `event` of a work order the CMMS already
    /// has (`reference`), or `None` when this CMMS takes no updates.
    fn update(&self, wo: &WorkOrderDoc, reference: &str, event: Event) -> Option<Request>;

    /// The request that reads the status of the CMMS's work order
    /// `reference`, or `None` when it cannot be polled.
    fn status(&self, reference: &str) -> Option<Request>;

    /// Reads the status answer (`None`: a status with no fieldgate
    /// meaning, such as on hold: nothing changes).
    fn read_status(&self, answer: &Answer) -> Result<Option<Found>, Failure>;

    /// The request that records a meter reading on the CMMS's meter
    /// `meter_id`, or `None` when this CMMS takes none.
    fn meter(&self, reading: &MeterDoc, meter_id: &str) -> Option<Request>;
}

/// The vendor of a connector.
pub fn for_config(config: &CmmsConfig) -> Box<dyn Vendor> {
    match &config.kind {
        CmmsKind::Webhook(w) => Box::new(Webhook::new(config, w)),
        CmmsKind::Maximo(m) => Box::new(Maximo::new(config, m)),
        CmmsKind::MaintainX(m) => Box::new(MaintainX::new(config, m)),
        CmmsKind::UpKeep(u) => Box::new(UpKeep::new(config, u)),
    }
}

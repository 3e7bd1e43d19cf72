//! Webhook (stub: to be written).

use super::{Event, Vendor};
use crate::cmms::exchange::{Answer, Failure, Found, Request};
use crate::config::{CmmsConfig, WebhookConfig};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

/// Webhook's API.
pub struct Webhook {
    _config: CmmsConfig,
    _own: WebhookConfig,
}

impl Webhook {
    /// The vendor of a connector.
    pub fn new(config: &CmmsConfig, own: &WebhookConfig) -> Webhook {
        Webhook {
            _config: config.clone(),
            _own: own.clone(),
        }
    }
}

impl Vendor for Webhook {
    fn lookup(&self, _wo: &WorkOrderDoc) -> Option<Request> {
        None
    }
    fn read_lookup(&self, _wo: &WorkOrderDoc, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
    }
    fn create(&self, _wo: &WorkOrderDoc, _event: Event) -> Result<Request, Failure> {
        Err(Failure::Park("not implemented".into()))
    }
    fn read_create(&self, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
    }
    fn update(&self, _wo: &WorkOrderDoc, _reference: &str, _event: Event) -> Option<Request> {
        None
    }
    fn status(&self, _reference: &str) -> Option<Request> {
        None
    }
    fn read_status(&self, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
    }
    fn meter(&self, _reading: &MeterDoc, _meter_id: &str) -> Option<Request> {
        None
    }
}

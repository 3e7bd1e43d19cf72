//! Write-back on the wire side: a checked engineering value turned into
//! the registers or coil a device takes (pure: [`fit`], [`plan`],
//! [`matches`]), and the job a link's task executes ([`WriteJob`]).
//!
//! SKELETON: the bodies are filled in by the modbus write work.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use crate::command::{RejectReason, Requested, WriteResult};
use crate::config::Device;
use crate::tag::{Tag, Value};

/// How a write goes on the wire, chosen from the tag and the function
/// codes its device accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// One coil: FC5, or FC15 with a quantity of one when the device
    /// takes only that.
    Coil {
        /// Coil address (0-based).
        address: u16,
        /// On or off.
        on: bool,
        /// 5 or 15.
        function: u8,
    },
    /// Whole registers: FC6 for one (when accepted), FC16 otherwise.
    Registers {
        /// First register (0-based).
        address: u16,
        /// The words, in the tag's word order.
        words: Vec<u16>,
        /// 6 or 16.
        function: u8,
    },
    /// One bit of a holding register: read the register, set or clear the
    /// bit, write it back (on the link's task, so no poll interleaves).
    Bit {
        /// Register (0-based).
        address: u16,
        /// Bit 0–15.
        bit: u8,
        /// Set or clear.
        on: bool,
        /// 6 or 16.
        function: u8,
    },
}

/// Fits a requested value to the tag's type, in engineering units: a
/// number for a numeric tag (an integer type unscaled takes only whole
/// numbers), a bool (or 0/1) for a bool or bit, text for a string.
pub fn fit(tag: &Tag, requested: &Requested) -> Result<Value, RejectReason> {
    let _ = (tag, requested);
    Err(RejectReason::WrongType("not implemented".into()))
}

/// Plans the write of `value` (already fitted and range-checked) to
/// `tag` of `device`: inverse scaling (`(v − offset) / scale`, rounded for
/// integer types), range-checked for the register type, laid out in the
/// tag's word order, with the function code the device accepts.
pub fn plan(device: &Device, tag: &Tag, value: &Value) -> Result<WritePlan, RejectReason> {
    let _ = (device, tag, value);
    Err(RejectReason::NotRepresentable("not implemented".into()))
}

/// True when the value read back equals the value written, compared as
/// the registers (or bit) the device holds, so scale and word order
/// cannot make a false mismatch.
pub fn matches(tag: &Tag, written: &Value, read_back: &Value) -> bool {
    let _ = tag;
    written == read_back
}

/// A write for a link's task: one tag of one of its devices, checked by
/// the write desk and planned.
#[derive(Debug)]
pub struct WriteJob {
    /// The device, by name (one of the link's).
    pub device: String,
    /// The tag's index in the device's tags.
    pub tag: usize,
    /// The value, in engineering units, as fitted.
    pub value: Value,
    /// How it goes on the wire.
    pub plan: WritePlan,
    /// Read the tag back after the write and compare.
    pub confirm: bool,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<WriteDone>,
}

/// What the link's task did with a [`WriteJob`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriteDone {
    /// The tag's value read just before the write.
    pub old: Option<Value>,
    /// The value read back after the write (with `confirm`).
    pub read_back: Option<Value>,
    /// `Rejected` (device down, refused with an exception: nothing
    /// written), `Written`, `Verified` or `Unknown` (no answer to the
    /// write itself).
    pub result: WriteResult,
}

/// Capacity of each link's write queue.
pub const JOBS_CAPACITY: usize = 16;

/// Where to send a device's write jobs: its link's task.
#[derive(Debug, Clone, Default)]
pub struct Writers {
    by_device: HashMap<String, mpsc::Sender<WriteJob>>,
}

impl Writers {
    /// The queue of `device`'s link, if the device is polled.
    pub fn sender(&self, device: &str) -> Option<&mpsc::Sender<WriteJob>> {
        self.by_device.get(device)
    }

    /// Adds `device`'s link queue.
    pub fn insert(&mut self, device: String, tx: mpsc::Sender<WriteJob>) {
        self.by_device.insert(device, tx);
    }
}

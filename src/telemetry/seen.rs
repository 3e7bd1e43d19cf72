//! What the pipeline last saw of each device: its last [`Batch`] for
//! `/api/status`, and each tag's last minutes ([`Trend`]) for the status
//! page's sparklines.
//!
//! The pipeline task puts a batch here once it is done with it (see
//! [`Telemetry::keep_last`](super::Telemetry::keep_last)): the batch is
//! moved, not copied, so keeping the last values costs no allocation at
//! all; the previous batch is freed as it would have been anyway. The
//! same call adds the readings to the device's trend (one `f32` store per
//! tag).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::trend::Trend;
use crate::config::Device;
use crate::reading::Batch;

/// One device's last readings and trend, written by the pipeline task.
#[derive(Debug)]
pub struct DeviceSeen {
    device: Arc<Device>,
    last: Mutex<Option<Batch>>,
    /// The last minutes of every tag, for the status page.
    trend: Mutex<Trend>,
    /// Readings the deadband filter kept back (report by exception).
    suppressed: AtomicU64,
}

impl DeviceSeen {
    /// Nothing seen yet of `device`.
    pub fn new(device: Arc<Device>) -> DeviceSeen {
        let trend = Mutex::new(Trend::new(device.tags.len()));
        DeviceSeen {
            device,
            last: Mutex::new(None),
            trend,
            suppressed: AtomicU64::new(0),
        }
    }

    /// The device's configuration.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Keeps `batch` as the device's last readings and adds it to the
    /// trend, counting the `suppressed` readings the deadband filter kept
    /// back from it; returns the previous batch so the caller frees it
    /// outside the lock.
    pub fn keep_last(&self, batch: Batch, suppressed: u64) -> Option<Batch> {
        self.suppressed.fetch_add(suppressed, Ordering::Relaxed);
        // A panic elsewhere while holding a lock leaves plain data behind.
        self.trend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(batch.timestamp, &batch.readings);
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(batch)
    }

    /// Readings the deadband filter kept back so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Runs `f` on the trend (under the lock: keep it short).
    pub fn with_trend<R>(&self, f: impl FnOnce(&Trend) -> R) -> R {
        f(&self.trend.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the last readings (under the lock: keep it short).
    pub fn with_last<R>(&self, f: impl FnOnce(Option<&Batch>) -> R) -> R {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        f(last.as_ref())
    }
}

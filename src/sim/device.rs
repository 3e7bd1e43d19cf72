//! One simulated device: its plant, its points and its register image,
//! plus the flags the servers check before answering.
//!
//! [`Device`] is pure (time and wall clock are arguments). [`DeviceCell`]
//! wraps it for sharing: a std `RwLock` suffices because it is never held
//! across an `.await` — the ticker holds the write lock for one device's
//! refresh (microseconds), a server holds the read lock for one slice copy.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::fault::{Fault, Faults};
use super::image::{Image, OutOfRange, subtract};
use super::plant::{Plant, Signal};
use super::point::{Point, Source, Target};
use super::resolve::DevicePlan;
use super::script::Action;
use crate::tag::{Area, Value};

/// A device's model, points and image.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    plant: Plant,
    points: Vec<Point>,
    image: Image,
    /// Holding ranges that carry the load pattern (points and holes cut out).
    pattern: Vec<Range<u32>>,
    /// Indices of clock points, patched into each read.
    clocks: Vec<usize>,
    /// Function codes answered with exception 01.
    refused: Vec<u8>,
}

/// 64-bit FNV-1a: a stable hash, so a device's noise depends only on the
/// seed and its name (adding a device does not change the others).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Device {
    /// Builds the image for a resolved device and renders every point.
    pub fn new(plan: &DevicePlan, seed: u64) -> Device {
        let mut ranges: [Vec<Range<u32>>; 4] = Default::default();
        for p in &plan.points {
            ranges[area_index(p.area)].push(p.range());
        }
        let points_in_holding = ranges[3].clone();
        let load = 0..u32::from(plan.registers);
        let pattern = subtract(vec![load], &plan.holes);
        ranges[3].extend(pattern.iter().cloned());
        ranges[3] = subtract(std::mem::take(&mut ranges[3]), &plan.holes);
        let pattern = subtract(pattern, &points_in_holding);
        let clocks = (0..plan.points.len())
            .filter(|&i| plan.points[i].source == Source::Clock)
            .collect();
        let mut d = Device {
            plant: Plant::new(plan.model, seed ^ name_hash(&plan.name)),
            points: plan.points.clone(),
            image: Image::new(ranges),
            pattern,
            clocks,
            refused: plan.refuse_functions.clone(),
        };
        for i in 0..d.points.len() {
            d.render(i, Duration::ZERO);
        }
        d.tick(Duration::ZERO);
        d
    }

    /// Steps the plant to `now` and refreshes everything that changes.
    pub fn tick(&mut self, now: Duration) {
        self.plant.step(now);
        // ok: wraps every 6553.6 s by design; the pattern only has to change.
        let t = (now.as_millis() / 100) as u16;
        for r in &self.pattern {
            self.image
                .holding
                .for_each_in(r.clone(), |addr, v| *v = addr.wrapping_add(t));
        }
        for i in 0..self.points.len() {
            if self.points[i].is_live() {
                self.render(i, now);
            }
        }
    }

    fn render(&mut self, i: usize, now: Duration) {
        let p = &self.points[i];
        let plant = &self.plant;
        if let Some(v) = p.engineering(now, |s| plant.value(s)) {
            p.write(&mut self.image, &v);
        }
    }

    /// True when the scenario makes the device refuse function `code`.
    pub fn refuses(&self, code: u8) -> bool {
        self.refused.contains(&code)
    }

    /// The current value of a model signal.
    pub fn value(&self, signal: Signal) -> Option<f64> {
        self.plant.value(signal)
    }

    /// The points, for resolving `set` targets.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The plant's model.
    pub fn model(&self) -> super::plant::Model {
        self.plant.model()
    }

    /// Applies a plant or point action (offline and exception actions
    /// belong to the cell and are ignored here). Points showing the target
    /// are re-rendered at once, so a test sees the value without waiting
    /// for the next tick.
    pub fn apply(&mut self, action: &Action, now: Duration) {
        match action {
            Action::Ramp { signal, to, over } => {
                self.plant.ramp(*signal, *to, *over, now);
            }
            Action::Set {
                target: Target::Signal(s),
                value,
            } => {
                self.plant.set(*s, *value);
            }
            Action::Set {
                target: Target::Point(i),
                value,
            } => {
                if let Some(p) = self.points.get_mut(*i) {
                    p.pin = Some(*value);
                }
            }
            Action::Release {
                target: Target::Signal(s),
            } => self.plant.release(*s),
            Action::Release {
                target: Target::Point(i),
            } => {
                if let Some(p) = self.points.get_mut(*i) {
                    p.pin = None;
                }
            }
            Action::Offline(_) | Action::Exception(_) => return,
        }
        for i in 0..self.points.len() {
            self.render(i, now);
        }
    }

    /// Reads bits of a bit area.
    pub fn read_bits(&self, area: Area, addr: u16, count: u16) -> Result<Vec<bool>, OutOfRange> {
        let bits = self.image.bits(area).ok_or(OutOfRange)?;
        Ok(bits.get(addr, usize::from(count))?.to_vec())
    }

    /// Reads registers of a register area, with clock points set to
    /// `wall_ms` (ms since the Unix epoch).
    pub fn read_registers(
        &self,
        area: Area,
        addr: u16,
        count: u16,
        wall_ms: u64,
    ) -> Result<Vec<u16>, OutOfRange> {
        let regs = self.image.registers(area).ok_or(OutOfRange)?;
        let mut out = regs.get(addr, usize::from(count))?.to_vec();
        let read = u32::from(addr)..u32::from(addr) + u32::from(count);
        for &i in &self.clocks {
            let p = &self.points[i];
            let r = p.range();
            if p.area == area && r.start < read.end && read.start < r.end {
                let words = p.registers(&Value::UInt(wall_ms));
                p.patch(addr, &mut out, &words);
            }
        }
        Ok(out)
    }

    /// Writes coils (FC 5/15).
    pub fn write_coils(&mut self, addr: u16, values: &[bool]) -> Result<(), OutOfRange> {
        self.image
            .coils
            .get_mut(addr, values.len())?
            .copy_from_slice(values);
        Ok(())
    }

    /// Writes holding registers (FC 6/16).
    pub fn write_registers(&mut self, addr: u16, values: &[u16]) -> Result<(), OutOfRange> {
        self.image
            .holding
            .get_mut(addr, values.len())?
            .copy_from_slice(values);
        Ok(())
    }
}

fn area_index(area: Area) -> usize {
    match area {
        Area::Coil => 0,
        Area::DiscreteInput => 1,
        Area::InputRegister => 2,
        Area::HoldingRegister => 3,
    }
}

/// A device as the servers and the ticker share it.
#[derive(Debug)]
pub(crate) struct DeviceCell {
    /// Name from the scenario.
    pub name: String,
    /// Unit id it answers to.
    pub unit: u8,
    /// When set, requests get no answer at all.
    offline: AtomicBool,
    /// When non-zero, every request is answered with this exception code.
    exception: AtomicU8,
    /// Injected faults, and how many requests were routed here since
    /// they were set (the schedule counts from there).
    faults: Mutex<(Faults, u64)>,
    state: RwLock<Device>,
}

impl DeviceCell {
    /// Wraps a device.
    pub fn new(name: String, unit: u8, device: Device) -> DeviceCell {
        DeviceCell {
            name,
            unit,
            offline: AtomicBool::new(false),
            exception: AtomicU8::new(0),
            faults: Mutex::new((Faults::none(), 0)),
            state: RwLock::new(device),
        }
    }

    /// True while the device does not answer.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }

    /// Takes the device offline or back online.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }

    /// The exception every request gets, if one is forced.
    pub fn forced_exception(&self) -> Option<u8> {
        match self.exception.load(Ordering::Relaxed) {
            0 => None,
            code => Some(code),
        }
    }

    /// Forces an exception code for every request, or clears it.
    pub fn set_exception(&self, code: Option<u8>) {
        self.exception.store(code.unwrap_or(0), Ordering::Relaxed);
    }

    /// Replaces the fault schedule; its request count starts again.
    pub fn set_faults(&self, faults: Faults) {
        // A poisoned lock only means a panic elsewhere; the data is whole.
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        *f = (faults, 0);
    }

    /// Counts one request routed to this device and returns the fault it
    /// gets, if any.
    pub fn next_fault(&self) -> Option<Fault> {
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        f.1 = f.1.saturating_add(1);
        f.0.for_request(f.1).cloned()
    }

    /// Shared access to the device.
    pub fn read(&self) -> RwLockReadGuard<'_, Device> {
        // A panic while the lock was held cannot leave the image half
        // written in a way that matters to a simulator: keep serving.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to the device.
    pub fn write(&self) -> RwLockWriteGuard<'_, Device> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Scenario;

    fn device(text: &str) -> Device {
        let plan = Scenario::from_toml_str(text).and_then(|s| s.plan());
        match plan {
            Ok(p) => Device::new(&p.devices[0], p.seed),
            Err(e) => panic!("{e}"),
        }
    }

    const PUMP: &str = r#"
        seed = 3
        [[devices]]
        name = "p1"
        unit = 1
        listen = "127.0.0.1:0"
        model = "pump"
        registers = 20
        holes = ["10-11"]
        points = [
            { signal = "pressure", area = "holding", address = 4, type = "f32" },
            { name = "sp", value = 7, area = "holding", address = 30, type = "u16" },
            { signal = "clock_ms", area = "input", address = 0, type = "u64" },
            { signal = "running", area = "coil", address = 0, type = "bool" },
        ]
    "#;

    #[test]
    fn pattern_points_and_holes() {
        let mut d = device(PUMP);
        d.tick(Duration::from_millis(500));
        let regs = d.read_registers(Area::HoldingRegister, 0, 4, 0);
        assert_eq!(regs, Ok(vec![5, 6, 7, 8]));
        let p = d
            .read_registers(Area::HoldingRegister, 4, 2, 0)
            .unwrap_or_default();
        let pressure = f32::from_bits(u32::from(p[0]) << 16 | u32::from(p[1]));
        assert!((pressure - 4.2).abs() < 0.2, "{pressure}");
        assert_eq!(
            d.read_registers(Area::HoldingRegister, 9, 2, 0),
            Err(OutOfRange)
        );
        assert_eq!(
            d.read_registers(Area::HoldingRegister, 12, 8, 0)
                .map(|r| r.len()),
            Ok(8)
        );
        assert_eq!(
            d.read_registers(Area::HoldingRegister, 20, 1, 0),
            Err(OutOfRange)
        );
        assert_eq!(
            d.read_registers(Area::HoldingRegister, 30, 1, 0),
            Ok(vec![7])
        );
        assert_eq!(d.read_bits(Area::Coil, 0, 1), Ok(vec![true]));
    }

    #[test]
    fn clock_is_filled_in_per_read() {
        let d = device(PUMP);
        let ms = 0x0001_0203_0405_0607;
        assert_eq!(
            d.read_registers(Area::InputRegister, 0, 4, ms),
            Ok(vec![0x0001, 0x0203, 0x0405, 0x0607])
        );
        assert_eq!(
            d.read_registers(Area::InputRegister, 2, 2, ms),
            Ok(vec![0x0405, 0x0607])
        );
    }

    #[test]
    fn writes_stick_on_constants_and_set_pins() {
        let mut d = device(PUMP);
        assert_eq!(d.write_registers(30, &[99]), Ok(()));
        d.tick(Duration::from_secs(1));
        assert_eq!(
            d.read_registers(Area::HoldingRegister, 30, 1, 0),
            Ok(vec![99])
        );
        d.apply(
            &Action::Set {
                target: Target::Signal(Signal::Pressure),
                value: 5.5,
            },
            Duration::from_secs(1),
        );
        let p = d
            .read_registers(Area::HoldingRegister, 4, 2, 0)
            .unwrap_or_default();
        assert_eq!(f32::from_bits(u32::from(p[0]) << 16 | u32::from(p[1])), 5.5);
        assert_eq!(d.write_registers(10, &[1]), Err(OutOfRange));
    }
}

//! A resolved point: where a value lives in the image and how an
//! engineering value becomes its registers or bit.
//!
//! Pure: rendering goes through [`crate::modbus::encode`], the inverse of
//! the gateway's decoder, so the simulator and the gateway agree on every
//! type and word order by construction.

use std::ops::Range;
use std::time::Duration;

use super::image::Image;
use super::plant::{Model, Signal};
use crate::modbus::encode::encode;
use crate::tag::{Area, DataType, Value, WordOrder};

/// Where a point's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// A model signal other than the clock.
    Signal(Signal),
    /// The wall clock in ms since the Unix epoch, filled in per request.
    Clock,
    /// A constant, in engineering units (or text).
    Constant(Value),
    /// A sawtooth from `from` towards `to`, restarting every `period`.
    Sawtooth {
        from: f64,
        to: f64,
        period: Duration,
    },
}

/// One served value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Optional name for `set` and events.
    pub name: Option<String>,
    /// Where the value comes from.
    pub source: Source,
    /// Area it is served in.
    pub area: Area,
    /// 0-based first address.
    pub address: u16,
    /// Register layout.
    pub data_type: DataType,
    /// Word and byte order.
    pub order: WordOrder,
    /// Raw = (engineering − offset) / scale.
    pub scale: f64,
    /// See `scale`.
    pub offset: f64,
    /// A value set by hand, which replaces the source until released.
    pub pin: Option<f64>,
}

impl Point {
    /// Addresses the point occupies (end exclusive).
    pub fn range(&self) -> Range<u32> {
        let start = u32::from(self.address);
        let width = if self.area.is_bit() {
            1
        } else {
            u32::from(self.data_type.width())
        };
        start..start + width
    }

    /// True when the value changes over time and must be re-rendered on
    /// every tick (the clock is rendered per request instead).
    pub fn is_live(&self) -> bool {
        self.pin.is_none() && matches!(self.source, Source::Signal(_) | Source::Sawtooth { .. })
    }

    /// The engineering value at `now`, given a way to read model signals.
    /// `None` for the clock and for a signal the model lacks.
    pub fn engineering(
        &self,
        now: Duration,
        signal: impl Fn(Signal) -> Option<f64>,
    ) -> Option<Value> {
        if let Some(v) = self.pin {
            return Some(Value::Float(v));
        }
        match &self.source {
            Source::Signal(s) => signal(*s).map(Value::Float),
            Source::Clock => None,
            Source::Constant(v) => Some(v.clone()),
            Source::Sawtooth { from, to, period } => {
                let p = period.as_secs_f64();
                let phase = if p > 0.0 {
                    now.as_secs_f64() % p / p
                } else {
                    0.0
                };
                Some(Value::Float(from + (to - from) * phase))
            }
        }
    }

    /// The raw value for an engineering value: scale and offset undone,
    /// integers kept exact when the point is unscaled.
    pub fn raw(&self, eng: &Value) -> Value {
        let unscaled = self.scale == 1.0 && self.offset == 0.0;
        match eng {
            Value::Text(_) => eng.clone(),
            Value::Int(_) | Value::UInt(_) if unscaled => eng.clone(),
            _ if !self.data_type.is_numeric() => eng.clone(),
            other => {
                let x = other.as_f64().unwrap_or(0.0);
                Value::Float((x - self.offset) / self.scale)
            }
        }
    }

    /// The registers for an engineering value (one register for a bit,
    /// with only that bit meaningful).
    pub fn registers(&self, eng: &Value) -> Vec<u16> {
        encode(&self.raw(eng), self.data_type, self.order)
    }

    /// Writes an engineering value into the image. Addresses outside the
    /// image are ignored: the image is built from the points' ranges, so
    /// that does not happen.
    pub fn write(&self, image: &mut Image, eng: &Value) {
        if let Some(bits) = image.bits_mut(self.area) {
            if let Ok([bit]) = bits.get_mut(self.address, 1) {
                *bit = eng.as_f64().is_some_and(|x| x != 0.0);
            }
            return;
        }
        let words = self.registers(eng);
        let Some(regs) = image.registers_mut(self.area) else {
            return;
        };
        let Ok(slot) = regs.get_mut(self.address, words.len()) else {
            return;
        };
        if let DataType::Bit(n) = self.data_type {
            // Several bit points may share one register: touch only ours.
            let mask = 1u16 << (n & 15);
            slot[0] = (slot[0] & !mask) | (words[0] & mask);
        } else {
            slot.copy_from_slice(&words);
        }
    }

    /// Overwrites the part of `out` (registers `start..`) this point
    /// shares with `words` rendered for it.
    pub fn patch(&self, start: u16, out: &mut [u16], words: &[u16]) {
        for (i, w) in words.iter().enumerate() {
            let addr = usize::from(self.address) + i;
            if let Some(slot) = addr
                .checked_sub(usize::from(start))
                .and_then(|j| out.get_mut(j))
            {
                *slot = *w;
            }
        }
    }
}

/// What `set`, `release` and events act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A model signal (every point showing it follows).
    Signal(Signal),
    /// One point, by index.
    Point(usize),
}

/// Finds what `text` names on a device: a model signal (`bearing_temp`),
/// a point name, or `area:address` of a point's first address
/// (`holding:10`). The clock cannot be a target.
pub(crate) fn find_target(model: Model, points: &[Point], text: &str) -> Option<Target> {
    if let Some(s) = Signal::parse(text).filter(|s| model.has(*s) && *s != Signal::ClockMs) {
        return Some(Target::Signal(s));
    }
    let settable = |p: &Point| p.source != Source::Clock;
    if let Some(i) = points
        .iter()
        .position(|p| p.name.as_deref() == Some(text) && settable(p))
    {
        return Some(Target::Point(i));
    }
    let (area, addr) = text.split_once(':')?;
    let area = Area::parse(area)?;
    let addr: u16 = addr.trim().parse().ok()?;
    points
        .iter()
        .position(|p| p.area == area && p.address == addr && settable(p))
        .map(Target::Point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(area: Area, address: u16, data_type: DataType) -> Point {
        Point {
            name: None,
            source: Source::Constant(Value::Int(0)),
            area,
            address,
            data_type,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            pin: None,
        }
    }

    #[test]
    fn scale_and_offset_are_undone() {
        let mut p = point(Area::HoldingRegister, 0, DataType::U16);
        p.scale = 0.1;
        p.offset = -40.0;
        // raw × 0.1 − 40 = 55.3  →  raw = 953
        assert_eq!(p.registers(&Value::Float(55.3)), [953]);
    }

    #[test]
    fn bits_share_a_register() {
        let one = 0..1;
        let mut img = Image::new([vec![], vec![], vec![], vec![one]]);
        let a = point(Area::HoldingRegister, 0, DataType::Bit(0));
        let b = point(Area::HoldingRegister, 0, DataType::Bit(3));
        a.write(&mut img, &Value::Bool(true));
        b.write(&mut img, &Value::Bool(true));
        a.write(&mut img, &Value::Bool(false));
        assert_eq!(img.holding.get(0, 1), Ok(&[8][..]));
    }

    #[test]
    fn sawtooth_repeats() {
        let mut p = point(Area::InputRegister, 0, DataType::F32);
        p.source = Source::Sawtooth {
            from: 0.0,
            to: 100.0,
            period: Duration::from_secs(10),
        };
        let at = |s| p.engineering(Duration::from_secs(s), |_| None);
        assert_eq!(at(5), Some(Value::Float(50.0)));
        assert_eq!(at(15), Some(Value::Float(50.0)));
    }

    #[test]
    fn patch_overlaps_only() {
        let p = point(Area::InputRegister, 10, DataType::U64);
        let mut out = [0u16; 3];
        p.patch(12, &mut out, &[1, 2, 3, 4]);
        assert_eq!(out, [3, 4, 0]);
    }

    #[test]
    fn targets() {
        let mut p = point(Area::HoldingRegister, 7, DataType::U16);
        p.name = Some("setpoint".into());
        let pts = [p];
        assert_eq!(
            find_target(Model::Pump, &pts, "pressure"),
            Some(Target::Signal(Signal::Pressure))
        );
        assert_eq!(find_target(Model::Motor, &pts, "pressure"), None);
        assert_eq!(
            find_target(Model::Pump, &pts, "setpoint"),
            Some(Target::Point(0))
        );
        assert_eq!(
            find_target(Model::Pump, &pts, "holding:7"),
            Some(Target::Point(0))
        );
        assert_eq!(find_target(Model::Pump, &pts, "holding:8"), None);
        assert_eq!(find_target(Model::Pump, &pts, "clock_ms"), None);
    }
}

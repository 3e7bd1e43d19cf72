//! The plant model: one pump or motor whose signals drift with seeded,
//! bounded noise around sensible operating points.
//!
//! Pure: no tokio, no clock. Time since the simulator started is passed to
//! [`Plant::step`], and all randomness comes from a `SmallRng` seeded at
//! construction, so the same seed and the same step times give the same
//! values on every run and every machine.
//!
//! Each analog signal is `centre + deviation`: the centre follows its
//! target (the running or the stopped operating point) with a first-order
//! lag, or follows a scripted ramp exactly; the deviation is a
//! mean-reverting random walk clamped to a band, so the noise never wanders
//! off. A pinned signal reads exactly its pinned value.
//!
//! The machine trips (fault on, running off) when vibration or bearing
//! temperature passes its trip limit. A trip drops every override of the
//! analog signals, because a stopped machine does not vibrate or draw
//! current whatever the script asked for.

use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

/// Vibration (mm/s RMS) above which a running machine trips.
pub const VIBRATION_TRIP: f64 = 11.0;
/// Bearing temperature (degC) above which a running machine trips.
pub const BEARING_TEMP_TRIP: f64 = 95.0;

/// What kind of machine a device simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// A centrifugal pump: bearing temperature, vibration, motor current,
    /// discharge pressure, speed, running, fault, runtime.
    Pump,
    /// An electric motor: like a pump but without pressure.
    Motor,
    /// No machine: only constants, ramps, the clock and a register pattern.
    Generic,
}

impl Model {
    /// Parses `pump`, `motor` or `generic`.
    pub fn parse(s: &str) -> Option<Model> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pump" => Some(Model::Pump),
            "motor" => Some(Model::Motor),
            "generic" => Some(Model::Generic),
            _ => None,
        }
    }

    /// The scenario name.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Pump => "pump",
            Model::Motor => "motor",
            Model::Generic => "generic",
        }
    }

    /// True when the model produces `signal` ([`Signal::ClockMs`] is
    /// available on every model).
    pub fn has(self, signal: Signal) -> bool {
        match (self, signal) {
            (_, Signal::ClockMs) => true,
            (Model::Generic, _) => false,
            (Model::Motor, Signal::Pressure) => false,
            _ => true,
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal of the plant model, in engineering units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Bearing temperature, degC (pump ~55, motor ~60, ambient 25).
    BearingTemp,
    /// Vibration velocity, mm/s RMS (pump ~2.5, motor ~2.0).
    Vibration,
    /// Motor current, A (pump ~12, motor ~18).
    Current,
    /// Discharge pressure, bar (pump ~4.2; pumps only).
    Pressure,
    /// Shaft speed, rpm (pump ~2950, motor ~1485).
    Speed,
    /// 1 while running, 0 when stopped.
    Running,
    /// 1 after a trip until reset, else 0.
    Fault,
    /// Hours run, advancing while running.
    RuntimeHours,
    /// The simulator's wall clock in ms since the Unix epoch. Not part of
    /// the plant: it is filled in when a request is answered, so it can
    /// measure end-to-end latency.
    ClockMs,
}

/// The analog signals, in the order of [`Plant`]'s internal array.
const ANALOG: [Signal; 5] = [
    Signal::BearingTemp,
    Signal::Vibration,
    Signal::Current,
    Signal::Pressure,
    Signal::Speed,
];

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 9] = [
        Signal::BearingTemp,
        Signal::Vibration,
        Signal::Current,
        Signal::Pressure,
        Signal::Speed,
        Signal::Running,
        Signal::Fault,
        Signal::RuntimeHours,
        Signal::ClockMs,
    ];

    /// Parses the scenario name (`bearing_temp`, `clock_ms`...).
    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.as_str() == s.trim())
    }

    /// The scenario name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::BearingTemp => "bearing_temp",
            Signal::Vibration => "vibration",
            Signal::Current => "current",
            Signal::Pressure => "pressure",
            Signal::Speed => "speed",
            Signal::Running => "running",
            Signal::Fault => "fault",
            Signal::RuntimeHours => "runtime_hours",
            Signal::ClockMs => "clock_ms",
        }
    }

    /// True for signals that drift and can be ramped.
    pub fn is_analog(self) -> bool {
        ANALOG.contains(&self)
    }

    fn analog_index(self) -> Option<usize> {
        ANALOG.iter().position(|s| *s == self)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one analog signal behaves.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    /// Operating point while running.
    running: f64,
    /// Operating point when stopped.
    stopped: f64,
    /// The noise never leaves `centre ± band`.
    band: f64,
    /// Noise intensity per √s; about a quarter of the band keeps the
    /// noise inside it most of the time (stationary σ ≈ 1.6 × sigma).
    sigma: f64,
    /// Time constant of the lag towards the operating point, in seconds.
    tau: f64,
    /// Fraction of the noise left when the machine stands still: a stopped
    /// pump still has a warm bearing that a sensor reads with noise, but
    /// draws no current.
    stopped_noise: f64,
}

const fn behaviour(running: f64, stopped: f64, band: f64, sigma: f64, tau: f64) -> Behaviour {
    Behaviour {
        running,
        stopped,
        band,
        sigma,
        tau,
        stopped_noise: 0.02,
    }
}

fn behaviours(model: Model) -> [Behaviour; 5] {
    // Thermal lag is minutes; the mechanical and electrical ones seconds.
    let mut temp = behaviour(55.0, 25.0, 1.5, 0.25, 120.0);
    temp.stopped_noise = 1.0;
    match model {
        Model::Pump | Model::Generic => [
            temp,
            behaviour(2.5, 0.1, 0.4, 0.1, 2.0),
            behaviour(12.0, 0.0, 0.6, 0.15, 1.0),
            behaviour(4.2, 0.0, 0.15, 0.035, 2.0),
            behaviour(2950.0, 0.0, 8.0, 2.0, 3.0),
        ],
        Model::Motor => [
            Behaviour {
                running: 60.0,
                ..temp
            },
            behaviour(2.0, 0.1, 0.35, 0.09, 2.0),
            behaviour(18.0, 0.0, 0.8, 0.2, 1.0),
            behaviour(0.0, 0.0, 0.0, 0.0, 1.0),
            behaviour(1485.0, 0.0, 5.0, 1.2, 3.0),
        ],
    }
}

/// A scripted or manual override of an analog signal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Override {
    /// Reads exactly this value, without noise.
    Pin(f64),
    /// The centre moves linearly from `from` to `to` between `start` and
    /// `start + over`, then stays at `to`; noise is added on top.
    Ramp {
        from: f64,
        to: f64,
        start: Duration,
        over: Duration,
    },
}

#[derive(Debug, Clone)]
struct Analog {
    behaviour: Behaviour,
    centre: f64,
    deviation: f64,
    over: Option<Override>,
}

/// One simulated machine. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct Plant {
    model: Model,
    rng: SmallRng,
    last: Duration,
    running: bool,
    fault: bool,
    runtime_hours: f64,
    analog: [Analog; 5],
}

impl Plant {
    /// A machine in steady running state, its noise and its starting
    /// runtime drawn from `seed`.
    pub fn new(model: Model, seed: u64) -> Plant {
        let mut rng = SmallRng::seed_from_u64(seed);
        let analog = behaviours(model).map(|behaviour| Analog {
            behaviour,
            centre: behaviour.running,
            deviation: rng.random_range(-0.5..=0.5) * behaviour.band,
            over: None,
        });
        let runtime_hours = f64::from(rng.random_range(1_000u32..20_000));
        Plant {
            model,
            rng,
            last: Duration::ZERO,
            running: model != Model::Generic,
            fault: false,
            runtime_hours,
            analog,
        }
    }

    /// The kind of machine.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Advances the model to `now` (time since the simulator started).
    /// A `now` earlier than the previous one is treated as no time passing.
    pub fn step(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        if self.model == Model::Generic || dt == 0.0 {
            return;
        }
        if self.running {
            self.runtime_hours += dt / 3600.0;
        }
        let running = self.running;
        for a in &mut self.analog {
            let b = a.behaviour;
            // Mean-reverting noise (discretised Ornstein-Uhlenbeck with
            // uniform increments of unit variance), clamped to the band.
            let kick: f64 = self.rng.random_range(-1.732..=1.732);
            let revert = (dt / 5.0).min(1.0);
            a.deviation += -a.deviation * revert + b.sigma * dt.sqrt() * kick;
            a.deviation = a.deviation.clamp(-b.band, b.band);
            match a.over {
                Some(Override::Pin(_)) => {}
                Some(Override::Ramp {
                    from,
                    to,
                    start,
                    over,
                }) => {
                    let done = if over.is_zero() {
                        1.0
                    } else {
                        (now.saturating_sub(start).as_secs_f64() / over.as_secs_f64()).min(1.0)
                    };
                    a.centre = from + (to - from) * done;
                }
                None => {
                    let target = if running { b.running } else { b.stopped };
                    a.centre += (target - a.centre) * (1.0 - (-dt / b.tau).exp());
                }
            }
        }
        if self.running
            && (self.value(Signal::Vibration) > Some(VIBRATION_TRIP)
                || self.value(Signal::BearingTemp) > Some(BEARING_TEMP_TRIP))
        {
            self.trip();
        }
    }

    /// The current value of `signal`, or `None` when this model has no
    /// such signal (and always for [`Signal::ClockMs`], which the server
    /// fills in).
    pub fn value(&self, signal: Signal) -> Option<f64> {
        if !self.model.has(signal) || signal == Signal::ClockMs {
            return None;
        }
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        Some(match signal {
            Signal::Running => flag(self.running),
            Signal::Fault => flag(self.fault),
            Signal::RuntimeHours => self.runtime_hours,
            analog => {
                let a = &self.analog[analog.analog_index()?];
                if let Some(Override::Pin(v)) = a.over {
                    return Some(v);
                }
                let noise = if self.running {
                    1.0
                } else {
                    a.behaviour.stopped_noise
                };
                let v = a.centre + a.deviation * noise;
                if analog == Signal::BearingTemp {
                    v
                } else {
                    v.max(0.0)
                }
            }
        })
    }

    /// Sets a signal by hand. Analog signals are pinned to `value` (read
    /// exactly, no noise) until released or ramped. `running` 0/1 stops or
    /// starts the machine (a start is ignored while it is faulted); `fault`
    /// 1 trips it and 0 resets the trip and restarts it; `runtime_hours`
    /// sets the counter, which keeps counting from there. Returns false
    /// when the model has no such signal.
    pub fn set(&mut self, signal: Signal, value: f64) -> bool {
        if !self.model.has(signal) || signal == Signal::ClockMs {
            return false;
        }
        match signal {
            Signal::Running => self.running = value != 0.0 && !self.fault,
            Signal::Fault if value != 0.0 => self.trip(),
            Signal::Fault => {
                self.fault = false;
                self.running = true;
            }
            Signal::RuntimeHours => self.runtime_hours = value.max(0.0),
            analog => {
                if let Some(i) = analog.analog_index() {
                    self.analog[i].over = Some(Override::Pin(value));
                }
            }
        }
        true
    }

    /// Ramps an analog signal from where it is now to `to` over `over`,
    /// starting at `now`; it then hovers at `to` with its usual noise.
    /// Returns false for a non-analog or missing signal.
    pub fn ramp(&mut self, signal: Signal, to: f64, over: Duration, now: Duration) -> bool {
        let Some(i) = signal.analog_index().filter(|_| self.model.has(signal)) else {
            return false;
        };
        let a = &mut self.analog[i];
        let from = match a.over {
            Some(Override::Pin(v)) => v,
            _ => a.centre,
        };
        a.centre = from;
        a.over = Some(Override::Ramp {
            from,
            to,
            start: now,
            over,
        });
        true
    }

    /// Hands an analog signal back to the model, which lags from the
    /// current value towards its operating point.
    pub fn release(&mut self, signal: Signal) {
        let Some(i) = signal.analog_index() else {
            return;
        };
        if let Some(Override::Pin(v)) = self.analog[i].over {
            self.analog[i].centre = v - self.analog[i].deviation;
        }
        self.analog[i].over = None;
    }

    fn trip(&mut self) {
        self.fault = true;
        self.running = false;
        for signal in ANALOG {
            self.release(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plant: &mut Plant, from_ms: u64, to_ms: u64) {
        for ms in (from_ms..=to_ms).step_by(100) {
            plant.step(Duration::from_millis(ms));
        }
    }

    fn values(plant: &Plant) -> Vec<Option<f64>> {
        Signal::ALL.iter().map(|s| plant.value(*s)).collect()
    }

    #[test]
    fn same_seed_same_values() {
        let mut a = Plant::new(Model::Pump, 7);
        let mut b = Plant::new(Model::Pump, 7);
        run(&mut a, 0, 60_000);
        run(&mut b, 0, 60_000);
        assert_eq!(values(&a), values(&b));
        let mut c = Plant::new(Model::Pump, 8);
        run(&mut c, 0, 60_000);
        assert_ne!(values(&a), values(&c));
    }

    #[test]
    fn pump_stays_near_its_operating_point() {
        let mut p = Plant::new(Model::Pump, 1);
        for ms in (0..=3_600_000u64).step_by(100) {
            p.step(Duration::from_millis(ms));
            let near = |s, centre: f64, band: f64| {
                let v = p.value(s).unwrap_or(f64::NAN);
                assert!((v - centre).abs() <= band + 1e-9, "{s} = {v} at {ms} ms");
            };
            near(Signal::BearingTemp, 55.0, 1.5);
            near(Signal::Vibration, 2.5, 0.4);
            near(Signal::Current, 12.0, 0.6);
            near(Signal::Pressure, 4.2, 0.15);
        }
        assert_eq!(p.value(Signal::Running), Some(1.0));
        assert_eq!(p.value(Signal::Fault), Some(0.0));
    }

    #[test]
    fn values_actually_drift() {
        let mut p = Plant::new(Model::Motor, 3);
        p.step(Duration::from_secs(1));
        let before = p.value(Signal::Vibration);
        p.step(Duration::from_secs(2));
        assert_ne!(before, p.value(Signal::Vibration));
    }

    #[test]
    fn runtime_counts_only_while_running() {
        let mut p = Plant::new(Model::Motor, 3);
        let start = p.value(Signal::RuntimeHours).unwrap_or(0.0);
        run(&mut p, 0, 360_000);
        let after = p.value(Signal::RuntimeHours).unwrap_or(0.0);
        assert!((after - start - 0.1).abs() < 1e-9, "{start} -> {after}");
        p.set(Signal::Running, 0.0);
        run(&mut p, 360_100, 720_000);
        assert_eq!(p.value(Signal::RuntimeHours), Some(after));
        assert!(p.value(Signal::Current).unwrap_or(1.0) < 0.1);
    }

    #[test]
    fn ramp_reaches_target_then_hovers() {
        let mut p = Plant::new(Model::Pump, 5);
        run(&mut p, 0, 10_000);
        assert!(p.ramp(
            Signal::BearingTemp,
            85.0,
            Duration::from_secs(20),
            Duration::from_secs(10)
        ));
        run(&mut p, 10_100, 20_000);
        let half = p.value(Signal::BearingTemp).unwrap_or(0.0);
        assert!((66.0..75.0).contains(&half), "half way: {half}");
        run(&mut p, 20_100, 120_000);
        let v = p.value(Signal::BearingTemp).unwrap_or(0.0);
        assert!((v - 85.0).abs() <= 1.5, "{v}");
        assert_eq!(p.value(Signal::Fault), Some(0.0));
    }

    #[test]
    fn pin_reads_exactly_and_release_returns() {
        let mut p = Plant::new(Model::Pump, 5);
        assert!(p.set(Signal::Pressure, 6.5));
        run(&mut p, 0, 5_000);
        assert_eq!(p.value(Signal::Pressure), Some(6.5));
        p.release(Signal::Pressure);
        run(&mut p, 5_100, 60_000);
        assert!((p.value(Signal::Pressure).unwrap_or(0.0) - 4.2).abs() <= 0.15 + 1e-9);
    }

    #[test]
    fn high_vibration_trips_and_reset_restarts() {
        let mut p = Plant::new(Model::Motor, 9);
        p.ramp(
            Signal::Vibration,
            12.0,
            Duration::from_secs(5),
            Duration::ZERO,
        );
        run(&mut p, 0, 10_000);
        assert_eq!(p.value(Signal::Fault), Some(1.0));
        assert_eq!(p.value(Signal::Running), Some(0.0));
        run(&mut p, 10_100, 40_000);
        assert!(p.value(Signal::Vibration).unwrap_or(9.0) < 0.5);
        assert!(p.value(Signal::Current).unwrap_or(9.0) < 0.1);
        p.set(Signal::Running, 1.0);
        assert_eq!(
            p.value(Signal::Running),
            Some(0.0),
            "no start while faulted"
        );
        p.set(Signal::Fault, 0.0);
        run(&mut p, 40_100, 60_000);
        assert_eq!(p.value(Signal::Running), Some(1.0));
        assert!((p.value(Signal::Current).unwrap_or(0.0) - 18.0).abs() <= 0.8 + 1e-9);
    }

    #[test]
    fn model_signals() {
        let motor = Plant::new(Model::Motor, 1);
        assert_eq!(motor.value(Signal::Pressure), None);
        assert_eq!(motor.value(Signal::ClockMs), None);
        let generic = Plant::new(Model::Generic, 1);
        assert_eq!(generic.value(Signal::BearingTemp), None);
        assert!(Model::Generic.has(Signal::ClockMs));
        assert_eq!(Signal::parse("runtime_hours"), Some(Signal::RuntimeHours));
        assert_eq!(Model::parse("Pump"), Some(Model::Pump));
    }
}

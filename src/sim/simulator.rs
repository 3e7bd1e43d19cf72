//! [`Simulator`]: owns the servers and the ticker of one running scenario.
//!
//! Ownership: the simulator owns the stop sender, every server task and the
//! ticker task. `shutdown` flips the stop flag and awaits them; dropping
//! the simulator without `shutdown` drops the sender, which stops them too
//! (without waiting). Devices are shared as `Arc<[DeviceCell]>` between
//! servers, ticker and simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_serial::SerialStream;

use super::SimError;
use super::device::{Device, DeviceCell};
use super::fault::Faults;
use super::plant::Signal;
use super::point::{Target, find_target};
use super::resolve::Plan;
use super::scenario::Scenario;
use super::script::{Action, Script};
use super::server::{self, Gate, Running, stopped};

/// State the simulator and its ticker share.
#[derive(Debug)]
struct Shared {
    devices: Arc<[DeviceCell]>,
    gates: Vec<Gate>,
    start: Instant,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Applies an action to device `i`.
    fn apply(&self, i: usize, action: &Action, now: Duration) {
        let Some(cell) = self.devices.get(i) else {
            return;
        };
        match action {
            Action::Offline(off) => {
                cell.set_offline(*off);
                for g in self.gates.iter().filter(|g| g.covers(i)) {
                    g.update(&self.devices);
                }
            }
            Action::Exception(code) => cell.set_exception(*code),
            other => cell.write().apply(other, now),
        }
    }

    /// One tick: plays the script's due steps, then refreshes every device.
    fn tick(&self, script: &mut Script, now: Duration) {
        for (_, device, action) in script.due(now) {
            self.apply(*device, action, now);
        }
        for cell in self.devices.iter() {
            cell.write().tick(now);
        }
    }
}

/// The devices of a plan, ready to share.
fn cells(plan: &Plan) -> Arc<[DeviceCell]> {
    plan.devices
        .iter()
        .map(|d| DeviceCell::new(d.name.clone(), d.unit, Device::new(d, plan.seed)))
        .collect()
}

/// A running scenario: Modbus servers backed by the plant model.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    servers: Vec<Running>,
    ticker: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Simulator {
    /// Binds every listener (port 0 → a free port), opens every serial
    /// port and pty, and starts the model ticker; returns once all are
    /// listening. On an error, whatever was already started is stopped.
    pub async fn start(scenario: Scenario) -> Result<Simulator, SimError> {
        let plan = scenario.plan()?;
        let devices = cells(&plan);
        let (stop, stop_rx) = watch::channel(false);
        let mut servers = Vec::with_capacity(plan.servers.len());
        for s in &plan.servers {
            // On `?` the stop sender drops, which ends the servers already
            // spawned.
            servers.push(server::start(s, Arc::clone(&devices), stop_rx.clone()).await?);
        }
        let gates = servers.iter_mut().filter_map(|s| s.gate.take()).collect();
        let shared = Arc::new(Shared {
            devices,
            gates,
            start: Instant::now(),
        });
        let ticker = tokio::spawn(tick(
            Arc::clone(&shared),
            Script::new(&plan.events),
            plan.tick,
            stop_rx,
        ));
        Ok(Simulator {
            shared,
            servers,
            ticker,
            stop,
        })
    }

    fn index(&self, device: &str) -> Result<usize, SimError> {
        self.shared
            .devices
            .iter()
            .position(|d| d.name == device)
            .ok_or_else(|| SimError::UnknownDevice(device.to_string()))
    }

    fn server_of(&self, device: &str) -> Option<&Running> {
        let i = self.index(device).ok()?;
        self.servers.iter().find(|s| s.devices.contains(&i))
    }

    /// Actual bound address of a device's TCP or RTU-over-TCP listener
    /// (after port 0 was resolved), by device name; `None` for serial
    /// devices and unknown names.
    pub fn addr(&self, device: &str) -> Option<SocketAddr> {
        self.server_of(device)?.addr
    }

    /// Path of the pty a client opens to reach a device declared with
    /// `serial = "pty"` (or `"pty:NAME"`); `None` otherwise.
    pub fn serial_path(&self, device: &str) -> Option<String> {
        self.server_of(device)?.pty_path.clone()
    }

    /// Time since the simulator started (the clock scenario events use).
    pub fn elapsed(&self) -> Duration {
        self.shared.now()
    }

    /// Sets a value by hand: `signal` is a model signal (`pressure`), a
    /// point name, or `area:address` of a point (`holding:10`). Analog
    /// signals and points are pinned to exactly `value` until
    /// [`Simulator::release`]; `running`, `fault` and `runtime_hours`
    /// change the machine's state (see [`super::Plant::set`]). The image
    /// is updated before this returns.
    pub fn set(&self, device: &str, signal: &str, value: f64) -> Result<(), SimError> {
        self.act(device, signal, |target| Action::Set { target, value })
    }

    /// Hands a signal or point set by [`Simulator::set`] back to the model
    /// or to its scenario source.
    pub fn release(&self, device: &str, signal: &str) -> Result<(), SimError> {
        self.act(device, signal, |target| Action::Release { target })
    }

    fn act(
        &self,
        device: &str,
        signal: &str,
        action: impl FnOnce(Target) -> Action,
    ) -> Result<(), SimError> {
        let i = self.index(device)?;
        let now = self.shared.now();
        let mut d = self.shared.devices[i].write();
        let target =
            find_target(d.model(), d.points(), signal).ok_or_else(|| SimError::UnknownTarget {
                device: device.to_string(),
                target: signal.to_string(),
            })?;
        d.apply(&action(target), now);
        Ok(())
    }

    /// The model's current value of a signal (`None` for an unknown device
    /// or a signal the model lacks).
    pub fn value(&self, device: &str, signal: &str) -> Option<f64> {
        let i = self.index(device).ok()?;
        self.shared.devices[i].read().value(Signal::parse(signal)?)
    }

    /// Takes a device offline (no answers at all; a listener whose devices
    /// are all offline also closes its connections and refuses new ones)
    /// or back online.
    pub fn set_offline(&self, device: &str, offline: bool) -> Result<(), SimError> {
        let i = self.index(device)?;
        self.shared
            .apply(i, &Action::Offline(offline), self.shared.now());
        Ok(())
    }

    /// Makes a device answer every request with exception `code`, or
    /// (`None`) answer normally again.
    pub fn set_exception(&self, device: &str, code: Option<u8>) -> Result<(), SimError> {
        let i = self.index(device)?;
        self.shared.apply(
            i,
            &Action::Exception(code.filter(|c| *c != 0)),
            self.shared.now(),
        );
        Ok(())
    }

    /// Injects faults into a device's answers (late, silent, from another
    /// unit, behind noise, malformed; see [`Faults`]), or (`Faults::none()`)
    /// none. The schedule counts the device's requests from this call on.
    pub fn set_faults(&self, device: &str, faults: Faults) -> Result<(), SimError> {
        let i = self.index(device)?;
        self.shared.devices[i].set_faults(faults);
        Ok(())
    }

    /// Stops all servers and the ticker; returns when they are stopped.
    /// Open TCP connections are closed.
    pub async fn shutdown(self) {
        let Simulator {
            shared,
            servers,
            ticker,
            stop,
        } = self;
        stop.send_replace(true);
        for g in &shared.gates {
            g.close();
        }
        let mut ptys: Vec<SerialStream> = Vec::new();
        for s in servers {
            if let Some(task) = s.task {
                // A panicked server task has stopped as well.
                let _ = task.await;
            }
            ptys.extend(s.pty_keep);
        }
        let _ = ticker.await;
        drop(ptys);
    }
}

/// The ticker: plays the script and refreshes every device each `every`.
async fn tick(
    shared: Arc<Shared>,
    mut script: Script,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    // After a stall, catch up with one refresh rather than a burst.
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stopped(&mut stop) => return,
        }
        shared.tick(&mut script, shared.now());
    }
}

/// Standalone: starts the scenario and runs it until `shutdown` resolves
/// (used by `fieldgate sim`).
pub async fn run(
    scenario: Scenario,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SimError> {
    let sim = Simulator::start(scenario).await?;
    for cell in sim.shared.devices.iter() {
        let addr = sim.addr(&cell.name);
        let path = sim.serial_path(&cell.name);
        tracing::info!(device = %cell.name, unit = cell.unit, ?addr, ?path, "simulated device up");
    }
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `config/sim/plant.toml` on simulated time, as the ticker
    /// would, and checks that its script does what its header says.
    #[test]
    fn the_example_plant_plays_out() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim/plant.toml");
        let plan = match Scenario::load(path).and_then(|s| s.plan()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let shared = Shared {
            devices: cells(&plan),
            gates: Vec::new(),
            start: Instant::now(),
        };
        let mut script = Script::new(&plan.events);
        let index = |name| shared.devices.iter().position(|d| d.name == name);
        let (Some(pump1), Some(pump2), Some(motor1)) =
            (index("pump1"), index("pump2"), index("motor1"))
        else {
            panic!("devices missing");
        };
        let value = |i: usize, s| shared.devices[i].read().value(s).unwrap_or(f64::NAN);
        for ms in (0..=160_000u64).step_by(100) {
            shared.tick(&mut script, Duration::from_millis(ms));
            let temp = value(pump1, Signal::BearingTemp);
            let fault = value(motor1, Signal::Fault);
            let offline = shared.devices[pump2].is_offline();
            match ms {
                0..60_000 => assert!((temp - 55.0).abs() <= 1.5 + 1e-9, "{ms}: {temp}"),
                95_000.. => assert!((temp - 85.0).abs() <= 1.5 + 1e-9, "{ms}: {temp}"),
                _ => {}
            }
            match ms {
                0..88_000 => assert_eq!(fault, 0.0, "{ms}"),
                91_000.. => {
                    assert_eq!(fault, 1.0, "{ms}");
                    assert_eq!(value(motor1, Signal::Running), 0.0);
                }
                _ => {}
            }
            assert_eq!(offline, (120_000..150_000).contains(&ms), "{ms}");
        }
        assert!(
            value(motor1, Signal::Current) < 0.1,
            "stopped motor draws no current"
        );
    }

    /// Plays `config/sim/demo.toml` (the scenario of `fieldgate demo`) on
    /// simulated time and checks the timeline its header promises, with
    /// the margins the demo's rules need (config/demo.toml).
    #[test]
    fn the_demo_plant_plays_out() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim/demo.toml");
        let plan = match Scenario::load(path).and_then(|s| s.plan()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let shared = Shared {
            devices: cells(&plan),
            gates: Vec::new(),
            start: Instant::now(),
        };
        let mut script = Script::new(&plan.events);
        let index = |name| shared.devices.iter().position(|d| d.name == name);
        let (Some(pump1), Some(pump2), Some(motor1), Some(fan1)) = (
            index("pump1"),
            index("pump2"),
            index("motor1"),
            index("fan1"),
        ) else {
            panic!("devices missing");
        };
        let value = |i: usize, s| shared.devices[i].read().value(s).unwrap_or(f64::NAN);
        let mut crossed_80 = None;
        let mut vibration_alarm = None;
        let mut tripped = None;
        for ms in (0..=60_000u64).step_by(100) {
            shared.tick(&mut script, Duration::from_millis(ms));
            let temp = value(pump1, Signal::BearingTemp);
            if temp > 80.0 && crossed_80.is_none() {
                crossed_80 = Some(ms);
            }
            match ms {
                0..4_000 => assert!(temp < 57.0, "{ms}: {temp}"),
                // Hovers well above the alarm's return point (78) and
                // below the trip (95): one alarm that stays active.
                16_000.. => assert!((83.0..=87.0).contains(&temp), "{ms}: {temp}"),
                _ => {}
            }
            assert_eq!(value(pump1, Signal::Running), 1.0, "{ms}: pump1 runs");
            assert_eq!(
                shared.devices[pump2].is_offline(),
                (8_000..18_000).contains(&ms),
                "{ms}"
            );
            let vibration = value(motor1, Signal::Vibration);
            if vibration > 7.1 && vibration_alarm.is_none() {
                vibration_alarm = Some(ms);
            }
            if value(motor1, Signal::Fault) == 1.0 && tripped.is_none() {
                tripped = Some(ms);
            }
            assert_eq!(value(fan1, Signal::Fault), 0.0, "{ms}: the fan runs on");
        }
        assert!(
            crossed_80.is_some_and(|t| (12_000..=16_000).contains(&t)),
            "{crossed_80:?}"
        );
        assert!(
            vibration_alarm.is_some_and(|t| (24_000..=28_000).contains(&t)),
            "{vibration_alarm:?}"
        );
        // Above 7.1 for over a second before the trip: the alarm's on-delay.
        assert!(
            tripped.is_some_and(|t| (28_000..=31_000).contains(&t)
                && vibration_alarm.is_some_and(|v| t - v >= 1_500)),
            "{tripped:?} {vibration_alarm:?}"
        );
        assert_eq!(value(motor1, Signal::Running), 0.0, "the trip latches");
    }
}

//! `fieldgate sim -c scenario.toml`: the plant simulator on its own, for
//! trying fieldgate (or any Modbus client) without a PLC.

use std::path::Path;
use std::process::ExitCode;

use crate::sim::{Scenario, Simulator};

/// Starts the simulator and runs it until SIGINT/SIGTERM.
pub fn run(path: &Path) -> ExitCode {
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let names: Vec<String> = scenario.devices.iter().map(|d| d.name.clone()).collect();
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let sim = match Simulator::start(scenario).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(1);
            }
        };
        for name in &names {
            let spec = sim
                .addr(name)
                .map(|a| format!("tcp {a}"))
                .or_else(|| sim.serial_path(name).map(|p| format!("serial {p}")))
                .unwrap_or_else(|| "serial".into());
            println!("simulating {name} on {spec}");
        }
        println!("running; Ctrl-C stops");
        super::signal().await;
        sim.shutdown().await;
        ExitCode::SUCCESS
    })
}

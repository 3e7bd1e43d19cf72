//! `fieldgate read -c FILE DEVICE [TAG...]`: one poll of some tags of a
//! device, printed as a table with the raw registers, for commissioning.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::table::Table;
use crate::config::{self, Device};
use crate::modbus::plan::ReadPlan;
use crate::modbus::poller::{self, PollOutcome};
use crate::modbus::transport::Block;
use crate::modbus::{Link, links};
use crate::precision::Precision;
use crate::reading::Reading;
use crate::shutdown;
use crate::tag::{Tag, Value};

/// Reads the tags once; exit code 1 when any reading is bad.
pub fn run(path: &Path, device_name: &str, tag_names: &[String]) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::from(1);
        }
    };
    let config = loaded.config;
    let Some(found) = links(&config).into_iter().find_map(|(endpoint, devices)| {
        devices
            .into_iter()
            .find(|d| d.name == device_name)
            .map(|d| (endpoint, d))
    }) else {
        let names: Vec<&str> = config.devices.iter().map(|d| d.name.as_str()).collect();
        eprintln!(
            "no device \"{device_name}\" in {} (devices: {})",
            path.display(),
            names.join(", ")
        );
        return ExitCode::from(1);
    };
    let (endpoint, device) = found;
    let mut device: Device = (*device).clone();
    if !tag_names.is_empty() {
        let mut missing = Vec::new();
        let mut chosen = Vec::new();
        for name in tag_names {
            match device.tags.iter().find(|t| &t.name == name) {
                Some(t) => chosen.push(t.clone()),
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            eprintln!(
                "device \"{device_name}\" has no tag {}",
                missing
                    .iter()
                    .map(|m| format!("\"{m}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::from(1);
        }
        device.tags = chosen;
    }
    let device = Arc::new(device);
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (_trigger, listener) = shutdown::channel();
    let mut plan = ReadPlan::new(&device.tags, poller::limits(&device));
    let mut link = Link::new(endpoint);
    let outcome = runtime.block_on(poller::poll_once(
        &mut link,
        &device,
        &mut plan,
        device.retries,
        &listener,
        None,
    ));
    let Some(outcome) = outcome else {
        return ExitCode::from(1);
    };
    if let Some(e) = &outcome.gave_up {
        eprintln!("{}: {e}", link.endpoint());
    }
    let readings = poller::readings(&device, &plan, &outcome);
    print!("{}", table(&device, &readings, &plan, &outcome));
    if readings.iter().all(|r| r.quality.is_good()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A value as the table shows it: a number with the tag's precision
/// (`21.4` for a tenth-degree register, whatever float noise the scaling
/// left; the RAW column has the register itself); bools and text as
/// published, text in quotes so that padding shows.
fn shown(tag: &Tag, v: &Value) -> String {
    match v {
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => Precision::of(tag).value(v),
        Value::Bool(_) | Value::Text(_) => {
            let mut text = String::new();
            crate::contract::json::value(&mut text, tag, v);
            text
        }
    }
}

/// The table: tag, value, unit, quality, raw registers in hex.
fn table(device: &Device, readings: &[Reading], plan: &ReadPlan, outcome: &PollOutcome) -> String {
    let mut rows = Table::new(&["TAG", "VALUE", "UNIT", "QUALITY", "ADDRESS", "RAW"]);
    for r in readings {
        let Some(tag) = device.tags.get(r.tag) else {
            continue;
        };
        let raw = plan
            .requests()
            .iter()
            .zip(&outcome.blocks)
            .find(|(req, _)| req.tags.contains(&r.tag))
            .and_then(|(req, block)| {
                let off = usize::from(tag.address - req.start);
                match block.as_ref().ok()? {
                    Block::Registers(regs) => Some(
                        regs.get(off..off + usize::from(tag.width()))?
                            .iter()
                            .map(|w| format!("{w:04X}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    Block::Bits(bits) => bits.get(off).map(|b| u8::from(*b).to_string()),
                }
            })
            .unwrap_or_default();
        rows.row(vec![
            tag.name.clone(),
            r.value
                .as_ref()
                .map(|v| shown(tag, v))
                .unwrap_or_else(|| "-".into()),
            tag.unit.clone().unwrap_or_default(),
            r.quality.to_string(),
            format!("{} {}", tag.area, tag.address),
            raw,
        ]);
    }
    rows.render()
}

//! `fieldgate scan`: probe a device's address range and print what
//! answers, so a technician can find the map of an undocumented device.
//!
//! The range is read in blocks; a block refused with an exception is
//! split in halves down to single addresses, so holes are found without
//! giving up on their neighbours. Requests are paced by `--rate`, and the
//! scan ends at the end of the range (or after a run of timeouts: the
//! device is not there).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::{Bus, Parity};
use crate::modbus::decode::decode_all_orders_f32;
use crate::modbus::transport::{Block, Endpoint, Link, PollError};
use crate::tag::{Area, WordOrder};

/// Options of `fieldgate scan`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Modbus TCP device, HOST:PORT.
    #[arg(long, conflicts_with_all = ["serial", "rtu_over_tcp"], required_unless_present_any = ["serial", "rtu_over_tcp"])]
    pub tcp: Option<String>,
    /// RTU frames over TCP (serial-to-Ethernet converter), HOST:PORT.
    #[arg(long, conflicts_with = "serial")]
    pub rtu_over_tcp: Option<String>,
    /// Serial port of an RTU bus.
    #[arg(long)]
    pub serial: Option<String>,
    /// Baud rate (serial).
    #[arg(long, default_value_t = 19200)]
    pub baud: u32,
    /// Parity (serial): none, even, odd.
    #[arg(long, default_value = "even")]
    pub parity: String,
    /// Stop bits (serial).
    #[arg(long, default_value_t = 1)]
    pub stop_bits: u8,
    /// Unit id.
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    /// Area: holding, input, coil, discrete.
    #[arg(long, default_value = "holding")]
    pub area: String,
    /// Range of 0-based addresses, FIRST-LAST.
    #[arg(long, default_value = "0-99")]
    pub range: String,
    /// Addresses per request (at most 125 registers or 2000 bits).
    #[arg(long, default_value_t = 100)]
    pub block: u16,
    /// Most requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Per-request timeout, e.g. 500ms.
    #[arg(long, default_value = "1s")]
    pub timeout: String,
}

/// Give up after this many timeouts in a row: nothing is answering.
const SILENT_LIMIT: u32 = 3;

/// Runs the scan; exit code 1 when nothing answered.
pub fn run(args: ScanArgs) -> ExitCode {
    match plan_scan(&args) {
        Ok(scan) => {
            let runtime = match super::runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(execute(scan))
        }
        Err(e) => {
            eprintln!("fieldgate scan: {e}");
            ExitCode::from(2)
        }
    }
}

struct Scan {
    endpoint: Endpoint,
    unit: u8,
    area: Area,
    first: u16,
    last: u16,
    block: u16,
    pace: Duration,
    timeout: Duration,
}

fn plan_scan(args: &ScanArgs) -> Result<Scan, String> {
    let area = Area::parse(&args.area).ok_or_else(|| {
        format!(
            "unknown area \"{}\" (holding, input, coil, discrete)",
            args.area
        )
    })?;
    let (first, last) = args
        .range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| {
            format!(
                "--range \"{}\" is not FIRST-LAST with 0 <= FIRST <= LAST <= 65535",
                args.range
            )
        })?;
    let max = if area.is_bit() { 2000 } else { 125 };
    if args.block == 0 || args.block > max {
        return Err(format!("--block must be 1 to {max} for {area}"));
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be above 0".into());
    }
    let timeout = crate::config::units::parse_duration(&args.timeout)?;
    let endpoint = if let Some(addr) = &args.tcp {
        Endpoint::Tcp(addr.clone())
    } else if let Some(addr) = &args.rtu_over_tcp {
        Endpoint::RtuOverTcp(addr.clone())
    } else if let Some(port) = &args.serial {
        let parity = match args.parity.to_ascii_lowercase().as_str() {
            "none" | "n" => Parity::None,
            "even" | "e" => Parity::Even,
            "odd" | "o" => Parity::Odd,
            other => return Err(format!("unknown parity \"{other}\"")),
        };
        Endpoint::Serial(Bus {
            name: port.clone(),
            port: port.clone(),
            baud: args.baud,
            data_bits: 8,
            parity,
            stop_bits: args.stop_bits,
            frame_gap: None,
        })
    } else {
        return Err("give --tcp, --rtu-over-tcp or --serial".into());
    };
    Ok(Scan {
        endpoint,
        unit: args.unit,
        area,
        first,
        last,
        block: args.block,
        pace: Duration::from_secs_f64(1.0 / args.rate),
        timeout,
    })
}

/// What one address answered.
#[derive(Debug, Clone, PartialEq)]
enum Found {
    Register(u16),
    Bit(bool),
    Refused(u8),
}

async fn execute(scan: Scan) -> ExitCode {
    let mut link = Link::new(scan.endpoint.clone());
    let mut found: Vec<(u16, Found)> = Vec::new();
    // Ranges still to probe, as (start, count); split ones go first.
    let mut todo: Vec<(u16, u16)> = Vec::new();
    let mut start = u32::from(scan.first);
    while start <= u32::from(scan.last) {
        let count = (u32::from(scan.last) - start + 1).min(u32::from(scan.block));
        todo.push((start as u16, count as u16));
        start += count;
    }
    todo.reverse();
    let mut silent = 0;
    let mut pace = tokio::time::interval(scan.pace);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    eprintln!(
        "scanning {} unit {} {} {}-{} ({} per request, at most {:.0} requests/s)",
        scan.endpoint,
        scan.unit,
        scan.area,
        scan.first,
        scan.last,
        scan.block,
        1.0 / scan.pace.as_secs_f64()
    );
    while let Some((start, count)) = todo.pop() {
        pace.tick().await;
        match link
            .read(scan.unit, scan.area, start, count, scan.timeout)
            .await
        {
            Ok(Block::Registers(regs)) => {
                silent = 0;
                found.extend(
                    regs.into_iter()
                        .enumerate()
                        .map(|(i, r)| (start + i as u16, Found::Register(r))),
                );
            }
            Ok(Block::Bits(bits)) => {
                silent = 0;
                found.extend(
                    bits.into_iter()
                        .enumerate()
                        .map(|(i, b)| (start + i as u16, Found::Bit(b))),
                );
            }
            Err(PollError::Exception(_)) if count > 1 => {
                silent = 0;
                let half = count / 2;
                todo.push((start + half, count - half));
                todo.push((start, half));
            }
            Err(PollError::Exception(code)) => {
                silent = 0;
                found.push((start, Found::Refused(code)));
            }
            Err(e) => {
                silent += 1;
                eprintln!(
                    "{} {start}-{}: {e}",
                    scan.area,
                    u32::from(start) + u32::from(count) - 1
                );
                if silent >= SILENT_LIMIT {
                    eprintln!(
                        "{SILENT_LIMIT} failures in a row: stopping (is the device there, with unit id {}?)",
                        scan.unit
                    );
                    break;
                }
            }
        }
    }
    found.sort_by_key(|(a, _)| *a);
    print!("{}", report(scan.area, &found));
    if found.iter().any(|(_, f)| !matches!(f, Found::Refused(_))) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report(area: Area, found: &[(u16, Found)]) -> String {
    let mut out = String::new();
    let register = |a: u16| {
        found
            .binary_search_by_key(&a, |(x, _)| *x)
            .ok()
            .and_then(|i| match found[i].1 {
                Found::Register(r) => Some(r),
                _ => None,
            })
    };
    if area.is_bit() {
        out.push_str("ADDRESS  VALUE\n");
    } else {
        out.push_str(&format!(
            "{:<8} {:<6} {:>6} {:>7}   f32 of this and the next register: {}\n",
            "ADDRESS",
            "HEX",
            "U16",
            "I16",
            WordOrder::ALL
                .map(|o| format!("{:>12}", o.as_str()))
                .join(" ")
        ));
    }
    let mut refused: Vec<(u16, u16, u8)> = Vec::new();
    for (addr, f) in found {
        match f {
            Found::Refused(code) => match refused.last_mut() {
                Some((_, end, c)) if *c == *code && u32::from(*end) + 1 == u32::from(*addr) => {
                    *end = *addr
                }
                _ => refused.push((*addr, *addr, *code)),
            },
            Found::Bit(b) => out.push_str(&format!("{addr:<8} {}\n", u8::from(*b))),
            Found::Register(r) => {
                let pair = addr
                    .checked_add(1)
                    .and_then(register)
                    .map(|next| {
                        decode_all_orders_f32([*r, next])
                            .map(|x| format!("{:>12}", format_f32(x)))
                            .join(" ")
                    })
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{addr:<8} {r:04X}   {r:>6} {:>7}   {pair}\n",
                    *r as i16
                ));
            }
        }
    }
    let answered = found
        .iter()
        .filter(|(_, f)| !matches!(f, Found::Refused(_)))
        .count();
    out.push_str(&format!("{answered} address(es) answered\n"));
    for (a, b, code) in refused {
        out.push_str(&format!(
            "refused {a}-{b}: exception {code} ({})\n",
            crate::modbus::transport::exception_name(code)
        ));
    }
    out
}

fn format_f32(x: f32) -> String {
    if x.is_finite() && (x == 0.0 || (1e-4..1e7).contains(&x.abs())) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

//! `[[buses]]` and `[[devices]]`: serial lines, connections, polling
//! settings, and the device's tags inline or from a CSV tag map.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::Value;
use sha2::Sha256;

use super::fields::{check_name, duration_in, int_in, required};
use super::{tags, writes};
use crate::config::csv_tags;
use crate::config::raw::{RawBus, RawDevice, RawTag};
use crate::config::report::{Ctx, TagSite};
use crate::config::{Bus, Connection, Device, Parity, device_defaults};
use crate::tag::WordOrder;

/// One `[[buses]]` element; `None` when it has no name or port.
pub(super) fn bus(ctx: &mut Ctx, field: &str, raw: RawBus) -> Option<Bus> {
    let name = required(ctx, &format!("{field}.name"), raw.name, "bus name")?;
    check_name(ctx, &format!("{field}.name"), "bus", &name);
    let port = required(
        ctx,
        &format!("{field}.port"),
        raw.port,
        "serial port (e.g. \"/dev/ttyUSB0\")",
    )?;
    let baud = int_in(
        ctx,
        &format!("{field}.baud"),
        raw.baud,
        19_200,
        300..=4_000_000,
        "baud rate",
    ) as u32;
    let data_bits = int_in(
        ctx,
        &format!("{field}.data_bits"),
        raw.data_bits,
        8,
        5..=8,
        "data bits",
    ) as u8;
    if data_bits != 8 {
        ctx.warn(
            &format!("{field}.data_bits"),
            format!("Modbus RTU uses 8 data bits; {data_bits} suits Modbus ASCII, which fieldgate does not speak"),
        );
    }
    let parity = match raw
        .parity
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("even") | Some("e") => Parity::Even,
        Some("none") | Some("n") => Parity::None,
        Some("odd") | Some("o") => Parity::Odd,
        Some(other) => {
            ctx.error(
                &format!("{field}.parity"),
                format!("parity \"{other}\" is not \"none\", \"even\" or \"odd\""),
            );
            Parity::Even
        }
    };
    let stop_bits = int_in(
        ctx,
        &format!("{field}.stop_bits"),
        raw.stop_bits,
        1,
        1..=2,
        "stop bits",
    ) as u8;
    if parity == Parity::None && stop_bits == 1 && raw.stop_bits.is_some() {
        ctx.warn(
            &format!("{field}.stop_bits"),
            "the Modbus serial specification asks for 2 stop bits when there is no parity; check the devices' setting",
        );
    }
    Some(Bus {
        name,
        port,
        baud,
        data_bits,
        parity,
        stop_bits,
        frame_gap: raw.frame_gap.map(|d| d.0),
    })
}

/// Parses `host:port`, `host` (port 502), `[v6]:port` or a bare v6 address.
fn parse_endpoint(text: &str) -> Result<(String, u16), String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty address; write host:port, e.g. \"192.168.1.20:502\"".into());
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok((a.ip().to_string(), a.port()));
    }
    if t.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((t.to_string(), 502));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("\"{t}\": port \"{port}\" is not a number from 1 to 65535")
            })?;
            if host.is_empty() {
                return Err(format!("\"{t}\" has no host"));
            }
            Ok((host.to_string(), port))
        }
        Some(_) => Err(format!(
            "\"{t}\" is not host:port; write IPv6 addresses as [addr]:port"
        )),
        None => Ok((t.to_string(), 502)),
    }
}

/// The tags written at `field`: the rows of a CSV tag map (`tags =
/// "tags/pump1.csv"`, its path returned too) or an inline array, each
/// with where it was written.
pub(super) fn tag_sites(
    ctx: &mut Ctx,
    field: &str,
    value: Value,
    hasher: &mut Sha256,
) -> (Vec<(TagSite, RawTag)>, Option<PathBuf>) {
    match value {
        Value::String(_, file) => {
            let path = ctx.path(&file);
            let rows = csv_tags::read(ctx, field, &path, hasher);
            (rows, Some(path))
        }
        Value::Array(_, items) => {
            let sites = items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let f = format!("{field}[{i}]");
                    let raw = ctx.read::<RawTag>(&f, Some(v))?;
                    Some((TagSite::Toml(f), raw))
                })
                .collect();
            (sites, None)
        }
        _ => {
            ctx.error(
                field,
                "tags must be a list of tables or the path of a CSV file (tags = \"tags/pump1.csv\")",
            );
            (Vec::new(), None)
        }
    }
}

/// One `[[devices]]` element with its tags (a CSV tag map goes into
/// `hasher`); `None` when it has no name or no usable connection. Whether
/// its bus exists is checked across sections, by validate.
pub(super) fn device(
    ctx: &mut Ctx,
    field: &str,
    raw: RawDevice,
    hasher: &mut Sha256,
    inherited: Vec<(TagSite, RawTag)>,
    inherited_file: Option<PathBuf>,
) -> Option<Device> {
    let name = required(ctx, &format!("{field}.name"), raw.name, "device name")?;
    check_name(ctx, &format!("{field}.name"), "device", &name);

    let given = [
        raw.tcp.is_some(),
        raw.bus.is_some(),
        raw.rtu_over_tcp.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    let connection = if given != 1 {
        ctx.error(
            field,
            format!(
                "device \"{name}\" needs exactly one of `tcp = \"host:port\"`, `bus = \"name\"` (RTU) or `rtu_over_tcp = \"host:port\"`"
            ),
        );
        None
    } else if let Some(bus) = raw.bus {
        Some(Connection::Rtu { bus })
    } else {
        let (key, text, rtu) = match (raw.tcp, raw.rtu_over_tcp) {
            (Some(t), _) => ("tcp", t, false),
            (None, Some(t)) => ("rtu_over_tcp", t, true),
            (None, None) => unreachable!("exactly one connection kind was given"),
        };
        match parse_endpoint(&text) {
            Ok((host, port)) if rtu => Some(Connection::RtuOverTcp { host, port }),
            Ok((host, port)) => Some(Connection::Tcp { host, port }),
            Err(e) => {
                ctx.error(&format!("{field}.{key}"), e);
                None
            }
        }
    };
    let serial = matches!(
        connection,
        Some(Connection::Rtu { .. }) | Some(Connection::RtuOverTcp { .. })
    );
    let unit_range = if serial { 1..=247 } else { 0..=255 };
    let unit = int_in(
        ctx,
        &format!("{field}.unit"),
        raw.unit,
        1,
        unit_range,
        "unit id",
    ) as u8;

    let poll_interval = raw
        .poll_interval
        .map(|d| d.0)
        .unwrap_or(device_defaults::POLL_INTERVAL);
    if poll_interval.is_zero() {
        ctx.warn(
            &format!("{field}.poll_interval"),
            "poll_interval 0 polls back to back, as fast as the device answers (meant for benchmarks)",
        );
    } else if poll_interval < Duration::from_millis(10) {
        ctx.error(
            &format!("{field}.poll_interval"),
            format!(
                "poll_interval {} is below 10ms; no Modbus device answers that fast (use \"0s\" to poll back to back)",
                humantime::format_duration(poll_interval)
            ),
        );
    }
    let default_timeout = if serial {
        device_defaults::TIMEOUT_SERIAL
    } else {
        device_defaults::TIMEOUT_TCP
    };
    let timeout = duration_in(
        ctx,
        &format!("{field}.timeout"),
        raw.timeout,
        default_timeout,
        Duration::from_millis(10),
        Duration::from_secs(60),
    );
    let retries = int_in(
        ctx,
        &format!("{field}.retries"),
        raw.retries,
        i64::from(device_defaults::RETRIES),
        0..=10,
        "retries",
    ) as u32;
    let max_registers = int_in(
        ctx,
        &format!("{field}.max_registers"),
        raw.max_registers,
        i64::from(device_defaults::MAX_REGISTERS),
        1..=125,
        "max_registers",
    ) as u16;
    let max_bits = int_in(
        ctx,
        &format!("{field}.max_bits"),
        raw.max_bits,
        i64::from(device_defaults::MAX_BITS),
        1..=2000,
        "max_bits",
    ) as u16;
    let max_gap = int_in(
        ctx,
        &format!("{field}.max_gap"),
        raw.max_gap,
        i64::from(device_defaults::MAX_GAP),
        0..=2000,
        "max_gap",
    ) as u16;
    let word_order = match raw.word_order {
        None => WordOrder::Abcd,
        Some(w) => WordOrder::parse(&w).unwrap_or_else(|| {
            ctx.error(
                &format!("{field}.word_order"),
                format!("word order \"{w}\" is not one of ABCD, CDAB, BADC, DCBA"),
            );
            WordOrder::Abcd
        }),
    };
    let max_silence = duration_in(
        ctx,
        &format!("{field}.max_silence"),
        raw.max_silence,
        device_defaults::MAX_SILENCE,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );
    let reprobe = duration_in(
        ctx,
        &format!("{field}.reprobe"),
        raw.reprobe,
        device_defaults::REPROBE,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );

    let write_functions = writes::functions(ctx, field, raw.write_functions);

    let tags_field = format!("{field}.tags");
    let (own, own_file) = match raw.tags {
        None => (Vec::new(), None),
        Some(v) => tag_sites(ctx, &tags_field, v, hasher),
    };
    let tags_file = own_file.or(inherited_file);
    if own.is_empty() && inherited.is_empty() && tags_file.is_none() {
        ctx.warn(
            field,
            format!("device \"{name}\" has no tags; it will be polled for nothing"),
        );
    }
    // A device's own tag replaces its template's tag of the same name
    // (another address on one pump); the others come after the template's.
    let own_names: Vec<Option<String>> = own.iter().map(|(_, t)| t.name.clone()).collect();
    let sites: Vec<(TagSite, RawTag)> = inherited
        .into_iter()
        .filter(|(_, t)| t.name.is_none() || !own_names.contains(&t.name))
        .chain(own)
        .collect();
    let tags = sites
        .into_iter()
        .filter_map(|(site, raw)| tags::tag(ctx, &site, raw, word_order).map(|t| (site, t)))
        .collect::<Vec<_>>();
    tags::check_map(ctx, &name, &tags, max_registers, max_bits);
    writes::check_codes(ctx, &name, &tags, &write_functions);

    Some(Device {
        name,
        connection: connection?,
        unit,
        poll_interval,
        timeout,
        retries,
        max_registers,
        max_bits,
        max_gap,
        word_order,
        max_silence,
        reprobe,
        asset: raw.asset,
        location: raw.location,
        tags: tags.into_iter().map(|(_, t)| t).collect(),
        tags_file,
        write_functions,
        write_during_poll: raw.write_during_poll.unwrap_or(false),
        template: raw.template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("10.0.0.5:502"), Ok(("10.0.0.5".into(), 502)));
        assert_eq!(parse_endpoint("plc1"), Ok(("plc1".into(), 502)));
        assert_eq!(parse_endpoint("plc1:5020"), Ok(("plc1".into(), 5020)));
        assert_eq!(parse_endpoint("[::1]:5020"), Ok(("::1".into(), 5020)));
        assert_eq!(parse_endpoint("::1"), Ok(("::1".into(), 502)));
        assert!(parse_endpoint("plc1:http").is_err());
        assert!(parse_endpoint(":502").is_err());
    }
}

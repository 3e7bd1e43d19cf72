//! The simulator against a plain tokio-modbus client, on loopback and on
//! an in-process pty. Every loop is bounded and every request is wrapped
//! in a timeout (tokio-modbus has none).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldgate::sim::{Scenario, Simulator};
use tokio::time::timeout;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_serial::SerialPortBuilderExt as _;

use crate::common::sim::start;

/// Long enough for any loopback answer, short enough for timeout tests.
const ANSWER: Duration = Duration::from_millis(1000);
/// How long a test waits to conclude "no answer".
const SILENCE: Duration = Duration::from_millis(300);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn tcp(sim: &Simulator, device: &str, unit: u8) -> Res<Context> {
    let addr = sim.addr(device).ok_or("no address")?;
    Ok(timeout(ANSWER, tcp::connect_slave(addr, Slave(unit))).await??)
}

/// Reads holding or input registers; `Ok(Err(code))` is an exception.
async fn read(
    ctx: &mut Context,
    input: bool,
    addr: u16,
    n: u16,
) -> Res<Result<Vec<u16>, ExceptionCode>> {
    let call = async {
        if input {
            ctx.read_input_registers(addr, n).await
        } else {
            ctx.read_holding_registers(addr, n).await
        }
    };
    Ok(timeout(ANSWER, call).await??)
}

fn f32_of(r: &[u16]) -> f32 {
    f32::from_bits(u32::from(r[0]) << 16 | u32::from(r[1]))
}

const PUMP: &str = r#"
    seed = 11
    [[devices]]
    name = "pump1"
    unit = 1
    listen = "127.0.0.1:0"
    model = "pump"
    holes = ["50-59"]
    points = [
        { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
        { signal = "vibration", area = "input", address = 2, type = "f32", word_order = "CDAB" },
        { signal = "current", area = "input", address = 4, type = "u16", scale = 0.01 },
        { signal = "pressure", area = "holding", address = 0, type = "f32" },
        { signal = "runtime_hours", area = "holding", address = 2, type = "u32" },
        { name = "tag", value = "PUMP-01", area = "holding", address = 4, type = "string", length = 4 },
        { name = "setpoint", value = 42, area = "holding", address = 8, type = "u16" },
        { signal = "running", area = "holding", address = 9, type = "bit", bit = 0 },
        { signal = "fault", area = "holding", address = 9, type = "bit", bit = 1 },
        { signal = "clock_ms", area = "input", address = 10, type = "u64" },
        { signal = "running", area = "coil", address = 0, type = "bool" },
        { signal = "fault", area = "discrete", address = 0, type = "bool" },
        { name = "spare", value = 0, area = "holding", address = 49, type = "u16" },
        { name = "after", value = 0, area = "holding", address = 60, type = "u16" },
    ]
    [[devices]]
    name = "pump2"
    unit = 2
    listen = "127.0.0.1:0"
    model = "pump"
    points = [{ signal = "pressure", area = "holding", address = 0, type = "f32" }]
"#;

#[tokio::test]
async fn tcp_serves_typed_points_near_setpoints() -> Res<()> {
    let sim = start(PUMP).await;
    let mut ctx = tcp(&sim, "pump1", 1).await?;

    let ir = read(&mut ctx, true, 0, 5).await??;
    let temp = f32_of(&ir[0..2]);
    assert!((temp - 55.0).abs() < 2.0, "bearing temp {temp}");
    let vib = f32_of(&[ir[3], ir[2]]);
    assert!((vib - 2.5).abs() < 0.5, "vibration {vib}");
    let current = f64::from(ir[4]) * 0.01;
    assert!((current - 12.0).abs() < 1.0, "current {current}");

    let hr = read(&mut ctx, false, 0, 10).await??;
    let pressure = f32_of(&hr[0..2]);
    assert!((pressure - 4.2).abs() < 0.2, "pressure {pressure}");
    let runtime = u32::from(hr[2]) << 16 | u32::from(hr[3]);
    assert!((1_000..20_001).contains(&runtime), "runtime {runtime}");
    let text: Vec<u8> = hr[4..8].iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_eq!(&text[..7], b"PUMP-01");
    assert_eq!(hr[8], 42);
    assert_eq!(hr[9], 0b01, "running bit set, fault bit clear");

    let clock = read(&mut ctx, true, 10, 4).await??;
    let ms = clock.iter().fold(0u64, |acc, w| acc << 16 | u64::from(*w));
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    assert!(now.abs_diff(ms) < 2_000, "clock {ms} vs {now}");

    let coils = timeout(ANSWER, ctx.read_coils(0, 1)).await???;
    assert_eq!(coils, [true]);
    let di = timeout(ANSWER, ctx.read_discrete_inputs(0, 1)).await???;
    assert_eq!(di, [false]);

    // The model's own view agrees with what was served.
    let model = sim.value("pump1", "pressure").ok_or("no pressure")?;
    assert!((model - 4.2).abs() < 0.2);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn holes_unserved_addresses_and_unknown_units() -> Res<()> {
    let sim = start(PUMP).await;
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    assert!(read(&mut ctx, false, 49, 1).await?.is_ok());
    assert!(read(&mut ctx, false, 60, 1).await?.is_ok());
    assert_eq!(
        read(&mut ctx, false, 49, 2).await?,
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        read(&mut ctx, false, 55, 1).await?,
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        read(&mut ctx, false, 100, 1).await?,
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        read(&mut ctx, true, 0, 126).await?,
        Err(ExceptionCode::IllegalDataValue)
    );

    // A unit id nobody serves on this listener: exception 0x0B on TCP.
    ctx.set_slave(Slave(9));
    assert_eq!(
        read(&mut ctx, false, 0, 2).await?,
        Err(ExceptionCode::GatewayTargetDevice)
    );
    // The same connection reaches the other unit on the listener.
    ctx.set_slave(Slave(2));
    assert!(read(&mut ctx, false, 0, 2).await?.is_ok());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn writes_update_the_image() -> Res<()> {
    let sim = start(PUMP).await;
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    timeout(ANSWER, ctx.write_single_register(8, 1234)).await???;
    timeout(ANSWER, ctx.write_multiple_registers(49, &[7])).await???;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        read(&mut ctx, false, 8, 1).await??,
        [1234],
        "constant points keep writes"
    );
    assert_eq!(read(&mut ctx, false, 49, 1).await??, [7]);
    let w = timeout(ANSWER, ctx.write_single_register(55, 1)).await??;
    assert_eq!(w, Err(ExceptionCode::IllegalDataAddress));
    timeout(ANSWER, ctx.write_single_coil(0, false)).await???;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn set_pins_values_exactly() -> Res<()> {
    let sim = start(PUMP).await;
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    sim.set("pump1", "pressure", 6.25)?;
    sim.set("pump1", "setpoint", 99.0)?;
    sim.set("pump1", "input:0", 70.5)?;
    let hr = read(&mut ctx, false, 0, 9).await??;
    assert_eq!(f32_of(&hr[0..2]), 6.25);
    assert_eq!(hr[8], 99);
    assert_eq!(f32_of(&read(&mut ctx, true, 0, 2).await??), 70.5);
    sim.release("pump1", "pressure")?;
    assert!(sim.set("pump1", "nothing", 1.0).is_err());
    assert!(sim.set("nobody", "pressure", 1.0).is_err());
    assert!(sim.set("pump1", "clock_ms", 1.0).is_err());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn offline_times_out_and_online_restores() -> Res<()> {
    let sim = start(PUMP).await;
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    assert!(read(&mut ctx, false, 0, 2).await?.is_ok());

    sim.set_offline("pump1", true)?;
    let silent = timeout(SILENCE, ctx.read_holding_registers(0, 2)).await;
    assert!(silent.is_err(), "expected a timeout, got {silent:?}");
    // pump2 shares the listener, so it still answers.
    let mut other = tcp(&sim, "pump2", 2).await?;
    assert!(read(&mut other, false, 0, 2).await?.is_ok());

    sim.set_offline("pump1", false)?;
    // After a timeout the old context is out of step: drop it, reconnect.
    drop(ctx);
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    assert!(read(&mut ctx, false, 0, 2).await?.is_ok());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_listener_whose_devices_are_all_offline_closes() -> Res<()> {
    let sim = start(
        r#"
        [[devices]]
        name = "solo"
        unit = 1
        listen = "127.0.0.1:0"
        registers = 10
    "#,
    )
    .await;
    let mut ctx = tcp(&sim, "solo", 1).await?;
    assert!(read(&mut ctx, false, 0, 10).await?.is_ok());
    sim.set_offline("solo", true)?;
    // The open connection is closed under the client: an error, fast.
    let r = timeout(ANSWER, ctx.read_holding_registers(0, 1)).await?;
    assert!(r.is_err(), "expected a transport error, got {r:?}");
    // New connections are closed straight away.
    if let Ok(mut fresh) = tcp(&sim, "solo", 1).await {
        let r = timeout(ANSWER, fresh.read_holding_registers(0, 1)).await?;
        assert!(r.is_err(), "expected a transport error, got {r:?}");
    }
    sim.set_offline("solo", false)?;
    let mut ctx = tcp(&sim, "solo", 1).await?;
    assert!(read(&mut ctx, false, 0, 10).await?.is_ok());
    sim.shutdown().await;
    Ok(())
}

/// On paused time: the script's clock is tokio's, and the client and the
/// simulator share this one thread over loopback, so the clock moves only
/// when both wait, and the checks guarded by `sim.elapsed()` always run.
#[tokio::test(start_paused = true)]
async fn scripted_events_ramp_and_raise_exceptions() -> Res<()> {
    let sim = start(
        r#"
        seed = 5
        tick = "50ms"
        [[devices]]
        name = "p"
        unit = 1
        listen = "127.0.0.1:0"
        model = "pump"
        points = [{ signal = "pressure", area = "holding", address = 0, type = "f32" }]
        [[devices]]
        name = "q"
        unit = 2
        listen = "127.0.0.1:0"
        registers = 4
        [[events]]
        at = "300ms"
        device = "p"
        signal = "pressure"
        ramp_to = 8.0
        over = "200ms"
        [[events]]
        at = "300ms"
        device = "q"
        exception = 4
        for = "400ms"
    "#,
    )
    .await;
    let mut p = tcp(&sim, "p", 1).await?;
    let mut q = tcp(&sim, "q", 2).await?;
    let before = f32_of(&read(&mut p, false, 0, 2).await??);
    if sim.elapsed() < Duration::from_millis(250) {
        assert!((before - 4.2).abs() < 0.2, "before the event: {before}");
        assert!(read(&mut q, false, 0, 4).await?.is_ok());
    }
    tokio::time::sleep(Duration::from_millis(600).saturating_sub(sim.elapsed())).await;
    let after = f32_of(&read(&mut p, false, 0, 2).await??);
    assert!((after - 8.0).abs() < 0.2, "after the ramp: {after}");
    if sim.elapsed() < Duration::from_millis(650) {
        assert_eq!(
            read(&mut q, false, 0, 4).await?,
            Err(ExceptionCode::ServerDeviceFailure)
        );
    }
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(sim.elapsed())).await;
    assert!(
        read(&mut q, false, 0, 4).await?.is_ok(),
        "exception window over"
    );
    // Still hovering at the new value, with noise.
    let later = f32_of(&read(&mut p, false, 0, 2).await??);
    assert!((later - 8.0).abs() < 0.2, "hovering: {later}");
    sim.shutdown().await;
    Ok(())
}

async fn open_pty(path: &str, unit: u8) -> Res<Context> {
    let port = tokio_serial::new(path, 19_200).open_native_async()?;
    Ok(rtu::attach_slave(port, Slave(unit)))
}

#[tokio::test]
async fn two_units_on_one_rtu_pty_bus() -> Res<()> {
    let sim = start(
        r#"
        [[devices]]
        name = "a"
        unit = 1
        serial = "pty"
        model = "pump"
        points = [{ signal = "pressure", area = "holding", address = 0, type = "f32" }]
        [[devices]]
        name = "b"
        unit = 2
        serial = "pty"
        model = "motor"
        points = [{ signal = "current", area = "input", address = 0, type = "f32" }]
        [[devices]]
        name = "c"
        unit = 3
        serial = "pty"
        registers = 2
    "#,
    )
    .await;
    let path = sim.serial_path("a").ok_or("no pty path")?;
    assert_eq!(
        sim.serial_path("b").as_deref(),
        Some(path.as_str()),
        "one bus"
    );
    let mut bus = open_pty(&path, 1).await?;
    let pressure = f32_of(&read(&mut bus, false, 0, 2).await??);
    assert!((pressure - 4.2).abs() < 0.2, "{pressure}");
    bus.set_slave(Slave(2));
    let current = f32_of(&read(&mut bus, true, 0, 2).await??);
    assert!((current - 18.0).abs() < 1.0, "{current}");
    bus.set_slave(Slave(1));
    assert_eq!(
        read(&mut bus, false, 5, 1).await?,
        Err(ExceptionCode::IllegalDataAddress)
    );

    // A silent device on the same bus: no answer. So is an unknown unit.
    sim.set_offline("c", true)?;
    bus.set_slave(Slave(3));
    assert!(
        timeout(SILENCE, bus.read_holding_registers(0, 2))
            .await
            .is_err()
    );
    // After a timeout an RTU context may hand out stale data: reopen.
    drop(bus);
    let mut bus = open_pty(&path, 9).await?;
    assert!(
        timeout(SILENCE, bus.read_holding_registers(0, 2))
            .await
            .is_err()
    );
    drop(bus);
    let mut bus = open_pty(&path, 2).await?;
    assert!(
        read(&mut bus, true, 0, 2).await?.is_ok(),
        "the bus still works"
    );
    sim.set_offline("c", false)?;
    bus.set_slave(Slave(3));
    assert!(read(&mut bus, false, 0, 2).await?.is_ok());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rtu_over_tcp() -> Res<()> {
    let sim = start(
        r#"
        [[devices]]
        name = "a"
        unit = 4
        rtu_over_tcp = "127.0.0.1:0"
        registers = 10
        points = [{ value = true, area = "coil", address = 0, type = "bool" }]
    "#,
    )
    .await;
    let addr = sim.addr("a").ok_or("no address")?;
    let stream = timeout(ANSWER, tokio::net::TcpStream::connect(addr)).await??;
    let mut ctx = rtu::attach_slave(stream, Slave(4));
    assert_eq!(read(&mut ctx, false, 0, 10).await??.len(), 10);
    assert_eq!(timeout(ANSWER, ctx.read_coils(0, 1)).await???, [true]);
    timeout(ANSWER, ctx.write_multiple_registers(2, &[5, 6])).await???;
    assert_eq!(
        read(&mut ctx, false, 10, 1).await?,
        Err(ExceptionCode::IllegalDataAddress)
    );
    ctx.set_slave(Slave(5));
    assert!(
        timeout(SILENCE, ctx.read_holding_registers(0, 1))
            .await
            .is_err()
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_the_listeners() -> Res<()> {
    let sim = start(PUMP).await;
    let addr = sim.addr("pump1").ok_or("no address")?;
    let mut ctx = tcp(&sim, "pump1", 1).await?;
    timeout(Duration::from_secs(5), sim.shutdown()).await?;
    let r = timeout(ANSWER, ctx.read_holding_registers(0, 1)).await;
    assert!(
        !matches!(r, Ok(Ok(Ok(_)))),
        "answered after shutdown: {r:?}"
    );
    let again = timeout(ANSWER, tokio::net::TcpStream::connect(addr)).await?;
    assert!(again.is_err(), "still listening");
    Ok(())
}

#[tokio::test]
async fn example_scenarios_load() -> Res<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sim");
    for name in ["plant.toml", "load.toml"] {
        let s = Scenario::load(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        assert!(!s.devices.is_empty());
    }
    Ok(())
}

//! Poll rate against the built-in simulator on loopback: fieldgate's
//! pollers beside a bare tokio-modbus client loop reading the same
//! registers from the same simulator. Figures go in BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example poll_rate -- [DEVICES] [REGISTERS] [SECONDS]
//! ```
//! Defaults: 1 device, 125 registers, 5 seconds. Each device gets its own
//! TCP listener, so both sides use one connection per device.
//!
//! This is a micro-benchmark of one stage: the pollers in-process, up to
//! the channel to the pipeline (no store, no MQTT). The authoritative
//! end-to-end figure is W2 of the load harness (`fieldgate-load W2`,
//! BENCHMARKS.md), which runs the gateway as its own process and counts
//! what reaches the broker; use this one to see the poller's share.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fieldgate::config;
use fieldgate::modbus;
use fieldgate::reading::Batch;
use fieldgate::shutdown;
use fieldgate::sim::{Scenario, Simulator};
use tokio_modbus::client::Reader;
use tokio_modbus::prelude::Slave;

fn free_port() -> u16 {
    // ok: a benchmark on loopback; failing to bind is a broken machine.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let devices = args.first().copied().unwrap_or(1) as usize;
    let registers = args.get(1).copied().unwrap_or(125) as u16;
    let seconds = args.get(2).copied().unwrap_or(5);
    let run_for = Duration::from_secs(seconds);

    let mut scenario = Scenario::generic(devices, registers, "127.0.0.1:0".parse().unwrap());
    for d in &mut scenario.devices {
        d.listen = Some(format!("127.0.0.1:{}", free_port()));
    }
    let sim = Simulator::start(scenario).await.expect("simulator starts");
    let addrs: Vec<(u8, SocketAddr)> = (1..=devices)
        .map(|i| {
            (
                i as u8,
                sim.addr(&format!("dev{i}")).expect("device listens"),
            )
        })
        .collect();

    // 1. Bare tokio-modbus loop: one client per device, reading the
    //    registers in blocks of 125, as fast as the simulator answers.
    let counted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (unit, addr) in addrs.clone() {
        let counted = counted.clone();
        tasks.push(tokio::spawn(async move {
            let mut ctx = tokio_modbus::client::tcp::connect_slave(addr, Slave(unit))
                .await
                .expect("connect");
            while start.elapsed() < run_for {
                let mut at = 0u16;
                while at < registers {
                    let n = (registers - at).min(125);
                    if let Ok(Ok(regs)) = ctx.read_holding_registers(at, n).await {
                        counted.fetch_add(regs.len() as u64, Ordering::Relaxed);
                    }
                    at += n;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let bare = counted.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();

    // 2. fieldgate: the same registers as u16 tags, polled back to back.
    let mut text = String::new();
    for (unit, addr) in &addrs {
        text.push_str(&format!(
            "[[devices]]\nname = \"dev{unit}\"\ntcp = \"{addr}\"\nunit = {unit}\npoll_interval = \"0s\"\ntags = [\n"
        ));
        for r in 0..registers {
            text.push_str(&format!(
                "  {{ name = \"r{r}\", area = \"holding\", address = {r} }},\n"
            ));
        }
        text.push_str("]\n");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).expect("write config");
    let config = config::load_with_env(&path, &[])
        .expect("bench config loads")
        .config;
    let (trigger, listener) = shutdown::channel();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1024);
    let start = Instant::now();
    let pollers = modbus::spawn_pollers(&config, tx, &listener);
    // The consumer is a worker task, as the next stage is in the gateway.
    let consumer = tokio::spawn(async move {
        let mut values = 0u64;
        let mut batches = Vec::with_capacity(256);
        while rx.recv_many(&mut batches, 256).await > 0 {
            if start.elapsed() < run_for {
                values += batches.iter().map(|b| b.good_count() as u64).sum::<u64>();
            }
            batches.clear();
        }
        values
    });
    tokio::time::sleep(run_for).await;
    let elapsed = start.elapsed().as_secs_f64();
    trigger.trigger();
    for p in pollers {
        let _ = p.await;
    }
    let values = consumer.await.unwrap_or(0);
    let gateway = values as f64 / elapsed;
    println!(
        "poll_rate devices={devices} registers={registers} seconds={seconds}: bare tokio-modbus {bare:.0} registers/s, fieldgate {gateway:.0} registers/s, ratio {:.2}",
        gateway / bare
    );
    sim.shutdown().await;
}

//! How fast the built-in simulator answers: reads of 125 holding registers
//! (the protocol's maximum for function code 3) over loopback TCP, by one
//! client and by four at once, each on its own unit of one listener.
//!
//! The simulator stands in for the plant in the load harness and the
//! integration tests, so it must answer far faster than any gateway polls;
//! this tells whether it could be the bottleneck. Criterion reports
//! elements/s: reads/s, summed over the clients (×125 for registers/s).
//!
//! The scenario is the load harness's generic one (200 devices of 125
//! registers, refreshed every tick), so the figure includes the image
//! refresh running beside the answers. Loopback only; every read is
//! bounded by a 1 s timeout, and the clients connect once, outside the
//! timing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fieldgate::sim::{Scenario, Simulator};
use tokio::time::timeout;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

/// Registers per read.
const REGISTERS: u16 = 125;

/// Longest a loopback read may take before the bench gives up.
const ANSWER: Duration = Duration::from_secs(1);

/// Connects one client per unit `1..=clients`.
async fn connect(sim: &Simulator, clients: usize) -> Vec<Context> {
    let mut contexts = Vec::new();
    for c in 1..=clients {
        let addr = sim.addr(&format!("dev{c}")).expect("a generic device");
        let unit = u8::try_from(c).expect("at most 247 clients");
        let ctx = timeout(ANSWER, tcp::connect_slave(addr, Slave(unit)))
            .await
            .expect("connect within 1 s")
            .expect("connect");
        contexts.push(ctx);
    }
    contexts
}

/// One full read; panics on anything but 125 registers within 1 s.
async fn read(ctx: &mut Context) {
    match timeout(ANSWER, ctx.read_holding_registers(0, REGISTERS)).await {
        Ok(Ok(Ok(r))) if r.len() == usize::from(REGISTERS) => {}
        other => panic!("read of {REGISTERS} registers: {other:?}"),
    }
}

/// `reads` reads shared out between the clients, all at once; returns the
/// wall time until the last one ends, and the clients.
async fn run(contexts: Vec<Context>, reads: u64) -> (Duration, Vec<Context>) {
    let clients = contexts.len() as u64;
    let start = Instant::now();
    let tasks: Vec<_> = contexts
        .into_iter()
        .enumerate()
        .map(|(i, mut ctx)| {
            // The first clients take the remainder.
            let n = reads / clients + u64::from((i as u64) < reads % clients);
            tokio::spawn(async move {
                for _ in 0..n {
                    read(&mut ctx).await;
                }
                ctx
            })
        })
        .collect();
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.expect("a client task"));
    }
    (start.elapsed(), back)
}

fn read_rate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = rt
        .block_on(Simulator::start(Scenario::generic(200, REGISTERS, listen)))
        .expect("start the simulator");

    let mut group = c.benchmark_group("sim_read_125_registers");
    // One element is one read of 125 registers.
    group.throughput(Throughput::Elements(1));
    for clients in [1usize, 4] {
        let mut contexts = Some(rt.block_on(connect(&sim, clients)));
        group.bench_function(format!("{clients}_clients"), |b| {
            b.iter_custom(|reads| {
                let ctx = contexts.take().expect("clients are back");
                let (took, ctx) = rt.block_on(run(ctx, reads));
                contexts = Some(ctx);
                took
            });
        });
    }
    group.finish();
    rt.block_on(sim.shutdown());
}

criterion_group!(benches, read_rate);
criterion_main!(benches);

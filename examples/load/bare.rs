//! The references fieldgate is measured against: what the simulator and the
//! broker give a client that does nothing but ask.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio_modbus::client::Reader as _;
use tokio_modbus::prelude::Slave;

/// Registers per request, as fieldgate's default `max_registers`.
const MAX_REGISTERS: u16 = 125;

/// What a bare client loop got.
#[derive(Debug, Clone, Copy)]
pub struct BareModbus {
    /// Registers read per second.
    pub registers_per_s: f64,
    /// Requests answered per second.
    pub requests_per_s: f64,
}

/// A bare tokio-modbus loop: one connection per device in `targets`
/// (address, unit), each reading holding registers `0..registers` in
/// blocks of 125 back to back for `run_for`. No decoding, no timeout, no
/// hand-over: the most a client can get from the simulator.
pub async fn modbus_loop(
    targets: &[(SocketAddr, u8)],
    registers: u16,
    run_for: Duration,
) -> Result<BareModbus> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for &(addr, unit) in targets {
        let mut ctx = tokio_modbus::client::tcp::connect_slave(addr, Slave(unit))
            .await
            .with_context(|| format!("bare client: connecting to {addr}"))?;
        tasks.push(tokio::spawn(async move {
            let (mut regs, mut requests) = (0u64, 0u64);
            while start.elapsed() < run_for {
                let mut at = 0;
                while at < registers {
                    let n = (registers - at).min(MAX_REGISTERS);
                    if let Ok(Ok(r)) = ctx.read_holding_registers(at, n).await {
                        regs += r.len() as u64;
                        requests += 1;
                    }
                    at += n;
                }
            }
            (regs, requests)
        }));
    }
    let (mut regs, mut requests) = (0, 0);
    for t in tasks {
        let (r, q) = t.await.unwrap_or((0, 0));
        regs += r;
        requests += q;
    }
    let s = start.elapsed().as_secs_f64();
    Ok(BareModbus {
        registers_per_s: regs as f64 / s,
        requests_per_s: requests as f64 / s,
    })
}

/// A bare rumqttc publisher: `messages` messages of `size` bytes at QoS 1
/// to `topic`, with `inflight` unacknowledged at most (fieldgate's
/// `max_inflight`), as fast as the broker acknowledges. Returns the
/// seconds until the last PUBACK (bounded by `within`) and the PUBACKs.
pub async fn publisher(
    host: &str,
    port: u16,
    topic: &str,
    messages: u64,
    size: usize,
    inflight: u16,
    within: Duration,
) -> Result<(f64, u64)> {
    let mut options = MqttOptions::new(format!("fgload-bare-{}", std::process::id()), host, port);
    options.set_inflight(inflight);
    options.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let body = vec![b'x'; size.max(1)];
    let topic = topic.to_string();
    let start = Instant::now();
    let publishing = tokio::spawn(async move {
        for _ in 0..messages {
            if client
                .publish(topic.clone(), QoS::AtLeastOnce, false, body.clone())
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    let deadline = start + within;
    while acked < messages && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline.into(), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                eprintln!("bare publisher: {e}");
                break;
            }
            Err(_) => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Ok(client) = publishing.await {
        let _ = client.disconnect().await;
    }
    Ok((seconds, acked))
}

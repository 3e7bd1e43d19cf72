//! The pieces of a run: the simulator's scenario, fieldgate's config, the
//! two child processes, and what fieldgate's store says afterwards.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::procs::Proc;
use crate::sparkplug::{self, Mode};

/// The shape of the simulated fleet and of fieldgate's tags.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Number of devices (W1: 10, W4: 200).
    pub devices: usize,
    /// Holding registers each device serves.
    pub registers: u16,
    /// `u16` tags at holding 0, 1, … .
    pub u16_tags: u16,
    /// `f32` tags (ABCD) after the u16 ones, two registers each.
    pub f32_tags: u16,
    /// Also read the simulator's clock (a `u64` at input 0–3) as tag
    /// `clock_ms`, for latency.
    pub clock: bool,
    /// fieldgate's `poll_interval` ("1s", "0s").
    pub poll: String,
    /// `tcp`: one listener per device on its own loopback address
    /// (127.0.0.N), as separate PLCs would be; `pty`: RTU devices sharing
    /// one in-process pty bus of the simulator.
    pub transport: Transport,
}

/// How the fleet is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP, one listener per device.
    Tcp,
    /// Modbus RTU on one pty bus at 19200 baud, 8E1.
    Pty,
}

/// Baud rate of the W6 bus.
pub const BAUD: u32 = 19_200;

impl Fleet {
    /// Tag values in one poll of one device.
    pub fn tags_per_device(&self) -> u64 {
        u64::from(self.u16_tags) + u64::from(self.f32_tags) + u64::from(self.clock)
    }

    /// The simulator's scenario.
    pub fn scenario(&self) -> String {
        let mut s = String::from("seed = 1\n");
        for i in 1..=self.devices {
            let _ = write!(
                s,
                "\n[[devices]]\nname = \"dev{i}\"\nunit = {}\nregisters = {}\n",
                unit(i),
                self.registers
            );
            match self.transport {
                Transport::Tcp => {
                    let _ = writeln!(s, "listen = \"{}:0\"", loopback(i));
                }
                Transport::Pty => {
                    let _ = writeln!(s, "serial = \"pty\"\nbaud = {BAUD}\nparity = \"even\"");
                }
            }
            if self.clock {
                s.push_str(
                    "points = [{ signal = \"clock_ms\", area = \"input\", address = 0, type = \"u64\" }]\n",
                );
            }
        }
        s
    }

    /// The tag map as a CSV file (the same for every device): u16 tags at
    /// 40001…, f32 tags after them, the clock at 30001.
    pub fn tags_csv(&self) -> String {
        let mut s = String::from("name,address,type\n");
        for r in 0..self.u16_tags {
            let _ = writeln!(s, "r{r},{},u16", 40001 + u32::from(r));
        }
        for f in 0..self.f32_tags {
            let _ = writeln!(s, "f{f},{},f32", 40001 + u32::from(self.u16_tags + 2 * f));
        }
        if self.clock {
            s.push_str("clock_ms,30001,u64\n");
        }
        s
    }

    /// fieldgate's `[[devices]]` (and `[[buses]]`), reaching each device at
    /// `endpoints[name]` (a TCP address, or the pty's path). With `csv`,
    /// every device names that tag map file (next to the config) instead
    /// of listing its tags inline.
    pub fn devices_toml(
        &self,
        endpoints: &HashMap<String, String>,
        csv: Option<&str>,
    ) -> Result<String> {
        let mut s = String::new();
        if self.transport == Transport::Pty {
            let path = endpoints.values().next().context("no pty path")?;
            let _ = writeln!(
                s,
                "[[buses]]\nname = \"bus1\"\nport = \"{path}\"\nbaud = {BAUD}\nparity = \"even\"\n"
            );
        }
        for i in 1..=self.devices {
            let name = format!("dev{i}");
            let endpoint = endpoints
                .get(&name)
                .with_context(|| format!("the simulator did not report {name}"))?;
            let _ = write!(s, "[[devices]]\nname = \"{name}\"\n");
            match self.transport {
                Transport::Tcp => {
                    let _ = writeln!(s, "tcp = \"{endpoint}\"");
                }
                Transport::Pty => {
                    s.push_str("bus = \"bus1\"\n");
                }
            }
            let _ = writeln!(s, "unit = {}\npoll_interval = \"{}\"", unit(i), self.poll);
            if let Some(file) = csv {
                let _ = writeln!(s, "tags = \"{file}\"\n");
                continue;
            }
            s.push_str("tags = [\n");
            for r in 0..self.u16_tags {
                let _ = writeln!(
                    s,
                    "  {{ name = \"r{r}\", area = \"holding\", address = {r} }},"
                );
            }
            for f in 0..self.f32_tags {
                let _ = writeln!(
                    s,
                    "  {{ name = \"f{f}\", area = \"holding\", address = {}, type = \"f32\" }},",
                    self.u16_tags + 2 * f
                );
            }
            if self.clock {
                s.push_str(
                    "  { name = \"clock_ms\", area = \"input\", address = 0, type = \"u64\" },\n",
                );
            }
            s.push_str("]\n\n");
        }
        Ok(s)
    }
}

/// Unit id of device `i`: TCP devices each have their own listener, RTU
/// devices share the bus and need distinct ids 1–247.
fn unit(i: usize) -> usize {
    (i - 1) % 247 + 1
}

/// Device `i`'s loopback address: 127.0.0.1, 127.0.0.2, … (all of
/// 127.0.0.0/8 is loopback on Linux), so that each has a listener of its
/// own on a port the simulator picks.
fn loopback(i: usize) -> String {
    format!("127.0.{}.{}", i / 250, i % 250 + 1)
}

/// The simulator as a child process (`fieldgate sim`), and where each
/// device listens.
pub fn start_sim(
    fieldgate: &Path,
    dir: &Path,
    fleet: &Fleet,
) -> Result<(Proc, HashMap<String, String>)> {
    let path = dir.join("sim.toml");
    std::fs::write(&path, fleet.scenario())?;
    let mut command = Command::new(fieldgate);
    command
        .arg("sim")
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn("sim", command, &dir.join("sim.log"), true)?;
    let mut endpoints = HashMap::new();
    // "simulating dev1 on tcp 127.0.0.2:41234" / "... on serial /dev/pts/3",
    // then "running; Ctrl-C stops".
    sim.wait_line(Duration::from_secs(30), |line| {
        if let Some(rest) = line.strip_prefix("simulating ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some("on"), Some(_), Some(at)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                endpoints.insert(name.to_string(), at.to_string());
            }
        }
        line.starts_with("running").then_some(())
    })?;
    if endpoints.len() != fleet.devices {
        bail!(
            "the simulator reported {} of {} devices",
            endpoints.len(),
            fleet.devices
        );
    }
    Ok((sim, endpoints))
}

/// What fieldgate's config says beyond its devices.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `[gateway] id`: unique per run, so topics never mix.
    pub id: String,
    /// Broker address.
    pub mqtt_host: String,
    /// Broker port.
    pub mqtt_port: u16,
    /// `[http] listen` port (0 = off).
    pub http_port: u16,
    /// `[store] flush_interval`, when not the default.
    pub flush_interval: Option<String>,
    /// `[store] durability` ("full" is the default).
    pub durability: String,
    /// `[sparkplug]` (`--sparkplug`); the edge node's id is the gateway's.
    pub sparkplug: Mode,
}

/// The MQTT topic prefix of every run.
pub const PREFIX: &str = "fgload";
/// The site of every run.
pub const SITE: &str = "bench";

impl GatewayOptions {
    /// Topic filter of this gateway's messages.
    pub fn filter(&self) -> String {
        format!("{PREFIX}/{SITE}/{}/#", self.id)
    }

    /// The config file text.
    pub fn config(&self, data_dir: &Path, devices: &str) -> String {
        let flush = self
            .flush_interval
            .as_ref()
            .map(|f| format!("flush_interval = \"{f}\"\n"))
            .unwrap_or_default();
        let listen = if self.http_port == 0 {
            String::new()
        } else {
            format!("127.0.0.1:{}", self.http_port)
        };
        format!(
            "[gateway]\nid = \"{id}\"\nsite = \"{SITE}\"\ndata_dir = \"{data}\"\n\n\
             [mqtt]\nhost = \"{host}\"\nport = {port}\nclient_id = \"fgload-{id}\"\ntopic_prefix = \"{PREFIX}\"\n\n\
             [store]\ndurability = \"{durability}\"\nmax_bytes = \"4GiB\"\n{flush}\n\
             [http]\nlisten = \"{listen}\"\n\n{sparkplug}{devices}",
            id = self.id,
            data = data_dir.display(),
            host = self.mqtt_host,
            port = self.mqtt_port,
            durability = self.durability,
            sparkplug = self.sparkplug.section(),
        )
    }
}

/// Writes the config and starts `fieldgate run` (logging at `warn`).
pub fn start_fieldgate(fieldgate: &Path, dir: &Path, name: &str, config: &str) -> Result<Proc> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let mut command = Command::new(fieldgate);
    command
        .arg("run")
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "warn");
    Proc::spawn(
        "fieldgate",
        command,
        &dir.join(format!("{name}.log")),
        false,
    )
}

/// What fieldgate's store holds after it stopped: the last `seq` it
/// committed per data topic's device, and the seqs still waiting in the
/// outbox (committed, not yet acknowledged by the broker).
#[derive(Debug, Default)]
pub struct StoreState {
    /// Device → highest seq committed.
    pub committed: HashMap<String, u64>,
    /// Device → seqs still in the outbox.
    pub queued: HashMap<String, Vec<u64>>,
    /// Rows in the outbox, and the mean size of their payloads.
    pub rows: u64,
    /// Mean payload bytes of the rows in the outbox.
    pub mean_payload: f64,
    /// Device → DDATA rows the store numbered for its Sparkplug topic.
    pub sp_committed: HashMap<String, u64>,
    /// Device → payload timestamps of its DDATA rows still in the outbox.
    pub sp_queued: HashMap<String, Vec<u64>>,
}

/// Reads the store file (read-only) of a stopped gateway.
pub fn read_store(db: &Path) -> Result<StoreState> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    let device = |topic: &str| topic.rsplit_once("/data/").map(|(_, d)| d.to_string());
    let mut state = StoreState::default();
    let mut stmt = conn.prepare("SELECT topic, seq FROM topic_seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (topic, seq) = row?;
        if let Some(d) = device(&topic) {
            state.committed.insert(d, seq as u64);
        } else if let Some(d) = sparkplug::ddata_device(&topic) {
            state.sp_committed.insert(d.to_string(), seq as u64);
        }
    }
    // Only the Sparkplug rows' payloads are read (for their timestamps).
    let mut stmt = conn.prepare(
        "SELECT topic, seq, length(payload), \
         CASE WHEN topic LIKE 'spBv1.0/%' THEN payload END FROM outbox",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<Vec<u8>>>(3)?,
        ))
    })?;
    let mut bytes = 0.0;
    for row in rows {
        let (topic, seq, len, payload) = row?;
        state.rows += 1;
        bytes += len as f64;
        if let Some(d) = device(&topic) {
            state.queued.entry(d).or_default().push(seq as u64);
        } else if let (Some(d), Some(stamp)) = (
            sparkplug::ddata_device(&topic),
            payload.as_deref().and_then(sparkplug::payload_stamp),
        ) {
            state
                .sp_queued
                .entry(d.to_string())
                .or_default()
                .push(stamp);
        }
    }
    state.mean_payload = if state.rows > 0 {
        bytes / state.rows as f64
    } else {
        0.0
    };
    Ok(state)
}

/// One metric's value (summed over its label sets) from fieldgate's
/// `/metrics`, over a plain HTTP/1.0 request on loopback (bounded: 2 s).
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    let mut found = None;
    // Headers, comments and other metrics are passed over.
    for line in body.lines().filter(|l| l.starts_with(name)) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = key.split('{').next().unwrap_or(key);
        if let (true, Ok(v)) = (metric == name, value.trim().parse::<f64>()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The run's folder: `target/load/<workload>-<pid>`.
pub fn run_dir(root: &Path, workload: &str) -> Result<PathBuf> {
    let dir = root.join(format!(
        "{}-{}",
        workload.to_lowercase(),
        std::process::id()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("data"))?;
    Ok(dir)
}

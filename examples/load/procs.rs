//! Child processes and what `/proc` says about them.
//!
//! Every process the harness starts is a [`Proc`]: its output goes to a log
//! file in the run's folder, and dropping it stops it (SIGTERM, then
//! SIGKILL after a grace period), so a failed run leaves nothing behind.
//! Processes are only ever signalled by the pid the harness got from
//! `spawn`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A running child process, stopped when dropped.
pub struct Proc {
    /// Short name for messages ("fieldgate", "sim", "mosquitto").
    pub name: String,
    child: Child,
    /// Lines of its standard output, when it was asked for.
    pub stdout: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Starts `command` with stderr (and stdout unless `capture_stdout`) in
    /// `log`. With `capture_stdout`, a thread forwards stdout line by line
    /// to [`Proc::stdout`] until the process closes it.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        capture_stdout: bool,
    ) -> Result<Proc> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command.stdin(Stdio::null()).stderr(file.try_clone()?);
        if capture_stdout {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(file);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let stdout = match child.stdout.take() {
            Some(out) => {
                let (tx, rx) = mpsc::channel();
                // Ends when the child closes its stdout (it exits).
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                });
                Some(rx)
            }
            None => None,
        };
        Ok(Proc {
            name: name.to_string(),
            child,
            stdout,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a stdout line for which `pick` returns something;
    /// the lines passed over are handed to `pick` too.
    pub fn wait_line<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + within;
        let Some(rx) = self.stdout.as_ref() else {
            bail!("{}: stdout is not captured", self.name);
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = pick(&line) {
                        return Ok(t);
                    }
                }
                Err(_) => bail!(
                    "{}: the expected line did not come within {within:?}",
                    self.name
                ),
            }
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `grace` for it to exit, then SIGKILL.
    /// Returns its exit status when it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`,
/// 100 on every Linux this runs on).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time (user + system) a process has used, in seconds: fields 14 and
/// 15 of `/proc/PID/stat`, which include its threads that have ended.
/// Resolution: one clock tick (10 ms).
pub fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count the
    // fields after the last ')'. Field 3 (state) is the first after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// A `kB` figure of `/proc/PID/status` ("VmHWM", "VmRSS"), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time of each thread of a process, in ns, by thread id: the first
/// field of `/proc/PID/task/TID/schedstat`, the scheduler's own account
/// (exact, unlike the tick-sampled utime/stime, which misjudge a process
/// that runs in bursts of a few hundred µs, as fieldgate does at 1 s
/// polls).
pub fn thread_ns(pid: u32) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            out.insert(tid, ns);
        }
    }
    out
}

/// CPU time of several processes at one moment, by name.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// (name, pid, CPU ns per thread, CPU seconds from `/proc/PID/stat`).
    pub at: Vec<(String, u32, HashMap<u32, u64>, f64)>,
    /// When it was taken.
    pub when: Option<Instant>,
}

impl CpuSnapshot {
    /// Reads the CPU time of every `(name, pid)`.
    pub fn take(procs: &[(String, u32)], ticks: f64) -> CpuSnapshot {
        CpuSnapshot {
            at: procs
                .iter()
                .map(|(n, p)| {
                    let stat = cpu_seconds(*p, ticks).unwrap_or(0.0);
                    (n.clone(), *p, thread_ns(*p), stat)
                })
                .collect(),
            when: Some(Instant::now()),
        }
    }

    /// CPU seconds each process used between `self` and `later`: the sum
    /// over the threads alive at `later` of what each used since `self`
    /// (a thread that ended in between loses its last slice). Without
    /// schedstat (a kernel without it), the utime/stime difference.
    pub fn delta(&self, later: &CpuSnapshot) -> Vec<(String, f64)> {
        self.at
            .iter()
            .map(|(name, pid, before, stat_before)| {
                let Some((_, _, after, stat_after)) = later.at.iter().find(|x| x.1 == *pid) else {
                    return (name.clone(), 0.0);
                };
                let used = if after.is_empty() {
                    stat_after - stat_before
                } else {
                    after
                        .iter()
                        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
                        .sum::<u64>() as f64
                        / 1e9
                };
                (name.clone(), used)
            })
            .collect()
    }

    /// Wall-clock seconds between `self` and `later`.
    pub fn seconds(&self, later: &CpuSnapshot) -> f64 {
        match (self.when, later.when) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Samples a process's resident set size every `every` on a thread until
/// the returned sender is dropped, and returns the highest VmRSS seen
/// (KiB) from the join handle. VmHWM gives the same peak for a process
/// still alive; this one also covers a process that exits before it is
/// read.
pub fn rss_sampler(pid: u32, every: Duration) -> (mpsc::Sender<()>, std::thread::JoinHandle<u64>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut peak = 0;
        loop {
            if let Some(kib) = status_kib(pid, "VmHWM").or_else(|| status_kib(pid, "VmRSS")) {
                peak = peak.max(kib);
            }
            match stopped.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return peak,
            }
        }
    });
    (stop, handle)
}

/// Waits until something accepts TCP connections on `addr` (bounded).
pub fn wait_port(addr: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing accepts connections on {addr} after {within:?}")
}

/// A free TCP port on 127.0.0.1 (bound, then released for a child to use).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Bytes a process has caused to be written to storage (`write_bytes` of
/// `/proc/PID/io`: what reached the block layer, the SD card's wear) and
/// bytes it passed to `write` calls (`wchar`, which includes pipes and the
/// page cache).
#[derive(Debug, Clone, Copy, Default)]
pub struct Io {
    /// Bytes sent to storage.
    pub write_bytes: u64,
    /// Bytes written by `write`-like calls.
    pub wchar: u64,
}

/// The process's I/O counters; `None` when `/proc/PID/io` cannot be read
/// (another user's process without the rights, or no such file).
pub fn io(pid: u32) -> Option<Io> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Io {
        write_bytes: field("write_bytes")?,
        wchar: field("wchar")?,
    })
}

/// fsync(2) and fdatasync(2) calls a process makes per second, counted by
/// `strace -c` attached for `window`; `None` without strace or when it
/// cannot attach. Attached, strace stops the process at every system
/// call, so this runs after the CPU window, never inside it.
pub fn fsyncs_per_s(pid: u32, window: Duration) -> Option<f64> {
    let out = std::env::temp_dir().join(format!("fieldgate-load-strace-{pid}.txt"));
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    std::thread::sleep(window);
    // SIGINT makes strace detach and write its summary.
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match strace.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = strace.kill();
                let _ = strace.wait();
                break None;
            }
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    status?;
    let calls: u64 = text?
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .last()
                .is_some_and(|s| s == "fsync" || s == "fdatasync")
        })
        .filter_map(|l| {
            // "% time  seconds  usecs/call  calls  [errors]  syscall"
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3)?.parse::<u64>().ok()
        })
        .sum();
    Some(calls as f64 / secs)
}

/// One TCP connection of a process: its local port and the bytes sent and
/// received so far (the kernel's `tcp_info`, as `ss -ti` shows it: TCP
/// payload, i.e. whole MQTT packets, without TCP/IP headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpBytes {
    /// Local port (tells the connections apart).
    pub local_port: u16,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

/// `pid`'s established connections to `port` on loopback (`ss -tinpH`);
/// empty without `ss`.
pub fn tcp_bytes(pid: u32, port: u16) -> Vec<TcpBytes> {
    let filter = format!("( dport = :{port} )");
    let Ok(out) = Command::new("ss")
        .args(["-tinpH", "state", "established", &filter])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    parse_ss(&String::from_utf8_lossy(&out.stdout), pid)
}

/// Reads `ss -tinpH state established` output: a line per connection
/// (`Recv-Q Send-Q local peer users:((…,pid=N,fd=F))`), then its
/// `tcp_info` on an indented line.
fn parse_ss(text: &str, pid: u32) -> Vec<TcpBytes> {
    let ours = format!("pid={pid},");
    let mut found = Vec::new();
    let mut current: Option<u16> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = if line.contains(&ours) {
                let local = line.split_whitespace().nth(2).unwrap_or_default();
                local.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
            } else {
                None
            };
            continue;
        }
        let Some(local_port) = current.take() else {
            continue;
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        found.push(TcpBytes {
            local_port,
            sent: field("bytes_sent:"),
            received: field("bytes_received:"),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines() {
        let text = "0      0      127.0.0.1:44500 127.0.0.1:1883 users:((\"fieldgate\",pid=3000,fd=18))\n\
                    \t bbr wscale:10,10 bytes_sent:21 bytes_acked:22 bytes_received:6 segs_out:4\n\
                    0      0      127.0.0.1:44502 127.0.0.1:1883 users:((\"fieldgate-load\",pid=4000,fd=9))\n\
                    \t bbr bytes_sent:99 bytes_received:98\n";
        assert_eq!(
            parse_ss(text, 3000),
            vec![TcpBytes {
                local_port: 44500,
                sent: 21,
                received: 6
            }]
        );
        assert!(parse_ss(text, 5).is_empty());
    }
}

//! The process's own figures, from `/proc/self` (Linux).
//!
//! On another system, or when a file cannot be read or parsed, the figure
//! is absent (`None`) and its metric is left out: a scrape never fails and
//! nothing panics because a kernel formats a line differently.
//!
//! Reading `/proc` is a file read, even if the kernel answers it from
//! memory: call [`sample`] from `spawn_blocking`, not on the runtime.

use std::path::Path;

/// Clock ticks per second of `utime`/`stime` in `/proc/self/stat`.
///
/// This is the kernel's `USER_HZ`, which is part of its user-space ABI
/// and 100 on every architecture fieldgate targets (x86, ARM, AArch64,
/// RISC-V); reading it through `sysconf(_SC_CLK_TCK)` would need a libc
/// binding for a constant.
const USER_HZ: f64 = 100.0;

/// The process's resources at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident memory, bytes (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// CPU time in user and system mode, seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors (sockets, the database, serial ports).
    pub open_fds: Option<u64>,
    /// Threads (tokio workers, blocking pool, the store thread).
    pub threads: Option<u64>,
}

/// Reads the figures of this process; all `None` where `/proc` is absent.
pub fn sample() -> ProcessStats {
    sample_from(Path::new("/proc/self"))
}

/// Reads the figures from a `/proc/PID`-like folder (tests).
pub fn sample_from(dir: &Path) -> ProcessStats {
    let stat = std::fs::read_to_string(dir.join("stat")).ok();
    let status = std::fs::read_to_string(dir.join("status")).ok();
    let (rss_bytes, threads) = status.as_deref().map(parse_status).unwrap_or_default();
    ProcessStats {
        rss_bytes,
        cpu_seconds: stat.as_deref().and_then(parse_cpu_seconds),
        open_fds: std::fs::read_dir(dir.join("fd"))
            .ok()
            .map(|entries| entries.count() as u64),
        threads,
    }
}

/// User plus system CPU seconds from the text of `/proc/PID/stat`.
///
/// The second field is the command name in parentheses, which may itself
/// hold spaces and parentheses, so fields are counted from the *last* `)`:
/// after it come field 3 (state) onwards; `utime` and `stime` are fields
/// 14 and 15.
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Resident bytes (`VmRSS`, given in kB) and `Threads` from the text of
/// `/proc/PID/status`; each `None` when its line is missing or odd.
pub fn parse_status(status: &str) -> (Option<u64>, Option<u64>) {
    let mut rss = None;
    let mut threads = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let mut parts = rest.split_ascii_whitespace();
            let value = parts.next().and_then(|v| v.parse::<u64>().ok());
            rss = match (value, parts.next()) {
                (Some(v), Some("kB") | None) => v.checked_mul(1024),
                _ => None,
            };
        } else if let Some(rest) = line.strip_prefix("Threads:") {
            threads = rest.trim().parse().ok();
        }
    }
    (rss, threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from a Linux 6.1 kernel; the command name is made nasty.
    const STAT: &str = "4242 (field gate) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        250 75 0 0 20 0 7 0 123456 123456789 4321 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17990 0 0 0 17 1 0 0 0 0 0";

    const STATUS: &str = "Name:\tfieldgate\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t  123456 kB\nVmRSS:\t   17284 kB\nRssAnon:\t    9000 kB\n\
                          Threads:\t7\nSigQ:\t0/95000\n";

    #[test]
    fn cpu_time_is_counted_from_the_last_parenthesis() {
        assert_eq!(parse_cpu_seconds(STAT), Some(3.25));
    }

    #[test]
    fn status_gives_rss_in_bytes_and_threads() {
        assert_eq!(parse_status(STATUS), (Some(17_284 * 1024), Some(7)));
    }

    #[test]
    fn odd_text_gives_none_never_a_panic() {
        for text in [
            "",
            ")",
            "1 (x",
            "1 (x) S 1 2",
            "1 (x) S a b c d e f g h i j k l m n o p",
            "\u{fffd}(",
        ] {
            assert_eq!(parse_cpu_seconds(text), None, "{text:?}");
        }
        assert_eq!(parse_status(""), (None, None));
        assert_eq!(parse_status("VmRSS: lots\nThreads: many"), (None, None));
        assert_eq!(parse_status("VmRSS: 12 MB\n"), (None, None));
    }

    #[test]
    fn a_missing_proc_folder_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            sample_from(&dir.path().join("absent")),
            ProcessStats::default()
        );
    }

    #[test]
    fn this_process_has_figures_on_linux() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let s = sample();
        assert!(s.rss_bytes.unwrap_or(0) > 0);
        assert!(s.cpu_seconds.is_some());
        assert!(s.threads.unwrap_or(0) >= 1);
        assert!(s.open_fds.unwrap_or(0) >= 1);
    }
}

//! Log lines held for the live view.
//!
//! While the view redraws its panel in place on the terminal, a log line
//! written to stderr in between would tear it. The CLI then points the
//! `tracing` writer here instead, and the view prints the held lines
//! above the panel at its next redraw. Bounded: beyond
//! [`LOG_CAPACITY`] lines the oldest are dropped and counted.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// Lines held between two redraws before the oldest are dropped.
pub const LOG_CAPACITY: usize = 200;

/// The held lines (one per log event) and how many were dropped.
#[derive(Debug)]
pub struct LogLines {
    // A std mutex: held only to push or take lines, never across an await.
    inner: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    lines: VecDeque<String>,
    dropped: u64,
}

static LOG_LINES: LogLines = LogLines {
    inner: Mutex::new(Held {
        lines: VecDeque::new(),
        dropped: 0,
    }),
};

/// The process's log lines (one `tracing` subscriber per process, so one
/// place for its lines).
pub fn log_lines() -> &'static LogLines {
    &LOG_LINES
}

impl LogLines {
    fn push(&self, line: String) {
        let mut held = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if held.lines.len() >= LOG_CAPACITY {
            held.lines.pop_front();
            held.dropped += 1;
        }
        held.lines.push_back(line);
    }

    /// Takes the held lines, oldest first, and the count of lines dropped
    /// since the last take.
    pub fn take(&self) -> (Vec<String>, u64) {
        let mut held = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = std::mem::take(&mut held.dropped);
        (held.lines.drain(..).collect(), dropped)
    }
}

/// Collects one formatted event; the line is held when the writer drops.
#[derive(Debug)]
pub struct LineWriter {
    target: &'static LogLines,
    buf: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.target.push(line.to_string());
        }
    }
}

impl<'a> MakeWriter<'a> for &'static LogLines {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            target: self,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn lines_are_held_bounded_and_taken_once() {
        let lines: &'static LogLines = Box::leak(Box::new(LogLines {
            inner: Mutex::new(Held::default()),
        }));
        {
            let mut w = lines.make_writer();
            let _ = w.write_all(b"WARN first\nsecond\n");
        }
        let (taken, dropped) = lines.take();
        assert_eq!(taken, ["WARN first", "second"]);
        assert_eq!(dropped, 0);
        assert!(lines.take().0.is_empty());
        for i in 0..LOG_CAPACITY + 5 {
            lines.push(format!("{i}"));
        }
        let (taken, dropped) = lines.take();
        assert_eq!(taken.len(), LOG_CAPACITY);
        assert_eq!(taken[0], "5");
        assert_eq!(dropped, 5);
    }
}

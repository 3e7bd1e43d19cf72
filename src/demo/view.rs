//! The terminal: a live panel redrawn in place when stdout is a terminal,
//! plain timestamped lines when it is not (a log file, a pipe, a test).
//!
//! # Live
//!
//! The panel is a ratatui *inline* viewport at the bottom of the terminal,
//! not the alternate screen: the event lines and held log lines are
//! inserted above it and scroll away like a normal log, and when the demo
//! ends the last panel and the summary stay on screen. Raw mode is not
//! used, so Ctrl-C stays a signal that the demo handles (the orderly
//! stop); the cursor is hidden while the panel runs and shown again by
//! [`View::finish`], by the drop of the view on an error path, and by a
//! panic hook (the release build aborts on a panic, which runs no
//! destructor). If the terminal cannot host the panel (it does not answer
//! the cursor position query), the view falls back to plain lines.
//!
//! # Plain
//!
//! Every line on stdout starts with an RFC 3339 UTC timestamp with
//! microseconds: the stamp of the gateway's log lines (`tracing`'s, on
//! stderr), so that the demo's lines and the gateway's read and sort as
//! one log. Writes that fail (a closed pipe) are ignored rather than
//! stopping the demo.

use std::io::{self, Stdout, Write as _};
use std::sync::Once;
use std::time::SystemTime;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm;
use ratatui::layout::Position;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Widget as _};
use ratatui::{Terminal, TerminalOptions, Viewport};

use super::logs::log_lines;
use super::panel::{self, Frame, Row, Tone};

/// How the demo shows what happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The live panel (stdout is a terminal).
    Live,
    /// Plain timestamped lines.
    Plain,
}

impl Mode {
    /// Live when stdout is a terminal and `plain` was not asked for.
    pub fn detect(plain: bool) -> Mode {
        if !plain && io::IsTerminal::is_terminal(&io::stdout()) {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// A timestamp for a plain line: RFC 3339 UTC with microseconds
/// (`2026-11-21T10:20:02.083125Z`), as the gateway's log lines have it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Shows the cursor and leaves raw mode, whatever state the panel left
/// the terminal in. Safe to call at any time, also when no panel runs.
pub fn restore_terminal() {
    let mut out = io::stdout();
    let _ = crossterm::execute!(out, crossterm::cursor::Show);
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = out.flush();
}

/// The demo's output.
pub struct View {
    terminal: Option<Terminal<CrosstermBackend<Stdout>>>,
    /// Log lines go to the view (held by [`super::logs`]) rather than
    /// straight to stderr.
    logs_held: bool,
    /// The panel's rows at the last draw, drawn again after lines are
    /// inserted above it.
    rows: Vec<Row>,
    /// The panel's last line at the last draw (to put the cursor below it).
    bottom: Option<u16>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("live", &self.terminal.is_some())
            .field("logs_held", &self.logs_held)
            .finish()
    }
}

impl View {
    /// A view in `mode`; `height` is the panel's height in lines (capped
    /// by the terminal's). `logs_held` says whether the CLI sent the log
    /// lines to [`super::logs`]. Returns the view and, when the live panel
    /// could not start, why (the view then prints plain lines).
    pub fn start(mode: Mode, height: usize, logs_held: bool) -> (View, Option<String>) {
        let mut view = View {
            terminal: None,
            logs_held,
            rows: Vec::new(),
            bottom: None,
        };
        if mode == Mode::Plain {
            return (view, None);
        }
        let rows = crossterm::terminal::size()
            .map(|(_, rows)| rows)
            .unwrap_or(24);
        let height = u16::try_from(height)
            .unwrap_or(u16::MAX)
            .min(rows.saturating_sub(2))
            .max(3);
        match Terminal::with_options(
            CrosstermBackend::new(io::stdout()),
            TerminalOptions {
                viewport: Viewport::Inline(height),
            },
        ) {
            Ok(mut terminal) => {
                install_panic_hook();
                let _ = terminal.hide_cursor();
                view.terminal = Some(terminal);
                (view, None)
            }
            Err(e) => {
                restore_terminal();
                (
                    view,
                    Some(format!("no live panel ({e}); plain lines instead")),
                )
            }
        }
    }

    /// True while the live panel runs.
    pub fn is_live(&self) -> bool {
        self.terminal.is_some()
    }

    /// Prints lines: above the panel, or as timestamped plain lines.
    pub fn lines(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let now = timestamp(SystemTime::now());
        match &mut self.terminal {
            Some(terminal) => {
                // The time of day (UTC) is enough next to a live panel.
                let time = now.get(11..19).unwrap_or_default().to_string();
                let text: Vec<Line> = lines
                    .iter()
                    .map(|l| Line::raw(format!("{time}  {l}")))
                    .collect();
                insert(terminal, text);
                self.redraw();
            }
            None => {
                let mut out = io::stdout().lock();
                for l in lines {
                    let _ = writeln!(out, "{now}  {l}");
                }
                let _ = out.flush();
            }
        }
    }

    /// Prints the log lines held since the last call (live: above the
    /// panel, dimmed; plain: to stderr, where they would have gone).
    pub fn logs(&mut self) {
        if !self.logs_held {
            return;
        }
        let (lines, dropped) = log_lines().take();
        let mut lines = lines;
        if dropped > 0 {
            lines.insert(0, format!("({dropped} log lines dropped)"));
        }
        if lines.is_empty() {
            return;
        }
        match &mut self.terminal {
            Some(terminal) => {
                let dim = Style::default().add_modifier(Modifier::DIM);
                insert(
                    terminal,
                    lines
                        .into_iter()
                        .map(|l| Line::styled(format!("log  {l}"), dim))
                        .collect(),
                );
                self.redraw();
            }
            None => {
                let mut err = io::stderr().lock();
                for l in lines {
                    let _ = writeln!(err, "{l}");
                }
            }
        }
    }

    /// Draws the panel for `frame` (live only).
    pub fn draw(&mut self, frame: &Frame) {
        if self.terminal.is_some() {
            self.rows = panel::rows(frame);
            self.redraw();
        }
    }

    /// Draws the last rows again (the terminal only sends what changed).
    fn redraw(&mut self) {
        let Some(terminal) = &mut self.terminal else {
            return;
        };
        let text = Text::from(self.rows.iter().map(styled).collect::<Vec<_>>());
        if let Ok(done) = terminal.draw(|f| f.render_widget(Paragraph::new(text), f.area())) {
            self.bottom = Some(done.area.bottom());
        }
    }

    /// Ends the panel (leaving its last picture on screen) and prints the
    /// summary lines below it.
    pub fn finish(&mut self, summary: &[String]) {
        self.logs();
        self.redraw();
        if let Some(mut terminal) = self.terminal.take() {
            let below = self.bottom.unwrap_or(0).saturating_sub(1);
            let _ = terminal.set_cursor_position(Position::new(0, below));
            let _ = terminal.show_cursor();
            drop(terminal);
            restore_terminal();
            let mut out = io::stdout().lock();
            let _ = writeln!(out);
            for l in summary {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        } else {
            self.lines(summary);
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.terminal.take().is_some() {
            restore_terminal();
        }
    }
}

/// Inserts lines above the inline panel; a line longer than the terminal
/// is cut (the plain mode keeps it whole).
fn insert(terminal: &mut Terminal<CrosstermBackend<Stdout>>, lines: Vec<Line<'static>>) {
    let height = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let _ = terminal.insert_before(height, |buf| {
        Paragraph::new(Text::from(lines)).render(buf.area, buf);
    });
}

fn styled(row: &Row) -> Line<'static> {
    let style = match row.tone {
        Tone::Title => Style::default()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
        Tone::Heading => Style::default().add_modifier(Modifier::BOLD),
        Tone::Normal => Style::default(),
        Tone::Good => Style::default().fg(Color::Green),
        Tone::Warn => Style::default().fg(Color::Yellow),
        Tone::Bad => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Tone::Dim => Style::default().add_modifier(Modifier::DIM),
    };
    Line::styled(row.text.clone(), style)
}

/// Restores the terminal before the default panic message, once per
/// process.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime as _;

    #[test]
    fn the_demo_stamps_its_lines_as_the_gateway_stamps_its_logs() {
        let at = UNIX_EPOCH + Duration::from_micros(1_763_720_402_083_125);
        assert_eq!(timestamp(at), "2025-11-21T10:20:02.083125Z");
        // The log lines' timer (tracing's default) writes the same shape:
        // compared on the clock's now, digit for digit.
        let mut log = String::new();
        let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut log));
        let ours = timestamp(SystemTime::now());
        let shape = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        };
        assert_eq!(shape(&log), shape(&ours), "{log} against {ours}");
    }
}

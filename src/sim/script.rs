//! The scenario's timeline: which actions fall due when.
//!
//! Pure: the ticker passes the time since start to [`Script::due`] and
//! applies what comes back. Events with a duration are expanded into a
//! start and an end action when the script is built, so the timeline is a
//! plain sorted list walked once. Windows on the same device do not nest:
//! the first one to end restores the device.

use std::time::Duration;

use super::plant::Signal;
use super::point::Target;

/// One thing to do to one device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Ramp an analog signal to `to` over `over`, then hover.
    Ramp {
        signal: Signal,
        to: f64,
        over: Duration,
    },
    /// Pin a signal or point to an exact value.
    Set { target: Target, value: f64 },
    /// Hand a signal or point back to the model or its source.
    Release { target: Target },
    /// Stop (`true`) or resume (`false`) answering.
    Offline(bool),
    /// Answer everything with this exception code, or stop doing so.
    Exception(Option<u8>),
}

/// A resolved scenario event: an action, optionally undone after a while.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// Time since start.
    pub at: Duration,
    /// Device index.
    pub device: usize,
    /// What to do.
    pub action: Action,
    /// How long until it is undone; `None` = never.
    pub lasts: Option<Duration>,
}

/// The expanded timeline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    /// `(time, device, action)`, sorted by time; ties keep scenario order.
    steps: Vec<(Duration, usize, Action)>,
    /// First step not yet handed out.
    next: usize,
}

impl Script {
    /// Expands every event into its start and (if it has a duration) end.
    pub fn new(events: &[Event]) -> Script {
        let mut steps = Vec::with_capacity(events.len() * 2);
        for e in events {
            steps.push((e.at, e.device, e.action.clone()));
            let undo = match &e.action {
                Action::Ramp { signal, .. } => Action::Release {
                    target: Target::Signal(*signal),
                },
                Action::Set { target, .. } => Action::Release { target: *target },
                Action::Release { .. } => continue,
                Action::Offline(_) => Action::Offline(false),
                Action::Exception(_) => Action::Exception(None),
            };
            if let Some(lasts) = e.lasts {
                steps.push((e.at.saturating_add(lasts), e.device, undo));
            }
        }
        // Stable: simultaneous steps run in the order they were written.
        steps.sort_by_key(|(at, _, _)| *at);
        Script { steps, next: 0 }
    }

    /// The steps due at or before `now` that were not handed out yet.
    pub fn due(&mut self, now: Duration) -> &[(Duration, usize, Action)] {
        let from = self.next;
        while self
            .steps
            .get(self.next)
            .is_some_and(|(at, _, _)| *at <= now)
        {
            self.next += 1;
        }
        &self.steps[from..self.next]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn windows_expand_and_fall_due_in_order() {
        let events = [
            Event {
                at: secs(120),
                device: 1,
                action: Action::Offline(true),
                lasts: Some(secs(30)),
            },
            Event {
                at: secs(60),
                device: 0,
                action: Action::Ramp {
                    signal: Signal::BearingTemp,
                    to: 85.0,
                    over: secs(20),
                },
                lasts: None,
            },
            Event {
                at: secs(10),
                device: 2,
                action: Action::Exception(Some(4)),
                lasts: Some(secs(5)),
            },
        ];
        let mut s = Script::new(&events);
        assert!(s.due(secs(9)).is_empty());
        assert_eq!(s.due(secs(10)), [(secs(10), 2, Action::Exception(Some(4)))]);
        assert!(s.due(secs(10)).is_empty(), "handed out once");
        assert_eq!(s.due(secs(100)).len(), 2);
        let last: Vec<_> = s
            .due(secs(1000))
            .iter()
            .map(|(_, _, a)| a.clone())
            .collect();
        assert_eq!(last, [Action::Offline(true), Action::Offline(false)]);
        assert!(s.due(secs(100_000)).is_empty());
    }
}

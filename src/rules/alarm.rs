//! The ISA-18.2 alarm state machine of one rule: delays, acknowledgement,
//! shelving and chattering.
//!
//! # Delays
//!
//! The condition's raw verdict (`condition.rs`) is debounced first: the
//! alarm becomes *active* once the condition has been met without a break
//! for `on_delay`, and inactive once it has been clear without a break for
//! `off_delay`. A break restarts the delay. Delays are measured between
//! the times passed in; [`Alarm::tick`] lets a delay end without a new
//! reading. If the clock goes back, a running delay restarts from the new
//! "now" rather than waiting for the clock to catch up.
//!
//! # States
//!
//! | from                | input                            | to                  | activation |
//! |---------------------|----------------------------------|---------------------|------------|
//! | `Normal`            | active (after on-delay)          | `ActiveUnacked`     | yes        |
//! | `ActiveUnacked`     | ack                              | `ActiveAcked`       |            |
//! | `ActiveUnacked`     | inactive (after off-delay)       | `ReturnedUnacked`   |            |
//! | `ActiveAcked`       | inactive (after off-delay)       | `Normal`            |            |
//! | `ReturnedUnacked`   | ack                              | `Normal`            |            |
//! | `ReturnedUnacked`   | active (after on-delay)          | `ActiveUnacked`     | yes        |
//! | any but `Shelved`   | shelve(d)                        | `Shelved{now+d, a}` |            |
//! | `Shelved{u, a}`     | shelve(d)                        | `Shelved{now+d, a}` |            |
//! | `Shelved{u, false}` | active (after on-delay)          | `Shelved{u, true}`  | yes, no WO |
//! | `Shelved{u, true}`  | inactive (after off-delay)       | `Shelved{u, false}` |            |
//! | `Shelved{u, a}`     | unshelve, or time ≥ `u`          | `ActiveUnacked` if `a`, else `Normal` | if `a` |
//!
//! Acks of `Normal`, `ActiveAcked` or a shelved alarm change nothing and
//! produce no event.
//!
//! Shelving suppresses annunciation, not evaluation: while shelved the
//! delays keep running and `a` (the `active` flag of
//! [`AlarmState::Shelved`]) follows the condition. When the shelf ends the
//! alarm takes the state the condition implies: `Normal`, or
//! `ActiveUnacked` (an operator must see an alarm that is still there, even
//! one acknowledged before it was shelved). Coming back active counts as an
//! activation that may raise a work order, since none was raised while it
//! was shelved; it is not counted towards chattering, which measures the
//! condition, not the operators.
//!
//! # Chattering
//!
//! Each activation by the condition (shelved or not) is recorded. When
//! `chatter_count` of them fall within `chatter_window`, the alarm is
//! flagged chattering, starting with the activation that reaches the
//! count. The state machine runs as usual, but no activation raises a work
//! order until the alarm has been quiet (no activation) for
//! `chatter_quiet`, which clears the flag with an event of its own.
//! `chatter_count` 0 disables the check.
//!
//! An activation refused a work order *only* because the rule chattered
//! (not shelved) is **held**: the alarm remembers when it happened for as
//! long as it stays active. If the flag clears while that activation is
//! still active (`ActiveUnacked` or `ActiveAcked`), the `ChatterCleared`
//! event **releases** it ([`AlarmEvent::released`] = when it activated)
//! and asks for its work order then (`raise_work_order`). A fault that
//! clears during the chatter drops its hold and raises nothing; a rule
//! that keeps chattering keeps resetting the quiet time and releases
//! nothing until it settles; shelving drops the hold too, because the end
//! of the shelf re-announces an alarm that is still active (and holds that
//! activation again if the rule still chatters). So each fault gets at
//! most one work-order request, and a rule never more than one per
//! settling.
//!
//! Every event satisfies: `raise_work_order ⇒ activation XOR released`,
//! and `released` only on a `ChatterCleared` event into an active,
//! unshelved state.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::condition::Trigger;
use super::time::{Timestamp, millis};
use crate::config::{AlarmConfig, Rule};

/// Activation history kept for chattering, at most (a larger
/// `chatter_count` is treated as this many).
const MAX_CHATTER_HISTORY: usize = 256;

/// Where an alarm stands, per ISA-18.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlarmState {
    /// The condition is clear and nothing awaits acknowledgement.
    Normal,
    /// Active, not yet acknowledged.
    ActiveUnacked,
    /// Active and acknowledged.
    ActiveAcked,
    /// Cleared by itself before anyone acknowledged it.
    ReturnedUnacked,
    /// Suppressed by an operator until `until`.
    Shelved {
        /// When the shelf ends by itself.
        until: Timestamp,
        /// Whether the (debounced) condition is active underneath.
        active: bool,
    },
}

impl AlarmState {
    /// The name used in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::ActiveUnacked => "active_unacked",
            AlarmState::ActiveAcked => "active_acked",
            AlarmState::ReturnedUnacked => "returned_unacked",
            AlarmState::Shelved { .. } => "shelved",
        }
    }

    /// True while the condition holds (shelved or not).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AlarmState::ActiveUnacked
                | AlarmState::ActiveAcked
                | AlarmState::Shelved { active: true, .. }
        )
    }

    /// True when an operator acknowledgement is awaited.
    pub fn is_unacked(self) -> bool {
        matches!(
            self,
            AlarmState::ActiveUnacked | AlarmState::ReturnedUnacked
        )
    }

    /// True while shelved.
    pub fn is_shelved(self) -> bool {
        matches!(self, AlarmState::Shelved { .. })
    }
}

/// What caused an [`AlarmEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The debounced condition became active or inactive.
    Condition,
    /// An operator acknowledged.
    Ack,
    /// An operator shelved (or re-shelved).
    Shelve,
    /// An operator unshelved.
    Unshelve,
    /// The shelf's time ran out.
    ShelveExpired,
    /// The alarm was quiet long enough to stop chattering (the state is
    /// unchanged: `from == to`).
    ChatterCleared,
}

/// One change of an alarm, for the caller to persist and publish.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    /// The rule's name.
    pub rule: Arc<str>,
    /// State before.
    pub from: AlarmState,
    /// State after.
    pub to: AlarmState,
    /// When (the time passed in with the input that caused it).
    pub at: Timestamp,
    /// What caused it.
    pub cause: Cause,
    /// What the condition last judged (value and limit).
    pub trigger: Option<Trigger>,
    /// The alarm became active: by the condition, or by coming back from
    /// the shelf while the condition holds.
    pub activation: bool,
    /// On a `ChatterCleared` event only: the chattering flag cleared while
    /// an activation it had held back is still active; the time of that
    /// activation (when the fault began). The event is not an activation
    /// (no new occurrence), but it asks for the work order the held
    /// activation was refused.
    pub released: Option<Timestamp>,
    /// This event should raise a work order (or, for an activation, update
    /// the open one): an activation while neither shelved nor chattering,
    /// or a release, of a rule whose work-order template is enabled.
    pub raise_work_order: bool,
    /// The chattering flag after the event.
    pub chattering: bool,
}

/// The timing of one alarm, from its rule and `[alarms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmTiming {
    /// The condition must hold this long before the alarm activates.
    pub on_delay: Duration,
    /// The condition must be clear this long before the alarm returns.
    pub off_delay: Duration,
    /// Activations within `chatter_window` that flag chattering (0: never).
    pub chatter_count: u32,
    /// Window for counting activations.
    pub chatter_window: Duration,
    /// Quiet time that clears the chattering flag.
    pub chatter_quiet: Duration,
}

impl AlarmTiming {
    /// The timing of `rule` under `alarms`.
    pub fn of(rule: &Rule, alarms: &AlarmConfig) -> AlarmTiming {
        AlarmTiming {
            on_delay: rule.on_delay,
            off_delay: rule.off_delay,
            chatter_count: alarms.chatter_count,
            chatter_window: alarms.chatter_window,
            chatter_quiet: alarms.chatter_quiet,
        }
    }
}

/// One rule's alarm.
#[derive(Debug, Clone)]
pub struct Alarm {
    name: Arc<str>,
    on_ms: u64,
    off_ms: u64,
    chatter_count: usize,
    window_ms: u64,
    quiet_ms: u64,
    state: AlarmState,
    /// The condition's last raw verdict.
    raw: bool,
    /// The debounced verdict (what the state reflects).
    active: bool,
    /// When `raw` started to differ from `active`.
    pending: Option<Timestamp>,
    /// Recent activations by the condition, oldest first.
    recent: VecDeque<Timestamp>,
    last_activation: Option<Timestamp>,
    chattering: bool,
    /// When the current activation was refused a work order because the
    /// rule chattered (the module docs: held and released).
    held: Option<Timestamp>,
    changed_at: Option<Timestamp>,
}

impl Alarm {
    /// A `Normal` alarm.
    pub fn new(name: impl Into<Arc<str>>, timing: AlarmTiming) -> Alarm {
        Alarm {
            name: name.into(),
            on_ms: millis(timing.on_delay),
            off_ms: millis(timing.off_delay),
            chatter_count: (timing.chatter_count as usize).min(MAX_CHATTER_HISTORY),
            window_ms: millis(timing.chatter_window),
            quiet_ms: millis(timing.chatter_quiet),
            state: AlarmState::Normal,
            raw: false,
            active: false,
            pending: None,
            recent: VecDeque::new(),
            last_activation: None,
            chattering: false,
            held: None,
            changed_at: None,
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The current state.
    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// Whether the alarm is flagged chattering.
    pub fn is_chattering(&self) -> bool {
        self.chattering
    }

    /// When the condition last activated the alarm.
    pub fn last_activation(&self) -> Option<Timestamp> {
        self.last_activation
    }

    /// When the activation held back by chattering began, if one is held
    /// (it is released with its work order when the flag clears).
    pub fn held_since(&self) -> Option<Timestamp> {
        self.held
    }

    /// When the state last changed.
    pub fn changed_at(&self) -> Option<Timestamp> {
        self.changed_at
    }

    /// When the running on- or off-delay started, if one runs.
    pub fn pending_since(&self) -> Option<Timestamp> {
        self.pending
    }

    /// The condition's verdict at `at`. Events are appended to `out`.
    pub fn update(
        &mut self,
        met: bool,
        at: Timestamp,
        trigger: Option<&Trigger>,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.advance(at, trigger, out);
        if let Some(active) = self.debounce(met, at) {
            self.transition(active, at, trigger, out);
        }
    }

    /// Time passes: ends delays, shelves and chattering that are due.
    pub fn tick(&mut self, at: Timestamp, trigger: Option<&Trigger>, out: &mut Vec<AlarmEvent>) {
        self.update(self.raw, at, trigger, out);
    }

    /// An operator acknowledges.
    pub fn ack(&mut self, at: Timestamp, trigger: Option<&Trigger>, out: &mut Vec<AlarmEvent>) {
        self.advance(at, trigger, out);
        let to = match self.state {
            AlarmState::ActiveUnacked => AlarmState::ActiveAcked,
            AlarmState::ReturnedUnacked => AlarmState::Normal,
            _ => return,
        };
        self.set(to, at, Cause::Ack, trigger, false, out);
    }

    /// An operator shelves the alarm for `duration` from `at` (again: the
    /// new end replaces the old).
    pub fn shelve(
        &mut self,
        duration: Duration,
        at: Timestamp,
        trigger: Option<&Trigger>,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.advance(at, trigger, out);
        let to = AlarmState::Shelved {
            until: at.saturating_add(duration),
            active: self.active,
        };
        self.set(to, at, Cause::Shelve, trigger, false, out);
    }

    /// An operator ends the shelf early (nothing happens if not shelved).
    pub fn unshelve(
        &mut self,
        at: Timestamp,
        trigger: Option<&Trigger>,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.advance(at, trigger, out);
        if self.state.is_shelved() {
            self.leave_shelf(at, Cause::Unshelve, trigger, out);
        }
    }

    /// Ends what is due at `at`: the shelf, the chattering flag.
    fn advance(&mut self, at: Timestamp, trigger: Option<&Trigger>, out: &mut Vec<AlarmEvent>) {
        if let AlarmState::Shelved { until, .. } = self.state
            && at >= until
        {
            self.leave_shelf(at, Cause::ShelveExpired, trigger, out);
        }
        if self.chattering
            && let Some(last) = self.last_activation
        {
            if at < last {
                // The clock went back: count the quiet time from now.
                self.last_activation = Some(at);
            } else if at.millis_since(last) >= self.quiet_ms {
                self.chattering = false;
                // The held activation, if its fault is still there, gets
                // its work order now; a hold never outlives this event.
                let released = self.held.take().filter(|_| self.holds_activation());
                let mut event = self.event(self.state, at, Cause::ChatterCleared, trigger, false);
                event.released = released;
                event.raise_work_order = released.is_some();
                out.push(event);
            }
        }
    }

    /// Debounces the raw verdict; returns the new active flag when it flips.
    fn debounce(&mut self, raw: bool, at: Timestamp) -> Option<bool> {
        self.raw = raw;
        if raw == self.active {
            self.pending = None;
            return None;
        }
        let start = match self.pending {
            Some(p) if p <= at => p,
            // First moment of a difference, or the clock went back.
            _ => *self.pending.insert(at),
        };
        let delay = if raw { self.on_ms } else { self.off_ms };
        if at.millis_since(start) >= delay {
            self.active = raw;
            self.pending = None;
            Some(raw)
        } else {
            None
        }
    }

    fn transition(
        &mut self,
        active: bool,
        at: Timestamp,
        trigger: Option<&Trigger>,
        out: &mut Vec<AlarmEvent>,
    ) {
        let to = match (self.state, active) {
            (AlarmState::Normal | AlarmState::ReturnedUnacked, true) => AlarmState::ActiveUnacked,
            (AlarmState::ActiveUnacked, false) => AlarmState::ReturnedUnacked,
            (AlarmState::ActiveAcked, false) => AlarmState::Normal,
            (AlarmState::Shelved { until, .. }, active) => AlarmState::Shelved { until, active },
            // Already where the verdict points (a restored state that
            // disagrees with its flag): nothing to announce.
            _ => return,
        };
        if active {
            self.record_activation(at);
        }
        self.set(to, at, Cause::Condition, trigger, active, out);
    }

    fn record_activation(&mut self, at: Timestamp) {
        if self.recent.back().is_some_and(|&t| t > at) {
            // The clock went back: the history no longer lines up.
            self.recent.clear();
        }
        while self
            .recent
            .front()
            .is_some_and(|&t| at.millis_since(t) > self.window_ms)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
        while self.recent.len() > self.chatter_count.max(1) {
            self.recent.pop_front();
        }
        self.last_activation = Some(at);
        if self.chatter_count > 0 && self.recent.len() >= self.chatter_count {
            self.chattering = true;
        }
    }

    fn leave_shelf(
        &mut self,
        at: Timestamp,
        cause: Cause,
        trigger: Option<&Trigger>,
        out: &mut Vec<AlarmEvent>,
    ) {
        let to = if self.active {
            AlarmState::ActiveUnacked
        } else {
            AlarmState::Normal
        };
        self.set(to, at, cause, trigger, self.active, out);
    }

    fn set(
        &mut self,
        to: AlarmState,
        at: Timestamp,
        cause: Cause,
        trigger: Option<&Trigger>,
        activation: bool,
        out: &mut Vec<AlarmEvent>,
    ) {
        let from = self.state;
        self.state = to;
        self.changed_at = Some(at);
        if activation && self.holds_activation() && self.chattering {
            // Refused only because the rule chatters: held for release.
            self.held = Some(at);
        } else if !self.holds_activation() {
            // Cleared, returned or shelved: nothing left to release (the
            // shelf's end re-announces a fault that is still there).
            self.held = None;
        }
        out.push(self.event(from, at, cause, trigger, activation));
    }

    /// True in the states where a held activation stays held: active and
    /// annunciated (not shelved).
    fn holds_activation(&self) -> bool {
        matches!(
            self.state,
            AlarmState::ActiveUnacked | AlarmState::ActiveAcked
        )
    }

    fn event(
        &self,
        from: AlarmState,
        at: Timestamp,
        cause: Cause,
        trigger: Option<&Trigger>,
        activation: bool,
    ) -> AlarmEvent {
        AlarmEvent {
            rule: self.name.clone(),
            from,
            to: self.state,
            at,
            cause,
            trigger: trigger.cloned(),
            activation,
            released: None,
            raise_work_order: activation && !self.state.is_shelved() && !self.chattering,
            chattering: self.chattering,
        }
    }

    /// The state to persist.
    pub fn save(&self) -> SavedAlarm {
        SavedAlarm {
            state: self.state,
            raw: self.raw,
            active: self.active,
            pending: self.pending,
            recent: self.recent.iter().copied().collect(),
            last_activation: self.last_activation,
            chattering: self.chattering,
            held: self.held,
            changed_at: self.changed_at,
        }
    }

    /// Restores persisted state (the timing stays this alarm's own, so a
    /// reload that changed a delay applies it to the running delay).
    pub fn restore(&mut self, saved: &SavedAlarm) {
        self.state = saved.state;
        self.raw = saved.raw;
        self.active = saved.active;
        self.pending = saved.pending;
        let keep = self.chatter_count.max(1);
        let skip = saved.recent.len().saturating_sub(keep);
        self.recent = saved.recent.iter().skip(skip).copied().collect();
        self.last_activation = saved.last_activation;
        self.chattering = saved.chattering;
        self.changed_at = saved.changed_at;
        self.held = saved.held;
        if self.held.is_none() && self.chattering && self.holds_activation() {
            // Saved before holds were kept (the field is absent): an
            // alarm active and annunciated while flagged chattering is
            // always one whose activation was refused for chattering
            // (only an activation sets the flag, and it is refused), so
            // the hold is rebuilt, from the last activation by the
            // condition (or the state change, for a shelf's end).
            self.held = self.last_activation.or(self.changed_at);
        }
    }
}

/// The persisted state of an [`Alarm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAlarm {
    /// The ISA-18.2 state.
    pub state: AlarmState,
    /// The condition's last raw verdict.
    pub raw: bool,
    /// The debounced verdict.
    pub active: bool,
    /// Start of the running on- or off-delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Timestamp>,
    /// Recent activations (for chattering), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Timestamp>,
    /// Last activation by the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activation: Option<Timestamp>,
    /// The chattering flag.
    pub chattering: bool,
    /// When the activation held back by chattering began (absent when
    /// none is held, and in state saved before holds existed: restore
    /// rebuilds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Timestamp>,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Value;

    fn t(secs: f64) -> Timestamp {
        Timestamp((secs * 1000.0) as u64)
    }

    fn timing(on: u64, off: u64) -> AlarmTiming {
        AlarmTiming {
            on_delay: Duration::from_secs(on),
            off_delay: Duration::from_secs(off),
            chatter_count: 3,
            chatter_window: Duration::from_secs(60),
            chatter_quiet: Duration::from_secs(120),
        }
    }

    /// An alarm driven by a fake clock, collecting its events.
    struct Rig {
        alarm: Alarm,
        events: Vec<AlarmEvent>,
    }

    impl Rig {
        fn new(on: u64, off: u64) -> Rig {
            Rig {
                alarm: Alarm::new("r", timing(on, off)),
                events: Vec::new(),
            }
        }
        fn met(&mut self, met: bool, secs: f64) -> Vec<AlarmEvent> {
            let mut out = Vec::new();
            self.alarm.update(met, t(secs), None, &mut out);
            self.events.extend(out.iter().cloned());
            out
        }
        fn tick(&mut self, secs: f64) -> Vec<AlarmEvent> {
            let mut out = Vec::new();
            self.alarm.tick(t(secs), None, &mut out);
            self.events.extend(out.iter().cloned());
            out
        }
        fn ack(&mut self, secs: f64) -> Vec<AlarmEvent> {
            let mut out = Vec::new();
            self.alarm.ack(t(secs), None, &mut out);
            out
        }
        fn shelve(&mut self, dur: u64, secs: f64) -> Vec<AlarmEvent> {
            let mut out = Vec::new();
            self.alarm
                .shelve(Duration::from_secs(dur), t(secs), None, &mut out);
            out
        }
        fn unshelve(&mut self, secs: f64) -> Vec<AlarmEvent> {
            let mut out = Vec::new();
            self.alarm.unshelve(t(secs), None, &mut out);
            out
        }
        fn state(&self) -> AlarmState {
            self.alarm.state()
        }
    }

    fn moves(events: &[AlarmEvent]) -> Vec<(AlarmState, AlarmState, Cause)> {
        events.iter().map(|e| (e.from, e.to, e.cause)).collect()
    }

    use AlarmState::*;

    #[test]
    fn on_delay_filters_short_excursions() {
        let mut r = Rig::new(10, 0);
        assert!(r.met(true, 0.0).is_empty());
        assert!(r.met(true, 9.9).is_empty());
        assert!(r.met(false, 9.95).is_empty(), "cleared before the delay");
        assert!(r.met(true, 10.0).is_empty(), "the delay restarts");
        assert!(r.tick(19.9).is_empty());
        let ev = r.tick(20.0);
        assert_eq!(moves(&ev), [(Normal, ActiveUnacked, Cause::Condition)]);
        assert!(ev[0].activation && ev[0].raise_work_order);
        assert_eq!(ev[0].at, t(20.0));
    }

    #[test]
    fn off_delay_holds_the_alarm() {
        let mut r = Rig::new(0, 30);
        assert_eq!(r.met(true, 0.0).len(), 1);
        assert!(r.met(false, 1.0).is_empty());
        assert!(r.met(true, 20.0).is_empty(), "back before the off-delay");
        assert!(r.met(false, 21.0).is_empty());
        assert!(r.tick(50.9).is_empty());
        let ev = r.tick(51.0);
        assert_eq!(
            moves(&ev),
            [(ActiveUnacked, ReturnedUnacked, Cause::Condition)]
        );
        assert!(!ev[0].activation);
        // Exactly one activation in all of that.
        assert_eq!(r.events.iter().filter(|e| e.activation).count(), 1);
    }

    #[test]
    fn ack_flows() {
        let mut r = Rig::new(0, 0);
        assert!(r.ack(0.0).is_empty(), "nothing to acknowledge");
        r.met(true, 1.0);
        let ev = r.ack(2.0);
        assert_eq!(moves(&ev), [(ActiveUnacked, ActiveAcked, Cause::Ack)]);
        assert!(r.ack(3.0).is_empty());
        let ev = r.met(false, 4.0);
        assert_eq!(moves(&ev), [(ActiveAcked, Normal, Cause::Condition)]);

        // Returned unacknowledged, then acknowledged.
        r.met(true, 5.0);
        let ev = r.met(false, 6.0);
        assert_eq!(
            moves(&ev),
            [(ActiveUnacked, ReturnedUnacked, Cause::Condition)]
        );
        let ev = r.ack(7.0);
        assert_eq!(moves(&ev), [(ReturnedUnacked, Normal, Cause::Ack)]);

        // Returned unacknowledged, then active again: a new activation.
        r.met(true, 100.0);
        r.met(false, 101.0);
        let ev = r.met(true, 102.0);
        assert_eq!(
            moves(&ev),
            [(ReturnedUnacked, ActiveUnacked, Cause::Condition)]
        );
        assert!(ev[0].activation);
    }

    #[test]
    fn shelve_unshelve_and_expiry() {
        let mut r = Rig::new(0, 0);
        r.met(true, 0.0);
        let ev = r.shelve(60, 1.0);
        let shelved = Shelved {
            until: t(61.0),
            active: true,
        };
        assert_eq!(moves(&ev), [(ActiveUnacked, shelved, Cause::Shelve)]);
        assert!(r.ack(2.0).is_empty(), "a shelved alarm takes no ack");
        // The condition clears and returns underneath: events with no work
        // order, no annunciation.
        let ev = r.met(false, 3.0);
        assert_eq!(
            ev[0].to,
            Shelved {
                until: t(61.0),
                active: false
            }
        );
        let ev = r.met(true, 4.0);
        assert!(ev[0].activation && !ev[0].raise_work_order);
        assert_eq!(r.state(), shelved);
        // Unshelving while active: back as unacknowledged.
        let ev = r.unshelve(5.0);
        assert_eq!(moves(&ev), [(shelved, ActiveUnacked, Cause::Unshelve)]);
        assert!(ev[0].activation && ev[0].raise_work_order);
        assert!(r.unshelve(6.0).is_empty());

        // Expiry while clear: back to normal by itself, on a tick.
        r.met(false, 10.0);
        r.ack(11.0);
        assert_eq!(r.state(), Normal);
        let ev = r.shelve(30, 12.0);
        assert_eq!(
            ev[0].to,
            Shelved {
                until: t(42.0),
                active: false
            }
        );
        // Re-shelving replaces the end.
        let ev = r.shelve(60, 20.0);
        assert_eq!(
            ev[0].to,
            Shelved {
                until: t(80.0),
                active: false
            }
        );
        assert!(r.tick(79.9).is_empty());
        let ev = r.tick(80.0);
        assert_eq!(
            moves(&ev),
            [(
                Shelved {
                    until: t(80.0),
                    active: false
                },
                Normal,
                Cause::ShelveExpired
            )]
        );
        assert!(!ev[0].activation);
    }

    #[test]
    fn shelf_expiry_comes_before_the_reading_that_reveals_it() {
        let mut r = Rig::new(0, 0);
        r.shelve(10, 0.0);
        // The first input after the end: expiry first, then the condition.
        let ev = r.met(true, 15.0);
        assert_eq!(
            moves(&ev),
            [
                (
                    Shelved {
                        until: t(10.0),
                        active: false
                    },
                    Normal,
                    Cause::ShelveExpired
                ),
                (Normal, ActiveUnacked, Cause::Condition)
            ]
        );
        assert!(ev[1].raise_work_order);
    }

    #[test]
    fn chattering_flag_and_quiet_recovery() {
        let mut r = Rig::new(0, 0);
        let mut wo = Vec::new();
        for i in 0..3 {
            let s = f64::from(i) * 10.0;
            let ev = r.met(true, s);
            wo.push(ev[0].raise_work_order);
            r.met(false, s + 1.0);
        }
        // The third activation within 60 s flags it and raises nothing.
        assert_eq!(wo, [true, true, false]);
        assert!(r.alarm.is_chattering());
        // It keeps its state machine running.
        let ev = r.met(true, 30.0);
        assert_eq!(ev[0].to, ActiveUnacked);
        assert!(ev[0].activation && !ev[0].raise_work_order && ev[0].chattering);
        r.met(false, 31.0);
        // Quiet for 120 s after the last activation (at 30 s) clears it.
        assert!(r.tick(149.9).is_empty());
        let ev = r.tick(150.0);
        assert_eq!(
            moves(&ev),
            [(ReturnedUnacked, ReturnedUnacked, Cause::ChatterCleared)]
        );
        assert!(!ev[0].chattering);
        let ev = r.met(true, 151.0);
        assert!(ev[0].raise_work_order);
    }

    /// Three activations at 0, 10, 20 s (1 s each): chattering from the
    /// third, which is returned by 21 s.
    fn chattering_rig() -> Rig {
        let mut r = Rig::new(0, 0);
        for i in 0..3 {
            let s = f64::from(i) * 10.0;
            r.met(true, s);
            r.met(false, s + 1.0);
        }
        assert!(r.alarm.is_chattering());
        assert_eq!(r.alarm.held_since(), None, "returned: nothing held");
        r
    }

    #[test]
    fn a_fault_still_active_when_chattering_clears_is_released_once() {
        let mut r = chattering_rig();
        // A real excursion while flagged: an activation, refused and held.
        let ev = r.met(true, 30.0);
        assert!(ev[0].activation && !ev[0].raise_work_order && ev[0].released.is_none());
        assert_eq!(r.alarm.held_since(), Some(t(30.0)));
        // Acknowledged: still the same fault, still held.
        r.ack(40.0);
        assert_eq!(r.alarm.held_since(), Some(t(30.0)));
        // Quiet for 120 s after 30 s, still active: released.
        assert!(r.tick(149.9).is_empty());
        let ev = r.tick(150.0);
        assert_eq!(
            moves(&ev),
            [(ActiveAcked, ActiveAcked, Cause::ChatterCleared)]
        );
        let e = &ev[0];
        assert!(!e.activation, "no new occurrence");
        assert_eq!(e.released, Some(t(30.0)), "when the fault began");
        assert!(e.raise_work_order && !e.chattering);
        assert_eq!(r.alarm.held_since(), None);
        // Nothing more for the same fault, nor when it returns.
        assert!(r.tick(500.0).is_empty());
        let ev = r.met(false, 501.0);
        assert!(!ev[0].raise_work_order && ev[0].released.is_none());
        // Exactly one request for a work order after the flag: the release.
        let asks: Vec<_> = r
            .events
            .iter()
            .filter(|e| e.raise_work_order && e.at >= t(20.0))
            .collect();
        assert_eq!(asks.len(), 1);
    }

    #[test]
    fn a_fault_that_clears_during_the_chatter_releases_nothing() {
        let mut r = chattering_rig();
        r.met(true, 30.0);
        assert!(r.alarm.held_since().is_some());
        r.met(false, 35.0);
        assert_eq!(r.alarm.held_since(), None);
        let ev = r.tick(150.0);
        assert_eq!(
            moves(&ev),
            [(ReturnedUnacked, ReturnedUnacked, Cause::ChatterCleared)]
        );
        assert!(ev[0].released.is_none() && !ev[0].raise_work_order);
    }

    #[test]
    fn a_rule_that_keeps_chattering_releases_nothing_until_it_settles() {
        let mut r = chattering_rig();
        // Every 30 s a new short activation: the quiet never comes.
        for i in 1..20 {
            let s = 20.0 + f64::from(i) * 30.0;
            let ev = r.met(true, s);
            assert!(!ev[0].raise_work_order);
            r.tick(s + 10.0);
            r.met(false, s + 15.0);
        }
        assert!(r.alarm.is_chattering());
        assert!(r.events.iter().all(|e| e.released.is_none()));
        // The last one stays: released once, after 120 s of quiet.
        r.met(true, 700.0);
        assert!(r.tick(819.0).is_empty());
        let ev = r.tick(820.0);
        assert_eq!(ev[0].released, Some(t(700.0)));
        assert_eq!(r.events.iter().filter(|e| e.released.is_some()).count(), 1);
    }

    #[test]
    fn a_shelved_fault_is_released_by_its_shelf_not_by_the_flag() {
        let mut r = chattering_rig();
        r.met(true, 30.0);
        r.shelve(300, 31.0);
        assert_eq!(r.alarm.held_since(), None, "the shelf takes over");
        // The flag clears while shelved: no release.
        let ev = r.tick(150.0);
        assert_eq!(ev[0].cause, Cause::ChatterCleared);
        assert!(ev[0].released.is_none() && !ev[0].raise_work_order);
        // The shelf's end re-announces it and asks for the work order.
        let ev = r.unshelve(160.0);
        assert!(ev[0].activation && ev[0].raise_work_order);

        // Unshelved while still chattering: held again, released later.
        let mut r = chattering_rig();
        r.met(true, 30.0);
        r.shelve(300, 31.0);
        let ev = r.unshelve(40.0);
        assert!(ev[0].activation && !ev[0].raise_work_order);
        assert_eq!(r.alarm.held_since(), Some(t(40.0)));
        let ev = r.tick(150.0);
        assert_eq!(ev[0].released, Some(t(40.0)));
        assert!(ev[0].raise_work_order);
    }

    #[test]
    fn a_hold_saved_before_holds_existed_is_rebuilt() {
        let mut r = chattering_rig();
        r.met(true, 30.0);
        let mut saved = r.alarm.save();
        assert_eq!(saved.held, Some(t(30.0)));
        let json = serde_json::to_string(&saved).unwrap();
        assert!(json.contains(r#""held":30000"#), "{json}");
        // The layout of a gateway that did not know holds.
        saved.held = None;
        let old = serde_json::to_string(&saved).unwrap();
        assert!(!old.contains("held"));
        let mut back = Alarm::new("r", timing(0, 0));
        back.restore(&serde_json::from_str(&old).unwrap());
        assert_eq!(back.held_since(), Some(t(30.0)));
        let mut out = Vec::new();
        back.tick(t(150.0), None, &mut out);
        assert_eq!(out[0].released, Some(t(30.0)));
        // Returned or not chattering: nothing to rebuild.
        let mut r = chattering_rig();
        r.met(true, 30.0);
        r.met(false, 31.0);
        let mut back = Alarm::new("r", timing(0, 0));
        back.restore(&r.alarm.save());
        assert_eq!(back.held_since(), None);
    }

    #[test]
    fn activations_spread_out_never_chatter() {
        let mut r = Rig::new(0, 0);
        for i in 0..10 {
            let s = f64::from(i) * 31.0;
            let ev = r.met(true, s);
            assert!(ev[0].raise_work_order, "activation {i}");
            r.met(false, s + 1.0);
        }
        assert!(!r.alarm.is_chattering());
    }

    #[test]
    fn the_clock_going_back_never_panics_and_restarts_delays() {
        let mut r = Rig::new(10, 10);
        r.met(true, 1000.0);
        // Back by 900 s: the on-delay restarts from 100 s.
        assert!(r.met(true, 100.0).is_empty());
        assert!(r.tick(109.0).is_empty());
        assert_eq!(r.tick(110.0).len(), 1);
        r.shelve(1, 5.0);
        r.tick(0.0);
        r.ack(0.0);
        r.unshelve(0.0);
        assert_eq!(r.state(), ActiveUnacked);
    }

    #[test]
    fn save_and_restore_mid_delay_shelved_and_chattering() {
        let trig = Trigger {
            value: Value::Float(1.0),
            limit: None,
        };
        // Script of inputs; the restart happens after `split` of them.
        #[derive(Clone, Copy)]
        enum In {
            Met(bool, f64),
            Tick(f64),
            Ack(f64),
            Shelve(u64, f64),
        }
        let script = [
            In::Met(true, 0.0),
            In::Met(true, 5.0), // mid on-delay (10 s)
            In::Tick(10.0),
            In::Met(false, 11.0),
            In::Tick(21.0),
            In::Met(true, 22.0),
            In::Tick(32.0),
            In::Met(false, 33.0),
            In::Tick(43.0),
            In::Met(true, 44.0),
            In::Tick(54.0), // third activation: chattering
            In::Shelve(100, 55.0),
            In::Met(false, 56.0),
            In::Tick(66.0),
            In::Ack(70.0),
            In::Met(true, 80.0), // mid on-delay while shelved and chattering
            In::Tick(90.0),
            In::Tick(155.0), // shelf expires
            In::Ack(160.0),
            In::Tick(300.0), // chattering clears
            In::Met(false, 301.0),
            In::Tick(311.0),
            In::Met(true, 320.0), // three activations in 60 s from 330 s
            In::Tick(330.0),
            In::Met(false, 331.0),
            In::Tick(341.0),
            In::Met(true, 350.0),
            In::Tick(360.0),
            In::Met(false, 361.0),
            In::Tick(371.0),
            In::Met(true, 380.0),
            In::Tick(390.0), // third activation in 60 s: chattering, held
            In::Ack(400.0),
            In::Tick(510.0), // quiet 120 s, still active: released
            In::Met(false, 511.0),
        ];
        let run = |a: &mut Alarm, input: In| {
            let mut out = Vec::new();
            match input {
                In::Met(m, s) => a.update(m, t(s), Some(&trig), &mut out),
                In::Tick(s) => a.tick(t(s), Some(&trig), &mut out),
                In::Ack(s) => a.ack(t(s), Some(&trig), &mut out),
                In::Shelve(d, s) => a.shelve(Duration::from_secs(d), t(s), None, &mut out),
            }
            out
        };
        let mut straight = Alarm::new("r", timing(10, 10));
        let reference: Vec<Vec<AlarmEvent>> =
            script.iter().map(|&i| run(&mut straight, i)).collect();
        assert!(reference.iter().flatten().any(|e| e.chattering));
        assert!(reference.iter().flatten().any(|e| e.released.is_some()));
        for split in 0..=script.len() {
            let mut first = Alarm::new("r", timing(10, 10));
            for &i in &script[..split] {
                run(&mut first, i);
            }
            let json = serde_json::to_string(&first.save()).unwrap();
            let saved: SavedAlarm = serde_json::from_str(&json).unwrap();
            let mut second = Alarm::new("r", timing(10, 10));
            second.restore(&saved);
            for (k, &i) in script.iter().enumerate().skip(split) {
                assert_eq!(run(&mut second, i), reference[k], "split {split}, step {k}");
            }
        }
    }

    #[test]
    fn saved_state_is_readable_json() {
        let mut a = Alarm::new("r", timing(0, 0));
        let mut out = Vec::new();
        a.shelve(Duration::from_secs(1), Timestamp(1_000), None, &mut out);
        let json = serde_json::to_string(&a.save()).unwrap();
        assert_eq!(
            json,
            r#"{"state":{"state":"shelved","until":2000,"active":false},"raw":false,"active":false,"chattering":false,"changed_at":1000}"#
        );
    }
}

//! Inbound messages acknowledged once handled: what the inbound channel
//! carries ([`Inbound`], with its [`Handled`] token) and the receipt order
//! the PUBACKs keep ([`Receipts`], pure).
//!
//! The forwarder gives each QoS 1 message it passes on a token; the
//! pipeline completes it ([`Handled::done`]) once the request is applied
//! and the store has committed what that produced. A token dropped
//! without `done` (the pipeline stopped or failed first) means "not
//! handled". The forwarder never touches the store for this: it only
//! waits on the tokens, in order.
//!
//! MQTT 3.1.1 §4.6 asks a client to send its PUBACKs in the order the
//! PUBLISHes arrived (and rumqttd disconnects a client that does not), so
//! the receipts are a FIFO: a completed message is acknowledged only when
//! every message received before it on the same connection is.

use std::collections::VecDeque;

use rumqttc::QoS;
use tokio::sync::oneshot;

use crate::contract::Request;

/// What the inbound channel carries: a request read from a message
/// received on an inbound topic, or made by the status page's actions,
/// and the token to complete once it is handled.
#[derive(Debug)]
pub struct Inbound {
    /// What is asked.
    pub request: Request,
    /// Completed once the request is applied and what it produced is
    /// committed; dropping it says the request was not handled.
    pub handled: Handled,
}

impl Inbound {
    /// A request with nothing to acknowledge to a broker (the status
    /// page's actions, a QoS 0 message).
    pub fn local(request: Request) -> Inbound {
        Inbound {
            request,
            handled: Handled(None),
        }
    }

    /// A request whose handling the returned receiver reports: `Ok` once
    /// [`Handled::done`] is called, an error when the token is dropped.
    pub fn tracked(request: Request) -> (Inbound, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (
            Inbound {
                request,
                handled: Handled(Some(tx)),
            },
            rx,
        )
    }
}

/// The token of one inbound request: [`done`](Self::done) once the
/// request is applied and what it produced is committed (or it was judged
/// to produce nothing). Dropped without `done`, the message is not
/// acknowledged on this connection.
#[derive(Debug)]
pub struct Handled(Option<oneshot::Sender<()>>);

impl Handled {
    /// Someone waits for this request's handling (a broker message to
    /// acknowledge); `false` for a local request.
    pub fn is_tracked(&self) -> bool {
        self.0.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// The request is handled and its effects are committed.
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            // The forwarder may be gone (a stop, a reconnect): then the
            // broker sends the message again, which is harmless.
            let _ = tx.send(());
        }
    }
}

/// One received QoS 1/2 message, in receipt order.
#[derive(Debug)]
struct Receipt<W> {
    pkid: u16,
    qos: QoS,
    /// What to wait for; `None` once handled (or when there was nothing
    /// to handle: a malformed message).
    waiting: Option<W>,
}

/// What [`Receipts::settle`]'s check says of a waiting receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Handled: it may be acknowledged in its turn.
    Done,
    /// Not yet (or never, on this connection): it and everything after
    /// it wait.
    Waiting,
}

/// The messages of one connection not acknowledged yet, in receipt order.
/// `W` is what the forwarder waits on for each (its token's receiver).
#[derive(Debug)]
pub(super) struct Receipts<W> {
    entries: VecDeque<Receipt<W>>,
}

impl<W> Default for Receipts<W> {
    fn default() -> Self {
        Receipts {
            entries: VecDeque::new(),
        }
    }
}

impl<W> Receipts<W> {
    /// A message received with packet id `pkid`: `waiting` is what to
    /// wait for, `None` when it is already judged (nothing to apply).
    pub(super) fn receive(&mut self, pkid: u16, qos: QoS, waiting: Option<W>) {
        self.entries.push_back(Receipt { pkid, qos, waiting });
    }

    /// Messages received and not acknowledged yet.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What the oldest message waits on, if it waits.
    pub(super) fn front_mut(&mut self) -> Option<&mut W> {
        self.entries.front_mut()?.waiting.as_mut()
    }

    /// The oldest message is handled.
    pub(super) fn front_done(&mut self) {
        if let Some(r) = self.entries.front_mut() {
            r.waiting = None;
        }
    }

    /// Pops, in receipt order, every message that may be acknowledged now,
    /// at most `limit`: the handled ones before the first that waits.
    /// `check` looks at a waiting one when it reaches the front (and may
    /// change it, e.g. pass its request on again).
    pub(super) fn settle(
        &mut self,
        limit: usize,
        mut check: impl FnMut(&mut W) -> Check,
    ) -> Vec<(u16, QoS)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(front) = self.entries.front_mut() else {
                break;
            };
            if let Some(w) = front.waiting.as_mut() {
                match check(w) {
                    Check::Done => front.waiting = None,
                    Check::Waiting => break,
                }
            }
            if let Some(r) = self.entries.pop_front() {
                out.push((r.pkid, r.qos));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{OperatorAction, Who};

    /// A receipt that waits on a flag the test sets.
    type Flag = std::rc::Rc<std::cell::Cell<bool>>;

    fn flag() -> Flag {
        Flag::default()
    }

    fn check(f: &mut Flag) -> Check {
        if f.get() { Check::Done } else { Check::Waiting }
    }

    fn pkids(acks: Vec<(u16, QoS)>) -> Vec<u16> {
        acks.into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn acks_go_out_in_receipt_order_whatever_the_completion_order() {
        let mut r = Receipts::default();
        let (a, b, c) = (flag(), flag(), flag());
        r.receive(7, QoS::AtLeastOnce, Some(a.clone()));
        r.receive(3, QoS::AtLeastOnce, Some(b.clone()));
        r.receive(9, QoS::AtLeastOnce, Some(c.clone()));
        c.set(true);
        b.set(true);
        assert!(
            r.settle(usize::MAX, check).is_empty(),
            "later ones wait for the first"
        );
        assert_eq!(r.len(), 3);
        a.set(true);
        assert_eq!(pkids(r.settle(usize::MAX, check)), [7, 3, 9]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn judged_messages_are_acked_in_their_turn() {
        let mut r = Receipts::default();
        let a = flag();
        r.receive(1, QoS::AtLeastOnce, None);
        r.receive(2, QoS::AtLeastOnce, Some(a.clone()));
        r.receive(3, QoS::AtLeastOnce, None);
        assert_eq!(
            pkids(r.settle(usize::MAX, check)),
            [1],
            "up to the first waiting"
        );
        assert!(r.front_mut().is_some());
        r.front_done();
        assert_eq!(pkids(r.settle(usize::MAX, check)), [2, 3]);
        assert!(r.front_mut().is_none());
    }

    #[test]
    fn a_message_never_handled_holds_the_later_ones_back() {
        let mut r = Receipts::default();
        let (stuck, later) = (flag(), flag());
        r.receive(1, QoS::AtLeastOnce, Some(stuck));
        r.receive(2, QoS::AtLeastOnce, Some(later.clone()));
        later.set(true);
        for _ in 0..3 {
            assert!(r.settle(usize::MAX, check).is_empty());
        }
        assert_eq!(r.len(), 2, "both are delivered again after a reconnect");
    }

    #[test]
    fn settle_hands_out_at_most_the_limit_and_keeps_the_rest() {
        let mut r: Receipts<Flag> = Receipts::default();
        for p in 1..=5 {
            r.receive(p, QoS::AtLeastOnce, None);
        }
        assert_eq!(pkids(r.settle(2, check)), [1, 2]);
        assert_eq!(pkids(r.settle(2, check)), [3, 4]);
        assert_eq!(pkids(r.settle(2, check)), [5]);
    }

    #[test]
    fn a_token_reports_done_or_dropped() {
        let request = Request::Alarm {
            rule: "hot".into(),
            action: OperatorAction::Ack(Who::default()),
        };
        let (inbound, mut rx) = Inbound::tracked(request.clone());
        assert!(inbound.handled.is_tracked());
        inbound.handled.done();
        assert_eq!(rx.try_recv(), Ok(()));

        let (inbound, mut rx) = Inbound::tracked(request.clone());
        drop(inbound);
        assert_eq!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "dropped: not handled"
        );

        let local = Inbound::local(request);
        assert!(!local.handled.is_tracked());
        local.handled.done();
    }
}

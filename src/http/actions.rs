//! Acknowledge and shelve over HTTP: the status page's buttons.
//!
//! ```text
//! POST /api/alarms/{rule}/ack      body: empty, or {"by": "...", "note": "..."}
//! POST /api/alarms/{rule}/shelve   body: {"duration": "2h"} or {"unshelve": true}
//! Authorization: Bearer <the token of [http] token_file>
//! ```
//!
//! A request becomes exactly what an operator would publish on
//! `alarms/{rule}/ack` or `alarms/{rule}/shelve` and goes into the same
//! inbound channel as the MQTT messages, so the pipeline judges it with the
//! same code: history, alarm state, MQTT messages and work orders cannot
//! differ by the way the request came in. What this file adds is the gate:
//!
//! * actions are off unless `[http] allow_actions = true` (403), and then
//!   need the bearer token (401); the token is compared in constant time;
//! * the request is read and checked here, so the caller gets a clear
//!   answer (404 for an unknown rule, 409 for acknowledging a normal alarm,
//!   400 for a payload the pipeline would ignore) instead of a silent
//!   nothing;
//! * a JSON body without `by` gets `"by": "http <peer address>"`, so the
//!   history says where the button was pressed.
//!
//! The answer is 202: the pipeline applies the request within its next
//! step, and the page sees the new state in its event stream.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as JsonValue, json};
use tokio::sync::{mpsc, watch};

use super::HttpState;
use crate::command::WriteOrder;
use crate::config::{Config, InboundAuth, Secret};
use crate::contract::inbound::{self, OperatorAction, Request as InboundRequest, Who};
use crate::mqtt::forwarder::Inbound;

/// The largest request body read (an ack note, a shelve request).
pub const MAX_BODY: usize = 4096;

/// Where operator requests go for the running configuration. A reload
/// sends a new one (the topic prefix and the rules may have changed).
#[derive(Debug, Clone)]
pub struct ActionRoute {
    /// Every configured rule's name.
    pub rules: Arc<HashSet<String>>,
    /// The pipeline's inbound channel (shared with the forwarder).
    pub inbound: mpsc::Sender<Inbound>,
    /// Who may push work-order statuses (`[[cmms]] inbound_*`): the
    /// connector's name and its credential.
    pub cmms: Arc<Vec<(String, InboundAuth)>>,
    /// The write desk.
    pub writes: mpsc::Sender<WriteOrder>,
}

impl ActionRoute {
    /// The route of `config`'s pipeline.
    pub fn of(
        config: &Config,
        inbound: mpsc::Sender<Inbound>,
        writes: mpsc::Sender<WriteOrder>,
    ) -> ActionRoute {
        ActionRoute {
            writes,
            rules: Arc::new(config.rules.iter().map(|r| r.name.clone()).collect()),
            inbound,
            cmms: Arc::new(
                config
                    .cmms
                    .iter()
                    .filter_map(|c| Some((c.name.clone(), c.inbound.clone()?)))
                    .collect(),
            ),
        }
    }
}

/// What actions need: the token and the current route. Present only when
/// `[http] allow_actions = true`.
#[derive(Debug, Clone)]
pub struct Actions {
    /// The bearer token (`[http] token_file`).
    pub token: Secret,
    /// The route of the running configuration.
    pub route: watch::Receiver<ActionRoute>,
}

/// An operator request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ack,
    Shelve,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ack => "ack",
            Kind::Shelve => "shelve",
        }
    }
}

pub(super) async fn ack(
    State(state): State<HttpState>,
    Path(rule): Path<String>,
    request: Request,
) -> Response {
    act(state, rule, Kind::Ack, request).await
}

pub(super) async fn shelve(
    State(state): State<HttpState>,
    Path(rule): Path<String>,
    request: Request,
) -> Response {
    act(state, rule, Kind::Shelve, request).await
}

/// An action's caller once past the gate: where it called from, what it
/// sent, and the route of the running configuration.
pub(super) struct Admitted {
    /// The caller's IP address, when known.
    pub peer: Option<String>,
    /// The request body (at most [`MAX_BODY`]).
    pub body: Bytes,
    /// Where requests go now.
    pub route: ActionRoute,
}

/// The gate of every operator action (acknowledge, shelve, write): off
/// unless `[http] allow_actions` (403, with `off` saying what to do
/// instead), then the bearer token (401, logged with `subject`), then a
/// body of at most [`MAX_BODY`] (413).
pub(super) async fn admit(
    state: &HttpState,
    request: Request,
    off: &str,
    subject: &str,
) -> Result<Admitted, Response> {
    let Some(actions) = &state.actions else {
        return Err(refuse(StatusCode::FORBIDDEN, off));
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if !authorized(request.headers(), &actions.token) {
        tracing::warn!(
            peer = peer.as_deref().unwrap_or("unknown"),
            subject,
            "HTTP action refused: missing or wrong bearer token"
        );
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "a bearer token is needed: Authorization: Bearer <the token in [http] token_file>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"fieldgate\""),
        );
        return Err(response);
    }
    let body = read_body(request).await?;
    Ok(Admitted {
        peer,
        body,
        route: actions.route.borrow().clone(),
    })
}

/// The body, at most [`MAX_BODY`] bytes (413 beyond).
pub(super) async fn read_body(request: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            )
        })
}

async fn act(state: HttpState, rule: String, kind: Kind, request: Request) -> Response {
    let admitted = admit(
        &state,
        request,
        "actions over HTTP are off: set [http] allow_actions = true and token_file to \
         acknowledge and shelve from the status page (or publish on the MQTT ack and \
         shelve topics)",
        &format!("{} {rule}", kind.as_str()),
    )
    .await;
    let Admitted { peer, body, route } = match admitted {
        Ok(a) => a,
        Err(response) => return response,
    };
    if !route.rules.contains(&rule) {
        return refuse(StatusCode::NOT_FOUND, &format!("no rule named {rule:?}"));
    }
    let by = format!("http {}", peer.as_deref().unwrap_or("unknown"));
    let action = match action(kind, &body, &by) {
        Ok(a) => a,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    if kind == Kind::Ack
        && !state
            .telemetry()
            .rules()
            .alarms
            .iter()
            .any(|a| a.rule == rule)
    {
        return refuse(
            StatusCode::CONFLICT,
            &format!("alarm {rule:?} is normal: there is nothing to acknowledge"),
        );
    }
    let request = InboundRequest::Alarm {
        rule: rule.clone(),
        action,
    };
    // Nothing to acknowledge: the 202 already answered the caller.
    match route.inbound.try_send(Inbound::local(request)) {
        Ok(()) => {
            tracing::info!(%rule, action = kind.as_str(), %by, "operator request over HTTP");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "accepted": true, "rule": rule, "action": kind.as_str() })),
            )
                .into_response()
        }
        Err(e) => not_taken(&e),
    }
}

/// The answer when the pipeline cannot take a request now.
pub(super) fn not_taken<T>(e: &mpsc::error::TrySendError<T>) -> Response {
    match e {
        mpsc::error::TrySendError::Full(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is busy with other requests; try again",
        ),
        mpsc::error::TrySendError::Closed(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the rules are restarting (a reload or a stop); try again",
        ),
    }
}

/// The operator's request in the body, read as the same message on MQTT
/// would be, signed `by` the peer when it does not say who sent it.
fn action(kind: Kind, body: &Bytes, by: &str) -> Result<OperatorAction, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let text = text.trim();
    let action = match kind {
        // An empty body is a plain click. (On MQTT an empty ack is ignored:
        // it is a retained ack being cleared. Over HTTP it cannot be that.)
        Kind::Ack if text.is_empty() => OperatorAction::Ack(Who::default()),
        Kind::Ack => {
            if !matches!(
                serde_json::from_str::<JsonValue>(text),
                Ok(JsonValue::Object(_))
            ) {
                return Err(
                    "the ack body must be empty or a JSON object like {\"by\":\"…\",\"note\":\"…\"}"
                        .into(),
                );
            }
            inbound::ack(text.as_bytes())
                .ok_or_else(|| "the ack body is not understood".to_string())?
        }
        // A bare duration (`2h`, `unshelve`) is read as on MQTT.
        Kind::Shelve => inbound::shelve(text.as_bytes()).map_err(|e| e.to_string())?,
    };
    Ok(signed(action, by))
}

/// `action` with `by` filled in when the operator did not say who they are.
fn signed(mut action: OperatorAction, by: &str) -> OperatorAction {
    let who = match &mut action {
        OperatorAction::Ack(who) | OperatorAction::Unshelve(who) => who,
        OperatorAction::Shelve { who, .. } => who,
    };
    if who.by.is_none() {
        *who = Who::new(Some(by.to_owned()), who.note.take());
    }
    action
}

/// The request carries the token as `Authorization: Bearer <token>`.
pub(super) fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim_ascii(), token.expose())
}

/// Equality whose time does not depend on where two equal-length byte
/// strings differ (the length is not secret: it is in the docs' advice).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(action: &OperatorAction) -> &Who {
        match action {
            OperatorAction::Ack(who) | OperatorAction::Unshelve(who) => who,
            OperatorAction::Shelve { who, .. } => who,
        }
    }

    #[test]
    fn an_empty_ack_is_a_click_signed_by_the_peer() {
        let a = action(Kind::Ack, &Bytes::from_static(b""), "http 10.0.0.5").unwrap();
        assert!(matches!(a, OperatorAction::Ack(_)));
        assert_eq!(who(&a).by.as_deref(), Some("http 10.0.0.5"));
    }

    #[test]
    fn an_operator_who_says_who_they_are_is_kept() {
        let body = Bytes::from_static(br#"{"by":"ana","note":"checked"}"#);
        let a = action(Kind::Ack, &body, "http 10.0.0.5").unwrap();
        assert_eq!(who(&a).by.as_deref(), Some("ana"));
        assert_eq!(who(&a).note.as_deref(), Some("checked"));
    }

    #[test]
    fn shelve_bodies_are_checked_as_on_mqtt() {
        let a = action(
            Kind::Shelve,
            &Bytes::from_static(br#"{"duration":"2h"}"#),
            "x",
        )
        .unwrap();
        assert!(
            matches!(a, OperatorAction::Shelve { duration, .. } if duration == std::time::Duration::from_secs(7200))
        );
        assert_eq!(who(&a).by.as_deref(), Some("x"));
        assert!(action(Kind::Shelve, &Bytes::from_static(b"2h"), "x").is_ok());
        assert!(matches!(
            action(Kind::Shelve, &Bytes::from_static(b"unshelve"), "x"),
            Ok(OperatorAction::Unshelve(_))
        ));
        let e = action(Kind::Shelve, &Bytes::from_static(b"{}"), "x").unwrap_err();
        assert!(e.contains("duration"), "{e}");
        assert!(action(Kind::Shelve, &Bytes::from_static(b""), "x").is_err());
        assert!(
            action(
                Kind::Shelve,
                &Bytes::from_static(br#"{"duration":"soon"}"#),
                "x"
            )
            .is_err()
        );
        assert!(action(Kind::Ack, &Bytes::from_static(b"[1]"), "x").is_err());
        assert!(action(Kind::Ack, &Bytes::from_static(b"\xff"), "x").is_err());
    }

    #[test]
    fn the_token_must_match_exactly() {
        let token = Secret::new("s3cret-token");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-token"),
        );
        assert!(authorized(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-tokeN"),
        );
        assert!(!authorized(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(!authorized(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret-token"),
        );
        assert!(!authorized(&h, &token));
    }
}

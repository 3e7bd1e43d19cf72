//! `POST /api/workorders/{id}/status`: a CMMS (or its automation) pushes
//! a work order's status over HTTP instead of MQTT. The body is the same
//! JSON as on the MQTT status topic (`{"status": "closed", "ref": …}`),
//! read by the same code, and becomes the same typed request. Allowed
//! only to a caller holding a connector's inbound credential
//! (`[[cmms]] inbound_token_file`: `Authorization: Bearer`, or
//! `inbound_secret_file`: `X-Fieldgate-Signature: sha256=<hex HMAC-SHA256
//! of the body>`), so a status page visitor cannot close work orders.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::HttpState;
use super::actions::{authorized, not_taken, read_body, refuse};
use crate::config::InboundAuth;
use crate::contract::inbound::{self, MAX_TEXT, Request as InboundRequest};
use crate::mqtt::forwarder::Inbound;

/// The header of an HMAC-signed push.
pub const SIGNATURE_HEADER: &str = "x-fieldgate-signature";

pub(super) async fn push(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Some(route) = state.status_route.as_ref().map(|r| r.borrow().clone()) else {
        return refuse(StatusCode::NOT_FOUND, "no status route");
    };
    if route.cmms.is_empty() {
        return refuse(
            StatusCode::FORBIDDEN,
            "status pushes are off: give a [[cmms]] section inbound_token_file or inbound_secret_file",
        );
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let headers = request.headers().clone();
    let body = match read_body(request).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(connector) = route
        .cmms
        .iter()
        .find(|(_, auth)| allowed(auth, &headers, &body))
        .map(|(name, _)| name.clone())
    else {
        tracing::warn!(
            peer = peer.as_deref().unwrap_or("unknown"),
            "work-order status push refused: no connector's token or signature matches"
        );
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a connector's credential is needed: Authorization: Bearer <inbound token>, or X-Fieldgate-Signature: sha256=<HMAC-SHA256 of the body>",
        );
    };
    let id: String = id.chars().take(MAX_TEXT).collect();
    let mut update = match inbound::work_order_status(&id, &body) {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(StatusCode::BAD_REQUEST, "the body is empty"),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // The open work orders as the rules stage last published them: an
    // unknown id is told to the caller rather than dropped in a log line.
    if !state
        .telemetry()
        .rules()
        .work_orders
        .iter()
        .any(|w| w.id == id)
    {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("no open work order {id:?} (never raised, or already closed)"),
        );
    }
    if update.by.is_none() {
        update.by = Some(connector.clone());
    }
    let status = update.status.as_str();
    let request = InboundRequest::WorkOrderStatus {
        id: id.clone(),
        update,
        retained: false,
    };
    let (message, handled) = Inbound::tracked(request);
    if let Err(e) = route.inbound.try_send(message) {
        return not_taken(&e);
    }
    // Answered once applied and committed, so a 200 means the gateway has
    // it.
    match tokio::time::timeout(std::time::Duration::from_secs(10), handled).await {
        Ok(Ok(())) => {
            tracing::info!(%id, status, %connector, "work-order status pushed over HTTP");
            (
                StatusCode::OK,
                axum::Json(json!({ "applied": true, "id": id, "status": status })),
            )
                .into_response()
        }
        Ok(Err(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway could not commit the status (its store is failing); try again",
        ),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway did not apply the status in time; try again",
        ),
    }
}

/// Whether the request carries `auth`.
fn allowed(auth: &InboundAuth, headers: &HeaderMap, body: &[u8]) -> bool {
    match auth {
        InboundAuth::Token(token) => authorized(headers, token),
        InboundAuth::Hmac(secret) => {
            let Some(given) = headers
                .get(SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim())
                .map(|v| v.strip_prefix("sha256=").unwrap_or(v))
            else {
                return false;
            };
            let Some(given) = from_hex(given) else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose()) else {
                return false;
            };
            mac.update(body);
            // Constant time.
            mac.verify_slice(&given).is_ok()
        }
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn signatures_are_checked_over_the_body() {
        let secret = Secret::new(b"s3cret".to_vec());
        let body = br#"{"status":"closed"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, format!("sha256={hex}").parse().unwrap());
        let auth = InboundAuth::Hmac(secret);
        assert!(allowed(&auth, &headers, body));
        assert!(!allowed(&auth, &headers, br#"{"status":"cancelled"}"#));
        headers.insert(SIGNATURE_HEADER, "sha256=zz".parse().unwrap());
        assert!(!allowed(&auth, &headers, body));
    }
}

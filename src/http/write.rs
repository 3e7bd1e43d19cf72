//! Write-back over HTTP: the status page's write dialog.
//!
//! ```text
//! POST /api/tags/{device}/{tag}/write   body: {"v": 42.5, "by": "…", "id": "…"}
//! Authorization: Bearer <the token of [http] token_file>
//! ```
//!
//! The body is the MQTT command's payload, read by the same parser, and
//! the command goes to the same write desk: limits, rate, history and the
//! result message cannot differ by the way the command came in. What this
//! file adds is the gate of every HTTP action (`[http] allow_actions`,
//! then the bearer token) and a synchronous answer: the caller waits for
//! the result (the page shows it), up to [`ANSWER_WAIT`].
//!
//! The page asks for confirmation before it posts (value, tag, current
//! value, limits): this endpoint is for people and scripts that mean it.
//!
//! | result                          | status |
//! |---------------------------------|--------|
//! | `verified`, `written`           | 200    |
//! | rejected: unknown tag           | 404    |
//! | rejected: bad payload, wrong type | 400  |
//! | rejected: busy                  | 503    |
//! | rejected: any other reason      | 409    |
//! | `unknown`                       | 504    |
//!
//! The body of every answer from the desk is the result payload of
//! `cmd/{device}/{tag}/result` (`docs/schemas/write-result.json`).

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::actions::{Admitted, admit, refuse};
use crate::command::{Delivery, RejectReason, Source, WriteOrder, WriteResult};
use crate::contract::command::{read_command, report_json};

/// How long the caller waits for the result: a write and its read-back
/// take a few requests, each bounded by the device's timeout, behind at
/// most one poll under way.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn write(
    State(state): State<HttpState>,
    Path((device, tag)): Path<(String, String)>,
    request: Request,
) -> Response {
    let admitted = admit(
        &state,
        request,
        "actions over HTTP are off: set [http] allow_actions = true and token_file to \
         write from the status page (or publish on the MQTT cmd topics)",
        &format!("write {device}/{tag}"),
    )
    .await;
    let Admitted { peer, body, route } = match admitted {
        Ok(a) => a,
        Err(response) => return response,
    };
    let mut command = read_command(&device, &tag, &body, Delivery::Live, SystemTime::now());
    command.source = Source::Http;
    if command.by.is_none() {
        command.by = Some(format!("http {}", peer.as_deref().unwrap_or("unknown")));
    }
    let (order, answer) = WriteOrder::waited(command);
    if let Err(e) = route.writes.try_send(order) {
        return match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the write desk is busy with other commands; try again",
            ),
            tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                refuse(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping")
            }
        };
    }
    let report = match tokio::time::timeout(ANSWER_WAIT, answer).await {
        Ok(Ok(report)) => report,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the write desk stopped before answering (the gateway is stopping)",
            );
        }
        Err(_) => {
            // The desk still records the result; the caller finds it in
            // `fieldgate writes` or on the result topic.
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "no result within {}s; see `fieldgate writes` or the result topic",
                    ANSWER_WAIT.as_secs()
                ),
            );
        }
    };
    let status = match &report.result {
        WriteResult::Verified | WriteResult::Written { .. } => StatusCode::OK,
        WriteResult::Unknown(_) => StatusCode::GATEWAY_TIMEOUT,
        WriteResult::Rejected(reason) => match reason {
            RejectReason::UnknownTag { .. } => StatusCode::NOT_FOUND,
            RejectReason::BadPayload(_) | RejectReason::WrongType(_) => StatusCode::BAD_REQUEST,
            RejectReason::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        },
    };
    (status, axum::Json(report_json(&report))).into_response()
}

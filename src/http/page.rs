//! The status page: one HTML file, one stylesheet and one script, compiled
//! into the binary (the plant network has no internet, and a gateway must
//! not depend on files beside it). Plain HTML, CSS and JavaScript with no
//! library, so building the crate needs no Node toolchain; about 54 KB in
//! all.
//!
//! The page reads `/api/events` (see [`events`](super::events)) and posts
//! acknowledgements and shelve requests to `/api/alarms/…`, writes to
//! `/api/tags/…/write`
//! ([`actions`](super::actions)). Its headers forbid framing (a button
//! that acknowledges alarms must not be clickjacked) and any script,
//! style or connection from elsewhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_CSS: &str = include_str!("page/app.css");
const APP_JS: &str = include_str!("page/app.js");

/// `Content-Security-Policy` of the page: everything from this server,
/// nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub(super) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub(super) async fn css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

pub(super) async fn js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated at each load: after an upgrade the page and the gateway
    // must agree.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

//! One HTTP exchange as the pure vendor code sees it: the request it
//! wants sent, the answer it reads, and what a failed answer means
//! (retry later, or park: the CMMS refused this work order). No I/O: the
//! delivery task sends the requests (`client`).

use crate::rules::WoStatus;

/// The HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A request to send. Headers carry the credentials: a [`Request`] is
/// never logged whole (its `Debug` leaves the header values out).
#[derive(Clone, PartialEq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// The full URL, query included (already percent-encoded).
    pub url: String,
    /// Headers, in order (`Content-Type` included when there is a body).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// What the CMMS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body (bounded by the client at [`MAX_ANSWER`]).
    pub body: Vec<u8>,
}

/// The longest answer body read; the rest is dropped.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// A work order the CMMS has: its reference and, when the answer said,
/// its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The CMMS's own reference (Maximo's `wonum`, MaintainX's and
    /// UpKeep's `id`), as text.
    pub reference: String,
    /// Its status, mapped.
    pub status: Option<CmmsStatus>,
}

/// A CMMS's status, mapped to fieldgate's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmmsStatus {
    /// Received, waiting or approved: fieldgate's `accepted`.
    Accepted,
    /// Work started: `in_progress`.
    InProgress,
    /// Done (completed or closed): `closed`.
    Closed,
    /// Cancelled in the CMMS: `cancelled` (the gateway frees the slot as
    /// for `closed`).
    Cancelled,
}

impl CmmsStatus {
    /// The status fieldgate's work-order book takes.
    pub fn wo_status(&self) -> WoStatus {
        match self {
            CmmsStatus::Accepted => WoStatus::Accepted,
            CmmsStatus::InProgress => WoStatus::InProgress,
            CmmsStatus::Closed => WoStatus::Closed,
            CmmsStatus::Cancelled => WoStatus::Cancelled,
        }
    }
}

/// Why an exchange did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It may pass later (5xx, 408, 429, a timeout, a refused
    /// connection, an answer that cannot be read): retried with backoff.
    Retry(String),
    /// The CMMS refused it (another 4xx, or fieldgate cannot build the
    /// request, e.g. an asset with no CMMS id): parked with this text
    /// until a reload.
    Park(String),
}

impl Failure {
    /// The text (for logs, the status page and the store).
    pub fn text(&self) -> &str {
        match self {
            Failure::Retry(t) | Failure::Park(t) => t,
        }
    }
}

/// Longest error text kept from an answer.
pub const MAX_ERROR_TEXT: usize = 300;

/// What a non-2xx answer means: 408, 425, 429 and 5xx may pass, any
/// other 4xx is the CMMS refusing the request; `detail` is the vendor's
/// error text found in the body (each vendor knows its error shape), or
/// the start of the body.
pub fn failure(answer: &Answer, detail: Option<String>) -> Failure {
    let detail = detail.unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    let detail: String = detail.trim().chars().take(MAX_ERROR_TEXT).collect();
    let text = if detail.is_empty() {
        format!("HTTP {}", answer.status)
    } else {
        format!("HTTP {}: {detail}", answer.status)
    };
    match answer.status {
        408 | 425 | 429 | 500..=599 => Failure::Retry(text),
        _ => Failure::Park(text),
    }
}

/// Whether the answer is a success (2xx).
pub fn is_success(answer: &Answer) -> bool {
    (200..300).contains(&answer.status)
}

/// Appends `value` percent-encoded for a URL query or path segment
/// (RFC 3986 unreserved characters stay).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base` and `path` joined with exactly one `/`.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn server_errors_are_retried_and_refusals_parked() {
        assert!(matches!(failure(&answer(503, ""), None), Failure::Retry(_)));
        assert!(matches!(failure(&answer(429, ""), None), Failure::Retry(_)));
        let parked = failure(&answer(400, "bad asset"), None);
        assert_eq!(parked, Failure::Park("HTTP 400: bad asset".into()));
        let long = "x".repeat(5000);
        assert!(failure(&answer(400, &long), None).text().len() < 400);
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("a b/c\"d"), "a%20b%2Fc%22d");
        assert_eq!(join("http://h/x/", "/v1/y"), "http://h/x/v1/y");
    }
}

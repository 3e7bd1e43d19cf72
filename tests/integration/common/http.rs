//! A minimal HTTP/1.1 GET over a plain `TcpStream`, enough for the
//! gateway's local endpoints: no client crate needed. Bounded: every call
//! gives up after 10 s.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` with `Connection: close`; `Err` when nothing listens or the
/// answer is not HTTP.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, &format!("GET {path}"), request).await
}

/// Sends `request` and reads the answer to the end (at most 10 s).
async fn exchange(addr: SocketAddr, what: &str, request: String) -> Result<Response, String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        parse(&raw)
    })
    .await
    .map_err(|_| format!("{what}: no answer within 10 s"))?
}

/// Retries `GET path` until the server answers (at most 10 s), for a
/// gateway that is still starting.
pub async fn get_when_up(addr: SocketAddr, path: &str) -> Response {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match get(addr, path).await {
            Ok(r) => return r,
            Err(e) if tokio::time::Instant::now() >= end => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The status line and headers (`raw` ends before the blank line).
fn parse_head(raw: &[u8]) -> Result<Response, String> {
    let head = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty answer")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: String::new(),
    })
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let Response {
        status, headers, ..
    } = parse_head(&raw[..split])?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|e| e.to_string())?,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// `POST path` with `headers` and `body`, `Connection: close`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, String> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    exchange(addr, &format!("POST {path}"), request).await
}

/// A server-sent event stream being read: `GET path` kept open, its
/// chunked body decoded as it arrives.
pub struct Events {
    stream: TcpStream,
    /// Raw bytes not decoded yet (chunk framing).
    raw: Vec<u8>,
    /// Decoded body not yet split into events.
    text: String,
    /// The status and headers.
    pub head: Response,
}

/// One event: its `event:` name and its `data:` lines joined.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.data))
    }
}

impl Events {
    /// Opens the stream; `Err` when the answer is not a 200 event stream
    /// (the response, with its body, is in the message).
    pub async fn open(addr: SocketAddr, path: &str) -> Result<Events, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let split = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Ok(p);
                }
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed before the headers".to_string());
                }
                raw.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .map_err(|_| "no headers within 10 s".to_string())??;
        let mut head = parse_head(&raw[..split])?;
        let rest = raw[split + 4..].to_vec();
        if head.status != 200 {
            head.body = String::from_utf8_lossy(&rest).into_owned();
            return Err(format!("{} {}", head.status, head.body));
        }
        Ok(Events {
            stream,
            raw: rest,
            text: String::new(),
            head,
        })
    }

    /// The next event within `limit`; `None` at the end of the stream or
    /// the time limit.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            self.decode();
            if let Some(event) = self.split_event() {
                if event.name.is_empty() && event.data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(event);
            }
            let mut buf = [0u8; 8192];
            let read = tokio::time::timeout_at(end, self.stream.read(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => self.raw.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// The next event named `name` within `limit`.
    pub async fn next_named(&mut self, name: &str, limit: Duration) -> Option<Event> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.name == name {
                return Some(event);
            }
        }
    }

    /// Moves whole chunks from `raw` to `text`.
    fn decode(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let Ok(size) =
                usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            else {
                return;
            };
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.text
                .push_str(&String::from_utf8_lossy(&self.raw[start..start + size]));
            self.raw.drain(..start + size + 2);
        }
    }

    fn split_event(&mut self) -> Option<Event> {
        let end = self.text.find("\n\n")?;
        let block: String = self.text.drain(..end + 2).collect();
        let mut event = Event {
            name: String::new(),
            data: String::new(),
        };
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event.name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        Some(event)
    }
}

impl Events {
    /// Opens the stream, retrying until the server answers (at most 10 s).
    pub async fn open_when_up(addr: SocketAddr, path: &str) -> Events {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Events::open(addr, path).await {
                Ok(e) => return e,
                Err(e) if tokio::time::Instant::now() >= end => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

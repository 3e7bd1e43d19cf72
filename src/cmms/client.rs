//! Sends the vendors' requests: one reqwest client per connector (its
//! own timeout and trusted roots), answers read with a bound, every
//! transport failure turned into a [`Failure::Retry`] with a text that
//! names the CMMS but never a credential.

use std::time::Duration;

use super::exchange::{Answer, Failure, MAX_ANSWER, Method, Request};
use crate::config::CmmsConfig;

/// Why a connector's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    #[error("connector {name}: ca_file {path}: {reason}")]
    CaFile {
        /// The connector.
        name: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// reqwest refused the settings.
    #[error("connector {name}: cannot build the HTTP client: {reason}")]
    Build {
        /// The connector.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A connector's HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    /// The client of `config`: its timeout, the system's roots plus its
    /// `ca_file`, no redirects (a POST must not silently become a GET on
    /// another host, carrying the credentials), no proxy from the
    /// environment (a gateway's service environment should not reroute
    /// work orders).
    pub fn new(config: &CmmsConfig) -> Result<Client, ClientError> {
        let connect = config.timeout.min(Duration::from_secs(10));
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(connect)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(path) = &config.ca_file {
            let ca_error = |reason: String| ClientError::CaFile {
                name: config.name.clone(),
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Build {
            name: config.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Client { http })
    }

    /// Sends `request` and reads the answer (at most [`MAX_ANSWER`]
    /// bytes of its body). Any answer is `Ok`, whatever its status (the
    /// vendor reads it); only a transport failure is `Err`, always a
    /// [`Failure::Retry`].
    pub async fn send(&self, request: &Request) -> Result<Answer, Failure> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut builder = self.http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ANSWER.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break;
                    }
                }
                Ok(None) => break,
                // The status line came: a cut body is still an answer
                // for the status, but a 2xx whose body is lost cannot be
                // trusted (the reference is in it).
                Err(e) if (200..300).contains(&status) => return Err(transport(e)),
                Err(_) => break,
            }
        }
        Ok(Answer { status, body })
    }
}

/// A transport failure, in words: which step failed, without the URL's
/// query (it may hold a key a log reader need not see) and never a header.
fn transport(e: reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut off"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let host = e
        .url()
        .map(|u| {
            let mut host = u.host_str().unwrap_or_default().to_owned();
            if let Some(p) = u.port() {
                host.push_str(&format!(":{p}"));
            }
            host
        })
        .unwrap_or_default();
    // The innermost cause says the most ("Connection refused", a TLS
    // alert), reqwest's own text repeats the URL.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Failure::Retry(format!("{host}: {what}: {cause}"))
}

//! The upstream client: the only module that builds HTTP clients.
//!
//! Every answer is classified into [`Fetched`] at this boundary, so the cache core decides
//! with a few `match`es. Redirects are followed here, by hand: a hop to another origin
//! (GitLab's object storage) never carries the client's credentials — reqwest would drop
//! `Authorization` but keep `PRIVATE-TOKEN`, `Job-Token` and `Deploy-Token`. A redirect that
//! is GitLab's own npm request forwarding (to a public registry) is reported as
//! [`Fetched::ForwardedToPublic`] and never followed: a cross-origin hop on an npm metadata
//! or tarball fetch ([`Forward`]) to a configured public registry's origin, or to a path
//! that names the package.

mod fetched;
mod redirect;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode};

use crate::auth::Credential;
use crate::config::Config;
pub use crate::error::NotFound;
use crate::error::UpstreamError;
use crate::metrics::Metrics;
pub use crate::urls::{origin_of, redact};
use fetched::classify;
pub use fetched::{read_all, Body, ByteStream, Fetched};
pub use redirect::follow_location;
use redirect::{follow, is_public_forward};

const MAX_REDIRECTS: usize = 5;

/// Whether the upstream may be contacted at all (offline mode holds no client).
enum Connectivity {
    Online(reqwest::Client),
    Offline,
}

pub struct Upstream {
    conn: Connectivity,
    base: String,
    /// Origins of `forwarding.npm_registry` and `forwarding.go_proxy`: a redirect there is
    /// a forwarding to a public registry, never content of GitLab's.
    public_origins: Vec<String>,
    /// Origins of the other upstreams, with the setting that names each (for messages).
    settings: Vec<(String, &'static str)>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// One request to an upstream.
pub struct Request<'a> {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub credential: &'a Credential,
    pub if_none_match: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: Option<Bytes>,
    /// For GitLab npm fetches: what GitLab forwarding this request to a public registry
    /// looks like (see [`is_public_forward`]).
    pub forward: Option<Forward<'a>>,
    /// Metric label: what is being fetched.
    pub kind: &'static str,
    /// When false, any redirect is reported as [`Fetched::ForwardedToPublic`] unfollowed.
    pub follow_redirects: bool,
}

impl<'a> Request<'a> {
    pub fn get(url: String, credential: &'a Credential, kind: &'static str) -> Self {
        Request {
            method: Method::GET,
            url,
            credential,
            if_none_match: None,
            accept: None,
            content_type: None,
            body: None,
            forward: None,
            kind,
            follow_redirects: true,
        }
    }
}

/// A GitLab npm fetch that GitLab may answer with a redirect to a public registry.
#[derive(Clone, Copy, Debug)]
pub enum Forward<'a> {
    /// The packument of this package name.
    Metadata(&'a str),
    /// A tarball of this package name.
    Tarball(&'a str),
}

/// A write's answer from the upstream, for the client as GitLab sent it.
pub struct Forwarded {
    pub status: StatusCode,
    /// Only the headers that matter to a client ([`FORWARD_RESPONSE_HEADERS`]).
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Request headers of a client's write that GitLab looks at (besides credentials).
pub const FORWARD_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "npm-command",
    "npm-otp",
    "npm-auth-type",
    "npm-scope",
    "npm-session",
    "if-unmodified-since",
];

/// Response headers of a forwarded write that come back to the client.
pub const FORWARD_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "www-authenticate",
    "location",
    "retry-after",
];

/// Largest upstream answer to a write that is passed back (they are small JSON documents).
const MAX_FORWARDED_BODY: u64 = 16 << 20;

/// A request body to forward: in memory, or a file of known length streamed as it is read.
pub enum OutBody {
    Bytes(Bytes),
    File(tokio::fs::File, u64),
}

impl Upstream {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, UpstreamError> {
        let base = config.upstream.url.trim_end_matches('/').to_string();
        let conn = if config.cache.offline {
            Connectivity::Offline
        } else {
            #[allow(clippy::disallowed_methods)] // upstream/ owns the HTTP client
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(config.upstream.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .user_agent(concat!("packrat/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| UpstreamError::Unreachable {
                    url: base.clone(),
                    reason: format!("cannot build the HTTP client: {e}"),
                    setting: "upstream.url",
                })?;
            Connectivity::Online(client)
        };
        let public_origins = [&config.forwarding.npm_registry, &config.forwarding.go_proxy]
            .into_iter()
            .flatten()
            .map(|u| origin_of(u))
            .collect();
        let settings = [
            (Some(&config.forwarding.go_sumdb), "forwarding.go_sumdb"),
            (
                config.forwarding.npm_registry.as_ref(),
                "forwarding.npm_registry",
            ),
            (config.forwarding.go_proxy.as_ref(), "forwarding.go_proxy"),
        ]
        .into_iter()
        .filter_map(|(url, setting)| url.map(|u| (origin_of(u), setting)))
        .collect();
        Ok(Upstream {
            conn,
            base,
            public_origins,
            settings,
            timeout: config.upstream.timeout,
            metrics,
        })
    }

    /// The setting that names the upstream `url` belongs to, for messages that say what to
    /// check.
    fn setting_for(&self, url: &str) -> &'static str {
        let origin = origin_of(url);
        if origin == origin_of(&self.base) {
            return "upstream.url";
        }
        self.settings
            .iter()
            .find(|(o, _)| *o == origin)
            .map_or("upstream.url", |(_, s)| s)
    }

    /// The GitLab base URL, e.g. `https://gitlab.example.com`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + a path starting with `/api/v4/...`.
    pub fn gitlab_url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    pub fn is_offline(&self) -> bool {
        matches!(self.conn, Connectivity::Offline)
    }

    /// Send a request, follow redirects safely, classify the answer.
    pub async fn send(&self, req: Request<'_>) -> Result<Fetched, UpstreamError> {
        let to_gitlab = req.url.starts_with(&self.base);
        let started = Instant::now();
        let result = self.send_hops(req).await;
        if to_gitlab {
            self.health(started, result.as_ref().err());
        }
        result
    }

    /// The status page's view of GitLab: the round trip, and whether it answered. A 429 or
    /// a refusal is an answer; unreachable, timed out, broken off or 5xx is a failure.
    fn health(&self, started: Instant, error: Option<&UpstreamError>) {
        let live = self.metrics.live();
        let ms = started.elapsed().as_millis() as u64;
        match error {
            None | Some(UpstreamError::RateLimited { .. }) => live.upstream_ok(ms),
            Some(e @ (UpstreamError::Status { .. } | UpstreamError::Body { .. })) => {
                live.upstream_latency(ms);
                live.upstream_failed(e.to_string());
            }
            Some(
                e @ (UpstreamError::Unreachable { .. }
                | UpstreamError::Timeout { .. }
                | UpstreamError::Redirects { .. }
                | UpstreamError::Malformed { .. }),
            ) => live.upstream_failed(e.to_string()),
            Some(UpstreamError::Offline { .. }) => {}
        }
    }

    async fn send_hops(&self, req: Request<'_>) -> Result<Fetched, UpstreamError> {
        let client = match &self.conn {
            Connectivity::Online(c) => c,
            Connectivity::Offline => {
                return Err(UpstreamError::Offline {
                    url: redact(&req.url),
                })
            }
        };
        let started = Instant::now();
        // Parsed once by the parser reqwest itself connects with: the host a hop goes to is
        // decided on exactly the URL the client will use.
        let mut url = url::Url::parse(&req.url).map_err(|e| UpstreamError::Unreachable {
            url: redact(&req.url),
            reason: format!("not a URL: {e}"),
            setting: self.setting_for(&req.url),
        })?;
        let origin = url.origin();
        let mut with_credentials = true;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut rb = client.request(method.clone(), url.clone());
            if with_credentials {
                for (name, value) in req.credential.headers() {
                    rb = rb.header(name, value);
                }
                if let Some(etag) = req.if_none_match {
                    rb = rb.header(http::header::IF_NONE_MATCH, etag);
                }
            }
            if let Some(a) = req.accept {
                rb = rb.header(http::header::ACCEPT, a);
            }
            if let Some(ct) = req.content_type {
                rb = rb.header(http::header::CONTENT_TYPE, ct);
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let resp = match tokio::time::timeout(self.timeout, rb.send()).await {
                Err(_) => {
                    self.observe(req.kind, "timeout", started);
                    return Err(UpstreamError::Timeout {
                        url: redact(url.as_str()),
                        secs: self.timeout.as_secs(),
                    });
                }
                Ok(Err(e)) => {
                    self.observe(req.kind, "error", started);
                    return Err(classify(
                        url.as_str(),
                        &e,
                        self.timeout,
                        self.setting_for(url.as_str()),
                    ));
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let Some(loc) = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    return Err(UpstreamError::Status {
                        url: redact(url.as_str()),
                        status: status.as_u16(),
                        setting: self.setting_for(url.as_str()),
                    });
                };
                let Some(next) = follow(&url, loc) else {
                    return Err(UpstreamError::Status {
                        url: redact(url.as_str()),
                        status: status.as_u16(),
                        setting: self.setting_for(url.as_str()),
                    });
                };
                if !req.follow_redirects {
                    self.observe(req.kind, status.as_str(), started);
                    return Ok(Fetched::ForwardedToPublic {
                        location: next.to_string(),
                    });
                }
                if next.origin() != origin {
                    if let Some(forward) = req.forward {
                        if is_public_forward(next.as_str(), forward, &self.public_origins) {
                            self.observe(req.kind, "forwarded", started);
                            return Ok(Fetched::ForwardedToPublic {
                                location: next.to_string(),
                            });
                        }
                    }
                    // Object storage: never send the client's credentials there, nor to
                    // anywhere a later hop leads.
                    with_credentials = false;
                }
                if status == StatusCode::SEE_OTHER
                    || ((status == StatusCode::FOUND || status == StatusCode::MOVED_PERMANENTLY)
                        && method != Method::GET
                        && method != Method::HEAD)
                {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            self.observe(req.kind, status.as_str(), started);
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(UpstreamError::RateLimited {
                    url: redact(url.as_str()),
                    retry_after: header_str(resp.headers(), http::header::RETRY_AFTER),
                });
            }
            if status.is_server_error() {
                return Err(UpstreamError::Status {
                    url: redact(url.as_str()),
                    status: status.as_u16(),
                    setting: self.setting_for(url.as_str()),
                });
            }
            return Ok(self.classify_response(resp, url.as_str()).await);
        }
        Err(UpstreamError::Redirects {
            url: redact(&req.url),
        })
    }

    /// Forward a write (publish, dist-tag change, delete) to the GitLab upstream with the
    /// client's credential and return GitLab's answer unchanged, whatever its status. Nothing
    /// is followed: a redirect comes back to the client as it is. The path must start with
    /// `/api/v4/`, so the credential only ever goes to the configured upstream.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        credential: &Credential,
        headers: &HeaderMap,
        body: Option<OutBody>,
        kind: &'static str,
    ) -> Result<Forwarded, UpstreamError> {
        let url = self.gitlab_url(path_and_query);
        let client = match &self.conn {
            Connectivity::Online(c) => c,
            Connectivity::Offline => return Err(UpstreamError::Offline { url: redact(&url) }),
        };
        let started = Instant::now();
        let mut rb = client.request(method, &url);
        for (name, value) in credential.headers() {
            rb = rb.header(name, value);
        }
        for name in FORWARD_REQUEST_HEADERS {
            for v in headers.get_all(*name) {
                rb = rb.header(*name, v.clone());
            }
        }
        // Large bodies take time to upload: allow a second per MiB on top of the timeout.
        let mut timeout = self.timeout;
        match body {
            None => {}
            Some(OutBody::Bytes(b)) => {
                timeout += Duration::from_secs((b.len() as u64) >> 20);
                rb = rb.body(b);
            }
            Some(OutBody::File(f, len)) => {
                // Streamed from the spool with its length (no chunked upload).
                timeout += Duration::from_secs(len >> 20);
                let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
                rb = rb
                    .header(http::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream));
            }
        }
        let secs = timeout.as_secs();
        let resp = match tokio::time::timeout(timeout, rb.send()).await {
            Err(_) => {
                self.observe(kind, "timeout", started);
                return Err(UpstreamError::Timeout {
                    url: redact(&url),
                    secs,
                });
            }
            Ok(Err(e)) => {
                self.observe(kind, "error", started);
                return Err(classify(&url, &e, timeout, "upstream.url"));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        self.observe(kind, status.as_str(), started);
        let mut kept = HeaderMap::new();
        for name in FORWARD_RESPONSE_HEADERS {
            for v in resp.headers().get_all(*name) {
                if let Ok(n) = http::header::HeaderName::from_bytes(name.as_bytes()) {
                    kept.append(n, v.clone());
                }
            }
        }
        let redacted = redact(&url);
        let mut buf = BytesMut::new();
        let mut chunks = resp.bytes_stream();
        let read = tokio::time::timeout(self.timeout, async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| UpstreamError::Body {
                    url: redacted.clone(),
                    reason: e.to_string(),
                })?;
                if (buf.len() + chunk.len()) as u64 > MAX_FORWARDED_BODY {
                    return Err(UpstreamError::Body {
                        url: redacted.clone(),
                        reason: format!("answer larger than {MAX_FORWARDED_BODY} bytes"),
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(())
        })
        .await;
        match read {
            Err(_) => Err(UpstreamError::Timeout {
                url: redacted,
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(Forwarded {
                status,
                headers: kept,
                body: buf.freeze(),
            }),
        }
    }

    async fn classify_response(&self, resp: reqwest::Response, url: &str) -> Fetched {
        let status = resp.status();
        let headers = resp.headers().clone();
        let etag = header_str(&headers, http::header::ETAG);
        if status == StatusCode::NOT_MODIFIED {
            return Fetched::NotModified { etag };
        }
        if status.is_success() {
            let len = resp.content_length();
            let content_type = header_str(&headers, http::header::CONTENT_TYPE);
            let timeout = self.timeout;
            let redacted = redact(url);
            let mut inner = resp.bytes_stream();
            // Each chunk must arrive within `timeout` (an idle timeout, not a total one:
            // large files on slow links are fine as long as bytes keep coming).
            let stream = async_stream(move |tx| async move {
                loop {
                    match tokio::time::timeout(timeout, inner.next()).await {
                        Err(_) => {
                            let _ = tx
                                .send(Err(UpstreamError::Timeout {
                                    url: redacted.clone(),
                                    secs: timeout.as_secs(),
                                }))
                                .await;
                            return;
                        }
                        Ok(None) => return,
                        Ok(Some(Ok(b))) => {
                            if tx.send(Ok(b)).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Err(e))) => {
                            let _ = tx
                                .send(Err(UpstreamError::Body {
                                    url: redacted.clone(),
                                    reason: e.to_string(),
                                }))
                                .await;
                            return;
                        }
                    }
                }
            });
            return Fetched::Body(Body {
                status,
                etag,
                len,
                content_type,
                headers,
                stream,
                url: redact(url),
            });
        }
        let www_authenticate = header_str(&headers, http::header::WWW_AUTHENTICATE);
        // Error bodies are small; read at most 64 KiB of one, within the timeout.
        let mut body = BytesMut::new();
        let mut chunks = resp.bytes_stream();
        let _ = tokio::time::timeout(self.timeout, async {
            while let Some(Ok(c)) = chunks.next().await {
                body.extend_from_slice(&c);
                if body.len() > 64 << 10 {
                    body.truncate(64 << 10);
                    break;
                }
            }
        })
        .await;
        let body = body.freeze();
        if status == StatusCode::NOT_FOUND {
            let what = NotFound::of(&body);
            Fetched::NotFound { body, what }
        } else {
            Fetched::Denied {
                status,
                body,
                www_authenticate,
            }
        }
    }

    fn observe(&self, kind: &'static str, outcome: &str, started: Instant) {
        self.metrics
            .upstream_latency(kind, outcome, started.elapsed().as_secs_f64());
    }
}

/// A plain HTTP client for `packrat sync --via`, which talks to a running packrat (never to
/// GitLab): the one other client packrat builds, here with the others.
pub fn local_client(timeout: Duration) -> Result<reqwest::Client, UpstreamError> {
    #[allow(clippy::disallowed_methods)] // upstream/ owns the HTTP clients
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("packrat-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UpstreamError::Unreachable {
            url: "packrat".into(),
            reason: e.to_string(),
            setting: "the --via URL",
        })
}

/// A stream fed by a task (no extra crate for generators).
fn async_stream<F, Fut>(f: F) -> ByteStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, UpstreamError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, UpstreamError>>,
) -> impl Stream<Item = Result<Bytes, UpstreamError>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn header_str(h: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_404s_are_classified() {
        let c = |b: &str| NotFound::of(b.as_bytes());
        assert_eq!(
            c(r#"{"message":"404 Project Not Found"}"#),
            NotFound::Project
        );
        assert_eq!(
            c(r#"{"message":"404 Project Not Found","error":"Project not found"}"#),
            NotFound::Project
        );
        assert_eq!(c(r#"{"message":"404 Group Not Found"}"#), NotFound::Group);
        assert_eq!(
            c(r#"{"message":"404 Packages Not Found","error":"Packages not found"}"#),
            NotFound::Package
        );
        assert_eq!(c(r#"{"message":"404 Not Found"}"#), NotFound::Other);
        assert_eq!(c(""), NotFound::Other);
    }
}

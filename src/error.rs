//! Typed errors, one enum per layer. Each knows its HTTP status; the only code that turns an
//! error into a response is [`crate::server::respond::error_response`].

use std::path::PathBuf;

use bytes::Bytes;
use http::StatusCode;

/// What a GitLab 404 says is missing, read from GitLab's body once, where
/// the upstream's answer is classified (`upstream::Fetched::NotFound`) or a refusal is
/// remembered; no adapter reads body text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotFound {
    /// The package (or module, file) is not there; the project or group is visible.
    Package,
    /// `404 Project Not Found`: no such project, or one the caller may not see.
    Project,
    /// `404 Group Not Found`.
    Group,
    /// Anything else (`404 Not Found`, a catch-all route).
    Other,
}

impl NotFound {
    /// Classify a GitLab 404 body (`{"message": "404 <Thing> Not Found", "error": …}`; GitLab's
    /// error bodies: <https://docs.gitlab.com/api/rest/>).
    pub fn of(body: &[u8]) -> NotFound {
        let text = String::from_utf8_lossy(body).to_ascii_lowercase();
        if text.contains("project not found") {
            NotFound::Project
        } else if text.contains("group not found") {
            NotFound::Group
        } else if text.contains("packages not found") || text.contains("package not found") {
            NotFound::Package
        } else {
            NotFound::Other
        }
    }
}

/// Failures of the data directory: the sled index, blob files, verification.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("index error: {0}")]
    Index(#[from] sled::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("downloaded content failed verification: {0}")]
    Verify(#[from] Mismatch),
    /// A format check beyond digests refused the content (e.g. a Go module zip's layout).
    #[error("downloaded content failed its format check: {reason}")]
    Rejected { reason: String },
    /// A blob the index names is not in the store (deleted or lost on disk).
    #[error("blob {digest} is missing from the store; run `packrat verify`")]
    Missing { digest: String },
    /// An index record lacks a part it is always written with.
    #[error("index record {key} has no {what}; it is refetched on the next request")]
    Incomplete { key: String, what: &'static str },
    /// A blob writer used after it finished (a bug, never input).
    #[error("the blob writer {0} was already finished")]
    Finished(&'static str),
    #[error("a blocking store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("content is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A download started before its checksums were known, and they never came (the
    /// metadata that names the file was refused or lists another file): nothing is cached.
    #[error("no checksum arrived to verify the download against; nothing was cached")]
    Unconfirmed,
    #[error("index record {key} could not be decoded: {reason}")]
    Decode { key: String, reason: String },
    #[error("the data directory {dir} is in use by another packrat process ({reason})")]
    Locked { dir: PathBuf, reason: String },
    /// The object store (`storage.backend = "s3"`) failed or could not be reached: a 503 on
    /// the request path; the node retries on the next request (no restart needed).
    #[error("the object store ({store}) failed to {op}: {reason}")]
    ObjectStore {
        /// Which bucket, where (never credentials).
        store: String,
        op: &'static str,
        reason: String,
    },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Failures talking to an upstream (GitLab, a public registry, a checksum database).
/// URLs carried here are already redacted (no query string, no userinfo).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream at {url} could not be reached ({reason}); check {setting} and the network, or retry later")]
    Unreachable {
        url: String,
        reason: String,
        /// The setting that names this upstream (`upstream.url`, `forwarding.go_sumdb`, …).
        setting: &'static str,
    },
    #[error("the upstream at {url} did not answer within {secs}s; retry later or raise upstream.timeout")]
    Timeout { url: String, secs: u64 },
    #[error("the upstream at {url} ({setting}) answered with status {status}")]
    Status {
        url: String,
        status: u16,
        /// The setting that names this upstream.
        setting: &'static str,
    },
    #[error("the upstream at {url} broke off the transfer ({reason}); nothing was cached, retry the request")]
    Body { url: String, reason: String },
    /// A 429: the upstream is up and refuses to answer now. Not an outage: it never extends
    /// an access decision or serves stale content.
    #[error(
        "the upstream at {url} is rate-limiting requests (429 Too Many Requests); retry later"
    )]
    RateLimited {
        url: String,
        retry_after: Option<String>,
    },
    #[error("packrat is in offline mode and does not contact {url}")]
    Offline { url: String },
    #[error("the upstream at {url} redirected too many times")]
    Redirects { url: String },
    /// An answer that breaks the protocol (a 304 to an unconditional request, an unreadable
    /// checksum database answer).
    #[error("the upstream at {url} sent an answer packrat cannot use: {reason}")]
    Malformed { url: String, reason: String },
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamError::Offline { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Problems with the client's request itself.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// GitLab's Grape `file_path` validator answer for package names.
    #[error("package_name should be a valid file path")]
    BadPackageName,
    #[error("{0}")]
    BadRequest(String),
    /// A Grape parameter validation failure, rendered as `{"error": "<text>"}` (GitLab's
    /// validation errors, <https://docs.gitlab.com/api/rest/>), e.g. `per_page does not have a
    /// valid value` or `package_id is invalid`.
    #[error("{0}")]
    Grape(String),
    #[error("the request body is larger than the {limit} bytes this route accepts (npm publish bodies: up to server.max_body)")]
    BodyTooLarge { limit: u64 },
    #[error("404 Not Found")]
    NoRoute,
    #[error("405 Method Not Allowed")]
    MethodNotAllowed,
}

/// Everything a request handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A refusal or not-found answered by GitLab, passed to the client as GitLab sent it.
    #[error("upstream answered {status}")]
    Passthrough {
        status: StatusCode,
        body: Bytes,
        www_authenticate: Option<String>,
        /// For a 404: what GitLab says is missing.
        not_found: Option<NotFound>,
    },
    /// A GitLab-shaped answer that packrat produces itself, e.g. `404 Package Not Found`.
    #[error("{message}")]
    Gitlab {
        status: StatusCode,
        message: String,
        /// npm routes add an `error` key next to `message`.
        error: Option<String>,
    },
    /// A background task of this request (a lookup, a metadata build) panicked or was
    /// cancelled.
    #[error("the {what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The download this request joined ended without an answer (its leader went away).
    #[error("the download ended without an answer")]
    Abandoned,
    /// One item of a sync could not be mirrored, and why.
    #[error("{item}: {reason}")]
    Sync { item: String, reason: String },
    /// A response body packrat builds could not be encoded.
    #[error("could not encode the response: {0}")]
    Encode(#[from] serde_json::Error),
    /// One failure shared by every request that joined the same download.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),
    /// A refusal or not-found answered from a remembered upstream decision (the negative
    /// cache), without asking the upstream again.
    #[error("{0}")]
    Remembered(Box<Error>),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Request(r) => match r {
                RequestError::BadPackageName
                | RequestError::BadRequest(_)
                | RequestError::Grape(_) => StatusCode::BAD_REQUEST,
                RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                RequestError::NoRoute => StatusCode::NOT_FOUND,
                RequestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            },
            Error::Upstream(u) => u.status(),
            Error::Store(StoreError::Verify(_) | StoreError::Rejected { .. }) => {
                StatusCode::BAD_GATEWAY
            }
            Error::Store(StoreError::TooLarge { .. } | StoreError::Unconfirmed) => {
                StatusCode::BAD_GATEWAY
            }
            Error::Store(StoreError::ObjectStore { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Passthrough { status, .. } | Error::Gitlab { status, .. } => *status,
            Error::Task { .. } | Error::Abandoned | Error::Sync { .. } | Error::Encode(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Shared(e) => e.status(),
            Error::Remembered(e) => e.status(),
        }
    }

    /// The error itself, seen through the wrappers that only say how it was reached
    /// ([`Error::Shared`], [`Error::Remembered`]).
    pub fn inner(&self) -> &Error {
        match self {
            Error::Shared(e) => e.inner(),
            Error::Remembered(e) => e.inner(),
            other => other,
        }
    }

    /// GitLab's own refusal or not-found, to pass on to the client unchanged.
    pub fn passthrough(status: StatusCode, body: Bytes, www_authenticate: Option<String>) -> Self {
        let not_found = (status == StatusCode::NOT_FOUND).then(|| NotFound::of(&body));
        Error::Passthrough {
            status,
            body,
            www_authenticate,
            not_found,
        }
    }

    /// For a 404 (GitLab's, remembered or packrat's own GitLab-shaped one): what is missing.
    pub fn not_found(&self) -> Option<NotFound> {
        match self.inner() {
            Error::Passthrough { not_found, .. } => *not_found,
            Error::Gitlab {
                status,
                error,
                message,
            } if *status == StatusCode::NOT_FOUND => Some(NotFound::of(
                error.as_deref().unwrap_or(message.as_str()).as_bytes(),
            )),
            _ => None,
        }
    }

    /// npm's structured not-found answers (`{"message": …, "error": …}` on GitLab's npm routes,
    /// <https://docs.gitlab.com/api/packages/npm/>).
    pub fn npm_not_found(thing: &str) -> Self {
        Error::Gitlab {
            status: StatusCode::NOT_FOUND,
            message: format!("404 {thing} Not Found"),
            error: Some(format!("{thing} not found")),
        }
    }

    pub fn gitlab(status: StatusCode, message: impl Into<String>) -> Self {
        Error::Gitlab {
            status,
            message: message.into(),
            error: None,
        }
    }
}

/// How content disagrees with what its metadata promised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("expected {expected} bytes, got {got}")]
    Size { expected: u64, got: u64 },
    #[error("sha256 mismatch: expected {expected}, got {got}")]
    Sha256 { expected: String, got: String },
    #[error("sha1 (npm shasum) mismatch: expected {expected}, got {got}")]
    Sha1 { expected: String, got: String },
    #[error("sha512 (npm integrity) mismatch")]
    Sha512,
    /// An expected hash that was not computed is a mismatch, never a pass.
    #[error("an expected hash was not computed")]
    NotComputed,
}

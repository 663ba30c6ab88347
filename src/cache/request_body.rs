//! Request bodies on their way to the upstream (npm writes), bounded by a limit while they
//! arrive (`server.max_body` for publish, small ones for everything else): a declared
//! `Content-Length` over the limit is refused before reading, and a chunked body is refused
//! as soon as it passes the limit (413, nothing sent upstream). Bodies above a small
//! threshold are spooled to a temp file in the store instead of growing in memory.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::{Error, RequestError};
use crate::store::{BlobStore, Spool};
use crate::upstream::OutBody;

/// Bodies up to this size stay in memory; larger ones go to a spool file.
pub const SPOOL_ABOVE: u64 = 1 << 20;

/// The largest body of an npm audit POST (GitLab's are kilobytes; npm gzips them).
pub const SMALL_BODY_AUDIT: u64 = 4 << 20;

/// The largest body of any other small JSON write (a dist-tag's version string).
pub const SMALL_BODY: u64 = 64 << 10;

/// A received request body.
pub enum RequestBody {
    Memory(Bytes),
    Spooled(Spool),
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Memory(Bytes::new())
    }
}

impl RequestBody {
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::Spooled(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole body in memory: no copy when it already is, one read when it was spooled.
    pub async fn bytes(&self) -> Result<Bytes, Error> {
        match self {
            RequestBody::Memory(b) => Ok(b.clone()),
            RequestBody::Spooled(s) => Ok(Bytes::from(s.read().await?)),
        }
    }

    /// The body to send upstream: the bytes, or a fresh read of the spool with its length.
    pub async fn outgoing(&self) -> Result<OutBody, Error> {
        match self {
            RequestBody::Memory(b) => Ok(OutBody::Bytes(b.clone())),
            RequestBody::Spooled(s) => Ok(OutBody::File(s.open().await?, s.len())),
        }
    }
}

/// Receive a body, refusing more than `limit` bytes (413) before or while reading, spooling
/// it through `blobs` once it is larger than `spool_above`.
pub(super) async fn receive<B>(
    headers: &http::HeaderMap,
    mut body: B,
    limit: u64,
    spool_above: u64,
    blobs: &BlobStore,
) -> Result<RequestBody, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let too_large = || Error::Request(RequestError::BodyTooLarge { limit });
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut memory = BytesMut::new();
    let mut spool: Option<Spool> = None;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::Request(RequestError::BadRequest(format!(
                "could not read the request body: {e}"
            )))
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        total += chunk.len() as u64;
        if total > limit {
            return Err(too_large());
        }
        match &mut spool {
            Some(s) => s.write(&chunk).await?,
            None if total > spool_above => {
                let mut s = blobs.spool().await?;
                s.write(&memory).await?;
                s.write(&chunk).await?;
                memory = BytesMut::new();
                spool = Some(s);
            }
            None => memory.extend_from_slice(&chunk),
        }
    }
    match spool {
        Some(mut s) => {
            s.finish().await?;
            Ok(RequestBody::Spooled(s))
        }
        None => Ok(RequestBody::Memory(memory.freeze())),
    }
}

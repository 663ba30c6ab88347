//! Single-flight downloads with streaming joiners.
//!
//! Invariants:
//! - at most one download per blob key is in flight; every request for that key while it runs
//!   *joins* it (the first requester is a joiner too: the download runs in its own task, so a
//!   client that goes away does not cancel the fill for the others);
//! - joiners stream the bytes as they arrive by tailing the temp file up to the byte count the
//!   leader published, never past it — and, when the length is known, never the last byte
//!   before the blob is verified (`Verified`), so a complete body is always a verified one;
//!   the commit (fsync, rename) follows, and a request arriving meanwhile is served the
//!   verified temp file;
//! - `Failed` is a state distinct from `Done`: on failure every joiner's body stream ends with
//!   an error, so hyper cuts the response and no client ever sees a short 200;
//! - the leader holds a [`Lead`] whose `Drop` publishes `Failed` if it did not finish (panic,
//!   early return): "remember to call done" is not a protocol;
//! - the flight leaves the map only after the index entry is written, and before `Done` is
//!   published: a request arriving later finds the index entry, never a finished flight.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::error::Error;
use crate::store::{BlobRead, BlobStore, Digest};

const CHUNK: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub enum Progress {
    /// Waiting for the upstream's answer.
    Starting,
    /// Bytes `0..bytes` are in the temp file and readable.
    Writing {
        tmp: Arc<PathBuf>,
        bytes: u64,
        total: Option<u64>,
    },
    /// Complete and verified in the temp file (every byte may go out), not yet durable or
    /// visible to new requests: the commit (fsync, rename) runs after this.
    Verified {
        tmp: Arc<PathBuf>,
        len: u64,
        digest: Digest,
    },
    /// Committed: verified, fsynced, renamed into the store.
    Done { digest: Digest, len: u64 },
    /// Nothing was cached; joiners must fail their responses.
    Failed(Arc<Error>),
}

type Map = Mutex<HashMap<String, watch::Sender<Progress>>>;

#[derive(Default)]
pub struct Flights {
    map: Arc<Map>,
}

pub enum Role {
    Leader(Lead),
    Joiner(watch::Receiver<Progress>),
    /// The blob became available while we looked: serve it from the store.
    Ready,
}

impl Flights {
    /// Join the flight for `key`, or become its leader. `landed` is checked under the map lock
    /// (is the blob in the index now?), closing the window between a flight's end and a
    /// request's index lookup.
    pub fn join_or_lead(&self, key: &str, landed: impl FnOnce() -> bool) -> Role {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(tx) = map.get(key) {
            return Role::Joiner(tx.subscribe());
        }
        if landed() {
            return Role::Ready;
        }
        let (tx, _rx) = watch::channel(Progress::Starting);
        map.insert(key.to_string(), tx.clone());
        Role::Leader(Lead {
            key: key.to_string(),
            tx,
            map: self.map.clone(),
            finished: false,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// The leader's handle on its flight.
pub struct Lead {
    key: String,
    tx: watch::Sender<Progress>,
    map: Arc<Map>,
    finished: bool,
}

impl Lead {
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.tx.subscribe()
    }

    pub fn progress(&self, p: Progress) {
        self.tx.send_replace(p);
    }

    /// Publish the final state (`Done` or `Failed`) and leave the map.
    pub fn finish(mut self, p: Progress) {
        self.close(p);
    }

    fn close(&mut self, p: Progress) {
        self.finished = true;
        // Leave the map first: a request arriving from now on finds the index entry (Done)
        // or starts a fresh download (Failed); joiners already subscribed get `p` below.
        {
            let mut map = match self.map.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if map
                .get(&self.key)
                .is_some_and(|tx| tx.same_channel(&self.tx))
            {
                map.remove(&self.key);
            }
        }
        self.tx.send_replace(p);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.finished {
            self.close(Progress::Failed(Arc::new(Error::Abandoned)));
        }
    }
}

/// Wait until the flight has an answer: `Ok(total length if known)` once bytes flow (or are
/// done), or the failure.
pub async fn first_answer(rx: &mut watch::Receiver<Progress>) -> Result<Option<u64>, Arc<Error>> {
    loop {
        let p = rx.borrow_and_update().clone();
        match p {
            Progress::Starting => {}
            Progress::Writing { total, .. } => return Ok(total),
            Progress::Verified { len, .. } | Progress::Done { len, .. } => return Ok(Some(len)),
            Progress::Failed(e) => return Err(e),
        }
        if rx.changed().await.is_err() {
            return Err(Arc::new(Error::Abandoned));
        }
    }
}

/// Wait until the flight's bytes are known good: `Ok(length)` once the blob is verified (and
/// so checked: validation runs before), or the failure.
pub async fn settled(rx: &mut watch::Receiver<Progress>) -> Result<u64, Arc<Error>> {
    loop {
        let p = rx.borrow_and_update().clone();
        match p {
            Progress::Starting | Progress::Writing { .. } => {}
            Progress::Verified { len, .. } | Progress::Done { len, .. } => return Ok(len),
            Progress::Failed(e) => return Err(e),
        }
        if rx.changed().await.is_err() {
            return Err(Arc::new(Error::Abandoned));
        }
    }
}

struct Tail {
    rx: watch::Receiver<Progress>,
    blobs: BlobStore,
    file: Option<tokio::fs::File>,
    /// The committed blob streamed from an object store (not on this node's disk).
    stream: Option<futures_util::stream::BoxStream<'static, io::Result<Bytes>>>,
    /// Bytes of `stream` still to drop (the client had them from the temp file).
    skip: u64,
    pos: u64,
    done: bool,
}

/// A response body that follows a flight: bytes as they land, an error if it fails.
pub fn tail(
    rx: watch::Receiver<Progress>,
    blobs: BlobStore,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let st = Tail {
        rx,
        blobs,
        file: None,
        stream: None,
        skip: 0,
        pos: 0,
        done: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        let item = next_chunk(&mut st).await?;
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    })
}

async fn next_chunk(st: &mut Tail) -> Option<io::Result<Bytes>> {
    loop {
        if st.done {
            return None;
        }
        let p = st.rx.borrow_and_update().clone();
        match p {
            Progress::Starting => {}
            Progress::Writing { tmp, bytes, total } => {
                // With a known length the client's body is complete at its last byte, so
                // that byte is held back until the blob is verified: a body that fails
                // verification always ends broken, never as a complete 200.
                let readable = match total {
                    Some(t) if t > 0 => bytes.min(t - 1),
                    _ => bytes,
                };
                if st.pos < readable {
                    match read_tmp(st, &tmp, readable).await {
                        Some(chunk) => return Some(chunk),
                        None => continue,
                    }
                }
            }
            Progress::Verified { tmp, len, .. } => {
                // Every byte is verified: all of it may go out (the commit that makes it
                // durable and visible to new requests no longer matters to this client).
                if st.pos >= len {
                    st.done = true;
                    return None;
                }
                match read_tmp(st, &tmp, len).await {
                    Some(chunk) => return Some(chunk),
                    None => continue,
                }
            }
            Progress::Done { digest, len } => {
                if st.pos >= len {
                    st.done = true;
                    return None;
                }
                if let Some(stream) = st.stream.as_mut() {
                    return next_from_stream(stream, &mut st.skip, &mut st.pos).await;
                }
                if st.file.is_none() {
                    match st.blobs.open(&digest).await {
                        Ok(Some(BlobRead::File(mut f, _))) => {
                            if let Err(e) = f.seek(io::SeekFrom::Start(st.pos)).await {
                                return Some(Err(e));
                            }
                            st.file = Some(f);
                        }
                        // Not on this node's disk: the verified stream from the object
                        // store, past the bytes this client already has.
                        Ok(Some(BlobRead::Stream(stream, _))) => {
                            st.skip = st.pos;
                            st.stream = Some(stream);
                            continue;
                        }
                        Ok(None) => return Some(Err(io::Error::other("committed blob vanished"))),
                        Err(e) => return Some(Err(io::Error::other(e.to_string()))),
                    }
                }
                return Some(read_some(st, len).await);
            }
            Progress::Failed(e) => {
                st.done = true;
                return Some(Err(io::Error::other(e.to_string())));
            }
        }
        if st.rx.changed().await.is_err() {
            // The sender is gone without a final state (cannot happen with Lead's Drop, but
            // a body must never end cleanly on doubt).
            let last = st.rx.borrow().clone();
            if !matches!(last, Progress::Done { .. }) {
                return Some(Err(abandoned()));
            }
        }
    }
}

/// The next chunk of the temp file below `limit`; `None` when the file was renamed or removed
/// under us (the caller then waits for the next state).
async fn read_tmp(st: &mut Tail, tmp: &PathBuf, limit: u64) -> Option<io::Result<Bytes>> {
    if st.file.is_none() {
        match open_at(tmp, st.pos).await {
            Ok(f) => st.file = Some(f),
            Err(_) => {
                if st.rx.changed().await.is_err() {
                    return Some(Err(abandoned()));
                }
                return None;
            }
        }
    }
    Some(read_some(st, limit).await)
}

/// The next chunk of a committed blob's stream, dropping the first `skip` bytes.
async fn next_from_stream(
    stream: &mut futures_util::stream::BoxStream<'static, io::Result<Bytes>>,
    skip: &mut u64,
    pos: &mut u64,
) -> Option<io::Result<Bytes>> {
    use futures_util::StreamExt as _;
    loop {
        let mut chunk = match stream.next().await? {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        if *skip > 0 {
            let drop = usize::try_from((*skip).min(chunk.len() as u64)).unwrap_or(chunk.len());
            *skip -= drop as u64;
            let _ = chunk.split_to(drop);
            if chunk.is_empty() {
                continue;
            }
        }
        *pos += chunk.len() as u64;
        return Some(Ok(chunk));
    }
}

fn abandoned() -> io::Error {
    io::Error::other("the upstream download was abandoned")
}

async fn open_at(path: &PathBuf, pos: u64) -> io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    if pos > 0 {
        f.seek(io::SeekFrom::Start(pos)).await?;
    }
    Ok(f)
}

async fn read_some(st: &mut Tail, limit: u64) -> io::Result<Bytes> {
    let Some(file) = st.file.as_mut() else {
        return Err(io::Error::other("no file to read"));
    };
    let want = usize::try_from((limit - st.pos).min(CHUNK as u64)).unwrap_or(CHUNK);
    let mut buf = BytesMut::with_capacity(want);
    let mut read = 0;
    while read < want {
        let n = (&mut *file)
            .take((want - read) as u64)
            .read_buf(&mut buf)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than announced",
            ));
        }
        read += n;
    }
    st.pos += read as u64;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;
    use crate::store::{BlobWriter, Expect, Layout};

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        l.init().unwrap();
        let s = BlobStore::new(l.blobs(), l.tmp());
        (dir, s)
    }

    fn lead(flights: &Flights, key: &str) -> Lead {
        match flights.join_or_lead(key, || false) {
            Role::Leader(l) => l,
            _ => panic!("expected to lead {key}"),
        }
    }

    fn joiner(flights: &Flights, key: &str) -> watch::Receiver<Progress> {
        match flights.join_or_lead(key, || false) {
            Role::Joiner(rx) => rx,
            _ => panic!("expected to join {key}"),
        }
    }

    /// A temp file holding all of `body`, published as fully written with a known length.
    async fn written(blobs: &BlobStore, lead: &Lead, body: &[u8]) -> BlobWriter {
        let mut w = blobs.create(Expect::default()).await.unwrap();
        w.write(body).await.unwrap();
        lead.progress(Progress::Writing {
            tmp: Arc::new(w.tmp_path().to_path_buf()),
            bytes: body.len() as u64,
            total: Some(body.len() as u64),
        });
        w
    }

    /// Reads until the stream stalls (no item within a moment) or ends.
    async fn drain_ready(
        body: &mut (impl Stream<Item = io::Result<Bytes>> + Unpin),
    ) -> (Vec<u8>, Option<io::Result<()>>) {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(100), body.next()).await {
                Err(_) => return (got, None),
                Ok(None) => return (got, Some(Ok(()))),
                Ok(Some(Ok(b))) => got.extend_from_slice(&b),
                Ok(Some(Err(e))) => return (got, Some(Err(e))),
            }
        }
    }

    #[tokio::test]
    async fn failed_after_every_byte_was_written_still_breaks_the_body() {
        let (_dir, blobs) = store();
        let flights = Flights::default();
        let lead = lead(&flights, "k");
        let mut body = Box::pin(tail(joiner(&flights, "k"), blobs.clone()));
        let w = written(&blobs, &lead, b"0123456789").await;
        // All but the last byte flow; the last one waits for the commit.
        let (got, end) = drain_ready(&mut body).await;
        assert_eq!(got, b"012345678");
        assert!(
            end.is_none(),
            "the body must not end before the flight does"
        );
        drop(w);
        lead.finish(Progress::Failed(Arc::new(Error::Store(
            crate::error::StoreError::Verify(crate::store::Mismatch::Sha512),
        ))));
        let (got, end) = drain_ready(&mut body).await;
        assert!(got.is_empty());
        assert!(
            matches!(end, Some(Err(_))),
            "Failed ends the body with an error"
        );
        assert!(body.next().await.is_none(), "nothing after the error");
        // The failed flight left the map: the next request starts a new download.
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(
            flights.join_or_lead("k", || false),
            Role::Leader(_)
        ));
    }

    #[tokio::test]
    async fn done_delivers_the_held_back_byte_and_ends_cleanly() {
        let (_dir, blobs) = store();
        let flights = Flights::default();
        let lead = lead(&flights, "k");
        let mut early = Box::pin(tail(joiner(&flights, "k"), blobs.clone()));
        let w = written(&blobs, &lead, b"0123456789").await;
        let (got, _) = drain_ready(&mut early).await;
        assert_eq!(got, b"012345678");
        // A joiner arriving mid-flight starts from byte 0.
        let mut late = Box::pin(tail(joiner(&flights, "k"), blobs.clone()));
        let info = w.commit().await.unwrap();
        lead.finish(Progress::Done {
            digest: info.digest,
            len: info.len,
        });
        let (rest, end) = drain_ready(&mut early).await;
        assert_eq!(rest, b"9");
        assert!(matches!(end, Some(Ok(()))), "Done ends the body cleanly");
        let (all, end) = drain_ready(&mut late).await;
        assert_eq!(all, b"0123456789");
        assert!(matches!(end, Some(Ok(()))));
        // A request after Done finds the blob (here: `landed`), not the flight.
        assert!(matches!(flights.join_or_lead("k", || true), Role::Ready));
    }

    #[tokio::test]
    async fn a_leader_dropped_without_finishing_fails_its_joiners() {
        let (_dir, blobs) = store();
        let flights = Flights::default();
        let lead = lead(&flights, "k");
        let mut rx = joiner(&flights, "k");
        let mut body = Box::pin(tail(rx.clone(), blobs.clone()));
        let w = written(&blobs, &lead, b"abc").await;
        assert!(first_answer(&mut rx).await.is_ok(), "bytes had started");
        let (got, _) = drain_ready(&mut body).await;
        assert_eq!(got, b"ab");
        drop(w);
        drop(lead);
        assert!(settled(&mut rx).await.is_err(), "the flight failed");
        let (_, end) = drain_ready(&mut body).await;
        assert!(matches!(end, Some(Err(_))));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn failed_before_any_byte_is_the_first_answer() {
        let flights = Flights::default();
        let lead = lead(&flights, "k");
        let mut rx = joiner(&flights, "k");
        lead.finish(Progress::Failed(Arc::new(Error::Abandoned)));
        assert!(first_answer(&mut rx).await.is_err());
        assert!(matches!(
            flights.join_or_lead("k", || false),
            Role::Leader(_)
        ));
    }
}

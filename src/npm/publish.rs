//! npm writes (<https://docs.gitlab.com/api/packages/npm/>): publish and deprecate
//! (`PUT {P}/:package_name`) and dist-tag changes
//! (`PUT`/`DELETE {prefix}/-/package/:package_name/dist-tags/:tag`).
//!
//! They go to the GitLab upstream only, with the client's credential, and GitLab's answer
//! comes back unchanged. A publish body is checked first, without forwarding (not JSON, no
//! `versions`, an attachment that is not base64: 400 with GitLab's messages). Only after the
//! upstream succeeds does anything change here: the name's packuments are revalidated at
//! every prefix, and a published tarball goes from the request body straight into the blob
//! store (verified against its `shasum`/`integrity`), so the first install is a cache hit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;

use super::name::PackageName;
use super::packument::{PackumentBuilder, TarballRef};
use super::NpmRequest;
use crate::auth::Credential;
use crate::cache::Core;
use crate::cache::{Expect, Origin};
use crate::error::{Error, RequestError};
use crate::gitlab::Namespace;
use crate::reply::Reply;

/// A publish body that passed the checks; it borrows the body (the tarball's base64 is never
/// copied: it is decoded in chunks, once to check it and once into the blob store).
enum Checked<'a> {
    /// A new version, with its tarball.
    New(Published<'a>),
    /// `Npm-Command: deprecate`: versions carry `deprecated`, no attachment.
    Deprecate,
}

struct Published<'a> {
    /// The name GitLab stores: the body's `name`, which may differ from the URL's.
    name: String,
    /// `<name>-<version>.tgz`, as GitLab names the file.
    file: String,
    /// The attachment's base64, as sent (trimmed).
    data: Cow<'a, str>,
    shasum: Option<String>,
    integrity: Option<String>,
}

/// One attachment; only `data` matters, borrowed from the body when it has no escapes.
#[derive(serde::Deserialize)]
struct Attachment<'a> {
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// base64 text decoded in chunks of at most 192 KiB (a multiple of 4 characters per chunk).
fn decoded_chunks(data: &str) -> impl Iterator<Item = Result<Vec<u8>, base64::DecodeError>> + '_ {
    const CHUNK: usize = 256 * 1024;
    data.as_bytes()
        .chunks(CHUNK)
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c))
}

/// npm's structured error with the same text in both keys (GitLab's publish errors).
fn publish_error(text: &str) -> Error {
    Error::Gitlab {
        status: StatusCode::BAD_REQUEST,
        message: text.to_string(),
        error: Some(text.to_string()),
    }
}

/// The checks GitLab makes before it reads a publish body (its npm publish endpoint,
/// <https://docs.gitlab.com/api/packages/npm/>); packrat makes them without contacting the
/// upstream. Only the small parts (`name`, `versions`) are parsed into values; the attachment
/// stays a slice of `body`.
fn check<'a>(
    body: &'a [u8],
    url_name: &PackageName,
    deprecate: bool,
) -> Result<Checked<'a>, Error> {
    let doc: HashMap<String, &'a RawValue> =
        serde_json::from_slice(body).map_err(|_| publish_error("Invalid json"))?;
    let parse = |key: &str| {
        doc.get(key)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
    };
    let Some(Value::Object(versions)) = parse("versions") else {
        return Err(publish_error(
            "Versions key is missing from the JSON upload",
        ));
    };
    if deprecate {
        return Ok(Checked::Deprecate);
    }
    // GitLab reads the first version and the attachment named after it.
    let Some((version, meta)) = versions.iter().next().filter(|(v, _)| !v.is_empty()) else {
        return Err(publish_error("Version is empty."));
    };
    let name = match parse("name") {
        Some(Value::String(n)) => n,
        _ => url_name.as_str().to_string(),
    };
    let file = format!("{name}-{version}.tgz");
    let data = doc
        .get("_attachments")
        .and_then(|raw| serde_json::from_str::<HashMap<String, &'a RawValue>>(raw.get()).ok())
        .and_then(|a| a.get(&file).copied())
        .and_then(|raw| serde_json::from_str::<Attachment<'a>>(raw.get()).ok())
        .and_then(|a| a.data)
        .map(|d| match d {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
        })
        .unwrap_or_default();
    // GitLab checks `data.blank?` (npm publish, https://docs.gitlab.com/api/packages/npm/) and
    // has no message of its own for text that is not base64 (its decoder drops such
    // characters); packrat refuses it with the same message rather than forward a tarball
    // that cannot be what the client meant.
    if data.is_empty() || decoded_chunks(&data).any(|c| c.is_err()) {
        return Err(publish_error("Attachment data is empty."));
    }
    let dist = meta.get("dist");
    let field = |k: &str| {
        dist.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Checked::New(Published {
        name,
        file,
        data,
        shasum: field("shasum"),
        integrity: field("integrity"),
    }))
}

/// `PUT {P}/:package_name`: publish, or deprecate with `Npm-Command: deprecate`.
pub(super) async fn publish(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    // GitLab publishes at the project prefix only (UNCONFIRMED: 404 or 405 elsewhere).
    if !matches!(scope, Namespace::Project(_)) {
        return Err(RequestError::NoRoute.into());
    }
    let body = req.body.unwrap_or_default();
    let deprecate = req
        .headers
        .get("npm-command")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("deprecate"));
    // The one body-sized copy in memory (none extra when the body was small enough to stay
    // in memory): the checks and the tarball decoding borrow it.
    let bytes = body.bytes().await?;
    let checked = match check(&bytes, name, deprecate) {
        Ok(c) => c,
        // GitLab authenticates before it reads the body (`authenticate_non_get!`).
        Err(_) if req.credential.is_anonymous() => {
            return Err(Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
        }
        Err(e) => return Err(e),
    };
    let path = format!("{}/{}", scope.npm_prefix(), name.encoded());
    let answer = core
        .forward(
            Method::PUT,
            &path,
            req.credential,
            req.headers,
            Some(body.outgoing().await?),
            "npm_publish",
        )
        .await?;
    drop(body); // the spool file, if any
    if answer.status.is_success() {
        if let Err(e) = after_publish(core, scope, name, req.credential, checked).await {
            tracing::warn!(name = %name, error = %e, "published upstream; updating the cache failed");
        }
    }
    Ok(Reply::passthrough(
        answer.status,
        answer.headers,
        answer.body,
    ))
}

async fn after_publish(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    credential: &Credential,
    checked: Checked<'_>,
) -> Result<(), Error> {
    core.npm_name_written(name.as_str())?;
    core.records_written()?;
    let Checked::New(p) = checked else {
        return Ok(());
    };
    // GitLab stores the package under the body's name, whatever the URL said.
    let stored = match PackageName::parse(&p.name) {
        Ok(n) if n != *name => {
            core.npm_name_written(n.as_str())?;
            n
        }
        _ => name.clone(),
    };
    let name = &stored;
    // Learn where the upstream keeps the new tarball: the packument, refetched now with the
    // publisher's credential (it is stale after the invalidation above).
    super::packument(core, scope, name, credential).await?;
    let aux_key =
        PackumentBuilder::file_key(&format!("npmfile/{}/{}/", scope.key(), name), &p.file);
    let Some(tref) = core.aux::<TarballRef>(&aux_key)? else {
        tracing::debug!(name = %name, file = %p.file, "the refetched packument does not list the new file yet; not precaching");
        return Ok(());
    };
    let shasum = tref.shasum.clone().or(p.shasum);
    let integrity = p.integrity.or(tref.integrity.clone());
    if shasum.is_none() && integrity.is_none() {
        return Ok(());
    }
    let chunks = decoded_chunks(&p.data).map(|c| {
        c.map_err(|e| Error::Request(RequestError::BadRequest(format!("attachment: {e}"))))
    });
    core.put_blob(
        &super::blob_key(Origin::Gitlab, &tref.url),
        chunks,
        Expect::npm(shasum.as_deref(), integrity.as_deref()),
        "application/octet-stream",
        Origin::Gitlab,
    )
    .await?;
    tracing::info!(name = %name, file = %p.file, "published tarball cached from the request body");
    Ok(())
}

/// `PUT`/`DELETE {prefix}/-/package/:package_name/dist-tags/:tag`.
pub(super) async fn dist_tag(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    tag: &str,
    method: Method,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    let path = format!(
        "{}/-/package/{}/dist-tags/{}",
        scope.npm_prefix(),
        name.encoded(),
        crate::gitlab::segment(tag)
    );
    let body = match (method == Method::PUT, req.body) {
        (true, body) => Some(body.unwrap_or_default().outgoing().await?),
        (false, _) => None,
    };
    let answer = core
        .forward(
            method,
            &path,
            req.credential,
            req.headers,
            body,
            "npm_dist_tags",
        )
        .await?;
    if answer.status.is_success() {
        if let Err(e) = core
            .npm_name_written(name.as_str())
            .and_then(|()| core.records_written())
        {
            tracing::warn!(name = %name, error = %e, "dist-tag changed upstream; invalidating the cache failed");
        }
    }
    Ok(Reply::passthrough(
        answer.status,
        answer.headers,
        answer.body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> PackageName {
        PackageName::parse("@acme/ui").unwrap()
    }

    fn message(e: Error) -> String {
        match e {
            Error::Gitlab {
                status,
                message,
                error,
            } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(error.as_deref(), Some(message.as_str()));
                message
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn base64_decodes_in_chunks_like_at_once() {
        let raw: Vec<u8> = (0..700_001u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&raw);
        let chunked: Vec<u8> = decoded_chunks(&text).flat_map(Result::unwrap).collect();
        assert_eq!(chunked, raw);
        // Padding in the middle is not base64, wherever the chunks fall.
        let bad = format!("{}==AAAA{}", &text[..300_000], &text[300_006..]);
        assert!(decoded_chunks(&bad).any(|c| c.is_err()));
    }

    #[test]
    fn publish_bodies_are_checked_like_gitlab() {
        assert_eq!(
            message(check(b"{nope", &name(), false).err().unwrap()),
            "Invalid json"
        );
        assert_eq!(
            message(check(b"[1]", &name(), false).err().unwrap()),
            "Invalid json"
        );
        assert_eq!(
            message(
                check(br#"{"name":"@acme/ui"}"#, &name(), false)
                    .err()
                    .unwrap()
            ),
            "Versions key is missing from the JSON upload"
        );
        assert_eq!(
            message(
                check(br#"{"name":"@acme/ui","versions":{}}"#, &name(), false)
                    .err()
                    .unwrap()
            ),
            "Version is empty."
        );
        let body = br#"{"name":"@acme/ui","versions":{"1.0.0":{}},"_attachments":{"@acme/ui-1.0.0.tgz":{"data":"%%%not base64"}}}"#;
        // GitLab has no message of its own for it (npm publish,
        // https://docs.gitlab.com/api/packages/npm/): its blank-data one.
        assert_eq!(
            message(check(body, &name(), false).err().unwrap()),
            "Attachment data is empty."
        );
        let body = br#"{"name":"@acme/ui","versions":{"1.0.0":{}},"_attachments":{"other.tgz":{"data":"AAAA"}}}"#;
        assert_eq!(
            message(check(body, &name(), false).err().unwrap()),
            "Attachment data is empty."
        );
        assert!(matches!(
            check(
                br#"{"versions":{"1.0.0":{"deprecated":"x"}}}"#,
                &name(),
                true
            ),
            Ok(Checked::Deprecate)
        ));
        let body = br#"{"name":"@acme/ui","versions":{"1.0.0":{"dist":{"shasum":"ab","integrity":"sha512-x"}}},"_attachments":{"@acme/ui-1.0.0.tgz":{"data":"aGVsbG8="}}}"#;
        match check(body, &name(), false) {
            Ok(Checked::New(p)) => {
                assert_eq!(p.file, "@acme/ui-1.0.0.tgz");
                let tarball: Vec<u8> = decoded_chunks(&p.data).flat_map(Result::unwrap).collect();
                assert_eq!(tarball, b"hello");
                assert_eq!(p.shasum.as_deref(), Some("ab"));
                assert_eq!(p.integrity.as_deref(), Some("sha512-x"));
            }
            _ => panic!("should pass"),
        }
    }
}

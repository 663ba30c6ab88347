//! npm tarballs: where a tarball is (its packument, the one the caller may read), the cold
//! fetch of tarball and packument at once at the project prefix, and the reply.

use std::sync::Arc;

use http::StatusCode;

use crate::auth::Credential;
use crate::cache::{expect_later, BlobSpec, Core, Expect, Origin};
use crate::error::{Error, NotFound};
use crate::gitlab::Namespace;
use crate::reply::Reply;

use super::offline;
use super::packument::{PackumentBuilder, TarballRef};
use super::{resolve, PackageName, Resolved};

pub(crate) async fn tarball(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<Reply, Error> {
    if let Some(reply) = tarball_at_once(core, scope, name, file, credential).await? {
        return Ok(reply);
    }
    let (origin, tref) = locate(core, scope, name, file, credential).await?;
    fetch_tarball(core, origin, &tref, name, credential).await
}

/// A cold tarball at a project prefix: GitLab's URL for it is known before its packument
/// is, so both are fetched at once and a miss costs one round trip, not two. GitLab's answer
/// to the tarball request, made with the caller's credential, is its own access decision; the
/// gate (the packument this caller may read, listing the file) still decides before the
/// first byte goes out, and the download is verified against the packument's checksums
/// before its last byte (its hashes are all computed as it streams in; see
/// `BlobSpec::expect_later`). `None`: not such a case, take the ordinary path.
async fn tarball_at_once(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<Option<Reply>, Error> {
    // GitLab writes tarball URLs with the project's numeric id, the name and the file plain.
    let Namespace::Project(id) = scope else {
        return Ok(None);
    };
    if core.is_offline() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let url = core.gitlab_url(&format!("{}/{name}/-/{file}", scope.npm_prefix()));
    let key = blob_key(Origin::Gitlab, &url);
    // Already fetched: served only once the gate has passed, the ordinary way.
    if core.has_blob(&key).await? {
        return Ok(None);
    }
    let (checksums, later) = expect_later();
    // Its own task: the download waits on it, whether or not this request stays.
    let located = tokio::spawn({
        let (core, scope, name, file) =
            (core.clone(), scope.clone(), name.clone(), file.to_string());
        let (credential, key) = (credential.clone(), key.clone());
        async move {
            let located = locate(&core, &scope, &name, &file, &credential).await;
            let expect = match &located {
                Ok((Origin::Gitlab, tref)) if blob_key(Origin::Gitlab, &tref.url) == key => Some(
                    Expect::npm(tref.shasum.as_deref(), tref.integrity.as_deref()),
                ),
                // Refused, public, or the packument names another URL: nothing to confirm.
                _ => None,
            };
            let _ = checksums.send(Some(expect));
            located
        }
    });
    let fetched = core
        .blob(BlobSpec {
            key: key.clone(),
            url,
            credential: credential.clone(),
            expect: Expect::default(),
            content_type: "application/octet-stream",
            kind: "npm_tarball",
            origin: Origin::Gitlab,
            validate: None,
            forward_name: Some(name.to_string()),
            expect_later: Some(later),
        })
        .await;
    let (origin, tref) = located.await.map_err(|source| Error::Task {
        what: "tarball lookup",
        source,
    })??;
    match fetched {
        Ok(hit) if origin == Origin::Gitlab && blob_key(origin, &tref.url) == key => {
            Ok(Some(tarball_reply(hit, origin, credential)))
        }
        // The download this request joined was led by a caller GitLab refused, or never
        // confirmed: with the gate passed, fetch as this caller.
        Err(e) if retry_alone(&e) => fetch_tarball(core, origin, &tref, name, credential)
            .await
            .map(Some),
        Err(e) => Err(tarball_refusal(e, credential)),
        // The packument lists the file under another URL: fetch that one.
        Ok(_) => fetch_tarball(core, origin, &tref, name, credential)
            .await
            .map(Some),
    }
}

/// Whether a download started at once failed for a reason that may be another caller's (a
/// refusal of the credential that led it, or checksums its own lookup never confirmed).
fn retry_alone(e: &Error) -> bool {
    matches!(
        e.inner(),
        Error::Store(crate::error::StoreError::Unconfirmed)
    ) || matches!(
        e.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

/// The gate for a tarball: whoever may read the package's metadata at this prefix may read
/// the files listed in the document they were allowed to read (at the group and instance
/// prefixes, that caller's own document, see `MetaSpec::per_caller`). Where the file lives
/// and what it must hash to, or the refusal as GitLab's tarball route words it.
async fn locate(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<(Origin, TarballRef), Error> {
    let mut attempts = 0;
    let offline = core.is_offline();
    let elsewhere = || offline::file_elsewhere(core, scope, name, file, credential);
    loop {
        attempts += 1;
        let Resolved { hit, origin } = match resolve(core, scope, name, credential).await {
            Ok(r) => r,
            // Offline, a file synced through another prefix answers here too.
            Err(e) if offline && e.status() == StatusCode::NOT_FOUND => match elsewhere()? {
                Some(tref) => return Ok((Origin::Gitlab, tref)),
                None => return Err(tarball_refusal(e, credential)),
            },
            Err(e) => return Err(tarball_refusal(e, credential)),
        };
        let aux_prefix = match origin {
            Origin::Gitlab => format!("npmfile/{}/{}/", scope.key(), name),
            Origin::Public => format!("npmpubfile/{}/{}/", scope.key(), name),
        };
        let key = PackumentBuilder::file_key(&aux_prefix, file);
        match core.listed::<TarballRef>(&hit, &key)? {
            Some(tref) => return Ok((origin, tref)),
            // Another caller's document may have replaced this one's between the two
            // reads (its files then carry the other revision): resolve once more.
            None if hit.per_caller && attempts < 2 => continue,
            None if offline && origin == Origin::Gitlab => match elsewhere()? {
                Some(tref) => return Ok((Origin::Gitlab, tref)),
                None => return Err(Error::npm_not_found("Package")),
            },
            None => return Err(Error::npm_not_found("Package")),
        }
    }
}

/// Serve a located tarball: from the store, or fetched as the caller (anonymously from a
/// public registry) and verified against its packument's checksums.
async fn fetch_tarball(
    core: &Arc<Core>,
    origin: Origin,
    tref: &TarballRef,
    name: &PackageName,
    credential: &Credential,
) -> Result<Reply, Error> {
    let fetch_as = match origin {
        Origin::Gitlab => credential.clone(),
        Origin::Public => Credential::anonymous(),
    };
    // A public tarball is only ever what its packument's checksum says: without one there is
    // nothing to verify the bytes against, so they are neither cached nor served.
    if origin == Origin::Public && tref.shasum.is_none() && tref.integrity.is_none() {
        return Err(Error::Upstream(crate::error::UpstreamError::Body {
            url: crate::urls::redact(&tref.url),
            reason: "the public registry's packument gives no shasum or integrity for this tarball; packrat serves only what it can verify".into(),
        }));
    }
    let hit = core
        .blob(BlobSpec {
            key: blob_key(origin, &tref.url),
            url: tref.url.clone(),
            credential: fetch_as,
            expect: Expect::npm(tref.shasum.as_deref(), tref.integrity.as_deref()),
            content_type: "application/octet-stream",
            kind: "npm_tarball",
            origin,
            validate: None,
            forward_name: (origin == Origin::Gitlab).then(|| name.to_string()),
            expect_later: None,
        })
        .await
        .map_err(|e| tarball_refusal(e, credential))?;
    Ok(tarball_reply(hit, origin, credential))
}

fn tarball_reply(hit: crate::cache::BlobHit, origin: Origin, credential: &Credential) -> Reply {
    let public = credential.is_anonymous() || origin == Origin::Public;
    Reply::blob(hit)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .immutable(public)
}

/// The index key of a tarball's blob: GitLab's by API path (whatever host GitLab wrote),
/// a public registry's by full URL. One file, one key, whichever prefix asked.
pub(crate) fn blob_key(origin: Origin, url: &str) -> String {
    match origin {
        Origin::Gitlab => format!(
            "npm-tgz:{}",
            url.find("/api/v4/").map_or(url, |i| &url[i..])
        ),
        Origin::Public => format!("npmpub-tgz:{url}"),
    }
}

/// GitLab's tarball route answers 404 where its metadata route answers 401 to an anonymous
/// caller (no `authenticate_non_public` there; the routes:
/// <https://docs.gitlab.com/api/packages/npm/>). On npm routes GitLab reads HTTP Basic only as
/// a deploy token, and a Basic credential that is none is no credential: such a caller is
/// anonymous to GitLab too. A token GitLab rejects in a carrier it reads is a 401 on both
/// routes.
fn tarball_refusal(e: Error, credential: &Credential) -> Error {
    let anonymous_to_gitlab = credential.is_anonymous() || credential.is_basic_only();
    match (e.status(), e.not_found()) {
        (StatusCode::UNAUTHORIZED, _) if anonymous_to_gitlab => Error::npm_not_found("Project"),
        (_, Some(NotFound::Package)) => Error::npm_not_found("Package"),
        _ => e,
    }
}

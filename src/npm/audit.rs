//! The npm audit POSTs (`npm audit`), answered as GitLab answers them with its request
//! forwarding off.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::auth::Credential;
use crate::cache::{Core, Fetched};
use crate::error::Error;
use crate::gitlab::Namespace;
use crate::reply::Reply;

use super::{AuditKind, NpmRequest};

/// The two audit POSTs, answered as GitLab does with request forwarding off ("npm audit
/// workflow" in <https://docs.gitlab.com/user/packages/npm_registry/>): the project prefix
/// answers `[]` to anyone the upstream lets read the project; the group and instance prefixes
/// answer 404; anonymous callers get 401.
pub(super) async fn audit(
    core: &Arc<Core>,
    scope: &Namespace,
    kind: AuditKind,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    if req.credential.is_anonymous() {
        return Err(Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    if !matches!(scope, Namespace::Project(_)) {
        return Err(Error::npm_not_found("Project"));
    }
    let path = match kind {
        AuditKind::AdvisoriesBulk => "advisories/bulk",
        AuditKind::AuditsQuick => "audits/quick",
    };
    // Let GitLab check the credential: it answers 200 `[]`, or 307 to a public registry
    // when its own forwarding is on (which packrat does not follow), or a refusal.
    let body = req.body.unwrap_or_default().bytes().await?;
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let path = format!("{}/-/npm/v1/security/{path}", scope.npm_prefix());
    match core
        .uncached_post(&path, req.credential, body, content_type, "npm_audit")
        .await?
    {
        // GitLab's forwarding is on: its 307 is sent before any access check, so whether
        // this caller may read the project's packages is asked another way.
        Fetched::ForwardedToPublic { .. } => {
            audit_read_check(core, scope, req.credential).await?;
            Ok(audit_empty())
        }
        Fetched::NotModified { .. } => Ok(audit_empty()),
        other => other.into_body(&path).map(|_| audit_empty()),
    }
}

fn audit_empty() -> Reply {
    Reply::json(StatusCode::OK, Bytes::from_static(b"[]"))
}

/// The read_package check GitLab's audit route makes with forwarding off, through the
/// Packages API (same permission): a denial becomes the audit route's own answer.
async fn audit_read_check(
    core: &Arc<Core>,
    scope: &Namespace,
    credential: &Credential,
) -> Result<(), Error> {
    let Namespace::Project(id) = scope else {
        return Err(Error::npm_not_found("Project"));
    };
    let path = format!(
        "/api/v4/projects/{}/packages?per_page=1",
        crate::gitlab::segment(id)
    );
    match core.uncached_get(&path, credential, "npm_audit").await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == StatusCode::NOT_FOUND => Err(Error::npm_not_found("Project")),
        Err(e) => Err(e),
    }
}

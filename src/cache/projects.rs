//! GitLab's two names for a project, its numeric id and its full path, as packrat learnt them:
//! from Packages API listings, and from `packrat sync`, which asks `GET /api/v4/projects/:id`
//! for every project it mirrors files of. An offline mirror uses them to answer at either
//! spelling of a project, to place a file inside a group or a top-level namespace, and to match
//! `offline.tokens` scopes that name a project either way.

use serde_json::Value;

use super::Core;
use crate::auth::Credential;
use crate::error::Error;
use crate::upstream::{self, Fetched, Request};

/// Aux key prefix: `pkgproj/<id>` → full path, `pkgproj/<full path>` → id.
const KEY: &str = "pkgproj/";

/// Largest `GET /projects/:id` answer read.
const MAX_PROJECT_DOC: u64 = 1 << 20;

fn key(id_or_path: &str) -> String {
    format!("{KEY}{id_or_path}")
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Core {
    /// The other name of a project: its full path for an id, its id for a path (GitLab's paths
    /// are case-insensitive, so a path is also tried in lower case).
    pub fn project_alias(&self, id_or_path: &str) -> Result<Option<String>, Error> {
        if let Some(found) = self.aux::<String>(&key(id_or_path))? {
            return Ok(Some(found));
        }
        if is_id(id_or_path) {
            return Ok(None);
        }
        self.aux::<String>(&key(&id_or_path.to_ascii_lowercase()))
    }

    /// A project's full path, if packrat knows it (`id_or_path` itself when it is one).
    pub fn project_path(&self, id_or_path: &str) -> Result<Option<String>, Error> {
        if is_id(id_or_path) {
            self.project_alias(id_or_path)
        } else {
            Ok(Some(id_or_path.to_string()))
        }
    }

    /// Remember that project `id` is `full_path`.
    pub fn learn_project(&self, id: &str, full_path: &str) -> Result<(), Error> {
        if !is_id(id) || full_path.is_empty() {
            return Ok(());
        }
        self.put_aux(&key(id), &full_path)?;
        self.put_aux(&key(full_path), &id)?;
        if full_path.bytes().any(|b| b.is_ascii_uppercase()) {
            self.put_aux(&key(&full_path.to_ascii_lowercase()), &id)?;
        }
        Ok(())
    }

    /// Make sure both names of a project are known, asking GitLab (`GET /api/v4/projects/:id`,
    /// with `credential`) when they are not. Best effort: a refusal or failure leaves them
    /// unknown, and only the spelling that was used answers offline.
    pub async fn learn_project_names(&self, credential: &Credential, id_or_path: &str) {
        match self.project_alias(id_or_path) {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the project names index");
                return;
            }
        }
        let segment = crate::gitlab::segment(id_or_path);
        let url = self
            .upstream
            .gitlab_url(&format!("/api/v4/projects/{segment}"));
        let mut req = Request::get(url.clone(), credential, "project");
        req.accept = Some("application/json");
        let doc = match self.upstream.send(req).await {
            Ok(Fetched::Body(body)) => upstream::read_all(body.stream, MAX_PROJECT_DOC, &url)
                .await
                .ok()
                .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok()),
            _ => None,
        };
        let id = doc
            .as_ref()
            .and_then(|d| d.get("id"))
            .and_then(Value::as_i64);
        let path = doc
            .as_ref()
            .and_then(|d| d.get("path_with_namespace"))
            .and_then(Value::as_str);
        match (id, path) {
            (Some(id), Some(path)) => {
                if let Err(e) = self.learn_project(&id.to_string(), path) {
                    tracing::warn!(error = %e, "cannot record a project's names");
                }
            }
            _ => tracing::debug!(
                project = id_or_path,
                "GitLab did not tell this project's names; only the spelling used answers offline"
            ),
        }
    }
}

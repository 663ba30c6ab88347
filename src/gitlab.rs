//! GitLab's namespaces as packrat routes them: a project (by numeric id or full path), a group
//! (by id or full path), or the instance. One type for every place that names one (the npm
//! prefixes, the Go project routes and `/go/`, the Packages API targets, `offline.tokens`
//! owners), owning the URL segment encoding, the API prefixes and the index-key fragments.
//! [`ProjectRef`] is a project as configuration and `packrat.list` name it.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters kept as-is when a project or group path is put into a URL segment (GitLab's
/// `:id` is a URL-encoded full path: `acme%2Fweb`).
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a request reads from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A project: numeric id or full path (decoded).
    Project(String),
    /// A group: numeric id or full path (decoded).
    Group(String),
    /// The whole instance (`/api/v4/packages/npm`, `/go/`, the checksum database).
    Instance,
}

/// A path segment `s` encoded as GitLab's `:id`.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

impl Namespace {
    /// Parse a raw (still percent-encoded) `:id` path segment: a number or a full path whose
    /// parts are GitLab path characters, never `.`, `..` or empty. `None`: not an id GitLab
    /// would route.
    pub fn parse_id(raw_segment: &str) -> Option<String> {
        let id = percent_decode_str(raw_segment)
            .decode_utf8()
            .ok()?
            .into_owned();
        let ok = !id.is_empty()
            && id.len() <= 255
            && !id.starts_with('/')
            && !id.ends_with('/')
            && id.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            });
        ok.then_some(id)
    }

    /// The id or path, as routed (`""` for the instance).
    pub fn id(&self) -> &str {
        match self {
            Namespace::Project(id) | Namespace::Group(id) => id,
            Namespace::Instance => "",
        }
    }

    /// The fragment index keys name it by: `p:<id>`, `g:<id>`, `i`.
    pub fn key(&self) -> String {
        match self {
            Namespace::Project(id) => format!("p:{id}"),
            Namespace::Group(id) => format!("g:{id}"),
            Namespace::Instance => "i".to_string(),
        }
    }

    /// `/api/v4/projects/<segment>`, `/api/v4/groups/<segment>`, `/api/v4`.
    pub fn api_path(&self) -> String {
        match self {
            Namespace::Project(id) => format!("/api/v4/projects/{}", segment(id)),
            Namespace::Group(id) => format!("/api/v4/groups/{}", segment(id)),
            Namespace::Instance => "/api/v4".to_string(),
        }
    }

    /// The npm API prefix at this namespace, as GitLab routes it (and packrat serves it).
    pub fn npm_prefix(&self) -> String {
        match self {
            Namespace::Project(_) => format!("{}/packages/npm", self.api_path()),
            Namespace::Group(_) => format!("{}/-/packages/npm", self.api_path()),
            Namespace::Instance => "/api/v4/packages/npm".to_string(),
        }
    }
}

/// A GitLab project as configuration and manifests name it: numeric id or full path
/// (`group/sub/proj`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectRef {
    Id(u64),
    Path(String),
}

/// Why a project id or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadProjectRef(pub String);

impl ProjectRef {
    /// Parses an id (`"42"`) or a full path, plain (`group/sub/proj`) or
    /// URL-encoded (`group%2Fsub%2Fproj`).
    pub fn parse(s: &str) -> Result<ProjectRef, BadProjectRef> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u64>() {
                Ok(0) => Err(BadProjectRef(format!(
                    "invalid project id {s}: must be positive"
                ))),
                Ok(id) => Ok(ProjectRef::Id(id)),
                Err(_) => Err(BadProjectRef(format!("invalid project id {s}: too large"))),
            };
        }
        let path = percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| {
                BadProjectRef(format!(
                    "invalid project path {s:?}: not UTF-8 once decoded"
                ))
            })?;
        let why = if path.is_empty() {
            Some("must not be empty")
        } else if path.starts_with('/') || path.ends_with('/') {
            Some("must not start or end with '/'")
        } else if path.contains("//") {
            Some("must not contain an empty segment")
        } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("must not contain whitespace")
        } else {
            None
        };
        match why {
            Some(why) => Err(BadProjectRef(format!(
                "invalid project {s:?}: {why} (expected a numeric id or a full path such as \"group/sub/project\")"
            ))),
            None => Ok(ProjectRef::Path(path.into_owned())),
        }
    }

    /// The project as a routed namespace.
    pub fn namespace(&self) -> Namespace {
        Namespace::Project(self.to_id())
    }

    /// The id, or the full path, as text (what a namespace holds).
    pub fn to_id(&self) -> String {
        match self {
            ProjectRef::Id(id) => id.to_string(),
            ProjectRef::Path(p) => p.clone(),
        }
    }

    /// The form used in `/api/v4/projects/<seg>`: the id, or the path with
    /// `/` (and anything else outside the unreserved set) percent-encoded.
    pub fn url_segment(&self) -> String {
        match self {
            ProjectRef::Id(id) => id.to_string(),
            ProjectRef::Path(p) => segment(p),
        }
    }
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectRef::Id(id) => write!(f, "{id}"),
            ProjectRef::Path(p) => f.write_str(p),
        }
    }
}

impl FromStr for ProjectRef {
    type Err = BadProjectRef;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_prefixes_and_keys() {
        assert_eq!(Namespace::parse_id("42").as_deref(), Some("42"));
        assert_eq!(
            Namespace::parse_id("acme%2Fweb").as_deref(),
            Some("acme/web")
        );
        assert_eq!(Namespace::parse_id("acme%2F..%2Fx"), None);
        assert_eq!(Namespace::parse_id("%2Facme"), None);
        let p = Namespace::Project("acme/web".into());
        assert_eq!(p.npm_prefix(), "/api/v4/projects/acme%2Fweb/packages/npm");
        assert_eq!(p.key(), "p:acme/web");
        assert_eq!(
            Namespace::Group("acme".into()).npm_prefix(),
            "/api/v4/groups/acme/-/packages/npm"
        );
        assert_eq!(Namespace::Instance.npm_prefix(), "/api/v4/packages/npm");
        assert_eq!(Namespace::Instance.key(), "i");
    }
}

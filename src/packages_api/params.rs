//! Query parameters as GitLab's Grape endpoints read them (the parameters of
//! <https://docs.gitlab.com/api/packages/>): Rack parsing, Grape coercion and validation
//! (every failure, in declaration order, joined with `", "`), and the finders' filters and
//! orderings. Everything here is pure, so the answers packrat computes from its index can be
//! checked without any I/O.

use std::cmp::Ordering;

use base64::Engine as _;

use serde_json::Value;

use crate::error::{Error, RequestError};

/// `Packages::Package.package_types` (`package_type` in
/// <https://docs.gitlab.com/api/packages/>), with their enum values (ordering by `type` orders
/// by the stored integer, not by the name).
pub const PACKAGE_TYPES: &[(&str, u8)] = &[
    ("maven", 1),
    ("npm", 2),
    ("conan", 3),
    ("nuget", 4),
    ("pypi", 5),
    ("composer", 6),
    ("generic", 7),
    ("golang", 8),
    ("debian", 9),
    ("rubygems", 10),
    ("helm", 11),
    ("terraform_module", 12),
    ("rpm", 13),
    ("ml_model", 14),
];

/// `Packages::Package.statuses`.
pub const STATUSES: &[&str] = &[
    "default",
    "hidden",
    "processing",
    "error",
    "pending_destruction",
    "deprecated",
];

/// What a list shows without `status` (`DISPLAYABLE_STATUSES`).
pub const DISPLAYABLE: &[&str] = &["default", "error", "deprecated"];

/// Kaminari's `max_per_page`.
pub const MAX_PER_PAGE: i64 = 100;
pub const DEFAULT_PER_PAGE: i64 = 20;
/// The pipelines endpoint's page size limit.
pub const MAX_PIPELINES_PER_PAGE: i64 = 20;

/// The query string as Rack parses it: `+` is a space, components are percent-decoded, the
/// last of repeated keys wins, first-appearance order is kept.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.unwrap_or("").split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (form_decode(k), form_decode(v));
            if k.is_empty() {
                continue;
            }
            match pairs.iter_mut().find(|(pk, _)| *pk == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Grape's validation errors, collected in declaration order.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RequestError::Grape(self.0.join(", ")).into())
        }
    }
}

/// An `Integer` param: absent or empty → `None`; not an integer → `<name> is invalid`.
fn int(q: &Query, name: &str, errors: &mut Errors) -> Option<i64> {
    let raw = q.get(name)?.trim();
    if raw.is_empty() {
        return None;
    }
    match parse_int(raw) {
        Some(n) => Some(n),
        None => {
            errors.0.push(format!("{name} is invalid"));
            None
        }
    }
}

/// Ruby's `Integer(s, 10)` for what clients send: optional sign, digits.
pub fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Ruby has bignums; an id too large for i64 simply names nothing.
    Some(s.parse::<i64>().unwrap_or(if s.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// A `Boolean` param (dry-types' `Params::Bool` spellings, any case).
fn boolean(q: &Query, name: &str, errors: &mut Errors) -> Option<bool> {
    let raw = q.get(name)?.trim();
    if raw.is_empty() {
        return None;
    }
    match raw.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => {
            errors.0.push(format!("{name} is invalid"));
            None
        }
    }
}

/// A `String` param with `values:`.
fn one_of(q: &Query, name: &str, values: &[&str], errors: &mut Errors) -> Option<String> {
    let raw = q.get(name)?;
    if values.contains(&raw) {
        Some(raw.to_string())
    } else {
        errors.0.push(format!("{name} does not have a valid value"));
        None
    }
}

/// `use :pagination`: `page` (default 1) and `per_page` (default 20; 0 is refused).
fn pagination(q: &Query, errors: &mut Errors, max: Option<i64>) -> (i64, i64) {
    let page = int(q, "page", errors).unwrap_or(1);
    let per_page = int(q, "per_page", errors);
    let bad = match (per_page, max) {
        (Some(0), _) => true,
        (Some(n), Some(max)) => !(1..=max).contains(&n),
        _ => false,
    };
    if bad {
        errors
            .0
            .push("per_page does not have a valid value".to_string());
    }
    (page, per_page.unwrap_or(DEFAULT_PER_PAGE))
}

/// Offset pagination as requested (the values the `Link` header repeats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    /// `page` after coercion (Kaminari treats anything below 1 as 1).
    pub page: i64,
    /// `per_page` after coercion, before Kaminari clamps it (never 0).
    pub per_page: i64,
}

impl Offset {
    pub fn current_page(&self) -> i64 {
        self.page.max(1)
    }

    /// Kaminari's `per`: negative → the default, above `max_per_page` → clamped.
    pub fn limit(&self) -> i64 {
        if self.per_page < 0 {
            DEFAULT_PER_PAGE
        } else {
            self.per_page.min(MAX_PER_PAGE)
        }
    }
}

/// Which list a query is for: it decides `order_by`'s values and `exclude_subgroups`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Project,
    Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderBy {
    CreatedAt,
    Name,
    Version,
    Type,
    ProjectPath,
}

/// `GET /projects/:id/packages` and `GET /groups/:id/packages`, validated.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub offset: Offset,
    pub order_by: OrderBy,
    pub desc: bool,
    pub package_type: Option<String>,
    pub package_name: Option<String>,
    pub package_version: Option<String>,
    pub include_versionless: bool,
    pub status: Option<String>,
    pub exclude_subgroups: bool,
    /// Every param, as GitLab's `params` holds them (path `id`, defaults, coerced values,
    /// and whatever else the client sent), for the `Link` header.
    pub link_params: Vec<(String, String)>,
}

impl ListQuery {
    pub fn parse(q: &Query, kind: ListKind, id: &str) -> Result<ListQuery, Error> {
        let mut errors = Errors::default();
        let (page, per_page) = pagination(q, &mut errors, None);
        let exclude_subgroups = match kind {
            ListKind::Group => boolean(q, "exclude_subgroups", &mut errors).unwrap_or(false),
            ListKind::Project => false,
        };
        let orders: &[&str] = match kind {
            ListKind::Project => &["created_at", "name", "version", "type"],
            ListKind::Group => &["created_at", "name", "version", "type", "project_path"],
        };
        let order_by = one_of(q, "order_by", orders, &mut errors);
        let sort = one_of(q, "sort", &["asc", "desc"], &mut errors);
        let types: Vec<&str> = PACKAGE_TYPES.iter().map(|(t, _)| *t).collect();
        let package_type = one_of(q, "package_type", &types, &mut errors);
        let include_versionless = boolean(q, "include_versionless", &mut errors);
        let status = one_of(q, "status", STATUSES, &mut errors);
        errors.finish()?;
        let order_by_s = order_by.unwrap_or_else(|| "created_at".into());
        let sort_s = sort.unwrap_or_else(|| "asc".into());
        let mut link = LinkParams::from(q);
        link.set("id", id);
        link.set("page", &page.to_string());
        link.set("per_page", &per_page.to_string());
        link.set("order_by", &order_by_s);
        link.set("sort", &sort_s);
        if kind == ListKind::Group {
            link.set("exclude_subgroups", &exclude_subgroups.to_string());
        }
        if let Some(b) = include_versionless {
            link.set("include_versionless", &b.to_string());
        }
        Ok(ListQuery {
            offset: Offset { page, per_page },
            order_by: match order_by_s.as_str() {
                "name" => OrderBy::Name,
                "version" => OrderBy::Version,
                "type" => OrderBy::Type,
                "project_path" => OrderBy::ProjectPath,
                _ => OrderBy::CreatedAt,
            },
            desc: sort_s == "desc",
            package_type,
            package_name: q.get("package_name").map(str::to_string),
            package_version: q.get("package_version").map(str::to_string),
            include_versionless: include_versionless.unwrap_or(false),
            status,
            exclude_subgroups,
            link_params: link.0,
        })
    }

    /// The finder's filters (`PackagesFinder` / `GroupPackagesFinder`).
    pub fn matches(&self, item: &Value) -> bool {
        let version = item.get("version").and_then(Value::as_str);
        if !self.include_versionless && version.is_none() {
            return false;
        }
        let ptype = str_field(item, "package_type");
        match &self.package_type {
            Some(t) if ptype != t => return false,
            None if ptype == "terraform_module" => return false,
            _ => {}
        }
        if let Some(name) = self
            .package_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        {
            if !fuzzy_match(str_field(item, "name"), name) {
                return false;
            }
        }
        if let Some(v) = self.package_version.as_deref().filter(|v| !v.is_empty()) {
            if version != Some(v) {
                return false;
            }
        }
        let status = str_field(item, "status");
        match &self.status {
            Some(s) => status == s,
            None => DISPLAYABLE.contains(&status),
        }
    }

    /// The finder's ordering; ties broken by id in the same direction (as GitLab's keyset
    /// orders do; UNCONFIRMED for `created_at`, whose ties Postgres leaves open).
    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let primary = match self.order_by {
            OrderBy::CreatedAt => str_field(a, "created_at").cmp(str_field(b, "created_at")),
            OrderBy::Name => str_field(a, "name").cmp(str_field(b, "name")),
            // Postgres sorts NULL last ascending (first descending).
            OrderBy::Version => match (
                a.get("version").and_then(Value::as_str),
                b.get("version").and_then(Value::as_str),
            ) {
                (Some(x), Some(y)) => x.cmp(y),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
            },
            OrderBy::Type => type_rank(str_field(a, "package_type"))
                .cmp(&type_rank(str_field(b, "package_type"))),
            // `projects.path`: the project's own path segment.
            OrderBy::ProjectPath => project_segment(a).cmp(project_segment(b)),
        };
        let ord = primary.then_with(|| id_of(a).cmp(&id_of(b)));
        if self.desc {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// `GET .../package_files`, validated.
#[derive(Clone, Debug)]
pub struct FilesQuery {
    pub offset: Offset,
    pub order_by: String,
    pub desc: bool,
    pub link_params: Vec<(String, String)>,
}

impl FilesQuery {
    pub fn parse(q: &Query, id: &str, package_id: i64) -> Result<FilesQuery, Error> {
        let mut errors = Errors::default();
        let (page, per_page) = pagination(q, &mut errors, None);
        let order_by = one_of(
            q,
            "order_by",
            &["id", "created_at", "file_name"],
            &mut errors,
        );
        let sort = one_of(q, "sort", &["asc", "desc"], &mut errors);
        errors.finish()?;
        let order_by = order_by.unwrap_or_else(|| "id".into());
        let sort = sort.unwrap_or_else(|| "asc".into());
        let mut link = LinkParams::from(q);
        link.set("id", id);
        link.set("package_id", &package_id.to_string());
        link.set("page", &page.to_string());
        link.set("per_page", &per_page.to_string());
        link.set("order_by", &order_by);
        link.set("sort", &sort);
        Ok(FilesQuery {
            offset: Offset { page, per_page },
            desc: sort == "desc",
            order_by,
            link_params: link.0,
        })
    }

    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let primary = match self.order_by.as_str() {
            "created_at" => str_field(a, "created_at").cmp(str_field(b, "created_at")),
            "file_name" => str_field(a, "file_name").cmp(str_field(b, "file_name")),
            _ => Ordering::Equal,
        };
        let ord = primary.then_with(|| id_of(a).cmp(&id_of(b)));
        if self.desc {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// `GET .../pipelines`: keyset only, `per_page` 1..=20.
#[derive(Clone, Debug)]
pub struct PipelinesQuery {
    pub per_page: i64,
    /// Pipelines with an id below this one (from the cursor), or all.
    pub before: Option<i64>,
    /// The params of the next link: the client's, the path params (`id`, `package_id`) and
    /// `per_page`, as GitLab's `Keyset::HeaderBuilder` merges them with the new cursor.
    pub request_params: Vec<(String, String)>,
}

impl PipelinesQuery {
    pub fn parse(q: &Query, id: &str, package_id: i64) -> Result<PipelinesQuery, Error> {
        let mut errors = Errors::default();
        let per_page = int(q, "per_page", &mut errors);
        if per_page.is_some_and(|n| !(1..=MAX_PIPELINES_PER_PAGE).contains(&n)) {
            errors
                .0
                .push("per_page does not have a valid value".to_string());
        }
        let before = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => match decode_cursor(c) {
                Some(id) => Some(id),
                None => {
                    errors.0.push("cursor is invalid".to_string());
                    None
                }
            },
        };
        errors.finish()?;
        let per_page = per_page.unwrap_or(MAX_PIPELINES_PER_PAGE);
        let mut link = LinkParams::from(q);
        link.set("id", id);
        link.set("package_id", &package_id.to_string());
        link.set("per_page", &per_page.to_string());
        Ok(PipelinesQuery {
            per_page,
            before,
            request_params: link.0,
        })
    }
}

/// `Base64.urlsafe_encode64({"id":"<id>","_kd":"n"}.to_json)`, GitLab's keyset cursor.
pub fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(format!("{{\"id\":\"{id}\",\"_kd\":\"n\"}}"))
}

/// The id a keyset cursor continues after (only "next" cursors are ever handed out).
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(cursor.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor.trim()))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let id = v.get("id")?;
    id.as_i64()
        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
}

/// Params for a `Link` header, replacing values by key.
struct LinkParams(Vec<(String, String)>);

impl LinkParams {
    fn from(q: &Query) -> Self {
        LinkParams(q.pairs().to_vec())
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }
}

pub fn str_field<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn id_of(item: &Value) -> i64 {
    item.get("id").and_then(Value::as_i64).unwrap_or(0)
}

fn type_rank(t: &str) -> u8 {
    PACKAGE_TYPES
        .iter()
        .find(|(name, _)| *name == t)
        .map_or(u8::MAX, |(_, n)| *n)
}

fn project_segment(item: &Value) -> &str {
    let p = str_field(item, "project_path");
    p.rsplit('/').next().unwrap_or(p)
}

/// GitLab's `fuzzy_search(query, [:name], use_minimum_char_limit: false)`: every term (words,
/// and `"quoted phrases"`) must occur in the name, ignoring case.
pub fn fuzzy_match(name: &str, query: &str) -> bool {
    let squished = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if squished.is_empty() {
        return true;
    }
    let name = name.to_lowercase();
    search_terms(&squished)
        .iter()
        .all(|t| name.contains(&t.to_lowercase()))
}

/// `Gitlab::SQL::Pattern.split_query_to_search_terms`: quoted terms (delimited by the start,
/// the end or spaces) stay whole, the rest splits on whitespace.
fn search_terms(query: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut quoted = Vec::new();
    for token in split_keeping_quotes(query) {
        if token.len() >= 2 && token.starts_with('"') && token.ends_with('"') {
            quoted.push(token[1..token.len() - 1].to_string());
        } else {
            words.extend(token.split_whitespace().map(str::to_string));
        }
    }
    words.extend(quoted);
    words
}

/// Splits on spaces, keeping `"..."` runs that start and end at a boundary as one token.
fn split_keeping_quotes(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        if bytes[i] == b'"' {
            // A quoted term: up to a closing quote followed by a space or the end.
            let mut j = i + 1;
            let mut end = None;
            while j < bytes.len() {
                if bytes[j] == b'"' && j > i + 1 && (j + 1 == bytes.len() || bytes[j + 1] == b' ') {
                    end = Some(j);
                    break;
                }
                j += 1;
            }
            if let Some(e) = end {
                out.push(&query[i..=e]);
                i = e + 1;
                continue;
            }
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b' ' {
            i += 1;
        }
        out.push(&query[start..i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    fn grape_error(e: Error) -> String {
        match e {
            Error::Request(RequestError::Grape(s)) => s,
            other => panic!("not a Grape error: {other:?}"),
        }
    }

    #[test]
    fn rack_parsing() {
        let query = q("a=1&b=x+y&a=2&c=%40acme%2Fui&&=z&flag");
        assert_eq!(query.get("a"), Some("2"));
        assert_eq!(query.get("b"), Some("x y"));
        assert_eq!(query.get("c"), Some("@acme/ui"));
        assert_eq!(query.get("flag"), Some(""));
        assert_eq!(query.pairs().len(), 4);
    }

    #[test]
    fn defaults_and_link_params() {
        let lq = ListQuery::parse(&q("package_type=npm&foo=bar"), ListKind::Project, "42").unwrap();
        assert_eq!(
            lq.offset,
            Offset {
                page: 1,
                per_page: 20
            }
        );
        assert_eq!(lq.order_by, OrderBy::CreatedAt);
        assert!(!lq.desc);
        let keys: Vec<_> = lq
            .link_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            keys,
            [
                "package_type=npm",
                "foo=bar",
                "id=42",
                "page=1",
                "per_page=20",
                "order_by=created_at",
                "sort=asc"
            ]
        );
        let g = ListQuery::parse(
            &q("include_versionless=1&per_page=500"),
            ListKind::Group,
            "acme/sub",
        )
        .unwrap();
        assert!(g
            .link_params
            .contains(&("exclude_subgroups".into(), "false".into())));
        assert!(g
            .link_params
            .contains(&("include_versionless".into(), "true".into())));
        assert_eq!(g.offset.limit(), 100);
        assert!(g.link_params.contains(&("per_page".into(), "500".into())));
    }

    #[test]
    fn grape_validation_errors_in_declaration_order() {
        let e = ListQuery::parse(&q("per_page=0"), ListKind::Project, "1").unwrap_err();
        assert_eq!(grape_error(e), "per_page does not have a valid value");
        let e = ListQuery::parse(
            &q("sort=up&order_by=project_path&page=x"),
            ListKind::Project,
            "1",
        )
        .unwrap_err();
        assert_eq!(
            grape_error(e),
            "page is invalid, order_by does not have a valid value, sort does not have a valid value"
        );
        assert!(ListQuery::parse(&q("order_by=project_path"), ListKind::Group, "1").is_ok());
        let e =
            ListQuery::parse(&q("status=gone&package_type=jar"), ListKind::Group, "1").unwrap_err();
        assert_eq!(
            grape_error(e),
            "package_type does not have a valid value, status does not have a valid value"
        );
        let e = ListQuery::parse(&q("exclude_subgroups=maybe"), ListKind::Group, "1").unwrap_err();
        assert_eq!(grape_error(e), "exclude_subgroups is invalid");
        let e = PipelinesQuery::parse(&q("per_page=21"), "1", 2).unwrap_err();
        assert_eq!(grape_error(e), "per_page does not have a valid value");
        let e = PipelinesQuery::parse(&q("cursor=%%%"), "1", 2).unwrap_err();
        assert_eq!(grape_error(e), "cursor is invalid");
    }

    #[test]
    fn kaminari_limits() {
        assert_eq!(
            Offset {
                page: 0,
                per_page: -3
            }
            .limit(),
            20
        );
        assert_eq!(
            Offset {
                page: 0,
                per_page: -3
            }
            .current_page(),
            1
        );
        assert_eq!(
            Offset {
                page: 3,
                per_page: 7
            }
            .limit(),
            7
        );
    }

    #[test]
    fn filters() {
        let item = |name: &str, version: Option<&str>, t: &str, status: &str| json!({"id": 1, "name": name, "version": version, "package_type": t, "status": status});
        let lq = ListQuery::parse(&Query::default(), ListKind::Project, "1").unwrap();
        assert!(lq.matches(&item("a", Some("1"), "npm", "default")));
        assert!(
            !lq.matches(&item("a", None, "generic", "default")),
            "versionless hidden"
        );
        assert!(!lq.matches(&item("a", Some("1"), "terraform_module", "default")));
        assert!(!lq.matches(&item("a", Some("1"), "npm", "hidden")));
        assert!(lq.matches(&item("a", Some("1"), "npm", "error")));
        let lq = ListQuery::parse(
            &q("package_type=terraform_module&status=hidden&include_versionless=true"),
            ListKind::Project,
            "1",
        )
        .unwrap();
        assert!(lq.matches(&item("a", None, "terraform_module", "hidden")));
        let lq = ListQuery::parse(&q("package_name=ACME+ui"), ListKind::Project, "1").unwrap();
        assert!(lq.matches(&item("@acme/ui", Some("1"), "npm", "default")));
        assert!(!lq.matches(&item("@acme/utils", Some("1"), "npm", "default")));
        let lq = ListQuery::parse(&q("package_name=%22me%2Fu%22"), ListKind::Project, "1").unwrap();
        assert!(lq.matches(&item("@acme/utils", Some("1"), "npm", "default")));
        let lq = ListQuery::parse(
            &q("package_version=1&include_versionless=yes"),
            ListKind::Project,
            "1",
        )
        .unwrap();
        assert!(!lq.matches(&item("a", None, "generic", "default")));
    }

    #[test]
    fn orderings() {
        let a = json!({"id": 1, "name": "b", "version": null, "package_type": "npm", "created_at": "2024-01-01T00:00:02.000Z", "project_path": "z/a"});
        let b = json!({"id": 2, "name": "a", "version": "1.0", "package_type": "maven", "created_at": "2024-01-01T00:00:01.000Z", "project_path": "a/b"});
        let by = |s: &str| ListQuery::parse(&q(s), ListKind::Group, "1").unwrap();
        assert_eq!(by("").compare(&a, &b), Ordering::Greater);
        assert_eq!(by("order_by=name").compare(&a, &b), Ordering::Greater);
        assert_eq!(
            by("order_by=version").compare(&a, &b),
            Ordering::Greater,
            "NULL last"
        );
        assert_eq!(
            by("order_by=version&sort=desc").compare(&a, &b),
            Ordering::Less
        );
        assert_eq!(
            by("order_by=type").compare(&a, &b),
            Ordering::Greater,
            "maven(1) < npm(2)"
        );
        assert_eq!(
            by("order_by=project_path").compare(&a, &b),
            Ordering::Less,
            "a < b"
        );
    }

    #[test]
    fn fuzzy_terms() {
        assert!(fuzzy_match("@acme/ui-kit", "  kit   ACME "));
        assert!(!fuzzy_match("@acme/ui-kit", "kit zzz"));
        assert!(fuzzy_match("hello world pkg", "\"world pkg\""));
        assert!(!fuzzy_match("hello world-pkg", "\"world pkg\""));
        assert!(fuzzy_match("x", ""));
    }
}

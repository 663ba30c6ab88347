//! The Packages API (API.md §3): `GET /projects/:id/packages`, `GET /groups/:id/packages`,
//! `GET /projects/:id/packages/:package_id` (with `versions`), `.../package_files`,
//! `.../pipelines` (keyset), `DELETE /projects/:id/packages/:package_id` and
//! `DELETE .../package_files/:package_file_id`.
//!
//! Written from API.md, independently of packrat's adapter, so tests can compare the two:
//! Grape's coercion and validation messages, the finders' filters and orderings, Kaminari's
//! arithmetic and `OffsetHeaderBuilder`'s headers, the keyset `Link`. Choices API.md leaves
//! open are marked UNCONFIRMED.
//!
//! Like GitLab (Grape runs `before` blocks, where the project is looked up and access checked,
//! ahead of parameter validation), a caller who cannot see the project gets 404 even for a
//! query with invalid parameters.

use std::cmp::Ordering;

use base64::Engine as _;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::{authenticate, decode, Caller, FakeRequest, Family, Package, Reply, Shared, World};

/// `package_type` values and their enum integers (ordering by `type` uses the integers).
const TYPES: &[(&str, u8)] = &[
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
const STATUSES: &[&str] = &[
    "default",
    "hidden",
    "processing",
    "error",
    "pending_destruction",
    "deprecated",
];
const DISPLAYABLE: &[&str] = &["default", "error", "deprecated"];
const COUNT_LIMIT: usize = 10_000;

#[derive(Clone, Copy)]
enum Target<'a> {
    Project(&'a str),
    Group(&'a str),
}

pub fn route(fake: &Shared, req: &FakeRequest) -> Option<Reply> {
    let read = req.is_read();
    let delete = req.method == Method::DELETE;
    if let Some(rest) = req.path.strip_prefix("/api/v4/groups/") {
        let (id, rest) = rest.split_once('/')?;
        return (rest == "packages" && read).then(|| list(fake, req, Target::Group(id)));
    }
    let rest = req.path.strip_prefix("/api/v4/projects/")?;
    let (id, rest) = rest.split_once('/')?;
    let below = rest.strip_prefix("packages")?;
    if below.is_empty() {
        return read.then(|| list(fake, req, Target::Project(id)));
    }
    let segs: Vec<&str> = below.strip_prefix('/')?.split('/').collect();
    // Other formats' routes live below `packages/<format>/...`.
    if segs.len() > 1 && !segs[0].bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    match (segs.as_slice(), read, delete) {
        ([pid], true, _) => Some(show(fake, req, id, pid)),
        ([pid], _, true) => Some(delete_package(fake, req, id, pid)),
        ([pid, "package_files"], true, _) => Some(files(fake, req, id, pid)),
        ([pid, "pipelines"], true, _) => Some(pipelines(fake, req, id, pid)),
        ([pid, "package_files", fid], _, true) => Some(delete_file(fake, req, id, pid, fid)),
        _ => None,
    }
}

// ---- parameters (Rack + Grape) --------------------------------------------------------------

/// The query string as Rack parses it (`+` is a space, the last repeated key wins).
fn query(req: &FakeRequest) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in req.query.as_deref().unwrap_or("").split('&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")));
        if k.is_empty() {
            continue;
        }
        match pairs.iter_mut().find(|(pk, _)| *pk == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    pairs
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn set(pairs: &mut Vec<(String, String)>, key: &str, value: String) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value,
        None => pairs.push((key.to_string(), value)),
    }
}

/// Grape's validators, collecting messages in declaration order.
struct Grape<'a> {
    pairs: &'a [(String, String)],
    errors: Vec<String>,
}

impl Grape<'_> {
    fn integer(&mut self, name: &str) -> Option<i64> {
        let raw = get(self.pairs, name)?.trim();
        if raw.is_empty() {
            return None;
        }
        let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            self.errors.push(format!("{name} is invalid"));
            return None;
        }
        Some(raw.parse().unwrap_or(i64::MAX))
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        let raw = get(self.pairs, name)?.trim().to_ascii_lowercase();
        match raw.as_str() {
            "" => None,
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            _ => {
                self.errors.push(format!("{name} is invalid"));
                None
            }
        }
    }

    fn values(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let raw = get(self.pairs, name)?;
        if allowed.contains(&raw) {
            Some(raw.to_string())
        } else {
            self.errors
                .push(format!("{name} does not have a valid value"));
            None
        }
    }

    /// `use :pagination`.
    fn pagination(&mut self) -> (i64, i64) {
        let page = self.integer("page").unwrap_or(1);
        let per_page = self.integer("per_page");
        if per_page == Some(0) {
            self.errors
                .push("per_page does not have a valid value".to_string());
        }
        (page, per_page.unwrap_or(20))
    }

    fn finish(self) -> Result<(), Reply> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Reply::bad_param(&self.errors.join(", ")))
        }
    }
}

/// Rails' `to_query`: `CGI.escape`d pairs, sorted.
fn to_query(pairs: &[(String, String)]) -> String {
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut out: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    out.sort();
    out.join("&")
}

/// Kaminari + `OffsetPagination` + `OffsetHeaderBuilder`: the page's rows and the headers.
fn paginate<T: Clone>(
    fake: &Shared,
    req: &FakeRequest,
    rows: &[T],
    page: i64,
    per_page: i64,
    params: &[(String, String)],
) -> (Vec<T>, Vec<(&'static str, String)>) {
    let limit = if per_page < 0 { 20 } else { per_page.min(100) } as usize;
    let current = page.max(1);
    let start = (current as usize - 1).saturating_mul(limit);
    let shown: Vec<T> = rows.iter().skip(start).take(limit).cloned().collect();
    let total = rows.len();
    let counted = total <= COUNT_LIMIT;
    let (next, prev, total_pages) = if counted {
        let pages = total.div_ceil(limit) as i64;
        let out_of_range = current > pages;
        (
            (current < pages && !out_of_range).then_some(current + 1),
            (current > 1 && !out_of_range).then_some(current - 1),
            Some(pages.max(1)),
        )
    } else {
        let out_of_range = shown.is_empty();
        (
            (!out_of_range && total > start + limit).then_some(current + 1),
            (current > 1 && !out_of_range).then_some(current - 1),
            None,
        )
    };
    let href = |p: i64| {
        let mut q = params.to_vec();
        set(&mut q, "page", p.to_string());
        format!("{}{}?{}", fake.base_url(), req.path, to_query(&q))
    };
    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!("<{}>; rel=\"prev\"", href(p)));
    }
    if let Some(n) = next {
        links.push(format!("<{}>; rel=\"next\"", href(n)));
    }
    links.push(format!("<{}>; rel=\"first\"", href(1)));
    if let Some(t) = total_pages {
        links.push(format!("<{}>; rel=\"last\"", href(t)));
    }
    let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut headers = vec![
        ("x-per-page", limit.to_string()),
        ("x-page", current.to_string()),
        ("x-next-page", opt(next)),
        ("x-prev-page", opt(prev)),
        ("link", links.join(", ")),
    ];
    if let Some(t) = total_pages {
        headers.push(("x-total", total.to_string()));
        headers.push(("x-total-pages", t.to_string()));
    }
    (shown, headers)
}

fn with_headers(mut reply: Reply, headers: &[(&str, String)]) -> Reply {
    for (name, value) in headers {
        reply = reply.header(name, value);
    }
    reply.header("cache-control", "max-age=0, private, must-revalidate")
}

// ---- access ---------------------------------------------------------------------------------

/// The project-level 404 (the npm helper's structured form; UNCONFIRMED, API.md §3.1).
fn project_not_found() -> Reply {
    Reply::npm_not_found("Project")
}

/// `user_project` + `authorize_read_package!`: the caller and the project they may read.
fn project_access(world: &World, req: &FakeRequest, id: &str) -> Result<(Caller, u64), Reply> {
    let caller = authenticate(world, req, Family::PackagesApi)?;
    match world.project_by_ref(&decode(id)) {
        Some(p) if world.can_read(&caller, p.id) => Ok((caller, p.id)),
        _ => Err(project_not_found()),
    }
}

// ---- rendering ------------------------------------------------------------------------------

fn render_pipeline(world: &World, base: &str, id: u64) -> Value {
    let Some(p) = world.pipelines.iter().find(|p| p.id == id) else {
        return Value::Null;
    };
    let path = world
        .project(p.project_id)
        .map(|pr| pr.full_path.clone())
        .unwrap_or_default();
    json!({
        "id": p.id,
        "iid": p.iid,
        "project_id": p.project_id,
        "sha": p.sha,
        "ref": p.git_ref,
        "status": p.status,
        "source": p.source,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "web_url": format!("{base}/{path}/-/pipelines/{}", p.id),
        "user": {
            "id": 1,
            "username": p.user,
            "name": "Administrator",
            "state": "active",
            "avatar_url": format!("{base}/uploads/-/system/user/avatar/1/avatar.png"),
            "web_url": format!("{base}/{}", p.user),
        },
    })
}

/// Tags of a package: the npm dist-tags pointing at its version (element shape UNCONFIRMED).
fn tags_of(world: &World, p: &Package) -> Value {
    let mut tags: Vec<Value> = Vec::new();
    if p.package_type == "npm" {
        if let (Some(map), Some(version)) = (
            world.npm_tags.get(&(p.project_id, p.name.clone())),
            p.version.as_deref(),
        ) {
            for (tag, v) in map {
                if v == version {
                    tags.push(json!({ "name": tag }));
                }
            }
        }
    }
    Value::Array(tags)
}

/// `API::Entities::Package`.
fn render_package(world: &World, base: &str, caller: &Caller, p: &Package, group: bool) -> Value {
    let project_path = world
        .project(p.project_id)
        .map(|pr| pr.full_path.clone())
        .unwrap_or_default();
    let mut links = Map::new();
    if p.status == "default" || p.status == "deprecated" {
        links.insert(
            "web_path".into(),
            json!(format!("/{project_path}/-/packages/{}", p.id)),
        );
    }
    if world.can_destroy(caller, p.project_id) {
        links.insert(
            "delete_api_path".into(),
            json!(format!(
                "{base}/api/v4/projects/{}/packages/{}",
                p.project_id, p.id
            )),
        );
    }
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("name".into(), json!(p.name));
    m.insert("version".into(), json!(p.version));
    m.insert("package_type".into(), json!(p.package_type));
    m.insert("status".into(), json!(p.status));
    m.insert("_links".into(), Value::Object(links));
    m.insert("created_at".into(), json!(p.created_at));
    m.insert("last_downloaded_at".into(), json!(p.last_downloaded_at));
    if group {
        m.insert("project_id".into(), json!(p.project_id));
        m.insert("project_path".into(), json!(project_path));
    }
    m.insert("tags".into(), tags_of(world, p));
    if let Some(last) = p.pipeline_ids.last() {
        m.insert("pipeline".into(), render_pipeline(world, base, *last));
        m.insert("pipelines".into(), json!([]));
    }
    Value::Object(m)
}

// ---- lists ----------------------------------------------------------------------------------

struct ListParams {
    page: i64,
    per_page: i64,
    order_by: String,
    desc: bool,
    package_type: Option<String>,
    package_name: Option<String>,
    package_version: Option<String>,
    include_versionless: bool,
    status: Option<String>,
    exclude_subgroups: bool,
    link: Vec<(String, String)>,
}

fn list_params(req: &FakeRequest, group: bool, id: &str) -> Result<ListParams, Reply> {
    let pairs = query(req);
    let mut g = Grape {
        pairs: &pairs,
        errors: Vec::new(),
    };
    let (page, per_page) = g.pagination();
    let exclude_subgroups = if group {
        g.boolean("exclude_subgroups").unwrap_or(false)
    } else {
        false
    };
    let orders: &[&str] = if group {
        &["created_at", "name", "version", "type", "project_path"]
    } else {
        &["created_at", "name", "version", "type"]
    };
    let order_by = g
        .values("order_by", orders)
        .unwrap_or_else(|| "created_at".into());
    let sort = g
        .values("sort", &["asc", "desc"])
        .unwrap_or_else(|| "asc".into());
    let types: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
    let package_type = g.values("package_type", &types);
    let include_versionless = g.boolean("include_versionless");
    let status = g.values("status", STATUSES);
    g.finish()?;
    let mut link = pairs.clone();
    set(&mut link, "id", decode(id));
    set(&mut link, "page", page.to_string());
    set(&mut link, "per_page", per_page.to_string());
    set(&mut link, "order_by", order_by.clone());
    set(&mut link, "sort", sort.clone());
    if group {
        set(
            &mut link,
            "exclude_subgroups",
            exclude_subgroups.to_string(),
        );
    }
    if let Some(b) = include_versionless {
        set(&mut link, "include_versionless", b.to_string());
    }
    Ok(ListParams {
        page,
        per_page,
        order_by,
        desc: sort == "desc",
        package_type,
        package_name: get(&pairs, "package_name").map(str::to_string),
        package_version: get(&pairs, "package_version").map(str::to_string),
        include_versionless: include_versionless == Some(true),
        status,
        exclude_subgroups,
        link,
    })
}

/// `fuzzy_search` on the name: every word (or `"quoted phrase"`) occurs, ignoring case.
fn fuzzy(name: &str, query: &str) -> bool {
    let query = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if query.is_empty() {
        return true;
    }
    let name = name.to_lowercase();
    let mut terms: Vec<String> = Vec::new();
    let mut quoted: Vec<String> = Vec::new();
    let mut rest = query.as_str();
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.starts_with('"') {
            // `"..."` followed by a space or the end.
            if let Some(end) = rest[1..]
                .match_indices('"')
                .map(|(i, _)| i + 1)
                .find(|&i| i > 1 && (i + 1 == rest.len() || rest.as_bytes()[i + 1] == b' '))
            {
                quoted.push(rest[1..end].to_string());
                rest = &rest[end + 1..];
                continue;
            }
        }
        let end = rest.find(' ').unwrap_or(rest.len());
        terms.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    terms.extend(quoted);
    terms.iter().all(|t| name.contains(&t.to_lowercase()))
}

fn list_filter(p: &Package, q: &ListParams) -> bool {
    if !q.include_versionless && p.version.is_none() {
        return false;
    }
    match &q.package_type {
        Some(t) if &p.package_type != t => return false,
        None if p.package_type == "terraform_module" => return false,
        _ => {}
    }
    if let Some(n) = q.package_name.as_deref().filter(|n| !n.trim().is_empty()) {
        if !fuzzy(&p.name, n) {
            return false;
        }
    }
    if let Some(v) = q.package_version.as_deref().filter(|v| !v.is_empty()) {
        if p.version.as_deref() != Some(v) {
            return false;
        }
    }
    match &q.status {
        Some(s) => &p.status == s,
        None => DISPLAYABLE.contains(&p.status.as_str()),
    }
}

fn list_order(world: &World, a: &Package, b: &Package, q: &ListParams) -> Ordering {
    let rank = |t: &str| {
        TYPES
            .iter()
            .find(|(n, _)| *n == t)
            .map_or(u8::MAX, |(_, r)| *r)
    };
    let segment = |p: &Package| {
        world
            .project(p.project_id)
            .map(|pr| pr.full_path.rsplit('/').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let primary = match q.order_by.as_str() {
        "name" => a.name.cmp(&b.name),
        // NULL versions sort last ascending (Postgres).
        "version" => match (&a.version, &b.version) {
            (Some(x), Some(y)) => x.cmp(y),
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
        },
        "type" => rank(&a.package_type).cmp(&rank(&b.package_type)),
        "project_path" => segment(a).cmp(&segment(b)),
        _ => a.created_at.cmp(&b.created_at),
    };
    // Ties: id in the sort direction (UNCONFIRMED for Postgres' unordered ties).
    let ord = primary.then(a.id.cmp(&b.id));
    if q.desc {
        ord.reverse()
    } else {
        ord
    }
}

fn list(fake: &Shared, req: &FakeRequest, target: Target<'_>) -> Reply {
    fake.with_world(|world| {
        let caller = match authenticate(world, req, Family::PackagesApi) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let (projects, group, id) = match target {
            Target::Project(id) => match world.project_by_ref(&decode(id)) {
                Some(p) if world.can_read(&caller, p.id) => (vec![p.id], false, id),
                _ => return project_not_found(),
            },
            Target::Group(id) => match world.group_by_ref(&decode(id)) {
                Some(g) if world.can_read_group(&caller, g) => {
                    let q = list_params(req, true, id);
                    let direct = q.as_ref().is_ok_and(|q| q.exclude_subgroups);
                    let projects = world
                        .projects_under(&g.full_path)
                        .into_iter()
                        .filter(|p| !direct || p.parent_path().eq_ignore_ascii_case(&g.full_path))
                        .filter(|p| world.can_read(&caller, p.id))
                        .map(|p| p.id)
                        .collect();
                    (projects, true, id)
                }
                _ => return Reply::not_found("Group"),
            },
        };
        let q = match list_params(req, group, id) {
            Ok(q) => q,
            Err(reply) => return reply,
        };
        let mut rows: Vec<&Package> = world
            .packages
            .iter()
            .filter(|p| projects.contains(&p.project_id) && list_filter(p, &q))
            .collect();
        rows.sort_by(|a, b| list_order(world, a, b, &q));
        let (shown, headers) = paginate(fake, req, &rows, q.page, q.per_page, &q.link);
        let body: Vec<Value> = shown
            .iter()
            .map(|p| render_package(world, fake.base_url(), &caller, p, group))
            .collect();
        with_headers(Reply::json(200, &Value::Array(body)), &headers)
    })
}

// ---- one package ----------------------------------------------------------------------------

fn package_id(raw: &str, name: &str) -> Result<i64, Reply> {
    let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reply::bad_param(&format!("{name} is invalid")));
    }
    Ok(raw.parse().unwrap_or(i64::MAX))
}

/// `PackageFinder`: a displayable package of the project, else 404 `Not found`.
fn find_displayable(world: &World, project_id: u64, id: i64) -> Result<&Package, Reply> {
    world
        .packages
        .iter()
        .find(|p| {
            i64::try_from(p.id) == Ok(id)
                && p.project_id == project_id
                && DISPLAYABLE.contains(&p.status.as_str())
        })
        .ok_or_else(|| Reply::json(404, &json!({"message": "404 Not found"})))
}

fn show(fake: &Shared, req: &FakeRequest, id: &str, pid: &str) -> Reply {
    fake.with_world(|world| {
        let (caller, project_id) = match project_access(world, req, id) {
            Ok(x) => x,
            Err(reply) => return reply,
        };
        let pid = match package_id(pid, "package_id") {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let package = match find_displayable(world, project_id, pid) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if package.status == "error" {
            return Reply::json(404, &json!({"message": "Package not found"}));
        }
        let mut doc = render_package(world, fake.base_url(), &caller, package, false);
        let mut others: Vec<&Package> = world
            .packages
            .iter()
            .filter(|o| {
                o.project_id == project_id
                    && o.id != package.id
                    && o.name == package.name
                    && o.package_type == package.package_type
                    && DISPLAYABLE.contains(&o.status.as_str())
                    && o.version.is_some()
                    && o.version != package.version
            })
            .collect();
        others.sort_by(|a, b| a.version.cmp(&b.version).then(a.id.cmp(&b.id)));
        let versions: Vec<Value> = others
            .iter()
            .map(|o| {
                let mut v = Map::new();
                v.insert("id".into(), json!(o.id));
                v.insert("version".into(), json!(o.version));
                v.insert("created_at".into(), json!(o.created_at));
                v.insert("tags".into(), tags_of(world, o));
                if let Some(last) = o.pipeline_ids.last() {
                    v.insert(
                        "pipeline".into(),
                        render_pipeline(world, fake.base_url(), *last),
                    );
                }
                Value::Object(v)
            })
            .collect();
        doc["versions"] = Value::Array(versions);
        with_headers(Reply::json(200, &doc), &[])
    })
}

fn files(fake: &Shared, req: &FakeRequest, id: &str, pid: &str) -> Reply {
    fake.with_world(|world| {
        let (_, project_id) = match project_access(world, req, id) {
            Ok(x) => x,
            Err(reply) => return reply,
        };
        let pairs = query(req);
        let mut g = Grape {
            pairs: &pairs,
            errors: Vec::new(),
        };
        let pid_value = match package_id(pid, "package_id") {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let (page, per_page) = g.pagination();
        let order_by = g
            .values("order_by", &["id", "created_at", "file_name"])
            .unwrap_or_else(|| "id".into());
        let sort = g
            .values("sort", &["asc", "desc"])
            .unwrap_or_else(|| "asc".into());
        if let Err(reply) = g.finish() {
            return reply;
        }
        let package = match find_displayable(world, project_id, pid_value) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let mut rows: Vec<_> = package
            .files
            .iter()
            .filter(|f| !f.pending_destruction)
            .collect();
        rows.sort_by(|a, b| {
            let primary = match order_by.as_str() {
                "created_at" => a.created_at.cmp(&b.created_at),
                "file_name" => a.file_name.cmp(&b.file_name),
                _ => Ordering::Equal,
            };
            let ord = primary.then(a.id.cmp(&b.id));
            if sort == "desc" {
                ord.reverse()
            } else {
                ord
            }
        });
        let mut link = pairs.clone();
        set(&mut link, "id", decode(id));
        set(&mut link, "package_id", pid_value.to_string());
        set(&mut link, "page", page.to_string());
        set(&mut link, "per_page", per_page.to_string());
        set(&mut link, "order_by", order_by.clone());
        set(&mut link, "sort", sort.clone());
        let (shown, headers) = paginate(fake, req, &rows, page, per_page, &link);
        let body: Vec<Value> = shown
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "package_id": package.id,
                    "created_at": f.created_at,
                    "file_name": f.file_name,
                    "size": f.size,
                    "file_md5": f.file_md5,
                    "file_sha1": f.file_sha1,
                    "file_sha256": f.file_sha256,
                })
            })
            .collect();
        with_headers(Reply::json(200, &Value::Array(body)), &headers)
    })
}

/// GitLab's keyset cursor: `Base64.urlsafe_encode64({"id":"<id>","_kd":"n"}.to_json)`.
pub fn encode_cursor(id: u64) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(format!("{{\"id\":\"{id}\",\"_kd\":\"n\"}}"))
}

fn decode_cursor(c: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(c.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.trim()))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let id = v.get("id")?;
    id.as_u64()
        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
}

fn pipelines(fake: &Shared, req: &FakeRequest, id: &str, pid: &str) -> Reply {
    fake.with_world(|world| {
        let (_, project_id) = match project_access(world, req, id) {
            Ok(x) => x,
            Err(reply) => return reply,
        };
        let pid = match package_id(pid, "package_id") {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let pairs = query(req);
        let mut g = Grape {
            pairs: &pairs,
            errors: Vec::new(),
        };
        let per_page = g.integer("per_page");
        if per_page.is_some_and(|n| !(1..=20).contains(&n)) {
            g.errors.push("per_page does not have a valid value".into());
        }
        let before = match get(&pairs, "cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => match decode_cursor(c) {
                Some(id) => Some(id),
                None => {
                    // UNCONFIRMED: GitLab's answer to a cursor it cannot decode.
                    g.errors.push("cursor is invalid".into());
                    None
                }
            },
        };
        if let Err(reply) = g.finish() {
            return reply;
        }
        let package = match find_displayable(world, project_id, pid) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if package.status != "default" && package.status != "deprecated" {
            // `not_found!('Package')` through the npm helper (API.md §3.3, text UNCONFIRMED).
            return Reply::npm_not_found("Package");
        }
        let per_page = per_page.unwrap_or(20) as usize;
        let mut ids: Vec<u64> = package
            .pipeline_ids
            .iter()
            .copied()
            .filter(|p| before.is_none_or(|b| *p < b))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let more = ids.len() > per_page;
        ids.truncate(per_page);
        let body: Vec<Value> = ids
            .iter()
            .map(|p| render_pipeline(world, fake.base_url(), *p))
            .collect();
        let mut reply = with_headers(Reply::json(200, &Value::Array(body)), &[]);
        if let (true, Some(last)) = (more, ids.last()) {
            // `Keyset::HeaderBuilder` merges every param, the path's `id` and `package_id` and
            // the defaulted `per_page` included, with the new cursor.
            let mut q = pairs.clone();
            set(
                &mut q,
                "id",
                percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
            set(&mut q, "package_id", pid.to_string());
            set(&mut q, "per_page", per_page.to_string());
            set(&mut q, "cursor", encode_cursor(*last));
            reply = reply.header(
                "link",
                &format!(
                    "<{}{}?{}>; rel=\"next\"",
                    fake.base_url(),
                    req.path,
                    to_query(&q)
                ),
            );
        }
        reply
    })
}

// ---- deletes --------------------------------------------------------------------------------

/// `authorize_destroy_package!` then the finder: 403 for non-maintainers comes before 404.
fn destroy_access(world: &World, req: &FakeRequest, id: &str) -> Result<u64, Reply> {
    let (caller, project_id) = project_access(world, req, id)?;
    if !world.can_destroy(&caller, project_id) {
        return Err(Reply::forbidden());
    }
    Ok(project_id)
}

fn delete_package(fake: &Shared, req: &FakeRequest, id: &str, pid: &str) -> Reply {
    fake.with_world(|world| {
        let project_id = match destroy_access(world, req, id) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let pid = match package_id(pid, "package_id") {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let package = match find_displayable(world, project_id, pid) {
            Ok(p) => p.id,
            Err(reply) => return reply,
        };
        world.destroy_package(package);
        Reply::new(204, "application/json", bytes::Bytes::new())
    })
}

fn delete_file(fake: &Shared, req: &FakeRequest, id: &str, pid: &str, fid: &str) -> Reply {
    fake.with_world(|world| {
        let project_id = match destroy_access(world, req, id) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let (pid, fid) = match (
            package_id(pid, "package_id"),
            package_id(fid, "package_file_id"),
        ) {
            (Ok(p), Ok(f)) => (p, f),
            (Err(reply), _) | (_, Err(reply)) => return reply,
        };
        let package = match find_displayable(world, project_id, pid) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let Some(file) = package
            .files
            .iter()
            .find(|f| i64::try_from(f.id) == Ok(fid) && !f.pending_destruction)
        else {
            // Bare `not_found!` through the npm helper (UNCONFIRMED text).
            return Reply::npm_not_found("Package File");
        };
        let (package_id, file_id) = (package.id, file.id);
        world.destroy_package_file(package_id, file_id);
        Reply::new(204, "application/json", bytes::Bytes::new())
    })
}

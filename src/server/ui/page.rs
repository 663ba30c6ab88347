//! The operator page's HTML (maud: compile-time templates, every interpolation escaped). The
//! login page shows nothing the cache holds; the status page is the [`Report`] for a person.
//! No script and no external asset: the page refreshes itself with a meta refresh.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::plot::{plot, Line};
use crate::server::report::{Holding, Report};
use crate::status::live::Tally;
use crate::status::Ecosystem;

/// Seconds between refreshes of the status page.
pub const REFRESH_SECS: u32 = 10;

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px;color:#222}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ddd}
h1{font-size:20px}h2{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;width:100%;margin-bottom:8px}
td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px}
.ok{color:#070}.bad{color:#b00}.muted{color:#777}
.bar{background:#eee;border-radius:4px;height:14px;overflow:hidden}
.bar>div{background:#3a7;height:100%}
.bar.warn>div{background:#d80}.bar.full>div{background:#c33}
figure{margin:0}figcaption{font-weight:600}.legend{margin:2px 0;font-size:12px}
form.login{max-width:360px;margin:60px auto;display:flex;flex-direction:column;gap:8px}
input,button{font:inherit;padding:6px}.error{color:#b00}
";

const COLOURS: [(Ecosystem, &str, &str); 3] = [
    (Ecosystem::Npm, "npm", "#c33"),
    (Ecosystem::Go, "Go", "#27a"),
    (Ecosystem::PackagesApi, "Packages API", "#795"),
];

fn layout(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh {
                    meta http-equiv="refresh" content=(REFRESH_SECS);
                }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

/// The login form. `error`: why the last attempt failed.
pub fn login(error: Option<&str>) -> Markup {
    layout(
        "packrat: operator login",
        false,
        html! {
            form.login method="post" action="/-/ui/login" {
                h1 { "packrat operator page" }
                label for="token" { "Operator token (one of server.ops_tokens)" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button #login type="submit" { "Log in" }
                @if let Some(e) = error {
                    p.error #login-error { (e) }
                }
            }
        },
    )
}

/// A unix-millisecond time as UTC, to the second.
fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn ago(now: u64, ms: u64) -> String {
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Bytes in binary units.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), |r| format!("{:.0}%", r * 100.0))
}

fn eco_name(e: Ecosystem) -> &'static str {
    COLOURS
        .iter()
        .find(|(x, _, _)| *x == e)
        .map_or("", |(_, n, _)| n)
}

fn usage_bar(id: &str, used: f64) -> Markup {
    let pct = (used * 100.0).clamp(0.0, 100.0);
    let class = if used >= 0.95 {
        "bar full"
    } else if used >= 0.8 {
        "bar warn"
    } else {
        "bar"
    };
    html! {
        div class=(class) id=(id) title=(format!("{pct:.1}%")) {
            div style=(format!("width:{pct:.1}%")) {}
        }
    }
}

/// One plotted line per ecosystem, its points taken from each minute by `value`.
fn lines<'a>(r: &'a Report, value: impl Fn(&Tally) -> Option<f64>) -> Vec<Line<'a>> {
    r.requests
        .iter()
        .map(|e| {
            let (_, label, colour) = COLOURS
                .iter()
                .find(|(x, _, _)| *x == e.ecosystem)
                .copied()
                .unwrap_or((e.ecosystem, "", "#000"));
            Line {
                label,
                colour,
                values: e.per_minute.iter().map(&value).collect(),
            }
        })
        .collect()
}

/// The status page.
pub fn status(r: &Report) -> Markup {
    let requests_lines = lines(r, |t| Some(t.requests as f64));
    let ratio_lines = lines(r, |t| t.hit_ratio().map(|v| v * 100.0));
    let (cache, upstream) = (r.bytes.served_from_cache, r.bytes.served_from_upstream);
    let cache_share = if cache + upstream == 0 {
        0.0
    } else {
        cache as f64 / (cache + upstream) as f64
    };
    layout(
        "packrat: status",
        true,
        html! {
            header {
                h1 { "packrat " (r.version) }
                form method="post" action="/-/ui/logout" {
                    button #logout type="submit" { "Log out" }
                }
            }
            p.muted #build {
                "up " (r.uptime_seconds / 3600) " h " ((r.uptime_seconds % 3600) / 60) " min "
                "(since " (when(r.started_at)) "), " (r.build.profile) " build for " (r.build.target)
                @if let Some(c) = r.build.commit { ", commit " (c) }
                @if r.offline { " · " strong { "offline mirror" } }
                " · refreshes every " (REFRESH_SECS) " s"
            }
            div.grid {
                div.card #upstream {
                    h2 { "Upstream" }
                    p { (r.upstream.url) " "
                        @match r.upstream.reachable {
                            Some(true) => span.ok #reachable { "reachable" },
                            Some(false) => span.bad #reachable { "unreachable" },
                            None => span.muted #reachable { "not contacted yet" },
                        }
                    }
                    p { "latency over " (r.upstream.latency_ms.window_minutes) " min ("
                        (r.upstream.latency_ms.samples) " requests): p50 "
                        span #p50 { (r.upstream.latency_ms.p50.map_or("–".into(), |v| format!("{v} ms"))) }
                        ", p99 "
                        span #p99 { (r.upstream.latency_ms.p99.map_or("–".into(), |v| format!("{v} ms"))) }
                    }
                    @if let Some(e) = &r.upstream.last_error {
                        p #last-error { "last error " (ago(r.now, e.at)) " (" (when(e.at)) "): " span.bad { (e.message) } }
                    } @else {
                        p.muted #last-error { "no upstream error since start" }
                    }
                }
                div.card #store {
                    h2 { "Store" }
                    p { span #store-used { (size(r.store.blob_bytes)) } " of " (size(r.store.max_size))
                        " (storage.max_size), " (format!("{:.1}%", r.store.used_ratio * 100.0)) }
                    (usage_bar("store-bar", r.store.used_ratio))
                    p { "served from the cache " span #bytes-cache { (size(cache)) }
                        ", from the upstream " span #bytes-upstream { (size(upstream)) } }
                    (usage_bar("bytes-bar", cache_share))
                }
            }
            h2 { "Requests" }
            table #requests {
                tr { th { "" } th { "last hour" } th { "hit ratio" } th { "errors" }
                     th { "since start" } th { "hit ratio" } th { "errors" } }
                @for e in &r.requests {
                    tr id=(format!("requests-{}", e.ecosystem.as_str())) {
                        th { (eco_name(e.ecosystem)) }
                        td.n.requests-hour { (e.last_hour.tally.requests) }
                        td.n { (ratio(e.last_hour.hit_ratio)) }
                        td.n { (e.last_hour.tally.errors) }
                        td.n.requests-total { (e.since_start.tally.requests) }
                        td.n { (ratio(e.since_start.hit_ratio)) }
                        td.n { (e.since_start.tally.errors) }
                    }
                }
            }
            div.grid {
                (plot("plot-requests", "Requests per minute", &requests_lines, None, ""))
                (plot("plot-hit-ratio", "Hit ratio per minute", &ratio_lines, Some(100.0), "%"))
            }
            div.grid {
                div {
                    h2 { "Hottest packages" }
                    table #hot-packages {
                        tr { th { "" } th { "name" } th { "requests" } }
                        @for p in &r.hot_packages {
                            tr { td { (eco_name(p.ecosystem)) } td.name { (p.name) } td.n { (p.requests) } }
                        }
                        @if r.hot_packages.is_empty() { tr { td.muted colspan="3" { "no requests yet" } } }
                    }
                }
                div {
                    h2 { "Recent misses" }
                    (events("recent-misses", r.now, &r.recent_misses))
                }
            }
            h2 { "Recent failures" }
            (events("recent-failures", r.now, &r.recent_failures))
            div.grid {
                div {
                    h2 { "Pins (" (r.pins.count) ")" }
                    table #pins {
                        tr { th { "" } th { "name" } th { "first served by GitLab" } }
                        @for p in &r.pins.items {
                            tr { td { (format!("{:?}", p.kind).to_lowercase()) } td.name { (p.name) } td { (when(p.first_seen)) } }
                        }
                        @if r.pins.items.is_empty() { tr { td.muted colspan="3" { "nothing pinned yet" } } }
                    }
                }
                div {
                    h2 { "Blocked dependency-confusion attempts (" (r.dependency_confusion_blocked) " since start)" }
                    table #blocked {
                        tr { th { "" } th { "name" } th { "attempts" } th { "last" } }
                        @for b in &r.blocked.items {
                            tr { td { (format!("{:?}", b.kind).to_lowercase()) } td.name { (b.name) } td.n { (b.count) } td { (when(b.last)) } }
                        }
                        @if r.blocked.items.is_empty() { tr { td.muted colspan="4" { "none" } } }
                    }
                }
            }
            h2 { "Maintenance runs" }
            table #runs {
                tr { th { "" } th { "finished" } th { "result" } th { "summary" } }
                @for (kind, run) in r.runs.all() {
                    tr id=(format!("run-{}", kind.as_str())) {
                        th { (kind.as_str()) }
                        @if let Some(run) = run {
                            td { (when(run.finished_at)) " (" (ago(r.now, run.finished_at)) ", by " (run.by) ")" }
                            td { @if run.ok { span.ok { "ok" } } @else { span.bad { "failed" } } }
                            td { (run.summary) }
                        } @else {
                            td.muted colspan="3" { "never (on this data directory)" }
                        }
                    }
                }
            }
            h2 { "What the mirror holds" }
            (holdings(&r.mirror.holdings))
            @if let Some(b) = &r.mirror.last_bundle {
                p #last-bundle { "last bundle imported: "
                    (b.get("file").and_then(|v| v.as_str()).unwrap_or("?"))
                    ", made " (b.get("created_at").and_then(serde_json::Value::as_u64).map(when).unwrap_or_default())
                    " by packrat " (b.get("packrat_version").and_then(|v| v.as_str()).unwrap_or("?"))
                    ": " (b.get("entries").and_then(serde_json::Value::as_u64).unwrap_or(0)) " records, "
                    (b.get("blob_count").and_then(serde_json::Value::as_u64).unwrap_or(0)) " blobs ("
                    (size(b.get("total_bytes").and_then(serde_json::Value::as_u64).unwrap_or(0))) ")"
                    @if b.get("incremental").and_then(serde_json::Value::as_bool) == Some(true) { ", incremental" }
                    @if b.get("signed").and_then(serde_json::Value::as_bool) == Some(true) { ", signed" }
                }
            }
        },
    )
}

fn events(id: &str, now: u64, list: &[crate::status::live::Event]) -> Markup {
    html! {
        table id=(id) {
            tr { th { "when" } th { "" } th { "name" } th { "status" } th { "outcome" } }
            @for e in list {
                tr { td { (ago(now, e.at)) } td { (eco_name(e.ecosystem)) } td.name { (e.name) }
                     td.n { (e.status) } td { (e.outcome) } }
            }
            @if list.is_empty() { tr { td.muted colspan="5" { "none" } } }
        }
    }
}

fn holdings(h: &[Holding]) -> Markup {
    html! {
        table #holdings {
            tr { th { "" } th { "documents" } th { "files" } }
            @for x in h {
                tr { th { (x.ecosystem.map(eco_name).unwrap_or("")) } td.n { (x.documents) } td.n { (x.files) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::live::Event;

    #[test]
    fn names_are_escaped() {
        let hostile = Event {
            at: 0,
            ecosystem: Ecosystem::Npm,
            name: "<script>alert(1)</script>\"'&".into(),
            status: 502,
            outcome: "bypass",
        };
        let html = events("t", 1000, &[hostile]).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"),
            "{html}"
        );
    }

    #[test]
    fn the_login_page_carries_no_data() {
        let html = login(Some("<b>no</b>")).into_string();
        assert!(html.contains(r#"action="/-/ui/login""#));
        assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(50 << 30), "50.0 GiB");
    }
}

//! GitLab's pagination headers (<https://docs.gitlab.com/api/rest/#pagination>; the package
//! endpoints: <https://docs.gitlab.com/api/packages/>), computed for a list packrat answers
//! itself:
//!
//! - offset pagination (`Gitlab::Pagination::OffsetHeaderBuilder` over Kaminari):
//!   `X-Per-Page`, `X-Page`, `X-Next-Page`, `X-Prev-Page` (empty when none), `Link` with
//!   `prev`, `next`, `first`, `last` in that order, `X-Total`, `X-Total-Pages` (≥ 1); above
//!   10,000 rows the totals and the `last` link are left out;
//! - keyset pagination (pipelines): only `Link: <...cursor=...>; rel="next"`.
//!
//! Link URLs are packrat's public URL + the request path + Rails' `to_query` of the params.

use std::ops::Range;

use super::params::{encode_cursor, Offset};

/// Above this many rows GitLab stops counting (`OffsetPagination::COUNT_LIMIT`).
pub const COUNT_LIMIT: usize = 10_000;

/// One page of an offset-paginated list: which rows, and the headers.
#[derive(Debug)]
pub struct OffsetPage {
    pub rows: Range<usize>,
    pub headers: Vec<(&'static str, String)>,
}

/// Kaminari's page arithmetic over `total` rows, with GitLab's headers.
pub fn offset(
    total: usize,
    offset: Offset,
    params: &[(String, String)],
    base_url: &str,
) -> OffsetPage {
    let limit = usize::try_from(offset.limit()).unwrap_or(1).max(1);
    let current = offset.current_page();
    let cur = usize::try_from(current).unwrap_or(usize::MAX);
    let start = cur.saturating_sub(1).saturating_mul(limit);
    let rows = start.min(total)..start.saturating_add(limit).min(total);
    let without_counts = total > COUNT_LIMIT;
    let (next, prev, total_pages) = if without_counts {
        // `PaginatableWithoutCount`: out of range = this page is empty.
        let out_of_range = rows.is_empty();
        let has_next = total > start.saturating_add(limit);
        (
            (!out_of_range && has_next).then(|| current + 1),
            (current > 1 && !out_of_range).then(|| current - 1),
            None,
        )
    } else {
        let pages = total.div_ceil(limit);
        let pages_i = i64::try_from(pages).unwrap_or(i64::MAX);
        let out_of_range = current > pages_i;
        (
            (current < pages_i && !out_of_range).then(|| current + 1),
            (current > 1 && !out_of_range).then(|| current - 1),
            Some(pages_i.max(1)),
        )
    };
    let href = |page: i64| {
        let mut p: Vec<(String, String)> = params.to_vec();
        match p.iter_mut().find(|(k, _)| k == "page") {
            Some(e) => e.1 = page.to_string(),
            None => p.push(("page".into(), page.to_string())),
        }
        format!("{base_url}?{}", to_query(&p))
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
    OffsetPage { rows, headers }
}

/// The keyset `Link` for the page after one ending at pipeline `last_id`.
pub fn keyset_next_link(params: &[(String, String)], last_id: i64, base_url: &str) -> String {
    let mut p: Vec<(String, String)> = params.to_vec();
    let cursor = encode_cursor(last_id);
    match p.iter_mut().find(|(k, _)| k == "cursor") {
        Some(e) => e.1 = cursor,
        None => p.push(("cursor".into(), cursor)),
    }
    format!("<{base_url}?{}>; rel=\"next\"", to_query(&p))
}

/// Rails' `Hash#to_query`: `CGI.escape(k)=CGI.escape(v)` pairs, sorted, joined with `&`.
pub fn to_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", cgi_escape(k), cgi_escape(v)))
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// Ruby's `CGI.escape`: unreserved bytes stay, space becomes `+`, the rest `%XX` (upper hex).
pub fn cgi_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(page: i64, per_page: i64) -> Vec<(String, String)> {
        vec![
            ("id".into(), "42".into()),
            ("page".into(), page.to_string()),
            ("per_page".into(), per_page.to_string()),
            ("order_by".into(), "created_at".into()),
            ("sort".into(), "asc".into()),
        ]
    }

    fn header<'a>(p: &'a OffsetPage, name: &str) -> Option<&'a str> {
        p.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn middle_page() {
        let p = offset(
            45,
            Offset {
                page: 2,
                per_page: 20,
            },
            &params(2, 20),
            "http://p/api/v4/projects/42/packages",
        );
        assert_eq!(p.rows, 20..40);
        assert_eq!(header(&p, "x-next-page"), Some("3"));
        assert_eq!(header(&p, "x-prev-page"), Some("1"));
        assert_eq!(header(&p, "x-total"), Some("45"));
        assert_eq!(header(&p, "x-total-pages"), Some("3"));
        assert_eq!(
            header(&p, "link"),
            Some(
                "<http://p/api/v4/projects/42/packages?id=42&order_by=created_at&page=1&per_page=20&sort=asc>; rel=\"prev\", \
                 <http://p/api/v4/projects/42/packages?id=42&order_by=created_at&page=3&per_page=20&sort=asc>; rel=\"next\", \
                 <http://p/api/v4/projects/42/packages?id=42&order_by=created_at&page=1&per_page=20&sort=asc>; rel=\"first\", \
                 <http://p/api/v4/projects/42/packages?id=42&order_by=created_at&page=3&per_page=20&sort=asc>; rel=\"last\""
            )
        );
    }

    #[test]
    fn empty_and_out_of_range() {
        let p = offset(
            0,
            Offset {
                page: 1,
                per_page: 20,
            },
            &params(1, 20),
            "u",
        );
        assert_eq!(p.rows, 0..0);
        assert_eq!(header(&p, "x-next-page"), Some(""));
        assert_eq!(header(&p, "x-prev-page"), Some(""));
        assert_eq!(header(&p, "x-total-pages"), Some("1"));
        let p = offset(
            5,
            Offset {
                page: 9,
                per_page: 2,
            },
            &params(9, 2),
            "u",
        );
        assert_eq!(p.rows, 5..5);
        assert_eq!(header(&p, "x-page"), Some("9"));
        assert_eq!(
            header(&p, "x-prev-page"),
            Some(""),
            "out of range has no prev"
        );
        assert_eq!(header(&p, "x-total-pages"), Some("3"));
        let p = offset(
            5,
            Offset {
                page: 3,
                per_page: 2,
            },
            &params(3, 2),
            "u",
        );
        assert_eq!(p.rows, 4..5);
        assert_eq!(header(&p, "x-next-page"), Some(""));
    }

    #[test]
    fn clamped_per_page_keeps_the_requested_value_in_links() {
        let p = offset(
            250,
            Offset {
                page: 1,
                per_page: 500,
            },
            &params(1, 500),
            "u",
        );
        assert_eq!(p.rows, 0..100);
        assert_eq!(header(&p, "x-per-page"), Some("100"));
        assert_eq!(header(&p, "x-total-pages"), Some("3"));
        assert!(header(&p, "link").unwrap().contains("per_page=500"));
    }

    #[test]
    fn no_counts_above_ten_thousand() {
        let p = offset(
            10_001,
            Offset {
                page: 2,
                per_page: 100,
            },
            &params(2, 100),
            "u",
        );
        assert!(header(&p, "x-total").is_none());
        assert!(header(&p, "x-total-pages").is_none());
        assert!(!header(&p, "link").unwrap().contains("rel=\"last\""));
        assert_eq!(header(&p, "x-next-page"), Some("3"));
        let last = offset(
            10_001,
            Offset {
                page: 101,
                per_page: 100,
            },
            &params(101, 100),
            "u",
        );
        assert_eq!(last.rows, 10_000..10_001);
        assert_eq!(header(&last, "x-next-page"), Some(""));
        assert_eq!(header(&last, "x-prev-page"), Some("100"));
        let exact = offset(
            10_000,
            Offset {
                page: 1,
                per_page: 100,
            },
            &params(1, 100),
            "u",
        );
        assert_eq!(header(&exact, "x-total"), Some("10000"));
    }

    #[test]
    fn rails_query_strings() {
        let q = to_query(&[
            ("package_name".into(), "@acme/ui kit".into()),
            ("a_b".into(), "1".into()),
            ("a".into(), "~x*".into()),
        ]);
        assert_eq!(q, "a=~x%2A&a_b=1&package_name=%40acme%2Fui+kit");
    }

    #[test]
    fn cursors_round_trip() {
        use super::super::params::decode_cursor;
        let c = encode_cursor(123);
        assert_eq!(decode_cursor(&c), Some(123));
        assert_eq!(c, "eyJpZCI6IjEyMyIsIl9rZCI6Im4ifQ==");
        assert_eq!(decode_cursor("not base64!"), None);
        let link = keyset_next_link(&[("per_page".into(), "2".into())], 7, "http://p/x");
        assert_eq!(
            link,
            format!(
                "<http://p/x?cursor={}&per_page=2>; rel=\"next\"",
                cgi_escape(&encode_cursor(7))
            )
        );
    }
}

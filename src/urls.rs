//! URL helpers every layer uses, parsed as the HTTP client parses URLs (the `url` crate,
//! WHATWG): the origin a URL names (for same-origin decisions) and its redacted form (for
//! logs and messages).

/// `scheme://host[:port]` of a URL as the HTTP client parses it (WHATWG: lower-cased, default
/// port dropped, `\\` ending the authority), for same-origin checks. Not a URL: empty.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| String::new(), |u| u.origin().ascii_serialization())
}

/// A URL fit for logs and error messages: no userinfo, no query string.
pub fn redact(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_redaction() {
        assert_eq!(origin_of("http://A.example:81/x?y"), "http://a.example:81");
        assert_eq!(origin_of("http://A.example:80/x"), "http://a.example");
        assert_eq!(origin_of("not a url"), "");
        assert_eq!(
            redact("https://u:p@h.example/a/b?private_token=x"),
            "https://h.example/a/b"
        );
    }
}

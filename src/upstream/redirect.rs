//! Redirects, judged by hand: where a `Location` leads (as the HTTP client would parse it,
//! without userinfo), and whether a cross-origin hop of an npm fetch is GitLab forwarding it
//! to a public registry rather than to its object storage.

use super::Forward;
use crate::urls::origin_of;

/// [`follow`] on text: where `location` leads from `base` (for tools and the fuzzer).
pub fn follow_location(base: &str, location: &str) -> Option<String> {
    follow(&url::Url::parse(base).ok()?, location).map(String::from)
}

/// Where a redirect's `Location` leads from `base`, parsed as the HTTP client will parse it
/// (relative, scheme-relative and backslash forms included), without userinfo. `None` when
/// it names nothing fetchable (not http or https, or not a URL).
pub(super) fn follow(base: &url::Url, location: &str) -> Option<url::Url> {
    let mut next = base.join(location.trim()).ok()?;
    if !matches!(next.scheme(), "http" | "https") || next.host().is_none() {
        return None;
    }
    // Userinfo in a Location would make the client send Basic credentials of its own choosing.
    next.set_username("").ok()?;
    next.set_password(None).ok()?;
    Some(next)
}

/// Is a cross-origin redirect of a GitLab npm fetch GitLab forwarding it to a public
/// registry (`https://<registry>/<name>`, any path prefix, the scope's `/` encoded or not)?
/// Yes when it goes to a configured public registry's origin, when its decoded path ends
/// with `/<name>`, or for a tarball names `/<name>/-/<file>`. Anything else is object
/// storage.
pub(super) fn is_public_forward(
    location: &str,
    forward: Forward<'_>,
    public_origins: &[String],
) -> bool {
    let target = origin_of(location);
    if public_origins.contains(&target) {
        return true;
    }
    let path = location
        .split_once("://")
        .map_or(location, |(_, r)| r)
        .split_once('/')
        .map_or("", |(_, p)| p);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    let path = format!("/{}", decoded.trim_end_matches('/'));
    match forward {
        Forward::Metadata(name) => path.ends_with(&format!("/{}", name.to_ascii_lowercase())),
        Forward::Tarball(name) => path
            .rsplit_once(&format!("/{}/-/", name.to_ascii_lowercase()))
            .is_some_and(|(_, file)| !file.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // origin_of and redact are tested beside them, in urls.rs.
    #[test]
    fn relative_locations_resolve_against_the_base() {
        let base = url::Url::parse("http://h/a/b").unwrap();
        let hop = |l: &str| follow(&base, l).map(|u| u.to_string());
        assert_eq!(hop("/c").as_deref(), Some("http://h/c"));
        assert_eq!(hop("http://o/c").as_deref(), Some("http://o/c"));
        assert_eq!(hop("c").as_deref(), Some("http://h/a/c"));
    }

    /// The host a Location names is the one the HTTP client connects to, however it is
    /// spelled; userinfo is dropped.
    #[test]
    fn hostile_locations_name_the_host_the_client_would_reach() {
        let base = url::Url::parse("http://127.0.0.1:1000/api/v4/x").unwrap();
        let origin = base.origin();
        for (loc, evil) in [
            ("http://127.0.0.1:2000\\@127.0.0.1:1000/x", true),
            ("//127.0.0.1:2000/x", true),
            ("/\\127.0.0.1:2000/x", true),
            ("http://127.0.0.1:2000#@127.0.0.1:1000/x", true),
            ("http://127.0.0.1:2000?@127.0.0.1:1000/x", true),
            ("http://u:p@127.0.0.1:2000/x", true),
            ("http://127.0.0.1:1000@127.0.0.1:2000/x", true),
            ("HTTP://127.0.0.1:2000/x", true),
            ("/elsewhere", false),
            ("HTTP://127.0.0.1:1000/same", false),
        ] {
            let next = follow(&base, loc).unwrap();
            assert_eq!(next.origin() != origin, evil, "{loc} -> {next}");
            assert_eq!(next.username(), "", "{loc}");
            assert_eq!(next.password(), None, "{loc}");
        }
        assert!(follow(&base, "file:///etc/passwd").is_none());
        assert!(follow(&base, "javascript:alert(1)").is_none());
    }

    #[test]
    fn public_forward_detection() {
        let none: &[String] = &[];
        let meta = Forward::Metadata("@acme/ui");
        let tgz = Forward::Tarball("@acme/ui");
        for loc in [
            "https://reg.example/@acme/ui",
            "https://reg.example/@acme%2fui",
            "https://reg.example/@acme%2Fui/",
            "http://127.0.0.1:9/some/prefix/@acme%2fui",
        ] {
            assert!(is_public_forward(loc, meta, none), "{loc}");
        }
        assert!(is_public_forward(
            "https://reg.example/npm/@acme/ui/-/ui-1.0.0.tgz",
            tgz,
            none
        ));
        assert!(is_public_forward(
            "https://reg.example/@acme%2fui/-/ui-1.0.0.tgz",
            tgz,
            none
        ));
        assert!(!is_public_forward(
            "https://s3.example/bucket/metadata.json?X-Amz-Signature=1",
            meta,
            none
        ));
        assert!(!is_public_forward(
            "https://s3.example/bucket/ab/cd/0123.tgz?X-Amz-Signature=1",
            tgz,
            none
        ));
        assert!(!is_public_forward(
            "https://s3.example/bucket/@acme/uix",
            meta,
            none
        ));
        // Any path on a configured public registry.
        let public = ["https://registry.npmjs.org".to_string()];
        assert!(is_public_forward(
            "https://Registry.npmjs.org/whatever?x=1",
            meta,
            &public
        ));
        assert!(!is_public_forward(
            "https://s3.example/whatever",
            tgz,
            &public
        ));
    }
}

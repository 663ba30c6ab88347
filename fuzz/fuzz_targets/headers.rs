//! Credential headers and query strings, and redirect `Location`s: never a panic; credentials
//! never survive in a forwarded query; a Location never keeps userinfo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packrat::auth::credential::strip_query_credentials;
use packrat::auth::Credential;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    let (a, b) = s.split_at(mid);
    let mut headers = http::HeaderMap::new();
    for (name, value) in [("private-token", a), ("authorization", b), ("job-token", b), ("deploy-token", a)] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    let c = Credential::from_request(&headers, Some(s));
    let shown = format!("{c} {c:?}");
    // What a credential prints is made of these words only, never of the secret.
    let words = "PRIVATE-TOKEN JOB-TOKEN Deploy-Token Authorization anonymous ****, :";
    // A secret spelled only with those words' letters (`PRIVATE-TOKEN: *`) can appear in
    // the output without being printed: only secrets with another character are checked.
    let own_letters = |secret: &str| secret.chars().all(|ch| words.contains(ch));
    for secret in c.secrets().map(|(_, v)| v) {
        if secret.len() > 4 && !own_letters(secret) {
            assert!(!shown.contains(secret), "a credential printed its secret");
        }
    }
    if let Some(q) = strip_query_credentials(s) {
        for pair in q.split('&') {
            let key = pair.split('=').next().unwrap_or("");
            assert!(key != "private_token" && key != "job_token", "{q}");
        }
    }
    if let Some(next) = packrat::upstream::follow_location("http://gitlab.test:81/api/v4/x", s) {
        assert!(next.starts_with("http://") || next.starts_with("https://"), "{next}");
        let authority = next.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
        assert!(!authority.contains('@'), "userinfo kept: {next}");
    }
});

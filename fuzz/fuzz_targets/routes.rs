//! Route parsing at all three npm prefixes, the Go routes, `/go/`, the sumdb and the Packages
//! API: any method and raw path is either a typed route or a GitLab-shaped error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::POST,
];

const PREFIXES: [&str; 8] = [
    "",
    "/api/v4/packages/npm/",
    "/api/v4/projects/42/packages/npm/",
    "/api/v4/groups/acme%2Fsub/-/packages/npm/",
    "/api/v4/projects/acme%2Fgo/packages/go/",
    "/go/",
    "/api/v4/projects/42/packages",
    "/api/v4/groups/7/packages",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(tail) = std::str::from_utf8(rest) else {
        return;
    };
    let method = &METHODS[usize::from(selector) % METHODS.len()];
    let prefix = PREFIXES[usize::from(selector >> 3) % PREFIXES.len()];
    let path = format!("{prefix}{tail}");
    if let Err(e) = packrat::server::router::parse(method, &path) {
        // Every refusal has a status a client can be given.
        let status = e.status().as_u16();
        assert!((400..600).contains(&status), "{status} for {path:?}");
    }
});

//! npm names, Go module paths and versions with Go's `!`-escapes: parsing never panics, and
//! what parses round-trips through its escaped form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packrat::goproxy::escape::{escape, unescape};
use packrat::goproxy::{ModulePath, ModuleVersion};
use packrat::npm::PackageName;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = PackageName::parse(s) {
        assert_eq!(PackageName::parse(&name.encoded().replacen("%2f", "/", 1)).ok(), Some(name.clone()));
        // A name is only ever a key and a URL segment: no dot segment can come of it.
        assert!(name.as_str().split('/').all(|seg| seg != "." && seg != ".."), "{s:?}");
    }
    if let Some(plain) = unescape(s) {
        assert_eq!(unescape(&escape(&plain)).as_deref(), Some(plain.as_str()), "{s:?}");
    }
    if let Ok(m) = ModulePath::parse(s) {
        assert_eq!(ModulePath::from_url(&m.escaped()).ok().as_ref().map(ModulePath::as_str), Some(m.as_str()));
    }
    let _ = ModulePath::from_url(s);
    if let Some(v) = ModuleVersion::parse(s) {
        assert_eq!(ModuleVersion::from_url(&v.escaped()).map(|x| x.as_str().to_string()), Some(v.as_str().to_string()));
    }
    let _ = ModuleVersion::from_url(s);
});

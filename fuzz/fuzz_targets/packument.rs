//! Packument rewriting (GitLab's and a public registry's): any body is variants or an error,
//! and every tarball URL in a built variant points at packrat's base.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packrat::cache::Build;
use packrat::npm::packument::PackumentBuilder;
use packrat::npm::PackageName;
use packrat::store::Origin;

fuzz_target!(|data: &[u8]| {
    for (origin, abbreviate) in [(Origin::Gitlab, false), (Origin::Public, true)] {
        let b = PackumentBuilder {
            name: PackageName::parse("@acme/ui").unwrap(),
            tarball_base: "http://packrat.test/api/v4/packages/npm".into(),
            upstream_base: "http://gitlab.test".into(),
            aux_prefix: "npmfile/i/@acme/ui/".into(),
            abbreviate,
            origin,
        };
        if let Ok(built) = b.build(data) {
            for (_, v) in &built.aux {
                let url = v.get("url").and_then(|u| u.as_str()).unwrap_or("");
                if origin == Origin::Public {
                    assert_eq!(
                        packrat::upstream::origin_of(url),
                        "http://gitlab.test",
                        "public tarball off the registry: {url}"
                    );
                }
            }
        }
    }
});

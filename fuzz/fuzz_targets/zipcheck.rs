//! The Go module zip check: any bytes are accepted as a module zip or refused with a reason,
//! never a panic, and never after decompressing past Go's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zip");
    std::fs::write(&path, data).unwrap();
    let _ = packrat::goproxy::zipcheck::check(&path, "example.com/m", "v1.0.0");
});

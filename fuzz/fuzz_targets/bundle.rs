//! The bundle manifest and tar reader: any file given to `packrat import` is refused with a
//! `BundleError` or imported whole, never a panic, and a refused one leaves no blob behind.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar");
    std::fs::write(&bundle, data).unwrap();
    let store = packrat::store::Store::open(&dir.path().join("data")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let result = runtime.block_on(packrat::bundle::import(&store, &bundle, &[]));
    let _ = packrat::bundle::read_manifest(&bundle);
    if result.is_err() {
        assert!(store.blobs.walk().is_empty(), "a refused bundle left blobs");
    }
});

//! Every lockfile format and `packrat.list`: any text is items or a `ParseError` that names the
//! file, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packrat::sync::{parse_str, InputKind};

const KINDS: [InputKind; 9] = [
    InputKind::PackageLock,
    InputKind::YarnClassic,
    InputKind::YarnBerry,
    InputKind::Pnpm,
    InputKind::Bun,
    InputKind::GoMod,
    InputKind::GoSum,
    InputKind::PackratList,
    InputKind::PackageLock,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = KINDS[usize::from(selector) % KINDS.len()];
    if let Err(e) = parse_str(kind, text, "fuzz.lock") {
        assert_eq!(e.origin(), "fuzz.lock");
    }
});

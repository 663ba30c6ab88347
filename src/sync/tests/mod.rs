//! Unit tests of the sync input parsers, over the fixtures in `fixtures/lockfiles/`.

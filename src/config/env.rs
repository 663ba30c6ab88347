//! Every environment variable packrat reads.
//!
//! Each scalar key of the configuration file can be overridden by
//! `PACKRAT_<SECTION>_<KEY>` (upper case, see [`super::keys::env_var`]); the
//! environment beats the file. Arrays of tables (`[[forwarding.rules]]`,
//! `[[go.modules]]`, `[[offline.tokens]]`) have no environment form.
//!
//! Only the names listed by [`all`] are ever consulted, so other `PACKRAT_*`
//! variables (for example the upstream token itself) are never mistaken for
//! unknown configuration keys.

/// Names the configuration file when `--config` is not given.
pub const CONFIG: &str = "PACKRAT_CONFIG";

/// Every variable packrat reads (the token and key variables only under their default
/// names: `upstream.token_env` and `storage.s3.*_key_env` may name others).
pub fn all() -> Vec<String> {
    let mut names = vec![
        CONFIG.to_owned(),
        super::keys::DEFAULT_UPSTREAM_TOKEN.to_owned(),
        super::keys::DEFAULT_S3_ACCESS_KEY.to_owned(),
        super::keys::DEFAULT_S3_SECRET_KEY.to_owned(),
    ];
    names.extend(super::keys::overrides().into_iter().map(|(var, _)| var));
    names
}

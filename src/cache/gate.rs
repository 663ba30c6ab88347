//! The gate: may this caller be served what the cache holds? And when GitLab cannot be asked,
//! what then? Both answers are pure functions here, used by every cached read (metadata
//! documents and adapter-filled records alike) and tested as tables and as a property.
//!
//! - [`verdict`]: a fresh allow (granted on the content at hand) serves; a fresh refusal is
//!   repeated; anything else asks the upstream, carrying a stale decision for an outage.
//! - [`outage`]: the upstream failed (unreachable, timed out, 5xx). A recent allow serves stale
//!   content it was granted on; a recent refusal stands; a caller with no usable decision is
//!   refused with the failure's status, whatever the cache holds. A 429 is GitLab answering,
//!   not an outage: nothing stale is used on its account.

use std::sync::Arc;

use crate::auth::Age;
use crate::error::UpstreamError;
use crate::store::Decision;

/// What a cached read would hand out, for the gate to compare with the caller's decision.
#[derive(Clone, Copy, Debug)]
pub enum Content<'a> {
    /// The same for every caller the upstream allows: any allow decision will do.
    Shared,
    /// One caller's document at this revision (`None`: a record without one): only an allow
    /// granted on this very revision will do.
    Revision(Option<&'a str>),
}

impl Content<'_> {
    pub fn granted(self, d: &Decision) -> bool {
        match self {
            Content::Shared => true,
            Content::Revision(Some(r)) => d.revision.as_deref() == Some(r),
            Content::Revision(None) => false,
        }
    }
}

/// The gate's verdict for (credential, scope).
#[derive(Debug)]
pub enum Verdict {
    Allow,
    /// A fresh refusal: repeat it.
    Refuse(Arc<Decision>),
    /// No usable decision: ask the upstream. Carries a stale decision usable if it is down.
    Ask(Option<Arc<Decision>>),
}

/// The gate, given the caller's stored decision and its age.
pub fn verdict(decision: Option<(Arc<Decision>, Age)>, content: Content<'_>) -> Verdict {
    match decision {
        Some((d, Age::Fresh)) if d.allowed() && content.granted(&d) => Verdict::Allow,
        Some((d, Age::Fresh)) if d.allowed() => Verdict::Ask(Some(d)),
        Some((d, Age::Fresh)) => Verdict::Refuse(d),
        Some((d, Age::Stale)) => Verdict::Ask(Some(d)),
        Some((_, Age::Expired)) | None => Verdict::Ask(None),
    }
}

/// What the cache holds for this read while the upstream is failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Nothing younger than `stale_if_error`.
    Nothing,
    /// Content younger than `stale_if_error` that the caller's decision was granted on.
    Granted,
    /// Content younger than `stale_if_error`, but another caller's (a per-caller document the
    /// decision does not name).
    NotGranted,
}

/// The outage rule's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outage {
    /// Serve the stale content (`Warning: 110`).
    ServeStale,
    /// Repeat the caller's recent refusal.
    Refuse,
    /// Pass the upstream's failure on (an allowed caller with nothing cached, a public
    /// registry's content, a 429).
    Fail,
    /// Nobody can vouch for this caller: refuse with the failure's status, the same answer
    /// whether or not anything is cached.
    Undecided,
}

/// The upstream failed with `error` while the caller held `decision` (with its age).
pub fn outage(
    error: &UpstreamError,
    decision: Option<(&Decision, Age)>,
    held: Held,
    public: bool,
) -> Outage {
    if matches!(error, UpstreamError::RateLimited { .. }) {
        return Outage::Fail;
    }
    match decision {
        Some((d, age)) if d.allowed() && age != Age::Expired => match held {
            Held::Granted => Outage::ServeStale,
            Held::NotGranted => Outage::Undecided,
            Held::Nothing => Outage::Fail,
        },
        Some((d, age)) if !d.allowed() && age != Age::Expired => Outage::Refuse,
        // A public registry's content is anyone's: no access to check, nothing to hide.
        _ if public => Outage::Fail,
        _ => Outage::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(status: u16, revision: Option<&str>) -> Decision {
        Decision {
            at: 0,
            status,
            body: None,
            www_authenticate: None,
            revision: revision.map(str::to_string),
        }
    }

    fn down() -> UpstreamError {
        UpstreamError::Unreachable {
            url: "u".into(),
            reason: "r".into(),
            setting: "upstream.url",
        }
    }

    #[test]
    fn the_outage_rule_as_a_table() {
        let allow = decision(200, None);
        let refuse = decision(401, None);
        let limited = UpstreamError::RateLimited {
            url: "u".into(),
            retry_after: None,
        };
        use Age::{Expired, Fresh, Stale};
        use Held::{Granted, NotGranted, Nothing};
        type Row<'a> = (Option<(&'a Decision, Age)>, Held, bool, Outage);
        let rows: &[Row<'_>] = &[
            (Some((&allow, Fresh)), Granted, false, Outage::ServeStale),
            (Some((&allow, Stale)), Granted, false, Outage::ServeStale),
            (Some((&allow, Expired)), Granted, false, Outage::Undecided),
            (Some((&allow, Stale)), NotGranted, false, Outage::Undecided),
            (Some((&allow, Stale)), Nothing, false, Outage::Fail),
            (Some((&refuse, Stale)), Granted, false, Outage::Refuse),
            (Some((&refuse, Expired)), Granted, false, Outage::Undecided),
            (None, Granted, false, Outage::Undecided),
            (None, Nothing, false, Outage::Undecided),
            (None, Granted, true, Outage::Fail),
        ];
        for (d, held, public, want) in rows {
            assert_eq!(
                &outage(&down(), *d, *held, *public),
                want,
                "{d:?} {held:?} {public}"
            );
        }
        // A 429 never serves stale content or reuses a decision.
        assert_eq!(
            outage(&limited, Some((&allow, Stale)), Granted, false),
            Outage::Fail
        );
        assert_eq!(outage(&limited, None, Granted, false), Outage::Fail);
    }

    #[test]
    fn per_caller_allows_cover_only_their_revision() {
        let on_a = decision(200, Some("\"a\""));
        assert!(Content::Revision(Some("\"a\"")).granted(&on_a));
        assert!(!Content::Revision(Some("\"b\"")).granted(&on_a));
        assert!(!Content::Revision(None).granted(&on_a));
        assert!(!Content::Revision(Some("\"a\"")).granted(&decision(200, None)));
        assert!(Content::Shared.granted(&decision(200, None)));
        assert!(Content::Shared.granted(&on_a));
    }

    mod property {
        //! For any sequence of upstream answers and any order of callers, no caller is ever
        //! served cached content that GitLab did not allow for it within `auth_ttl`, or
        //! within `stale_if_error` while GitLab was down (a 429 is not down).
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::time::Duration;

        use proptest::prelude::*;

        use super::super::*;
        use crate::auth::decision::age_at;

        #[derive(Clone, Copy, Debug)]
        enum Answer {
            Ok,
            Unauthorized,
            Forbidden,
            NotFound,
            TooMany,
            ServerError,
            Down,
        }

        fn answer() -> impl Strategy<Value = Answer> {
            prop_oneof![
                Just(Answer::Ok),
                Just(Answer::Unauthorized),
                Just(Answer::Forbidden),
                Just(Answer::NotFound),
                Just(Answer::TooMany),
                Just(Answer::ServerError),
                Just(Answer::Down),
            ]
        }

        const AUTH_TTL: u64 = 1_000;
        const NEGATIVE_TTL: u64 = 3_000;
        const STALE_IF_ERROR: u64 = 5_000;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]
            #[test]
            fn nobody_is_served_what_gitlab_did_not_allow(
                events in proptest::collection::vec((0u64..2_500, 0usize..3, answer()), 1..60)
            ) {
                let ttl = |ms| Duration::from_millis(ms);
                let mut now = 10_000u64;
                let mut decisions: HashMap<usize, Arc<Decision>> = HashMap::new();
                // What GitLab told each caller when packrat asked: (time, allowed).
                let mut observed: HashMap<usize, Vec<(u64, bool)>> = HashMap::new();
                let mut cached_at: Option<u64> = None;
                for (advance, caller, gitlab) in events {
                    now += advance;
                    let stored = decisions.get(&caller).cloned().map(|d| {
                        let age = age_at(&d, now, ttl(AUTH_TTL), ttl(NEGATIVE_TTL), ttl(STALE_IF_ERROR));
                        (d, age)
                    });
                    let served = match verdict(stored, Content::Shared) {
                        Verdict::Allow => cached_at.is_some(),
                        Verdict::Refuse(_) => false,
                        Verdict::Ask(stale) => match gitlab {
                            Answer::Ok => {
                                let d = Decision { at: now, status: 200, body: None, www_authenticate: None, revision: None };
                                decisions.insert(caller, Arc::new(d));
                                observed.entry(caller).or_default().push((now, true));
                                cached_at = Some(now);
                                // Served from GitLab's own answer, not from the cache.
                                continue;
                            }
                            Answer::Unauthorized | Answer::Forbidden | Answer::NotFound => {
                                let status = match gitlab { Answer::Unauthorized => 401, Answer::Forbidden => 403, _ => 404 };
                                let d = Decision { at: now, status, body: None, www_authenticate: None, revision: None };
                                decisions.insert(caller, Arc::new(d));
                                observed.entry(caller).or_default().push((now, false));
                                false
                            }
                            Answer::TooMany | Answer::ServerError | Answer::Down => {
                                let error = match gitlab {
                                    Answer::TooMany => UpstreamError::RateLimited { url: "u".into(), retry_after: None },
                                    _ => UpstreamError::Unreachable { url: "u".into(), reason: "r".into(), setting: "upstream.url" },
                                };
                                let d = stale.or_else(|| decisions.get(&caller).cloned());
                                let aged = d.as_ref().map(|d| (d.as_ref(), age_at(d, now, ttl(AUTH_TTL), ttl(NEGATIVE_TTL), ttl(STALE_IF_ERROR))));
                                let held = match cached_at {
                                    Some(t) if now - t < STALE_IF_ERROR => Held::Granted,
                                    _ => Held::Nothing,
                                };
                                outage(&error, aged, held, false) == Outage::ServeStale
                            }
                        },
                    };
                    if served {
                        let down = matches!(gitlab, Answer::ServerError | Answer::Down);
                        let history = observed.get(&caller).cloned().unwrap_or_default();
                        let last_allow = history.iter().rev().find(|(_, ok)| *ok).map(|(t, _)| *t);
                        let refused_since = |t0: u64| history.iter().any(|(t, ok)| *t > t0 && !ok);
                        let ok = last_allow.is_some_and(|t0| {
                            !refused_since(t0)
                                && (now - t0 < AUTH_TTL || (down && now - t0 < STALE_IF_ERROR))
                        });
                        prop_assert!(ok, "caller {caller} served at {now} with GitLab {gitlab:?}; it told them {history:?}");
                    }
                }
            }
        }
    }
}

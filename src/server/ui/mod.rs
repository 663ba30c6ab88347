//! The operator page: `GET /-/ui` (the status report as HTML, or the login form without a
//! session), `POST /-/ui/login` (an operator token from `server.ops_tokens` → a session
//! cookie) and `POST /-/ui/logout`.
//!
//! - Sessions ([`session`]): random ids in an `HttpOnly; SameSite=Strict; Path=/-/ui` cookie
//!   (`Secure` when serving TLS), kept server-side for `server.ui_session_ttl`.
//! - Both POSTs need an `Origin` naming this server: anything else is a cross-site request
//!   (403). Login bodies are bounded; the token is compared in constant time and never
//!   logged; a wrong one is answered after a delay, and wrong tokens past a budget shared
//!   by every operator endpoint get a 429 before any comparison ([`super::guesses`]).
//! - Nothing the cache holds appears without a session (or an operator token header): the
//!   login page carries no data.

mod page;
mod plot;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{self, Body};
use super::respond;
use crate::auth::{offline, Credential, Secret};
use crate::cache::Core;
use crate::error::{Error, RequestError};
use session::Sessions;

/// Largest login body read (a form with one token field).
const LOGIN_BODY_MAX: usize = 4096;
/// How long a wrong token waits for its answer.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// The routes below `/-/ui`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiRoute {
    Page,
    Login,
    Logout,
}

impl UiRoute {
    pub fn parse(method: &Method, path: &str) -> Option<Result<UiRoute, Error>> {
        let (route, read) = match path {
            "/-/ui" | "/-/ui/" => (UiRoute::Page, true),
            "/-/ui/login" => (UiRoute::Login, false),
            "/-/ui/logout" => (UiRoute::Logout, false),
            _ => return None,
        };
        let ok = if read {
            *method == Method::GET || *method == Method::HEAD
        } else {
            *method == Method::POST
        };
        Some(if ok {
            Ok(route)
        } else {
            Err(RequestError::MethodNotAllowed.into())
        })
    }
}

/// The page's state: sessions, and what the cookie needs to say.
pub struct Ui {
    sessions: Sessions,
    /// Serving TLS: the cookie says `Secure`.
    secure: bool,
}

impl Ui {
    pub fn new(ttl: Duration, secure: bool) -> Self {
        Ui {
            sessions: Sessions::new(ttl),
            secure,
        }
    }

    fn cookie(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; HttpOnly; SameSite=Strict; Path=/-/ui; Max-Age={max_age}{secure}",
            session::COOKIE
        ))
        .ok()
    }

    /// Does the request carry a live session, or an operator token as `/-/status` takes it
    /// (a token counted against the wrong-token budget, [`super::guesses`])?
    fn authorized(&self, core: &Core, headers: &HeaderMap) -> Result<bool, Error> {
        if session::from_headers(headers).is_some_and(|id| self.sessions.valid(id)) {
            return Ok(true);
        }
        let credential = Credential::from_headers(headers);
        if credential.is_anonymous() {
            return Ok(false);
        }
        super::guesses::check(|| offline::ops_allows(&core.config().server.ops_tokens, &credential))
    }
}

/// Answer a `/-/ui` route.
pub async fn handle(
    core: &Arc<Core>,
    ui: &Ui,
    route: UiRoute,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    if core.config().server.ops_tokens.is_empty() {
        return Err(Error::gitlab(
            StatusCode::NOT_FOUND,
            "404 Not Found: the operator page is off; set server.ops_tokens to the sha256 of an \
             operator token to enable it",
        ));
    }
    match route {
        UiRoute::Page => {
            if !ui.authorized(core, req.headers())? {
                return Ok(html(StatusCode::OK, page::login(None), None));
            }
            let report = super::report::build_off_runtime(core).await?;
            let page = page::status(&report);
            if req.method() == Method::HEAD {
                return Ok(html(StatusCode::OK, maud::html! {}, None));
            }
            Ok(html(StatusCode::OK, page, None))
        }
        UiRoute::Login => {
            same_origin(core, req.headers(), req.uri())?;
            let token = read_token(req).await?;
            let tokens = &core.config().server.ops_tokens;
            if super::guesses::check(|| offline::ops_token_ok(tokens, token.expose()))? {
                let id = ui.sessions.create();
                tracing::info!("operator logged in to the status page");
                return Ok(see_other(ui.cookie(&id, ui.sessions.ttl().as_secs())));
            }
            // Counted already (the budget holds however many arrive at once); each wrong one
            // is also answered only after the delay.
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            tracing::info!("refused a wrong operator token at the status page login");
            Ok(html(
                StatusCode::UNAUTHORIZED,
                page::login(Some("That is not an operator token.")),
                None,
            ))
        }
        UiRoute::Logout => {
            same_origin(core, req.headers(), req.uri())?;
            if let Some(id) = session::from_headers(req.headers()) {
                ui.sessions.end(id);
            }
            Ok(see_other(ui.cookie("", 0)))
        }
    }
}

/// A POST must come from a page of this server: its `Origin` names this host (as the
/// request's `Host` says, or its `:authority` over HTTP/2, or `server.public_url`). A missing
/// `Origin` is refused too.
fn same_origin(core: &Core, headers: &HeaderMap, uri: &http::Uri) -> Result<(), Error> {
    let cross = || {
        Error::gitlab(
            StatusCode::FORBIDDEN,
            "403 Forbidden: a cross-site request to the operator page was refused (its Origin \
             is not this server's)",
        )
    };
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(cross)?;
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(cross());
    }
    let scheme = if core.config().server.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(http::uri::Authority::as_str));
    let from_host =
        host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")));
    let public = core.public_url();
    let from_public = !public.is_empty()
        && url::Url::parse(public).ok().is_some_and(|u| {
            u.origin()
                .ascii_serialization()
                .eq_ignore_ascii_case(origin)
        });
    if from_host || from_public {
        Ok(())
    } else {
        Err(cross())
    }
}

/// The `token` field of a login form (`application/x-www-form-urlencoded`), read up to
/// [`LOGIN_BODY_MAX`] bytes.
async fn read_token(req: Request<Incoming>) -> Result<Secret, Error> {
    let body = http_body_util::Limited::new(req.into_body(), LOGIN_BODY_MAX)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                RequestError::BodyTooLarge {
                    limit: LOGIN_BODY_MAX as u64,
                }
            } else {
                RequestError::BadRequest("the login form could not be read".into())
            }
        })?
        .to_bytes();
    Ok(Secret::new(form_token(&body).unwrap_or_default()))
}

fn form_token(body: &Bytes) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
}

fn see_other(cookie: Option<HeaderValue>) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(http::header::LOCATION, "/-/ui")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_LENGTH, 0);
    if let Some(c) = cookie {
        b = b.header(http::header::SET_COOKIE, c);
    }
    b.body(body::empty())
        .unwrap_or_else(|_| respond::fallback())
}

fn html(status: StatusCode, markup: maud::Markup, cookie: Option<HeaderValue>) -> Response<Body> {
    let s = markup.into_string();
    let mut b = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, s.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        // No script, no frame, no external anything: the page is inline styles and SVG.
        .header(
            http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header(http::header::X_FRAME_OPTIONS, "DENY")
        // Not no-referrer: with it a browser sends `Origin: null` on the page's own POSTs.
        .header(http::header::REFERRER_POLICY, "same-origin")
        .header("x-content-type-options", "nosniff");
    if let Some(c) = cookie {
        b = b.header(http::header::SET_COOKIE, c);
    }
    b.body(body::full(s))
        .unwrap_or_else(|_| respond::fallback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            UiRoute::parse(&Method::GET, "/-/ui").unwrap().unwrap(),
            UiRoute::Page
        );
        assert_eq!(
            UiRoute::parse(&Method::POST, "/-/ui/login")
                .unwrap()
                .unwrap(),
            UiRoute::Login
        );
        assert!(UiRoute::parse(&Method::GET, "/-/ui/login")
            .unwrap()
            .is_err());
        assert!(UiRoute::parse(&Method::POST, "/-/ui").unwrap().is_err());
        assert!(UiRoute::parse(&Method::GET, "/-/uix").is_none());
    }

    #[test]
    fn the_token_field_is_read_from_the_form() {
        assert_eq!(
            form_token(&Bytes::from_static(b"x=1&token=a%2Bb+c")).as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_token(&Bytes::from_static(b"x=1")), None);
    }

    #[test]
    fn cookies_say_httponly_samesite_strict_and_path() {
        let c = Ui::new(Duration::from_secs(60), false)
            .cookie("abc", 60)
            .unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "packrat_ui=abc; HttpOnly; SameSite=Strict; Path=/-/ui; Max-Age=60"
        );
        let c = Ui::new(Duration::from_secs(60), true)
            .cookie("abc", 60)
            .unwrap();
        assert!(c.to_str().unwrap().ends_with("; Secure"));
    }
}

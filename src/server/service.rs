//! The service hyper calls for each request: the router behind a panic guard, with the
//! request counted as in flight on its connection until its response body is finished.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::body::Body;
use super::conn::{ConnState, Guarded};
use super::ui::Ui;
use super::{respond, router};
use crate::cache::Core;

/// One connection's service.
#[derive(Clone)]
pub struct Handler {
    core: Arc<Core>,
    ui: Arc<Ui>,
    conn: Arc<ConnState>,
}

impl Handler {
    pub fn new(core: Arc<Core>, ui: Arc<Ui>, conn: Arc<ConnState>) -> Self {
        Handler { core, ui, conn }
    }
}

/// Boxed so that it is `Unpin`, as hyper's `poll_without_shutdown` needs.
type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Reply;

    fn call(&self, req: Request<Incoming>) -> Reply {
        if !req.body().is_end_stream() {
            self.conn.saw_body();
        }
        let guard = self.conn.begin();
        let (core, ui) = (self.core.clone(), self.ui.clone());
        Box::pin(async move {
            let resp = std::panic::AssertUnwindSafe(router::handle(core, ui, req))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!("a request handler panicked; answered 500");
                    respond::fallback()
                });
            Ok(resp.map(|b| Guarded::wrap(b, guard)))
        })
    }
}

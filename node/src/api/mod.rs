//! The node's HTTP API (docs/API.md): status, blocks, transactions,
//! accounts, the mempool, peers, block events and metrics, as JSON over
//! HTTP/1.1, and for test networks mining on demand (`POST /mine`) and
//! partitions (`admin`).
//!
//! Every error, including axum's own rejections, unknown routes, wrong
//! methods, oversized bodies and timeouts, is answered as
//! `{"error": {"code": "...", "message": "..."}}` with a stable code: the
//! handlers and extractors ([`error`]) make that shape, and an outermost
//! middleware rewrites any error response a layer or axum made without it.
//! The same middleware counts requests by route template and status.
//!
//! Bounds: request bodies ([`ApiConfig::max_body_bytes`]; for
//! `POST /txs/batch` [`MAX_BATCH_BODY_BYTES`] and [`MAX_BATCH_TXS`]
//! transactions), time to answer
//! ([`ApiConfig::request_timeout`]), open event streams
//! ([`ApiConfig::max_event_subscribers`]), hashes listed by `GET /mempool`
//! ([`MAX_MEMPOOL_LIMIT`]).

mod admin;
mod error;
mod events;
mod handlers;
mod mine;
mod submit;
pub mod views;

pub use error::ApiError;
pub use handlers::{DEFAULT_MEMPOOL_LIMIT, MAX_MEMPOOL_LIMIT};
pub use submit::{MAX_BATCH_BODY_BYTES, MAX_BATCH_TXS};

use crate::shared::NodeState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Default for [`ApiConfig::listen`]: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
/// The API's default port.
pub const DEFAULT_PORT: u16 = 8645;
/// Default for [`ApiConfig::max_body_bytes`]: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default for [`ApiConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ApiConfig::max_event_subscribers`].
pub const DEFAULT_MAX_EVENT_SUBSCRIBERS: usize = 64;

/// The API's address and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Where to listen (default `127.0.0.1:8645`): the node binds the
    /// listener it hands to [`serve`] here.
    pub listen: SocketAddr,
    /// Largest request body (default 64 KiB); larger ones get 413.
    /// `POST /txs/batch` has its own limit, [`MAX_BATCH_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// Longest time to produce a response's head (default 10 s), reading
    /// the body included; longer requests get 408. Event streams are
    /// bounded by this only until their first byte.
    pub request_timeout: Duration,
    /// Most `GET /events` streams open at once (default 64); more get 503.
    pub max_event_subscribers: usize,
    /// Serve the test networks' admin routes (`/admin/partition`,
    /// `/admin/heal`; default off: they answer 404).
    pub admin_api: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_LISTEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_event_subscribers: DEFAULT_MAX_EVENT_SUBSCRIBERS,
            admin_api: false,
        }
    }
}

/// The bounds error messages name.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body_bytes: usize,
    request_timeout: Duration,
}

/// What the handlers share.
#[derive(Clone)]
struct Api {
    node: Arc<NodeState>,
    subscribers: Arc<Semaphore>,
    max_event_subscribers: usize,
    limits: Limits,
    /// Becomes `true` when [`serve`] is shutting down (ends event streams).
    shutdown: Option<watch::Receiver<bool>>,
}

/// The API's routes over `state`. Event streams end only when the node
/// drops its event sender; [`serve`] also ends them on shutdown.
pub fn router(state: Arc<NodeState>, config: &ApiConfig) -> Router {
    build(state, config, None)
}

fn build(
    node: Arc<NodeState>,
    config: &ApiConfig,
    shutdown: Option<watch::Receiver<bool>>,
) -> Router {
    let api = Api {
        node,
        subscribers: Arc::new(Semaphore::new(
            config.max_event_subscribers.min(Semaphore::MAX_PERMITS),
        )),
        max_event_subscribers: config.max_event_subscribers,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
        },
        shutdown,
    };
    Router::new()
        .route("/status", get(handlers::status))
        .route("/blocks/latest", get(handlers::block_latest))
        .route("/blocks/{height}", get(handlers::block_by_height))
        .route("/blocks/hash/{hash}", get(handlers::block_by_hash))
        .route("/txs", post(submit::submit_tx))
        .route("/txs/{hash}", get(handlers::tx_status))
        .route("/accounts/{address}", get(handlers::account))
        .route("/mempool", get(handlers::mempool))
        .route("/peers", get(handlers::peers))
        .route("/events", get(events::events))
        .route("/metrics", get(handlers::metrics))
        .route("/mine", post(mine::mine))
        .merge(admin::routes(config.admin_api))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        // Added after the body limit above, which it is not under: it has
        // its own (the extractor refuses a larger Content-Length at once).
        .route(
            "/txs/batch",
            post(submit::submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(api.clone(), shape_and_count))
        .with_state(api)
}

/// Outermost: gives error responses made without the API's JSON shape (by
/// the body limit, the timeout, or axum) that shape, and counts the request
/// by route template and final status.
async fn shape_and_count(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    if error::needs_shape(&response) {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::for_status(response.status(), api.limits).into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    api.node.metrics.http_request(
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
    );
    response
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// taking connections, ends event streams and waits for requests in
/// progress.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let app = build(state, &config, Some(stopped));
    let signal = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}

//! What the service tells its operators about requests: every request of
//! both listeners gets an id (`x-request-id`, taken from the request or made
//! up, and sent back on the response) and a `request` span carrying it, the
//! listener, the method and the path; the response is logged at debug with
//! its status and latency. Runs get spans of their own in
//! [`crate::exec::ExecutionService`], so a failed run's warning names its
//! tenant, script, execution and trigger. `RUST_LOG` chooses what is shown
//! (docs/operations.md).

use axum::Router;
use axum::http::{HeaderName, Request};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds request ids and request spans to `router`, whose listener is named
/// `listener` (`admin` or `public`) in the spans.
pub fn traced(router: Router, listener: &'static str) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(move |request: &Request<_>| {
            let id = request
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // The path only: query strings may carry tokens.
            tracing::debug_span!(
                "request",
                listener,
                id,
                method = %request.method(),
                path = request.uri().path(),
            )
        })
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(Level::DEBUG)
                .latency_unit(tower_http::LatencyUnit::Micros),
        );
    // The last layer added runs first: the id is set before the span opens.
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

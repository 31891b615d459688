//! What the service tells its operators about requests: every request of
//! both listeners gets an id (`x-request-id`, taken from the request or made
//! up, and sent back on the response) and a `request` span (at info, so it
//! is there by default) carrying it, the listener, the method and the path;
//! the response is logged at debug with its status and latency. Runs get
//! spans of their own in [`crate::exec::ExecutionService`], inside the
//! request's, so a failed run's warning names its request, tenant, script,
//! execution and trigger. `RUST_LOG` chooses what is shown
//! (docs/operations.md).

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

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
            tracing::info_span!(
                "request",
                listener,
                id,
                method = %request.method(),
                path = request.uri().path(),
            )
        })
        .on_request(())
        // Logged under `scriptbox::http`, so `RUST_LOG=scriptbox=debug`
        // shows it.
        .on_response(
            |response: &Response<_>, latency: Duration, _: &tracing::Span| {
                tracing::debug!(
                    status = response.status().as_u16(),
                    latency_us = latency.as_micros() as u64,
                    "response"
                );
            },
        )
        // A failed request is logged once, where it failed (`AppError`),
        // not again here.
        .on_failure(());
    // The last layer added runs first: the id is set before the span opens.
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

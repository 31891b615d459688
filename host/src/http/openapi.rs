//! `GET /api/openapi.json`: the API described for machines (OpenAPI 3.1),
//! generated from the handlers' own annotations and types, so it cannot
//! drift from what they take and answer. The test below fails when a route
//! is served without being described.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{executions, health, scripts, secrets, stats, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scriptbox",
        description = "Runs tenants' JavaScript in WebAssembly sandboxes: scripts, their executions, \
            secrets, health and metrics on the admin listener; webhook calls on the public \
            listener (tag `webhooks`). Errors are `{\"error\": \"what is wrong\"}`. Lists are \
            pages: `items` and `next_cursor` (pass it as `cursor`; `null` on the last page).",
    ),
    paths(
        super::tenant,
        stats::stats,
        scripts::create,
        scripts::list,
        scripts::show,
        scripts::update,
        scripts::remove,
        scripts::run,
        scripts::next_runs,
        secrets::list,
        secrets::put,
        secrets::remove,
        executions::list,
        executions::show,
        executions::retry,
        executions::stream,
        webhooks::moved,
        webhooks::by_path,
        health::health,
        health::live,
        health::ready,
        super::metrics,
        openapi_json,
    ),
    modifiers(&Security),
    tags(
        (name = "scripts", description = "A tenant's scripts: save, run, schedule"),
        (name = "executions", description = "Runs and their records; the dead-letter queue"),
        (name = "secrets", description = "A tenant's secrets; values are write-only"),
        (name = "tenant", description = "The tenant of the API key"),
        (name = "webhooks", description = "Webhook calls, on the public listener"),
        (name = "health", description = "Health, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The API key (`Authorization: Bearer sbx_...`) and the metrics token.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            scheme.description = Some(what.to_owned());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme(
            "api_key",
            bearer("A tenant's API key, from `scriptbox tenant create`"),
        );
        components.add_security_scheme("metrics_token", bearer("`[metrics] token`, when set"));
    }
}

/// The document, as JSON.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// This document: the API described in OpenAPI 3.1.
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The paths of every `.route("...")` in the routers' sources, with
    /// `{*rest}` written `{rest}` as OpenAPI does.
    fn routed_paths() -> Vec<String> {
        let sources = [include_str!("mod.rs"), include_str!("webhooks.rs")];
        let mut paths = Vec::new();
        for source in sources {
            for piece in source.split(".route(").skip(1) {
                let Some(rest) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let path = &rest[..rest.find('"').unwrap()];
                paths.push(path.replace("{*", "{"));
            }
        }
        paths
    }

    #[test]
    fn every_route_is_described() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        let described = doc["paths"].as_object().unwrap();
        // The public listener's host routing serves the same calls as
        // `/{tenant}/{path}` on a tenant's own host.
        let same_as_path_routing = ["/", "/{path}"];
        let routes = routed_paths();
        assert!(routes.len() >= 15, "the routes were not found: {routes:?}");
        for path in routes {
            if same_as_path_routing.contains(&path.as_str()) {
                continue;
            }
            assert!(
                described.contains_key(&path),
                "{path} is served but not described"
            );
        }
        // And each operation says what it does and what it answers.
        for (path, item) in described {
            for (method, operation) in item.as_object().unwrap() {
                let summary = operation["summary"].as_str().unwrap_or_default();
                assert!(!summary.is_empty(), "{method} {path} has no summary");
                let responses = operation["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} has no responses");
                for (status, response) in responses {
                    let text = response["description"].as_str().unwrap_or_default();
                    assert!(
                        !text.is_empty(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_api_key_scheme() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
        let create = &doc["paths"]["/api/scripts"]["post"];
        assert_eq!(create["security"][0]["api_key"], serde_json::json!([]));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "ScriptChange",
            "ScriptView",
            "ExecutionView",
            "ErrorView",
            "ScriptRetention",
        ] {
            assert!(schemas.contains_key(name), "{name} is missing");
        }
    }
}

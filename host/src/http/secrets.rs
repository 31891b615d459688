//! `/api/secrets`: a tenant's secrets. Values go in and never come out:
//! listing shows names and update times only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::json::Body;
use super::views::{ErrorView, SecretsView};
use super::{AppError, AppState, Auth};

/// `PUT /api/secrets/{name}`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value; never returned.
    value: String,
}

/// List the tenant's secrets: names and update times, never values.
#[utoipa::path(get, path = "/api/secrets", tag = "secrets", security(("api_key" = [])),
    responses(
        (status = 200, description = "The tenant's secrets, by name", body = SecretsView),
        (status = 401, description = "No valid API key", body = ErrorView),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
) -> Result<Json<SecretsView>, AppError> {
    let items = state.secrets.list(&tenant.id).await?;
    Ok(Json(SecretsView {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Set or replace a secret.
#[utoipa::path(put, path = "/api/secrets/{name}", tag = "secrets", security(("api_key" = [])),
    params(("name" = String, Path, pattern = "^[A-Z_][A-Z0-9_]{0,127}$",
        description = "Capital letters, digits and `_`, not starting with a digit, at most 128")),
    request_body = SecretValue,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "A bad name or value, or too many secrets", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 503, description = "This node has no secrets key", body = ErrorView),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(name): Path<String>,
    Body(body): Body<SecretValue>,
) -> Result<Response, AppError> {
    state.secrets.put(&tenant.id, &name, &body.value).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Delete a secret that no script declares.
#[utoipa::path(delete, path = "/api/secrets/{name}", tag = "secrets", security(("api_key" = [])),
    params(("name" = String, Path, pattern = "^[A-Z_][A-Z0-9_]{0,127}$", description = "The secret's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No secret of that name is set", body = ErrorView),
        (status = 409, description = "Scripts still declare it; the message names them", body = ErrorView),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    match state.secrets.delete(&tenant.id, &name).await {
        Err(crate::secrets::SecretError::Store(crate::store::StoreError::NotFound)) => {
            Err(AppError::NotFound(format!("no secret named {name} is set")))
        }
        other => other
            .map(|()| StatusCode::NO_CONTENT.into_response())
            .map_err(Into::into),
    }
}

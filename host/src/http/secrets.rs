//! `/api/secrets`: a tenant's secrets. Values go in and never come out:
//! listing shows names and update times only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::json::Body;
use super::views::SecretsView;
use super::{AppError, AppState, Auth};

/// `PUT /api/secrets/{name}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    value: String,
}

pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
) -> Result<Json<SecretsView>, AppError> {
    let items = state.secrets.list(&tenant.id).await?;
    Ok(Json(SecretsView {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

pub async fn put(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(name): Path<String>,
    Body(body): Body<SecretValue>,
) -> Result<Response, AppError> {
    state.secrets.put(&tenant.id, &name, &body.value).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

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

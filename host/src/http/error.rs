//! One error type for every handler. Bad input is answered, not logged as
//! an error; internal errors are logged in full and the client sees a plain
//! message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::views::ErrorView;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A webhook call whose token or signature was refused.
    #[error("{0}")]
    UnauthorizedWebhook(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad(message: impl Into<String>) -> Self {
        AppError::BadRequest(message.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) | AppError::UnauthorizedWebhook(_) => {
                StatusCode::UNAUTHORIZED
            }
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => AppError::NotFound("not found".into()),
            StoreError::Invalid(message) => AppError::BadRequest(message),
            StoreError::Conflict(message) => AppError::Conflict(message),
            StoreError::Other(error) => AppError::Internal(error),
        }
    }
}

impl From<crate::exec::RetryError> for AppError {
    fn from(error: crate::exec::RetryError) -> Self {
        use crate::exec::RetryError;
        match error {
            RetryError::Submit(error) => error.into(),
            conflict => AppError::Conflict(conflict.to_string()),
        }
    }
}

impl From<crate::secrets::SecretError> for AppError {
    fn from(error: crate::secrets::SecretError) -> Self {
        use crate::secrets::SecretError;
        match error {
            SecretError::Unavailable => AppError::Unavailable(error.to_string()),
            SecretError::Store(error) => error.into(),
        }
    }
}

impl From<crate::scripts::ScriptError> for AppError {
    fn from(error: crate::scripts::ScriptError) -> Self {
        use crate::scripts::ScriptError;
        match error {
            ScriptError::Invalid(message) => AppError::BadRequest(message),
            ScriptError::TooLarge(message) => AppError::PayloadTooLarge(message),
            ScriptError::Unavailable(message) => AppError::Unavailable(message),
            ScriptError::Store(error) => error.into(),
        }
    }
}

impl From<crate::exec::SubmitError> for AppError {
    fn from(error: crate::exec::SubmitError) -> Self {
        match error {
            crate::exec::SubmitError::Busy(busy) => AppError::TooManyRequests {
                message: busy.to_string(),
                retry_after_secs: 1,
            },
            crate::exec::SubmitError::Store(error) => error.into(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for AppError {
    /// A query string that does not parse is a 400 in JSON like any other,
    /// naming the parameter (`limit: invalid digit found in string`).
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        AppError::BadRequest(format!("invalid query string: {detail}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            AppError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = ErrorView::reply(status, message);
        if let AppError::TooManyRequests {
            retry_after_secs, ..
        } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

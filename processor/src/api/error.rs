//! The query API's errors and the HTTP status each one maps to.
//!
//! They answer in the shape ingest uses, `{"error": {"code", "message", "fields"}}`, with
//! a stable `code`; a 400 lists every bad query parameter in `fields`. A 5xx body never
//! carries internal detail: the cause is logged once, where it is handled.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

use shared::{error_body::ErrorBody, FieldError};

/// Everything a query API request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// One or more query parameters are unknown, repeated or invalid (400).
    InvalidParameters(Vec<FieldError>),
    /// No bearer token, or not one of `API_TOKENS` (401).
    Unauthorized,
    /// `API_TOKENS` is empty, so no one may read (403).
    ReadsDisabled,
    /// The message id is not known (404).
    NotFound,
    /// No database connection could be had in time (503).
    DatabaseUnavailable,
    /// Anything else; the cause has been logged (500).
    Internal,
}

impl ApiError {
    /// A 400 naming one parameter.
    pub fn invalid(parameter: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidParameters(vec![FieldError {
            field: parameter,
            reason: reason.into(),
        }])
    }

    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameters(_) => "invalid_parameter",
            ApiError::Unauthorized => "unauthorized",
            ApiError::ReadsDisabled => "reads_disabled",
            ApiError::NotFound => "not_found",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::InvalidParameters(errors) => {
                let parts: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.reason))
                    .collect();
                write!(f, "invalid query: {}", parts.join("; "))
            }
            ApiError::Unauthorized => {
                f.write_str("send a valid token as `Authorization: Bearer <token>`")
            }
            ApiError::ReadsDisabled => {
                f.write_str("reads are disabled: no API token is configured (API_TOKENS)")
            }
            ApiError::NotFound => f.write_str("no message has this id"),
            ApiError::DatabaseUnavailable => {
                f.write_str("the database cannot be reached right now; retry later")
            }
            ApiError::Internal => f.write_str("the request failed; it has been logged"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameters(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ReadsDisabled => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let fields = match self {
            ApiError::InvalidParameters(errors) => errors.as_slice(),
            _ => &[],
        };
        let body = ErrorBody::new(self.code(), self.to_string(), fields);

        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(body)
    }
}

//! Ingest's errors and the HTTP status each one maps to.
//!
//! Every error answers with the same small JSON shape,
//! `{"error": {"code": ..., "message": ..., "fields": [...]}}`, whose `code` is stable.
//! A 5xx body never carries internal detail; the cause is logged where it is handled.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

use shared::{error_body::ErrorBody, FieldError, InvalidReport};

/// Seconds a gateway is asked to wait before retrying when the broker is unavailable.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Everything a request to ingest can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// One or more fields are missing or invalid (400).
    InvalidReport(InvalidReport),
    /// The query string or body cannot be decoded (400).
    BadEncoding(String),
    /// The body could not be read from the connection (400).
    BodyUnreadable,
    /// The body is larger than allowed (413).
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is in a format ingest does not read (415).
    UnsupportedMediaType,
    /// The broker did not confirm the report; nothing was stored (503).
    BrokerUnavailable,
    /// The request is not from an allowed source, or its token or signature is missing,
    /// wrong or stale (401). Which one is logged, never told.
    Unauthorized,
    /// The request breaks a bound of [`shared::bounds`] or holds a control character,
    /// or a signed request carries fields outside its signed body (400).
    Malformed(String),
    /// The source has spent its rate limit (429).
    RateLimited {
        /// Whole seconds until the source may send again.
        retry_after_secs: u64,
    },
    /// The body did not arrive within the body timeout (408).
    RequestTimeout,
}

impl ApiError {
    /// A 400 naming one field.
    pub fn invalid_field(field: &'static str, reason: &str) -> ApiError {
        ApiError::InvalidReport(InvalidReport {
            errors: vec![FieldError {
                field,
                reason: reason.to_owned(),
            }],
        })
    }

    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidReport(_) => "invalid_report",
            ApiError::BadEncoding(_) | ApiError::BodyUnreadable => "bad_request",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BrokerUnavailable => "broker_unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Malformed(_) => "malformed_request",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::RequestTimeout => "request_timeout",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::InvalidReport(e) => write!(f, "{e}"),
            ApiError::BadEncoding(why) => f.write_str(why),
            ApiError::BodyUnreadable => f.write_str("the request body could not be read"),
            ApiError::TooLarge { limit } => write!(f, "the body is larger than {limit} bytes"),
            ApiError::UnsupportedMediaType => f.write_str(
                "send application/x-www-form-urlencoded, multipart/form-data or \
                 application/json, or use GET with a query string",
            ),
            ApiError::BrokerUnavailable => {
                f.write_str("the report could not be stored right now; retry later")
            }
            ApiError::Unauthorized => f.write_str("missing or invalid credentials"),
            ApiError::Malformed(why) => f.write_str(why),
            ApiError::RateLimited { .. } => {
                f.write_str("too many requests from this source; retry later")
            }
            ApiError::RequestTimeout => f.write_str("the body did not arrive in time"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidReport(_)
            | ApiError::BadEncoding(_)
            | ApiError::BodyUnreadable
            | ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BrokerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let fields = match self {
            ApiError::InvalidReport(e) => e.errors.as_slice(),
            _ => &[],
        };
        let body = ErrorBody::new(self.code(), self.to_string(), fields);

        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::BrokerUnavailable => {
                response.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        response.json(body)
    }
}

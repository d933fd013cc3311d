//! The JSON shape of every error answer of both services:
//! `{"error": {"code": ..., "message": ..., "fields": [...]}}`, `fields` only when a
//! request named fields or parameters that were wrong.

use crate::parse::FieldError;
use serde::Serialize;

/// An error answer's body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

impl<'a> ErrorBody<'a> {
    /// The body for a stable `code`, a message for people, and the fields at fault.
    pub fn new(code: &'a str, message: String, fields: &'a [FieldError]) -> ErrorBody<'a> {
        ErrorBody {
            error: ErrorDetail {
                code,
                message,
                fields,
            },
        }
    }
}

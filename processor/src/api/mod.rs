//! The query API: delivery reports read back for people and their tools.
//!
//! Routes, all on the processor's HTTP server:
//! - `GET /v1/messages/{msg_id}` and `GET /v1/messages` ([`messages`]);
//! - `GET /v1/stats` ([`stats`]);
//! - `GET /openapi.json`, the OpenAPI document of both services ([`openapi`]).
//!
//! Every `/v1` route requires a bearer token from `API_TOKENS` ([`auth`]); a request is
//! checked for its token first, then for its query parameters ([`params`]), and only then
//! reaches the database through [`with_connection`], on a blocking thread, so a slow query
//! never stalls the server's event loop. Errors answer in ingest's JSON shape ([`error`]).

pub mod auth;
pub mod error;
pub mod messages;
pub mod openapi;
pub mod params;
pub mod stats;

use crate::db::PgPool;
use actix_web::web;
use auth::ApiTokens;
use diesel::pg::PgConnection;
use error::ApiError;
use log::{error, warn};
use std::time::Duration;

/// Longest wait for a pooled connection before a read answers 503.
pub const CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// What the API's handlers share.
pub struct ApiState {
    /// The processor's connection pool.
    pub pool: PgPool,
    /// Tokens that may read.
    pub tokens: ApiTokens,
}

impl ApiState {
    /// The state for `tokens`, warning once when reads are disabled for want of one.
    pub fn new(pool: PgPool, tokens: ApiTokens) -> ApiState {
        if tokens.is_empty() {
            warn!("API_TOKENS is empty; the query API and dashboard refuse every read");
        }
        ApiState { pool, tokens }
    }
}

/// Registers every API route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(messages::configure)
        .configure(stats::configure)
        .configure(openapi::configure);
}

/// Runs `query` on a pooled connection on a blocking thread. A pool timeout answers 503;
/// a query error is logged here, once, and answers 500 without its text.
pub async fn with_connection<T, F>(pool: &PgPool, query: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> diesel::QueryResult<T> + Send + 'static,
{
    let pool = pool.clone();
    let outcome = web::block(move || {
        let mut conn = pool.get_timeout(CONNECTION_WAIT).map_err(|e| {
            warn!("query API has no database connection error={e}");
            ApiError::DatabaseUnavailable
        })?;
        query(&mut conn).map_err(|e| {
            error!("query API read failed error={e}");
            ApiError::Internal
        })
    })
    .await;

    match outcome {
        Ok(result) => result,
        Err(e) => {
            error!("query API blocking task failed error={e}");
            Err(ApiError::Internal)
        }
    }
}

//! What the processor knows about its own health, and the HTTP endpoints that tell it.

use crate::db::PgPool;
use actix_web::{web, HttpResponse};
use diesel::{connection::SimpleConnection, r2d2::PooledConnection};
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// Flags set by the consume loop and read by the health endpoints.
#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    database: AtomicBool,
}

impl Health {
    /// Records whether a consuming broker session is open.
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    /// Records whether the last database write worked.
    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
    }

    /// Whether a consuming broker session is open.
    pub fn broker_up(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }
}

/// What the health routes need.
pub struct HealthState {
    /// Flags from the consume loop.
    pub health: std::sync::Arc<Health>,
    /// The pool, to check the database now.
    pub pool: PgPool,
    /// The exported metrics.
    pub metrics: std::sync::Arc<crate::metrics::ProcessorMetrics>,
}

/// Registers `/healthz` and `/readyz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The metrics in the Prometheus text format.
async fn metrics(state: web::Data<HealthState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Ready when a consumer is attached and the database answers a query now.
async fn readyz(state: web::Data<HealthState>) -> HttpResponse {
    let pool = state.pool.clone();
    let database = tokio::task::spawn_blocking(move || {
        let mut conn: PooledConnection<_> = pool.get_timeout(Duration::from_secs(1)).ok()?;
        conn.batch_execute("SELECT 1").ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let broker = state.health.broker_up();

    let body = serde_json::json!({
        "status": if broker && database { "ready" } else { "unready" },
        "broker": if broker { "up" } else { "down" },
        "database": if database { "up" } else { "down" },
    });
    if broker && database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

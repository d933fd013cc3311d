//! Ingest's HTTP routes: the report endpoint and the health checks.

use crate::{
    auth::{Admission, Guard},
    broker::Broker,
    error::ApiError,
    metrics::IngestMetrics,
    quarantine::Quarantine,
    request,
};
use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};
use chrono::Utc;
use log::{debug, info, warn};
use serde::Serialize;
use shared::{parse_report, report::RawFields, GatewayZone, ParseContext, Rules};
use std::time::Instant;

/// What every request handler shares.
pub struct AppState {
    /// The broker handle.
    pub broker: Broker,
    /// Zone for gateway times without an offset.
    pub gateway_zone: GatewayZone,
    /// Source, rate, token and signature checks, and the body limits.
    pub guard: Guard,
    /// Aliases taught at run time.
    pub rules: Rules,
    /// Where refused requests are kept.
    pub quarantine: Quarantine,
    /// The exported metrics.
    pub metrics: IngestMetrics,
}

/// Registers all routes.
///
/// `/dlr/{token}` is matched by a static `/dlr` scope and [`crate::auth::path_token_segment`]
/// rather than a route pattern with a variable segment: actix-router matches such a
/// pattern with a regular expression on every request, which profiling showed as a tenth
/// of ingest's CPU time.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/dlr")
            .service(
                web::resource("")
                    .route(web::get().to(receive_report))
                    .route(web::post().to(receive_report)),
            )
            .default_service(web::to(receive_report_at_token)),
    )
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(metrics));
}

#[derive(Serialize)]
struct Accepted<'a> {
    result: &'static str,
    msgid: &'a str,
    status: &'static str,
}

/// Validates a delivery report and answers 200 once the broker has confirmed it.
async fn receive_report(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let outcome = accept_report(&req, payload, &state).await;

    let label = match &outcome {
        Ok(_) => "accepted",
        Err(e) => e.code(),
    };
    state.metrics.requests.with_label_values(&[label]).inc();
    outcome
}

/// `/dlr/{token}`: the report endpoint with the token as one more path segment. Any
/// other path under `/dlr/` is not found, and a method other than GET or POST is not
/// allowed, as for `/dlr` itself.
async fn receive_report_at_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if crate::auth::path_token_segment(&req).is_none() {
        return Ok(HttpResponse::NotFound().finish());
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, POST"))
            .finish());
    }
    receive_report(req, payload, state).await
}

async fn accept_report(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let ctx = ParseContext {
        zone: state.gateway_zone,
        received_at: Utc::now(),
        rules: &state.rules,
    };

    let admitted = match state.guard.admit(req, payload).await? {
        Admission::Admitted(admitted) => admitted,
        Admission::Replayed => return Ok(already_accepted()),
    };
    let fields = request::read_fields(req, admitted.body.clone(), &state.rules).await?;
    let report = match parse_report(&fields.query, &fields.body, &ctx) {
        Ok(report) => report,
        Err(invalid) => {
            info!(
                "report refused reason=invalid fields={}",
                field_names(&invalid)
            );
            let raw = RawFields::from_pairs(&fields.query, &fields.body);
            state
                .quarantine
                .keep(&state.broker, ctx.received_at, raw, &invalid);
            return Err(ApiError::InvalidReport(invalid));
        }
    };

    let publishing = Instant::now();
    if let Err(e) = state.broker.publish_report(&report).await {
        warn!(
            "report not confirmed msgid={} error={e} elapsed_ms={}",
            report.msg_id.as_str(),
            started.elapsed().as_millis()
        );
        return Err(ApiError::BrokerUnavailable);
    }
    let metrics = &state.metrics;
    metrics
        .confirm_seconds
        .observe(publishing.elapsed().as_secs_f64());
    metrics
        .reports
        .with_label_values(&[report.status.as_str()])
        .inc();
    state.guard.accepted(&admitted);

    debug!(
        "report accepted msgid={} status={} elapsed_ms={}",
        report.msg_id.as_str(),
        report.status,
        started.elapsed().as_millis()
    );
    Ok(HttpResponse::Ok().json(Accepted {
        result: "accepted",
        msgid: report.msg_id.as_str(),
        status: report.status.as_str(),
    }))
}

/// The answer to a signed request replayed after its report was accepted.
fn already_accepted() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "result": "already_accepted" }))
}

fn field_names(e: &shared::InvalidReport) -> String {
    let names: Vec<&str> = e.errors.iter().map(|f| f.field).collect();
    names.join(",")
}

/// The metrics in the Prometheus text format.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Liveness: the process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: a report could be published now.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.broker.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "broker": "up" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unready", "broker": "down" }))
    }
}

//! Ingest: the gateway's notifyUrl.
//!
//! A request flows through [`request::read_fields`] (query and body into pairs), then
//! [`shared::parse_report`] (pairs into a validated report, or a 400 naming every bad
//! field), then [`broker::Broker::publish_report`] (a persistent, mandatory publish whose
//! confirm is awaited within a timeout). Only a confirmed report gets a 200; anything the
//! broker did not confirm gets a 503 with `Retry-After`, so the gateway sends it again.
//! Before any of that, [`auth::Guard::admit`] checks the source address, the rate limit,
//! the token and the signature, and reads the body within [`limits`]. A request that
//! passes those checks but fails validation is also kept in the quarantine queue
//! ([`quarantine`]) with its raw fields and reasons, so an unexpected gateway format loses
//! nothing. Ingest keeps no state of its own and can run as many replicas as needed.

pub mod auth;
pub mod broker;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod quarantine;
pub mod request;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod source;

use actix_web::{web, App, HttpServer};
use auth::Guard;
use broker::Broker;
use log::info;
use routes::AppState;
use settings::Settings;

/// Runs ingest until it is told to stop (SIGINT or SIGTERM), finishing requests in flight.
pub async fn run(settings: Settings) -> std::io::Result<()> {
    let broker = Broker::start(
        settings.amqp.clone(),
        settings.publish_channels,
        settings.publish_timeout,
    );
    let metrics = metrics::IngestMetrics::new().map_err(std::io::Error::other)?;
    let quarantine =
        quarantine::Quarantine::new(settings.quarantine_per_minute, metrics.quarantined.clone());
    let guard = Guard::new(&settings.auth, &settings.limits);
    guard.keep_tokens_fresh();
    let state = web::Data::new(AppState {
        broker,
        gateway_zone: settings.gateway_zone,
        guard,
        rules: settings.rules.clone(),
        quarantine,
        metrics,
    });

    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes::configure)
    })
    .workers(settings.workers)
    .client_request_timeout(settings.limits.header_timeout)
    .client_disconnect_timeout(settings.limits.disconnect_timeout)
    .keep_alive(settings.limits.keep_alive)
    .shutdown_timeout(10)
    .bind(settings.listen)?;

    info!(
        "ingest listening addr={} gateway_tz={}",
        settings.listen, settings.gateway_zone
    );
    server.run().await
}

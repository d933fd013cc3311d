//! Processor: drains the report queue into PostgreSQL, exactly once in effect.
//!
//! At start-up the processor creates the database if it may, applies the embedded
//! migrations under an advisory lock ([`db`]), and serves `/healthz` and `/readyz`
//! ([`health`]). The consume loop ([`consumer`]) then gathers deliveries into batches
//! and hands each to [`store::apply_batch`], which records every distinct report once
//! and moves each message's current status only towards the truer report. Deliveries
//! are acknowledged after the commit, so a crash at any point leads to redelivery, never
//! to loss, and redelivery leads to no duplicate, since the write is idempotent.
//! [`replay`] is the `processor replay` command, which feeds quarantined and
//! dead-lettered messages that pass the current rules back into the queue.

pub mod api;
pub mod consumer;
pub mod dashboard;
pub mod db;
pub mod health;
pub mod metrics;
pub mod replay;
pub mod settings;
pub mod store;

use actix_web::{web, App, HttpServer};
use health::{Health, HealthState};
use log::{info, warn};
use settings::Settings;
use shared::backoff::Backoff;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs the processor until SIGINT or SIGTERM, then finishes its batch and returns.
pub async fn run(settings: Settings) -> Result<(), db::DbError> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested; finishing the current batch");
        let _ = stop.send(true);
    });
    run_until(settings, stopped).await
}

/// Runs the processor until `stopped` turns true.
pub async fn run_until(
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), db::DbError> {
    let settings = Arc::new(settings);
    let health = Arc::new(Health::default());
    let metrics = Arc::new(metrics::ProcessorMetrics::new()?);
    let pool = db::pool(&settings.database_url, settings.pool_size)?;

    let state = web::Data::new(HealthState {
        health: health.clone(),
        pool: pool.clone(),
        metrics: metrics.clone(),
    });
    let api_state = web::Data::new(api::ApiState::new(
        pool.clone(),
        settings.api_tokens.clone(),
    ));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(api_state.clone())
            .configure(health::configure)
            .configure(api::configure)
            .configure(dashboard::configure)
    })
    .workers(1)
    .disable_signals()
    .bind(settings.listen)?
    .run();
    let server_handle = server.handle();
    tokio::spawn(server);
    info!("processor health endpoint addr={}", settings.listen);

    tokio::spawn(metrics::sample_queue_depths(
        settings.clone(),
        metrics.clone(),
        stopped.clone(),
    ));
    if prepare_database(&settings.database_url, &mut stopped).await {
        consumer::consume(settings, pool, health, metrics, stopped).await;
    }

    server_handle.stop(true).await;
    info!("processor stopped");
    Ok(())
}

/// Creates and migrates the database, retrying with backoff while it is unreachable.
/// Returns `false` if shutdown was requested first.
async fn prepare_database(database_url: &str, stopped: &mut watch::Receiver<bool>) -> bool {
    let mut backoff = Backoff::new();
    loop {
        let url = database_url.to_owned();
        let prepared = tokio::task::spawn_blocking(move || {
            db::ensure_database(&url)?;
            db::migrate(&url)
        })
        .await;
        match prepared {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => warn!("database not ready; retrying error={e}"),
            Err(e) => warn!("database preparation failed; retrying error={e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stopped.changed() => return false,
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! The ceilings: what the HTTP stack, validation, the broker and the database manage on
//! their own on this machine, with the settings the services use.

use crate::{
    error::{BenchError, Result},
    load::{closed_loop, open_loop, ClosedOutcome, HttpWorker, OpenOutcome},
    publish::{Payloads, Publishers},
    sandbox::Sandbox,
    workload::Workload,
};
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Consumer,
};
use shared::{amqp, parse_report};
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

/// Requests a second a bare actix-web handler answering 200 sustains with `workers`
/// worker threads, under the same closed-loop load as ingest.
pub async fn bare_http(workers: usize, connections: usize, requests: u64) -> Result<ClosedOutcome> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let server_thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let bound =
                HttpServer::new(|| App::new().route("/dlr/{token}", web::get().to(answer_ok)))
                    .workers(workers)
                    .disable_signals()
                    .bind(("127.0.0.1", 0));
            let server = match bound {
                Ok(server) => server,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let addr = server.addrs()[0];
            let running = server.run();
            let _ = started_tx.send(Ok((addr, running.handle())));
            let _ = running.await;
        });
    });

    let (addr, handle) = started_rx
        .await
        .map_err(|_| BenchError::new("the bare HTTP server did not start"))??;
    let workload = Arc::new(Workload::new("bare"));
    let warm_up = HttpWorker::connect(addr, workload.clone(), connections).await?;
    closed_loop(warm_up, requests / 10).await;
    let workers = HttpWorker::connect(addr, workload, connections).await?;
    let outcome = closed_loop(workers, requests).await;

    handle.stop(true).await;
    let _ = server_thread.join();

    Ok(outcome)
}

async fn answer_ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Typical requests validated a second on one thread by [`shared::parse_report`], the way
/// ingest validates each request, with nothing published.
pub async fn validation(duration: Duration) -> Result<f64> {
    let rate = tokio::task::spawn_blocking(move || {
        let workload = Workload::new("validation");
        let requests: Vec<Vec<(String, String)>> =
            (0..1024).map(|i| workload.query_pairs(i)).collect();

        let started = std::time::Instant::now();
        let mut validated = 0u64;
        let mut valid = 0u64;
        while started.elapsed() < duration {
            for pairs in requests.iter().take(256) {
                let ctx = workload.context();
                valid += u64::from(parse_report(pairs, &[], &ctx).is_ok());
                validated += 1;
            }
        }
        (validated, valid, started.elapsed())
    })
    .await?;

    let (validated, valid, elapsed) = rate;
    if valid != validated {
        return Err(BenchError::new("the typical request failed validation"));
    }
    Ok(validated as f64 / elapsed.as_secs_f64())
}

/// Messages a second published with lapin and confirmed, `in_flight` at once spread
/// over `channels` confirm-mode channels, each one the size and kind ingest publishes.
pub async fn raw_publish(
    sandbox: &Sandbox,
    channels: usize,
    in_flight: usize,
    total: u64,
) -> Result<ClosedOutcome> {
    let payload = Payloads::Same(Arc::new(Workload::new("raw").envelope(0)));
    let publishers = Publishers::open(&sandbox.amqp, channels).await?;

    closed_loop(publishers.workers(in_flight, &payload), total / 10).await;
    let outcome = closed_loop(publishers.workers(in_flight, &payload), total).await;
    publishers.close().await;
    sandbox.purge().await?;

    Ok(outcome)
}

/// Confirm latencies of raw publishing at a fixed rate, measured from each message's
/// scheduled time, with up to `in_flight` messages outstanding.
pub async fn raw_publish_latency(
    sandbox: &Sandbox,
    channels: usize,
    in_flight: usize,
    rate: f64,
    total: u64,
) -> Result<OpenOutcome> {
    let payload = Payloads::Same(Arc::new(Workload::new("raw").envelope(0)));
    let publishers = Publishers::open(&sandbox.amqp, channels).await?;

    let outcome = open_loop(publishers.workers(in_flight, &payload), rate, total).await;
    publishers.close().await;
    sandbox.purge().await?;

    Ok(outcome)
}

/// Messages a second taken from a pre-filled queue of `count` reports with `prefetch`
/// unacknowledged at most, acknowledged `ack_every` at a time as the processor does after
/// each batch. Nothing is decoded or written.
pub async fn raw_consume(
    sandbox: &Sandbox,
    count: u64,
    prefetch: u16,
    ack_every: u64,
) -> Result<f64> {
    let workload = Arc::new(Workload::new(&format!("consume{}", rand_tag())));
    sandbox.prefill(&Payloads::Reports(workload), count).await?;

    let connection = amqp::connect(&sandbox.amqp, "dlr-bench-consumer").await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            sandbox.amqp.queue.as_str().into(),
            "dlr-bench-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let started = Instant::now();
    let mut received = 0u64;
    while received < count {
        let delivery = next_delivery(&mut consumer, Duration::from_secs(30)).await?;
        received += 1;
        if received.is_multiple_of(ack_every) || received == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "done".into()).await;

    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Reports a second written by the processor's own [`processor::store::apply_batch`] in
/// batches of `batch_size`, one transaction each, on one connection. Only the calls are
/// timed; building the reports is not.
pub async fn raw_write(sandbox: &Sandbox, count: u64, batch_size: usize) -> Result<f64> {
    sandbox.truncate()?;
    let mut conn = sandbox.db()?;
    let workload = Workload::new(&format!("write{}", rand_tag()));

    let timed = tokio::task::spawn_blocking(move || {
        let mut spent = Duration::ZERO;
        let indices: Vec<u64> = (0..count).collect();
        for chunk in indices.chunks(batch_size) {
            let reports: Vec<_> = chunk.iter().filter_map(|&i| workload.report(i)).collect();
            let started = std::time::Instant::now();
            processor::store::apply_batch(&mut conn, &reports)?;
            spent += started.elapsed();
        }
        Ok::<_, BenchError>(spent)
    })
    .await??;

    let written = sandbox.count_rows()?;
    if written != count as i64 {
        return Err(BenchError(format!(
            "raw write stored {written} rows instead of {count}"
        )));
    }
    Ok(count as f64 / timed.as_secs_f64())
}

/// A short tag that keeps message ids of repeated runs apart.
pub fn rand_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}")
}

/// The next delivery, or an error if none arrives within `limit`.
async fn next_delivery(consumer: &mut Consumer, limit: Duration) -> Result<Delivery> {
    match tokio::time::timeout(limit, consumer.next()).await {
        Ok(Some(delivery)) => Ok(delivery?),
        Ok(None) => Err(BenchError::new("the broker closed the consumer")),
        Err(_) => Err(BenchError(format!("no delivery within {limit:?}"))),
    }
}

//! The consume loop: deliveries in, batches written, acknowledgements out.
//!
//! A session holds one broker connection with two channels: one consumes the report
//! queue, the other publishes unusable messages to the dead-letter exchange in confirm
//! mode. Deliveries gather into the next batch while the current one is written; each
//! batch is written in one transaction and acknowledged together only after its commit
//! and the commits of every batch before it.
//! If the broker connection breaks, the unacknowledged batch is simply redelivered to
//! whichever processor consumes next; the write is idempotent, so that adds nothing.
//! If the database fails, the batch is kept and retried with backoff, never dropped.

use crate::{db::PgPool, health::Health, metrics::ProcessorMetrics, settings::Settings, store};
use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, Consumer,
};
use log::{error, info, warn};
use shared::{amqp, backoff::Backoff, Report};
use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};
use tokio::{sync::watch, time::Instant};

/// How a session ended without an error.
enum SessionEnd {
    /// Shutdown was requested and the last batch is acknowledged.
    Shutdown,
    /// The broker cancelled the consumer or closed the stream.
    Lost,
}

/// Bound on waiting for the broker to confirm a dead-lettered message.
const DEAD_LETTER_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Consumes until `shutdown` turns true, reconnecting to the broker with backoff.
pub async fn consume(
    settings: Arc<Settings>,
    pool: PgPool,
    health: Arc<Health>,
    metrics: Arc<ProcessorMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let outcome = match amqp::connect(&settings.amqp, "dlr-processor").await {
            Ok(connection) => {
                let parts = (&*settings, &pool, &*health, &*metrics);
                let outcome = session(&connection, parts, &mut shutdown, &mut backoff).await;
                amqp::close_quietly(&connection).await;
                outcome
            }
            Err(e) => Err(e),
        };
        health.set_broker(false);
        match outcome {
            Ok(SessionEnd::Shutdown) => return,
            Ok(SessionEnd::Lost) => warn!("the broker ended the consumer; reconnecting"),
            Err(e) => warn!(
                "broker session failed url={} error={e}",
                settings.amqp.redacted_url()
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The consumer's prefetch: room for every writer's batch and the one gathering behind
/// them, so gathering never stalls on unacknowledged deliveries.
pub fn prefetch(batch_size: usize, writers: usize) -> u16 {
    (batch_size * (writers + 1)).min(usize::from(u16::MAX)) as u16
}

/// A consuming session on one connection.
struct Session<'a> {
    settings: &'a Settings,
    pool: &'a PgPool,
    health: &'a Health,
    metrics: &'a ProcessorMetrics,
    consume_channel: Channel,
    dead_letter_channel: Channel,
}

async fn session(
    connection: &Connection,
    (settings, pool, health, metrics): (&Settings, &PgPool, &Health, &ProcessorMetrics),
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<SessionEnd, lapin::Error> {
    let consume_channel = connection.create_channel().await?;
    amqp::declare_topology(&consume_channel, &settings.amqp).await?;
    let prefetch = prefetch(settings.batch_size, settings.batch_writers);
    consume_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let dead_letter_channel = connection.create_channel().await?;
    dead_letter_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let consumer_tag = format!("dlr-processor-{}", std::process::id());
    let mut consumer = consume_channel
        .basic_consume(
            settings.amqp.queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(
        "consuming queue={} prefetch={prefetch} batch_size={}",
        settings.amqp.queue, settings.batch_size
    );
    health.set_broker(true);
    backoff.reset();

    let session = Session {
        settings,
        pool,
        health,
        metrics,
        consume_channel,
        dead_letter_channel,
    };
    let ended = session.run(&mut consumer, shutdown).await?;
    if matches!(ended, SessionEnd::Shutdown) {
        let cancel = BasicCancelOptions::default();
        let _ = session
            .consume_channel
            .basic_cancel(consumer_tag.as_str().into(), cancel)
            .await;
    }
    Ok(ended)
}

/// A batch being written, resolving to the writer's verdict: `false` means shutdown
/// was requested while the database was failing.
type Writing<'a> = Pin<Box<dyn Future<Output = Result<bool, lapin::Error>> + 'a>>;

/// A batch handed to a writer, kept in delivery order until it is acknowledged.
struct InFlight<'a> {
    /// The delivery tag of the batch's last delivery.
    last_tag: u64,
    /// How far its write has come.
    progress: Progress<'a>,
}

/// A write running, or ended with the writer's verdict.
enum Progress<'a> {
    Running(Writing<'a>),
    Ended(bool),
}

/// Polls every unfinished write and resolves once one of them has ended, so the caller
/// can acknowledge what is now committed in order and hand a free writer the next batch.
fn any_written<'s, 'a>(
    in_flight: &'s mut VecDeque<InFlight<'a>>,
) -> impl Future<Output = Result<(), lapin::Error>> + use<'s, 'a> {
    std::future::poll_fn(move |cx| {
        let mut ended = false;
        for batch in in_flight.iter_mut() {
            if let Progress::Running(write) = &mut batch.progress {
                if let Poll::Ready(outcome) = write.as_mut().poll(cx) {
                    batch.progress = Progress::Ended(outcome?);
                    ended = true;
                }
            }
        }
        if ended {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
}

impl Session<'_> {
    /// Gathers deliveries and writes them, until shutdown or the end of the consumer.
    ///
    /// Batching is natural: while a batch is being written, the deliveries that arrive
    /// wait in `pending`, and the moment the write ends they become the next batch, up to
    /// `BATCH_SIZE`. A busy processor so writes big batches back to back and a quiet one
    /// writes each report within milliseconds, without a fixed wait. Only while no batch
    /// is being written does a partial batch wait, at most `BATCH_MAX_WAIT_MS` (0 by
    /// default), for companions.
    ///
    /// When a backlog builds up (half a batch waiting while a write is still running),
    /// another writer takes it on its own connection, up to `BATCH_WRITERS` at once, so
    /// one slow commit does not hold everything behind it. Batches are acknowledged in
    /// delivery order, each with `ack multiple` only once every earlier batch is
    /// committed, so an acknowledgement never covers a report that is not stored; a slow
    /// batch therefore holds back the acknowledgements (not the commits) of later ones,
    /// and the prefetch bounds how far writing runs ahead of it.
    async fn run(
        &self,
        consumer: &mut Consumer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, lapin::Error> {
        let batch_size = self.settings.batch_size;
        let writers = self.settings.batch_writers;
        let stop_view = shutdown.clone();
        let mut pending: Vec<Delivery> = Vec::with_capacity(batch_size);
        let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::with_capacity(writers);
        let mut due_at: Option<Instant> = None;
        let mut stopping = *shutdown.borrow();

        loop {
            let writing = in_flight
                .iter()
                .filter(|b| matches!(b.progress, Progress::Running(_)))
                .count();
            if !pending.is_empty() && writing < writers {
                let start = if in_flight.is_empty() {
                    let due = due_at.is_none_or(|at| Instant::now() >= at);
                    due || stopping || pending.len() >= batch_size
                } else {
                    pending.len() >= batch_size.div_ceil(2)
                };
                if start {
                    let batch = std::mem::replace(&mut pending, Vec::with_capacity(batch_size));
                    let last_tag = batch.last().map_or(0, |d| d.delivery_tag);
                    in_flight.push_back(InFlight {
                        last_tag,
                        progress: Progress::Running(Box::pin(
                            self.write_batch(batch, stop_view.clone()),
                        )),
                    });
                    due_at = None;
                }
            }
            if stopping && in_flight.is_empty() && pending.is_empty() {
                return Ok(SessionEnd::Shutdown);
            }

            let idle = in_flight.is_empty();
            let linger = async {
                match due_at {
                    Some(at) if idle => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            let room = !stopping && pending.len() < batch_size;
            tokio::select! {
                biased;
                _ = shutdown.changed(), if !stopping => stopping = true,
                written = any_written(&mut in_flight) => {
                    written?;
                    let mut acknowledged = None;
                    while let Some(oldest) = in_flight.front() {
                        match oldest.progress {
                            Progress::Ended(true) => {
                                acknowledged = in_flight.pop_front().map(|b| b.last_tag);
                            }
                            Progress::Ended(false) => return Ok(SessionEnd::Shutdown),
                            Progress::Running(_) => break,
                        }
                    }
                    if let Some(tag) = acknowledged {
                        self.consume_channel
                            .basic_ack(tag, BasicAckOptions { multiple: true })
                            .await?;
                    }
                }
                next = consumer.next(), if room => {
                    let Some(delivery) = next else {
                        return Ok(SessionEnd::Lost);
                    };
                    pending.push(delivery?);
                    take_ready(consumer, &mut pending, batch_size)?;
                    if due_at.is_none() {
                        due_at = Some(Instant::now() + self.settings.batch_max_wait);
                    }
                }
                _ = linger => {}
            }
        }
    }

    /// Decodes and writes a batch, dead-lettering what cannot be stored; the caller
    /// acknowledges it. Returns `false` when shutdown was requested while the database was
    /// failing, leaving the batch unacknowledged for redelivery.
    async fn write_batch(
        &self,
        batch: Vec<Delivery>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<bool, lapin::Error> {
        let mut reports = Vec::with_capacity(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        for delivery in &batch {
            if delivery.redelivered {
                self.metrics.redeliveries.inc();
            }
            match Report::from_envelope_json(&delivery.data) {
                Ok(report) => {
                    reports.push(report);
                    sources.push(delivery);
                }
                Err(e) => self.dead_letter(delivery, &e.to_string()).await?,
            }
        }

        let reports: Arc<[Report]> = reports.into();
        if !self.write(&reports, &sources, &shutdown).await? {
            return Ok(false);
        }
        if !self.settings.fault_ack_delay.is_zero() {
            info!("batch committed; acknowledging after the fault-test delay");
            tokio::time::sleep(self.settings.fault_ack_delay).await;
        }
        Ok(true)
    }

    /// Writes the reports, retrying transient database failures until they pass or
    /// shutdown is requested. A report the database refuses on its own is dead-lettered.
    async fn write(
        &self,
        reports: &Arc<[Report]>,
        sources: &[&Delivery],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool, lapin::Error> {
        if reports.is_empty() {
            return Ok(true);
        }
        let mut backoff = Backoff::new();
        loop {
            let started = std::time::Instant::now();
            match apply(self.pool, reports.clone()).await {
                Ok(outcome) => {
                    self.health.set_database(true);
                    self.record(&outcome, reports, started.elapsed());
                    info!(
                        "batch written size={} new={} duplicates={} messages_changed={} \
                         elapsed_ms={}",
                        reports.len(),
                        outcome.new_transitions,
                        outcome.duplicates,
                        outcome.messages_changed,
                        started.elapsed().as_millis(),
                    );
                    return Ok(true);
                }
                Err(WriteError::Transient(why)) => {
                    self.health.set_database(false);
                    self.metrics.write_retries.inc();
                    warn!(
                        "batch not written; retrying size={} error={why}",
                        reports.len()
                    );
                }
                Err(WriteError::Permanent(why)) => {
                    warn!("batch refused; writing its reports one by one error={why}");
                    if self.write_one_by_one(reports, sources).await? {
                        return Ok(true);
                    }
                }
            }

            if *shutdown.borrow() {
                return Ok(false);
            }
            if !self.consume_channel.status().connected() {
                return Err(std::io::Error::other("broker channel closed during a retry").into());
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Counts a written batch in the metrics.
    fn record(&self, outcome: &store::BatchOutcome, reports: &[Report], elapsed: Duration) {
        let metrics = self.metrics;
        let size = reports.len();
        let committed = chrono::Utc::now();
        for report in reports {
            let age = (committed - report.received_at)
                .to_std()
                .unwrap_or_default();
            metrics.commit_age_seconds.observe(age.as_secs_f64());
        }
        metrics.batch_size.observe(size as f64);
        metrics.write_seconds.observe(elapsed.as_secs_f64());
        metrics.duplicates.inc_by(outcome.duplicates as u64);
        for (status, count) in &outcome.new_by_status {
            metrics.reports.with_label_values(&[status]).inc_by(*count);
        }
    }

    /// Writes each report in its own transaction, dead-lettering the ones the database
    /// refuses for a reason of their own. Returns `false` if a transient failure
    /// interrupted, so the caller retries.
    async fn write_one_by_one(
        &self,
        reports: &[Report],
        sources: &[&Delivery],
    ) -> Result<bool, lapin::Error> {
        for (report, delivery) in reports.iter().zip(sources) {
            match apply(self.pool, Arc::from([report.clone()])).await {
                Ok(_) => {}
                Err(WriteError::Transient(_)) => return Ok(false),
                Err(WriteError::Permanent(why)) => {
                    error!(
                        "report refused by the database msgid={} error={why}",
                        report.msg_id.as_str()
                    );
                    self.dead_letter(delivery, &format!("refused by the database: {why}"))
                        .await?;
                }
            }
        }
        Ok(true)
    }

    /// Publishes a copy of the delivery, with the reason, to the dead-letter exchange and
    /// waits for the confirm. The original is acknowledged with its batch.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), lapin::Error> {
        warn!(
            "dead-lettering a message delivery_tag={} reason={reason}",
            delivery.delivery_tag
        );
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-dlr-reason".into(),
            AMQPValue::LongString(LongString::from(reason.to_owned())),
        );
        headers.insert(
            "x-dlr-queue".into(),
            AMQPValue::LongString(LongString::from(self.settings.amqp.queue.clone())),
        );
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type(
                delivery
                    .properties
                    .content_type()
                    .clone()
                    .unwrap_or_else(|| ShortString::from("application/octet-stream")),
            );

        let routing = (
            self.settings.amqp.dead_letter_exchange.as_str(),
            self.settings.amqp.queue.as_str(),
        );
        let channel = &self.dead_letter_channel;
        amqp::publish_confirmed(
            channel,
            routing,
            &delivery.data,
            properties,
            DEAD_LETTER_CONFIRM_TIMEOUT,
        )
        .await?;

        let kind = if reason.starts_with("refused") {
            "refused"
        } else {
            "undecodable"
        };
        self.metrics.dead_letters.with_label_values(&[kind]).inc();
        Ok(())
    }
}

/// Moves the deliveries the consumer already holds into `pending`, without waiting, until
/// it holds `limit`.
fn take_ready(
    consumer: &mut Consumer,
    pending: &mut Vec<Delivery>,
    limit: usize,
) -> Result<(), lapin::Error> {
    while pending.len() < limit {
        match consumer.next().now_or_never() {
            Some(Some(delivery)) => pending.push(delivery?),
            Some(None) | None => return Ok(()),
        }
    }
    Ok(())
}

/// A failed write, sorted by what to do about it.
enum WriteError {
    /// Retry the same batch later.
    Transient(String),
    /// The data itself is at fault.
    Permanent(String),
}

/// Runs [`store::apply_batch`] on a blocking thread with a pooled connection.
/// The reports are shared, not copied, so a retried batch costs no allocation.
async fn apply(pool: &PgPool, reports: Arc<[Report]>) -> Result<store::BatchOutcome, WriteError> {
    let pool = pool.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut conn = pool
            .get()
            .map_err(|e| WriteError::Transient(format!("no database connection: {e}")))?;
        store::apply_batch(&mut conn, &reports).map_err(|e| {
            if store::is_transient(&e) {
                WriteError::Transient(e.to_string())
            } else {
                WriteError::Permanent(e.to_string())
            }
        })
    })
    .await;
    joined.unwrap_or_else(|e| Err(WriteError::Transient(format!("writer task failed: {e}"))))
}

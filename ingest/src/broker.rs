//! The one long-lived broker connection ingest publishes through.
//!
//! A supervisor task keeps a [`Link`] (a connection and a few channels in confirm mode)
//! open, replacing it with backoff whenever it breaks. Requests borrow the current link
//! and publish on its channels round-robin, so many publishes are in flight at once and
//! none waits for another's confirm. While there is no usable link, publishing fails at
//! once, so the gateway gets a fast 503 instead of a hang.

use chrono::{DateTime, Utc};
use lapin::{
    options::ConfirmSelectOptions, types::ShortString, BasicProperties, Channel, Connection,
};
use log::{info, warn};
use shared::{
    amqp::{self, AmqpSettings, ConfirmError},
    backoff::Backoff,
    quarantine::QuarantineRecord,
    Report,
};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

/// Why a report was not confirmed by the broker; every variant means "not stored".
#[derive(Debug)]
pub enum PublishError {
    /// No connection to the broker right now.
    Unavailable,
    /// The broker did not confirm that a queue holds the message.
    NotConfirmed(ConfirmError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Unavailable => f.write_str("no broker connection"),
            PublishError::NotConfirmed(e) => e.fmt(f),
        }
    }
}

/// An open connection with its channels in confirm mode.
struct Link {
    connection: Connection,
    channels: Vec<Channel>,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }
}

/// Shared handle to the broker, cheap to clone into every worker.
#[derive(Clone)]
pub struct Broker {
    link: Arc<RwLock<Option<Arc<Link>>>>,
    settings: Arc<AmqpSettings>,
    channel_count: usize,
    publish_timeout: Duration,
    next_channel: Arc<AtomicUsize>,
}

impl Broker {
    /// Creates the handle and starts the supervisor that connects and reconnects.
    /// Must be called inside a tokio runtime that lives as long as the service.
    pub fn start(settings: AmqpSettings, channel_count: usize, publish_timeout: Duration) -> Self {
        let broker = Broker {
            link: Arc::new(RwLock::new(None)),
            settings: Arc::new(settings),
            channel_count: channel_count.max(1),
            publish_timeout,
            next_channel: Arc::new(AtomicUsize::new(0)),
        };
        tokio::spawn(broker.clone().supervise());
        broker
    }

    /// A handle that has no link and never gets one: no supervisor runs, so it stays in
    /// the real "broker down" state for its whole life and every publish fails at once
    /// with [`PublishError::Unavailable`]. It lets the HTTP layer be built and tested
    /// without a broker; it is not a stand-in that pretends to publish.
    pub fn detached(settings: AmqpSettings) -> Self {
        Broker {
            link: Arc::new(RwLock::new(None)),
            settings: Arc::new(settings),
            channel_count: 1,
            publish_timeout: Duration::ZERO,
            next_channel: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether a publish could be attempted now.
    pub fn is_ready(&self) -> bool {
        self.current().is_some_and(|link| link.usable())
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.link.read().ok().and_then(|guard| guard.clone())
    }

    fn replace(&self, link: Option<Arc<Link>>) {
        if let Ok(mut guard) = self.link.write() {
            *guard = link;
        }
    }

    /// Publishes the report as a persistent, mandatory message and waits, within the
    /// publish timeout, for the broker to confirm that a queue holds it.
    pub async fn publish_report(&self, report: &Report) -> Result<(), PublishError> {
        let payload = report.to_envelope_json();
        let routing = (
            self.settings.exchange.as_str(),
            self.settings.queue.as_str(),
        );
        self.publish(
            routing,
            &payload,
            report.msg_id.as_str(),
            report.received_at,
        )
        .await
    }

    /// Publishes a quarantine record to the quarantine queue, confirmed like a report.
    pub async fn publish_quarantine(&self, record: &QuarantineRecord) -> Result<(), PublishError> {
        let payload = record.to_json();
        let routing = ("", self.settings.quarantine_queue.as_str());
        self.publish(routing, &payload, "quarantine", record.received_at)
            .await
    }

    async fn publish(
        &self,
        (exchange, routing_key): (&str, &str),
        payload: &[u8],
        message_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<(), PublishError> {
        let link = self
            .current()
            .filter(|link| link.usable())
            .ok_or(PublishError::Unavailable)?;
        let index = self.next_channel.fetch_add(1, Ordering::Relaxed) % link.channels.len();
        let channel = &link.channels[index];

        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(message_id))
            .with_timestamp(received_at.timestamp().max(0) as u64);
        let routing = (exchange, routing_key);
        amqp::publish_confirmed(channel, routing, payload, properties, self.publish_timeout)
            .await
            .map_err(PublishError::NotConfirmed)
    }

    /// Keeps a usable link in place for as long as the process runs.
    async fn supervise(self) {
        let mut backoff = Backoff::new();
        loop {
            let started = Instant::now();
            match self.open_link().await {
                Ok(link) => {
                    info!(
                        "connected to the broker url={} channels={}",
                        self.settings.redacted_url(),
                        link.channels.len()
                    );
                    let link = Arc::new(link);
                    self.replace(Some(link.clone()));
                    while link.usable() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    self.replace(None);
                    amqp::close_quietly(&link.connection).await;
                    warn!("lost the broker connection; publishing answers 503 until it is back");
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff.reset();
                    }
                }
                Err(e) => warn!(
                    "cannot reach the broker url={} error={e}",
                    self.settings.redacted_url()
                ),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn open_link(&self) -> Result<Link, lapin::Error> {
        let connection = amqp::connect(&self.settings, "dlr-ingest").await?;
        let setup = async {
            let mut channels = Vec::with_capacity(self.channel_count);
            for _ in 0..self.channel_count {
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                channels.push(channel);
            }
            amqp::declare_topology(&channels[0], &self.settings).await?;
            Ok::<_, lapin::Error>(channels)
        };
        let channels = match tokio::time::timeout(self.settings.connect_timeout, setup).await {
            Ok(Ok(channels)) => channels,
            Ok(Err(e)) => {
                amqp::close_quietly(&connection).await;
                return Err(e);
            }
            Err(_) => {
                amqp::close_quietly(&connection).await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "opening channels timed out",
                )
                .into());
            }
        };
        Ok(Link {
            connection,
            channels,
        })
    }
}

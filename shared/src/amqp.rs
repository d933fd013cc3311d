//! The RabbitMQ topology both services declare, and how they connect.
//!
//! Reports are published to a durable direct exchange and routed to a quorum queue. A
//! message the processor cannot use is published, with its reason, to a dead-letter
//! exchange bound to a dead-letter queue; the report queue also dead-letters there by
//! itself when a message exceeds its delivery limit. Requests that failed validation are
//! kept in a quarantine queue, published to through the default exchange. Every declaration is idempotent, so
//! each service declares the whole topology whenever it connects.

use crate::env::{self, SettingError};
use lapin::{
    options::{BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    uri::AMQPUri,
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::time::Duration;

/// Broker address and the names of everything declared on it.
#[derive(Clone, Debug)]
pub struct AmqpSettings {
    /// The broker URL, credentials included; never logged.
    pub url: String,
    /// The exchange reports are published to (`AMQP_EXCHANGE`).
    pub exchange: String,
    /// The quorum queue the processor consumes (`AMQP_QUEUE`); also the routing key.
    pub queue: String,
    /// Where unusable messages go (`AMQP_DEAD_LETTER_EXCHANGE`).
    pub dead_letter_exchange: String,
    /// The queue that keeps unusable messages for inspection and replay
    /// (`AMQP_DEAD_LETTER_QUEUE`).
    pub dead_letter_queue: String,
    /// The queue that keeps requests that failed validation (`AMQP_QUARANTINE_QUEUE`);
    /// published to through the default exchange.
    pub quarantine_queue: String,
    /// How many times the broker delivers one message before dead-lettering it
    /// (`AMQP_DELIVERY_LIMIT`); guards against a message that crashes every consumer.
    pub delivery_limit: u32,
    /// Bound on connecting and on each declaration.
    pub connect_timeout: Duration,
}

/// Default broker URL for a local RabbitMQ.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl AmqpSettings {
    /// Reads the broker settings from the environment.
    pub fn from_env() -> Result<AmqpSettings, SettingError> {
        let url = env::text("AMQP_URL", DEFAULT_AMQP_URL);
        url.parse::<AMQPUri>().map_err(|e| SettingError {
            variable: "AMQP_URL",
            problem: format!("is not an AMQP URL: {e}"),
        })?;

        Ok(AmqpSettings {
            url,
            exchange: env::text("AMQP_EXCHANGE", "dlr"),
            queue: env::text("AMQP_QUEUE", "dlr.reports"),
            dead_letter_exchange: env::text("AMQP_DEAD_LETTER_EXCHANGE", "dlr.dead"),
            dead_letter_queue: env::text("AMQP_DEAD_LETTER_QUEUE", "dlr.reports.dead"),
            quarantine_queue: env::text("AMQP_QUARANTINE_QUEUE", "dlr.quarantine"),
            delivery_limit: env::bounded("AMQP_DELIVERY_LIMIT", 20, 1..=1000)?,
            connect_timeout: env::millis("AMQP_CONNECT_TIMEOUT_MS", 3000, 100)?,
        })
    }

    /// Settings for the given URL with names derived from `prefix`, as tests and
    /// parallel deployments use to keep apart.
    pub fn isolated(url: &str, prefix: &str) -> AmqpSettings {
        AmqpSettings {
            url: url.to_owned(),
            exchange: prefix.to_owned(),
            queue: format!("{prefix}.reports"),
            dead_letter_exchange: format!("{prefix}.dead"),
            dead_letter_queue: format!("{prefix}.reports.dead"),
            quarantine_queue: format!("{prefix}.quarantine"),
            delivery_limit: 20,
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        match self.url.parse::<AMQPUri>() {
            Ok(uri) => format!(
                "amqp://{}@{}:{}/{}",
                uri.authority.userinfo.username, uri.authority.host, uri.authority.port, uri.vhost
            ),
            Err(_) => "<unparsable AMQP_URL>".into(),
        }
    }
}

/// Heartbeat interval asked for when the URL does not set one, so a dead peer is noticed.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// Opens a connection named `name` (shown in the broker's management UI), bounded by
/// the connect timeout, with heartbeats on.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, lapin::Error> {
    let mut uri: AMQPUri = settings.url.parse().map_err(std::io::Error::other)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECS);
    }
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_owned()));

    let connecting = Connection::connect_uri(uri, properties);
    match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to the broker timed out",
        )
        .into()),
    }
}

/// Why a confirmed publish did not succeed; every variant means "not known to be stored".
#[derive(Debug)]
pub enum ConfirmError {
    /// The broker did not confirm within the timeout.
    TimedOut,
    /// The broker refused the message (negative acknowledgement).
    Refused,
    /// The broker acknowledged the message but could not route it to any queue.
    Unroutable,
    /// The channel or connection failed while publishing or waiting.
    Failed(lapin::Error),
}

impl std::fmt::Display for ConfirmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfirmError::TimedOut => f.write_str("broker did not confirm in time"),
            ConfirmError::Refused => f.write_str("broker refused the message"),
            ConfirmError::Unroutable => f.write_str("broker returned the message as unroutable"),
            ConfirmError::Failed(e) => write!(f, "publishing failed: {e}"),
        }
    }
}

impl std::error::Error for ConfirmError {}

impl From<ConfirmError> for lapin::Error {
    fn from(e: ConfirmError) -> lapin::Error {
        match e {
            ConfirmError::Failed(e) => e,
            other => std::io::Error::other(other.to_string()).into(),
        }
    }
}

/// Publishes `payload` as a persistent, mandatory message on a channel in confirm mode
/// and waits up to `timeout` for the broker's confirm. A message the broker returns as
/// unroutable is a failure even though the broker acknowledges it.
pub async fn publish_confirmed(
    channel: &Channel,
    (exchange, routing_key): (&str, &str),
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), ConfirmError> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let properties = properties.with_delivery_mode(2);

    let confirmed = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                payload,
                properties,
            )
            .await?
            .await
    };
    match tokio::time::timeout(timeout, confirmed).await {
        Err(_) => Err(ConfirmError::TimedOut),
        Ok(Err(e)) => Err(ConfirmError::Failed(e)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(ConfirmError::Unroutable),
        Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => Err(ConfirmError::Refused),
    }
}

/// Closes a connection that is being given up, waiting at most two seconds for a broker
/// that may be gone; a connection merely dropped could stay open on the broker's side.
pub async fn close_quietly(connection: &Connection) {
    if connection.status().connected() {
        let closing = connection.close(200, "closing".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// Declares exchanges, queues and bindings; safe to call any number of times.
pub async fn declare_topology(channel: &Channel, s: &AmqpSettings) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            ShortString::from(s.exchange.as_str()),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            ShortString::from(s.dead_letter_exchange.as_str()),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;

    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), long_string("quorum"));
    channel
        .queue_declare(
            s.dead_letter_queue.as_str().into(),
            durable_queue,
            quorum.clone(),
        )
        .await?;

    channel
        .queue_declare(
            s.quarantine_queue.as_str().into(),
            durable_queue,
            quorum.clone(),
        )
        .await?;

    let mut reports = quorum;
    reports.insert(
        "x-dead-letter-exchange".into(),
        long_string(&s.dead_letter_exchange),
    );
    reports.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(s.delivery_limit)),
    );
    channel
        .queue_declare(s.queue.as_str().into(), durable_queue, reports)
        .await?;

    channel
        .queue_bind(
            s.queue.as_str().into(),
            s.exchange.as_str().into(),
            s.queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            s.dead_letter_queue.as_str().into(),
            s.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.to_owned()))
}

//! Ingest's settings, read once from the environment at start-up.

use shared::{amqp::AmqpSettings, env, env::SettingError, GatewayZone, Rules};
use std::{net::SocketAddr, time::Duration};

/// Everything ingest needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address the HTTP server listens on (`INGEST_LISTEN`).
    pub listen: SocketAddr,
    /// Broker connection and topology names.
    pub amqp: AmqpSettings,
    /// Zone for gateway times without an offset (`GATEWAY_TZ`).
    pub gateway_zone: GatewayZone,
    /// Longest wait for the broker's confirm before answering 503 (`PUBLISH_TIMEOUT_MS`).
    pub publish_timeout: Duration,
    /// Channels in confirm mode shared by all requests (`PUBLISH_CHANNELS`).
    pub publish_channels: usize,
    /// Largest request body accepted (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Key aliases and status words taught at run time (`FIELD_ALIASES`, `STATUS_ALIASES`).
    pub rules: Rules,
    /// Most refused requests kept in quarantine per minute and replica
    /// (`QUARANTINE_PER_MINUTE`); 0 keeps none.
    pub quarantine_per_minute: u32,
    /// HTTP worker threads (`INGEST_WORKERS`); defaults to the number of cores.
    pub workers: usize,
}

impl Settings {
    /// Reads the settings, naming the variable of the first one that is unusable.
    pub fn from_env() -> Result<Settings, SettingError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

        Ok(Settings {
            listen: env::parsed("INGEST_LISTEN", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            amqp: AmqpSettings::from_env()?,
            gateway_zone: env::parsed("GATEWAY_TZ", GatewayZone::default())?,
            publish_timeout: env::millis("PUBLISH_TIMEOUT_MS", 1500, 50)?,
            publish_channels: env::bounded("PUBLISH_CHANNELS", 4, 1..=64)? as usize,
            max_body_bytes: env::bounded("MAX_BODY_BYTES", 64 * 1024, 1024..=16 * 1024 * 1024)?
                as usize,
            rules: Rules::from_env()?,
            quarantine_per_minute: env::bounded("QUARANTINE_PER_MINUTE", 600, 0..=1_000_000)?,
            workers: env::bounded("INGEST_WORKERS", cores as u32, 1..=256)? as usize,
        })
    }
}

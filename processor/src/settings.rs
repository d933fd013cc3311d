//! The processor's settings, read once from the environment at start-up.

use crate::api::auth::ApiTokens;
use shared::{amqp::AmqpSettings, env, env::SettingError, GatewayZone, Rules};
use std::{net::SocketAddr, time::Duration};

/// Default database URL for a local PostgreSQL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1/dlr";

/// Batches written at once when `BATCH_WRITERS` is not set.
pub const DEFAULT_BATCH_WRITERS: usize = 2;

/// Everything the processor needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address of the health endpoint (`PROCESSOR_LISTEN`).
    pub listen: SocketAddr,
    /// Broker connection and topology names.
    pub amqp: AmqpSettings,
    /// PostgreSQL URL (`DATABASE_URL`); never logged, it may hold a password.
    pub database_url: String,
    /// Connections in the pool (`DATABASE_POOL_SIZE`).
    pub pool_size: u32,
    /// Most reports written in one transaction (`BATCH_SIZE`).
    pub batch_size: usize,
    /// Longest wait, while no batch is being written, for a partial batch to gather
    /// companions before it is written (`BATCH_MAX_WAIT_MS`, default 0: at once).
    pub batch_max_wait: Duration,
    /// Most batches written at once, each on its own connection (`BATCH_WRITERS`,
    /// default 2). A second writer starts only when a backlog builds up during a write.
    pub batch_writers: usize,
    /// Zone for gateway times without an offset, used when replaying (`GATEWAY_TZ`).
    pub gateway_zone: GatewayZone,
    /// Aliases taught at run time, used when replaying (`FIELD_ALIASES`, `STATUS_ALIASES`).
    pub rules: Rules,
    /// A fault-test aid (`FAULT_ACK_DELAY_MS`, default 0): the pause between a batch's
    /// commit and its acknowledgement, widening the window in which a crash test kills
    /// the processor. It slows the processor and has no use in production.
    pub fault_ack_delay: Duration,
    /// Bearer tokens that may read the query API and the dashboard (`API_TOKENS`,
    /// comma-separated); empty means every data request is refused. Never logged.
    pub api_tokens: ApiTokens,
}

impl Settings {
    /// Reads the settings, naming the variable of the first one that is unusable.
    pub fn from_env() -> Result<Settings, SettingError> {
        let database_url = env::text("DATABASE_URL", DEFAULT_DATABASE_URL);
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(SettingError {
                variable: "DATABASE_URL",
                problem: "must start with postgres:// or postgresql://".into(),
            });
        }

        Ok(Settings {
            listen: env::parsed("PROCESSOR_LISTEN", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            amqp: AmqpSettings::from_env()?,
            database_url,
            pool_size: env::bounded("DATABASE_POOL_SIZE", 4, 1..=64)?,
            batch_size: env::bounded("BATCH_SIZE", 500, 1..=10_000)? as usize,
            batch_max_wait: env::millis("BATCH_MAX_WAIT_MS", 0, 0)?,
            batch_writers: env::bounded("BATCH_WRITERS", DEFAULT_BATCH_WRITERS as u32, 1..=16)?
                as usize,
            gateway_zone: env::parsed("GATEWAY_TZ", GatewayZone::default())?,
            rules: Rules::from_env()?,
            fault_ack_delay: env::millis("FAULT_ACK_DELAY_MS", 0, 0)?,
            api_tokens: ApiTokens::parse(&env::text("API_TOKENS", "")).map_err(|problem| {
                SettingError {
                    variable: "API_TOKENS",
                    problem,
                }
            })?,
        })
    }
}

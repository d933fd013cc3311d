//! Ingest's settings, read once from the environment at start-up.
//!
//! Secrets (`DLR_TOKENS`, the token file's lines, `DLR_SIGNING_SECRETS`) are never part
//! of an error or of the settings' `Debug` form: errors name the variable and the
//! position of the bad entry only.

use crate::{
    auth::{self, AuthSettings, Secret, TokenSource},
    limits::{LimitSettings, RateSettings},
    signature::{SigningKey, SigningSettings},
    source::{self, SourcePolicy},
};
use shared::{amqp::AmqpSettings, env, env::SettingError, GatewayZone, Rules};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
    /// Key aliases and status words taught at run time (`FIELD_ALIASES`, `STATUS_ALIASES`).
    pub rules: Rules,
    /// Most refused requests kept in quarantine per minute and replica
    /// (`QUARANTINE_PER_MINUTE`); 0 keeps none.
    pub quarantine_per_minute: u32,
    /// HTTP worker threads (`INGEST_WORKERS`); defaults to the number of cores.
    pub workers: usize,
    /// Who may send reports.
    pub auth: AuthSettings,
    /// Body size, timeouts and rate limit.
    pub limits: LimitSettings,
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
            publish_channels: env::bounded("PUBLISH_CHANNELS", 1, 1..=64)? as usize,
            rules: Rules::from_env()?,
            quarantine_per_minute: env::bounded("QUARANTINE_PER_MINUTE", 600, 0..=1_000_000)?,
            workers: env::bounded("INGEST_WORKERS", cores as u32, 1..=256)? as usize,
            auth: auth_from_env()?,
            limits: limits_from_env()?,
        })
    }
}

/// What `DLR_AUTH` may say.
const AUTH_NONE: &str = "none";
const AUTH_REQUIRED: &str = "required";

/// Reads the authentication settings. Without any token or signing secret, start-up
/// fails unless `DLR_AUTH=none` asks for an open endpoint; with secrets, `DLR_AUTH=none`
/// is a contradiction and also fails.
fn auth_from_env() -> Result<AuthSettings, SettingError> {
    let mode = env::text("DLR_AUTH", AUTH_REQUIRED).to_ascii_lowercase();
    if mode != AUTH_NONE && mode != AUTH_REQUIRED {
        return Err(SettingError {
            variable: "DLR_AUTH",
            problem: format!("`{mode}` is not valid; expected `{AUTH_REQUIRED}` or `{AUTH_NONE}`"),
        });
    }

    let settings = AuthSettings {
        tokens: tokens_from_env()?,
        signing: signing_from_env()?,
        sources: SourcePolicy {
            allow: networks("DLR_ALLOW_CIDRS")?,
            trusted_proxies: networks("DLR_TRUSTED_PROXIES")?,
        },
    };

    let has_secret = settings.tokens.is_some() || settings.signing.is_some();
    match (mode.as_str(), has_secret) {
        (AUTH_NONE, true) => Err(SettingError {
            variable: "DLR_AUTH",
            problem: "is `none`, but DLR_TOKENS, DLR_TOKENS_FILE or DLR_SIGNING_SECRETS is \
                      set; remove one or the other"
                .into(),
        }),
        (AUTH_REQUIRED, false) => Err(SettingError {
            variable: "DLR_TOKENS",
            problem: "no secret is configured: set DLR_TOKENS, DLR_TOKENS_FILE or \
                      DLR_SIGNING_SECRETS, or set DLR_AUTH=none to accept reports from \
                      anyone who can reach the endpoint"
                .into(),
        }),
        _ => Ok(settings),
    }
}

fn tokens_from_env() -> Result<Option<TokenSource>, SettingError> {
    let inline = env::text("DLR_TOKENS", "");
    let file = env::text("DLR_TOKENS_FILE", "");
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(SettingError {
            variable: "DLR_TOKENS_FILE",
            problem: "is set together with DLR_TOKENS; use one of them".into(),
        }),
        (false, true) => {
            let entries: Vec<&str> = inline.split(',').filter(|t| !t.trim().is_empty()).collect();
            let mut tokens = Vec::with_capacity(entries.len());
            for (index, entry) in entries.iter().enumerate() {
                let token = Secret::parse(entry).map_err(|why| SettingError {
                    variable: "DLR_TOKENS",
                    problem: format!("token {} of {} {why}", index + 1, entries.len()),
                })?;
                tokens.push(token);
            }
            Ok(Some(TokenSource::Inline(tokens)))
        }
        (true, false) => {
            let path = PathBuf::from(file);
            let initial = auth::read_token_file(&path).map_err(|problem| SettingError {
                variable: "DLR_TOKENS_FILE",
                problem,
            })?;
            let reload_secs = env::bounded("DLR_TOKENS_RELOAD_SECS", 30, 1..=86_400)?;
            Ok(Some(TokenSource::File {
                path,
                initial,
                reload_every: Duration::from_secs(u64::from(reload_secs)),
            }))
        }
    }
}

fn signing_from_env() -> Result<Option<SigningSettings>, SettingError> {
    let text = env::text("DLR_SIGNING_SECRETS", "");
    let entries: Vec<&str> = text.split(',').filter(|s| !s.trim().is_empty()).collect();
    if entries.is_empty() {
        return Ok(None);
    }

    let mut keys = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let key = SigningKey::parse(entry).map_err(|why| SettingError {
            variable: "DLR_SIGNING_SECRETS",
            problem: format!("secret {} of {}: {why}", index + 1, entries.len()),
        })?;
        keys.push(key);
    }
    let tolerance = env::bounded("DLR_SIGNATURE_TOLERANCE_SECS", 300, 1..=3600)?;

    Ok(Some(SigningSettings {
        keys,
        tolerance: Duration::from_secs(u64::from(tolerance)),
        replay_memory: env::bounded("DLR_REPLAY_MEMORY", 100_000, 1..=10_000_000)? as usize,
    }))
}

fn networks(variable: &'static str) -> Result<Vec<ipnet::IpNet>, SettingError> {
    source::parse_networks(&env::text(variable, ""))
        .map_err(|problem| SettingError { variable, problem })
}

fn limits_from_env() -> Result<LimitSettings, SettingError> {
    let per_second = env::bounded("DLR_RATE_LIMIT_PER_SEC", 0, 0..=1_000_000)?;
    let rate = match per_second {
        0 => None,
        n => Some(RateSettings {
            per_second: n,
            burst: env::bounded("DLR_RATE_LIMIT_BURST", n.saturating_mul(2), 1..=u32::MAX)?,
        }),
    };

    Ok(LimitSettings {
        max_body_bytes: env::bounded("MAX_BODY_BYTES", 64 * 1024, 1024..=16 * 1024 * 1024)?
            as usize,
        body_timeout: env::millis("INGEST_BODY_TIMEOUT_MS", 10_000, 100)?,
        header_timeout: env::millis("INGEST_HEADER_TIMEOUT_MS", 5_000, 100)?,
        keep_alive: env::millis("INGEST_KEEP_ALIVE_MS", 5_000, 0)?,
        disconnect_timeout: env::millis("INGEST_DISCONNECT_TIMEOUT_MS", 1_000, 0)?,
        rate,
    })
}

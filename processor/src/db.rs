//! The database: creating it when missing, migrating it under a lock, and the pool.

use diesel::{
    connection::SimpleConnection,
    pg::PgConnection,
    r2d2::{ConnectionManager, Pool, PooledConnection},
    sql_query,
    sql_types::{BigInt, Text},
    Connection as _, QueryableByName, RunQueryDsl,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log::info;
use std::time::Duration;

/// The schema migrations in `migrations/`, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// A pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A connection borrowed from the pool.
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

/// Key of the advisory lock that serialises migrations between processors.
const MIGRATION_LOCK_KEY: i64 = 0x0064_6c72_5f6d_6967; // "dlr_mig" in ASCII

/// Anything that stops the database from being prepared.
pub type DbError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the pool. Connections are tested before each use, so one left broken by a
/// database restart is replaced instead of failing a batch.
pub fn pool(database_url: &str, size: u32) -> Result<PgPool, DbError> {
    let manager = ConnectionManager::<PgConnection>::new(database_url);
    let pool = Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .test_on_check_out(true)
        .connection_timeout(Duration::from_secs(2))
        .error_handler(Box::new(WarnOnFailure))
        .build_unchecked(manager);
    Ok(pool)
}

/// Logs a failed pool connection as a warning: the callers retry, so it is not an error
/// until they give up, and a database that does not exist yet is normal at first start.
#[derive(Debug)]
struct WarnOnFailure;

impl r2d2::HandleError<diesel::r2d2::Error> for WarnOnFailure {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::warn!("database connection failed error={error}");
    }
}

/// Creates the database named in `database_url` when it does not exist and the role may
/// create databases. Several processors may race here: losing the race is success.
pub fn ensure_database(database_url: &str) -> Result<(), DbError> {
    if PgConnection::establish(database_url).is_ok() {
        return Ok(());
    }
    let (server_url, name) = split_database_name(database_url)
        .ok_or("DATABASE_URL does not name a database after the host")?;

    let mut admin = PgConnection::establish(&server_url)?;
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let exists = sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(&name)
        .get_result::<Exists>(&mut admin)?;
    if exists.n > 0 {
        return Ok(());
    }

    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match admin.batch_execute(&create) {
        Ok(()) => {
            info!("created database name={name}");
            Ok(())
        }
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) if e.to_string().contains("duplicate key") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Splits `postgres://host/name?opts` into the URL of the `postgres` maintenance database
/// on the same server and `name`.
fn split_database_name(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://")? + 3;
    let slash = after_scheme + base[after_scheme..].find('/')?;
    let name = &base[slash + 1..];
    if name.is_empty() {
        return None;
    }
    let mut server = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        server.push('?');
        server.push_str(q);
    }
    Some((server, name.to_owned()))
}

/// Runs pending migrations while holding an advisory lock, so processors starting at
/// the same moment apply each migration once.
pub fn migrate(database_url: &str) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(database_url)?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;

    let outcome = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len());

    conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
    let applied = outcome?;
    if applied > 0 {
        info!("applied migrations count={applied}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_split_from_the_server_url() {
        assert_eq!(
            split_database_name("postgres://u:p@h:5432/dlr?sslmode=disable"),
            Some((
                "postgres://u:p@h:5432/postgres?sslmode=disable".to_string(),
                "dlr".to_string()
            ))
        );
        assert_eq!(split_database_name("postgres://h"), None);
    }
}

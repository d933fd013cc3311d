//! The broker names and the database one benchmark run owns, removed when it ends.
//!
//! Every name starts with `dlrbench_<pid>_`, so nothing the run creates can touch the
//! queues or database of the running system or of a test, and a leftover is easy to
//! recognise. The queues, exchanges and database are removed when the [`Sandbox`] is
//! dropped: at the end of the run, on an error, on a panic, and on Ctrl-C (the run is
//! dropped when the signal arrives).

use crate::{
    error::{BenchError, Result},
    load::closed_loop,
    publish::{Payloads, Publishers},
};
use diesel::{
    connection::SimpleConnection, pg::PgConnection, sql_query, sql_types::BigInt, Connection as _,
    QueryableByName, RunQueryDsl,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions};
use log::{info, warn};
use shared::amqp::{self, AmqpSettings};
use std::sync::atomic::{AtomicU32, Ordering};

/// Broker the benchmark uses, unless `BENCH_AMQP_URL` names another.
pub fn amqp_url() -> String {
    std::env::var("BENCH_AMQP_URL").unwrap_or_else(|_| amqp::DEFAULT_AMQP_URL.to_owned())
}

/// PostgreSQL server the benchmark uses, without a database name, unless
/// `BENCH_DATABASE_SERVER` names another.
pub fn database_server() -> String {
    std::env::var("BENCH_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One run's queues, exchanges and database.
pub struct Sandbox {
    /// The prefix of every name this run owns; also the database's name.
    pub name: String,
    /// Broker settings with this run's names.
    pub amqp: AmqpSettings,
    /// URL of this run's database.
    pub database_url: String,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Sandbox {
    /// Declares the topology and creates and migrates the database.
    pub async fn create() -> Result<Sandbox> {
        let name = format!(
            "dlrbench_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let sandbox = Sandbox {
            amqp: AmqpSettings::isolated(&amqp_url(), &name),
            database_url: format!("{}/{name}", database_server()),
            name,
        };

        let connection = amqp::connect(&sandbox.amqp, "dlr-bench-setup").await?;
        let channel = connection.create_channel().await?;
        amqp::declare_topology(&channel, &sandbox.amqp).await?;
        let _ = connection.close(200, "done".into()).await;

        let url = sandbox.database_url.clone();
        tokio::task::spawn_blocking(move || {
            processor::db::ensure_database(&url)?;
            processor::db::migrate(&url)
        })
        .await??;
        info!("sandbox ready name={}", sandbox.name);

        Ok(sandbox)
    }

    /// The environment variables that point a service at this run's names.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let a = &self.amqp;
        vec![
            ("AMQP_URL".into(), a.url.clone()),
            ("AMQP_EXCHANGE".into(), a.exchange.clone()),
            ("AMQP_QUEUE".into(), a.queue.clone()),
            (
                "AMQP_DEAD_LETTER_EXCHANGE".into(),
                a.dead_letter_exchange.clone(),
            ),
            ("AMQP_DEAD_LETTER_QUEUE".into(), a.dead_letter_queue.clone()),
            ("AMQP_QUARANTINE_QUEUE".into(), a.quarantine_queue.clone()),
            ("DATABASE_URL".into(), self.database_url.clone()),
        ]
    }

    /// A new connection to this run's database.
    pub fn db(&self) -> Result<PgConnection> {
        Ok(PgConnection::establish(&self.database_url)?)
    }

    /// Empties both tables and restarts the transition ids at 1, so each run starts from
    /// the same empty database.
    pub fn truncate(&self) -> Result<()> {
        self.db()?
            .batch_execute("TRUNCATE status_transitions, messages RESTART IDENTITY")?;
        Ok(())
    }

    /// The highest committed transition id: with ids restarted and distinct reports, an
    /// upper bound of the rows committed so far, exact once no batch is being written
    /// (with two writers, a lower id may still commit after a higher one). It is an index
    /// lookup, so polling it does not load the database the way `count(*)` would.
    pub fn rows_written(conn: &mut PgConnection) -> Result<i64> {
        let row: Number = sql_query("SELECT coalesce(max(id), 0) AS n FROM status_transitions")
            .get_result(conn)?;
        Ok(row.n)
    }

    /// Rows committed in `status_transitions`, counted exactly.
    pub fn rows_counted(conn: &mut PgConnection) -> Result<i64> {
        let row: Number =
            sql_query("SELECT count(*) AS n FROM status_transitions").get_result(conn)?;
        Ok(row.n)
    }

    /// Rows in `status_transitions`, counted on a new connection.
    pub fn count_rows(&self) -> Result<i64> {
        Sandbox::rows_counted(&mut self.db()?)
    }

    /// Removes every message waiting in the report queue.
    pub async fn purge(&self) -> Result<()> {
        let connection = amqp::connect(&self.amqp, "dlr-bench-purge").await?;
        let channel = connection.create_channel().await?;
        channel
            .queue_purge(
                self.amqp.queue.as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// Messages ready in the report queue.
    pub async fn queue_depth(&self) -> Result<u32> {
        let connection = amqp::connect(&self.amqp, "dlr-bench-depth").await?;
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.amqp.queue.as_str().into(), options, Default::default())
            .await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(queue.message_count())
    }

    /// Publishes `count` distinct reports of `payloads` into the report queue, many in
    /// flight, and waits until the broker has confirmed every one.
    pub async fn prefill(&self, payloads: &Payloads, count: u64) -> Result<()> {
        let publishers = Publishers::open(&self.amqp, 4).await?;
        let outcome = closed_loop(publishers.workers(256, payloads), count).await;
        publishers.close().await;
        if outcome.failed > 0 {
            return Err(BenchError(format!(
                "pre-filling the queue: {} of {count} publishes were not confirmed",
                outcome.failed
            )));
        }
        info!(
            "queue pre-filled count={count} rate={:.0}/s",
            outcome.rate()
        );

        Ok(())
    }

    fn remove(&self) {
        let amqp = self.amqp.clone();
        let broker = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return false;
            };
            runtime.block_on(async move {
                let Ok(connection) = amqp::connect(&amqp, "dlr-bench-cleanup").await else {
                    return false;
                };
                let mut removed = true;
                for queue in [&amqp.queue, &amqp.dead_letter_queue, &amqp.quarantine_queue] {
                    let Ok(channel) = connection.create_channel().await else {
                        return false;
                    };
                    removed &= channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await
                        .is_ok();
                }
                for exchange in [&amqp.exchange, &amqp.dead_letter_exchange] {
                    let Ok(channel) = connection.create_channel().await else {
                        return false;
                    };
                    removed &= channel
                        .exchange_delete(exchange.as_str().into(), Default::default())
                        .await
                        .is_ok();
                }
                let _ = connection.close(200, "done".into()).await;
                removed
            })
        });
        if !broker.join().unwrap_or(false) {
            warn!(
                "could not remove every queue and exchange named {}.*; delete them by hand",
                self.name
            );
        }

        let admin = format!("{}/postgres", database_server());
        let dropped = PgConnection::establish(&admin).map(|mut conn| {
            conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
        });
        match dropped {
            Ok(Ok(())) => info!("sandbox removed name={}", self.name),
            _ => warn!("could not drop database {}; drop it by hand", self.name),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.remove();
    }
}

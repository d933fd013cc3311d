//! Test harness for the integration tests in `tests/tests/`.
//!
//! Each test builds a [`TestEnv`], which owns a database and a set of broker names no
//! other test uses, and removes both when dropped. Services run as the real `ingest` and
//! `processor` binaries, started as child processes with the test's settings, so a test
//! can also kill one the way production would. The binaries must be built first
//! (`cargo build --bins`, which the README's test command does).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test harness fails loudly"
)]

use diesel::{
    connection::SimpleConnection, pg::PgConnection, sql_query, sql_types::BigInt, Connection as _,
    QueryableByName, RunQueryDsl,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use shared::amqp::{self, AmqpSettings};
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod faults;
pub mod load;
pub mod model;

/// Broker every test uses, unless `TEST_AMQP_URL` names another.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| shared::amqp::DEFAULT_AMQP_URL.to_string())
}

/// PostgreSQL server every test uses (without a database name), unless
/// `TEST_DATABASE_SERVER` names another.
pub fn database_server() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test, run or process uses.
pub fn unique_name(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "dlrt_{label}_{}_{}_{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on the loopback interface.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One test's private database and broker names.
pub struct TestEnv {
    /// The prefix of every name this test owns.
    pub name: String,
    /// Broker settings with this test's exchange and queue names.
    pub amqp: AmqpSettings,
    /// URL of this test's database (created by the first processor, or by
    /// [`TestEnv::create_database`]).
    pub database_url: String,
}

impl TestEnv {
    /// A fresh environment; nothing is created until a service or helper needs it.
    pub fn new(label: &str) -> TestEnv {
        TestEnv::on(label, &amqp_url(), &database_server())
    }

    /// A fresh environment on the given broker and PostgreSQL server, such as private
    /// ones started by a fault test.
    pub fn on(label: &str, amqp_url: &str, database_server: &str) -> TestEnv {
        let _ = env_logger::builder().is_test(true).try_init();
        let name = unique_name(label);
        TestEnv {
            amqp: AmqpSettings::isolated(amqp_url, &name),
            database_url: format!("{database_server}/{name}"),
            name,
        }
    }

    /// The environment variables that point a service at this test's resources.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("AMQP_URL".into(), self.amqp.url.clone()),
            ("AMQP_EXCHANGE".into(), self.amqp.exchange.clone()),
            ("AMQP_QUEUE".into(), self.amqp.queue.clone()),
            (
                "AMQP_DEAD_LETTER_EXCHANGE".into(),
                self.amqp.dead_letter_exchange.clone(),
            ),
            (
                "AMQP_DEAD_LETTER_QUEUE".into(),
                self.amqp.dead_letter_queue.clone(),
            ),
            (
                "AMQP_QUARANTINE_QUEUE".into(),
                self.amqp.quarantine_queue.clone(),
            ),
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("RUST_LOG".into(), shared::DEFAULT_LOG_FILTER.into()),
        ]
    }

    /// Starts an ingest process and waits until it answers `/healthz`.
    ///
    /// Unless `extra` configures authentication itself (a token, a token file, a signing
    /// secret or `DLR_AUTH`), ingest is started with `DLR_AUTH=none`, the explicit
    /// opt-out it requires to run without a secret.
    pub fn spawn_ingest(&self, extra: &[(&str, &str)]) -> Service {
        let addr = free_addr();
        let mut env = self.service_env();
        env.push(("INGEST_LISTEN".into(), addr.to_string()));
        env.push(("INGEST_WORKERS".into(), "2".into()));
        let auth_variables = [
            "DLR_AUTH",
            "DLR_TOKENS",
            "DLR_TOKENS_FILE",
            "DLR_SIGNING_SECRETS",
        ];
        if !extra.iter().any(|(k, _)| auth_variables.contains(k)) {
            env.push(("DLR_AUTH".into(), "none".into()));
        }
        Service::spawn("ingest", &format!("{}-ingest", self.name), addr, env, extra)
    }

    /// Starts ingest and waits until it is ready to publish.
    pub fn spawn_ready_ingest(&self, extra: &[(&str, &str)]) -> Service {
        let ingest = self.spawn_ingest(extra);
        ingest.wait_ready(Duration::from_secs(15));
        ingest
    }

    /// Starts a processor process and waits until it answers `/healthz`.
    pub fn spawn_processor(&self, extra: &[(&str, &str)]) -> Service {
        let addr = free_addr();
        let mut env = self.service_env();
        env.push(("PROCESSOR_LISTEN".into(), addr.to_string()));
        Service::spawn(
            "processor",
            &format!("{}-processor", self.name),
            addr,
            env,
            extra,
        )
    }

    /// Starts a processor and waits until it consumes and its database is migrated.
    pub fn spawn_ready_processor(&self, extra: &[(&str, &str)]) -> Service {
        let processor = self.spawn_processor(extra);
        processor.wait_ready(Duration::from_secs(30));
        processor
    }

    /// Creates and migrates this test's database without starting a processor.
    pub fn create_database(&self) {
        processor::db::ensure_database(&self.database_url).unwrap();
        processor::db::migrate(&self.database_url).unwrap();
    }

    /// A connection to this test's database.
    pub fn db(&self) -> PgConnection {
        PgConnection::establish(&self.database_url).unwrap()
    }

    /// Declares this test's topology, as the services would.
    pub async fn declare_topology(&self) {
        let conn = amqp::connect(&self.amqp, "dlr-tests").await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        amqp::declare_topology(&channel, &self.amqp).await.unwrap();
        let _ = conn.close(200, "done".into()).await;
    }

    /// Messages waiting in a queue of this test, or `None` if it does not exist.
    pub async fn queue_depth(&self, queue: &str) -> Option<u32> {
        let conn = amqp::connect(&self.amqp, "dlr-tests").await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        let options = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, Default::default())
            .await;
        let _ = conn.close(200, "done".into()).await;
        declared.ok().map(|q| q.message_count())
    }

    /// Counts rows matching a SQL query of the form `SELECT count(*) AS n FROM ...`.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        sql_query(sql)
            .get_result::<Count>(&mut self.db())
            .unwrap()
            .n
    }

    /// Polls `check` until it returns true or `limit` passes; returns whether it did.
    pub fn wait_until(&self, limit: Duration, mut check: impl FnMut(&TestEnv) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let amqp = self.amqp.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(conn) = amqp::connect(&amqp, "dlr-tests-cleanup").await else {
                    return;
                };
                for queue in [&amqp.queue, &amqp.dead_letter_queue, &amqp.quarantine_queue] {
                    if let Ok(channel) = conn.create_channel().await {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                for exchange in [&amqp.exchange, &amqp.dead_letter_exchange] {
                    if let Ok(channel) = conn.create_channel().await {
                        let _ = channel
                            .exchange_delete(exchange.as_str().into(), Default::default())
                            .await;
                    }
                }
                let _ = conn.close(200, "done".into()).await;
            });
        });
        let _ = cleanup.join();

        let server = self.database_url.rsplit_once('/').map_or("", |(s, _)| s);
        if let Ok(mut conn) = PgConnection::establish(&format!("{server}/postgres")) {
            let _ = conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Where the workspace's binaries are: beside the directory holding this test binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --bins`",
        path.display()
    );
    path
}

/// A service running as a child process, killed when dropped.
pub struct Service {
    child: Option<Child>,
    /// The address its HTTP server listens on.
    pub addr: SocketAddr,
    /// Where its log goes.
    pub log_path: PathBuf,
}

impl Service {
    /// Starts `binary` with `env` and `extra` on top of the inherited environment, and
    /// waits up to 15 s for `/healthz`.
    pub fn spawn(
        binary_name: &str,
        label: &str,
        addr: SocketAddr,
        env: Vec<(String, String)>,
        extra: &[(&str, &str)],
    ) -> Service {
        let log_dir = std::env::temp_dir().join("dlr-test-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log_path = log_dir.join(format!("{label}-{}.log", addr.port()));
        let log = std::fs::File::create(&log_path).unwrap();

        let mut command = Command::new(binary(binary_name));
        command
            .envs(env)
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command.spawn().unwrap();
        let service = Service {
            child: Some(child),
            addr,
            log_path,
        };
        service.wait_for("/healthz", Duration::from_secs(15));
        service
    }

    /// `http://addr` of the service.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, limit: Duration) {
        self.wait_for("/readyz", limit);
    }

    fn wait_for(&self, path: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = self.url(path);
        while Instant::now() < deadline {
            let answered = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "1",
                    &url,
                ])
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if answered {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{url} did not answer 200 within {limit:?}; log:\n{}",
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `limit` for it to exit.
    /// Returns its exit success, or `None` if it had to be killed.
    pub fn terminate(&mut self, limit: Duration) -> Option<bool> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The log written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A row of `messages`, as tests compare it.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Message id.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub msg_id: String,
    /// Recipient digits.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub recipient: String,
    /// Sender id.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub sender: String,
    /// Current canonical status.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    /// When the current status took effect.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub status_at: chrono::DateTime<chrono::Utc>,
    /// `gateway` or `received`.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status_at_source: String,
    /// Error code of the current report.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub error_code: Option<String>,
}

/// A row of `status_transitions`, as tests compare it.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    /// Message id.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub msg_id: String,
    /// Canonical status.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    /// Status word as received.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status_raw: String,
    /// When the status took effect.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub status_at: chrono::DateTime<chrono::Utc>,
    /// Whether it became the current status when written.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub applied: bool,
    /// The request's fields as received.
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub raw_fields: serde_json::Value,
}

impl TestEnv {
    /// Every row of `messages`, by message id.
    pub fn messages(&self) -> Vec<MessageRow> {
        sql_query(
            "SELECT msg_id, recipient, sender, status, status_at, status_at_source, error_code \
             FROM messages ORDER BY msg_id",
        )
        .load(&mut self.db())
        .unwrap()
    }

    /// One row of `messages`, if present.
    pub fn message(&self, msg_id: &str) -> Option<MessageRow> {
        self.messages().into_iter().find(|m| m.msg_id == msg_id)
    }

    /// Every row of `status_transitions`, by message, status time and status.
    pub fn transitions(&self) -> Vec<TransitionRow> {
        sql_query(
            "SELECT msg_id, status, status_raw, status_at, applied, raw_fields \
             FROM status_transitions ORDER BY msg_id, status_at, status",
        )
        .load(&mut self.db())
        .unwrap()
    }
}

impl TestEnv {
    /// [`TestEnv::queue_depth`] of the report queue, for use inside synchronous polls.
    pub fn queue_depth_blocking(&self) -> Option<u32> {
        self.queue_depth_of(&self.amqp.queue)
    }

    /// [`TestEnv::queue_depth`] of any queue, for use inside synchronous polls.
    pub fn queue_depth_of(&self, queue: &str) -> Option<u32> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(self.queue_depth(queue))
                })
                .join()
                .unwrap()
        })
    }
}

/// Builds a report as ingest would have validated it.
pub fn report(
    msg_id: &str,
    status: shared::Status,
    at: chrono::DateTime<chrono::Utc>,
) -> shared::Report {
    use shared::report::{RawFields, StatusAt, StatusAtSource};
    shared::Report {
        msg_id: shared::MsgId::parse(msg_id).unwrap(),
        recipient: shared::PhoneNumber::parse("35799000001").unwrap(),
        sender: shared::SenderId::parse("TEST").unwrap(),
        status,
        status_raw: status.as_str().to_uppercase(),
        status_at: StatusAt {
            at,
            source: StatusAtSource::Gateway,
            raw: Some(at.to_rfc3339()),
        },
        received_at: at,
        error_code: None,
        raw: RawFields::default(),
    }
}

impl TestEnv {
    /// Publishes payloads to the report exchange, many confirms in flight at once, and
    /// waits until the broker has confirmed every one.
    pub async fn publish_raw(&self, payloads: &[Vec<u8>]) {
        use lapin::{options::BasicPublishOptions, BasicProperties};

        let conn = amqp::connect(&self.amqp, "dlr-tests-publisher")
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        amqp::declare_topology(&channel, &self.amqp).await.unwrap();
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();

        for chunk in payloads.chunks(500) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for payload in chunk {
                let confirm = channel
                    .basic_publish(
                        self.amqp.exchange.as_str().into(),
                        self.amqp.queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        payload,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
            }
            for confirm in confirms {
                let confirmation = confirm.await.unwrap();
                assert_eq!(confirmation, lapin::Confirmation::Ack(None));
            }
        }
        let _ = conn.close(200, "done".into()).await;
    }

    /// Publishes reports as ingest would.
    pub async fn publish_reports(&self, reports: &[shared::Report]) {
        let payloads: Vec<Vec<u8>> = reports.iter().map(|r| r.to_envelope_json()).collect();
        self.publish_raw(&payloads).await;
    }

    /// Takes every message from the dead-letter queue: its body and `x-dlr-reason`.
    pub async fn drain_dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};

        let conn = amqp::connect(&self.amqp, "dlr-tests-dlq").await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        let mut taken = Vec::new();
        while let Some(message) = channel
            .basic_get(
                self.amqp.dead_letter_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
        {
            let delivery = message.delivery;
            let reason = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-dlr-reason").cloned())
                .map(|v| match v {
                    lapin::types::AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            taken.push((delivery.data.clone(), reason));
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let _ = conn.close(200, "done".into()).await;
        taken
    }

    /// Runs `processor <args>` to completion with this test's settings.
    pub fn run_processor_command(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        Command::new(binary("processor"))
            .args(args)
            .envs(self.service_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

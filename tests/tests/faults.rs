//! Fault tests: the pipeline under load while a broker, a database or a process fails.
//!
//! Each scenario sends a few tens of thousands of reports at a steady rate while a fault
//! happens, then checks the same thing: every report that got a 200 is in PostgreSQL
//! exactly once, nothing is in `status_transitions` twice, and the services recovered
//! without a restart (the same processes accept and store fresh reports). Each prints its
//! counts. Servers that must fail are private instances; the machine-wide ones are only
//! ever cut off through a proxy of the test's own.
//!
//! The scenarios run one at a time: each loads the machine on its own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use harness::{
    database_server,
    faults::{Nginx, PrivatePostgres, PrivateRabbit, TcpProxy},
    load::{self, Outcome},
    unique_name, Service, TestEnv,
};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const REPORTS: usize = 20_000;
const CONCURRENCY: usize = 32;

/// Sends the load in the background and returns its handle.
fn start_load(
    base_url: String,
    prefix: &str,
    count: usize,
    spread: Duration,
) -> tokio::task::JoinHandle<load::Sent> {
    let prefix = prefix.to_owned();
    tokio::spawn(
        async move { load::send_reports(&base_url, &prefix, count, CONCURRENCY, spread).await },
    )
}

/// The common ending: everything accepted is stored once, and the same processes still
/// accept and store new reports.
async fn assert_nothing_lost(
    scenario: &str,
    env: &TestEnv,
    prefix: &str,
    sent: load::Sent,
    ingest_url: &str,
    running: &mut [&mut Service],
) -> Outcome {
    let outcome = load::settle(env, prefix, sent, Duration::from_secs(180));
    println!("{}", outcome.summary(scenario));

    assert!(!outcome.sent.accepted.is_empty(), "nothing was accepted");
    assert_eq!(outcome.lost, 0, "{}", outcome.summary(scenario));
    assert_eq!(outcome.duplicates, 0, "{}", outcome.summary(scenario));

    for service in running.iter_mut() {
        assert!(service.is_running(), "a service died:\n{}", service.log());
    }
    let after_prefix = format!("{prefix}-after");
    let after = load::send_reports(ingest_url, &after_prefix, 200, 8, Duration::from_secs(1)).await;
    assert_eq!(after.accepted.len(), 200, "not recovered: {after:?}");
    let after = load::settle(env, &after_prefix, after, Duration::from_secs(60));
    assert_eq!(after.lost, 0, "not recovered: {}", after.summary("after"));
    outcome
}

/// Waits until `check` is true, polling, for at most `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn ready(service: &Service) -> bool {
    std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "1"])
        .arg(service.url("/readyz"))
        .output()
        .map(|o| o.stdout == b"200")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_rabbitmq_stopped_for_ten_seconds_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let rabbit = PrivateRabbit::start(&unique_name("rmq"));
    let env = TestEnv::on("f_broker", &rabbit.url(), &database_server());
    let mut processor = env.spawn_ready_processor(&[]);
    let mut ingest = env.spawn_ready_ingest(&[]);

    let load = start_load(ingest.url(""), "broker", REPORTS, Duration::from_secs(25));
    tokio::time::sleep(Duration::from_secs(5)).await;
    rabbit.stop();
    assert!(eventually(Duration::from_secs(5), || !ready(&ingest)).await);
    tokio::time::sleep(Duration::from_secs(10)).await;
    rabbit.start_again();
    let sent = load.await.unwrap();

    assert!(sent.unavailable > 0, "the outage was not seen: {sent:?}");
    assert!(
        eventually(Duration::from_secs(30), || ready(&ingest)
            && ready(&processor))
        .await
    );
    let url = ingest.url("");
    assert_nothing_lost(
        "rabbitmq stopped",
        &env,
        "broker",
        sent,
        &url,
        &mut [&mut processor, &mut ingest],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_postgresql_stopped_immediately_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let postgres = PrivatePostgres::start(&unique_name("pg"));
    let env = TestEnv::on("f_db", &harness::amqp_url(), &postgres.server_url());
    let mut processor = env.spawn_ready_processor(&[]);
    let mut ingest = env.spawn_ready_ingest(&[]);

    let load = start_load(ingest.url(""), "db", REPORTS, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(5)).await;
    postgres.stop_immediately();
    assert!(eventually(Duration::from_secs(10), || !ready(&processor)).await);
    tokio::time::sleep(Duration::from_secs(8)).await;
    postgres.start_again();
    let sent = load.await.unwrap();

    assert_eq!(
        sent.accepted.len(),
        REPORTS,
        "ingest does not need the database"
    );
    assert!(eventually(Duration::from_secs(30), || ready(&processor)).await);
    let url = ingest.url("");
    assert_nothing_lost(
        "postgresql stopped",
        &env,
        "db",
        sent,
        &url,
        &mut [&mut processor, &mut ingest],
    )
    .await;
    assert!(processor.log().contains("batch not written; retrying"));
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_a_processor_killed_mid_batch_and_restarted_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("f_kill");
    let mut first = env.spawn_ready_processor(&[]);
    let mut ingest = env.spawn_ready_ingest(&[]);

    let load = start_load(ingest.url(""), "kill", REPORTS, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = env.spawn_ready_processor(&[]);
    let sent = load.await.unwrap();

    assert_eq!(sent.accepted.len(), REPORTS);
    let url = ingest.url("");
    assert_nothing_lost(
        "processor killed",
        &env,
        "kill",
        sent,
        &url,
        &mut [&mut second, &mut ingest],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_one_of_two_ingests_killed_behind_nginx_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("f_lb");
    let mut processor = env.spawn_ready_processor(&[]);
    let mut doomed = env.spawn_ready_ingest(&[]);
    let mut survivor = env.spawn_ready_ingest(&[]);
    let nginx = Nginx::start(&unique_name("nginx"), [doomed.addr, survivor.addr]);
    let lb_url = format!("http://{}", nginx.addr);

    let load = start_load(lb_url.clone(), "lb", REPORTS, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(5)).await;
    doomed.kill();
    let sent = load.await.unwrap();

    assert_eq!(
        sent.accepted.len(),
        REPORTS,
        "nginx did not retry on the other ingest: {sent:?}"
    );
    assert!(nginx.access_log().contains(&survivor.addr.to_string()));
    assert_nothing_lost(
        "ingest killed behind nginx",
        &env,
        "lb",
        sent,
        &lb_url,
        &mut [&mut processor, &mut survivor],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_cutting_the_broker_connection_with_confirms_pending_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = TcpProxy::start(broker).await;
    let env = TestEnv::new("f_cut");
    let proxied = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut processor = env.spawn_ready_processor(&[]);
    let mut ingest = env.spawn_ready_ingest(&[("AMQP_URL", proxied.as_str())]);

    let load = start_load(ingest.url(""), "cut", REPORTS, Duration::from_secs(20));
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        proxy.cut();
    }
    let sent = load.await.unwrap();

    assert!(
        sent.unavailable > 0,
        "no publish was caught by a cut: {sent:?}"
    );
    assert!(eventually(Duration::from_secs(30), || ready(&ingest)).await);
    let url = ingest.url("");
    assert_nothing_lost(
        "broker connection cut",
        &env,
        "cut",
        sent,
        &url,
        &mut [&mut processor, &mut ingest],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_sigterm_finishes_work_in_flight_and_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("f_term");
    let mut first = env.spawn_ready_processor(&[]);
    let mut ingest = env.spawn_ready_ingest(&[]);

    let load = start_load(ingest.url(""), "term", 10_000, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let processor_exit = first.terminate(Duration::from_secs(15));
    let mut second = env.spawn_ready_processor(&[]);
    let sent = load.await.unwrap();

    assert_eq!(
        processor_exit,
        Some(true),
        "processor log:\n{}",
        first.log()
    );
    assert!(first.log().contains("processor stopped"));
    let url = ingest.url("");
    let outcome = assert_nothing_lost(
        "sigterm",
        &env,
        "term",
        sent,
        &url,
        &mut [&mut second, &mut ingest],
    )
    .await;
    assert_eq!(outcome.sent.accepted.len(), 10_000);

    let busy = start_load(ingest.url(""), "term-late", 2_000, Duration::from_secs(4));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ingest_exit = ingest.terminate(Duration::from_secs(15));
    let late = busy.await.unwrap();
    assert_eq!(ingest_exit, Some(true), "ingest log:\n{}", ingest.log());
    let late = load::settle(&env, "term-late", late, Duration::from_secs(60));
    println!("{}", late.summary("sigterm during load"));
    assert_eq!(late.lost, 0);
    assert_eq!(late.duplicates, 0);
}

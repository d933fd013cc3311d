//! Benchmark of the processor's query API at size.
//!
//! It creates a fresh database, migrates it, loads `BENCH_MESSAGES` messages (default five
//! million) with three status transitions each, server-side with `generate_series`, then
//! starts the real `processor` binary on that database and times every API call over
//! HTTP: the median, 90th percentile and maximum of `BENCH_REPEATS` calls after one
//! warm-up call. The results, with a description of the machine, go to
//! `BENCH_OUTPUT` (default `bench-api/results.md`); the database is dropped at the end.
//!
//! The processor is pointed at a broker address that refuses connections, so the
//! benchmark touches no shared RabbitMQ: the HTTP server and the API do not need one.
//!
//! Run it with `cargo run --release -p dlr-bench-api` after `cargo build --release
//! --bins`; it uses the `processor` binary beside its own.

#![expect(clippy::expect_used, reason = "a benchmark stops at its first failure")]

mod load;
mod report;

use diesel::{connection::SimpleConnection, pg::PgConnection, Connection as _};
use report::{Call, LoadTiming, Machine};
use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const TOKEN: &str = "bench-token-0123456789";

/// What one run is asked to do.
struct Plan {
    server: String,
    messages: i64,
    repeats: usize,
    output: PathBuf,
}

impl Plan {
    fn from_env() -> Plan {
        let number = |name: &str, default: i64| -> i64 {
            std::env::var(name)
                .ok()
                .map(|v| v.parse().expect("a whole number"))
                .unwrap_or(default)
        };
        Plan {
            server: std::env::var("BENCH_DATABASE_SERVER")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            messages: number("BENCH_MESSAGES", 5_000_000),
            repeats: number("BENCH_REPEATS", 31) as usize,
            output: std::env::var("BENCH_OUTPUT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from("bench-api/results.md")),
        }
    }
}

/// The processor under test, killed when dropped.
struct Processor {
    child: Child,
    base: String,
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The database of this run, dropped when this goes out of scope.
struct BenchDatabase {
    server: String,
    name: String,
}

impl BenchDatabase {
    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", self.server)) {
            let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            match admin.batch_execute(&drop) {
                Ok(()) => println!("dropped database {}", self.name),
                Err(e) => eprintln!("could not drop database {}: {e}", self.name),
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let plan = Plan::from_env();
    let database = BenchDatabase {
        server: plan.server.clone(),
        name: format!("dlr_bench_{}", std::process::id()),
    };
    processor::db::ensure_database(&database.url()).expect("database created");
    processor::db::migrate(&database.url()).expect("database migrated");

    let mut conn = PgConnection::establish(&database.url()).expect("database reachable");
    let load_timing: LoadTiming = load::load(&mut conn, plan.messages);
    let machine = Machine::describe(&mut conn);

    let processor = start_processor(&database.url());
    let http = reqwest::Client::new();
    let calls = time_calls(&http, &processor.base, &plan, &load_timing).await;
    drop(processor);

    let text = report::render(&machine, &load_timing, &calls, plan.repeats);
    std::fs::write(&plan.output, &text).expect("results written");
    println!("{text}");
    println!("results written to {}", plan.output.display());
}

fn start_processor(database_url: &str) -> Processor {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe.with_file_name("processor");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(exe.with_file_name("bench-api-processor.log")).expect("log");

    let child = Command::new(&binary)
        .env("DATABASE_URL", database_url)
        .env("PROCESSOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("API_TOKENS", TOKEN)
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{} could not start: {e}", binary.display()));
    let processor = Processor {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the processor did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    processor
}

/// The calls to time: every route, with the filters a person would use.
async fn time_calls(
    http: &reqwest::Client,
    base: &str,
    plan: &Plan,
    loaded: &LoadTiming,
) -> Vec<Call> {
    let n = plan.messages;
    let day = load::day_before(loaded.anchor, load::DAYS / 2);
    let (first_day, last_day) = (
        load::day_before(loaded.anchor, load::DAYS),
        load::day_before(loaded.anchor, 0),
    );
    let recipient = load::recipient_of(n / 3);
    let first_page = get(http, base, "/v1/messages?limit=50").await;
    let cursor = first_page["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let window = format!("from={day}T00:00:00Z&to={day}T23:59:59Z");

    let mut paths: Vec<(String, Vec<String>)> = Vec::new();
    let ids: Vec<String> = (0..plan.repeats as i64 + 1)
        .map(|k| format!("/v1/messages/bench-{}", 1 + (k * 104_729 + 17) % n))
        .collect();
    paths.push(("GET /v1/messages/{msg_id} (3 reports each)".into(), ids));
    let same = |path: String| vec![path];
    for path in [
        "/v1/messages?limit=50".to_string(),
        format!("/v1/messages?limit=50&cursor={cursor}"),
        "/v1/messages?limit=50&status=delivered".into(),
        "/v1/messages?limit=50&status=expired".into(),
        "/v1/messages?limit=50&status=accepted,enroute".into(),
        format!("/v1/messages?limit=50&recipient={recipient}"),
        "/v1/messages?limit=50&sender=sender-7".into(),
        "/v1/messages?limit=50&sender=sender-7&status=rejected".into(),
        "/v1/messages?limit=50&sender=sender-7&status=rejected,expired".into(),
        "/v1/messages?limit=50&sender=sender-7&status=undelivered,expired".into(),
        format!("/v1/messages?limit=50&{window}"),
        format!("/v1/messages?limit=50&status=failed&{window}"),
        "/v1/messages?limit=50&mask=true".into(),
        "/v1/stats?bucket=hour".into(),
        "/v1/stats?bucket=day".into(),
        format!("/v1/stats?bucket=hour&from={day}T00:00:00Z&to={day}T23:59:59Z"),
        format!("/v1/stats?bucket=day&from={first_day}T00:00:00Z&to={last_day}T23:59:59Z"),
    ] {
        paths.push((format!("GET {path}"), same(path)));
    }

    let mut calls = Vec::new();
    for (label, variants) in paths {
        let mut samples = Vec::with_capacity(plan.repeats);
        let _ = get(http, base, &variants[0]).await;
        for i in 0..plan.repeats {
            let path = &variants[(i + 1) % variants.len()];
            let started = Instant::now();
            let _ = get(http, base, path).await;
            samples.push(started.elapsed());
        }
        let call = Call::new(label, samples);
        println!("{}", call.line());
        calls.push(call);
    }
    calls
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the processor answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("a JSON body")
}

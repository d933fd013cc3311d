//! Exactly-once effect under duplicates, reordering, redelivery and several processors,
//! against the real RabbitMQ and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use harness::{
    model::{self, ModelReport},
    report, TestEnv,
};
use proptest::prelude::*;
use rand::{seq::SliceRandom, Rng, SeedableRng};
use shared::{Report, Status};
use std::time::Duration;

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
}

fn to_model(r: &Report) -> ModelReport {
    ModelReport {
        msg_id: r.msg_id.as_str().to_owned(),
        status: r.status.as_str().to_owned(),
        status_at: r.status_at.at,
    }
}

/// Asserts the database holds what the reference model says for these reports.
fn assert_matches_model(env: &TestEnv, reports: &[Report]) {
    let models: Vec<ModelReport> = reports.iter().map(to_model).collect();
    let expected = model::expected(&models);

    let messages: Vec<(String, (String, DateTime<Utc>))> = env
        .messages()
        .into_iter()
        .map(|m| (m.msg_id, (m.status, m.status_at)))
        .collect();
    let transitions: Vec<ModelReport> = env
        .transitions()
        .into_iter()
        .map(|t| ModelReport {
            msg_id: t.msg_id,
            status: t.status,
            status_at: t.status_at,
        })
        .collect();

    assert_eq!(messages, expected.messages.into_iter().collect::<Vec<_>>());
    assert_eq!(
        transitions.len(),
        expected.transitions.len(),
        "a transition is duplicated"
    );
    let mut sorted = transitions.clone();
    sorted.sort();
    assert_eq!(sorted, expected.transitions.into_iter().collect::<Vec<_>>());
}

fn arbitrary_report() -> impl Strategy<Value = Report> {
    (0..4usize, 0..Status::ALL.len(), 0..5i64).prop_map(|(msg, status, minute)| {
        report(
            &format!("m{msg}"),
            Status::ALL[status],
            base_time() + Span::minutes(minute),
        )
    })
}

/// Reports with repeats, in an order and a split into batches chosen by proptest.
fn arbitrary_arrivals() -> impl Strategy<Value = (Vec<Report>, Vec<usize>)> {
    prop::collection::vec(arbitrary_report(), 1..40)
        .prop_flat_map(|distinct| {
            let len = distinct.len();
            let repeats = prop::collection::vec(0..len, 0..len);
            (Just(distinct), repeats)
        })
        .prop_map(|(mut reports, repeats)| {
            let copies: Vec<Report> = repeats.iter().map(|i| reports[*i].clone()).collect();
            reports.extend(copies);
            reports
        })
        .prop_flat_map(|reports| {
            let len = reports.len();
            (
                Just(reports).prop_shuffle(),
                prop::collection::vec(1..8usize, len),
            )
        })
}

#[test]
fn the_stored_state_equals_the_reference_model_for_any_arrival_order() {
    let env = TestEnv::new("prop");
    env.create_database();
    let conn = std::cell::RefCell::new(env.db());
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };

    proptest!(config, |((reports, batch_sizes) in arbitrary_arrivals())| {
        let mut conn = conn.borrow_mut();
        conn.batch_execute("TRUNCATE messages, status_transitions").unwrap();

        let mut rest: &[Report] = &reports;
        let mut sizes = batch_sizes.iter().cycle();
        while !rest.is_empty() {
            let size = (*sizes.next().unwrap()).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            processor::store::apply_batch(&mut conn, batch).unwrap();
            rest = tail;
        }

        assert_matches_model(&env, &reports);
    });
}

#[test]
fn a_batch_that_repeats_a_message_many_times_is_written_in_one_statement() {
    let env = TestEnv::new("samebatch");
    env.create_database();
    let mut conn = env.db();
    let reports = vec![
        report("x", Status::Enroute, base_time()),
        report("x", Status::Delivered, base_time() + Span::minutes(1)),
        report("x", Status::Accepted, base_time() + Span::minutes(2)),
        report("x", Status::Delivered, base_time() + Span::minutes(1)),
    ];

    let outcome = processor::store::apply_batch(&mut conn, &reports).unwrap();

    assert_eq!(outcome.new_transitions, 3);
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(outcome.messages_changed, 1);
    assert_eq!(env.message("x").unwrap().status, "delivered");
    let applied: Vec<bool> = env.transitions().iter().map(|t| t.applied).collect();
    assert_eq!(applied, vec![false, true, false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processors_drain_a_shuffled_queue_with_duplicates_into_the_model_state() {
    let env = TestEnv::new("three");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_000);
    let mut reports: Vec<Report> = (0..14_000)
        .map(|_| {
            let msg = rng.random_range(0..2_000);
            let status = Status::ALL[rng.random_range(0..Status::ALL.len())];
            let minute = rng.random_range(0..30);
            report(
                &format!("msg-{msg:04}"),
                status,
                base_time() + Span::minutes(minute),
            )
        })
        .collect();
    let duplicates: Vec<Report> = (0..6_000)
        .map(|_| reports[rng.random_range(0..reports.len())].clone())
        .collect();
    reports.extend(duplicates);
    reports.shuffle(&mut rng);
    env.declare_topology().await;
    env.publish_reports(&reports).await;

    let processors: Vec<_> = (0..3)
        .map(|_| env.spawn_processor(&[("BATCH_SIZE", "200")]))
        .collect();

    let expected = model::expected(&reports.iter().map(to_model).collect::<Vec<_>>());
    let done = env.wait_until(Duration::from_secs(120), |e| {
        e.queue_depth_blocking() == Some(0)
            && e.count("SELECT count(*) AS n FROM status_transitions")
                == expected.transitions.len() as i64
    });
    assert!(done, "the queue was not drained in time");
    assert_matches_model(&env, &reports);
    assert_eq!(env.queue_depth(&env.amqp.dead_letter_queue).await, Some(0));
    for processor in &processors {
        let log = processor.log();
        assert!(!log.contains(" ERROR "), "unhandled error:\n{log}");
        assert!(
            log.contains("batch written"),
            "a processor wrote nothing:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_processor_killed_between_commit_and_ack_duplicates_nothing_on_redelivery() {
    let env = TestEnv::new("kill");
    let reports: Vec<Report> = (0..50)
        .map(|i| report(&format!("k{i}"), Status::Delivered, base_time()))
        .collect();
    env.declare_topology().await;
    env.publish_reports(&reports).await;

    let mut slow = env.spawn_ready_processor(&[
        ("FAULT_ACK_DELAY_MS", "60000"),
        ("BATCH_MAX_WAIT_MS", "3000"),
    ]);
    assert!(env.wait_until(Duration::from_secs(30), |e| {
        e.count("SELECT count(*) AS n FROM status_transitions") == 50
    }));
    assert!(slow
        .log()
        .contains("acknowledging after the fault-test delay"));
    slow.kill();
    assert_eq!(env.queue_depth(&env.amqp.queue).await, Some(50));

    let second = env.spawn_processor(&[]);
    let redelivered = || -> usize {
        second
            .log()
            .lines()
            .filter_map(|l| l.split("duplicates=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
            .sum()
    };
    assert!(env.wait_until(Duration::from_secs(30), |_| redelivered() >= 50));

    assert_eq!(redelivered(), 50);
    assert_eq!(
        env.count("SELECT count(*) AS n FROM status_transitions"),
        50
    );
    assert_eq!(env.count("SELECT count(*) AS n FROM messages"), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_batch_that_commits_first_waits_for_the_earlier_one_to_be_acknowledged() {
    let env = TestEnv::new("order");
    env.create_database();
    let mut lock = env.db();
    lock.batch_execute(
        "INSERT INTO messages (msg_id, recipient, sender, status, is_final, status_rank,
             status_at, status_at_source, first_received_at)
         VALUES ('o-blocked', '+35799000001', 'TEST', 'accepted', false, 1,
             '2020-01-01T00:00:00Z', 'gateway', now());
         BEGIN;
         SELECT 1 FROM messages WHERE msg_id = 'o-blocked' FOR UPDATE;",
    )
    .unwrap();
    let mut reports = vec![report("o-blocked", Status::Delivered, base_time())];
    reports.extend((0..40).map(|i| report(&format!("o-{i}"), Status::Delivered, base_time())));
    env.declare_topology().await;
    env.publish_reports(&reports).await;

    // The first batch holds `o-blocked` and waits for the row lock; the second writer
    // commits the batches behind it, as far as the prefetch of 30 allows, and they must
    // stay unacknowledged.
    let mut processor = env.spawn_ready_processor(&[("BATCH_SIZE", "10"), ("BATCH_WRITERS", "2")]);
    let committed_behind =
        || env.count("SELECT count(*) AS n FROM status_transitions WHERE msg_id <> 'o-blocked'");
    assert!(env.wait_until(Duration::from_secs(30), |_| committed_behind() >= 20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    processor.kill();

    let mut depth = None;
    for _ in 0..50 {
        depth = env.queue_depth(&env.amqp.queue).await;
        if depth == Some(41) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        depth,
        Some(41),
        "an acknowledgement overtook an uncommitted batch"
    );

    lock.batch_execute("ROLLBACK").unwrap();
    let _second = env.spawn_processor(&[]);
    assert!(env.wait_until(Duration::from_secs(30), |e| {
        e.count("SELECT count(*) AS n FROM status_transitions") == 41
    }));
    let blocked = env.message("o-blocked").unwrap();
    assert_eq!(blocked.status, "delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_with_a_reason_while_the_rest_is_stored() {
    let env = TestEnv::new("poison");
    let mut refused = report("nul", Status::Failed, base_time());
    refused
        .raw
        .body
        .insert("note".into(), vec!["bad\u{0}byte".into()]);
    let future_version = br#"{"version":99,"report":{}}"#.to_vec();
    let mut payloads = vec![b"\xff not json at all".to_vec(), future_version];
    payloads.push(refused.to_envelope_json());
    for i in 0..10 {
        payloads.push(report(&format!("ok{i}"), Status::Delivered, base_time()).to_envelope_json());
    }
    env.declare_topology().await;
    env.publish_raw(&payloads).await;

    let _processor = env.spawn_ready_processor(&[]);

    assert!(env.wait_until(Duration::from_secs(30), |e| e.messages().len() == 10));
    assert!(
        env.wait_until(Duration::from_secs(10), |e| e.queue_depth_blocking()
            == Some(0))
    );
    let dead = env.drain_dead_letters().await;
    let mut reasons: Vec<&str> = dead.iter().map(|(_, reason)| reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("malformed envelope"), "{reasons:?}");
    assert!(
        reasons[1].starts_with("refused by the database"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("unknown envelope version 99"),
        "{reasons:?}"
    );
    assert!(env.message("nul").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_report_is_replayed_once_its_format_is_taught() {
    let env = TestEnv::new("replay");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let http = reqwest::Client::new();

    let unknown_key = http
        .get(ingest.url("/dlr?ref=q-1&mno=35799123456&sid=ACME&status=SENT_OK&dt=2612011000"))
        .send()
        .await
        .unwrap();
    let hopeless = http
        .get(ingest.url("/dlr?ref=q-2&mno=12&sid=ACME&status=delivered"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_key.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(hopeless.status(), reqwest::StatusCode::BAD_REQUEST);
    let quarantine = env.amqp.quarantine_queue.clone();
    assert!(env.wait_until(Duration::from_secs(10), |e| {
        e.queue_depth_of(&quarantine) == Some(2)
    }));

    let untaught = env.run_processor_command(&["replay"], &[]);
    let taught = env.run_processor_command(
        &["replay"],
        &[
            ("FIELD_ALIASES", "msgid=ref"),
            ("STATUS_ALIASES", "sent ok=delivered"),
        ],
    );

    assert!(untaught.status.success());
    let untaught: serde_json::Value = serde_json::from_slice(&untaught.stdout).unwrap();
    assert_eq!(untaught["quarantine"]["moved"], 0);
    assert!(
        taught.status.success(),
        "{}",
        String::from_utf8_lossy(&taught.stderr)
    );
    let taught: serde_json::Value = serde_json::from_slice(&taught.stdout).unwrap();
    assert_eq!(taught["quarantine"]["examined"], 2);
    assert_eq!(taught["quarantine"]["moved"], 1);
    assert_eq!(taught["quarantine"]["kept"], 1);
    assert!(env.wait_until(Duration::from_secs(10), |e| e.message("q-1").is_some()));
    assert_eq!(env.message("q-1").unwrap().status, "delivered");
    assert_eq!(env.queue_depth_of(&quarantine), Some(1));
}

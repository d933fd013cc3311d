//! The processor's query API against the real PostgreSQL: rows are written with SQL into
//! the test's own database (or sent through the real pipeline), then read back over HTTP
//! from a running processor binary.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use diesel::{connection::SimpleConnection, pg::PgConnection};
use harness::{Service, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use shared::Status;
use std::{collections::HashSet, time::Duration};

const TOKEN: &str = "test-token-0123456789";
const OTHER_TOKEN: &str = "second-token-abcdefgh";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A migrated database and a processor that accepts [`TOKEN`] and [`OTHER_TOKEN`].
fn processor_with_database(label: &str) -> (TestEnv, Service) {
    let env = TestEnv::new(label);
    env.create_database();
    let tokens = format!("{TOKEN}, {OTHER_TOKEN}");
    let processor = env.spawn_processor(&[("API_TOKENS", tokens.as_str())]);
    (env, processor)
}

/// Inserts a message and one transition per `(status, status_at)` of its history; the
/// last one is the current status. Times are RFC 3339.
fn insert_message(
    db: &mut PgConnection,
    msg_id: &str,
    recipient: &str,
    sender: &str,
    history: &[(Status, &str)],
) {
    let (status, status_at) = *history.last().unwrap();
    let first = history[0].1;
    db.batch_execute(&format!(
        "INSERT INTO messages (msg_id, recipient, sender, status, is_final, status_rank, \
         status_at, status_at_source, first_received_at) VALUES ('{msg_id}', '{recipient}', \
         '{sender}', '{}', {}, {}, '{status_at}', 'gateway', '{first}')",
        status.as_str(),
        status.is_final(),
        status.rank()
    ))
    .unwrap();
    for (i, (status, at)) in history.iter().enumerate() {
        db.batch_execute(&format!(
            "INSERT INTO status_transitions (msg_id, status, status_raw, status_at, \
             status_at_source, received_at, recipient, sender, raw_fields, applied) VALUES \
             ('{msg_id}', '{}', '{}', '{at}', 'gateway', '{at}', '{recipient}', '{sender}', \
             '{{}}', {})",
            status.as_str(),
            status.as_str().to_uppercase(),
            i + 1 == history.len()
        ))
        .unwrap();
    }
}

async fn get(service: &Service, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().get(service.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg_id"].as_str().unwrap().to_owned())
        .collect()
}

fn error_fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_answered_with_its_full_history_and_an_unknown_one_is_404() {
    let (env, processor) = processor_with_database("apione");
    insert_message(
        &mut env.db(),
        "m-1",
        "35799123456",
        "ACME",
        &[
            (Status::Accepted, "2026-12-01T10:00:00Z"),
            (Status::Enroute, "2026-12-01T10:00:05Z"),
            (Status::Delivered, "2026-12-01T10:01:00Z"),
        ],
    );

    let (found_status, found) = get(&processor, "/v1/messages/m-1", Some(TOKEN)).await;
    let (missing_status, missing) = get(&processor, "/v1/messages/nope", Some(TOKEN)).await;

    assert_eq!(found_status, StatusCode::OK, "{found}");
    assert_eq!(found["message"]["status"], "delivered");
    assert_eq!(found["message"]["recipient"], "35799123456");
    assert_eq!(found["message"]["status_at"], "2026-12-01T10:01:00Z");
    let history: Vec<(&str, &str, bool)> = found["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["status"].as_str().unwrap(),
                t["status_raw"].as_str().unwrap(),
                t["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("accepted", "ACCEPTED", false),
            ("enroute", "ENROUTE", false),
            ("delivered", "DELIVERED", true)
        ]
    );
    assert_eq!(missing_status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_by_status_recipient_sender_and_time_range_newest_first() {
    let (env, processor) = processor_with_database("apifilter");
    let mut db = env.db();
    let rows = [
        (
            "a",
            "35799000001",
            "ACME",
            Status::Delivered,
            "2026-12-01T10:00:00Z",
        ),
        (
            "b",
            "35799000002",
            "ACME",
            Status::Expired,
            "2026-12-01T11:00:00Z",
        ),
        (
            "c",
            "35799000001",
            "Shop",
            Status::Delivered,
            "2026-12-01T12:00:00Z",
        ),
        (
            "d",
            "35799000003",
            "Shop",
            Status::Enroute,
            "2026-12-01T13:00:00Z",
        ),
        (
            "e",
            "35799000001",
            "ACME",
            Status::Undelivered,
            "2026-12-01T14:00:00Z",
        ),
    ];
    for (id, recipient, sender, status, at) in rows {
        insert_message(&mut db, id, recipient, sender, &[(status, at)]);
    }
    let list = |query: &str| format!("/v1/messages?{query}");

    let all = get(&processor, &list(""), Some(TOKEN)).await.1;
    let delivered = get(&processor, &list("status=delivered"), Some(TOKEN))
        .await
        .1;
    let finals = get(&processor, &list("status=delivered,expired"), Some(TOKEN))
        .await
        .1;
    let by_number = get(
        &processor,
        &list("recipient=%2B357%2099-000001"),
        Some(TOKEN),
    )
    .await
    .1;
    let by_sender = get(&processor, &list("sender=Shop"), Some(TOKEN)).await.1;
    let window = "from=2026-12-01T11:00:00Z&to=2026-12-01T14:00:00Z";
    let in_window = get(&processor, &list(window), Some(TOKEN)).await.1;
    let combined = "sender=ACME&recipient=35799000001&status=delivered";
    let all_filters = get(&processor, &list(combined), Some(TOKEN)).await.1;

    assert_eq!(ids(&all), ["e", "d", "c", "b", "a"]);
    assert_eq!(ids(&delivered), ["c", "a"]);
    assert_eq!(ids(&finals), ["c", "b", "a"]);
    assert_eq!(ids(&by_number), ["e", "c", "a"]);
    assert_eq!(ids(&by_sender), ["d", "c"]);
    assert_eq!(ids(&in_window), ["d", "c", "b"]);
    assert_eq!(ids(&all_filters), ["a"]);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_the_cursor_without_duplicates_or_gaps_even_on_equal_times() {
    let (env, processor) = processor_with_database("apipages");
    env.db()
        .batch_execute(
            "INSERT INTO messages (msg_id, recipient, sender, status, is_final, status_rank, \
             status_at, status_at_source, first_received_at) \
             SELECT 'p' || g, '3579900' || lpad(g::text, 4, '0'), 'ACME', \
                 CASE WHEN g % 4 = 0 THEN 'expired' ELSE 'delivered' END, true, 8, \
                 timestamptz '2026-12-01 10:00Z' + (g / 3) * interval '1 minute', \
                 'gateway', timestamptz '2026-12-01 10:00Z' \
             FROM generate_series(1, 257) AS g",
        )
        .unwrap();

    let mut seen: Vec<String> = Vec::new();
    let mut path = "/v1/messages?limit=20".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = get(&processor, &path, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/messages?limit=20&cursor={cursor}"),
            None => break,
        }
    }
    let mut expired_seen = Vec::new();
    let mut path = "/v1/messages?limit=7&status=expired".to_string();
    loop {
        let page = get(&processor, &path, Some(TOKEN)).await.1;
        expired_seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/messages?limit=7&status=expired&cursor={cursor}"),
            None => break,
        }
    }

    let mut expected: Vec<(u32, String)> = (1..=257).map(|g| (g / 3, format!("p{g}"))).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(pages, 13);
    assert_eq!(seen.len(), 257);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 257);
    assert_eq!(seen, expected);
    assert_eq!(expired_seen.len(), 257 / 4);
    assert_eq!(expired_seen.iter().collect::<HashSet<_>>().len(), 257 / 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_messages_per_hour_and_day_with_the_delivery_rate() {
    let (env, processor) = processor_with_database("apistats");
    let mut db = env.db();
    insert_message(
        &mut db,
        "h10a",
        "35799000001",
        "A",
        &[(Status::Delivered, "2026-12-01T10:05:00Z")],
    );
    insert_message(
        &mut db,
        "h10b",
        "35799000002",
        "A",
        &[(Status::Delivered, "2026-12-01T10:59:59Z")],
    );
    insert_message(
        &mut db,
        "h10c",
        "35799000003",
        "A",
        &[(Status::Expired, "2026-12-01T10:30:00Z")],
    );
    insert_message(
        &mut db,
        "h12a",
        "35799000004",
        "A",
        &[(Status::Enroute, "2026-12-01T12:00:00Z")],
    );
    insert_message(
        &mut db,
        "d2a",
        "35799000005",
        "A",
        &[(Status::Undelivered, "2026-12-02T08:00:00Z")],
    );
    db.batch_execute(
        "UPDATE messages SET status = 'delivered', is_final = true, status_rank = 8, \
         status_at = '2026-12-01T13:00:00Z' WHERE msg_id = 'h12a'",
    )
    .unwrap();

    let hours = "/v1/stats?bucket=hour&from=2026-12-01T10:00:00Z&to=2026-12-01T13:00:00Z";
    let (status, hourly) = get(&processor, hours, Some(TOKEN)).await;
    let days = "/v1/stats?bucket=day&from=2026-12-01T06:00:00Z&to=2026-12-02T06:00:00Z";
    let daily = get(&processor, days, Some(TOKEN)).await.1;

    assert_eq!(status, StatusCode::OK, "{hourly}");
    let buckets = hourly["buckets"].as_array().unwrap();
    let starts: Vec<&str> = buckets
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-12-01T10:00:00Z",
            "2026-12-01T11:00:00Z",
            "2026-12-01T12:00:00Z"
        ]
    );
    assert_eq!(buckets[0]["total"], 3);
    assert_eq!(buckets[0]["by_status"]["delivered"], 2);
    assert_eq!(buckets[0]["by_status"]["expired"], 1);
    assert!((buckets[0]["delivery_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(buckets[1]["total"], 0);
    assert_eq!(buckets[1]["delivery_rate"], Value::Null);
    assert_eq!(buckets[2]["by_status"]["delivered"], 1);
    assert_eq!(buckets[2]["by_status"]["enroute"], 0);
    assert_eq!(hourly["totals"]["total"], 4);
    assert_eq!(hourly["totals"]["delivered"], 3);
    assert_eq!(hourly["totals"]["delivery_rate"], 0.75);

    assert_eq!(daily["from"], "2026-12-01T00:00:00Z");
    assert_eq!(daily["to"], "2026-12-03T00:00:00Z");
    let day_totals: Vec<i64> = daily["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .collect();
    assert_eq!(day_totals, [4, 1]);
    assert_eq!(daily["totals"]["final"], 5);
    assert_eq!(daily["totals"]["delivery_rate"], 0.6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_get_a_400_naming_each_one() {
    let (_env, processor) = processor_with_database("apibad");
    let cases = [
        ("/v1/messages?status=sent", vec!["status"]),
        ("/v1/messages?recipient=12ab", vec!["recipient"]),
        ("/v1/messages?limit=0", vec!["limit"]),
        ("/v1/messages?limit=501", vec!["limit"]),
        (
            "/v1/messages?from=yesterday&cursor=zz",
            vec!["from", "cursor"],
        ),
        (
            "/v1/messages?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            vec!["to"],
        ),
        ("/v1/messages?colour=red", vec!["query"]),
        ("/v1/messages?mask=maybe", vec!["mask"]),
        ("/v1/messages?limit=5&limit=6", vec!["limit"]),
        ("/v1/messages/m-1?mask=yes", vec!["mask"]),
        ("/v1/stats?bucket=week", vec!["bucket"]),
        (
            "/v1/stats?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            vec!["from"],
        ),
        ("/v1/stats?to=soon", vec!["to"]),
    ];

    for (path, fields) in cases {
        let (status, body) = get(&processor, path, Some(TOKEN)).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}");
        assert_eq!(error_fields(&body), fields, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_need_a_configured_token_while_health_and_the_document_stay_open() {
    let (env, processor) = processor_with_database("apiauth");
    insert_message(
        &mut env.db(),
        "m-1",
        "35799123456",
        "A",
        &[(Status::Delivered, "2026-12-01T10:00:00Z")],
    );
    let protected = ["/v1/messages", "/v1/messages/m-1", "/v1/stats"];

    for path in protected {
        let (without, body) = get(&processor, path, None).await;
        let (wrong, _) = get(&processor, path, Some("test-token-0123456788")).await;
        let (first, _) = get(&processor, path, Some(TOKEN)).await;
        let (second, _) = get(&processor, path, Some(OTHER_TOKEN)).await;

        assert_eq!(without, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
        assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!((first, second), (StatusCode::OK, StatusCode::OK), "{path}");
    }
    let invalid_before_auth = get(&processor, "/v1/messages?limit=0", None).await.0;
    assert_eq!(invalid_before_auth, StatusCode::UNAUTHORIZED);
    for open in ["/healthz", "/openapi.json", "/", "/dashboard/app.js"] {
        let response = client().get(processor.url(open)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{open}");
    }
    let document = get(&processor, "/openapi.json", None).await.1;
    assert!(document["paths"]["/v1/stats"]["get"].is_object());
    assert!(!processor.log().contains(TOKEN), "a token was logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_any_token_configured_every_read_is_refused_with_403() {
    let env = TestEnv::new("apinotoken");
    env.create_database();
    let processor = env.spawn_processor(&[("API_TOKENS", "")]);

    let (status, body) = get(&processor, "/v1/stats", Some(TOKEN)).await;
    let (page, _) = get(&processor, "/", None).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "reads_disabled");
    assert_eq!(page, StatusCode::OK);
    assert!(processor.log().contains("API_TOKENS is empty"));
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_are_masked_but_the_last_three_digits_on_request() {
    let (env, processor) = processor_with_database("apimask");
    insert_message(
        &mut env.db(),
        "m-1",
        "35799123456",
        "A",
        &[(Status::Delivered, "2026-12-01T10:00:00Z")],
    );

    let plain = get(&processor, "/v1/messages", Some(TOKEN)).await.1;
    let masked = get(&processor, "/v1/messages?mask=true", Some(TOKEN))
        .await
        .1;
    let by_number = "/v1/messages?mask=true&recipient=35799123456";
    let found_masked = get(&processor, by_number, Some(TOKEN)).await.1;
    let one = get(&processor, "/v1/messages/m-1?mask=true", Some(TOKEN))
        .await
        .1;

    assert_eq!(plain["messages"][0]["recipient"], "35799123456");
    assert_eq!(masked["messages"][0]["recipient"], "********456");
    assert_eq!(found_masked["messages"][0]["recipient"], "********456");
    assert_eq!(one["message"]["recipient"], "********456");
    assert!(!one.to_string().contains("35799123456"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_sent_through_ingest_is_readable_through_the_api() {
    let env = TestEnv::new("apipipe");
    let processor = env.spawn_ready_processor(&[("API_TOKENS", TOKEN)]);
    let ingest = env.spawn_ready_ingest(&[]);

    let sent = client()
        .get(ingest.url(
            "/dlr?msgid=piped-1&mno=35799123456&sid=ACME&status=DELIVRD\
             &datetime=2026-12-01+10:00:00",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    assert!(env.wait_until(Duration::from_secs(10), |e| e.message("piped-1").is_some()));

    let (status, found) = get(&processor, "/v1/messages/piped-1", Some(TOKEN)).await;
    let stats = get(&processor, "/v1/stats?bucket=day", Some(TOKEN)).await.1;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["message"]["status"], "delivered");
    assert_eq!(found["history"][0]["status_raw"], "DELIVRD");
    assert_eq!(stats["totals"]["delivered"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stats_rollup_matches_the_messages_after_out_of_order_reports_from_two_processors() {
    let env = TestEnv::new("apirollup");
    let _first = env.spawn_ready_processor(&[("API_TOKENS", TOKEN), ("BATCH_SIZE", "7")]);
    let _second = env.spawn_ready_processor(&[("API_TOKENS", TOKEN), ("BATCH_SIZE", "5")]);
    let ingest = env.spawn_ready_ingest(&[]);
    let http = client();
    let words = ["ACCEPTD", "DELIVRD", "ENROUTE", "UNDELIV", "EXPIRED"];

    let mut sent = 0;
    for round in 0..4 {
        for n in 0..40 {
            let word = words[(n * 7 + round * 3) % words.len()];
            let minute = (n * 13 + round * 29) % 60;
            let url = format!(
                "/dlr?msgid=roll-{n}&mno=3579900{n:04}&sid=ACME&status={word}\
                 &datetime=2026-12-01+{:02}:{minute:02}:00",
                10 + (n + round) % 3
            );
            let response = http.get(ingest.url(&url)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            sent += 1;
        }
    }
    let settled = env.wait_until(Duration::from_secs(20), |e| {
        e.queue_depth_blocking() == Some(0)
            && e.count("SELECT count(*) AS n FROM status_transitions") > 0
    });
    std::thread::sleep(Duration::from_millis(500));

    assert!(settled);
    assert_eq!(sent, 160);
    assert_eq!(env.count("SELECT count(*) AS n FROM messages"), 40);
    let mismatches = env.count(
        "SELECT count(*) AS n FROM (
             SELECT date_trunc('hour', first_received_at, 'UTC') AS hour, status,
                 count(*) AS messages
             FROM messages GROUP BY 1, 2) AS actual
         FULL JOIN (SELECT hour, status, messages FROM message_hourly_counts
                    WHERE messages <> 0) AS rollup USING (hour, status)
         WHERE actual.messages IS DISTINCT FROM rollup.messages",
    );
    assert_eq!(mismatches, 0);
}

//! The whole pipeline against the real RabbitMQ and PostgreSQL: a gateway request in,
//! rows in `messages` and `status_transitions` out.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use harness::TestEnv;
use reqwest::{multipart, Client, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(10);

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_form_and_alias_set_reaches_both_tables() {
    let env = TestEnv::new("forms");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let http = client();

    let get = http
        .get(ingest.url(
            "/dlr?msgid=form-get&mno=%2B357%2099-123456&sid=ACME&status=DELIVRD\
             &datetime=2026-12-01+10:00:00&err=000&campaign=winter",
        ))
        .send()
        .await
        .unwrap();
    let form = http
        .post(ingest.url("/dlr"))
        .form(&[
            ("Message-ID", "form-post"),
            ("MSISDN", "0035799123457"),
            ("Sender_ID", "ACME"),
            ("DLR Status", "undelivered"),
            ("Date/Time", "2026-12-01T10:00:00+02:00"),
            ("Error_Code", "34"),
        ])
        .send()
        .await
        .unwrap();
    let multipart_body = multipart::Form::new()
        .text("SMSID", "form-multipart")
        .text("to", "35799123458")
        .text("From", "Shop")
        .text("stat", "REJECTD")
        .text("timestamp", "1764583200");
    let multi = http
        .post(ingest.url("/dlr"))
        .multipart(multipart_body)
        .send()
        .await
        .unwrap();
    let json_post = http
        .post(ingest.url("/dlr"))
        .json(&json!({
            "id": 12345,
            "recipient": "+35799123459",
            "source": "Bank",
            "messageStatus": "expired",
            "doneDate": "2612011000",
            "extra": {"nested": true}
        }))
        .send()
        .await
        .unwrap();
    let mixed = http
        .post(ingest.url("/dlr?msgid=from-query&destination=35799123460&sender=Q&dt=2612011000"))
        .form(&[("msgid", "form-mixed"), ("response", "failed")])
        .send()
        .await
        .unwrap();

    for response in [get, form, multi, json_post, mixed] {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["result"], "accepted");
    }
    let ids = [
        "12345",
        "form-get",
        "form-mixed",
        "form-multipart",
        "form-post",
    ];
    assert!(env.wait_until(SETTLE, |e| e.messages().len() == ids.len()));
    let messages = env.messages();
    let got: Vec<(&str, &str, &str, &str, String)> = messages
        .iter()
        .map(|m| {
            (
                m.msg_id.as_str(),
                m.recipient.as_str(),
                m.sender.as_str(),
                m.status.as_str(),
                m.status_at.to_rfc3339(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "12345",
                "35799123459",
                "Bank",
                "expired",
                "2026-12-01T10:00:00+00:00".into()
            ),
            (
                "form-get",
                "35799123456",
                "ACME",
                "delivered",
                "2026-12-01T10:00:00+00:00".into()
            ),
            (
                "form-mixed",
                "35799123460",
                "Q",
                "failed",
                "2026-12-01T10:00:00+00:00".into()
            ),
            (
                "form-multipart",
                "35799123458",
                "Shop",
                "rejected",
                "2025-12-01T10:00:00+00:00".into()
            ),
            (
                "form-post",
                "35799123457",
                "ACME",
                "undelivered",
                "2026-12-01T08:00:00+00:00".into()
            ),
        ]
    );
    let transitions = env.transitions();
    assert_eq!(transitions.len(), ids.len());
    let get_row = transitions.iter().find(|t| t.msg_id == "form-get").unwrap();
    assert_eq!(get_row.status_raw, "DELIVRD");
    assert_eq!(get_row.raw_fields["query"]["campaign"], json!(["winter"]));
    let mixed_row = transitions
        .iter()
        .find(|t| t.msg_id == "form-mixed")
        .unwrap();
    assert_eq!(
        mixed_row.raw_fields["query"]["msgid"],
        json!(["from-query"])
    );
    assert_eq!(mixed_row.raw_fields["body"]["msgid"], json!(["form-mixed"]));
    assert_eq!(
        env.message("form-post").unwrap().error_code.as_deref(),
        Some("34")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_without_a_time_is_stored_at_its_receive_time_and_marked() {
    let env = TestEnv::new("notime");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let before = chrono::Utc::now();

    let response = client()
        .get(ingest.url("/dlr?msgid=no-time&mno=35799123456&sid=ACME&status=delivered"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(env.wait_until(SETTLE, |e| e.message("no-time").is_some()));
    let row = env.message("no-time").unwrap();
    assert_eq!(row.status_at_source, "received");
    assert!(row.status_at >= before - chrono::Duration::milliseconds(1));
    assert!(row.status_at <= chrono::Utc::now());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_400_naming_the_field_and_publishes_nothing() {
    let env = TestEnv::new("badinput");
    let ingest = env.spawn_ready_ingest(&[]);
    let http = client();
    let good = "msgid=b1&mno=35799123456&sid=ACME&status=delivered&datetime=2026-12-01+10:00:00";
    let cases: Vec<(String, &str)> = vec![
        ("mno=35799123456&sid=ACME&status=delivered".into(), "msgid"),
        (good.replace("mno=35799123456", "mno=12ab34"), "mno"),
        (good.replace("mno=35799123456", "mno=123"), "mno"),
        (good.replace("sid=ACME", "sid="), "sid"),
        (
            good.replace("status=delivered", "status=teleported"),
            "status",
        ),
        (
            good.replace("2026-12-01+10:00:00", "2099-01-01+00:00:00"),
            "datetime",
        ),
        (
            good.replace("2026-12-01+10:00:00", "next+tuesday"),
            "datetime",
        ),
        (format!("{good}&id=other"), "msgid"),
    ];

    for (query, field) in &cases {
        let response = http
            .get(ingest.url(&format!("/dlr?{query}")))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_report", "{query}");
        let named: Vec<&str> = body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(named.contains(field), "{query}: {body}");
    }

    let nul = http
        .get(ingest.url(&format!("/dlr?{good}&msgid=%00x")))
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), StatusCode::BAD_REQUEST);
    let body: Value = nul.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_request", "{body}");

    let not_json = http
        .post(ingest.url("/dlr"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let nested = http
        .post(ingest.url("/dlr"))
        .json(&json!({"msgid": ["a"], "mno": "35799123456", "sid": "A", "status": "failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nested.status(), StatusCode::BAD_REQUEST);
    let text = http
        .post(ingest.url("/dlr"))
        .header("content-type", "text/plain")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let sent_after = http
        .get(ingest.url(&format!("/dlr?{good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sent_after.status(), StatusCode::OK);

    assert_eq!(env.queue_depth(&env.amqp.queue).await, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_gives_503_with_retry_after_within_two_seconds() {
    let env = TestEnv::new("nobroker");
    let closed_port = harness::free_addr();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let closed_url = format!("amqp://guest:guest@{closed_port}/%2f");
    let http = client();

    for url in [closed_url, silent_url] {
        let ingest = env.spawn_ingest(&[("AMQP_URL", url.as_str())]);

        for _ in 0..3 {
            let started = Instant::now();
            let response = http
                .get(ingest.url("/dlr?msgid=x1&mno=35799123456&sid=A&status=delivered"))
                .send()
                .await
                .unwrap();

            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "broker_unavailable");
        }
        let ready = http.get(ingest.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_report_adds_no_row() {
    let env = TestEnv::new("dup");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let url =
        ingest.url("/dlr?msgid=d1&mno=35799123456&sid=A&status=delivered&datetime=1764583200");

    for _ in 0..3 {
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let marker = client()
        .get(ingest.url("/dlr?msgid=d2&mno=35799123456&sid=A&status=delivered"))
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), StatusCode::OK);

    assert!(env.wait_until(SETTLE, |e| e.message("d2").is_some()));
    assert!(env.wait_until(SETTLE, |e| e.queue_depth_blocking() == Some(0)));
    assert_eq!(
        env.count("SELECT count(*) AS n FROM status_transitions WHERE msg_id = 'd1'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) AS n FROM messages WHERE msg_id = 'd1'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_followed_by_an_older_enroute_keeps_delivered() {
    let env = TestEnv::new("order");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let base = "/dlr?msgid=o1&mno=35799123456&sid=A";

    let delivered = client()
        .get(ingest.url(&format!(
            "{base}&status=DELIVRD&datetime=2026-12-01+10:05:00"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::OK);
    assert!(env.wait_until(SETTLE, |e| e.message("o1").is_some()));
    let enroute = client()
        .get(ingest.url(&format!(
            "{base}&status=ENROUTE&datetime=2026-12-01+10:00:00"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(enroute.status(), StatusCode::OK);

    assert!(env.wait_until(SETTLE, |e| e.transitions().len() == 2));
    let row = env.message("o1").unwrap();
    assert_eq!(row.status, "delivered");
    let applied: Vec<(String, bool)> = env
        .transitions()
        .into_iter()
        .map(|t| (t.status, t.applied))
        .collect();
    assert_eq!(
        applied,
        vec![("enroute".into(), false), ("delivered".into(), true)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_services_export_prometheus_metrics_of_what_they_did() {
    let env = TestEnv::new("metrics");
    let processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[]);
    let http = client();

    for id in ["p1", "p2"] {
        let url = ingest.url(&format!(
            "/dlr?msgid={id}&mno=35799123456&sid=A&status=expired"
        ));
        assert_eq!(http.get(url).send().await.unwrap().status(), StatusCode::OK);
    }
    let bad = http.get(ingest.url("/dlr?msgid=p3")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(env.wait_until(SETTLE, |e| e.messages().len() == 2));

    let ingest_metrics = http.get(ingest.url("/metrics")).send().await.unwrap();
    let ingest_metrics = ingest_metrics.text().await.unwrap();
    assert!(ingest_metrics.contains("dlr_ingest_requests_total{outcome=\"accepted\"} 2"));
    assert!(ingest_metrics.contains("dlr_ingest_requests_total{outcome=\"invalid_report\"} 1"));
    assert!(ingest_metrics.contains("dlr_ingest_reports_total{status=\"expired\"} 2"));
    assert!(ingest_metrics.contains("dlr_ingest_publish_confirm_seconds_count 2"));
    let processor_metrics = http.get(processor.url("/metrics")).send().await.unwrap();
    let processor_metrics = processor_metrics.text().await.unwrap();
    assert!(processor_metrics.contains("dlr_processor_reports_total{status=\"expired\"} 2"));
    assert!(processor_metrics.contains("dlr_processor_batch_write_seconds_count"));
    assert!(processor_metrics.contains("dlr_processor_report_commit_age_seconds_count 2"));
    let age_sum: f64 = processor_metrics
        .lines()
        .find_map(|l| l.strip_prefix("dlr_processor_report_commit_age_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the commit age sum is exported");
    assert!(
        age_sum > 0.0 && age_sum < 2.0 * SETTLE.as_secs_f64(),
        "two reports stored within the settle time cannot be {age_sum} s old in all"
    );
}

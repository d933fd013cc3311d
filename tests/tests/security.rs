//! The public endpoint's defences, against the real binaries, RabbitMQ and PostgreSQL:
//! malformed floods leave nothing behind, forged, stale and altered requests are refused,
//! a replayed signed request changes nothing, and slow or greedy clients are cut off.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use base64::{engine::general_purpose::STANDARD, Engine as _};
use futures_util::StreamExt;
use harness::TestEnv;
use hmac::{Hmac, Mac};
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;
use sha2::Sha256;
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

const SETTLE: Duration = Duration::from_secs(10);
const TOKEN: &str = "flood-token-abcdefghijklmnop";
const OLD_TOKEN: &str = "rotating-out-token-0000000000";
const NEW_TOKEN: &str = "rotating-in-token-11111111111";
const OLD_SECRET: &str = "whsec_b2xkLXNpZ25pbmcta2V5LTAwMDAwMDAw";
const NEW_SECRET: &str = "whsec_bmV3LXNpZ25pbmcta2V5LTExMTExMTEx";
const UNKNOWN_SECRET: &str = "whsec_dW5rbm93bi1zaWduaW5nLWtleS0yMjIy";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const VALID: &str = "msgid=m1&mno=35799123456&sid=ACME&status=delivered";

/// One malformed request of the flood, chosen by `rng`: every one must get a 4xx.
fn malformed(http: &Client, base: &str, rng: &mut StdRng, index: usize) -> RequestBuilder {
    let form = |body: String| {
        http.post(format!("{base}/dlr"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let json = |body: Vec<u8>| {
        http.post(format!("{base}/dlr"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
    };
    let control = format!("%{:02X}", rng.random_range(0u8..0x20));

    if index.is_multiple_of(500) {
        return form(format!("{VALID}&note={}", "n".repeat(70 * 1024)));
    }
    match rng.random_range(0..10) {
        0 => form(format!("{VALID}&note=a{control}b")),
        1 => form(format!("{VALID}&note=%FF%FE")),
        2 => {
            json(br#"{"msgid":"m\u0000","mno":"35799123456","sid":"A","status":"failed"}"#.to_vec())
        }
        3 => json(b"{\"msgid\":\"m\xff\xfe\",\"mno\":\"35799123456\",\"sid\":\"A\"}".to_vec()),
        4 => {
            let key = "k".repeat(rng.random_range(65..500));
            http.get(format!("{base}/dlr/{TOKEN}?token={TOKEN}&{VALID}&{key}=1"))
        }
        5 => {
            let extra: Vec<String> = (0..rng.random_range(64..300))
                .map(|i| format!("x{i}=1"))
                .collect();
            form(format!("{VALID}&{}", extra.join("&")))
        }
        6 => {
            let kinds = [
                "application/json",
                "multipart/form-data; boundary=z",
                "text/plain",
            ];
            let bytes: Vec<u8> = (0..rng.random_range(1..400))
                .map(|_| rng.random())
                .collect();
            http.post(format!("{base}/dlr"))
                .bearer_auth(TOKEN)
                .header("content-type", kinds[rng.random_range(0..kinds.len())])
                .body(bytes)
        }
        7 => {
            let wrong = [
                "mno=123",
                "mno=12345678901234567",
                "datetime=1999-12-31+23:59:59",
                "datetime=2199-01-01+00:00:00",
                "datetime=99999999999999999",
                "msgid=&msgid=",
                "id=other",
            ];
            let query = format!("{VALID}&{}", wrong[rng.random_range(0..wrong.len())]);
            http.get(format!("{base}/dlr?{query}")).bearer_auth(TOKEN)
        }
        8 => http.get(format!("{base}/dlr?{VALID}")),
        _ => http
            .get(format!("{base}/dlr/{}?{VALID}", "w".repeat(24)))
            .bearer_auth("not-the-token-at-all-000"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_malformed_requests_leave_queue_and_database_untouched() {
    let env = TestEnv::new("flood");
    let _processor = env.spawn_ready_processor(&[]);
    let ingest = env.spawn_ready_ingest(&[("DLR_TOKENS", TOKEN)]);
    let http = client();
    let base = ingest.url("");
    let mut rng = StdRng::seed_from_u64(5);
    let requests: Vec<RequestBuilder> = (0..10_000)
        .map(|i| malformed(&http, &base, &mut rng, i))
        .collect();

    let statuses: Vec<u16> = futures_util::stream::iter(requests.into_iter().enumerate())
        .map(|(i, request)| async move {
            match request.send().await {
                Ok(response) => response.status().as_u16(),
                // A body over the limit is answered 413 before it has all been sent, and
                // the connection is closed; the client may see the close first.
                Err(e) if i % 500 == 0 && !e.is_timeout() => 413,
                Err(e) => panic!("request {i} failed: {e:?}"),
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    assert_eq!(statuses.len(), 10_000);
    let unexpected: Vec<&u16> = statuses
        .iter()
        .filter(|s| ![400, 401, 413, 415].contains(*s))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 4xx: {unexpected:?}"
    );
    assert!(statuses.contains(&401) && statuses.contains(&413) && statuses.contains(&415));
    let ready = http.get(ingest.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(env.queue_depth(&env.amqp.queue).await, Some(0));
    assert_eq!(env.count("SELECT count(*) AS n FROM messages"), 0);
    assert_eq!(env.count("SELECT count(*) AS n FROM status_transitions"), 0);
    let valid = http
        .get(ingest.url(&format!("/dlr?{VALID}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(valid.status(), StatusCode::OK);
    assert!(env.wait_until(SETTLE, |e| e.messages().len() == 1));
    let log = ingest.log();
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(!log.contains("panicked"), "a worker panicked");
}

fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A signed form POST; `signed_body` is what the signature covers, `body` what is sent.
struct Signed<'a> {
    path: String,
    token: Option<&'a str>,
    forwarded_for: Option<&'a str>,
    secret: &'a str,
    id: &'a str,
    timestamp: i64,
    signed_body: &'a str,
    body: &'a str,
}

impl Signed<'_> {
    fn send(&self, http: &Client, base: &str) -> RequestBuilder {
        let mut request = http
            .post(format!("{base}{}", self.path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("webhook-id", self.id)
            .header("webhook-timestamp", self.timestamp.to_string())
            .header(
                "webhook-signature",
                sign(self.secret, self.id, self.timestamp, self.signed_body),
            )
            .body(self.body.to_owned());
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        if let Some(address) = self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        request
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_stale_or_altered_requests_are_refused_and_a_replay_changes_nothing() {
    let env = TestEnv::new("forged");
    let _processor = env.spawn_ready_processor(&[]);
    let tokens = format!("{OLD_TOKEN},{NEW_TOKEN}");
    let secrets = format!("{OLD_SECRET},{NEW_SECRET}");
    let guarded = [
        ("DLR_TOKENS", tokens.as_str()),
        ("DLR_SIGNING_SECRETS", secrets.as_str()),
        ("DLR_ALLOW_CIDRS", "203.0.113.0/24"),
    ];
    let mut behind_proxy = guarded.to_vec();
    behind_proxy.push(("DLR_TRUSTED_PROXIES", "127.0.0.1/32"));
    let ingest = env.spawn_ready_ingest(&behind_proxy);
    let direct = env.spawn_ready_ingest(&guarded);
    let http = client();
    let base = ingest.url("");
    let now = chrono::Utc::now().timestamp();
    let body = "msgid=r1&mno=35799123456&sid=ACME&status=delivered";
    let good = Signed {
        path: "/dlr".into(),
        token: Some(NEW_TOKEN),
        forwarded_for: Some("203.0.113.7"),
        secret: NEW_SECRET,
        id: "msg_r1",
        timestamp: now,
        signed_body: body,
        body,
    };

    let with_token_in_body = format!("{body}&token={NEW_TOKEN}");
    let beside = format!("/dlr/guessed-token-000000000?token={NEW_TOKEN}");
    let forged = [
        (
            "a wrong token beside a right one",
            Signed {
                path: beside,
                token: None,
                ..good.clone()
            },
        ),
        (
            "no token",
            Signed {
                token: None,
                ..good.clone()
            },
        ),
        (
            "wrong token",
            Signed {
                token: Some("guessed-token-000000000"),
                ..good.clone()
            },
        ),
        (
            "token in the body",
            Signed {
                token: None,
                signed_body: &with_token_in_body,
                body: &with_token_in_body,
                ..good.clone()
            },
        ),
        (
            "unknown secret",
            Signed {
                secret: UNKNOWN_SECRET,
                ..good.clone()
            },
        ),
        (
            "altered body",
            Signed {
                body: "msgid=r1&mno=35799000000&sid=ACME&status=failed",
                ..good.clone()
            },
        ),
        (
            "stale",
            Signed {
                timestamp: now - 301,
                ..good.clone()
            },
        ),
        (
            "from the future",
            Signed {
                timestamp: now + 301,
                ..good.clone()
            },
        ),
        (
            "address outside the list",
            Signed {
                forwarded_for: Some("198.51.100.1"),
                ..good.clone()
            },
        ),
        (
            "no forwarded address",
            Signed {
                forwarded_for: None,
                ..good.clone()
            },
        ),
    ];
    for (what, request) in &forged {
        let response = request.send(&http, &base).send().await.unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "unauthorized", "{what}");
        assert_eq!(
            answer["error"]["message"], "missing or invalid credentials",
            "{what}"
        );
    }
    let unsigned = http
        .post(ingest.url("/dlr"))
        .bearer_auth(NEW_TOKEN)
        .header("x-forwarded-for", "203.0.113.7")
        .form(&[
            ("msgid", "r1"),
            ("mno", "35799123456"),
            ("sid", "A"),
            ("status", "failed"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let unsigned_field = Signed {
        path: format!("/dlr?token={NEW_TOKEN}&err=forged"),
        token: None,
        ..good.clone()
    };
    let outside = unsigned_field.send(&http, &base).send().await.unwrap();
    assert_eq!(
        outside.status(),
        StatusCode::BAD_REQUEST,
        "a field outside the signature"
    );
    let spoofed = good.send(&http, &direct.url("")).send().await.unwrap();
    assert_eq!(
        spoofed.status(),
        StatusCode::UNAUTHORIZED,
        "spoofed forwarded address"
    );

    let first = good.send(&http, &base).send().await.unwrap();
    let replayed = good.send(&http, &base).send().await.unwrap();
    let by_path = Signed {
        path: format!("/dlr/{OLD_TOKEN}?token={OLD_TOKEN}"),
        token: None,
        secret: OLD_SECRET,
        id: "msg_r2",
        signed_body: "msgid=r2&mno=35799123456&sid=ACME&status=failed",
        body: "msgid=r2&mno=35799123456&sid=ACME&status=failed",
        ..good.clone()
    };
    let rotated = by_path.send(&http, &base).send().await.unwrap();

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(replayed.status(), StatusCode::OK);
    let replay_answer: Value = replayed.json().await.unwrap();
    assert_eq!(replay_answer["result"], "already_accepted");
    assert_eq!(rotated.status(), StatusCode::OK);
    assert!(env.wait_until(SETTLE, |e| e.transitions().len() == 2));
    assert!(env.wait_until(SETTLE, |e| e.queue_depth_blocking() == Some(0)));
    let transitions = env.transitions();
    let ids: Vec<&str> = transitions.iter().map(|t| t.msg_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert!(
        transitions[1].raw_fields.get("query").is_none(),
        "{:?}",
        transitions[1]
    );
    for service in [&ingest, &direct] {
        let log = service.log();
        for secret in [OLD_TOKEN, NEW_TOKEN, OLD_SECRET, NEW_SECRET] {
            assert!(!log.contains(secret), "a secret is in the log");
        }
    }
}

impl Clone for Signed<'_> {
    fn clone(&self) -> Self {
        Signed {
            path: self.path.clone(),
            ..*self
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_over_its_rate_gets_429_with_retry_after() {
    let env = TestEnv::new("rate");
    let ingest = env.spawn_ingest(&[
        ("DLR_TOKENS", TOKEN),
        ("DLR_RATE_LIMIT_PER_SEC", "1"),
        ("DLR_RATE_LIMIT_BURST", "3"),
    ]);
    let http = client();

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = http
            .get(ingest.url("/dlr?msgid=x"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status(),
            response.headers().get("retry-after").cloned(),
        ));
    }

    let codes: Vec<u16> = statuses.iter().map(|(s, _)| s.as_u16()).collect();
    assert_eq!(&codes[..3], [400, 400, 400]);
    assert_eq!(codes[3], 429);
    assert_eq!(statuses[3].1.as_ref().unwrap().to_str().unwrap(), "1");
}

/// Sends `head` and then waits up to 5 s, returning what the server answered and
/// whether it closed the connection.
fn answer_to_stalled(addr: std::net::SocketAddr, head: &str) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let closed = stream.read_to_end(&mut answer).is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let env = TestEnv::new("slow");
    let slow_head_limit = env.spawn_ingest(&[("INGEST_HEADER_TIMEOUT_MS", "300")]);
    let slow_body_limit = env.spawn_ingest(&[("INGEST_BODY_TIMEOUT_MS", "300")]);

    let (slow_head, head_closed) =
        answer_to_stalled(slow_head_limit.addr, "GET /dlr HTTP/1.1\r\nHost: x\r\n");
    let (slow_body, _) = answer_to_stalled(
        slow_body_limit.addr,
        "POST /dlr HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\nmsgid=1",
    );

    assert!(
        head_closed,
        "the server kept a stalled head open: {slow_head}"
    );
    assert!(
        slow_head.is_empty() || slow_head.starts_with("HTTP/1.1 408"),
        "{slow_head}"
    );
    assert!(slow_body.starts_with("HTTP/1.1 408"), "{slow_body}");
    assert!(slow_body.contains("request_timeout"), "{slow_body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_token_file_takes_effect_on_sighup_without_a_restart() {
    let env = TestEnv::new("rotate");
    let path = std::env::temp_dir().join(format!("{}-tokens", env.name));
    std::fs::write(&path, format!("# before rotation\n{OLD_TOKEN}\n")).unwrap();
    let file = path.to_str().unwrap();
    let ingest = env.spawn_ingest(&[
        ("DLR_TOKENS_FILE", file),
        ("DLR_TOKENS_RELOAD_SECS", "3600"),
    ]);
    let http = client();
    let status_with = |token: &'static str| {
        let request = http.get(ingest.url("/dlr?msgid=x")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status_with(OLD_TOKEN).await, StatusCode::BAD_REQUEST);
    assert_eq!(status_with(NEW_TOKEN).await, StatusCode::UNAUTHORIZED);

    std::fs::write(&path, format!("{NEW_TOKEN}\n")).unwrap();
    let signalled = std::process::Command::new("kill")
        .args(["-HUP", &ingest.pid().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status_with(NEW_TOKEN).await != StatusCode::BAD_REQUEST {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token was not taken up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_after = status_with(OLD_TOKEN).await;
    let _ = std::fs::remove_file(&path);

    assert!(signalled.success());
    assert_eq!(old_after, StatusCode::UNAUTHORIZED);
    assert!(!ingest.log().contains(NEW_TOKEN));
}

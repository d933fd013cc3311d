//! Property tests of the HTTP layer against hostile requests, through the real routes and
//! checks, with a broker handle that is down for good ([`Broker::detached`]). Publishing
//! then fails with 503, so a 503 means a request got as far as the broker, and a 4xx
//! means it was refused before: malformed input must always get a 4xx, never a panic,
//! a 5xx or a 200.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use actix_web::{
    dev::{Service, ServiceResponse},
    test as actix_test, web, App,
};
use futures_util::FutureExt;
use ingest::{
    auth::{AuthSettings, Guard, Secret, TokenSource},
    broker::Broker,
    limits::LimitSettings,
    metrics::IngestMetrics,
    quarantine::Quarantine,
    routes::{self, AppState},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseResult, TestRunner},
};
use shared::{amqp::AmqpSettings, GatewayZone, Rules};
use std::{panic::AssertUnwindSafe, time::Duration};

const TOKEN: &str = "hostile-test-token-0123456789";
const MAX_BODY: usize = 64 * 1024;
const CASES: u32 = 256;
/// The status reported for a request whose handling panicked; a real server would drop
/// the connection.
const PANICKED: u16 = 999;

/// A request as bytes, so it can carry anything a client can send.
#[derive(Clone, Debug)]
struct RawRequest {
    post: bool,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

/// How a request carries its fields.
#[derive(Clone, Copy, Debug)]
enum Format {
    Query,
    Form,
    Json,
    Multipart,
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn state() -> web::Data<AppState> {
    let auth = AuthSettings {
        tokens: Some(TokenSource::Inline(vec![Secret::parse(TOKEN).unwrap()])),
        ..AuthSettings::default()
    };
    let limits = LimitSettings {
        max_body_bytes: MAX_BODY,
        body_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(5),
        keep_alive: Duration::from_secs(5),
        disconnect_timeout: Duration::from_secs(1),
        rate: None,
    };
    let metrics = IngestMetrics::new().unwrap();
    web::Data::new(AppState {
        broker: Broker::detached(AmqpSettings::isolated("amqp://127.0.0.1:1/%2f", "hostile")),
        gateway_zone: GatewayZone::default(),
        guard: Guard::new(&auth, &limits),
        rules: Rules::default(),
        quarantine: Quarantine::new(0, metrics.quarantined.clone()),
        metrics,
    })
}

/// Runs `check` on the status (and body) of every generated request, through one app.
fn for_all<S>(strategy: S, check: impl Fn(&S::Value, u16, &str) -> TestCaseResult)
where
    S: Strategy,
    S::Value: AsRequest,
{
    let system = actix_rt::System::new();
    let app = system.block_on(actix_test::init_service(
        App::new().app_data(state()).configure(routes::configure),
    ));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        ..Config::default()
    });

    let outcome = runner.run(&strategy, |case| {
        let (status, body) = system.block_on(send(&app, &case.as_request()));
        check(&case, status, &body)
    });

    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

trait AsRequest: std::fmt::Debug {
    fn as_request(&self) -> RawRequest;
}

impl AsRequest for RawRequest {
    fn as_request(&self) -> RawRequest {
        self.clone()
    }
}

async fn send<S>(app: &S, raw: &RawRequest) -> (u16, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let uri = if raw.query.is_empty() {
        raw.path.clone()
    } else {
        format!("{}?{}", raw.path, raw.query)
    };
    let mut request = if raw.post {
        actix_test::TestRequest::post()
    } else {
        actix_test::TestRequest::get()
    };
    request = request
        .uri(&uri)
        .peer_addr("192.0.2.10:40000".parse().unwrap());
    if let Some(content_type) = &raw.content_type {
        request = request.insert_header(("content-type", content_type.as_str()));
    }
    for (name, value) in &raw.headers {
        request = request.append_header((name.as_str(), value.as_str()));
    }
    let request = request.set_payload(raw.body.clone()).to_request();

    let called = AssertUnwindSafe(actix_test::try_call_service(app, request)).catch_unwind();
    let response = match called.await {
        Err(_) => return (PANICKED, "the handler panicked".into()),
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let response = e.as_response_error().error_response();
            return (response.status().as_u16(), String::new());
        }
    };
    let status = response.status().as_u16();
    let body = actix_test::read_body(response).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn bearer() -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {TOKEN}"))]
}

fn valid_pairs() -> Pairs {
    [
        ("msgid", "hostile-1"),
        ("mno", "35799123456"),
        ("sid", "ACME"),
        ("status", "DELIVRD"),
        ("datetime", "2026-12-01 10:00:00"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

/// Percent-encodes every byte, so the query or form carries exactly these bytes.
fn percent_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A JSON string literal holding these bytes: quotes, backslashes and control bytes
/// escaped, every other byte (invalid UTF-8 included) written as it is.
fn json_literal(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in bytes {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

/// Writes the pairs in a format, authenticated with the bearer token.
fn encode(format: Format, pairs: &Pairs) -> RawRequest {
    let form = || {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_all(k), percent_all(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut raw = RawRequest {
        post: true,
        path: "/dlr".into(),
        query: String::new(),
        content_type: None,
        body: Vec::new(),
        headers: bearer(),
    };
    match format {
        Format::Query => {
            raw.post = false;
            raw.query = form();
        }
        Format::Form => {
            raw.content_type = Some("application/x-www-form-urlencoded".into());
            raw.body = form().into_bytes();
        }
        Format::Json => {
            raw.content_type = Some("application/json".into());
            raw.body.push(b'{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    raw.body.push(b',');
                }
                raw.body.extend(json_literal(k));
                raw.body.push(b':');
                raw.body.extend(json_literal(v));
            }
            raw.body.push(b'}');
        }
        Format::Multipart => {
            let boundary = "hostile-boundary-7f3a";
            raw.content_type = Some(format!("multipart/form-data; boundary={boundary}"));
            for (k, v) in pairs {
                raw.body.extend(format!("--{boundary}\r\n").as_bytes());
                raw.body.extend(b"Content-Disposition: form-data; name=\"");
                raw.body.extend(k);
                raw.body.extend(b"\"\r\n\r\n");
                raw.body.extend(v);
                raw.body.extend(b"\r\n");
            }
            raw.body.extend(format!("--{boundary}--\r\n").as_bytes());
        }
    }
    raw
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::Query),
        Just(Format::Form),
        Just(Format::Json),
        Just(Format::Multipart),
    ]
}

/// One way to make a valid report malformed.
#[derive(Clone, Debug)]
enum Corruption {
    /// A control character (NUL included) inside a key or a value.
    Control {
        index: usize,
        in_key: bool,
        at: usize,
        byte: u8,
    },
    /// Bytes that are not UTF-8 inside a value.
    NotUtf8 { index: usize, bytes: Vec<u8> },
    /// A key longer than any bound.
    HugeKey(usize),
    /// A report field's value past its bound, or any value past the general bound.
    HugeValue { known: bool, len: usize },
    /// More pairs than allowed.
    TooMany(usize),
    /// The message id twice with different values.
    Repeated,
    /// A number or time past its bound.
    PastBound(&'static str, String),
}

#[derive(Clone, Debug)]
struct Malformed {
    format: Format,
    corruption: Corruption,
}

impl AsRequest for Malformed {
    fn as_request(&self) -> RawRequest {
        let mut pairs = valid_pairs();
        match &self.corruption {
            Corruption::Control {
                index,
                in_key,
                at,
                byte,
            } => {
                let pair = &mut pairs[index % 5];
                let target = if *in_key { &mut pair.0 } else { &mut pair.1 };
                let cut = at % (target.len() + 1);
                target.insert(cut, *byte);
            }
            Corruption::NotUtf8 { index, bytes } => pairs[index % 5].1.extend(bytes),
            Corruption::HugeKey(len) => pairs.push((vec![b'k'; *len], b"v".to_vec())),
            Corruption::HugeValue { known: true, len } => pairs[2].1 = vec![b's'; *len],
            Corruption::HugeValue { known: false, len } => {
                pairs.push((b"note".to_vec(), vec![b'n'; *len]));
            }
            Corruption::TooMany(extra) => {
                for i in 0..*extra {
                    pairs.push((format!("extra{i}").into_bytes(), b"1".to_vec()));
                }
            }
            Corruption::Repeated => pairs.push((b"id".to_vec(), b"other-id".to_vec())),
            Corruption::PastBound(field, value) => {
                pairs.retain(|(k, _)| k != field.as_bytes());
                pairs.push((field.as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
        }
        encode(self.format, &pairs)
    }
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let control = prop_oneof![Just(0u8), 1u8..0x20, Just(0x7f)];
    let not_utf8 = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc3, 0x28]),
        Just(vec![0xe2, 0x82]),
        Just(vec![0xed, 0xa0, 0x80]),
        Just(vec![0xf8, 0x88, 0x80, 0x80, 0x80]),
        prop::collection::vec(0x80u8..=0xff, 1..4)
            .prop_filter("not UTF-8", |b| { std::str::from_utf8(b).is_err() }),
    ];
    let past_bound = prop_oneof![
        "[0-9]{1,5}".prop_map(|d| Corruption::PastBound("mno", d)),
        "[1-9][0-9]{15,20}".prop_map(|d| Corruption::PastBound("mno", d)),
        "i{129,200}".prop_map(|v| Corruption::PastBound("msgid", v)),
        (1900u32..2000)
            .prop_map(|y| Corruption::PastBound("datetime", format!("{y}-06-01 00:00:00"))),
        (2027u32..2200)
            .prop_map(|y| Corruption::PastBound("datetime", format!("{y}-06-01 00:00:00"))),
        (0u64..946_684_800).prop_map(|s| Corruption::PastBound("datetime", format!("{s}.0"))),
        "[0-9]{15,30}".prop_map(|s| Corruption::PastBound("datetime", s)),
        "2026-(1[3-9]|[2-9][0-9])-01 10:00:00".prop_map(|s| Corruption::PastBound("datetime", s)),
    ];
    prop_oneof![
        (any::<usize>(), any::<bool>(), any::<usize>(), control).prop_map(
            |(index, in_key, at, byte)| Corruption::Control {
                index,
                in_key,
                at,
                byte
            }
        ),
        (any::<usize>(), not_utf8).prop_map(|(index, bytes)| Corruption::NotUtf8 { index, bytes }),
        (65usize..400).prop_map(Corruption::HugeKey),
        (257usize..3000).prop_map(|len| Corruption::HugeValue { known: true, len }),
        (2049usize..8000).prop_map(|len| Corruption::HugeValue { known: false, len }),
        (60usize..200).prop_map(Corruption::TooMany),
        Just(Corruption::Repeated),
        past_bound,
    ]
}

/// Query-string pieces that trip naive decoders.
fn query_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "%00",
            "%FF",
            "%C3",
            "%C3%28",
            "%E2%82",
            "%ED%A0%80",
            "%",
            "%%",
            "%G1",
            "%2",
            "+",
            "&",
            "=",
            "&&",
            "==",
            "%26",
            "%3D",
            "%2B",
            "msgid",
            "mno",
            "sid",
            "status",
            "datetime",
            "token",
            "%6D%73%67%69%64",
            "%0A",
            "%0D%0A",
            "%7F",
            "%C2%85",
            "35799123456",
            "DELIVRD",
            "9999999999999999999999",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9._~-]{1,12}",
    ]
}

/// Pieces of multipart framing, to put boundaries and line breaks where parsers slip.
fn multipart_piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "\r\n",
        "\n",
        "\r",
        "-",
        "--",
        "b",
        "--b",
        "--bbbb",
        "--bbbb--",
        "--bbbb\r\n",
        "--b--",
        "--b\r\n",
        "x",
        "Content-Disposition: form-data; name=\"msgid\"",
        "Content-Disposition: form-data",
        "name=\"\"",
        ";",
    ])
    .prop_map(str::to_owned)
}

fn random_request() -> impl Strategy<Value = RawRequest> {
    let content_type = prop_oneof![
        Just(None),
        Just(Some("application/x-www-form-urlencoded".to_owned())),
        Just(Some("application/json".to_owned())),
        Just(Some(
            "application/vnd.gateway+json; charset=latin1".to_owned()
        )),
        Just(Some("multipart/form-data; boundary=b".to_owned())),
        Just(Some("multipart/form-data; boundary=bbbb".to_owned())),
        Just(Some("multipart/form-data".to_owned())),
        Just(Some("text/plain".to_owned())),
        Just(Some("application/octet-stream".to_owned())),
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "\\{(\"[a-z]{1,8}\":(\"[^\"]{0,20}\"|[0-9eE.+-]{1,30}|null|true|\\[\\]|\\{\\}),?){0,8}\\}"
            .prop_map(String::into_bytes),
        prop::collection::vec(query_piece(), 0..40).prop_map(|p| p.concat().into_bytes()),
        prop::collection::vec(multipart_piece(), 0..12).prop_map(|p| p.concat().into_bytes()),
        concat!(
            "--b\r\nContent-Disposition: form-data; name=\"[^\"]{0,10}\"\r\n\r\n",
            "[^\r]{0,20}\r\n(--b--\r\n)?"
        )
        .prop_map(String::into_bytes),
    ];
    (
        any::<bool>(),
        prop::collection::vec(query_piece(), 0..40),
        content_type,
        body,
    )
        .prop_map(|(post, query, content_type, body)| RawRequest {
            post,
            path: "/dlr".into(),
            query: query.concat(),
            content_type,
            body: if post { body } else { Vec::new() },
            headers: bearer(),
        })
}

#[test]
fn a_valid_report_in_every_format_reaches_the_broker() {
    for format in [Format::Query, Format::Form, Format::Json, Format::Multipart] {
        let request = encode(format, &valid_pairs());

        for_all(Just(request), |_, status, body| {
            prop_assert_eq!(status, 503, "{:?}: {}", format, body);
            Ok(())
        });
    }
}

#[test]
fn malformed_reports_always_get_a_4xx_and_never_reach_the_broker() {
    let strategy =
        (format(), corruption()).prop_map(|(format, corruption)| Malformed { format, corruption });

    for_all(strategy, |case, status, body| {
        prop_assert!(
            status == 400 || status == 413,
            "{case:?} answered {status}: {body}"
        );
        Ok(())
    });
}

#[test]
fn random_requests_never_panic_nor_answer_a_server_error_other_than_broker_down() {
    for_all(random_request(), |case, status, body| {
        let presents_a_query_token = case.query.to_ascii_lowercase().contains("token");
        let refused_token = status == 401 && presents_a_query_token;
        prop_assert!(
            [400, 413, 415, 503].contains(&status) || refused_token,
            "{case:?} answered {status}: {body}"
        );
        Ok(())
    });
}

#[test]
fn bodies_over_the_limit_get_413_whatever_their_content() {
    let strategy = (MAX_BODY + 1..MAX_BODY * 3, any::<u8>()).prop_map(|(len, byte)| RawRequest {
        post: true,
        path: "/dlr".into(),
        query: String::new(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        body: vec![byte; len],
        headers: bearer(),
    });

    for_all(strategy, |_, status, _| {
        prop_assert_eq!(status, 413);
        Ok(())
    });
}

/// Where a request puts credentials that must not be accepted.
#[derive(Clone, Debug)]
enum BadCredential {
    None,
    WrongBearer(String),
    WrongPath(String),
    WrongQuery(String),
    InBody,
    BasicScheme,
    GoodAndWrong(String),
    Altered(usize, char),
}

impl AsRequest for (Format, BadCredential) {
    fn as_request(&self) -> RawRequest {
        let (format, credential) = self;
        let mut pairs = valid_pairs();
        if matches!(credential, BadCredential::InBody) {
            pairs.push((b"token".to_vec(), TOKEN.as_bytes().to_vec()));
        }
        let format = match (format, credential) {
            (Format::Query, BadCredential::InBody) => Format::Form,
            _ => *format,
        };
        let mut raw = encode(format, &pairs);
        raw.headers.clear();
        let append_query = |raw: &mut RawRequest, token: &str| {
            let sep = if raw.query.is_empty() { "" } else { "&" };
            raw.query = format!("{}{sep}token={token}", raw.query);
        };
        match credential {
            BadCredential::None | BadCredential::InBody => {}
            BadCredential::WrongBearer(t) => {
                raw.headers
                    .push(("authorization".into(), format!("Bearer {t}")));
            }
            BadCredential::WrongPath(t) => raw.path = format!("/dlr/{t}"),
            BadCredential::WrongQuery(t) => append_query(&mut raw, t),
            BadCredential::BasicScheme => {
                raw.headers
                    .push(("authorization".into(), format!("Basic {TOKEN}")));
            }
            BadCredential::GoodAndWrong(t) => {
                raw.headers
                    .push(("authorization".into(), format!("Bearer {TOKEN}")));
                append_query(&mut raw, t);
            }
            BadCredential::Altered(at, c) => {
                let mut token: Vec<char> = TOKEN.chars().collect();
                let i = at % token.len();
                if token[i] == *c {
                    token[i] = if *c == 'x' { 'y' } else { 'x' };
                } else {
                    token[i] = *c;
                }
                let token: String = token.into_iter().collect();
                raw.headers
                    .push(("authorization".into(), format!("Bearer {token}")));
            }
        }
        raw
    }
}

#[test]
fn requests_without_a_valid_token_get_the_same_bare_401() {
    let wrong = "[A-Za-z0-9._~-]{0,40}";
    let credential = prop_oneof![
        Just(BadCredential::None),
        wrong.prop_map(BadCredential::WrongBearer),
        "[A-Za-z0-9._~-]{1,40}".prop_map(BadCredential::WrongPath),
        wrong.prop_map(BadCredential::WrongQuery),
        Just(BadCredential::InBody),
        Just(BadCredential::BasicScheme),
        wrong.prop_map(BadCredential::GoodAndWrong),
        (any::<usize>(), prop::char::range('-', 'z'))
            .prop_map(|(at, c)| BadCredential::Altered(at, c)),
    ];

    for_all((format(), credential), |case, status, body| {
        prop_assert_eq!(status, 401, "{:?}: {}", case, body);
        let expected =
            r#"{"error":{"code":"unauthorized","message":"missing or invalid credentials"}}"#;
        prop_assert_eq!(body, expected);
        Ok(())
    });
}

#[test]
fn a_valid_token_is_accepted_in_the_path_the_query_or_the_header() {
    let places = [
        ("/dlr", format!("token={TOKEN}"), None),
        ("/dlr", format!("TOKEN={TOKEN}"), None),
        ("/dlr", String::new(), Some(format!("Bearer {TOKEN}"))),
        ("/dlr", String::new(), Some(format!("bearer   {TOKEN}"))),
    ];
    let mut requests: Vec<RawRequest> = places
        .into_iter()
        .map(|(path, token_query, header)| {
            let mut raw = encode(Format::Form, &valid_pairs());
            raw.path = path.into();
            raw.query = token_query;
            raw.headers = header
                .map(|h| ("authorization".into(), h))
                .into_iter()
                .collect();
            raw
        })
        .collect();
    let mut in_path = encode(Format::Json, &valid_pairs());
    in_path.path = format!("/dlr/{TOKEN}");
    in_path.headers.clear();
    requests.push(in_path);

    for request in requests {
        for_all(Just(request), |case, status, body| {
            prop_assert_eq!(status, 503, "{:?}: {}", case, body);
            Ok(())
        });
    }
}

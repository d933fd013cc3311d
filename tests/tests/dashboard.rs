//! The dashboard in a real browser: headless Chromium, driven through ChromeDriver over
//! WebDriver, logs in through the page's form against a running processor with data and
//! checks what the page shows. A screenshot is saved to `target/dashboard.png`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`), which `scripts/browser.sh` installs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use chrono::{Duration as Span, SecondsFormat, Utc};
use diesel::connection::SimpleConnection;
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use harness::{free_addr, TestEnv};
use serde_json::{json, Map};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const TOKEN: &str = "browser-token-0123456789";
const WAIT: Duration = Duration::from_secs(15);

/// ChromeDriver on a free port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = free_addr().port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: run scripts/browser.sh");
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };

        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut capabilities = Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );

        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `css` until an element is displayed and `check` accepts its text.
async fn wait_for_text(browser: &Client, css: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if element.is_displayed().await.unwrap_or(false) {
                last = element.text().await.unwrap_or_default();
                if check(&last) {
                    return last;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed the expected text; last seen: {last:?}");
}

async fn displayed(browser: &Client, css: &str) -> bool {
    let element: Element = browser.find(Locator::Css(css)).await.unwrap();
    element.is_displayed().await.unwrap()
}

/// Seven messages of the last few hours: five delivered, one expired, one en route;
/// `dash-7` has three reports.
fn seed(env: &TestEnv) {
    let now = Utc::now();
    let at = |hours_ago: i64| {
        (now - Span::hours(hours_ago) - Span::minutes(5)).to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    let mut sql = String::new();
    let rows = [
        (1, "delivered", 6),
        (2, "delivered", 5),
        (3, "delivered", 5),
        (4, "expired", 4),
        (5, "delivered", 3),
        (6, "enroute", 2),
        (7, "delivered", 1),
    ];
    for (n, status, hours_ago) in rows {
        let (is_final, rank) = match status {
            "delivered" => (true, 8),
            "expired" => (true, 6),
            _ => (false, 2),
        };
        sql.push_str(&format!(
            "INSERT INTO messages (msg_id, recipient, sender, status, is_final, status_rank, \
             status_at, status_at_source, first_received_at) VALUES ('dash-{n}', \
             '3579912345{n}', 'ACME', '{status}', {is_final}, {rank}, '{}', 'gateway', '{}');",
            at(hours_ago),
            at(hours_ago)
        ));
    }
    for (status, raw, minutes) in [("accepted", "ACCEPTD", 2), ("enroute", "ENROUTE", 1)] {
        sql.push_str(&format!(
            "INSERT INTO status_transitions (msg_id, status, status_raw, status_at, \
             status_at_source, received_at, recipient, sender, raw_fields) VALUES ('dash-7', \
             '{status}', '{raw}', timestamptz '{}' - interval '{minutes} minutes', 'gateway', \
             now(), '35799123457', 'ACME', '{{}}');",
            at(1)
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO status_transitions (msg_id, status, status_raw, status_at, \
         status_at_source, received_at, recipient, sender, raw_fields, applied) VALUES \
         ('dash-7', 'delivered', 'DELIVRD', '{}', 'gateway', now(), '35799123457', 'ACME', \
         '{{}}', true);",
        at(1)
    ));
    env.db().batch_execute(&sql).unwrap();
}

fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_logs_in_and_sees_totals_messages_and_a_history() {
    let env = TestEnv::new("browser");
    env.create_database();
    seed(&env);
    let processor = env.spawn_processor(&[("API_TOKENS", TOKEN)]);
    let driver = ChromeDriver::start();
    let profile = std::env::temp_dir().join(format!("{}-chromium", env.name));
    let browser = driver.browser(&profile).await;

    browser.goto(&processor.url("/")).await.unwrap();
    wait_for_text(&browser, "#login-form h2", |t| t == "Sign in").await;
    let hidden_before_login = !displayed(&browser, "#dashboard-view").await;
    let token_field = browser.find(Locator::Css("#token")).await.unwrap();
    token_field
        .send_keys("wrong-token-0123456789")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refusal = wait_for_text(&browser, "#login-error", |t| !t.is_empty()).await;

    let token_field = browser.find(Locator::Css("#token")).await.unwrap();
    token_field.send_keys(TOKEN).await.unwrap();
    browser
        .find(Locator::Css("#login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let total = wait_for_text(&browser, "#total-messages", |t| t != "-").await;
    let delivered = wait_for_text(&browser, "#total-delivered", |t| t != "-").await;
    let rate = wait_for_text(&browser, "#delivery-rate", |t| t != "-").await;
    let first_row = wait_for_text(&browser, "#messages tbody tr", |t| t.contains("dash-")).await;
    let bars = browser
        .find_all(Locator::Css("#chart svg rect"))
        .await
        .unwrap();

    browser
        .find(Locator::Css("#messages tbody tr[data-msgid='dash-7']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let history = wait_for_text(&browser, "#history-list", |t| t.contains("DELIVRD")).await;
    let summary = wait_for_text(&browser, "#history-summary", |t| t.contains("dash-7")).await;
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path(), &png).unwrap();
    browser.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);

    assert!(hidden_before_login, "data was visible before login");
    assert!(refusal.contains("not accepted"), "{refusal}");
    assert_eq!(total, "7");
    assert_eq!(delivered, "5");
    assert_eq!(rate, "83.3 %");
    assert!(first_row.starts_with("dash-7"), "{first_row}");
    assert!(
        first_row.contains("********457"),
        "numbers are not masked: {first_row}"
    );
    assert!(first_row.contains("delivered"), "{first_row}");
    assert_eq!(bars.len(), 6, "one bar segment per (hour, status) pair");
    let reports: Vec<&str> = history.lines().collect();
    assert_eq!(reports.len(), 3, "{history}");
    assert!(reports[0].starts_with("accepted"), "{history}");
    assert!(reports[2].starts_with("delivered"), "{history}");
    assert!(summary.contains("********457"), "{summary}");
    assert!(png.len() > 10_000, "the screenshot is suspiciously small");
}

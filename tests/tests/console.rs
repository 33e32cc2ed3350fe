//! The web console, driven in headless Chromium through chromedriver
//! (WebDriver), against the real binary: an analyst logs in with a token,
//! sees an alert arrive live, opens it, marks it a false positive and lifts
//! the block its rule set; an auditor sees the alerts but no controls to
//! change them; the page loads nothing from another origin.
//!
//! Chromium and chromedriver are required, not optional: `.ci/run` installs
//! them (`apt-get install chromium chromium-driver`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use haechi_tests::{http, new_identities_config, onboarding, send_as, Server};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INGEST: &str = "ingest-token";
const ANALYST: &str = "analyst-token-of-kim";
const AUDITOR: &str = "auditor-token-of-lee";
/// How long a condition the page reaches by itself (a fetch, a stream frame) may take. A
/// deadline for a failure message, not a pace: every wait returns as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(30);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free loopback port.
fn chromedriver() -> (Driver, String) {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(std::path::Path::new(path).exists(), "{path} is missing: the console test needs Debian's chromium and chromium-driver; `.ci/run` installs them");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    // Ready when it takes connections.
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Driver(child), url)
}

async fn browser(webdriver: &str) -> Client {
    // The WebDriver client is built with rustls (chromedriver is reached over plain loopback HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"] }),
    );
    ClientBuilder::rustls().unwrap().capabilities(caps).connect(webdriver).await.expect("a Chromium session")
}

/// Wait until `probe` gives `Some`, polling; panics with `what` at the deadline.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "the console never showed: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn login(c: &Client, base: &str, token: &str, who: &str) {
    c.goto(&format!("{base}/console")).await.unwrap();
    let field = c.wait().at_most(DEADLINE).for_element(Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
    until(&format!("#whoami = {who}"), || async { text_of(c, "#whoami").await.filter(|t| t.contains(who)) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_sees_an_alert_arrive_opens_it_marks_it_false_positive_and_lifts_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = new_identities_config(dir.path(), &[("pipe", "ingest", INGEST), ("kim", "analyst", ANALYST), ("lee", "auditor", AUDITOR)]);
    let s = Server::try_start_serving(&["--config", cfg.to_str().unwrap()], &["--listen", "127.0.0.1:0"]).unwrap_or_else(|l| panic!("{l}"));
    let base = s.url("");
    let base = base.trim_end_matches('/');
    let (_driver, webdriver) = chromedriver();
    let c = browser(&webdriver).await;

    // A wrong token is refused on the page.
    c.goto(&format!("{base}/console")).await.unwrap();
    c.wait().at_most(DEADLINE).for_element(Locator::Css("#token")).await.unwrap().send_keys("not-a-token").await.unwrap();
    c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
    until("a login error", || async { text_of(&c, "#login-error").await.filter(|t| !t.trim().is_empty()) }).await;

    login(&c, base, ANALYST, "kim (analyst)").await;
    // The stream is open (not the polling fallback); then traffic arrives while the page is open.
    until("the live stream open", || async { text_of(&c, "#live").await.filter(|t| t.trim() == "Live") }).await;
    let nat = "203.0.113.9";
    let (st, body) = send_as(&http(), Some(INGEST), "POST", &s.url("/v1/events"), Some(onboarding("cb", nat, 0..4).as_bytes()));
    assert_eq!(st, 200, "{body}");
    let alerts: Value = serde_json::from_str(&send_as(&http(), Some(ANALYST), "GET", &s.url("/v1/alerts"), None).1).unwrap();
    let id = alerts.as_array().unwrap().iter().find(|a| a["entity"] == nat).expect("an alert on the address")["id"].as_str().unwrap().to_owned();
    let row = format!("tr[data-alert-id=\"{id}\"]");
    until("the alert arriving live in the feed", || async { c.find(Locator::Css(&row)).await.ok() }).await.click().await.unwrap();
    // It came over the stream: the page never fell back to polling for it.
    let polls = c.execute("return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/alerts?since=')).length", vec![]).await.unwrap();
    assert_eq!(polls, serde_json::json!(0), "the alert came by polling, not the stream");

    // Its detail: the rule, the entity, the evidence.
    let detail = until("the alert's detail", || async { text_of(&c, "#alert-detail").await.filter(|t| t.contains("many_new_identities_on_one_address")) }).await;
    assert!(detail.contains(nat), "{detail}");
    assert!(detail.contains("ip.distinct_new_identities_24h"), "the evidence is shown: {detail}");

    // Marked a false positive, as kim.
    c.find(Locator::Css("#mark-fp")).await.unwrap().click().await.unwrap();
    until("the false-positive label", || async { text_of(&c, "#triage-state").await.filter(|t| t.contains("false_positive")) }).await;
    let alerts: Value = serde_json::from_str(&send_as(&http(), Some(ANALYST), "GET", &s.url("/v1/alerts"), None).1).unwrap();
    let judged = alerts.as_array().unwrap().iter().find(|a| a["id"] == id.as_str()).unwrap();
    assert_eq!((judged["triage"]["label"].as_str(), judged["triage"]["by"].as_str()), (Some("false_positive"), Some("kim")), "{judged}");

    // The block its rule set, lifted from the blocks page.
    c.find(Locator::Css("a[data-page=\"blocks\"]")).await.unwrap().click().await.unwrap();
    let block_row = format!("tr[data-block-key=\"{nat}\"]");
    let lift = until("the block in the list", || async { c.find(Locator::Css(&format!("{block_row} button.lift"))).await.ok() }).await;
    lift.click().await.unwrap();
    until("the block gone from the list", || async { c.find(Locator::Css(&block_row)).await.is_err().then_some(()) }).await;
    let blocks: Value = serde_json::from_str(&send_as(&http(), Some(ANALYST), "GET", &s.url("/v1/blocks"), None).1).unwrap();
    assert!(!blocks.as_array().unwrap().iter().any(|b| b["key"] == nat), "lifted on the server: {blocks}");

    // The page's policy forbids loading from another origin (the files themselves name none:
    // a unit test beside the console's route reads them).
    let (_, headers) = {
        let res = http().get(&format!("{base}/console")).call().unwrap();
        (res.status(), res.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
    };
    assert!(headers.contains("default-src 'none'") && headers.contains("connect-src 'self'") && headers.contains("script-src 'self'"), "{headers}");
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-analyst.png"), c.screenshot().await.unwrap()).unwrap();
    c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();

    // An auditor reads the same alert, with no control to change it.
    login(&c, base, AUDITOR, "lee (auditor)").await;
    until("the alert for the auditor", || async { c.find(Locator::Css(&row)).await.ok() }).await.click().await.unwrap();
    until("the alert's detail for the auditor", || async { text_of(&c, "#alert-detail").await.filter(|t| t.contains("many_new_identities_on_one_address")) }).await;
    // (Shown to the analyst above: #mark-fp was clicked; the others sit beside it.)
    for control in ["#mark-fp", "#mark-tp", "#ack", "#resolve"] {
        let shown = match c.find(Locator::Css(control)).await {
            Ok(e) => e.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        };
        assert!(!shown, "{control} is offered to an auditor");
    }
    assert!(c.find(Locator::Css("a[data-page=\"preview\"]")).await.map(|_| ()).is_ok(), "the nav is there");
    c.close().await.unwrap();
    assert!(s.stop().success());
}

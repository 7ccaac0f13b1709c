//! The status page in a real headless Chromium, driven through chromedriver (WebDriver): log in,
//! click a feed button against the stand-in tenant, open a problem page with a hostile entity name,
//! check that it is text and that no script ran, click replay, and keep a screenshot.

use std::path::Path;
use std::process::{Command, Stdio};

use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::page::{hub_with_tenant, second_attempt_succeeded};
use crate::support::{self, eventually, free_port, runs, Running, PASSWORD, USER};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test]
async fn a_browser_sees_text_where_the_payload_had_html_and_can_replay() {
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "this test needs Debian's chromium and chromium-driver; tools/test installs them"
    );
    let (dir, hub, _tenant) = hub_with_tenant().await;

    let port = free_port();
    let _driver = Running(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let http = support::client();
    eventually("chromedriver", async || {
        http.get(format!("{webdriver}/status")).send().await.is_ok()
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            "--window-size=1280,1600"
        ]}),
    );
    // chromedriver speaks plain HTTP on loopback; no TLS stack is needed to reach it.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .expect("a WebDriver session");

    // Log in the way an operator's browser does: Basic credentials for this origin.
    let authority = hub.base_url.trim_start_matches("http://");
    browser
        .goto(&format!("http://{USER}:{PASSWORD}@{authority}/"))
        .await
        .unwrap();
    let heading = browser.find(Locator::Css("header h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "hub");
    assert!(
        browser.find(Locator::Css("#chart")).await.is_ok(),
        "the chart"
    );

    browser
        .find(Locator::Id("feed-week"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = text_of(&browser, "feed-summary").await;
    assert!(
        text.contains("2 problem(s) in the last week; 1 not received by hub"),
        "{text}"
    );
    let feed = text_of(&browser, "feed").await;
    assert!(
        feed.contains("P-31337") && feed.contains("<script>window.__xss=1</script>"),
        "{feed}"
    );

    browser
        .goto(&format!(
            "{}/problems/P-31337?source=dynatrace",
            hub.base_url
        ))
        .await
        .unwrap();
    let entities = text_of(&browser, "entities").await;
    assert!(
        entities.contains("<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"),
        "the hostile name is shown as text: {entities}"
    );
    let probe: Value = browser
        .execute(
            "return [typeof window.__xss, document.querySelectorAll('#entities script, #entities img, #runs img').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        probe,
        json!(["undefined", 0]),
        "no script ran, no element was injected"
    );

    // Replay asks first: the link opens a confirmation page that lists what would run again.
    browser
        .find(Locator::Id("replay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let listed = text_of(&browser, "replay-runs").await;
    assert!(listed.contains("page"), "{listed}");
    assert_eq!(runs(dir.path()).await[0].3, 1, "nothing ran before yes");
    browser
        .find(Locator::Id("replay-yes"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    second_attempt_succeeded(dir.path()).await;
    browser.refresh().await.unwrap();
    let runs_text = text_of(&browser, "runs").await;
    assert!(runs_text.contains("#2 succeeded (manual)"), "{runs_text}");

    let png = browser.screenshot().await.unwrap();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("problem-page.png");
    std::fs::write(&shot, &png).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "a PNG screenshot at {}",
        shot.display()
    );
    browser.close().await.unwrap();
}

async fn text_of(browser: &fantoccini::Client, id: &str) -> String {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .unwrap()
}

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

    let (_driver, browser) = chromium().await;

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
    assert_eq!(
        runs(dir.path()).await[0].attempts,
        1,
        "nothing ran before yes"
    );
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

/// chromedriver and a headless Chromium session on it; the driver stops when the first value
/// is dropped.
async fn chromium() -> (Running, fantoccini::Client) {
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "this test needs Debian's chromium and chromium-driver; tools/test installs them"
    );
    let port = free_port();
    let driver = Running(
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
    (driver, browser)
}

/// Keeps a screenshot of what the browser shows: in `target/tmp/`, or with `HUB_SCREENSHOTS=docs`
/// in `docs/` (the README shows those), so that a test run leaves the tree as it found it.
async fn keep_screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    let folder = match std::env::var("HUB_SCREENSHOTS").as_deref() {
        Ok("docs") => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf(),
    };
    std::fs::write(folder.join(name), &png).unwrap();
}

/// The problems of the status page's triage table, in the order shown.
async fn triage_order(browser: &fantoccini::Client) -> Vec<String> {
    // Read once the page has loaded whole: a form's next page may still be arriving.
    for _ in 0..100 {
        let shown: Value = browser
            .execute(
                "return document.readyState === 'complete' ? Array.from(document.querySelectorAll('#problems tr[data-problem]')).map(r => r.dataset.problem) : null;",
                vec![],
            )
            .await
            .unwrap();
        if !shown.is_null() {
            return serde_json::from_value(shown).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the status page never finished loading")
}

#[tokio::test]
async fn a_browser_triages_filters_silences_and_confirms_a_replay() {
    let (dir, hub) = crate::triage::triage_hub().await;
    let (_driver, browser) = chromium().await;
    let authority = hub.base_url.trim_start_matches("http://");
    browser
        .goto(&format!("http://{USER}:{PASSWORD}@{authority}/"))
        .await
        .unwrap();

    // Worst first: failed, pending (a flap wait), silenced, then the rest; the resolved one is
    // not open.
    assert_eq!(
        triage_order(&browser).await,
        ["P-FAIL", "P-WAIT", "a-pending", "P-SIL", "P-OK"]
    );
    let health = text_of(&browser, "health").await;
    assert!(health.contains("healthy"), "{health}");
    keep_screenshot(&browser, "status-page.png").await;

    // The filters go into the URL, so the view can be bookmarked and opened again.
    browser
        .find(Locator::Id("filter-outcome"))
        .await
        .unwrap()
        .select_by_value("pending")
        .await
        .unwrap();
    browser
        .find(Locator::Id("filter-source"))
        .await
        .unwrap()
        .select_by_value("dynatrace")
        .await
        .unwrap();
    browser
        .find(Locator::Id("filter-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = url_once(&browser, |u| {
        u.query()
            .is_some_and(|q| q.contains("source=dynatrace") && q.contains("outcome=pending"))
    })
    .await;
    assert_eq!(triage_order(&browser).await, ["P-WAIT"]);
    browser.goto(url.as_str()).await.unwrap();
    assert_eq!(triage_order(&browser).await, ["P-WAIT"], "the bookmark");
    browser
        .find(Locator::Id("filter-clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    url_once(&browser, |u| u.query().is_none()).await;
    assert_eq!(triage_order(&browser).await.len(), 5);

    // Silence this: the form under the row comes filled in with the problem's own matchers.
    let row = browser
        .find(Locator::Css("#problems tr[data-problem='P-OK']"))
        .await
        .unwrap();
    row.find(Locator::Css("details.silence-this summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let matchers = row
        .find(Locator::Css("textarea[name=matchers]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(matchers.as_deref(), Some("source=dynatrace\nproblem=P-OK"));
    row.find(Locator::Css("input[name=comment]"))
        .await
        .unwrap()
        .send_keys("known, fixing")
        .await
        .unwrap();
    row.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut silences = String::new();
    for _ in 0..100 {
        silences = text_of(&browser, "silence-list").await;
        if silences.contains("problem=P-OK") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        silences.contains("problem=P-OK") && silences.contains("known, fixing"),
        "{silences}"
    );

    // Replay asks first, and *No* runs nothing.
    browser
        .goto(&format!(
            "{}/problems/P-FAIL?source=dynatrace",
            hub.base_url
        ))
        .await
        .unwrap();
    let runs_text = text_of(&browser, "runs").await;
    assert!(
        runs_text.contains("the pager gateway said no") && runs_text.contains("tried once"),
        "the outcome as text: {runs_text}"
    );
    keep_screenshot(&browser, "problem-page.png").await;
    let attempts = async || -> i64 {
        support::db(dir.path())
            .await
            .row(
                "SELECT attempts FROM action_runs WHERE problem_key = 'P-FAIL'",
                &[],
            )
            .await
            .get("attempts")
    };
    click_once_there(&browser, Locator::Css("a.replay-action")).await;
    keep_screenshot(&browser, "replay-confirm.png").await;
    click_once_there(&browser, Locator::Id("replay-cancel")).await;
    assert_eq!(attempts().await, 1, "no meant nothing ran");
    click_once_there(&browser, Locator::Css("a.replay-action")).await;
    click_once_there(&browser, Locator::Id("replay-yes")).await;
    eventually("the confirmed replay to run", async || {
        attempts().await == 2
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_responder_signs_in_sees_who_is_on_call_and_overrides_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::people::team(dir.path(), None);
    let hub = support::Hub::start_in(dir.path(), &config, &[]);
    let (_driver, browser) = chromium().await;
    let authority = hub.base_url.trim_start_matches("http://");
    let pw = crate::people::PW.replace(' ', "%20");
    browser
        .goto(&format!("http://ana:{pw}@{authority}/"))
        .await
        .unwrap();
    assert_eq!(
        text_of(&browser, "signed-in").await,
        "signed in as Ana Lima (responder)"
    );
    let before = text_of(&browser, "oncall-list").await;
    assert!(before.contains("primary"), "{before}");
    // Put Vi on call from now for a day, with the page's own form.
    let form = browser.find(Locator::Id("override-primary")).await.unwrap();
    form.find(Locator::Css("select[name=person] option[value=vi]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    form.find(Locator::Css("input[name=until]"))
        .await
        .unwrap()
        .send_keys(&until.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .await
        .unwrap();
    click_once_there(&browser, Locator::Css("#override-primary button")).await;
    url_once(&browser, |u| u.fragment() == Some("oncall")).await;
    let after = text_of(&browser, "oncall-list").await;
    assert!(
        after.contains("Vi Viewer") && after.contains("override"),
        "{after}"
    );
    assert!(text_of(&browser, "override-list").await.contains("ana"));
    keep_screenshot(&browser, "oncall.png").await;
    // The change is in the audit log, through the page, under her name.
    browser
        .goto(&format!("{}/audit", hub.base_url))
        .await
        .unwrap();
    let audit = text_of(&browser, "audit").await;
    assert!(
        audit.contains("override.add") && audit.contains("ana") && audit.contains("page"),
        "{audit}"
    );
    browser.close().await.unwrap();
}

/// Clicks the element once the page that has it is there (the click before may still be
/// loading the next page).
async fn click_once_there(browser: &fantoccini::Client, locator: Locator<'_>) {
    let mut last = String::new();
    for _ in 0..100 {
        match browser.find(locator).await {
            Ok(element) => match element.click().await {
                Ok(_) => return,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{locator:?}: {last}")
}

/// The browser's URL once it is one `wanted` takes (a click that submits a form returns before
/// the next page is there).
async fn url_once(
    browser: &fantoccini::Client,
    wanted: impl Fn(&reqwest::Url) -> bool,
) -> reqwest::Url {
    for _ in 0..100 {
        let url = browser.current_url().await.unwrap();
        if wanted(&url) {
            return url;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the browser never reached the URL wanted")
}

/// The text of the element `#id` once the page that has it is there: a click that submits a form
/// returns before the next page has loaded, and an element of the old page goes stale.
async fn text_of(browser: &fantoccini::Client, id: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        match browser.find(Locator::Id(id)).await {
            Ok(element) => match element.text().await {
                Ok(text) => return text,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("#{id}: {last}")
}

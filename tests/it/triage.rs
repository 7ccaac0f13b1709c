//! The status page's first screen over real HTTP: open problems worst first, the filters in the
//! URL, bad filter values refused without being repeated, the wallboard, and the instance's own
//! health at the top.

use serde_json::json;

use crate::support::{self, client, eventually, post, script, Hub, PASSWORD, USER};

/// A Dynatrace notification with a severity and an entity.
pub fn dynatrace(id: &str, state: &str, severity: &str, title: &str) -> String {
    json!({
        "State": state, "ProblemID": id, "PID": format!("{id}_1V2"), "ProblemTitle": title,
        "ProblemSeverity": severity, "ProblemImpact": "INFRASTRUCTURE",
        "ImpactedEntities": [{"type": "HOST", "name": format!("host-{id}"), "entity": format!("HOST-{id}")}]
    })
    .to_string()
}

/// A hub with one problem of each kind: `P-FAIL` (a run failed), `P-WAIT` (held by a flap wait:
/// pending), `P-SIL` (silenced), `P-OK` (its run succeeded), `P-DONE` (resolved), and
/// `A-PENDING`, an Alertmanager alert whose run is pending behind the same flap wait. Returned
/// once every run has settled where it will stay.
pub async fn triage_hub() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "ok.sh", "echo fine");
    script(
        dir.path(),
        "bad.sh",
        "echo 'the pager gateway said no' >&2; echo 'tried once'; exit 1",
    );
    let config = support::config_with(json!({
        "sources": {"alertmanager": {}},
        "actions": {
            "ok": {"type": "script", "command": ["./ok.sh"]},
            "bad": {"type": "script", "command": ["./bad.sh"]}
        },
        "routes": [
            {"actions": ["bad"], "severities": ["ERROR"]},
            {"actions": ["ok"], "severities": ["PERFORMANCE", "RESOURCE_CONTENTION"]},
            {"actions": ["ok"], "severities": ["AVAILABILITY", "warning"], "wait": "1h"}
        ]
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let c = client();
    let silence = json!({"matchers": ["problem=P-SIL"], "duration": "2h", "comment": "known"});
    let r = post(&c, &hub.url("/api/silences"), silence.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (id, state, severity) in [
        ("P-DONE", "OPEN", "PERFORMANCE"),
        ("P-OK", "OPEN", "PERFORMANCE"),
        ("P-SIL", "OPEN", "RESOURCE_CONTENTION"),
        ("P-FAIL", "OPEN", "ERROR"),
        ("P-WAIT", "OPEN", "AVAILABILITY"),
        ("P-DONE", "RESOLVED", "PERFORMANCE"),
    ] {
        let body = dynatrace(id, state, severity, &format!("{id} title"));
        let r = post(&c, &hub.url("/"), body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let alert = json!({"version": "4", "status": "firing", "receiver": "hub", "groupKey": "g",
        "alerts": [{"status": "firing", "fingerprint": "a-pending",
                    "labels": {"alertname": "DiskFull", "severity": "warning", "instance": "db-1"},
                    "annotations": {"summary": "disk full on db-1"},
                    "startsAt": "2026-01-01T00:00:00Z"}]});
    let r = post(&c, &hub.url("/hooks/alertmanager"), alert.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("every run to settle", async || {
        let r = support::db(dir.path())
            .await
            .rows(
                "SELECT problem_key, status FROM action_runs ORDER BY id",
                &[],
            )
            .await;
        let status = |id: &str| {
            r.iter()
                .filter(|r| r.get::<String>("problem_key") == id)
                .map(|r| r.get::<String>("status"))
                .collect::<Vec<_>>()
        };
        status("P-FAIL") == ["failed"]
            && status("P-OK") == ["succeeded"]
            && status("P-SIL") == ["silenced"]
            && status("P-WAIT") == ["pending"]
            && status("a-pending") == ["pending"]
            && status("P-DONE") == ["succeeded", "succeeded"]
    })
    .await;
    (dir, hub)
}

async fn page(hub: &Hub, path: &str) -> (u16, String) {
    let r = client()
        .get(hub.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The problems of the triage table, in the order shown.
pub fn order(html: &str) -> Vec<String> {
    html.split("data-problem=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn open_problems_come_worst_first_and_filters_live_in_the_url() {
    let (_dir, hub) = triage_hub().await;

    let (status, html) = page(&hub, "/").await;
    assert_eq!(status, 200);
    assert_eq!(
        order(&html),
        ["P-FAIL", "P-WAIT", "a-pending", "P-SIL", "P-OK"],
        "failed, then pending (the most urgent severity first), then silenced, then the rest; \
         the resolved one is not open"
    );
    // Silenced runs are counted as such, never as ok; a held run is pending, with when it runs.
    let row = |id: &str| {
        html.split(&format!("data-problem=\"{id}\""))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("P-SIL").contains("1 silenced"), "{}", row("P-SIL"));
    assert!(!row("P-SIL").contains(" ok<"), "{}", row("P-SIL"));
    assert!(row("P-WAIT").contains("1 pending, held until"));
    assert!(row("P-FAIL").contains("1 failed") && row("P-FAIL").contains("ERROR"));
    assert!(
        row("P-FAIL").contains("open for"),
        "age shown: {}",
        row("P-FAIL")
    );
    // The silence-this form, prefilled with the problem's own matchers.
    assert!(
        row("P-FAIL").contains("source=dynatrace\nproblem=P-FAIL</textarea>"),
        "{}",
        row("P-FAIL")
    );
    // Health first, then the problems, then the configuration and the chart.
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle}"));
    assert!(at("id=\"health\"") < at("id=\"problems\""));
    assert!(at("id=\"problems\"") < at("id=\"chart\""));
    assert!(at("id=\"problems\"") < at("Listening on"));
    assert!(html.contains("This hub is healthy"));

    for (query, expected) in [
        (
            "/?show=all",
            vec!["P-FAIL", "P-WAIT", "a-pending", "P-SIL", "P-OK", "P-DONE"],
        ),
        ("/?source=alertmanager", vec!["a-pending"]),
        ("/?outcome=failed", vec!["P-FAIL"]),
        ("/?outcome=silenced", vec!["P-SIL"]),
        ("/?severity=availability", vec!["P-WAIT"]),
        ("/?q=HOST-P-OK", vec!["P-OK"]),
        ("/?q=disk+FULL", vec!["a-pending"]),
        (
            "/?show=all&outcome=succeeded&source=dynatrace",
            vec!["P-OK", "P-DONE"],
        ),
        ("/?show=all&outcome=none", vec![]),
        (
            "/?show=open&source=&severity=&outcome=&q=",
            vec!["P-FAIL", "P-WAIT", "a-pending", "P-SIL", "P-OK"],
        ),
    ] {
        let (status, html) = page(&hub, query).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(order(&html), expected, "{query}");
    }
    // The filters show what was chosen, escaped, so the view can be bookmarked and changed.
    let (_, html) = page(&hub, "/?q=%3Cb%3Ex%22&outcome=failed").await;
    assert!(
        html.contains("value=\"&lt;b&gt;x&quot;\""),
        "the text kept, escaped"
    );
    assert!(html.contains("<option value=\"failed\" selected>"));
    assert!(html.contains("no problem matches these filters"));
}

#[tokio::test]
async fn bad_filter_values_are_a_clear_400_that_repeats_nothing() {
    let (_tmp, hub) = support::start(json!({}));
    let huge = "x".repeat(5000);
    for query in [
        "/?source=%3Cscript%3Ealert(1)%3C/script%3E".to_string(),
        "/?outcome=%3Cscript%3E".to_string(),
        "/?severity=%3Cscript%3E".to_string(),
        "/?show=%3Cscript%3E".to_string(),
        "/?refresh=%3Cscript%3E".to_string(),
        "/?refresh=1".to_string(),
        "/?refresh=-30".to_string(),
        format!("/?q={huge}"),
        "/?q=a%0Ab".to_string(),
    ] {
        let (status, body) = page(&hub, &query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            !body.contains("script") && !body.contains("xxxxxxxx"),
            "{query}: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].is_string() && v["detail"].is_string(), "{body}");
    }
    // Unknown keys and garbage the page does not use are ignored.
    let (status, _) = page(&hub, "/?utm_source=%3Cscript%3E&page=zzz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_wallboard_reloads_without_scripts_and_offers_no_form() {
    let (_dir, hub) = triage_hub().await;
    let (status, html) = page(&hub, "/?refresh=30&outcome=failed").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{html}"
    );
    assert!(!html.contains("<form") && !html.contains("<script"));
    assert_eq!(order(&html), ["P-FAIL"]);
    // The older link keeps the filters and the refresh.
    let (_, normal) = page(&hub, "/").await;
    assert!(normal.contains("<form"), "the ordinary page has its forms");
}

#[tokio::test]
async fn a_failing_healthz_is_shown_at_the_top() {
    let (_tmp, hub) = support::start(json!({}));
    let received = hub.received();
    std::fs::remove_dir_all(&received).unwrap();
    std::fs::write(&received, b"not a folder").unwrap();
    let r = post(
        &client(),
        &hub.url("/"),
        dynatrace("P-1", "OPEN", "ERROR", "x"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    let (status, html) = page(&hub, "/").await;
    assert_eq!(status, 200, "the page still renders: {html}");
    let health = html
        .split("id=\"health\"")
        .nth(1)
        .and_then(|h| h.split("</div>").next())
        .unwrap_or_default();
    assert!(
        health.contains("healthz answers 503") && health.contains("needs attention"),
        "{html}"
    );
    assert!(html.find("id=\"health\"") < html.find("id=\"problems\""));
}

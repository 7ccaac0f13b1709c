//! Durability: what was acknowledged survives `kill -9`.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;

use crate::support::{self, client, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_notification_survives_kill_9() {
    const TOTAL: usize = 500;
    const CLIENTS: usize = 32;
    let (tmp, mut hub) = support::start(json!({}));
    let c = client();
    let url = hub.url("/");
    let gate = Arc::new(Semaphore::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..TOTAL {
        let (c, url, gate) = (c.clone(), url.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let body = json!({
                "State": "OPEN", "ProblemID": format!("P-{i}"), "PID": format!("{i}V2"),
                "ProblemTitle": format!("crash test {i}"), "ImpactedEntities": [{"name": "host-{i}"}]
            })
            .to_string();
            let status = post(&c, &url, body.clone()).send().await.map(|r| r.status().as_u16());
            (i, body, status)
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        let (i, body, status) = t.await.unwrap();
        if matches!(status, Ok(200)) {
            acknowledged.push((i, body));
        }
    }
    hub.kill9();
    assert_eq!(
        acknowledged.len(),
        TOTAL,
        "with no fault injected, every notification is acknowledged"
    );

    // Every acknowledged notification is on disk, whole, in the folder and in the store.
    let pool = support::db(tmp.path()).await;
    for (i, body) in &acknowledged {
        let file = hub.received().join(format!("P-{i}-OPEN.json"));
        let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(on_disk, body.as_bytes(), "file for P-{i}");
        let stored: Vec<u8> = sqlx::query_scalar(
            "SELECT body FROM notifications WHERE problem_key = ? AND state = 'OPEN'",
        )
        .bind(format!("P-{i}"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored, body.as_bytes(), "row for P-{i}");
    }
    assert_eq!(
        hub.received_files().len(),
        TOTAL,
        "no temporary file left behind"
    );
    pool.close().await;

    // And hub starts again on what the kill left.
    let config = support::config_with(json!({}));
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    let r = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(support::count(tmp.path()).await, TOTAL as i64);
}

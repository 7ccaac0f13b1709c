//! The PostgreSQL backend against a real PostgreSQL 15, two instances on one database where it
//! matters: dedup, file names, claims, leases and fencing.

// Shared with the integration tests, some of whose helpers these tests do not need.
#[allow(dead_code)]
#[path = "../../../tests/common/postgres.rs"]
pub(in crate::store) mod pg;

use std::time::Duration;

use crate::domain::{Facts, Notification, Source};
use crate::secret::Secret;
use crate::store::config::StoreConfig;
use crate::store::{Accepted, Finish, NewRun, Store};

fn config(url: &str, instance: &str, lease: Duration) -> StoreConfig {
    StoreConfig {
        url: url.to_string(),
        connect_url: Secret::new(url),
        password: None,
        ca_file: None,
        instance: instance.to_string(),
        lease,
    }
}

fn notification(key: &str, variant: u32) -> Notification {
    Notification {
        source: Source::Alertmanager,
        problem_key: key.into(),
        state: "OPEN".into(),
        pid: None,
        title: Some("disk full".into()),
        is_test: false,
        body: format!("{{\"alert\":\"{key}\",\"variant\":{variant}}}").into_bytes(),
        facts: Facts::default(),
        identity: None,
        trace: None,
    }
}

/// Two instances sharing one database and one received folder.
async fn two(lease: Duration) -> (tempfile::TempDir, String, Store, Store) {
    let url = pg::database();
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received");
    let a = Store::open(&config(&url, "a", lease), &received)
        .await
        .unwrap();
    let b = Store::open(&config(&url, "b", lease), &received)
        .await
        .unwrap();
    (dir, url, a, b)
}

#[tokio::test]
async fn the_same_delivery_to_two_instances_is_stored_once() {
    let (dir, url, a, b) = two(Duration::from_secs(60)).await;
    for i in 0..20 {
        let n = notification(&format!("k{i}"), 0);
        let (x, y) = tokio::join!(a.accept(n.clone()), b.accept(n));
        let (x, y) = (x.unwrap(), y.unwrap());
        let stored = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Accepted::Stored { .. }))
            .count();
        assert_eq!(stored, 1, "{x:?} {y:?}");
        assert_eq!(x.file_name(), y.file_name());
    }
    assert_eq!(pg::psql(&url, "SELECT COUNT(*) FROM notifications"), "20");
    assert_eq!(
        pg::psql(&url, "SELECT SUM(duplicates) FROM notifications"),
        "20"
    );
    assert_eq!(pg::psql(&url, "SELECT COUNT(*) FROM plans"), "20");
    let files = std::fs::read_dir(dir.path().join("received"))
        .unwrap()
        .count();
    assert_eq!(files, 20);
}

/// Different bodies of one problem's state, posted to both instances at once: each gets a name
/// of its own in the shared folder, and each file holds its own body.
#[tokio::test]
async fn instances_sharing_a_folder_never_give_one_name_twice() {
    let (dir, url, a, b) = two(Duration::from_secs(60)).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let n = notification("same", i);
            let body = n.body.clone();
            (store.accept(n).await.unwrap(), body)
        }));
    }
    let mut names = std::collections::HashSet::new();
    for t in tasks {
        let (accepted, body) = t.await.unwrap();
        assert!(matches!(accepted, Accepted::Stored { .. }));
        let name = accepted.file_name().to_string();
        let on_disk = std::fs::read(dir.path().join("received").join(&name)).unwrap();
        assert_eq!(on_disk, body, "{name}");
        assert!(names.insert(name));
    }
    assert_eq!(
        pg::psql(&url, "SELECT COUNT(DISTINCT file_name) FROM notifications"),
        "30"
    );
}

async fn one_run(store: &Store) -> i64 {
    let n = notification("run", 0);
    store.accept(n).await.unwrap();
    let plans = store.due_plans(0, 10).await.unwrap();
    let stored = store.notification(plans[0]).await.unwrap();
    let runs = vec![NewRun {
        idem_key: "alertmanager/run/OPEN/script/".into(),
        action: "script".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start: Default::default(),
    }];
    assert_eq!(store.insert_runs(&[(&stored, runs)]).await.unwrap(), [1]);
    store.due_runs(0, 10).await.unwrap()[0].id
}

fn succeeded(what: &str) -> Finish {
    Finish::Succeeded {
        summary: what.into(),
        outcome: "{}".into(),
        thread: None,
    }
}

#[tokio::test]
async fn a_run_is_claimed_by_one_instance_only() {
    let (_dir, url, a, b) = two(Duration::from_secs(60)).await;
    let id = one_run(&a).await;
    let (x, y) = tokio::join!(
        a.claim_many(vec![(id, None)]),
        b.claim_many(vec![(id, None)])
    );
    let claims = [x.unwrap()[0].is_some(), y.unwrap()[0].is_some()];
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    assert_eq!(pg::psql(&url, "SELECT COUNT(*) FROM action_attempts"), "1");
}

/// An instance that stops renewing loses its run when the lease ends: another takes it over, and
/// the first one's late outcome is not recorded over its successor's (the attempt number fences).
#[tokio::test]
async fn a_run_whose_lease_ended_is_taken_over_and_fenced() {
    let (_dir, url, a, b) = two(Duration::from_millis(300)).await;
    let id = one_run(&a).await;
    let first = a.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    assert!(a.renew(id, first).await.unwrap());
    assert!(
        b.claim_many(vec![(id, None)]).await.unwrap()[0].is_none(),
        "held by a"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let due = b.due_runs(0, 10).await.unwrap();
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    let second = b.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    assert_eq!(second, first + 1);
    assert!(!a.renew(id, first).await.unwrap(), "a's lease is gone");
    b.finish(id, second, &succeeded("by b")).await.unwrap();
    a.finish(id, first, &succeeded("by a, late")).await.unwrap();
    let run = a.run(id).await.unwrap();
    assert_eq!(
        (run.status.as_str(), run.summary.as_deref()),
        ("succeeded", Some("by b"))
    );
    assert_eq!(
        pg::psql(
            &url,
            "SELECT string_agg(result, ',' ORDER BY number) FROM action_attempts"
        ),
        "interrupted,succeeded"
    );
}

/// At start an instance puts back only its own runs left in flight; another's stay its own.
#[tokio::test]
async fn recovery_takes_back_only_this_instances_runs() {
    let (_dir, _url, a, b) = two(Duration::from_secs(60)).await;
    let id = one_run(&a).await;
    assert!(a.claim_many(vec![(id, None)]).await.unwrap()[0].is_some());
    assert_eq!(b.recover_in_flight(None).await.unwrap(), 0);
    assert_eq!(a.run(id).await.unwrap().status, "running");
    assert_eq!(a.recover_in_flight(None).await.unwrap(), 1);
    assert_eq!(a.run(id).await.unwrap().status, "pending");
}

/// The page's counts come from the store: every instance shows the same, and lists both.
#[tokio::test]
async fn every_instance_sees_the_whole_cluster() {
    let (_dir, _url, a, b) = two(Duration::from_secs(60)).await;
    a.announce().await.unwrap();
    b.announce().await.unwrap();
    a.accept(notification("x", 0)).await.unwrap();
    b.accept(notification("y", 0)).await.unwrap();
    for store in [&a, &b] {
        let counts = store.source_counts().await.unwrap();
        assert_eq!(counts[0].received, 2);
        let page = crate::store::Page::first(10);
        assert_eq!(store.problems(page).await.unwrap().len(), 2);
    }
    // The heartbeat (every 2 s) writes the table of instances.
    for _ in 0..50 {
        if a.instances().await.unwrap().len() == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("both instances were never listed");
}

/// Two instances asking for due enrichments at once get disjoint sets: Dynatrace is asked once
/// per notification; one claimed by an instance that died is due again when its hold ends.
#[tokio::test]
async fn an_enrichment_is_claimed_by_one_instance_only() {
    let (_dir, _url, a, b) = two(Duration::from_millis(300)).await;
    for i in 0..10 {
        let mut n = notification(&format!("P-{i}"), 0);
        n.source = Source::Dynatrace;
        n.pid = Some(format!("{i}V2"));
        a.accept(n).await.unwrap();
    }
    let (x, y) = tokio::join!(
        a.due_enrichments(300_000, 100),
        b.due_enrichments(300_000, 100)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut ids: Vec<i64> = x.iter().chain(&y).map(|e| e.notification_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), x.len() + y.len()), (10, 10), "{x:?} {y:?}");
    assert!(
        a.due_enrichments(300_000, 100).await.unwrap().is_empty(),
        "held"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.due_enrichments(300_000, 100).await.unwrap().len(),
        10,
        "due again"
    );
}

/// On a server that takes TLS only: hub connects with the test CA given as `store.ca_file`, and
/// refuses a certificate it cannot check; a plain connection is refused by the server.
#[tokio::test]
async fn tls_with_a_private_ca_is_checked() {
    let (url, ca) = pg::tls_database();
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received");
    let with = |url: String, ca_file: Option<std::path::PathBuf>| {
        let mut c = config(&url, "a", Duration::from_secs(60));
        c.ca_file = ca_file;
        c
    };
    let store = Store::open(
        &with(format!("{url}?sslmode=require"), Some(ca.clone())),
        &received,
    )
    .await
    .unwrap();
    assert!(matches!(
        store.accept(notification("tls", 0)).await.unwrap(),
        Accepted::Stored { .. }
    ));
    let unknown = Store::open(&with(format!("{url}?sslmode=require"), None), &received).await;
    let e = unknown
        .err()
        .expect("a certificate from an unknown CA is refused")
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let plain = Store::open(&with(format!("{url}?sslmode=disable"), Some(ca)), &received).await;
    let e = plain.err().expect("the server takes TLS only").to_string();
    assert!(e.contains("pg_hba.conf"), "{e}");
}

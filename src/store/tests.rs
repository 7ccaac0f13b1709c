//! The store's behaviour through its one interface, run on both backends: SQLite in a temporary
//! folder and a real PostgreSQL 15 (see `tests/common/postgres.rs`). What only one backend has
//! (SQLite's writer and WAL, PostgreSQL's leases between instances) is tested beside it.

use std::path::Path;
use std::time::Duration;

use crate::domain::{Facts, Notification, Source};
use crate::secret::Secret;
use crate::store::config::StoreConfig;
use crate::store::{Accepted, Finish, NewRun, Page, Store, StoredNotification};

fn config(url: String) -> StoreConfig {
    StoreConfig {
        url: url.clone(),
        connect_url: Secret::new(url),
        password: None,
        ca_file: None,
        instance: "t".into(),
        lease: Duration::from_secs(60),
    }
}

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let store = Store::open(&config(url), &dir.path().join("received"))
        .await
        .unwrap();
    (dir, store)
}

async fn postgres() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = super::postgres::tests::pg::database();
    let store = Store::open(&config(url), &dir.path().join("received"))
        .await
        .unwrap();
    (dir, store)
}

/// Each case once per backend: `<case>::sqlite` and `<case>::postgres`.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        $(mod $case {
            #[tokio::test]
            async fn sqlite() {
                let (dir, store) = super::sqlite().await;
                super::$case(&store, &dir.path().join("received")).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (dir, store) = super::postgres().await;
                super::$case(&store, &dir.path().join("received")).await;
            }
        })*
    };
}

on_both!(
    a_redelivery_is_counted_not_stored,
    names_skip_foreign_files_and_count_on,
    a_file_put_under_a_name_while_hub_runs_gives_the_notification_the_next_one,
    missing_and_cut_short_files_are_written_back,
    an_import_adopts_its_file_and_runs_nothing,
    a_run_goes_from_routed_to_done,
    runs_left_in_flight_are_put_back,
    a_replay_is_a_manual_attempt,
    an_enrichment_is_done_once,
    the_views_count_what_is_stored,
    problems_that_ended_are_pruned_and_the_others_kept,
    a_folder_left_as_it_was_is_not_compared_again,
    a_thread_is_kept_with_its_run_and_replaced_by_a_later_one,
    silences_hold_runs_until_they_end,
    a_flap_wait_is_held_and_suppressed,
    an_open_and_its_close_routed_together_run_nothing,
    tokens_overrides_and_the_audit_are_kept,
    an_escalation_climbs_once_and_stops_when_acknowledged,
    a_notification_is_read_back_as_it_came,
    a_group_sends_once_and_goes_with_its_first_member,
    a_routing_pass_changes_groups_in_the_order_its_notifications_came,
);

fn notification(key: &str, variant: u32) -> Notification {
    Notification {
        source: Source::Dynatrace,
        problem_key: key.into(),
        state: "OPEN".into(),
        pid: None,
        title: Some("CPU saturation".into()),
        is_test: false,
        body: format!("{{\"ProblemID\":\"{key}\",\"variant\":{variant}}}").into_bytes(),
        facts: Facts::default(),
        identity: None,
        trace: None,
    }
}

async fn a_redelivery_is_counted_not_stored(store: &Store, dir: &Path) {
    let first = store.accept(notification("P-1", 0)).await.unwrap();
    let again = store.accept(notification("P-1", 0)).await.unwrap();
    assert!(matches!(first, Accepted::Stored { .. }), "{first:?}");
    assert!(matches!(again, Accepted::Duplicate { .. }), "{again:?}");
    assert_eq!(first.file_name(), again.file_name());
    let counts = store.source_counts().await.unwrap();
    assert_eq!((counts[0].received, counts[0].duplicate), (1, 1));
    assert_eq!(
        std::fs::read(dir.join("P-1-OPEN.json")).unwrap(),
        notification("P-1", 0).body
    );
}

async fn names_skip_foreign_files_and_count_on(store: &Store, dir: &Path) {
    std::fs::write(dir.join("P-1-OPEN.json"), b"left by the sample").unwrap();
    let check = store.check_folder().await.unwrap();
    assert_eq!(check.unknown, ["P-1-OPEN.json"]);
    let mut names = Vec::new();
    for i in 0..3 {
        let a = store.accept(notification("P-1", i)).await.unwrap();
        names.push(a.file_name().to_string());
    }
    assert_eq!(
        names,
        ["P-1-OPEN.2.json", "P-1-OPEN.3.json", "P-1-OPEN.4.json"]
    );
    assert_eq!(
        std::fs::read(dir.join("P-1-OPEN.json")).unwrap(),
        b"left by the sample"
    );
}

/// A file hub did not write, put in the folder while hub runs under the name a notification is
/// about to get: the notification gets the next free name, the answer names the file it really
/// has, that file is there when the answer comes, and the foreign file is left as it was.
async fn a_file_put_under_a_name_while_hub_runs_gives_the_notification_the_next_one(
    store: &Store,
    dir: &Path,
) {
    store.check_folder().await.unwrap();
    std::fs::write(dir.join("P-7-OPEN.json"), b"put there by hand").unwrap();
    let n = notification("P-7", 0);
    let a = store.accept(n.clone()).await.unwrap();
    assert_eq!(a.file_name(), "P-7-OPEN.2.json");
    assert_eq!(std::fs::read(dir.join("P-7-OPEN.2.json")).unwrap(), n.body);
    assert_eq!(
        std::fs::read(dir.join("P-7-OPEN.json")).unwrap(),
        b"put there by hand"
    );
    // The store says so too, and the next notification skips the foreign name at once.
    let listed = store
        .latest_notifications(Page {
            before: i64::MAX,
            limit: 10,
            skip: 0,
        })
        .await
        .unwrap();
    assert_eq!(listed[0].file_name, "P-7-OPEN.2.json");
    let next = store.accept(notification("P-7", 1)).await.unwrap();
    assert_eq!(next.file_name(), "P-7-OPEN.3.json");
    assert!(dir.join("P-7-OPEN.3.json").exists());
}

async fn missing_and_cut_short_files_are_written_back(store: &Store, dir: &Path) {
    store.accept(notification("P-1", 0)).await.unwrap();
    store.accept(notification("P-2", 0)).await.unwrap();
    std::fs::remove_file(dir.join("P-1-OPEN.json")).unwrap();
    std::fs::write(dir.join("P-2-OPEN.json"), b"{\"Prob").unwrap();
    let check = store.check_folder().await.unwrap();
    assert_eq!((check.restored, check.unknown.len()), (2, 0));
    for key in ["P-1", "P-2"] {
        assert_eq!(
            std::fs::read(dir.join(format!("{key}-OPEN.json"))).unwrap(),
            notification(key, 0).body
        );
    }
}

async fn an_import_adopts_its_file_and_runs_nothing(store: &Store, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let n = notification("P-9", 0);
    std::fs::write(dir.join("P-9-OPEN.json"), &n.body).unwrap();
    let adopted = store
        .import(vec![n.clone()], Some("P-9-OPEN.json".into()))
        .await
        .unwrap();
    assert!(
        matches!(&adopted[0], Accepted::Stored { file_name, .. } if file_name == "P-9-OPEN.json")
    );
    let again = store.import(vec![n], None).await.unwrap();
    assert!(matches!(again[0], Accepted::Duplicate { .. }));
    assert!(
        store.due_plans(0, 10).await.unwrap().is_empty(),
        "history runs nothing"
    );
    assert!(store.due_enrichments(0, 10).await.unwrap().is_empty());
}

async fn routed_run(store: &Store) -> i64 {
    store.accept(notification("P-1", 0)).await.unwrap();
    let plans = store.due_plans(0, 10).await.unwrap();
    assert_eq!(plans.len(), 1);
    let n = store.notification(plans[0]).await.unwrap();
    let run = NewRun {
        idem_key: "dynatrace/P-1/OPEN/script/".into(),
        action: "script".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start: Default::default(),
    };
    assert_eq!(
        store.insert_runs(&[(&n, vec![run.clone()])]).await.unwrap(),
        [1]
    );
    // Routing the same change again creates nothing.
    assert_eq!(store.insert_runs(&[(&n, vec![run])]).await.unwrap(), [0]);
    assert!(store.due_plans(0, 10).await.unwrap().is_empty());
    let due = store.due_runs(0, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    due[0].id
}

/// Every read hands back the notification as it was accepted, facts and all (less its identity,
/// of which the store keeps only the hash).
async fn a_notification_is_read_back_as_it_came(store: &Store, _: &Path) {
    let sent = Notification {
        pid: Some("-123".into()),
        facts: Facts {
            title: "CPU saturation".into(),
            severity: "RESOURCE_CONTENTION".into(),
            impact: "INFRASTRUCTURE".into(),
            tags: vec!["env:prod".into()],
            url: Some("https://tenant.example/#problems".into()),
            entities: vec![crate::domain::Entity::named("host-1", "HOST")],
        },
        identity: Some(b"one alert of the group".to_vec()),
        trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..notification("P-1", 0)
    };
    let kept = Notification {
        identity: None,
        ..sent.clone()
    };
    store.accept(sent).await.unwrap();
    let plans = store.due_plans(0, 10).await.unwrap();
    let by_id = store.notification(plans[0]).await.unwrap();
    assert_eq!(by_id.notification, kept);
    assert!(by_id.received_at_ms > 0 && by_id.details.is_none());
    let latest = store
        .latest_notification(Source::Dynatrace, "P-1")
        .await
        .unwrap();
    assert_eq!(latest.unwrap().notification, kept);
    let run = NewRun {
        idem_key: "dynatrace/P-1/OPEN/script/".into(),
        action: "script".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start: Default::default(),
    };
    store.insert_runs(&[(&by_id, vec![run])]).await.unwrap();
    let due = store.due_runs(0, 10).await.unwrap();
    let claim = store.claim_many(vec![(due[0].id, None)]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(claim.notification.notification, kept);
    assert_eq!(claim.notification.id, by_id.id);
    // A request's notifications are written together (in one statement on PostgreSQL).
    let traced = |key: &str| Notification {
        trace: Some(format!("00-0af7651916cd43dd8448eb211c80319c-{key}-01")),
        ..notification(key, 0)
    };
    let batch = vec![traced("b7ad6b7169203331"), traced("b7ad6b7169203332")];
    store.accept_all(batch.clone()).await.unwrap();
    for n in batch {
        let latest = store
            .latest_notification(Source::Dynatrace, &n.problem_key)
            .await
            .unwrap();
        assert_eq!(latest.unwrap().notification.trace, n.trace);
    }
}

async fn a_run_goes_from_routed_to_done(store: &Store, _: &Path) {
    let id = routed_run(store).await;
    let first = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    assert_eq!(first, 1);
    assert!(
        store.claim_many(vec![(id, None)]).await.unwrap()[0].is_none(),
        "claimed once"
    );
    let retry_at = crate::clock::now_ms() + 60_000;
    let retry = Finish::Retry {
        error: "HTTP 503".into(),
        outcome: "{\"status\":503}".into(),
        retry_at_ms: retry_at,
    };
    store.finish(id, first, &retry).await.unwrap();
    let run = store.run(id).await.unwrap();
    assert_eq!(
        (run.status.as_str(), run.next_attempt_at_ms),
        ("pending", retry_at)
    );
    // No retry waits longer than the dispatcher's longest wait: one set later than that was set
    // before the clock went back, and is due.
    assert!(
        store.due_runs(300_000, 10).await.unwrap().is_empty(),
        "not due before its retry"
    );
    assert_eq!(store.due_runs(30_000, 10).await.unwrap().len(), 1);
    assert_eq!(store.earliest_pending_ms().await.unwrap(), Some(retry_at));
    store.defer(id, 0, None).await.unwrap();
    let second = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    let done = Finish::Succeeded {
        summary: "exit 0".into(),
        outcome: "{\"exit\":0}".into(),
        thread: None,
    };
    store.finish(id, second, &done).await.unwrap();
    let runs = store.problem_runs(Source::Dynatrace, "P-1").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].status.as_str(),
            runs[0].attempts,
            runs[0].summary.as_deref()
        ),
        ("succeeded", 2, Some("exit 0"))
    );
    let results: Vec<Option<String>> = store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.3)
        .collect();
    assert_eq!(
        results,
        [Some("transient".into()), Some("succeeded".into())]
    );
    let views = store
        .sent_views(&[(Source::Dynatrace, "P-1".into())])
        .await
        .unwrap();
    let view = views[0].as_ref().unwrap();
    assert_eq!((view.state.as_str(), view.runs.len()), ("OPEN", 1));
    assert!(view.changed_ms.is_some());
    let changed = store.last_sent_changes().await.unwrap();
    assert_eq!(changed.len(), 1);
    let group = store
        .group_runs(Source::Dynatrace, "P-1", "OPEN", &["script".into()])
        .await
        .unwrap();
    assert_eq!(group.len(), 1);
}

async fn runs_left_in_flight_are_put_back(store: &Store, _: &Path) {
    let id = routed_run(store).await;
    assert!(store.claim_many(vec![(id, None)]).await.unwrap()[0].is_some());
    assert_eq!(store.recover_in_flight(None).await.unwrap(), 1);
    let run = store.run(id).await.unwrap();
    assert_eq!(run.status, "pending");
    assert_eq!(
        store.attempts(id).await.unwrap()[0].3.as_deref(),
        Some("interrupted")
    );
}

async fn a_thread_is_kept_with_its_run_and_replaced_by_a_later_one(store: &Store, _: &Path) {
    use crate::store::ThreadRef;
    let id = routed_run(store).await;
    let thread = |r: &str| {
        Some(ThreadRef {
            reference: r.into(),
            url: Some(format!("https://chat.example/{r}")),
        })
    };
    let kept = || store.thread(Source::Dynatrace, "P-1", "script", "", None);
    assert_eq!(kept().await.unwrap(), None);
    // A retry names no thread: nothing is kept.
    let first = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    let retry = Finish::Retry {
        error: "503".into(),
        outcome: "{}".into(),
        retry_at_ms: 0,
    };
    store.finish(id, first, &retry).await.unwrap();
    assert_eq!(kept().await.unwrap(), None);
    let second = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    let done = |r: &str| Finish::Succeeded {
        summary: "posted".into(),
        outcome: "{}".into(),
        thread: thread(r),
    };
    store.finish(id, second, &done("C1/1.1")).await.unwrap();
    assert_eq!(kept().await.unwrap(), thread("C1/1.1"));
    // A later opening of the problem (after a close newer than this run's notification) starts
    // a thread of its own.
    assert_eq!(
        store
            .thread(Source::Dynatrace, "P-1", "script", "", Some(i64::MAX))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .thread(Source::Dynatrace, "P-1", "other", "", None)
            .await
            .unwrap(),
        None
    );
    store.schedule_replay(&[id]).await.unwrap();
    // The claim brings what the run needs: its notification and the thread kept so far; a claim
    // for a later opening brings none.
    let claim = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(claim.thread, thread("C1/1.1"));
    assert_eq!(claim.notification.notification.problem_key, "P-1");
    assert_eq!(
        claim.notification.id,
        store.run(id).await.unwrap().notification_id
    );
    let third = claim.attempt;
    store.finish(id, third, &done("C1/2.2")).await.unwrap();
    store.schedule_replay(&[id]).await.unwrap();
    let later = store.claim_many(vec![(id, Some(i64::MAX))]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(later.thread, None);
    store
        .finish(id, later.attempt, &done("C1/2.2"))
        .await
        .unwrap();
    let listed = store.threads(Source::Dynatrace, "P-1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].action.as_str(), listed[0].reference.as_str()),
        ("script", "C1/2.2")
    );
    assert!(listed[0].updated_at_ms >= listed[0].created_at_ms);
}

async fn silences_hold_runs_until_they_end(store: &Store, _: &Path) {
    use crate::store::{RunStart, SilenceRow};
    let now = crate::clock::now_ms();
    let silence = SilenceRow {
        id: "sil_1".into(),
        matchers: r#"[{"key":"problem","value":"P-1"}]"#.into(),
        starts_at_ms: now,
        ends_at_ms: now + 3_600_000,
        comment: "patching".into(),
        author: "ops".into(),
        created_at_ms: now,
        expired_at_ms: None,
        renotify: true,
        settled_at_ms: None,
    };
    store.add_silence(silence).await.unwrap();
    let listed = store.silences(now).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_active(now) && listed[0].renotify);
    assert!(store.silences_to_settle(now).await.unwrap().is_empty());

    store.accept(notification("P-1", 0)).await.unwrap();
    let n = store
        .notification(store.due_plans(0, 10).await.unwrap()[0])
        .await
        .unwrap();
    let run = NewRun {
        idem_key: "dynatrace/P-1/OPEN/page/".into(),
        action: "page".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start: RunStart::Silenced {
            held_by: "sil_1".into(),
            note: "silenced by sil_1".into(),
        },
    };
    store.insert_runs(&[(&n, vec![run])]).await.unwrap();
    assert!(
        store.due_runs(0, 10).await.unwrap().is_empty(),
        "a silenced run is not due"
    );
    let held = store.held_runs("sil_1").await.unwrap();
    assert_eq!((held.len(), held[0].status.as_str()), (1, "silenced"));
    assert_eq!(held[0].last_error.as_deref(), Some("silenced by sil_1"));

    assert!(store.expire_silence("sil_1".into(), now + 1).await.unwrap());
    assert!(
        !store.expire_silence("sil_1".into(), now + 2).await.unwrap(),
        "once"
    );
    let ended = store.silences_to_settle(now + 2).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert!(!ended[0].is_active(now + 2));
    store
        .release_runs(vec![held[0].id], true, "silence sil_1 ended".into())
        .await
        .unwrap();
    store.settle_silence("sil_1".into(), now + 2).await.unwrap();
    assert!(store.silences_to_settle(now + 3).await.unwrap().is_empty());
    let due = store.due_runs(0, 10).await.unwrap();
    assert_eq!(due.len(), 1, "released: due now");
    assert!(store.held_runs("sil_1").await.unwrap().is_empty());

    store.beat("nightly".into(), 5).await.unwrap();
    store.beat("nightly".into(), 3).await.unwrap();
    assert_eq!(
        store.beats().await.unwrap(),
        [("nightly".to_string(), 5)],
        "an older beat changes nothing"
    );
}

async fn a_flap_wait_is_held_and_suppressed(store: &Store, _: &Path) {
    use crate::store::RunStart;
    let planned = async |n: Notification| {
        store.accept(n).await.unwrap();
        store
            .notification(store.due_plans(0, 10).await.unwrap()[0])
            .await
            .unwrap()
    };
    let run = |state: &str, start: RunStart| NewRun {
        idem_key: format!("dynatrace/P-1/{state}/page/"),
        action: "page".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start,
    };
    let open = planned(notification("P-1", 0)).await;
    let far = crate::clock::now_ms() + 3_600_000;
    let held = RunStart::Held {
        until_ms: far,
        held_by: "wait".into(),
        note: "flap wait".into(),
    };
    store
        .insert_runs(&[(&open, vec![run("OPEN", held)])])
        .await
        .unwrap();
    // Further off than any retry, yet not taken for a clock that went back.
    assert!(store.due_runs(1000, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .episode(Source::Dynatrace, "P-1", open.id, false)
            .await
            .unwrap(),
        None
    );

    // The resolve, in the same transaction as its own runs, suppresses what waited.
    let resolved = planned(with_state("P-1", "RESOLVED")).await;
    assert_eq!(
        store
            .episode(Source::Dynatrace, "P-1", resolved.id, true)
            .await
            .unwrap(),
        None,
        "a resolve belongs to the opening it closes"
    );
    store
        .insert_runs(&[(&resolved, vec![run("RESOLVED", RunStart::Now)])])
        .await
        .unwrap();
    let runs = store.problem_runs(Source::Dynatrace, "P-1").await.unwrap();
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_eq!(
            (r.status.as_str(), r.summary.as_deref()),
            ("suppressed", Some(crate::store::FLAP_NOTE)),
            "{}",
            r.state
        );
    }
    assert!(store.due_runs(0, 10).await.unwrap().is_empty());

    // Opened again: a new opening, whose runs are keyed apart.
    let again = planned(notification("P-1", 2)).await;
    assert_eq!(
        store
            .episode(Source::Dynatrace, "P-1", again.id, false)
            .await
            .unwrap(),
        Some(resolved.id)
    );
}

/// The open's held run and the close come in one pass: the close still ends the wait (the
/// runs routed before it in the batch are written before it looks), and counts stay per plan.
async fn an_open_and_its_close_routed_together_run_nothing(store: &Store, _: &Path) {
    use crate::store::RunStart;
    store.accept(notification("P-1", 0)).await.unwrap();
    store.accept(notification("P-2", 0)).await.unwrap();
    store.accept(with_state("P-1", "RESOLVED")).await.unwrap();
    let ids = store.due_plans(0, 10).await.unwrap();
    assert_eq!(ids.len(), 3);
    let plans = store.notifications(&ids).await.unwrap();
    let run = |n: &StoredNotification, start: RunStart| NewRun {
        idem_key: format!(
            "dynatrace/{}/{}/page/",
            n.notification.problem_key, n.notification.state
        ),
        action: "page".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start,
    };
    let held = RunStart::Held {
        until_ms: crate::clock::now_ms() + 3_600_000,
        held_by: "wait".into(),
        note: "flap wait".into(),
    };
    let batch: Vec<(&StoredNotification, Vec<NewRun>)> = vec![
        (&plans[0], vec![run(&plans[0], held.clone())]),
        (&plans[1], vec![run(&plans[1], RunStart::Now)]),
        (&plans[2], vec![run(&plans[2], RunStart::Now)]),
    ];
    assert_eq!(store.insert_runs(&batch).await.unwrap(), vec![1, 1, 1]);
    assert_eq!(
        store.insert_runs(&batch).await.unwrap(),
        vec![0, 0, 0],
        "routed again, nothing is new"
    );
    let p1 = store.problem_runs(Source::Dynatrace, "P-1").await.unwrap();
    assert_eq!(p1.len(), 2);
    assert!(p1.iter().all(|r| r.status == "suppressed"), "{p1:?}");
    let p2 = store.problem_runs(Source::Dynatrace, "P-2").await.unwrap();
    assert_eq!(p2[0].status, "pending", "another problem is not touched");
    assert!(store.due_plans(0, 10).await.unwrap().is_empty());
}

async fn a_replay_is_a_manual_attempt(store: &Store, _: &Path) {
    let id = routed_run(store).await;
    let first = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    let done = Finish::Succeeded {
        summary: "exit 0".into(),
        outcome: "{}".into(),
        thread: None,
    };
    store.finish(id, first, &done).await.unwrap();
    assert_eq!(store.schedule_replay(&[id]).await.unwrap(), 1);
    assert_eq!(store.pending_runs().await.unwrap(), 1);
    let second = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    let manual: Vec<bool> = store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(manual, [false, true]);
    assert_eq!(second, 2);
}

async fn an_enrichment_is_done_once(store: &Store, _: &Path) {
    let mut n = notification("P-5", 0);
    n.pid = Some("5V2".into());
    store.accept(n).await.unwrap();
    let due = store.due_enrichments(300_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].notification_id;
    store
        .store_details(id, "{\"title\":\"from the API\"}")
        .await
        .unwrap();
    store
        .record_enrichment(id, crate::store::EnrichmentOutcome::Done)
        .await
        .unwrap();
    assert!(store.due_enrichments(300_000, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .latest_details(Source::Dynatrace, "P-5")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"title\":\"from the API\"}")
    );
    // Asked by PID alone, and by id alone: found either way; what was not asked is not read.
    let by_pid = crate::feed::Wanted {
        keys: vec!["P-404".into()],
        pids: vec!["5V2".into()],
    };
    let received = store.received(&by_pid).await.unwrap();
    assert!(received.pids.contains("5V2") && received.problem_keys.contains("P-5"));
    let by_key = crate::feed::Wanted {
        keys: vec!["P-5".into()],
        pids: vec![],
    };
    assert!(store.received(&by_key).await.unwrap().pids.contains("5V2"));
    let neither = crate::feed::Wanted {
        keys: vec!["P-6".into()],
        pids: vec!["6V2".into()],
    };
    assert!(store
        .received(&neither)
        .await
        .unwrap()
        .problem_keys
        .is_empty());
}

async fn the_views_count_what_is_stored(store: &Store, _: &Path) {
    for key in ["P-1", "P-2", "P-3"] {
        store.accept(notification(key, 0)).await.unwrap();
    }
    let mut resolved = notification("P-1", 0);
    resolved.state = "RESOLVED".into();
    store.accept(resolved).await.unwrap();
    let problems = store.problems(Page::first(10)).await.unwrap();
    assert_eq!(problems.len(), 3);
    assert_eq!(
        (problems[0].problem_key.as_str(), problems[0].state.as_str()),
        ("P-1", "RESOLVED")
    );
    assert_eq!(problems[0].notifications, 2);
    // By key: the problems below the second one's newest notification.
    let below = Page {
        before: problems[1].newest_id,
        ..Page::first(10)
    };
    let rest = store.problems(below).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].problem_key, problems[2].problem_key);
    let first = store.latest_notifications(Page::first(2)).await.unwrap();
    assert_eq!(first.len(), 2);
    let next = Page {
        before: first[1].id,
        ..Page::first(10)
    };
    assert_eq!(store.latest_notifications(next).await.unwrap().len(), 2);
    let skipped = Page {
        skip: 3,
        ..Page::first(10)
    };
    assert_eq!(store.latest_notifications(skipped).await.unwrap().len(), 1);
    assert_eq!(
        store
            .problem_notifications(Source::Dynatrace, "P-1")
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.source_of("P-2").await.unwrap(),
        Some(Source::Dynatrace)
    );
    assert_eq!(store.source_of("nope").await.unwrap(), None);
    let hours = store.hourly_counts().await.unwrap();
    assert_eq!(hours.iter().map(|h| h.count).sum::<i64>(), 4);
    assert!(store
        .has_state(Source::Dynatrace, "P-1", "RESOLVED")
        .await
        .unwrap());
    let exported = store.export_batch(0, 0, 10).await.unwrap();
    assert_eq!(exported.len(), 4);
}

fn with_state(key: &str, state: &str) -> Notification {
    Notification {
        state: state.into(),
        ..notification(key, 0)
    }
}

/// Stores a notification, routes it to one run and ends that run with `finish` (or leaves it
/// pending).
async fn handled(store: &Store, n: Notification, finish: Option<Finish>) {
    let (key, state) = (n.problem_key.clone(), n.state.clone());
    store.accept(n).await.unwrap();
    let plans = store.due_plans(0, 10).await.unwrap();
    // A test notification is stored without a plan: nothing runs for it.
    let Some(&plan) = plans.first() else { return };
    let stored = store.notification(plan).await.unwrap();
    let run = NewRun {
        idem_key: format!("dynatrace/{key}/{state}/script/"),
        action: "script".into(),
        target: String::new(),
        target_label: String::new(),
        priority: 3,
        start: Default::default(),
    };
    store.insert_runs(&[(&stored, vec![run])]).await.unwrap();
    let Some(finish) = finish else { return };
    let id = store.due_runs(0, 10).await.unwrap()[0].id;
    let attempt = store.claim_many(vec![(id, None)]).await.unwrap()[0]
        .as_ref()
        .unwrap()
        .attempt;
    store.finish(id, attempt, &finish).await.unwrap();
}

async fn problems_that_ended_are_pruned_and_the_others_kept(store: &Store, dir: &Path) {
    let done = || {
        Some(Finish::Succeeded {
            summary: "exit 0".into(),
            outcome: "{}".into(),
            thread: None,
        })
    };
    // Ended, with its runs done: goes.
    handled(store, with_state("ENDED", "OPEN"), done()).await;
    handled(
        store,
        with_state("ENDED", "RESOLVED"),
        Some(Finish::Succeeded {
            summary: "posted".into(),
            outcome: "{}".into(),
            thread: Some(crate::store::ThreadRef {
                reference: "C1/1.1".into(),
                url: None,
            }),
        }),
    )
    .await;
    assert_eq!(
        store
            .threads(Source::Dynatrace, "ENDED")
            .await
            .unwrap()
            .len(),
        1
    );
    // Still open: stays, however old.
    handled(store, with_state("OPEN", "OPEN"), done()).await;
    // Ended, but a run still waits: stays.
    handled(store, with_state("WAITING", "RESOLVED"), None).await;
    // A test notification: goes.
    let test = Notification {
        is_test: true,
        ..with_state("TEST", "OPEN")
    };
    handled(store, test, done()).await;
    assert!(dir.join("ENDED-OPEN.json").exists());

    let prune = async |cutoff: i64, dry: bool| {
        let problems = store
            .prune_candidates(cutoff, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, s, k)| (s, k))
            .collect();
        store.prune(problems, cutoff, dry).await.unwrap()
    };
    let now = crate::clock::now_ms();
    // Nothing ended before an hour ago.
    assert!(prune(now - 3_600_000, false).await.problems.is_empty());

    let later = now + 3_600_000;
    let dry = prune(later, true).await;
    let keys = |p: &crate::store::Pruned| {
        let mut k: Vec<String> = p.problems.iter().map(|(_, k)| k.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&dry), ["ENDED", "TEST"]);
    assert_eq!((dry.notifications, dry.runs), (3, 2));
    assert!(
        dir.join("ENDED-OPEN.json").exists(),
        "a dry run deletes nothing"
    );
    assert_eq!(
        store
            .problem_notifications(Source::Dynatrace, "ENDED")
            .await
            .unwrap()
            .len(),
        2
    );

    let pruned = prune(later, false).await;
    assert_eq!(keys(&pruned), ["ENDED", "TEST"]);
    for gone in ["ENDED-OPEN.json", "ENDED-RESOLVED.json", "TEST-OPEN.json"] {
        assert!(!dir.join(gone).exists(), "{gone}");
    }
    assert!(store
        .problem_notifications(Source::Dynatrace, "ENDED")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .threads(Source::Dynatrace, "ENDED")
        .await
        .unwrap()
        .is_empty());
    for kept in ["OPEN", "WAITING"] {
        assert_eq!(
            store
                .problem_notifications(Source::Dynatrace, kept)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(dir
            .join(format!(
                "{kept}-{}.json",
                if kept == "OPEN" { "OPEN" } else { "RESOLVED" }
            ))
            .exists());
    }
    let counts = store.source_counts().await.unwrap();
    assert_eq!(counts[0].received, 2);
    // Nothing more to do, and the folder check finds nothing missing or foreign.
    assert!(prune(later, false).await.problems.is_empty());
    let check = store.check_folder().await.unwrap();
    assert_eq!((check.restored, check.unknown.len()), (0, 0));
}

async fn a_folder_left_as_it_was_is_not_compared_again(store: &Store, dir: &Path) {
    store.accept(notification("P-1", 0)).await.unwrap();
    // No mark yet: the first start compares in full.
    assert!(!store.check_folder().await.unwrap().as_left);
    assert!(store.mark_folder().await.unwrap());
    assert!(store.check_folder().await.unwrap().as_left);
    // A mark serves one start only.
    assert!(!store.check_folder().await.unwrap().as_left);

    // A file gone since the stop: compared, and written back.
    assert!(store.mark_folder().await.unwrap());
    std::fs::remove_file(dir.join("P-1-OPEN.json")).unwrap();
    let check = store.check_folder().await.unwrap();
    assert_eq!((check.as_left, check.restored), (false, 1));

    // A notification stored since (by a command, or another instance): compared.
    assert!(store.mark_folder().await.unwrap());
    store.accept(notification("P-2", 0)).await.unwrap();
    assert!(!store.check_folder().await.unwrap().as_left);

    // A foreign file found at start: no mark at the stop, so the next start compares again.
    std::fs::write(dir.join("sample.json"), b"{}").unwrap();
    assert_eq!(store.check_folder().await.unwrap().unknown, ["sample.json"]);
    assert!(!store.mark_folder().await.unwrap());
    assert!(!store.check_folder().await.unwrap().as_left);
}

async fn tokens_overrides_and_the_audit_are_kept(store: &Store, _: &Path) {
    use crate::store::{AuditRow, OverrideRow, TokenRow};
    let token = TokenRow {
        id: "0123456789abcdef".into(),
        person: "ana".into(),
        role: "responder".into(),
        digest: "d".into(),
        created_at_ms: 10,
        created_by: "admin".into(),
        expires_at_ms: Some(1_000),
        revoked_at_ms: None,
    };
    store.add_token(token.clone()).await.unwrap();
    assert_eq!(store.token(&token.id).await.unwrap(), Some(token.clone()));
    assert!(store.token("nope").await.unwrap().is_none());
    assert!(token.live(999) && !token.live(1_000));
    assert!(store.revoke_token(token.id.clone(), 50).await.unwrap());
    assert!(!store.revoke_token(token.id.clone(), 60).await.unwrap());
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at_ms, Some(50));
    assert!(!listed[0].live(51));

    for (id, schedule, from, until) in [("o1", "primary", 100, 200), ("o2", "other", 150, 400)] {
        store
            .add_override(OverrideRow {
                id: id.into(),
                schedule: schedule.into(),
                person: "bo".into(),
                from_ms: from,
                until_ms: until,
                created_at_ms: 5,
                created_by: "ana".into(),
                removed_at_ms: None,
            })
            .await
            .unwrap();
    }
    let ids = |rows: Vec<OverrideRow>| rows.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.overrides(None, 0).await.unwrap()), ["o1", "o2"]);
    assert_eq!(
        ids(store.overrides(Some("primary".into()), 0).await.unwrap()),
        ["o1"]
    );
    assert_eq!(ids(store.overrides(None, 200).await.unwrap()), ["o2"]);
    assert!(store.remove_override("o2".into(), 7).await.unwrap());
    assert!(!store.remove_override("o2".into(), 8).await.unwrap());
    assert!(ids(store.overrides(None, 200).await.unwrap()).is_empty());

    for (at, action) in [(1, "silence.add"), (2, "replay")] {
        store
            .record_audit(AuditRow {
                id: 0,
                at_ms: at,
                actor: "ana".into(),
                token_id: None,
                verified: true,
                via: "api".into(),
                from_addr: "127.0.0.1".into(),
                action: action.into(),
                target: "x".into(),
                detail: "<script>".into(),
            })
            .await
            .unwrap();
    }
    let rows = store.audit(0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["replay", "silence.add"]
    );
    assert!(rows[0].verified && rows[0].detail == "<script>");
    assert_eq!(store.audit(2, 10).await.unwrap().len(), 1);
    assert_eq!(store.audit(0, 1).await.unwrap().len(), 1);
}

async fn an_escalation_climbs_once_and_stops_when_acknowledged(store: &Store, _: &Path) {
    use crate::store::{Advance, EscalationRow, StepRow};
    let new = |key: &str| EscalationRow {
        id: 0,
        source: Source::Dynatrace,
        problem_key: key.into(),
        notification_id: 1,
        policy: "prod".into(),
        state: "open".into(),
        round: 0,
        pass: 0,
        step: 0,
        next_at_ms: Some(100),
        held_by: None,
        code: "123456".into(),
        started_at_ms: 50,
        updated_at_ms: 50,
        acked_at_ms: None,
        acked_by: None,
        acked_via: None,
    };
    assert!(store.start_escalation(new("P1")).await.unwrap());
    // One at a time per problem.
    assert!(!store.start_escalation(new("P1")).await.unwrap());
    assert!(store.due_escalations(99, 10).await.unwrap().is_empty());
    let due = store.due_escalations(100, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let e = &due[0];
    assert_eq!((e.state.as_str(), e.pass, e.step), ("open", 0, 0));
    assert_eq!(store.open_escalations().await.unwrap(), 1);
    // Two instances move the same step on: one wins.
    let to = Advance::To {
        pass: 0,
        step: 1,
        at_ms: 400,
    };
    assert!(store
        .advance_escalation(e.id, 0, 0, 0, to.clone(), 100)
        .await
        .unwrap());
    assert!(!store
        .advance_escalation(e.id, 0, 0, 0, to, 100)
        .await
        .unwrap());
    let step = StepRow {
        escalation_id: e.id,
        round: 0,
        pass: 0,
        step: 0,
        started_at_ms: 100,
        notified: "[]".into(),
        actions: "[]".into(),
    };
    store.record_step(step.clone()).await.unwrap();
    store.record_step(step).await.unwrap();
    assert_eq!(store.escalation_steps(e.id).await.unwrap().len(), 1);
    // Held: back to the first step.
    let held = Advance::Held {
        by: "sil_1".into(),
        at_ms: 500,
    };
    assert!(store
        .advance_escalation(e.id, 0, 0, 1, held.clone(), 200)
        .await
        .unwrap());
    let now = store.escalation(e.id).await.unwrap().unwrap();
    assert_eq!(
        (now.round, now.pass, now.step, now.held_by.as_deref()),
        (1, 0, 0, Some("sil_1"))
    );
    // Held again at the next look: the same round.
    assert!(store
        .advance_escalation(e.id, 1, 0, 0, held, 250)
        .await
        .unwrap());
    assert_eq!(store.escalation(e.id).await.unwrap().unwrap().round, 1);
    assert_eq!(
        store
            .escalation_by_code("123456")
            .await
            .unwrap()
            .map(|e| e.id),
        Some(e.id)
    );
    // Acknowledged: no longer due, not found by its code, and not twice.
    let acked = store
        .acknowledge(Source::Dynatrace, "P1", "ana".into(), "sms".into(), 300)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acked.state.as_str(), acked.acked_by.as_deref()),
        ("acked", Some("ana"))
    );
    assert!(store
        .acknowledge(Source::Dynatrace, "P1", "bo".into(), "api".into(), 301)
        .await
        .unwrap()
        .is_none());
    assert!(store.due_escalations(10_000, 10).await.unwrap().is_empty());
    assert!(store.escalation_by_code("123456").await.unwrap().is_none());
    // Unacknowledged: from the first step, due now.
    let again = store
        .unacknowledge(Source::Dynatrace, "P1", 400)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            again.state.as_str(),
            again.round,
            again.pass,
            again.step,
            again.next_at_ms
        ),
        ("open", 2, 0, 0, Some(400))
    );
    // Resolved: ended, and a new opening may start another.
    assert_eq!(
        store
            .end_escalations(Source::Dynatrace, "P1".into(), "resolved".into(), 500)
            .await
            .unwrap(),
        1
    );
    assert!(store.start_escalation(new("P1")).await.unwrap());
    assert_eq!(
        store
            .escalation_of(Source::Dynatrace, "P1")
            .await
            .unwrap()
            .unwrap()
            .state,
        "open"
    );
    // The shared key is made once.
    let k = store.shared_key("links", "a".into()).await.unwrap();
    assert_eq!(k, "a");
    assert_eq!(store.shared_key("links", "b".into()).await.unwrap(), "a");
}

async fn a_group_sends_once_and_goes_with_its_first_member(store: &Store, _dir: &Path) {
    let done = || {
        Some(Finish::Succeeded {
            summary: "exit 0".into(),
            outcome: "{}".into(),
            thread: None,
        })
    };
    let now = crate::clock::now_ms();
    let mut group = 0;
    for key in ["G1", "G2"] {
        handled(store, with_state(key, "OPEN"), done()).await;
        let n = store
            .latest_notification(Source::Dynatrace, key)
            .await
            .unwrap()
            .unwrap();
        let (id, opened) = store
            .join_group(crate::store::GroupJoin {
                route: "routes[0]".into(),
                key: "alertname=Down".into(),
                source: Source::Dynatrace,
                problem_key: key.into(),
                notification_id: n.id,
                title: key.into(),
                now,
                wait_ms: 0,
                interval_ms: 60_000,
            })
            .await
            .unwrap();
        assert_eq!(opened, key == "G1");
        group = id;
    }
    assert_eq!(store.due_groups(now, 10).await.unwrap().len(), 1);
    // One instance records the send; a second one, too late, does not.
    assert!(store
        .mark_group_sent(group, 0, true, false, now)
        .await
        .unwrap());
    assert!(!store
        .mark_group_sent(group, 0, true, false, now)
        .await
        .unwrap());
    let members = store.group_members(group).await.unwrap();
    assert!(members.iter().all(|m| m.first_send == Some(1)));
    assert!(store
        .due_groups(now + 3_600_000, 10)
        .await
        .unwrap()
        .is_empty());
    // The first member resolving leaves the group open and not due; the last makes it due.
    store
        .leave_groups(Source::Dynatrace, "G1".into(), now)
        .await
        .unwrap();
    assert!(store.due_groups(now, 10).await.unwrap().is_empty());
    store
        .leave_groups(Source::Dynatrace, "G2".into(), now)
        .await
        .unwrap();
    assert_eq!(store.due_groups(now, 10).await.unwrap()[0].id, group);
    assert!(store
        .mark_group_sent(group, 1, true, true, now)
        .await
        .unwrap());
    assert_eq!(store.group(group).await.unwrap().unwrap().state, "resolved");

    for key in ["G1", "G2"] {
        handled(store, with_state(key, "RESOLVED"), done()).await;
    }
    let later = now + 3_600_000;
    let problems = store
        .prune_candidates(later, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s, k)| (s, k))
        .collect();
    store.prune(problems, later, false).await.unwrap();
    assert!(store.group(group).await.unwrap().is_none());
    assert!(store
        .groups_of(Source::Dynatrace, "G2")
        .await
        .unwrap()
        .is_empty());
}

async fn a_routing_pass_changes_groups_in_the_order_its_notifications_came(
    store: &Store,
    _: &Path,
) {
    use crate::store::{GroupChange, GroupJoin};
    let now = crate::clock::now_ms();
    let mut ids = Vec::new();
    for key in ["H1", "H2"] {
        store.accept(with_state(key, "OPEN")).await.unwrap();
        let n = store
            .latest_notification(Source::Dynatrace, key)
            .await
            .unwrap()
            .unwrap();
        ids.push(n.id);
    }
    let join = |key: &str, id: i64| {
        GroupChange::Join(GroupJoin {
            route: "routes[0]".into(),
            key: "alertname=Down".into(),
            source: Source::Dynatrace,
            problem_key: key.into(),
            notification_id: id,
            title: key.into(),
            now,
            wait_ms: 60_000,
            interval_ms: 60_000,
        })
    };
    let leave = |key: &str| GroupChange::Leave {
        source: Source::Dynatrace,
        problem_key: key.into(),
        now,
    };
    // H1 opens the group, H2 joins it, H1 resolves, all in one pass.
    let done = store
        .change_groups(vec![join("H1", ids[0]), join("H2", ids[1]), leave("H1")])
        .await
        .unwrap();
    let group = done[0].unwrap().0;
    assert_eq!(done, [Some((group, true)), Some((group, false)), None]);
    let members: Vec<(String, String)> = store
        .group_members(group)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.problem_key, m.state))
        .collect();
    assert_eq!(
        members,
        [
            ("H1".into(), "RESOLVED".into()),
            ("H2".into(), "OPEN".into())
        ]
    );
    // Read with other groups' members in one go: the same, and nothing of a group that is not.
    let together: Vec<(i64, String)> = store
        .members_of_groups(vec![group, group + 1000])
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.group_id, m.problem_key))
        .collect();
    assert_eq!(together, [(group, "H1".into()), (group, "H2".into())]);
    assert!(store
        .members_of_groups(Vec::new())
        .await
        .unwrap()
        .is_empty());
    // H2 resolves too, before any send: the group ends without one.
    assert_eq!(
        store.change_groups(vec![leave("H2")]).await.unwrap(),
        [None]
    );
    let g = store.group(group).await.unwrap().unwrap();
    assert_eq!((g.state.as_str(), g.sends), ("resolved", 0));
    assert!(store.change_groups(Vec::new()).await.unwrap().is_empty());
}

//! Plans, enrichments and action runs on PostgreSQL: the work queue several instances share.

use super::clock::{takeover, DB_NOW_MS};
use super::rows;
use super::Postgres;
use crate::domain::{Notification, Source};
use crate::store::concerns::Queue;
use crate::store::model::stored_facts;
use crate::store::{Claim, DueEnrichment, EnrichmentOutcome, Room};
use crate::store::{Finish, NewRun, RunRow, SentView, StoreError, StoredNotification, ThreadRef};
use rows::{all, optional, FromRow};

pub(super) const RUN_COLUMNS: &str =
    "id, notification_id, idem_key, source, problem_key, state, action, target, target_label,
     status, attempts, next_attempt_at_ms, last_error, outcome, manual, updated_at_ms, summary";

/// How many pending plans, per plan asked for, are looked at for one that is ready.
const CANDIDATES: i64 = 4;

const NOTIFICATION: &str = "SELECT n.id, n.source, n.problem_key, n.state, n.pid, n.title,
        n.is_test, n.body, n.received_at_ms, e.details, n.facts, n.trace_parent
     FROM notifications n LEFT JOIN enrichments e ON e.notification_id = n.id";

/// By its columns' names, as [`NOTIFICATION`] and the claim read them.
impl FromRow for StoredNotification {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        let id = r.try_get("id")?;
        let body: Vec<u8> = r.try_get("body")?;
        let facts: Option<String> = r.try_get("facts")?;
        Ok(StoredNotification {
            id,
            notification: Notification {
                source: r.try_get("source")?,
                problem_key: r.try_get("problem_key")?,
                state: r.try_get("state")?,
                pid: r.try_get("pid")?,
                title: r.try_get("title")?,
                is_test: r.try_get("is_test")?,
                facts: stored_facts(id, facts.as_deref(), &body),
                body,
                identity: None,
                trace: r.try_get("trace_parent")?,
            },
            received_at_ms: r.try_get("received_at_ms")?,
            details: r.try_get("details")?,
        })
    }
}

impl Queue for Postgres {
    /// Enrichments due now, claimed for this instance: each is held back from the others for a
    /// while (the lease, at most half of `max_wait_ms`), so two instances never ask Dynatrace for
    /// the same problem at once; one whose instance died is due again when the hold ends.
    async fn due_enrichments(
        &self,
        max_wait_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueEnrichment>, StoreError> {
        let now = self.clock.now();
        let hold = self.lease_ms.min(max_wait_ms / 2);
        let c = self.pool.get().await?;
        let rows = rows::query(
            &c,
            "WITH due AS (
                 SELECT notification_id FROM enrichments
                 WHERE status = 'pending'
                   AND (next_attempt_at_ms <= $1 OR next_attempt_at_ms > $2)
                 ORDER BY next_attempt_at_ms, notification_id LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE enrichments e SET next_attempt_at_ms = $1::BIGINT + $4::BIGINT
             FROM due, notifications n
             WHERE e.notification_id = due.notification_id AND n.id = e.notification_id
             RETURNING e.notification_id, n.problem_key, n.state, n.pid, e.attempts,
                       n.trace_parent",
            &[&now, &(now + max_wait_ms), &limit, &hold],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueEnrichment {
                    notification_id: r.try_get(0)?,
                    problem_key: r.try_get(1)?,
                    state: r.try_get(2)?,
                    pid: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    trace: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn record_enrichment(
        &self,
        notification_id: i64,
        outcome: EnrichmentOutcome<'_>,
    ) -> Result<(), StoreError> {
        let (status, mut next, error) = outcome.columns();
        if status == "pending" {
            // A retry's due time, computed on this instance's clock, compared on the store's.
            next = self.clock.shift(next);
        }
        rows::exec(
            &self.pool.get().await?,
            "UPDATE enrichments SET status = $1, attempts = attempts + 1,
                        next_attempt_at_ms = $2, last_error = $3, updated_at_ms = $4
                 WHERE notification_id = $5",
            &[&status, &next, &error, &self.clock.now(), &notification_id],
        )
        .await?;
        Ok(())
    }

    /// The oldest plans ready to route. The candidates are taken first, in order, from the
    /// partial index of pending plans, and each is looked up alone (`LIMIT 1` keeps it a
    /// subquery), so a backlog of plans and of details still to fetch, which a `NOT EXISTS`
    /// had the planner sort and merge whole at every pass, costs no more than the batch.
    async fn due_plans(&self, enrich_wait_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let now = self.clock.now();
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT p.notification_id
             FROM (SELECT notification_id FROM plans WHERE status = 'pending'
                   ORDER BY notification_id LIMIT $4) p
             LEFT JOIN LATERAL (
                   SELECT 1 AS waiting
                   FROM enrichments e JOIN notifications n ON n.id = e.notification_id
                   WHERE e.notification_id = p.notification_id AND e.status = 'pending'
                     AND n.received_at_ms > $2 AND n.received_at_ms <= $1
                   LIMIT 1) w ON true
             WHERE w.waiting IS NULL
             ORDER BY p.notification_id LIMIT $3",
            &[&now, &(now - enrich_wait_ms), &limit, &(limit * CANDIDATES)],
        )
        .await
    }

    async fn notification(&self, id: i64) -> Result<StoredNotification, StoreError> {
        let c = self.pool.get().await?;
        rows::one(&c, &format!("{NOTIFICATION} WHERE n.id = $1"), &[&id]).await
    }

    /// Several at once, by id: one round trip for a pass's plans, not one per plan.
    async fn notifications(&self, ids: &[i64]) -> Result<Vec<StoredNotification>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            &format!("{NOTIFICATION} WHERE n.id = ANY($1) ORDER BY n.id"),
            &[&ids],
        )
        .await
    }

    async fn latest_notification(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<StoredNotification>, StoreError> {
        let c = self.pool.get().await?;
        optional(
            &c,
            &format!(
                "{NOTIFICATION} WHERE n.source = $1 AND n.problem_key = $2 ORDER BY n.id DESC LIMIT 1"
            ),
            &[&source, &problem_key],
        )
        .await
    }

    async fn earliest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        let c = self.pool.get().await?;
        rows::one(
            &c,
            "SELECT MIN(at) FROM (
                SELECT MIN(next_attempt_at_ms) AS at FROM action_runs WHERE status = 'pending'
                UNION ALL
                SELECT MIN(lease_until_ms) FROM action_runs WHERE status = 'running'
                UNION ALL
                SELECT MIN(next_attempt_at_ms) FROM enrichments WHERE status = 'pending') t",
            &[],
        )
        .await
    }

    async fn has_state(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let found: Option<i64> = optional(
            &c,
            "SELECT 1::BIGINT FROM notifications
             WHERE source = $1 AND problem_key = $2 AND state = $3 LIMIT 1",
            &[&source, &problem_key, &state],
        )
        .await?;
        Ok(found.is_some())
    }

    /// Creates the routed runs and closes the plans in one transaction. Two instances routing the
    /// same plan at once create each run once: the idempotency key is unique. The runs go in one
    /// statement for all the plans between two closes (a statement per run was most of a pass
    /// with actions).
    async fn insert_runs(
        &self,
        plans: &[(&StoredNotification, Vec<NewRun>)],
    ) -> Result<Vec<usize>, StoreError> {
        let now = self.clock.now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let mut pending = RunRows::default();
        let mut inserted = std::collections::HashMap::new();
        for (n, runs) in plans {
            // A close ends every flap wait of its problem: what waited never happens, and
            // neither do this notification's runs of the same actions. The runs routed before
            // it in this pass are written first, so that their waits end too.
            let suppressed: Vec<String> = if !n.notification.is_test
                && crate::store::is_closed(&n.notification.state, false)
            {
                pending.flush(&tx, now, &mut inserted).await?;
                all(
                    &tx,
                    "UPDATE action_runs SET status = 'suppressed', last_error = $3, summary = $3,
                            updated_at_ms = $4
                      WHERE source = $1 AND problem_key = $2 AND status = 'pending'
                        AND held_by = 'wait' AND attempts = 0 AND next_attempt_at_ms > $5
                     RETURNING action",
                    &[
                        &n.notification.source,
                        &n.notification.problem_key,
                        &crate::store::FLAP_NOTE,
                        &now,
                        &n.received_at_ms,
                    ],
                )
                .await?
            } else {
                Vec::new()
            };
            for r in runs {
                let start = r.start_after(&suppressed);
                pending.push(n, r, &start);
            }
        }
        pending.flush(&tx, now, &mut inserted).await?;
        let counts = plans
            .iter()
            .map(|(n, _)| inserted.get(&n.id).copied().unwrap_or(0))
            .collect();
        let ids: Vec<i64> = plans.iter().map(|(n, _)| n.id).collect();
        close_plans(&tx, &ids, now).await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn close_plans(&self, notification_ids: Vec<i64>) -> Result<(), StoreError> {
        let now = self.clock.now();
        close_plans(&self.pool.get().await?, &notification_ids, now).await
    }

    /// Runs due now: pending ones, and running ones whose instance stopped renewing their lease
    /// (it died), which are taken over.
    async fn due_runs(&self, max_wait_ms: i64, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let now = self.clock.now();
        let c = self.pool.get().await?;
        all(
            &c,
            &format!(
                "SELECT {RUN_COLUMNS} FROM action_runs r
                 WHERE (status = 'pending'
                        AND (next_attempt_at_ms <= $1
                             OR (next_attempt_at_ms > $2 AND held_by IS DISTINCT FROM 'wait')))
                    OR ($5 AND {})
                 ORDER BY next_attempt_at_ms, id LIMIT $3",
                takeover("$4::BIGINT")
            ),
            &[
                &now,
                &(now + max_wait_ms),
                &limit,
                &self.lease_ms,
                &self.clock.may_take_over(self.lease_ms),
            ],
        )
        .await
    }

    /// Per action in `wanted`, up to its number of due runs (as [`Postgres::due_runs`] finds
    /// them), the most urgent first: one statement, each action looked up on its own.
    async fn due_runs_of(
        &self,
        wanted: &[Room],
        max_wait_ms: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let now = self.clock.now();
        let actions: Vec<&str> = wanted.iter().map(|w| w.action.as_str()).collect();
        let limits: Vec<i64> = wanted.iter().map(|w| w.free).collect();
        let in_order: Vec<bool> = wanted.iter().map(|w| w.in_order).collect();
        let c = self.pool.get().await?;
        let columns = RUN_COLUMNS
            .split(',')
            .map(|c| format!("d.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        all(
            &c,
            &format!(
                "SELECT {columns}
                 FROM unnest($3::text[], $4::bigint[], $7::bool[]) AS w(action, n, in_order)
                 CROSS JOIN LATERAL (
                     (SELECT * FROM action_runs r
                      WHERE $5 AND r.action = w.action AND {}
                      ORDER BY r.lease_until_ms LIMIT w.n)
                     UNION ALL
                     (SELECT * FROM action_runs r
                      WHERE r.status = 'pending' AND r.action = w.action
                        AND (r.next_attempt_at_ms <= $1
                             OR (r.next_attempt_at_ms > $2 AND r.held_by IS DISTINCT FROM 'wait'))
                        AND NOT (w.in_order AND {})
                      ORDER BY r.priority, r.next_attempt_at_ms, r.id LIMIT w.n)
                     LIMIT w.n) AS d",
                takeover("$6::BIGINT"),
                crate::store::EARLIER_UNFINISHED
            ),
            &[
                &now,
                &(now + max_wait_ms),
                &actions,
                &limits,
                &self.clock.may_take_over(self.lease_ms),
                &self.lease_ms,
                &in_order,
            ],
        )
        .await
    }

    async fn problem_runs(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<RunRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            &format!(
                "SELECT {RUN_COLUMNS} FROM action_runs
                 WHERE source = $1 AND problem_key = $2 ORDER BY id"
            ),
            &[&source, &problem_key],
        )
        .await
    }

    async fn group_runs(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
        actions: &[String],
    ) -> Result<Vec<RunRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            &format!(
                "SELECT {RUN_COLUMNS} FROM action_runs
                 WHERE source = $1 AND problem_key = $2 AND state = $3 AND action = ANY($4)
                 ORDER BY id"
            ),
            &[&source, &problem_key, &state, &actions],
        )
        .await
    }

    /// Claims runs for this instance: each one that is pending, or running under a lease that
    /// ended, and that no other instance is claiming at this moment (`SKIP LOCKED`). A claim takes
    /// a lease of `dispatch.lease_secs` and counts an attempt, whose number is the fencing token
    /// its outcome is recorded under. A run taken over has its open attempt closed as interrupted.
    async fn claim_many(
        &self,
        runs: Vec<(i64, Option<i64>)>,
    ) -> Result<Vec<Option<Claim>>, StoreError> {
        let now = self.clock.now();
        let (run_ids, afters): (Vec<i64>, Vec<Option<i64>>) = runs.into_iter().unzip();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let rows = rows::query(
            &tx,
            &format!(
                "WITH c AS (
                     SELECT id, manual, status AS was FROM action_runs r
                     WHERE id = ANY($1) AND (status = 'pending' OR ($5 AND {}))
                     FOR UPDATE SKIP LOCKED)
                 UPDATE action_runs r
                 SET status = 'running', attempts = r.attempts + 1, manual = FALSE,
                     updated_at_ms = $2, instance = $3,
                     lease_until_ms = {DB_NOW_MS} + $4::BIGINT
                 FROM c WHERE r.id = c.id
                 RETURNING r.id, r.attempts, c.manual, c.was",
                takeover("$4::BIGINT")
            ),
            &[
                &run_ids,
                &now,
                &&*self.instance,
                &self.lease_ms,
                &self.clock.may_take_over(self.lease_ms),
            ],
        )
        .await?;
        let mut claimed = std::collections::HashMap::new();
        let mut attempts: (Vec<i64>, Vec<i64>, Vec<bool>) = Default::default();
        for row in &rows {
            let (id, attempt, manual, was): (i64, i64, bool, String) = FromRow::from_row(row)?;
            if was == "running" {
                rows::exec(
                    &tx,
                    "UPDATE action_attempts SET finished_at_ms = $1, result = 'interrupted'
                     WHERE run_id = $2 AND finished_at_ms IS NULL",
                    &[&now, &id],
                )
                .await?;
                tracing::warn!(
                    run = id,
                    attempt,
                    "took over a run whose instance stopped renewing its lease"
                );
            }
            claimed.insert(id, attempt);
            attempts.0.push(id);
            attempts.1.push(attempt);
            attempts.2.push(manual);
        }
        // Every claimed run's attempt in one statement: a round trip per run was most of a
        // claim of many.
        rows::exec(
            &tx,
            "INSERT INTO action_attempts (run_id, number, manual, started_at_ms, instance)
             SELECT run_id, number, manual, $4, $5
             FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) AS a(run_id, number, manual)",
            &[
                &attempts.0,
                &attempts.1,
                &attempts.2,
                &now,
                &&*self.instance,
            ],
        )
        .await?;
        // What each claimed run needs to start, in the same transaction: its notification and
        // the problem's thread for its action and target since its opening.
        let wanted: Vec<(i64, Option<i64>)> = run_ids
            .iter()
            .zip(&afters)
            .filter(|(id, _)| claimed.contains_key(*id))
            .map(|(id, after)| (*id, *after))
            .collect();
        let (ids, afters): (Vec<i64>, Vec<Option<i64>>) = wanted.into_iter().unzip();
        let needs = rows::query(
            &tx,
            "SELECT k.id AS run_id, n.id, n.source, n.problem_key, n.state, n.pid, n.title,
                    n.is_test, n.body, n.received_at_ms, e.details, n.facts, n.trace_parent,
                    t.ref AS thread_ref, t.url AS thread_url
             FROM unnest($1::bigint[], $2::bigint[]) AS k(id, after)
             JOIN action_runs r ON r.id = k.id
             JOIN notifications n ON n.id = r.notification_id
             LEFT JOIN enrichments e ON e.notification_id = n.id
             LEFT JOIN LATERAL (
                 SELECT t.ref, t.url FROM threads t JOIN action_runs tr ON tr.id = t.run_id
                 WHERE t.source = r.source AND t.problem_key = r.problem_key
                   AND t.action = r.action AND t.target = r.target
                   AND tr.notification_id > COALESCE(k.after, 0)) t ON true",
            &[&ids, &afters],
        )
        .await?;
        tx.commit().await?;
        let mut ready = std::collections::HashMap::new();
        for row in &needs {
            let run_id: i64 = row.try_get("run_id")?;
            let reference: Option<String> = row.try_get("thread_ref")?;
            let url: Option<String> = row.try_get("thread_url")?;
            let notification = StoredNotification::from_row(row)?;
            ready.insert(
                run_id,
                (
                    notification,
                    reference.map(|reference| ThreadRef { reference, url }),
                ),
            );
        }
        Ok(run_ids
            .iter()
            .map(|id| {
                let attempt = *claimed.get(id)?;
                let (notification, thread) = ready.remove(id)?;
                Some(Claim {
                    attempt,
                    notification,
                    thread,
                })
            })
            .collect())
    }

    /// Records how an attempt ended, only if the run is still this attempt's: a run taken over
    /// by another instance meanwhile keeps its successor's record.
    async fn finish(&self, run_id: i64, attempt: i64, finish: &Finish) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut f = crate::store::Finished::of(finish);
        if f.status == "pending" {
            // A retry's due time, computed on this instance's clock, compared on the store's.
            f.next = self.clock.shift(f.next);
        }
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let updated = rows::exec(
            &tx,
            "UPDATE action_runs SET status = $1, next_attempt_at_ms = $2, last_error = $3,
                        outcome = COALESCE($4, outcome), updated_at_ms = $5, summary = $7,
                        lease_until_ms = NULL
                 WHERE id = $6 AND attempts = $8 AND status = 'running'",
            &[
                &f.status, &f.next, &f.error, &f.outcome, &now, &run_id, &f.summary, &attempt,
            ],
        )
        .await?;
        if updated == 0 {
            tracing::warn!(
                run = run_id,
                attempt,
                "not recording an outcome: the run was taken over by another instance"
            );
            return Ok(());
        }
        rows::exec(
            &tx,
            "UPDATE action_attempts SET finished_at_ms = $1, result = $2, detail = COALESCE($3, $4)
             WHERE run_id = $5 AND number = $6",
            &[&now, &f.result, &f.outcome, &f.error, &run_id, &attempt],
        )
        .await?;
        if let Some(thread) = &f.thread {
            super::threads::keep(&tx, run_id, thread, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Puts this instance's runs left in flight back in the queue (at start, after a crash, or
    /// after a shutdown past its deadline). Other instances' runs are theirs until their leases end.
    async fn recover_in_flight(&self, only: Option<&[i64]>) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let ids: Option<Vec<i64>> = only.map(<[i64]>::to_vec);
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let recovered: Vec<i64> = all(
            &tx,
            "UPDATE action_runs SET status = 'pending', next_attempt_at_ms = $1, updated_at_ms = $1,
                    lease_until_ms = NULL,
                    last_error = 'interrupted: hub stopped while this run was in flight'
             WHERE status = 'running' AND instance = $2 AND ($3::BIGINT[] IS NULL OR id = ANY($3))
             RETURNING id",
            &[&now, &&*self.instance, &ids],
        )
        .await?;
        rows::exec(
            &tx,
            "UPDATE action_attempts SET finished_at_ms = $1, result = 'interrupted'
             WHERE run_id = ANY($2) AND finished_at_ms IS NULL",
            &[&now, &recovered],
        )
        .await?;
        tx.commit().await?;
        Ok(recovered.len() as u64)
    }

    async fn run(&self, run_id: i64) -> Result<RunRow, StoreError> {
        let c = self.pool.get().await?;
        rows::one(
            &c,
            &format!("SELECT {RUN_COLUMNS} FROM action_runs WHERE id = $1"),
            &[&run_id],
        )
        .await
    }

    async fn defer(&self, run_id: i64, at_ms: i64, note: Option<String>) -> Result<(), StoreError> {
        let at_ms = self.clock.shift(at_ms);
        rows::exec(
            &self.pool.get().await?,
            "UPDATE action_runs SET next_attempt_at_ms = $1, last_error = COALESCE($3, last_error)
              WHERE id = $2 AND status = 'pending'",
            &[&at_ms, &run_id, &note],
        )
        .await?;
        Ok(())
    }

    async fn store_details(&self, notification_id: i64, details: &str) -> Result<(), StoreError> {
        rows::exec(
            &self.pool.get().await?,
            "UPDATE enrichments SET details = $1 WHERE notification_id = $2",
            &[&details, &notification_id],
        )
        .await?;
        Ok(())
    }

    async fn fail_enrichments(&self, ids: &[i64], reason: &str) -> Result<(), StoreError> {
        rows::exec(
            &self.pool.get().await?,
            "UPDATE enrichments SET status = 'failed', attempts = attempts + 1,
                        last_error = $1, updated_at_ms = $2
                 WHERE notification_id = ANY($3) AND status = 'pending'",
            &[&reason, &self.clock.now(), &ids],
        )
        .await?;
        Ok(())
    }

    async fn latest_details(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let c = self.pool.get().await?;
        latest_details(&c, source, problem_key).await
    }

    /// What the `problems_sent/` files of these problems show, read in one snapshot.
    async fn sent_views(
        &self,
        problems: &[(Source, String)],
    ) -> Result<Vec<Option<SentView>>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut views = Vec::with_capacity(problems.len());
        for (source, key) in problems {
            let changed_ms: Option<i64> = rows::one(
                &tx,
                "SELECT MAX(changed_ms) FROM (
                     SELECT updated_at_ms AS changed_ms FROM action_runs
                     WHERE source = $1 AND problem_key = $2 AND attempts > 0
                     UNION ALL
                     SELECT e.updated_at_ms
                     FROM enrichments e JOIN notifications n ON n.id = e.notification_id
                     WHERE n.source = $1 AND n.problem_key = $2 AND e.details IS NOT NULL) t",
                &[source, key],
            )
            .await?;
            let latest: Option<(Option<String>, String)> = optional(
                &tx,
                "SELECT pid, state FROM notifications WHERE source = $1 AND problem_key = $2
                 ORDER BY id DESC LIMIT 1",
                &[source, key],
            )
            .await?;
            let Some((pid, state)) = latest else {
                views.push(None);
                continue;
            };
            let runs = all(
                &tx,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM action_runs
                     WHERE source = $1 AND problem_key = $2 ORDER BY id"
                ),
                &[source, key],
            )
            .await?;
            views.push(Some(SentView {
                source: *source,
                problem_key: key.clone(),
                changed_ms,
                pid,
                state,
                details: latest_details(&tx, *source, key).await?,
                runs,
            }));
        }
        tx.commit().await?;
        Ok(views)
    }

    async fn last_sent_changes(&self) -> Result<Vec<(Source, String, i64)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT source, problem_key, MAX(changed_ms) FROM (
                 SELECT source, problem_key, updated_at_ms AS changed_ms FROM action_runs
                 WHERE attempts > 0
                 UNION ALL
                 SELECT n.source, n.problem_key, e.updated_at_ms
                 FROM enrichments e JOIN notifications n ON n.id = e.notification_id
                 WHERE e.details IS NOT NULL) t
             GROUP BY source, problem_key",
            &[],
        )
        .await
    }

    async fn schedule_replay(&self, run_ids: &[i64]) -> Result<u64, StoreError> {
        Ok(rows::exec(
            &self.pool.get().await?,
            "UPDATE action_runs SET status = 'pending', manual = TRUE, next_attempt_at_ms = $1,
                        updated_at_ms = $1
                 WHERE id = ANY($2) AND status != 'running'",
            &[&self.clock.now(), &run_ids],
        )
        .await?)
    }
}

/// One statement for the lot: a round trip per plan was most of a pass without actions.
async fn close_plans(
    c: &impl deadpool_postgres::GenericClient,
    ids: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    rows::exec(
        c,
        "UPDATE plans SET status = 'done', updated_at_ms = $1 WHERE notification_id = ANY($2)",
        &[&now, &ids],
    )
    .await?;
    Ok(())
}

async fn latest_details(
    c: &impl deadpool_postgres::GenericClient,
    source: Source,
    problem_key: &str,
) -> Result<Option<String>, StoreError> {
    let row: Option<Option<String>> = optional(
        c,
        "SELECT e.details FROM enrichments e JOIN notifications n ON n.id = e.notification_id
         WHERE n.source = $1 AND n.problem_key = $2 AND e.details IS NOT NULL
         ORDER BY n.id DESC LIMIT 1",
        &[&source, &problem_key],
    )
    .await?;
    Ok(row.flatten())
}

/// Runs to insert, column by column, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct RunRows {
    notification_id: Vec<i64>,
    idem_key: Vec<String>,
    source: Vec<Source>,
    problem_key: Vec<String>,
    state: Vec<String>,
    action: Vec<String>,
    target: Vec<String>,
    target_label: Vec<String>,
    due: Vec<Option<i64>>,
    status: Vec<&'static str>,
    held_by: Vec<Option<String>>,
    note: Vec<Option<String>>,
    priority: Vec<i16>,
}

impl RunRows {
    fn push(&mut self, n: &StoredNotification, r: &NewRun, start: &crate::store::RunStart) {
        let (status, due, held_by, note) = start.columns();
        self.notification_id.push(n.id);
        self.idem_key.push(r.idem_key.clone());
        self.source.push(n.notification.source);
        self.problem_key.push(n.notification.problem_key.clone());
        self.state.push(n.notification.state.clone());
        self.action.push(r.action.clone());
        self.target.push(r.target.clone());
        self.target_label.push(r.target_label.clone());
        self.due.push(due);
        self.status.push(status);
        self.held_by.push(held_by.map(str::to_owned));
        self.note.push(note.map(str::to_owned));
        self.priority.push(i16::from(r.priority));
    }

    /// Inserts what is buffered and adds, per notification, how many runs were new.
    async fn flush(
        &mut self,
        c: &impl deadpool_postgres::GenericClient,
        now: i64,
        inserted: &mut std::collections::HashMap<i64, usize>,
    ) -> Result<(), StoreError> {
        if self.idem_key.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(self);
        let ids: Vec<i64> = all(
            c,
            "INSERT INTO action_runs (notification_id, idem_key, source, problem_key, state, action,
                                      target, target_label, next_attempt_at_ms, created_at_ms,
                                      updated_at_ms, status, held_by, last_error, summary,
                                      priority)
             SELECT notification_id, idem_key, source, problem_key, state, action, target,
                    target_label, COALESCE(due, $12), $12, $12, status, held_by, note, note,
                    priority
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[],
                         $11::text[], $13::text[], $14::smallint[])
                  AS u(notification_id, idem_key, source, problem_key, state, action, target,
                       target_label, due, status, held_by, note, priority)
             ON CONFLICT (idem_key) DO NOTHING
             RETURNING notification_id",
            &[
                &rows.notification_id,
                &rows.idem_key,
                &rows.source,
                &rows.problem_key,
                &rows.state,
                &rows.action,
                &rows.target,
                &rows.target_label,
                &rows.due,
                &rows.status,
                &rows.held_by,
                &now,
                &rows.note,
                &rows.priority,
            ],
        )
        .await?;
        for id in ids {
            *inserted.entry(id).or_default() += 1;
        }
        Ok(())
    }
}

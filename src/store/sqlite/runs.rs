//! Plans and action runs: the dispatcher's durable work queue.
//!
//! A run is claimed (`running`, attempt row written) before it starts and finished after it ends, each
//! committed (by the writer, with whatever else is waiting) before the dispatcher goes on, so a `kill -9` at any moment leaves either a run that never started
//! (`pending`) or one that was in flight (`running`), which the next start puts back in the queue.

use crate::domain::Source;
use rusqlite::OptionalExtension;

use super::rows::{all, optional};
use super::Sqlite;
use crate::clock::now_ms;
use crate::store::concerns::Queue;
use crate::store::{Claim, DueEnrichment, EnrichmentOutcome, Room};
use crate::store::{Finish, NewRun, RunRow, SentView, StoreError, StoredNotification};

const SUPPRESS_HELD: &str =
    "UPDATE action_runs SET status = 'suppressed', last_error = ?3, summary = ?3, updated_at_ms = ?4
      WHERE source = ?1 AND problem_key = ?2 AND status = 'pending' AND held_by = 'wait'
        AND attempts = 0 AND next_attempt_at_ms > ?5
     RETURNING action";

const CLOSE_PLAN: &str =
    "UPDATE plans SET status = 'done', updated_at_ms = ?1 WHERE notification_id = ?2";

impl Queue for Sqlite {
    /// Enrichments due now, oldest first; none waits longer than `max_wait_ms` from now.
    async fn due_enrichments(
        &self,
        max_wait_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueEnrichment>, StoreError> {
        let now = now_ms();
        self.reader
            .read(|c| super::reader::due_enrichments(c, now, now + max_wait_ms, limit))
    }

    /// Records an attempt: done, failed for good, or pending again at `retry_at_ms`.
    async fn record_enrichment(
        &self,
        notification_id: i64,
        outcome: EnrichmentOutcome<'_>,
    ) -> Result<(), StoreError> {
        let (status, next, error) = outcome.columns();
        let error = error.map(str::to_string);
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE enrichments SET status = ?1, attempts = attempts + 1, next_attempt_at_ms = ?2,
                        last_error = ?3, updated_at_ms = ?4
                 WHERE notification_id = ?5",
            )?
            .execute(rusqlite::params![status, next, error, now_ms(), notification_id])
        })
        .await?;
        Ok(())
    }

    /// Several notifications by id, oldest first: read in place, one at a time costs nothing more.
    async fn notifications(&self, ids: &[i64]) -> Result<Vec<StoredNotification>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.notification(id).await?);
        }
        Ok(out)
    }

    /// Asks for every given run to run again now, as a manual attempt; runs in flight are left
    /// alone. The dispatcher (of this hub, or of the one running on this store) does the work.
    /// Returns how many were scheduled.
    async fn schedule_replay(&self, run_ids: &[i64]) -> Result<u64, StoreError> {
        let (ids, now) = (run_ids.to_vec(), now_ms());
        self.write(move |c| {
            let mut schedule = c.prepare_cached(
                "UPDATE action_runs SET status = 'pending', manual = 1, next_attempt_at_ms = ?1,
                        updated_at_ms = ?1
                 WHERE id = ?2 AND status != 'running'",
            )?;
            let mut scheduled = 0;
            for id in ids {
                scheduled += schedule.execute(rusqlite::params![now, id])? as u64;
            }
            Ok(scheduled)
        })
        .await
    }

    /// Notifications ready to be routed: not a test, and enrichment (if any) finished or waited
    /// for `enrich_wait_ms` since the notification came.
    async fn due_plans(&self, enrich_wait_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let now = now_ms();
        self.reader
            .read(|c| super::reader::due_plans(c, now, now - enrich_wait_ms, limit))
    }

    async fn notification(&self, id: i64) -> Result<StoredNotification, StoreError> {
        self.reader.read(|c| super::reader::notification(c, id))
    }

    /// The newest notification of a problem; `None` when hub never received one.
    async fn latest_notification(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<StoredNotification>, StoreError> {
        self.reader
            .read(|c| super::reader::latest_notification(c, source, problem_key))
    }

    /// When the next pending run or enrichment is due; `None` when nothing is pending.
    async fn earliest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        self.reader.read(super::reader::earliest_pending_ms)
    }

    /// Whether hub has a notification of this problem in this state.
    async fn has_state(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        let (problem_key, state) = (problem_key.to_string(), state.to_string());
        let found: Option<i64> = self
            .views
            .read(move |c| {
                optional(
                    c,
                    "SELECT 1 FROM notifications
                     WHERE source = ?1 AND problem_key = ?2 AND state = ?3 LIMIT 1",
                    (source, problem_key, state),
                )
            })
            .await?;
        Ok(found.is_some())
    }

    /// Creates the routed runs and closes the plans, all in one transaction (one fsync for a whole
    /// burst). A run whose key exists already (the same change reached hub before) is left as it is.
    /// Returns how many runs were new, per plan.
    async fn insert_runs(
        &self,
        plans: &[(&StoredNotification, Vec<NewRun>)],
    ) -> Result<Vec<usize>, StoreError> {
        let now = now_ms();
        // With each: whether it closes its problem (a sender's test closes nothing), and when it
        // came.
        type Plan = (i64, Source, String, String, bool, i64, Vec<NewRun>);
        let plans: Vec<Plan> = plans
            .iter()
            .map(|(stored, runs)| {
                let n = &stored.notification;
                let (source, key, state) = (n.source, n.problem_key.clone(), n.state.clone());
                let closes = !n.is_test && crate::store::is_closed(&n.state, false);
                (
                    stored.id,
                    source,
                    key,
                    state,
                    closes,
                    stored.received_at_ms,
                    runs.clone(),
                )
            })
            .collect();
        self.write(move |c| {
            let mut insert = c.prepare_cached(
                "INSERT INTO action_runs (notification_id, idem_key, source, problem_key, state,
                                          action, target, target_label, next_attempt_at_ms,
                                          created_at_ms, updated_at_ms, status, held_by,
                                          last_error, summary, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, COALESCE(?10, ?9), ?9, ?9, ?11, ?12,
                         ?13, ?13, ?14)
                 ON CONFLICT (idem_key) DO NOTHING",
            )?;
            let mut close = c.prepare_cached(CLOSE_PLAN)?;
            let mut counts = Vec::with_capacity(plans.len());
            for (id, source, problem_key, state, closes, received_at_ms, runs) in &plans {
                let mut inserted = 0;
                // A close ends every flap wait of its problem: what waited never happens, and
                // neither do this notification's runs of the same actions.
                let suppressed: Vec<String> = if *closes {
                    let mut held = c.prepare_cached(SUPPRESS_HELD)?;
                    let actions = held.query_map(
                        rusqlite::params![
                            source,
                            problem_key,
                            crate::store::FLAP_NOTE,
                            now,
                            received_at_ms
                        ],
                        |r| r.get::<_, String>(0),
                    )?;
                    actions.collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                for r in runs {
                    let start = r.start_after(&suppressed);
                    let (status, due, held_by, note) = start.columns();
                    inserted += insert.execute(rusqlite::params![
                        id,
                        r.idem_key,
                        source,
                        problem_key,
                        state,
                        r.action,
                        r.target,
                        r.target_label,
                        now,
                        due,
                        status,
                        held_by,
                        note,
                        r.priority
                    ])?;
                }
                close.execute(rusqlite::params![now, id])?;
                counts.push(inserted);
            }
            Ok(counts)
        })
        .await
    }

    /// Closes plans that route to nothing, in one transaction.
    async fn close_plans(&self, notification_ids: Vec<i64>) -> Result<(), StoreError> {
        let now = now_ms();
        self.write(move |c| {
            let mut close = c.prepare_cached(CLOSE_PLAN)?;
            for id in notification_ids {
                close.execute(rusqlite::params![now, id])?;
            }
            Ok(())
        })
        .await
    }

    /// Runs due now, oldest first; none waits longer than `max_wait_ms` from now.
    async fn due_runs(&self, max_wait_ms: i64, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let now = now_ms();
        self.reader
            .read(|c| super::reader::due_runs(c, now, now + max_wait_ms, limit))
    }

    /// Per action in `wanted`, up to its number of due runs, the most urgent first.
    async fn due_runs_of(
        &self,
        wanted: &[Room],
        max_wait_ms: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let now = now_ms();
        self.reader
            .read(|c| super::reader::due_runs_of(c, now, now + max_wait_ms, wanted))
    }

    /// Every run of a problem, for `problems_sent/` and the pages.
    async fn problem_runs(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<RunRow>, StoreError> {
        self.reader
            .read(|c| super::reader::problem_runs(c, source, problem_key))
    }

    /// The runs of one state change of a problem by the named actions (what a comment reports).
    async fn group_runs(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
        actions: &[String],
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = self
            .reader
            .read(|c| super::reader::state_runs(c, source, problem_key, state))?;
        Ok(rows
            .into_iter()
            .filter(|r| actions.iter().any(|a| a == &r.action))
            .collect())
    }

    /// Marks runs in flight and writes their attempts, before anything is done, in one
    /// transaction. Only a pending run can be claimed, so two dispatchers never start the same
    /// run. The attempt number of each, or `None` for a run that could not be claimed (another
    /// claim or a finish got there first).
    async fn claim_many(
        &self,
        runs: Vec<(i64, Option<i64>)>,
    ) -> Result<Vec<Option<Claim>>, StoreError> {
        let now = now_ms();
        let claim =
            "UPDATE action_runs SET status = 'running', attempts = attempts + 1, manual = 0,
                    updated_at_ms = ?1
             WHERE id = ?2 AND status = 'pending'
             RETURNING attempts, notification_id, source, problem_key, action, target";
        let claimed = self
            .write(move |c| {
                // RETURNING gives the row as updated; `manual` is read first, since the claim clears it.
                let mut was_manual =
                    c.prepare_cached("SELECT manual FROM action_runs WHERE id = ?1")?;
                let mut claim = c.prepare_cached(claim)?;
                let mut attempt_row = c.prepare_cached(
                    "INSERT INTO action_attempts (run_id, number, manual, started_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut claimed = Vec::with_capacity(runs.len());
                for (id, thread_after) in runs {
                    let manual: bool = was_manual
                        .query_row([id], |r| r.get(0))
                        .optional()?
                        .unwrap_or(false);
                    type Claimed = (i64, i64, Source, String, String, String);
                    let row: Option<Claimed> = claim
                        .query_row(rusqlite::params![now, id], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })
                        .optional()?;
                    let Some((attempt, notification_id, source, key, action, target)) = row else {
                        claimed.push(None);
                        continue;
                    };
                    attempt_row.execute(rusqlite::params![id, attempt, manual, now])?;
                    claimed.push(Some((
                        attempt,
                        notification_id,
                        source,
                        key,
                        action,
                        target,
                        thread_after,
                    )));
                }
                Ok(claimed)
            })
            .await?;
        // What each claimed run needs, read after the commit on the reader's connection: in the
        // writer's transaction these reads (the body among them) held up every commit behind
        // them, ingest's included, and cost a third of the rate pages could go out at.
        self.reader.read(|c| {
            claimed
                .into_iter()
                .map(|row| {
                    let Some((attempt, notification_id, source, key, action, target, after)) = row
                    else {
                        return Ok(None);
                    };
                    Ok(Some(Claim {
                        attempt,
                        notification: super::reader::notification(c, notification_id)?,
                        thread: super::threads::find(c, source, &key, &action, &target, after)?,
                    }))
                })
                .collect()
        })
    }

    /// Records how an attempt ended, on the run and on its attempt row.
    async fn finish(&self, run_id: i64, attempt: i64, finish: &Finish) -> Result<(), StoreError> {
        let now = now_ms();
        let crate::store::Finished {
            status,
            next,
            error,
            outcome,
            result,
            summary,
            thread,
        } = crate::store::Finished::of(finish);
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE action_runs SET status = ?1, next_attempt_at_ms = ?2, last_error = ?3,
                        outcome = COALESCE(?4, outcome), updated_at_ms = ?5, summary = ?7
                 WHERE id = ?6",
            )?
            .execute(rusqlite::params![
                status, next, error, outcome, now, run_id, summary
            ])?;
            c.prepare_cached(
                "UPDATE action_attempts SET finished_at_ms = ?1, result = ?2,
                        detail = COALESCE(?3, ?4)
                 WHERE run_id = ?5 AND number = ?6",
            )?
            .execute(rusqlite::params![
                now, result, outcome, error, run_id, attempt
            ])?;
            if let Some(thread) = &thread {
                super::threads::keep(c, run_id, thread, now)?;
            }
            Ok(())
        })
        .await
    }

    /// Puts runs left in flight (by a crash, or by a shutdown past its deadline) back in the queue.
    /// Their open attempts are closed as interrupted. Returns how many runs were recovered.
    async fn recover_in_flight(&self, only: Option<&[i64]>) -> Result<u64, StoreError> {
        let (only, now) = (only.map(<[i64]>::to_vec), now_ms());
        self.write(move |c| {
            let ids: Vec<i64> = match only {
                Some(ids) => ids,
                None => all(c, "SELECT id FROM action_runs WHERE status = 'running'", [])?,
            };
            let mut recovered = 0;
            for id in ids {
                recovered += c
                    .prepare_cached(
                        "UPDATE action_runs SET status = 'pending', next_attempt_at_ms = ?1,
                                updated_at_ms = ?1,
                                last_error = 'interrupted: hub stopped while this run was in flight'
                         WHERE id = ?2 AND status = 'running'",
                    )?
                    .execute([now, id])? as u64;
                c.prepare_cached(
                    "UPDATE action_attempts SET finished_at_ms = ?1, result = 'interrupted'
                     WHERE run_id = ?2 AND finished_at_ms IS NULL",
                )?
                .execute([now, id])?;
            }
            Ok(recovered)
        })
        .await
    }

    async fn run(&self, run_id: i64) -> Result<RunRow, StoreError> {
        self.reader.read(|c| super::reader::run(c, run_id))
    }

    /// Defers a run without counting an attempt (a comment waiting for the runs it reports).
    async fn defer(&self, run_id: i64, at_ms: i64, note: Option<String>) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE action_runs SET next_attempt_at_ms = ?1, last_error = COALESCE(?3, last_error)
                  WHERE id = ?2 AND status = 'pending'",
            )?
            .execute(rusqlite::params![at_ms, run_id, note])?;
            Ok(())
        })
        .await
    }

    /// Marks a notification's enrichment done (or failed) with the details it fetched.
    async fn store_details(&self, notification_id: i64, details: &str) -> Result<(), StoreError> {
        let details = details.to_string();
        self.write(move |c| {
            c.prepare_cached("UPDATE enrichments SET details = ?1 WHERE notification_id = ?2")?
                .execute(rusqlite::params![details, notification_id])?;
            Ok(())
        })
        .await
    }

    /// Marks enrichments failed for one reason, in one transaction.
    async fn fail_enrichments(&self, ids: &[i64], reason: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let (ids, reason) = (ids.to_vec(), reason.to_string());
        self.write(move |c| {
            let mut fail = c.prepare_cached(
                "UPDATE enrichments SET status = 'failed', attempts = attempts + 1, last_error = ?1,
                        updated_at_ms = ?2
                 WHERE notification_id = ?3 AND status = 'pending'",
            )?;
            for id in ids {
                fail.execute(rusqlite::params![reason, now, id])?;
            }
            Ok(())
        })
        .await
    }

    /// The newest enriched details of a problem, for `problems_sent/`.
    async fn latest_details(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.reader
            .read(|c| super::reader::latest_details(c, source, problem_key))
    }

    /// What the `problems_sent/` files of these problems show, read in one transaction (one look
    /// at what changed since the last read, rather than one per query); `None` for a problem hub
    /// never received.
    async fn sent_views(
        &self,
        problems: &[(Source, String)],
    ) -> Result<Vec<Option<SentView>>, StoreError> {
        self.reader.read(|c| {
            let tx = c.unchecked_transaction()?;
            let views = problems
                .iter()
                .map(|(source, key)| super::reader::sent_view(&tx, *source, key))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.finish()?;
            Ok(views)
        })
    }

    /// Each problem that has a `problems_sent/` file, with the time of its last change (an attempted
    /// run's update, or details fetched), for the start-up check of those files. A problem whose runs
    /// were routed but never attempted has no file yet.
    async fn last_sent_changes(&self) -> Result<Vec<(Source, String, i64)>, StoreError> {
        self.views
            .read(|c| {
                all(
                    c,
                    "SELECT source, problem_key, MAX(changed_ms) FROM (
                         SELECT source, problem_key, updated_at_ms AS changed_ms FROM action_runs
                         WHERE attempts > 0
                         UNION ALL
                         SELECT n.source, n.problem_key, e.updated_at_ms
                         FROM enrichments e JOIN notifications n ON n.id = e.notification_id
                         WHERE e.details IS NOT NULL
                     ) GROUP BY source, problem_key",
                    [],
                )
            })
            .await
    }
}

//! The instance's writer: group commit of the notifications waiting at that moment, in one
//! transaction, then their files named, then the answers, as on SQLite. Dedup and file names hold
//! across instances through the tables' unique keys: an insert that meets a row committed by
//! another instance becomes a duplicate, and a file name another instance took meanwhile is
//! chosen again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};

use super::rows::{optional, FromRow};
use crate::domain::{Notification, Source};
use crate::logging::Throttle;
use crate::store::inbox::{Foreign, Health, Mode, Pending};
use crate::store::{files, Accepted, StoreError};

/// Upper bound on one transaction, so one batch never holds the answers of a whole storm.
const MAX_BATCH: usize = 512;

/// How often one notification is given another name when other instances took the one it got.
const NAME_TRIES: usize = 8;

/// A failing database fails every batch; one line per interval says so.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The channel instances wake each other on.
pub(super) const CHANNEL: &str = "hub_work";

/// What became of one notification of a batch, and the name its file is to get.
type Outcome = Result<(Accepted, Option<String>), StoreError>;

pub(super) struct Accept {
    pub notification: Notification,
    pub mode: Mode,
    pub file: Option<Pending>,
    pub reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

pub(super) struct Writer {
    pub pool: Pool,
    pub dir: PathBuf,
    pub foreign: Arc<Foreign>,
    pub committed: Arc<Notify>,
    pub health: Arc<Health>,
}

impl Writer {
    pub async fn run(self, mut queue: mpsc::Receiver<Accept>) {
        let mut errors = Throttle::new(ERROR_LOG_INTERVAL);
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            match self.commit(&batch).await {
                Ok(outcomes) => {
                    self.health.write_succeeded();
                    self.publish(batch, outcomes).await;
                    self.committed.notify_one();
                }
                Err(e) => {
                    self.health.write_failed(&e.to_string());
                    if let Some(held_back) = errors.ready() {
                        tracing::error!(error = %e, similar_errors_since_last_line = held_back, "cannot commit to the store");
                    }
                    for job in batch {
                        let _ = job.reply.send(Err(StoreError::NotStored(format!(
                            "cannot commit to the store: {e}"
                        ))));
                    }
                }
            }
        }
    }

    /// Stores the batch; per notification, what it became (or why it could not be stored) and the
    /// name its file is to get. The common batch (new notifications and redeliveries, free names)
    /// takes two statements ([`Writer::commit_fast`]); what that leaves, because it needs more care
    /// or raced with another instance, is done one notification at a time in one transaction.
    async fn commit(&self, batch: &[Accept]) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes: Vec<Option<Outcome>> = match self.commit_fast(batch).await {
            Ok(Some(outcomes)) => outcomes,
            Ok(None) => (0..batch.len()).map(|_| None).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "batch taken one notification at a time");
                (0..batch.len()).map(|_| None).collect()
            }
        };
        let left: Vec<usize> = (0..batch.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        if !left.is_empty() {
            let jobs: Vec<&Accept> = left.iter().map(|&i| &batch[i]).collect();
            for (i, outcome) in left.into_iter().zip(self.commit_each(&jobs).await?) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(StoreError::Closed)))
            .collect())
    }

    /// The batch in two statements: one look-up of the redeliveries and of the names, then one
    /// statement, its own transaction, that inserts every new notification with its plan and
    /// enrichment, counts the redeliveries and wakes the other instances. `None` when the batch
    /// needs more care: an import, a name taken or foreign, the same delivery twice, or a
    /// redelivery whose file went missing; then nothing was written. A notification another
    /// instance stored between the two statements is left `None` in the list, for the careful
    /// way (where it is that instance's duplicate).
    async fn commit_fast(
        &self,
        batch: &[Accept],
    ) -> Result<Option<Vec<Option<Outcome>>>, StoreError> {
        if batch.iter().any(|j| j.mode != Mode::Live) {
            return Ok(None);
        }
        let shas: Vec<Vec<u8>> = batch
            .iter()
            .map(|j| {
                let n = &j.notification;
                Sha256::digest(n.identity.as_deref().unwrap_or(&n.body)).to_vec()
            })
            .collect();
        let sources: Vec<Source> = batch.iter().map(|j| j.notification.source).collect();
        let keys: Vec<&str> = batch
            .iter()
            .map(|j| j.notification.problem_key.as_str())
            .collect();
        let states: Vec<&str> = batch
            .iter()
            .map(|j| j.notification.state.as_str())
            .collect();
        let names: Vec<String> = batch
            .iter()
            .map(|j| files::candidate(&files::notification_stem(&j.notification), 1))
            .collect();
        let unique_names: std::collections::HashSet<&String> = names.iter().collect();
        let any_foreign = {
            let foreign = self.foreign.names();
            names.iter().any(|n| foreign.contains(n))
        };
        if unique_names.len() != names.len() || any_foreign {
            return Ok(None);
        }

        let client = self.pool.get().await?;
        // One look-up of the unique key per notification, and whether its file's name is free.
        // `LIMIT 1` keeps each look-up a subquery per notification: as a plain join or an
        // `EXISTS`, the planner hashed the whole table for a batch of a few dozen.
        let looked_up = super::rows::query(
            &client,
            "SELECT k.i, n.id, n.file_name, t.taken IS NOT NULL
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
                      WITH ORDINALITY AS k(source, problem_key, state, sha, name, i)
                 LEFT JOIN LATERAL (
                      SELECT id, file_name FROM notifications
                      WHERE source = k.source AND problem_key = k.problem_key
                        AND state = k.state AND body_sha256 = k.sha LIMIT 1) n ON true
                 LEFT JOIN LATERAL (
                      SELECT 1 AS taken FROM notifications WHERE file_name = k.name LIMIT 1) t
                      ON true",
            &[&sources, &keys, &states, &shas, &names],
        )
        .await?;
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut redelivered = Vec::new();
        let mut fresh = Vec::new();
        for row in &looked_up {
            let (i, id, file_name, taken): (i64, Option<i64>, Option<String>, bool) =
                FromRow::from_row(row)?;
            let i = (i - 1) as usize;
            match (id, file_name) {
                (Some(id), Some(file_name)) => {
                    if outcomes[i].is_some() || !files::exists_in(&self.dir, &file_name) {
                        return Ok(None);
                    }
                    redelivered.push(id);
                    outcomes[i] = Some(Ok((Accepted::Duplicate { id, file_name }, None)));
                }
                _ if taken => return Ok(None),
                _ => fresh.push(i),
            }
        }
        if fresh.len() + redelivered.len() != batch.len() {
            return Ok(None);
        }
        let received_at_ms = crate::clock::now_ms();
        // Rows in unique-key order (see `commit_each`).
        fresh.sort_by(|&x, &y| {
            let (x, y) = (&batch[x].notification, &batch[y].notification);
            (x.source, &x.problem_key, &x.state).cmp(&(y.source, &y.problem_key, &y.state))
        });
        let pick = |f: &dyn Fn(&Notification) -> Option<String>| -> Vec<Option<String>> {
            fresh.iter().map(|&i| f(&batch[i].notification)).collect()
        };
        let sources: Vec<Source> = fresh
            .iter()
            .map(|&i| batch[i].notification.source)
            .collect();
        let keys = pick(&|n| Some(n.problem_key.clone()));
        let states = pick(&|n| Some(n.state.clone()));
        let pids = pick(&|n| n.pid.clone());
        let titles = pick(&|n| n.title.clone());
        let facts = pick(&|n| serde_json::to_string(&n.facts).ok());
        let traces = pick(&|n| n.trace.clone());
        let tests: Vec<bool> = fresh
            .iter()
            .map(|&i| batch[i].notification.is_test)
            .collect();
        let bodies: Vec<&[u8]> = fresh
            .iter()
            .map(|&i| &batch[i].notification.body[..])
            .collect();
        let fresh_shas: Vec<&[u8]> = fresh.iter().map(|&i| &shas[i][..]).collect();
        let fresh_names: Vec<&str> = fresh.iter().map(|&i| names[i].as_str()).collect();
        // The same rule as `Notification::needs_enrichment`, for the rows the statement inserts.
        let enriched: Vec<Source> = Source::ALL
            .iter()
            .copied()
            .filter(|s| s.is_enriched())
            .collect();
        // A statement outside a transaction block is a transaction of its own: all of it is
        // committed, or (a name another instance took meanwhile) none of it.
        let inserted = super::rows::query(
            &client,
            &format!(
                "WITH ins AS (
                 INSERT INTO notifications
                   (source, problem_key, state, pid, title, is_test, body, body_sha256, file_name,
                    received_at_ms, facts, trace_parent)
                 SELECT source, problem_key, state, pid, title, is_test, body, sha, file_name, $10,
                        facts, trace_parent
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bool[], $7::bytea[], $8::bytea[], $9::text[], $11::text[],
                             $14::text[])
                      AS u(source, problem_key, state, pid, title, is_test, body, sha, file_name,
                           facts, trace_parent)
                 ON CONFLICT (source, problem_key, state, body_sha256) DO NOTHING
                 RETURNING id, file_name, source, is_test, pid),
             e AS (INSERT INTO enrichments (notification_id, next_attempt_at_ms, updated_at_ms)
                   SELECT id, $10, $10 FROM ins
                   WHERE source = ANY($12) AND NOT is_test AND pid IS NOT NULL),
             p AS (INSERT INTO plans (notification_id, updated_at_ms)
                   SELECT id, $10 FROM ins WHERE NOT is_test),
             d AS (UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ANY($13)),
             w AS (SELECT pg_notify('{CHANNEL}', ''))
             SELECT id, file_name FROM ins UNION ALL SELECT NULL, NULL FROM w"
            ),
            &[
                &sources,
                &keys,
                &states,
                &pids,
                &titles,
                &tests,
                &bodies,
                &fresh_shas,
                &fresh_names,
                &received_at_ms,
                &facts,
                &enriched,
                &redelivered,
                &traces,
            ],
        )
        .await?;
        let mut by_name: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for row in &inserted {
            if let (Some(id), Some(name)) = FromRow::from_row(row)? {
                by_name.insert(name, id);
            }
        }
        // A notification another instance stored since the look-up is missing here.
        for &i in &fresh {
            if let Some(&id) = by_name.get(&names[i]) {
                let file_name = names[i].clone();
                outcomes[i] = Some(Ok((
                    Accepted::Stored {
                        id,
                        file_name: file_name.clone(),
                    },
                    Some(file_name),
                )));
            }
        }
        Ok(Some(outcomes))
    }

    /// One notification at a time, each in a savepoint, retried when another instance took its
    /// name or the two waited for each other.
    async fn commit_each(&self, batch: &[&Accept]) -> Result<Vec<Outcome>, StoreError> {
        let mut client = self.pool.get().await?;
        let mut tx = client.transaction().await?;
        let received_at_ms = crate::clock::now_ms();
        // Every instance inserts in the order of the unique key, so two batches with the same
        // deliveries wait for each other in one order and do not deadlock.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&x, &y| {
            let (x, y) = (&batch[x].notification, &batch[y].notification);
            (x.source, &x.problem_key, &x.state).cmp(&(y.source, &y.problem_key, &y.state))
        });
        let mut outcomes: Vec<_> = (0..batch.len()).map(|_| None).collect();
        for i in order {
            let job = &batch[i];
            let mut outcome = None;
            for _ in 0..NAME_TRIES {
                let savepoint = tx.transaction().await?;
                match insert_one(
                    &savepoint,
                    &job.notification,
                    &job.mode,
                    received_at_ms,
                    self,
                )
                .await
                {
                    Ok(done) => {
                        savepoint.commit().await?;
                        outcome = Some(Ok(done));
                        break;
                    }
                    // Another instance took the name, or the two waited for each other: this one
                    // notification is tried again (it is then new, or that instance's duplicate).
                    Err(e) if is_name_taken(&e) || is_deadlock(&e) => {
                        savepoint.rollback().await?;
                    }
                    Err(e) => {
                        savepoint.rollback().await?;
                        tracing::error!(error = %e, "cannot store a notification");
                        outcome = Some(Err(StoreError::NotStored(format!(
                            "cannot store the notification: {e}"
                        ))));
                        break;
                    }
                }
            }
            outcomes[i] = Some(outcome.unwrap_or_else(|| {
                Err(StoreError::NotStored(
                    "still conflicting with other instances after several tries".into(),
                ))
            }));
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(StoreError::Closed)))
            .collect();
        super::rows::exec(&tx, &format!("NOTIFY {CHANNEL}"), &[]).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Names the committed batch's new files, then answers, in order.
    async fn publish(&self, batch: Vec<Accept>, outcomes: Vec<Outcome>) {
        let mut named = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let answer = match outcome {
                Ok((accepted, to_name)) => {
                    let id = match &accepted {
                        Accepted::Stored { id, .. } | Accepted::Duplicate { id, .. } => *id,
                    };
                    let stem = files::notification_stem(&job.notification);
                    match (to_name, job.file) {
                        (Some(name), Some(file)) => {
                            named.push((Some(file), name, job.notification.body, id, stem))
                        }
                        (Some(name), None) => {
                            // An imported file whose own name the store gave to another.
                            let copy = self.unnamed_copy(&job.notification, &name);
                            named.push((copy, name, job.notification.body, id, stem));
                        }
                        (None, _) => {}
                    }
                    Ok(accepted)
                }
                Err(e) => Err(e),
            };
            answers.push((job.reply, answer));
        }
        let (dir, foreign) = (self.dir.clone(), self.foreign.clone());
        // Files whose name a file hub did not write holds: they get another name below.
        let linked = tokio::task::spawn_blocking(move || {
            let mut taken = Vec::new();
            for (pending, name, body, id, stem) in named
                .into_iter()
                .filter_map(|(p, name, body, id, stem)| Some((p?, name, body, id, stem)))
            {
                match pending.file.link(&dir, &name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Another instance answered a redelivery of this notification between
                        // this commit and this link, and wrote the file itself: the same bytes.
                        if !std::fs::read(dir.join(&name)).is_ok_and(|there| there == body) {
                            foreign.add(&name);
                            taken.push((pending, name, id, stem));
                        }
                    }
                    Err(e) => {
                        foreign.left_unnamed();
                        tracing::error!(file = %name, error = %e, "cannot name a received file; it is written back at the next start")
                    }
                }
            }
            taken
        })
        .await;
        let taken = match linked {
            Ok(taken) => taken,
            Err(e) => {
                self.foreign.left_unnamed();
                tracing::error!(error = %e, "the task naming received files failed; they are written back at the next start");
                Vec::new()
            }
        };
        let mut renamed = std::collections::HashMap::new();
        for (pending, name, id, stem) in taken {
            match self.rename(&pending, id, &stem).await {
                Ok(new) => {
                    tracing::warn!(taken = %name, file = %new, "a file hub did not write holds a received file's name; the notification's file has the next free name");
                    renamed.insert(id, new);
                }
                Err(e) => {
                    self.foreign.left_unnamed();
                    tracing::error!(file = %name, error = %e, "cannot name a received file; it is written back at the next start");
                }
            }
        }
        for (reply, mut answer) in answers {
            if let Ok(Accepted::Stored { id, file_name }) = &mut answer {
                if let Some(new) = renamed.remove(id) {
                    *file_name = new;
                }
            }
            let _ = reply.send(answer);
        }
    }

    /// A committed notification whose name a file hub did not write holds (put in the folder
    /// while hub ran) gets the next free name, in the store first, then in the folder; so the
    /// answer names the file the notification really has, and that file is there when the
    /// answer goes out.
    async fn rename(&self, pending: &Pending, id: i64, stem: &str) -> Result<String, StoreError> {
        for _ in 0..8 {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            let new = free_name(&tx, stem, &self.foreign).await?;
            let updated = tx
                .execute(
                    "UPDATE notifications SET file_name = $1 WHERE id = $2",
                    &[&new, &id],
                )
                .await
                .map_err(StoreError::from);
            match updated {
                Ok(_) => tx.commit().await?,
                // Another instance gave the name meanwhile: try the next.
                Err(e) if is_name_taken(&e) => continue,
                Err(e) => return Err(e),
            }
            let (dir, target) = (self.dir.clone(), new.clone());
            let file = &pending.file;
            match file.link(&dir, &target) {
                Ok(()) => return Ok(new),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.foreign.add(&new),
                Err(e) => return Err(StoreError::NotStored(format!("cannot name {new}: {e}"))),
            }
        }
        Err(StoreError::NotStored(
            "every free name tried is taken by a file hub did not write".into(),
        ))
    }

    fn unnamed_copy(&self, n: &Notification, name: &str) -> Option<Pending> {
        match files::Unnamed::write(&self.dir, &n.body) {
            Ok(file) => Some(Pending { file, _slot: None }),
            Err(e) => {
                tracing::error!(file = %name, error = %e, "cannot write an imported file; it is written back at the next start");
                None
            }
        }
    }
}

/// A unique violation on the file name: another instance took it since it was found free.
fn is_name_taken(e: &StoreError) -> bool {
    match e {
        StoreError::Db(e) => e.driver::<tokio_postgres::Error>().is_some_and(|e| {
            e.as_db_error()
                .is_some_and(|d| d.constraint() == Some("notifications_file_name_key"))
        }),
        _ => false,
    }
}

/// PostgreSQL broke a lock cycle with another instance's transaction by failing this statement.
fn is_deadlock(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(e) if e
        .driver::<tokio_postgres::Error>()
        .is_some_and(|e| e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)))
}

/// Inserts a notification (or counts a redelivery), and says which file it needs named.
async fn insert_one(
    c: &impl GenericClient,
    n: &Notification,
    mode: &Mode,
    received_at_ms: i64,
    w: &Writer,
) -> Outcome {
    let sha = Sha256::digest(n.identity.as_deref().unwrap_or(&n.body)).to_vec();
    let live = *mode == Mode::Live;
    if let Some(duplicate) = duplicate(c, n, &sha, live, &w.dir).await? {
        return Ok((duplicate, None));
    }
    let adopted = match mode {
        Mode::Import { adopt: Some(name) }
            if optional::<i64>(
                c,
                "SELECT 1::BIGINT FROM notifications WHERE file_name = $1",
                &[name],
            )
            .await?
            .is_none() =>
        {
            Some(name.clone())
        }
        _ => None,
    };
    let file_name = match &adopted {
        Some(name) => name.clone(),
        None => free_name(c, &files::notification_stem(n), &w.foreign).await?,
    };
    let facts = serde_json::to_string(&n.facts).ok();
    let inserted = super::rows::query_opt(
        c,
        "INSERT INTO notifications
               (source, problem_key, state, pid, title, is_test, body, body_sha256, file_name,
                received_at_ms, facts, trace_parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (source, problem_key, state, body_sha256) DO NOTHING
             RETURNING id",
        &[
            &n.source,
            &n.problem_key,
            &n.state,
            &n.pid,
            &n.title,
            &n.is_test,
            &n.body,
            &sha,
            &file_name,
            &received_at_ms,
            &facts,
            &n.trace,
        ],
    )
    .await?;
    let Some(row) = inserted else {
        // Another instance stored the same delivery and committed meanwhile.
        return duplicate(c, n, &sha, live, &w.dir)
            .await?
            .map(|d| (d, None))
            .ok_or(StoreError::NotStored(
                "a conflicting notification vanished".into(),
            ));
    };
    let id: i64 = row.try_get(0)?;
    if live && n.needs_enrichment() {
        super::rows::exec(
            c,
            "INSERT INTO enrichments (notification_id, next_attempt_at_ms, updated_at_ms)
             VALUES ($1, $2, $2)",
            &[&id, &received_at_ms],
        )
        .await?;
    }
    if live && !n.is_test {
        super::rows::exec(
            c,
            "INSERT INTO plans (notification_id, updated_at_ms) VALUES ($1, $2)",
            &[&id, &received_at_ms],
        )
        .await?;
    }
    let to_name = adopted.is_none().then(|| file_name.clone());
    Ok((Accepted::Stored { id, file_name }, to_name))
}

/// The stored notification this one repeats, counted as a redelivery when it comes live (and
/// its file written again if it went missing); `None` when it is new.
async fn duplicate(
    c: &impl GenericClient,
    n: &Notification,
    sha: &Vec<u8>,
    live: bool,
    dir: &Path,
) -> Result<Option<Accepted>, StoreError> {
    let existing: Option<(i64, String)> = optional(
        c,
        "SELECT id, file_name FROM notifications
         WHERE source = $1 AND problem_key = $2 AND state = $3 AND body_sha256 = $4",
        &[&n.source, &n.problem_key, &n.state, sha],
    )
    .await?;
    let Some((id, file_name)) = existing else {
        return Ok(None);
    };
    if live {
        super::rows::exec(
            c,
            "UPDATE notifications SET duplicates = duplicates + 1 WHERE id = $1",
            &[&id],
        )
        .await?;
        if !files::exists_in(dir, &file_name) {
            files::in_folder(dir, || files::write_view(dir, &file_name, &n.body)).map_err(|e| {
                StoreError::NotStored(format!(
                    "cannot write {file_name} in the received folder: {e}"
                ))
            })?;
        }
    }
    Ok(Some(Accepted::Duplicate { id, file_name }))
}

/// The first name no stored notification and no foreign file has, as on SQLite; another instance
/// may take it before this transaction commits, which the unique key catches.
async fn free_name(
    c: &impl GenericClient,
    stem: &str,
    foreign: &Foreign,
) -> Result<String, StoreError> {
    let taken = |name: String| async move {
        let row: Option<i64> = optional(
            c,
            "SELECT 1::BIGINT FROM notifications WHERE file_name = $1",
            &[&name],
        )
        .await?;
        Ok::<_, StoreError>(row.is_some() || foreign.names().contains(&name))
    };
    let plain = files::candidate(stem, 1);
    if !taken(plain.clone()).await? {
        return Ok(plain);
    }
    let last: Option<i64> = optional(
        c,
        "SELECT last FROM file_name_counters WHERE stem = $1",
        &[&stem],
    )
    .await?;
    let mut number = last.map_or(2, |l| l.max(1) as u64 + 1);
    let name = loop {
        let name = files::candidate(stem, number);
        if !taken(name.clone()).await? {
            break name;
        }
        number += 1;
    };
    super::rows::exec(
        c,
        "INSERT INTO file_name_counters (stem, last) VALUES ($1, $2)
         ON CONFLICT (stem) DO UPDATE SET last = GREATEST(file_name_counters.last, excluded.last)",
        &[&stem, &(number as i64)],
    )
    .await?;
    Ok(name)
}

//! The store's contract, one trait per concern, each implemented by the SQLite backend and by the
//! PostgreSQL one. [`concern!`] writes each method once: it declares the trait and the `Store`
//! method that hands the call to the backend in use, so the facade has no forwarding written by
//! hand. What one backend lacks (SQLite has no other instances) it says in its own implementation
//! of that concern, in one place.

use super::{
    ActionCounts, Backend, Backlog, Claim, DueEnrichment, EnrichmentOutcome, Finish, HourCount,
    InstanceRow, NewRun, NotificationRow, Page, ProblemRow, Pruned, Room, RunRow, SentView,
    SilenceRow, SourceCounts, Store, StoreError, StoredNotification, ThreadRef, ThreadRow,
};
use super::{Advance, AuditRow, EscalationRow, OverrideRow, StepRow, TokenRow};
use super::{GroupChange, GroupJoin, GroupRow, MemberRow};
use crate::domain::Source;

/// Declares a concern's trait and the `Store` methods that forward each of its methods to the
/// backend in use.
macro_rules! concern {
    (
        $(#[$doc:meta])*
        trait $trait:ident {
            $(
                $(#[$m:meta])*
                async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$doc])*
        pub(crate) trait $trait {
            $(
                $(#[$m])*
                async fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
        }

        impl Store {
            $(
                $(#[$m])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(b) => $trait::$name(b $(, $arg)*).await,
                        Backend::Postgres(b) => $trait::$name(b $(, $arg)*).await,
                    }
                }
            )*
        }
    };
}

concern! {
    /// What was received: the feed's "in hub" column, and the database file at a graceful stop.
    trait Inbox {
        /// Empties the WAL into the database file; at a graceful stop, so the database file alone
        /// holds everything that was acknowledged.
        async fn checkpoint(&self) -> Result<(), StoreError>;
        /// Which Dynatrace problems hub has received a notification for.
        async fn received(&self, wanted: &crate::feed::Wanted) -> Result<crate::feed::Received, StoreError>;
    }
}

concern! {
    /// The work queue: plans to route, enrichments to fetch, action runs to claim, run and record.
    trait Queue {
        /// Enrichments due now, oldest first; none waits longer than `max_wait_ms` from now.
        async fn due_enrichments(&self, max_wait_ms: i64, limit: i64) -> Result<Vec<DueEnrichment>, StoreError>;
        /// Records an attempt: done, failed for good, or pending again at `retry_at_ms`.
        async fn record_enrichment(&self, notification_id: i64, outcome: EnrichmentOutcome<'_>) -> Result<(), StoreError>;
        /// Notifications ready to be routed: not a test, and enrichment (if any) finished or waited
        /// for `enrich_wait_ms` since the notification came.
        async fn due_plans(&self, enrich_wait_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError>;
        async fn notification(&self, id: i64) -> Result<StoredNotification, StoreError>;
        /// Several notifications by id, oldest first.
        async fn notifications(&self, ids: &[i64]) -> Result<Vec<StoredNotification>, StoreError>;
        /// The newest notification of a problem; `None` when hub never received one.
        async fn latest_notification(&self, source: Source, problem_key: &str) -> Result<Option<StoredNotification>, StoreError>;
        /// When the next pending run or enrichment is due; `None` when nothing is pending.
        async fn earliest_pending_ms(&self) -> Result<Option<i64>, StoreError>;
        /// Whether hub has a notification of this problem in this state.
        async fn has_state(&self, source: Source, problem_key: &str, state: &str) -> Result<bool, StoreError>;
        /// Creates the routed runs and closes the plans, all in one transaction (one fsync for a whole
        /// burst). A run whose key exists already (the same change reached hub before) is left as it is.
        /// Returns how many runs were new, per plan.
        async fn insert_runs(&self, plans: &[(&StoredNotification, Vec<NewRun>)]) -> Result<Vec<usize>, StoreError>;
        /// Closes plans that route to nothing, in one transaction.
        async fn close_plans(&self, notification_ids: Vec<i64>) -> Result<(), StoreError>;
        /// Runs due now, oldest first; none waits longer than `max_wait_ms` from now.
        async fn due_runs(&self, max_wait_ms: i64, limit: i64) -> Result<Vec<RunRow>, StoreError>;
        /// What the dispatcher takes: per action named in `wanted`, at most that many due runs, the
        /// most urgent first, then by due time. Each action's runs are looked for on their own, so
        /// one action's backlog never hides another's due runs. A run of an action that keeps
        /// its order is not due while its own earlier run of the problem and target is unfinished.
        /// Where instances share the store, runs whose lease ended are due too.
        async fn due_runs_of(&self, wanted: &[Room], max_wait_ms: i64) -> Result<Vec<RunRow>, StoreError>;
        /// Every run of a problem, for `problems_sent/` and the pages.
        async fn problem_runs(&self, source: Source, problem_key: &str) -> Result<Vec<RunRow>, StoreError>;
        /// The runs of one state change of a problem by the named actions (what a comment reports).
        async fn group_runs(&self, source: Source, problem_key: &str, state: &str, actions: &[String]) -> Result<Vec<RunRow>, StoreError>;
        /// Marks runs in flight and writes their attempts, before anything is done, in one
        /// transaction, and reads what each needs to run (its notification, and the problem's
        /// thread for its action and target since the opening `after`, when given), so a run
        /// costs one call to start and one to record. Only a pending run can be claimed, so two
        /// dispatchers never start the same run: `None` for one that could not be (another claim
        /// or a finish got there first).
        async fn claim_many(&self, runs: Vec<(i64, Option<i64>)>) -> Result<Vec<Option<Claim>>, StoreError>;
        /// Records how an attempt ended, on the run and on its attempt row, and keeps the thread a
        /// success names (in the same transaction).
        async fn finish(&self, run_id: i64, attempt: i64, finish: &Finish) -> Result<(), StoreError>;
        /// Puts runs left in flight (by a crash, or by a shutdown past its deadline) back in the queue.
        /// Their open attempts are closed as interrupted. Returns how many runs were recovered.
        async fn recover_in_flight(&self, only: Option<&[i64]>) -> Result<u64, StoreError>;
        async fn run(&self, run_id: i64) -> Result<RunRow, StoreError>;
        /// Defers a run without counting an attempt (a comment waiting for the runs it reports, a
        /// run over its action's rate limit); `note`, when given, says why on the run.
        async fn defer(&self, run_id: i64, at_ms: i64, note: Option<String>) -> Result<(), StoreError>;
        /// Marks a notification's enrichment done (or failed) with the details it fetched.
        async fn store_details(&self, notification_id: i64, details: &str) -> Result<(), StoreError>;
        /// Marks enrichments failed for one reason, in one transaction.
        async fn fail_enrichments(&self, ids: &[i64], reason: &str) -> Result<(), StoreError>;
        /// The newest enriched details of a problem, for `problems_sent/`.
        async fn latest_details(&self, source: Source, problem_key: &str) -> Result<Option<String>, StoreError>;
        /// What the `problems_sent/` files of these problems show, read in one transaction (one look
        /// at what changed since the last read, rather than one per query); `None` for a problem hub
        /// never received.
        async fn sent_views(&self, problems: &[(Source, String)]) -> Result<Vec<Option<SentView>>, StoreError>;
        /// Each problem that has a `problems_sent/` file, with the time of its last change (an attempted
        /// run's update, or details fetched), for the start-up check of those files. A problem whose runs
        /// were routed but never attempted has no file yet.
        async fn last_sent_changes(&self) -> Result<Vec<(Source, String, i64)>, StoreError>;
        async fn schedule_replay(&self, run_ids: &[i64]) -> Result<u64, StoreError>;
    }
}

concern! {
    /// Silences, what they and flap waits hold, openings of a problem, and heartbeats.
    trait Quiet {
        /// Keeps a new silence.
        async fn add_silence(&self, silence: SilenceRow) -> Result<(), StoreError>;
        /// Silences that have not ended, or ended after `ended_after_ms`, newest first.
        async fn silences(&self, ended_after_ms: i64) -> Result<Vec<SilenceRow>, StoreError>;
        /// One silence, by id.
        async fn silence(&self, id: &str) -> Result<Option<SilenceRow>, StoreError>;
        /// Ends a silence now; `false` when there is no such silence or it had ended.
        async fn expire_silence(&self, id: String, now: i64) -> Result<bool, StoreError>;
        /// Silences that ended and whose end was not handled yet.
        async fn silences_to_settle(&self, now: i64) -> Result<Vec<SilenceRow>, StoreError>;
        /// Marks a silence's end handled.
        async fn settle_silence(&self, id: String, now: i64) -> Result<(), StoreError>;
        /// The silenced runs `held_by` (a silence's id, `maintenance:<name>`) holds.
        async fn held_runs(&self, held_by: &str) -> Result<Vec<RunRow>, StoreError>;
        /// Puts silenced runs back in the queue, due now, with `note` as why; or, with `release` false,
        /// leaves them silenced and held by nothing.
        async fn release_runs(&self, ids: Vec<i64>, release: bool, note: String) -> Result<(), StoreError>;
        /// Every holder (a silence's id, `maintenance:<name>`) that silenced runs are still held by.
        async fn holders(&self) -> Result<Vec<String>, StoreError>;
        /// Moves silenced runs under another holder that still covers them.
        async fn rehold_runs(&self, ids: Vec<i64>, held_by: String) -> Result<(), StoreError>;
        /// Which opening of its problem notification `id` belongs to: `None` for the first, else the
        /// id of the closing notification before that opening. A problem that opens again after it
        /// closed (the same Alertmanager fingerprint firing again) runs its actions again; its resolve
        /// belongs to the opening it closes, so a repeated resolve still runs nothing twice.
        async fn episode(&self, source: Source, problem_key: &str, id: i64, closed: bool) -> Result<Option<i64>, StoreError>;
        /// Records a heartbeat's beat (an older one changes nothing).
        async fn beat(&self, name: String, at_ms: i64) -> Result<(), StoreError>;
        /// Every heartbeat's last beat.
        async fn beats(&self) -> Result<Vec<(String, i64)>, StoreError>;
    }
}

concern! {
    /// What an action created far away for a problem (a Slack message, a mail), kept per target.
    trait Threads {
        /// What `action` kept for this problem and target, for its next run to continue: set by a run
        /// of a notification after `after` (the close that began this opening of the problem), so a
        /// problem that opens again starts a new thread.
        async fn thread(&self, source: Source, problem_key: &str, action: &str, target: &str, after: Option<i64>) -> Result<Option<ThreadRef>, StoreError>;
        /// Every thread of a problem, for its page and the API.
        async fn threads(&self, source: Source, problem_key: &str) -> Result<Vec<ThreadRow>, StoreError>;
    }
}

concern! {
    /// Read-only queries for the pages, the JSON API, the metrics and `hub export`.
    trait Views {
        /// Notifications after `after_id` received since `since_ms`, by id: id, file name and body
        /// (for `hub export`, a batch at a time).
        async fn export_batch(&self, after_id: i64, since_ms: i64, limit: i64) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError>;
        async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError>;
        async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError>;
        /// Runs not finished yet (pending, retrying or running), per action.
        /// Per action, its runs due at `now_ms` that wait to start, and since when the oldest waits:
        /// an action that cannot keep up shows here first.
        async fn backlogs(&self, now_ms: i64) -> Result<Vec<Backlog>, StoreError>;
        async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError>;
        /// The newest notifications first; `page` counts from 0.
        async fn latest_notifications(&self, page: Page) -> Result<Vec<NotificationRow>, StoreError>;
        /// Problems by their newest notification, newest first.
        async fn problems(&self, page: Page) -> Result<Vec<ProblemRow>, StoreError>;
        /// Every notification of a problem, oldest first.
        async fn problem_notifications(&self, source: Source, problem_key: &str) -> Result<Vec<NotificationRow>, StoreError>;
        /// The source of the newest notification with this problem id, whichever source sent it.
        async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError>;
        async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError>;
        /// A run's attempts: number, manual, started at, result (`None` while in flight).
        async fn attempts(&self, run_id: i64) -> Result<Vec<(i64, bool, i64, Option<String>)>, StoreError>;
        /// Runs waiting to start or to be retried.
        async fn pending_runs(&self) -> Result<i64, StoreError>;
    }
}

concern! {
    /// What retention may delete, and the deletion.
    trait Retention {
        /// Asks for every given run to run again now, as a manual attempt; runs in flight are left
        /// alone. The dispatcher (of this hub, or of the one running on this store) does the work.
        /// Returns how many were scheduled.
        /// Problems whose newest notification is older than `cutoff_ms`, after the one whose newest
        /// notification is `after`: `(newest id, source, problem key)`, oldest first. Whether each
        /// may go is for [`Store::prune`] to say.
        async fn prune_candidates(&self, cutoff_ms: i64, after: i64, limit: i64) -> Result<Vec<(i64, Source, String)>, StoreError>;
        /// Deletes, in one transaction, those of `problems` that ended before `cutoff_ms` with nothing
        /// left to do: the newest notification closed the problem (or was a test), no run is pending
        /// or running, and nothing changed since `cutoff_ms`. Their notifications, runs, attempts,
        /// enrichments and received files go; `dry` deletes nothing and counts what would go.
        async fn prune(&self, problems: Vec<(Source, String)>, cutoff_ms: i64, dry: bool) -> Result<Pruned, StoreError>;
    }
}

concern! {
    /// The instances serving the store, and their leases on runs. Where one instance owns the store (SQLite) there is nothing to share: its implementation says so in one place.
    trait Instances {
        /// Extends this instance's lease on a run it is running (see `dispatch.lease_secs`); `false`
        /// when the run was taken over. Always `true` where one instance owns the store.
        async fn renew(&self, run_id: i64, attempt: i64) -> Result<bool, StoreError>;
        /// Where instances share the store, this instance's runs whose lease has ended (see
        /// `Postgres::lapsed_own_runs`); none on SQLite, where a claim cannot be lost.
        async fn lapsed_own_runs(&self) -> Result<Vec<i64>, StoreError>;
        /// Joins the instances serving this store (the page's table of instances), for `hub run`;
        /// commands beside it do not. Nothing to do where one instance owns the store.
        async fn announce(&self) -> Result<(), StoreError>;
        /// Leaves the instances serving this store, at a graceful stop.
        async fn leave(&self) -> Result<(), StoreError>;
        /// The instances that run on this store (none listed where one instance owns it).
        async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError>;
    }
}

concern! {
    /// People's part of the store: API tokens, schedule overrides and the audit log.
    trait Roster {
        async fn add_token(&self, token: TokenRow) -> Result<(), StoreError>;
        async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError>;
        /// Every token, revoked and expired ones too, newest first.
        async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
        /// Revokes a token now; `false` when there is no such token or it was revoked already.
        async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError>;
        async fn add_override(&self, o: OverrideRow) -> Result<(), StoreError>;
        /// Overrides not removed that end after `ending_after_ms`, of one schedule or of all,
        /// oldest start first.
        async fn overrides(&self, schedule: Option<String>, ending_after_ms: i64) -> Result<Vec<OverrideRow>, StoreError>;
        /// Removes an override now; `false` when there is no such override or it was removed.
        async fn remove_override(&self, id: String, now: i64) -> Result<bool, StoreError>;
        /// Records a change a person made.
        async fn record_audit(&self, row: AuditRow) -> Result<(), StoreError>;
        /// What was recorded at or after `since_ms`, newest first, at most `limit` rows.
        async fn audit(&self, since_ms: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
    }
}

concern! {
    /// Escalations: started by routing, moved on by the dispatcher, stopped by an
    /// acknowledgement or the problem's resolution.
    trait Escalations {
        /// Starts an escalation unless the problem has one running (`open`, `ended` or `acked`);
        /// `true` when this one started.
        async fn start_escalation(&self, e: EscalationRow) -> Result<bool, StoreError>;
        /// Open escalations whose next step is due at `now`, oldest due first.
        async fn due_escalations(&self, now: i64, limit: i64) -> Result<Vec<EscalationRow>, StoreError>;
        /// Records a step as sent (once: a second record of it changes nothing).
        async fn record_step(&self, row: StepRow) -> Result<(), StoreError>;
        /// Moves an open escalation on from `(round, pass, step)` (a hold starting sets it back to
        /// the first step of a new round); `false` when it is no longer there
        /// (another instance moved it, or it was acknowledged or resolved meanwhile).
        async fn advance_escalation(&self, id: i64, round: i64, pass: i64, step: i64, to: Advance, now: i64) -> Result<bool, StoreError>;
        /// Marks the problem's running escalation acknowledged; `None` when it has none running.
        async fn acknowledge(&self, source: Source, problem_key: &str, by: String, via: String, now: i64) -> Result<Option<EscalationRow>, StoreError>;
        /// Starts an acknowledged escalation again from its first step, due now.
        async fn unacknowledge(&self, source: Source, problem_key: &str, now: i64) -> Result<Option<EscalationRow>, StoreError>;
        /// Ends the problem's running escalation as `state` (`resolved`); how many ended.
        async fn end_escalations(&self, source: Source, problem_key: String, state: String, now: i64) -> Result<u64, StoreError>;
        /// The problem's latest escalation.
        async fn escalation_of(&self, source: Source, problem_key: &str) -> Result<Option<EscalationRow>, StoreError>;
        async fn escalation(&self, id: i64) -> Result<Option<EscalationRow>, StoreError>;
        /// The running, unacknowledged escalation a reply code names.
        async fn escalation_by_code(&self, code: &str) -> Result<Option<EscalationRow>, StoreError>;
        /// An escalation's steps as sent, in order.
        async fn escalation_steps(&self, id: i64) -> Result<Vec<StepRow>, StoreError>;
        /// How many escalations are climbing.
        async fn open_escalations(&self) -> Result<i64, StoreError>;
        /// For the metrics: the steps sent, and how long each acknowledgement took (ms), in
        /// `from_ms..to_ms`.
        async fn escalation_activity(&self, from_ms: i64, to_ms: i64) -> Result<(i64, Vec<i64>), StoreError>;
        /// A key made once and shared by every instance (made now with `fresh` when there is none).
        async fn shared_key(&self, name: &str, fresh: String) -> Result<String, StoreError>;
    }
}

concern! {
    /// Groups: grouped routes fold their problems into one send per group (see `dispatch::group`).
    trait Groups {
        /// Puts an open problem in the open group of its route and key, opening the group (its
        /// first send due after `wait_ms`) when there is none. A member that joins after a send,
        /// or opens again, makes the next send due, `interval_ms` after the last at the earliest.
        /// The group's id, and whether this opened it.
        async fn join_group(&self, join: GroupJoin) -> Result<(i64, bool), StoreError>;
        /// Marks a problem resolved in its open groups. A group whose members have all resolved
        /// is due at once, or, when it never sent, resolves without a send. How many groups.
        async fn leave_groups(&self, source: Source, problem_key: String, now: i64) -> Result<u64, StoreError>;
        /// A routing pass's joins and leaves, in order: for each join, its group's id and whether
        /// it opened the group; `None` for a leave.
        async fn change_groups(&self, changes: Vec<GroupChange>) -> Result<Vec<Option<(i64, bool)>>, StoreError>;
        /// Open groups whose next send is due at `now`, oldest due first.
        async fn due_groups(&self, now: i64, limit: i64) -> Result<Vec<GroupRow>, StoreError>;
        /// Records send `sends + 1` of a group (`sent`), or that nothing was left to send: every
        /// member not yet carried is now carried by it, nothing is due, and `resolved` ends the
        /// group. `false` when another instance recorded it first.
        async fn mark_group_sent(&self, id: i64, sends: i64, sent: bool, resolved: bool, now: i64) -> Result<bool, StoreError>;
        async fn group(&self, id: i64) -> Result<Option<GroupRow>, StoreError>;
        /// A group's members, in the order they joined.
        async fn group_members(&self, id: i64) -> Result<Vec<MemberRow>, StoreError>;
        /// The members of several groups in one read, by group, each in the order they joined.
        async fn members_of_groups(&self, ids: Vec<i64>) -> Result<Vec<MemberRow>, StoreError>;
        /// The newest groups first (open ones only when asked), at most `limit`.
        async fn groups(&self, open_only: bool, limit: i64) -> Result<Vec<GroupRow>, StoreError>;
        /// The groups a problem is or was in, newest first.
        async fn groups_of(&self, source: Source, problem_key: &str) -> Result<Vec<GroupRow>, StoreError>;
    }
}

//! What the store holds and hands out, whichever database keeps it.

use serde::Serialize;

use crate::domain::{Facts, Notification, Source};

/// Reads a row type by its columns' names on either database.
macro_rules! read_by_name {
    ($name:ident { $($field:ident),* $(,)? }) => {
        super::sqlite::rows::by_name!($name { $($field),* });
        super::postgres::rows::by_name!($name { $($field),* });
    };
}

/// A notification as the store hands it back: the notification as received, and what the store
/// adds to it (its id, when it came, the enriched details when there are any).
#[derive(Debug, Clone)]
pub struct StoredNotification {
    pub id: i64,
    /// As received, its facts read back once here. Its `identity` is `None`: the store keeps only
    /// the hash it tells redeliveries by.
    pub notification: Notification,
    pub received_at_ms: i64,
    /// The Problems API's answer as JSON, when Dynatrace was asked and answered.
    pub details: Option<String>,
}

/// A stored notification's facts, from its `facts` column (JSON of [`Facts`]). A notification
/// stored before sources recorded their facts has none, and only Dynatrace existed then: its facts
/// are read from its body. So are those of a row whose JSON cannot be read, with a warning: one
/// bad row costs its problem what the body does not say, never the read.
pub(crate) fn stored_facts(id: i64, facts: Option<&str>, body: &[u8]) -> Facts {
    if let Some(json) = facts {
        match serde_json::from_str(json) {
            Ok(facts) => return facts,
            Err(e) => tracing::warn!(
                notification_id = id, error = %e,
                "cannot read a stored notification's facts; reading them from its body"
            ),
        }
    }
    let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    crate::sources::dynatrace::facts(&body)
}

/// An action that can start runs now: how many, and whether each of its runs must wait for its
/// own earlier run of the same problem and target (an action that keeps a thread: the resolve
/// continues the thread the open started, so it must not start before the open has finished).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Room {
    pub action: String,
    pub free: i64,
    pub in_order: bool,
}

/// Whether run `r` has an earlier run of the same problem, action and target still to finish
/// (see [`crate::store::Room::in_order`]); the same condition on both stores.
pub(crate) const EARLIER_UNFINISHED: &str = "EXISTS (
    SELECT 1 FROM action_runs e
    WHERE e.source = r.source AND e.problem_key = r.problem_key AND e.action = r.action
      AND e.target = r.target
      AND (e.notification_id < r.notification_id
           OR (e.notification_id = r.notification_id AND e.id < r.id))
      AND e.status IN ('pending', 'running'))";

/// A run claimed for this instance, with what running it needs, read in the claim's own call:
/// its attempt number (the fencing token its outcome is recorded under), its notification and
/// the problem's thread for its action and target.
#[derive(Debug, Clone)]
pub struct Claim {
    pub attempt: i64,
    pub notification: StoredNotification,
    pub thread: Option<ThreadRef>,
}

/// A run to create when a notification is routed.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub idem_key: String,
    pub action: String,
    pub target: String,
    pub target_label: String,
    /// 1 (most urgent) to 5: within its action, runs are taken in this order, then by due time.
    pub priority: u8,
    /// How it starts: pending (now, or held until a time), or already settled as silenced or
    /// suppressed.
    pub start: RunStart,
}

impl NewRun {
    /// How it starts once its notification is stored: a close's run of an action whose flap wait
    /// the close just ended (`suppressed`, the actions of the runs it suppressed) is suppressed
    /// too.
    pub(crate) fn start_after(&self, suppressed: &[String]) -> RunStart {
        if suppressed.contains(&self.action) {
            RunStart::Suppressed {
                note: FLAP_NOTE.into(),
            }
        } else {
            self.start.clone()
        }
    }
}

/// Why runs held by a flap wait did not happen: their problem closed first.
pub const FLAP_NOTE: &str = "resolved within its flap wait";

/// How a routed run starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunStart {
    /// Due now.
    #[default]
    Now,
    /// Pending, but held until `until_ms` by `held_by` (`wait`: a route's flap wait), which `note`
    /// explains on the run.
    Held {
        until_ms: i64,
        held_by: String,
        note: String,
    },
    /// Never runs while `held_by` (a silence, `maintenance:<name>`) covers it; it may be released
    /// when that ends.
    Silenced { held_by: String, note: String },
    /// Never runs (a flap that resolved within its wait).
    Suppressed { note: String },
}

impl RunStart {
    /// The columns it sets: status, when due (`None`: now), held_by, last_error.
    pub(crate) fn columns(&self) -> (&'static str, Option<i64>, Option<&str>, Option<&str>) {
        match self {
            RunStart::Now => ("pending", None, None, None),
            RunStart::Held {
                until_ms,
                held_by,
                note,
            } => ("pending", Some(*until_ms), Some(held_by), Some(note)),
            RunStart::Silenced { held_by, note } => ("silenced", None, Some(held_by), Some(note)),
            RunStart::Suppressed { note } => ("suppressed", None, None, Some(note)),
        }
    }
}

/// A silence as kept: who, when and why, and what it covers.
#[derive(Debug, Clone, Serialize)]
pub struct SilenceRow {
    pub id: String,
    /// JSON list of `crate::matcher::Matcher`.
    pub matchers: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
    pub author: String,
    pub created_at_ms: i64,
    pub expired_at_ms: Option<i64>,
    pub renotify: bool,
    pub settled_at_ms: Option<i64>,
}

impl SilenceRow {
    /// When it stops (or stopped) covering runs.
    pub fn end_ms(&self) -> i64 {
        self.expired_at_ms
            .map_or(self.ends_at_ms, |e| e.min(self.ends_at_ms))
    }

    pub fn is_active(&self, now: i64) -> bool {
        self.starts_at_ms <= now && now < self.end_ms()
    }

    pub fn matcher_list(&self) -> Vec<crate::matcher::Matcher> {
        serde_json::from_str(&self.matchers).unwrap_or_default()
    }
}

/// What a problem's `problems_sent/` file shows, and the time of the last change among it, which
/// dates the file so the start-up check can tell a file that missed a change.
#[derive(Debug, Clone)]
pub struct SentView {
    pub source: Source,
    pub problem_key: String,
    pub changed_ms: Option<i64>,
    pub pid: Option<String>,
    pub state: String,
    pub details: Option<String>,
    pub runs: Vec<RunRow>,
}

/// A run as the queue and the pages see it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub notification_id: i64,
    /// Ends with the target, a phone number unmasked for an SMS: never shown as it is (the pages
    /// and the API show the run id made from it).
    #[serde(skip)]
    pub idem_key: String,
    pub source: Source,
    pub problem_key: String,
    pub state: String,
    pub action: String,
    #[serde(skip)]
    pub target: String,
    pub target_label: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub outcome: Option<String>,
    pub manual: bool,
    pub updated_at_ms: i64,
    /// The last attempt's one line, as the action gave it (or its error).
    pub summary: Option<String>,
}

impl RunRow {
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "held_back" | "silenced" | "suppressed"
        )
    }

    pub fn outcome_json(&self) -> serde_json::Value {
        self.outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// What an action created far away for a problem, which its later runs continue (see
/// the actions' `Outcome::thread`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadRef {
    /// Slack's `channel/ts`, a mail's `Message-ID`, PagerDuty's `dedup_key`, a webhook's or a
    /// script's value.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Where people can open it, when there is such a place.
    pub url: Option<String>,
}

/// A problem's thread, as the problem page and API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadRow {
    pub action: String,
    pub target: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub url: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded {
        summary: String,
        outcome: String,
        /// Kept for the problem and action (and target), replacing what was kept before.
        thread: Option<ThreadRef>,
    },
    /// Try again at `retry_at_ms`.
    Retry {
        error: String,
        outcome: String,
        retry_at_ms: i64,
    },
    Failed {
        error: String,
        outcome: String,
    },
    HeldBack {
        reason: String,
    },
}

/// Per source: what was stored, what was a sender's test, how many redeliveries were answered.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCounts {
    pub source: Source,
    pub received: i64,
    pub test: i64,
    pub duplicate: i64,
}

/// Per action: runs by status; `retrying` are pending runs that failed at least once.
#[derive(Debug, Clone, Serialize)]
pub struct ActionCounts {
    pub action: String,
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
    pub retrying: i64,
    pub running: i64,
    pub held_back: i64,
    pub silenced: i64,
    pub suppressed: i64,
}

/// An action's runs that are due and wait to start: how many, and since when the oldest.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub action: String,
    pub due: i64,
    pub oldest_due_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub source: Source,
    pub problem_key: String,
    pub state: String,
    pub title: Option<String>,
    pub is_test: bool,
    pub duplicates: i64,
    pub file_name: String,
    pub received_at_ms: i64,
}

/// A problem: the newest notification of a (source, id), and how its runs stand.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemRow {
    /// The id of its newest notification: where the next page starts (`before`).
    pub newest_id: i64,
    pub source: Source,
    pub problem_key: String,
    pub state: String,
    pub title: Option<String>,
    pub last_received_at_ms: i64,
    pub notifications: i64,
    pub runs: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    pub runs_open: i64,
}

/// Notifications in one hour of the last day, per source.
#[derive(Debug, Clone, Serialize)]
pub struct HourCount {
    pub source: Source,
    /// Hours since the epoch.
    pub hour: i64,
    pub count: i64,
}

/// An instance that runs on the store, for the page's table of instances.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub name: String,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    pub runs_in_flight: i64,
}

/// What a [`Finish`] writes: the run's new status, when it is next due, its error, what it
/// produced, the attempt's result and the run's one-line summary.
pub(crate) struct Finished {
    pub status: &'static str,
    pub next: i64,
    pub error: Option<String>,
    pub outcome: Option<String>,
    pub result: &'static str,
    pub summary: String,
    pub thread: Option<ThreadRef>,
}

impl Finished {
    pub fn of(finish: &Finish) -> Finished {
        let thread = match finish {
            Finish::Succeeded { thread, .. } => thread.clone(),
            _ => None,
        };
        let (status, next, error, outcome, result, summary) = match finish.clone() {
            Finish::Succeeded {
                summary, outcome, ..
            } => ("succeeded", 0, None, Some(outcome), "succeeded", summary),
            Finish::Retry {
                error,
                outcome,
                retry_at_ms,
            } => (
                "pending",
                retry_at_ms,
                Some(error.clone()),
                Some(outcome),
                "transient",
                error,
            ),
            Finish::Failed { error, outcome } => (
                "failed",
                0,
                Some(error.clone()),
                Some(outcome),
                "permanent",
                error,
            ),
            Finish::HeldBack { reason } => (
                "held_back",
                0,
                Some(reason.clone()),
                None,
                "held_back",
                reason,
            ),
        };
        Finished {
            status,
            next,
            error,
            outcome,
            result,
            summary,
            thread,
        }
    }
}

read_by_name!(SilenceRow {
    id,
    matchers,
    starts_at_ms,
    ends_at_ms,
    comment,
    author,
    created_at_ms,
    expired_at_ms,
    renotify,
    settled_at_ms
});
read_by_name!(ThreadRow {
    action,
    target,
    reference,
    url,
    created_at_ms,
    updated_at_ms
});
read_by_name!(SourceCounts {
    source,
    received,
    test,
    duplicate
});
read_by_name!(ActionCounts {
    action,
    succeeded,
    failed,
    pending,
    retrying,
    running,
    held_back,
    silenced,
    suppressed
});
read_by_name!(Backlog {
    action,
    due,
    oldest_due_ms
});
read_by_name!(NotificationRow {
    id,
    source,
    problem_key,
    state,
    title,
    is_test,
    duplicates,
    file_name,
    received_at_ms
});
read_by_name!(ProblemRow {
    newest_id,
    source,
    problem_key,
    state,
    title,
    last_received_at_ms,
    notifications,
    runs,
    runs_succeeded,
    runs_failed,
    runs_open
});
read_by_name!(HourCount {
    source,
    hour,
    count
});
read_by_name!(InstanceRow {
    name,
    started_at_ms,
    last_seen_ms,
    runs_in_flight
});
read_by_name!(RunRow {
    id,
    notification_id,
    idem_key,
    source,
    problem_key,
    state,
    action,
    target,
    target_label,
    status,
    attempts,
    next_attempt_at_ms,
    last_error,
    outcome,
    manual,
    updated_at_ms,
    summary,
});

/// What a prune removed (or, dry, would remove). Each notification had one received file.
#[derive(Debug, Default, Clone)]
pub struct Pruned {
    pub problems: Vec<(Source, String)>,
    pub notifications: u64,
    pub runs: u64,
}

/// States after which a problem is over, whichever source sent them.
const CLOSED_STATES: [&str; 4] = ["RESOLVED", "CLOSED", "MERGED", "OK"];

/// Whether a problem whose newest notification is this one has ended: it reported an end, or
/// was only a test. Any other state (`OPEN`, `ACKNOWLEDGED`, one hub does not know) is open.
pub fn is_closed(state: &str, is_test: bool) -> bool {
    is_test || CLOSED_STATES.iter().any(|s| s.eq_ignore_ascii_case(state))
}

/// Which rows of a list, newest first: those whose id is below `before` (the last id of the page
/// before; deep pages cost no more than the first), less the first `skip` (the API's old `page`,
/// for shallow pages only), `limit` at most.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub before: i64,
    pub skip: i64,
    pub limit: i64,
}

impl Page {
    pub fn first(limit: i64) -> Page {
        Page {
            before: i64::MAX,
            skip: 0,
            limit,
        }
    }
}

/// An API token as stored: its secret's digest, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub person: String,
    /// `viewer`, `responder` or `admin`; the person's role, if lower, wins at use.
    pub role: String,
    pub digest: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl TokenRow {
    /// Whether it lets anyone in at `now`.
    pub fn live(&self, now: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now < e)
    }
}

/// Who is on call instead of a schedule's rotation, and who said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRow {
    pub id: String,
    pub schedule: String,
    pub person: String,
    pub from_ms: i64,
    pub until_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    pub removed_at_ms: Option<i64>,
}

/// One change a person made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Given by the store; any value when recording.
    pub id: i64,
    pub at_ms: i64,
    /// A person's id, `status_page`, or the system user (then `verified` is false).
    pub actor: String,
    pub token_id: Option<String>,
    pub verified: bool,
    /// `page`, `api`, `cli`, `sms`, `slack`, `link` or `opsgenie`.
    pub via: String,
    pub from_addr: String,
    /// What was done: `silence.add`, `replay`, `token.create`, …
    pub action: String,
    /// What it was done to: a silence's id, a problem, a schedule, a token's id.
    pub target: String,
    pub detail: String,
}

read_by_name!(TokenRow {
    id,
    person,
    role,
    digest,
    created_at_ms,
    created_by,
    expires_at_ms,
    revoked_at_ms
});
read_by_name!(OverrideRow {
    id,
    schedule,
    person,
    from_ms,
    until_ms,
    created_at_ms,
    created_by,
    removed_at_ms
});
read_by_name!(AuditRow {
    id,
    at_ms,
    actor,
    token_id,
    verified,
    via,
    from_addr,
    action,
    target,
    detail
});

/// An escalation: a problem's page climbing its policy's steps until someone acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EscalationRow {
    pub id: i64,
    pub source: Source,
    pub problem_key: String,
    /// The notification that opened it; its runs hang on it.
    pub notification_id: i64,
    pub policy: String,
    /// `open` (climbing), `ended` (every step sent, nobody answered), `acked`, `resolved`.
    pub state: String,
    /// How many times it started again from its first step (an unacknowledgement, a hold that
    /// ended): its runs' keys name it, so a step sent again is a new run.
    pub round: i64,
    /// The next step to send: the pass (0 first) and the step in it.
    pub pass: i64,
    pub step: i64,
    /// When that step is due; `None` once it stopped.
    pub next_at_ms: Option<i64>,
    pub held_by: Option<String>,
    /// What a person texts back to acknowledge.
    pub code: String,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_via: Option<String>,
}

/// One step as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepRow {
    pub escalation_id: i64,
    pub round: i64,
    pub pass: i64,
    pub step: i64,
    pub started_at_ms: i64,
    /// JSON: `[{"person", "name"}]`.
    pub notified: String,
    /// JSON: the action names.
    pub actions: String,
}

/// Where an escalation goes after the step it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// To this pass and step, due then.
    To { pass: i64, step: i64, at_ms: i64 },
    /// Every step of every pass was sent.
    Ended,
    /// Held (a silence, a window): back to its first step, looked at again then.
    Held { by: String, at_ms: i64 },
}

read_by_name!(EscalationRow {
    id,
    source,
    problem_key,
    notification_id,
    policy,
    state,
    round,
    pass,
    step,
    next_at_ms,
    held_by,
    code,
    started_at_ms,
    updated_at_ms,
    acked_at_ms,
    acked_by,
    acked_via
});
read_by_name!(StepRow {
    escalation_id,
    round,
    pass,
    step,
    started_at_ms,
    notified,
    actions
});
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_their_json_else_from_the_body() {
        let body = br#"{"ProblemTitle":"CPU saturation","ProblemSeverity":"RESOURCE_CONTENTION"}"#;
        let from_body = crate::sources::dynatrace::facts(&serde_json::from_slice(body).unwrap());
        assert_eq!(from_body.title, "CPU saturation");
        let recorded = Facts {
            title: "recorded".into(),
            ..Facts::default()
        };
        let json = serde_json::to_string(&recorded).unwrap();
        assert_eq!(stored_facts(1, Some(&json), body), recorded);
        // Stored before sources recorded their facts.
        assert_eq!(stored_facts(1, None, body), from_body);
        // A row whose facts cannot be read, or whose body is not JSON either: no panic.
        assert_eq!(stored_facts(1, Some("{not json"), body), from_body);
        assert_eq!(stored_facts(1, Some("[]"), b"\xff"), Facts::default());
    }
}

/// A group: the problems a grouped route folds into one send, in one thread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRow {
    pub id: i64,
    /// The route that groups (`routes[0]`).
    pub route: String,
    /// Its `by` values (`alertname=DiskFull,cluster=eu`).
    pub key: String,
    /// `open` or `resolved`.
    pub state: String,
    /// The first member: the group's runs hang on its notification.
    pub source: Source,
    pub problem_key: String,
    pub notification_id: i64,
    pub opened_at_ms: i64,
    pub next_send_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    /// Sends made so far.
    pub sends: i64,
    pub resolved_at_ms: Option<i64>,
}

read_by_name!(GroupRow {
    id,
    route,
    key,
    state,
    source,
    problem_key,
    notification_id,
    opened_at_ms,
    next_send_at_ms,
    last_sent_at_ms,
    sends,
    resolved_at_ms,
});

/// A problem in a group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberRow {
    pub group_id: i64,
    pub source: Source,
    pub problem_key: String,
    /// `OPEN` or `RESOLVED`.
    pub state: String,
    pub title: String,
    pub joined_at_ms: i64,
    pub updated_at_ms: i64,
    /// The send that first carried it (1 for the first); `None` until one has.
    pub first_send: Option<i64>,
}

read_by_name!(MemberRow {
    group_id,
    source,
    problem_key,
    state,
    title,
    joined_at_ms,
    updated_at_ms,
    first_send,
});

/// What routing changes in groups, in the order its notifications came.
#[derive(Debug, Clone)]
pub enum GroupChange {
    /// An open problem joins the group of a grouped route that matched it.
    Join(GroupJoin),
    /// A resolved problem leaves all of its open groups.
    Leave {
        source: Source,
        problem_key: String,
        now: i64,
    },
}

/// An open problem joining its group on a grouped route.
#[derive(Debug, Clone)]
pub struct GroupJoin {
    pub route: String,
    pub key: String,
    pub source: Source,
    pub problem_key: String,
    pub notification_id: i64,
    pub title: String,
    pub now: i64,
    /// How long a new group waits for more members before its first send.
    pub wait_ms: i64,
    /// The least time between two sends of a group.
    pub interval_ms: i64,
}

//! The status page's first screen: the problems that need a person, worst first, narrowed by
//! filters that live in the URL so a view can be bookmarked or put on a wallboard.
//!
//! Worst first means: a problem with a run that failed (or was held back by a rate limit: it was
//! never sent either), then one with runs still to happen (pending, retrying, running, or held by
//! a flap wait), then one whose runs a silence, a window or a flap held, then the rest. Within
//! each, the more urgent severity first, then the most recently heard from. With `show=all`,
//! resolved problems follow the open ones, ranked the same way.

use std::fmt::Write;

use serde_json::{json, Value};

use super::error::ApiError;
use super::text::{encode, problem_link, short_span};
use super::App;
use crate::actions::Problem;
use crate::clock::{now_ms, utc};
use crate::domain::Source;
use crate::store::{is_closed, Page, RunRow};

/// How many of the problems heard from most recently are looked at. Each costs a few reads, so
/// the page stays quick with a million notifications stored; a problem older than these that
/// still needs a person is rare, and still shows under the notifications and in the API.
pub const SCANNED: i64 = 200;

/// The longest `q` and `severity` taken; longer is a 400, not a slow page.
const MAX_TEXT_CHARS: usize = 200;
const MAX_SEVERITY_CHARS: usize = 64;

/// The wallboard's reload interval, in seconds: often enough to be live, rarely enough to cost
/// nothing.
const REFRESH_SECS: std::ops::RangeInclusive<u32> = 5..=3600;

/// What a run's outcome adds up to, for the filter and the problem's rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Failed,
    Pending,
    Silenced,
    Succeeded,
    /// No run at all: no route chose an action.
    None,
}

impl Outcome {
    const ALL: [(&'static str, Outcome); 5] = [
        ("failed", Outcome::Failed),
        ("pending", Outcome::Pending),
        ("silenced", Outcome::Silenced),
        ("succeeded", Outcome::Succeeded),
        ("none", Outcome::None),
    ];

    fn name(self) -> &'static str {
        Outcome::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("none", |(n, _)| n)
    }
}

/// The filters, read from the query. Every value is checked; a bad one is a 400 that does not
/// repeat it.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// `show=all`: resolved problems too. Open only is the default: what burns comes first.
    pub all: bool,
    pub source: Option<Source>,
    pub severity: Option<String>,
    pub outcome: Option<Outcome>,
    pub text: Option<String>,
    /// Wallboard mode: the page reloads itself every this many seconds and offers no form.
    pub refresh: Option<u32>,
}

/// The raw query values, as Rocket hands them over.
#[derive(Default)]
pub struct Raw<'a> {
    pub show: Option<&'a str>,
    pub source: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub q: Option<&'a str>,
    pub refresh: Option<&'a str>,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(detail)
}

/// An empty field (what a GET form sends for an input left blank) is no filter.
fn given(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|v| !v.is_empty())
}

impl Filters {
    pub fn parse(raw: &Raw<'_>) -> Result<Filters, ApiError> {
        let all = match given(raw.show) {
            None | Some("open") => false,
            Some("all") => true,
            Some(_) => return Err(bad("show is `open` (the default) or `all`")),
        };
        let source = given(raw.source).map(str::parse::<Source>).transpose()?;
        let severity = given(raw.severity)
            .map(|s| {
                let ok = s.chars().count() <= MAX_SEVERITY_CHARS
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '));
                ok.then(|| s.to_string()).ok_or_else(|| {
                    bad(format!(
                        "severity is a word of at most {MAX_SEVERITY_CHARS} letters, digits, `_` \
                         or `-` (AVAILABILITY, critical, …)"
                    ))
                })
            })
            .transpose()?;
        let outcome = given(raw.outcome)
            .map(|o| {
                Outcome::ALL
                    .iter()
                    .find(|(name, _)| *name == o)
                    .map(|(_, outcome)| *outcome)
                    .ok_or_else(|| {
                        bad("outcome is one of failed, pending, silenced, succeeded, none")
                    })
            })
            .transpose()?;
        let text = given(raw.q)
            .map(|q| {
                if q.chars().count() > MAX_TEXT_CHARS || q.chars().any(char::is_control) {
                    Err(bad(format!(
                        "q is a text of at most {MAX_TEXT_CHARS} characters, on one line"
                    )))
                } else {
                    Ok(q.to_string())
                }
            })
            .transpose()?;
        let refresh = given(raw.refresh)
            .map(|r| {
                r.parse::<u32>()
                    .ok()
                    .filter(|r| REFRESH_SECS.contains(r))
                    .ok_or_else(|| {
                        bad(format!(
                            "refresh is a whole number of seconds from {} to {}",
                            REFRESH_SECS.start(),
                            REFRESH_SECS.end()
                        ))
                    })
            })
            .transpose()?;
        Ok(Filters {
            all,
            source,
            severity,
            outcome,
            text,
            refresh,
        })
    }

    /// The query that gives these filters back (for links that keep them), `?` included, or
    /// empty.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if self.all {
            parts.push("show=all".to_string());
        }
        if let Some(s) = self.source {
            parts.push(format!("source={}", s.as_str()));
        }
        if let Some(s) = &self.severity {
            parts.push(format!("severity={}", encode(s)));
        }
        if let Some(o) = self.outcome {
            parts.push(format!("outcome={}", o.name()));
        }
        if let Some(q) = &self.text {
            parts.push(format!("q={}", encode(q)));
        }
        if let Some(r) = self.refresh {
            parts.push(format!("refresh={r}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }

    /// What the page's filter form shows as chosen.
    pub fn shown(&self) -> Value {
        json!({
            "show": if self.all { "all" } else { "open" },
            // Empty rather than null: the form shows them as they are.
            "source": self.source.map_or("", |s| s.as_str()),
            "severity": self.severity.clone().unwrap_or_default(),
            "outcome": self.outcome.map_or("", Outcome::name),
            "q": self.text.clone().unwrap_or_default(),
            "refresh": self.refresh,
            "any": self.all || self.source.is_some() || self.severity.is_some()
                || self.outcome.is_some() || self.text.is_some(),
        })
    }
}

/// A problem's runs, counted by what they are to a person.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counts {
    pub failed: u32,
    pub held_back: u32,
    pub pending: u32,
    pub retrying: u32,
    pub running: u32,
    pub silenced: u32,
    pub suppressed: u32,
    pub succeeded: u32,
    /// Pending runs not due yet: a flap wait, or a retry's backoff. They count as pending too.
    pub waiting: u32,
    /// When the first of those is due.
    #[serde(skip)]
    pub waits_until_ms: Option<i64>,
}

impl Counts {
    pub fn of(runs: &[RunRow], now: i64) -> Counts {
        let mut c = Counts::default();
        for r in runs {
            match r.status.as_str() {
                "failed" => c.failed += 1,
                "held_back" => c.held_back += 1,
                "pending" => {
                    if r.attempts > 0 {
                        c.retrying += 1;
                    } else {
                        c.pending += 1;
                    }
                    if r.next_attempt_at_ms > now {
                        c.waiting += 1;
                        c.waits_until_ms = Some(
                            c.waits_until_ms
                                .map_or(r.next_attempt_at_ms, |w| w.min(r.next_attempt_at_ms)),
                        );
                    }
                }
                "running" => c.running += 1,
                "silenced" => c.silenced += 1,
                "suppressed" => c.suppressed += 1,
                "succeeded" => c.succeeded += 1,
                _ => c.pending += 1,
            }
        }
        c
    }

    fn total(&self) -> u32 {
        self.failed
            + self.held_back
            + self.pending
            + self.retrying
            + self.running
            + self.silenced
            + self.suppressed
            + self.succeeded
    }

    /// The worst of them: what ranks the problem.
    pub fn worst(&self) -> Outcome {
        if self.failed + self.held_back > 0 {
            Outcome::Failed
        } else if self.pending + self.retrying + self.running > 0 {
            Outcome::Pending
        } else if self.silenced + self.suppressed > 0 {
            Outcome::Silenced
        } else if self.succeeded > 0 {
            Outcome::Succeeded
        } else {
            Outcome::None
        }
    }

    /// Whether any run is of this kind (what the outcome filter asks).
    pub fn has(&self, o: Outcome) -> bool {
        match o {
            Outcome::Failed => self.failed + self.held_back > 0,
            Outcome::Pending => self.pending + self.retrying + self.running > 0,
            Outcome::Silenced => self.silenced + self.suppressed > 0,
            Outcome::Succeeded => self.succeeded > 0,
            Outcome::None => self.total() == 0,
        }
    }

    /// Each kind present, as the page says it: `[("failed", "1 failed"), …]`, worst first.
    /// Silenced and suppressed runs are named as such; only a run that succeeded is "ok".
    pub fn parts(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut add = |class: &str, n: u32, text: String| {
            if n > 0 {
                out.push(json!({"class": class, "text": text}));
            }
        };
        add("failed", self.failed, format!("{} failed", self.failed));
        add(
            "failed",
            self.held_back,
            format!("{} held back by a rate limit", self.held_back),
        );
        add("pending", self.running, format!("{} running", self.running));
        add(
            "pending",
            self.retrying,
            format!("{} retrying", self.retrying),
        );
        let pending_text = match self.waits_until_ms {
            Some(at) if self.waiting > 0 => {
                format!("{} pending, held until {} UTC", self.pending, utc(at))
            }
            _ => format!("{} pending", self.pending),
        };
        add("pending", self.pending, pending_text);
        add(
            "silenced",
            self.silenced,
            format!("{} silenced", self.silenced),
        );
        add(
            "silenced",
            self.suppressed,
            format!("{} suppressed", self.suppressed),
        );
        add("ok", self.succeeded, format!("{} ok", self.succeeded));
        out
    }
}

/// When the problem's current episode began: its first notification after the last one that
/// closed it (a problem that resolved and opened again is a new opening).
pub(super) fn episode_start(notes: &[crate::store::NotificationRow]) -> Option<i64> {
    let mut start = notes.first()?.received_at_ms;
    for pair in notes.windows(2) {
        if is_closed(&pair[0].state, pair[0].is_test) {
            start = pair[1].received_at_ms;
        }
    }
    Some(start)
}

/// The matchers a silence for just this problem needs, one per line as the form takes them.
pub fn silence_matchers(source: Source, problem_key: &str) -> String {
    format!("source={}\nproblem={problem_key}", source.as_str())
}

fn severity_rank(severity: &str) -> u8 {
    crate::actions::route::severity_priority(severity)
}

fn outcome_rank(o: Outcome) -> u8 {
    match o {
        Outcome::Failed => 0,
        Outcome::Pending => 1,
        Outcome::Silenced => 2,
        Outcome::Succeeded | Outcome::None => 3,
    }
}

/// The problems the filters let through, worst first, and a summary of what was looked at.
pub async fn problems(app: &App, filters: &Filters) -> Result<Value, ApiError> {
    let store = &app.store;
    let now = now_ms();
    let recent = store.problems(Page::first(SCANNED)).await?;
    let scanned = recent.len();
    let mut rows: Vec<(bool, u8, u8, i64, Value)> = Vec::new();
    let mut open_counts = [0u32; 4];
    for p in recent {
        // Cheap checks first: a closed or other-source problem costs no further read.
        if !filters.all && is_closed(&p.state, false) {
            continue;
        }
        if filters.source.is_some_and(|s| s != p.source) {
            continue;
        }
        let latest = store.notification(p.newest_id).await?;
        let open = !is_closed(&latest.notification.state, latest.notification.is_test);
        if !filters.all && !open {
            continue;
        }
        let view = Problem::from_stored(&latest);
        if let Some(s) = &filters.severity {
            if !view.severity.eq_ignore_ascii_case(s) {
                continue;
            }
        }
        if let Some(q) = filters.text.as_deref().map(str::to_lowercase) {
            let q = &q;
            let found = [&p.problem_key, &view.title, &view.severity]
                .iter()
                .any(|t| t.to_lowercase().contains(q))
                || view.tags.iter().any(|t| t.to_lowercase().contains(q))
                || view
                    .entities
                    .iter()
                    .any(|e| e.name.to_lowercase().contains(q) || e.id.to_lowercase().contains(q));
            if !found {
                continue;
            }
        }
        let runs = store.problem_runs(p.source, &p.problem_key).await?;
        let counts = Counts::of(&runs, now);
        if filters.outcome.is_some_and(|o| !counts.has(o)) {
            continue;
        }
        let notes = store
            .problem_notifications(p.source, &p.problem_key)
            .await?;
        let start = episode_start(&notes).unwrap_or(p.last_received_at_ms);
        let worst = counts.worst();
        if open {
            open_counts[outcome_rank(worst) as usize] += 1;
        }
        let (age_label, age) = if open {
            ("open for", short_span(((now - start).max(0) / 1000) as u64))
        } else {
            (
                "lasted",
                short_span(((p.last_received_at_ms - start).max(0) / 1000) as u64),
            )
        };
        let row = json!({
            "link": problem_link(p.source, &p.problem_key),
            "source": p.source,
            "problem_key": p.problem_key,
            "state": latest.notification.state,
            "open": open,
            "title": view.title,
            "severity": view.severity,
            "impact": view.impact,
            "tags": view.tags,
            "entities": view.entities.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
            "worst": worst.name(),
            "counts": counts,
            "parts": counts.parts(),
            "started": utc(start),
            "last": utc(p.last_received_at_ms),
            "age_label": age_label,
            "age": age,
            "notifications": p.notifications,
            "silence_matchers": silence_matchers(p.source, &p.problem_key),
        });
        rows.push((
            !open,
            outcome_rank(worst),
            severity_rank(&view.severity),
            -p.last_received_at_ms,
            row,
        ));
    }
    // Open before resolved (with `show=all`), then worst, most urgent, most recent first.
    rows.sort_by_key(|r| (r.0, r.1, r.2, r.3));
    let [failed, pending, silenced, rest] = open_counts;
    let mut summary = String::new();
    let _ = write!(
        summary,
        "{} open: {failed} with failed runs, {pending} with runs to come, {silenced} held by a \
         silence, window or flap wait, {rest} handled or with nothing to run",
        failed + pending + silenced + rest
    );
    Ok(json!({
        "triage": rows.into_iter().map(|r| r.4).collect::<Vec<_>>(),
        "triage_summary": summary,
        "triage_scanned": scanned,
        "triage_limit": SCANNED,
        "filters": filters.shown(),
        "filter_query": filters.query(),
        "outcomes": Outcome::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "source_names": Source::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    }))
}

/// The instance's own health, shown above everything: what `/healthz` says, and what else would
/// make this hub's answers or its page wrong.
pub fn health(app: &App) -> Value {
    let mut problems = Vec::new();
    if let Err(reason) = app.store.health() {
        problems.push(format!(
            "/healthz answers 503: {reason}. Notifications sent now are refused with 503, so \
             senders retry; a load balancer sends them elsewhere"
        ));
    }
    if app.reloader.status().successful.get() == 0 {
        problems.push(
            "the last config reload failed: the config in force is the one before it (see the \
             log)"
                .to_string(),
        );
    }
    if let Some(off) = app.store.clock_offset_ms().filter(|o| o.abs() > 2_000) {
        problems.push(format!(
            "this instance's clock is {:+.1} s off from the store's: fix it (NTP)",
            -(off as f64) / 1000.0
        ));
    }
    json!({"ok": problems.is_empty(), "problems": problems})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &'static str)]) -> Raw<'static> {
        let mut r = Raw::default();
        for (k, v) in pairs {
            let v = Some(*v);
            match *k {
                "show" => r.show = v,
                "source" => r.source = v,
                "severity" => r.severity = v,
                "outcome" => r.outcome = v,
                "q" => r.q = v,
                "refresh" => r.refresh = v,
                _ => unreachable!(),
            }
        }
        r
    }

    #[test]
    fn filters_round_trip_through_the_query() {
        let f = Filters::parse(&raw(&[
            ("show", "all"),
            ("source", "alertmanager"),
            ("severity", "critical"),
            ("outcome", "failed"),
            ("q", "db 1&x"),
            ("refresh", "30"),
        ]))
        .unwrap();
        assert_eq!(
            f.query(),
            "?show=all&source=alertmanager&severity=critical&outcome=failed&q=db%201%26x&refresh=30"
        );
        let empty = Filters::parse(&raw(&[("source", ""), ("q", "  ")])).unwrap();
        assert_eq!(empty.query(), "");
    }

    #[test]
    fn bad_values_are_refused_without_being_repeated() {
        for (k, v) in [
            ("show", "<script>"),
            ("source", "<script>"),
            ("severity", "<script>"),
            ("outcome", "<script>"),
            ("refresh", "<script>"),
            ("refresh", "0"),
            ("refresh", "99999999999"),
            ("q", "a\nb"),
        ] {
            let e = Filters::parse(&raw(&[(k, v)])).unwrap_err();
            assert_eq!(e.status, rocket::http::Status::BadRequest, "{k}={v}");
            assert!(!e.detail.contains("<script>"), "{}", e.detail);
        }
        let huge: &'static str = Box::leak("x".repeat(10_000).into_boxed_str());
        assert!(Filters::parse(&raw(&[("q", huge)])).is_err());
        assert!(Filters::parse(&raw(&[("severity", huge)])).is_err());
    }

    #[test]
    fn silenced_and_suppressed_are_never_ok_and_failed_ranks_first() {
        let run = |status: &str, attempts: i64, next: i64| RunRow {
            id: 1,
            notification_id: 1,
            idem_key: String::new(),
            source: Source::Dynatrace,
            problem_key: "P".into(),
            state: "OPEN".into(),
            action: "a".into(),
            target: String::new(),
            target_label: String::new(),
            status: status.into(),
            attempts,
            next_attempt_at_ms: next,
            last_error: None,
            outcome: None,
            manual: false,
            updated_at_ms: 0,
            summary: None,
        };
        let quiet = Counts::of(&[run("silenced", 0, 0), run("suppressed", 0, 0)], 10);
        assert_eq!(quiet.worst(), Outcome::Silenced);
        let texts: Vec<String> = quiet
            .parts()
            .iter()
            .map(|p| p["text"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(texts, ["1 silenced", "1 suppressed"]);
        // Held by a flap wait: pending, with when it is due.
        let held = Counts::of(&[run("pending", 0, 5_000), run("succeeded", 1, 0)], 10);
        assert_eq!(held.worst(), Outcome::Pending);
        assert_eq!(held.waiting, 1);
        let failed = Counts::of(&[run("held_back", 1, 0), run("pending", 0, 0)], 10);
        assert_eq!(failed.worst(), Outcome::Failed);
        assert!(outcome_rank(Outcome::Failed) < outcome_rank(Outcome::Pending));
        assert!(outcome_rank(Outcome::Pending) < outcome_rank(Outcome::Silenced));
        assert!(outcome_rank(Outcome::Silenced) < outcome_rank(Outcome::Succeeded));
    }
}

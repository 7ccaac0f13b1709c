//! What the pages and the JSON API show, gathered once for both: the status, the feed, a problem.

use std::convert::Infallible;
use std::fmt::Write;

use rocket::request::{FromRequest, Outcome, Request};
use serde_json::{json, Value};

use super::error::{ApiError, FeedError};
pub use super::text::{encode, problem_link, short_span};
use super::App;
use crate::clock::{now_ms, utc};
use crate::domain::Source;
use crate::dynatrace::problem::Summary;
use crate::dynatrace::Window;
use crate::feed::Feed;
use crate::store::Page;

pub const PER_PAGE: i64 = 25;

/// Every feed window's name, in order, for the page's buttons.
pub fn window_names() -> Vec<&'static str> {
    Window::ALL.iter().map(|w| w.name()).collect()
}

/// A page number from a query; anything unreadable is the first page.
pub fn page_number(raw: Option<&str>) -> i64 {
    raw.and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, 1_000_000)
}

/// The deepest `page` served by skipping rows; deeper ones are walked to with `before`.
const MAX_SKIPPED_PAGE: i64 = 400;

/// Which rows a list shows, from the query: `before` (an id, from the previous page's `next`),
/// else `page` (the API's first way, for the first pages only), else the newest.
pub fn page_of(before: Option<&str>, page: Option<&str>) -> Result<Page, ApiError> {
    let mut p = Page::first(PER_PAGE + 1);
    if let Some(raw) = before {
        p.before = raw.parse::<i64>().ok().filter(|b| *b > 0).ok_or_else(|| {
            ApiError::bad_request(
                "before must be a positive whole number: the `next` of the page before",
            )
        })?;
        return Ok(p);
    }
    let n = page_number(page);
    if n > MAX_SKIPPED_PAGE {
        return Err(ApiError::bad_request(format!(
            "page goes up to {MAX_SKIPPED_PAGE}; deeper pages follow `next` (?before=…)"
        )));
    }
    p.skip = n * PER_PAGE;
    Ok(p)
}

/// A feed window from a query.
pub fn window(raw: &str) -> Result<Window, ApiError> {
    Ok(raw.parse::<Window>()?)
}

/// Everything on the status page.
pub async fn status(app: &App, problems_page: Page, notes_page: Page) -> Result<Value, ApiError> {
    let store = &app.store;
    let sources: Vec<Value> = store
        .source_counts()
        .await?
        .into_iter()
        .map(|c| {
            let rejected = app.metrics.rejected(c.source);
            let mut v = json!(c);
            v["rejected"] = json!(rejected);
            v
        })
        .collect();
    let settings = app.settings.get();
    let now = now_ms();
    let backlogs = store.backlogs(now).await?;
    let actions: Vec<Value> = store
        .action_counts()
        .await?
        .into_iter()
        .map(|a| {
            // Runs of an action taken out of the config wait until it is back; say so.
            let configured = settings
                .config
                .actions
                .actions
                .iter()
                .any(|c| c.name == a.action);
            let mut v = json!(a);
            v["configured"] = json!(configured);
            v["waiting"] = json!(a.pending + a.retrying + a.running);
            // What waits to start now, and for how long: an action that cannot keep up.
            let backlog = backlogs.iter().find(|b| b.action == a.action);
            v["due"] = json!(backlog.map_or(0, |b| b.due));
            v["oldest_due"] =
                json!(backlog.map(|b| short_span(((now - b.oldest_due_ms).max(0) / 1000) as u64)));
            v
        })
        .collect();
    let notifications = store.latest_notifications(notes_page).await?;
    let has_next = notifications.len() as i64 > PER_PAGE;
    let notes_next = notifications.get(PER_PAGE as usize - 1).map_or(1, |n| n.id);
    let notifications: Vec<Value> = notifications
        .into_iter()
        .take(PER_PAGE as usize)
        .map(|n| {
            let mut v = json!(n);
            v["received"] = json!(utc(n.received_at_ms));
            v["link"] = json!(problem_link(n.source, &n.problem_key));
            v
        })
        .collect();
    let problems = store.problems(problems_page).await?;
    let has_next = has_next || problems.len() as i64 > PER_PAGE;
    let problems_next = problems
        .get(PER_PAGE as usize - 1)
        .map_or(1, |p| p.newest_id);
    let problems: Vec<Value> = problems
        .into_iter()
        .take(PER_PAGE as usize)
        .map(|p| {
            let mut v = json!(p);
            v["last"] = json!(utc(p.last_received_at_ms));
            v["link"] = json!(problem_link(p.source, &p.problem_key));
            v
        })
        .collect();
    let hours = store.hourly_counts().await?;
    let instances: Vec<Value> = store
        .instances()
        .await?
        .into_iter()
        .map(|i| {
            let mut v = json!(i);
            v["started"] = json!(utc(i.started_at_ms));
            v["last_seen"] = json!(utc(i.last_seen_ms));
            v
        })
        .collect();
    let settings = app.settings.get();
    let c = &settings.config;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": short_span(app.started.elapsed().as_secs()),
        "uptime_secs": app.started.elapsed().as_secs(),
        "bind": format!("{}:{}", c.webhook.interface, c.webhook.port),
        "tenant": c.dynatrace.tenant,
        "store": c.store.url,
        "dir_received": c.dir_received.display().to_string(),
        "dir_sent": c.dir_sent.display().to_string(),
        "log_file": c.log_path().display().to_string(),
        "sources": sources,
        "actions": actions,
        "pending_runs": store.pending_runs().await?,
        "instance": c.store.instance,
        "instances": instances,
        // Shown when this instance's clock is more than 2 s off the store's: its logs and files
        // then show other times than the others'.
        "clock_off_s": store
            .clock_offset_ms()
            .filter(|o| o.abs() > 2_000)
            .map(|o| format!("{:+.1}", -(o as f64) / 1000.0)),
        "notifications": notifications,
        "problems": problems,
        "first_page": problems_page.before == i64::MAX && problems_page.skip == 0
            && notes_page.before == i64::MAX && notes_page.skip == 0,
        "has_next": has_next,
        "next": format!("/?before={problems_next}&notifications_before={notes_next}"),
        "notifications_next": notes_next,
        "windows": window_names(),
        "chart": chart(&hours),
        "hourly": hours,
    }))
}

pub async fn feed(app: &App, window: Window) -> Result<Value, FeedError> {
    let settings = app.settings.get();
    let Some(client) = &settings.client else {
        return Err(FeedError::NoTenant);
    };
    let problems = client.feed(window).await?;
    let summaries: Vec<Summary> = problems
        .iter()
        .map(|p| Summary::from_api(client.version(), p))
        .collect();
    let received = app
        .store
        .received(&crate::feed::Wanted::of(&summaries))
        .await?;
    let mut doc = Feed::new(window, summaries, &received).to_json();
    if let Some(Value::Array(rows)) = doc.get_mut("problems") {
        for row in rows {
            row["start"] = json!(row["start_ms"].as_i64().map(utc).unwrap_or_default());
            row["end"] = json!(row["end_ms"]
                .as_i64()
                .map(utc)
                .unwrap_or_else(|| "still open".into()));
        }
    }
    Ok(doc)
}

/// Which source a problem id belongs to: the one asked for, else whichever sent it last.
pub(super) async fn resolve_source(
    app: &App,
    id: &str,
    source: Option<&str>,
) -> Result<Source, ApiError> {
    let not_found = || ApiError::not_found("hub has received no notification for this problem");
    match source.filter(|s| !s.is_empty()) {
        Some(s) => Ok(s.parse::<Source>()?),
        None => app.store.source_of(id).await?.ok_or_else(not_found),
    }
}

/// A problem: its notifications (raw), its details, its runs with their attempts.
pub async fn problem(app: &App, id: &str, source: Option<&str>) -> Result<Value, ApiError> {
    let source = resolve_source(app, id, source).await?;
    let store = &app.store;
    let notifications = store.problem_notifications(source, id).await?;
    let Some(latest) = notifications.last() else {
        return Err(ApiError::not_found(
            "hub has received no notification for this problem",
        ));
    };
    let stored = store.notification(latest.id).await?;
    let tenant = app.settings.get().config.dynatrace.tenant.clone();
    let view = crate::actions::Problem::from_stored(&stored).with_tenant_link(tenant.as_deref());
    let mut shown = Vec::new();
    for n in &notifications {
        let full = store.notification(n.id).await?;
        // As received, byte for byte (what problems_received/ holds).
        let body = String::from_utf8_lossy(&full.notification.body).into_owned();
        let mut v = json!(n);
        v["received"] = json!(utc(n.received_at_ms));
        v["body"] = json!(body);
        shown.push(v);
    }
    let details = store
        .latest_details(source, id)
        .await?
        .and_then(|d| serde_json::from_str::<Value>(&d).ok());
    let mut runs = Vec::new();
    let run_rows = store.problem_runs(source, id).await?;
    let threads: Vec<Value> = store
        .threads(source, id)
        .await?
        .into_iter()
        .map(|t| {
            // As the runs show their target (a phone number masked), never the raw id.
            let label = run_rows
                .iter()
                .find(|r| r.action == t.action && r.target == t.target)
                .map_or_else(String::new, |r| r.target_label.clone());
            let link = t
                .url
                .clone()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
            json!({"action": t.action, "target": label, "ref": t.reference, "url": link,
                   "created": utc(t.created_at_ms), "updated": utc(t.updated_at_ms)})
        })
        .collect();
    for r in &run_rows {
        let attempts: Vec<Value> = store
            .attempts(r.id)
            .await?
            .into_iter()
            .map(|(number, manual, started, result)| {
                json!({"number": number, "manual": manual, "started": utc(started),
                       "result": result.unwrap_or_else(|| "in flight".into())})
            })
            .collect();
        let outcome = r.outcome_json();
        let mut v = json!(r);
        v["outcome_parts"] = json!(outcome_parts(&outcome));
        // A run that failed for good opened hub's own alarm for its action (unless it is one of
        // hub's own runs, which raise none): link to it, so the two are read together.
        if r.status == "failed" && source != Source::Hub {
            let alarm = format!("action-failed-{}", r.action);
            if store
                .latest_notification(Source::Hub, &alarm)
                .await?
                .is_some()
            {
                v["alarm_link"] = json!(problem_link(Source::Hub, &alarm));
            }
        }
        v["run_id"] = json!(crate::actions::run_id(&r.idem_key));
        v["outcome"] = json!(if outcome.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        });
        v["outcome_json"] = outcome;
        v["attempt_list"] = json!(attempts);
        runs.push(v);
    }
    let open = !crate::store::is_closed(&latest.state, stored.notification.is_test);
    let last_ms = notifications.last().map_or(0, |n| n.received_at_ms);
    // Dynatrace's own start and end when its details say; else the current opening's first
    // notification, and the last one for a problem that ended.
    let detail_ms = |key: &str| {
        details
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_i64)
            .filter(|ms| *ms > 0)
    };
    let start_ms = detail_ms("startTime")
        .or_else(|| super::triage::episode_start(&notifications))
        .unwrap_or(last_ms);
    let end_ms = if open {
        now_ms()
    } else {
        detail_ms("endTime").unwrap_or(last_ms)
    };
    let duration = short_span(((end_ms - start_ms).max(0) / 1000) as u64);
    // Only a link a browser opens as a page: no `javascript:` from a payload.
    let link = view
        .url
        .clone()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    // hub's own failure alarm names its action: its failed runs are on the status page.
    let alarm_of = (source == Source::Hub)
        .then(|| id.strip_prefix("action-failed-"))
        .flatten();
    let mut actions: Vec<String> = Vec::new();
    for r in crate::replay::current(store, &stored, &run_rows).await? {
        if !actions.contains(&r.action) {
            actions.push(r.action);
        }
    }
    let escalation = escalation_view(app, source, id).await?;
    // The groups a grouped route put it in: the page links them.
    let groups: Vec<Value> = store
        .groups_of(source, id)
        .await?
        .iter()
        .map(|g| {
            json!({"id": g.id, "key": g.key, "state": g.state, "route": g.route,
                        "url": format!("/api/groups/{}", g.id)})
        })
        .collect();
    Ok(json!({
        "escalation": escalation,
        "groups": groups,
        "source": source,
        "problem_id": id,
        "state": latest.state,
        "open": open,
        "title": view.title,
        "severity": view.severity,
        "impact": view.impact,
        "tags": view.tags,
        "link": link,
        "started": utc(start_ms),
        "duration": duration,
        "duration_label": if open { "open for" } else { "lasted" },
        "alarm_of": alarm_of,
        "failed_runs_link": alarm_of.map(|_| "/?show=all&outcome=failed"),
        "replay_actions": actions,
        "entities": view.entities,
        "notifications": shown,
        "details": details.as_ref().map(details_html),
        "details_json": details,
        "runs": runs,
        "threads": threads,
    }))
}

/// Where a run's output is folded away: longer than a screen's glance.
const FOLD_LINES: usize = 12;
const FOLD_CHARS: usize = 1_500;

/// A run's outcome as a person reads it: its stderr first (why it failed is there), then its
/// stdout, each as text with its real line breaks, then the other fields one per line. A long
/// part is marked to be folded.
pub fn outcome_parts(outcome: &Value) -> Vec<Value> {
    let part = |label: &str, text: String| {
        let lines = text.lines().count();
        json!({"label": label, "long": lines > FOLD_LINES || text.len() > FOLD_CHARS,
               "lines": lines, "text": text})
    };
    let mut parts = Vec::new();
    match outcome {
        Value::Null => {}
        Value::Object(map) => {
            for stream in ["stderr", "stdout"] {
                if let Some(Value::String(text)) = map.get(stream) {
                    if !text.trim().is_empty() {
                        parts.push(part(stream, text.clone()));
                    }
                }
            }
            let rest: Vec<String> = map
                .iter()
                .filter(|(k, v)| !matches!(k.as_str(), "stderr" | "stdout") && !v.is_null())
                .map(|(k, v)| match v {
                    Value::String(text) => format!("{k}: {text}"),
                    other => format!("{k}: {other}"),
                })
                .collect();
            if !rest.is_empty() {
                parts.push(part("details", rest.join("\n")));
            }
        }
        Value::String(text) => parts.push(part("outcome", text.clone())),
        other => parts.push(part("outcome", other.to_string())),
    }
    parts
}

/// Schedules the runs of the problem's latest state again; the dispatcher runs them after the answer.
pub async fn replay(
    app: &App,
    id: &str,
    source: Option<&str>,
    action: Option<&str>,
) -> Result<(Source, u64), ApiError> {
    let (source, runs) = replayable(app, id, source, action).await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let scheduled = app.store.schedule_replay(&ids).await?;
    Ok((source, scheduled))
}

/// The runs a replay would run again: those of the problem's latest state in its current
/// opening, of one action when one is named.
pub async fn replayable(
    app: &App,
    id: &str,
    source: Option<&str>,
    action: Option<&str>,
) -> Result<(Source, Vec<crate::store::RunRow>), ApiError> {
    let source = resolve_source(app, id, source).await?;
    let latest = app
        .store
        .latest_notification(source, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such problem"))?;
    let runs = app.store.problem_runs(source, id).await?;
    let runs: Vec<_> = crate::replay::current(&app.store, &latest, &runs)
        .await?
        .into_iter()
        .filter(|r| action.is_none_or(|a| a == r.action))
        .collect();
    if runs.is_empty() {
        return Err(ApiError::nothing_to_replay(match action {
            Some(_) => "this action did not run for this problem's latest state",
            None => "no action ran for this problem's latest state",
        }));
    }
    Ok((source, runs))
}

/// Nested tables for the details, every text escaped; times (`…Time`, ms since the epoch) in UTC,
/// and the `-1` of an open problem's end as "still open".
pub fn details_html(v: &Value) -> String {
    let mut out = String::new();
    render(&mut out, None, v);
    out
}

fn render(out: &mut String, key: Option<&str>, v: &Value) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("<table class=\"nested\">");
            for (k, v) in map {
                let _ = write!(out, "<tr><th>{}</th><td>", tera::escape_html(k));
                render(out, Some(k), v);
                out.push_str("</td></tr>");
            }
            out.push_str("</table>");
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("<table class=\"nested\">");
            for item in items {
                out.push_str("<tr><td>");
                render(out, key, item);
                out.push_str("</td></tr>");
            }
            out.push_str("</table>");
        }
        Value::Number(n) if key.is_some_and(|k| k.ends_with("Time")) => match n.as_i64() {
            Some(ms) if ms < 0 => out.push_str("still open"),
            Some(ms) => {
                let _ = write!(out, "{} UTC", utc(ms));
            }
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&tera::escape_html(s)),
        Value::Object(_) | Value::Array(_) => out.push_str("<span class=\"muted\">none</span>"),
        other => out.push_str(&tera::escape_html(&other.to_string())),
    }
}

/// Notifications per hour over the last 24 hours, stacked by source, as inline SVG. Its text is
/// sized and coloured to be read at a glance (12 px, dark), hours read as `07:00`, and the legend
/// gives each source's count so no colour has to be matched by eye.
pub fn chart(hours: &[crate::store::HourCount]) -> String {
    let now_hour = now_ms() / 3_600_000;
    let first = now_hour - 23;
    let (left, w, h, bar) = (44, 720, 150, 28);
    let top = 8;
    let max = (first..=now_hour)
        .map(|hr| {
            hours
                .iter()
                .filter(|c| c.hour == hr)
                .map(|c| c.count)
                .sum::<i64>()
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let full = left + 24 * bar + 8;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"chart\" viewBox=\"0 0 {full} {}\" \
         width=\"{w}\" style=\"max-width:100%;height:auto\" role=\"img\" \
         aria-label=\"notifications per hour, last 24 hours\" font-family=\"system-ui, sans-serif\">",
        h + top + 48
    );
    // The scale: the top (the busiest hour) and zero, with a faint line at each.
    for (value, y) in [(max, top), (0, top + h)] {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#d0d5dd\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#344054\" text-anchor=\"end\">{value}</text>",
            full - 4,
            left - 6,
            y + 4
        );
    }
    for (i, hr) in (first..=now_hour).enumerate() {
        let x = left + i as i64 * bar;
        let mut y = top + h;
        for source in Source::ALL {
            let count: i64 = hours
                .iter()
                .filter(|c| c.hour == hr && c.source == *source)
                .map(|c| c.count)
                .sum();
            if count == 0 {
                continue;
            }
            let height = (count * h / max).max(1);
            y -= height;
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{height}\" fill=\"{}\">\
                 <title>{} {:02}:00 UTC: {count}</title></rect>",
                x + 2,
                bar - 4,
                source.colour(),
                source.as_str(),
                (hr % 24)
            );
        }
        if i % 3 == 0 || hr == now_hour {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#344054\" \
                 text-anchor=\"middle\">{:02}:00</text>",
                x + bar / 2,
                top + h + 16,
                hr % 24
            );
        }
    }
    let mut lx = left;
    let legend_y = top + h + 30;
    for source in Source::ALL {
        let total: i64 = hours
            .iter()
            .filter(|c| c.source == *source && c.hour >= first)
            .map(|c| c.count)
            .sum();
        if total > 0 {
            let label = format!("{} ({total})", source.as_str());
            let _ = write!(
                svg,
                "<rect x=\"{lx}\" y=\"{legend_y}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#1d2430\">{label}</text>",
                source.colour(),
                lx + 16,
                legend_y + 11,
            );
            // About 7 px a character at 12 px, and a gap.
            lx += 16 + label.len() as i64 * 7 + 18;
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#344054\" text-anchor=\"end\">hours in UTC</text></svg>",
        full - 4,
        legend_y + 11
    );
    svg
}

/// Whether a state-changing request comes from this hub's own pages: an `Origin` (or, without one,
/// a `Referer`) naming another host is refused, and so is a browser's `Sec-Fetch-Site` saying the
/// request was made by another site's page; none of them at all is allowed (not a browser: curl,
/// a script).
pub struct SameOrigin(pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SameOrigin {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let host = req.headers().get_one("Host").unwrap_or_default();
        let from = req
            .headers()
            .get_one("Origin")
            .or_else(|| req.headers().get_one("Referer"));
        // Sent by every current browser, whatever the page's referrer policy: `same-origin`, or
        // `none` for what the user did themselves (typed the address, a bookmark).
        let fetched_by_other_site = req
            .headers()
            .get_one("Sec-Fetch-Site")
            .is_some_and(|site| !matches!(site, "same-origin" | "none"));
        let same = !fetched_by_other_site
            && match from {
                None => true,
                Some(url) => reqwest::Url::parse(url).is_ok_and(|u| {
                    let authority = match u.port() {
                        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
                        None => u.host_str().unwrap_or_default().to_string(),
                    };
                    authority.eq_ignore_ascii_case(host)
                }),
            };
        Outcome::Success(SameOrigin(same))
    }
}

/// The problem's latest escalation as a timeline: each step as it was sent (whom it notified,
/// through what, and how each run went), then who acknowledged and how; `null` when it never
/// escalated.
pub async fn escalation_view(app: &App, source: Source, id: &str) -> Result<Value, ApiError> {
    let Some(e) = app.store.escalation_of(source, id).await? else {
        return Ok(Value::Null);
    };
    let runs = app.store.problem_runs(source, id).await?;
    let mut steps = Vec::new();
    for st in app.store.escalation_steps(e.id).await? {
        let notified: Value = serde_json::from_str(&st.notified).unwrap_or(Value::Null);
        let prefix = format!("esc/{}/{}/{}/{}/", e.id, st.round, st.pass, st.step);
        let answers: Vec<Value> = runs
            .iter()
            .filter(|r| r.idem_key.starts_with(&prefix))
            .map(|r| {
                json!({"action": r.action, "person": r.target_label, "status": r.status,
                            "summary": r.summary, "error": r.last_error})
            })
            .collect();
        steps.push(json!({
            "round": st.round + 1, "pass": st.pass + 1, "step": st.step + 1, "started": utc(st.started_at_ms),
            "notified": notified, "actions": serde_json::from_str::<Value>(&st.actions).unwrap_or(Value::Null),
            "runs": answers,
        }));
    }
    let settings = app.settings.get();
    let acked_by = e
        .acked_by
        .as_deref()
        .map(|p| settings.config.people.name_of(p));
    Ok(json!({
        "policy": e.policy,
        "state": e.state,
        "started": utc(e.started_at_ms),
        "next": e.next_at_ms.filter(|_| e.state == "open").map(utc),
        "next_step": (e.state == "open").then(|| json!({"pass": e.pass + 1, "step": e.step + 1})),
        "held_by": e.held_by,
        "acked_at": e.acked_at_ms.map(utc),
        "acked_by": acked_by,
        "acked_by_id": e.acked_by,
        "acked_via": e.acked_via,
        "steps": steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_escaped_and_times_readable() {
        let html = details_html(&json!({
            "title": "<script>alert(1)</script>",
            "startTime": 1_700_000_000_000_i64,
            "endTime": -1,
            "impactedEntities": [{"name": "<img src=x onerror=alert(1)>"}]
        }));
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("2023-11-14 22:13 UTC"), "{html}");
        assert!(html.contains("still open"), "{html}");
    }

    #[test]
    fn an_outcome_reads_as_text_stderr_first_and_long_output_folded() {
        let long = (1..=40)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let parts = outcome_parts(&json!({
            "exit_code": 2, "signal": null, "stdout": long, "stderr": "no route to pager\nretry later"
        }));
        let labels: Vec<&str> = parts.iter().filter_map(|p| p["label"].as_str()).collect();
        assert_eq!(labels, ["stderr", "stdout", "details"]);
        assert_eq!(
            parts[0]["text"], "no route to pager\nretry later",
            "real new lines"
        );
        assert_eq!(parts[0]["long"], false);
        assert_eq!(parts[1]["long"], true, "folded");
        assert_eq!(parts[2]["text"], "exit_code: 2", "nulls left out");
        assert!(outcome_parts(&Value::Null).is_empty());
    }

    #[test]
    fn links_encode_everything_unsafe() {
        assert_eq!(encode("../a b?c#d"), "%2E%2E%2Fa%20b%3Fc%23d");
        assert_eq!(page_number(Some("-4")), 0);
        assert_eq!(page_number(Some("x")), 0);
    }
}

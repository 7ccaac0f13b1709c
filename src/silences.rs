//! Silences as people make them: from the command line, the API or the status page. One place
//! checks what they ask for, so all three refuse the same things the same way.

use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::{now_ms, rfc3339};
use crate::matcher::{Matcher, MatcherError};
use crate::noise::config::Maintenance;
use crate::store::{SilenceRow, Store, StoreError};

/// Ended silences stay listed this long.
pub const LISTED_AFTER_END: Duration = Duration::from_secs(86_400);
/// The longest silence: a year. Longer is a route, not a silence.
const LONGEST: Duration = Duration::from_secs(366 * 86_400);
const MAX_TEXT: usize = 1000;

/// What someone asks for.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `KEY=VALUE` each.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// `2h`, `30m`; or `until`.
    pub duration: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub author: String,
    /// Run what it held for problems still open when it ends (default true).
    pub renotify: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    #[error("give how long it lasts: a duration (such as 2h) or until (an RFC 3339 time)")]
    NoEnd,
    #[error("give either a duration or until, not both")]
    BothEnds,
    #[error("duration {0:?}: expected such as 30m, 2h or 1d, more than zero and at most a year")]
    Duration(String),
    #[error("until {0:?}: expected an RFC 3339 time in the future (such as 2026-12-24T08:00:00Z), at most a year ahead")]
    Until(String),
    #[error("a comment is required: say why (at most 1000 characters)")]
    Comment,
    #[error("the author is at most 200 characters")]
    Author,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SilenceError {
    /// Bad input, as opposed to a store that failed.
    pub fn is_input(&self) -> bool {
        !matches!(self, SilenceError::Store(_))
    }
}

/// Checks a request into a silence starting now; nothing is kept yet.
pub fn make(r: &Request, now: i64) -> Result<SilenceRow, SilenceError> {
    let matchers: Vec<Matcher> = r
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<_, _>>()?;
    if matchers.is_empty() {
        return Err(MatcherError::None.into());
    }
    let ends_at_ms = match (&r.duration, &r.until) {
        (None, None) => return Err(SilenceError::NoEnd),
        (Some(_), Some(_)) => return Err(SilenceError::BothEnds),
        (Some(d), None) => {
            let parsed = crate::keys::parse_duration(d)
                .ok()
                .filter(|d| !d.is_zero() && *d <= LONGEST)
                .ok_or_else(|| SilenceError::Duration(d.clone()))?;
            now + parsed.as_millis() as i64
        }
        (None, Some(u)) => {
            let at = time::OffsetDateTime::parse(
                u.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| SilenceError::Until(u.clone()))?;
            let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
            if ms <= now || ms - now > LONGEST.as_millis() as i64 {
                return Err(SilenceError::Until(u.clone()));
            }
            ms
        }
    };
    let comment = r.comment.trim();
    if comment.is_empty() || comment.chars().count() > MAX_TEXT {
        return Err(SilenceError::Comment);
    }
    let author = match r.author.trim() {
        "" => "unknown".to_string(),
        a if a.chars().count() > 200 => return Err(SilenceError::Author),
        a => a.to_string(),
    };
    Ok(SilenceRow {
        id: format!("sil_{:016x}", fastrand::u64(..)),
        matchers: serde_json::to_string(&matchers).unwrap_or_default(),
        starts_at_ms: now,
        ends_at_ms,
        comment: comment.to_string(),
        author,
        created_at_ms: now,
        expired_at_ms: None,
        renotify: r.renotify.unwrap_or(true),
        settled_at_ms: None,
    })
}

/// Checks and keeps a silence; returns it.
pub async fn add(store: &Store, r: &Request) -> Result<SilenceRow, SilenceError> {
    let silence = make(r, now_ms())?;
    store.add_silence(silence.clone()).await?;
    tracing::info!(
        silence = silence.id.as_str(),
        author = silence.author.as_str(),
        until = rfc3339(silence.ends_at_ms).as_str(),
        "silence added"
    );
    Ok(silence)
}

/// A silence as the API and the page show it.
pub fn shown(s: &SilenceRow, now: i64) -> Value {
    let state = if s.is_active(now) {
        "active"
    } else if s.expired_at_ms.is_some() {
        "expired"
    } else {
        "ended"
    };
    let matchers: Vec<String> = s.matcher_list().iter().map(ToString::to_string).collect();
    json!({
        "id": s.id, "state": state, "matchers": matchers, "comment": s.comment,
        "author": s.author, "starts": rfc3339(s.starts_at_ms), "ends": rfc3339(s.end_ms()),
        "created": rfc3339(s.created_at_ms), "renotify": s.renotify,
    })
}

/// A maintenance window as the list shows it: whether it is in progress, and when it is next.
pub fn shown_window(w: &Maintenance, now: i64) -> Value {
    let matchers: Vec<String> = w.matchers.iter().map(ToString::to_string).collect();
    json!({
        "name": w.name, "matchers": matchers, "cron": w.pattern,
        "timezone": w.timezone.name(),
        "duration": crate::keys::short_duration(w.duration),
        "active_until": w.window_at(now).map(|(_, end)| rfc3339(end)),
        "next_start": w.next_start(now).map(rfc3339),
    })
}

/// Silences in force or ended within a day, and the maintenance windows.
pub async fn list(store: &Store, maintenance: &[Maintenance]) -> Result<Value, StoreError> {
    let now = now_ms();
    let silences: Vec<Value> = store
        .silences(now - LISTED_AFTER_END.as_millis() as i64)
        .await?
        .iter()
        .map(|s| shown(s, now))
        .collect();
    let windows: Vec<Value> = maintenance.iter().map(|w| shown_window(w, now)).collect();
    Ok(json!({"silences": silences, "maintenance": windows}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(matchers: &[&str], duration: Option<&str>, until: Option<&str>) -> Request {
        Request {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            duration: duration.map(str::to_string),
            until: until.map(str::to_string),
            comment: "patching".into(),
            ..Request::default()
        }
    }

    #[test]
    fn a_silence_needs_matchers_an_end_in_the_future_and_a_reason() {
        let now = 1_800_000_000_000;
        let ok = make(&request(&["tag=env:prod"], Some("2h"), None), now).unwrap();
        assert_eq!(ok.ends_at_ms, now + 7_200_000);
        assert!(ok.renotify && ok.id.starts_with("sil_"));
        for (r, what) in [
            (request(&[], Some("2h"), None), "no matcher"),
            (request(&["colour=red"], Some("2h"), None), "unknown key"),
            (request(&["tag=env:prod"], None, None), "no end"),
            (request(&["tag=env:prod"], Some("0s"), None), "zero"),
            (
                request(&["tag=env:prod"], Some("$(touch x)"), None),
                "garbage",
            ),
            (
                request(&["tag=env:prod"], None, Some("2001-01-01T00:00:00Z")),
                "past",
            ),
            (
                request(&["tag=env:prod"], Some("1h"), Some("2030-01-01T00:00:00Z")),
                "both",
            ),
        ] {
            assert!(make(&r, now).is_err(), "{what}");
        }
        let mut no_comment = request(&["tag=env:prod"], Some("2h"), None);
        no_comment.comment = "  ".into();
        assert!(matches!(make(&no_comment, now), Err(SilenceError::Comment)));
    }
}

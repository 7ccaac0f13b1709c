//! `maintenance` and `heartbeats`: the recurring silences, and the dead-man's switches.

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use crate::keys::{Issues, Section};
use crate::matcher::{read_object, Matcher};

/// A recurring silence: from each time `cron` names (in `timezone`), for `duration`.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub pattern: String,
    pub cron: croner::Cron,
    pub duration: Duration,
    pub timezone: crate::zone::Zone,
}

impl Maintenance {
    /// The window `now_ms` is in, as `(start, end)`, if it is in one.
    pub fn window_at(&self, now_ms: i64) -> Option<(i64, i64)> {
        let now = Utc
            .timestamp_millis_opt(now_ms)
            .single()?
            .with_timezone(&self.timezone);
        let start = self.cron.find_previous_occurrence(&now, true).ok()?;
        let (start, end) = (
            start.timestamp_millis(),
            start.timestamp_millis() + self.duration.as_millis() as i64,
        );
        (now_ms < end).then_some((start, end))
    }

    /// When the next window starts after `now_ms`.
    pub fn next_start(&self, now_ms: i64) -> Option<i64> {
        let now = Utc
            .timestamp_millis_opt(now_ms)
            .single()?
            .with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// Whether the pattern names no time at all: the next start is sought from now, and croner
    /// gives up past its last year, so a day no month has (`0 0 30 2 *`) finds none.
    pub fn never_fires(&self) -> bool {
        self.next_start(crate::clock::now_ms()).is_none()
    }

    /// What holds the runs it silences (see `crate::store::RunStart`).
    pub fn holder(&self) -> String {
        format!("maintenance:{}", self.name)
    }
}

/// A heartbeat: a beat is expected every `every`; after `every + grace` without one, hub opens
/// its own problem `heartbeat-<name>` and runs `actions`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub name: String,
    pub every: Duration,
    pub grace: Duration,
    /// Stored notifications these match count as beats; empty: only `POST /heartbeats/<name>`.
    pub matchers: Vec<Matcher>,
    pub actions: Vec<String>,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

pub(crate) fn read_maintenance(root: &mut Section, issues: &mut Issues) -> Vec<Maintenance> {
    let Some(items) = root.items("maintenance", issues) else {
        return Vec::new();
    };
    let mut out: Vec<Maintenance> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let mut s = Section::at(format!("maintenance[{i}]"), item, issues);
        let name = s.string("name", issues).unwrap_or_default();
        if !crate::actions::config::valid_name(&name) {
            issues.push(
                s.path_of("name"),
                "missing or not a name: letters, digits, '-' and '_' (at most 64)",
            );
        } else if out.iter().any(|m| m.name == name) {
            issues.push(s.path_of("name"), format!("{name:?} is named twice"));
        }
        let matchers = read_object(&mut s, "match", issues);
        if matchers.is_empty() {
            issues.push(
                s.path_of("match"),
                "missing: what the window silences, such as {\"tag\": \"env:prod\"}",
            );
        }
        let pattern = s.string("cron", issues).unwrap_or_default();
        let cron = match croner::Cron::from_str(&pattern) {
            Ok(c) => Some(c),
            Err(e) => {
                issues.push(
                    s.path_of("cron"),
                    format!(
                        "{pattern:?} is not a cron pattern such as \"0 2 * * SUN\": {}",
                        cron_problem(&pattern, &e)
                    ),
                );
                None
            }
        };
        let duration = s.duration("duration", MINUTE, 7 * DAY, issues);
        // A value out of range has been reported by the reader already; "missing" would be false.
        if s.value("duration").is_none() {
            issues.push(
                s.path_of("duration"),
                "missing: how long each window lasts (1m–7d)",
            );
        }
        let zone = s.string("timezone", issues).unwrap_or_else(|| "UTC".into());
        let timezone = match crate::zone::Zone::named(&zone) {
            Ok(tz) => Some(tz),
            Err(e) => {
                issues.push(s.path_of("timezone"), e.to_string());
                None
            }
        };
        s.finish(issues);
        if let (Some(cron), Some(duration), Some(timezone)) = (cron, duration, timezone) {
            out.push(Maintenance {
                name,
                matchers,
                pattern,
                cron,
                duration,
                timezone,
            });
        }
    }
    out
}

/// The five fields of a cron pattern, with the values each takes.
const CRON_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// What is wrong with a cron pattern croner refused, in an operator's words: croner's own
/// messages name its internals ("Component error: Invalid number."), not the field or the fix.
fn cron_problem(pattern: &str, error: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    if fields.len() != 5 && fields.len() != 6 {
        return format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        );
    }
    // Six fields start with seconds.
    let named = &fields[fields.len() - 5..];
    for (text, (field, low, high)) in named.iter().zip(CRON_FIELDS) {
        for word in text
            .split([',', '-', '/'])
            .filter(|w| !w.is_empty() && *w != "*")
        {
            let upper = word.to_ascii_uppercase();
            if let Ok(n) = word.parse::<u32>() {
                if !text.contains('/') && !(low..=high).contains(&n) {
                    return format!("{field} {n} is out of range: use {low}-{high}");
                }
                continue;
            }
            let names: &[&str] = match field {
                "day of week" => &DAYS,
                "month" => &MONTHS,
                _ => &[],
            };
            if names.contains(&upper.as_str()) {
                continue;
            }
            if let Some(i) = names.iter().position(|n| upper.starts_with(n)) {
                // SUNDAY for SUN, JANUARY for JAN: the three-letter name or the number.
                let number = if field == "day of week" { i } else { i + 1 };
                return format!("{word}: use {} or {number}", names[i]);
            }
            if names.is_empty() {
                return format!("{field} {word:?} is not a number from {low} to {high}");
            }
            return format!(
                "{field} {word:?} is not a number from {low} to {high} or a name such as {}",
                names[0]
            );
        }
    }
    // Something this reading does not know: croner's words, without its internal prefixes.
    let text = error.to_string();
    text.trim_start_matches("Component error: ")
        .trim_start_matches("Invalid pattern: ")
        .to_string()
}

pub(crate) fn read_heartbeats(
    root: &mut Section,
    actions: &crate::actions::config::Actions,
    issues: &mut Issues,
) -> Vec<Heartbeat> {
    let mut out = Vec::new();
    for (name, value) in root.entries("heartbeats", issues) {
        let mut s = Section::at(format!("heartbeats.{name}"), value, issues);
        if !crate::actions::config::valid_name(&name) {
            issues.push(
                s.path(),
                "heartbeat names may use only letters, digits, '-' and '_' (at most 64)",
            );
        }
        let every = s.duration("every", Duration::from_secs(1), 366 * DAY, issues);
        if s.value("every").is_none() {
            issues.push(s.path_of("every"), "missing: how often a beat is expected");
        }
        let grace = s
            .duration("grace", Duration::ZERO, 366 * DAY, issues)
            .unwrap_or(Duration::ZERO);
        let matchers = read_object(&mut s, "match", issues);
        let listed = s.string_list("actions", issues).unwrap_or_default();
        if listed.is_empty() {
            issues.push(
                s.path_of("actions"),
                "missing: the actions to run when the heartbeat goes silent",
            );
        }
        for a in listed.iter().filter(|a| !actions.is_given(a)) {
            issues.push(s.path_of("actions"), format!("no action is named {a:?}"));
        }
        s.finish(issues);
        if let Some(every) = every {
            out.push(Heartbeat {
                name,
                every,
                grace,
                matchers,
                actions: listed,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn croner_refusals_are_said_in_an_operators_words() {
        let said = |p: &str| {
            let e = croner::Cron::from_str(p).expect_err(p);
            cron_problem(p, &e)
        };
        assert_eq!(said("0 2 * * SUNDAY"), "SUNDAY: use SUN or 0");
        assert_eq!(said("0 2 1 JANUARY *"), "JANUARY: use JAN or 1");
        assert_eq!(said("60 2 * * *"), "minute 60 is out of range: use 0-59");
        assert_eq!(said("0 24 * * *"), "hour 24 is out of range: use 0-23");
        assert_eq!(
            said("0 2 * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert!(said("0 2 * * XYZ").starts_with("day of week \"XYZ\" is not a number"));
    }

    fn window(pattern: &str, minutes: u64, zone: &str) -> Maintenance {
        Maintenance {
            name: "w".into(),
            matchers: Vec::new(),
            pattern: pattern.into(),
            cron: croner::Cron::from_str(pattern).unwrap(),
            duration: Duration::from_secs(minutes * 60),
            timezone: crate::zone::Zone::named(zone).unwrap(),
        }
    }

    #[test]
    fn a_window_covers_its_duration_from_each_start_in_its_zone() {
        // Sunday 2026-11-29 02:00 in Berlin is 01:00 UTC.
        let w = window("0 2 * * SUN", 120, "Europe/Berlin");
        let start = Utc
            .with_ymd_and_hms(2026, 11, 29, 1, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            w.window_at(start + 60_000),
            Some((start, start + 7_200_000))
        );
        assert_eq!(w.window_at(start + 7_200_000), None, "the end is outside");
        assert_eq!(w.window_at(start - 60_000), None);
        assert_eq!(w.next_start(start - 60_000), Some(start));
    }

    #[test]
    fn windows_across_summer_time_changes_start_at_the_zones_own_hours() {
        let utc = |d, h, m| {
            Utc.with_ymd_and_hms(2026, 10, d, h, m, 0)
                .unwrap()
                .timestamp_millis()
        };
        // 09:00 in Berlin is 07:00 UTC on Saturday 24 October and 08:00 UTC a day later.
        let daily = window("0 9 * * *", 60, "Europe/Berlin");
        assert_eq!(daily.next_start(utc(24, 0, 0)), Some(utc(24, 7, 0)));
        assert_eq!(daily.next_start(utc(24, 12, 0)), Some(utc(25, 8, 0)));
        // 02:30 happens twice on 25 October; a fixed-time window starts once, at the first.
        let repeated = window("30 2 * * *", 30, "Europe/Berlin");
        assert_eq!(repeated.next_start(utc(24, 12, 0)), Some(utc(25, 0, 30)));
        // 02:30 never happens on 29 March: the window starts when the skipped hour ends, at
        // 03:00 summer time (01:00 UTC), as cron runs a job the change skipped.
        let skipped = window("30 2 29 3 *", 30, "Europe/Berlin");
        let march = |h| {
            Utc.with_ymd_and_hms(2026, 3, 29, h, 0, 0)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(skipped.next_start(march(0) - 43_200_000), Some(march(1)));
    }
}

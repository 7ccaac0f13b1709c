//! On-call schedules: a rotation of people in a time zone, and overrides on top of it.
//!
//! Shifts of hours last that much elapsed time from the first one. Shifts of days and weeks hand
//! off at a local time (and weekday), so across a summer-time change a weekly shift lasts 167 or
//! 169 hours and the next one still starts at 09:00: a change never skips or doubles a shift. An
//! override names who is on call between two instants; where overrides overlap, the newest wins,
//! as in Opsgenie and PagerDuty.

use chrono::{DateTime, Duration, MappedLocalTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::zone::Zone;

/// How long each shift lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Elapsed hours.
    Hours(u32),
    /// Calendar days (a week is 7), handed off at the same local time.
    Days(u32),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub zone: Zone,
    /// Person ids, in turn.
    pub people: Vec<String>,
    pub every: Every,
    /// The first shift's start, local to `zone` (the first handoff at or after the config's
    /// `start`).
    pub first: NaiveDateTime,
}

/// An override as the schedule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: String,
    pub person: String,
    pub from_ms: i64,
    pub until_ms: i64,
    pub created_at_ms: i64,
}

/// Who is on call at one instant, and until when that stays so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    /// `None` before the rotation's first shift.
    pub person: Option<String>,
    /// The override that puts `person` there, if one does.
    pub by_override: Option<String>,
    /// When someone else takes over (or the rotation starts).
    pub until_ms: i64,
}

/// At most this many boundaries are looked past to find the next change of person (a rotation of
/// one person changes nothing at any handoff).
const LOOK_AHEAD: usize = 64;

impl Schedule {
    /// The instant shift `k` starts.
    pub fn shift_start(&self, k: i64) -> i64 {
        match self.every {
            Every::Hours(h) => instant(&self.zone, self.first) + k * i64::from(h) * 3_600_000,
            Every::Days(d) => {
                let local = self.first + Duration::days(k * i64::from(d));
                instant(&self.zone, local)
            }
        }
    }

    /// The shift `at_ms` falls in; `None` before the first.
    pub fn shift_at(&self, at_ms: i64) -> Option<i64> {
        let first = self.shift_start(0);
        if at_ms < first {
            return None;
        }
        let mut k = match self.every {
            Every::Hours(h) => (at_ms - first) / (i64::from(h) * 3_600_000),
            Every::Days(d) => {
                let local = local(&self.zone, at_ms);
                (local.date() - self.first.date())
                    .num_days()
                    .div_euclid(i64::from(d))
            }
        };
        while k > 0 && self.shift_start(k) > at_ms {
            k -= 1;
        }
        while self.shift_start(k + 1) <= at_ms {
            k += 1;
        }
        Some(k)
    }

    /// Whose turn shift `k` is.
    pub fn person_of(&self, k: i64) -> &str {
        let n = self.people.len().max(1) as i64;
        self.people
            .get(k.rem_euclid(n) as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Who is on call at `at_ms`, overrides considered, and the next boundary after it.
    fn who_at(&self, overrides: &[Override], at_ms: i64) -> (Option<String>, Option<String>) {
        let covering = overrides
            .iter()
            .filter(|o| o.from_ms <= at_ms && at_ms < o.until_ms)
            .max_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        if let Some(o) = covering {
            return (Some(o.person.clone()), Some(o.id.clone()));
        }
        let person = self.shift_at(at_ms).map(|k| self.person_of(k).to_string());
        (person, None)
    }

    /// The first instant after `at_ms` at which the answer may change.
    fn next_boundary(&self, overrides: &[Override], at_ms: i64) -> i64 {
        let shift_end = match self.shift_at(at_ms) {
            Some(k) => self.shift_start(k + 1),
            None => self.shift_start(0),
        };
        overrides
            .iter()
            .flat_map(|o| [o.from_ms, o.until_ms])
            .filter(|t| *t > at_ms)
            .fold(shift_end, i64::min)
    }

    /// Who is on call at `at_ms` and until when.
    pub fn on_call(&self, overrides: &[Override], at_ms: i64) -> OnCall {
        let (person, by_override) = self.who_at(overrides, at_ms);
        let mut until = self.next_boundary(overrides, at_ms);
        for _ in 0..LOOK_AHEAD {
            let (next, next_override) = self.who_at(overrides, until);
            if next != person || next_override != by_override {
                break;
            }
            until = self.next_boundary(overrides, until);
        }
        OnCall {
            person,
            by_override,
            until_ms: until,
        }
    }

    /// The stretches of `from_ms..to_ms` and who is on call in each (`None`: nobody yet).
    pub fn segments(&self, overrides: &[Override], from_ms: i64, to_ms: i64) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut at = from_ms;
        while at < to_ms && out.len() < 10_000 {
            let now = self.on_call(overrides, at);
            let end = now.until_ms.min(to_ms);
            out.push(Segment {
                person: now.person,
                by_override: now.by_override,
                from_ms: at,
                until_ms: end,
            });
            at = end;
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub person: Option<String>,
    pub by_override: Option<String>,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// The instant a local time names in `zone`. A time repeated by a change (autumn) is its first
/// occurrence; a time skipped by one (spring) is the moment the clocks jumped to, so a handoff
/// at 02:30 on that night happens at 03:00.
pub fn instant(zone: &Zone, local: NaiveDateTime) -> i64 {
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(t) | MappedLocalTime::Ambiguous(t, _) => t.timestamp_millis(),
        MappedLocalTime::None => {
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    return t.timestamp_millis();
                }
            }
            local.and_utc().timestamp_millis()
        }
    }
}

/// The local date-time of an instant in `zone`.
pub fn local(zone: &Zone, at_ms: i64) -> NaiveDateTime {
    Utc.timestamp_millis_opt(at_ms)
        .single()
        .map(|t| t.with_timezone(zone).naive_local())
        .unwrap_or_default()
}

/// An instant as RFC 3339 with the zone's offset then (`2026-03-30T09:00:00+02:00`).
pub fn rfc3339_in(zone: &Zone, at_ms: i64) -> String {
    Utc.timestamp_millis_opt(at_ms)
        .single()
        .map(|t| {
            t.with_timezone(zone)
                .fixed_offset()
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .unwrap_or_default()
}

/// A time as a person types it: RFC 3339 with an offset (`2026-03-29T01:30:00Z`), or
/// `YYYY-MM-DDTHH:MM` local to `zone`, or `now`. A local time the clocks skip is refused rather
/// than moved, since the person meant a time that did not happen.
pub fn parse_time(text: &str, zone: &Zone, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    let local = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M"))
        .map_err(|_| {
            format!(
                "{t:?} is not a time: use RFC 3339 with an offset (2026-12-07T09:00:00+01:00) or \
                 YYYY-MM-DDTHH:MM in {}",
                zone.name()
            )
        })?;
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(t) | MappedLocalTime::Ambiguous(t, _) => Ok(t.timestamp_millis()),
        MappedLocalTime::None => Err(format!(
            "{t} does not exist in {} (the clocks skip it); give a time with an offset",
            zone.name()
        )),
    }
}

/// A calendar (RFC 5545) of who is on call in each segment, for a person to subscribe to.
pub fn ics(
    schedule: &Schedule,
    segments: &[Segment],
    name_of: impl Fn(&str) -> String,
    now_ms: i64,
) -> String {
    let stamp = ics_time(now_ms);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&fold(&text));
        out.push_str("\r\n");
    };
    line("BEGIN:VCALENDAR".into());
    line("VERSION:2.0".into());
    line("PRODID:-//hub//on-call//EN".into());
    line("CALSCALE:GREGORIAN".into());
    line(format!(
        "X-WR-CALNAME:{}",
        ics_text(&format!("On call: {}", schedule.name))
    ));
    for s in segments {
        let Some(person) = &s.person else { continue };
        line("BEGIN:VEVENT".into());
        line(format!("UID:{}-{}@hub", schedule.name, s.from_ms));
        line(format!("DTSTAMP:{stamp}"));
        line(format!("DTSTART:{}", ics_time(s.from_ms)));
        line(format!("DTEND:{}", ics_time(s.until_ms)));
        let what = if s.by_override.is_some() {
            " (override)"
        } else {
            ""
        };
        line(format!(
            "SUMMARY:{}",
            ics_text(&format!("{}: {}{what}", schedule.name, name_of(person)))
        ));
        line("END:VEVENT".into());
    }
    line("END:VCALENDAR".into());
    out
}

fn ics_time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

/// RFC 5545 TEXT: backslash, semicolon, comma and new lines escaped.
fn ics_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Lines longer than 75 octets continue on the next line after a space (RFC 5545 3.1), never
/// inside a character.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn berlin() -> Option<Zone> {
        Zone::named("Europe/Berlin").ok()
    }

    fn weekly(zone: Zone) -> Schedule {
        Schedule {
            name: "primary".into(),
            zone,
            people: vec!["ana".into(), "bo".into(), "cy".into()],
            every: Every::Days(7),
            // Monday 2026-03-23 09:00, the week before summer time starts.
            first: NaiveDate::from_ymd_opt(2026, 3, 23)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap(),
        }
    }

    fn at(zone: &Zone, text: &str) -> i64 {
        parse_time(text, zone, 0).unwrap()
    }

    #[test]
    fn weekly_handoffs_keep_their_local_time_across_both_changes() {
        let Some(zone) = berlin() else { return };
        let s = weekly(zone.clone());
        // Spring: clocks go forward on Sunday 2026-03-29; the shift is 167 hours long.
        let spring = s.shift_start(1) - s.shift_start(0);
        assert_eq!(spring, 167 * 3_600_000);
        assert_eq!(
            rfc3339_in(&zone, s.shift_start(1)),
            "2026-03-30T09:00:00+02:00"
        );
        // Autumn: back on Sunday 2026-10-25; the shift holding it is 169 hours long.
        let k = s.shift_at(at(&zone, "2026-10-24T12:00")).unwrap();
        assert_eq!(s.shift_start(k + 1) - s.shift_start(k), 169 * 3_600_000);
        assert_eq!(
            rfc3339_in(&zone, s.shift_start(k + 1)),
            "2026-10-26T09:00:00+01:00"
        );
        // Every shift of the year is someone's once: no skip, no double.
        for k in 0..52 {
            let mid = (s.shift_start(k) + s.shift_start(k + 1)) / 2;
            assert_eq!(s.shift_at(mid), Some(k));
            assert_eq!(s.shift_at(s.shift_start(k)), Some(k));
            assert_eq!(s.shift_at(s.shift_start(k + 1) - 1), Some(k));
        }
        assert_eq!(s.person_of(0), "ana");
        assert_eq!(s.person_of(4), "bo");
    }

    #[test]
    fn an_override_wins_for_its_time_and_the_newest_wins_among_overrides() {
        let Some(zone) = berlin() else { return };
        let s = weekly(zone.clone());
        // Ana's week holds the spring change; Cy covers Saturday 20:00 to Sunday 12:00 across it.
        let o = Override {
            id: "o1".into(),
            person: "cy".into(),
            from_ms: at(&zone, "2026-03-28T20:00"),
            until_ms: at(&zone, "2026-03-29T12:00"),
            created_at_ms: 1,
        };
        let list = vec![o.clone()];
        let before = s.on_call(&list, at(&zone, "2026-03-28T19:59"));
        assert_eq!(before.person.as_deref(), Some("ana"));
        assert_eq!(before.until_ms, o.from_ms);
        let during = s.on_call(&list, at(&zone, "2026-03-29T03:30"));
        assert_eq!(during.person.as_deref(), Some("cy"));
        assert_eq!(during.by_override.as_deref(), Some("o1"));
        assert_eq!(
            rfc3339_in(&zone, during.until_ms),
            "2026-03-29T12:00:00+02:00"
        );
        let after = s.on_call(&list, at(&zone, "2026-03-29T12:00"));
        assert_eq!(after.person.as_deref(), Some("ana"));
        assert_eq!(
            rfc3339_in(&zone, after.until_ms),
            "2026-03-30T09:00:00+02:00"
        );
        // A newer override inside the first wins there.
        let newer = Override {
            id: "o2".into(),
            person: "bo".into(),
            from_ms: at(&zone, "2026-03-29T01:00"),
            until_ms: at(&zone, "2026-03-29T04:00"),
            created_at_ms: 2,
        };
        let list = vec![o, newer];
        assert_eq!(
            s.on_call(&list, at(&zone, "2026-03-29T03:30"))
                .person
                .as_deref(),
            Some("bo")
        );
        // The segments of that night, in order, with no gap.
        let segs = s.segments(
            &list,
            at(&zone, "2026-03-28T00:00"),
            at(&zone, "2026-03-31T00:00"),
        );
        let who: Vec<&str> = segs.iter().filter_map(|g| g.person.as_deref()).collect();
        assert_eq!(who, ["ana", "cy", "bo", "cy", "ana", "bo"]);
        for pair in segs.windows(2) {
            assert_eq!(pair[0].until_ms, pair[1].from_ms);
        }
    }

    #[test]
    fn nobody_before_the_first_shift_and_hours_are_elapsed_time() {
        let Some(zone) = berlin() else { return };
        let mut s = weekly(zone.clone());
        let early = s.on_call(&[], at(&zone, "2026-03-01T00:00"));
        assert_eq!(early.person, None);
        assert_eq!(early.until_ms, s.shift_start(0));
        s.every = Every::Hours(12);
        s.first = NaiveDate::from_ymd_opt(2026, 3, 28)
            .unwrap()
            .and_hms_opt(21, 0, 0)
            .unwrap();
        // 12 elapsed hours after 21:00 CET on the night clocks go forward is 10:00 CEST.
        assert_eq!(
            rfc3339_in(&zone, s.shift_start(1)),
            "2026-03-29T10:00:00+02:00"
        );
    }

    #[test]
    fn times_as_people_type_them() {
        let Some(zone) = berlin() else { return };
        assert_eq!(
            parse_time("2026-12-07T09:00", &zone, 0),
            parse_time("2026-12-07T08:00:00Z", &zone, 0)
        );
        assert_eq!(parse_time("now", &zone, 42), Ok(42));
        assert!(parse_time("2026-03-29T02:30", &zone, 0)
            .unwrap_err()
            .contains("does not exist"));
        for bad in ["", "tomorrow", "2026-13-01T00:00", "$(touch x)"] {
            assert!(parse_time(bad, &zone, 0).is_err(), "{bad}");
        }
        // A handoff the clocks skip happens when they land.
        let skipped = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            rfc3339_in(&zone, instant(&zone, skipped)),
            "2026-03-29T03:00:00+02:00"
        );
    }

    #[test]
    fn the_calendar_escapes_and_folds() {
        let Some(zone) = berlin() else { return };
        let s = weekly(zone.clone());
        let segs = s.segments(&[], s.shift_start(0), s.shift_start(2));
        let cal = ics(&s, &segs, |id| format!("{id}, the; one\\"), 0);
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\n"), "{cal}");
        assert!(cal.ends_with("END:VCALENDAR\r\n"));
        assert_eq!(cal.matches("BEGIN:VEVENT").count(), 2);
        assert!(
            cal.contains("SUMMARY:primary: ana\\, the\\; one\\\\\r\n"),
            "{cal}"
        );
        assert!(cal.contains("DTSTART:20260323T080000Z"), "{cal}");
        assert!(fold(&"x".repeat(200)).split("\r\n").all(|l| l.len() <= 75));
    }
}

//! `people`, `auth` and `schedules`: who hub knows, how a sign-on proxy vouches for them, and
//! who is on call.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use ipnet::IpNet;

use super::schedule::{Every, Schedule};
use super::{password, valid_id, Role};
use crate::keys::{Issues, Section};
use crate::zone::Zone;

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    /// How pages and messages name them; the id when the config gives no name.
    pub name: String,
    pub email: Option<String>,
    /// E.164: `+` and up to 15 digits.
    pub phone: Option<String>,
    /// Their Slack user id, for direct messages.
    pub slack: Option<String>,
    pub timezone: Option<Zone>,
    pub role: Role,
    /// argon2id, from `hub hash-password`; `None`: they sign in only through a token or the proxy.
    pub password_hash: Option<String>,
}

/// `auth.proxy`: a sign-on proxy in front of hub (oauth2-proxy, say) puts the signed-in person's
/// e-mail in `header`; hub believes it only from the `trusted` addresses.
#[derive(Debug, Clone)]
pub struct ProxyAuth {
    pub header: String,
    pub trusted: Vec<IpNet>,
}

impl ProxyAuth {
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Debug, Clone, Default)]
pub struct PeopleConfig {
    pub people: BTreeMap<String, Person>,
    pub proxy: Option<ProxyAuth>,
    pub schedules: BTreeMap<String, Schedule>,
}

impl PeopleConfig {
    /// The person with this e-mail address (compared without case, as mail systems do).
    pub fn by_email(&self, email: &str) -> Option<&Person> {
        let email = email.trim();
        self.people.values().find(|p| {
            p.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
    }

    /// The person with this phone number (E.164, as Twilio gives the sender of a text).
    pub fn by_phone(&self, number: &str) -> Option<&Person> {
        let number = number.trim();
        self.people
            .values()
            .find(|p| !number.is_empty() && p.phone.as_deref() == Some(number))
    }

    /// The person with this Slack user id.
    pub fn by_slack(&self, user: &str) -> Option<&Person> {
        self.people
            .values()
            .find(|p| !user.is_empty() && p.slack.as_deref() == Some(user))
    }

    /// The display name of a person id (the id itself for one the config no longer has).
    pub fn name_of(&self, id: &str) -> String {
        self.people
            .get(id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    }
}

pub(crate) fn read(root: &mut Section, issues: &mut Issues) -> PeopleConfig {
    let mut people = BTreeMap::new();
    for (id, value) in root.entries("people", issues) {
        let mut s = Section::at(format!("people.{id}"), value, issues);
        if !valid_id(&id) {
            issues.push(
                s.path(),
                "a person's id is letters, digits, '-', '_' and '.' (at most 64)",
            );
        }
        if let Some(person) = read_person(id.clone(), &mut s, issues) {
            people.insert(id, person);
        }
        s.finish(issues);
    }
    let proxy = read_auth(root.section("auth", issues), &people, issues);
    let mut schedules = BTreeMap::new();
    for (name, value) in root.entries("schedules", issues) {
        let mut s = Section::at(format!("schedules.{name}"), value, issues);
        if !valid_id(&name) {
            issues.push(
                s.path(),
                "a schedule's name is letters, digits, '-', '_' and '.' (at most 64)",
            );
        }
        if let Some(schedule) = read_schedule(name.clone(), &mut s, &people, issues) {
            schedules.insert(name, schedule);
        }
        s.finish(issues);
    }
    PeopleConfig {
        people,
        proxy,
        schedules,
    }
}

fn read_person(id: String, s: &mut Section, issues: &mut Issues) -> Option<Person> {
    let name = s.string("name", issues).filter(|n| !n.trim().is_empty());
    let email = s.string("email", issues);
    if let Some(e) = &email {
        if lettre::Address::from_str(e.trim()).is_err() {
            issues.push(
                s.path_of("email"),
                format!("{e:?} is not a mail address such as \"ana@example.com\""),
            );
        }
    }
    let phone = s.string("phone", issues);
    if let Some(p) = &phone {
        if !is_e164(p) {
            issues.push(
                s.path_of("phone"),
                format!(
                    "{p:?} is not an E.164 number: '+', the country code and the number, digits \
                     only, such as \"+15550001111\""
                ),
            );
        }
    }
    let slack = s.string("slack", issues);
    if let Some(u) = &slack {
        let plain = !u.is_empty()
            && u.len() <= 32
            && u.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !plain {
            issues.push(
                s.path_of("slack"),
                format!("{u:?} is not a Slack user id such as \"U024BE7LH\""),
            );
        }
    }
    let timezone = s.string("timezone", issues).and_then(|z| {
        Zone::named(&z)
            .map_err(|e| issues.push(s.path_of("timezone"), e.to_string()))
            .ok()
    });
    let role = match s.string("role", issues) {
        None => Role::Viewer,
        Some(text) => Role::parse(&text).unwrap_or_else(|| {
            issues.push(
                s.path_of("role"),
                format!("{text:?} is not a role: {}", Role::NAMES),
            );
            Role::Viewer
        }),
    };
    let password_hash = s.string("password_hash", issues);
    if let Some(h) = &password_hash {
        if let Err(e) = password::readable(h) {
            issues.push(
                s.path_of("password_hash"),
                format!("not an argon2id hash ({e}): make one with `hub hash-password`"),
            );
        }
    }
    Some(Person {
        name: name.unwrap_or_else(|| id.clone()),
        id,
        email: email.map(|e| e.trim().to_string()),
        phone,
        slack,
        timezone,
        role,
        password_hash,
    })
}

/// `+`, then 2 to 15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn read_auth(
    mut s: Section,
    people: &BTreeMap<String, Person>,
    issues: &mut Issues,
) -> Option<ProxyAuth> {
    let mut p = s.section("proxy", issues);
    s.finish(issues);
    let header = p.string("header", issues);
    let trusted = p.string_list("trusted", issues);
    let path = p.path().to_string();
    let trusted_path = p.path_of("trusted");
    let header_path = p.path_of("header");
    p.finish(issues);
    let (header, trusted) = match (header, trusted) {
        (None, None) => return None,
        (Some(h), Some(t)) => (h, t),
        _ => {
            issues.push(
                path,
                "give both header (such as \"X-Forwarded-Email\") and trusted (the proxy's \
                 addresses, such as [\"127.0.0.1/32\"])",
            );
            return None;
        }
    };
    let name_ok = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        issues.push(
            header_path,
            format!("{header:?} is not a header name such as \"X-Forwarded-Email\""),
        );
    }
    let mut nets = Vec::new();
    for (i, text) in trusted.iter().enumerate() {
        let parsed = IpNet::from_str(text.trim())
            .or_else(|_| std::net::IpAddr::from_str(text.trim()).map(IpNet::from));
        match parsed {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => issues.push(
                format!("{trusted_path}[{i}]"),
                format!("{text:?} is not an address or network such as \"127.0.0.1/32\""),
            ),
        }
    }
    if trusted.is_empty() {
        issues.push(
            trusted_path,
            "empty: name the proxy's addresses, or the header would be believed from nobody",
        );
    }
    if people.values().all(|p| p.email.is_none()) {
        issues.push(
            "people",
            "auth.proxy maps e-mail addresses to people, and no person has an email",
        );
    }
    name_ok.then_some(ProxyAuth {
        header,
        trusted: nets,
    })
}

fn read_schedule(
    name: String,
    s: &mut Section,
    people: &BTreeMap<String, Person>,
    issues: &mut Issues,
) -> Option<Schedule> {
    let zone_name = s.string("timezone", issues).unwrap_or_else(|| "UTC".into());
    let zone = Zone::named(&zone_name)
        .map_err(|e| issues.push(s.path_of("timezone"), e.to_string()))
        .ok();
    let mut r = s.section("rotation", issues);
    let members = r.string_list("people", issues).unwrap_or_default();
    if members.is_empty() {
        issues.push(
            r.path_of("people"),
            "missing: the people who take turns, such as [\"ana\", \"bo\"]",
        );
    }
    for (i, id) in members.iter().enumerate() {
        if !people.contains_key(id) {
            issues.push(
                format!("{}[{i}]", r.path_of("people")),
                format!("{id:?} is no person of \"people\""),
            );
        }
    }
    let every = r.string("every", issues).and_then(|text| {
        parse_every(&text)
            .map_err(|e| issues.push(r.path_of("every"), e))
            .ok()
    });
    if r.value("every").is_none() {
        issues.push(
            r.path_of("every"),
            "missing: how long a shift lasts, such as \"1w\", \"1d\" or \"12h\"",
        );
    }
    let start = r.string("start", issues).and_then(|text| {
        parse_start(&text)
            .map_err(|e| issues.push(r.path_of("start"), e))
            .ok()
    });
    if r.value("start").is_none() {
        issues.push(
            r.path_of("start"),
            "missing: when the first shift starts, such as \"2026-12-07\"",
        );
    }
    let handoff = r.string("handoff", issues);
    let handoff_path = r.path_of("handoff");
    r.finish(issues);
    let (zone, every, start) = (zone?, every?, start?);
    let first = match (every, handoff) {
        (Every::Hours(_), Some(_)) => {
            issues.push(
                handoff_path,
                "a rotation of hours hands off every `every` from `start`; give the time in start",
            );
            return None;
        }
        (Every::Hours(_), None) => start,
        (Every::Days(d), handoff) => {
            let (weekday, time) = match handoff {
                None => (None, start.time()),
                Some(text) => match parse_handoff(&text, d % 7 == 0) {
                    Ok(h) => h,
                    Err(e) => {
                        issues.push(handoff_path, e);
                        return None;
                    }
                },
            };
            first_handoff(start, weekday, time)
        }
    };
    Some(Schedule {
        name,
        zone,
        people: members,
        every,
        first,
    })
}

/// `1w`, `2d`, `12h`: weeks, days or hours (hours are for short rotations and tests).
pub fn parse_every(text: &str) -> Result<Every, String> {
    let t = text.trim();
    let bad = || format!("{t:?} is not a shift length such as \"1w\", \"1d\" or \"12h\"");
    let unit = t.chars().last().ok_or_else(bad)?;
    let n: u32 = t[..t.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let every = match unit {
        'w' if (1..=52).contains(&n) => Every::Days(n * 7),
        'd' if (1..=365).contains(&n) => Every::Days(n),
        'h' if (1..=8_760).contains(&n) => Every::Hours(n),
        'w' | 'd' | 'h' => return Err(format!("{t:?} is out of range: 1h to 52w")),
        _ => return Err(bad()),
    };
    Ok(every)
}

/// `2026-12-07` (midnight) or `2026-12-07T09:00`, local to the schedule's zone.
fn parse_start(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN)))
        .map_err(|_| {
            format!("{t:?} is not a local date or date-time such as \"2026-12-07\" or \"2026-12-07T09:00\"")
        })
}

/// `MON 09:00` for weekly rotations, `09:00` for daily ones.
fn parse_handoff(text: &str, weekly: bool) -> Result<(Option<Weekday>, NaiveTime), String> {
    let t = text.trim();
    let (day, time) = match t.split_once(' ') {
        Some((d, time)) => (Some(d), time.trim()),
        None => (None, t),
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M")
        .map_err(|_| format!("{t:?}: the time is HH:MM, such as \"MON 09:00\" or \"09:00\""))?;
    let weekday = match day {
        None => None,
        Some(_) if !weekly => {
            return Err(format!(
                "{t:?}: a rotation of days hands off at a time of day, such as \"09:00\""
            ))
        }
        Some(d) => Some(
            Weekday::from_str(d)
                .map_err(|_| format!("{t:?}: {d:?} is not a weekday such as MON, TUE, … SUN"))?,
        ),
    };
    Ok((weekday, time))
}

/// The first local time at or after `start` that is a handoff.
fn first_handoff(start: NaiveDateTime, weekday: Option<Weekday>, time: NaiveTime) -> NaiveDateTime {
    let mut candidate = start.date().and_time(time);
    if candidate < start {
        candidate += Duration::days(1);
    }
    if let Some(day) = weekday {
        while candidate.weekday() != day {
            candidate += Duration::days(1);
        }
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Issues;
    use serde_json::json;

    fn read_json(v: serde_json::Value) -> (PeopleConfig, Vec<String>) {
        let mut issues = Issues::default();
        let mut root = Section::root(&v, &mut issues);
        let people = read(&mut root, &mut issues);
        (people, issues.0.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn a_whole_team_reads() {
        let hash = password::hash("pw").unwrap();
        let (p, issues) = read_json(json!({
            "people": {
                "ana": {"name": "Ana Lima", "email": "ana@example.com", "phone": "+15550001111",
                        "slack": "U024BE7LH", "timezone": "UTC", "role": "responder",
                        "password_hash": hash},
                "bo": {"email": "bo@example.com"}
            },
            "auth": {"proxy": {"header": "X-Forwarded-Email", "trusted": ["127.0.0.1/32", "::1"]}},
            "schedules": {"primary": {"timezone": "UTC",
                "rotation": {"people": ["ana", "bo"], "every": "1w", "handoff": "MON 09:00",
                             "start": "2026-12-02"}}}
        }));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(p.people["ana"].role, Role::Responder);
        assert_eq!(p.people["bo"].role, Role::Viewer);
        assert_eq!(p.people["bo"].name, "bo");
        assert_eq!(
            p.by_email("ANA@example.com").map(|p| p.id.as_str()),
            Some("ana")
        );
        assert_eq!(
            p.by_phone(" +15550001111").map(|p| p.id.as_str()),
            Some("ana")
        );
        assert_eq!(p.by_slack("U024BE7LH").map(|p| p.id.as_str()), Some("ana"));
        assert!(p.by_phone("").is_none() && p.by_slack("u024be7lh").is_none());
        let proxy = p.proxy.unwrap();
        assert!(proxy.trusts("127.0.0.1".parse().unwrap()));
        assert!(proxy.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!proxy.trusts("10.0.0.1".parse().unwrap()));
        // 2026-12-02 is a Wednesday: the first handoff is the Monday after.
        assert_eq!(
            p.schedules["primary"].first.to_string(),
            "2026-12-07 09:00:00"
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let (_, issues) = read_json(json!({
            "people": {
                "../x": {},
                "ana": {"email": "not mail", "phone": "5550001111", "slack": "<script>",
                        "timezone": "Mars/Base", "role": "root", "password_hash": "plain",
                        "pager": 1}
            },
            "auth": {"proxy": {"header": "X Bad", "trusted": ["everyone"]}},
            "schedules": {"s": {"rotation": {"people": ["zed"], "every": "1y",
                                              "start": "soon", "handoff": "FUNDAY 9"}}}
        }));
        let all = issues.join("\n");
        for path in [
            "people.../x",
            "people.ana.email",
            "people.ana.phone",
            "people.ana.slack",
            "people.ana.timezone",
            "people.ana.role",
            "people.ana.password_hash",
            "people.ana.pager",
            "auth.proxy.header",
            "auth.proxy.trusted[0]",
            "schedules.s.rotation.people[0]",
            "schedules.s.rotation.every",
            "schedules.s.rotation.start",
        ] {
            assert!(all.contains(path), "{path} missing from:\n{all}");
        }
    }

    #[test]
    fn handoffs_and_lengths() {
        assert_eq!(parse_every("2w"), Ok(Every::Days(14)));
        assert_eq!(parse_every("12h"), Ok(Every::Hours(12)));
        for bad in ["", "w", "0d", "1y", "-1d", "1.5d", "53w"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        assert!(parse_handoff("MON 09:00", false).is_err());
        assert!(parse_handoff("09:61", true).is_err());
        assert_eq!(
            parse_handoff("sun 18:30", true).unwrap().0,
            Some(Weekday::Sun)
        );
        assert!(is_e164("+15550001111"));
        for bad in ["15550001111", "+0555", "+1 555", "+", "+1234567890123456"] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}

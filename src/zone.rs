//! IANA time zones read from the system's tz database when a config names one.
//!
//! A zone table compiled into the binary (chrono-tz) costs about 1 MB of pointer tables that the
//! loader relocates at every start, resident whether or not a maintenance window names a zone.
//! Reading the one zone a window names from `TZDIR` or `/usr/share/zoneinfo` costs nothing until
//! then, and follows the system's tzdata updates. `tz-rs` parses the TZif file, footer rule
//! included, so "slim" zone files (no transitions listed after the last rule change) work too;
//! this file only adapts it to `chrono::TimeZone`, which the cron library needs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone};

/// Where the tz database is when `TZDIR` does not say.
const DEFAULT_DIR: &str = "/usr/share/zoneinfo";

/// Why a zone name cannot be used; each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("{0:?} is not an IANA time zone name such as \"Europe/Berlin\"")]
    NotAName(String),
    #[error(
        "no time zone database at {}: install tzdata (or set TZDIR) to name {name:?}, or use \"UTC\"",
        dir.display()
    )]
    NoDatabase { name: String, dir: PathBuf },
    #[error("{name:?} is not an IANA time zone such as \"Europe/Berlin\" (not found in {})", dir.display())]
    Unknown { name: String, dir: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a time zone file: {detail}", path.display())]
    NotAZoneFile { path: PathBuf, detail: String },
}

/// A time zone, cheap to clone.
#[derive(Clone)]
pub struct Zone {
    name: Arc<str>,
    rules: Arc<tz::TimeZone>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            rules: Arc::new(tz::TimeZone::utc()),
        }
    }

    /// The zone an IANA name such as `Europe/Berlin` names. `UTC` needs no tz database.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        if name == "UTC" || name == "Etc/UTC" {
            return Ok(Zone::utc());
        }
        if !plausible(name) {
            return Err(ZoneError::NotAName(name.to_string()));
        }
        let dir = std::env::var_os("TZDIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        Self::read(name, &dir)
    }

    fn read(name: &str, dir: &Path) -> Result<Zone, ZoneError> {
        let path = dir.join(name);
        let bytes = match crate::small_file::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() => {
                return Err(ZoneError::NoDatabase {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ZoneError::Unknown {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => return Err(ZoneError::Read { path, source }),
        };
        let rules = tz::TimeZone::from_tz_data(&bytes).map_err(|e| ZoneError::NotAZoneFile {
            detail: e.to_string(),
            path: path.clone(),
        })?;
        Ok(Zone {
            name: name.into(),
            rules: Arc::new(rules),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds east of UTC at `unix_secs`.
    fn offset_at(&self, unix_secs: i64) -> i32 {
        self.rules
            .find_local_time_type(unix_secs)
            .map(|t| t.ut_offset())
            .unwrap_or(0)
    }

    fn offset(&self, secs: i32) -> ZoneOffset {
        ZoneOffset {
            fixed: FixedOffset::east_opt(secs).unwrap_or(chrono::Utc.fix()),
            zone: self.clone(),
        }
    }
}

/// A name of the tz database: path components of letters, digits, `_`, `-` and `+`; never
/// absolute and never `..`, so a config cannot make hub read a file outside the database.
fn plausible(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
        })
}

/// The offset of a [`Zone`] at one instant; it carries its zone because chrono rebuilds the
/// zone from an offset (`TimeZone::from_offset`).
#[derive(Clone)]
pub struct ZoneOffset {
    fixed: FixedOffset,
    zone: Zone,
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.fixed, self.zone.name)
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset(self.offset_at(utc.and_utc().timestamp()))
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    /// A local time is valid at offset `o` when the zone's offset at `local - o` is `o`. Real
    /// zones change their offset at most once within a day, so the offsets a day before and a
    /// day after are the only candidates: one valid is the usual case, none is a time skipped
    /// by a change (spring forward), two is a time repeated by one (fall back).
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let l = local.and_utc().timestamp();
        let before = self.offset_at(l - 86_400);
        let after = self.offset_at(l + 86_400);
        let valid = |o: i32| self.offset_at(l - i64::from(o)) == o;
        let mut found: Vec<i32> = [before, after].into_iter().filter(|o| valid(*o)).collect();
        found.dedup();
        match found.as_slice() {
            [] => MappedLocalTime::None,
            [one] => MappedLocalTime::Single(self.offset(*one)),
            // The larger offset puts the instant earlier: `earliest()` is the first time.
            [a, b] => {
                let (early, late) = if a > b { (*a, *b) } else { (*b, *a) };
                MappedLocalTime::Ambiguous(self.offset(early), self.offset(late))
            }
            _ => MappedLocalTime::None,
        }
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> Zone {
        Zone::named("Europe/Berlin").unwrap()
    }

    fn local(zone: &Zone, s: &str) -> MappedLocalTime<chrono::DateTime<Zone>> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        zone.from_local_datetime(&naive)
    }

    #[test]
    fn utc_to_local_follows_summer_time_years_ahead() {
        // 2040 is past the transitions a "fat" file lists: the footer rule must be read.
        for (utc, offset) in [
            ("2026-01-15 12:00", 3600),
            ("2026-07-15 12:00", 7200),
            ("2040-07-15 12:00", 7200),
            ("2040-12-15 12:00", 3600),
        ] {
            let t = NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M").unwrap();
            let dt = chrono::Utc.from_utc_datetime(&t).with_timezone(&berlin());
            assert_eq!(dt.offset().fix().local_minus_utc(), offset, "{utc}");
        }
    }

    #[test]
    fn a_skipped_local_time_is_none_and_a_repeated_one_is_ambiguous_earliest_first() {
        let z = berlin();
        // 2026-03-29 02:30 does not exist in Berlin; 2026-10-25 02:30 happens twice.
        assert!(matches!(
            local(&z, "2026-03-29 02:30"),
            MappedLocalTime::None
        ));
        let twice = local(&z, "2026-10-25 02:30");
        let (first, second) = match twice {
            MappedLocalTime::Ambiguous(a, b) => (a, b),
            other => panic!("expected two, got {other:?}"),
        };
        assert_eq!(first.to_rfc3339(), "2026-10-25T02:30:00+02:00");
        assert_eq!(second.to_rfc3339(), "2026-10-25T02:30:00+01:00");
        assert!(first < second);
        let plain = local(&z, "2026-06-01 09:00").single().unwrap();
        assert_eq!(plain.to_rfc3339(), "2026-06-01T09:00:00+02:00");
    }

    #[test]
    fn utc_needs_no_database_and_hostile_or_unknown_names_are_refused() {
        assert_eq!(Zone::named("UTC").unwrap().name(), "UTC");
        for bad in [
            "",
            "../../etc/passwd",
            "/etc/localtime",
            "Europe/../../x",
            "a b",
            "$(x)",
        ] {
            let e = Zone::named(bad).unwrap_err().to_string();
            assert!(e.contains("not an IANA time zone"), "{bad:?}: {e}");
        }
        let e = Zone::named("Mars/Olympus_Mons").unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
        let dir = std::env::temp_dir().join("hub-no-such-zoneinfo");
        let e = Zone::read("Europe/Berlin", &dir).unwrap_err().to_string();
        assert!(e.contains("install tzdata"), "{e}");
        // A file in the database that is not a zone (Debian ships such text files).
        let e = Zone::named("zone.tab").unwrap_err().to_string();
        assert!(e.contains("not a time zone file"), "{e}");
    }
}

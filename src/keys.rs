//! The key reader every part reads its config with: a path-tracking reader over a parsed JSON
//! document that depends on nothing of hub but `secret` and `template`.
//!
//! serde's derive stops at the first problem; an operator fixing a config file wants every problem at
//! once, each named by its key path. This reader walks a `serde_json::Value`, records every missing
//! key, wrong type and unknown key it meets, and lets the caller go on with defaults.

use serde_json::{Map, Value};

use crate::secret::Secret;

/// One problem found in the configuration, named by its key path (`webhook.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
    /// A program an action runs is missing: it matters only to commands that run actions.
    pub missing_program: bool,
    /// What only serving needs is missing (the webhook's credentials): it matters only to
    /// `hub run`, not to commands that work on the store.
    pub serving_only: bool,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects issues while a document is read.
#[derive(Debug, Default)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            missing_program: false,
            serving_only: false,
        });
    }

    /// Something only serving needs; see [`ConfigIssue::serving_only`].
    pub fn push_serving_only(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            missing_program: false,
            serving_only: true,
        });
    }

    /// An action's program that is not there; see [`ConfigIssue::missing_program`].
    pub fn push_missing_program(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            missing_program: true,
            serving_only: false,
        });
    }
}

/// Names a JSON value's type the way an operator reads it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON object being read; remembers which keys were asked for so the rest can be reported.
pub struct Section<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    /// The document's top level, which must be an object.
    pub fn root(value: &'a Value, issues: &mut Issues) -> Self {
        let map = match value {
            Value::Object(map) => Some(map),
            other => {
                issues.push(
                    "(top level)",
                    format!("expected an object, found {}", type_name(other)),
                );
                None
            }
        };
        Section {
            path: String::new(),
            map,
            known: Vec::new(),
        }
    }

    /// A section at any path: an entry of a map whose keys are names, or an item of a list.
    pub fn at(path: String, value: &'a Value, issues: &mut Issues) -> Self {
        let map = match value {
            Value::Object(map) => Some(map),
            other => {
                issues.push(
                    path.clone(),
                    format!("expected an object, found {}", type_name(other)),
                );
                None
            }
        };
        Section {
            path,
            map,
            known: Vec::new(),
        }
    }

    /// This section's own path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full path of a key in this section.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.and_then(|m| m.get(key))
    }

    /// A nested object. A missing one reads as empty so that its keys fall back to defaults.
    pub fn section(&mut self, key: &'static str, issues: &mut Issues) -> Section<'a> {
        let path = self.path_of(key);
        match self.get(key) {
            Some(value) => Section::at(path, value, issues),
            None => Section {
                path,
                map: None,
                known: Vec::new(),
            },
        }
    }

    /// A raw value, for keys that accept more than one shape.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &'static str, issues: &mut Issues) -> Option<String> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                issues.push(
                    self.path_of(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// One string or a list of them; an empty string reads as an empty list.
    pub fn string_list(&mut self, key: &'static str, issues: &mut Issues) -> Option<Vec<String>> {
        let path = self.path_of(key);
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => Some(Vec::new()),
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => issues.push(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", type_name(other)),
                        ),
                    }
                }
                Some(out)
            }
            Some(other) => {
                issues.push(
                    path,
                    format!(
                        "expected a string or a list of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// The entries of an object whose keys are free-form names.
    pub fn entries(&mut self, key: &'static str, issues: &mut Issues) -> Vec<(String, &'a Value)> {
        match self.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Some(other) => {
                issues.push(
                    self.path_of(key),
                    format!("expected an object, found {}", type_name(other)),
                );
                Vec::new()
            }
        }
    }

    /// The items of a list; `None` when the key is absent.
    pub fn items(&mut self, key: &'static str, issues: &mut Issues) -> Option<Vec<&'a Value>> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.iter().collect()),
            Some(other) => {
                issues.push(
                    self.path_of(key),
                    format!("expected a list, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, key: &'static str, issues: &mut Issues) -> Option<bool> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                issues.push(
                    self.path_of(key),
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn integer(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
        issues: &mut Issues,
    ) -> Option<u64> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    issues.push(
                        self.path_of(key),
                        format!("expected a whole number from {min} to {max}, found {n}"),
                    );
                    None
                }
            },
            Some(other) => {
                issues.push(
                    self.path_of(key),
                    format!("expected a whole number, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A duration within `min..=max`: a string such as `"30s"`, `"10m"`, `"12h"` or `"90d"`, or a
    /// whole number of seconds.
    pub fn duration(
        &mut self,
        key: &'static str,
        min: std::time::Duration,
        max: std::time::Duration,
        issues: &mut Issues,
    ) -> Option<std::time::Duration> {
        let path = self.path_of(key);
        let found = match self.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::String(text)) => parse_duration(text),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| format!("expected a whole number of seconds, found {n}")),
            Some(other) => Err(format!(
                "expected a duration such as \"30s\", found {}",
                type_name(other)
            )),
        };
        let show = short_duration;
        match found {
            Ok(d) if (min..=max).contains(&d) => Some(d),
            Ok(d) => {
                issues.push(
                    path,
                    format!(
                        "must be from {} to {}, found {}",
                        show(min),
                        show(max),
                        show(d)
                    ),
                );
                None
            }
            Err(message) => {
                issues.push(path, message);
                None
            }
        }
    }

    /// Reports every key of this section that no reader asked for.
    pub fn finish(self, issues: &mut Issues) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                issues.push(
                    self.path_of(key),
                    format!("unknown key (known here: {})", known.join(", ")),
                );
            }
        }
    }
}

/// Every key given twice in one object, by path. JSON parsers keep the last one silently, so a
/// section pasted twice (an old and a new `webhook`, say) would quietly drop one of them.
pub fn duplicate_keys(text: &str) -> Vec<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Vec<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.found.borrow_mut().push(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_str(text);
    // The text was parsed already; an error here cannot happen and would be reported there.
    let _ = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}
/// The process environment, for `*_env` keys (given, not read, so tests can set it).
pub struct Env<'a>(pub &'a [(String, String)]);

impl Env<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A secret given in the file or, by `<key>_env`, named as an environment variable.
pub(crate) fn secret(
    s: &mut Section,
    key: &'static str,
    env_key: &'static str,
    env: &Env,
    issues: &mut Issues,
) -> Secret {
    let direct = s.string(key, issues);
    match s.string(env_key, issues) {
        Some(var) => match env.get(&var) {
            // As in the file (see `config::placeholders`): an example copied into the variable.
            Some(v) if v.contains('…') => {
                issues.push(
                    s.path_of(env_key),
                    format!(
                        "environment variable {var} holds {PLACEHOLDER} (it contains \"…\"): \
                         set the real value"
                    ),
                );
                Secret::default()
            }
            Some(v) if !v.is_empty() => Secret::new(v),
            _ => {
                issues.push(
                    s.path_of(env_key),
                    format!("environment variable {var} is not set"),
                );
                Secret::default()
            }
        },
        None => Secret::new(direct.unwrap_or_default()),
    }
}

/// How a credential left as the README writes it is reported (see `config::placeholders`).
pub(crate) const PLACEHOLDER: &str = "a placeholder copied from the README";

/// An http:// or https:// URL with a host.
pub(crate) fn check_url(path: &str, url: &str, issues: &mut Issues) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => issues.push(
            path,
            format!("expected an http:// or https:// URL, found {url:?}"),
        ),
    }
}

/// As [`check_url`], for a URL that is itself a credential (an incoming webhook's): a bad one is
/// not repeated in the error.
pub(crate) fn check_secret_url(path: &str, url: &str, issues: &mut Issues) {
    let mut quiet = Issues::default();
    check_url(path, url, &mut quiet);
    if !quiet.0.is_empty() {
        issues.push(
            path,
            "expected an http:// or https:// URL (the value is not shown: it holds a credential)",
        );
    }
}

/// A template that compiles.
pub(crate) fn check_template(path: &str, source: &str, issues: &mut Issues) {
    if let Err(e) = crate::template::Template::new(source) {
        issues.push(path, format!("bad template: {e}"));
    }
}

/// A duration as an operator writes one: `90d`, `12h`, `10m`, `30s` when it is whole in that
/// unit (humantime would say "2months 29days 2h 52m 48s" for 90 days), else humantime's text.
/// A duration as an operator writes it, in the config or on the command line (one parser for
/// both, so what works in one works in the other): `30s`, `10m`, `12h`, `90d`, `1h 30m`, or a
/// whole number of seconds (what a JSON number means in the config). Blanks around it are ignored.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("{text:?} is too many seconds"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("expected a duration such as \"30s\", \"10m\" or \"12h\", found {text:?} ({e})")
    })
}

pub fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

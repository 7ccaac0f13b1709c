//! Matchers: which problems a silence, a maintenance window or a heartbeat covers. A matcher is a
//! key and a value that is exact or a `*` glob; a problem matches when every matcher does.
//!
//! Matching runs on the dispatcher's path for every problem, and both sides can be hostile: a
//! silence's value and a problem's title (up to the body limit, a megabyte). So a glob is matched in
//! time linear in the text (see [`glob_matches`]), and a value is at most [`MAX_VALUE_CHARS`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::Entity;

/// The keys a matcher may test.
pub const KEYS: &[&str] = &[
    "source", "problem", "state", "severity", "tag", "entity", "title",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub key: String,
    pub value: String,
}

/// The longest matcher value: far more than any real title pattern, and it bounds the work a `?`
/// in a value costs per character of text.
pub const MAX_VALUE_CHARS: usize = 1024;

/// Why a matcher cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("expected KEY=VALUE, found {0:?}")]
    Shape(String),
    #[error(
        "unknown matcher key {0:?} (known: source, problem, state, severity, tag, entity, title)"
    )]
    Key(String),
    #[error("matcher {0}= has an empty value")]
    Empty(String),
    #[error("a tag matcher is name:value, found {0:?}")]
    Tag(String),
    #[error("no matcher given: a silence must say what it covers")]
    None,
    #[error("matcher {0}= is longer than {MAX_VALUE_CHARS} characters")]
    Long(String),
}

impl Matcher {
    pub fn new(key: &str, value: &str) -> Result<Matcher, MatcherError> {
        if !KEYS.contains(&key) {
            return Err(MatcherError::Key(key.to_string()));
        }
        if value.trim().is_empty() {
            return Err(MatcherError::Empty(key.to_string()));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(MatcherError::Long(key.to_string()));
        }
        if key == "tag" && !value.contains(':') && value != "*" {
            return Err(MatcherError::Tag(value.to_string()));
        }
        Ok(Matcher {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// `KEY=VALUE`, as `--match` takes it.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| MatcherError::Shape(text.to_string()))?;
        Matcher::new(key.trim(), value)
    }

    pub fn matches(&self, p: &impl Matchable) -> bool {
        let glob = |text: &str| glob_matches(&self.value, text);
        // States and severities are written in capitals by one source and not by another.
        let folded =
            |text: &str| glob_matches(&self.value.to_ascii_uppercase(), &text.to_ascii_uppercase());
        match self.key.as_str() {
            "source" => glob(p.source_name()),
            "problem" => p.ids().iter().any(|id| glob(id)),
            "state" => folded(p.state()),
            "severity" => folded(p.severity()),
            "tag" => p.tags().iter().any(|t| glob(t)),
            "entity" => p.entities().iter().any(|e| glob(&e.name) || glob(&e.id)),
            "title" => glob(p.title()),
            _ => false,
        }
    }
}

/// What matchers look at in a problem; the actions' `Problem` says it, so matching depends on
/// nothing above it.
pub trait Matchable {
    fn source_name(&self) -> &str;
    /// Every id the problem is known by (its own, and the one people see when it differs).
    fn ids(&self) -> Vec<String>;
    fn state(&self) -> &str;
    fn severity(&self) -> &str;
    fn title(&self) -> &str;
    fn tags(&self) -> &[String];
    fn entities(&self) -> &[Entity];
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters and `?` for any
/// one character.
///
/// In time linear in the text, whatever the pattern: the `*`s cut the pattern into pieces; the
/// first must match at the start, the last at the end, and each one between is found at its
/// leftmost place after the one before (leftmost is never worse, since a piece has a fixed
/// length, so a later place leaves less text for the rest). Each search goes on from where the
/// last one ended, so the text is read once: by the standard library's substring search (two-way,
/// linear) for a piece without `?`, else by a bit-parallel scan whose cost per character is one
/// word per 64 characters of the piece. A backtracking matcher took O(text × pattern): seconds for
/// a long pattern against a megabyte title.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let (Some((first, rest)), Some(last)) = (pieces.split_first(), pieces.last()) else {
        return text.is_empty();
    };
    let Some(start) = match_start(first, text) else {
        return false;
    };
    if rest.is_empty() {
        // No `*`: the whole text.
        return start == text.len();
    }
    let Some(end) = match_end(last, &text[start..]).map(|e| start + e) else {
        return false;
    };
    let mut at = start;
    for piece in &rest[..rest.len() - 1] {
        if piece.is_empty() {
            continue;
        }
        match find_piece(piece, &text[at..end]) {
            Some(after) => at += after,
            None => return false,
        }
    }
    true
}

/// Whether `text` starts with `piece` (`?` any one character): where the match ends.
fn match_start(piece: &str, text: &str) -> Option<usize> {
    let mut rest = text.char_indices();
    for p in piece.chars() {
        let (_, t) = rest.next()?;
        if p != '?' && p != t {
            return None;
        }
    }
    Some(rest.next().map_or(text.len(), |(i, _)| i))
}

/// Whether `text` ends with `piece` (`?` any one character): where the match starts.
fn match_end(piece: &str, text: &str) -> Option<usize> {
    let mut rest = text.char_indices().rev();
    let mut from = text.len();
    for p in piece.chars().rev() {
        let (i, t) = rest.next()?;
        if p != '?' && p != t {
            return None;
        }
        from = i;
    }
    Some(from)
}

/// Where the leftmost match of `piece` in `text` ends.
fn find_piece(piece: &str, text: &str) -> Option<usize> {
    if !piece.contains('?') {
        return text.find(piece).map(|i| i + piece.len());
    }
    // Shift-and: bit i of `state` is set when the last i+1 characters read match the piece's
    // first i+1; a character's mask has the bits of the places it (or a `?`) may take.
    let piece: Vec<char> = piece.chars().collect();
    let words = piece.len().div_ceil(64);
    let mut any = vec![0u64; words];
    for (i, _) in piece.iter().enumerate().filter(|(_, c)| **c == '?') {
        any[i / 64] |= 1 << (i % 64);
    }
    let mut masks: HashMap<char, Vec<u64>> = HashMap::new();
    for (i, c) in piece.iter().enumerate().filter(|(_, c)| **c != '?') {
        masks.entry(*c).or_insert_with(|| any.clone())[i / 64] |= 1 << (i % 64);
    }
    let (last_word, last_bit) = ((piece.len() - 1) / 64, (piece.len() - 1) % 64);
    let mut state = vec![0u64; words];
    for (i, c) in text.char_indices() {
        let mask = masks.get(&c).unwrap_or(&any);
        let mut carry = 1;
        for (word, mask) in state.iter_mut().zip(mask) {
            let next = *word >> 63;
            *word = ((*word << 1) | carry) & mask;
            carry = next;
        }
        if state[last_word] >> last_bit & 1 == 1 {
            return Some(i + c.len_utf8());
        }
    }
    None
}

/// Every matcher of a list matches (a list is never empty where it is used).
pub fn all_match(matchers: &[Matcher], p: &impl Matchable) -> bool {
    !matchers.is_empty() && matchers.iter().all(|m| m.matches(p))
}

/// A config object's matchers: `{"tag": "env:prod", "source": "alertmanager"}`.
pub fn read_object(
    s: &mut crate::keys::Section,
    key: &'static str,
    issues: &mut crate::keys::Issues,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (k, v) in s.entries(key, issues) {
        let path = format!("{}.{k}", s.path_of(key));
        match v.as_str() {
            Some(value) => match Matcher::new(&k, value) {
                Ok(m) => out.push(m),
                Err(e) => issues.push(path, e.to_string()),
            },
            None => issues.push(path, "expected a string (exact, or a * glob)"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Problem;
    use crate::domain::Source;
    use serde_json::Value;

    fn problem() -> Problem {
        Problem {
            source: Source::Alertmanager,
            problem_id: "abc".into(),
            pid: None,
            state: "OPEN".into(),
            title: "Disk full on db-1".into(),
            severity: "critical".into(),
            impact: String::new(),
            tags: vec!["env:prod".into(), "alertname:Watchdog".into()],
            url: None,
            entities: vec![Entity::named("db-1", "host")],
            received_at_ms: 0,
            notification: Value::Null,
            details: None,
        }
    }

    #[test]
    fn exact_values_and_globs_match_and_all_must() {
        let p = problem();
        let m = |t: &str| Matcher::parse(t).unwrap();
        assert!(m("tag=env:prod").matches(&p));
        assert!(m("tag=alertname:Watch*").matches(&p));
        assert!(m("entity=db-*").matches(&p));
        assert!(m("severity=CRITICAL").matches(&p));
        assert!(m("title=Disk full*").matches(&p));
        assert!(!m("source=dynatrace").matches(&p));
        assert!(all_match(&[m("source=alertmanager"), m("state=open")], &p));
        assert!(!all_match(
            &[m("source=alertmanager"), m("state=RESOLVED")],
            &p
        ));
        assert!(!all_match(&[], &p), "an empty list covers nothing");
    }

    /// The same answers as the backtracking matcher used before, on random globs and texts over a
    /// small alphabet (where stars and wildcards meet most often), multi-byte characters included.
    #[test]
    fn globs_match_as_a_backtracking_matcher_does() {
        let mut rng = fastrand::Rng::with_seed(26);
        let alphabet = ['a', 'b', 'é', '*', '?'];
        for _ in 0..20_000 {
            let pattern: String = (0..rng.usize(0..8))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let text: String = (0..rng.usize(0..10))
                .map(|_| alphabet[rng.usize(..3)])
                .collect();
            assert_eq!(
                glob_matches(&pattern, &text),
                backtracking(
                    &pattern.chars().collect::<Vec<_>>(),
                    &text.chars().collect::<Vec<_>>()
                ),
                "{pattern:?} against {text:?}"
            );
        }
        // Pieces longer than one word of the bit-parallel scan.
        let long: String = "ab?".repeat(50);
        let text = format!("xx{}yy", "abz".repeat(50));
        assert!(glob_matches(&format!("*{long}*"), &text));
        assert!(!glob_matches(&format!("*{long}b*"), &text));
    }

    fn backtracking(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some('*'), _) => {
                backtracking(&p[1..], t) || (!t.is_empty() && backtracking(p, &t[1..]))
            }
            (Some(_), None) => false,
            (Some(c), Some(d)) => (*c == '?' || c == d) && backtracking(&p[1..], &t[1..]),
        }
    }

    /// The attack that stalled routing: a 7,000-character value of stars and near misses against
    /// a megabyte title. Each search goes on from where the last ended, so the title is read
    /// about once per piece kind; the old matcher did some 7e9 steps here.
    #[test]
    fn a_long_glob_against_a_megabyte_title_is_read_once() {
        let title = "a".repeat(1 << 20);
        let hostile = format!("{}*b*", "*a".repeat(3_500));
        assert_eq!(hostile.len(), 7_003);
        assert!(!glob_matches(&hostile, &title));
        assert!(glob_matches(&hostile[..7_000], &title));
        assert!(!glob_matches(&format!("{}b", "*a".repeat(3_500)), &title));
        let wildcards = format!("*{}b*", "a?".repeat(MAX_VALUE_CHARS / 2 - 2));
        assert!(!glob_matches(&wildcards, &title));
        let mut p = problem();
        p.title = title;
        assert!(!Matcher {
            key: "title".into(),
            value: hostile
        }
        .matches(&p));
        assert_eq!(
            Matcher::new("title", &"*a".repeat(MAX_VALUE_CHARS)),
            Err(MatcherError::Long("title".into()))
        );
    }

    #[test]
    fn bad_matchers_are_refused() {
        assert_eq!(
            Matcher::parse("colour=red"),
            Err(MatcherError::Key("colour".into()))
        );
        assert!(matches!(
            Matcher::parse("source"),
            Err(MatcherError::Shape(_))
        ));
        assert!(matches!(
            Matcher::parse("title="),
            Err(MatcherError::Empty(_))
        ));
        assert!(matches!(
            Matcher::parse("tag=prod"),
            Err(MatcherError::Tag(_))
        ));
    }
}

//! The problem feed as an operator reads it: what Dynatrace raised, and whether hub heard of it.

use crate::clock::utc;
use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use crate::dynatrace::problem::Summary;
use crate::dynatrace::Window;

/// What the store has received, for matching against the feed.
#[derive(Debug, Default)]
pub struct Received {
    pub pids: HashSet<String>,
    pub problem_keys: HashSet<String>,
}

impl Received {
    /// A notification names a problem by its PID, or by its number in `{ProblemID}`.
    pub fn has(&self, p: &Summary) -> bool {
        self.pids.contains(&p.pid)
            || self.problem_keys.contains(p.problem_number())
            || self.problem_keys.contains(&p.display_id)
    }
}

/// What to look for in the store for a feed: each problem's number, display id and PID, so that
/// a page of the feed reads a few rows, however many notifications the store holds.
#[derive(Debug, Default, Clone)]
pub struct Wanted {
    pub keys: Vec<String>,
    pub pids: Vec<String>,
}

impl Wanted {
    pub fn of(problems: &[Summary]) -> Wanted {
        let mut w = Wanted::default();
        for p in problems {
            w.keys.push(p.problem_number().to_string());
            w.keys.push(p.display_id.clone());
            w.pids.push(p.pid.clone());
        }
        w.keys.sort();
        w.keys.dedup();
        w.pids.sort();
        w.pids.dedup();
        w
    }
}

pub struct Feed {
    pub window: Window,
    pub rows: Vec<(Summary, bool)>,
}

impl Feed {
    pub fn new(window: Window, problems: Vec<Summary>, received: &Received) -> Feed {
        let rows = problems
            .into_iter()
            .map(|p| {
                let seen = received.has(&p);
                (p, seen)
            })
            .collect();
        Feed { window, rows }
    }

    fn counts(&self, field: impl Fn(&Summary) -> &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (p, _) in &self.rows {
            let key = field(p);
            let key = if key.is_empty() { "unknown" } else { key };
            *counts.entry(key.to_string()).or_insert(0) += 1;
        }
        counts
    }

    pub fn to_json(&self) -> Value {
        let problems: Vec<Value> = self
            .rows
            .iter()
            .map(|(p, received)| {
                let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                v["received_by_hub"] = json!(received);
                v
            })
            .collect();
        json!({
            "window": self.window.name(),
            "problems": problems,
            "counts": {
                "status": self.counts(|p| &p.status),
                "impact": self.counts(|p| &p.impact),
                "not_received_by_hub": self.rows.iter().filter(|(_, r)| !r).count(),
            }
        })
    }

    pub fn to_table(&self) -> String {
        let header = [
            "ID",
            "TITLE",
            "STATUS",
            "SEVERITY",
            "IMPACT",
            "START (UTC)",
            "END (UTC)",
            "ENTITIES",
            "IN HUB",
        ];
        let rows: Vec<[String; 9]> = self
            .rows
            .iter()
            .map(|(p, received)| {
                [
                    p.display_id.clone(),
                    clip(&p.title, 40),
                    p.status.clone(),
                    p.severity.clone(),
                    p.impact.clone(),
                    p.start_ms.map(utc).unwrap_or_else(|| "-".into()),
                    p.end_ms.map(utc).unwrap_or_else(|| "still open".into()),
                    clip(&p.entities.join(", "), 40),
                    if *received { "yes" } else { "NO" }.into(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = vec![line(header.to_vec())];
        out.extend(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        );
        let missing = self.rows.iter().filter(|(_, r)| !r).count();
        out.push(String::new());
        out.push(format!(
            "{} problem(s) in the last {}; by status: {}; by impact: {}; not received by hub: {missing}",
            self.rows.len(),
            self.window.name(),
            summary(&self.counts(|p| &p.status)),
            summary(&self.counts(|p| &p.impact)),
        ));
        out.join("\n")
    }
}

fn summary(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts long text for a table cell and removes control characters, so no title can redraw the
/// operator's terminal.
fn clip(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let cut: String = clean.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_hostile_text() {
        assert_eq!(clip("a\x1b[2Jb\n", 10), "a [2Jb ");
        assert_eq!(clip(&"x".repeat(50), 5), "xxxx…");
    }
}

//! The `retention` section: how long problems that ended are kept, and how often a pass looks.

use std::time::Duration;

use crate::keys::{Issues, Section};

/// `retention`: how long problems that ended are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// A problem that ended, and has had nothing to do, for longer than this is deleted.
    pub max_age: Duration,
    /// How often a pass looks for such problems.
    pub interval: Duration,
}

/// `retention`, once given: `max_age` is required.
pub(crate) fn read(mut s: Section, issues: &mut Issues) -> Option<RetentionConfig> {
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);
    // At least an hour: "90s" typed for "90d" must not delete what just resolved.
    let max_age = s.duration("max_age", HOUR, DAY * 36_500, issues);
    if s.value("max_age").is_none() {
        issues.push(
            s.path_of("max_age"),
            "required with retention: how long a problem that ended is kept, such as \"90d\"",
        );
    }
    let interval = s
        .duration("interval", Duration::from_secs(1), DAY, issues)
        .unwrap_or(Duration::from_secs(600));
    s.finish(issues);
    Some(RetentionConfig {
        max_age: max_age?,
        interval,
    })
}

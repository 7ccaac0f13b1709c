//! The `dynatrace` section: the tenant and token enrichment and `hub poll` use, and how patient
//! the client is.

use crate::keys::{Issues, Section};
use crate::secret::Secret;

pub const DEFAULT_ENRICH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DynatraceConfig {
    /// Base URL of the environment; `None` when not configured (no enrichment).
    pub tenant: Option<String>,
    pub api_token: Secret,
    /// Problems API version: 2 (default) or 1 for old Managed clusters.
    pub api_version: u8,
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    /// Tries per API call, the first included.
    pub max_attempts: u32,
    /// The longest hub waits for a rate limit to reset before trying again.
    pub max_rate_limit_wait_secs: u64,
    /// How long actions wait for a problem's details before they run on the notification alone.
    pub enrich_wait: std::time::Duration,
    /// Acknowledgements become comments on the problem and `hub resolve` closes it (see
    /// `crate::actions::dynatrace_sync`).
    pub sync: bool,
}

pub(crate) fn read(mut s: Section, issues: &mut Issues) -> DynatraceConfig {
    let tenant = s.string("tenant", issues).filter(|t| !t.trim().is_empty());
    if let Some(t) = &tenant {
        let lower = t.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) || t.contains(' ') {
            issues.push(
                s.path_of("tenant"),
                format!(
                    "expected a URL such as https://abc12345.live.dynatrace.com or https://host/e/<env-id>, found {t:?}"
                ),
            );
        }
    }
    let api_token = Secret::new(s.string("api_token", issues).unwrap_or_default());
    let api_version = s.integer("api_version", 1, 2, issues).unwrap_or(2) as u8;
    let connect_timeout_secs = s
        .integer("connect_timeout_secs", 1, 300, issues)
        .unwrap_or(5);
    let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(30);
    let max_attempts = s.integer("max_attempts", 1, 20, issues).unwrap_or(4) as u32;
    let max_rate_limit_wait_secs = s
        .integer("max_rate_limit_wait_secs", 0, 3600, issues)
        .unwrap_or(60);
    let enrich_wait = s
        .duration(
            "enrich_wait",
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(24 * 3600),
            issues,
        )
        .unwrap_or(DEFAULT_ENRICH_WAIT);
    let sync = s.bool("sync", issues).unwrap_or(false);
    if sync && (tenant.is_none() || api_token.is_empty()) {
        issues.push(
            s.path_of("sync"),
            "needs dynatrace.tenant and dynatrace.api_token (with problems.write) to tell Dynatrace",
        );
    }
    s.finish(issues);
    DynatraceConfig {
        sync,
        tenant,
        api_token,
        api_version,
        connect_timeout_secs,
        timeout_secs,
        max_attempts,
        max_rate_limit_wait_secs,
        enrich_wait,
    }
}

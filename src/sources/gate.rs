//! Who may post to a source: its configured auth (`sources.<name>.auth`, or for Dynatrace the
//! sample's `webhook.username` and `webhook.password`), checked before the body is read.

use serde_json::Value;

use super::{Headers, Refusal};
use crate::credentials::{token_matches, BasicAuth, Presented};
use crate::keys::{secret, Env};
use crate::keys::{type_name, Issues, Section};
use crate::secret::Secret;

#[derive(Debug, Clone, Default)]
pub enum SourceAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic …`.
    Basic(BasicAuth),
    /// `X-Auth-Token: <token>` (OpenStack's header).
    Token(Secret),
    /// `Authorization: GenieKey <key>` with any one of these keys (Opsgenie's API keys).
    GenieKey(Vec<Secret>),
}

/// A source's auth and what to tell a sender it refuses.
#[derive(Debug, Clone)]
pub struct Gate {
    auth: SourceAuth,
    hint: String,
    /// `rate_limit_per_minute`: the source's requests of the last minute, when limited.
    rate: Option<std::sync::Arc<std::sync::Mutex<crate::rate::Window>>>,
}

impl Gate {
    pub fn new(auth: SourceAuth, hint: impl Into<String>) -> Gate {
        Gate {
            auth,
            hint: hint.into(),
            rate: None,
        }
    }

    /// The same gate (its rate limit kept) asking for other credentials: a source whose keys are
    /// its own (Opsgenie's `api_keys`).
    pub fn with_auth(mut self, auth: SourceAuth, hint: impl Into<String>) -> Gate {
        self.auth = auth;
        self.hint = hint.into();
        self
    }

    /// At most `per_minute` requests a minute; more are refused with 429 until there is room.
    pub fn limited(mut self, per_minute: Option<u32>) -> Gate {
        self.rate = per_minute
            .map(|n| std::sync::Arc::new(std::sync::Mutex::new(crate::rate::Window::new(n))));
        self
    }

    /// Counts a request against the source's rate limit; beyond it, how long until there is
    /// room. Checked after the credentials, so a stranger cannot use up a sender's minute.
    pub fn admit(&self) -> Result<(), Refusal> {
        let Some(window) = &self.rate else {
            return Ok(());
        };
        let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
        let per_minute = w.per_minute();
        w.take(std::time::Instant::now())
            .map_err(|wait| Refusal::OverRate {
                detail: format!(
                    "more than {per_minute} requests in a minute (rate_limit_per_minute); retry in {} s",
                    wait.as_secs().max(1)
                ),
                retry_after_secs: wait.as_secs().max(1),
            })
    }

    /// Whether anything is asked of a sender (an `auth` other than none).
    pub fn asks(&self) -> bool {
        !matches!(self.auth, SourceAuth::None)
    }

    pub fn check(&self, headers: &Headers) -> Result<(), Refusal> {
        let authorization = headers.get("Authorization");
        let ok = match &self.auth {
            SourceAuth::None => true,
            SourceAuth::Bearer(token) => {
                let presented = authorization.and_then(|h| {
                    let (scheme, value) = h.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(value)
                });
                token_matches(presented, token)
            }
            SourceAuth::Basic(basic) => basic.allows(&Presented::parse(authorization)),
            SourceAuth::Token(token) => token_matches(headers.get("X-Auth-Token"), token),
            SourceAuth::GenieKey(keys) => {
                let presented = authorization.and_then(|h| {
                    let (scheme, value) = h.trim().split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("geniekey")
                        .then_some(value.trim())
                });
                keys.iter().any(|k| token_matches(presented, k))
            }
        };
        if ok {
            return Ok(());
        }
        let scheme = match self.auth {
            SourceAuth::Basic(_) => "Basic",
            SourceAuth::Token(_) => "X-Auth-Token",
            SourceAuth::GenieKey(_) => "GenieKey",
            _ => "Bearer",
        };
        Err(Refusal::Unauthorized {
            scheme,
            detail: self.hint.clone(),
        })
    }
}

/// Reads `auth` of a `sources.<name>` entry: exactly one of `bearer`, `basic`, `token`, `none`.
pub(crate) fn read(s: &mut Section, env: &Env, issues: &mut Issues) -> Gate {
    let path = s.path_of("auth");
    let hint = format!("send the credentials configured in {path}");
    let Some(value) = s.value("auth") else {
        return Gate::new(SourceAuth::None, hint);
    };
    let Value::Object(map) = value else {
        issues.push(
            path,
            format!(
                "expected an object such as {{\"bearer\": \"…\"}}, found {}",
                type_name(value)
            ),
        );
        return Gate::new(SourceAuth::None, hint);
    };
    if map.len() != 1 {
        issues.push(
            path,
            "give exactly one of bearer, basic, token (or none for no auth)",
        );
        return Gate::new(SourceAuth::None, hint);
    }
    let mut a = Section::at(path.clone(), value, issues);
    let auth = if map.contains_key("none") {
        let _ = a.value("none");
        SourceAuth::None
    } else if map.contains_key("bearer") || map.contains_key("bearer_env") {
        SourceAuth::Bearer(required_secret(&mut a, "bearer", "bearer_env", env, issues))
    } else if map.contains_key("token") || map.contains_key("token_env") {
        SourceAuth::Token(required_secret(&mut a, "token", "token_env", env, issues))
    } else if map.contains_key("basic") {
        let mut b = a.section("basic", issues);
        let username = b.string("username", issues).unwrap_or_default();
        if username.is_empty() || username.contains(':') {
            issues.push(b.path_of("username"), "missing, or contains ':'");
        }
        let password = required_secret(&mut b, "password", "password_env", env, issues);
        b.finish(issues);
        SourceAuth::Basic(BasicAuth::new(&username, &password))
    } else {
        SourceAuth::None
    };
    a.finish(issues);
    Gate::new(auth, hint)
}

fn required_secret(
    s: &mut Section,
    key: &'static str,
    env_key: &'static str,
    env: &Env,
    issues: &mut Issues,
) -> Secret {
    let v = secret(s, key, env_key, env, issues);
    if v.is_empty() {
        issues.push(s.path_of(key), "missing: the secret senders must present");
    }
    v
}

//! Who a request is. The [`Caller`] guard reads what a request presents (HTTP Basic, a bearer
//! token, the header of a trusted sign-on proxy); [`App::require`] checks it against the config's
//! people and the store's tokens, and the role against what the route needs.
//!
//! A failed sign-in never says which part was wrong, and a wrong password for a person costs what
//! a password for nobody costs (see `people::password`).

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use rocket::request::{FromRequest, Outcome, Request};

use super::error::ApiError;
use super::App;
use crate::logging::SharedThrottle;
use crate::people::{password, tokens, Actor, Role, Via, STATUS_PAGE};

pub use crate::credentials::{BasicAuth, Presented};

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Presented {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Infallible> {
        Outcome::Success(Presented::parse(req.headers().get_one("Authorization")))
    }
}

/// What a request presents to say who it is.
pub struct Caller {
    authorization: Option<String>,
    /// The sign-on proxy's header, when the config names one and the request carries it.
    proxied: Option<String>,
    remote: Option<IpAddr>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Infallible> {
        let header = req.rocket().state::<App>().and_then(|app| {
            let settings = app.settings.get();
            settings
                .config
                .people
                .proxy
                .as_ref()
                .map(|p| p.header.clone())
        });
        Outcome::Success(Caller {
            authorization: req.headers().get_one("Authorization").map(str::to_string),
            proxied: header.and_then(|h| req.headers().get_one(&h).map(str::to_string)),
            remote: req.remote().map(|a| a.ip()),
        })
    }
}

impl Caller {
    /// Where the request came from, as the audit log records it.
    pub fn from(&self) -> String {
        self.remote
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

/// Passwords checked at once at most; more wait, so a burst of guesses cannot take every core.
pub const PASSWORD_CHECKS: usize = 2;

static UNTRUSTED_PROXY_HEADER: SharedThrottle = SharedThrottle::new(Duration::from_secs(60));

fn unauthorized() -> ApiError {
    ApiError::unauthorized_for(
        "Basic",
        "sign in: HTTP Basic with a person's id and password (or the status_page login), or \
         Authorization: Bearer with an API token",
    )
}

impl App {
    /// Who the caller is, or 401.
    pub async fn sign_in(&self, caller: &Caller, via: Via) -> Result<Actor, ApiError> {
        let settings = self.settings.get();
        let people = &settings.config.people;
        let actor = |name: &str, role: Role, token: Option<String>| Actor {
            name: name.to_string(),
            role,
            token,
            verified: true,
            via,
            from: caller.from(),
        };
        if let (Some(proxy), Some(email)) = (&people.proxy, &caller.proxied) {
            match caller.remote {
                Some(ip) if proxy.trusts(ip) => {
                    return match people.by_email(email) {
                        Some(p) => Ok(actor(&p.id, p.role, None)),
                        None => {
                            tracing::warn!(
                                remote = %ip, header = proxy.header,
                                "the sign-on proxy vouched for an address no person has"
                            );
                            Err(unauthorized())
                        }
                    };
                }
                remote => {
                    if let Some(skipped) = UNTRUSTED_PROXY_HEADER.ready() {
                        tracing::warn!(
                            remote = ?remote, header = proxy.header, skipped,
                            "ignored the sign-on header from an address auth.proxy.trusted does \
                             not name"
                        );
                    }
                }
            }
        }
        let Some(authorization) = caller.authorization.as_deref() else {
            return Err(unauthorized());
        };
        if let Some(token) = bearer(authorization) {
            let (name, role, id) = self.check_token(token).await?;
            return Ok(actor(&name, role, Some(id)));
        }
        let presented = Presented::parse(Some(authorization));
        if settings
            .status_page
            .as_ref()
            .is_some_and(|s| s.allows(&presented))
        {
            return Ok(actor(STATUS_PAGE, Role::Admin, None));
        }
        let Some((user, given)) = presented.pair() else {
            return Err(unauthorized());
        };
        let person = people.people.get(user);
        let hash = person.and_then(|p| p.password_hash.clone());
        if let (Some(p), Some(h)) = (person, &hash) {
            if self.remembered.knows(h, given) {
                return Ok(actor(&p.id, p.role, None));
            }
        }
        let matched = {
            let _turn = self.password_checks.acquire().await;
            let (h, given) = (hash.clone(), given.to_string());
            tokio::task::spawn_blocking(move || password::verify(h.as_deref(), &given))
                .await
                .unwrap_or(false)
        };
        match (person, hash) {
            (Some(p), Some(h)) if matched => {
                self.remembered.remember(&h, given);
                Ok(actor(&p.id, p.role, None))
            }
            _ => Err(unauthorized()),
        }
    }

    /// The person and role a bearer token stands for: never more than the person's role today.
    async fn check_token(&self, token: &str) -> Result<(String, Role, String), ApiError> {
        let Some((id, secret)) = tokens::split(token) else {
            return Err(unauthorized());
        };
        let now = crate::clock::now_ms();
        let row = self.store.token(id).await?;
        let settings = self.settings.get();
        let valid = row.filter(|r| r.live(now) && tokens::matches(secret, &r.digest));
        let person = valid
            .as_ref()
            .and_then(|r| settings.config.people.people.get(&r.person));
        match (valid, person) {
            (Some(row), Some(person)) => {
                let granted = Role::parse(&row.role).unwrap_or(Role::Viewer);
                Ok((person.id.clone(), granted.min(person.role), row.id))
            }
            _ => {
                tracing::info!(
                    token = id,
                    "refused an API token: unknown, revoked, expired or wrong"
                );
                Err(unauthorized())
            }
        }
    }

    /// Who an API token given outside a header stands for (a calendar's `?token=`).
    pub async fn token_actor(&self, token: &str, via: Via) -> Result<Actor, ApiError> {
        let (name, role, id) = self.check_token(token).await?;
        Ok(Actor {
            name,
            role,
            token: Some(id),
            verified: true,
            via,
            from: "unknown".into(),
        })
    }

    /// Who the caller is, if their role allows `needed`: else 401, or 403 naming the role.
    pub async fn require(
        &self,
        caller: &Caller,
        needed: Role,
        via: Via,
    ) -> Result<Actor, ApiError> {
        let actor = self.sign_in(caller, via).await?;
        if !actor.may(needed) {
            return Err(ApiError::needs_role(needed, &actor));
        }
        Ok(actor)
    }

    /// Records a change in the audit log. The change is made already: a failure to record it is
    /// logged, not answered as the change's failure.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: impl Into<String>,
    ) {
        crate::people::audit::record(&self.store, actor, action, target, detail.into()).await;
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

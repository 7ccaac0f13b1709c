//! People: who may do what (roles), how they prove who they are (a password, an API token, the
//! header of a trusted sign-on proxy), who is on call (schedules), and what each did (the audit
//! log). No HTTP and no SQL here: the web layer and the store use these types.

pub mod audit;
pub mod config;
pub mod oncall;
pub mod password;
pub mod schedule;
pub mod tokens;

pub use config::{PeopleConfig, Person, ProxyAuth};

/// What a person may do; each role may do what the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads the pages, the API and the metrics.
    Viewer,
    /// Also silences, replays, acknowledges and overrides schedules.
    Responder,
    /// Also reloads the config and manages API tokens.
    Admin,
}

impl Role {
    pub const NAMES: &'static str = "viewer, responder or admin";

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "responder" => Some(Role::Responder),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Through what a change was made, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Page,
    Api,
    Cli,
    Sms,
    Slack,
    Link,
    /// An Opsgenie client's acknowledgement or note (see `sources::opsgenie`).
    Opsgenie,
    /// A PagerDuty Events API `acknowledge` (see `sources::pagerduty`).
    Pagerduty,
    /// A signal to the process (SIGHUP: reload).
    Signal,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Page => "page",
            Via::Api => "api",
            Via::Cli => "cli",
            Via::Sms => "sms",
            Via::Slack => "slack",
            Via::Link => "link",
            Via::Opsgenie => "opsgenie",
            Via::Pagerduty => "pagerduty",
            Via::Signal => "signal",
        }
    }
}

/// The name the `status_page` credentials (or, without them, the webhook's) act under: an admin,
/// as whoever held that one password could do everything before hub knew people.
pub const STATUS_PAGE: &str = "status_page";

/// Who is asking, once their credentials were checked: a person of the config, the
/// `status_page` login, or (on the command line without `--as`) the system user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A person's id, `status_page`, or the system user's name.
    pub name: String,
    pub role: Role,
    /// The API token's id when one was used.
    pub token: Option<String>,
    /// `false` for the command line's system user: nothing proved who that is.
    pub verified: bool,
    pub via: Via,
    /// The client's address, or `local` for the command line.
    pub from: String,
}

impl Actor {
    /// Whether this actor may do what needs `needed`.
    pub fn may(&self, needed: Role) -> bool {
        self.role >= needed
    }

    /// The person this actor is, when it is one of the config's.
    pub fn person<'a>(&self, people: &'a PeopleConfig) -> Option<&'a Person> {
        people.people.get(&self.name)
    }

    /// The author a silence they make carries. A shared login (`status_page`) or the command
    /// line's unverified user proves no one, so what was typed names the author, as before hub
    /// knew people; a person's own name is theirs, with what they typed kept after it.
    pub fn author(&self, typed: &str) -> String {
        let typed = typed.trim();
        let shared = self.name == STATUS_PAGE || !self.verified;
        match (typed.is_empty() || typed == self.name, shared) {
            (true, _) => self.label(),
            (false, true) => typed.to_string(),
            (false, false) => format!("{} for {typed}", self.label()),
        }
    }

    /// How the audit log and the page name this actor: `ana`, `ana (token 3f2a…)`, `root
    /// (unverified)`.
    pub fn label(&self) -> String {
        match (&self.token, self.verified) {
            (Some(t), _) => format!("{} (token {t})", self.name),
            (None, false) => format!("{} (unverified)", self.name),
            (None, true) => self.name.clone(),
        }
    }
}

/// Local names are letters, digits, `-`, `_` and `.`: ids of people, schedules and tokens are
/// typed on the command line and appear in URLs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Admin > Role::Responder && Role::Responder > Role::Viewer);
        for role in [Role::Viewer, Role::Responder, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse(" Admin "), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_silence_author_is_the_person_or_what_a_shared_login_typed() {
        let person = Actor {
            name: "ana".into(),
            role: Role::Responder,
            token: None,
            verified: true,
            via: Via::Api,
            from: "127.0.0.1".into(),
        };
        assert_eq!(person.author(""), "ana");
        assert_eq!(person.author(" ana "), "ana");
        assert_eq!(person.author("ops"), "ana for ops");
        let shared = Actor {
            name: STATUS_PAGE.into(),
            role: Role::Admin,
            ..person.clone()
        };
        assert_eq!(shared.author("ops"), "ops");
        assert_eq!(shared.author(""), "status_page");
        let cli = Actor {
            name: "root".into(),
            verified: false,
            ..person
        };
        assert_eq!(cli.author("ops"), "ops");
        assert_eq!(cli.author(""), "root (unverified)");
    }

    #[test]
    fn ids_are_plain_names() {
        for good in ["ana", "bo.b", "on-call_2"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            ".hidden",
            "a b",
            "$(touch x)",
            "<script>",
            &"a".repeat(65),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

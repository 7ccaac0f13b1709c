//! Plugin actions: what hub does for a problem once it is stored.
//!
//! Each action turns one job (a problem, a target, a run id) into an outcome or a classified error;
//! the dispatcher decides what to record and when to try again. `explain` shows what a run would do
//! without doing it, for `hub explain`.

pub mod config;
pub mod http;
pub mod problem;
pub mod route;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::keys::{Env, Issues, Section};
use crate::store::RunRow;
pub use crate::store::ThreadRef;
use config::{ActionConfig, Actions};
pub use problem::{Entity, Problem};

/// What a run acts on: an impacted entity, a recipient, or nothing in particular (empty id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// As it may be shown in logs, comments and pages.
    pub label: String,
    pub entity: Option<Entity>,
}

impl Target {
    pub fn whole() -> Target {
        Target {
            id: String::new(),
            label: String::new(),
            entity: None,
        }
    }
}

/// `"to": "person"`: an `sms`, `email` or `slack` action that addresses whoever an escalation
/// step notifies (their phone, e-mail or Slack user).
pub const TO_PERSON: &str = "person";

/// Why an action that addresses a person is not routed on its own.
pub const PERSONAL_ONLY: &str =
    "it addresses the person an escalation step notifies (\"to\": \"person\"): name it in an escalation";

/// A person as templates and personal actions see them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PersonView {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub slack: Option<String>,
}

/// What a run of an escalation step adds to its job: whom it notifies, which step, and how
/// they answer.
#[derive(Debug, Clone, Default)]
pub struct Escalated {
    pub person: PersonView,
    /// The step's number as people count (1 first), and the pass.
    pub step: i64,
    pub pass: i64,
    /// A link that acknowledges (signed, single-problem, for `escalation_link_ttl`).
    pub ack_url: String,
    /// What to text back.
    pub ack_code: String,
}

/// One attempt of one run.
pub struct Job<'a> {
    /// Derived from the idempotency key: the same for every attempt, after a restart too.
    pub run_id: String,
    pub attempt: i64,
    pub problem: &'a Problem,
    pub target: Target,
    /// For a comment: the runs it reports on.
    pub reports: Vec<RunRow>,
    /// What an earlier run of this action created for this problem and target, to continue.
    pub thread: Option<ThreadRef>,
    /// Set for a run of an escalation step.
    pub escalated: Option<Escalated>,
    /// Set for a run of a group's send: the group as that send carries it.
    pub group: Option<crate::group::GroupView>,
    /// The `traceparent` of this attempt's span, when traces are on: the HTTP actions send it.
    pub trace: Option<String>,
}

impl Job<'_> {
    /// Variables for templates: `problem`, `entity`, `run`, and `thread` (`ref` and `url`, empty
    /// before the first run kept one, so a template can test `{% if thread.ref %}`); and for an
    /// escalation's run `person`, `step`, `ack_url` and `ack_code` (empty otherwise).
    pub fn template_data(&self) -> Value {
        let (reference, url) = match &self.thread {
            Some(t) => (t.reference.as_str(), t.url.as_deref().unwrap_or_default()),
            None => ("", ""),
        };
        let mut problem = serde_json::to_value(self.problem).unwrap_or(Value::Null);
        problem["headline"] = json!(self.problem.headline());
        json!({
            "problem": problem,
            "entity": self.target.entity,
            "run": {"id": self.run_id, "attempt": self.attempt},
            "thread": {"ref": reference, "url": url},
            "person": self.escalated.as_ref().map(|e| json!(e.person)).unwrap_or(json!({})),
            "step": self.escalated.as_ref().map_or(0, |e| e.step),
            "ack_url": self.escalated.as_ref().map_or("", |e| e.ack_url.as_str()),
            "ack_code": self.escalated.as_ref().map_or("", |e| e.ack_code.as_str()),
            "group": self.group.as_ref().map_or(json!({}), crate::group::GroupView::json),
        })
    }

    /// The person an escalation's run notifies.
    pub fn person(&self) -> Result<&PersonView, ActionError> {
        self.escalated
            .as_ref()
            .map(|e| &e.person)
            .ok_or_else(|| ActionError::permanent(PERSONAL_ONLY))
    }

    /// A run of `hub test-action`: it must touch nothing a real run keeps (a PagerDuty incident).
    pub fn is_test_action(&self) -> bool {
        self.run_id.starts_with(TEST_RUN_PREFIX)
    }

    /// The kept thread's reference, if there is one.
    pub fn thread_ref(&self) -> Option<&str> {
        self.thread.as_ref().map(|t| t.reference.as_str())
    }
}

/// How an escalation's runs name the person they notify (`person:ana`).
pub const PERSON_TARGET: &str = "person:";

/// How the run ids of `hub test-action` start.
pub const TEST_RUN_PREFIX: &str = "run_test_";

/// A finished attempt: a line for comments and logs, what to keep (exit code, SID, status), and
/// what it created far away for later runs to continue.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: String,
    pub detail: Value,
    /// Kept per problem, action and target, replacing the one kept before; `None` keeps that one.
    pub thread: Option<ThreadRef>,
}

impl Outcome {
    pub fn new(summary: impl Into<String>, detail: Value) -> Outcome {
        Outcome {
            summary: summary.into(),
            detail,
            thread: None,
        }
    }

    pub fn with_thread(mut self, thread: Option<ThreadRef>) -> Outcome {
        self.thread = thread;
        self
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// Worth trying again (see `crate::retry`: a timeout, a connection error, 408, 425, 429, 5xx,
    /// exit 75).
    #[error("{message}")]
    Transient {
        message: String,
        detail: Value,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (other 4xx, other exit codes, a template that cannot render).
    #[error("{message}")]
    Permanent { message: String, detail: Value },
    /// Not attempted, on purpose (a rate limit); recorded, never silently dropped.
    #[error("{0}")]
    HeldBack(String),
}

impl ActionError {
    pub fn permanent(message: impl Into<String>) -> Self {
        ActionError::Permanent {
            message: message.into(),
            detail: Value::Null,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        ActionError::Transient {
            message: message.into(),
            detail: Value::Null,
            retry_after: None,
        }
    }
}

pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Outcome, ActionError>> + Send + 'a>>;

/// One configured action at run time.
pub trait Action: Send + Sync {
    /// What one notification fans out to.
    fn targets(&self, problem: &Problem) -> Vec<Target> {
        let _ = problem;
        vec![Target::whole()]
    }
    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a>;
    /// What `run` would do, without doing it.
    fn explain(&self, job: &Job) -> Value;
    /// The actions whose runs of the same state change this one waits for, and is given (as
    /// `Job::reports`) once they have all finished. It is routed only when one of them is.
    fn depends_on(&self) -> &[String] {
        &[]
    }
    /// Whether its runs continue a thread (a message, a mail, an incident): a later state's run
    /// then waits while an earlier one of the same problem and target is unfinished, so it finds
    /// the thread the first one started instead of starting a second.
    fn keeps_thread(&self) -> bool {
        false
    }
    /// Why this action cannot act on this problem at all, if it cannot (routing skips it, and
    /// `hub explain` says why).
    fn refuses(&self, problem: &Problem) -> Option<String> {
        let _ = problem;
        None
    }
}

/// Lists the action types: each line is the enum variant and the module with its config type,
/// whose [`ActionType::TYPE`] is the `type` users write. Reading, building and `hub check-config`'s
/// list of known types follow from it.
macro_rules! actions {
    ($($variant:ident = $module:ident :: $config:ident;)*) => {
        $(pub mod $module;)*

        /// A configured action's own keys, by type.
        #[derive(Debug, Clone)]
        pub enum ActionKind {
            $($variant($module::$config)),*
        }

        impl ActionKind {
            /// Every `type` an action may have.
            pub const TYPES: &'static [&'static str] = &[$(<$module::$config as ActionType>::TYPE),*];

            pub fn type_name(&self) -> &'static str {
                match self {
                    $(ActionKind::$variant(_) => <$module::$config as ActionType>::TYPE),*
                }
            }

            /// For a `type`: the default of `rate_limit_per_minute`, and whether the type
            /// applies that key itself (see [`ActionType::OWN_RATE_LIMIT`]).
            pub fn rate_limit_of(type_name: &str) -> (Option<u32>, bool) {
                $(
                    if type_name == <$module::$config as ActionType>::TYPE {
                        return (
                            <$module::$config as ActionType>::RATE_LIMIT_PER_MINUTE,
                            <$module::$config as ActionType>::OWN_RATE_LIMIT,
                        );
                    }
                )*
                (None, false)
            }

            /// The actions this one waits for (see [`Action::depends_on`]).
            pub fn depends_on(&self) -> &[String] {
                match self {
                    $(ActionKind::$variant(c) => c.depends_on()),*
                }
            }

            /// Reads the keys of an action of this `type`; `None` for a type no action has.
            pub(crate) fn read(
                type_name: &str,
                s: &mut Section,
                ctx: &ReadContext,
                issues: &mut Issues,
            ) -> Option<Option<ActionKind>> {
                $(
                    if type_name == <$module::$config as ActionType>::TYPE {
                        return Some(<$module::$config>::read(s, ctx, issues).map(ActionKind::$variant));
                    }
                )*
                None
            }

            pub fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
                match self {
                    $(ActionKind::$variant(c) => c.build(ctx)),*
                }
            }
        }
    };
}

actions! {
    Script = script::ScriptConfig;
    Sms = sms::SmsConfig;
    Comment = comment::CommentConfig;
    Webhook = webhook::WebhookConfig;
    Pagerduty = pagerduty::PagerdutyConfig;
    Slack = slack::SlackConfig;
    Teams = teams::TeamsConfig;
    Email = email::EmailConfig;
    DynatraceSync = dynatrace_sync::DynatraceSyncConfig;
    AlertmanagerSilence = alertmanager_silence::AlertmanagerSilenceConfig;
}

impl ActionKind {
    /// The actions hub makes itself to tell a source what people did (`dynatrace.sync`,
    /// `alertmanager.silence_on_ack`): no route chooses them.
    /// An action that can address someone other than an escalation's person: named in a step,
    /// it would send to `person:ID` as if that were an address.
    pub fn addresses_others(&self) -> bool {
        match self {
            ActionKind::Sms(c) => c.to != [TO_PERSON],
            ActionKind::Email(c) => !c.to_person,
            ActionKind::Slack(c) => !c.to_person,
            _ => false,
        }
    }

    pub fn tells_source(&self) -> bool {
        matches!(
            self,
            ActionKind::DynatraceSync(_) | ActionKind::AlertmanagerSilence(_)
        )
    }
}

/// An action type's config: read from its `actions.<name>` entry (every problem reported to
/// `issues`), and built into the runtime action.
pub trait ActionType: Sized {
    /// The `type` users write.
    const TYPE: &'static str;
    /// `rate_limit_per_minute` when the action does not set it: what keeps within the service's
    /// published limits. Runs over it wait (the dispatcher holds them back, and says so on the
    /// run) rather than being dropped.
    const RATE_LIMIT_PER_MINUTE: Option<u32> = None;
    /// Set for a type that reads and applies `rate_limit_per_minute` itself.
    const OWN_RATE_LIMIT: bool = false;
    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self>;
    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError>;
    /// The actions whose runs this one waits for (see [`Action::depends_on`]).
    fn depends_on(&self) -> &[String] {
        &[]
    }
}

/// What reading an action's keys may need besides them.
pub struct ReadContext<'a> {
    pub env: &'a Env<'a>,
    /// The folder relative paths are taken from (config.json's).
    pub base: &'a std::path::Path,
    /// `webhook.username`, the default user of a comment.
    pub webhook_user: &'a str,
    /// Whether the Dynatrace API can be called (tenant and token set).
    pub tenant_set: bool,
}

/// What building an action may need: one HTTP client for all, and the Dynatrace client.
pub struct BuildContext<'a> {
    pub name: &'a str,
    pub http: &'a reqwest::Client,
    pub dynatrace: Option<&'a crate::dynatrace::Client>,
}

/// Why the configured actions could not be built (the config was validated, so this is rare).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Secret(#[from] webhook::SecretError),
    #[error("cannot make the HTTP client for actions: {0}")]
    Http(#[source] reqwest::Error),
    #[error("action {0} needs dynatrace.tenant")]
    NeedsTenant(String),
}

/// Every configured action, built once from the config.
pub struct Registry {
    pub actions: Vec<(ActionConfig, Arc<dyn Action>)>,
}

impl Registry {
    /// `client` is the Dynatrace client comment actions post with (the dispatcher's own).
    pub fn build(
        config: &Actions,
        client: Option<&crate::dynatrace::Client>,
    ) -> Result<Registry, BuildError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let mut actions = Vec::new();
        for a in &config.actions {
            let built = a.kind.build(&BuildContext {
                name: &a.name,
                http: &http,
                dynatrace: client,
            })?;
            actions.push((a.clone(), built));
        }
        Ok(Registry { actions })
    }

    pub fn get(&self, name: &str) -> Option<&(ActionConfig, Arc<dyn Action>)> {
        self.actions.iter().find(|(c, _)| c.name == name)
    }
}

/// The key that makes a run happen once: the same problem, state change, action and target, in
/// the same opening of the problem. `episode` (see `crate::store::Store::episode`) is `None` for a
/// problem's first opening, whose keys are as they always were.
pub fn idem_key(problem: &Problem, action: &str, target: &Target, episode: Option<i64>) -> String {
    let key = format!(
        "{}/{}/{}/{}/{}",
        problem.source, problem.problem_id, problem.state, action, target.id
    );
    match episode {
        Some(after) => format!("{key}/after-{after}"),
        None => key,
    }
}

/// The opening a run's key names (see [`idem_key`]): `None` for a problem's first.
pub fn episode_of(idem_key: &str) -> Option<i64> {
    idem_key.rsplit_once("/after-")?.1.parse().ok()
}

/// A short id for the far side (`HUB_RUN_ID`, `webhook-id`), safe in a header and an env value.
pub fn run_id(idem_key: &str) -> String {
    format!(
        "run_{}",
        crate::secret::short_sha256(idem_key.as_bytes(), 16)
    )
}

/// `+4915112341111` → `+49*****1111`: enough to recognise a number, not to dial it.
pub fn mask_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}*****{tail}")
}

/// A URL as it may be shown: every query value and any password replaced with `***`. Receivers
/// often take their key in the query (`?key=…`, `?token=…`), and a dry run's output gets pasted
/// into tickets.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(not a valid URL)".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<String> = parsed
            .query_pairs()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        parsed.set_query(Some(&pairs.join("&")));
    }
    parsed.to_string()
}

/// A URL that is itself a credential (an incoming webhook carries its secret in the path), as it
/// may be shown: its scheme and host only.
pub fn redact_secret_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/***", u.scheme(), u.host_str().unwrap_or_default()),
        Err(_) => "(not a valid URL)".to_string(),
    }
}

/// At most `max` bytes of text, cut on a character boundary, with a note when cut.
pub fn bounded(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_keep_no_key() {
        assert_eq!(
            redact_url("https://user:pw@chat.example/hooks/x?key=abc123&token=t"),
            "https://user:***@chat.example/hooks/x?key=***&token=***"
        );
        assert_eq!(
            redact_url("https://chat.example/hooks"),
            "https://chat.example/hooks"
        );
    }

    #[test]
    fn secret_urls_show_their_host_only() {
        assert_eq!(
            redact_secret_url("https://hooks.slack.com/services/T0/B0/SECRETxyz"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(redact_secret_url("not a url"), "(not a valid URL)");
    }

    #[test]
    fn a_key_names_its_opening() {
        assert_eq!(episode_of("alertmanager/fp/OPEN/chat//after-42"), Some(42));
        assert_eq!(episode_of("dynatrace/P-1/OPEN/chat/HOST-1"), None);
    }

    #[test]
    fn numbers_are_masked() {
        assert_eq!(mask_number("+4915112341111"), "+49*****1111");
        assert_eq!(mask_number("+1234"), "*****");
    }

    #[test]
    fn run_ids_are_stable_and_header_safe() {
        let a = run_id("dynatrace/P-1/OPEN/x/HOST-1");
        assert_eq!(a, run_id("dynatrace/P-1/OPEN/x/HOST-1"));
        assert_ne!(a, run_id("dynatrace/P-1/RESOLVED/x/HOST-1"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn output_is_bounded_on_a_char_boundary() {
        assert_eq!(bounded(b"abc", 10), "abc");
        let cut = bounded("ééé".as_bytes(), 3);
        assert!(cut.starts_with('é') && cut.contains("more bytes"), "{cut}");
    }
}

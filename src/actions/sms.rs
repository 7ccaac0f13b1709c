//! `sms`: one text per recipient through Twilio's Messages API, with a rate limit per action.
//!
//! The API is called directly (a form POST with basic auth) against a configurable base URL, so it
//! can be tested against a local server. Numbers are masked wherever they are shown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{mask_number, Action, ActionError, ActionType, BuildContext, BuildError, Job};
use super::{PERSONAL_ONLY, TO_PERSON};
use super::{Outcome, Problem, ReadContext, RunFuture, Target};
use crate::keys::{check_template, check_url, secret, Env, Issues, Section};
use crate::domain::Source;
use crate::secret::Secret;
use crate::template::Template;

/// `type: "sms"`: Twilio credentials, `from` or `messaging_service_sid`, `to`, and the
/// [`SmsOptions`].
#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub to: Vec<String>,
    pub options: SmsOptions,
}

pub const TWILIO_API_URL: &str = "https://api.twilio.com";

impl ActionType for SmsConfig {
    const TYPE: &'static str = "sms";
    /// An SMS over its budget is held back, not delayed (see [`SmsOptions`]).
    const OWN_RATE_LIMIT: bool = true;

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        Some(read_sms(s, ctx.env, issues))
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Sms::new(self, ctx.http.clone())?))
    }
}

fn read_sms(s: &mut Section, env: &Env, issues: &mut Issues) -> SmsConfig {
    let account_sid = s.string("account_sid", issues).unwrap_or_default();
    let auth_token = secret(s, "auth_token", "auth_token_env", env, issues);
    let from = s.string("from", issues).filter(|f| !f.is_empty());
    let messaging_service_sid = s
        .string("messaging_service_sid", issues)
        .filter(|f| !f.is_empty());
    let to = s.string_list("to", issues).unwrap_or_default();
    if to.len() > 1 && to.iter().any(|t| t == TO_PERSON) {
        issues.push(
            s.path_of("to"),
            "\"person\" stands alone: the person an escalation step notifies, or a list of numbers",
        );
    }
    let options = read_options(s, issues);
    for (key, missing) in [
        ("account_sid", account_sid.is_empty()),
        ("auth_token", auth_token.is_empty()),
        ("to", to.is_empty()),
    ] {
        if missing {
            issues.push(s.path_of(key), "missing: required for an sms action");
        }
    }
    if from.is_none() == messaging_service_sid.is_none() {
        issues.push(
            s.path_of("from"),
            "give exactly one of from (a Twilio number) and messaging_service_sid",
        );
    }
    SmsConfig {
        account_sid,
        auth_token,
        from,
        messaging_service_sid,
        to,
        options,
    }
}

/// An SMS's keys besides its credentials and numbers, shared by the `sms` action and the sample's
/// `sms_notification` section.
#[derive(Debug, Clone)]
pub struct SmsOptions {
    pub api_url: String,
    pub template: Option<String>,
    pub rate_limit_per_minute: u32,
    pub timeout_secs: u64,
}

impl Default for SmsOptions {
    fn default() -> Self {
        SmsOptions {
            api_url: TWILIO_API_URL.to_string(),
            template: None,
            rate_limit_per_minute: 10,
            timeout_secs: 15,
        }
    }
}

pub(crate) fn read_options(s: &mut Section, issues: &mut Issues) -> SmsOptions {
    let defaults = SmsOptions::default();
    let api_url = s.string("api_url", issues).unwrap_or(defaults.api_url);
    check_url(&s.path_of("api_url"), &api_url, issues);
    let template = s.string("template", issues);
    if let Some(t) = &template {
        check_template(&s.path_of("template"), t, issues);
    }
    let rate_limit_per_minute = s
        .integer("rate_limit_per_minute", 1, 10_000, issues)
        .map_or(defaults.rate_limit_per_minute, |n| n as u32);
    let timeout_secs = s
        .integer("timeout_secs", 1, 600, issues)
        .unwrap_or(defaults.timeout_secs);
    SmsOptions {
        api_url,
        template,
        rate_limit_per_minute,
        timeout_secs,
    }
}

pub struct Sms {
    account_sid: String,
    auth_token: Secret,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    to: Vec<String>,
    /// `"to": "person"`: the number of whoever an escalation step notifies.
    to_person: bool,
    api_url: String,
    template: Option<Template>,
    timeout: Duration,
    sent: Mutex<crate::rate::Window>,
    http: reqwest::Client,
}

impl Sms {
    pub fn new(c: &SmsConfig, http: reqwest::Client) -> Result<Sms, BuildError> {
        Ok(Sms {
            account_sid: c.account_sid.clone(),
            auth_token: c.auth_token.clone(),
            from: c.from.clone(),
            messaging_service_sid: c.messaging_service_sid.clone(),
            to: c.to.clone(),
            to_person: c.to == [TO_PERSON],
            api_url: c.options.api_url.trim_end_matches('/').to_string(),
            template: c
                .options
                .template
                .as_deref()
                .map(Template::new)
                .transpose()?,
            timeout: Duration::from_secs(c.options.timeout_secs),
            sent: Mutex::new(crate::rate::Window::new(c.options.rate_limit_per_minute)),
            http,
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api_url, self.account_sid
        )
    }

    fn body(&self, job: &Job) -> Result<String, ActionError> {
        match &self.template {
            Some(t) => t
                .render(&job.template_data())
                .map_err(|e| ActionError::permanent(format!("cannot render the text: {e}"))),
            None => Ok(default_text(job.problem)),
        }
    }

    fn form(&self, to: &str, body: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", to.to_string())];
        match (&self.messaging_service_sid, &self.from) {
            (Some(sid), _) => form.push(("MessagingServiceSid", sid.clone())),
            (None, Some(from)) => form.push(("From", from.clone())),
            (None, None) => {}
        }
        form.push(("Body", body.to_string()));
        form
    }

    /// Takes a slot in this minute's budget; `false` when the budget is spent.
    fn take_slot(&self) -> bool {
        self.window().take(Instant::now()).is_ok()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, crate::rate::Window> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number a run texts: its target's, or the notified person's.
    fn number(&self, job: &Job) -> Result<String, ActionError> {
        if !self.to_person {
            return Ok(job.target.id.clone());
        }
        let person = job.person()?;
        person.phone.clone().ok_or_else(|| {
            ActionError::permanent(format!("{} has no phone in \"people\"", person.id))
        })
    }

    async fn send(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let to = self.number(job)?;
        let masked = mask_number(&to);
        let body = self.body(job)?;
        if !self.take_slot() {
            return Err(ActionError::HeldBack(format!(
                "held back: this action sends at most {} SMS a minute",
                self.window().per_minute()
            )));
        }
        let request = self
            .http
            .post(self.url())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&self.form(&to, &body))
            .timeout(self.timeout);
        let reply = super::http::send(request, "Twilio").await?;
        let answer = reply.json();
        if reply.is_success() {
            let sid = answer
                .get("sid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Ok(Outcome::new(
                format!("SMS to {masked} sent ({sid})"),
                json!({"to": masked, "sid": sid, "status": answer.get("status")}),
            ));
        }
        let code = answer.get("code").cloned().unwrap_or(Value::Null);
        let message = answer
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(reply.text.trim());
        let error = format!(
            "Twilio answered {}{}: {}",
            reply.status,
            if code.is_null() {
                String::new()
            } else {
                format!(" (error {code})")
            },
            mask_all(message, &to)
        );
        let detail = json!({"to": masked, "http_status": reply.status, "code": code});
        Err(reply.error(error, detail))
    }
}

impl Action for Sms {
    fn refuses(&self, _problem: &Problem) -> Option<String> {
        self.to_person.then(|| PERSONAL_ONLY.to_string())
    }

    fn targets(&self, _problem: &Problem) -> Vec<Target> {
        if self.to_person {
            return Vec::new();
        }
        self.to
            .iter()
            .map(|n| Target {
                id: n.clone(),
                label: mask_number(n),
                entity: None,
            })
            .collect()
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.send(job))
    }

    fn explain(&self, job: &Job) -> Value {
        let body = self.body(job).unwrap_or_else(|e| format!("(error: {e})"));
        // Both numbers as they may be shown: the recipient is the target's masked label.
        let to = match self.number(job) {
            Ok(n) => mask_number(&n),
            Err(_) => job.target.label.clone(),
        };
        let form: Vec<(String, String)> = self
            .form(&to, &body)
            .into_iter()
            .map(|(k, v)| match k {
                "From" => (k.to_string(), mask_number(&v)),
                _ => (k.to_string(), v),
            })
            .collect();
        json!({
            "url": self.url(),
            "auth": format!("{}:***", self.account_sid),
            "form": form,
            "rate_limit_per_minute": self.window().per_minute(),
        })
    }
}

/// The sample's text: `Dynatrace notification - <impact> problem (<id>) <status>. Open in Dynatrace: <url>`.
pub fn default_text(p: &Problem) -> String {
    let url = p.url.clone().unwrap_or_default();
    if p.source == Source::Dynatrace {
        format!(
            "Dynatrace notification - {} problem ({}) {}. Open in Dynatrace: {}",
            p.impact.to_lowercase(),
            p.display_id(),
            p.state.to_lowercase(),
            url
        )
        .trim_end_matches(": ")
        .to_string()
    } else {
        format!(
            "{} notification - {} problem ({}) {}. {}",
            p.source,
            p.severity.to_lowercase(),
            p.display_id(),
            p.state.to_lowercase(),
            p.title
        )
    }
}

/// Twilio's messages quote the number; it must not reach a comment or a log unmasked.
fn mask_all(text: &str, number: &str) -> String {
    if number.is_empty() {
        text.to_string()
    } else {
        text.replace(number, &mask_number(number))
    }
}


//! `email`: a mail per state change of a problem, sent through an SMTP relay, one thread per
//! problem.
//!
//! The Message-ID is made from the run id, so a retry after a lost answer sends the same message
//! and the receiving side can tell it is a repeat. The first mail's id is kept as the problem's
//! thread; the mails for its later states answer it (`In-Reply-To`, `References`), so mail
//! clients show one conversation per problem.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls_pki_types::ServerName;
use serde_json::{json, Value};

use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{ReadContext, RunFuture, ThreadRef};
use crate::keys::{check_template, secret, Env, Issues, Section};
use crate::secret::Secret;
use crate::template::Template;

/// The same for every state of a problem: mail clients that thread by subject (Gmail, Outlook)
/// would split the conversation if the state were in it. The body's first line says the state.
pub const DEFAULT_SUBJECT: &str = "{{ problem.headline }} ({{ problem.problem_id }})";

pub const DEFAULT_TEXT: &str = "\
{{ problem.headline }} is {{ problem.state }}.

Problem:  {{ problem.problem_id }} ({{ problem.source }})
State:    {{ problem.state }}
{%- if problem.severity %}
Severity: {{ problem.severity }}
{%- endif %}
{%- if problem.impact %}
Impact:   {{ problem.impact }}
{%- endif %}
{%- if problem.entities %}

Impacted entities:
{%- for e in problem.entities %}
  - {{ e.name }}{% if e.id and e.id != e.name %} ({{ e.id }}){% endif %}
{%- endfor %}
{%- endif %}
{%- if problem.tags %}

Tags: {{ problem.tags | join(sep=\", \") }}
{%- endif %}
{%- if problem.url %}

Open: {{ problem.url }}
{%- endif %}
";

const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// `type: "email"`: the relay (`smtp`), `from`, `to`, `cc`, and the `subject`, `template` and
/// `html_template` templates.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp: SmtpConfig,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// `"to": "person"`: whoever an escalation step notifies (see [`super::TO_PERSON`]).
    pub to_person: bool,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub template: String,
    pub html_template: Option<String>,
}

/// The `smtp` object.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Secret,
    pub timeout_secs: u64,
}

/// How the connection is protected. The TLS settings are made when the config is read, which
/// also checks that `host` is a name a certificate can be checked against.
#[derive(Clone)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, refusing to go on without it.
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS).
    Tls(TlsParameters),
    /// No encryption: for a relay on this machine or a trusted network only.
    None,
}

impl SmtpTls {
    pub fn name(&self) -> &'static str {
        match self {
            SmtpTls::StartTls(_) => "starttls",
            SmtpTls::Tls(_) => "tls",
            SmtpTls::None => "none",
        }
    }
}

impl std::fmt::Debug for SmtpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ActionType for EmailConfig {
    const TYPE: &'static str = "email";

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        read_email(s, ctx.env, issues)
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Email::new(self)?))
    }
}

fn read_email(s: &mut Section, env: &Env, issues: &mut Issues) -> Option<EmailConfig> {
    let smtp = if s.value("smtp").is_some() {
        read_smtp(s.section("smtp", issues), env, issues)
    } else {
        issues.push(
            s.path_of("smtp"),
            "missing: the SMTP relay, an object with at least host",
        );
        None
    };
    let from = match s.string("from", issues) {
        Some(f) => mailbox(&s.path_of("from"), &f, issues),
        None => {
            if s.value("from").is_none() {
                issues.push(
                    s.path_of("from"),
                    "missing: the sender, such as \"hub <hub@example.com>\"",
                );
            }
            None
        }
    };
    let to_given = s.value("to").is_some();
    let to_person = s.value("to").and_then(Value::as_str) == Some(super::TO_PERSON);
    let to = if to_person {
        Some(Vec::new())
    } else {
        mailboxes(s, "to", issues)
    };
    if !to_person && (!to_given || to.as_ref().is_some_and(Vec::is_empty)) {
        issues.push(
            s.path_of("to"),
            "missing: at least one recipient, such as \"ops@example.com\"",
        );
    }
    let cc = if s.value("cc").is_some() {
        mailboxes(s, "cc", issues)
    } else {
        Some(Vec::new())
    };
    let mut template = |key: &'static str, issues: &mut Issues| {
        let source = s.string(key, issues);
        if let Some(t) = &source {
            check_template(&s.path_of(key), t, issues);
        }
        source
    };
    let subject = template("subject", issues).unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
    let text = template("template", issues).unwrap_or_else(|| DEFAULT_TEXT.to_string());
    let html_template = template("html_template", issues);
    let to = to.filter(|t| !t.is_empty() || to_person);
    Some(EmailConfig {
        smtp: smtp?,
        from: from?,
        to: to?,
        to_person,
        cc: cc?,
        subject,
        template: text,
        html_template,
    })
}

fn read_smtp(mut s: Section, env: &Env, issues: &mut Issues) -> Option<SmtpConfig> {
    let host_path = s.path_of("host");
    let host = s
        .string("host", issues)
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    if host.is_none() && s.value("host").is_none_or(Value::is_string) {
        issues.push(
            host_path.clone(),
            "missing: the SMTP relay's host name, such as \"smtp.example.com\"",
        );
    }
    let mode = match s.string("tls", issues).as_deref() {
        None | Some("starttls") => Some("starttls"),
        Some("tls") => Some("tls"),
        Some("none") => Some("none"),
        Some(other) => {
            issues.push(
                s.path_of("tls"),
                format!("expected \"starttls\", \"tls\" or \"none\", found {other:?}"),
            );
            None
        }
    };
    let port = s.integer("port", 1, u64::from(u16::MAX), issues);
    let username = s.string("username", issues).filter(|u| !u.is_empty());
    let password_given = s.value("password").is_some() || s.value("password_env").is_some();
    let password = secret(&mut s, "password", "password_env", env, issues);
    let timeout_secs = s
        .integer("timeout_secs", 1, 600, issues)
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    match (&username, password_given) {
        (Some(_), false) => issues.push(
            s.path_of("password"),
            "missing: username is set, so give password or password_env",
        ),
        (None, true) => issues.push(
            s.path_of("username"),
            "missing: a password is set, so give the username it belongs to",
        ),
        _ => {}
    }
    if mode == Some("none") && password_given && host.as_deref().is_some_and(|h| !is_loopback(h)) {
        issues.push(
            s.path_of("tls"),
            "\"none\" would send the password in clear text across the network: use \
             \"starttls\" or \"tls\", or \"none\" only with a relay on this machine",
        );
    }
    s.finish(issues);
    let (host, mode) = (host?, mode?);
    // The name is checked here, not at the first alert: the same check as a certificate's.
    if ServerName::try_from(host.as_str()).is_err() {
        issues.push(
            host_path,
            format!("{host:?} is neither a host name nor an IP address"),
        );
        return None;
    }
    let tls = match mode {
        "none" => SmtpTls::None,
        _ => match TlsParameters::new(host.clone()) {
            Ok(p) if mode == "tls" => SmtpTls::Tls(p),
            Ok(p) => SmtpTls::StartTls(p),
            Err(e) => {
                issues.push(host_path, format!("cannot set up TLS for {host:?}: {e}"));
                return None;
            }
        },
    };
    let default_port = match tls {
        SmtpTls::StartTls(_) => 587,
        SmtpTls::Tls(_) => 465,
        SmtpTls::None => 25,
    };
    Some(SmtpConfig {
        host,
        // Within 1..=65535, checked above.
        port: port.map_or(default_port, |p| p as u16),
        tls,
        username,
        password,
        timeout_secs,
    })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn mailbox(path: &str, text: &str, issues: &mut Issues) -> Option<Mailbox> {
    match Mailbox::from_str(text.trim()) {
        Ok(m) => Some(m),
        Err(e) => {
            issues.push(
                path,
                format!(
                    "{text:?} is not a mail address ({e}): expected \"name@example.com\" or \
                     \"Name <name@example.com>\", one per list item"
                ),
            );
            None
        }
    }
}

/// The addresses at `key` (one or a list); `None` when one of them is not an address.
fn mailboxes(s: &mut Section, key: &'static str, issues: &mut Issues) -> Option<Vec<Mailbox>> {
    let path = s.path_of(key);
    let list = s.string_list(key, issues)?;
    let parsed: Vec<Option<Mailbox>> = list
        .iter()
        .enumerate()
        .map(|(i, text)| mailbox(&format!("{path}[{i}]"), text, issues))
        .collect();
    parsed.into_iter().collect()
}

pub struct Email {
    from: Mailbox,
    to: Vec<Mailbox>,
    to_person: bool,
    cc: Vec<Mailbox>,
    subject: Template,
    text: Template,
    html: Option<Template>,
    smtp: SmtpConfig,
    timeout: Duration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// What one run sends, before it becomes a MIME message.
struct Draft {
    /// The configured recipients, or the notified person.
    to: Vec<Mailbox>,
    message_id: String,
    /// The first mail of the problem, which this one answers.
    answers: Option<ThreadRef>,
    subject: String,
    text: String,
    html: Option<String>,
}

impl Email {
    pub fn new(c: &EmailConfig) -> Result<Email, BuildError> {
        let timeout = Duration::from_secs(c.smtp.timeout_secs);
        let tls = match &c.smtp.tls {
            SmtpTls::StartTls(p) => Tls::Required(p.clone()),
            SmtpTls::Tls(p) => Tls::Wrapper(p.clone()),
            SmtpTls::None => Tls::None,
        };
        // "Dangerous" only because the builder starts without TLS; it is set just below.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp.host)
            .port(c.smtp.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &c.smtp.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                c.smtp.password.expose().to_string(),
            ));
        }
        Ok(Email {
            from: c.from.clone(),
            to: c.to.clone(),
            to_person: c.to_person,
            cc: c.cc.clone(),
            subject: Template::new(&c.subject)?,
            text: Template::new(&c.template)?,
            html: c.html_template.as_deref().map(Template::html).transpose()?,
            smtp: c.smtp.clone(),
            timeout,
            transport: builder.build(),
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.smtp.host, self.smtp.port)
    }

    fn draft(&self, job: &Job) -> Result<Draft, ActionError> {
        let message_id = message_id(&job.run_id, &self.from);
        // A kept reference that is not a Message-ID (the action was another type once) or is this
        // very mail (a replay of the first one) starts the thread afresh.
        let answers = job
            .thread
            .clone()
            .filter(|t| is_message_id(&t.reference) && t.reference != message_id);
        let data = job.template_data();
        let render = |t: &Template, what: &str| {
            t.render(&data)
                .map_err(|e| ActionError::permanent(format!("cannot render the {what}: {e}")))
        };
        let to = if self.to_person {
            let person = job.person()?;
            let Some(address) = &person.email else {
                return Err(ActionError::permanent(format!(
                    "{} has no email in \"people\"",
                    person.id
                )));
            };
            let address = address.parse().map_err(|e| {
                ActionError::permanent(format!("{}'s email cannot be used: {e}", person.id))
            })?;
            vec![Mailbox::new(Some(person.name.clone()), address)]
        } else {
            self.to.clone()
        };
        Ok(Draft {
            to,
            subject: one_line(&render(&self.subject, "subject")?),
            text: render(&self.text, "text body")?,
            html: match &self.html {
                Some(t) => Some(render(t, "HTML body")?),
                None => None,
            },
            message_id,
            answers,
        })
    }

    fn message(&self, d: &Draft) -> Result<Message, lettre::error::Error> {
        let mut b = Message::builder().from(self.from.clone());
        for m in &d.to {
            b = b.to(m.clone());
        }
        for m in &self.cc {
            b = b.cc(m.clone());
        }
        b = b
            .subject(d.subject.clone())
            .message_id(Some(d.message_id.clone()))
            // RFC 3834: tells autoresponders (out of office) not to answer an alert.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ));
        if let Some(first) = &d.answers {
            b = b
                .in_reply_to(first.reference.clone())
                .references(first.reference.clone());
        }
        match &d.html {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(
                d.text.clone(),
                html.clone(),
            )),
            None => b.singlepart(SinglePart::plain(d.text.clone())),
        }
    }

    async fn send(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let draft = self.draft(job)?;
        let message = self
            .message(&draft)
            .map_err(|e| ActionError::permanent(format!("cannot make the mail: {e}")))?;
        let response = match tokio::time::timeout(self.timeout, self.transport.send(message)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(classify(&e, &self.server())),
            Err(_) => {
                return Err(ActionError::transient(format!(
                    "{}: no answer within {} s",
                    self.server(),
                    self.timeout.as_secs()
                )))
            }
        };
        let recipients = draft.to.len() + self.cc.len();
        let thread = draft.answers.unwrap_or_else(|| ThreadRef {
            reference: draft.message_id.clone(),
            url: None,
        });
        Ok(Outcome::new(
            format!(
                "mail sent to {recipients} recipient(s) ({})",
                draft.message_id
            ),
            json!({
                "message_id": draft.message_id,
                "recipients": recipients,
                "subject": draft.subject,
                "smtp_response": reply_text(&response),
            }),
        )
        .with_thread(Some(thread)))
    }
}

impl Action for Email {
    fn keeps_thread(&self) -> bool {
        true
    }

    fn refuses(&self, _problem: &super::Problem) -> Option<String> {
        self.to_person.then(|| super::PERSONAL_ONLY.to_string())
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.send(job))
    }

    fn explain(&self, job: &Job) -> Value {
        let draft = match self.draft(job) {
            Ok(d) => d,
            Err(e) => return json!({"error": e.to_string()}),
        };
        let shown = |list: &[Mailbox]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut headers = json!({
            "From": self.from.to_string(),
            "To": shown(&draft.to),
            "Subject": draft.subject,
            "Message-ID": draft.message_id,
        });
        if !self.cc.is_empty() {
            headers["Cc"] = json!(shown(&self.cc));
        }
        if let Some(first) = &draft.answers {
            headers["In-Reply-To"] = json!(first.reference);
            headers["References"] = json!(first.reference);
        }
        let mut would = json!({
            "smtp": {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "tls": self.smtp.tls.name(),
                "username": self.smtp.username,
            },
            "envelope": {
                "from": self.from.email.to_string(),
                "to": draft.to.iter().chain(&self.cc).map(|m| m.email.to_string()).collect::<Vec<_>>(),
            },
            "headers": headers,
            "text": draft.text,
        });
        if let Some(html) = draft.html {
            would["html"] = json!(html);
        }
        would
    }
}

/// `<run id@sender's domain>`: the same on every attempt of a run, and unique per run.
fn message_id(run_id: &str, from: &Mailbox) -> String {
    format!("<{run_id}@{}>", from.email.domain())
}

/// `<left@right>` with nothing that could end a header line or start another one.
fn is_message_id(text: &str) -> bool {
    text.len() <= 998
        && text.starts_with('<')
        && text.ends_with('>')
        && text.contains('@')
        && text.chars().all(|c| c.is_ascii_graphic())
}

/// A subject on one line: a line break from a template or a hostile title would end the header.
fn one_line(text: &str) -> String {
    text.split(char::is_control)
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn reply_text(response: &Response) -> String {
    let code = u16::from(response.code());
    let text: Vec<&str> = response.message().collect();
    format!("{code} {}", text.join(" ")).trim_end().to_string()
}

/// A refusal with a 4xx code, a connection that failed or timed out, or a garbled answer may go
/// through later; a 5xx, or a relay that lacks what the config asks for (STARTTLS, a login
/// mechanism), will not.
fn classify(e: &lettre::transport::smtp::Error, server: &str) -> ActionError {
    if let Some(code) = e.status() {
        let code = u16::from(code);
        let text = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_default();
        let message = format!("{server} answered {code} {text}")
            .trim_end()
            .to_string();
        let detail = json!({"smtp_code": code, "smtp_message": text});
        return if e.is_permanent() {
            ActionError::Permanent { message, detail }
        } else {
            ActionError::Transient {
                message,
                detail,
                retry_after: None,
            }
        };
    }
    if e.is_client() {
        return ActionError::permanent(format!("{server}: {e}"));
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_tls() {
        "TLS failed"
    } else {
        "cannot send"
    };
    ActionError::transient(format!("{server}: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Entity, Problem, Target};
    use crate::domain::Source;

    fn read_config(config: Value, env: &[(String, String)]) -> (Option<EmailConfig>, Vec<String>) {
        let mut issues = Issues::default();
        let mut s = Section::at("actions.mail".to_string(), &config, &mut issues);
        let read = read_email(&mut s, &Env(env), &mut issues);
        s.finish(&mut issues);
        (read, issues.0.iter().map(ToString::to_string).collect())
    }

    fn config(patch: Value) -> Value {
        let mut c = json!({"smtp": {"host": "smtp.example.com"}, "from": "hub <hub@example.com>",
                           "to": ["ops@example.com", "Night Shift <night@example.com>"]});
        if let (Value::Object(c), Value::Object(p)) = (&mut c, patch) {
            c.extend(p);
        }
        c
    }

    fn refusals(patch: Value) -> Vec<String> {
        let (read, issues) = read_config(config(patch.clone()), &[]);
        assert!(read.is_none() || !issues.is_empty(), "accepted: {patch}");
        issues
    }

    fn problem() -> Problem {
        Problem {
            source: Source::Dynatrace,
            problem_id: "P-2411021".into(),
            pid: None,
            state: "OPEN".into(),
            title: "Response time degradation".into(),
            severity: "PERFORMANCE".into(),
            impact: "SERVICE".into(),
            tags: vec!["env:prod".into(), "team:payments".into()],
            url: Some("https://dt.example/#problems/1".into()),
            entities: vec![
                Entity {
                    id: "HOST-1".into(),
                    name: "web's $(touch X) <b>01</b>".into(),
                    ..Entity::default()
                },
                Entity::named("checkout", "SERVICE"),
            ],
            received_at_ms: 0,
            notification: Value::Null,
            details: None,
        }
    }

    fn job<'a>(p: &'a Problem, run_id: &str, thread: Option<&str>) -> Job<'a> {
        Job {
            run_id: run_id.into(),
            attempt: 1,
            problem: p,
            target: Target::whole(),
            reports: Vec::new(),
            thread: thread.map(|r| ThreadRef {
                reference: r.into(),
                url: None,
            }),
            escalated: None,
            group: None,
            trace: None,
        }
    }

    fn email(patch: Value) -> Email {
        let (read, issues) = read_config(config(patch), &[]);
        assert_eq!(issues, Vec::<String>::new());
        Email::new(&read.unwrap()).unwrap()
    }

    fn formatted(e: &Email, job: &Job) -> String {
        let draft = e.draft(job).unwrap();
        String::from_utf8(e.message(&draft).unwrap().formatted()).unwrap()
    }

    #[test]
    fn defaults_follow_the_tls_mode() {
        let (read, issues) = read_config(config(json!({})), &[]);
        assert_eq!(issues, Vec::<String>::new());
        let c = read.unwrap();
        assert_eq!((c.smtp.port, c.smtp.tls.name()), (587, "starttls"));
        assert_eq!(c.smtp.timeout_secs, 15);
        assert_eq!(c.to.len(), 2);
        assert_eq!(c.subject, DEFAULT_SUBJECT);
        for (tls, port) in [("tls", 465), ("none", 25)] {
            let (read, _) = read_config(
                config(json!({"smtp": {"host": "127.0.0.1", "tls": tls}})),
                &[],
            );
            assert_eq!(read.unwrap().smtp.port, port);
        }
        let env = [("SMTP_PW".to_string(), "s3cret-pw".to_string())];
        let (read, issues) = read_config(
            config(json!({"smtp": {"host": "smtp.example.com", "port": 2525,
                                   "username": "hub", "password_env": "SMTP_PW"}})),
            &env,
        );
        assert_eq!(issues, Vec::<String>::new());
        let c = read.unwrap();
        assert_eq!(c.smtp.port, 2525);
        assert_eq!(c.smtp.password.expose(), "s3cret-pw");
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn bad_config_is_refused_by_key() {
        for (patch, expected) in [
            (
                json!({"to": ["ops@example.com", "not an address"]}),
                "actions.mail.to[1]: \"not an address\" is not a mail address",
            ),
            (
                json!({"to": "a@example.com, b@example.com"}),
                "actions.mail.to[0]: \"a@example.com, b@example.com\" is not a mail address",
            ),
            (json!({"to": []}), "actions.mail.to: missing: at least one recipient"),
            (json!({"to": null}), "actions.mail.to: missing: at least one recipient"),
            (json!({"cc": ["@example.com"]}), "actions.mail.cc[0]: \"@example.com\" is not"),
            (json!({"from": "hub"}), "actions.mail.from: \"hub\" is not a mail address"),
            (json!({"from": null}), "actions.mail.from: missing: the sender"),
            (json!({"smtp": null}), "actions.mail.smtp: missing: the SMTP relay"),
            (json!({"smtp": {"port": 25}}), "actions.mail.smtp.host: missing"),
            (
                json!({"smtp": {"host": "smtp.example.com", "tls": "ssl"}}),
                "actions.mail.smtp.tls: expected \"starttls\", \"tls\" or \"none\", found \"ssl\"",
            ),
            (
                json!({"smtp": {"host": "smtp.example.com", "port": 70000}}),
                "actions.mail.smtp.port: expected a whole number from 1 to 65535",
            ),
            (
                json!({"smtp": {"host": "smtp.example.com", "tsl": "none"}}),
                "actions.mail.smtp.tsl: unknown key",
            ),
            (
                json!({"smtp": {"host": "smtp.example.com", "username": "hub"}}),
                "actions.mail.smtp.password: missing: username is set",
            ),
            (
                json!({"smtp": {"host": "smtp.example.com", "password_env": "NOPE"}}),
                "actions.mail.smtp.password_env: environment variable NOPE is not set",
            ),
            (
                json!({"smtp": {"host": "mail.example.com", "tls": "none", "username": "hub",
                                "password": "hunter2"}}),
                "actions.mail.smtp.tls: \"none\" would send the password in clear text",
            ),
            (
                json!({"smtp": {"host": "not a host name", "tls": "none"}}),
                "actions.mail.smtp.host: \"not a host name\" is neither a host name nor an IP",
            ),
            (json!({"subject": "{{ unclosed"}), "actions.mail.subject: bad template"),
            (json!({"template": "{% if %}"}), "actions.mail.template: bad template"),
            (
                json!({"html_template": "<p>{% for %}</p>"}),
                "actions.mail.html_template: bad template",
            ),
        ] {
            let issues = refusals(patch.clone());
            assert!(
                issues.iter().any(|i| i.starts_with(expected)),
                "{patch}: {expected:?} not in {issues:#?}"
            );
            assert!(!issues.iter().any(|i| i.contains("hunter2")), "{issues:?}");
        }
        // Plain SMTP with a password is fine to a relay on this machine.
        let (read, issues) = read_config(
            config(json!({"smtp": {"host": "localhost", "tls": "none", "username": "hub",
                                   "password": "pw"}})),
            &[],
        );
        assert!(read.is_some() && issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn the_first_mail_starts_the_thread_and_later_ones_answer_it() {
        let e = email(json!({"cc": "Lead <lead@example.com>"}));
        let p = problem();
        let first = formatted(&e, &job(&p, "run_aaa", None));
        assert!(first.contains("Message-ID: <run_aaa@example.com>\r\n"), "{first}");
        assert!(first.contains("From: hub <hub@example.com>\r\n"), "{first}");
        assert!(first.contains("Cc: Lead <lead@example.com>\r\n"), "{first}");
        assert!(first.contains("Subject: Response time degradation (P-2411021)\r\n"));
        assert!(first.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(!first.contains("In-Reply-To") && !first.contains("References"));
        assert!(first.contains("Content-Type: text/plain; charset=utf-8"), "{first}");

        let later = formatted(&e, &job(&p, "run_bbb", Some("<run_aaa@example.com>")));
        assert!(later.contains("Message-ID: <run_bbb@example.com>\r\n"), "{later}");
        assert!(later.contains("In-Reply-To: <run_aaa@example.com>\r\n"), "{later}");
        assert!(later.contains("References: <run_aaa@example.com>\r\n"), "{later}");

        // A kept value that is no Message-ID, or this very mail, is not answered.
        for kept in ["INC-42\r\nBcc: x@evil.example", "<run_aaa@example.com>"] {
            let d = e.draft(&job(&p, "run_aaa", Some(kept))).unwrap();
            assert!(d.answers.is_none(), "{kept:?}");
        }
    }

    #[test]
    fn a_subject_stays_on_one_line() {
        let e = email(json!({"subject": "{{ problem.title }}"}));
        let mut p = problem();
        p.title = "disk full\r\nBcc: victim@example.com\n\tagain".into();
        let d = e.draft(&job(&p, "run_a", None)).unwrap();
        assert_eq!(d.subject, "disk full Bcc: victim@example.com again");
        let mail = formatted(&e, &job(&p, "run_a", None));
        let (head, _body) = mail.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("\r\nBcc:"), "{head}");
    }

    #[test]
    fn the_default_text_is_plain_and_the_html_part_escaped() {
        let e = email(json!({"html_template":
            "<ul>{% for e in problem.entities %}<li>{{ e.name }}</li>{% endfor %}</ul>"}));
        let p = problem();
        let d = e.draft(&job(&p, "run_a", None)).unwrap();
        assert_eq!(
            d.text,
            "Response time degradation is OPEN.\n\n\
             Problem:  P-2411021 (dynatrace)\n\
             State:    OPEN\n\
             Severity: PERFORMANCE\n\
             Impact:   SERVICE\n\n\
             Impacted entities:\n  \
             - web's $(touch X) <b>01</b> (HOST-1)\n  \
             - checkout\n\n\
             Tags: env:prod, team:payments\n\n\
             Open: https://dt.example/#problems/1\n"
        );
        assert_eq!(
            d.html.as_deref(),
            Some(
                "<ul><li>web&#x27;s $(touch X) &lt;b&gt;01&lt;&#x2F;b&gt;</li><li>checkout</li></ul>"
            )
        );
        let mail = formatted(&e, &job(&p, "run_a", None));
        assert!(mail.contains("Content-Type: multipart/alternative"), "{mail}");
        assert!(mail.contains("Content-Type: text/html; charset=utf-8"), "{mail}");

        // A problem that says little gets a short mail, with no empty labels.
        let bare = Problem {
            severity: String::new(),
            impact: String::new(),
            tags: vec![],
            url: None,
            entities: vec![],
            ..problem()
        };
        let d = e.draft(&job(&bare, "run_a", None)).unwrap();
        assert_eq!(
            d.text,
            "Response time degradation is OPEN.\n\n\
             Problem:  P-2411021 (dynatrace)\n\
             State:    OPEN\n"
        );
    }

    #[test]
    fn explain_shows_the_mail_and_never_the_password() {
        let e = email(json!({"smtp": {"host": "smtp.example.com", "tls": "tls",
                                      "username": "hub", "password": "hunter2"},
                             "cc": ["lead@example.com"]}));
        let p = problem();
        let shown = e.explain(&job(&p, "run_b", Some("<run_a@example.com>")));
        assert_eq!(
            shown["smtp"],
            json!({"host": "smtp.example.com", "port": 465, "tls": "tls", "username": "hub"})
        );
        assert_eq!(
            shown["envelope"],
            json!({"from": "hub@example.com",
                   "to": ["ops@example.com", "night@example.com", "lead@example.com"]})
        );
        assert_eq!(shown["headers"]["Message-ID"], "<run_b@example.com>");
        assert_eq!(shown["headers"]["In-Reply-To"], "<run_a@example.com>");
        assert_eq!(shown["headers"]["To"][1], "Night Shift <night@example.com>");
        assert!(shown["text"].as_str().unwrap().starts_with("Response time"));
        assert!(shown.get("html").is_none());
        assert!(!shown.to_string().contains("hunter2"), "{shown}");
    }

    #[test]
    fn only_message_ids_are_answered() {
        assert!(is_message_id("<run_1@example.com>"));
        assert!(!is_message_id("<run 1@example.com>"));
        assert!(!is_message_id("run_1@example.com"));
        assert!(!is_message_id("<a@b>\r\nBcc: c@d"));
    }
}

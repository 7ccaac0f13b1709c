//! The email action through the real binary and a real SMTP server (aiosmtpd, which keeps what
//! it accepts in a Maildir), including one that refuses and one that is not there yet.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{self, client, config_with, eventually, fixture, post, runs, Hub, Running};

/// An SMTP server on a loopback port, stopped when the test ends.
struct Relay {
    _process: Running,
    maildir: PathBuf,
}

/// Refuses every recipient, as a relay does for an address it does not know.
const REFUSING_HANDLER: &str = r#"
class Refuse:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 no such user"
"#;

impl Relay {
    /// Accepts everything into `<dir>/maildir`.
    fn accepting(dir: &Path, port: u16) -> Relay {
        let maildir = dir.join("maildir");
        let mut cmd = Command::new("aiosmtpd");
        cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(&maildir);
        Relay::start(dir, port, cmd, maildir)
    }

    fn refusing(dir: &Path, port: u16) -> Relay {
        std::fs::write(dir.join("refusing_relay.py"), REFUSING_HANDLER).unwrap();
        let mut cmd = Command::new("aiosmtpd");
        cmd.env("PYTHONPATH", dir)
            .args(["-c", "refusing_relay.Refuse"]);
        Relay::start(dir, port, cmd, dir.join("maildir"))
    }

    fn start(dir: &Path, port: u16, mut cmd: Command, maildir: PathBuf) -> Relay {
        let log = dir.join(format!("relay-{port}.log"));
        cmd.args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd
            .spawn()
            .expect("aiosmtpd (apt-get install python3-aiosmtpd; tools/test does it)");
        let process = Running(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Relay {
                    _process: process,
                    maildir,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the SMTP server did not listen on {port}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Every mail delivered so far.
    fn mails(&self) -> Vec<Mail> {
        support::list_files(&self.maildir.join("new"))
            .iter()
            .map(|name| Mail::parse(&std::fs::read(self.maildir.join("new").join(name)).unwrap()))
            .collect()
    }
}

/// Enough of a MIME reader for these tests: unfolded headers, parts, and their decoded text.
struct Mail {
    headers: Vec<(String, String)>,
    body: String,
}

impl Mail {
    fn parse(raw: &[u8]) -> Mail {
        let raw = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            match headers.last_mut() {
                Some((_, value)) if line.starts_with([' ', '\t']) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                _ => {
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_string(), value.trim().to_string()));
                    }
                }
            }
        }
        Mail {
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The decoded text of the first part whose type starts with `kind`.
    fn part(&self, kind: &str) -> Option<String> {
        let content_type = self.header("content-type")?;
        if content_type.starts_with("multipart/") {
            let boundary = content_type
                .split("boundary=")
                .nth(1)?
                .split(';')
                .next()?
                .trim_matches('"');
            self.body
                .split(&format!("--{boundary}"))
                .find_map(|chunk| Mail::parse(chunk.trim_start().as_bytes()).part(kind))
        } else if content_type.starts_with(kind) {
            Some(self.decoded())
        } else {
            None
        }
    }

    fn decoded(&self) -> String {
        let encoding = self
            .header("content-transfer-encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                use base64::Engine;
                let compact: String = self.body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap();
                String::from_utf8(bytes).unwrap()
            }
            "quoted-printable" => {
                let joined = self.body.replace("=\n", "");
                let mut bytes = Vec::new();
                let mut rest = joined.as_bytes();
                while let Some((&b, tail)) = rest.split_first() {
                    match (b, tail.get(..2)) {
                        (b'=', Some(hex)) => {
                            let hex = std::str::from_utf8(hex).unwrap();
                            bytes.push(u8::from_str_radix(hex, 16).unwrap());
                            rest = &tail[2..];
                        }
                        _ => {
                            bytes.push(b);
                            rest = tail;
                        }
                    }
                }
                String::from_utf8(bytes).unwrap()
            }
            _ => self.body.clone(),
        }
    }
}

fn email_action(port: u16, extra: Value) -> Value {
    let mut action = json!({
        "type": "email",
        "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "timeout_secs": 5},
        "from": "hub <hub@example.test>",
        "to": ["ops@example.test", "Night Shift <night@example.test>"],
    });
    if let (Value::Object(a), Value::Object(e)) = (&mut action, extra) {
        a.extend(e);
    }
    action
}

async fn deliver(hub: &Hub, body: Vec<u8>) {
    let r = post(&client(), &hub.url("/"), body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

const HOSTILE: &str = "web's $(touch INJECTED) <b>01</b>";

#[tokio::test]
async fn the_mails_of_one_problem_form_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let relay = Relay::accepting(dir.path(), port);
    let action = email_action(
        port,
        json!({
            "cc": "lead@example.test",
            "subject": "[{{ problem.state }}] {{ problem.title }}",
            "html_template": "<ul>{% for e in problem.entities %}<li>{{ e.name }}</li>{% endfor %}</ul>"
        }),
    );
    let hub = Hub::start_in(
        dir.path(),
        &config_with(json!({"actions": {"mail": action}})),
        &[],
    );

    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the first mail", async || relay.mails().len() == 1).await;
    let mut resolved: Value = serde_json::from_slice(&fixture("dynatrace/full-open.json")).unwrap();
    resolved["State"] = json!("RESOLVED");
    deliver(&hub, resolved.to_string().into_bytes()).await;
    eventually("the second mail", async || relay.mails().len() == 2).await;
    eventually("both runs recorded", async || {
        let r = runs(dir.path()).await;
        r.len() == 2 && r.iter().all(|r| r.status == "succeeded")
    })
    .await;

    let mails = relay.mails();
    let by_subject = |subject: &str| {
        mails
            .iter()
            .find(|m| m.header("subject") == Some(subject))
            .unwrap_or_else(|| panic!("no mail with subject {subject:?}"))
    };
    let open = by_subject("[OPEN] Response time degradation");
    let resolve = by_subject("[RESOLVED] Response time degradation");

    let first_id = open.header("message-id").unwrap();
    assert!(
        first_id.starts_with("<run_") && first_id.ends_with("@example.test>"),
        "{first_id}"
    );
    assert_eq!(open.header("in-reply-to"), None);
    assert_eq!(open.header("references"), None);
    assert_ne!(resolve.header("message-id"), Some(first_id));
    assert_eq!(resolve.header("in-reply-to"), Some(first_id));
    assert_eq!(resolve.header("references"), Some(first_id));

    for mail in [open, resolve] {
        assert_eq!(mail.header("from"), Some("hub <hub@example.test>"));
        assert_eq!(
            mail.header("to"),
            Some("ops@example.test, \"Night Shift\" <night@example.test>")
        );
        assert_eq!(mail.header("cc"), Some("lead@example.test"));
        // What the relay was told, beside the headers: the sender and every recipient, cc too.
        assert_eq!(mail.header("x-mailfrom"), Some("hub@example.test"));
        assert_eq!(
            mail.header("x-rcptto"),
            Some("ops@example.test, night@example.test, lead@example.test")
        );
        assert_eq!(mail.header("auto-submitted"), Some("auto-generated"));

        // The hostile name is text in the text part, and escaped in the HTML one.
        let text = mail.part("text/plain").unwrap();
        assert!(
            text.contains(&format!("  - {HOSTILE} (HOST-0A1B2C3D4E5F6071)")),
            "{text}"
        );
        assert!(!text.contains("&lt;") && !text.contains("<li>"), "{text}");
        let html = mail.part("text/html").unwrap();
        assert!(
            html.contains("<li>web&#x27;s $(touch INJECTED) &lt;b&gt;01&lt;&#x2F;b&gt;</li>"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
    }
    assert!(open
        .part("text/plain")
        .unwrap()
        .starts_with("Response time degradation is OPEN."));
    assert!(!dir.path().join("INJECTED").exists());

    // The first mail is the problem's thread, and stays it.
    let db = support::db(dir.path()).await;
    let kept: Vec<String> = db
        .rows("SELECT ref FROM threads WHERE action = 'mail'", &[])
        .await
        .iter()
        .map(|r| r.get("ref"))
        .collect();
    assert_eq!(kept, [first_id]);
    let sent = dir.path().join("problems_sent/P-2411021.json");
    eventually("the sent file", async || {
        std::fs::read(&sent)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v["runs"].as_array().is_some_and(|r| r.len() == 2))
    })
    .await;
    let sent: Value = serde_json::from_slice(&std::fs::read(&sent).unwrap()).unwrap();
    let outcome = &sent["runs"][0]["outcome"];
    assert_eq!(outcome["message_id"], first_id, "{sent}");
    assert_eq!(outcome["recipients"], 3, "{sent}");
    assert_eq!(
        outcome["subject"], "[OPEN] Response time degradation",
        "{sent}"
    );
}

#[tokio::test]
async fn a_refused_mail_fails_at_once_and_an_absent_relay_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let refusing_port = support::free_port();
    let _refusing = Relay::refusing(dir.path(), refusing_port);
    // Nothing listens here until the first attempt has failed.
    let later_port = support::free_port();
    let hub = Hub::start_in(
        dir.path(),
        &config_with(json!({
            "actions": {"refused": email_action(refusing_port, json!({})),
                        "later": email_action(later_port, json!({}))},
            "dispatch": {"first_retry_secs": 1}
        })),
        &[],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;

    let run = async |name: &str| {
        runs(dir.path())
            .await
            .into_iter()
            .find(|r| r.action == name)
    };
    eventually("the refused run to fail", async || {
        run("refused").await.is_some_and(|r| r.status == "failed")
    })
    .await;
    let refused = run("refused").await.unwrap();
    assert_eq!(refused.attempts, 1, "a 5xx is not tried again: {refused:?}");
    let error = refused.last_error.unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{refusing_port} answered 550"))
            && error.contains("no such user"),
        "{error}"
    );

    eventually("the first attempt at the absent relay", async || {
        run("later")
            .await
            .is_some_and(|r| r.attempts >= 1 && r.last_error.is_some())
    })
    .await;
    let waiting = run("later").await.unwrap();
    assert!(
        matches!(waiting.status.as_str(), "pending" | "running"),
        "{waiting:?}"
    );
    assert!(
        waiting
            .last_error
            .as_deref()
            .unwrap()
            .contains(&format!("127.0.0.1:{later_port}")),
        "{waiting:?}"
    );
    let relay = Relay::accepting(dir.path(), later_port);
    eventually("the retry to get through", async || {
        run("later").await.is_some_and(|r| r.status == "succeeded")
    })
    .await;
    assert!(run("later").await.unwrap().attempts >= 2);
    let mails = relay.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("x-rcptto"),
        Some("ops@example.test, night@example.test")
    );
}

/// `hub explain` shows the mail as it would go out, and `hub check-config` names a bad address
/// by its key; neither shows the password.
#[test]
fn explain_shows_the_mail_and_check_config_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut action = email_action(2525, json!({"cc": ["lead@example.test"]}));
    action["smtp"] = json!({"host": "localhost", "port": 2525, "tls": "none",
                            "username": "hub", "password_env": "SMTP_PASSWORD"});
    let config = config_with(json!({"actions": {"mail": action}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("payload.json"),
        fixture("dynatrace/full-open.json"),
    )
    .unwrap();
    let out = support::hub_command(dir.path())
        .args(["explain", "payload.json"])
        .env("SMTP_PASSWORD", "smtp-secret-9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &plan["notifications"][0]["runs"][0];
    assert_eq!(run["type"], "email");
    let would = &run["would"];
    assert_eq!(
        would["smtp"],
        json!({"host": "localhost", "port": 2525, "tls": "none", "username": "hub"})
    );
    assert_eq!(
        would["envelope"]["to"],
        json!([
            "ops@example.test",
            "night@example.test",
            "lead@example.test"
        ])
    );
    assert_eq!(
        would["headers"]["Subject"],
        "Response time degradation (P-2411021)"
    );
    assert_eq!(
        would["headers"]["Message-ID"],
        format!("<{}@example.test>", run["run_id"].as_str().unwrap())
    );
    assert!(would["text"].as_str().unwrap().contains(HOSTILE));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("smtp-secret-9") && !stderr.contains("smtp-secret-9"));
    assert!(!dir.path().join("hub.db").exists());

    let mut bad = email_action(2525, json!({"to": ["ops@example.test", "ops at example"]}));
    bad["smtp"]["tls"] = json!("ssl");
    let config = config_with(json!({"actions": {"mail": bad}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = support::hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "actions.mail.to[1]: \"ops at example\" is not a mail address",
        "actions.mail.smtp.tls: expected \"starttls\", \"tls\" or \"none\", found \"ssl\"",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
}

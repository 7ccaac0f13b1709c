//! People: roles on every changing endpoint, passwords, API tokens, the sign-on proxy, schedules
//! with overrides, the audit log, and the commands that manage them. The real binary throughout.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::*;

pub const PW: &str = "a long pass phrase";

trait SendJson {
    fn json_body(self, v: &Value) -> Self;
}

impl SendJson for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null)
}

/// Three people, one of each role, a schedule, and (with `proxy_from`) a sign-on proxy trusted
/// from that network.
pub fn team(dir: &Path, proxy_from: Option<&str>) -> Value {
    let (code, hash, err) = hash_password(dir, &format!("{PW}\n"));
    assert_eq!(code, Some(0), "{err}");
    let mut patch = json!({
        "people": {
            "vi": {"name": "Vi Viewer", "email": "vi@example.com", "role": "viewer", "password_hash": hash},
            "ana": {"name": "Ana Lima", "email": "ana@example.com", "phone": "+15550001111",
                    "timezone": "Europe/Berlin", "role": "responder", "password_hash": hash},
            "root": {"name": "Ro Admin", "email": "ro@example.com", "role": "admin", "password_hash": hash}
        },
        "schedules": {"primary": {"timezone": "Europe/Berlin", "rotation": {
            "people": ["ana", "vi", "root"], "every": "1w", "handoff": "MON 09:00",
            "start": "2026-01-05"}}}
    });
    if let Some(net) = proxy_from {
        patch["auth"] = json!({"proxy": {"header": "X-Forwarded-Email", "trusted": [net]}});
    }
    config_with(patch)
}

fn start_team(proxy_from: Option<&str>) -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    let config = team(dir.path(), proxy_from);
    let hub = Hub::start_in(dir.path(), &config, &[]);
    (dir, hub)
}

/// A command of the real binary in the hub's folder: exit code, stdout, stderr.
fn hub_cli(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = hub_command(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn audit(hub: &Hub) -> Vec<Value> {
    let r = client()
        .get(hub.url("/api/audit"))
        .basic_auth("vi", Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = json_of(r).await;
    v["audit"].as_array().unwrap().clone()
}

/// A page form's hidden token, read from the status page as that person sees it.
async fn csrf(hub: &Hub, user: &str) -> String {
    let page = client()
        .get(hub.url("/"))
        .basic_auth(user, Some(PW))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .map(|i| i + 19)
        .unwrap_or_else(|| {
            // A viewer's page has no form: the token is the page's, the same for every person.
            panic!("no form for {user}")
        });
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn every_changing_endpoint_checks_the_role_and_records_who() {
    let (_dir, hub) = start_team(None);
    let c = client();
    let base = hub.base_url.clone();
    let token = csrf(&hub, "ana").await;

    // (method, path, JSON body or form, who may: the lowest role)
    type Case<'a> = (
        &'a str,
        String,
        Option<Value>,
        Option<Vec<(&'a str, String)>>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/silences".into(),
            Some(json!({"matchers": ["tag=env:x"], "duration": "1h", "comment": "c"})),
            None,
            "responder",
        ),
        (
            "POST",
            "/silences".into(),
            None,
            Some(vec![
                ("csrf", token.clone()),
                ("matchers", "tag=env:y".into()),
                ("duration", "1h".into()),
                ("comment", "c".into()),
                ("author", "".into()),
            ]),
            "responder",
        ),
        (
            "POST",
            "/api/schedules/primary/overrides".into(),
            Some(json!({"person": "ana", "from": "now", "until": "2027-06-01T00:00"})),
            None,
            "responder",
        ),
        (
            "POST",
            "/schedules/primary/overrides".into(),
            None,
            Some(vec![
                ("csrf", token.clone()),
                ("person", "vi".into()),
                ("from", "now".into()),
                ("until", "2027-06-01T00:00".into()),
            ]),
            "responder",
        ),
        (
            "POST",
            "/api/tokens".into(),
            Some(json!({"person": "vi"})),
            None,
            "admin",
        ),
        ("POST", "/-/reload".into(), None, None, "admin"),
    ];
    let roles = [("vi", "viewer"), ("ana", "responder"), ("root", "admin")];
    let rank = |r: &str| {
        ["viewer", "responder", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, body, form, needed) in &cases {
        for (user, role) in roles {
            let mut req = c
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .basic_auth(user, Some(PW));
            if let Some(b) = body {
                req = req.json_body(b);
            }
            if let Some(f) = form {
                req = req.form(f);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            if rank(role) >= rank(needed) {
                assert!(
                    (200..400).contains(&status),
                    "{method} {path} as {role}: {status} {text}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}: {text}");
                assert!(text.contains(&format!("needs the {needed} role")), "{text}");
            }
        }
    }
    // Nobody signed in: 401 with a challenge, whatever the endpoint.
    for (method, path, body, form, _) in &cases {
        let mut req = c.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(b) = body {
            req = req.json_body(b);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert!(r.headers().contains_key("www-authenticate"));
    }

    // Ending things: the silences and overrides made above, by each role.
    let (_, listed) = get_as(&hub, "vi", "/api/silences").await;
    let silences: Vec<String> = listed["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(silences.len(), 4, "{listed}");
    let (_, o) = get_as(&hub, "vi", "/api/schedules/primary/overrides").await;
    let overrides: Vec<String> = o["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(overrides.len(), 4, "{o}");
    let (_, t) = get_as(&hub, "root", "/api/tokens").await;
    let token_id = t["tokens"][0]["id"].as_str().unwrap().to_string();
    let ends: Vec<(String, String, &str)> = vec![
        (
            "DELETE".into(),
            format!("/api/silences/{}", silences[0]),
            "responder",
        ),
        (
            "POST".into(),
            format!("/silences/{}/expire", silences[1]),
            "responder",
        ),
        (
            "DELETE".into(),
            format!("/api/overrides/{}", overrides[0]),
            "responder",
        ),
        (
            "POST".into(),
            format!("/overrides/{}/remove", overrides[1]),
            "responder",
        ),
        ("DELETE".into(), format!("/api/tokens/{token_id}"), "admin"),
    ];
    for (method, path, needed) in &ends {
        for (user, role) in roles {
            let r = c
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .basic_auth(user, Some(PW))
                .form(&[("csrf", token.as_str())])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if rank(role) < rank(needed) {
                assert_eq!(status, 403, "{method} {path} as {role}");
            } else {
                // The first allowed role ends it; the next finds it ended.
                assert!(
                    (200..400).contains(&status) || status == 404 || status == 409 || status == 400,
                    "{method} {path} as {role}: {status}"
                );
            }
        }
    }

    // Every change is in the audit log: who, through what, from where.
    let rows = audit(&hub).await;
    let count = |action: &str| rows.iter().filter(|r| r["action"] == action).count();
    assert_eq!(count("silence.add"), 4, "{rows:#?}");
    assert_eq!(count("override.add"), 4);
    assert_eq!(count("token.create"), 1);
    assert_eq!(count("reload"), 1);
    assert_eq!(count("silence.expire"), 2);
    assert_eq!(count("override.remove"), 2);
    assert_eq!(count("token.revoke"), 1);
    let page_add = rows
        .iter()
        .find(|r| r["action"] == "silence.add" && r["via"] == "page" && r["actor"] == "ana")
        .unwrap();
    assert_eq!(page_add["from"], "127.0.0.1");
    assert_eq!(page_add["verified"], true);
    let reload = rows.iter().find(|r| r["action"] == "reload").unwrap();
    assert_eq!(
        (reload["actor"].as_str(), reload["via"].as_str()),
        (Some("root"), Some("api"))
    );
    // The silence carries who made it, not what was typed.
    assert!(
        listed["silences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["author"] == "ana" || s["author"] == "root"),
        "{listed}"
    );
}

async fn get_as(hub: &Hub, user: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(hub.url(path))
        .basic_auth(user, Some(PW))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, json_of(r).await)
}

#[tokio::test]
async fn a_replay_needs_a_responder_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = team(dir.path(), None);
    merge(
        &mut config,
        json!({"actions": {"mark": {"type": "script", "command": "/bin/true"}}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let r = post(
        &client(),
        &hub.url("/"),
        fixture("dynatrace/minimal-open.json"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let key = serde_json::from_slice::<Value>(&fixture("dynatrace/minimal-open.json")).unwrap()
        ["ProblemID"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the run to succeed", async || {
        let (_, p) = get_as(&hub, "vi", &format!("/api/problems/{key}")).await;
        p.to_string().contains("succeeded")
    })
    .await;
    let path = format!("/api/problems/{key}/replay");
    for (user, status) in [("vi", 403), ("ana", 202), ("root", 202)] {
        let r = client()
            .post(hub.url(&path))
            .basic_auth(user, Some(PW))
            .json_body(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user}");
    }
    // The page's replay: a viewer is not even shown the confirmation.
    let confirm = format!("/problems/{key}/replay");
    let r = client()
        .get(hub.url(&confirm))
        .basic_auth("vi", Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The command line: --as a viewer is refused, --as a responder is recorded under her name.
    let (code, _, err) = hub_cli(dir.path(), &["--as", "vi", "replay", &key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("responder role"), "{err}");
    let rows = audit(&hub).await;
    let replays: Vec<&Value> = rows.iter().filter(|r| r["action"] == "replay").collect();
    assert_eq!(replays.len(), 2, "{rows:#?}");
    assert!(replays
        .iter()
        .all(|r| r["target"] == format!("dynatrace/{key}")));
}

#[tokio::test]
async fn tokens_work_until_revoked_or_expired_and_never_exceed_their_person() {
    let (dir, hub) = start_team(None);
    let d = dir.path();
    // A viewer's token cannot be made a responder's.
    let (code, _, err) = hub_cli(d, &["token", "create", "--person", "vi", "--role", "admin"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot be admin"), "{err}");
    // Only an admin makes tokens, on the command line too.
    let (code, _, err) = hub_cli(d, &["--as", "ana", "token", "create", "--person", "ana"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("admin role"), "{err}");
    let (code, out, err) = hub_cli(
        d,
        &[
            "--as", "root", "token", "create", "--person", "ana", "--role", "viewer",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (id, token) = out.split_once('\t').unwrap();
    let bearer = |t: &str| format!("Bearer {t}");
    let c = client();
    let who = c
        .get(hub.url("/api/whoami"))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let who: Value = json_of(who).await;
    assert_eq!(
        (who["id"].as_str(), who["role"].as_str()),
        (Some("ana"), Some("viewer"))
    );
    // A viewer token of a responder cannot silence.
    let r = c
        .post(hub.url("/api/silences"))
        .header("authorization", bearer(token))
        .json_body(&json!({"matchers": ["tag=a:b"], "duration": "1h", "comment": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Listed without the secret.
    let (_, list, _) = hub_cli(d, &["token", "list", "--json"]);
    assert!(list.contains(id) && !list.contains(&token[25..]), "{list}");
    // Revoked: 401 at once, and the same answer as for a token that never was.
    let (code, _, err) = hub_cli(d, &["token", "revoke", id]);
    assert_eq!(code, Some(0), "{err}");
    let revoked = c
        .get(hub.url("/api/whoami"))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    let revoked_text = revoked.text().await.unwrap();
    let forged = format!("hub_{id}_{}", "0".repeat(64));
    for bad in [
        forged.as_str(),
        "hub_nope",
        "$(touch x)",
        "../../etc/passwd",
        "",
    ] {
        let r = c
            .get(hub.url("/api/whoami"))
            .header("authorization", bearer(bad))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(r.text().await.unwrap(), revoked_text);
    }
    assert!(!d.join("x").exists());
    // Expired: works, then after its second does not.
    let (_, out, _) = hub_cli(d, &["token", "create", "--person", "vi", "--expires", "2s"]);
    let (_, short) = out.split_once('\t').unwrap();
    let first = c
        .get(hub.url("/api/oncall"))
        .header("authorization", bearer(short))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    eventually("the token to expire", async || {
        c.get(hub.url("/api/oncall"))
            .header("authorization", bearer(short))
            .send()
            .await
            .unwrap()
            .status()
            == 401
    })
    .await;
    let (_, list, _) = hub_cli(d, &["token", "list"]);
    assert!(
        list.contains("expired") && list.contains("revoked"),
        "{list}"
    );
    // The calendar takes a token in its query, and nothing else.
    let (_, out, _) = hub_cli(d, &["token", "create", "--person", "vi"]);
    let (_, cal_token) = out.split_once('\t').unwrap();
    let cal = c
        .get(hub.url(&format!("/schedules/primary.ics?token={cal_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cal.status(), 200);
    assert!(cal
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let body = cal.text().await.unwrap();
    assert!(
        body.starts_with("BEGIN:VCALENDAR\r\n") && body.contains("SUMMARY:primary: "),
        "{body}"
    );
    for path in [
        "/schedules/primary.ics".to_string(),
        format!("/schedules/primary.ics?token={token}"),
    ] {
        let r = c.get(hub.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = c
        .get(hub.url(&format!("/schedules/..%2Fconfig.ics?token={cal_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rows = audit(&hub).await;
    let who: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("token."))
        .map(|r| (r["action"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(who.len(), 4, "{rows:#?}");
    assert!(who.contains(&("token.create", "root")));
}

#[tokio::test]
async fn a_failed_login_says_nothing_of_what_was_wrong() {
    let (_dir, hub) = start_team(None);
    let c = client();
    let mut answers = Vec::new();
    for (user, pw) in [
        ("ana", "wrong"),
        ("nobody", PW),
        ("nobody", "wrong"),
        ("", ""),
        ("ana", ""),
        (USER, PASSWORD),
    ] {
        let r = c
            .get(hub.url("/api/whoami"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{user}");
        answers.push(r.text().await.unwrap());
    }
    // The webhook's password no longer opens the page once the config has people.
    answers.dedup();
    assert_eq!(answers.len(), 1, "{answers:?}");
}

#[tokio::test]
async fn the_status_page_login_stays_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = team(dir.path(), None);
    merge(
        &mut config,
        json!({"status_page": {"username": "ops", "password": "ops-pw"}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let r = client()
        .post(hub.url("/-/reload"))
        .basic_auth("ops", Some("ops-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = audit(&hub).await;
    assert_eq!(rows[0]["actor"], "status_page");
    // A sample's config (no people, no status_page): the webhook login still opens everything.
    let (_d, sample) = start(json!({}));
    let r = post(
        &client(),
        &sample.url("/api/silences"),
        json!({"matchers": ["tag=a:b"], "duration": "1h", "comment": "c"}).to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn the_sign_on_proxy_is_believed_only_from_its_addresses() {
    let c = client();
    // Trusted from loopback, where the test's requests come from.
    let (_d1, trusted) = start_team(Some("127.0.0.1/32"));
    let as_email = |hub: &Hub, email: &str| {
        c.get(hub.url("/api/whoami"))
            .header("X-Forwarded-Email", email.to_string())
            .send()
    };
    let r = as_email(&trusted, "ANA@example.com").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["id"], "ana");
    let r = as_email(&trusted, "mallory@example.com").await.unwrap();
    assert_eq!(r.status(), 401);
    // The proxy's person is the one who acts, whatever Basic credentials ride along.
    let r = c
        .post(trusted.url("/api/silences"))
        .header("X-Forwarded-Email", "vi@example.com")
        .basic_auth("root", Some(PW))
        .json_body(&json!({"matchers": ["tag=a:b"], "duration": "1h", "comment": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Trusted only from elsewhere: the header is ignored, and logged.
    let (_d2, elsewhere) = start_team(Some("192.0.2.0/24"));
    let r = as_email(&elsewhere, "root@example.com").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = as_email(&elsewhere, "ro@example.com").await.unwrap();
    assert_eq!(r.status(), 401);
    // Read from the hub's stderr by a thread of the test, which may not have the line yet.
    eventually("the ignored header logged", async || {
        elsewhere.stderr().contains("ignored the sign-on header")
    })
    .await;
    // Basic still works there.
    let r = c
        .get(elsewhere.url("/api/whoami"))
        .header("X-Forwarded-Email", "ro@example.com")
        .basic_auth("vi", Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["id"], "vi");
}

#[tokio::test]
async fn on_call_across_both_summer_time_changes_with_an_override() {
    let (dir, hub) = start_team(None);
    let d = dir.path();
    let oncall_at = |at: &str| {
        let (code, out, err) = hub_cli(d, &["oncall", "primary", "--at", at, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        (
            v[0]["person"].as_str().unwrap_or("-").to_string(),
            v[0]["until"].as_str().unwrap().to_string(),
        )
    };
    // Weekly from Monday 2026-01-05 09:00 Berlin: ana, vi, root, ana, …  12 weeks later is
    // Monday 2026-03-30 (summer time since Sunday): ana again, from 09:00 local, not 08:00 or 10:00.
    assert_eq!(
        oncall_at("2026-03-30T08:59"),
        ("root".into(), "2026-03-30T09:00:00+02:00".into())
    );
    assert_eq!(
        oncall_at("2026-03-30T09:00"),
        ("ana".into(), "2026-04-06T09:00:00+02:00".into())
    );
    // Autumn: back to winter time on Sunday 2026-10-25; the handoff stays 09:00 local.
    let (who, until) = oncall_at("2026-10-25T12:00");
    assert_eq!(until, "2026-10-26T09:00:00+01:00");
    let (next, _) = oncall_at("2026-10-26T09:00");
    assert_ne!(who, next);
    // An override across the spring change: ana's colleague covers Saturday night to Sunday noon.
    let (code, out, err) = hub_cli(
        d,
        &[
            "--as",
            "ana",
            "oncall",
            "override",
            "primary",
            "--person",
            "vi",
            "--from",
            "2026-03-28T20:00",
            "--until",
            "2026-03-29T12:00",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2026-03-28T20:00:00+01:00") && out.contains("2026-03-29T12:00:00+02:00"),
        "{out}"
    );
    assert_eq!(
        oncall_at("2026-03-29T03:30"),
        ("vi".into(), "2026-03-29T12:00:00+02:00".into())
    );
    assert_eq!(oncall_at("2026-03-29T12:00").0, "root");
    // The same through the API, for the same instant written with an offset.
    let (status, v) = get_as(&hub, "vi", "/api/oncall?at=2026-03-29T01:30:00Z").await;
    assert_eq!(status, 200);
    assert_eq!(v["oncall"][0]["person"], "vi");
    assert_eq!(v["oncall"][0]["at"], "2026-03-29T03:30:00+02:00");
    // A time the clocks skip, garbage, and unknown names are refused, changing nothing.
    for (args, says) in [
        (
            vec!["oncall", "primary", "--at", "2026-03-29T02:30"],
            "does not exist",
        ),
        (
            vec!["oncall", "primary", "--at", "$(touch x)"],
            "is not a time",
        ),
        (vec!["oncall", "../etc"], "no schedule"),
        (
            vec![
                "--as",
                "ana",
                "oncall",
                "override",
                "primary",
                "--person",
                "<script>",
                "--from",
                "now",
                "--until",
                "2030-01-01T00:00",
            ],
            "no person",
        ),
        (
            vec![
                "--as",
                "ana",
                "oncall",
                "override",
                "primary",
                "--person",
                "vi",
                "--from",
                "2030-01-02T00:00",
                "--until",
                "2030-01-01T00:00",
            ],
            "after",
        ),
        (
            vec![
                "--as",
                "vi",
                "oncall",
                "override",
                "primary",
                "--person",
                "vi",
                "--from",
                "now",
                "--until",
                "2030-01-01T00:00",
            ],
            "responder role",
        ),
        (
            vec![
                "--as",
                "mallory",
                "oncall",
                "override",
                "primary",
                "--person",
                "vi",
                "--from",
                "now",
                "--until",
                "2030-01-01T00:00",
            ],
            "no such person",
        ),
    ] {
        let (code, _, err) = hub_cli(d, &args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!d.join("x").exists());
    let (status, v) = get_as(&hub, "vi", "/api/oncall?at=yesterday").await;
    assert_eq!(status, 400, "{v}");
    // The API refuses garbage and huge bodies, and a form posted from another site.
    let c = client();
    for (body, status) in [
        ("{\"person\": \"vi\"}".to_string(), 400),
        ("not json".to_string(), 400),
        (
            format!(
                "{{\"person\": \"{}\", \"from\": \"now\", \"until\": \"now\"}}",
                "x".repeat(10_000)
            ),
            413,
        ),
    ] {
        let r = c
            .post(hub.url("/api/schedules/primary/overrides"))
            .basic_auth("ana", Some(PW))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    let r = c
        .post(hub.url("/schedules/primary/overrides"))
        .basic_auth("ana", Some(PW))
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf", "x"),
            ("person", "vi"),
            ("from", "now"),
            ("until", "2030-01-01T00:00"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // One override, recorded once, with its author.
    let rows = audit(&hub).await;
    let adds: Vec<&Value> = rows
        .iter()
        .filter(|r| r["action"] == "override.add")
        .collect();
    assert_eq!(adds.len(), 1, "{rows:#?}");
    assert_eq!(adds[0]["actor"], "ana");
    assert_eq!(adds[0]["via"], "cli");
    let (_, text, _) = hub_cli(d, &["audit"]);
    assert!(
        text.contains("override.add") && text.contains("ana"),
        "{text}"
    );
}

#[tokio::test]
async fn the_page_shows_who_is_signed_in_and_only_the_forms_they_may_use() {
    let (_dir, hub) = start_team(None);
    let page = |user: &'static str| {
        let c = client();
        let url = hub.url("/");
        async move {
            c.get(url)
                .basic_auth(user, Some(PW))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let viewer = page("vi").await;
    assert!(
        viewer.contains("signed in as Vi Viewer (viewer)"),
        "{viewer}"
    );
    assert!(viewer.contains("id=\"oncall-list\""));
    assert!(!viewer.contains("id=\"silence-form\"") && !viewer.contains("override-form"));
    let responder = page("ana").await;
    assert!(responder.contains("signed in as Ana Lima (responder)"));
    assert!(
        responder.contains("id=\"silence-form\"") && responder.contains("id=\"override-primary\"")
    );
    let audit_page = client()
        .get(hub.url("/audit"))
        .basic_auth("vi", Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(audit_page.status(), 200);
}

#[tokio::test]
async fn hash_password_and_the_people_config_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, hash, _) = hash_password(d, "pw\n");
    assert_eq!(code, Some(0));
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let (code, again, _) = hash_password(d, "pw");
    assert_eq!(code, Some(0));
    assert_ne!(hash, again, "a new salt each time");
    let (code, _, err) = hash_password(d, "\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("empty"), "{err}");
    let (code, err) = check_config(
        d,
        &config_with(json!({
            "people": {"ana": {"phone": "555", "email": "x", "role": "god", "password_hash": "pw"},
                       "$(touch x)": {}},
            "auth": {"proxy": {"header": "X-Email", "trusted": ["../"]}},
            "schedules": {"p": {"timezone": "Mars/Olympus", "rotation": {"people": ["bo"], "every": "1y", "start": "x"}}}
        })),
    );
    assert_eq!(code, Some(1));
    for path in [
        "people.ana.phone",
        "people.ana.email",
        "people.ana.role",
        "people.ana.password_hash",
        "people.$(touch x)",
        "auth.proxy.trusted[0]",
        "schedules.p.timezone",
        "schedules.p.rotation.people[0]",
        "schedules.p.rotation.every",
        "schedules.p.rotation.start",
    ] {
        assert!(err.contains(path), "{path} missing:\n{err}");
    }
    assert!(!d.join("x").exists());
}

#[tokio::test]
async fn commands_that_change_the_store_check_the_role_and_are_recorded() {
    let (dir, hub) = start_team(None);
    let d = dir.path();
    std::fs::create_dir(d.join("old")).unwrap();
    std::fs::write(d.join("old/1.json"), fixture("dynatrace/minimal-open.json")).unwrap();
    for args in [
        vec!["--as", "ana", "import", "old"],
        vec!["--as", "vi", "prune", "--max-age", "90d"],
        vec![
            "--as",
            "vi",
            "silence",
            "add",
            "--match",
            "tag=a:b",
            "--duration",
            "1h",
            "--comment",
            "c",
        ],
    ] {
        let (code, _, err) = hub_cli(d, &args);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(err.contains("role"), "{args:?}: {err}");
    }
    // A dry run changes nothing, so a viewer may.
    let (code, _, err) = hub_cli(d, &["--as", "vi", "prune", "--max-age", "90d", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = hub_cli(d, &["--as", "root", "import", "old"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = hub_cli(d, &["prune", "--max-age", "90d"]);
    assert_eq!(code, Some(0), "{err}");
    let rows = audit(&hub).await;
    let import = rows.iter().find(|r| r["action"] == "import").unwrap();
    assert_eq!(
        (import["actor"].as_str(), import["via"].as_str()),
        (Some("root"), Some("cli"))
    );
    let prune = rows.iter().find(|r| r["action"] == "prune").unwrap();
    assert_eq!(
        prune["verified"], false,
        "no --as: the system user, unverified"
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
}

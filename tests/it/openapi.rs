//! The OpenAPI document (`src/web/openapi.json`, served at `/api/openapi.json`): valid OpenAPI 3.1
//! by the specification's own schema and by openapi-spec-validator, and true of a running hub.
//! Every operation it describes is called, with good requests and bad ones, and each answer's
//! status, content type, headers and body are checked against what the document declares for it.
//! (That every route hub mounts is described is checked beside the routes, in `src/web/openapi.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::inbound::{form, now_secs, slack_signature, twilio_signature};
use crate::people::PW;
use crate::support::{self, client, eventually, fixture, runs, script, Hub, PASSWORD, USER};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("src/web/openapi.json")).unwrap())
        .unwrap()
}

/// `schema` checked on `instance` as JSON Schema 2020-12 (what OpenAPI 3.1's schemas are), with
/// the document's components beside it so that its `$ref`s resolve; the errors, if any.
fn schema_errors(components: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": components,
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("the schema does not compile: {e}\n{schema}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

#[test]
fn the_document_is_valid_by_the_openapi_3_1_schema() {
    // The specification's schema for 3.1 documents (spec.openapis.org/oas/3.1/schema/2022-10-07).
    let oas: Value = serde_json::from_slice(&fixture("openapi/oas-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&oas).unwrap();
    let doc = document();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And it does catch a broken one.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["200"] = json!({"content": {}});
    assert!(!validator.is_valid(&broken));
}

#[test]
fn openapi_spec_validator_finds_the_document_valid() {
    let check = |file: &Path| {
        support::run_python(
            &[
                "-m".as_ref(),
                "openapi_spec_validator".as_ref(),
                file.as_os_str(),
            ],
            "openapi-spec-validator>=0.7,<1",
        )
    };
    let (valid, said) = check(&repo().join("src/web/openapi.json"));
    assert!(valid, "{said}");
    assert!(said.contains("OK"), "{said}");
    // A reference to nothing is refused.
    let dir = tempfile::tempdir().unwrap();
    let mut broken = document();
    broken["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"] = json!({"$ref": "#/components/schemas/Nothing"});
    let file = dir.path().join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    assert!(!check(&file).0);
}

/// The document, and which of its operations were called.
struct Spec {
    doc: Value,
    called: BTreeSet<(String, String)>,
}

impl Spec {
    fn operation(&self, method: &str, template: &str) -> &Value {
        self.doc["paths"]
            .get(template)
            .and_then(|p| p.get(method))
            .unwrap_or_else(|| panic!("{method} {template} is not in the document"))
    }

    /// `v`, or what its `$ref` points at.
    fn resolved<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{r} points nowhere")),
            None => v,
        }
    }

    fn assert_valid(&self, schema: &Value, instance: &Value, what: &str) {
        let errors = schema_errors(&self.doc["components"], schema, instance);
        assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
    }

    /// Checks a JSON request body against the operation's, as a sender would be held to it.
    fn request(&self, method: &str, template: &str, body: &Value) {
        let operation = self.operation(method, template);
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "{method} {template}: no JSON request body"
        );
        self.assert_valid(schema, body, &format!("{method} {template}: the request"));
    }

    /// Checks an answer against the document: its status is one the operation declares, with
    /// the headers it declares, in one of its media types, and a JSON body valid by its schema.
    /// Returns the body (JSON, or a string for any other media type).
    async fn answer(
        &mut self,
        method: &str,
        template: &str,
        r: reqwest::Response,
        status: u16,
    ) -> Value {
        let what = format!("{} {template} → {status}", method.to_uppercase());
        let got = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{what}: {text}");
        self.called
            .insert((method.to_string(), template.to_string()));
        let operation = self.operation(method, template);
        let declared = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{what}: the document declares no {status}"));
        let declared = self.resolved(declared);
        for name in declared["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(
                headers.contains_key(name.as_str()),
                "{what}: no {name} header"
            );
        }
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let media = declared["content"]
            .get(essence)
            .unwrap_or_else(|| panic!("{what}: {content_type} is not declared"));
        if essence != "application/json" {
            assert!(!text.is_empty(), "{what}: empty");
            return Value::String(text);
        }
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        self.assert_valid(&media["schema"], &body, &what);
        body
    }
}

/// Dynatrace's stand-in: the feed, and the details of P-31337.
async fn tenant() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems"))
        .respond_with(ResponseTemplate::new(200).set_body_json(crate::page::feed_server_problems()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems/-31337_1V2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "problemId": "-31337_1V2", "displayId": "P-31337", "title": "CPU", "status": "OPEN",
            "startTime": 1_700_000_000_000_i64, "endTime": -1,
            "impactedEntities": [{"entityId": {"id": "HOST-1", "type": "HOST"}, "name": "web-1"}]
        })))
        .mount(&server)
        .await;
    server
}

const AM_TOKEN: &str = "am-bearer-token-1";
const MONASCA_TOKEN: &str = "monasca-token-1";
const TWILIO_TOKEN: &str = "twilio-token-1";
const SLACK_SECRET: &str = "slack-secret-1";
/// What Opsgenie's senders send as `Authorization: GenieKey …`.
const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";
/// The alias of Opsgenie's documented create (`opsgenie/01-create.json`), as a path segment.
const GENIE_ALIAS: &str = "Life%20is%20too%20short%20for%20no%20alias";
/// Monasca's alarm in the fixture: it escalates.
const ALARM: &str = "20a54a65-44b8-4ac9-a398-1f2d888827d2";

/// A hub with people (a viewer, a responder, an admin) and a schedule, every source enabled, a
/// tenant, an action, a heartbeat, a maintenance window, Monasca's problems escalating, and
/// Opsgenie's problems folded into a group by a grouped route (its first send at once).
fn config(dir: &Path, tenant: &MockServer, cloudstack_secret: &str) -> Value {
    script(dir, "ok.sh", "echo done");
    let mut config = crate::people::team(dir, None);
    support::merge(
        &mut config,
        json!({
            "webhook": {"max_body_bytes": 65536},
            "public_url": "https://hub.example.com",
            "slack": {"signing_secret": SLACK_SECRET},
            "dynatrace": {"tenant": tenant.uri(), "api_token": "dt0c01.T", "max_attempts": 1},
            "actions": {
                "page": {"type": "script", "command": ["./ok.sh"]},
                "text": {"type": "sms", "account_sid": "AC1", "auth_token": TWILIO_TOKEN,
                         "from": "+15005550006", "to": ["+15550009999"],
                         "api_url": "http://127.0.0.1:9"}
            },
            "escalations": {"prod": {"steps": [
                {"notify": ["person:ana"], "actions": ["page"], "wait": "1h"},
                {"notify": ["person:ana"], "actions": ["page"], "wait": "1h"}
            ]}},
            "routes": [
                {"sources": ["dynatrace"], "actions": ["page"]},
                {"sources": ["monasca"], "escalate": "prod"},
                {"sources": ["opsgenie"], "actions": ["page"],
                 "group": {"by": ["source"], "wait": "0s", "interval": "1s"}}
            ],
            "sources": {
                "alertmanager": {"auth": {"bearer": AM_TOKEN}},
                "pagerduty": {"routing_keys": ["0123456789abcdef0123456789abcdef"]},
                "monasca": {"auth": {"token": MONASCA_TOKEN}},
                "cloudstack": {"secret": cloudstack_secret},
                "ucloud": {},
                "opsgenie": {"api_keys": [GENIE_KEY]}
            },
            "heartbeats": {"nightly": {"every": "1h", "actions": ["page"]}},
            "maintenance": [{"name": "sunday-patching", "match": {"tag": "env:prod"},
                             "cron": "0 2 * * SUN", "duration": "2h"}]
        }),
    );
    config
}

/// A request as one of the team (`root` the admin, `ana` the responder, `vi` the viewer).
fn as_person(who: &str, m: reqwest::Method, hub: &Hub, path: &str) -> reqwest::RequestBuilder {
    client().request(m, hub.url(path)).basic_auth(who, Some(PW))
}

fn with_json(r: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    r.header("content-type", "application/json")
        .body(body.to_string())
}

#[tokio::test]
async fn every_operation_answers_as_the_document_says() {
    use reqwest::Method as M;
    let tenant = tenant().await;
    let dir = tempfile::tempdir().unwrap();
    let vectors: Value =
        serde_json::from_slice(&fixture("cloudstack/signature-vectors.json")).unwrap();
    let cs = &vectors[1];
    let hub = Hub::start_in(
        dir.path(),
        &config(dir.path(), &tenant, cs["secret"].as_str().unwrap()),
        &[],
    );
    let mut spec = Spec {
        doc: document(),
        called: BTreeSet::new(),
    };
    let c = client();
    let webhook = |p: &str| {
        c.post(hub.url(p))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/json")
    };

    // --- The sources: good requests (their bodies valid by the document too) and bad ones.
    let dynatrace = crate::page::hostile_notification();
    spec.request("post", "/", &dynatrace.parse().unwrap());
    for expected in ["stored", "duplicate"] {
        let r = webhook("/").body(dynatrace.clone()).send().await.unwrap();
        assert_eq!(spec.answer("post", "/", r, 200).await["status"], expected);
    }
    let minimal: Value = serde_json::from_slice(&fixture("dynatrace/minimal-open.json")).unwrap();
    spec.request("post", "/hooks/dynatrace", &minimal);
    let r = webhook("/hooks/dynatrace")
        .body(minimal.to_string())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/hooks/dynatrace", r, 200).await;
    let r = c
        .post(hub.url("/"))
        .basic_auth(USER, Some("wrong"))
        .body(minimal.to_string())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/", r, 401).await;
    let r = webhook("/").body("{not json").send().await.unwrap();
    spec.answer("post", "/", r, 400).await;
    let r = webhook("/hooks/dynatrace")
        .body(r#"{"State": "OPEN"}"#)
        .send()
        .await
        .unwrap();
    spec.answer("post", "/hooks/dynatrace", r, 422).await;
    let r = c
        .post(hub.url("/"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("State=OPEN")
        .send()
        .await
        .unwrap();
    spec.answer("post", "/", r, 415).await;
    let r = webhook("/")
        .body(format!(r#"{{"x": "{}"}}"#, "$(touch x)".repeat(10_000)))
        .send()
        .await
        .unwrap();
    spec.answer("post", "/", r, 413).await;

    let am: Value = serde_json::from_slice(&fixture("alertmanager/webhook-firing.json")).unwrap();
    spec.request("post", "/hooks/alertmanager", &am);
    let alertmanager = |token: Option<&str>, body: String| {
        let r = c
            .post(hub.url("/hooks/alertmanager"))
            .header("content-type", "application/json")
            .body(body);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    let r = alertmanager(Some(AM_TOKEN), am.to_string())
        .send()
        .await
        .unwrap();
    let stored = spec.answer("post", "/hooks/alertmanager", r, 200).await;
    assert_eq!(stored["status"], "stored");
    let r = alertmanager(None, am.to_string()).send().await.unwrap();
    spec.answer("post", "/hooks/alertmanager", r, 401).await;
    let r = alertmanager(
        Some(AM_TOKEN),
        r#"{"version": "4", "alerts": "<script>"}"#.into(),
    )
    .send()
    .await
    .unwrap();
    spec.answer("post", "/hooks/alertmanager", r, 422).await;

    for (template, file) in [
        ("/v2/enqueue", "pagerduty/alertmanager-trigger.json"),
        ("/hooks/pagerduty", "pagerduty/alertmanager-resolve.json"),
    ] {
        let event: Value = serde_json::from_slice(&fixture(file)).unwrap();
        spec.request("post", template, &event);
        let r = c
            .post(hub.url(template))
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        let answer = spec.answer("post", template, r, 202).await;
        assert_eq!(answer["status"], "success");
    }
    for (body, shape) in [
        (
            json!({"routing_key": "0123456789abcdef0123456789abcdef", "event_action": "trigger"})
                .to_string(),
            "invalid event",
        ),
        ("../../etc/passwd".to_string(), "invalid event"),
    ] {
        let r = c
            .post(hub.url("/v2/enqueue"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            spec.answer("post", "/v2/enqueue", r, 400).await["status"],
            shape
        );
    }

    let alarm: Value = serde_json::from_slice(&fixture("monasca/alarm.json")).unwrap();
    spec.request("post", "/hooks/monasca", &alarm);
    let monasca = |template: &str, token: &str, body: String| {
        c.post(hub.url(template))
            .header("content-type", "application/json")
            .header("X-Auth-Token", token)
            .body(body)
    };
    let r = monasca("/hooks/monasca", MONASCA_TOKEN, alarm.to_string())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/hooks/monasca", r, 200).await;
    let r = monasca("/openstack/alerts", "wrong", alarm.to_string())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/openstack/alerts", r, 401).await;

    let cloudstack = |signature: Option<&str>| {
        let mut r = c
            .post(hub.url("/hooks/cloudstack"))
            .body(cs["body"].as_str().unwrap().to_string());
        for (k, v) in cs["headers"].as_object().unwrap() {
            if k != "X-CS-Signature" {
                r = r.header(k.as_str(), v.as_str().unwrap());
            }
        }
        match signature {
            Some(s) => r.header("X-CS-Signature", s),
            None => r,
        }
    };
    spec.request(
        "post",
        "/hooks/cloudstack",
        &cs["body"].as_str().unwrap().parse().unwrap(),
    );
    let r = cloudstack(cs["x_cs_signature"].as_str())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/hooks/cloudstack", r, 200).await;
    let r = cloudstack(Some("bm90IGl0")).send().await.unwrap();
    spec.answer("post", "/hooks/cloudstack", r, 401).await;

    let ucloud: Value = serde_json::from_slice(&fixture("ucloud/alarm.json")).unwrap();
    spec.request("post", "/hooks/ucloud", &ucloud);
    for (body, status, code) in [
        (ucloud.to_string(), 200, 0),
        ("{}".to_string(), 422, 422),
        ("<script>".to_string(), 400, 400),
    ] {
        let r = c
            .post(hub.url("/hooks/ucloud"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let answer = spec.answer("post", "/hooks/ucloud", r, status).await;
        assert_eq!(answer["RetCode"], code);
    }

    // --- Opsgenie's Alert API, under Opsgenie's paths and hub's, with its notes and pings.
    let genie = |m: M, path: &str, key: Option<&str>| {
        let r = c.request(m, hub.url(path));
        match key {
            Some(k) => r.header("authorization", format!("GenieKey {k}")),
            None => r,
        }
    };
    let genie_json = |path: &str, body: String| {
        genie(M::POST, path, Some(GENIE_KEY))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let create: Value = serde_json::from_slice(&fixture("opsgenie/01-create.json")).unwrap();
    let minimal: Value =
        serde_json::from_slice(&fixture("opsgenie/02-create-minimal.json")).unwrap();
    let acted: Value = serde_json::from_slice(&fixture("opsgenie/06-acknowledge.json")).unwrap();
    let noted: Value = serde_json::from_slice(&fixture("opsgenie/07-add-note.json")).unwrap();
    spec.request("post", "/v2/alerts", &create);
    spec.request("post", "/hooks/opsgenie/v2/alerts", &minimal);
    for prefix in ["", "/hooks/opsgenie"] {
        spec.request(
            "post",
            &format!("{prefix}/v2/alerts/{{identifier}}/acknowledge"),
            &acted,
        );
        spec.request(
            "post",
            &format!("{prefix}/v2/alerts/{{identifier}}/notes"),
            &noted,
        );
    }
    let r = genie_json("/v2/alerts", create.to_string()).await.unwrap();
    let taken = spec.answer("post", "/v2/alerts", r, 202).await;
    assert_eq!(taken["result"], "Request will be processed");
    // Created without an alias: the answer's request id names the alert.
    let r = genie_json("/hooks/opsgenie/v2/alerts", minimal.to_string())
        .await
        .unwrap();
    let taken = spec
        .answer("post", "/hooks/opsgenie/v2/alerts", r, 202)
        .await;
    let unnamed = taken["requestId"].as_str().unwrap().to_string();
    for (prefix, id, kind) in [
        ("", GENIE_ALIAS, "alias"),
        ("/hooks/opsgenie", unnamed.as_str(), "id"),
    ] {
        for (verb, body) in [("acknowledge", &acted), ("notes", &noted)] {
            let r = genie_json(
                &format!("{prefix}/v2/alerts/{id}/{verb}?identifierType={kind}"),
                body.to_string(),
            )
            .await
            .unwrap();
            let template = format!("{prefix}/v2/alerts/{{identifier}}/{verb}");
            spec.answer("post", &template, r, 202).await;
        }
    }
    // A close with no body; the alert created without an alias stays open, in its group.
    for prefix in ["", "/hooks/opsgenie"] {
        let path = format!("{prefix}/v2/alerts/{GENIE_ALIAS}/close?identifierType=alias");
        let r = genie(M::POST, &path, Some(GENIE_KEY)).send().await.unwrap();
        let template = format!("{prefix}/v2/alerts/{{identifier}}/close");
        spec.answer("post", &template, r, 202).await;
    }
    // Pings, by every method Opsgenie takes; for a heartbeat the config has not; without a key.
    for prefix in ["", "/hooks/opsgenie"] {
        let template = format!("{prefix}/v2/heartbeats/{{name}}/ping");
        for m in [M::GET, M::POST, M::PUT, M::PATCH] {
            let method = m.as_str().to_lowercase();
            let ping = |name: &str, key| {
                genie(
                    m.clone(),
                    &format!("{prefix}/v2/heartbeats/{name}/ping"),
                    key,
                )
                .send()
            };
            let r = ping("nightly", Some(GENIE_KEY)).await.unwrap();
            let pong = spec.answer(&method, &template, r, 202).await;
            assert_eq!(pong["result"], "PONG - Heartbeat received");
            let r = ping("..%2Fnope", Some(GENIE_KEY)).await.unwrap();
            let refused = spec.answer(&method, &template, r, 404).await;
            assert!(
                refused["message"].as_str().unwrap().contains("heartbeat"),
                "{refused}"
            );
            let r = ping("nightly", None).await.unwrap();
            spec.answer(&method, &template, r, 401).await;
        }
    }
    // No key, or a wrong one: hub's 401, whatever the request.
    for prefix in ["", "/hooks/opsgenie"] {
        for (template, key) in [
            ("/v2/alerts", None),
            ("/v2/alerts/{identifier}/close", Some("wrong")),
            ("/v2/alerts/{identifier}/acknowledge", None),
            ("/v2/alerts/{identifier}/notes", Some("wrong")),
        ] {
            let path = format!("{prefix}{}", template.replace("{identifier}", "x"));
            let r = genie(M::POST, &path, key)
                .header("content-type", "application/json")
                .body(minimal.to_string())
                .send()
                .await
                .unwrap();
            spec.answer("post", &format!("{prefix}{template}"), r, 401)
                .await;
        }
    }
    // Requests Opsgenie refuses, refused in its shape: 422 with the errors by field.
    let huge = json!({"message": "m", "note": "$(touch x)".repeat(8_000)}).to_string();
    for (template, path, body, status, field) in [
        (
            "/v2/alerts",
            "/v2/alerts",
            r#"{"message": "m", "priority": "P9"}"#.to_string(),
            422,
            Some("priority"),
        ),
        ("/v2/alerts", "/v2/alerts", "[1, 2]".to_string(), 422, None),
        (
            "/hooks/opsgenie/v2/alerts",
            "/hooks/opsgenie/v2/alerts",
            "{not json".to_string(),
            400,
            None,
        ),
        ("/v2/alerts", "/v2/alerts", huge.clone(), 413, None),
        (
            "/v2/alerts/{identifier}/close",
            "/v2/alerts/x/close?identifierType=name",
            "{}".to_string(),
            422,
            Some("identifierType"),
        ),
        (
            "/hooks/opsgenie/v2/alerts/{identifier}/close",
            "/hooks/opsgenie/v2/alerts/a%0Ab/close",
            "{}".to_string(),
            422,
            Some("identifier"),
        ),
        (
            "/v2/alerts/{identifier}/acknowledge",
            "/v2/alerts/x/acknowledge",
            r#"{"user": 7}"#.to_string(),
            422,
            Some("user"),
        ),
        (
            "/hooks/opsgenie/v2/alerts/{identifier}/acknowledge",
            "/hooks/opsgenie/v2/alerts/x/acknowledge",
            "<script>".to_string(),
            400,
            None,
        ),
        (
            "/v2/alerts/{identifier}/notes",
            "/v2/alerts/x/notes",
            r#"{"user": "u"}"#.to_string(),
            422,
            Some("note"),
        ),
        (
            "/v2/alerts/{identifier}/notes",
            "/v2/alerts/x/notes",
            "{".to_string(),
            400,
            None,
        ),
        (
            "/hooks/opsgenie/v2/alerts/{identifier}/notes",
            "/hooks/opsgenie/v2/alerts/x/notes",
            huge,
            413,
            None,
        ),
    ] {
        let r = genie_json(path, body).await.unwrap();
        let refused = spec.answer("post", template, r, status).await;
        assert!(refused["message"].is_string(), "{path}: {refused}");
        if let Some(field) = field {
            assert!(refused["errors"][field].is_string(), "{path}: {refused}");
        }
    }
    for (template, path) in [
        ("/v2/alerts", "/v2/alerts"),
        (
            "/hooks/opsgenie/v2/alerts/{identifier}/notes",
            "/hooks/opsgenie/v2/alerts/x/notes",
        ),
    ] {
        let r = genie(M::POST, path, Some(GENIE_KEY))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("message=m&note=n")
            .send()
            .await
            .unwrap();
        spec.answer("post", template, r, 415).await;
    }

    // Past the source's rate: hub's own 429 with Retry-After, for every request of the minute.
    let (_limited_dir, limited) = support::start(json!({
        "sources": {"opsgenie": {"api_keys": [GENIE_KEY], "rate_limit_per_minute": 1}}
    }));
    let alert = json!({"message": "m", "note": "n"}).to_string();
    for (m, template, path, status) in [
        (M::POST, "/v2/alerts", "/v2/alerts", 202),
        (M::POST, "/v2/alerts", "/v2/alerts", 429),
        (
            M::POST,
            "/hooks/opsgenie/v2/alerts/{identifier}/acknowledge",
            "/hooks/opsgenie/v2/alerts/x/acknowledge",
            429,
        ),
        (
            M::POST,
            "/v2/alerts/{identifier}/notes",
            "/v2/alerts/x/notes",
            429,
        ),
        (
            M::GET,
            "/v2/heartbeats/{name}/ping",
            "/v2/heartbeats/nightly/ping",
            429,
        ),
    ] {
        let method = m.as_str().to_lowercase();
        let mut r = c
            .request(m.clone(), limited.url(path))
            .header("authorization", format!("GenieKey {GENIE_KEY}"));
        if m == M::POST {
            r = r
                .header("content-type", "application/json")
                .body(alert.clone());
        }
        let r = r.send().await.unwrap();
        let answer = spec.answer(&method, template, r, status).await;
        if status == 429 {
            assert_eq!(answer["error"], "rate_limited", "{answer}");
        }
    }

    // A source not enabled: 404, in the source's own shape where it has one.
    let (_plain_dir, plain) = support::start(json!({}));
    for (template, body) in [
        ("/hooks/alertmanager", am.to_string()),
        ("/hooks/ucloud", ucloud.to_string()),
        ("/hooks/pagerduty", "{}".to_string()),
    ] {
        let r = c
            .post(plain.url(template))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        spec.answer("post", template, r, 404).await;
    }
    for (m, template, path) in [
        (M::POST, "/v2/alerts", "/v2/alerts"),
        (
            M::POST,
            "/hooks/opsgenie/v2/alerts/{identifier}/close",
            "/hooks/opsgenie/v2/alerts/x/close",
        ),
        (
            M::POST,
            "/v2/alerts/{identifier}/notes",
            "/v2/alerts/x/notes",
        ),
        (
            M::PUT,
            "/hooks/opsgenie/v2/heartbeats/{name}/ping",
            "/hooks/opsgenie/v2/heartbeats/nightly/ping",
        ),
    ] {
        let method = m.as_str().to_lowercase();
        let r = c
            .request(m, plain.url(path))
            .header("authorization", format!("GenieKey {GENIE_KEY}"))
            .send()
            .await
            .unwrap();
        let refused = spec.answer(&method, template, r, 404).await;
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("sources.opsgenie"),
            "{refused}"
        );
    }

    // --- Heartbeats.
    let r = webhook("/heartbeats/nightly").send().await.unwrap();
    spec.answer("post", "/heartbeats/{name}", r, 200).await;
    let r = webhook("/heartbeats/..%2Fnope").send().await.unwrap();
    spec.answer("post", "/heartbeats/{name}", r, 404).await;
    let r = c.post(hub.url("/heartbeats/nightly")).send().await.unwrap();
    spec.answer("post", "/heartbeats/{name}", r, 401).await;

    // The run of P-31337 and the escalation of the alarm, for the pages of both to show.
    eventually("the page ran", async || {
        runs(dir.path())
            .await
            .iter()
            .any(|r| r.action == "page" && r.status == "succeeded")
    })
    .await;
    eventually("the alarm escalating", async || {
        let r = as_person("vi", M::GET, &hub, &format!("/api/problems/{ALARM}"))
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default();
        v["escalation"]["state"] == "open" && v["escalation"]["steps"][0]["runs"][0].is_object()
    })
    .await;

    // --- The API's reads, as the viewer.
    let get = |path: &str| as_person("vi", M::GET, &hub, path).send();
    let r = get("/api/openapi.json").await.unwrap();
    let served = spec.answer("get", "/api/openapi.json", r, 200).await;
    assert_eq!(served, spec.doc, "the document served is the file");
    let r = client()
        .get(hub.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    spec.answer("get", "/api/openapi.json", r, 401).await;
    let r = get("/api/problems").await.unwrap();
    let list = spec.answer("get", "/api/problems", r, 200).await;
    assert!(list["problems"].as_array().unwrap().len() >= 5, "{list}");
    for bad in [
        "/api/problems?before=%3Cscript%3E",
        "/api/problems?page=401",
    ] {
        let r = get(bad).await.unwrap();
        spec.answer("get", "/api/problems", r, 400).await;
    }
    for id in ["P-31337", ALARM] {
        let r = get(&format!("/api/problems/{id}")).await.unwrap();
        spec.answer("get", "/api/problems/{id}", r, 200).await;
    }
    let r = get("/api/problems/nope").await.unwrap();
    spec.answer("get", "/api/problems/{id}", r, 404).await;
    let r = get("/api/problems/P-1?source=%24(touch%20x)")
        .await
        .unwrap();
    spec.answer("get", "/api/problems/{id}", r, 400).await;

    // --- Groups: Opsgenie's problems, grouped by their route (once it has routed them).
    let groups = async |path: &str| -> Value {
        let r = get(path).await.unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default()
    };
    let holding = |listed: &Value| -> Option<Value> {
        listed["groups"].as_array()?.iter().find_map(|g| {
            let members = g["members"].as_array()?;
            members
                .iter()
                .any(|m| m["problem_id"] == unnamed.as_str())
                .then(|| g.clone())
        })
    };
    eventually("the group of the open Opsgenie alert", async || {
        holding(&groups("/api/groups").await).is_some()
    })
    .await;
    let r = get("/api/groups").await.unwrap();
    let listed = spec.answer("get", "/api/groups", r, 200).await;
    let group = holding(&listed).unwrap();
    assert_eq!(
        (group["route"].as_str(), group["key"].as_str()),
        (Some("routes[2]"), Some("source=opsgenie")),
        "{group:#}"
    );
    let r = get("/api/groups?state=open").await.unwrap();
    let open = spec.answer("get", "/api/groups", r, 200).await;
    assert!(holding(&open).is_some(), "{open:#}");
    let r = get("/api/groups?state=all").await.unwrap();
    spec.answer("get", "/api/groups", r, 200).await;
    let r = get("/api/groups?state=%3Cscript%3E").await.unwrap();
    spec.answer("get", "/api/groups", r, 400).await;
    let r = client().get(hub.url("/api/groups")).send().await.unwrap();
    spec.answer("get", "/api/groups", r, 401).await;
    let r = get(&format!("/api/groups/{}", group["id"])).await.unwrap();
    let one = spec.answer("get", "/api/groups/{id}", r, 200).await;
    assert_eq!(one["id"], group["id"]);
    for nope in ["999999", "nope", "1%20OR%201=1"] {
        let r = get(&format!("/api/groups/{nope}")).await.unwrap();
        spec.answer("get", "/api/groups/{id}", r, 404).await;
    }
    let r = client()
        .get(hub.url(&format!("/api/groups/{}", group["id"])))
        .send()
        .await
        .unwrap();
    spec.answer("get", "/api/groups/{id}", r, 401).await;
    let r = get("/api/feed?relative=week").await.unwrap();
    let feed = spec.answer("get", "/api/feed", r, 200).await;
    assert_eq!(feed["problems"][0]["received_by_hub"], true);
    let r = get("/api/feed?relative=fortnight").await.unwrap();
    spec.answer("get", "/api/feed", r, 400).await;
    let r = client()
        .get(plain.url("/api/feed"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    spec.answer("get", "/api/feed", r, 502).await;
    let r = get("/api/stats").await.unwrap();
    let stats = spec.answer("get", "/api/stats", r, 200).await;
    assert!(stats["sources"].as_array().unwrap().len() >= 5, "{stats}");
    let r = get("/api/whoami").await.unwrap();
    assert_eq!(
        spec.answer("get", "/api/whoami", r, 200).await["role"],
        "viewer"
    );
    let r = get("/api/oncall").await.unwrap();
    spec.answer("get", "/api/oncall", r, 200).await;
    let r = get("/api/oncall?at=%3Cscript%3E").await.unwrap();
    spec.answer("get", "/api/oncall", r, 400).await;
    let r = get("/api/oncall?schedule=..%2Fetc").await.unwrap();
    spec.answer("get", "/api/oncall", r, 404).await;
    let r = get("/metrics").await.unwrap();
    let metrics = spec.answer("get", "/metrics", r, 200).await;
    assert!(metrics.as_str().unwrap().contains("hub_store_healthy 1"));
    let r = client().get(hub.url("/healthz")).send().await.unwrap();
    spec.answer("get", "/healthz", r, 200).await;

    // --- Silences, as the responder.
    let new_silence = json!({"matchers": ["tag=env:prod"], "duration": "2h",
                             "comment": "patching <b>web</b>"});
    spec.request("post", "/api/silences", &new_silence);
    let silence = |who: &str, body: &Value| {
        with_json(as_person(who, M::POST, &hub, "/api/silences"), body).send()
    };
    let r = silence("ana", &new_silence).await.unwrap();
    let made = spec.answer("post", "/api/silences", r, 201).await;
    let id = made["id"].as_str().unwrap().to_string();
    let r = silence("ana", &json!({"matchers": ["tag=x"], "comment": "no end"}))
        .await
        .unwrap();
    spec.answer("post", "/api/silences", r, 400).await;
    let r = silence("vi", &new_silence).await.unwrap();
    spec.answer("post", "/api/silences", r, 403).await;
    let r = as_person("ana", M::POST, &hub, "/api/silences")
        .body(new_silence.to_string())
        .send()
        .await
        .unwrap();
    spec.answer("post", "/api/silences", r, 415).await;
    let huge = json!({"matchers": ["tag=x"], "duration": "1h", "comment": "x".repeat(20_000)});
    let r = silence("ana", &huge).await.unwrap();
    spec.answer("post", "/api/silences", r, 413).await;
    let r = get("/api/silences").await.unwrap();
    let listed = spec.answer("get", "/api/silences", r, 200).await;
    assert_eq!(listed["maintenance"][0]["name"], "sunday-patching");
    let expire =
        |id: &str| as_person("ana", M::DELETE, &hub, &format!("/api/silences/{id}")).send();
    let r = expire(&id).await.unwrap();
    spec.answer("delete", "/api/silences/{id}", r, 200).await;
    let r = expire(&id).await.unwrap();
    spec.answer("delete", "/api/silences/{id}", r, 409).await;
    let r = expire("nope").await.unwrap();
    spec.answer("delete", "/api/silences/{id}", r, 404).await;

    // --- Schedules and overrides.
    let r = get("/api/schedules/primary/overrides").await.unwrap();
    spec.answer("get", "/api/schedules/{name}/overrides", r, 200)
        .await;
    let r = get("/api/schedules/nope/overrides").await.unwrap();
    spec.answer("get", "/api/schedules/{name}/overrides", r, 404)
        .await;
    let shift = json!({"person": "vi", "from": "2030-01-07T09:00", "until": "2030-01-08T09:00"});
    spec.request("post", "/api/schedules/{name}/overrides", &shift);
    let add = |body: &Value| {
        with_json(
            as_person("ana", M::POST, &hub, "/api/schedules/primary/overrides"),
            body,
        )
        .send()
    };
    let r = add(&shift).await.unwrap();
    let made = spec
        .answer("post", "/api/schedules/{name}/overrides", r, 201)
        .await;
    let r = add(&json!({"person": "<script>", "from": "x", "until": "y"}))
        .await
        .unwrap();
    spec.answer("post", "/api/schedules/{name}/overrides", r, 400)
        .await;
    let r = add(&json!({"person": "vi"})).await.unwrap();
    spec.answer("post", "/api/schedules/{name}/overrides", r, 400)
        .await;
    let remove =
        |id: &str| as_person("ana", M::DELETE, &hub, &format!("/api/overrides/{id}")).send();
    let r = remove(made["id"].as_str().unwrap()).await.unwrap();
    spec.answer("delete", "/api/overrides/{id}", r, 200).await;
    let r = remove("nope").await.unwrap();
    spec.answer("delete", "/api/overrides/{id}", r, 404).await;

    // --- Tokens, as the admin; the calendar with one.
    let new_token = json!({"person": "vi", "role": "viewer", "expires": "90d"});
    spec.request("post", "/api/tokens", &new_token);
    let token = |who: &str, body: &Value| {
        with_json(as_person(who, M::POST, &hub, "/api/tokens"), body).send()
    };
    let r = token("root", &new_token).await.unwrap();
    let made = spec.answer("post", "/api/tokens", r, 201).await;
    let secret = made["token"].as_str().unwrap().to_string();
    let r = token("root", &json!({"person": "nobody"})).await.unwrap();
    spec.answer("post", "/api/tokens", r, 400).await;
    let r = token("ana", &new_token).await.unwrap();
    spec.answer("post", "/api/tokens", r, 403).await;
    let r = as_person("root", M::GET, &hub, "/api/tokens")
        .send()
        .await
        .unwrap();
    spec.answer("get", "/api/tokens", r, 200).await;
    let r = get("/api/tokens").await.unwrap();
    spec.answer("get", "/api/tokens", r, 403).await;
    let r = client()
        .get(hub.url("/api/whoami"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let me = spec.answer("get", "/api/whoami", r, 200).await;
    assert_eq!(me["token"], made["id"]);
    let calendar = |path: &str| client().get(hub.url(path)).send();
    let r = calendar(&format!("/schedules/primary.ics?token={secret}"))
        .await
        .unwrap();
    let ics = spec.answer("get", "/schedules/{file}", r, 200).await;
    assert!(ics.as_str().unwrap().starts_with("BEGIN:VCALENDAR"));
    let r = calendar("/schedules/primary.ics").await.unwrap();
    spec.answer("get", "/schedules/{file}", r, 401).await;
    let r = calendar(&format!("/schedules/nope.ics?token={secret}"))
        .await
        .unwrap();
    spec.answer("get", "/schedules/{file}", r, 404).await;
    let revoke = |id: &str| as_person("root", M::DELETE, &hub, &format!("/api/tokens/{id}")).send();
    let r = revoke(made["id"].as_str().unwrap()).await.unwrap();
    spec.answer("delete", "/api/tokens/{id}", r, 200).await;
    let r = revoke("nope").await.unwrap();
    spec.answer("delete", "/api/tokens/{id}", r, 404).await;

    let r = get("/api/audit?since=7d&limit=3").await.unwrap();
    let audit = spec.answer("get", "/api/audit", r, 200).await;
    assert_eq!(audit["audit"].as_array().unwrap().len(), 3);
    let r = get("/api/audit?since=yesterday").await.unwrap();
    spec.answer("get", "/api/audit", r, 400).await;

    // --- Replays and escalations, as the responder.
    let change = |path: &str| {
        as_person("ana", M::POST, &hub, path)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    let r = change("/api/problems/P-31337/replay").await.unwrap();
    spec.answer("post", "/api/problems/{id}/replay", r, 202)
        .await;
    let r = change("/api/problems/P-31337/replay?action=nope")
        .await
        .unwrap();
    spec.answer("post", "/api/problems/{id}/replay", r, 409)
        .await;
    let r = as_person("ana", M::POST, &hub, "/api/problems/P-31337/replay")
        .send()
        .await
        .unwrap();
    spec.answer("post", "/api/problems/{id}/replay", r, 415)
        .await;
    let r = change("/api/problems/nope/replay").await.unwrap();
    spec.answer("post", "/api/problems/{id}/replay", r, 404)
        .await;
    for verb in ["ack", "unack", "resolve"] {
        let template = format!("/api/problems/{{id}}/{verb}");
        let r = change(&format!("/api/problems/P-31337/{verb}"))
            .await
            .unwrap();
        spec.answer("post", &template, r, 409).await;
        let r = change(&format!("/api/problems/{ALARM}/{verb}"))
            .await
            .unwrap();
        spec.answer("post", &template, r, 200).await;
    }
    let r = as_person("vi", M::POST, &hub, &format!("/api/problems/{ALARM}/ack"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    spec.answer("post", "/api/problems/{id}/ack", r, 403).await;

    // --- Twilio and Slack: signed as they sign, and not.
    let fields = [
        ("MessageSid", "SM0123"),
        ("From", "+15550007777"),
        ("Body", "ACK 123456"),
    ];
    let url = "https://hub.example.com/twilio/sms";
    let text = |signature: Option<String>, content_type: &str| {
        let r = c
            .post(hub.url("/twilio/sms"))
            .header("content-type", content_type)
            .body(form(&fields));
        match signature {
            Some(s) => r.header("X-Twilio-Signature", s),
            None => r,
        }
        .send()
    };
    let signed = twilio_signature(TWILIO_TOKEN, url, &fields);
    let form_type = "application/x-www-form-urlencoded";
    let r = text(Some(signed.clone()), form_type).await.unwrap();
    spec.answer("post", "/twilio/sms", r, 200).await;
    let r = text(None, form_type).await.unwrap();
    spec.answer("post", "/twilio/sms", r, 403).await;
    let r = text(Some(signed), "application/json").await.unwrap();
    spec.answer("post", "/twilio/sms", r, 415).await;
    let click = |payload: &Value, signed: bool| {
        let body = form(&[("payload", &payload.to_string())]);
        let ts = now_secs().to_string();
        let r = c
            .post(hub.url("/slack/interactions"))
            .header("content-type", form_type);
        if signed {
            r.header(
                "X-Slack-Signature",
                slack_signature(SLACK_SECRET, &ts, &body),
            )
            .header("X-Slack-Request-Timestamp", ts)
        } else {
            r
        }
        .body(body)
        .send()
    };
    let r = click(&json!({"type": "shortcut"}), true).await.unwrap();
    assert_eq!(
        spec.answer("post", "/slack/interactions", r, 200).await,
        json!({})
    );
    let ack = crate::inbound::ack_click("U0NOBODY", &format!("monasca/{ALARM}"));
    let r = click(&ack, true).await.unwrap();
    let told = spec.answer("post", "/slack/interactions", r, 200).await;
    assert_eq!(told["response_type"], "ephemeral");
    let r = click(&ack, false).await.unwrap();
    spec.answer("post", "/slack/interactions", r, 403).await;

    // --- A reload, as the admin; refused from another site's page.
    let reload = as_person("root", M::POST, &hub, "/-/reload");
    let r = reload.try_clone().unwrap().send().await.unwrap();
    spec.answer("post", "/-/reload", r, 200).await;
    let r = reload
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    spec.answer("post", "/-/reload", r, 403).await;
    let r = as_person("ana", M::POST, &hub, "/-/reload")
        .send()
        .await
        .unwrap();
    spec.answer("post", "/-/reload", r, 403).await;

    // Every operation the document describes was called.
    let mut uncalled = Vec::new();
    for (template, item) in spec.doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !spec.called.contains(&(method.clone(), template.clone())) {
                uncalled.push(format!("{} {template}", method.to_uppercase()));
            }
        }
    }
    assert!(uncalled.is_empty(), "never called: {uncalled:?}");
}

//! Starts the real `hub` binary in a temporary folder and talks to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub const USER: &str = "dynatrace";
pub const PASSWORD: &str = "test-password-4f1c";

pub fn hub_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hub")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A config that binds a free loopback port, with `patch` merged over it.
pub fn config_with(patch: Value) -> Value {
    let mut base = json!({
        "dynatrace": { "tenant": "", "api_token": "" },
        "webhook": { "username": USER, "password": PASSWORD, "interface": "127.0.0.1", "port": 0 },
        "dir_received": "problems_received",
        "dir_sent": "problems_sent",
        "log_dir": "log",
        "log_file": "hub.log",
        "incident_notification": { "active": false, "exec_win": "", "exec_unix": "" },
        "sms_notification": { "active": false, "twilio_account": "", "twilio_token": "",
                              "twilio_number": "", "to_number": "" }
    });
    merge(&mut base, patch);
    base
}

/// Merges `patch` into `base`, objects key by key.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A `hub` command with no HUB_* variables inherited from the machine.
pub fn hub_command(dir: &Path) -> Command {
    let mut cmd = Command::new(hub_bin());
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("HUB_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub struct Hub {
    child: Option<Child>,
    pub dir: PathBuf,
    pub base_url: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Writes `config.json` into `dir` and starts hub there.
    pub fn start_in(dir: &Path, config: &Value, env: &[(&str, &str)]) -> Hub {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut cmd = hub_command(dir);
        cmd.arg("run")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start hub");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    // A text line or a JSON one (where the URL ends at the quote).
                    let url: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(url);
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let base_url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("hub did not start:\n{}", stderr.lock().unwrap());
            }
        };
        Hub {
            child: Some(child),
            dir: dir.to_path_buf(),
            base_url,
            stderr,
            reader: Some(reader),
        }
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to flush or clean up anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, as a service manager stops hub; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = child.wait().unwrap().code();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        code
    }

    pub fn received(&self) -> PathBuf {
        self.dir.join("problems_received")
    }

    /// Names of the files in `problems_received/`, sorted.
    pub fn received_files(&self) -> Vec<String> {
        list_files(&self.received())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn list_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".gitkeep")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Starts hub in a new temporary folder; keep the TempDir alive as long as the hub.
pub fn start(patch: Value) -> (tempfile::TempDir, Hub) {
    start_env(patch, &[])
}

pub fn start_env(patch: Value, env: &[(&str, &str)]) -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &config_with(patch), env);
    (dir, hub)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A POST with the right credentials and a JSON content type.
pub fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/json")
        .body(body)
}

/// A GET of the API as the viewer: the status and the JSON answer.
pub async fn get_json(hub: &Hub, path: &str) -> (u16, Value) {
    let r = client()
        .get(hub.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

/// A GET as the viewer: the body as text (a page, the metrics).
pub async fn get_text(hub: &Hub, path: &str) -> String {
    client()
        .get(hub.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `hub check-config` on `config` written in `dir`: the exit code and what it printed on stderr.
pub fn check_config(dir: &Path, config: &Value) -> (Option<i32>, String) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = hub_command(dir).arg("check-config").output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The store, opened read-only beside the running hub.
pub async fn db(dir: &Path) -> Db {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    Db(conn)
}

/// A read-only connection to a store, with rows read as tuples or single values.
pub struct Db(rusqlite::Connection);

impl Db {
    pub fn all<T: FromRow>(&self, sql: &str, params: impl rusqlite::Params) -> Vec<T> {
        let mut statement = self.0.prepare(sql).unwrap();
        let rows = statement.query_map(params, T::from_row).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    pub fn one<T: FromRow>(&self, sql: &str, params: impl rusqlite::Params) -> T {
        self.0.query_row(sql, params, T::from_row).unwrap()
    }

    pub fn optional<T: FromRow>(&self, sql: &str, params: impl rusqlite::Params) -> Option<T> {
        use rusqlite::OptionalExtension;
        self.0
            .query_row(sql, params, T::from_row)
            .optional()
            .unwrap()
    }
}

pub trait FromRow: Sized {
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Self>;
}

macro_rules! scalars {
    ($($t:ty),*) => {
        $(impl FromRow for $t {
            fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Self> {
                r.get(0)
            }
        })*
    };
}
scalars!(i64, bool, String, Vec<u8>);

macro_rules! tuples {
    ($(($($t:ident $i:tt),+)),*) => {
        $(impl<$($t: rusqlite::types::FromSql),+> FromRow for ($($t,)+) {
            fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Self> {
                Ok(($(r.get::<_, $t>($i)?,)+))
            }
        })*
    };
}
tuples!((A 0, B 1), (A 0, B 1, C 2), (A 0, B 1, C 2, D 3), (A 0, B 1, C 2, D 3, E 4), (A 0, B 1, C 2, D 3, E 4, F 5));

pub async fn count(dir: &Path) -> i64 {
    db(dir).await.one("SELECT COUNT(*) FROM notifications", [])
}

/// Asserts an error answer: status, JSON body with `error` and `detail`.
pub async fn expect_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/json")
    );
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// Waits (up to 30 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Writes an executable script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Lines of a file; none when it does not exist yet.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `(action, target_label, status, attempts, last_error)` of every run, oldest first.
pub async fn runs(dir: &Path) -> Vec<(String, String, String, i64, Option<String>)> {
    db(dir).await.all(
        "SELECT action, target_label, status, attempts, last_error FROM action_runs ORDER BY id",
        [],
    )
}

/// A helper process (Alertmanager, chromedriver) stopped when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `Response::json` needs reqwest's json feature; this keeps the dependency lean.
pub trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

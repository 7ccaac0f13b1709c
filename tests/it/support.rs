//! Starts the real `hub` binary in a temporary folder and talks to it over real HTTP.

use std::collections::BTreeMap;
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
    /// Writes `config.json` into `dir` and starts hub there, on the store of this pass (see
    /// [`with_store`]).
    ///
    /// On PostgreSQL a hub started again soon after a `kill -9` finds its instance name still
    /// taken by the one killed, whose heartbeat goes stale in a few seconds, and exits saying so
    /// (as a service manager restarting a crashed hub sees). Then it is started again until the
    /// name is free, as that manager would.
    pub fn start_in(dir: &Path, config: &Value, env: &[(&str, &str)]) -> Hub {
        write_config(dir, config);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Hub::try_start(dir, env) {
                Ok(hub) => return hub,
                Err(said)
                    if said.contains("another hub runs as instance")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(said) => panic!("hub did not start:\n{said}"),
            }
        }
    }

    /// Starts hub in `dir` on its `config.json`; what it said if it did not start.
    fn try_start(dir: &Path, env: &[(&str, &str)]) -> Result<Hub, String> {
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
                let _ = child.wait();
                let _ = reader.join();
                return Err(stderr.lock().unwrap().clone());
            }
        };
        Ok(Hub {
            child: Some(child),
            dir: dir.to_path_buf(),
            base_url,
            stderr,
            reader: Some(reader),
        })
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

/// Whether this is the PostgreSQL pass: with `HUB_TEST_STORE=postgres` every hub the suite starts
/// (and every command run beside it) uses a PostgreSQL database of its own instead of `hub.db`.
pub fn on_postgres() -> bool {
    match std::env::var("HUB_TEST_STORE").as_deref() {
        Err(_) | Ok("" | "sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("HUB_TEST_STORE={other}: expected sqlite or postgres"),
    }
}

/// Says that the test running is skipped in the PostgreSQL pass, and why: on stderr, and as a line
/// added to the file `HUB_TEST_SKIPPED` names, which `tools/test` lists after that pass (nextest
/// shows nothing a passing test printed).
pub fn skipped(why: &str) {
    let line = format!(
        "{}: {why}",
        std::thread::current().name().unwrap_or("a test")
    );
    eprintln!("skipped in the PostgreSQL pass: {line}");
    if let Some(list) = std::env::var_os("HUB_TEST_SKIPPED") {
        use std::io::Write;
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(list)
            .unwrap();
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

/// The PostgreSQL database of each folder a hub was started in: a hub started again there, and a
/// command run there, use the same one.
static DATABASES: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// `config` with the store of this pass: as it is on SQLite, or when it names a store itself (the
/// test is about that store); else with the PostgreSQL database of `dir`, made at first use.
pub fn with_store(dir: &Path, config: &Value) -> Value {
    let mut config = config.clone();
    if on_postgres() && config.pointer("/store/url").is_none() {
        let url = DATABASES
            .lock()
            .unwrap()
            .entry(dir.to_path_buf())
            .or_insert_with(crate::postgres::pg::shared_database)
            .clone();
        merge(&mut config, json!({"store": {"url": url}}));
    }
    config
}

/// Writes `config` as `dir/config.json`, on the store of this pass (see [`with_store`]).
pub fn write_config(dir: &Path, config: &Value) {
    std::fs::write(dir.join("config.json"), with_store(dir, config).to_string()).unwrap();
}

/// The store of the hub in `dir`: the one its `config.json` names, else the PostgreSQL database
/// this pass gave it (a test may have left a config that does not parse), else `hub.db`.
fn store_url(dir: &Path) -> String {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c.pointer("/store/url")?.as_str().map(str::to_string))
        .or_else(|| DATABASES.lock().unwrap().get(dir).cloned())
        .unwrap_or_else(|| {
            assert!(
                !on_postgres(),
                "the PostgreSQL pass reads hub.db in {}: start its hub with Hub::start_in, or \
                 write its config with write_config",
                dir.display()
            );
            "sqlite://hub.db".to_string()
        })
}

/// The store of the hub in `dir`, opened beside it (SQLite read-only).
pub async fn db(dir: &Path) -> Db {
    let url = store_url(dir);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        tokio::spawn(connection);
        return Db::Postgres(client);
    }
    let file = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(&url);
    let path = dir.join(file.split('?').next().unwrap_or_default());
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    Db::Sqlite { conn, path }
}

/// A connection to a hub's store, whichever it is. Queries are written once, with `$1`-style
/// parameters and SQL both stores take; rows are read by column name.
pub enum Db {
    Sqlite {
        conn: rusqlite::Connection,
        path: PathBuf,
    },
    Postgres(tokio_postgres::Client),
}

/// A query parameter.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl From<&str> for Param {
    fn from(s: &str) -> Param {
        Param::Text(s.to_string())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Param {
        Param::Text(s)
    }
}

impl From<i64> for Param {
    fn from(n: i64) -> Param {
        Param::Int(n)
    }
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Every row `sql` selects.
    pub async fn rows(&self, sql: &str, params: &[Param]) -> Vec<Row> {
        match self {
            Db::Sqlite { conn, .. } => {
                let mut statement = conn
                    .prepare(&sqlite_sql(sql))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let names: Vec<String> = statement
                    .column_names()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let mut rows = statement
                    .query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let mut all = Vec::new();
                while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{sql}: {e}")) {
                    let cells = (0..names.len())
                        .map(|i| sqlite_cell(row.get_ref(i).unwrap()))
                        .collect::<Vec<_>>();
                    all.push(Row(names.iter().cloned().zip(cells).collect()));
                }
                all
            }
            Db::Postgres(client) => {
                let values = postgres_values(params);
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v.as_ref()).collect();
                let rows = client
                    .query(sql, &refs)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter().map(postgres_row).collect()
            }
        }
    }

    /// The one row `sql` selects.
    pub async fn row(&self, sql: &str, params: &[Param]) -> Row {
        let mut rows = self.rows(sql, params).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows.remove(0)
    }

    /// The row `sql` selects, if any.
    pub async fn optional_row(&self, sql: &str, params: &[Param]) -> Option<Row> {
        let mut rows = self.rows(sql, params).await;
        assert!(rows.len() <= 1, "{sql}: {rows:?}");
        rows.pop()
    }

    /// `SELECT COUNT(*) FROM <from>`, e.g. `db.count("plans WHERE status = 'done'")`.
    pub async fn count(&self, from: &str) -> i64 {
        self.row(&format!("SELECT COUNT(*) AS n FROM {from}"), &[])
            .await
            .get("n")
    }

    /// Runs a statement that changes the store (SQLite: on a connection of its own that may
    /// write); the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Param]) -> u64 {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute(
                    &sqlite_sql(sql),
                    rusqlite::params_from_iter(params.iter().map(sqlite_value)),
                )
                .unwrap_or_else(|e| panic!("{sql}: {e}")) as u64
            }
            Db::Postgres(client) => {
                let values = postgres_values(params);
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v.as_ref()).collect();
                client
                    .execute(sql, &refs)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    /// Runs statements with no parameters and no rows (SQLite: on a connection that may write).
    pub async fn batch(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Db::Postgres(client) => client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

/// `$1`, `$2`… as SQLite numbers its parameters: `?1`, `?2`…
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(p: &Param) -> rusqlite::types::Value {
    match p {
        Param::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Param::Int(n) => rusqlite::types::Value::Integer(*n),
    }
}

fn sqlite_cell(v: rusqlite::types::ValueRef) -> Cell {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(n) => Cell::Int(n),
        ValueRef::Real(x) => Cell::Real(x),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
    }
}

fn postgres_values(params: &[Param]) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync> {
            match p {
                Param::Text(s) => Box::new(s.clone()),
                Param::Int(n) => Box::new(*n),
            }
        })
        .collect()
}

fn postgres_row(row: &tokio_postgres::Row) -> Row {
    use tokio_postgres::types::Type;
    let cells = row.columns().iter().enumerate().map(|(i, column)| {
        let ty = column.type_();
        let cell = if *ty == Type::BOOL {
            row.get::<_, Option<bool>>(i).map(Cell::Bool)
        } else if *ty == Type::INT2 {
            row.get::<_, Option<i16>>(i).map(|n| Cell::Int(n.into()))
        } else if *ty == Type::INT4 {
            row.get::<_, Option<i32>>(i).map(|n| Cell::Int(n.into()))
        } else if *ty == Type::INT8 {
            row.get::<_, Option<i64>>(i).map(Cell::Int)
        } else if *ty == Type::FLOAT8 {
            row.get::<_, Option<f64>>(i).map(Cell::Real)
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            row.get::<_, Option<String>>(i).map(Cell::Text)
        } else if *ty == Type::BYTEA {
            row.get::<_, Option<Vec<u8>>>(i).map(Cell::Bytes)
        } else {
            panic!("column {}: type {ty}; cast it in the query", column.name())
        };
        (column.name().to_string(), cell.unwrap_or(Cell::Null))
    });
    Row(cells.collect())
}

/// One value of a row, as either store gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// A row, its values read by column name.
#[derive(Debug, Clone)]
pub struct Row(Vec<(String, Cell)>);

impl Row {
    pub fn get<T: FromCell>(&self, column: &str) -> T {
        let (_, cell) = self
            .0
            .iter()
            .find(|(name, _)| name == column)
            .unwrap_or_else(|| panic!("no column {column} in {self:?}"));
        T::from_cell(cell).unwrap_or_else(|| {
            panic!(
                "column {column}: {cell:?} is no {}",
                std::any::type_name::<T>()
            )
        })
    }
}

/// What a [`Cell`] can be read as. A boolean is an integer on SQLite.
pub trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Option<i64> {
        match cell {
            Cell::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl FromCell for f64 {
    fn from_cell(cell: &Cell) -> Option<f64> {
        match cell {
            Cell::Real(x) => Some(*x),
            Cell::Int(n) => Some(*n as f64),
            _ => None,
        }
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Option<bool> {
        match cell {
            Cell::Bool(b) => Some(*b),
            Cell::Int(0) => Some(false),
            Cell::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Option<String> {
        match cell {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Option<Vec<u8>> {
        match cell {
            Cell::Bytes(b) => Some(b.clone()),
            Cell::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Option<Option<T>> {
        match cell {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// How many notifications the hub in `dir` stored.
pub async fn count(dir: &Path) -> i64 {
    db(dir).await.count("notifications").await
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

/// A run as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub action: String,
    pub target_label: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Waits until the hub in `dir` has routed every notification it stored (each one's plan is
/// done, its runs recorded): after that nothing more is run for what was sent before.
pub async fn all_routed(dir: &Path) {
    eventually("every notification routed", async || {
        db(dir).await.count("plans WHERE status != 'done'").await == 0
    })
    .await;
}

/// Every run of the hub in `dir`, oldest first.
pub async fn runs(dir: &Path) -> Vec<Run> {
    let rows = db(dir)
        .await
        .rows(
            "SELECT action, target_label, status, attempts, last_error FROM action_runs ORDER BY id",
            &[],
        )
        .await;
    rows.iter()
        .map(|r| Run {
            action: r.get("action"),
            target_label: r.get("target_label"),
            status: r.get("status"),
            attempts: r.get("attempts"),
            last_error: r.get("last_error"),
        })
        .collect()
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

/// Debian's Alertmanager (package prometheus-alertmanager), started in `dir` with `config` as its
/// alertmanager.yml on a free loopback port, stopped when the returned guard drops; ready (its
/// `/-/ready` answers) when this returns, with its base URL.
pub async fn alertmanager(dir: &Path, config: &str) -> (Running, String) {
    const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "this test needs Debian's prometheus-alertmanager package; tools/test installs it"
    );
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let running = Running(
        Command::new(ALERTMANAGER)
            .current_dir(dir)
            .args([
                "--config.file=alertmanager.yml",
                "--storage.path=am-data",
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager"),
    );
    let http = client();
    eventually("alertmanager to be ready", async || {
        http.get(format!("{url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    (running, url)
}

/// `hub hash-password` as an operator runs it: the password on standard input.
pub fn hash_password(dir: &Path, input: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = hub_command(dir)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A hash of `password` for a person's `password_hash`.
pub fn password_hash(dir: &Path, password: &str) -> String {
    let (code, hash, err) = hash_password(dir, password);
    assert_eq!(code, Some(0), "{err}");
    hash
}

/// The Python with the packages the tests read documents with (openapi-spec-validator,
/// opentelemetry-proto): `HUB_TEST_PYTHON` (`tools/test` makes a virtual environment with them
/// when the first python3 lacks them), else python3.
pub fn python() -> String {
    std::env::var("HUB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `python` (see [`python`]) with `args`: whether it succeeded, and what it said on stdout
/// and stderr. A missing package fails with how to install it (`package`, as pip names it).
pub fn run_python(args: &[&std::ffi::OsStr], package: &str) -> (bool, String) {
    let out = Command::new(python())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "{package} is missing: run tools/test, or pip install '{package}' (or set \
         HUB_TEST_PYTHON to a Python that has it)\n{said}"
    );
    (out.status.success(), said)
}

//! A real PostgreSQL for the tests: one server per test process, started on a free loopback port in
//! a temporary data folder and stopped when the process ends, however it ends (a watcher stops it
//! once the process is gone). As root it runs as the `postgres` user, since PostgreSQL refuses to
//! run as root. Each caller gets a database of its own.
//!
//! [`shared_database`] is for the end-to-end suite's PostgreSQL pass instead: one server for the
//! whole test run, shared by every test process (see there why).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Server {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// Extra server settings (TLS).
    options: String,
    /// Outlives the test process on purpose: it stops the server once the process is gone.
    _watcher: std::process::Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TLS_SERVER: OnceLock<(Server, PathBuf)> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The URL of a new, empty database on the tests' server.
pub fn database() -> String {
    create(SERVER.get_or_init(|| start("plain", false)))
}

/// A database on a second server that takes TLS connections only, with a certificate for
/// 127.0.0.1 from a CA made for the test; and that CA's certificate (PEM).
pub fn tls_database() -> (String, PathBuf) {
    let (server, ca) = TLS_SERVER.get_or_init(|| {
        let server = start("tls", true);
        let ca = server.dir.join("certs/ca.crt");
        (server, ca)
    });
    (create(server), ca.clone())
}

fn create(server: &Server) -> String {
    create_on(&server.bin, server.port)
}

/// A new database on the server at `port`: named by this process and a count, and, since a shared
/// server outlives its test processes and process ids come round again, by the time too.
fn create_on(bin: &Path, port: u16) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "t{}_{}_{nanos}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let status = Command::new(bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("run psql");
    assert!(status.success(), "cannot create database {name}");
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

/// The URL of a new, empty database on the server every process of this test run shares.
///
/// nextest runs each test in a process of its own, and a server of its own would cost each test
/// an initdb and a start (seconds, a few hundred times over). So the first test process to ask
/// starts one, under a lock, in a folder named by the process that runs the tests (the parent of
/// every test process: nextest, or cargo for `cargo test`), and leaves its port there for the
/// others; a watcher stops it and removes the folder once that runner is gone, however it ends.
/// Started by the tests themselves rather than by `tools/test`, a single test runs against
/// PostgreSQL with nothing more than `HUB_TEST_STORE=postgres cargo nextest run --test it NAME`.
pub fn shared_database() -> String {
    static SHARED: OnceLock<(PathBuf, u16)> = OnceLock::new();
    let (bin, port) = SHARED.get_or_init(start_shared);
    create_on(bin, *port)
}

fn start_shared() -> (PathBuf, u16) {
    // SAFETY: getppid has no preconditions and cannot fail.
    let runner = unsafe { libc::getppid() } as u32;
    let dir = std::env::temp_dir().join(format!("hub-pg-shared-{runner}"));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for as long as `lock` lives; closing it unlocks.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "{}", std::io::Error::last_os_error());
    }
    let bin = bin_dir();
    let port_file = dir.join("port");
    let started = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    if let Some(port) = started.filter(|&port| is_ready(&bin, port)) {
        return (bin, port);
    }
    // None yet (or one left by an earlier runner with the same process id): a new one.
    if is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    initdb(&bin, &data);
    let port = free_port();
    let server = Server {
        port,
        bin: bin.clone(),
        dir: dir.clone(),
        // A test server: what a crash of the machine would lose does not matter here.
        options: " -c fsync=off".to_string(),
        _watcher: watch(runner, &bin, &data, &dir),
    };
    server.pg_ctl(&["start", "-w", "-l", dir.join("log").to_str().unwrap()]);
    wait_ready(&bin, port, &dir);
    let partial = dir.join("port.partial");
    std::fs::write(&partial, port.to_string()).unwrap();
    std::fs::rename(&partial, &port_file).unwrap();
    (bin, port)
}

/// Runs `psql -c sql` on a database of [`database`].
pub fn psql(url: &str, sql: &str) -> String {
    let server = SERVER.get().expect("a database was made first");
    let out = Command::new(server.bin.join("psql"))
        .args(["-d", url, "-At", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Debian's PostgreSQL 15, or the newest installed.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql; tools/test does it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL server binary")
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// `argv` as the user PostgreSQL runs as.
fn as_postgres(argv: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    }
}

// Also the TLS tests' certificates.
#[path = "certs.rs"]
pub mod certs;

/// Makes a CA and a certificate for 127.0.0.1 signed by it, in `certs`; the server's copies go
/// to `dir` (its key readable by the server's user only, as PostgreSQL requires).
fn make_certificates(certs: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(certs);
    std::fs::create_dir_all(certs).unwrap();
    certs::make_ca(certs);
    certs::issue(certs, "server", None);
    for f in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(f), dir.join(f)).unwrap();
    }
    if is_root() {
        // The server reads its copies, and its watcher removes the whole folder at the end.
        for f in [
            dir.join("server.crt"),
            dir.join("server.key"),
            certs.to_path_buf(),
        ] {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres", f.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// A server in a folder of its own (removed with it when this process ends); with `tls`, one that
/// takes TLS connections only, its certificates in the folder's `certs/`.
fn start(kind: &str, tls: bool) -> Server {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!("hub-pg-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let data = dir.join("data");
    initdb(&bin, &data);
    let mut options = String::new();
    if tls {
        make_certificates(&dir.join("certs"), &dir);
        // TLS connections only: a plain one is refused.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        options = format!(
            " -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key",
            d = dir.display()
        );
    }
    let port = free_port();
    let server = Server {
        port,
        bin: bin.clone(),
        dir: dir.clone(),
        options,
        _watcher: watch(std::process::id(), &bin, &data, &dir),
    };
    server.pg_ctl(&["start", "-w", "-l", dir.join("log").to_str().unwrap()]);
    wait_ready(&bin, port, &dir);
    server
}

/// A new cluster in `data`, its superuser `postgres`, trusting every local connection.
fn initdb(bin: &Path, data: &Path) {
    let initdb = bin.join("initdb");
    let out = as_postgres(&[
        initdb.to_str().unwrap(),
        "-D",
        data.to_str().unwrap(),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
    ])
    .output()
    .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process that outlives this one only to stop the server and remove its folder once the
/// process `pid` is gone (this one, or the test runner for the shared server), even after a
/// `kill -9`. In a process group of its own, so that a runner stopping this process's group (as
/// nextest does with a test that timed out) does not stop the watcher with it.
fn watch(pid: u32, bin: &Path, data: &Path, dir: &Path) -> std::process::Child {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; \
         {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    use std::os::unix::process::CommandExt;
    as_postgres(&["sh", "-c", &script])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the PostgreSQL watcher")
}

impl Server {
    fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200{}",
            self.port,
            self.dir.display(),
            self.options
        );
        let mut argv = vec![
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &options,
        ];
        argv.extend_from_slice(args);
        let out = as_postgres(&argv)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Stops the tests' server at once (as a crash or a failover would), for `down` to pass, then
/// starts it again on the same port and data.
pub fn outage(down: Duration) {
    let server = SERVER.get().expect("a database was made first");
    server.pg_ctl(&["stop", "-m", "immediate"]);
    std::thread::sleep(down);
    server.pg_ctl(&[
        "start",
        "-w",
        "-l",
        server.dir.join("log").to_str().unwrap(),
    ]);
    wait_ready(&server.bin, server.port, &server.dir);
}

/// Whether the tests' server (of [`database`]) takes connections: not during an [`outage`].
pub fn is_up() -> bool {
    let server = SERVER.get().expect("a database was made first");
    is_ready(&server.bin, server.port)
}

fn is_ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_ready(bin: &Path, port: u16, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if is_ready(bin, port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "PostgreSQL did not start:\n{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

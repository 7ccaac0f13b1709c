//! `script`: runs a configured program once per impacted entity — never through a shell.
//!
//! The argv was split at config load; per-entity data goes in as whole argv elements, as `HUB_*`
//! environment variables and as the problem's JSON on stdin, so an entity named `$(rm -rf /)` is just
//! a string. The child gets a clean environment (hub's own secrets never reach it), its own process
//! group (so a timeout stops its children too), and a bounded capture of its output.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{bounded, Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{Problem, ReadContext, RunFuture, Target};
use crate::keys::{check_template, Issues, Section};
use crate::retry::TRANSIENT_EXIT;
use crate::template::Template;

/// `type: "script"`: `command` (a command line or a list), and the [`ScriptOptions`].
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// The program and its fixed arguments, split once at load; never handed to a shell.
    pub argv: Vec<String>,
    pub options: ScriptOptions,
}

impl ActionType for ScriptConfig {
    const TYPE: &'static str = "script";

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        read_script(s, ctx.base, issues)
    }

    fn build(&self, _: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Script::new(self)?))
    }
}

fn read_script(s: &mut Section, base: &Path, issues: &mut Issues) -> Option<ScriptConfig> {
    let key = s.path_of("command");
    let argv = match s.value("command") {
        None => {
            issues.push(
                key.clone(),
                "missing: the program to run (a string or a list)",
            );
            None
        }
        Some(Value::String(line)) => split_command(&key, line, base, issues),
        Some(Value::Array(_)) => match s.string_list("command", issues) {
            Some(argv) if !argv.is_empty() => resolve_program(&key, argv, base, issues),
            _ => {
                issues.push(key.clone(), "must name the program to run");
                None
            }
        },
        Some(_) => {
            issues.push(
                key.clone(),
                "expected a command line or a list of arguments",
            );
            None
        }
    };
    let options = read_options(s, base, issues);
    Some(options.with_argv(argv?))
}

/// A script's keys besides its command, shared by the `script` action and the sample's
/// `incident_notification` section.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Per-entity arguments (templates); `None` means the sample's one message argument.
    pub args: Option<Vec<String>>,
    pub workdir: Option<PathBuf>,
    pub timeout_secs: u64,
    pub kill_grace_secs: u64,
    pub max_output_bytes: usize,
    pub env: Vec<(String, String)>,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            args: None,
            workdir: None,
            timeout_secs: 30,
            kill_grace_secs: 5,
            max_output_bytes: 16 * 1024,
            env: Vec::new(),
        }
    }
}

impl ScriptOptions {
    pub(crate) fn with_argv(self, argv: Vec<String>) -> ScriptConfig {
        ScriptConfig {
            argv,
            options: self,
        }
    }
}

pub(crate) fn read_options(
    s: &mut Section,
    base: &Path,
    issues: &mut Issues,
) -> ScriptOptions {
    let defaults = ScriptOptions::default();
    let args = s.string_list("args", issues);
    for (i, t) in args.iter().flatten().enumerate() {
        check_template(&format!("{}[{i}]", s.path_of("args")), t, issues);
    }
    let workdir = s.string("workdir", issues).map(|w| base.join(w));
    if let Some(w) = &workdir {
        if !w.is_dir() {
            issues.push(
                s.path_of("workdir"),
                format!("not a folder: {}", w.display()),
            );
        }
    }
    let timeout_secs = s
        .integer("timeout_secs", 1, 86_400, issues)
        .unwrap_or(defaults.timeout_secs);
    let kill_grace_secs = s
        .integer("kill_grace_secs", 0, 600, issues)
        .unwrap_or(defaults.kill_grace_secs);
    let max_output_bytes = s
        .integer("max_output_bytes", 0, 16 * 1024 * 1024, issues)
        .map_or(defaults.max_output_bytes, |n| n as usize);
    let mut env = Vec::new();
    for (k, v) in s.entries("env", issues) {
        match v {
            Value::String(v) if !k.is_empty() && !k.contains('=') => env.push((k, v.clone())),
            _ => issues.push(
                format!("{}.{k}", s.path_of("env")),
                "expected a string value under a variable name",
            ),
        }
    }
    ScriptOptions {
        args,
        workdir,
        timeout_secs,
        kill_grace_secs,
        max_output_bytes,
        env,
    }
}

/// Splits a configured command line into argv the way a POSIX shell would quote it, without ever
/// running one. A relative program path is taken from the folder hub starts in, as the sample did.
pub(crate) fn split_command(key: &str, line: &str, base: &Path, issues: &mut Issues) -> Option<Vec<String>> {
    match shell_words::split(line) {
        Ok(argv) if argv.is_empty() => {
            issues.push(key, "must name the program to run");
            None
        }
        Ok(argv) => resolve_program(key, argv, base, issues),
        Err(e) => {
            issues.push(key, format!("cannot split the command line: {e}"));
            None
        }
    }
}

fn resolve_program(
    key: &str,
    mut argv: Vec<String>,
    base: &Path,
    issues: &mut Issues,
) -> Option<Vec<String>> {
    let program = Path::new(&argv[0]);
    let path_like = argv[0].contains('/') || argv[0].contains('\\');
    if !path_like {
        // The sample's users keep the script beside config.json and name it bare.
        let beside = base.join(program);
        if beside.is_file() {
            argv[0] = beside.to_string_lossy().into_owned();
        } else if !on_path(&argv[0]) {
            issues.push_missing_program(
                key,
                format!(
                    "program {:?} is neither in {} nor on PATH",
                    argv[0],
                    base.display()
                ),
            );
            return None;
        }
        return Some(argv);
    }
    let full = if program.is_absolute() {
        program.to_path_buf()
    } else {
        base.join(program)
    };
    if !full.is_file() {
        issues.push_missing_program(key, format!("program not found: {}", full.display()));
        return None;
    }
    argv[0] = full.to_string_lossy().into_owned();
    Some(argv)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Shown when a script's output could not be read within 2 s of its exit (a process outside its
/// group kept the pipe open).
const NOT_COLLECTED: &str = "[output not collected]";
/// Variables passed through from hub's own environment; everything else is left out.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub struct Script {
    argv: Vec<String>,
    args: Option<Vec<Template>>,
    workdir: Option<PathBuf>,
    timeout: Duration,
    grace: Duration,
    max_output: usize,
    env: Vec<(String, String)>,
}

/// Everything about one invocation, decided before anything runs.
struct Invocation {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

impl Script {
    pub fn new(c: &ScriptConfig) -> Result<Script, BuildError> {
        let args = match &c.options.args {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|t| Template::new(t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Script {
            argv: c.argv.clone(),
            args,
            workdir: c.options.workdir.clone(),
            timeout: Duration::from_secs(c.options.timeout_secs),
            grace: Duration::from_secs(c.options.kill_grace_secs),
            max_output: c.options.max_output_bytes,
            env: c.options.env.clone(),
        })
    }

    fn invocation(&self, job: &Job) -> Result<Invocation, ActionError> {
        let mut argv = self.argv.clone();
        match &self.args {
            None => argv.push(sample_message(job.problem, job.target.entity.as_ref())),
            Some(templates) => {
                let data = job.template_data();
                for t in templates {
                    argv.push(t.render(&data).map_err(|e| {
                        ActionError::permanent(format!("cannot render an argument: {e}"))
                    })?);
                }
            }
        }
        let mut env: Vec<(String, String)> = PASSED_THROUGH
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let p = job.problem;
        let entity = job.target.entity.clone().unwrap_or_default();
        for (k, v) in [
            ("HUB_SOURCE", p.source.to_string()),
            ("HUB_PROBLEM_ID", p.problem_id.clone()),
            ("HUB_DISPLAY_ID", p.display_id()),
            ("HUB_PID", p.pid.clone().unwrap_or_default()),
            ("HUB_STATE", p.state.clone()),
            ("HUB_TITLE", p.title.clone()),
            ("HUB_SEVERITY", p.severity.clone()),
            ("HUB_IMPACT", p.impact.clone()),
            ("HUB_TAGS", p.tags.join(", ")),
            ("HUB_ENTITY_ID", entity.id),
            ("HUB_ENTITY_NAME", entity.name),
            ("HUB_ENTITY_TYPE", entity.kind),
            ("HUB_RUN_ID", job.run_id.clone()),
            ("HUB_ATTEMPT", job.attempt.to_string()),
            ("HUB_THREAD_REF", job.thread_ref().unwrap_or_default().to_string()),
        ] {
            // A NUL cannot be passed in an environment; it is the one character that is dropped.
            env.push((k.to_string(), v.replace('\0', "")));
        }
        // OpenTelemetry's carrier for a child process: a script that traces continues the run's.
        if let Some(t) = &job.trace {
            env.push(("TRACEPARENT".into(), t.clone()));
        }
        // A group's send runs once for the group: its number and size, and the group (with each
        // member's problem id) on stdin instead of the one problem.
        let stdin = match &job.group {
            Some(g) => {
                env.push(("HUB_GROUP_ID".into(), g.id.to_string()));
                env.push(("HUB_GROUP_COUNT".into(), g.count.to_string()));
                let mut group = g.json();
                group["problem"] = serde_json::to_value(p).unwrap_or_default();
                serde_json::to_vec(&group).unwrap_or_default()
            }
            None => serde_json::to_vec(p).unwrap_or_default(),
        };
        env.extend(self.env.iter().cloned());
        for a in &mut argv {
            if a.contains('\0') {
                *a = a.replace('\0', "");
            }
        }
        Ok(Invocation { argv, env, stdin })
    }

    /// Waits for the script to exit; past its timeout it gets SIGTERM, and past the grace SIGKILL.
    async fn wait(
        &self,
        child: &mut tokio::process::Child,
        pid: Option<u32>,
    ) -> (std::io::Result<ExitStatus>, bool) {
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                signal_group(pid, Signal::Term);
                match tokio::time::timeout(self.grace, child.wait()).await {
                    Ok(status) => (status, true),
                    Err(_) => {
                        signal_group(pid, Signal::Kill);
                        (child.wait().await, true)
                    }
                }
            }
        }
    }

    async fn execute(&self, inv: Invocation) -> Result<Outcome, ActionError> {
        let started = Instant::now();
        let mut cmd = Command::new(&inv.argv[0]);
        cmd.args(&inv.argv[1..])
            .env_clear()
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(w) = &self.workdir {
            cmd.current_dir(w);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let message = format!("cannot start {}: {e}", inv.argv[0]);
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ActionError::permanent(message)
                }
                _ => ActionError::transient(message),
            }
        })?;
        let pid = child.id();
        // If this future is dropped (a shutdown past its deadline), the whole group goes with it.
        let _group = GroupGuard(pid);
        // The pipes are fed and read in this same future rather than in tasks of their own: a run
        // is then one task, however much its script writes.
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let data = inv.stdin;
        let feed = async move {
            // A script that does not read its stdin must not fail or hang because of it.
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&data).await;
            }
        };
        let io = async {
            let (_, out, err) = tokio::join!(
                feed,
                capture(stdout, self.max_output),
                capture(stderr, self.max_output)
            );
            (out, err)
        };
        let mut io = std::pin::pin!(io);
        let mut output = None;
        let exited = self.wait(&mut child, pid);
        let mut exited = std::pin::pin!(exited);
        let (status, timed_out) = loop {
            tokio::select! {
                done = &mut exited => break done,
                captured = &mut io, if output.is_none() => output = Some(captured),
            }
        };
        // Whatever the script left behind in its group goes with it, so the pipes close.
        signal_group(pid, Signal::Kill);
        let (stdout, stderr) = match output {
            Some(captured) => captured,
            None => tokio::time::timeout(Duration::from_secs(2), io)
                .await
                .unwrap_or_else(|_| (NOT_COLLECTED.into(), NOT_COLLECTED.into())),
        };
        let status = status.map_err(|e| ActionError::transient(format!("cannot wait: {e}")))?;
        let detail = json!({
            "exit_code": status.code(),
            "signal": signal_of(&status),
            "timed_out": timed_out,
            "duration_ms": started.elapsed().as_millis() as u64,
            "stdout": stdout,
            "stderr": stderr,
        });
        classify(status, timed_out, self.timeout, detail)
    }
}

fn classify(
    status: ExitStatus,
    timed_out: bool,
    timeout: Duration,
    detail: Value,
) -> Result<Outcome, ActionError> {
    if timed_out {
        return Err(ActionError::Transient {
            message: format!("timed out after {} s and was stopped", timeout.as_secs()),
            detail,
            retry_after: None,
        });
    }
    match status.code() {
        Some(0) => {
            let thread = detail
                .get("stdout")
                .and_then(Value::as_str)
                .and_then(printed_ref);
            Ok(Outcome::new("exit 0", detail).with_thread(thread))
        }
        Some(TRANSIENT_EXIT) => Err(ActionError::Transient {
            message: format!("exit {TRANSIENT_EXIT} (temporary failure)"),
            detail,
            retry_after: None,
        }),
        Some(code) => Err(ActionError::Permanent {
            message: format!("exit {code}"),
            detail,
        }),
        None => Err(ActionError::Permanent {
            message: format!("killed by signal {}", signal_of(&status).unwrap_or(0)),
            detail,
        }),
    }
}

impl Action for Script {
    fn targets(&self, problem: &Problem) -> Vec<Target> {
        if problem.entities.is_empty() {
            return vec![Target::whole()];
        }
        problem
            .entities
            .iter()
            .map(|e| Target {
                id: if e.id.is_empty() {
                    e.name.clone()
                } else {
                    e.id.clone()
                },
                label: if e.name.is_empty() {
                    e.id.clone()
                } else {
                    e.name.clone()
                },
                entity: Some(e.clone()),
            })
            .collect()
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(async move {
            let inv = self.invocation(job)?;
            self.execute(inv).await
        })
    }

    fn explain(&self, job: &Job) -> Value {
        match self.invocation(job) {
            Ok(inv) => json!({
                "argv": inv.argv,
                "env": inv.env.iter().filter(|(k, _)| k.starts_with("HUB_") || self.env.iter().any(|(e, _)| e == k))
                    .map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "workdir": self.workdir,
                "stdin": "the problem as JSON",
                "timeout_secs": self.timeout.as_secs(),
            }),
            Err(e) => json!({"error": e.to_string()}),
        }
    }
}

/// The sample's per-entity argument, with its swapped labels put right: the sample printed the
/// entity's severity as `impactLevel` and its impact as `severity`.
pub fn sample_message(p: &Problem, entity: Option<&super::Entity>) -> String {
    let mut msg = format!(
        "Problem [{}]: Status={}, Severity={}, ImpactLevel={}, Tags={}",
        p.display_id(),
        p.state,
        p.severity,
        p.impact,
        p.tags.join(", ")
    );
    if let Some(e) = entity {
        msg.push_str(&format!(
            " Entity details: Entity={}, impactLevel={}, severity={}, eventType={}",
            if e.name.is_empty() { &e.id } else { &e.name },
            e.impact,
            e.severity,
            e.event_type
        ));
    }
    msg
}

/// Reads a pipe to its end, keeping at most `max` bytes, so a chatty script cannot fill memory and
/// a full pipe cannot stall it.
/// What a script names as its thread: the last line `hub-ref: <value>` it printed (at most 1,024
/// bytes of value; a longer one is not a reference but output).
fn printed_ref(stdout: &str) -> Option<crate::actions::ThreadRef> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix(REF_LINE))
        .map(str::trim)
        .find(|v| !v.is_empty() && v.len() <= 1024)
        .map(|v| crate::actions::ThreadRef {
            reference: v.to_string(),
            url: (v.starts_with("https://") || v.starts_with("http://")).then(|| v.to_string()),
        })
}

/// The prefix of the stdout line that names a run's thread.
const REF_LINE: &str = "hub-ref:";

async fn capture<R: AsyncRead + Unpin>(pipe: Option<R>, max: usize) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    let mut text = bounded(&kept, max);
    if total > kept.len() {
        text.push_str(&format!("… [{} more bytes]", total - kept.len()));
    }
    text
}

/// Kills the script's process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::Kill);
    }
}

enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid else { return };
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) with a negative pid signals the process group the child leads (it was started
    // with process_group(0)); it touches no memory of ours.
    unsafe {
        libc::kill(-(pid as i32), sig);
    }
}

#[cfg(not(unix))]
fn signal_group(_pid: Option<u32>, _signal: Signal) {}

#[cfg(unix)]
fn signal_of(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn signal_of(_status: &ExitStatus) -> Option<i32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Entity;
    use crate::domain::Source;

    #[test]
    fn the_last_printed_ref_line_names_the_thread() {
        let out = "working\nhub-ref: INC-1\nmore\nhub-ref:  https://tickets.example/INC-2 \n";
        let t = printed_ref(out).unwrap();
        assert_eq!(t.reference, "https://tickets.example/INC-2");
        assert_eq!(t.url.as_deref(), Some("https://tickets.example/INC-2"));
        let t = printed_ref("hub-ref: javascript:alert(1)").unwrap();
        assert_eq!(t.url, None, "only http(s) becomes a link");
        assert!(printed_ref("no ref\nhub-ref:   \n").is_none());
        assert!(printed_ref(&format!("hub-ref: {}", "x".repeat(2000))).is_none());
    }

    #[test]
    fn the_sample_message_has_its_labels_right() {
        let p = Problem {
            source: Source::Dynatrace,
            problem_id: "2411021".into(),
            pid: None,
            state: "OPEN".into(),
            title: "t".into(),
            severity: "PERFORMANCE".into(),
            impact: "SERVICE".into(),
            tags: vec!["env:prod".into()],
            url: None,
            entities: vec![],
            received_at_ms: 0,
            notification: Value::Null,
            details: None,
        };
        let e = Entity {
            name: "web-1".into(),
            severity: "ERROR".into(),
            impact: "INFRASTRUCTURE".into(),
            event_type: "CPU_SATURATED".into(),
            ..Entity::default()
        };
        assert_eq!(
            sample_message(&p, Some(&e)),
            "Problem [P-2411021]: Status=OPEN, Severity=PERFORMANCE, ImpactLevel=SERVICE, \
             Tags=env:prod Entity details: Entity=web-1, impactLevel=INFRASTRUCTURE, \
             severity=ERROR, eventType=CPU_SATURATED"
        );
    }
}

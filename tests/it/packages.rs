//! What a package installs beside the binary: `hub completions`, `hub man`, and the Debian package
//! built by tools/deb, installed with dpkg into a scratch root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{self, hub_command};

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is its Debian package installed?)"));
    assert!(out.status.success(), "{cmd:?}\n{}", said(&out));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The commands `hub --help` lists (without `help`): what completions and pages must all know.
fn commands(dir: &Path) -> Vec<String> {
    let help = stdout(&run(hub_command(dir).arg("--help")));
    let names: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(
        names.len() > 15 && names.iter().any(|n| n == "completions"),
        "{help}"
    );
    names
}

/// A shell that reads no startup file of this machine's user.
fn shell(program: &str, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home)
        .env("ZDOTDIR", home);
    cmd
}

/// Loads the bash script as bash-completion would and completes `hub sil`.
fn bash_completes(script: &Path, home: &Path) {
    let out = run(shell("bash", home).args([
        "--norc",
        "--noprofile",
        "-c",
        r#"source "$1" && complete -p hub && COMP_WORDS=(hub sil) && COMP_CWORD=1 && _hub hub sil hub && printf '%s\n' "${COMPREPLY[@]}""#,
        "bash",
        script.to_str().unwrap(),
    ]));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().ends_with("-F _hub hub"),
        "complete -p hub: {text}"
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["silence"], "{text}");
}

#[test]
fn completion_scripts_load_in_their_shells_and_know_every_command() {
    sqlite_pass_only!("no store is involved: the first pass ran it as it is");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let names = commands(home);
    let mut scripts = Vec::new();
    for (sh, file) in [("bash", "hub.bash"), ("zsh", "_hub"), ("fish", "hub.fish")] {
        let out = run(hub_command(home).args(["completions", sh]));
        assert!(out.stderr.is_empty(), "{}", said(&out));
        let text = stdout(&out);
        for name in &names {
            assert!(text.contains(name.as_str()), "{sh}: {name} missing");
        }
        let path = home.join(file);
        std::fs::write(&path, text).unwrap();
        scripts.push(path);
    }

    bash_completes(&scripts[0], home);

    // zsh: it parses, and compinit then knows _hub as hub's completion.
    run(shell("zsh", home).arg("-n").arg(&scripts[1]));
    let out = run(shell("zsh", home).args([
        "-f",
        "-c",
        r#"autoload -U compinit && compinit -u -D && source "$1" && print -r -- "${_comps[hub]}""#,
        "zsh",
        scripts[1].to_str().unwrap(),
    ]));
    assert_eq!(stdout(&out).trim(), "_hub", "{}", said(&out));

    // fish: it parses, and completes `hub sil` with the command and what it does.
    run(shell("fish", home).arg("--no-execute").arg(&scripts[2]));
    let out = run(shell("fish", home).args([
        "--no-config",
        "-c",
        "source $argv[1]; complete -C 'hub sil'",
        scripts[2].to_str().unwrap(),
    ]));
    assert!(
        stdout(&out).starts_with("silence\tSilences: add one"),
        "{}",
        said(&out)
    );
}

#[test]
fn hub_completions_refuses_an_unknown_or_hostile_shell() {
    sqlite_pass_only!("no store is involved: the first pass ran it as it is");
    let dir = tempfile::tempdir().unwrap();
    for shell in ["tcsh", "$(touch pwned)", "../../bin/sh", "<script>"] {
        let out = hub_command(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{shell}: {}", said(&out));
        assert!(out.stdout.is_empty(), "{shell}: {}", said(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("invalid value '{shell}'"))
                && err.contains("[possible values: bash, elvish, fish, powershell, zsh]"),
            "{shell}: {err}"
        );
    }
    for missing in [&["completions"][..], &["completions", ""]] {
        let out = hub_command(dir.path()).args(missing).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", said(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("<SHELL>"), "{err}");
    }
    // Nothing ran, nothing was written.
    assert_eq!(support::list_files(dir.path()), Vec::<String>::new());

    // Output that cannot be written is an error with exit 1, not a panic.
    let out = hub_command(dir.path())
        .args(["completions", "bash"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: writing to standard output") && !err.contains("panicked"),
        "{err}"
    );
}

/// Renders a page as man does, with every groff warning on: none may be given.
fn renders(page: &Path) -> String {
    let out = run(Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8"));
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "{}: {warnings}", page.display());
    stdout(&out)
}

/// Every `hub-…(1)` a page refers to, as roff writes it (`hub\-silence\-add(1)`).
fn references(roff: &str) -> Vec<String> {
    roff.split("hub\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)"))
        .map(|(name, _)| format!("hub-{}", name.replace("\\-", "-")))
        .filter(|name| !name.contains(char::is_whitespace))
        .collect()
}

#[test]
fn the_manual_pages_render_and_cover_every_command() {
    sqlite_pass_only!("no store is involved: the first pass ran it as it is");
    let dir = tempfile::tempdir().unwrap();
    let names = commands(dir.path());
    let out = run(hub_command(dir.path()).arg("man"));
    assert!(out.stderr.is_empty(), "{}", said(&out));
    let roff = stdout(&out);
    assert!(
        roff.lines().any(|l| l.starts_with(".TH hub 1 ")),
        "no .TH: {roff}"
    );
    let listed = references(&roff);
    for name in &names {
        assert!(listed.contains(&format!("hub-{name}")), "{name} not listed");
    }
    let page = dir.path().join("hub.1");
    std::fs::write(&page, &roff).unwrap();
    let text = renders(&page);
    for part in ["SYNOPSIS", "SUBCOMMANDS", "hub-silence(1)", "FILES"] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    assert!(text.contains("/etc/hub/config.json") && text.contains("HUB_CONFIG"));

    // --dir: hub.1 (the same page) and one page per command, nested ones too, so that every page
    // hub.1 or another page names is there.
    let pages = dir.path().join("man/man1");
    let out = run(hub_command(dir.path()).args(["man", "--dir"]).arg(&pages));
    let written = support::list_files(&pages);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with(&format!("wrote {} pages into ", written.len())),
        "{}",
        said(&out)
    );
    assert_eq!(std::fs::read_to_string(pages.join("hub.1")).unwrap(), roff);
    for name in &names {
        assert!(written.contains(&format!("hub-{name}.1")), "{written:?}");
    }
    for file in &written {
        let text = std::fs::read_to_string(pages.join(file)).unwrap();
        for name in references(&text) {
            assert!(
                written.contains(&format!("{name}.1")),
                "{file} names {name}"
            );
        }
        renders(&pages.join(file));
    }
    let add = renders(&pages.join("hub-silence-add.1"));
    assert!(
        add.contains("--match") && add.contains("--duration"),
        "{add}"
    );

    // Bad input: a folder that cannot be made, an argument too many.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let out = hub_command(dir.path())
        .args(["man", "--dir"])
        .arg(blocker.join("man1"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: creating "),
        "{}",
        said(&out)
    );
    let out = hub_command(dir.path())
        .args(["man", "$(touch pwned)"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("pwned").exists());
}

/// Commands the maintainer scripts call that would change this machine (its users, dpkg's own
/// database, systemd, /var/lib/hub): each is replaced by a recorder that appends its arguments to
/// `calls`, answers as a fresh machine would (no user hub until useradd, no owner override until
/// one is added, the unit never enabled before), and changes nothing. `rm` removes only inside the
/// scratch root (dpkg cleans up its database with it). Nothing else is on the scripts' PATH but
/// the programs dpkg itself needs, so a command the scripts call that is not listed here fails
/// the install instead of running on the host.
fn recorders(dir: &Path, root: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("calls");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (calls, state, root) = (calls.display(), state.display(), root.display());
    let stubs = [
        ("getent", format!("[ -e '{state}/user' ]")),
        ("useradd", format!(": >'{state}/user'")),
        ("userdel", String::new()),
        ("install", String::new()),
        ("chown", String::new()),
        (
            "dpkg-statoverride",
            format!(
                r#"case "$1" in --list) [ -e '{state}/override' ] ;; --update) : >'{state}/override' ;; esac"#
            ),
        ),
        (
            "deb-systemd-helper",
            r#"case "$1" in debian-installed|--quiet) exit 1 ;; esac"#.to_string(),
        ),
        ("deb-systemd-invoke", String::new()),
        ("systemctl", String::new()),
        ("rm", String::new()),
    ];
    for (name, answer) in stubs {
        let record = format!(r#"echo "{name} $*" >>'{calls}'"#);
        let body = if name == "rm" {
            format!(
                r#"for a in "$@"; do case "$a" in -*|'{root}'/*) ;; *) {record}; exit 0 ;; esac; done
exec /bin/rm "$@""#
            )
        } else {
            format!("{record}\n{answer}")
        };
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    for needed in [
        "sh",
        "tar",
        "diff",
        "dpkg-deb",
        "dpkg-split",
        "ldconfig",
        "start-stop-daemon",
    ] {
        let real = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(needed))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{needed} (dpkg needs it)"));
        std::os::unix::fs::symlink(real, bin.join(needed)).unwrap();
    }
    bin
}

/// dpkg on the scratch root: its own database there, maintainer scripts run outside a chroot
/// (there is no system in the root to chroot into) with only the recorders on their PATH, and
/// libc6 taken as present (the scratch database lists no package but hub).
fn dpkg(root: &Path, bin: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/dpkg");
    cmd.env_clear()
        .env("PATH", bin)
        .arg(format!("--root={}", root.display()))
        .args([
            "--log=/dev/null",
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
        ]);
    cmd
}

fn take_calls(dir: &Path) -> Vec<String> {
    let path = dir.join("calls");
    let calls = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    calls.lines().map(str::to_string).collect()
}

/// Builds the .deb as tools/deb does, from this build's binary (`--no-build`, with a target folder
/// of its own so that target/release is never touched), installs it with dpkg in a scratch root,
/// and checks what the package put there and what its maintainer scripts do on install, upgrade,
/// remove and purge.
#[test]
fn the_debian_package_installs_the_unit_the_conffile_and_the_user() {
    sqlite_pass_only!("no store is involved: the first pass ran it as it is");
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(support::hub_bin(), target.join("release/hub")).unwrap();
    let deb = dir.path().join("hub.deb");
    let started = std::time::Instant::now();
    let mut build = Command::new(repo.join("tools/deb"));
    build
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target)
        .args(["--no-build", "--fast", "--output"])
        .arg(&deb)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUB_")) {
        build.env_remove(k);
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "tools/deb (cargo-deb: cargo install cargo-deb --locked; tools/test installs it)\n{}",
        said(&out)
    );
    eprintln!("tools/deb --no-build: {:?}", started.elapsed());

    let fields = stdout(&run(Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .args(["Package", "Depends", "Maintainer"])));
    assert!(
        fields.contains("Package: hub\n") && fields.contains("Depends: libc6"),
        "{fields}"
    );

    let root = dir.path().join("root");
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    let bin = recorders(dir.path(), &root);
    let systemd_runs = Path::new("/run/systemd/system").is_dir();

    // First install: the user, its folder, the config readable by hub; the unit neither enabled
    // nor started.
    run(dpkg(&root, &bin).arg("--install").arg(&deb));
    let calls = take_calls(dir.path());
    let expected = [
        "getent passwd hub",
        "useradd --system --user-group --home-dir /var/lib/hub --no-create-home \
         --shell /usr/sbin/nologin --comment hub, monitoring notifications hub",
        "install -d -m 0750 /var/lib/hub",
        "chown hub:hub /var/lib/hub",
        "dpkg-statoverride --list /etc/hub/config.json",
        "dpkg-statoverride --update --add root hub 0640 /etc/hub/config.json",
    ];
    assert_eq!(calls[..expected.len()], expected, "{calls:#?}");
    assert!(
        !calls
            .iter()
            .any(|c| c.contains(" enable ") || c.contains(" start ")),
        "{calls:#?}"
    );
    let status = std::fs::read_to_string(admin.join("status")).unwrap();
    assert!(status.contains("Status: install ok installed"), "{status}");

    // The binary, where the unit's bare ExecStart finds it.
    let hub = root.join("usr/bin/hub");
    let version = stdout(&run(Command::new(&hub).arg("--version")));
    assert_eq!(version.trim(), format!("hub {}", env!("CARGO_PKG_VERSION")));

    // The unit: contrib/hub.service as it is, pointing at the conffile; it passes verify with
    // its ExecStart resolved in the root.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/hub.service")).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo.join("contrib/hub.service")).unwrap()
    );
    assert!(unit.lines().any(|l| l == "ExecStart=hub run"));
    assert!(unit
        .lines()
        .any(|l| l == "Environment=HUB_CONFIG=/etc/hub/config.json"));
    let resolved = dir.path().join("hub.service");
    std::fs::write(
        &resolved,
        unit.replace(
            "ExecStart=hub run",
            &format!("ExecStart={} run", hub.display()),
        ),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&resolved));
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.trim().is_empty(), "{warned}");

    // The conffile: registered as one, readable by root (and hub, through the override) only,
    // and a config hub accepts as it is, listening on loopback only.
    let conffile = root.join("etc/hub/config.json");
    assert_eq!(
        std::fs::read_to_string(admin.join("info/hub.conffiles")).unwrap(),
        "/etc/hub/config.json\n"
    );
    assert!(
        status.contains("Conffiles:\n /etc/hub/config.json "),
        "{status}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&conffile).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
    let work = dir.path().join("var-lib-hub");
    std::fs::create_dir_all(&work).unwrap();
    let out = run(hub_command(&work)
        .arg("check-config")
        .env("HUB_CONFIG", &conffile));
    let checked = stdout(&out);
    assert!(
        checked.contains("listen 127.0.0.1:5000") && checked.contains("example password"),
        "{checked}"
    );

    // Completions and manual pages where their shells and man look.
    bash_completes(
        &root.join("usr/share/bash-completion/completions/hub"),
        dir.path(),
    );
    assert!(root.join("usr/share/zsh/vendor-completions/_hub").exists());
    assert!(root
        .join("usr/share/fish/vendor_completions.d/hub.fish")
        .exists());
    let man1 = root.join("usr/share/man/man1");
    let text = renders(&man1.join("hub.1.gz"));
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for name in commands(dir.path()) {
        assert!(man1.join(format!("hub-{name}.1.gz")).exists(), "{name}");
    }

    // An upgrade keeps an edited conffile, creates no second user and leaves the override be.
    let edited = std::fs::read_to_string(&conffile)
        .unwrap()
        .replace("change-me", "an-operators-password");
    std::fs::write(&conffile, &edited).unwrap();
    run(dpkg(&root, &bin).arg("--install").arg(&deb));
    let calls = take_calls(dir.path());
    assert_eq!(std::fs::read_to_string(&conffile).unwrap(), edited);
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("useradd") && !c.starts_with("dpkg-statoverride --update")),
        "{calls:#?}"
    );
    assert_eq!(
        calls
            .iter()
            .any(|c| c == "deb-systemd-invoke try-restart hub.service"),
        systemd_runs,
        "{calls:#?}"
    );

    // Remove keeps the config, the state and the user; purge takes them.
    run(dpkg(&root, &bin).args(["--remove", "hub"]));
    let calls = take_calls(dir.path());
    assert!(!hub.exists());
    assert_eq!(std::fs::read_to_string(&conffile).unwrap(), edited);
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("rm ") && !c.starts_with("userdel")),
        "{calls:#?}"
    );
    run(dpkg(&root, &bin).args(["--purge", "hub"]));
    let calls = take_calls(dir.path());
    assert!(!conffile.exists());
    for call in [
        "rm -rf /var/lib/hub",
        "dpkg-statoverride --remove /etc/hub/config.json",
        "userdel hub",
    ] {
        assert!(calls.iter().any(|c| c == call), "{call}: {calls:#?}");
    }
}

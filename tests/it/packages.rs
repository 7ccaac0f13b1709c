//! What a package installs beside the binary: `hub completions` and `hub man`.

use std::path::Path;
use std::process::{Command, Output};

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
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("wrote 31 pages into "),
        "{}",
        said(&out)
    );
    assert_eq!(std::fs::read_to_string(pages.join("hub.1")).unwrap(), roff);
    let written = support::list_files(&pages);
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

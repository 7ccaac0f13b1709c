//! `hub completions SHELL` and `hub man`: the shell completion scripts and manual pages, generated
//! from the command-line definition the binary itself parses, so they never fall behind it. The
//! Debian package is built from what these print (tools/deb).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::Cli;

/// The completion script for `shell`, to be sourced (bash), or put on `$fpath` (zsh) or in fish's
/// completion folder.
pub fn completions(shell: Shell) -> anyhow::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.set_bin_name("hub");
    cmd.build();
    let mut out = Vec::new();
    shell
        .try_generate(&cmd, &mut out)
        .context("writing the completion script")?;
    Ok(out)
}

/// hub(1): the options every command takes and the list of commands, with where hub finds its
/// configuration (a FILES section, before VERSION).
pub fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    Man::new(command()).render(&mut page)?;
    let page = String::from_utf8(page).context("the manual page is not UTF-8")?;
    let files = files_section().to_roff();
    let page = match page.find(".SH VERSION") {
        Some(at) => format!("{}{files}{}", &page[..at], &page[at..]),
        None => format!("{page}{files}"),
    };
    Ok(page.into_bytes())
}

/// Writes hub.1 and one page per command (hub-run.1, hub-silence-add.1, …: hub.1 refers to them
/// by those names) into `dir`, creating it; returns the names written.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = vec![("hub.1".to_string(), man_page()?)];
    let mut cmd = command();
    cmd.build();
    for sub in cmd.get_subcommands() {
        command_pages(sub, &mut pages)?;
    }
    let mut written = Vec::with_capacity(pages.len());
    for (name, text) in pages {
        let path = dir.join(&name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(name);
    }
    Ok(written)
}

/// hub's command, as the pages describe it: `help` is what `--help` does already.
fn command() -> clap::Command {
    Cli::command().disable_help_subcommand(true)
}

/// The page of `cmd` (its display name is `hub-…` once the root is built) and of each of its own
/// commands.
fn command_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, pages)?;
    }
    let man = Man::new(cmd.clone());
    let mut text = Vec::new();
    man.render(&mut text)?;
    pages.push((man.get_filename(), text));
    Ok(())
}

fn files_section() -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "config.json",
            "The configuration, read from the working directory unless --config or HUB_CONFIG \
             names another file. Relative folders and script paths in it are resolved against \
             the working directory.",
        ),
        (
            "/etc/hub/config.json",
            "The configuration of the packaged service (hub.service sets HUB_CONFIG to it).",
        ),
        (
            "/var/lib/hub",
            "The packaged service's working directory: hub.db, problems_received/, \
             problems_sent/ and log/ of the default configuration.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff
}

/// Writes `bytes` to standard output; a closed pipe or full disk is an error, not a panic.
pub fn emit(bytes: anyhow::Result<Vec<u8>>) -> anyhow::Result<()> {
    let bytes = bytes?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

//! What packages install next to the binary, generated from the clap definitions so they never
//! disagree with it: shell completions (`steer completions SHELL`) and man pages
//! (`steer manpages DIR`). Also the one place that decides whether steer's output is colored.

use std::{
    ffi::OsStr,
    io::Write,
    path::{Path, PathBuf},
};

use clap::{ColorChoice, CommandFactory, ValueEnum};

use super::{Cli, CliError, output::out};

/// The shells `steer completions` writes a script for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`, for the command named `steer`.
pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell.generator(), &mut cmd, "steer", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// `steer completions SHELL`: the script on stdout (`steer completions bash >
/// /usr/share/bash-completion/completions/steer`).
pub(super) fn print_completions(shell: Shell) {
    out(&completions(shell));
}

/// Writes `steer.1` and one `steer-<command>.1` per command into `dir` (created if missing);
/// returns the files written, in that order.
pub fn manpages(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut cmd = Cli::command();
    // Builds the tree: each command's display name becomes `steer-<command>`, its synopsis
    // `steer <command> ...`. The `help` command clap adds is not a page of its own.
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let source = format!("steer {}", super::VERSION);
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .source(source.clone())
            .manual("steer manual");
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text).map_err(io("render", &path))?;
        let mut file = std::fs::File::create(&path).map_err(io("create", &path))?;
        file.write_all(&text).map_err(io("write", &path))?;
        written.push(path);
    }
    Ok(written)
}

/// Whether steer colors its output (clap's help and errors, the daemon's log lines; nothing
/// else steer prints is colored). `NO_COLOR` set to anything but the empty string turns color
/// off whatever else says (<https://no-color.org>); otherwise color follows the terminal (and
/// `CLICOLOR`/`CLICOLOR_FORCE`, which clap and env_logger read themselves).
pub fn color_choice(no_color: Option<&OsStr>) -> ColorChoice {
    match no_color {
        Some(v) if !v.is_empty() => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_means_never_unless_empty() {
        assert_eq!(color_choice(None), ColorChoice::Auto);
        assert_eq!(color_choice(Some(OsStr::new(""))), ColorChoice::Auto);
        assert_eq!(color_choice(Some(OsStr::new("1"))), ColorChoice::Never);
        assert_eq!(color_choice(Some(OsStr::new("0"))), ColorChoice::Never);
    }

    #[test]
    fn completions_name_every_command() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            for command in ["run", "check", "status", "dump", "explain", "completions"] {
                assert!(
                    script.contains(command),
                    "{shell:?} completions lack `{command}`"
                );
            }
        }
    }
}

//! The conventions packages and users rely on, checked on the real binary: completion scripts
//! that their shells accept, man pages that render without a warning, `--version` naming the
//! commit, and `NO_COLOR`.
//!
//! The shells and `man` come from `cargo xtask setup`. Run by hand without them, a check whose
//! tool is missing says so and passes; under `CI=true` a missing tool fails the test, so CI
//! never passes a check it did not make.

mod common;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use common::TempDir;

const STEER: &str = env!("CARGO_BIN_EXE_steer");

fn steer(args: &[&str]) -> Output {
    Command::new(STEER)
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run steer")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `tool` can be run; when it cannot, fails under CI and otherwise tells the reader
/// which check was not made.
fn have(tool: &str, check: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is missing, so {check} cannot be checked: `cargo xtask setup` installs it"
        );
        eprintln!("note: `{tool}` is not installed: {check} not checked (`cargo xtask setup`)");
    }
    found
}

#[test]
fn completion_scripts_are_valid_for_each_shell() {
    for (shell, check) in [
        ("bash", ["bash", "-n"]),
        ("zsh", ["zsh", "-n"]),
        ("fish", ["fish", "-n"]),
    ] {
        let out = steer(&["completions", shell]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(
            // fish writes long options as `-l pin-dir`.
            script.contains("explain") && script.contains("pin-dir"),
            "{shell} completions name the commands and options:\n{script}"
        );
        if !have(check[0], &format!("the {shell} completion script")) {
            continue;
        }
        let dir = TempDir::new(shell);
        let path = dir.join(&format!("steer.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let checked = Command::new(check[0])
            .arg(check[1])
            .arg(&path)
            .output()
            .expect("run the shell");
        assert!(
            checked.status.success() && checked.stderr.is_empty(),
            "`{} {}` rejects the completion script: {}",
            check[0],
            check[1],
            text(&checked.stderr)
        );
    }
    let out = steer(&["completions", "tcsh"]);
    assert!(!out.status.success(), "an unknown shell is refused");
}

/// Renders `page` with man (and groff's every warning on); returns its text, or panics naming
/// the warnings.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings=all", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("run man");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "man -l {} warns or fails:\n{}",
        page.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn man_pages_cover_every_command_and_render_without_warnings() {
    let dir = TempDir::new("man");
    let out_dir = dir.join("man1");
    let out = steer(&["manpages", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let commands = [
        "check",
        "completions",
        "dump",
        "explain",
        "import",
        "manpages",
        "reload",
        "run",
        "set",
        "status",
        "stop",
        "wan",
    ];
    let mut expected: Vec<String> = commands.iter().map(|c| format!("steer-{c}.1")).collect();
    expected.push("steer.1".into());
    expected.sort();
    assert_eq!(pages, expected, "one page per command, no `steer-help.1`");
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");

    // A directory that cannot be made: exit 1, one line naming it and why.
    let bad = steer(&["manpages", "/proc/steer-no-such-dir"]);
    let err = text(&bad.stderr);
    assert!(!bad.status.success());
    assert_eq!(
        err.trim(),
        "steer: cannot create /proc/steer-no-such-dir: No such file or directory (os error 2)"
    );

    if !have("man", "rendering the man pages") {
        return;
    }
    let version = text(&steer(&["--version"]).stdout);
    let version = version.trim().trim_start_matches("steer ");
    let main = render(&out_dir.join("steer.1"));
    for needle in ["NAME", "SYNOPSIS", "explain", version] {
        assert!(main.contains(needle), "steer.1 lacks `{needle}`:\n{main}");
    }
    for c in commands {
        let page = render(&out_dir.join(format!("steer-{c}.1")));
        // man justifies lines, so words may be more than one space apart.
        let words = page.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains(&format!("SYNOPSIS steer {c}")),
            "steer-{c}.1 shows the command's synopsis:\n{page}"
        );
    }
    let check = render(&out_dir.join("steer-check.1"));
    assert!(check.contains("--config"), "{check}");
}

#[test]
fn version_names_the_checkout_revision() {
    let out = steer(&["--version"]);
    assert!(out.status.success());
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!("steer {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    let expected = match (std::env::var("STEER_GIT_REVISION"), head) {
        (Ok(rev), _) if !rev.trim().is_empty() => format!("(git {})", rev.trim()),
        (_, Some(head)) => format!("(git {})", &head[..12]),
        (_, None) if !root.join(".git").exists() => "(unknown revision)".to_owned(),
        (_, None) => {
            assert!(
                !have("git", "the revision in --version"),
                "git rev-parse HEAD failed in {}",
                root.display()
            );
            return;
        }
    };
    assert!(
        version.trim_end().ends_with(&expected),
        "`steer --version` is `{}`, expected it to end with `{expected}`",
        version.trim_end()
    );
}

#[test]
fn no_color_turns_colors_off() {
    let help = |no_color: Option<&str>| {
        let mut cmd = Command::new(STEER);
        // What a color terminal gets: clap and env_logger color when this is set, even into a
        // pipe.
        cmd.arg("--help").env("CLICOLOR_FORCE", "1");
        match no_color {
            Some(v) => cmd.env("NO_COLOR", v),
            None => cmd.env_remove("NO_COLOR"),
        };
        let out = cmd.output().expect("run steer --help");
        assert!(out.status.success());
        text(&out.stdout)
    };
    let colored = help(None);
    assert!(
        colored.contains('\u{1b}'),
        "--help on a forced color terminal is colored:\n{colored}"
    );
    let plain = help(Some("1"));
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1 --help:\n{plain}");
    // An empty NO_COLOR does not count (no-color.org).
    assert!(help(Some("")).contains('\u{1b}'));

    // Errors (clap's, on stderr) follow the same rule.
    let error = |no_color: bool| {
        let mut cmd = Command::new(STEER);
        cmd.arg("--no-such-option").env("CLICOLOR_FORCE", "1");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        text(&cmd.output().expect("run steer").stderr)
    };
    assert!(error(false).contains('\u{1b}'), "{}", error(false));
    assert!(!error(true).contains('\u{1b}'), "{}", error(true));

    // A command's warnings (`steer check` warns about each prefix a later set loses under
    // `duplicates = "first-set-wins"`) are part of its answer: plain `warning: ...` lines, with
    // no log timestamp, module or color whatever NO_COLOR says.
    let dir = TempDir::new("no-color");
    let config = dir.join("steer.toml");
    std::fs::write(
        &config,
        "[general]\nlan = [\"br-lan\"]\nduplicates = \"first-set-wins\"\n\n\
         [[wan]]\nname = \"w\"\ninterface = \"eth1\"\nmark = 0x100\ntable = 101\n\
         [wan.track]\ntargets = [\"1.1.1.1\"]\n\n\
         [[policy]]\nname = \"p\"\nmembers = [{ wan = \"w\" }]\n\n\
         [[set]]\nname = \"a\"\npolicy = \"p\"\nprefixes = [\"192.0.2.0/24\"]\n\n\
         [[set]]\nname = \"b\"\npolicy = \"p\"\nprefixes = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    let log = |no_color: bool| {
        let mut cmd = Command::new(STEER);
        cmd.arg("check")
            .arg("-c")
            .arg(&config)
            .env("CLICOLOR_FORCE", "1")
            .env_remove("RUST_LOG");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().expect("run steer check");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    for no_color in [false, true] {
        let out = log(no_color);
        assert!(
            out.starts_with("warning: set `b`: 192.0.2.0/24") && !out.contains('\u{1b}'),
            "{out}"
        );
        assert!(!out.contains("steer::config"), "{out}");
    }
}

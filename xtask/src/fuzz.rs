//! `cargo xtask fuzz [TARGET] [--seconds N]`, and the short fuzz tier of `cargo xtask test`:
//! libFuzzer targets in `fuzz/` through `cargo fuzz` (nightly).
//!
//! A target is `fuzz/fuzz_targets/<name>.rs`, a `[[bin]]` in `fuzz/Cargo.toml`, seeds in
//! `fuzz/corpus/<name>/` (checked in, small) and its name in [`TARGETS`]. A run reads the seeds
//! and keeps what it finds in `fuzz/target/corpus/<name>/` (not in git, reused by the next run);
//! a crash is written to `fuzz/artifacts/<name>/` and fails the run: make it a unit test in
//! steer-user, then fix it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Every fuzz target. Adding one (a DNS or VRRP packet parser) is a line here, plus its file,
/// its `[[bin]]` and its seeds under `fuzz/`.
pub const TARGETS: &[&str] = &["config", "list", "control", "dns_wire", "vrrp_packet"];

/// How long `cargo xtask test` fuzzes each target.
pub const SHORT: Duration = Duration::from_secs(20);

/// How long `cargo xtask fuzz` fuzzes each target unless told.
pub const LONG: Duration = Duration::from_secs(600);

/// How the targets are built: what `cargo fuzz` is given for `build` and for `run` alike (so a
/// run does not rebuild). No sanitizer: the targets run safe Rust parsers, and an ASan build of
/// every dependency costs minutes for nothing. Debug assertions (overflow checks) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Unoptimized, for the short run of `cargo xtask test`: it compiles in about half the CPU
    /// time of an optimized build (measured: 3.4 against 6.2 CPU minutes), which a 20-second run
    /// would not win back (it runs about 13 times fewer inputs per second).
    Quick,
    /// Optimized, for `cargo xtask fuzz`.
    Optimized,
}

impl Build {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Build::Quick => &["--sanitizer", "none", "--debug-assertions", "--dev"],
            Build::Optimized => &["--sanitizer", "none", "--debug-assertions"],
        }
    }
}

/// Per input: a hang longer than this is a finding. Memory: libFuzzer's limit per process.
const LIBFUZZER_FLAGS: &[&str] = &["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .join("fuzz")
}

/// Whether `cargo fuzz` runs, and which version.
pub fn cargo_fuzz_version() -> Option<String> {
    cmd::output("rustup", &["run", "nightly", "cargo", "fuzz", "--version"])
        .map(|v| v.trim().to_owned())
}

/// `cargo fuzz <args>` with the nightly toolchain, in `fuzz/`.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", "nightly", "cargo", "fuzz"])
        .args(args)
        .current_dir(fuzz_dir());
    // The stable cargo that runs the xtask exports these; the nightly one must find its own.
    for var in ["RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO"] {
        command.env_remove(var);
    }
    command
}

/// The targets a command names: all of them, or the one asked for (which must exist).
pub fn select(name: Option<&str>) -> Result<Vec<&'static str>> {
    match name {
        None => Ok(TARGETS.to_vec()),
        Some(name) => match TARGETS.iter().find(|t| **t == name) {
            Some(t) => Ok(vec![*t]),
            None => bail!(
                "no fuzz target `{name}`: the targets are {}",
                TARGETS.join(", ")
            ),
        },
    }
}

/// Builds the fuzz targets, then fuzzes each of `targets` for `time`. Fails on the first crash,
/// naming its input.
pub fn run(targets: &[&str], time: Duration, how: Build) -> Result<()> {
    if cargo_fuzz_version().is_none() {
        bail!("cargo-fuzz does not run under `rustup run nightly`: run `cargo xtask setup`");
    }
    let started = Instant::now();
    cmd::step(&format!("fuzz: build ({})", TARGETS.join(", ")));
    let mut build = cargo_fuzz(&["build"]);
    build.args(how.flags());
    cmd::run(&mut build).context("building the fuzz targets failed")?;
    eprintln!("    built in {:.0}s", started.elapsed().as_secs_f64());
    for target in targets {
        fuzz_one(target, time, how)?;
    }
    eprintln!(
        "    fuzzing done in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fuzz_one(target: &str, time: Duration, how: Build) -> Result<()> {
    let dir = fuzz_dir();
    let seeds = dir.join("corpus").join(target);
    let found = dir.join("target/corpus").join(target);
    std::fs::create_dir_all(&found).with_context(|| format!("create {}", found.display()))?;
    cmd::step(&format!(
        "fuzz: {target} for {}s (seeds in fuzz/corpus/{target}/)",
        time.as_secs()
    ));
    let max_time = format!("-max_total_time={}", time.as_secs().max(1));
    // libFuzzer writes new inputs to the first corpus directory only: the seeds stay as
    // checked in.
    let mut run = cargo_fuzz(&["run"]);
    run.args(how.flags())
        .arg(target)
        .arg(&found)
        .arg(&seeds)
        .arg("--")
        .arg(&max_time)
        .args(LIBFUZZER_FLAGS);
    cmd::run(&mut run).with_context(|| {
        format!(
            "fuzz target `{target}` failed: the input is in fuzz/artifacts/{target}/ \
             (`cargo +nightly fuzz run {} {target} fuzz/artifacts/{target}/<file>` in fuzz/ \
             replays it); add it as a unit test in steer-user, then fix it",
            how.flags().join(" ")
        )
    })
}

/// Whether `CI=true`: a missing tool fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The fuzz tier of `cargo xtask test`: every target for [`SHORT`]. Without cargo-fuzz (setup
/// could not install it) it is skipped, except under CI, where that fails.
pub fn short() -> Result<()> {
    if cargo_fuzz_version().is_none() {
        let why =
            "cargo-fuzz does not run under `rustup run nightly` (`cargo xtask setup` installs it)";
        if in_ci() {
            bail!("fuzz tier: {why}");
        }
        cmd::step(&format!("fuzz: SKIPPED, {why}"));
        return Ok(());
    }
    run(TARGETS, SHORT, Build::Quick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_source_a_bin_and_seeds() {
        let dir = fuzz_dir();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for target in TARGETS {
            let source = format!("fuzz_targets/{target}.rs");
            assert!(dir.join(&source).is_file(), "fuzz/{source}");
            assert!(
                manifest.contains(&format!("name = \"{target}\"\npath = \"{source}\"")),
                "a [[bin]] for {target} in fuzz/Cargo.toml"
            );
            let seeds = std::fs::read_dir(dir.join("corpus").join(target))
                .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
                .count();
            assert!(seeds > 0, "fuzz/corpus/{target} has seeds");
        }
        let bins = manifest.lines().filter(|l| *l == "[[bin]]").count();
        assert_eq!(bins, TARGETS.len(), "every [[bin]] is in TARGETS");
    }

    #[test]
    fn a_target_is_chosen_by_its_name() {
        assert_eq!(select(None).unwrap(), TARGETS);
        assert_eq!(select(Some("list")).unwrap(), ["list"]);
        let e = select(Some("dns")).unwrap_err().to_string();
        assert!(e.contains("no fuzz target `dns`"), "{e}");
    }
}

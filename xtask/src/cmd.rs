//! Running commands: every failure names the command that failed.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Prints a step header.
pub fn step(what: &str) {
    eprintln!("==> {what}");
}

/// The cargo that runs this xtask (the stable toolchain).
pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo <args> <extra>` in the workspace, inheriting stdio.
pub fn cargo(args: &[&str], extra: &[String]) -> Result<()> {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(args).args(extra);
    run(&mut cmd)
}

/// Runs cargo from the nightly toolchain (for the eBPF crate).
pub fn nightly_cargo(args: &[&str]) -> Result<()> {
    run(nightly_cargo_command().args(args))
}

/// A cargo command of the nightly toolchain, without what the stable cargo that runs xtask
/// set for its own children.
pub fn nightly_cargo_command() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    for var in ["RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command with inherited stdio; fails if it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout, or `None` if it could not run or failed.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with stdin closed and returns its stdout; a failure carries its stderr.
pub fn capture(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

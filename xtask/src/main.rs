//! `cargo xtask <task>`: steer's development tasks.
//!
//! - `setup`: make this machine able to build and test steer (nightly rust-src, bpf-linker built
//!   against the nightly toolchain's own LLVM, Debian packages, bpffs). Idempotent and quick
//!   when everything is there.
//! - `build-ebpf`: build the kernel object (with BTF) and copy it to `target/bpf/`.
//! - `test`: setup, then every test tier, privileged ones included.
//! - `bench`: the benchmarks (BPF_PROG_TEST_RUN timings, bulk loads, failover).
//! - `demo`: the namespace lab showing steering and failover live.
//! - `lint`: rustfmt and clippy for the user crates and the eBPF crate.
//! - `dist`: static (musl) binaries for x86_64 and aarch64 and a `.deb` for each, in
//!   `target/dist/` with a manifest; `dist --check` is the dist tier of `test` alone (aarch64,
//!   quick profile, the package checked, the binary under qemu). See docs/packaging.md.
//! - `fuzz`: the `cargo fuzz` targets in fuzz/ (parsers of untrusted input), longer than the
//!   short run `test` makes.

mod build_ebpf;
mod cmd;
mod deb;
mod dist;
mod ebpf_toolchain;
mod elf;
mod fuzz;
mod setup;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "steer development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing steer needs (idempotent).
    Setup,
    /// Build the eBPF object with BTF into target/bpf/.
    BuildEbpf,
    /// Run setup, then every test tier (unit, config, privileged kernel and namespace tests, the
    /// aarch64 static build and its .deb, a short fuzz run of every fuzz target).
    Test {
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks (release build).
    Bench {
        /// Only these groups (classifier, rules, load, reload, failover, dns, forwarding[/SCENARIO], vrrp).
        filters: Vec<String>,
    },
    /// Run the live namespace demo: steering, failover and recovery.
    Demo,
    /// Static (musl) release binaries for x86_64 and aarch64 and a .deb for each, in
    /// target/dist/ with a manifest (file, size, sha256).
    Dist {
        /// Only the dist tier of `cargo xtask test`: the aarch64 build in a quick profile, its
        /// .deb checked, the binary run under qemu.
        #[arg(long)]
        check: bool,
    },
    /// rustfmt --check and clippy -D warnings for every crate, the eBPF crate included.
    Lint,
    /// Fuzz the parsers of untrusted input (cargo fuzz, nightly): every target, or one.
    Fuzz {
        /// One of the targets in fuzz/ (config, list, control, dns_wire, vrrp_packet); all of them when left out.
        target: Option<String>,
        /// How long to fuzz each target.
        #[arg(long, default_value_t = fuzz::LONG.as_secs())]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf => build_ebpf::run().map(|_| ()),
        Task::Test { args } => test(&args),
        Task::Bench { filters } => bench(&filters),
        Task::Demo => release_bin("steer-demo", &[], None),
        Task::Dist { check: false } => dist::run(),
        Task::Dist { check: true } => {
            setup::run()?;
            dist::test(&build_ebpf::build_for_tests()?)
        }
        Task::Lint => lint(),
        Task::Fuzz { target, seconds } => {
            let targets = fuzz::select(target.as_deref())?;
            setup::run()?;
            fuzz::run(
                &targets,
                std::time::Duration::from_secs(seconds),
                fuzz::Build::Optimized,
            )
        }
    }
}

/// The feature that turns on steer-user's root-only tests. Every build of `cargo xtask test`
/// passes it, so steer-user (and the eBPF objects its build script makes) is built once.
pub const TEST_FEATURES: [&str; 2] = ["--features", "steer-user/privileged-tests"];

/// A command prefix (as root) that runs a program with every capability dropped and no way to
/// regain one: `noroot` keeps exec from handing them back to uid 0. The uid stays 0, so the
/// checkout's files stay readable wherever CI put them.
pub const NO_CAPABILITIES: &str = "setpriv --bounding-set=-all --inh-caps=-all \
     --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked";

fn test(args: &[String]) -> Result<()> {
    setup::run()?;
    // The end-to-end tests run the `steer` binary itself.
    let host_steer = build_ebpf::build_for_tests()?;
    let mut extra = vec!["--".to_owned()];
    extra.extend_from_slice(args);
    unprivileged_plain_test(&extra)?;
    cmd::step(
        "unit and config tests (steer-common, steer-user, xtask), the root-only ones included",
    );
    cmd::cargo(
        &[
            "test",
            "-p",
            "steer-common",
            "-p",
            "steer-user",
            "-p",
            "xtask",
            TEST_FEATURES[0],
            TEST_FEATURES[1],
        ],
        &extra,
    )?;
    cmd::step("privileged tests: programs in the kernel, real traffic in namespaces");
    cmd::cargo(
        &[
            "test",
            "-p",
            "steer-tests",
            TEST_FEATURES[0],
            TEST_FEATURES[1],
        ],
        &extra,
    )?;
    if !args.is_empty() {
        cmd::step("dist and fuzz: not run, the tests were filtered");
        return Ok(());
    }
    dist::test(&host_steer)?;
    fuzz::short()
}

/// A plain `cargo test` (the default members, no features) must pass without root. As root,
/// its test binaries run with every capability dropped (through cargo's runner, with
/// [`NO_CAPABILITIES`]), so a test that needs privileges without saying so fails here instead
/// of on a developer's machine.
fn unprivileged_plain_test(extra: &[String]) -> Result<()> {
    let mut run = std::process::Command::new(cmd::cargo_bin());
    run.arg("test").args(extra);
    if setup::is_root() {
        cmd::step("plain `cargo test` with no capabilities: it must pass without root");
        run.env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
            NO_CAPABILITIES,
        );
    } else {
        cmd::step("plain `cargo test` (not root)");
    }
    cmd::run(&mut run)
}

/// The benchmarks. The memory benchmark measures the daemon a router runs: this machine's
/// `cargo xtask dist` binary (static, musl, built for size), handed over in
/// `STEER_SHIPPED_BIN`.
fn bench(filters: &[String]) -> Result<()> {
    let memory = filters.is_empty() || filters.iter().any(|f| f.starts_with("memory"));
    let shipped = if memory {
        setup::run()?;
        Some(dist::build_for_this_machine()?)
    } else {
        None
    };
    release_bin("steer-bench", filters, shipped.as_deref())
}

/// Runs a binary of the tests crate (release), after setup and a release build of `steer`,
/// which the demo and the failover benchmark run themselves; `shipped` is the binary that
/// ships, for the benchmarks that measure it.
fn release_bin(name: &str, args: &[String], shipped: Option<&std::path::Path>) -> Result<()> {
    use std::os::unix::process::CommandExt;

    setup::run()?;
    cmd::step(&release_build_step(name));
    for build in release_builds(name) {
        cmd::cargo(&build, &[])?;
    }
    let mut run = std::process::Command::new(cmd::cargo_bin());
    run.args([
        "run",
        "--release",
        "-q",
        "-p",
        "steer-tests",
        "--bin",
        name,
        "--",
    ])
    .args(args);
    if let Some(shipped) = shipped {
        run.env("STEER_SHIPPED_BIN", shipped);
    }
    // In xtask's place (cargo run execs the binary in its own): a Ctrl-C then leaves the
    // terminal to the demo until it has cleaned up its namespaces, instead of ending xtask
    // and giving the prompt back while the demo still prints.
    Err(run.exec()).with_context(|| format!("cannot start {run:?}"))
}

/// What [`release_bin`] says before building: the first release build of steer takes several
/// minutes, which nothing else would explain.
fn release_build_step(name: &str) -> String {
    format!("building steer and {name} (release; the first build takes several minutes)")
}

/// The release builds [`release_bin`] runs first, with cargo's progress shown (no `-q`).
fn release_builds(name: &str) -> [Vec<&str>; 2] {
    [
        vec!["build", "--release", "-p", "steer-user", "--bins"],
        vec!["build", "--release", "-p", "steer-tests", "--bin", name],
    ]
}

fn lint() -> Result<()> {
    cmd::step("rustfmt");
    cmd::cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cmd::step("clippy: user crates (the tests crate included)");
    cmd::cargo(
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "steer-ebpf",
            "--all-targets",
            "--features",
            "steer-user/privileged-tests",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cmd::step("clippy: eBPF crate");
    cmd::nightly_cargo(&[
        "clippy",
        "-p",
        "steer-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])
}

#[cfg(test)]
mod tests {
    use super::{release_build_step, release_builds};

    /// The demo's first build takes minutes: it says so, and cargo shows its progress.
    #[test]
    fn the_release_build_says_what_it_builds_and_shows_progress() {
        let step = release_build_step("steer-demo");
        assert!(
            step.contains("steer-demo") && step.contains("several minutes"),
            "{step}"
        );
        for build in release_builds("steer-demo") {
            assert!(
                !build.contains(&"-q") && !build.contains(&"--quiet"),
                "{build:?} hides cargo's progress"
            );
        }
    }
}

//! `cargo xtask dist`: static (musl) `steer` binaries for x86_64 and aarch64 routers and a `.deb`
//! for each, with a manifest, in `target/dist/`. And the dist tier of `cargo xtask test`: the
//! same build and package for aarch64 in a quicker profile, checked, and the binary run under
//! qemu-user.
//!
//! Each binary embeds the eBPF object its own build script built, as every steer build does
//! (bpfel, so the same program for both machines); the checks find that object's bytes inside.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{build_ebpf, cmd, deb, elf};

/// A machine the dist builds for.
#[derive(Debug)]
pub struct Target {
    pub triple: &'static str,
    /// Rust's name of the CPU (`std::env::consts::ARCH`), and qemu's.
    pub arch: &'static str,
    pub deb_arch: &'static str,
    pub machine: u16,
}

pub const X86_64: Target = Target {
    triple: "x86_64-unknown-linux-musl",
    arch: "x86_64",
    deb_arch: "amd64",
    machine: elf::EM_X86_64,
};

pub const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-musl",
    arch: "aarch64",
    deb_arch: "arm64",
    machine: elf::EM_AARCH64,
};

pub const TARGETS: [&Target; 2] = [&X86_64, &AARCH64];

/// The profile of `cargo xtask dist` (Cargo.toml: release, fat LTO, stripped).
const DIST_PROFILE: &str = "dist-release";
/// The profile of the test tier (Cargo.toml: unoptimized, no debug info, stripped).
const CHECK_PROFILE: &str = "dist-check";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `cargo xtask dist`.
pub fn run() -> Result<()> {
    crate::setup::run()?;
    let started = Instant::now();
    let root = build_ebpf::workspace_root();
    // Before minutes of building: what the package takes from the tree must be there.
    let examples = deb::check_tree(&root)?;
    let out = root.join("target/dist");
    let work = root.join("target/dist-work");
    deb::recreate_dir(&out)?;
    let mut outputs = Vec::new();
    let mut docs: Option<Vec<deb::Entry>> = None;
    for target in TARGETS {
        cmd::step(&format!("dist: {} ({DIST_PROFILE} profile)", target.triple));
        let built = build(target, DIST_PROFILE)?;
        let binary = out.join(format!("steer-{VERSION}-{}", target.triple));
        std::fs::copy(&built, &binary)?;
        outputs.push(binary);
        if docs.is_none() {
            // Completions and man pages come from the first binary, which this machine runs.
            docs = Some(deb::generate_docs(&runnable(&built)?, &work.join("docs"))?);
        }
        let docs = docs.as_deref().unwrap_or_default();
        let deb_file = out.join(format!("steer_{VERSION}_{}.deb", target.deb_arch));
        let unpacked = package(
            target,
            &built,
            docs,
            &examples,
            &work.join(target.deb_arch),
            &deb_file,
        )?;
        smoke(target, &unpacked, &examples)?;
        outputs.push(deb_file);
    }
    let manifest = manifest(&outputs)?;
    std::fs::write(out.join("manifest.txt"), &manifest)?;
    eprint!("{manifest}");
    eprintln!(
        "    dist done in {:.0}s: {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The dist tier of `cargo xtask test`: the aarch64 static build (in the quicker profile), its
/// package built and checked (completions and man pages from `host_steer`, the binary the
/// tests built), and the packaged binary run under qemu on every packaged example.
pub fn test(host_steer: &Path) -> Result<()> {
    let target = &AARCH64;
    cmd::step(&format!(
        "dist: {} ({CHECK_PROFILE} profile), its .deb, the binary under qemu",
        target.triple
    ));
    let started = Instant::now();
    let root = build_ebpf::workspace_root();
    let examples = deb::check_tree(&root)?;
    let work = root.join("target/dist-test");
    let docs = deb::generate_docs(host_steer, &work.join("docs"))?;
    let built = build(target, CHECK_PROFILE)?;
    let deb_file = work.join(format!("steer_{VERSION}_{}.deb", target.deb_arch));
    let unpacked = package(
        target,
        &built,
        &docs,
        &examples,
        &work.join(target.deb_arch),
        &deb_file,
    )?;
    smoke(target, &unpacked, &examples)?;
    eprintln!(
        "    dist tier done in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `steer` of `cargo xtask dist` for this machine (built if need be), as it ships.
pub fn build_for_this_machine() -> Result<PathBuf> {
    let target = TARGETS
        .iter()
        .find(|t| t.arch == std::env::consts::ARCH)
        .with_context(|| format!("no dist target for {}", std::env::consts::ARCH))?;
    cmd::step(&format!(
        "the shipped binary: {} ({DIST_PROFILE} profile)",
        target.triple
    ));
    build(target, DIST_PROFILE)
}

/// Builds `steer` for `target` in `profile` and checks it: static, for the right machine, with
/// the eBPF object its build script made inside. Returns the binary's path.
fn build(target: &Target, profile: &str) -> Result<PathBuf> {
    let started = Instant::now();
    let options = ["--target", target.triple, "--profile", profile];
    let built = if profile == DIST_PROFILE {
        build_ebpf::build_steer_with(size_build(target)?, &options)?
    } else {
        build_ebpf::build_steer(&options)?
    };
    let object_path = built.out_dir.join("steer");
    let object = build_ebpf::read_with_btf(&object_path)?;
    if elf::parse(&object).map(|h| h.machine) != Some(elf::EM_BPF) {
        bail!(
            "{} is not a little-endian (bpfel) BPF object",
            object_path.display()
        );
    }
    let binary = std::fs::read(&built.steer)?;
    let what = built.steer.display().to_string();
    elf::check_static(&binary, target.machine, &what)?;
    if !contains(&binary, &object) {
        bail!(
            "{what} does not embed the eBPF object {}",
            object_path.display()
        );
    }
    eprintln!(
        "    {what}: {} bytes, static, eBPF object ({} bytes) inside; built in {:.0}s",
        binary.len(),
        object.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(built.steer)
}

/// The cargo of the binaries that ship, built for size: the nightly toolchain rebuilds the
/// standard library with them (`-Z build-std`, its `optimize_for_size` feature, aborting on
/// panic) and no unwind tables are emitted, since nothing unwinds. Measured on x86_64 (one
/// build each): 5.09 MB with the prebuilt standard library, 4.57 MB with it rebuilt, 3.95 MB
/// without the unwind tables (xz: 1.72, 1.53, 1.39 MB). A panic still prints its message and
/// place before the abort, without a backtrace.
fn size_build(target: &Target) -> Result<Command> {
    crate::setup::ensure_nightly_dist_target(target.triple)?;
    let mut cargo = cmd::nightly_cargo_command();
    cargo.args([
        "-Z",
        "build-std=std,panic_abort",
        "-Z",
        "build-std-features=optimize_for_size",
    ]);
    let rustflags = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.triple.to_uppercase().replace('-', "_")
    );
    cargo.env(rustflags, "-C force-unwind-tables=no");
    Ok(cargo)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(first) = needle.first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| *b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// `binary` if this machine runs it natively, for generating completions and man pages.
fn runnable(binary: &Path) -> Result<PathBuf> {
    let header = elf::parse(&std::fs::read(binary)?).context("not ELF64")?;
    let native = TARGETS
        .iter()
        .any(|t| t.machine == header.machine && t.arch == std::env::consts::ARCH);
    if !native {
        bail!(
            "{} is not for this machine: the first dist target must be the build machine's",
            binary.display()
        );
    }
    Ok(binary.to_owned())
}

/// Builds the package of `binary` for `target` into `deb_file` (staging in `work`) and checks
/// it. Returns where the package was unpacked for the check.
fn package(
    target: &Target,
    binary: &Path,
    docs: &[deb::Entry],
    examples: &[String],
    work: &Path,
    deb_file: &Path,
) -> Result<PathBuf> {
    let root = build_ebpf::workspace_root();
    deb::recreate_dir(work)?;
    let copyright = work.join("copyright");
    std::fs::write(&copyright, deb::copyright(&bundled_crates(target)?))?;
    let mut entries = deb::tree_entries(&root, binary, &copyright)?;
    entries.extend_from_slice(docs);
    let control = deb::Control {
        version: VERSION,
        arch: target.deb_arch,
    };
    deb::build(&entries, &control, &work.join("stage"), deb_file)?;
    let unpacked = work.join("unpacked");
    deb::check(deb_file, &control, target.machine, examples, &unpacked)?;
    let size = std::fs::metadata(deb_file)?.len();
    eprintln!("    {}: {size} bytes, contents checked", deb_file.display());
    Ok(unpacked)
}

/// The crates linked into steer for `target`, as "name version|licence" lines (not the proc
/// macros: they run in the compiler and leave nothing of theirs in the binary).
fn bundled_crates(target: &Target) -> Result<String> {
    let out = cmd::capture(Command::new(cmd::cargo_bin()).args([
        "tree",
        "-q",
        "-p",
        "steer-user",
        "-e",
        "normal,no-proc-macro",
        "--target",
        target.triple,
        "--prefix",
        "none",
        "--format",
        "{p}|{l}",
    ]))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs the packaged binary (under qemu where it is for another machine) with every capability
/// dropped: `--version`, and `check` on every packaged example configuration.
fn smoke(target: &Target, unpacked: &Path, examples: &[String]) -> Result<()> {
    let words = command_words(target, &unpacked.join(deb::BINARY))?;
    let run = |args: &[&std::ffi::OsStr]| -> Result<String> {
        let mut command = Command::new(&words[0]);
        command.args(&words[1..]).args(args);
        let out = cmd::capture(&mut command)?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    };
    let version = run(&["--version".as_ref()])?;
    if !version.starts_with(&format!("steer {VERSION}")) {
        bail!("`steer --version` printed {version:?}, expected steer {VERSION}");
    }
    eprintln!("    {}: `steer --version`: {version}", target.arch);
    let dir = unpacked.join(deb::EXAMPLES);
    for config in deb::example_configs(examples) {
        let path = dir.join(config);
        run(&["check".as_ref(), "-c".as_ref(), path.as_os_str()])
            .with_context(|| format!("`steer check` of the packaged example {config}"))?;
        eprintln!("    {}: `steer check -c {config}`: OK", target.arch);
    }
    Ok(())
}

/// The command line that runs `binary`, built for `target`, here without capabilities:
/// setpriv (as root), then qemu-user unless `target` is this machine. Missing qemu is an error
/// (setup installs it), never a skip.
fn command_words(target: &Target, binary: &Path) -> Result<Vec<OsString>> {
    let mut words: Vec<OsString> = Vec::new();
    if crate::setup::is_root() {
        words.extend(
            crate::NO_CAPABILITIES
                .split_whitespace()
                .map(OsString::from),
        );
    }
    if target.arch != std::env::consts::ARCH {
        words.push(qemu(target.arch)?.into());
    }
    words.push(binary.into());
    Ok(words)
}

/// qemu-user for `arch`: Debian's qemu-user names it `qemu-<arch>`, qemu-user-static
/// `qemu-<arch>-static`.
fn qemu(arch: &str) -> Result<String> {
    [format!("qemu-{arch}"), format!("qemu-{arch}-static")]
        .into_iter()
        .find(|q| cmd::output(q, &["--version"]).is_some())
        .with_context(|| {
            format!("neither qemu-{arch} nor qemu-{arch}-static runs: `cargo xtask setup` installs qemu-user")
        })
}

/// "file  size  sha256" for each output.
fn manifest(files: &[PathBuf]) -> Result<String> {
    let mut text = String::from("# file  size (bytes)  sha256\n");
    for file in files {
        let out = cmd::capture(Command::new("sha256sum").arg(file))?;
        let out = String::from_utf8_lossy(&out);
        let sha = out
            .split_whitespace()
            .next()
            .context("sha256sum printed nothing")?;
        let size = std::fs::metadata(file)?.len();
        let name = file.file_name().expect("a file").to_string_lossy();
        text.push_str(&format!("{name}  {size}  {sha}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_found_inside_a_binary() {
        let binary = b"\x7fELF....\x7fELF\x01bpf-object-bytes....";
        assert!(contains(binary, b"\x7fELF\x01bpf-object-bytes"));
        assert!(!contains(binary, b"\x7fELF\x01bpf-object-bytez"));
        assert!(!contains(b"short", b"longer than it"));
    }

    #[test]
    fn targets_match_their_triples() {
        for target in TARGETS {
            assert!(target.triple.starts_with(&format!("{}-", target.arch)));
            assert!(target.triple.ends_with("-linux-musl"), "static builds");
        }
    }
}

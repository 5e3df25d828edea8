//! The kernel programs are built by steer-user's build script (nightly cargo with bpf-linker and
//! `--btf`) and embedded from its OUT_DIR. `cargo xtask build-ebpf` builds them for release and
//! copies them to `target/bpf/`; `cargo xtask test` checks the ones its own build embeds. Both
//! refuse objects without BTF.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Objects steer-user's build script leaves in its OUT_DIR, and their names under target/bpf/.
const OBJECTS: &[(&str, &str)] = &[
    ("steer", "steer.bpf.o"),
    ("steer-testkit", "steer-testkit.bpf.o"),
];

/// `cargo xtask build-ebpf`: a release build, its objects copied to `target/bpf/`.
pub fn run() -> Result<Vec<PathBuf>> {
    cmd::step("build-ebpf");
    let out_dir = build_steer(&["--release"])?.out_dir;
    let dest = workspace_root().join("target/bpf");
    std::fs::create_dir_all(&dest)?;
    let mut written = Vec::new();
    for (built, name) in OBJECTS {
        let bytes = read_with_btf(&out_dir.join(built))?;
        let to = dest.join(name);
        std::fs::write(&to, &bytes)?;
        eprintln!("    {} ({} bytes, BTF)", to.display(), bytes.len());
        written.push(to);
    }
    Ok(written)
}

/// Builds the debug `steer` binary the end-to-end tests run, and checks the objects it embeds.
/// The test builds share this build script run and so embed the very same files. Returns that
/// binary's path.
pub fn build_for_tests() -> Result<PathBuf> {
    cmd::step("build: steer and the kernel programs it embeds");
    let built = build_steer(&crate::TEST_FEATURES)?;
    for (object, _) in OBJECTS {
        let src = built.out_dir.join(object);
        let bytes = read_with_btf(&src)?;
        eprintln!("    {} ({} bytes, BTF)", src.display(), bytes.len());
    }
    Ok(built.steer)
}

/// Reads a built object, refusing it without .BTF and .BTF.ext (the build passes `--btf` to
/// bpf-linker; this catches a toolchain that ignores it).
pub fn read_with_btf(src: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(src).with_context(|| format!("read {}", src.display()))?;
    let sections = elf_section_names(&bytes)
        .with_context(|| format!("{} is not an ELF object", src.display()))?;
    for needed in [".BTF", ".BTF.ext"] {
        if !sections.iter().any(|s| s == needed) {
            bail!(
                "{} has no {needed} section: the object was built without BTF",
                src.display()
            );
        }
    }
    Ok(bytes)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

/// What a build of steer-user's binaries made: the OUT_DIR its build script reported (where
/// the eBPF objects are) and the `steer` executable.
#[derive(Debug)]
pub struct SteerBuild {
    pub out_dir: PathBuf,
    pub steer: PathBuf,
}

/// Builds steer-user's binaries (with `options`, e.g. `--release`) and returns what cargo
/// reported of them.
pub fn build_steer(options: &[&str]) -> Result<SteerBuild> {
    build_steer_with(Command::new(cmd::cargo_bin()), options)
}

/// [`build_steer`] with `cargo`, a cargo command set up by the caller (a toolchain, an
/// environment).
pub fn build_steer_with(mut cargo: Command, options: &[&str]) -> Result<SteerBuild> {
    let mut child = cargo
        .args(["build", "-p", "steer-user", "--bins"])
        .args(options)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .context("start cargo build")?;
    let (mut out_dir, mut steer) = (None, None);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_steer_user = msg["package_id"]
            .as_str()
            .is_some_and(|id| id.contains("steer-user"));
        if msg["reason"] == "build-script-executed" && is_steer_user {
            out_dir = msg["out_dir"].as_str().map(PathBuf::from);
        }
        if msg["reason"] == "compiler-artifact" && is_steer_user && msg["target"]["name"] == "steer"
        {
            steer = msg["executable"].as_str().map(PathBuf::from).or(steer);
        }
    }
    if !child.wait()?.success() {
        bail!("building steer-user (and with it the eBPF programs) failed");
    }
    Ok(SteerBuild {
        out_dir: out_dir.context("cargo reported no build-script output for steer-user")?,
        steer: steer.context("cargo reported no `steer` executable")?,
    })
}

/// Section names of a little-endian ELF64 object.
fn elf_section_names(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..4)? != b"\x7fELF" || elf.get(4)? != &2 || elf.get(5)? != &1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?) as usize);
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)?;
    (0..shnum)
        .map(|i| {
            let name = strtab + u32_at(header(i))?;
            let end = name + elf.get(name..)?.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&elf[name..end]).into_owned())
        })
        .collect()
}

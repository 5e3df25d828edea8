//! Whether this machine can build the kernel programs. steer-user's build script (which stops
//! with the message) and `cargo xtask setup` (which installs what is missing) both compile this
//! one file, so setup cannot call the toolchain ready while the build refuses it.
//!
//! aya-build compiles the eBPF crate with `rustup run nightly cargo build`, and that rustc looks
//! for bpf-linker on the PATH `rustup run` sets up: every piece is looked up the same way.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Runs `rustup run nightly <args>` quietly; its stdout if it exits 0.
fn nightly(args: &[&str]) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The nightly toolchain's sysroot, or `None` when that toolchain is not installed.
pub fn nightly_sysroot() -> Option<PathBuf> {
    nightly(&["rustc", "--print", "sysroot"]).map(|s| PathBuf::from(s.trim()))
}

/// The eBPF build rebuilds `core` (`-Z build-std`), which needs the toolchain's sources.
pub fn has_rust_src(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

pub fn has_bpf_linker() -> bool {
    nightly(&["bpf-linker", "--version"]).is_some()
}

/// The first piece the eBPF build lacks, as the end of "the eBPF toolchain is not ready (...)".
pub fn check() -> Result<(), String> {
    let sysroot = nightly_sysroot().ok_or("the nightly toolchain is not installed")?;
    if !has_rust_src(&sysroot) {
        return Err("rust-src is not installed for the nightly toolchain".into());
    }
    if !has_bpf_linker() {
        return Err("bpf-linker does not run under `rustup run nightly`".into());
    }
    Ok(())
}

//! Builds the kernel programs (steer-ebpf) with the nightly toolchain and bpf-linker, so that a
//! plain `cargo build` produces a `steer` binary with the object embedded. When the eBPF
//! toolchain is missing the build stops with one line that says how to install it.

use std::{path::Path, process::Command};

fn main() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let root = Path::new(manifest_dir)
        .parent()
        .expect("steer-user sits in the workspace");
    println!(
        "cargo::rerun-if-changed={}",
        root.join("steer-common").display()
    );
    if let Err(missing) = ebpf_toolchain_ready() {
        println!(
            "cargo::error=the eBPF toolchain is not ready ({missing}): run `cargo xtask setup` once"
        );
        return;
    }
    let ebpf_dir = root.join("steer-ebpf");
    let ebpf = aya_build::Package {
        name: "steer-ebpf",
        root_dir: ebpf_dir.to_str().expect("UTF-8 path"),
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly) {
        println!("cargo::error=building the eBPF programs failed: {e:#}");
    }
}

/// The two things `cargo xtask setup` installs that the eBPF build needs.
fn ebpf_toolchain_ready() -> Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
        .unwrap_or(false);
    if !on_path {
        return Err("bpf-linker is not on PATH".into());
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run the nightly toolchain: {e}"))?;
    if !sysroot.status.success() {
        return Err("the nightly toolchain is not installed".into());
    }
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let core_src = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        return Err("rust-src is not installed for the nightly toolchain".into());
    }
    Ok(())
}

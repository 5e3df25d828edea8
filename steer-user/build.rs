//! Builds the kernel programs (steer-ebpf) with the nightly toolchain and bpf-linker, so that a
//! plain `cargo build` produces a `steer` binary with the object embedded. When the eBPF
//! toolchain is missing the build stops with one line that says how to install it.

use std::path::Path;

// The same checks `cargo xtask setup` makes before it calls the toolchain ready.
#[path = "../xtask/src/ebpf_toolchain.rs"]
mod ebpf_toolchain;

fn main() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let root = Path::new(manifest_dir)
        .parent()
        .expect("steer-user sits in the workspace");
    println!(
        "cargo::rerun-if-changed={}",
        root.join("steer-common").display()
    );
    // `cargo fuzz` builds with `--cfg fuzzing`. The fuzz targets parse text and never load a
    // program, so the objects are left empty: no eBPF build (nor bpf-linker) in the fuzz build.
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out =
            std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        for object in ["steer", "steer-testkit"] {
            std::fs::write(out.join(object), []).expect("write a placeholder object");
        }
        return;
    }
    if let Err(missing) = ebpf_toolchain::check() {
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

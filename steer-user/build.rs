//! Builds the kernel programs (steer-ebpf) with the nightly toolchain and bpf-linker, so that a
//! plain `cargo build` produces a `steer` binary with the object embedded. When the eBPF
//! toolchain is missing the build stops with one line that says how to install it.
//!
//! It also hands the source's git revision to `steer --version` (`STEER_REVISION`).

use std::path::Path;

// The same checks `cargo xtask setup` makes before it calls the toolchain ready.
#[path = "../xtask/src/ebpf_toolchain.rs"]
mod ebpf_toolchain;
// Reading HEAD's commit from the files; shared with tests/revision.rs.
#[path = "build/git_head.rs"]
mod git_head;
#[path = "build/strip_dwarf.rs"]
mod strip_dwarf;

fn main() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let root = Path::new(manifest_dir)
        .parent()
        .expect("steer-user sits in the workspace");
    println!("cargo::rustc-env=STEER_REVISION={}", revision(root));
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
        return;
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("steer");
    let stripped = std::fs::read(&object)
        .map_err(|e| e.to_string())
        .and_then(|bytes| strip_dwarf::strip_dwarf(&bytes).map_err(|e| e.to_string()))
        .and_then(|bytes| std::fs::write(&object, bytes).map_err(|e| e.to_string()));
    if let Err(e) = stripped {
        println!(
            "cargo::error=dropping the DWARF of {} failed: {e}",
            object.display()
        );
    }
}

/// Overrides the revision for builds outside a git checkout (a distribution building from a
/// release tarball knows the tag's commit).
const REVISION_ENV: &str = "STEER_GIT_REVISION";

/// `git <12 hex digits>` of the checkout `root` is in, `git <what the environment says>`, or
/// `unknown revision` (a tarball without `.git`). Read from the files (no `git` binary needed);
/// a revision that cannot be worked out is unknown, never a failed build.
///
/// Cargo reruns this script (and so recompiles steer-user) when one of the files it prints
/// changes: HEAD (a checkout of another branch) and the one ref HEAD points to (a commit on
/// this branch). Not the whole refs directory: in a checkout with worktrees it holds every
/// branch, and a commit elsewhere must not rebuild this one.
fn revision(root: &Path) -> String {
    println!("cargo::rerun-if-env-changed={REVISION_ENV}");
    if let Some(rev) = std::env::var(REVISION_ENV)
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return format!("git {}", rev.trim());
    }
    match git_head::git_head(root) {
        Some((hash, watched)) => {
            // Cargo reruns a script on every build while a file it watches is missing.
            for path in watched.iter().filter(|p| p.exists()) {
                println!("cargo::rerun-if-changed={}", path.display());
            }
            format!("git {}", &hash[..12])
        }
        None => "unknown revision".to_owned(),
    }
}

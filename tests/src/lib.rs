//! Support for steer's privileged tests: privilege checks, unique names, a seeded random
//! source, and network namespaces that clean up after themselves.
//!
//! Every test here talks to the real kernel. None is skipped: without root (CAP_BPF and
//! CAP_NET_ADMIN) a test fails with a message saying how to run it.

pub mod bench;
pub mod classifier;
pub mod daemon;
pub mod dns;
pub mod forwarding;
pub mod ha;
pub mod ipv6;
pub mod lab;
pub mod netns;
pub mod ranges;
pub mod rng;
pub mod routing;
pub mod scenario;
pub mod service;
pub mod tun;
pub mod witness;

use std::sync::atomic::{AtomicU32, Ordering};

/// Fails the test unless it runs with the privileges the kernel needs for BPF and namespaces.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and creates network namespaces: run it as root, \
         e.g. `sudo -E cargo xtask test`"
    );
}

/// A short tag unique to this process and call, for namespace and interface names
/// (interface names have at most 15 bytes).
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", std::process::id() % 0xfffff)
}

/// Unmounts a filesystem a test mounted (a bpffs, a small tmpfs) when dropped, lazily, so a
/// panicking test still leaves none behind; declare it after the `Workdir` that holds the
/// mount point, so it drops first.
#[derive(Debug)]
pub struct Unmount(pub std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

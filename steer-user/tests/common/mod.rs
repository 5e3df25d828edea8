//! What steer-user's integration test files share (each includes it with `mod common;`).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

/// A fresh directory under /tmp, removed when dropped, so a failing test leaves nothing behind
/// (the million-line list alone is 20 MB).
///
/// Always /tmp rather than `$TMPDIR`: control sockets must fit in the 108 bytes of `sun_path`,
/// and a child running as nobody must be able to reach them.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `/tmp/steer-<test file>-<pid>-<n>-<name>`, empty, mode 0755.
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!(
            "/tmp/steer-{}-{}-{n}-{name}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        // Set explicitly: the control tests' serve() may have the umask at 0177 right now.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
        Self(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

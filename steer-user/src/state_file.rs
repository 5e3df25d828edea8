//! The daemon's own state files next to its control socket (the runtime-set journal, the
//! IPv6 prefixes kept across restarts): written whole, only readable by root, and never seen
//! half-written.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

/// Writes `text` to `path` through `tmp`, renamed over it: a reader (or a daemon started after
/// a crash) finds the old file or the new one.
pub fn replace(path: &Path, tmp: &Path, text: &[u8]) -> io::Result<()> {
    let written = write_then_rename(path, tmp, text);
    if written.is_err() {
        // A full disk leaves the temporary file empty or cut short: it is no state, and
        // only takes room (and looks like a file steer forgot).
        let _ = fs::remove_file(tmp);
    }
    written
}

fn write_then_rename(path: &Path, tmp: &Path, text: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(text)?;
    // On disk before the rename, so that a crash leaves the old file or the whole new one.
    file.sync_all()?;
    fs::rename(tmp, path)
}

/// Removes `path` (`steer stop`); whether there was one.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_replace_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("steer-state-file-{}", std::process::id()));
        fs::create_dir_all(dir.join("taken/inside")).unwrap();
        // Renaming a file over a directory that is not empty fails after the write.
        let (path, tmp) = (dir.join("taken"), dir.join("state.tmp"));
        assert!(replace(&path, &tmp, b"state").is_err());
        assert!(!tmp.exists(), "the temporary file was left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! One daemon per network namespace. Two daemons in one namespace would fight over the same
//! `ip rule` priorities, the `inet steer` nftables table and the LAN interfaces' classifier,
//! whatever their pin directories and sockets are; so `steer run` takes this lock before it
//! changes anything, and a second one is refused with the first one's pid.
//!
//! The lock is a `flock` on `/run/steer/netns-<inode>.lock`, named after the namespace's inode:
//! the kernel drops it when the process dies (a `kill -9` leaves no stale lock), and the file is
//! 0600 in a directory only root may write, so no other user can take it and lock steer out.
//! A daemon that stops removes its file while it still holds the lock; so a daemon that took
//! the lock checks that its file is still the one at the path (it may have locked a file just
//! removed) and tries again if not.

use std::{
    fs::File,
    io::{self, Read, Seek, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

/// Where the locks live.
pub const LOCK_DIR: &str = "/run/steer";

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "{}: {source}; steer keeps its one-daemon-per-network-namespace lock there, in a \
         directory that must be root's and writable",
        path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "another steer daemon{} runs in this network namespace (it holds {}): stop it first \
         (`steer stop`, or its service); two would fight over the same rules, nftables table \
         and classifier",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path.display()
    )]
    Running { path: PathBuf, pid: Option<u32> },
    #[error(
        "{} is writable by users other than the one steer runs as (owner uid {owner}, mode \
         {mode:04o}): they could take steer's lock; `chown root {0} && chmod 0755 {0}`",
        dir.display()
    )]
    InsecureDir { dir: PathBuf, owner: u32, mode: u32 },
}

/// Held while the daemon runs; dropping it (or dying) releases the namespace.
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    _file: File,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Before the descriptor closes: no other daemon holds this file's lock now, and one
        // that locks it after this finds it gone from the path and takes a fresh one. Only
        // if the path is still this file (not one another daemon made after it was removed).
        if still_at(&self._file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Attempts at a lock whose file a stopping daemon removed meanwhile.
const ATTEMPTS: usize = 8;

/// Takes the lock of the current network namespace.
pub fn lock_namespace() -> Result<InstanceLock, InstanceError> {
    lock_in(Path::new(LOCK_DIR))
}

fn lock_in(dir: &Path) -> Result<InstanceLock, InstanceError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstanceError::Io { path, source }
    };
    prepare_dir(dir)?;
    let ns = Path::new("/proc/self/ns/net");
    let inode = std::fs::metadata(ns).map_err(io_err(ns))?.ino();
    let path = dir.join(format!("netns-{inode}.lock"));
    for _ in 0..ATTEMPTS {
        let file = lock_file(&path)?;
        if still_at(&file, &path) {
            return Ok(InstanceLock { path, _file: file });
        }
    }
    Err(io_err(&path)(io::Error::other(
        "the lock file was removed under each of several attempts: try again",
    )))
}

/// Whether `file` is the file at `path` (not one removed since it was opened).
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
        _ => false,
    }
}

/// Opens (or creates) the lock file at `path`, locks it and writes this process's pid in it.
fn lock_file(path: &Path) -> Result<File, InstanceError> {
    let io_err = |source| InstanceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(e));
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(InstanceError::Running {
            path: path.to_path_buf(),
            pid: text.trim().parse().ok(),
        });
    }
    // For the message a second daemon gives.
    let pid = std::process::id();
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{pid}"));
    written.map_err(io_err)?;
    Ok(file)
}

/// Whether a daemon holds the current network namespace's lock: `Some` with its pid (when it
/// wrote one). Nothing is created, and a lock this takes to look is let go at once.
pub fn holder() -> Option<Option<u32>> {
    let inode = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    let path = Path::new(LOCK_DIR).join(format!("netns-{inode}.lock"));
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    Some(text.trim().parse().ok())
}

/// Creates `dir` (0755) or checks that only this user may write into the existing one.
fn prepare_dir(dir: &Path) -> Result<(), InstanceError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => {}
        Err(source) => {
            return Err(InstanceError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|source| InstanceError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 || meta.file_type().is_symlink() {
        return Err(InstanceError::InsecureDir {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_in_the_same_namespace_is_refused_with_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("steer-instance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = lock_in(&dir).expect("the first lock");
        let second = lock_in(&dir).expect_err("a second lock");
        assert!(
            matches!(&second, InstanceError::Running { pid: Some(p), .. } if *p == std::process::id()),
            "{second}"
        );
        assert!(
            second.to_string().contains("another steer daemon (pid"),
            "{second}"
        );
        let path = first.path.clone();
        drop(first);
        assert!(
            !path.exists(),
            "a stopped daemon leaves no lock file behind"
        );
        let again = lock_in(&dir).expect("free again once the first is gone");
        assert!(path.exists());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

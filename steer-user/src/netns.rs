//! Which network namespace this process is in, and finding and naming another one.
//!
//! A namespace is told by the inode of its `ns/net` file and by its cookie
//! (`SO_NETNS_COOKIE`): the kernel gives a deleted namespace's inode to the next one made, the
//! cookie never again. steer records the namespace that pinned its state (see
//! `dataplane::pin_owner`), so that a router in another namespace given the same pin directory
//! (bpffs is one filesystem for all of them) is refused instead of taking that state over.

use std::{fs::File, io, os::fd::AsRawFd, path::Path};

use steer_common::PinOwner;

/// This thread's network namespace as procfs shows it.
pub const OWN_NAMESPACE: &str = "/proc/thread-self/ns/net";

/// The network namespace this thread runs in (the thread's own: a thread that entered a
/// namespace with `setns` is in it, its process's first thread may not be).
pub fn this_namespace() -> io::Result<PinOwner> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(OWN_NAMESPACE)?;
    Ok(PinOwner {
        netns_dev: meta.dev(),
        netns_ino: meta.ino(),
        netns_cookie: current_cookie().unwrap_or(0),
    })
}

/// Whether two records name one namespace: the same inode, and the same cookie where both
/// have one (an inode is given again to a namespace made after the first one is gone).
pub fn same_namespace(a: PinOwner, b: PinOwner) -> bool {
    a.netns_dev == b.netns_dev
        && a.netns_ino == b.netns_ino
        && (a.netns_cookie == 0 || b.netns_cookie == 0 || a.netns_cookie == b.netns_cookie)
}

/// The cookie of this thread's network namespace, from a socket made in it.
fn current_cookie() -> Option<u64> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is not used elsewhere.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    (rc == 0 && cookie != 0).then_some(cookie)
}

/// The cookie of the network namespace at `path` (`/proc/PID/ns/net`, `/run/netns/NAME`),
/// read on a thread that enters it; `None` when it cannot be entered.
fn cookie_at(path: &Path) -> Option<u64> {
    let ns = File::open(path).ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a descriptor we own; it moves only this short-lived thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            current_cookie()
        })
        .join()
        .ok()
        .flatten()
    })
}

/// A network namespace that still exists, and how to name it.
#[derive(Debug)]
pub struct FoundNamespace {
    ino: u64,
    /// Its name under /run/netns (`ip netns add`).
    pub name: Option<String>,
    /// A process in it (the first found).
    pid: Option<u32>,
}

impl FoundNamespace {
    /// The command that runs what follows it in this namespace: `ip netns exec NAME`, or
    /// `nsenter --net=/proc/PID/ns/net` for one without a name.
    pub fn run_there(&self) -> Option<String> {
        match (&self.name, self.pid) {
            (Some(n), _) => Some(format!("ip netns exec {n}")),
            (None, Some(pid)) => Some(format!("nsenter --net=/proc/{pid}/ns/net")),
            (None, None) => None,
        }
    }

    pub fn describe(&self) -> String {
        match (&self.name, self.pid) {
            (Some(n), _) => format!("{n} (/run/netns/{n})"),
            (None, Some(pid)) => format!("net:[{}] (pid {pid} is in it)", self.ino),
            (None, None) => format!("net:[{}]", self.ino),
        }
    }
}

/// Looks for `owner` among the named namespaces (/run/netns) and those of the processes.
pub fn find_namespace(owner: PinOwner) -> Option<FoundNamespace> {
    use std::os::unix::fs::MetadataExt;
    let is_it = |path: &Path| {
        std::fs::metadata(path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (owner.netns_dev, owner.netns_ino))
            && (owner.netns_cookie == 0
                // One that cannot be entered is taken for it: refusing is the safe side.
                || cookie_at(path).is_none_or(|c| c == owner.netns_cookie))
    };
    let name = std::fs::read_dir("/run/netns").ok().and_then(|entries| {
        entries
            .flatten()
            .find(|e| is_it(&e.path()))
            .and_then(|e| e.file_name().into_string().ok())
    });
    let pid = std::fs::read_dir("/proc").ok().and_then(|entries| {
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| is_it(&Path::new("/proc").join(pid.to_string()).join("ns/net")))
    });
    (name.is_some() || pid.is_some()).then_some(FoundNamespace {
        ino: owner.netns_ino,
        name,
        pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_namespace_says_how_to_run_a_command_in_it() {
        let named = FoundNamespace {
            ino: 7,
            name: Some("router".into()),
            pid: Some(42),
        };
        assert_eq!(named.run_there().as_deref(), Some("ip netns exec router"));
        let by_pid = FoundNamespace {
            ino: 7,
            name: None,
            pid: Some(42),
        };
        assert_eq!(
            by_pid.run_there().as_deref(),
            Some("nsenter --net=/proc/42/ns/net")
        );
    }
}

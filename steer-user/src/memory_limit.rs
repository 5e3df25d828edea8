//! The memory limit steer runs under: its memory cgroup's (systemd's `MemoryMax=`, a
//! container's limit). BPF maps are charged to the memory cgroup of the process that creates
//! them (kernel ≥ 5.11), so one limit bounds the daemon and its maps together, and going over
//! it gets the daemon OOM-killed in the middle of a load without a word. steer refuses
//! instead, before anything is loaded or written:
//!
//! - at start, a limit below what loading and verifying the eBPF object takes
//!   ([`START_BYTES`]): `steer run` exits with the limit named, before it reads a list;
//! - a list file that cannot be read and parsed within the limit, at start and at every
//!   reload, before it is (`config::ListBudget`): its text and [`BYTES_PER_PREFIX`] a line
//!   beside what the daemon and the sets hold;
//! - any change of the sets whose need at its peak is over the limit (`dataplane::sync`, with
//!   `general.max_memory`): the daemon's own base ([`BASE_BYTES`]), what it keeps and works
//!   with per prefix ([`BYTES_PER_PREFIX`]) and the kernel memory of the prefix maps at the
//!   change's peak, computed exactly (`model::footprint`). The sets in force stay.
//!
//! The daemon's figures are measured (`cargo xtask bench memory`, release build, this
//! machine), with room:
//! - a start with no set peaked at 46.7 MB in its cgroup (the verifier's working memory is
//!   charged there too), hence 48 MiB;
//! - the daemon holds 8 bytes an IPv4 prefix and 24 an IPv6 one; its peak over its floor was
//!   16 MB at a full reload of a million IPv4 prefixes (it parses the new lists beside the
//!   ones in force), hence 16 bytes a prefix over a base of 40 MiB.
//!
//! The limit is read again at every change, so a `systemctl set-property steer MemoryMax=`
//! applies to the next one. Limits of the cgroup's ancestors count too: the smallest wins.

use std::path::{Path, PathBuf};

use crate::model::footprint::Bytes;

/// What the daemon's start peaks at in its cgroup: loading and verifying the eBPF object.
pub const START_BYTES: u64 = 48 << 20;
/// The daemon's own memory beside its prefixes, at the peak of a change.
pub const BASE_BYTES: u64 = 40 << 20;
/// What the daemon holds and works with per prefix at the peak of a change.
pub const BYTES_PER_PREFIX: u64 = 16;

/// What the daemon keeps per runtime entry (`steer set add`): its place in the runtime table.
pub const BYTES_PER_RUNTIME_ENTRY: u64 = 112;
/// What a runtime edit takes per prefix it adds, at its peak: the entry kept, and the request's
/// prefixes, the plan, the writes and the journal's records while it is applied. Measured: a
/// `steer set add --file` of 224,694 host routes took the daemon's VmHWM from 15.8 to 70.5 MB
/// (245 bytes an entry; `memory_budget` tests).
pub const BYTES_PER_ADDED_ENTRY: u64 = 256;

/// A memory limit and the file it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub file: PathBuf,
}

/// `steer run` under a limit too small to load the eBPF object.
#[derive(Debug, thiserror::Error)]
#[error(
    "steer needs about {} to start (loading and verifying its eBPF programs), more than its \
     memory limit of {} ({}). Raise the service's MemoryMax= (rule of thumb: 48M, and 48 bytes \
     a prefix of the sets; docs/install.md); nothing was loaded",
    Bytes(START_BYTES),
    Bytes(.0.bytes),
    .0.file.display()
)]
pub struct TooSmallToStart(pub MemoryLimit);

impl MemoryLimit {
    /// The limit of this process's memory cgroup and its ancestors, the smallest; `None`
    /// when there is none (or no cgroup file could be read).
    pub fn of_this_process() -> Option<MemoryLimit> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::of_cgroup(&cgroups, Path::new("/sys/fs/cgroup"))
    }

    /// The limit for a process whose `/proc/PID/cgroup` reads `cgroups`, with the cgroup
    /// file systems mounted under `root`.
    fn of_cgroup(cgroups: &str, root: &Path) -> Option<MemoryLimit> {
        limit_files(cgroups, root)
            .into_iter()
            .filter_map(|file| {
                let text = std::fs::read_to_string(&file).ok()?;
                Some(MemoryLimit {
                    bytes: parse_limit(&text)?,
                    file,
                })
            })
            .min_by_key(|l| l.bytes)
    }

    /// Refuses a start this limit cannot hold.
    pub fn admit_start(&self) -> Result<(), TooSmallToStart> {
        if self.bytes < START_BYTES {
            return Err(TooSmallToStart(self.clone()));
        }
        Ok(())
    }
}

/// What the daemon and its maps need at the peak of a change that leaves `prefixes` in the
/// sets and needs `kernel` bytes of prefix maps at its peak.
pub fn need(kernel: u64, prefixes: usize) -> u64 {
    BASE_BYTES + BYTES_PER_PREFIX * prefixes as u64 + kernel
}

/// What a runtime edit adding `added` prefixes needs at least, before its kernel writes are
/// counted (the sync counts those): the daemon with `held` prefixes in the maps and `runtime`
/// runtime entries, the edit's own work, and the `kernel` bytes the maps hold now.
pub fn need_of_edit(kernel: u64, held: usize, runtime: usize, added: usize) -> u64 {
    need(kernel, held + added)
        + BYTES_PER_RUNTIME_ENTRY * runtime as u64
        + BYTES_PER_ADDED_ENTRY * added as u64
}

impl MemoryLimit {
    /// Refuses a runtime edit adding `added` prefixes that cannot fit (see [`need_of_edit`]),
    /// before the daemon plans it: the plan alone would take it over the limit.
    pub fn admit_edit(
        &self,
        kernel: u64,
        held: usize,
        runtime: usize,
        added: usize,
    ) -> Result<(), String> {
        let total = need_of_edit(kernel, held, runtime, added);
        if total <= self.bytes {
            return Ok(());
        }
        Err(format!(
            "adding {added} entries needs about {} at least, more than steer's memory limit of \
             {} ({}, systemd's MemoryMax=): {} for the edit itself and the entries it keeps, \
             {} for the {runtime} runtime entries there, {} for the daemon with {} prefixes \
             and {} of kernel memory the sets hold now. Raise MemoryMax= or add fewer at once \
             (a list file in the configuration costs far less a prefix than runtime entries)",
            Bytes(total),
            Bytes(self.bytes),
            self.file.display(),
            Bytes(BYTES_PER_ADDED_ENTRY * added as u64),
            Bytes(BYTES_PER_RUNTIME_ENTRY * runtime as u64),
            Bytes(need(0, held + added)),
            held + added,
            Bytes(kernel)
        ))
    }
}

/// The files that may limit a process in `cgroups` (its `/proc/PID/cgroup`), from its own
/// cgroup up to the hierarchy's root. The memory controller of cgroup v1 when it is mounted
/// (a hybrid system keeps memory there), else the unified (v2) hierarchy.
fn limit_files(cgroups: &str, root: &Path) -> Vec<PathBuf> {
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    let (base, path, file) = match (v1, v2) {
        (Some(path), _) if root.join("memory").is_dir() => {
            (root.join("memory"), path, "memory.limit_in_bytes")
        }
        (_, Some(path)) => (root.to_owned(), path, "memory.max"),
        _ => return Vec::new(),
    };
    let mut dir = base.join(path.trim_start_matches('/'));
    let mut files = Vec::new();
    while dir.starts_with(&base) {
        files.push(dir.join(file));
        if !dir.pop() {
            break;
        }
    }
    files
}

/// A limit file's bytes; `None` for no limit: v2's `max`, v1's page-rounded `i64::MAX`.
fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup tree under a temporary root: `files` are (path under root, content).
    fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("steer-memlimit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        root
    }

    #[test]
    fn a_v2_limit_is_the_smallest_of_the_cgroup_and_its_ancestors() {
        let root = tree(
            "v2",
            &[
                ("system.slice/memory.max", "67108864\n"),
                ("system.slice/steer.service/memory.max", "100663296\n"),
            ],
        );
        let limit = MemoryLimit::of_cgroup("0::/system.slice/steer.service\n", &root).unwrap();
        assert_eq!(limit.bytes, 64 << 20);
        assert_eq!(limit.file, root.join("system.slice/memory.max"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn max_and_a_v1_unlimited_value_are_no_limit() {
        let root = tree(
            "none",
            &[
                ("system.slice/steer.service/memory.max", "max\n"),
                ("memory/a/memory.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        assert_eq!(
            MemoryLimit::of_cgroup("0::/system.slice/steer.service\n", &root),
            None
        );
        assert_eq!(MemoryLimit::of_cgroup("4:memory:/a\n0::/\n", &root), None);
        assert_eq!(MemoryLimit::of_cgroup("", &root), None);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_hybrid_system_reads_the_v1_memory_controller() {
        let root = tree(
            "v1",
            &[
                ("memory/box/steer/memory.limit_in_bytes", "33554432\n"),
                ("system.slice/memory.max", "1048576\n"),
            ],
        );
        let cgroups = "9:name=systemd:/\n4:cpu,memory:/box/steer\n0::/system.slice\n";
        let limit = MemoryLimit::of_cgroup(cgroups, &root).unwrap();
        assert_eq!(limit.bytes, 32 << 20);
        assert!(limit.admit_start().is_err());
        let err = limit.admit_start().unwrap_err().to_string();
        assert!(
            err.contains("32.0 MiB") && err.contains("48.0 MiB"),
            "{err}"
        );
        assert!(err.contains("memory.limit_in_bytes"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_need_counts_the_base_each_prefix_and_the_kernel() {
        assert_eq!(need(0, 0), BASE_BYTES);
        assert_eq!(need(1000, 10), BASE_BYTES + 160 + 1000);
        assert_eq!(
            need_of_edit(1000, 10, 3, 2),
            need(1000, 12) + 3 * BYTES_PER_RUNTIME_ENTRY + 2 * BYTES_PER_ADDED_ENTRY
        );
    }

    #[test]
    fn an_edit_over_the_limit_is_refused_with_its_numbers() {
        let limit = MemoryLimit {
            bytes: 48 << 20,
            file: "/sys/fs/cgroup/steer.service/memory.max".into(),
        };
        assert!(limit.admit_edit(1 << 20, 2000, 0, 1000).is_ok());
        let err = limit.admit_edit(1 << 20, 2000, 0, 100_000).unwrap_err();
        assert!(err.contains("adding 100000 entries"), "{err}");
        assert!(err.contains("memory limit of 48.0 MiB"), "{err}");
        assert!(err.contains("steer.service/memory.max"), "{err}");
        assert!(err.contains("with 102000 prefixes"), "{err}");
    }
}

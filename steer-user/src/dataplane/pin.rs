//! Pinned state on bpffs: where steer keeps its maps, programs and links so that steering goes on
//! while the daemon is down and a new daemon adopts it. Also the lock that keeps a second daemon
//! (or a CLI writer) off the same pin directory.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/steer`):
//! `maps/<MAP>` for every map in `steer_common::map_names::ALL`, `maps/TABLE_FORMAT` (the
//! range tables' layout, which decides whether their pins can be adopted) and
//! `maps/PIN_OWNER` (the network namespace whose daemon pinned them: `pin_owner`),
//! `progs/steer_tc`, `progs/steer_xdp`, `progs/steer_wan_egress` and `progs/steer_wan_ingress`,
//! `links/tc-<interface>` and `links/xdp-native-<interface>` (or `xdp-generic-`) on LAN
//! interfaces, `links/wan-egress-<interface>` and `links/wan-ingress-<interface>` on WANs.
//!
//! Pinned state is the user's who runs the daemon (root) and nobody else's: whoever can write
//! into the pin directory can plant maps the classifier would adopt, and whoever can open it
//! can take its lock and keep `steer run` and `steer stop` out. So bpffs is mounted with mode
//! 0700 when steer mounts it, the directories are created 0700, an existing one must belong to
//! that user (a looser mode is tightened) and every directory above it up to the mount must be
//! that user's or root's and not writable by others (or sticky). The lock is a `flock` on the
//! pin directory itself: bpffs holds no regular files, and a 0700 directory only its owner can
//! open.

use std::{
    collections::BTreeSet,
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData, MapInfo};
use steer_common::{map_names, range};

use super::pin_owner::OtherNamespace;
use crate::netns::OWN_NAMESPACE;

/// `BPF_FS_MAGIC` from linux/magic.h. Compared as 32 bits: `f_type` is a signed 32-bit word
/// on 32-bit targets (ARM, MIPS routers), where this magic reads back negative.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("general.pin_dir: {path}: {source}{hint}", hint = io_hint(source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not on a BPF filesystem (bpffs): pinned state can only live there; set \
         general.pin_dir to a directory under /sys/fs/bpf (mounted if it is not), or mount one \
         there yourself (`mount -t bpf bpf DIR`)"
    )]
    NotBpffs { path: PathBuf },
    #[error(
        "mounting bpffs on /sys/fs/bpf failed: {0}; mount it yourself: mount -t bpf bpf /sys/fs/bpf"
    )]
    Mount(io::Error),
    #[error(
        "another steer process holds {path} (a daemon is running, or `steer stop` is at work); \
         stop it first, or give this one another general.pin_dir"
    )]
    Locked { path: PathBuf },
    #[error(
        "{path} belongs to uid {owner}, not to the user steer runs as (uid {me}): another user \
         could plant pins there or lock steer out; remove it (`rm -r {path}`) or set \
         general.pin_dir to a directory of your own"
    )]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} is writable by {who}: another user could replace the pin directory under it; \
         `chmod go-w {path}` (or make it sticky), or set general.pin_dir elsewhere"
    )]
    Writable { path: PathBuf, who: &'static str },
    #[error(
        "{path} is a symbolic link: a pin directory and the directories above it must be real \
         directories; remove it or set general.pin_dir elsewhere"
    )]
    Symlink { path: PathBuf },
    #[error(
        "pinned map {path} does not fit this steer: {mismatch}. It was made by another steer \
         version or configuration; run `steer stop` to remove the old state (steering stops \
         until the daemon starts again)"
    )]
    Incompatible { path: PathBuf, mismatch: String },
    /// Boxed: it travels up through every start's error type.
    #[error(transparent)]
    OtherNamespace(Box<OtherNamespace>),
    #[error(
        "reading this process's network namespace ({OWN_NAMESPACE}) to record or check which \
         router owns the pinned state: {0}; steer needs /proc mounted"
    )]
    OwnNamespace(#[source] io::Error),
}

/// What to do about an I/O error on the pin directory, by its cause: the raw error alone
/// ("Read-only file system") names neither the setting nor the way out.
fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EROFS) => {
            "; the bpffs it is on is mounted read-only, so no pin can be made there (nothing \
             was changed in the kernel): remount it read-write (`mount -o remount,rw` on its \
             mount point) or set general.pin_dir to a directory under /sys/fs/bpf"
        }
        Some(libc::EACCES | libc::EPERM) => {
            "; steer's pins are root's: run steer as root (with CAP_BPF and CAP_SYS_ADMIN)"
        }
        Some(libc::ENOSPC | libc::ENOMEM) => {
            "; the kernel is out of room for pins (memory, or the memory cgroup's limit): \
             free memory or raise the limit, then retry"
        }
        Some(libc::ENOTDIR) => {
            "; a part of the path is not a directory: set general.pin_dir to a directory \
             under /sys/fs/bpf"
        }
        _ => "; check general.pin_dir (a directory on a bpffs, by default under /sys/fs/bpf)",
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which program a link pin belongs to (for XDP, also the mode it was attached in, which the
/// kernel's link info does not tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Tc,
    XdpNative,
    XdpGeneric,
    /// The WAN traffic counters on a WAN device's egress and ingress.
    WanEgress,
    WanIngress,
}

impl LinkKind {
    pub const ALL: [LinkKind; 5] = [
        LinkKind::Tc,
        LinkKind::XdpNative,
        LinkKind::XdpGeneric,
        LinkKind::WanEgress,
        LinkKind::WanIngress,
    ];

    /// The pin's name for `iface`, under `links/`.
    pub fn pin_name(self, iface: &str) -> String {
        format!("{}{iface}", self.prefix())
    }

    fn prefix(self) -> &'static str {
        match self {
            LinkKind::Tc => "tc-",
            LinkKind::XdpNative => "xdp-native-",
            LinkKind::XdpGeneric => "xdp-generic-",
            LinkKind::WanEgress => "wan-egress-",
            LinkKind::WanIngress => "wan-ingress-",
        }
    }
}

/// Interfaces that have a pinned link of `kind` under the pin directory `root` (read without
/// the lock: `steer explain` beside a running daemon).
pub fn linked_interfaces(root: &Path, kind: LinkKind) -> Result<Vec<String>, PinError> {
    let dir = root.join("links");
    let entries = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(kind.prefix())
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The directories under the pin directory, in the order they are emptied: links first (which
/// detaches the programs from the interfaces), then programs and maps.
const SUBDIRS: [&str; 3] = ["links", "progs", "maps"];

/// The pin directory, locked for this process as long as the value lives.
#[derive(Debug)]
pub struct PinDir {
    root: PathBuf,
    /// flock(LOCK_EX) on the directory; released by the kernel when the process dies, so a
    /// `kill -9` never leaves a stale lock.
    _lock: File,
    /// The directories and pins that were there when it was opened: what
    /// [`PinDir::remove_created`] leaves.
    found: BTreeSet<PathBuf>,
}

impl PinDir {
    /// Mounts bpffs on /sys/fs/bpf if needed, creates the layout (or checks that an existing
    /// one is this user's alone) and takes the lock.
    pub fn open_locked(root: &Path) -> Result<PinDir, PinError> {
        ensure_bpffs(root)?;
        check_ancestors(root)?;
        let found = found_in(root);
        for dir in [root.to_path_buf()]
            .into_iter()
            .chain(SUBDIRS.map(|sub| root.join(sub)))
        {
            private_dir(&dir)?;
        }
        let lock = File::open(root).map_err(io_err(root))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                PinError::Locked {
                    path: root.to_path_buf(),
                }
            } else {
                PinError::Io {
                    path: root.to_path_buf(),
                    source: e,
                }
            });
        }
        Ok(PinDir {
            root: root.to_path_buf(),
            _lock: lock,
            found,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        map_path(&self.root, name)
    }

    pub fn prog(&self, name: &str) -> PathBuf {
        self.root.join("progs").join(name)
    }

    pub fn link(&self, kind: LinkKind, iface: &str) -> PathBuf {
        self.root.join("links").join(kind.pin_name(iface))
    }

    /// Interfaces that have a pinned link of `kind`.
    pub fn linked_interfaces(&self, kind: LinkKind) -> Result<Vec<String>, PinError> {
        linked_interfaces(&self.root, kind)
    }

    /// Refuses pinned maps whose type, key size, value size, capacity or flags differ from the
    /// maps this binary's object defines (`expected`, one fresh map per name); a cache
    /// ([`CACHE_MAPS`]) that differs is unpinned instead, and made anew by the load.
    pub fn check_compatible(&self, expected: &[(&'static str, MapInfo)]) -> Result<(), PinError> {
        for (name, want) in expected {
            let path = self.map(name);
            if !path.exists() {
                continue;
            }
            let have = MapInfo::from_pin(&path).map_err(map_err(&path))?;
            let Some(mismatch) = mismatch(want, &have) else {
                continue;
            };
            if !CACHE_MAPS.contains(name) {
                return Err(PinError::Incompatible { path, mismatch });
            }
            self.clear(&path)?;
            log::info!(
                "{}: {mismatch}; it only caches what is in flight, so a new one replaces it \
                 (the running classifier keeps the old one until it is swapped)",
                path.display()
            );
        }
        Ok(())
    }

    /// Replaces the pin at `path` (a program or link pinned by an earlier daemon).
    pub fn clear(&self, path: &Path) -> Result<(), PinError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Removes every pin and the directory itself: links first (which detaches the programs
    /// from the interfaces), then programs and maps. Returns what was removed.
    pub fn remove_all(self) -> Result<Vec<PathBuf>, PinError> {
        self.remove_unless(|_| false)
    }

    /// Removes the pins and directories that were not there when it was opened, leaving an
    /// earlier daemon's as they were: what a start refused before it went live created.
    /// Returns what was removed.
    pub fn remove_created(self) -> Result<Vec<PathBuf>, PinError> {
        self.remove_unless(|path| self.found.contains(path))
    }

    /// Removes every pin, then every directory left empty, except what `keep` holds on to.
    fn remove_unless(&self, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        for sub in SUBDIRS {
            let dir = self.root.join(sub);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if !keep(&path) {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                    removed.push(path);
                }
            }
            if !keep(&dir) {
                std::fs::remove_dir(&dir).map_err(io_err(&dir))?;
            }
        }
        if !keep(&self.root) {
            match std::fs::remove_dir(&self.root) {
                // A bpffs mount point given as the pin directory stays, empty; one that holds
                // others' pins stays with them.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {}
                done => done.map_err(io_err(&self.root))?,
            }
        }
        Ok(removed)
    }
}

/// The directories of the layout under `root` and the pins in them, as they are now.
fn found_in(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    if !root.is_dir() {
        return found;
    }
    found.insert(root.to_path_buf());
    for sub in SUBDIRS {
        let dir = root.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        found.extend(entries.flatten().map(|e| e.path()));
        found.insert(dir);
    }
    found
}

/// Creates `dir` with mode 0700, or checks that the existing one is this user's (and tightens
/// a looser mode, as an older steer left it).
fn private_dir(dir: &Path) -> Result<(), PinError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if meta.file_type().is_symlink() {
        return Err(PinError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    let me = effective_uid();
    if meta.uid() != me {
        return Err(PinError::NotOwned {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// The directories above `root` that exist, up to the bpffs mount: each must be this user's or
/// root's, and not writable by others unless sticky (where nobody removes what is not theirs).
fn check_ancestors(root: &Path) -> Result<(), PinError> {
    use std::os::unix::fs::MetadataExt;
    let me = effective_uid();
    for dir in root.ancestors().skip(1).filter(|d| d.exists()) {
        if !is_bpffs(dir) {
            break;
        }
        let meta = std::fs::symlink_metadata(dir).map_err(io_err(dir))?;
        if meta.file_type().is_symlink() {
            return Err(PinError::Symlink {
                path: dir.to_path_buf(),
            });
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(PinError::NotOwned {
                path: dir.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let sticky = meta.mode() & 0o1000 != 0;
        let who = match meta.mode() & 0o022 {
            _ if sticky => None,
            0 => None,
            0o020 => Some("its group"),
            _ => Some("everyone"),
        };
        if let Some(who) = who {
            return Err(PinError::Writable {
                path: dir.to_path_buf(),
                who,
            });
        }
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Where map `name` is pinned under `root` (also used by readers that do not take the lock).
pub fn map_path(root: &Path, name: &str) -> PathBuf {
    root.join("maps").join(name)
}

fn mismatch(want: &MapInfo, have: &MapInfo) -> Option<String> {
    let fields = [
        (
            "type",
            want.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
            have.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
        ),
        ("key size", want.key_size(), have.key_size()),
        ("value size", want.value_size(), have.value_size()),
        (
            "capacity (max entries)",
            want.max_entries(),
            have.max_entries(),
        ),
        ("flags", want.map_flags(), have.map_flags()),
    ];
    fields
        .iter()
        .find(|(_, w, h)| w != h)
        .map(|(what, w, h)| format!("its {what} is {h}, this steer needs {w}"))
}

/// Refuses range tables pinned under `root` by a steer that lays them out otherwise
/// ([`range::FORMAT`]): this steer's programs would misread them, and an earlier steer's
/// programs, still attached until this one replaces them, would misread what it rebuilds.
pub fn check_table_format(root: &Path) -> Result<(), PinError> {
    let tables = map_path(root, map_names::DST_V4);
    if !tables.exists() {
        return Ok(());
    }
    let path = map_path(root, map_names::TABLE_FORMAT);
    let have = if path.exists() {
        let map = MapData::from_pin(&path).map_err(map_err(&path))?;
        let format = Array::<MapData, u32>::try_from(Map::Array(map)).map_err(map_err(&path))?;
        Some(format.get(&0, 0).map_err(map_err(&path))?)
    } else {
        None
    };
    if have == Some(range::FORMAT) {
        return Ok(());
    }
    let had = have.map_or_else(
        || "an earlier layout (none recorded beside them)".to_owned(),
        |f| format!("layout {f}"),
    );
    Err(PinError::Incompatible {
        path: tables,
        mismatch: format!(
            "its range tables are in {had}, this steer reads layout {}",
            range::FORMAT
        ),
    })
}

/// Records this steer's table layout beside the maps pinned under `root`, unless it is there.
pub fn record_table_format(root: &Path) -> Result<(), PinError> {
    let path = map_path(root, map_names::TABLE_FORMAT);
    if path.exists() {
        return Ok(());
    }
    let mut format = Array::<MapData, u32>::create(1, 0).map_err(map_err(&path))?;
    format.set(0, range::FORMAT, 0).map_err(map_err(&path))?;
    format.pin(&path).map_err(map_err(&path))
}

/// Pinned maps that only cache what is in flight (the rule of a datagram's first fragment,
/// for the fragments after it): an upgrade that changes their layout replaces them instead of
/// refusing the start, since losing them costs at most the fragments in flight that moment.
const CACHE_MAPS: [&str; 1] = [map_names::FRAGS];

pub(super) fn map_err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> PinError + '_ {
    move |e| PinError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e.to_string()),
    }
}

/// The `MapInfo` of a map of a loaded object.
pub fn info_of(map: &Map) -> Option<MapInfo> {
    let data: &MapData = match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::LpmTrie(d)
        | Map::ArrayOfMaps(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::RingBuf(d) => d,
        _ => return None,
    };
    data.info().ok()
}

/// Mounts bpffs on /sys/fs/bpf when `path` is under it and nothing is mounted there yet, then
/// checks that `path`'s filesystem (or its nearest existing ancestor's) is bpffs.
pub fn ensure_bpffs(path: &Path) -> Result<(), PinError> {
    let sys_bpf = Path::new("/sys/fs/bpf");
    if path.starts_with(sys_bpf) && !is_bpffs(sys_bpf) {
        std::fs::create_dir_all(sys_bpf).map_err(io_err(sys_bpf))?;
        // Root's alone (the kernel's default is 1777 when no mode is given).
        let (src, target, fstype, data) = (c"bpf", c"/sys/fs/bpf", c"bpf", c"mode=0700");
        // SAFETY: all strings are NUL-terminated literals that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(PinError::Mount(io::Error::last_os_error()));
        }
        log::info!("mounted bpffs on /sys/fs/bpf");
        if !in_parents_mount_namespace() {
            log::warn!(
                "that bpffs is in a mount namespace of this process's own (`ip netns exec` \
                 makes one): the pins go with it when steer exits, so a restart \
                 cannot adopt the running state and `steer stop` cannot find it; start steer \
                 with `nsenter --net=/run/netns/NAME`, which keeps the system's mounts"
            );
        }
    }
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        Ok(())
    } else {
        Err(PinError::NotBpffs {
            path: path.to_path_buf(),
        })
    }
}

/// Whether this process shares its parent's mount namespace (true when that cannot be read).
/// `ip netns exec` unshares one and then starts the program in it; a service manager's
/// sandboxing gives a service one too. Either way a bpffs steer mounts there is seen by no one
/// else and goes when the process ends.
fn in_parents_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let parent = format!("/proc/{}/ns/mnt", std::os::unix::process::parent_id());
    match (ns("/proc/self/ns/mnt"), ns(&parent)) {
        (Ok(own), Ok(parents)) => own == parents,
        _ => true,
    }
}

/// Whether a BPF filesystem is mounted at `path`.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as u32 == BPF_FS_MAGIC
    }
}

#[cfg(test)]
mod io_error_tests {
    use super::*;

    #[test]
    fn a_read_only_pin_dir_names_the_setting_the_cause_and_the_way_out() {
        let e = io_err(Path::new("/tmp/ro/pin"))(io::Error::from_raw_os_error(libc::EROFS));
        let text = e.to_string();
        assert!(text.starts_with("general.pin_dir: /tmp/ro/pin: "), "{text}");
        assert!(text.contains("mounted read-only"), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(text.contains("remount it read-write"), "{text}");
        // Every other I/O error on the pin directory names the setting and what to check.
        for errno in [libc::EACCES, libc::ENOSPC, libc::ENOTDIR, libc::EIO] {
            let text =
                io_err(Path::new("/sys/fs/bpf/x"))(io::Error::from_raw_os_error(errno)).to_string();
            assert!(
                text.starts_with("general.pin_dir: /sys/fs/bpf/x: "),
                "{text}"
            );
            assert!(text.matches(';').count() >= 1, "{text}");
        }
    }
}

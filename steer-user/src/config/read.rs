//! Reading the configuration and list files. steer reads them as root, often from directories
//! other programs write (a list updated by a cron job or a web interface), so a path is not
//! trusted just because it opens:
//!
//! - Only a regular file is read: a FIFO or a device (`/dev/zero`) would block the daemon or
//!   fill its memory. It is opened without blocking and checked before a byte is read.
//! - Its size is capped ([`MAX_CONFIG_BYTES`], [`MAX_LIST_BYTES`]); no more than the cap is
//!   ever read, even from a file that grows.
//! - A symbolic link anywhere on the path is followed only when root (or the user steer runs
//!   as) made it: a link planted by another user into a directory it may write cannot point
//!   steer at a file that user may not read. (The lines of a file that turns out not to be a
//!   list are never repeated in messages either, see `list`.)
//! - The file is read whole and must be the same file, with the same size and modification
//!   time, before and after the read, and must not have been written in the last moment: a
//!   list rewritten in place while it is read is read again (a few times) or refused, never
//!   applied half-written. Writing the new file next to the old one and renaming it into place
//!   is always safe, and is read at once: a rename changes the file's inode (its ctime) after
//!   its last write, which a file still being written in place never shows ([`unsettled`]).
//!   Each wait is recorded ([`take_waits`]) for the caller to say why it took a second.

use std::{
    fs::{File, Metadata},
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Component, Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest list file read: a million IPv6 prefixes with comments fit easily.
pub const MAX_LIST_BYTES: u64 = 64 << 20;

/// Symbolic links followed on one path before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;
/// Reads of a file that keeps changing before it is refused.
const TRIES: u32 = 4;
/// A file written in place more recently than this may still be being written: wait for it to
/// settle. (A writer that pauses longer in the middle of a file cannot be told from a finished
/// one; renaming a complete file into place is the safe way.)
const SETTLE: Duration = Duration::from_secs(1);
/// Waits kept for [`take_waits`] on one thread at most (a thread that never takes them keeps
/// no more).
const MAX_WAITS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    #[error("it is larger than the {limit} bytes such a file may have")]
    TooBig { limit: u64 },
    #[error(
        "the symbolic link {} belongs to uid {owner}: steer follows only links made by root or \
         by the user it runs as",
        link.display()
    )]
    UntrustedLink { link: PathBuf, owner: u32 },
    #[error(
        "it is a symbolic link to {}, which does not exist",
        target.display()
    )]
    DanglingLink { target: PathBuf },
    #[error("more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks,
    #[error("it changed while it was read ({TRIES} tries)")]
    Unstable,
}

impl ReadError {
    /// What to do about it, for a list file (the configuration file's reader and `steer
    /// import` say their own for [`ReadError::TooBig`]).
    pub fn hint(&self) -> &'static str {
        match self {
            ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                "fix the path or create the file"
            }
            ReadError::Io(_) => "check the path and the file's permissions",
            ReadError::NotRegular { .. } => "give the path of a regular file",
            // A list file's: the configuration file says its own (`config::read_text`), and
            // other readers theirs.
            ReadError::TooBig { .. } => "split the list into several files of the set's `files`",
            ReadError::DanglingLink { .. } => "fix the link, or create the file it points to",
            ReadError::UntrustedLink { .. } => {
                "replace the link by the file, or have root make the link"
            }
            ReadError::TooManyLinks => "the path has a loop of symbolic links; fix it",
            ReadError::Unstable => {
                "something rewrites it in place; write the new file next to it and rename it \
                 into place (`mv`), which is atomic"
            }
        }
    }
}

/// The whole contents of the regular file at `path`, at most `limit` bytes (see the module
/// docs for what is refused). Recorded into [`Inputs::record`]'s list when one is running.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (bytes, stamp) = read_stamped(path, limit)?;
    RECORDING.with(|r| {
        if let Some(stamps) = r.borrow_mut().as_mut() {
            stamps.push(stamp);
        }
    });
    Ok(bytes)
}

/// [`read_file`], with what identifies the bytes read.
fn read_stamped(path: &Path, limit: u64) -> Result<(Vec<u8>, Stamp), ReadError> {
    let resolved = resolve(path)?;
    let mut waited = None;
    let record = |waited: Option<Wait>| {
        if let Some(wait) = waited {
            WAITS.with(|w| {
                let mut w = w.borrow_mut();
                if w.len() < MAX_WAITS {
                    w.push(wait);
                }
            });
        }
    };
    for _ in 0..TRIES {
        let why = match read_once(&resolved, limit) {
            Ok(ReadOnce::Whole(bytes, meta)) => {
                let stamp = Stamp {
                    path: path.to_path_buf(),
                    limit,
                    id: (meta.dev(), meta.ino()),
                    size: bytes.len() as u64,
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    hash: content_hash(&bytes),
                };
                record(waited);
                return Ok((bytes, stamp));
            }
            Ok(ReadOnce::Again(why)) => why,
            Err(e) => {
                record(waited);
                return Err(e);
            }
        };
        let wait = waited.get_or_insert(Wait {
            path: path.to_path_buf(),
            took: Duration::ZERO,
            why,
        });
        let started = std::time::Instant::now();
        std::thread::sleep(SETTLE);
        wait.took += started.elapsed();
    }
    record(waited);
    Err(ReadError::Unstable)
}

/// A read that waited for its file to settle: which file, how long, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// As the caller named it.
    pub path: PathBuf,
    pub took: Duration,
    pub why: Unsettled,
}

/// Why a file was not read at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsettled {
    /// Written in place less than [`SETTLE`] ago (not renamed into place since).
    Fresh,
    /// It changed while it was read.
    Changed,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.why {
            Unsettled::Fresh => "it was written less than a second ago",
            Unsettled::Changed => "it changed while it was read",
        };
        write!(
            f,
            "waited {:.1} s for {} to settle: {why} (write the new file next to it and rename \
             it into place, `mv`: a renamed file is read at once)",
            self.took.as_secs_f64(),
            self.path.display()
        )
    }
}

/// The waits of this thread's reads since the last call (see [`Wait`]), oldest first.
pub fn take_waits() -> Vec<Wait> {
    WAITS.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

thread_local! {
    // The files a configuration is made of are read deep inside its parsing (each set's list
    // files, domain lists); recording them where every read passes spares threading a
    // collector through every builder, and cannot miss a file a new key adds.
    static RECORDING: std::cell::RefCell<Option<Vec<Stamp>>> =
        const { std::cell::RefCell::new(None) };
    // Likewise the waits for a file to settle, for whoever reports the read (a reload's reply,
    // `steer check`) to say where the second went.
    static WAITS: std::cell::RefCell<Vec<Wait>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One file as it was read: where it is, which file it was, its size, modification time and
/// a hash of the bytes. The bytes themselves are not kept (a list can be 64 MB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// As the configuration names it (links are resolved again on every read).
    path: PathBuf,
    limit: u64,
    /// Device and inode: a list replaced by a rename is another file even with the same size
    /// and time.
    id: (u64, u64),
    size: u64,
    mtime: (i64, i64),
    hash: u64,
}

/// Every file a configuration was read from (the configuration file, its list and domain
/// files), as read: what a reload checks to skip parsing when none of them changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    stamps: Vec<Stamp>,
}

impl Inputs {
    /// Runs `f` (a [`load`](super::load) on this thread) and records every file it reads.
    pub fn record<T>(f: impl FnOnce() -> T) -> (T, Inputs) {
        let outer = RECORDING.with(|r| r.borrow_mut().replace(Vec::new()));
        let out = f();
        let stamps = RECORDING
            .with(|r| std::mem::replace(&mut *r.borrow_mut(), outer))
            .unwrap_or_default();
        (out, Inputs { stamps })
    }

    /// How many files were read.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// Whether reading every file again gives what was read: the same file (device, inode),
    /// size, modification time and content hash. Reads each once (no parsing); any error reads
    /// as a change, so the full load reports it.
    pub fn unchanged(&self) -> bool {
        matches!(self.check(), Check::Unchanged)
    }

    /// Reads every file again (no parsing) and says which read differently from their stamps,
    /// with what they hold now.
    pub fn check(&self) -> Check {
        self.check_within(u64::MAX)
    }

    /// [`Inputs::check`] holding at most `room` bytes of text at once (a daemon under a memory
    /// limit: [`super::ListBudget::text_room`]): a file that would take more, with the changed
    /// files kept before it, is not read (its opened file's size says so) and reads as
    /// [`Check::Unreadable`], for the full load to admit each list on its own, or refuse it.
    pub fn check_within(&self, room: u64) -> Check {
        if self.stamps.is_empty() {
            return Check::Unreadable;
        }
        let mut changed = Vec::new();
        let mut kept = 0;
        for (index, s) in self.stamps.iter().enumerate() {
            let Ok((bytes, now)) = read_stamped(&s.path, s.limit.min(room - kept)) else {
                return Check::Unreadable;
            };
            // Stamped with the file's own limit, not the lower one it was read with.
            let stamp = Stamp {
                limit: s.limit,
                ..now
            };
            if stamp != *s {
                kept += bytes.len() as u64;
                changed.push(Changed {
                    index,
                    bytes,
                    stamp,
                });
            }
        }
        if changed.is_empty() {
            Check::Unchanged
        } else {
            Check::Changed(changed)
        }
    }

    /// The path of file `index` as the configuration names it. The configuration file itself
    /// is always file 0 (it is read first).
    pub fn path(&self, index: usize) -> &Path {
        &self.stamps[index].path
    }

    /// These inputs with the files of `changed` stamped as they are now.
    pub fn with(&self, changed: impl IntoIterator<Item = (usize, Stamp)>) -> Inputs {
        let mut out = self.clone();
        for (index, stamp) in changed {
            out.stamps[index] = stamp;
        }
        out
    }
}

/// What [`Inputs::check`] found.
#[derive(Debug)]
pub enum Check {
    Unchanged,
    /// These files read differently (and nothing failed to read).
    Changed(Vec<Changed>),
    /// A file could not be read again (the full load says why), or nothing was recorded.
    Unreadable,
}

/// A file that reads differently from its stamp, as it reads now.
#[derive(Debug)]
pub struct Changed {
    /// Its index in the [`Inputs`].
    pub index: usize,
    pub bytes: Vec<u8>,
    pub stamp: Stamp,
}

/// A fast 64-bit hash of a file's bytes, four independent lanes of 8-byte words (about a word
/// per cycle here; 16 MB in a few ms). Not cryptographic: whoever can write a list can write
/// any list, and size, time and inode are compared too.
pub fn content_hash(bytes: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x85eb_ca77_c2b2_ae63,
    ];
    let mut lanes = K;
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *lane = (*lane ^ w).wrapping_mul(K[i]).rotate_left(31);
        }
    }
    let mut h = bytes.len() as u64;
    for lane in lanes {
        h = (h ^ lane).wrapping_mul(K[0]).rotate_left(27);
    }
    for &b in blocks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K[1]);
    }
    h ^ (h >> 32)
}

/// What one read gave.
enum ReadOnce {
    Whole(Vec<u8>, Metadata),
    /// Not read, or read while it changed: to be read again after a wait.
    Again(Unsettled),
}

/// One read.
fn read_once(path: &Path, limit: u64) -> Result<ReadOnce, ReadError> {
    // Not following a link here: `resolve` checked them all, and a link that appeared since is
    // refused instead of followed. Non-blocking, so that opening a FIFO returns at once.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let before = file.metadata()?;
    check_regular(&before)?;
    if before.size() > limit {
        return Err(ReadError::TooBig { limit });
    }
    if unsettled(&before, SystemTime::now()) {
        return Ok(ReadOnce::Again(Unsettled::Fresh));
    }
    let mut bytes = Vec::with_capacity(before.size() as usize);
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooBig { limit });
    }
    let after = std::fs::symlink_metadata(path)?;
    let same = |m: &Metadata| {
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
            == (
                before.dev(),
                before.ino(),
                bytes.len() as u64,
                before.mtime(),
                before.mtime_nsec(),
            )
    };
    Ok(if same(&file.metadata()?) && same(&after) {
        ReadOnce::Whole(bytes, before)
    } else {
        ReadOnce::Again(Unsettled::Changed)
    })
}

fn check_regular(meta: &Metadata) -> Result<(), ReadError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(ReadError::NotRegular { kind })
}

/// Whether the file may still be being written in place: written less than [`SETTLE`] before
/// `now`, and not renamed (nor its inode otherwise changed) since. A write sets the modification
/// and change times to the same instant; renaming the file into place afterwards sets its
/// change time later (Linux, on ext4, tmpfs, overlayfs, btrfs, xfs), so a file renamed into
/// place after its last write is complete and is read at once. A rename within the same clock
/// tick as the last write (a few ms; `sed -i` on a small file) leaves the times equal: that
/// file waits, as every fresh file did before.
fn unsettled(meta: &Metadata, now: SystemTime) -> bool {
    let mtime = (meta.mtime(), meta.mtime_nsec());
    let ctime = (meta.ctime(), meta.ctime_nsec());
    if ctime > mtime {
        return false;
    }
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age < SETTLE)
}

/// `path` with every symbolic link on it resolved, each checked to be root's or this user's.
fn resolve(path: &Path) -> Result<PathBuf, ReadError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut todo: Vec<PathBuf> = components_reversed(path);
    let mut done = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir()?
    };
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part.as_os_str() == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            // Through a link: say the link is what points nowhere (the link itself exists,
            // so "no such file" alone would puzzle whoever looks at it).
            Err(e) if todo.is_empty() && links > 0 && e.kind() == io::ErrorKind::NotFound => {
                return Err(ReadError::DanglingLink { target: next });
            }
            // The open reports it, with the path as written.
            Err(_) if todo.is_empty() => return Ok(next),
            Err(e) => return Err(e.into()),
        };
        if !meta.file_type().is_symlink() {
            done = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(ReadError::TooManyLinks);
        }
        if meta.uid() != 0 && meta.uid() != me {
            return Err(ReadError::UntrustedLink {
                link: next,
                owner: meta.uid(),
            });
        }
        let target = std::fs::read_link(&next)?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        todo.extend(components_reversed(&target));
    }
    Ok(done)
}

/// The normal and `..` components of `path`, last first (a stack to pop from).
fn components_reversed(path: &Path) -> Vec<PathBuf> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::Scratch;

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = Scratch::new("read-ok");
        let path = dir.write("list.txt", "192.0.2.0/24\n");
        std::thread::sleep(SETTLE);
        assert_eq!(read_file(&path, 100).unwrap(), b"192.0.2.0/24\n");
        // Through a link of our own, and through `..`.
        let link = path.with_file_name("link.txt");
        std::os::unix::fs::symlink("list.txt", &link).unwrap();
        assert_eq!(read_file(&link, 100).unwrap(), b"192.0.2.0/24\n");
        let dotdot = path
            .parent()
            .unwrap()
            .join("../")
            .join(path.parent().unwrap().file_name().unwrap());
        assert_eq!(
            read_file(&dotdot.join("list.txt"), 100).unwrap(),
            b"192.0.2.0/24\n"
        );
    }

    /// A file renamed into place after its last write is complete: read at once, however fresh.
    /// One written in place a moment ago is waited for, and the wait is told.
    #[test]
    fn a_renamed_file_is_read_at_once_and_a_fresh_one_written_in_place_waits_and_says_so() {
        let dir = Scratch::new("read-settle");
        let path = dir.write("list.txt", "192.0.2.0/24\n");
        let temp = dir.write(".list.txt.new", "198.51.100.0/24\n");
        // Past the clock tick of the write (a few ms), as any download is.
        std::thread::sleep(Duration::from_millis(30));
        std::fs::rename(&temp, &path).unwrap();
        take_waits();
        let started = std::time::Instant::now();
        assert_eq!(read_file(&path, 100).unwrap(), b"198.51.100.0/24\n");
        assert!(started.elapsed() < SETTLE / 2, "{:?}", started.elapsed());
        assert_eq!(take_waits(), []);

        std::fs::write(&path, "203.0.113.0/24\n").unwrap();
        let started = std::time::Instant::now();
        assert_eq!(read_file(&path, 100).unwrap(), b"203.0.113.0/24\n");
        assert!(started.elapsed() >= SETTLE, "{:?}", started.elapsed());
        let waits = take_waits();
        assert_eq!(waits.len(), 1, "{waits:?}");
        assert_eq!(waits[0].why, Unsettled::Fresh);
        let told = waits[0].to_string();
        assert!(
            told.starts_with(&format!(
                "waited 1.0 s for {} to settle: it was written less than a second ago",
                path.display()
            )),
            "{told}"
        );
        assert!(told.contains("rename it into place"), "{told}");
    }

    #[test]
    fn a_link_to_nothing_is_named_as_such() {
        let dir = Scratch::new("read-dangling");
        let path = dir.write("list.txt", "192.0.2.0/24\n");
        let link = path.with_file_name("link.txt");
        std::os::unix::fs::symlink("gone.txt", &link).unwrap();
        let e = read_file(&link, 100).unwrap_err();
        assert!(
            e.to_string().starts_with("it is a symbolic link to ")
                && e.to_string().ends_with("gone.txt, which does not exist"),
            "{e}"
        );
        assert_eq!(e.hint(), "fix the link, or create the file it points to");
        let missing = read_file(&path.with_file_name("none.txt"), 100).unwrap_err();
        assert!(matches!(missing, ReadError::Io(_)), "{missing}");
    }

    #[test]
    fn a_file_that_never_settles_is_refused() {
        let dir = Scratch::new("read-unstable");
        let path = dir.write("list.txt", "192.0.2.0/24\n");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(&path, "192.0.2.0/24\n").unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let e = read_file(&path, 100).unwrap_err();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(matches!(e, ReadError::Unstable), "{e}");
        assert!(e.hint().contains("rename it into place"), "{}", e.hint());
    }

    #[test]
    fn devices_fifos_directories_and_big_files_are_refused() {
        let dir = Scratch::new("read-refused");
        let e = read_file(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(
            matches!(e, ReadError::NotRegular { kind: "a device" }),
            "{e}"
        );
        let fifo = dir.write("x", "").with_file_name("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file(&fifo, 100).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a FIFO (named pipe)"
                }
            ),
            "{e}"
        );
        let e = read_file(fifo.parent().unwrap(), 100).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a directory"
                }
            ),
            "{e}"
        );
        let big = dir.write("big.txt", &"1.2.3.4\n".repeat(20));
        std::thread::sleep(SETTLE);
        let e = read_file(&big, 100).unwrap_err();
        assert!(matches!(e, ReadError::TooBig { limit: 100 }), "{e}");
    }
}

//! Reading list files under the daemon's memory limit. The sets are held against the limit
//! once they are parsed (`dataplane::sync`), but reading a list takes memory before that: its
//! text, read whole, and a sort key a line beside it. A reload whose list grew far past what
//! the limit holds (three million lines where a hundred thousand fit) got the daemon
//! OOM-killed while it parsed, before that count could refuse it. So a daemon admits each list
//! before it reads and parses it, from what is known by then:
//!
//! - before its text is read, the text must fit beside what the daemon needs now (checked on
//!   the opened file, whose size is what the read takes: see [`read_file`]'s limit);
//! - before it is parsed, its lines, with those of the lists read before it in the same load,
//!   counted as one prefix a line, must fit with its text: [`memory_limit::need`] of the kernel
//!   memory the sets hold now and the larger of the prefixes held and the lines read, and the
//!   text.
//!
//! A line counts as a prefix: the parse holds a sort key a line whatever the line holds, and a
//! list is one prefix a line but for a few comments. The larger of the prefixes held and the
//! lines read, not their sum: a reload that gives a set the list it has needs no more than the
//! set (the sets' count, too, counts the larger of what a map holds and what it will hold).
//! This is not the sets' count: it knows neither the kernel memory of prefixes not parsed yet
//! nor which are new, so what it admits may still be refused after the parse, with the exact
//! numbers. Line counts, not a bound from the file's size: a byte count would have to assume
//! the shortest line there is and refuse lists of a million prefixes the unit's limit holds.
//!
//! The configuration's lists are read deep inside its parsing: the budget of a load is held on
//! its thread while it runs ([`within`]), as [`Inputs::record`] records the files read.
//!
//! [`read_file`]: super::read_file
//! [`Inputs::record`]: super::Inputs::record

use std::{
    cell::RefCell,
    fmt,
    path::{Path, PathBuf},
};

use super::{MAX_LIST_BYTES, ReadError, line_count, read_file};
use crate::{
    memory_limit::{self, BASE_BYTES, BYTES_PER_PREFIX, MemoryLimit},
    model::footprint::Bytes,
};

/// What a daemon under a memory limit may read of its lists in one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListBudget {
    limit: MemoryLimit,
    /// Kernel memory the sets hold now.
    kernel: u64,
    /// Prefixes the sets hold now.
    held: usize,
    /// Lines of the lists admitted so far in this load.
    lines: usize,
}

/// A list the budget refuses: reading it would take the daemon over its memory limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOverLimit {
    pub file: PathBuf,
    /// Its lines; `None` when its text alone did not fit, so it was not read.
    pub lines: Option<usize>,
    /// Its text, in bytes.
    pub text: u64,
    /// Prefixes the sets hold now.
    pub held: usize,
    /// Lines of the lists read in the load, its own with them.
    pub read: usize,
    /// Kernel memory the sets hold now.
    pub kernel: u64,
    /// All that reading it needs.
    pub total: u64,
    pub limit: MemoryLimit,
}

impl ListBudget {
    /// The budget of a load by a daemon under `limit` whose sets hold `held` prefixes in
    /// `kernel` bytes of kernel memory now.
    pub fn new(limit: MemoryLimit, kernel: u64, held: usize) -> ListBudget {
        ListBudget {
            limit,
            kernel,
            held,
            lines: 0,
        }
    }

    /// The most text a list may have to be read now.
    pub fn text_room(&self) -> u64 {
        self.limit.bytes.saturating_sub(self.need(0, 0))
    }

    /// Admits the list `file`, of `text` bytes and `lines` lines, and counts its lines into
    /// the load's; or refuses it with the numbers.
    pub fn admit(&mut self, file: &Path, text: u64, lines: usize) -> Result<(), ListOverLimit> {
        if self.need(lines, text) > self.limit.bytes {
            return Err(self.refusal(file, Some(lines), text));
        }
        self.lines += lines;
        Ok(())
    }

    /// The refusal of the list `file`, whose `text` bytes do not fit [`Self::text_room`].
    pub fn refuse_text(&self, file: &Path, text: u64) -> ListOverLimit {
        self.refusal(file, None, text)
    }

    fn refusal(&self, file: &Path, lines: Option<usize>, text: u64) -> ListOverLimit {
        let read = lines.unwrap_or(0);
        ListOverLimit {
            file: file.to_path_buf(),
            lines,
            text,
            held: self.held,
            read: self.lines + read,
            kernel: self.kernel,
            total: self.need(read, text),
            limit: self.limit.clone(),
        }
    }

    /// What the daemon needs with `lines` more lines read and `text` bytes of text held.
    fn need(&self, lines: usize, text: u64) -> u64 {
        memory_limit::need(self.kernel, self.prefixes(lines)) + text
    }

    fn prefixes(&self, lines: usize) -> usize {
        self.held.max(self.lines + lines)
    }
}

impl ListOverLimit {
    /// The prefixes counted: the larger of those held and the lines read.
    pub fn prefixes(&self) -> usize {
        self.held.max(self.read)
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        "raise the service's MemoryMax= (rule of thumb: 48M, and 48 bytes a prefix; \
         docs/install.md) or shorten the lists; nothing was changed"
    }
}

impl fmt::Display for ListOverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = match self.lines {
            Some(lines) => format!("{lines} lines, {}", Bytes(self.text)),
            None => format!("{}, not read", Bytes(self.text)),
        };
        let prefixes = if self.read > self.held {
            format!("{} prefixes, one a line of the lists read", self.read)
        } else {
            format!("the {} prefixes the sets hold now", self.held)
        };
        write!(
            f,
            "reading list file {} ({size}) would take steer over its memory limit of {} ({}, \
             systemd's MemoryMax=): it needs about {}, with {} for its text, {} for {prefixes}, \
             {} of kernel memory the sets hold now and {} for the daemon itself",
            self.file.display(),
            Bytes(self.limit.bytes),
            self.limit.file.display(),
            Bytes(self.total),
            Bytes(self.text),
            Bytes(BYTES_PER_PREFIX * self.prefixes() as u64),
            Bytes(self.kernel),
            Bytes(BASE_BYTES),
        )
    }
}

impl std::error::Error for ListOverLimit {}

thread_local! {
    // The budget of the load running on this thread: its lists are read deep inside the
    // configuration's parsing, where threading it through every builder would not reach a
    // list a new key adds.
    static BUDGET: RefCell<Option<ListBudget>> = const { RefCell::new(None) };
}

/// Runs `f` (a load on this thread) with `budget` for the lists it reads.
pub fn within<T>(budget: Option<ListBudget>, f: impl FnOnce() -> T) -> T {
    /// Gives the thread its budget back, even when `f` panics: a reload's thread is pooled.
    struct Restore(Option<ListBudget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| b.replace(self.0.take()));
        }
    }
    let _restore = Restore(BUDGET.with(|b| b.replace(budget)));
    f()
}

/// `use_it` on the budget of the load running on this thread; `None` when it has none.
pub(super) fn current<T>(use_it: impl FnOnce(&mut ListBudget) -> T) -> Option<T> {
    BUDGET.with(|b| b.borrow_mut().as_mut().map(use_it))
}

/// Why a list file was not taken.
pub(super) enum Unread {
    /// It could not be read (see [`ReadError`]).
    Failed(ReadError),
    /// Reading it would take the daemon over its memory limit.
    OverLimit(ListOverLimit),
}

/// The text of the list at `path` (`absolute` as messages name it), admitted by the budget of
/// the load when it has one: its text fits before it is read (the read is refused on the
/// opened file's size, so a list that grows meanwhile is refused too), and its lines with it
/// before it is parsed.
pub(super) fn read_list(path: &Path, absolute: &Path) -> Result<Vec<u8>, Unread> {
    let room = current(|b| b.text_room()).unwrap_or(u64::MAX);
    let limit = MAX_LIST_BYTES.min(room);
    let bytes = read_file(path, limit).map_err(|e| match e {
        e @ ReadError::TooBig { .. } if limit < MAX_LIST_BYTES => over_room(path, absolute, e),
        e => Unread::Failed(e),
    })?;
    // Lines are counted only under a budget: a pass over the text no other load needs.
    current(|b| b.admit(absolute, bytes.len() as u64, line_count(&bytes)))
        .transpose()
        .map_err(Unread::OverLimit)?;
    Ok(bytes)
}

/// A list larger than the budget's room for text (`e` says so): refused by the budget, or,
/// larger than any list may be, as it always was.
fn over_room(path: &Path, absolute: &Path, e: ReadError) -> Unread {
    match std::fs::metadata(path).map(|m| m.len()) {
        Ok(size) if size > MAX_LIST_BYTES => Unread::Failed(ReadError::TooBig {
            limit: MAX_LIST_BYTES,
        }),
        Ok(size) => current(|b| Unread::OverLimit(b.refuse_text(absolute, size)))
            .unwrap_or(Unread::Failed(e)),
        Err(gone) => Unread::Failed(ReadError::Io(gone)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit_mib: u64, kernel: u64, held: usize) -> ListBudget {
        let limit = MemoryLimit {
            bytes: limit_mib << 20,
            file: "/sys/fs/cgroup/system.slice/steer.service/memory.max".into(),
        };
        ListBudget::new(limit, kernel, held)
    }

    #[test]
    fn the_text_must_fit_beside_the_daemon_and_what_the_sets_hold() {
        let b = budget(64, 1 << 20, 100_000);
        assert_eq!(
            b.text_room(),
            (64 << 20) - memory_limit::need(1 << 20, 100_000)
        );
        assert_eq!(budget(32, 0, 0).text_room(), 0, "no room under the base");
    }

    #[test]
    fn lines_count_as_prefixes_beside_those_held_not_on_top_of_them() {
        // 64 MiB hold the base, 1 MiB of kernel memory, 4 MiB of text and 1.1M prefixes,
        // not 2M.
        let mut b = budget(64, 1 << 20, 1_000_000);
        let list = Path::new("/etc/steer/big.txt");
        // As many lines as prefixes held: the list a set has, read again.
        assert!(b.admit(list, 4 << 20, 1_000_000).is_ok());
        // A second list of the same load: its lines come on top of the first's.
        let err = b.admit(list, 1 << 20, 600_000).unwrap_err();
        assert_eq!(err.prefixes(), 1_600_000);
        assert_eq!(
            err.total,
            memory_limit::need(1 << 20, 1_600_000) + (1 << 20)
        );
        assert_eq!(b.lines, 1_000_000, "a refused list counts nothing");
    }

    #[test]
    fn three_million_lines_where_a_hundred_thousand_fit_are_refused_with_the_numbers() {
        let mut b = budget(64, 1 << 20, 100_000);
        let list = Path::new("/etc/steer/big.txt");
        let err = b.admit(list, 36 << 20, 3_000_000).unwrap_err();
        let shown = format!("{err}; {}", err.hint());
        for part in [
            "reading list file /etc/steer/big.txt (3000000 lines, 36.0 MiB)",
            "memory limit of 64.0 MiB (/sys/fs/cgroup/system.slice/steer.service/memory.max",
            "36.0 MiB for its text",
            "45.8 MiB for 3000000 prefixes, one a line of the lists read",
            "1.0 MiB of kernel memory the sets hold now",
            "40.0 MiB for the daemon itself",
            "raise the service's MemoryMax=",
            "nothing was changed",
        ] {
            assert!(shown.contains(part), "{part}: {shown}");
        }
        let unread = b.refuse_text(list, 36 << 20).to_string();
        assert!(unread.contains("(36.0 MiB, not read)"), "{unread}");
        assert!(
            unread.contains("1.5 MiB for the 100000 prefixes the sets hold now"),
            "{unread}"
        );
    }

    #[test]
    fn a_load_without_a_budget_reads_freely_and_a_budget_is_its_loads_alone() {
        assert_eq!(current(|b| b.text_room()), None);
        let b = budget(64, 0, 0);
        let room = within(Some(b.clone()), || {
            current(|b| b.admit(Path::new("a"), 0, 10).unwrap());
            current(|b| b.lines)
        });
        assert_eq!(room, Some(10));
        assert_eq!(current(|b| b.lines), None, "gone with its load");
    }
}

//! The runtime entries' journal: what `steer set` added and deleted, so a restarted daemon
//! (`systemctl restart steer`, an upgrade, a crash) finds them again. It lives next to the
//! control socket (`/run/steer/steer.sets` by default): on tmpfs it goes with a reboot, as
//! ipset's elements do, and `steer stop` removes it with the rest of steer's state.
//!
//! One record per line, appended after the kernel took the change:
//!
//! ```text
//! + SET PREFIX DEADLINE    added (DEADLINE: seconds of CLOCK_BOOTTIME, or `-` for none)
//! - SET PREFIX             deleted
//! ! SET                    every entry of SET deleted
//! ```
//!
//! Appending costs one `write(2)` per request whatever the table's size. The file is rewritten
//! from the table (a temporary file renamed over it, headed by the boot it was written in) at
//! the first change after the daemon starts, after an append failed, and when the records
//! outnumber the live entries enough to matter.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::RuntimeSets;
use crate::prefix::{Prefix, parse_prefix};

/// The header line naming the boot the journal was written in (`/proc/sys/kernel/random/boot_id`).
const BOOT: &str = "# boot ";

/// This boot's id (empty where the kernel does not say: then every journal is taken as this
/// boot's).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// A journal rewritten when it holds more than twice the live entries and this many records.
const COMPACT_ABOVE: usize = 4096;

/// One change, as a line of the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Add(&'a str, Prefix, Option<u64>),
    Del(&'a str, Prefix),
    Flush(&'a str),
}

impl std::fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Add(set, p, Some(at)) => writeln!(f, "+ {set} {p} {at}"),
            Record::Add(set, p, None) => writeln!(f, "+ {set} {p} -"),
            Record::Del(set, p) => writeln!(f, "- {set} {p}"),
            Record::Flush(set) => writeln!(f, "! {set}"),
        }
    }
}

/// The journal file of one daemon.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// The boot the journal is written in (its deadlines count from that boot).
    boot: String,
    /// Open for appending once the journal was (re)written from the table.
    file: Option<File>,
    records: usize,
}

/// The journal of the daemon whose control socket is `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    socket.with_extension("sets")
}

/// Reads a journal: the table it describes, and its lines that are not records (a torn last
/// line after a crash, or a file that is not a journal), as "line N: text".
pub fn replay(text: &str) -> (RuntimeSets, Vec<String>) {
    let mut table = RuntimeSets::default();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if apply_line(&mut table, line).is_none() {
            bad.push(format!(
                "line {} is not a record ({line:?}), skipped",
                i + 1
            ));
        }
    }
    (table, bad)
}

fn apply_line(table: &mut RuntimeSets, line: &str) -> Option<()> {
    let mut words = line.split(' ');
    let (kind, set) = (words.next()?, words.next()?);
    let mut prefix = || parse_prefix(words.next()?, true).ok();
    match kind {
        "+" => {
            let p = prefix()?;
            let deadline = match words.next()? {
                "-" => None,
                at => Some(at.parse().ok()?),
            };
            table.insert(set, p, deadline);
        }
        "-" => {
            let p = prefix()?;
            table.remove(set, &p);
        }
        "!" => {
            let all: Vec<Prefix> = table.entries(set).map(|(p, _)| *p).collect();
            for p in all {
                table.remove(set, &p);
            }
        }
        _ => return None,
    }
    words.next().is_none().then_some(())
}

impl Journal {
    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the journal at `path` (none yet: an empty table) and drops the entries whose
    /// deadline is at or before `now`. Returns the journal, the live table, and the lines it
    /// could not read. Nothing is written until the first [`Journal::append`], which rewrites
    /// the file from the table (the socket's directory exists by then).
    /// A journal written in another boot than `boot` (on storage that outlived a reboot) is
    /// ignored: the kernel state it went with is gone, and its deadlines count from that boot.
    pub fn open(
        path: &Path,
        now: u64,
        boot: &str,
    ) -> io::Result<(Journal, RuntimeSets, Vec<String>)> {
        let mut text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut notes = Vec::new();
        let written_in = text.lines().find_map(|l| l.strip_prefix(BOOT));
        if written_in.is_some_and(|b| b != boot) {
            notes.push("it was written before the last reboot and is ignored".to_owned());
            text.clear();
        }
        let (mut table, bad) = replay(&text);
        notes.extend(bad);
        for (set, p) in table.expired(now) {
            table.remove(&set, &p);
        }
        let journal = Journal {
            path: path.to_owned(),
            boot: boot.to_owned(),
            file: None,
            records: 0,
        };
        Ok((journal, table, notes))
    }

    /// Records `records`, already applied to `table`: appended in one write, or the whole
    /// journal rewritten from `table` (the first write, or when old records pile up).
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = Record<'a>>,
        table: &RuntimeSets,
    ) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return self.rewrite(table);
        };
        let mut text = String::new();
        for r in records {
            text.push_str(&r.to_string());
            self.records += 1;
        }
        if let Err(e) = file.write_all(text.as_bytes()) {
            // Part of a line may be out: the next append must not glue a record onto it, so
            // it rewrites the whole journal from the table instead.
            self.file = None;
            return Err(e);
        }
        if self.records > COMPACT_ABOVE.max(2 * table.len()) {
            self.rewrite(table)?;
        }
        Ok(())
    }

    /// Writes `table` as the whole journal (a temporary file renamed over the old one).
    fn rewrite(&mut self, table: &RuntimeSets) -> io::Result<()> {
        self.file = None;
        let tmp = self.path.with_extension("sets.new");
        let mut text = format!(
            "# steer runtime set entries (`steer set`); written by steer run\n{BOOT}{}\n",
            self.boot
        );
        for (set, p, deadline) in table.iter() {
            text.push_str(&Record::Add(set, *p, *deadline).to_string());
        }
        crate::state_file::replace(&self.path, &tmp, text.as_bytes())?;
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        self.records = table.len();
        Ok(())
    }
}

/// Removes the journal of the daemon whose socket is `socket` (`steer stop`); returns whether
/// there was one.
pub fn remove(socket: &Path) -> io::Result<bool> {
    crate::state_file::remove(&path_for(socket))
}

/// The table a running daemon's journal describes, for readers (`steer dump`, `steer
/// explain`); empty when there is none.
/// The runtime entries of the daemon whose control socket is `socket`, or `None` when neither
/// that socket nor its journal is there (another `--socket`, or no daemon ever ran with it):
/// then which prefixes are runtime entries is not known.
pub fn read_known(socket: &Path) -> Option<RuntimeSets> {
    (socket.exists() || path_for(socket).exists()).then(|| read(socket))
}

pub fn read(socket: &Path) -> RuntimeSets {
    let boot = boot_id();
    fs::read_to_string(path_for(socket))
        .ok()
        .filter(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(BOOT))
                .is_none_or(|b| b == boot)
        })
        .map(|text| replay(&text).0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        parse_prefix(s, true).unwrap()
    }

    #[test]
    fn a_journal_replays_to_the_table_it_recorded_and_reports_torn_lines() {
        let mut want = RuntimeSets::default();
        want.insert("a", p("10.0.0.0/8"), Some(70));
        want.insert("b", p("2001:db8::/48"), None);
        let text = [
            Record::Add("a", p("10.0.0.0/8"), Some(70)),
            Record::Add("a", p("11.0.0.0/8"), None),
            Record::Add("c", p("12.0.0.0/8"), None),
            Record::Del("a", p("11.0.0.0/8")),
            Record::Flush("c"),
            Record::Add("b", p("2001:db8::/48"), None),
        ]
        .map(|r| r.to_string())
        .concat();
        let (table, bad) = replay(&format!("{text}+ b 10.0."));
        assert_eq!(table, want);
        assert_eq!(bad, ["line 7 is not a record (\"+ b 10.0.\"), skipped"]);
    }

    #[test]
    fn opening_drops_expired_entries_and_appends_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("steer-journal-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("steer.sets");
        let (mut journal, mut table, bad) = Journal::open(&path, 100, "boot-a").unwrap();
        assert!(table.is_empty() && bad.is_empty());
        for (prefix, deadline) in [("10.0.0.0/8", Some(150)), ("11.0.0.0/8", None)] {
            table.insert("a", p(prefix), deadline);
            journal
                .append([Record::Add("a", p(prefix), deadline)], &table)
                .unwrap();
        }
        let (_, again, _) = Journal::open(&path, 149, "boot-a").unwrap();
        assert_eq!(again, table);
        let (_, later, _) = Journal::open(&path, 150, "boot-a").unwrap();
        assert_eq!(later.len_of("a"), 1, "the entry due at 150 is gone");
        let (_, rebooted, notes) = Journal::open(&path, 5, "boot-b").unwrap();
        assert!(rebooted.is_empty(), "another boot's journal is ignored");
        assert!(notes[0].contains("before the last reboot"), "{notes:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}

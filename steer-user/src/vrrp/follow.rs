//! `engine = "keepalived"`: keepalived speaks VRRP, steer follows it.
//!
//! - State: keepalived writes a line to its `notify_fifo` (global_defs) on every change,
//!   `INSTANCE "VI_1" MASTER 100` (type, quoted name, state, priority); steer reads the fifo
//!   and turns the lines of the instances it follows into the same [`Event`]s its own speaker
//!   gives (MASTER, BACKUP, FAULT; STOP and DELETED count as leaving mastership). steer creates
//!   the fifo when it is missing and holds it open for writing too, so a keepalived restart is
//!   no end of file.
//! - Health: steer writes the priority penalty of its WAN health to `track_file` (one number
//!   and a newline, replaced atomically); keepalived's `track_file` with `weight -1` takes it
//!   off its priority, and 254 puts the instance in FAULT.
//!
//! keepalived writes only changes: start keepalived after steer (or restart it), so that its
//! first state reaches steer; until then steer counts the instance as backup.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::unix::pipe,
    sync::mpsc,
    task::JoinHandle,
};

use super::{machine::State, speaker::Event};

/// One line of keepalived's notify fifo: (type, name, state word, priority).
pub fn parse_line(line: &str) -> Option<(&str, &str, &str, Option<u8>)> {
    let line = line.trim();
    let (kind, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('"')?;
    let (name, rest) = rest.split_once('"')?;
    let mut words = rest.split_whitespace();
    let state = words.next()?;
    let priority = words.next().and_then(|p| p.parse().ok());
    Some((kind, name, state, priority))
}

/// keepalived's state word as steer's state.
pub fn state_of(word: &str) -> Option<State> {
    match word {
        "MASTER" => Some(State::Master),
        "BACKUP" => Some(State::Backup),
        "FAULT" => Some(State::Fault),
        "STOP" | "DELETED" => Some(State::Initialize),
        _ => None,
    }
}

/// The readers of the fifos, one per path.
#[derive(Debug, Default)]
pub struct Followers {
    /// fifo -> (instances followed through it, the reader task).
    readers: BTreeMap<PathBuf, (Vec<String>, JoinHandle<()>)>,
}

impl Followers {
    /// Reads each fifo of `wanted` (fifo -> instance names); readers of fifos no longer
    /// wanted stop. Returns what could not be opened.
    pub fn sync(
        &mut self,
        wanted: BTreeMap<PathBuf, Vec<String>>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Vec<String> {
        self.readers.retain(|path, (names, task)| {
            let keep = wanted.get(path) == Some(names);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut errors = Vec::new();
        for (path, names) in wanted {
            if self.readers.contains_key(&path) {
                continue;
            }
            match open(&path) {
                Ok(rx) => {
                    let task = tokio::spawn(read(rx, names.clone(), events.clone()));
                    self.readers.insert(path, (names, task));
                }
                Err(e) => errors.push(format!(
                    "cannot read keepalived's notify_fifo {}: {e}",
                    path.display()
                )),
            }
        }
        errors
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        for (_, task) in self.readers.values() {
            task.abort();
        }
    }
}

/// Opens (creating it when missing) the fifo for reading, and for writing too so that no writer
/// closing it ends the stream.
fn open(path: &Path) -> io::Result<pipe::Receiver> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(io::Error::other)?;
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
    }
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
}

async fn read(rx: pipe::Receiver, names: Vec<String>, events: mpsc::UnboundedSender<Event>) {
    let mut lines = BufReader::new(rx).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let Some(("INSTANCE", name, word, priority)) = parse_line(&line) else {
                    continue;
                };
                if !names.iter().any(|n| n == name) {
                    continue;
                }
                let Some(state) = state_of(word) else {
                    continue;
                };
                let why = match priority {
                    Some(p) => format!("keepalived reports {word} (priority {p})"),
                    None => format!("keepalived reports {word}"),
                };
                let _ = events.send(Event::State {
                    instance: name.to_owned(),
                    state,
                    why,
                    master: None,
                    priority,
                    at: std::time::Instant::now(),
                });
            }
            Ok(None) => return,
            Err(e) => {
                log::warn!("keepalived notify_fifo: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Writes `value` to keepalived's track file (a temporary file renamed over it, so keepalived
/// never reads half a number). The temporary file is created afresh, never through a link
/// someone put in its place (the directory may be writable by others); the rename replaces
/// the track file's own entry, never what a link there points to.
pub fn write_track_file(path: &Path, value: u8) -> io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".steer-tmp");
    // A stale one, or a link planted there: removed, not followed.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{value}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_track_file_is_written_through_no_planted_link() {
        let dir = std::env::temp_dir().join(format!("steer-track-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        let track = dir.join("track");
        std::os::unix::fs::symlink(&victim, dir.join("track.steer-tmp")).unwrap();
        write_track_file(&track, 30).unwrap();
        assert_eq!(std::fs::read_to_string(&track).unwrap(), "30\n");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        write_track_file(&track, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&track).unwrap(), "0\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notify_fifo_lines_as_keepalived_2_2_7_writes_them() {
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" MASTER 100\n"),
            Some(("INSTANCE", "VI_1", "MASTER", Some(100)))
        );
        assert_eq!(
            parse_line("INSTANCE \"two words\" STOP 70"),
            Some(("INSTANCE", "two words", "STOP", Some(70)))
        );
        assert_eq!(
            parse_line("GROUP \"G\" BACKUP"),
            Some(("GROUP", "G", "BACKUP", None))
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(state_of("STOP"), Some(State::Initialize));
        assert_eq!(state_of("MASTER"), Some(State::Master));
    }

    #[test]
    fn the_track_file_holds_one_number() {
        let dir = std::env::temp_dir().join(format!("steer-track-{}", std::process::id()));
        let path = dir.join("lan.health");
        write_track_file(&path, 50).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "50\n");
        write_track_file(&path, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The manual overrides (`steer wan NAME up|down`), kept across a daemon restart (an upgrade,
//! `systemctl restart`, a crash) in a file next to the control socket (`/run/steer/steer.overrides`
//! by default): an override holds until `steer wan NAME auto`, and a WAN taken out of service by
//! hand must not carry traffic again because the daemon was restarted. The file is written
//! whenever the overrides change (a temporary file renamed over it), names the boot it was
//! written in (after a reboot every WAN starts under health tracking, as the rest of the runtime
//! state goes), and `steer stop` removes it.
//!
//! One override a line, after a header, with the interface the WAN was on: an override follows
//! its line ([`super::lines`]), as at a reload: kept for a WAN the restart's configuration
//! renamed on that interface, dropped for one it puts on another interface (another line).
//!
//! ```text
//! # boot BOOT-ID
//! wan2 down eth2
//! lte up wwan0
//! ```

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::Instant,
};

use super::lines::{Fate, Line};
use crate::{
    health::{Health, Override, Restored},
    status::ReportLine,
};

/// WAN name -> its override, and the interface the WAN was on when it was set.
pub type Overrides = BTreeMap<String, (Override, String)>;

/// The header line naming the boot the file was written in.
const BOOT: &str = "# boot ";

/// The file next to the control socket `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    socket.with_extension("overrides")
}

/// What `path` keeps from this boot (`boot`), and what the start should say about it: the lines
/// it cannot read (by file:line; they are dropped), a file it cannot read at all. No file, or
/// another boot's, is no override and nothing to say.
pub fn load(path: &Path, boot: &str) -> (Overrides, Vec<ReportLine>) {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Overrides::new(), Vec::new()),
        Err(e) => {
            return (
                Overrides::new(),
                vec![ReportLine::warning(format!(
                    "{}: {e}; the WANs forced up or down by `steer wan` before the restart are \
                     under health tracking again: force them again with `steer wan NAME up|down`",
                    path.display()
                ))],
            );
        }
    };
    parse(path, &text, boot)
}

fn parse(path: &Path, text: &str, boot: &str) -> (Overrides, Vec<ReportLine>) {
    let mut overrides = Overrides::new();
    let mut notes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(written_in) = line.strip_prefix(BOOT) {
            if written_in.trim() != boot {
                // The kernel state it went with is gone: a reboot starts afresh.
                return (Overrides::new(), Vec::new());
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let parsed = match (words.next(), words.next(), words.next(), words.next()) {
            (Some(wan), Some("up"), Some(iface), None) => Some((wan, Override::Up, iface)),
            (Some(wan), Some("down"), Some(iface), None) => Some((wan, Override::Down, iface)),
            _ => None,
        };
        match parsed {
            Some((wan, o, iface)) => {
                overrides.insert(wan.to_owned(), (o, iface.to_owned()));
            }
            None => notes.push(ReportLine::warning(format!(
                "{}:{}: `{}` is not `WAN up|down INTERFACE`; that line is dropped (a torn write, \
                 or not steer's file): check `steer status` and force the WAN again with \
                 `steer wan NAME up|down` if it was",
                path.display(),
                i + 1,
                crate::shown::shown(line)
            ))),
        }
    }
    (overrides, notes)
}

/// Gives `health` the overrides set by hand before the restart (the file next to the
/// control socket `socket`): what the start says of them, and whether some were dropped or
/// renamed (the file is written again). An override follows its line ([`super::lines`]): kept
/// for a WAN renamed on the same interface, dropped for one moved to another interface or
/// removed, with the same words a reload uses.
pub fn restore(health: &mut Health, socket: &Path) -> (Vec<ReportLine>, bool) {
    let path = path_for(socket);
    let (kept, mut lines) = load(&path, &crate::runtime_sets::journal::boot_id());
    let old: Vec<Line> = kept
        .iter()
        .map(|(wan, (_, was_on))| (wan.clone(), was_on.clone()))
        .collect();
    let new = health.lines();
    let mut changed = false;
    for (wan, (manual, was_on)) in kept {
        let how = match manual {
            Override::Up => "up",
            Override::Down => "down",
        };
        let fate = super::lines::fate(&wan, &was_on, &old, &new);
        let name = match &fate {
            Fate::Same => wan.clone(),
            Fate::Renamed(to) => to.clone(),
            Fate::Moved(_) | Fate::Removed => {
                changed = true;
                lines.extend(super::lines::override_note(&wan, manual, &was_on, &fate));
                continue;
            }
        };
        let why = format!(
            "set by hand (`steer wan {wan} {how}`) before the daemon restarted, kept in {}; \
             `steer wan {name} auto` gives it back to health tracking",
            path.display()
        );
        if health.restore_manual(&name, manual, &was_on, &why, Instant::now()) != Restored::Kept {
            // Not reached: the fate above is the configuration's.
            changed = true;
            continue;
        }
        match super::lines::override_note(&wan, manual, &was_on, &fate) {
            Some(renamed) => {
                changed = true;
                lines.push(renamed);
            }
            None => lines.push(ReportLine::info(format!(
                "{wan}: forced {how} by `steer wan {wan} {how}` before the restart (kept in \
                 {}): it stays {how} until `steer wan {wan} auto`",
                path.display()
            ))),
        }
    }
    (lines, changed)
}

/// Writes `overrides` to `path` for boot `boot` (a temporary file renamed over it); none
/// removes the file.
pub fn store(path: &Path, boot: &str, overrides: &Overrides) -> io::Result<()> {
    if overrides.is_empty() {
        return remove(path).map(drop);
    }
    let mut text = format!(
        "# steer: WANs forced up or down by `steer wan NAME up|down`, until `steer wan NAME \
         auto`\n{BOOT}{boot}\n"
    );
    for (wan, (o, iface)) in overrides {
        let state = match o {
            Override::Up => "up",
            Override::Down => "down",
        };
        text.push_str(&format!("{wan} {state} {iface}\n"));
    }
    crate::state_file::replace(path, &path.with_extension("overrides.tmp"), text.as_bytes())
}

/// Removes the file (`steer stop`); whether there was one.
pub fn remove(path: &Path) -> io::Result<bool> {
    crate::state_file::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_come_back_in_the_same_boot_and_a_bad_line_is_named_by_file_and_line() {
        let dir = std::env::temp_dir().join(format!("steer-overrides-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("steer.sock"));
        assert_eq!(path, dir.join("steer.overrides"));
        assert_eq!(
            load(&path, "boot-a"),
            (Overrides::new(), Vec::new()),
            "no file"
        );
        let overrides: Overrides = [
            ("wan2".to_owned(), (Override::Down, "eth2".to_owned())),
            ("lte".to_owned(), (Override::Up, "wwan0".to_owned())),
        ]
        .into();
        store(&path, "boot-a", &overrides).unwrap();
        assert_eq!(load(&path, "boot-a"), (overrides.clone(), Vec::new()));
        assert_eq!(
            load(&path, "boot-b"),
            (Overrides::new(), Vec::new()),
            "another boot's"
        );
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{text}wan3 dow")).unwrap();
        let (kept, notes) = load(&path, "boot-a");
        assert_eq!(kept, overrides, "the good lines are kept");
        assert_eq!(notes.len(), 1);
        let note = &notes[0].text;
        assert!(
            note.starts_with(&format!("{}:5: `wan3 dow` is not", path.display())),
            "{note}"
        );
        store(&path, "boot-a", &Overrides::new()).unwrap();
        assert!(!path.exists(), "none: no file");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_restores_the_overrides_of_the_wans_it_still_has_and_drops_the_others() {
        let dir = std::env::temp_dir().join(format!("steer-restore-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("steer.sock");
        let boot = crate::runtime_sets::journal::boot_id();
        let kept: Overrides = [
            ("dsl".to_owned(), (Override::Down, "eth1".to_owned())),
            ("gone".to_owned(), (Override::Up, "eth9".to_owned())),
            ("lte".to_owned(), (Override::Down, "wwan0".to_owned())),
            ("wan3".to_owned(), (Override::Down, "eth3".to_owned())),
        ]
        .into();
        store(&path_for(&socket), &boot, &kept).unwrap();
        let t0 = Instant::now();
        let wan = |name: &str, iface: &str| crate::config::Wan {
            track: crate::config::testing::icmp_track(100, 80, 3, 2),
            ..crate::config::testing::wan(name, iface)
        };
        let mut health = Health::default();
        health.follow(
            &[wan("dsl", "eth1"), wan("lte", "eth2"), wan("isp3", "eth3")],
            |_| true,
            t0,
        );
        let (lines, dropped) = restore(&mut health, &socket);
        assert!(dropped);
        let said: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert!(
            said[0].starts_with("dsl: forced down by `steer wan dsl down` before the restart"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with(
                "gone: `steer wan gone up` is dropped: the configuration has no WAN `gone` now"
            ),
            "{said:?}"
        );
        assert!(
            said[2].contains("it was set while lte was on wwan0, and lte is on eth2 now"),
            "{said:?}"
        );
        assert!(
            said[3].starts_with(
                "isp3: `steer wan wan3 down` is kept: wan3 is named isp3 now, on the same \
                 interface eth3"
            ),
            "{said:?}"
        );
        assert!(!health.up("dsl", crate::model::Family::V4), "forced down");
        assert!(health.up("lte", crate::model::Family::V4));
        assert!(
            !health.up("isp3", crate::model::Family::V4),
            "renamed, still down"
        );
        assert_eq!(
            health.overrides(),
            Overrides::from([
                ("dsl".to_owned(), (Override::Down, "eth1".to_owned())),
                ("isp3".to_owned(), (Override::Down, "eth3".to_owned())),
            ])
        );
        let status = health
            .deciding("dsl", crate::model::Family::V4)
            .expect("tracked")
            .describe(t0);
        assert!(
            status.contains("forced down by `steer wan`")
                && status.contains("before the daemon restarted"),
            "{status}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

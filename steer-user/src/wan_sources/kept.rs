//! What steer knows of the WANs' IPv6 prefixes that the system does not say again: the
//! prefixes DHCPv6 hooks handed in (a client calls its hook at the next renewal only) and the
//! preferred lifetimes of the LAN addresses steer deprecated. A restarted daemon (an upgrade, a
//! crash) takes them back from a file next to the control socket (`/run/steer/steer.ipv6` by
//! default), written whenever they change; on tmpfs it goes with a reboot, and the file names
//! the boot it was written in, since deprecation times count from boot. `steer stop` removes it.
//! Each hooked prefix's WAN is kept with its interface: a restart whose configuration renamed
//! the WAN on that interface keeps the prefix, one that moved it to another interface drops it
//! (`controller::lines`), as a reload does.

use std::{
    collections::BTreeMap,
    fs, io,
    net::Ipv6Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Hooked6, deprecate::Saved};
use crate::prefix::parse_prefix;

/// The file next to the control socket `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    socket.with_extension("ipv6")
}

/// Hooked prefixes and deprecated addresses, as kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kept {
    pub hooked: Hooked6,
    /// WAN -> the interface it was on when its prefix was handed in (empty from an older
    /// steer's file).
    pub interfaces: BTreeMap<String, String>,
    pub saved: Saved,
}

#[derive(Serialize, Deserialize)]
struct File {
    boot: String,
    hooked: Vec<(String, String)>,
    /// (interface, address, preferred lifetime it had, when: seconds since boot).
    deprecated: Vec<(String, Ipv6Addr, Option<u32>, u64)>,
    /// WAN -> its interface (absent in a file of an older steer).
    #[serde(default)]
    interfaces: BTreeMap<String, String>,
}

/// What `path` keeps from this boot (`boot`); nothing when there is no file, it is another
/// boot's, or it cannot be read (said in the log: the hooks hand prefixes in again).
pub fn load(path: &Path, boot: &str) -> Kept {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Kept::default(),
        Err(e) => {
            log::warn!("{}: {e}; starting without it", path.display());
            return Kept::default();
        }
    };
    let file: File = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{}: not steer's ({e}); starting without it", path.display());
            return Kept::default();
        }
    };
    if file.boot != boot {
        return Kept::default();
    }
    let hooked = file
        .hooked
        .into_iter()
        .filter_map(|(wan, p)| Some((wan, parse_prefix(&p, false).ok()?)))
        .collect();
    let saved = file
        .deprecated
        .into_iter()
        .map(|(iface, addr, preferred, at)| ((iface, addr), (preferred, at)))
        .collect();
    Kept {
        hooked,
        interfaces: file.interfaces,
        saved,
    }
}

/// Writes `kept` to `path` for boot `boot` (a temporary file renamed over it); an empty `kept`
/// removes the file.
pub fn store(path: &Path, boot: &str, kept: &Kept) -> io::Result<()> {
    if kept.hooked.is_empty() && kept.saved.is_empty() {
        return remove(path).map(drop);
    }
    let file = File {
        boot: boot.to_owned(),
        hooked: kept
            .hooked
            .iter()
            .map(|(w, p)| (w.clone(), p.to_string()))
            .collect(),
        deprecated: kept
            .saved
            .iter()
            .map(|((iface, addr), (preferred, at))| (iface.clone(), *addr, *preferred, *at))
            .collect(),
        interfaces: kept.interfaces.clone(),
    };
    let text = serde_json::to_string(&file).map_err(io::Error::other)?;
    crate::state_file::replace(path, &path.with_extension("ipv6.tmp"), text.as_bytes())
}

/// Removes the file (`steer stop`); whether there was one.
pub fn remove(path: &Path) -> io::Result<bool> {
    crate::state_file::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan_sources::tests::p;

    #[test]
    fn what_is_kept_comes_back_in_the_same_boot_only() {
        let dir = std::env::temp_dir().join(format!("steer-kept-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("steer.sock"));
        let kept = Kept {
            hooked: Hooked6::from([("wan2".to_owned(), p("2001:db8:2::/56"))]),
            interfaces: BTreeMap::from([("wan2".to_owned(), "eth2".to_owned())]),
            saved: Saved::from([(
                ("br-lan".to_owned(), "2001:db8:1::1".parse().unwrap()),
                (Some(3600), 120),
            )]),
        };
        assert_eq!(load(&path, "boot-a"), Kept::default());
        store(&path, "boot-a", &kept).unwrap();
        assert_eq!(load(&path, "boot-a"), kept);
        assert_eq!(load(&path, "boot-b"), Kept::default());
        // An older steer's file: no interfaces.
        fs::write(
            &path,
            r#"{"boot":"boot-a","hooked":[["wan2","2001:db8:2::/56"]],"deprecated":[]}"#,
        )
        .unwrap();
        let older = Kept {
            hooked: kept.hooked.clone(),
            ..Kept::default()
        };
        assert_eq!(load(&path, "boot-a"), older);
        fs::write(&path, "not json").unwrap();
        assert_eq!(load(&path, "boot-a"), Kept::default());
        store(&path, "boot-a", &Kept::default()).unwrap();
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}

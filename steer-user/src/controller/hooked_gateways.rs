//! The gateways DHCP client hooks handed in (`steer wan NAME gateway ADDR`), kept across a
//! daemon restart (an upgrade, a crash) in a file next to the control socket
//! (`/run/steer/steer.gateways` by default): a client calls its hook again only at its next
//! renewal, hours away with a real ISP's lease, and the WAN would wait for a gateway until then.
//! Written whenever they change; the file names the boot it was written in (after a reboot
//! the clients hand them in again); `steer stop` removes it. Each WAN's interface is kept with
//! them: a restart whose configuration renamed the WAN on that interface keeps them, one that
//! moved it to another interface drops them ([`super::lines`]), as a reload does.

use std::{
    collections::BTreeMap,
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::gateways::Hooked;
use crate::model::Family;

/// The file next to the control socket `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    socket.with_extension("gateways")
}

#[derive(Serialize, Deserialize)]
struct File {
    boot: String,
    /// (WAN, gateway).
    hooked: Vec<(String, IpAddr)>,
    /// WAN -> the interface it was on (absent in a file of an older steer).
    #[serde(default)]
    interfaces: BTreeMap<String, String>,
}

/// The gateways kept, and the interface of each WAN they were handed in for.
pub type Kept = (Hooked, BTreeMap<String, String>);

/// What `path` keeps from this boot (`boot`); nothing when there is no file, it is another
/// boot's, or it cannot be read (said in the log: the hooks hand them in again).
pub fn load(path: &Path, boot: &str) -> Kept {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Kept::default(),
        Err(e) => {
            log::warn!("{}: {e}; starting without it", path.display());
            return Kept::default();
        }
    };
    match serde_json::from_str::<File>(&text) {
        Ok(file) if file.boot == boot => {
            let hooked = file
                .hooked
                .into_iter()
                .map(|(wan, a)| ((wan, Family::of(&a)), a))
                .collect();
            (hooked, file.interfaces)
        }
        Ok(_) => Kept::default(),
        Err(e) => {
            log::warn!("{}: not steer's ({e}); starting without it", path.display());
            Kept::default()
        }
    }
}

/// Writes `hooked` to `path` for boot `boot`, with each WAN's interface (`interfaces`) (a
/// temporary file renamed over it); none removes the file.
pub fn store(
    path: &Path,
    boot: &str,
    hooked: &Hooked,
    interfaces: &BTreeMap<String, String>,
) -> io::Result<()> {
    if hooked.is_empty() {
        return remove(path).map(drop);
    }
    let file = File {
        boot: boot.to_owned(),
        hooked: hooked.iter().map(|((w, _), a)| (w.clone(), *a)).collect(),
        interfaces: interfaces.clone(),
    };
    let text = serde_json::to_string(&file).map_err(io::Error::other)?;
    crate::state_file::replace(path, &path.with_extension("gateways.tmp"), text.as_bytes())
}

/// Removes the file (`steer stop`); whether there was one.
pub fn remove(path: &Path) -> io::Result<bool> {
    crate::state_file::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_in_gateways_come_back_in_the_same_boot_only() {
        let dir = std::env::temp_dir().join(format!("steer-hooked-gw-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("steer.sock"));
        let hooked: Hooked = [
            (
                ("wan1".to_owned(), Family::V4),
                "100.64.1.1".parse().unwrap(),
            ),
            (("wan2".to_owned(), Family::V6), "fe80::1".parse().unwrap()),
        ]
        .into();
        let interfaces: BTreeMap<String, String> = [
            ("wan1".to_owned(), "eth1".to_owned()),
            ("wan2".to_owned(), "eth2".to_owned()),
        ]
        .into();
        store(&path, "boot-a", &hooked, &interfaces).unwrap();
        assert_eq!(load(&path, "boot-a"), (hooked.clone(), interfaces.clone()));
        assert_eq!(load(&path, "boot-b"), Kept::default(), "another boot's");
        // An older steer's file: no interfaces.
        fs::write(
            &path,
            r#"{"boot":"boot-a","hooked":[["wan1","100.64.1.1"],["wan2","fe80::1"]]}"#,
        )
        .unwrap();
        assert_eq!(load(&path, "boot-a"), (hooked, BTreeMap::new()));
        store(&path, "boot-a", &Hooked::new(), &BTreeMap::new()).unwrap();
        assert!(!path.exists(), "none: no file");
        fs::write(&path, "not json").unwrap();
        assert_eq!(load(&path, "boot-a"), Kept::default());
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Which router owns the pinned state: `maps/PIN_OWNER` records the network namespace whose
//! daemon pinned it, checked before a start adopts the state and before `steer stop` removes it.

use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData};
use steer_common::{PinOwner, map_names};

use super::pin::{PinError, map_err, map_path};
use crate::netns::{find_namespace, same_namespace, this_namespace};

/// Pinned state of a steer in another network namespace that still exists.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} holds the pinned state of a steer in another network namespace, {owner}, which \
     still exists: {doing} it would detach that router's classifier and counters. Give each \
     router its own general.pin_dir, or stop that one first (`steer stop -c` with its \
     configuration, in its namespace{stop_there}); nothing was changed"
)]
pub struct OtherNamespace {
    pub path: PathBuf,
    /// `NAME (/run/netns/NAME)` or `net:[INODE] (pid P is in it)`.
    pub owner: String,
    /// `adopting` (a start) or `removing` (`steer stop`).
    pub doing: &'static str,
    /// `: nsenter --net=/run/netns/NAME ...` when it has a name.
    pub stop_there: String,
}

/// The namespace recorded under `root`, if any (state pinned by a steer that records none, or
/// nothing pinned yet).
pub fn recorded_owner(root: &Path) -> Result<Option<PinOwner>, PinError> {
    let path = map_path(root, map_names::PIN_OWNER);
    if !path.exists() {
        return Ok(None);
    }
    let map = MapData::from_pin(&path).map_err(map_err(&path))?;
    let owner = Array::<MapData, PinOwner>::try_from(Map::Array(map)).map_err(map_err(&path))?;
    Ok(Some(owner.get(&0, 0).map_err(map_err(&path))?))
}

/// Whether the state pinned under `root` may be taken (`doing`: adopted by a start, removed by
/// `steer stop`) from this network namespace. Refused while the namespace that pinned it still
/// exists: bpffs is one filesystem for every network namespace, so another router given the
/// same pin directory finds this one's maps and links there, and adopting them would detach
/// its classifier from its LAN. A namespace that is gone left stale state: taken over, with a
/// warning. State without a record (an older steer's, from before the record existed) is
/// taken as it always was: its owner cannot be told.
pub fn check_owner(root: &Path, doing: &'static str) -> Result<(), PinError> {
    let Some(owner) = recorded_owner(root)? else {
        return Ok(());
    };
    let here = this_namespace().map_err(PinError::OwnNamespace)?;
    if same_namespace(owner, here) {
        return Ok(());
    }
    // This namespace's own inode under another cookie: the kernel gave the inode of the
    // namespace that pinned the state, deleted since, to this one (a namespace deleted and
    // made again, a container restarted); inodes of live namespaces are unique. No search:
    // it would find this namespace itself, and a daemon whose setns is forbidden (the unit's
    // RestrictNamespaces) could not tell it from the other.
    let reused = (owner.netns_dev, owner.netns_ino) == (here.netns_dev, here.netns_ino);
    match (!reused).then(|| find_namespace(owner)).flatten() {
        Some(found) => Err(PinError::OtherNamespace(Box::new(OtherNamespace {
            path: root.to_path_buf(),
            owner: found.describe(),
            doing,
            stop_there: found
                .name
                .map(|n| format!(": `nsenter --net=/run/netns/{n} steer stop -c FILE`"))
                .unwrap_or_default(),
        }))),
        None => {
            log::warn!(
                "{}: the pinned state was made by a steer in network namespace net:[{}], which \
                 no longer exists; taking it over",
                root.display(),
                owner.netns_ino
            );
            Ok(())
        }
    }
}

/// Records this process's network namespace as the owner of the state under `root`.
pub fn record_owner(root: &Path) -> Result<(), PinError> {
    let path = map_path(root, map_names::PIN_OWNER);
    let here = this_namespace().map_err(PinError::OwnNamespace)?;
    if path.exists() {
        let map = MapData::from_pin(&path).map_err(map_err(&path))?;
        let mut owner =
            Array::<MapData, PinOwner>::try_from(Map::Array(map)).map_err(map_err(&path))?;
        return owner.set(0, here, 0).map_err(map_err(&path));
    }
    let mut owner = Array::<MapData, PinOwner>::create(1, 0).map_err(map_err(&path))?;
    owner.set(0, here, 0).map_err(map_err(&path))?;
    owner.pin(&path).map_err(map_err(&path))
}

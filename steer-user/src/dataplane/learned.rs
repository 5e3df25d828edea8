//! The learned-host maps (`LEARNED_V4`, `LEARNED_V6`): exact addresses learned from DNS
//! answers, each with the rule (set) it steers to, and up to two sets' claims on it (the
//! winner's and the runner-up's), each with its expiry (seconds of `CLOCK_BOOTTIME`, so a
//! restarted daemon reads them back) and the name it was learned for. Typed element access
//! only: what to write and when is the controller's business (`controller::dns`), which is
//! their only writer.
//!
//! The handle also switches the classifier's lookups of learned hosts (`HAS_LEARNED_V4` and
//! `HAS_LEARNED_V6` of the settings, [`LearnedMaps::set_lookups`]): without a host of a family
//! the classifier skips the hash probe. The controller keeps the order: on before the first
//! host of a family is written, off only after the last one was removed.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, MapError, MapInfo},
};

use super::maps::{SettingsWord, map_err, open_pin, take_as};
use super::pin::{PinError, map_path};
use steer_common::{LEARNED_NAME_LEN, Learned, NO_RULE, map_names, settings_flags};

use super::{Dataplane, DataplaneError};

/// The settings flags of the learned hosts, by family (IPv4, IPv6).
const LOOKUP_FLAGS: [u32; 2] = [
    settings_flags::HAS_LEARNED_V4,
    settings_flags::HAS_LEARNED_V6,
];

/// Handles on `LEARNED_V4` and `LEARNED_V6`, and on the settings word for their flags.
pub struct LearnedMaps {
    v4: HashMap<MapData, [u8; 4], Learned>,
    v6: HashMap<MapData, [u8; 16], Learned>,
    settings: SettingsWord,
}

impl std::fmt::Debug for LearnedMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedMaps").finish_non_exhaustive()
    }
}

fn name_of(addr: &IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => map_names::LEARNED_V4,
        IpAddr::V6(_) => map_names::LEARNED_V6,
    }
}

impl LearnedMaps {
    /// Takes the maps out of a loaded object; `settings` is the word the object's [`super::Maps`]
    /// writes too.
    pub(super) fn from_ebpf(
        ebpf: &mut Ebpf,
        settings: SettingsWord,
    ) -> Result<Self, DataplaneError> {
        Self::build(
            |name| ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name)),
            settings,
        )
    }

    /// Opens the maps pinned under the pin directory `root` (readers: `steer dump dns`,
    /// `steer explain`).
    pub fn from_pins(root: &Path) -> Result<Self, DataplaneError> {
        for name in [map_names::LEARNED_V4, map_names::LEARNED_V6] {
            check_layout(root, name)?;
        }
        let mut take = |name| open_pin(root, name);
        let settings = SettingsWord::new(take_as(&mut take, map_names::SETTINGS)?);
        Self::build(take, settings)
    }

    fn build(
        mut take: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
        settings: SettingsWord,
    ) -> Result<Self, DataplaneError> {
        let (n4, n6) = (map_names::LEARNED_V4, map_names::LEARNED_V6);
        Ok(LearnedMaps {
            v4: take(n4)?.try_into().map_err(map_err(n4, "open"))?,
            v6: take(n6)?.try_into().map_err(map_err(n6, "open"))?,
            settings,
        })
    }

    /// Whether the classifier looks up learned hosts, by family (IPv4, IPv6).
    pub fn lookups(&self) -> Result<[bool; 2], DataplaneError> {
        let flags = self.settings.get()?.flags;
        Ok(LOOKUP_FLAGS.map(|f| flags & f != 0))
    }

    /// Switches the classifier's lookups of learned hosts to `on` (IPv4, IPv6); the other
    /// settings flags stay as they are. The caller keeps the order that lets no packet miss a
    /// host: a family's lookup goes on before its first host is written, off only after its
    /// last one was removed.
    pub fn set_lookups(&mut self, on: [bool; 2]) -> Result<(), DataplaneError> {
        let mask = LOOKUP_FLAGS[0] | LOOKUP_FLAGS[1];
        let flags = (0..2).filter(|f| on[*f]).map(|f| LOOKUP_FLAGS[f]).sum();
        self.settings.update(mask, flags, || Ok(())).map(|_| ())
    }

    /// Writes (inserts or overwrites) the entry of `addr`.
    pub fn insert(&mut self, addr: IpAddr, value: &Learned) -> Result<(), DataplaneError> {
        let err = map_err(name_of(&addr), "write");
        match addr {
            IpAddr::V4(a) => self.v4.insert(a.octets(), value, 0),
            IpAddr::V6(a) => self.v6.insert(a.octets(), value, 0),
        }
        .map_err(err)
    }

    /// Removes the entry of `addr`; returns whether it was there.
    pub fn remove(&mut self, addr: IpAddr) -> Result<bool, DataplaneError> {
        let err = map_err(name_of(&addr), "remove");
        let result = match addr {
            IpAddr::V4(a) => self.v4.remove(&a.octets()),
            IpAddr::V6(a) => self.v6.remove(&a.octets()),
        };
        match result {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            // aya reports a missing key on delete as the syscall's ENOENT.
            Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The entry of `addr`, if there is one.
    pub fn get(&self, addr: IpAddr) -> Result<Option<Learned>, DataplaneError> {
        let result = match addr {
            IpAddr::V4(a) => self.v4.get(&a.octets(), 0),
            IpAddr::V6(a) => self.v6.get(&a.octets(), 0),
        };
        match result {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(name_of(&addr), "read")(e)),
        }
    }

    /// Every entry of both maps, in no particular order. An entry removed while the maps are
    /// walked is skipped.
    pub fn entries(&self) -> Result<Vec<(IpAddr, Learned)>, DataplaneError> {
        let mut out = Vec::new();
        for item in self.v4.iter() {
            match item {
                Ok((k, v)) => out.push((IpAddr::V4(Ipv4Addr::from(k)), v)),
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_names::LEARNED_V4, "read")(e)),
            }
        }
        for item in self.v6.iter() {
            match item {
                Ok((k, v)) => out.push((IpAddr::V6(Ipv6Addr::from(k)), v)),
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_names::LEARNED_V6, "read")(e)),
            }
        }
        Ok(out)
    }
}

/// Refuses a learned-host map pinned by a steer that lays its entries out otherwise (before
/// this one an entry kept one set's claim): it would be misread, and aya would only say that
/// a size differs. The daemon refuses it earlier, with every other map
/// (`PinDir::check_compatible`).
fn check_layout(root: &Path, name: &'static str) -> Result<(), DataplaneError> {
    let path = map_path(root, name);
    if !path.exists() {
        // Opening it says it is not pinned.
        return Ok(());
    }
    let have = MapInfo::from_pin(&path)
        .map_err(map_err(name, "open pin"))?
        .value_size();
    let want = size_of::<Learned>() as u32;
    if have == want {
        return Ok(());
    }
    Err(PinError::Incompatible {
        path,
        mismatch: format!(
            "its entries are {have} bytes, this steer's are {want} (they keep two sets' claims)"
        ),
    }
    .into())
}

impl Dataplane {
    /// Hands over the learned-host maps (once): the controller's DNS state owns them from then
    /// on, so learning never waits for a map sync. `None` after the first call.
    pub fn take_learned(&mut self) -> Option<LearnedMaps> {
        self.learned.take()
    }
}

/// One set's claim as [`entry`] takes it: rule, expiry, name.
pub type Claimed<'a> = (u32, u64, &'a str);

/// A learned entry as the kernel keeps it: the winning claim and the runner-up's, if any.
pub fn entry(win: Claimed<'_>, also: Option<Claimed<'_>>) -> Learned {
    let (rule, expires, name) = win;
    let mut out = Learned {
        rule,
        expires,
        name: name_to_bytes(name),
        ..Learned::default()
    };
    if let Some((rule, expires, name)) = also {
        out.also_rule = rule;
        out.also_expires = expires;
        out.also_name = name_to_bytes(name);
    }
    out
}

/// One set's claim as read back: rule, expiry, name (as stored).
pub type Read = (u32, u64, String);

/// The claims of a kernel entry, as [`entry`] took them: the winner's and the runner-up's.
pub fn claims(v: &Learned) -> (Read, Option<Read>) {
    let win = (v.rule, v.expires, name_from_bytes(&v.name));
    let also = (v.also_rule != NO_RULE)
        .then(|| (v.also_rule, v.also_expires, name_from_bytes(&v.also_name)));
    (win, also)
}

/// The name as stored: NUL-padded; a name longer than the field keeps its end (where the
/// domain that matched is), cut at a character boundary.
pub fn name_to_bytes(name: &str) -> [u8; LEARNED_NAME_LEN] {
    let mut out = [0u8; LEARNED_NAME_LEN];
    let mut start = name.len().saturating_sub(LEARNED_NAME_LEN);
    while !name.is_char_boundary(start) {
        start += 1;
    }
    let tail = &name.as_bytes()[start..];
    out[..tail.len()].copy_from_slice(tail);
    out
}

/// The stored name; `…` in front when it was cut.
pub fn name_from_bytes(bytes: &[u8; LEARNED_NAME_LEN]) -> String {
    let end = bytes
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(LEARNED_NAME_LEN);
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    if end == LEARNED_NAME_LEN {
        format!("…{text}")
    } else {
        text
    }
}

/// Seconds of `CLOCK_BOOTTIME`: the clock of [`Learned::expires`] (monotonic, counts suspend,
/// the same for every process of this boot).
pub fn boottime_secs() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; CLOCK_BOOTTIME exists on every kernel steer runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(
            name_from_bytes(&name_to_bytes("a.example.com")),
            "a.example.com"
        );
        let long = format!("{}.cdn.example.com", "x".repeat(200));
        let kept = name_from_bytes(&name_to_bytes(&long));
        assert!(
            kept.starts_with('…') && kept.ends_with(".cdn.example.com"),
            "{kept}"
        );
        assert_eq!(kept.len(), '…'.len_utf8() + LEARNED_NAME_LEN);
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_secs();
        assert!(a > 0);
        assert!(boottime_secs() >= a);
    }
}

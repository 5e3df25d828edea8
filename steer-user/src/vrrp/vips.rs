//! The virtual addresses checked against the interfaces they go on, before anything changes
//! (the daemon's start, a reload, `steer check` on the router). Pure but for [`read`].
//!
//! - A VIP that is already an address of its interface which steer did not add (the router's
//!   own address, one added by hand) is refused: steer would hold it only as master and remove
//!   it otherwise, taking the router's own address and connected route with it. steer's own
//!   VIPs carry `proto 201` ([`super::kernel::VIP_PROTO`]), so one left by an earlier steer (a
//!   `kill -9`) is told apart and is no clash.
//! - A VIP outside every subnet of its interface's own addresses (no `holder`) is allowed but
//!   noted: the hosts must be numbered in the VIP's own subnet, which the backup has no
//!   address in (a VIP routed to the master belongs on a `holder`).
//!
//! `steer check` runs where the interfaces may not exist (off the router): an interface it
//! cannot find is not checked, the daemon checks it again when it starts.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use super::kernel::{Address, Netlink};
use crate::config::{Vip, Vrrp};

/// A VIP that is an address of its interface steer did not add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}{place}: vrrp[{instance}].vips[{index}] = \"{vip}\": {addr} is already an address of \
     {interface} that steer did not add (the router's own address, or one added by hand); as \
     a virtual address steer would remove it whenever this router is not master, and the \
     router would lose it and its connected route. Use a free address of the subnet for the \
     VIP (each router keeps its own address); if it is a VIP an earlier steer left behind, \
     remove it first (ip addr del {vip} dev {interface}). Nothing was changed",
    file = file.display(),
    addr = vip.addr
)]
pub struct NotOurs {
    pub file: std::path::PathBuf,
    /// ":line:column" of the VIP in `file` ("" when unknown).
    pub place: String,
    pub instance: String,
    pub index: usize,
    pub vip: Vip,
    pub interface: String,
}

/// Every VIP that clashes, refused together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Clashes(pub Vec<NotOurs>);

/// The interfaces the VIPs of `config` live on (each instance's VIP interface).
pub fn interfaces(config: &[Vrrp]) -> Vec<String> {
    let mut out: Vec<String> = config
        .iter()
        .filter_map(Vrrp::speaker)
        .map(|s| s.vip_interface().to_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The VIPs of `config` that are addresses steer did not add, by `addrs` (interface -> its
/// addresses; an interface missing from it is not checked).
pub fn clashes(
    file: &Path,
    config: &[Vrrp],
    addrs: &BTreeMap<String, Vec<Address>>,
) -> Vec<NotOurs> {
    let mut out = Vec::new();
    for v in config {
        let Some(s) = v.speaker() else { continue };
        let interface = s.vip_interface();
        let Some(there) = addrs.get(interface) else {
            continue;
        };
        for (index, vip) in s.vips.iter().enumerate() {
            if there.iter().any(|a| a.addr == vip.addr && !a.steer) {
                out.push(NotOurs {
                    file: file.to_path_buf(),
                    place: s.places.vip(index),
                    instance: v.name.clone(),
                    index,
                    vip: *vip,
                    interface: interface.to_owned(),
                });
            }
        }
    }
    out
}

/// Notes on VIPs outside every subnet of their interface's own addresses (instances without a
/// `holder`; IPv6 link-local VIPs are on-link by definition).
pub fn outside(
    file: &Path,
    config: &[Vrrp],
    addrs: &BTreeMap<String, Vec<Address>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for v in config {
        let Some(s) = v.speaker() else { continue };
        if s.holder.is_some() {
            continue;
        }
        let Some(there) = addrs.get(&s.interface) else {
            continue;
        };
        let own: Vec<&Address> = there
            .iter()
            .filter(|a| !a.steer && a.addr.is_ipv6() == s.is_v6() && !is_link_local(a.addr))
            .collect();
        if own.is_empty() {
            continue;
        }
        for (index, vip) in s.vips.iter().enumerate() {
            if is_link_local(vip.addr) || own.iter().any(|a| in_subnet(vip.addr, a)) {
                continue;
            }
            let listed: Vec<String> = own
                .iter()
                .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                .collect();
            out.push(format!(
                "{}{}: vrrp[{}].vips[{index}] = \"{vip}\" is outside every subnet of {} ({}): \
                 only hosts numbered in {vip}'s own subnet can use it, and the backup has no \
                 address there; if the network routes it to the master, set `holder` (see \
                 \"Routed VIP\" in the README)",
                file.display(),
                s.places.vip(index),
                v.name,
                s.interface,
                listed.join(", ")
            ));
        }
    }
    out
}

/// Reads the addresses of every interface `config`'s VIPs go on (interfaces that do not exist
/// are left out).
pub async fn read(nl: &Netlink, config: &[Vrrp]) -> Result<BTreeMap<String, Vec<Address>>, String> {
    let mut out = BTreeMap::new();
    for i in interfaces(config) {
        if nl.link(&i).await.is_some() {
            out.insert(i.clone(), nl.addresses(&i).await?);
        }
    }
    // The advert interface of a routed VIP: its own subnets, for `outside`.
    for s in config.iter().filter_map(Vrrp::speaker) {
        if !out.contains_key(&s.interface) && nl.link(&s.interface).await.is_some() {
            out.insert(s.interface.clone(), nl.addresses(&s.interface).await?);
        }
    }
    Ok(out)
}

/// Checks `config`'s VIPs against this machine's interfaces: the clashes refuse, the notes are
/// to be logged. Changes nothing.
pub async fn check(file: &Path, config: &[Vrrp]) -> Result<Vec<String>, Clashes> {
    if config.iter().all(|v| v.speaker().is_none()) {
        return Ok(Vec::new());
    }
    let addrs = match Netlink::new() {
        Ok(nl) => match read(&nl, config).await {
            Ok(a) => a,
            Err(e) => return Ok(vec![format!("vrrp: the VIPs were not checked: {e}")]),
        },
        Err(e) => return Ok(vec![format!("vrrp: the VIPs were not checked: {e}")]),
    };
    let clashes = clashes(file, config, &addrs);
    if !clashes.is_empty() {
        return Err(Clashes(clashes));
    }
    let mut notes = absent(file, config, &addrs);
    notes.extend(outside(file, config, &addrs));
    Ok(notes)
}

/// Notes on the interfaces of `config` (`interface`, `holder`) this machine does not have, by
/// `addrs` (every interface that exists is in it, with or without addresses): at start and
/// reload they are logged as warnings, `steer check` shows them as notes (it may run off the
/// router, as the WANs' and LAN's interfaces are not checked there either).
pub fn absent(file: &Path, config: &[Vrrp], addrs: &BTreeMap<String, Vec<Address>>) -> Vec<String> {
    let mut notes = Vec::new();
    for v in config {
        let Some(s) = v.speaker() else { continue };
        for (field, interface) in [
            ("interface", Some(&s.interface)),
            ("holder", s.holder.as_ref()),
        ] {
            if let Some(i) = interface
                && !addrs.contains_key(i)
            {
                notes.push(missing(file, v, field, i));
            }
        }
    }
    notes
}

/// The note on an interface of instance `v` that this machine does not have.
fn missing(file: &Path, v: &Vrrp, field: &str, interface: &str) -> String {
    let place = v
        .speaker()
        .map_or(String::new(), |s| s.places.interface(field == "holder"));
    format!(
        "{}{place}: vrrp[{}].{field} = \"{interface}\": there is no interface {interface} on \
         this machine: the instance stays in fault (no adverts, never master) until it appears; \
         on the router, check the name (`ip link`); off the router this is expected",
        file.display(),
        v.name
    )
}

fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

/// Whether `addr` is in the subnet of `a` (its address and prefix length).
fn in_subnet(addr: IpAddr, a: &Address) -> bool {
    let bits = |x: IpAddr| match x {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32u8),
        IpAddr::V6(v) => (u128::from(v), 128),
    };
    let ((x, width), (y, _)) = (bits(addr), bits(a.addr));
    if addr.is_ipv4() != a.addr.is_ipv4() {
        return false;
    }
    let host = u32::from(width.saturating_sub(a.prefix_len));
    let mask = u128::MAX.checked_shl(host).unwrap_or(0);
    x & mask == y & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, vips: &str) -> Vec<Vrrp> {
        let text = format!(
            "[general]\nlan = [\"lan0\"]\n[[wan]]\nname = \"wan1\"\ninterface = \"eth1\"\n\
             mark = 0x100\ntable = 101\n[wan.track]\ntargets = [\"192.0.2.1\"]\n\
             [[vrrp]]\nname = \"lan\"\ninterface = \"lan0\"\nvrid = 51\n\
             vips = {vips}\n{extra}\n"
        );
        crate::config::parse(&text, Path::new("/etc/steer.toml"))
            .unwrap()
            .vrrp
    }

    fn addr(s: &str, steer: bool) -> Address {
        let (a, l) = s.split_once('/').unwrap();
        Address {
            addr: a.parse().unwrap(),
            prefix_len: l.parse().unwrap(),
            steer,
        }
    }

    fn lan0(list: &[Address]) -> BTreeMap<String, Vec<Address>> {
        BTreeMap::from([("lan0".to_owned(), list.to_vec())])
    }

    #[test]
    fn a_vip_equal_to_the_routers_own_address_is_refused_naming_field_and_value() {
        let c = config("", "[\"192.168.77.9/24\", \"192.168.77.2/24\"]");
        let addrs = lan0(&[addr("192.168.77.2/24", false)]);
        let found = clashes(Path::new("/etc/steer.toml"), &c, &addrs);
        assert_eq!(found.len(), 1);
        let text = found[0].to_string();
        assert!(
            text.starts_with(
                "/etc/steer.toml:14:28: vrrp[lan].vips[1] = \"192.168.77.2/24\": 192.168.77.2 is \
                 already an address of lan0 that steer did not add"
            ),
            "{text}"
        );
        assert!(text.contains("Nothing was changed"), "{text}");
    }

    #[test]
    fn a_vip_steer_added_is_no_clash_and_an_unknown_interface_is_not_checked() {
        let c = config("", "[\"192.168.77.1/24\"]");
        let ours = lan0(&[
            addr("192.168.77.2/24", false),
            addr("192.168.77.1/24", true),
        ]);
        assert!(clashes(Path::new("x"), &c, &ours).is_empty());
        assert!(clashes(Path::new("x"), &c, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_vip_outside_the_interfaces_subnets_is_noted_unless_it_has_a_holder() {
        let own = lan0(&[addr("192.168.77.2/24", false)]);
        let c = config("", "[\"10.9.9.9/24\"]");
        let notes = outside(Path::new("/etc/steer.toml"), &c, &own);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("/etc/steer.toml:14:9: vrrp[lan].vips[0] = \"10.9.9.9/24\" is outside every subnet of lan0 (192.168.77.2/24)"),
            "{}",
            notes[0]
        );
        let inside = config("", "[\"192.168.77.1/24\"]");
        assert!(outside(Path::new("x"), &inside, &own).is_empty());
        let routed = config("holder = \"vip0\"", "[\"10.9.9.9/24\"]");
        assert!(outside(Path::new("x"), &routed, &own).is_empty());
        let v6 = config("", "[\"fe80::1/64\", \"fd00:1::1/64\"]");
        let own6 = lan0(&[addr("fd00:1::2/64", false), addr("192.168.77.2/24", false)]);
        assert!(outside(Path::new("x"), &v6, &own6).is_empty());
    }

    #[test]
    fn a_missing_interface_is_noted_with_its_place() {
        let c = config("holder = \"vip9\"", "[\"192.168.77.1/24\"]");
        let notes = absent(Path::new("/etc/steer.toml"), &c, &lan0(&[]));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "/etc/steer.toml:15:10: vrrp[lan].holder = \"vip9\": there is no interface vip9"
            ),
            "{}",
            notes[0]
        );
        let notes = absent(
            Path::new("/etc/steer.toml"),
            &config("", "[\"192.168.77.1/24\"]"),
            &BTreeMap::new(),
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "/etc/steer.toml:12:13: vrrp[lan].interface = \"lan0\": there is no interface \
                 lan0 on this machine"
            ),
            "{}",
            notes[0]
        );
    }
}

//! `[ipv6] mode = "source"`: a WAN that cannot carry IPv6 has its prefix deprecated on the LAN
//! (RFC 8475), so hosts pick another source for new connections; it comes back when the WAN
//! does.
//!
//! steer sets the preferred lifetime of the router's LAN addresses inside the prefix to 0 and
//! keeps their valid lifetime and flags. The RA daemon advertises what the LAN addresses say:
//! odhcpd at once, dnsmasq (`dhcp-range=::,constructor:<lan>,...`) and radvd 2.20+ at their next
//! advertisement. A DHCPv6 client that rewrites the address (a renewal) undoes it; steer
//! deprecates again on the address event. When the WAN is back, the preferred lifetime it had
//! (less the time that passed) is restored.
//!
//! [`plan`] is pure (addresses and time passed in); [`read`] and [`apply`] run `ip`.

use std::{collections::BTreeMap, net::Ipv6Addr};

use super::{ToolError, run};
use crate::prefix::Prefix;

/// A global IPv6 address of a LAN interface, with what `ip -6 addr change` must say again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanAddress {
    pub interface: String,
    pub addr: Ipv6Addr,
    pub len: u8,
    /// Seconds; `None`: forever.
    pub valid: Option<u32>,
    pub preferred: Option<u32>,
    /// `noprefixroute`, `mngtmpaddr`, `nodad`: kept through the change.
    pub flags: Vec<String>,
}

/// What a deprecated address's preferred lifetime was, and when (seconds of a monotonic clock).
pub type Saved = BTreeMap<(String, Ipv6Addr), (Option<u32>, u64)>;

/// One change of a LAN address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Preferred lifetime to 0 (its WAN is down).
    Deprecate(LanAddress),
    /// Preferred lifetime back to this (its WAN is back).
    Restore(LanAddress, Option<u32>),
}

/// The changes that bring `addrs` to "deprecated inside `dead`, preferred inside `live`";
/// `saved` holds what steer deprecated, `now` the clock. Addresses in neither (a prefix the
/// ISP took back, one the VRRP master owns) are left as they are: steer does not make a
/// prefix preferred that no WAN of its carries. Nor does it restore what it did not deprecate
/// (nothing saved: an ISP's renumbering, the DHCPv6 client); a daemon restarted while a WAN
/// was down has what it saved from [`super::kept`]. An address whose saved preferred lifetime
/// ran out during the outage stays deprecated: its restore is to 0, and forgets it.
pub fn plan(
    addrs: &[LanAddress],
    (dead, live): (&[Prefix], &[Prefix]),
    saved: &Saved,
    now: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for a in addrs {
        let inside = |prefixes: &[Prefix]| prefixes.iter().any(|p| p.contains(a.addr.into()));
        let key = (a.interface.clone(), a.addr);
        match (inside(dead), inside(live), a.preferred, saved.get(&key)) {
            (true, _, Some(0), _) => {}
            (true, _, _, _) => changes.push(Change::Deprecate(a.clone())),
            (false, true, Some(0), Some(&(was, at))) => {
                let passed = u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX);
                let left = was.map(|p| p.saturating_sub(passed));
                let preferred = match (left, a.valid) {
                    (Some(p), Some(v)) => Some(p.min(v)),
                    (None, v) => v,
                    (p, None) => p,
                };
                changes.push(Change::Restore(a.clone(), preferred));
            }
            _ => {}
        }
    }
    changes
}

/// Forgets what steer saved of addresses that are gone or no longer deprecated by it (the
/// DHCPv6 client replaced them, the prefix went).
pub fn forget_stale(saved: &mut Saved, addrs: &[LanAddress]) {
    saved.retain(|(iface, addr), _| {
        addrs
            .iter()
            .any(|a| &a.interface == iface && &a.addr == addr && a.preferred == Some(0))
    });
}

/// Runs `changes`, keeping `saved` in step; one line per change (what failed says so).
pub fn apply(changes: &[Change], saved: &mut Saved, now: u64) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let (a, preferred) = match c {
                Change::Deprecate(a) => (a, Some(0)),
                Change::Restore(a, p) => (a, *p),
            };
            let done = change(a, preferred);
            let key = (a.interface.clone(), a.addr);
            match (c, &done) {
                // Deprecate is planned only for a preferred address: what it had now (a
                // renewal during the outage) is what comes back.
                (Change::Deprecate(_), Ok(())) => {
                    saved.insert(key, (a.preferred, now));
                }
                (Change::Restore(..), Ok(())) => {
                    saved.remove(&key);
                }
                _ => {}
            }
            let what = match c {
                Change::Deprecate(_) => "deprecated (its WAN carries no IPv6)".to_owned(),
                Change::Restore(..) if preferred == Some(0) => {
                    "left deprecated: its preferred lifetime ran out while its WAN was down"
                        .to_owned()
                }
                Change::Restore(..) => format!("preferred again ({})", lifetime(preferred)),
            };
            match done {
                Ok(()) => format!("{} on {}: {what}", a.addr, a.interface),
                Err(e) => format!("{} on {}: not {what}: {e}", a.addr, a.interface),
            }
        })
        .collect()
}

fn lifetime(l: Option<u32>) -> String {
    l.map_or("forever".into(), |s| format!("{s}s"))
}

fn change(a: &LanAddress, preferred: Option<u32>) -> Result<(), ToolError> {
    let mut args = vec![
        "-6".to_owned(),
        "addr".into(),
        "change".into(),
        format!("{}/{}", a.addr, a.len),
        "dev".into(),
        a.interface.clone(),
        "valid_lft".into(),
        lifetime_arg(a.valid),
        "preferred_lft".into(),
        lifetime_arg(preferred),
    ];
    args.extend(a.flags.iter().cloned());
    run("ip", &args).map(drop)
}

fn lifetime_arg(l: Option<u32>) -> String {
    l.map_or("forever".into(), |s| s.to_string())
}

/// The global IPv6 addresses of the interfaces `lan` (`ip -j -6 addr show`); an interface that
/// does not exist has none.
pub fn read(lan: &[String]) -> Result<Vec<LanAddress>, ToolError> {
    // One run for all of them; a LAN interface that is not there (yet) has no addresses.
    let args = ["-j", "-6", "addr", "show", "scope", "global"].map(str::to_owned);
    let json: serde_json::Value = serde_json::from_slice(&run("ip", &args)?)
        .map_err(|source| ToolError::Output { tool: "ip", source })?;
    Ok(parse(lan, &json))
}

/// The addresses of the `lan` interfaces in `ip -j addr`'s output.
fn parse(lan: &[String], json: &serde_json::Value) -> Vec<LanAddress> {
    let forever = |v: &serde_json::Value| {
        v.as_u64()
            .filter(|&s| s < u64::from(u32::MAX))
            .map(|s| s as u32)
    };
    let links = json.as_array().into_iter().flatten();
    let of_lan = links.filter_map(|link| {
        let name = link["ifname"].as_str()?;
        lan.iter().any(|l| l == name).then_some((name, link))
    });
    let addrs = of_lan.flat_map(|(name, link)| {
        let infos = link["addr_info"].as_array().into_iter().flatten();
        infos.map(move |i| (name, i))
    });
    addrs
        .filter_map(|(iface, i)| {
            let addr: Ipv6Addr = i["local"].as_str()?.parse().ok()?;
            Some(LanAddress {
                interface: iface.to_owned(),
                addr,
                len: u8::try_from(i["prefixlen"].as_u64()?).ok()?,
                valid: forever(&i["valid_life_time"]),
                preferred: forever(&i["preferred_life_time"]),
                flags: ["noprefixroute", "mngtmpaddr", "nodad"]
                    .into_iter()
                    .filter(|f| i[*f].as_bool() == Some(true))
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan_sources::tests::p;

    fn addr(a: &str, preferred: Option<u32>, valid: Option<u32>) -> LanAddress {
        LanAddress {
            interface: "br-lan".into(),
            addr: a.parse().unwrap(),
            len: 64,
            valid,
            preferred,
            flags: vec!["noprefixroute".into()],
        }
    }

    #[test]
    fn a_dead_prefix_is_deprecated_and_restored_less_the_time_that_passed() {
        let addrs = [
            addr("2001:db8:1::1", Some(3600), Some(7200)),
            addr("2001:db8:2::1", None, None),
        ];
        let dead = [p("2001:db8:1::/56")];
        let live = [p("2001:db8:2::/56")];
        let changes = plan(&addrs, (&dead, &live), &Saved::new(), 100);
        assert_eq!(changes, [Change::Deprecate(addrs[0].clone())]);
        let saved = Saved::from([(("br-lan".into(), addrs[0].addr), (Some(3600), 100))]);
        // Deprecated already: nothing to do while the WAN stays down.
        let now_deprecated = [addr("2001:db8:1::1", Some(0), Some(7000)), addrs[1].clone()];
        assert!(plan(&now_deprecated, (&dead, &live), &saved, 300).is_empty());
        // Back: 3600 less the 200 s that passed.
        let all = [dead[0], live[0]];
        assert_eq!(
            plan(&now_deprecated, (&[], &all), &saved, 300),
            [Change::Restore(now_deprecated[0].clone(), Some(3400))]
        );
        // The ISP took the prefix back (a new one came): the old one stays deprecated.
        assert!(plan(&now_deprecated, (&[], &live), &saved, 300).is_empty());
        let mut stale = saved.clone();
        forget_stale(&mut stale, &addrs);
        assert!(
            stale.is_empty(),
            "preferred again by someone else: {stale:?}"
        );
        let mut kept = saved.clone();
        forget_stale(&mut kept, &now_deprecated);
        assert_eq!(kept, saved);
        // Deprecated by someone else (an ISP's renumbering), though its WAN is live: not
        // steer's to restore.
        assert!(plan(&now_deprecated, (&[], &all), &Saved::new(), 300).is_empty());
        // Its preferred lifetime ran out during the outage: it stays deprecated, and the
        // restore to 0 forgets it.
        assert_eq!(
            plan(&now_deprecated, (&[], &all), &saved, 100 + 3600 + 5),
            [Change::Restore(now_deprecated[0].clone(), Some(0))]
        );
        // An address of no WAN's prefix someone else deprecated is not steer's to restore.
        assert!(plan(&now_deprecated, (&[], &live), &Saved::new(), 300).is_empty());
    }

    #[test]
    fn a_forever_address_comes_back_forever_and_never_beyond_its_valid_lifetime() {
        let gone = [addr("2001:db8:1::1", Some(0), None)];
        let saved = Saved::from([(("br-lan".into(), gone[0].addr), (None, 0))]);
        let live = [p("2001:db8:1::/56")];
        assert_eq!(
            plan(&gone, (&[], &live), &saved, 50),
            [Change::Restore(gone[0].clone(), None)]
        );
        let short = [addr("2001:db8:1::1", Some(0), Some(60))];
        let saved = Saved::from([(("br-lan".into(), short[0].addr), (Some(3600), 0))]);
        assert_eq!(
            plan(&short, (&[], &live), &saved, 50),
            [Change::Restore(short[0].clone(), Some(60))]
        );
    }

    #[test]
    fn ip_json_gives_the_lan_addresses_lifetimes_and_the_flags_to_keep() {
        let json: serde_json::Value = serde_json::from_str(
            r#"[{"ifname":"br-lan","addr_info":[
                {"family":"inet6","local":"2001:db8:2::1","prefixlen":64,"scope":"global",
                 "valid_life_time":4294967295,"preferred_life_time":4294967295},
                {"family":"inet6","local":"2001:db8:1::1","prefixlen":64,"scope":"global",
                 "dynamic":true,"noprefixroute":true,"mngtmpaddr":true,
                 "valid_life_time":7200,"preferred_life_time":3600},{}]},
               {"ifname":"wan","addr_info":[
                {"family":"inet6","local":"2001:db8:9::1","prefixlen":64,"scope":"global",
                 "valid_life_time":600,"preferred_life_time":300}]}]"#,
        )
        .unwrap();
        let got = parse(&["br-lan".to_owned()], &json);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].valid, got[0].preferred), (None, None));
        assert_eq!((got[1].valid, got[1].preferred), (Some(7200), Some(3600)));
        assert_eq!(got[1].flags, ["noprefixroute", "mngtmpaddr"]);
    }
}

//! Advice on a valid configuration: what works as written but may not be what was meant.
//! `steer check` prints these as notes; none of them stops the daemon.

use super::{Config, Set};
use crate::model::Family;

/// Every note on `config`, in file order: the advice, then the files others may change.
pub fn notes(config: &Config) -> Vec<String> {
    let mut all = advice(config);
    all.extend(writable_by_others(config));
    all
}

/// Notes on the LAN and WAN interfaces of `config` this machine (network namespace) does not
/// have ([`missing_interfaces`]); none when its interfaces cannot be listed.
pub fn interface_notes(config: &Config) -> Vec<String> {
    interfaces_here().map_or_else(Vec::new, |here| missing_interfaces(config, &here))
}

/// The interfaces of this network namespace, by name; `None` when they cannot be listed.
fn interfaces_here() -> Option<Vec<String>> {
    // SAFETY: if_nameindex has no preconditions; it returns NULL or an array ended by an
    // entry with index 0, which if_freenameindex frees once it was read.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return None;
        }
        let mut names = Vec::new();
        let mut at = list;
        while (*at).if_index != 0 && !(*at).if_name.is_null() {
            names.push(
                std::ffi::CStr::from_ptr((*at).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            at = at.add(1);
        }
        libc::if_freenameindex(list);
        Some(names)
    }
}

/// Notes on probe targets of `config` that are addresses of this machine ([`local_targets`]);
/// none when its addresses cannot be read.
pub fn own_address_notes(config: &Config) -> Vec<String> {
    addresses_here().map_or_else(Vec::new, |here| local_targets(config, &here))
}

/// Every address of this network namespace's interfaces, with the interface it is on;
/// `None` when they cannot be read.
fn addresses_here() -> Option<Vec<(std::net::IpAddr, String)>> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs frees once it was
    // read; every pointer is checked before it is read, and sockaddrs are read as the type
    // their family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut at = list;
        while !at.is_null() {
            let entry = &*at;
            at = entry.ifa_next;
            if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
                continue;
            }
            let addr = match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    std::net::IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    std::net::IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            let name = std::ffi::CStr::from_ptr(entry.ifa_name)
                .to_string_lossy()
                .into_owned();
            out.push((addr, name));
        }
        libc::freeifaddrs(list);
    }
    Some(out)
}

/// The probe targets of `config` that are addresses of this machine (`here`, each with its
/// interface): the router answers them itself, so the WAN stays up through a dead line (or,
/// with the probe bound to the WAN, never comes up). Only found where steer runs: a note of
/// `steer check` on the router.
pub fn local_targets(config: &Config, here: &[(std::net::IpAddr, String)]) -> Vec<String> {
    let file = config.path.display();
    let mut out = Vec::new();
    for w in &config.wans {
        for (i, target) in w.track.targets.iter().enumerate() {
            let ip = target.ip();
            let Some((_, interface)) = here.iter().find(|(a, _)| *a == ip) else {
                continue;
            };
            let place = w.track.target_places.get(i).copied().unwrap_or_default();
            out.push(format!(
                "{file}{place}: wan[{}].track.targets[{i}] = \"{target}\": {ip} is an address \
                 of this machine (on {}): the router answers it itself, so the probe says \
                 nothing about the line; probe an address beyond it, e.g. 1.1.1.1 or the \
                 ISP's next hop",
                w.name,
                crate::shown::shown(interface)
            ));
        }
    }
    out
}

/// Interfaces shown in a note about one that is missing, at most.
const INTERFACES_SHOWN: usize = 24;

/// The LAN and WAN interfaces of `config` that are not among `here` (this machine's): a typo
/// there passes every check of the file, and a reload then detaches the classifier from the
/// real LAN or leaves a WAN without routes. A note, not an error: an interface may come and go
/// (PPP, LTE, a VPN) and `steer check` may run off the router. (The daemon warns of a LAN
/// interface it cannot attach to; it may log these notes as warnings at start and reload too.)
pub fn missing_interfaces(config: &Config, here: &[String]) -> Vec<String> {
    let mut sorted: Vec<&str> = here.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut shown: Vec<String> = sorted
        .iter()
        .take(INTERFACES_SHOWN)
        .map(|n| crate::shown::shown(n))
        .collect();
    if sorted.len() > INTERFACES_SHOWN {
        shown.push(format!("… ({} in all)", sorted.len()));
    }
    let existing = if shown.is_empty() {
        "it has none".to_string()
    } else {
        format!("it has {}", shown.join(", "))
    };
    let file = config.path.display();
    let mut out = Vec::new();
    let lan = config.general.lan.iter().enumerate().map(|(i, name)| {
        let place = config
            .general
            .lan_places
            .get(i)
            .copied()
            .unwrap_or_default();
        (
            format!("{file}{place}: general.lan[{i}]"),
            name,
            "steer classifies no traffic coming in on it until it appears (a reload detaches \
             the classifier from interfaces no longer listed)"
                .to_string(),
        )
    });
    let wans = config.wans.iter().map(|w| {
        (
            format!("{file}{}: wan[{}].interface", w.interface_place, w.name),
            &w.interface,
            format!(
                "WAN `{}` has no routes and counts as down until it appears",
                w.name
            ),
        )
    });
    for (field, name, effect) in lan.chain(wans) {
        if here.iter().any(|h| h == name) {
            continue;
        }
        out.push(format!(
            "{field} = \"{name}\": there is no interface {name} on this machine ({existing}): \
             {effect}; on the router, check the name (`ip link`); an interface that comes \
             later (PPP, LTE, a VPN) or a check off the router may leave this as it is"
        ));
    }
    out
}

/// What works as written but may not be what was meant.
pub fn advice(config: &Config) -> Vec<String> {
    let wans = config.wans.iter().filter_map(one_family_probed);
    let sets = config.sets.iter().filter_map(rule_that_matches_nothing);
    let unfiltered = config
        .sets
        .iter()
        .filter_map(|s| aaaa_unfiltered(s, config.dns.as_ref()));
    let short = config.dns.as_ref().and_then(short_min_ttl);
    let shared = config
        .wans
        .iter()
        .filter_map(|w| shared_master_only(config, &w.name));
    let everything = rule_that_matches_everything(config);
    let kept_local = prefixes_kept_local(config);
    let empty = config.sets.iter().filter_map(empty_plain_set);
    let ipv6 = ipv6_without_sources(config);
    wans.chain(sets)
        .chain(ipv6)
        .chain(everything)
        .chain(kept_local)
        .chain(empty)
        .chain(unfiltered)
        .chain(short)
        .chain(shared)
        .collect()
}

/// The configuration file and list files (or their directories) others than root and the user
/// steer runs as may write: every user, a group's members, or the user who owns them. Any of
/// them could rewrite the router's steering, and the `up_command`s steer runs as root. Also
/// logged by the daemon at each apply.
pub fn writable_by_others(config: &Config) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut paths: Vec<&std::path::Path> = vec![&config.path];
    for s in &config.sets {
        paths.extend(s.files.iter().chain(&s.domain_files).map(|p| p.as_path()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        for p in std::iter::once(path).chain(dir) {
            let Ok(meta) = std::fs::metadata(p) else {
                continue;
            };
            let access = Access {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                is_file: meta.is_file(),
            };
            let shown = p.display().to_string();
            if let Some(who) = access.writers_besides(euid, &shown)
                && seen.insert(p.to_path_buf())
            {
                out.push(format!("{shown} {who}"));
            }
        }
    }
    out
}

/// A file's or directory's owner, group and mode.
struct Access {
    mode: u32,
    uid: u32,
    gid: u32,
    is_file: bool,
}

impl Access {
    /// Who besides root and `euid` may write it, and what to do about it.
    fn writers_besides(&self, euid: u32, path: &str) -> Option<String> {
        let mode = self.mode & 0o7777;
        // A sticky directory (/tmp) lets no one replace another's file.
        let replaceable = self.is_file || self.mode & 0o1000 == 0;
        let risk = "could change the router's steering (and the commands it runs as root)";
        if self.mode & 0o002 != 0 && replaceable {
            return Some(format!(
                "is writable by every user (mode {mode:04o}): anyone on the router {risk}; \
                 `chmod o-w {path}`"
            ));
        }
        if self.uid != 0 && self.uid != euid {
            return Some(format!(
                "belongs to uid {}, not root: that user {risk}; `chown root {path}`",
                self.uid
            ));
        }
        if self.mode & 0o020 != 0 && self.gid != 0 && replaceable {
            return Some(format!(
                "is writable by group {} (mode {mode:04o}): its members {risk}; `chmod g-w {path}`",
                self.gid
            ));
        }
        None
    }
}

/// A master-only WAN of several instances comes up only on the master of all of them:
/// instances that can elect different masters (other priorities, preemption, preempt
/// delays; or no preemption at all, which keeps a split) leave the line down on both routers.
fn shared_master_only(config: &Config, wan: &str) -> Option<String> {
    let listing: Vec<&super::Vrrp> = config
        .vrrp
        .iter()
        .filter(|v| v.holds_master_only(wan))
        .collect();
    if listing.len() < 2 {
        return None;
    }
    let election = |v: &super::Vrrp| {
        v.speaker()
            .map(|s| (s.priority, s.preempt, s.preempt_delay_ms))
    };
    let same = listing.windows(2).all(|p| election(p[0]) == election(p[1]));
    let preempting = listing
        .iter()
        .all(|v| v.speaker().is_none_or(|s| s.preempt));
    if same && preempting {
        return None;
    }
    let names: Vec<&str> = listing.iter().map(|v| v.name.as_str()).collect();
    Some(format!(
        "WAN `{wan}` is master_only in instances {}: it comes up only on the router that is \
         master of all of them, and {}; give them the same priority, preempt and \
         preempt_delay_ms, with preemption on, so they move together",
        names.join(", "),
        if same {
            "without preemption a split (one instance failing over alone) stays, the line \
             down on both routers"
        } else {
            "their priorities or preemption differ, so the routers can split them, the line \
             down on both"
        }
    ))
}

/// Below this, a learned host may expire before its client connects.
const SHORT_MIN_TTL: u32 = 30;

/// A `min_ttl` so short that a host answered with TTL 0 expires before its client (which may
/// cache the answer far longer) connects: its first packets leave by the default WAN.
fn short_min_ttl(dns: &super::Dns) -> Option<String> {
    (dns.min_ttl < SHORT_MIN_TTL).then(|| {
        format!(
            "dns.min_ttl = {} s: a host answered with a short TTL (0 is common) is forgotten \
             that soon after the answer, and a client that connects later (clients cache \
             answers longer than their TTL) leaves by the default WAN; keep min_ttl at least \
             {SHORT_MIN_TTL} s (the default is {} s)",
            dns.min_ttl,
            super::Dns::DEFAULT_MIN_TTL
        )
    })
}

/// A set asking for its names' AAAA answers to be filtered where steer answers no DNS query:
/// snoop mode alone (`forward = false`) only watches answers, it cannot change them.
fn aaaa_unfiltered(set: &Set, dns: Option<&super::Dns>) -> Option<String> {
    if !set.filter_aaaa || dns.is_none_or(|d| d.forward) {
        return None;
    }
    Some(format!(
        "set `{}` has filter_aaaa = true, but with [dns] forward = false steer only watches DNS \
         answers (snoop mode) and cannot take AAAA records out of them: clients still get its \
         names' IPv6 addresses (steer learns them, so that traffic is steered too); to filter, \
         turn the forwarder on and make it the LAN's DNS server",
        set.name
    ))
}

/// A set with conditions that no packet can meet: its list files came out empty, or its
/// own prefixes and its `src_prefixes` are of different families.
fn rule_that_matches_nothing(set: &Set) -> Option<String> {
    let rule = set.ordered_rule(0)?;
    let protos_allow = |family: Family| {
        let protos = &rule.conditions.protos;
        protos.is_empty()
            || protos
                .iter()
                .any(|p| proto_family(*p).is_none_or(|f| f == family))
    };
    if Family::ALL
        .iter()
        .any(|f| rule.fits(*f) && protos_allow(*f))
    {
        return None;
    }
    let (why, what_to_do) = if set.names_addresses() && set.prefix_count() == 0 {
        (
            "its list files hold no prefix",
            "fill the list, or remove `files` to match every address",
        )
    } else if Family::ALL.iter().any(|f| rule.fits(*f)) {
        (
            "its protocols are of the other address family than its prefixes (icmpv6 is \
             IPv6's, protocol 1 IPv4's; `icmp` means either)",
            "write `icmp`, or prefixes of the protocol's family",
        )
    } else {
        (
            "its prefixes and its src_prefixes are of different address families",
            "give both sides prefixes of one family",
        )
    };
    Some(format!(
        "set `{}` has conditions but matches no packet: {why}; packets go on to the other \
         rules and sets ({what_to_do})",
        set.name
    ))
}

/// The family a protocol number belongs to, if it belongs to one (ICMP and ICMPv6).
fn proto_family(p: crate::model::ordered::Proto) -> Option<Family> {
    match p {
        crate::model::ordered::Proto::Number(1) => Some(Family::V4),
        crate::model::ordered::Proto::Number(58) => Some(Family::V6),
        _ => None,
    }
}

/// A set with conditions that every packet meets (no condition, no prefix): no set with
/// conditions after it in the order, no plain set and not `[default]` ever decides a packet.
/// (Last in the order with nothing else to silence, it is the mwan3-style "everything else".)
fn rule_that_matches_everything(config: &Config) -> Option<String> {
    let (i, set) = config.sets.iter().enumerate().find(|(_, s)| {
        s.ordered_rule(0).is_some_and(|r| {
            let c = &r.conditions;
            r.prefixes.is_none()
                && c.protos.is_empty()
                && c.sports.is_empty()
                && c.dports.is_empty()
                && c.src_macs.is_empty()
                && c.ins.is_empty()
                && c.src_prefixes.is_empty()
        })
    })?;
    let later_ordered = config.sets[i + 1..]
        .iter()
        .filter(|s| s.conditions.is_some())
        .count();
    let plain = config
        .sets
        .iter()
        .filter(|s| s.conditions.is_none())
        .count();
    (later_ordered + plain > 0 || config.default.is_some()).then(|| {
        format!(
            "set `{}` (set #{} of the file) has conditions every packet meets (no protocol, \
             port, MAC, interface or prefix narrows it): no set with conditions after it, no \
             set without conditions and not [default] ever decide a packet; give it a \
             condition or prefixes, or drop what it silences",
            set.name,
            i + 1
        )
    })
}

/// A destination set's prefixes inside `general.local_prefixes`: local destinations are never
/// steered, so they never take the set's policy.
fn prefixes_kept_local(config: &Config) -> Vec<String> {
    let local = &config.general.local_prefixes;
    if local.is_empty() {
        return Vec::new();
    }
    config
        .sets
        .iter()
        .filter(|s| s.direction == crate::model::Direction::Dst)
        .filter_map(|s| {
            let inside: Vec<String> = s
                .all_prefixes()
                .filter(|p| {
                    local
                        .iter()
                        .any(|l| l.len() <= p.len() && l.contains(p.addr()))
                })
                .map(|p| p.to_string())
                .collect();
            let shown: Vec<&str> = inside.iter().take(3).map(String::as_str).collect();
            (!inside.is_empty()).then(|| {
                format!(
                    "set `{}`: {} of its prefixes ({}{}) are inside general.local_prefixes, \
                     and local destinations are never steered: they never take its policy",
                    s.name,
                    inside.len(),
                    shown.join(", "),
                    if inside.len() > 3 { ", ..." } else { "" }
                )
            })
        })
        .collect()
}

/// A plain set that holds nothing to match: its prefixes all went to earlier sets under
/// `general.duplicates = "first-set-wins"`, or its list files came out empty.
fn empty_plain_set(set: &Set) -> Option<String> {
    let empty = set.conditions.is_none()
        && set.prefix_count() == 0
        && set.domains.is_empty()
        && set.domain_files.is_empty();
    empty.then(|| {
        format!(
            "set `{}` holds no prefix and no domain, so it matches nothing until `steer set \
             {} add` gives it runtime entries (its entries may all be in earlier sets, which \
             keep them under general.duplicates = \"first-set-wins\", or its list files are \
             empty)",
            set.name, set.name
        )
    })
}

/// A WAN probed over one family only: the other family's state follows it, so an outage of
/// the other family alone goes unseen.
/// IPv6 moved between WANs without `[ipv6]`: a LAN host's IPv6 source is from one ISP's
/// prefix, which another ISP drops (BCP38) once the host's traffic fails over or is steered
/// there. And `prefix6`, which only `[ipv6]` reads.
fn ipv6_without_sources(config: &Config) -> Option<String> {
    if config.ipv6.is_some() {
        return None;
    }
    let names = |f: &dyn Fn(&super::Wan) -> bool| -> Vec<String> {
        config
            .wans
            .iter()
            .filter(|w| f(w))
            .map(|w| format!("`{}`", w.name))
            .collect()
    };
    let with_prefix = names(&|w| w.prefix6.is_some());
    if !with_prefix.is_empty() {
        return Some(format!(
            "wan {} set prefix6, which only an [ipv6] section reads: without one it is \
             ignored and IPv6 leaves every WAN with the LAN hosts' own sources; add [ipv6] with \
             mode = \"npt\" (or \"source\"), see README \"IPv6 on several WANs\"",
            with_prefix.join(", ")
        ));
    }
    let probed = names(&|w| w.track.probes(Family::V6));
    if config.wans.len() < 2 || probed.is_empty() {
        return None;
    }
    Some(format!(
        "IPv6 moves between WANs (wan {} probes IPv6) and there is no [ipv6] section: a LAN \
         host's IPv6 address is from one ISP's prefix, which the other ISP drops (BCP38) when \
         its traffic fails over or is steered there; add [ipv6] with mode = \"masquerade\" (or \
         \"npt\", \"source\"), see README \"IPv6 on several WANs\"",
        probed.join(", ")
    ))
}

fn one_family_probed(wan: &super::Wan) -> Option<String> {
    let (only, other) = match (wan.track.probes(Family::V4), wan.track.probes(Family::V6)) {
        (true, false) => (Family::V4, Family::V6),
        (false, true) => (Family::V6, Family::V4),
        _ => return None,
    };
    Some(format!(
        "wan `{}` has {} probe targets only: if it carries {other_name}, its {other_name} state follows \
         {} and a {other_name}-only outage is not seen; add an {other_name} target to [wan.track] \
         targets to judge {other_name} by itself",
        wan.name,
        only.name(),
        only.name(),
        other_name = other.name(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_between_wans_without_an_ipv6_section_is_noted() {
        use crate::config::testing::TWO_WANS;
        let base = format!(
            "[general]\nlan = [\"br-lan\"]\n{TWO_WANS}\n[[policy]]\nname = \"p\"\n\
             members = [{{ wan = \"wan1\" }}, {{ wan = \"wan2\" }}]\n"
        );
        let path = std::path::Path::new("/etc/steer/steer.toml");
        let ipv6_note = |text: &str| {
            let config = crate::config::parse(text, path).unwrap();
            super::advice(&config)
                .into_iter()
                .filter(|n| n.contains("[ipv6]"))
                .collect::<Vec<_>>()
        };
        // IPv4 probes only: nothing says IPv6 is meant to move.
        assert!(ipv6_note(&base).is_empty(), "{:?}", ipv6_note(&base));
        let probed = base.replacen(
            "targets = [\"192.0.2.1\"]",
            "targets = [\"192.0.2.1\", \"2001:db8::1\"]",
            1,
        );
        assert_ne!(probed, base);
        let notes = ipv6_note(&probed);
        assert!(notes.len() == 1 && notes[0].contains("BCP38"), "{notes:?}");
        let sourced = format!("{probed}\n[ipv6]\nmode = \"masquerade\"\n");
        assert!(ipv6_note(&sourced).is_empty(), "{:?}", ipv6_note(&sourced));
    }

    #[test]
    fn a_probe_target_that_is_an_address_of_this_machine_is_noted_with_its_place() {
        use crate::config::testing::BASE;
        let text = BASE.replace(
            "targets = [\"1.1.1.1\"]",
            "targets = [\"9.9.9.9\", \"10.71.1.2\"]",
        );
        let path = std::path::Path::new("/etc/steer/steer.toml");
        let config = crate::config::parse(&text, path).unwrap();
        let here = [
            ("127.0.0.1".parse().unwrap(), "lo".to_string()),
            ("10.71.1.2".parse().unwrap(), "eth1".to_string()),
        ];
        let notes = super::local_targets(&config, &here);
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].starts_with(
                "/etc/steer/steer.toml:11:23: wan[wan1].track.targets[1] = \"10.71.1.2\": \
                 10.71.1.2 is an address of this machine (on eth1): the router answers it"
            ),
            "{}",
            notes[0]
        );
        assert!(super::local_targets(&config, &here[..1]).is_empty());
        // What this machine has is read (at least its loopback address, where one is up).
        let _ = super::addresses_here();
    }

    #[test]
    fn a_lan_or_wan_interface_this_machine_lacks_is_noted_with_its_place() {
        use crate::config::testing::{BASE, Scratch};
        let dir = Scratch::new("missing-interfaces");
        let text = BASE.replace("lan = [\"br-lan\"]", "lan = [\"br-lan\", \"t7c-nolan\"]");
        let path = dir.write("steer.toml", &text);
        let config = crate::config::parse(&text, &path).unwrap();
        let here = ["lo".to_string(), "br-lan".into(), "eth0".into()];
        let notes = super::missing_interfaces(&config, &here);
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes[0].starts_with(&format!(
                "{}:3:18: general.lan[1] = \"t7c-nolan\": there is no interface t7c-nolan on \
                 this machine (it has br-lan, eth0, lo): steer classifies no traffic",
                path.display()
            )),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].starts_with(&format!(
                "{}:7:13: wan[wan1].interface = \"eth1\": there is no interface eth1",
                path.display()
            )),
            "{}",
            notes[1]
        );
        let all = ["lo", "br-lan", "t7c-nolan", "eth1"].map(String::from);
        assert!(super::missing_interfaces(&config, &all).is_empty());
    }

    use super::*;
    use std::path::Path;

    use crate::config::parse;

    /// The notes of BASE with `general` added to [general] and `sets` after it.
    fn notes_of(general: &str, sets: &str) -> Vec<String> {
        let base = crate::config::testing::BASE.replacen(
            "lan = [\"br-lan\"]",
            &format!("lan = [\"br-lan\"]\n{general}"),
            1,
        );
        let c = parse(&format!("{base}\n{sets}"), Path::new("/nonexistent/s.toml")).expect("valid");
        notes(&c)
            .into_iter()
            .filter(|n| !n.starts_with("wan `"))
            .collect()
    }

    #[test]
    fn rules_that_never_or_always_decide_and_prefixes_kept_local_get_a_note() {
        let icmpv6 = notes_of(
            "",
            "[[set]]\nname = \"v6ping\"\npolicy = \"p\"\nproto = [\"icmpv6\"]\n\
             prefixes = [\"198.51.100.0/24\"]\n",
        );
        assert!(
            icmpv6.len() == 1
                && icmpv6[0].contains("its protocols are of the other address family"),
            "{icmpv6:?}"
        );
        let icmp = notes_of(
            "",
            "[[set]]\nname = \"ping\"\npolicy = \"p\"\nproto = [\"icmp\"]\n\
             prefixes = [\"198.51.100.0/24\"]\n",
        );
        assert!(icmp.is_empty(), "icmp is either family's: {icmp:?}");
        let everything = notes_of(
            "",
            "[[set]]\nname = \"all\"\npolicy = \"p\"\nproto = [\"any\"]\n\
             [[set]]\nname = \"b\"\npolicy = \"p\"\nprefixes = [\"198.51.100.0/24\"]\n",
        );
        assert!(
            everything.len() == 1
                && everything[0].starts_with(
                    "set `all` (set #1 of the file) has conditions every packet meets"
                ),
            "{everything:?}"
        );
        let last = notes_of(
            "",
            "[[set]]\nname = \"voip\"\npolicy = \"p\"\nproto = [\"udp\"]\ndports = [\"5060\"]\n\
             [[set]]\nname = \"rest\"\npolicy = \"p\"\nproto = [\"any\"]\n",
        );
        assert!(last.is_empty(), "an mwan3-style catch-all, last: {last:?}");
        let local = notes_of(
            "local_prefixes = [\"10.0.0.0/8\"]",
            "[[set]]\nname = \"b\"\npolicy = \"p\"\nprefixes = [\"10.1.0.0/16\", \"198.51.100.0/24\"]\n",
        );
        assert!(
            local.len() == 1
                && local[0].starts_with(
                    "set `b`: 1 of its prefixes (10.1.0.0/16) are inside general.local_prefixes"
                ),
            "{local:?}"
        );
        let emptied = notes_of(
            "duplicates = \"first-set-wins\"",
            "[[set]]\nname = \"a\"\npolicy = \"p\"\nprefixes = [\"198.51.100.0/24\"]\n\
             [[set]]\nname = \"b\"\npolicy = \"p\"\nprefixes = [\"198.51.100.0/24\"]\n",
        );
        assert!(
            emptied.len() == 1 && emptied[0].starts_with("set `b` holds no prefix and no domain"),
            "{emptied:?}"
        );
    }

    #[test]
    fn a_wan_probed_over_one_family_gets_a_note_naming_the_other() {
        let c = parse(
            r#"
[general]
lan = ["lan0"]
[[wan]]
name = "dsl"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]
[[wan]]
name = "lte"
interface = "eth2"
mark = 0x200
table = 102
[wan.track]
targets = ["1.1.1.1", "2606:4700:4700::1111"]
[[policy]]
name = "p"
members = [{ wan = "dsl" }, { wan = "lte" }]
[default]
policy = "p"
[ipv6]
mode = "masquerade"
"#,
            Path::new("steer.toml"),
        )
        .expect("a valid configuration");
        let notes = notes(&c);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("wan `dsl` has IPv4 probe targets only")
                && notes[0].contains("add an IPv6 target"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn filter_aaaa_in_snoop_mode_alone_gets_a_note() {
        let set = "[[set]]\nname = \"video\"\npolicy = \"p\"\ndomains = [\"video.example\"]\n\
                   filter_aaaa = true\n";
        let with = |dns: &str| {
            let text = format!("{}{set}{dns}", crate::config::testing::BASE);
            let c = parse(&text, Path::new("steer.toml")).expect("valid");
            let notes = notes(&c);
            notes
                .into_iter()
                .filter(|n| n.contains("filter_aaaa"))
                .collect::<Vec<_>>()
        };
        let snoop_alone = with("[dns]\nforward = false\nsnoop = true\n");
        assert_eq!(snoop_alone.len(), 1, "{snoop_alone:?}");
        assert!(
            snoop_alone[0].starts_with("set `video` has filter_aaaa = true")
                && snoop_alone[0].contains("cannot take AAAA records out"),
            "{}",
            snoop_alone[0]
        );
        let forwarder = "[dns]\nlisten = [\"127.0.0.1:5353\"]\nupstreams = [\"127.0.0.1:5335\"]\n";
        assert_eq!(
            with(&format!("{forwarder}snoop = true\n")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_short_min_ttl_gets_a_note() {
        let with = |ttl: &str| {
            let text = format!(
                "{}[dns]\nlisten = [\"127.0.0.1:5353\"]\nupstreams = [\"127.0.0.1:5335\"]\n{ttl}",
                crate::config::testing::BASE
            );
            let c = parse(&text, Path::new("steer.toml")).expect("valid");
            notes(&c)
                .into_iter()
                .filter(|n| n.contains("min_ttl"))
                .collect::<Vec<_>>()
        };
        let zero = with("min_ttl = 0\n");
        assert!(
            zero.len() == 1 && zero[0].starts_with("dns.min_ttl = 0 s"),
            "{zero:?}"
        );
        assert!(with("").is_empty(), "the default is not short");
    }

    #[test]
    fn a_master_only_wan_of_instances_that_can_split_gets_a_note() {
        let instances = |p6: u32, preempt: bool| {
            format!(
                "[[vrrp]]\nname = \"lan\"\ninterface = \"br-lan\"\nvrid = 1\npriority = 150\n\
                 preempt = {preempt}\nvips = [\"192.168.1.1/24\"]\n\
                 wans = [{{ wan = \"wan1\", master_only = true }}]\n\
                 [[vrrp]]\nname = \"lan6\"\ninterface = \"br-lan\"\nvrid = 1\npriority = {p6}\n\
                 preempt = {preempt}\nvips = [\"fe80::1/64\"]\n\
                 wans = [{{ wan = \"wan1\", master_only = true }}]\n"
            )
        };
        let with = |vrrp: String| {
            let text = format!("{}{vrrp}", crate::config::testing::BASE);
            let c = parse(&text, Path::new("steer.toml")).expect("valid");
            notes(&c)
                .into_iter()
                .filter(|n| n.contains("master_only in instances"))
                .collect::<Vec<_>>()
        };
        assert!(with(instances(150, true)).is_empty(), "they move together");
        let other = with(instances(100, true));
        assert!(
            other.len() == 1 && other[0].contains("lan, lan6") && other[0].contains("differ"),
            "{other:?}"
        );
        let sticky = with(instances(150, false));
        assert!(
            sticky.len() == 1 && sticky[0].contains("without preemption"),
            "{sticky:?}"
        );
    }

    #[test]
    fn a_configuration_every_user_may_write_gets_a_note() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("steer-notes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("steer.toml");
        std::fs::write(&path, crate::config::testing::BASE).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c = crate::config::load(&path).expect("valid");
        let open = writable_by_others(&c);
        assert!(
            open.len() == 1 && open[0].contains("is writable by every user (mode 0666)"),
            "{open:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(writable_by_others(&c).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_owner_or_a_writing_group_gets_a_note_root_and_steers_own_user_do_not() {
        let file = |mode: u32, uid: u32, gid: u32| Access {
            mode: 0o100000 | mode,
            uid,
            gid,
            is_file: true,
        };
        let says = |a: Access| a.writers_besides(0, "f").unwrap_or_default();
        assert_eq!(says(file(0o644, 0, 0)), "");
        assert_eq!(
            file(0o644, 1000, 1000).writers_besides(1000, "f"),
            None,
            "steer's own user"
        );
        assert!(says(file(0o644, 65534, 0)).starts_with("belongs to uid 65534, not root"));
        assert!(says(file(0o664, 0, 100)).starts_with("is writable by group 100 (mode 0664)"));
        assert_eq!(says(file(0o664, 0, 0)), "", "root's group");
        let sticky_tmp = Access {
            mode: 0o041777,
            uid: 0,
            gid: 0,
            is_file: false,
        };
        assert_eq!(says(sticky_tmp), "");
    }
}

//! The controller's view of each WAN's delegated IPv6 prefix (`[ipv6]`, `prefix6`): resolved
//! after every routing change ([`crate::wan_sources::learn`]), with the prefixes DHCPv6 client
//! hooks handed in. The controller installs its nftables table again and deletes the WAN's
//! IPv6 connections when a prefix changes; under `npt` a WAN whose prefix is not known carries
//! no IPv6.

use std::collections::{BTreeMap, BTreeSet};

use super::lines::{self, Line};
use crate::{
    config::{Ipv6, Wan},
    health::UnknownWan,
    prefix::Prefix,
    routing::SystemView,
    status::ReportLine,
    wan_sources::{
        self, Hooked6, Prefixes,
        deprecate::{self, Saved},
        kept,
        learn::HookedPrefixError,
    },
};

/// Why a prefix a hook handed in (`steer wan NAME prefix6 PREFIX`) was refused; nothing
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum Prefix6Refused {
    #[error(transparent)]
    Prefix(#[from] HookedPrefixError),
    #[error(transparent)]
    Wan(#[from] UnknownWan),
    #[error(
        "WAN {wan} does not learn its prefix (prefix6 is not \"auto\" in {config}): set \
         prefix6 = \"auto\" for a hook to hand it in"
    )]
    NotAuto { wan: String, config: String },
    #[error("prefix6 {prefix} for WAN {wan} overlaps {clash}: nothing changed")]
    Overlap {
        prefix: Prefix,
        wan: String,
        clash: String,
    },
}

/// Under npt, a WAN prefix that is (or lies in) the subnet on the WAN's own link, as an
/// RA-only line's /64: the ISP's router reaches the translated LAN addresses by neighbour
/// discovery on that link, which nobody answers for them, so nothing comes back.
fn translated_onto_its_own_link(
    ipv6: Option<&Ipv6>,
    wans: &[Wan],
    system: &SystemView,
    name: &str,
    resolved: &wan_sources::WanPrefix,
) -> Option<ReportLine> {
    let npt = ipv6.is_some_and(|v6| v6.mode == crate::config::Ipv6Mode::Npt);
    let (wan, prefix) = (wans.iter().find(|w| w.name == name)?, resolved.prefix?);
    let link = system.links.get(&wan.interface)?;
    let subnet = system
        .on_link
        .iter()
        .find(|(p, index)| {
            *index == link.index && (p.contains(prefix.addr()) || prefix.contains(p.addr()))
        })
        .map(|(p, _)| *p)
        .filter(|_| npt)?;
    Some(ReportLine::warning(format!(
        "{name} ipv6: prefix {prefix} is the subnet on {}'s own link ({subnet}): the ISP's router \
         looks translated LAN addresses up by neighbour discovery there, and nothing answers \
         for them, so no reply comes back; give wan {name} the prefix its ISP delegates \
         (DHCPv6-PD), or use mode = \"masquerade\" for a line that gives only a /64 by router \
         advertisements",
        wan.interface
    )))
}

#[derive(Debug, Default)]
pub(super) struct WanPrefixes {
    /// As last resolved.
    pub resolved: Prefixes,
    hooked: Hooked6,
    /// The interface of each WAN of `hooked` (kept with it: the prefix follows its line,
    /// [`super::lines`]).
    interfaces: BTreeMap<String, String>,
    /// WANs that cannot carry IPv6 for want of their prefix.
    blocked: BTreeSet<String>,
    /// `mode = "source"`: the prefixes deprecated on the LAN as last reconciled, the
    /// preferred lifetimes they had, and whether addresses may have changed since.
    deprecated: Vec<Prefix>,
    saved: Saved,
    addresses_changed: bool,
    /// Where the hooked prefixes and saved lifetimes are kept across restarts, and this boot.
    kept: Option<(std::path::PathBuf, String)>,
}

impl WanPrefixes {
    /// With what a daemon before this one kept next to the control socket `socket`
    /// ([`kept`]), each hooked prefix following its line to the WANs of `wans`
    /// ([`super::lines`]); what to say of those renamed or dropped (the file is written again).
    pub fn open(socket: &std::path::Path, wans: &[Wan]) -> (WanPrefixes, Vec<ReportLine>) {
        let path = kept::path_for(socket);
        let boot = crate::runtime_sets::journal::boot_id();
        let found = kept::load(&path, &boot);
        if !found.hooked.is_empty() || !found.saved.is_empty() {
            log::info!(
                "{}: {} hooked prefix(es) and {} deprecated address(es) kept by the daemon before",
                path.display(),
                found.hooked.len(),
                found.saved.len()
            );
        }
        let mut prefixes = WanPrefixes {
            hooked: found.hooked,
            interfaces: found.interfaces,
            saved: found.saved,
            // What the daemon before deprecated is looked at on the first pass, not at the
            // next netlink event.
            addresses_changed: true,
            kept: Some((path, boot)),
            ..WanPrefixes::default()
        };
        let old: Vec<Line> = prefixes.interfaces.clone().into_iter().collect();
        let mut notes = prefixes.follow(&old, &lines::lines_of(wans));
        if !notes.is_empty() {
            notes.extend(prefixes.keep());
        }
        (prefixes, notes)
    }

    /// Writes what is kept across restarts (after a change of it); what failed, if it did
    /// (also logged).
    pub fn keep(&self) -> Option<ReportLine> {
        let (path, boot) = self.kept.as_ref()?;
        let now = kept::Kept {
            hooked: self.hooked.clone(),
            interfaces: self.interfaces.clone(),
            saved: self.saved.clone(),
        };
        let e = kept::store(path, boot, &now).err()?;
        let line = format!(
            "{}: {e}; a restarted daemon waits for the hooks again",
            path.display()
        );
        log::warn!("{line}");
        Some(ReportLine::warning(line))
    }

    /// The prefixes hooks handed in, with their interfaces: taken before a reload, given back
    /// ([`Self::restore_handed`]) when it fails.
    pub fn handed(&self) -> (Hooked6, BTreeMap<String, String>) {
        (self.hooked.clone(), self.interfaces.clone())
    }

    /// Gives back what [`Self::handed`] took.
    pub fn restore_handed(&mut self, (hooked, interfaces): (Hooked6, BTreeMap<String, String>)) {
        self.hooked = hooked;
        self.interfaces = interfaces;
    }

    /// Gives the handed-in prefixes to the WANs renamed on the same interface, and drops those
    /// of WANs moved or removed, as the WANs change from `old` to `new` ([`super::lines`]); the
    /// file is not written ([`Self::keep`]). What to say of them.
    pub fn follow(&mut self, old: &[Line], new: &[Line]) -> Vec<ReportLine> {
        // Where the hook was for; a WAN missing (an older steer's file) is decided by name.
        let was_on = |wan: &str| self.interfaces.get(wan).cloned();
        let (carried, notes) = lines::carry_prefixes(&self.hooked, was_on, old, new);
        self.interfaces = lines::interfaces_on(&carried, new);
        self.hooked = carried;
        notes
    }

    /// Resolves every WAN's prefix from `system` for `ipv6` and `wans` (the running
    /// configuration's, or those of one about to be applied); a line per prefix that changed.
    pub fn observe(
        &mut self,
        ipv6: Option<&Ipv6>,
        wans: &[Wan],
        system: &SystemView,
    ) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let resolved = wan_sources::resolve(wans, system, &self.hooked);
        if let Some(v6) = ipv6 {
            for (name, r) in &resolved {
                if self.resolved.get(name) != Some(r)
                    && let Some(wan) = wans.iter().find(|w| &w.name == name)
                {
                    let prefix = r.prefix.map_or("none".into(), |p| p.to_string());
                    lines.push(ReportLine::info(format!(
                        "{name} ipv6: prefix {prefix} ({})",
                        wan_sources::origin(v6, wan, Some(r))
                    )));
                    lines.extend(translated_onto_its_own_link(ipv6, wans, system, name, r));
                }
            }
        }
        self.blocked = wans
            .iter()
            .filter(|w| !wan_sources::carries_ipv6(ipv6, &resolved, &w.name))
            .map(|w| w.name.clone())
            .collect();
        self.resolved = resolved;
        lines
    }

    /// Whether `wan` may carry IPv6 as far as its prefix goes.
    pub fn carries_ipv6(&self, wan: &str) -> bool {
        !self.blocked.contains(wan)
    }

    /// What the prefix of `wan` was resolved to, in words ("waiting: ...").
    pub fn describe(&self, wan: &str) -> String {
        self.resolved
            .get(wan)
            .map_or("not resolved yet".into(), |r| r.origin.clone())
    }

    /// The prefixes steer deprecates on the LAN now.
    pub fn deprecated(&self) -> &[Prefix] {
        &self.deprecated
    }

    /// The system changed (a netlink event): a DHCPv6 client may have rewritten a deprecated
    /// address.
    pub fn addresses_may_have_changed(&mut self) {
        self.addresses_changed = true;
    }

    /// Deprecates the LAN addresses inside the `dead` prefixes and restores the others steer
    /// deprecated, and those of `live` prefixes ([`deprecate::plan`]), when that may change
    /// anything: `dead` differs from last time, or addresses changed. `now`: seconds,
    /// monotonic.
    pub fn deprecate(
        &mut self,
        (dead, live): (Vec<Prefix>, Vec<Prefix>),
        lan: &[String],
        now: u64,
    ) -> Vec<ReportLine> {
        let idle = dead.is_empty() && self.saved.is_empty() && self.deprecated.is_empty();
        if idle || (dead == self.deprecated && !self.addresses_changed) {
            return Vec::new();
        }
        self.addresses_changed = false;
        // Taken as done even when reading fails: the error is reported once, not on every
        // pass of the daemon's loop; the next address event tries again.
        self.deprecated = dead.clone();
        let addrs = match deprecate::read(lan) {
            Ok(a) => a,
            Err(e) => {
                return vec![ReportLine::error(format!(
                    "reading the LAN's IPv6 addresses to deprecate a dead WAN's prefix: {e}"
                ))];
            }
        };
        let before = self.saved.clone();
        deprecate::forget_stale(&mut self.saved, &addrs);
        let changes = deprecate::plan(&addrs, (&dead, &live), &self.saved, now);
        let lines = deprecate::apply(&changes, &mut self.saved, now);
        if self.saved != before {
            // Already logged: the deprecation holds, only a restart would not know of it.
            let _ = self.keep();
        }
        lines.into_iter().map(ReportLine::info).collect()
    }

    /// Restores every address steer deprecated inside a prefix a WAN holds: deprecation is
    /// off (`mode` is not `source` any more, steer stops).
    pub fn restore_all(&mut self, lan: &[String], now: u64) -> Vec<ReportLine> {
        let every = self.resolved.values().filter_map(|r| r.prefix).collect();
        self.deprecate((Vec::new(), every), lan, now)
    }

    /// Sets (`Some`) or clears (`None`) the prefix a DHCPv6 client hook handed in for `wan`
    /// on `interface`; kept across restarts when it changed (a DHCPv6 renewal hands in the
    /// same one).
    pub fn hook(&mut self, wan: &str, interface: &str, prefix: Option<Prefix>) {
        let before = match prefix {
            Some(p) => self.hooked.insert(wan.to_owned(), p),
            None => self.hooked.remove(wan),
        };
        let line_changed = match prefix {
            Some(_) => {
                let was_on = self.interfaces.insert(wan.to_owned(), interface.to_owned());
                was_on.as_deref() != Some(interface)
            }
            None => self.interfaces.remove(wan).is_some(),
        };
        if before != prefix || line_changed {
            // Already logged; the prefix is in use all the same.
            let _ = self.keep();
        }
    }

    /// The prefixes other WANs than `wan` hold for sure: handed in by a hook. (A prefix
    /// learned by elimination is not: handing one in may be what moves it.)
    pub fn hooked_elsewhere<'a>(&'a self, wan: &'a str) -> impl Iterator<Item = (&'a str, Prefix)> {
        self.hooked
            .iter()
            .filter(move |(w, _)| w.as_str() != wan)
            .map(|(w, p)| (w.as_str(), *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Ipv6Mode,
        wan_sources::tests::{npt, wans},
    };

    /// Under masquerade a WAN without `prefix6` needs none: the log and a reload's answer said
    /// "waiting: no prefix6 configured" while `steer status` said "not needed".
    #[test]
    fn a_wan_without_prefix6_needs_none_under_masquerade_as_status_says() {
        let masquerade = Ipv6 {
            mode: Ipv6Mode::Masquerade,
            ..npt()
        };
        let lines = |ipv6: &Ipv6| -> Vec<String> {
            WanPrefixes::default()
                .observe(Some(ipv6), &wans(), &SystemView::default())
                .into_iter()
                .map(|l| l.text)
                .collect()
        };
        assert_eq!(
            lines(&masquerade),
            [
                "wan1 ipv6: prefix none (not needed)",
                "wan2 ipv6: prefix none (not needed)"
            ]
        );
        assert_eq!(
            lines(&npt()),
            [
                "wan1 ipv6: prefix none (waiting: no prefix6 configured)",
                "wan2 ipv6: prefix none (waiting: no prefix6 configured)"
            ]
        );
    }
}

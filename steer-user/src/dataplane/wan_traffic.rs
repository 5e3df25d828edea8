//! Passive liveness on the WAN devices: the two counting programs attached to each WAN
//! device's egress and ingress, the `WAN_DEVICES` map that tells them which WAN a device
//! carries, and the reader of what they counted (`WAN_TRAFFIC`).
//!
//! The controller computes the devices it wants watched ([`WatchedWan`]: the WANs whose device
//! exists now) and hands the whole list to [`Dataplane::reconcile_wan_traffic`], which attaches
//! what is missing (adopting the links an earlier daemon pinned, `links/wan-egress-<iface>` and
//! `links/wan-ingress-<iface>`), re-attaches a re-created device (a new index) and links someone
//! else detached (`bpftool link detach`), detaches what is no longer wanted and brings
//! `WAN_DEVICES` to exactly the list. Calling it again with the same
//! list changes nothing.

use std::{collections::BTreeMap, path::Path};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};
use steer_common::{
    FAMILIES, MAX_WANS, WanDevice, WanTraffic, map_names as names, program_names, wan_device_flags,
    wan_traffic_index,
};

use super::{
    Dataplane, DataplaneError,
    attach::{HeldLink, adopt, ifindex, own, pin_is_for},
    maps::{map_err, open_pin},
    pin::LinkKind,
    prog_err, program_mut,
};
use crate::model::Family;

/// Cumulative counters of one WAN and family, summed over CPUs (timestamps: max over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficSample {
    pub asked: u64,
    pub answered: u64,
    pub last_asked_ns: u64,
    pub last_answered_ns: u64,
}

/// Now on the clock of [`TrafficSample`]'s timestamps (`CLOCK_MONOTONIC`, what
/// `bpf_ktime_get_ns` reads), in nanoseconds: `monotonic_now_ns() - last_answered_ns` is how
/// long ago the last answer came.
pub fn monotonic_now_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: CLOCK_MONOTONIC always exists; `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A WAN device to watch: the WAN's slot (as in `WAN_INFO` and `STATS_WAN`), its interface and
/// the index the interface has now, and `wan_device_flags::*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedWan {
    pub slot: u32,
    pub iface: String,
    pub ifindex: u32,
    pub flags: u32,
    /// The mark of the WAN's probes and `general.mark_mask` (see `WanDevice`); 0 and 0 from
    /// [`watched`], set by the caller that knows the configuration.
    pub probe_mark: u32,
    pub mark_mask: u32,
}

/// What a reconcile did.
#[derive(Debug, Default)]
pub struct WanTrafficReport {
    /// Interfaces that got the programs now (new, adopted from pins, or re-created).
    pub attached: Vec<String>,
    /// Of those, adopted from an earlier daemon's pinned links.
    pub adopted: Vec<String>,
    /// Interfaces that lost them (no longer a WAN, or the device is gone).
    pub detached: Vec<String>,
    /// Interfaces whose links someone else detached (`bpftool link detach`): they are made
    /// anew, and are in `attached` (or `failed`) too.
    pub detached_by_others: Vec<String>,
    /// Interfaces that failed, and why; the others were still done.
    pub failed: Vec<(String, DataplaneError)>,
}

/// The maps the WAN programs use.
pub(super) struct WanMaps {
    traffic: PerCpuArray<MapData, WanTraffic>,
    devices: HashMap<MapData, u32, WanDevice>,
}

impl std::fmt::Debug for WanMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanMaps").finish_non_exhaustive()
    }
}

impl WanMaps {
    pub(super) fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Self::build(|name| ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name)))
    }

    fn build(
        mut take: impl FnMut(&'static str) -> Result<aya::maps::Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        Ok(WanMaps {
            traffic: take(names::WAN_TRAFFIC)?
                .try_into()
                .map_err(map_err(names::WAN_TRAFFIC, "open"))?,
            devices: take(names::WAN_DEVICES)?
                .try_into()
                .map_err(map_err(names::WAN_DEVICES, "open"))?,
        })
    }

    fn sample(&self, slot: u32) -> Result<[TrafficSample; 2], DataplaneError> {
        if slot >= MAX_WANS {
            return Err(DataplaneError::WanSlotOutOfRange(slot));
        }
        let mut out = [TrafficSample::default(); FAMILIES as usize];
        for family in Family::ALL {
            let index = wan_traffic_index(slot, family.index() as u32);
            let cpus = self
                .traffic
                .get(&index, 0)
                .map_err(map_err(names::WAN_TRAFFIC, "read"))?;
            out[family.index()] =
                cpus.iter()
                    .fold(TrafficSample::default(), |acc, t| TrafficSample {
                        asked: acc.asked + t.asked,
                        answered: acc.answered + t.answered,
                        last_asked_ns: acc.last_asked_ns.max(t.last_asked_ns),
                        last_answered_ns: acc.last_answered_ns.max(t.last_answered_ns),
                    });
        }
        Ok(out)
    }

    /// Zeroes both families of a slot.
    fn reset(&mut self, slot: u32) -> Result<(), DataplaneError> {
        if slot >= MAX_WANS {
            return Err(DataplaneError::WanSlotOutOfRange(slot));
        }
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| map_err(names::WAN_TRAFFIC, "count CPUs")(MapError::IoError(e)))?;
        for family in Family::ALL {
            let zero = PerCpuValues::try_from(vec![WanTraffic::default(); cpus])
                .expect("at least one CPU");
            self.traffic
                .set(wan_traffic_index(slot, family.index() as u32), zero, 0)
                .map_err(map_err(names::WAN_TRAFFIC, "reset"))?;
        }
        Ok(())
    }

    /// Brings `WAN_DEVICES` to exactly `want` (writes only what differs).
    fn sync_devices(&mut self, want: &BTreeMap<u32, WanDevice>) -> Result<(), DataplaneError> {
        let held: Vec<(u32, WanDevice)> = self.devices.iter().filter_map(Result::ok).collect();
        for (index, dev) in want {
            if !held.contains(&(*index, *dev)) {
                self.devices
                    .insert(index, dev, 0)
                    .map_err(map_err(names::WAN_DEVICES, "write"))?;
            }
        }
        for (index, _) in held.iter().filter(|(i, _)| !want.contains_key(i)) {
            self.devices
                .remove(index)
                .map_err(map_err(names::WAN_DEVICES, "remove"))?;
        }
        Ok(())
    }

    /// What `WAN_DEVICES` holds, by interface index.
    fn devices(&self) -> BTreeMap<u32, WanDevice> {
        self.devices.iter().filter_map(Result::ok).collect()
    }
}

/// The two links of one WAN device.
#[derive(Debug)]
struct WanLinks {
    /// The interface index they were made for (a re-created device has a new one).
    index: u32,
    egress: HeldLink,
    ingress: HeldLink,
}

impl WanLinks {
    /// Whether the kernel reports either link detached ([`HeldLink::detached`]).
    fn detached(&self) -> bool {
        self.egress.detached() || self.ingress.detached()
    }

    fn detach(self, iface: &str) {
        for link in [self.egress, self.ingress] {
            if let Err(e) = link.detach() {
                log::warn!("{iface}: removing a WAN traffic link: {e}");
            }
        }
    }
}

/// The WAN programs' maps and links, inside [`Dataplane`].
#[derive(Debug)]
pub(super) struct WanWatch {
    maps: WanMaps,
    links: BTreeMap<String, WanLinks>,
}

impl WanWatch {
    pub(super) fn new(maps: WanMaps) -> Self {
        WanWatch {
            maps,
            links: BTreeMap::new(),
        }
    }
}

/// The two programs and where each is attached.
const HOOKS: [(&str, TcAttachType, LinkKind); 2] = [
    (
        program_names::WAN_EGRESS,
        TcAttachType::Egress,
        LinkKind::WanEgress,
    ),
    (
        program_names::WAN_INGRESS,
        TcAttachType::Ingress,
        LinkKind::WanIngress,
    ),
];

impl Dataplane {
    /// Cumulative counters of WAN slot `slot`, indexed by `Family::index()`.
    pub fn wan_traffic(&self, slot: u32) -> Result<[TrafficSample; 2], DataplaneError> {
        self.wan.maps.sample(slot)
    }

    /// Zeroes the counters of WAN slot `slot` (a slot that starts to mean another WAN).
    pub fn reset_wan_traffic(&mut self, slot: u32) -> Result<(), DataplaneError> {
        self.ready()?;
        self.wan.maps.reset(slot)
    }

    /// What `WAN_DEVICES` holds: interface index -> (slot, flags).
    pub fn wan_devices(&self) -> BTreeMap<u32, WanDevice> {
        self.wan.maps.devices()
    }

    /// Writes one `WAN_DEVICES` entry (`None`: removes it) without attaching anything: for
    /// test fixtures that run the programs through `BPF_PROG_TEST_RUN`. The daemon writes the
    /// map through [`Dataplane::reconcile_wan_traffic`] only.
    #[doc(hidden)]
    pub fn set_wan_device(
        &mut self,
        ifindex: u32,
        dev: Option<WanDevice>,
    ) -> Result<(), DataplaneError> {
        self.ready()?;
        let mut want = self.wan.maps.devices();
        match dev {
            Some(d) => want.insert(ifindex, d),
            None => want.remove(&ifindex),
        };
        self.wan.maps.sync_devices(&want)
    }

    /// Interfaces the WAN programs are attached to, with the index they were attached for.
    pub fn wan_watched(&self) -> impl Iterator<Item = (&str, u32)> {
        self.wan.links.iter().map(|(i, l)| (i.as_str(), l.index))
    }

    /// Makes the WAN programs watch exactly the devices of `want` (see the module docs). An
    /// interface that fails is reported and the others are still done; `WAN_DEVICES` then
    /// lists only the devices whose programs are attached.
    pub fn reconcile_wan_traffic(&mut self, want: &[WatchedWan]) -> WanTrafficReport {
        let mut report = WanTrafficReport::default();
        // Nothing is written or attached for programs the verifier has not passed.
        if let Err(e) = self.ready() {
            report
                .failed
                .push((program_names::WAN_EGRESS.to_owned(), e));
            return report;
        }
        let stale: Vec<String> = self
            .wan
            .links
            .iter()
            .filter(|(iface, links)| {
                !want
                    .iter()
                    .any(|w| &w.iface == *iface && w.ifindex == links.index)
            })
            .map(|(iface, _)| iface.clone())
            .collect();
        for iface in stale {
            if let Some(links) = self.wan.links.remove(&iface) {
                links.detach(&iface);
                report.detached.push(iface);
            }
        }
        let mut devices = BTreeMap::new();
        for w in want {
            // A link someone else detached counts nothing while this process holds it: both
            // are made anew, as for a new device (the counts are in the maps, kept).
            if self.wan.links.get(&w.iface).is_some_and(WanLinks::detached)
                && let Some(links) = self.wan.links.remove(&w.iface)
            {
                links.detach(&w.iface);
                report.detached_by_others.push(w.iface.clone());
            }
            if !self.wan.links.contains_key(&w.iface) {
                match self.attach_wan(w) {
                    Ok((links, adopted)) => {
                        self.wan.links.insert(w.iface.clone(), links);
                        report.attached.push(w.iface.clone());
                        if adopted {
                            report.adopted.push(w.iface.clone());
                        }
                    }
                    Err(e) => {
                        report.failed.push((w.iface.clone(), e));
                        continue;
                    }
                }
            }
            devices.insert(
                w.ifindex,
                WanDevice {
                    slot: w.slot,
                    flags: w.flags,
                    probe_mark: w.probe_mark,
                    mark_mask: w.mark_mask,
                },
            );
        }
        if let Err(e) = self.wan.maps.sync_devices(&devices) {
            report.failed.push((names::WAN_DEVICES.to_owned(), e));
        }
        report.detached.extend(self.drop_unwanted_wan_pins(want));
        report
    }

    /// Attaches both programs to `w`'s device (or adopts the pinned links of an earlier
    /// daemon). Returns the links and whether they were adopted.
    fn attach_wan(&mut self, w: &WatchedWan) -> Result<(WanLinks, bool), DataplaneError> {
        let mut held = Vec::with_capacity(2);
        let mut adopted = true;
        for (name, direction, kind) in HOOKS {
            let (link, was_adopted) = match self.attach_wan_hook(w, name, direction, kind) {
                Ok(l) => l,
                Err(e) => {
                    // Half attached is not attached: the egress link goes again.
                    for (link, _) in held {
                        if let Err(e) = HeldLink::detach(link) {
                            log::warn!("{}: removing a WAN traffic link: {e}", w.iface);
                        }
                    }
                    return Err(e);
                }
            };
            adopted &= was_adopted;
            held.push((link, was_adopted));
        }
        let mut links = held.into_iter().map(|(l, _)| l);
        let (Some(egress), Some(ingress)) = (links.next(), links.next()) else {
            unreachable!("two hooks, two links");
        };
        Ok((
            WanLinks {
                index: w.ifindex,
                egress,
                ingress,
            },
            adopted,
        ))
    }

    fn attach_wan_hook(
        &mut self,
        w: &WatchedWan,
        name: &'static str,
        direction: TcAttachType,
        kind: LinkKind,
    ) -> Result<(HeldLink, bool), DataplaneError> {
        let iface = w.iface.as_str();
        let pin = self.pins.as_ref().map(|p| p.link(kind, iface));
        let prog = program_mut::<SchedClassifier>(self.programs()?, name)?;
        if let Some(path) = pin
            .as_deref()
            .filter(|p| p.exists() && pin_is_for(p, iface))
        {
            match adopt(prog, path, name) {
                Ok(link) => return Ok((link, true)),
                Err(e) => {
                    log::warn!(
                        "{iface}: pinned WAN traffic link {} is unusable ({e}); attaching anew",
                        path.display()
                    );
                    std::fs::remove_file(path).ok();
                }
            }
        }
        // Egress last, so a program before it that drops a packet keeps it from counting as
        // asked; ingress first, so an answer counts even when a later program drops it.
        let order = match direction {
            TcAttachType::Egress => LinkOrder::last(),
            _ => LinkOrder::first(),
        };
        let id = prog
            .attach_with_options(iface, direction, TcAttachOptions::TcxOrder(order))
            .map_err(prog_err(name, format!("attach to {iface} {direction:?}")))?;
        Ok((own(prog, id, pin, name)?, false))
    }

    /// Pinned WAN links of interfaces not wanted now (an earlier daemon's WAN that is gone
    /// from the configuration): removing the pin detaches them.
    fn drop_unwanted_wan_pins(&mut self, want: &[WatchedWan]) -> Vec<String> {
        let Some(pins) = &self.pins else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        for (_, _, kind) in HOOKS {
            let Ok(ifaces) = pins.linked_interfaces(kind) else {
                continue;
            };
            for iface in ifaces {
                if !want.iter().any(|w| w.iface == iface)
                    && pins.clear(&pins.link(kind, &iface)).is_ok()
                {
                    gone.push(iface);
                }
            }
        }
        gone.sort();
        gone.dedup();
        gone
    }
}

/// `wan_device_flags` of interface `iface` from its hardware type (`ARPHRD_*`, what
/// `/sys/class/net/IFACE/type` shows): Ethernet (1) has an Ethernet header, everything else a
/// WAN runs on (ppp, wireguard and tun, ipip, sit, gre) starts with the IP header. Asked of the
/// kernel through a socket of this process's network namespace: `/sys/class/net` shows the
/// namespace sysfs was mounted in, which need not be this one.
pub fn device_flags(iface: &str) -> Result<u32, DataplaneError> {
    const ARPHRD_ETHER: u16 = 1;
    let no_such = || DataplaneError::NoInterface(iface.to_owned());
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(no_such());
    }
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(no_such());
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the kernel writes the hardware
    // address into it.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR as _, &mut req) };
    // SAFETY: `fd` is ours and used no more.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(no_such());
    }
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let kind = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok(if kind == ARPHRD_ETHER {
        0
    } else {
        wan_device_flags::L3
    })
}

/// The device of `iface` to watch for WAN slot `slot`, when it exists.
pub fn watched(slot: u32, iface: &str) -> Result<WatchedWan, DataplaneError> {
    Ok(WatchedWan {
        slot,
        iface: iface.to_owned(),
        ifindex: ifindex(iface)?,
        flags: device_flags(iface)?,
        probe_mark: 0,
        mark_mask: 0,
    })
}

/// Cumulative counters of WAN slot `slot` from the maps pinned under `root` (`steer dump`,
/// which takes no lock).
pub fn read_pinned(root: &Path, slot: u32) -> Result<[TrafficSample; 2], DataplaneError> {
    WanMaps::build(|name| open_pin(root, name))?.sample(slot)
}

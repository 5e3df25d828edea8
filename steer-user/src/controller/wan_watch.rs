//! The WAN traffic counters (passive liveness) on every WAN device: the devices wanted are
//! computed from the configuration, the WAN slots and the interfaces that exist now, then the
//! dataplane reconciles its attachments and `WAN_DEVICES` to exactly that list. Called after
//! every apply and reload, on every link event of a WAN's interface (a PPPoE or DHCP device
//! that comes, goes or is re-created) and by the periodic check, so a WAN's device gets the
//! programs whenever it exists and loses them with the WAN.

use super::Controller;
use crate::{
    config::Wan,
    dataplane::{
        DataplaneError,
        wan_traffic::{self, WanTrafficReport, WatchedWan},
    },
    model::NameIds,
    status::ReportLine,
};

/// The devices to watch: each WAN that has a slot and whose interface exists now (`lookup`
/// reads the system: its index and type, an error when there is no such device), with the
/// mark its probes carry (`mark_mask`: `general.mark_mask`).
pub fn desired(
    wans: &[Wan],
    slots: &NameIds,
    mark_mask: u32,
    lookup: impl Fn(u32, &str) -> Result<WatchedWan, DataplaneError>,
) -> Vec<WatchedWan> {
    wans.iter()
        .filter_map(|w| {
            let watched = lookup(*slots.get(&w.name)?, &w.interface).ok()?;
            Some(WatchedWan {
                probe_mark: w.mark & mark_mask,
                mark_mask,
                ..watched
            })
        })
        .collect()
}

/// Slots of `after` whose WAN did not hold them in `before` (a new WAN, or a slot that an
/// earlier WAN, removed since, may have counted into).
fn reused_slots(before: &NameIds, after: &NameIds) -> Vec<u32> {
    after
        .iter()
        .filter(|(name, slot)| before.get(*name) != Some(*slot))
        .map(|(_, slot)| *slot)
        .collect()
}

/// Report lines of a reconcile. A failure is a warning: the WAN still works, it is only not
/// watched passively (probes still are). `quiet` (the periodic retry) logs failures at debug
/// level only: a kernel that cannot attach them would otherwise repeat the warning every time.
/// Links someone else detached are warned of in any case, once: the next retry finds none.
fn lines(report: WanTrafficReport, quiet: bool) -> Vec<ReportLine> {
    let mut out = Vec::new();
    let by_others = |iface: &String| report.detached_by_others.contains(iface);
    for iface in &report.attached {
        if by_others(iface) {
            out.push(ReportLine::warning(format!(
                "{iface}: a WAN traffic counter link was detached by someone else (e.g. \
                 `bpftool link detach`): attached again (egress and ingress); its traffic was \
                 not counted meanwhile"
            )));
            continue;
        }
        let how = if report.adopted.contains(iface) {
            "adopted from the pinned links"
        } else {
            "attached"
        };
        out.push(ReportLine::info(format!(
            "{iface}: WAN traffic counters {how} (egress and ingress)"
        )));
    }
    for iface in &report.detached {
        out.push(ReportLine::info(format!(
            "{iface}: WAN traffic counters detached (no longer a WAN, or the device is gone)"
        )));
    }
    for (iface, e) in &report.failed {
        if by_others(iface) {
            out.push(ReportLine::warning(format!(
                "{iface}: a WAN traffic counter link was detached by someone else (e.g. \
                 `bpftool link detach`), and attaching them again failed ({e}); this WAN is \
                 watched by its probes only, and the periodic check retries"
            )));
            continue;
        }
        let text = format!(
            "{iface}: WAN traffic counters could not be attached ({e}); this WAN is watched by \
             its probes only"
        );
        if quiet {
            log::debug!("{text}");
        } else {
            out.push(ReportLine::warning(text));
        }
    }
    out
}

impl Controller {
    /// Brings the WAN traffic counters to the WANs and devices of now.
    pub(super) fn watch_wans(&mut self) -> Vec<ReportLine> {
        self.reconcile_watch(false)
    }

    fn reconcile_watch(&mut self, quiet: bool) -> Vec<ReportLine> {
        let want = desired(
            &self.config.wans,
            &self.wan_slots,
            self.config.general.mark_mask,
            wan_traffic::watched,
        );
        lines(self.dp.reconcile_wan_traffic(&want), quiet)
    }

    /// Zeroes the traffic counters of every WAN slot that its WAN did not hold in `before` (the
    /// slots before an apply): a new WAN does not inherit the counts of one that had its slot.
    pub(super) fn reset_reused_slots(&mut self, before: &NameIds) -> Vec<ReportLine> {
        let mut out = Vec::new();
        for slot in reused_slots(before, &self.wan_slots) {
            if let Err(e) = self.dp.reset_wan_traffic(slot) {
                out.push(ReportLine::warning(format!(
                    "zeroing the WAN traffic counters of slot {slot} failed: {e}"
                )));
            }
        }
        out
    }

    /// A link event for `iface` (it appeared, changed or went): when it is a WAN's, the
    /// counters follow its device.
    pub fn wan_link(&mut self, iface: &str) -> Vec<ReportLine> {
        if !self.config.wans.iter().any(|w| w.interface == iface) {
            return Vec::new();
        }
        self.watch_wans()
    }

    /// The periodic check: a device event that was missed, an attach that failed before.
    pub fn wan_watch_check(&mut self) -> Vec<ReportLine> {
        self.reconcile_watch(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::testing::wan;

    #[test]
    fn a_new_wan_or_a_slot_given_to_another_starts_from_zero_and_a_kept_one_does_not() {
        let ids = |pairs: &[(&str, u32)]| -> NameIds {
            pairs.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
        };
        let before = ids(&[("a", 0), ("b", 1)]);
        let after = ids(&[("a", 0), ("c", 1), ("d", 2)]);
        assert_eq!(reused_slots(&before, &after), [1, 2]);
        assert!(reused_slots(&after, &after).is_empty());
    }

    #[test]
    fn only_wans_with_a_slot_and_an_existing_device_are_watched() {
        let wans = [wan("a", "eth1"), wan("b", "ppp0"), wan("c", "eth2")];
        let slots: NameIds = [("a".to_owned(), 0), ("b".to_owned(), 3)].into();
        let lookup = |slot, iface: &str| match iface {
            "eth1" => Ok(WatchedWan {
                slot,
                iface: iface.into(),
                ifindex: 7,
                flags: 0,
                probe_mark: 0,
                mark_mask: 0,
            }),
            "eth2" => Ok(WatchedWan {
                slot,
                iface: iface.into(),
                ifindex: 9,
                flags: 0,
                probe_mark: 0,
                mark_mask: 0,
            }),
            _ => Err(DataplaneError::NoInterface(iface.into())),
        };
        let got = desired(&wans, &slots, 0xff00, lookup);
        // b: no ppp0 yet; c: no slot.
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].slot, got[0].ifindex), (0, 7));
        assert_eq!((got[0].probe_mark, got[0].mark_mask), (0x100, 0xff00));
    }
}

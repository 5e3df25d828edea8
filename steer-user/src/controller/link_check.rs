//! Links someone else detached: the classifier's and XDP pre-classifier's on the LAN
//! interfaces, the WAN traffic counters' on the WAN devices.
//!
//! The daemon holds its links (and pins them), but holding a link does not keep it attached:
//! `bpftool link detach` (`BPF_LINK_DETACH`) detaches it in place, and the kernel then reports
//! it attached to interface index 0. Nothing else tells: no netlink event, no error. So the
//! periodic check and every reload ask the kernel about each link and make a detached one
//! anew, with a warning; `steer status` says what the kernel holds meanwhile.

use super::Controller;
use crate::{
    dataplane::{AttachReport, DataplaneError, LanHook},
    status::ReportLine,
};

/// What the log and a reload say of what [`crate::dataplane::Dataplane::attach`] found
/// detached on `iface` and made anew (or failed to).
pub(super) fn reattached_lines(iface: &str, r: &AttachReport) -> Vec<ReportLine> {
    let mut out = Vec::new();
    if r.tc_was_detached {
        out.push(ReportLine::warning(format!(
            "{iface}: its classifier's link was detached by someone else (e.g. `bpftool link \
             detach`): attached again; traffic entering {iface} was not steered meanwhile"
        )));
    }
    if r.xdp_was_detached {
        out.push(ReportLine::warning(match (&r.xdp, &r.xdp_error) {
            (Some(mode), _) => format!(
                "{iface}: its XDP pre-classifier's link was detached by someone else (e.g. \
                 `bpftool link detach`): attached again ({mode})"
            ),
            (None, e) => format!(
                "{iface}: its XDP pre-classifier's link was detached by someone else (e.g. \
                 `bpftool link detach`), and attaching it again failed ({}); TC classifies \
                 alone",
                e.as_deref().unwrap_or("no reason given")
            ),
        }));
    }
    out
}

/// What `steer status` says of a LAN interface whose links in `hooks` the kernel reports
/// detached, if any did.
pub(super) fn detached_problem(hooks: &[LanHook]) -> Option<String> {
    const UNTIL: &str = "the daemon's periodic check attaches it again within seconds, \
                         `steer reload` at once";
    if hooks.contains(&LanHook::Tc) {
        return Some(format!(
            "not classified: its classifier's link was detached by someone else (e.g. \
             `bpftool link detach`); {UNTIL}"
        ));
    }
    hooks.iter().find_map(|h| match h {
        LanHook::Xdp(mode) => Some(format!(
            "TC classifies alone: its XDP pre-classifier's link ({mode}) was detached by \
             someone else (e.g. `bpftool link detach`); {UNTIL}"
        )),
        LanHook::Tc => None,
    })
}

impl Controller {
    /// The periodic check of the links this daemon holds: those someone else detached are
    /// attached again, with a warning; one whose attaching failed is tried again at every
    /// check (said once, and when it worked). A LAN interface it holds no links of otherwise
    /// (gone, or its first attach failed) is left to its link events.
    pub fn check_links(&mut self) -> Vec<ReportLine> {
        let held: Vec<String> = self
            .config
            .general
            .lan
            .iter()
            .filter(|iface| self.dp.attached_index(iface).is_some())
            .cloned()
            .collect();
        let mut out = Vec::new();
        for iface in held {
            match self.dp.reattach_detached(&iface) {
                Ok(r) => out.extend(reattached_lines(&iface, &r)),
                // Gone since: its link event says so and attaches it when it is back.
                Err(DataplaneError::NoInterface(_)) => {}
                Err(e) => {
                    self.reattach_failed.insert(iface.clone());
                    out.push(ReportLine::error(format!(
                        "{iface}: attaching the classifier again failed: {e}; traffic entering \
                         {iface} is not classified until that is fixed (tried again at every \
                         periodic check, at `steer reload` and at any change of the interface)"
                    )));
                }
            }
        }
        out.extend(self.retry_failed_reattach());
        out.extend(self.wan_watch_check());
        out
    }

    /// Tries again to attach the classifier where attaching it again failed; quiet while it
    /// still fails (said when it first did).
    fn retry_failed_reattach(&mut self) -> Vec<ReportLine> {
        let failed = std::mem::take(&mut self.reattach_failed);
        let mut out = Vec::new();
        for iface in failed {
            let configured = self.config.general.lan.contains(&iface);
            if !configured || self.dp.attached_index(&iface).is_some() {
                continue;
            }
            match self.dp.attach(&iface, self.config.general.xdp) {
                Ok(_) => out.push(ReportLine::info(format!(
                    "{iface}: the classifier is attached again; traffic entering {iface} is \
                     classified"
                ))),
                Err(DataplaneError::NoInterface(_)) => {}
                Err(e) => {
                    log::debug!("{iface}: attaching the classifier again failed again: {e}");
                    self.reattach_failed.insert(iface);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::XdpAttachMode;

    #[test]
    fn a_detached_link_is_named_with_its_interface_and_what_happened() {
        let r = AttachReport {
            tc_attached: true,
            tc_was_detached: true,
            ..AttachReport::default()
        };
        let lines = reattached_lines("lan0", &r);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .text
                .starts_with("lan0: its classifier's link was detached by someone else")
                && lines[0].text.contains("attached again"),
            "{}",
            lines[0].text
        );
        let xdp_failed = AttachReport {
            xdp_was_detached: true,
            xdp_error: Some("no XDP here".into()),
            ..AttachReport::default()
        };
        let lines = reattached_lines("lan0", &xdp_failed);
        assert!(lines[0].text.contains("no XDP here"), "{}", lines[0].text);
        assert!(reattached_lines("lan0", &AttachReport::default()).is_empty());
    }

    #[test]
    fn status_says_not_classified_for_a_detached_classifier_and_tc_alone_for_xdp() {
        assert_eq!(detached_problem(&[]), None);
        let tc = detached_problem(&[LanHook::Xdp(XdpAttachMode::Native), LanHook::Tc]).unwrap();
        assert!(tc.starts_with("not classified"), "{tc}");
        let xdp = detached_problem(&[LanHook::Xdp(XdpAttachMode::Generic)]).unwrap();
        assert!(xdp.starts_with("TC classifies alone"), "{xdp}");
        assert!(xdp.contains("generic"), "{xdp}");
    }
}

//! Attaching the classifier to LAN interfaces: TC ingress always, XDP when asked.
//!
//! With pinned state, a link an earlier daemon pinned for an interface is adopted: its program
//! is swapped for this one in one atomic link update, so the interface is never without a
//! classifier and never has two. New links are pinned (`links/tc-<iface>`,
//! `links/xdp-native-<iface>` or `links/xdp-generic-<iface>`: the pin name keeps the XDP mode).
//!
//! Holding a link does not keep it attached: `bpftool link detach` detaches it in place, and
//! the kernel then reports it attached to interface index 0. Each held link keeps its kernel id
//! so that [`Dataplane::attach`] (every reload) and [`Dataplane::reattach_detached`] (the
//! periodic check) can ask, and make anew what was detached.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    xdp::{XdpLink, XdpLinkId},
};
use steer_common::program_names;

use super::{
    Dataplane, DataplaneError, XdpAttachMode,
    pin::{LinkKind, PinError},
    prog_err, program_mut,
};

/// A link this process holds: plain (detached when dropped) or pinned (stays attached after the
/// process exits, until `steer stop` removes the pin), with the kernel's id of the link.
#[derive(Debug)]
pub(super) struct HeldLink {
    link: Held,
    /// What asks the kernel whether the link is still attached ([`HeldLink::detached`]): the
    /// link object lives, with this id, as long as this process holds it.
    id: u32,
}

#[derive(Debug)]
enum Held {
    Plain(FdLink),
    Pinned(PinnedLink, PathBuf),
}

impl HeldLink {
    /// Detaches: unpin (if pinned) and close the last descriptor.
    pub(super) fn detach(self) -> Result<(), DataplaneError> {
        match self.link {
            Held::Plain(link) => drop(link),
            Held::Pinned(link, path) => {
                drop(
                    link.unpin()
                        .map_err(|source| PinError::Io { path, source })?,
                );
            }
        }
        Ok(())
    }

    /// Whether the kernel reports the link attached to no device: someone else detached it
    /// (`bpftool link detach`, `BPF_LINK_DETACH`) while this process holds it, or its device
    /// was deleted. Holding it keeps nothing attached then: it has to be made anew. A link
    /// the kernel cannot be asked about counts as attached (nothing is torn down on a guess).
    pub(super) fn detached(&self) -> bool {
        match super::sys::link_ifindex(self.id) {
            Ok(index) => index == 0,
            Err(e) => {
                log::debug!("asking the kernel about link {}: {e}", self.id);
                false
            }
        }
    }

    /// Removes a link the kernel reports detached (its pin too), so the interface gets a new
    /// one; what fails is said, and the new link is made all the same.
    fn drop_dead(self, iface: &str) {
        if let Err(e) = self.detach() {
            log::warn!("{iface}: removing a detached link: {e}");
        }
    }
}

/// The links of one LAN interface.
#[derive(Debug)]
pub(super) struct Attachment {
    /// The interface index the links were made for: a deleted and recreated interface gets a
    /// new one, and the old links are dead.
    index: u32,
    tc: HeldLink,
    xdp: Option<(HeldLink, XdpAttachMode)>,
}

/// What attaching to one interface did.
#[derive(Debug, Default)]
pub struct AttachReport {
    /// The classifier's link was found detached by someone else and was made anew (then
    /// `tc_attached` is true too).
    pub tc_was_detached: bool,
    /// The XDP pre-classifier's link was found detached by someone else; `xdp` says whether it
    /// is attached again, `xdp_error` why not.
    pub xdp_was_detached: bool,
    /// The TC classifier was attached now (adopted or new); false when it already was.
    pub tc_attached: bool,
    /// It was adopted from a pinned link.
    pub adopted: bool,
    /// XDP mode, when XDP is attached.
    pub xdp: Option<XdpAttachMode>,
    /// The XDP pre-classifier was attached now (new or adopted); false when it already was.
    pub xdp_attached: bool,
    /// The XDP pre-classifier was detached now, XDP being off.
    pub xdp_detached: bool,
    /// XDP was asked for and failed: TC classifies alone.
    pub xdp_error: Option<String>,
}

/// One of the two hooks of a LAN interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanHook {
    /// The classifier on TC ingress.
    Tc,
    /// The XDP pre-classifier, attached in this mode.
    Xdp(XdpAttachMode),
}

/// TC and XDP programs, so that adopting a pinned link and making a new one are written once.
pub(super) trait Hook {
    type Link: TryFrom<FdLink, Error = LinkError> + TryInto<FdLink, Error = LinkError>;
    type LinkId;
    fn swap_into(&mut self, old: Self::Link) -> Result<Self::LinkId, ProgramError>;
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError>;
}

impl Hook for SchedClassifier {
    type Link = SchedClassifierLink;
    type LinkId = SchedClassifierLinkId;
    fn swap_into(&mut self, old: Self::Link) -> Result<Self::LinkId, ProgramError> {
        self.attach_to_link(old)
    }
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

impl Hook for Xdp {
    type Link = XdpLink;
    type LinkId = XdpLinkId;
    fn swap_into(&mut self, old: Self::Link) -> Result<Self::LinkId, ProgramError> {
        self.attach_to_link(old)
    }
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

/// Whether the link pinned at `path` (named after `iface`) is attached to `iface`'s device. A
/// device renamed while no daemon ran keeps its links, and a new device may have taken the
/// name: that pin is removed (which detaches the old device, held by nothing else), so the
/// interface gets a link of its own instead of none. So is the pin of a link someone detached.
pub(super) fn pin_is_for(path: &Path, iface: &str) -> bool {
    let Ok(index) = ifindex(iface) else {
        return true;
    };
    match super::sys::pinned_link_ifindex(path) {
        Ok(pinned) if pinned == index => true,
        Ok(pinned) => {
            let sibling = (pinned == 0)
                .then(|| attached_sibling(path, iface, index))
                .flatten();
            log::warn!(
                "{}",
                moved_link_note(path, iface, index, pinned, ifname(pinned), sibling)
            );
            std::fs::remove_file(path).ok();
            false
        }
        // Adopting says what is wrong with it.
        Err(_) => true,
    }
}

/// Another link pinned beside `path` for `iface` that is still attached to `iface`'s device
/// (index `index`): that device is the one the links were made for, not a new one of the same
/// name. The kernel reports index 0 both for a link someone detached and for one whose device
/// was deleted, and records nothing else that tells them apart.
fn attached_sibling(path: &Path, iface: &str, index: u32) -> Option<String> {
    let dir = path.parent()?;
    LinkKind::ALL
        .into_iter()
        .map(|kind| dir.join(kind.pin_name(iface)))
        .filter(|p| p != path)
        .find(|p| super::sys::pinned_link_ifindex(p).is_ok_and(|i| i == index))
        .map(|p| p.display().to_string())
}

/// Why the link pinned at `path` for `iface` (now index `index`) is not `iface`'s: it is
/// attached to no device (`pinned` 0: someone detached it, or its device was deleted and
/// `iface` is a new one of the same name; `sibling`, another of the interface's links still
/// attached to it, says it was detached), or the device it is attached to (index `pinned`,
/// named `now` when it still exists) was renamed.
fn moved_link_note(
    path: &Path,
    iface: &str,
    index: u32,
    pinned: u32,
    now: Option<String>,
    sibling: Option<String>,
) -> String {
    let path = path.display();
    match (pinned, now, sibling) {
        (0, _, Some(sibling)) => format!(
            "{iface}: the pinned link {path} is attached to no device (the kernel reports \
             interface index 0): it was detached by someone else (e.g. `bpftool link detach`) \
             while no daemon ran; {iface} (index {index}) is the device it was made for \
             ({sibling} is still attached to it); removing the pin and attaching anew"
        ),
        (0, _, None) => format!(
            "{iface}: the pinned link {path} is attached to no device (the kernel reports \
             interface index 0): it was detached by someone else (e.g. `bpftool link detach`), \
             or the device it was attached to was deleted while no daemon ran and {iface} \
             (index {index}) is a new device of the same name; removing the pin and attaching \
             anew"
        ),
        (_, None, _) => format!(
            "{iface}: the pinned link {path} is attached to interface index {pinned}, not to \
             {iface} (index {index}): the device it was attached to is gone; removing the pin \
             and attaching anew"
        ),
        (_, Some(now), _) => format!(
            "{iface}: the pinned link {path} is attached to interface index {pinned}, not to \
             {iface} (index {index}): that device was renamed to {now}; detaching it and \
             attaching anew"
        ),
    }
}

/// The name of the device with `index` in this namespace, if there is one.
fn ifname(index: u32) -> Option<String> {
    if index == 0 {
        return None;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires; it writes a
    // NUL-terminated name there or returns NULL.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: if_indextoname succeeded, so `buf` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Swaps `prog` (program `name`) into the link pinned at `path`.
pub(super) fn adopt<P: Hook>(
    prog: &mut P,
    path: &Path,
    name: &'static str,
) -> Result<HeldLink, DataplaneError> {
    let pinned = PinnedLink::from_pin(path).map_err(link_err)?;
    let old = P::Link::try_from(FdLink::from(pinned)).map_err(link_err)?;
    let id = prog.swap_into(old).map_err(prog_err(
        name,
        format!("swap program in {}", path.display()),
    ))?;
    let link: FdLink = prog
        .take(id)
        .map_err(prog_err(name, "take link"))?
        .try_into()
        .map_err(link_err)?;
    let id = link.info().map_err(link_err)?.id();
    // The link is the kernel object the pin points at; hold it through the pin so it can be
    // unpinned later.
    drop(link);
    Ok(HeldLink {
        link: Held::Pinned(
            PinnedLink::from_pin(path).map_err(link_err)?,
            path.to_owned(),
        ),
        id,
    })
}

/// Takes a freshly attached link out of `prog` (program `name`, so dropping the program does
/// not detach it) and pins it when `pin` says where.
pub(super) fn own<P: Hook>(
    prog: &mut P,
    id: P::LinkId,
    pin: Option<PathBuf>,
    name: &'static str,
) -> Result<HeldLink, DataplaneError> {
    let link: FdLink = prog
        .take(id)
        .map_err(prog_err(name, "take link"))?
        .try_into()
        .map_err(link_err)?;
    let id = link.info().map_err(link_err)?.id();
    let link = match pin {
        None => Held::Plain(link),
        Some(path) => {
            let pinned = link.pin(&path).map_err(|e| PinError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            Held::Pinned(pinned, path)
        }
    };
    Ok(HeldLink { link, id })
}

fn link_err(e: LinkError) -> DataplaneError {
    DataplaneError::Link(e.to_string())
}

fn xdp_kind(mode: XdpAttachMode) -> LinkKind {
    match mode {
        XdpAttachMode::Native => LinkKind::XdpNative,
        XdpAttachMode::Generic => LinkKind::XdpGeneric,
    }
}

/// The kernel's index of interface `iface`; [`DataplaneError::NoInterface`] when there is no such
/// interface (or the name cannot be one).
pub fn ifindex(iface: &str) -> Result<u32, DataplaneError> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| DataplaneError::NoInterface(iface.to_owned()))?;
    // SAFETY: `name` is a NUL-terminated string; if_nametoindex only reads it.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(DataplaneError::NoInterface(iface.to_owned())),
        index => Ok(index),
    }
}

impl Dataplane {
    /// Attaches the classifier to the ingress of `iface` (TC first in its tcx chain, so every
    /// later program sees the mark) and, when `with_xdp`, the XDP pre-classifier (native where
    /// the driver has it, generic otherwise). What is already attached to this same interface
    /// stays as it is; links of an interface that was deleted and recreated are replaced, and
    /// so are links someone else detached (the report says which). XDP failing leaves TC
    /// classifying alone (reported, not an error).
    pub fn attach(&mut self, iface: &str, with_xdp: bool) -> Result<AttachReport, DataplaneError> {
        let index = ifindex(iface)?;
        let mut report = AttachReport::default();
        if self.attached.get(iface).is_some_and(|a| a.index != index) {
            log::warn!("{iface} was recreated: its old links died with it; attaching anew");
            self.forget(iface);
        }
        let mut att = match self.attached.remove(iface) {
            Some(mut att) => {
                // Held by this process, a detached link stays a kernel object attached to
                // nothing: the interface is not classified until a new one is made.
                if att.xdp.as_ref().is_some_and(|(link, _)| link.detached()) {
                    if let Some((link, _)) = att.xdp.take() {
                        link.drop_dead(iface);
                    }
                    report.xdp_was_detached = true;
                }
                if att.tc.detached() {
                    let Attachment { tc, xdp, .. } = att;
                    tc.drop_dead(iface);
                    // Failing, the interface is not attached (as status says) and the XDP link
                    // goes with the attachment (a pinned one stays, for the next attach).
                    let (tc, _) = self.attach_tc(iface)?;
                    report.tc_attached = true;
                    report.tc_was_detached = true;
                    att = Attachment { index, tc, xdp };
                }
                att
            }
            None => {
                let (tc, adopted) = self.attach_tc(iface)?;
                report.tc_attached = true;
                report.adopted = adopted;
                Attachment {
                    index,
                    tc,
                    xdp: None,
                }
            }
        };
        match (with_xdp, att.xdp.take()) {
            (true, Some(xdp)) => att.xdp = Some(xdp),
            (true, None) => match self.attach_xdp(iface) {
                Ok(xdp) => {
                    att.xdp = Some(xdp);
                    report.xdp_attached = true;
                }
                Err(e) => report.xdp_error = Some(e.to_string()),
            },
            (false, Some((link, _))) => {
                link.detach()?;
                report.xdp_detached = true;
            }
            (false, None) => self.drop_pinned_xdp(iface)?,
        }
        report.xdp = att.xdp.as_ref().map(|(_, m)| *m);
        self.attached.insert(iface.to_owned(), att);
        Ok(report)
    }

    /// Attaches again what someone else detached from `iface` (`bpftool link detach`), keeping
    /// everything else as it is: the periodic check. An interface this process holds no links
    /// of is left alone (its link events attach it).
    pub fn reattach_detached(&mut self, iface: &str) -> Result<AttachReport, DataplaneError> {
        let Some(att) = self.attached.get(iface) else {
            return Ok(AttachReport::default());
        };
        // XDP is attached again only where it was (an XDP that failed is not retried here).
        let with_xdp = att.xdp.is_some();
        self.attach(iface, with_xdp)
    }

    /// The links this process holds for `iface` that the kernel reports detached (someone
    /// else detached them, and nothing attached them again yet).
    pub fn detached_hooks(&self, iface: &str) -> Vec<LanHook> {
        let Some(att) = self.attached.get(iface) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if att.tc.detached() {
            out.push(LanHook::Tc);
        }
        if let Some((link, mode)) = &att.xdp
            && link.detached()
        {
            out.push(LanHook::Xdp(*mode));
        }
        out
    }

    /// The ids of the other steer classifiers on `iface`'s ingress: programs named like this
    /// one that are not this dataplane's. A daemon started with another `pin_dir` (or in a
    /// mount namespace of its own) left them attached; they stamp their own marks on every
    /// packet, over a failover of this daemon's.
    pub fn foreign_classifiers(&self, iface: &str) -> Vec<u32> {
        // This daemon's program, and the one its pinned link runs until it is swapped in.
        let loaded = self.tc().info().ok().map(|i| i.id());
        let pinned = self
            .pins
            .as_ref()
            .and_then(|p| super::sys::pinned_link_program(&p.link(LinkKind::Tc, iface)).ok());
        let ours = |id: u32| Some(id) == loaded || Some(id) == pinned;
        let Ok((_, programs)) = SchedClassifier::query_tcx(iface, TcAttachType::Ingress) else {
            return Vec::new();
        };
        programs
            .iter()
            .filter(|p| p.name_as_str() == Some(program_names::TC) && !ours(p.id()))
            .map(|p| p.id())
            .collect()
    }

    /// Drops the links of an interface that is gone (they are dead with it), and their pins.
    pub fn forget(&mut self, iface: &str) {
        if let Some(att) = self.attached.remove(iface) {
            for link in [Some(att.tc), att.xdp.map(|(l, _)| l)]
                .into_iter()
                .flatten()
            {
                if let Err(e) = link.detach() {
                    log::warn!("{iface}: removing a dead link: {e}");
                }
            }
        }
    }

    /// Returns the link and whether it was adopted.
    fn attach_tc(&mut self, iface: &str) -> Result<(HeldLink, bool), DataplaneError> {
        let pin = self.pins.as_ref().map(|p| p.link(LinkKind::Tc, iface));
        let tc = program_mut::<SchedClassifier>(self.programs()?, program_names::TC)?;
        if let Some(path) = pin
            .as_deref()
            .filter(|p| p.exists() && pin_is_for(p, iface))
        {
            match adopt(tc, path, program_names::TC) {
                Ok(link) => {
                    log::info!("{iface}: adopted the pinned TC link, classifier replaced in place");
                    return Ok((link, true));
                }
                Err(e) => {
                    log::warn!(
                        "{iface}: pinned TC link {} is unusable ({e}); attaching anew",
                        path.display()
                    );
                    std::fs::remove_file(path).ok();
                }
            }
        }
        let id = tc
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(prog_err(
                program_names::TC,
                format!("attach to {iface} ingress"),
            ))?;
        Ok((own(tc, id, pin, program_names::TC)?, false))
    }

    fn attach_xdp(&mut self, iface: &str) -> Result<(HeldLink, XdpAttachMode), DataplaneError> {
        let pins: Vec<(XdpAttachMode, Option<PathBuf>)> =
            [XdpAttachMode::Native, XdpAttachMode::Generic]
                .into_iter()
                .map(|m| (m, self.pins.as_ref().map(|p| p.link(xdp_kind(m), iface))))
                .collect();
        let xdp = program_mut::<Xdp>(self.programs()?, program_names::XDP)?;
        for (mode, pin) in &pins {
            let Some(path) = pin
                .as_deref()
                .filter(|p| p.exists() && pin_is_for(p, iface))
            else {
                continue;
            };
            match adopt(xdp, path, program_names::XDP) {
                Ok(link) => {
                    log::info!("{iface}: adopted the pinned XDP link ({mode})");
                    return Ok((link, *mode));
                }
                Err(e) => {
                    log::warn!(
                        "{iface}: pinned XDP link {} is unusable ({e}); attaching anew",
                        path.display()
                    );
                    std::fs::remove_file(path).ok();
                }
            }
        }
        let (id, mode) = match xdp.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, XdpAttachMode::Native),
            Err(native) => {
                let id = xdp
                    .attach(iface, XdpMode::Skb)
                    .map_err(prog_err(program_names::XDP, format!("attach to {iface}")))?;
                // The kernel's reason is the error's source (a veth refuses native XDP while
                // its peer's MTU is above what XDP takes, a driver may lack it).
                log::info!(
                    "{iface}: no native XDP ({}); using generic XDP",
                    crate::shown::error_text(&native)
                );
                (id, XdpAttachMode::Generic)
            }
        };
        let pin = pins
            .into_iter()
            .find(|(m, _)| *m == mode)
            .and_then(|(_, p)| p);
        Ok((own(xdp, id, pin, program_names::XDP)?, mode))
    }

    /// Removes pinned XDP links of `iface` when XDP is no longer wanted there.
    fn drop_pinned_xdp(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        for kind in [LinkKind::XdpNative, LinkKind::XdpGeneric] {
            let path = pins.link(kind, iface);
            if path.exists() {
                pins.clear(&path)?;
                log::info!("{iface}: removed the pinned XDP link (xdp is off)");
            }
        }
        Ok(())
    }

    /// Detaches both programs from `iface` (and removes their pins).
    pub fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let att = self
            .attached
            .remove(iface)
            .ok_or_else(|| DataplaneError::NotAttached(iface.to_owned()))?;
        if let Some((link, _)) = att.xdp {
            link.detach()?;
        }
        att.tc.detach()
    }

    /// Pinned links of interfaces this process has not attached (left by an earlier daemon
    /// for interfaces no longer configured): detach them.
    pub fn detach_unconfigured(&mut self) -> Result<Vec<String>, DataplaneError> {
        let Some(pins) = &self.pins else {
            return Ok(Vec::new());
        };
        let mut gone = Vec::new();
        for kind in [LinkKind::Tc, LinkKind::XdpNative, LinkKind::XdpGeneric] {
            for iface in pins.linked_interfaces(kind)? {
                if !self.attached.contains_key(&iface) {
                    pins.clear(&pins.link(kind, &iface))?;
                    gone.push(iface);
                }
            }
        }
        gone.sort();
        gone.dedup();
        Ok(gone)
    }

    /// Interfaces the programs are attached to, with the XDP mode where XDP is attached.
    pub fn attached(&self) -> impl Iterator<Item = (&str, Option<XdpAttachMode>)> {
        self.attached
            .iter()
            .map(|(i, a)| (i.as_str(), a.xdp.as_ref().map(|(_, m)| *m)))
    }

    /// The interface index `iface` had when the classifier was attached to it.
    pub fn attached_index(&self, iface: &str) -> Option<u32> {
        self.attached.get(iface).map(|a| a.index)
    }
}

#[cfg(test)]
mod moved_link_tests {
    use super::*;

    #[test]
    fn a_link_attached_to_no_device_names_both_causes_unless_a_sibling_tells() {
        let path = Path::new("/sys/fs/bpf/steer/links/tc-lan0");
        let zero = moved_link_note(path, "lan0", 126, 0, None, None);
        assert!(!zero.contains("renamed"), "{zero}");
        assert!(zero.contains("index 0"), "{zero}");
        assert!(zero.contains("detached by someone else"), "{zero}");
        assert!(
            zero.contains("or the device it was attached to was deleted"),
            "{zero}"
        );
        let sibling = "/sys/fs/bpf/steer/links/xdp-native-lan0".to_owned();
        let detached = moved_link_note(path, "lan0", 126, 0, None, Some(sibling.clone()));
        assert!(detached.contains("detached by someone else"), "{detached}");
        assert!(!detached.contains("deleted"), "{detached}");
        assert!(detached.contains(&sibling), "{detached}");
        let renamed = moved_link_note(path, "lan0", 126, 7, Some("lan-old".into()), None);
        assert!(renamed.contains("renamed to lan-old"), "{renamed}");
        let missing = moved_link_note(path, "lan0", 126, 7, None, None);
        assert!(missing.contains("is gone"), "{missing}");
        assert_eq!(ifname(0), None);
    }
}

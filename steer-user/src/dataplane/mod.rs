//! The kernel side as userspace sees it: load the steer object, attach its programs to LAN
//! interfaces, and reach its maps through typed handles.

pub mod maps;
pub mod pin;
pub mod run;
pub mod sync;
pub mod sys;
pub mod trie;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use steer_common::{map_names, program_names};

pub use maps::{Direction, Maps, WriteMode};

use crate::objects;
use pin::{LinkKind, PinDir};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the steer eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the steer object has no program `{0}`: this binary was built from a different object")]
    MissingProgram(&'static str),
    #[error("the steer object has no map `{0}`: this binary was built from a different object")]
    MissingMap(&'static str),
    #[error("map {map}: {op} failed: {source}")]
    Map {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("program {program}: {op} failed: {source}")]
    Program {
        program: &'static str,
        op: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("rule id {0} is out of range (at most {max} rules)", max = steer_common::MAX_RULES)]
    RuleOutOfRange(u32),
    #[error("interface {0} is not attached")]
    NotAttached(String),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("bpf link: {0}")]
    Link(String),
    #[error("kernel log reader: {0}")]
    Logger(String),
    #[error(
        "nothing is pinned at {path}: steer has not run here (or `steer stop` removed it); \
         start it with `steer run -c FILE`, or pass the right --pin-dir"
    )]
    NotPinned { path: PathBuf },
    #[error("injected fault after {after} writes (test)")]
    InjectedFault { after: u64 },
}

fn prog_err(
    program: &'static str,
    op: impl Into<String>,
) -> impl FnOnce(ProgramError) -> DataplaneError {
    let op = op.into();
    move |source| DataplaneError::Program {
        program,
        op,
        source: Box::new(source),
    }
}

/// Map capacities (max entries) of the prefix maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub dst_v4: u32,
    pub dst_v6: u32,
    pub src_v4: u32,
    pub src_v6: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            dst_v4: steer_common::DEFAULT_CAPACITY_DST_V4,
            dst_v6: steer_common::DEFAULT_CAPACITY_DST_V6,
            src_v4: steer_common::DEFAULT_CAPACITY_SRC_V4,
            src_v6: steer_common::DEFAULT_CAPACITY_SRC_V6,
        }
    }
}

impl Capacities {
    pub fn of(&self, dir: Direction, v4: bool) -> u32 {
        match (dir, v4) {
            (Direction::Dst, true) => self.dst_v4,
            (Direction::Dst, false) => self.dst_v6,
            (Direction::Src, true) => self.src_v4,
            (Direction::Src, false) => self.src_v6,
        }
    }
}

/// How the XDP program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (veth and most NICs have it): runs before any skb exists.
    Native,
    /// Generic XDP in the stack, for drivers without native support.
    Generic,
}

impl std::fmt::Display for XdpAttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
        })
    }
}

/// A link this process holds: plain (detached when dropped) or pinned (stays attached after the
/// process exits, until `steer stop` removes the pin).
#[derive(Debug)]
enum HeldLink {
    Plain(FdLink),
    Pinned(PinnedLink, PathBuf),
}

impl HeldLink {
    /// Detaches: unpin (if pinned) and close the last descriptor.
    fn detach(self) -> Result<(), DataplaneError> {
        match self {
            HeldLink::Plain(link) => drop(link),
            HeldLink::Pinned(link, path) => {
                drop(
                    link.unpin().map_err(|source| {
                        DataplaneError::Pin(pin::PinError::Io { path, source })
                    })?,
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Attachment {
    tc: HeldLink,
    xdp: Option<(HeldLink, XdpAttachMode)>,
}

/// What opening a pinned dataplane found from a previous daemon.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Maps already pinned (their contents were kept).
    pub maps: bool,
    /// Interfaces with pinned TC links (the classifier kept running there).
    pub tc_links: Vec<String>,
    /// Interfaces with pinned XDP links.
    pub xdp_links: Vec<String>,
}

/// A loaded steer object: programs verified and loaded, maps created (or adopted from pins).
#[derive(Debug)]
pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
    pub capacities: Capacities,
    attached: BTreeMap<String, Attachment>,
    pins: Option<PinDir>,
}

impl Dataplane {
    /// Loads the embedded object with private, unpinned maps (tests, benchmarks, `explain`).
    /// `capacities` bound how many prefixes steer writes per direction and family (the kernel
    /// tries themselves are not preallocated).
    pub fn load(capacities: Capacities) -> Result<Self, DataplaneError> {
        Self::load_with(EbpfLoader::new(), capacities, None)
    }

    /// Loads the object with its maps pinned under `root` (adopting maps pinned by an earlier
    /// daemon after checking that they fit), takes the pin-directory lock and pins the programs.
    /// Interfaces are attached separately with [`Dataplane::attach`], which adopts pinned links.
    pub fn open_pinned(
        root: &Path,
        capacities: Capacities,
    ) -> Result<(Self, Adopted), DataplaneError> {
        let pins = PinDir::open_locked(root)?;
        pins.check_compatible(&expected_map_infos()?)?;
        let adopted = Adopted {
            maps: pins.map(map_names::POLICY).exists(),
            tc_links: pins.linked_interfaces(LinkKind::Tc)?,
            xdp_links: pins.linked_interfaces(LinkKind::Xdp)?,
        };
        let mut loader = EbpfLoader::new();
        let paths: Vec<(&'static str, PathBuf)> =
            map_names::ALL.iter().map(|n| (*n, pins.map(n))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut dp = Self::load_with(loader, capacities, Some(pins))?;
        dp.pin_programs()?;
        Ok((dp, adopted))
    }

    /// A private copy of the programs that reads the maps pinned under `root` (the running
    /// daemon's) but counts into counters of its own, so `steer explain` can run the real
    /// classifier on a synthetic packet without touching what the router reports. Takes no lock
    /// and pins nothing.
    pub fn load_beside(root: &Path) -> Result<Self, DataplaneError> {
        let private = [
            map_names::STATS_RULE,
            map_names::STATS_WAN,
            map_names::STATS_PATH,
        ];
        let mut loader = EbpfLoader::new();
        let mut paths = Vec::new();
        for name in map_names::ALL.iter().filter(|n| !private.contains(n)) {
            let path = pin::map_path(root, name);
            if !path.exists() {
                return Err(DataplaneError::NotPinned { path });
            }
            paths.push((*name, path));
        }
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        Self::load_with(loader, Capacities::default(), None)
    }

    fn load_with(
        mut loader: EbpfLoader<'_>,
        capacities: Capacities,
        pins: Option<PinDir>,
    ) -> Result<Self, DataplaneError> {
        let mut ebpf = loader
            .load(objects::STEER)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        load_program::<SchedClassifier>(&mut ebpf, program_names::TC)?;
        load_program::<Xdp>(&mut ebpf, program_names::XDP)?;
        let maps = Maps::from_ebpf(&mut ebpf)?;
        Ok(Dataplane {
            ebpf,
            maps,
            capacities,
            attached: BTreeMap::new(),
            pins,
        })
    }

    /// Pins both programs (replacing the pins of an earlier daemon), so `steer explain` and
    /// operators find the running code.
    fn pin_programs(&mut self) -> Result<(), DataplaneError> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        for name in [program_names::TC, program_names::XDP] {
            let path = pins.prog(name);
            pins.clear(&path)?;
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingProgram(name))?;
            prog.pin(&path).map_err(|e| {
                DataplaneError::Pin(pin::PinError::Io {
                    path,
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        }
        Ok(())
    }

    /// The pin directory, when the maps are pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(PinDir::root)
    }

    /// The loaded TC classifier (for test runs and `explain`).
    pub fn tc(&self) -> &SchedClassifier {
        program(&self.ebpf, program_names::TC).expect("loaded in Dataplane::load")
    }

    /// The loaded XDP pre-classifier.
    pub fn xdp(&self) -> &Xdp {
        program(&self.ebpf, program_names::XDP).expect("loaded in Dataplane::load")
    }

    /// Reads the kernel-side log of the programs (aya-log); packet logs only flow when
    /// `Settings::flags` has `LOG_PACKETS`.
    pub fn logger(&mut self) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>, DataplaneError> {
        aya_log::EbpfLogger::init(&mut self.ebpf).map_err(|e| DataplaneError::Logger(e.to_string()))
    }

    /// Attaches the TC classifier to the ingress of `iface`, first in its tcx chain so every
    /// later program sees the mark, and the XDP pre-classifier too when `with_xdp` (native
    /// where the driver has it, generic otherwise; the mode is returned).
    ///
    /// With pinned state, a link an earlier daemon pinned for `iface` is adopted: its program is
    /// swapped for this one in one atomic link update, so the interface is never without a
    /// classifier and never has two. New links are pinned.
    pub fn attach(
        &mut self,
        iface: &str,
        with_xdp: bool,
    ) -> Result<Option<XdpAttachMode>, DataplaneError> {
        if self.attached.contains_key(iface) {
            self.detach(iface)?;
        }
        let tc = self.attach_tc(iface)?;
        let xdp = if with_xdp {
            match self.attach_xdp(iface) {
                Ok(x) => Some(x),
                Err(e) => {
                    tc.detach()?;
                    return Err(e);
                }
            }
        } else {
            self.drop_stale_link(LinkKind::Xdp, iface)?;
            None
        };
        let mode = xdp.as_ref().map(|(_, m)| *m);
        self.attached
            .insert(iface.to_owned(), Attachment { tc, xdp });
        Ok(mode)
    }

    fn attach_tc(&mut self, iface: &str) -> Result<HeldLink, DataplaneError> {
        let pinned = self.pins.as_ref().map(|p| p.link(LinkKind::Tc, iface));
        let tc = program_mut::<SchedClassifier>(&mut self.ebpf, program_names::TC)?;
        if let Some(path) = pinned.as_ref().filter(|p| p.exists()) {
            match adopt_link::<SchedClassifierLink>(path).and_then(|old| {
                tc.attach_to_link(old).map_err(prog_err(
                    program_names::TC,
                    format!("swap program in {}", path.display()),
                ))
            }) {
                Ok(id) => {
                    let link: FdLink = tc
                        .take_link(id)
                        .map_err(prog_err(program_names::TC, "take link"))?
                        .try_into()
                        .map_err(link_err)?;
                    log::info!("{iface}: adopted the pinned TC link, classifier replaced in place");
                    return Ok(HeldLink::Pinned(reopen_pinned(link, path)?, path.clone()));
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
        let link: FdLink = tc
            .take_link(id)
            .map_err(prog_err(program_names::TC, "take link"))?
            .try_into()
            .map_err(link_err)?;
        hold(link, pinned)
    }

    fn attach_xdp(&mut self, iface: &str) -> Result<(HeldLink, XdpAttachMode), DataplaneError> {
        let pinned = self.pins.as_ref().map(|p| p.link(LinkKind::Xdp, iface));
        let xdp = program_mut::<Xdp>(&mut self.ebpf, program_names::XDP)?;
        if let Some(path) = pinned.as_ref().filter(|p| p.exists()) {
            // The mode of an adopted link is the one it was created with.
            let mode = xdp_mode_of(path);
            match adopt_link::<XdpLink>(path).and_then(|old| {
                xdp.attach_to_link(old).map_err(prog_err(
                    program_names::XDP,
                    format!("swap program in {}", path.display()),
                ))
            }) {
                Ok(id) => {
                    let link: FdLink = xdp
                        .take_link(id)
                        .map_err(prog_err(program_names::XDP, "take link"))?
                        .try_into()
                        .map_err(link_err)?;
                    log::info!("{iface}: adopted the pinned XDP link ({mode})");
                    return Ok((
                        HeldLink::Pinned(reopen_pinned(link, path)?, path.clone()),
                        mode,
                    ));
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
                log::info!("{iface}: no native XDP ({native}); using generic XDP");
                (id, XdpAttachMode::Generic)
            }
        };
        let link: FdLink = xdp
            .take_link(id)
            .map_err(prog_err(program_names::XDP, "take link"))?
            .try_into()
            .map_err(link_err)?;
        Ok((hold(link, pinned)?, mode))
    }

    /// Removes a pinned link of `kind` for `iface` that this configuration no longer wants.
    fn drop_stale_link(&mut self, kind: LinkKind, iface: &str) -> Result<(), DataplaneError> {
        if let Some(pins) = &self.pins {
            let path = pins.link(kind, iface);
            if path.exists() {
                pins.clear(&path)?;
                log::info!("{iface}: removed the pinned {kind:?} link (no longer configured)");
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
        for kind in [LinkKind::Tc, LinkKind::Xdp] {
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
}

/// Removes all pinned steer state under `root`: links (detaching the programs), programs, maps.
/// Takes the lock, so it refuses while a daemon runs. Returns how many pins it removed; 0 when
/// there was nothing (stopping twice is fine).
pub fn remove_pinned(root: &Path) -> Result<usize, DataplaneError> {
    if !root.exists() {
        return Ok(0);
    }
    let pins = PinDir::open_locked(root)?;
    Ok(pins.remove_all()?.len())
}

/// The map definitions of this binary's object, from a throwaway unpinned load.
fn expected_map_infos() -> Result<Vec<(&'static str, aya::maps::MapInfo)>, DataplaneError> {
    let ebpf = EbpfLoader::new()
        .load(objects::STEER)
        .map_err(|e| DataplaneError::Load(Box::new(e)))?;
    map_names::ALL
        .iter()
        .map(|name| {
            let map = ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
            let info = pin::info_of(map).ok_or(DataplaneError::MissingMap(name))?;
            Ok((*name, info))
        })
        .collect()
}

fn adopt_link<L: TryFrom<FdLink, Error = LinkError>>(path: &Path) -> Result<L, DataplaneError> {
    let pinned = PinnedLink::from_pin(path).map_err(link_err)?;
    L::try_from(FdLink::from(pinned)).map_err(link_err)
}

/// After `attach_to_link` the link is the same kernel object the pin points at; keep a
/// `PinnedLink` for it so it can be unpinned later.
fn reopen_pinned(link: FdLink, path: &Path) -> Result<PinnedLink, DataplaneError> {
    drop(link);
    PinnedLink::from_pin(path).map_err(link_err)
}

fn hold(link: FdLink, pin_path: Option<PathBuf>) -> Result<HeldLink, DataplaneError> {
    match pin_path {
        None => Ok(HeldLink::Plain(link)),
        Some(path) => {
            let pinned = link.pin(&path).map_err(|e| {
                DataplaneError::Pin(pin::PinError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
            Ok(HeldLink::Pinned(pinned, path))
        }
    }
}

/// The mode a pinned XDP link was attached in (generic links report `XDP_FLAGS_SKB_MODE`).
fn xdp_mode_of(path: &Path) -> XdpAttachMode {
    // The link info does not carry the mode in aya 0.14; native is what steer asks for first
    // and what veth and most NICs give, generic only where the driver lacks XDP.
    let _ = path;
    XdpAttachMode::Native
}

fn link_err(e: LinkError) -> DataplaneError {
    DataplaneError::Link(e.to_string())
}

fn program<'a, P>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a P, DataplaneError>
where
    &'a P: TryFrom<&'a aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into().map_err(prog_err(name, "open"))
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DataplaneError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into().map_err(prog_err(name, "open"))
}

trait Loadable {
    fn load_it(&mut self) -> Result<(), ProgramError>;
}
impl Loadable for SchedClassifier {
    fn load_it(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}
impl Loadable for Xdp {
    fn load_it(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

fn load_program<P: Loadable>(ebpf: &mut Ebpf, name: &'static str) -> Result<(), DataplaneError>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    program_mut::<P>(ebpf, name)?
        .load_it()
        .map_err(prog_err(name, "load (verifier)"))
}

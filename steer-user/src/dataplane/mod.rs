//! The kernel side as userspace sees it: load the steer object, attach its programs to LAN
//! interfaces, and reach its maps through typed handles.

pub mod maps;
pub mod run;
pub mod sys;
pub mod trie;

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::MapError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use steer_common::program_names;

pub use maps::{Direction, Maps, WriteMode};

use crate::objects;

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
        source: MapError,
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

#[derive(Debug)]
struct Attachment {
    tc: SchedClassifierLinkId,
    xdp: Option<(XdpLinkId, XdpAttachMode)>,
}

/// A loaded steer object: programs verified and loaded, maps created, nothing attached yet.
#[derive(Debug)]
pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
    pub capacities: Capacities,
    attached: BTreeMap<String, Attachment>,
}

impl Dataplane {
    /// Loads the embedded object. `capacities` bound how many prefixes steer writes per
    /// direction and family (the kernel tries themselves are not preallocated).
    pub fn load(capacities: Capacities) -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new()
            .load(objects::STEER)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        load_program::<SchedClassifier>(&mut ebpf, program_names::TC)?;
        load_program::<Xdp>(&mut ebpf, program_names::XDP)?;
        let maps = Maps::from_ebpf(&mut ebpf)?;
        Ok(Dataplane {
            ebpf,
            capacities,
            maps,
            attached: BTreeMap::new(),
        })
    }

    /// The loaded TC classifier (for test runs and `explain`).
    pub fn tc(&self) -> &SchedClassifier {
        program(&self.ebpf, program_names::TC).expect("loaded in Dataplane::load")
    }

    /// The loaded XDP pre-classifier.
    pub fn xdp(&self) -> &Xdp {
        program(&self.ebpf, program_names::XDP).expect("loaded in Dataplane::load")
    }

    /// Attaches the TC classifier to the ingress of `iface` (first in its tcx chain, so every
    /// later program sees the mark), and the XDP pre-classifier too when `with_xdp`. Returns the
    /// XDP mode used: native where the driver has it, generic otherwise.
    pub fn attach(
        &mut self,
        iface: &str,
        with_xdp: bool,
    ) -> Result<Option<XdpAttachMode>, DataplaneError> {
        let tc = program_mut::<SchedClassifier>(&mut self.ebpf, program_names::TC)?;
        let tc_link = tc
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(prog_err(
                program_names::TC,
                format!("attach to {iface} ingress"),
            ))?;
        let xdp = if with_xdp {
            match self.attach_xdp(iface) {
                Ok(x) => Some(x),
                Err(e) => {
                    let tc = program_mut::<SchedClassifier>(&mut self.ebpf, program_names::TC)?;
                    let _ = tc.detach(tc_link);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let mode = xdp.as_ref().map(|(_, m)| *m);
        self.attached
            .insert(iface.to_owned(), Attachment { tc: tc_link, xdp });
        Ok(mode)
    }

    fn attach_xdp(&mut self, iface: &str) -> Result<(XdpLinkId, XdpAttachMode), DataplaneError> {
        let xdp = program_mut::<Xdp>(&mut self.ebpf, program_names::XDP)?;
        match xdp.attach(iface, XdpMode::Driver) {
            Ok(link) => Ok((link, XdpAttachMode::Native)),
            Err(native) => match xdp.attach(iface, XdpMode::Skb) {
                Ok(link) => {
                    log::info!("{iface}: no native XDP ({native}); using generic XDP");
                    Ok((link, XdpAttachMode::Generic))
                }
                Err(e) => Err(prog_err(program_names::XDP, format!("attach to {iface}"))(
                    e,
                )),
            },
        }
    }

    /// Detaches both programs from `iface`.
    pub fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let Some(att) = self.attached.remove(iface) else {
            return Err(DataplaneError::NotAttached(iface.to_owned()));
        };
        if let Some((link, _)) = att.xdp {
            program_mut::<Xdp>(&mut self.ebpf, program_names::XDP)?
                .detach(link)
                .map_err(prog_err(program_names::XDP, format!("detach from {iface}")))?;
        }
        program_mut::<SchedClassifier>(&mut self.ebpf, program_names::TC)?
            .detach(att.tc)
            .map_err(prog_err(program_names::TC, format!("detach from {iface}")))
    }

    /// Interfaces the programs are attached to, with the XDP mode where XDP is attached.
    pub fn attached(&self) -> impl Iterator<Item = (&str, Option<XdpAttachMode>)> {
        self.attached
            .iter()
            .map(|(i, a)| (i.as_str(), a.xdp.as_ref().map(|(_, m)| *m)))
    }
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

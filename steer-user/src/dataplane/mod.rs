//! The kernel side as userspace sees it: load the steer object, attach its classifier to LAN
//! interfaces and its traffic counters to WAN devices ([`wan_traffic`]), and bring its maps to
//! a desired state.
//!
//! The maps are private to this module: the controller hands [`Dataplane::sync`] what they
//! should hold ([`MapContents`]) and [`Dataplane::flip_policy`] a new policy table, and the
//! order of the writes is [`sync`]'s business. Tables precomputed for WAN failures go to
//! standby generations ([`Dataplane::prepare_standby`], [`Dataplane::flip_to_standby`]; which
//! generation may be written when is [`generations`]' business). Readers (status, `steer dump`, `steer explain`)
//! get [`Dataplane::maps`], whose writers all need `&mut`.

mod attach;
pub mod generations;
pub mod learned;
mod mapping;
pub mod maps;
pub mod ordered;
pub mod pin;
pub mod pin_owner;
pub mod range_map;
pub mod range_set;
pub mod run;
pub mod sync;
pub mod sys;
pub mod wan_traffic;
mod word;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapError,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use steer_common::{map_names, program_names};

pub use attach::{AttachReport, LanHook, ifindex};
pub use generations::Standby;
pub use maps::{Maps, WanName};
pub use sync::{Diff, MapContents, SyncError, SyncReport};
pub use wan_traffic::{TrafficSample, WatchedWan};

use crate::{
    model::{self, LocalSet, PrefixSets},
    objects,
};
use attach::Attachment;
use pin::{LinkKind, PinDir};

/// What to do when the kernel had no memory for a map or program: most often the service's
/// memory cgroup limit is below what steer needs to start.
fn out_of_memory_hint(e: &aya::EbpfError) -> &'static str {
    if e.to_string().contains("Cannot allocate memory") {
        "; the kernel had no memory for it: if steer runs under a memory limit (systemd's \
         MemoryMax=, a cgroup's memory.max), steer needs about 48 MB to start, plus 48 bytes a \
         prefix (docs/install.md)"
    } else {
        ""
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the steer eBPF object failed: {0}{hint}", hint = out_of_memory_hint(.0))]
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
    #[error("slot-table block {0} is out of range (at most {max} blocks)", max = steer_common::LB_BLOCKS)]
    BlockOutOfRange(u32),
    #[error(
        "the balanced policies need {wanted} distinct slot tables in the generations the \
         kernel keeps, but it has room for {blocks}; use fewer policies whose members share \
         a metric"
    )]
    SlotTablesFull { wanted: usize, blocks: u32 },
    #[error("no policy generation is free for a standby (live, previous and standbys use all {max})", max = steer_common::GENERATIONS)]
    NoFreeGeneration,
    #[error(
        "policy generation {0} is not a ready standby (written since it was prepared); not flipped"
    )]
    StandbyNotReady(u32),
    #[error("interface {0} is not attached")]
    NotAttached(String),
    #[error("interface {0} does not exist; check general.lan (nothing was attached to it)")]
    NoInterface(String),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("bpf link: {0}")]
    Link(String),
    #[error("verifying the programs: {0}")]
    Verifier(String),
    #[error("kernel log reader: {0}")]
    Logger(String),
    #[error(
        "nothing is pinned at {path}: steer has not run here (or `steer stop` removed it); \
         start it with `steer run -c FILE`, or pass the right --pin-dir"
    )]
    NotPinned { path: PathBuf },
    #[error(
        "cannot look at {path}: {source}; steer's pins are root's (the pin directory is 0700): \
         run this as root"
    )]
    PinUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WAN slot {0} is out of range (at most {max} WANs)", max = steer_common::MAX_WANS)]
    WanSlotOutOfRange(u32),
    #[error("injected fault after {after} writes (test)")]
    InjectedFault { after: u64 },
}

pub(crate) fn prog_err(
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

/// The object's programs: verified, or still in the kernel's verifier on a thread of their
/// own (the daemon's start compiles its first state meanwhile: at a million prefixes both take
/// a few hundred milliseconds, on different cores).
#[derive(Debug)]
enum Programs {
    Ready(Ebpf),
    Verifying(JoinHandle<Result<Ebpf, DataplaneError>>),
    /// The verification failed; its error was returned once.
    Failed,
}

/// A loaded steer object: programs verified and loaded (or being verified: [`Dataplane::ready`]),
/// maps created (or adopted from pins).
#[derive(Debug)]
pub struct Dataplane {
    ebpf: Programs,
    maps: Maps,
    /// What the prefix maps hold: read when the maps are adopted, kept current by every sync,
    /// so a sync diffs against it instead of reading the maps back. Shared with a reload that
    /// takes its diff on another thread; `version` counts the syncs, to know the diff is current.
    prefixes: Arc<PrefixSets>,
    version: u64,
    /// What the local-destination maps hold, kept the same way.
    local: LocalSet,
    /// The learned-host maps until the controller's DNS state takes them
    /// ([`Dataplane::take_learned`]).
    learned: Option<learned::LearnedMaps>,
    attached: BTreeMap<String, Attachment>,
    /// The WAN traffic counters: their maps and the WAN devices they are attached to.
    wan: wan_traffic::WanWatch,
    pins: Option<PinDir>,
}

impl Dataplane {
    /// Loads the embedded object with private, unpinned maps (tests, benchmarks).
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(EbpfLoader::new(), None, Verify::Now)
    }

    /// Loads the object with its maps pinned under `root` (adopting maps pinned by an earlier
    /// daemon after checking that they fit), takes the pin-directory lock and pins the programs.
    /// Interfaces are attached separately with [`Dataplane::attach`], which adopts pinned links.
    pub fn open_pinned(root: &Path) -> Result<(Self, Adopted), DataplaneError> {
        Self::open_pinned_with(root, Verify::Now)
    }

    /// [`Dataplane::open_pinned`], with the programs verified on another thread: the maps can
    /// be read at once, and [`Dataplane::ready`] (which every write, attachment and program
    /// access waits for) returns the verifier's verdict. The programs are pinned by
    /// [`Dataplane::pin_programs`] once the caller's first state is live, so a start refused
    /// before leaves no program pin of its own and an earlier daemon's in place.
    pub fn open_pinned_verifying(root: &Path) -> Result<(Self, Adopted), DataplaneError> {
        Self::open_pinned_with(root, Verify::Background)
    }

    fn open_pinned_with(root: &Path, verify: Verify) -> Result<(Self, Adopted), DataplaneError> {
        let pins = PinDir::open_locked(root)?;
        // Before anything is adopted or created: another router's state is not this one's.
        pin_owner::check_owner(root, "adopting")?;
        pins.check_compatible(&expected_map_infos()?)?;
        pin::check_table_format(root)?;
        pin::record_table_format(root)?;
        pin_owner::record_owner(root)?;
        let adopted = Adopted {
            maps: pins.map(map_names::POLICY).exists(),
            tc_links: pins.linked_interfaces(LinkKind::Tc)?,
            xdp_links: pins
                .linked_interfaces(LinkKind::XdpNative)?
                .into_iter()
                .chain(pins.linked_interfaces(LinkKind::XdpGeneric)?)
                .collect(),
        };
        let mut loader = EbpfLoader::new();
        let paths: Vec<(&'static str, PathBuf)> =
            map_names::ALL.iter().map(|n| (*n, pins.map(n))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut dp = Self::load_with(loader, Some(pins), verify)?;
        if verify == Verify::Now {
            dp.pin_programs()?;
        }
        if adopted.maps {
            dp.maps.rebuild_range_tables()?;
            dp.prefixes = Arc::new(dp.maps.held_prefixes()?);
            dp.local = dp.maps.locals()?;
        }
        Ok((dp, adopted))
    }

    /// A private copy of the TC classifier that reads the maps pinned under `root` (the running
    /// daemon's) but counts into counters of its own, so `steer explain` can run the real
    /// classifier on a synthetic packet without touching what the router reports. Takes no lock
    /// and pins nothing. Only that program is verified (the others are not needed here, and the
    /// XDP program's verification alone took 0.65 s of an `explain`): [`Dataplane::tc`] is the
    /// one program it serves.
    pub fn load_beside(root: &Path) -> Result<Self, DataplaneError> {
        let private = [
            map_names::STATS_RULE,
            map_names::STATS_WAN,
            map_names::STATS_PATH,
        ];
        pin::check_table_format(root)?;
        let mut loader = EbpfLoader::new();
        let mut paths = Vec::new();
        for name in map_names::ALL.iter().filter(|n| !private.contains(n)) {
            let path = pin::map_path(root, name);
            pinned(&path)?;
            paths.push((*name, path));
        }
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        Self::load_with(loader, None, Verify::ClassifierOnly)
    }

    fn load_with(
        mut loader: EbpfLoader<'_>,
        pins: Option<PinDir>,
        verify: Verify,
    ) -> Result<Self, DataplaneError> {
        let mut ebpf = loader
            .load(objects::STEER)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        // The programs hold the maps' descriptors from here on (relocated by `load`): the maps
        // can leave the object before the programs are verified.
        let maps = Maps::from_ebpf(&mut ebpf)?;
        let learned = Some(learned::LearnedMaps::from_ebpf(
            &mut ebpf,
            maps.settings_word(),
        )?);
        let wan = wan_traffic::WanWatch::new(wan_traffic::WanMaps::from_ebpf(&mut ebpf)?);
        let ebpf = match verify {
            Verify::Now => Programs::Ready(verified(ebpf)?),
            Verify::ClassifierOnly => {
                load_program::<SchedClassifier>(&mut ebpf, program_names::TC)?;
                Programs::Ready(ebpf)
            }
            Verify::Background => Programs::Verifying(
                std::thread::Builder::new()
                    .name("steer-verifier".into())
                    .spawn(move || verified(ebpf))
                    .map_err(|e| DataplaneError::Verifier(e.to_string()))?,
            ),
        };
        Ok(Dataplane {
            ebpf,
            maps,
            prefixes: Arc::default(),
            version: 0,
            local: LocalSet::new(),
            learned,
            attached: BTreeMap::new(),
            wan,
            pins,
        })
    }

    /// Brings the maps to `want`, in the order [`sync`] documents. On error before the flip
    /// nothing changed; [`SyncError::is_live`] says when the new state went live anyway.
    /// `diff` is the difference computed elsewhere against [`Dataplane::snapshot`]: taken when
    /// the prefixes have not changed since that snapshot, recomputed otherwise.
    pub fn sync(
        &mut self,
        want: &MapContents,
        diff: Option<(u64, Diff)>,
    ) -> Result<SyncReport, SyncError> {
        let diff = diff
            .filter(|(version, _)| *version == self.version)
            .map(|(_, d)| d);
        self.version += 1;
        let synced = sync::sync(
            &mut self.maps,
            Arc::make_mut(&mut self.prefixes),
            want,
            diff,
        );
        self.share_mirror();
        // A reload's few edits in place do not wait for the periodic tick.
        self.maps.unmap_ranges();
        synced
    }

    /// Makes the mirror share the range sets' entries: a sync brings it to what they hold
    /// through changes of its own (new vectors where it merged them), which would otherwise
    /// stay a second copy of every set (8 MB at 1M IPv4 prefixes).
    fn share_mirror(&mut self) {
        match self.maps.held_prefixes() {
            Ok(held) => {
                debug_assert!(*self.prefixes == held, "the mirror follows the range sets");
                self.prefixes = Arc::new(held);
            }
            Err(e) => log::warn!("the mirror of the maps keeps a copy of its own: {e}"),
        }
    }

    /// Writes a change of prefixes alone (see [`sync::sync_prefixes`]), computed against the
    /// snapshot of version `diff.0`; refused without a write when the maps changed since.
    pub fn sync_prefixes(
        &mut self,
        diff: (u64, Diff),
        capacity: &model::Capacity,
        log_packets: bool,
        changed: &str,
    ) -> Result<SyncReport, SyncError> {
        if diff.0 != self.version {
            return Err(SyncError::Stale);
        }
        self.version += 1;
        let synced = sync::sync_prefixes(
            &mut self.maps,
            Arc::make_mut(&mut self.prefixes),
            diff.1,
            capacity,
            log_packets,
            changed,
        );
        self.share_mirror();
        synced
    }

    /// The version of what the prefix maps hold: every sync makes a new one.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What the prefix maps hold, shared (for a diff on another thread), and its version.
    pub fn snapshot(&self) -> (Arc<PrefixSets>, u64) {
        (self.prefixes.clone(), self.version)
    }

    /// Makes `table` the live policy table (standby generation, then one word flipped): a
    /// failover. Returns the flip, or `None` when the table was live already.
    pub fn flip_policy(
        &mut self,
        table: &model::PolicyTable,
    ) -> Result<Option<(u32, u32)>, DataplaneError> {
        sync::flip_policy(&mut self.maps, table)
    }

    /// Writes `table` into a free generation as a ready standby (see [`generations`]): what
    /// the live generation and the kept ones read is never written.
    pub fn prepare_standby(
        &mut self,
        table: &model::PolicyTable,
    ) -> Result<Standby, DataplaneError> {
        self.maps.prepare_standby(table)
    }

    /// Makes a ready standby live with one word written (a failover it covers).
    pub fn flip_to_standby(&mut self, standby: Standby) -> Result<(u32, u32), DataplaneError> {
        self.maps.flip_to_standby(standby)
    }

    /// Forgets every standby (their generations may be rewritten).
    pub fn drop_standbys(&mut self) {
        self.maps.drop_standbys();
    }

    /// What the prefix maps hold.
    pub fn prefixes(&self) -> &PrefixSets {
        &self.prefixes
    }

    /// Lets go of the prefix arrays small edits left mapped: called on the daemon's periodic
    /// tick, so a burst of `steer set add` maps them once and the daemon's resident memory
    /// does not keep their pages.
    pub fn unmap_ranges(&mut self) {
        self.maps.unmap_ranges();
    }

    /// Bytes the kernel holds for the prefix sets now: their tables and records as allocated.
    pub fn set_memory(&self) -> u64 {
        model::PrefixMap::ALL
            .into_iter()
            .map(|m| self.maps.range_bytes(m))
            .sum()
    }

    /// Brings the local-destination maps to `want`: additions and changes first, then
    /// removals, so a destination that stays local (under a new prefix) never looks remote.
    /// Returns (added or changed, removed).
    pub fn sync_local(&mut self, want: &LocalSet) -> Result<(usize, usize), DataplaneError> {
        let changed: Vec<_> = want
            .iter()
            .filter(|(p, k)| self.local.get(p) != Some(k))
            .map(|(p, k)| (*p, *k))
            .collect();
        for (prefix, kind) in &changed {
            self.maps.set_local(*prefix, *kind)?;
            self.local.insert(*prefix, *kind);
        }
        let stale: Vec<_> = self
            .local
            .keys()
            .filter(|p| !want.contains_key(p))
            .copied()
            .collect();
        for prefix in &stale {
            self.maps.remove_local(*prefix)?;
            self.local.remove(prefix);
        }
        Ok((changed.len(), stale.len()))
    }

    /// What the local-destination maps hold.
    pub fn local(&self) -> &LocalSet {
        &self.local
    }

    /// Read access to every map (counters, names, the live generation).
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// Raw write access for test fixtures and benchmarks, which set up maps by hand. The
    /// daemon never uses it: it writes through [`Dataplane::sync`] and
    /// [`Dataplane::flip_policy`] only.
    #[doc(hidden)]
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// Waits for the programs' verification if it still runs; the verifier's refusal is
    /// returned here. Every write to the maps, attachment and use of
    /// a program comes after this, so nothing is changed for programs the kernel refuses.
    pub fn ready(&mut self) -> Result<(), DataplaneError> {
        self.programs().map(|_| ())
    }

    fn programs(&mut self) -> Result<&mut Ebpf, DataplaneError> {
        if let Programs::Verifying(_) = self.ebpf {
            let Programs::Verifying(verifying) =
                std::mem::replace(&mut self.ebpf, Programs::Failed)
            else {
                unreachable!("matched above");
            };
            let ebpf = verifying
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            self.ebpf = Programs::Ready(ebpf);
        }
        match &mut self.ebpf {
            Programs::Ready(ebpf) => Ok(ebpf),
            _ => Err(DataplaneError::Verifier(
                "the programs were refused earlier".into(),
            )),
        }
    }

    /// The verified programs of a dataplane loaded with them verified at once
    /// ([`Dataplane::load`], [`Dataplane::open_pinned`], [`Dataplane::load_beside`]).
    fn verified_programs(&self) -> &Ebpf {
        match &self.ebpf {
            Programs::Ready(ebpf) => ebpf,
            _ => panic!("programs read before Dataplane::ready"),
        }
    }

    /// Pins the programs (replacing the pins of an earlier daemon), so `steer explain` and
    /// operators find the running code. Waits for their verification.
    pub fn pin_programs(&mut self) -> Result<(), DataplaneError> {
        self.ready()?;
        let (Some(pins), Programs::Ready(ebpf)) = (&self.pins, &mut self.ebpf) else {
            return Ok(());
        };
        for name in PROGRAMS {
            let path = pins.prog(name);
            pins.clear(&path)?;
            let prog = ebpf
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

    /// Removes the pins this dataplane created, leaving the pin directory as it found it (an
    /// earlier daemon's pins as they were): what a start refused before it went live undoes.
    /// Returns how many pins it removed.
    pub fn remove_created_pins(&mut self) -> Result<usize, DataplaneError> {
        match self.pins.take() {
            Some(pins) => Ok(pins.remove_created()?.len()),
            None => Ok(0),
        }
    }

    /// The pin directory, when the maps are pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(PinDir::root)
    }

    /// The loaded TC classifier (for test runs and `explain`).
    pub fn tc(&self) -> &SchedClassifier {
        program(self.verified_programs(), program_names::TC).expect("loaded in Dataplane::load")
    }

    /// A loaded WAN traffic counter: `program_names::WAN_EGRESS` or `WAN_INGRESS` (test runs).
    pub fn wan_program(&self, name: &'static str) -> Result<&SchedClassifier, DataplaneError> {
        program(self.verified_programs(), name)
    }

    /// The loaded XDP pre-classifier.
    pub fn xdp(&self) -> &Xdp {
        program(self.verified_programs(), program_names::XDP).expect("loaded in Dataplane::load")
    }

    /// Reads the kernel-side log of the programs (aya-log); packet logs only flow when
    /// `Settings::flags` has `LOG_PACKETS`.
    pub fn logger(&mut self) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>, DataplaneError> {
        aya_log::EbpfLogger::init(self.programs()?)
            .map_err(|e| DataplaneError::Logger(e.to_string()))
    }
}

impl Drop for Dataplane {
    /// A verification still running is waited for: its programs refer to the maps by
    /// descriptor, which must not be closed (and reused) under it.
    fn drop(&mut self) {
        if let Programs::Verifying(verifying) = std::mem::replace(&mut self.ebpf, Programs::Failed)
        {
            let _ = verifying.join();
        }
    }
}

/// Removes all pinned steer state under `root`: links (detaching the programs), programs, maps.
/// Takes the lock, so it refuses while a daemon runs. Returns how many pins it removed; 0 when
/// there was nothing (stopping twice is fine). Whichever network namespace pinned it: for
/// cleaning up after tests; `steer stop` goes through [`remove_pinned_here`].
pub fn remove_pinned(root: &Path) -> Result<usize, DataplaneError> {
    if !root.exists() {
        return Ok(0);
    }
    let pins = PinDir::open_locked(root)?;
    Ok(pins.remove_all()?.len())
}

/// [`remove_pinned`], refused when the state was pinned by a steer in another network
/// namespace that still exists ([`pin_owner::check_owner`]): `steer stop` on one router must not
/// detach another's classifier that shares the pin directory.
pub fn remove_pinned_here(root: &Path) -> Result<usize, DataplaneError> {
    if !root.exists() {
        return Ok(0);
    }
    let pins = PinDir::open_locked(root)?;
    pin_owner::check_owner(root, "removing")?;
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

fn program<'a, P>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a P, DataplaneError>
where
    &'a P: TryFrom<&'a aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into().map_err(prog_err(name, "open"))
}

pub(crate) fn program_mut<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, DataplaneError>
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

/// How [`Dataplane::load_with`] verifies the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Now,
    Background,
    /// The TC classifier alone, now: a copy that only classifies test packets.
    ClassifierOnly,
}

/// Every program of the object: the LAN classifier (TC and XDP) and the WAN counters.
const PROGRAMS: [&str; 4] = [
    program_names::TC,
    program_names::XDP,
    program_names::WAN_EGRESS,
    program_names::WAN_INGRESS,
];

/// `ebpf` with every program through the verifier and loaded.
fn verified(mut ebpf: Ebpf) -> Result<Ebpf, DataplaneError> {
    load_program::<SchedClassifier>(&mut ebpf, program_names::TC)?;
    load_program::<Xdp>(&mut ebpf, program_names::XDP)?;
    for name in [program_names::WAN_EGRESS, program_names::WAN_INGRESS] {
        load_program::<SchedClassifier>(&mut ebpf, name)?;
    }
    Ok(ebpf)
}

fn load_program<P: Loadable>(ebpf: &mut Ebpf, name: &'static str) -> Result<(), DataplaneError>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    program_mut::<P>(ebpf, name)?
        .load_it()
        .map_err(prog_err(name, "load (verifier)"))
}

/// `Ok` when something is pinned at `path`; an absent pin and one this user may not look at
/// (`EACCES` on the root-only pin directory, which `Path::exists` reads as absent) are told
/// apart, so a non-root `steer dump` is not told that steer has not run.
fn pinned(path: &Path) -> Result<(), DataplaneError> {
    match path.try_exists() {
        Ok(true) => Ok(()),
        Ok(false) => Err(DataplaneError::NotPinned {
            path: path.to_owned(),
        }),
        Err(source) => Err(DataplaneError::PinUnreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

//! `steer explain`: why a packet goes where it goes. A private copy of the classifier (the same
//! object the daemon runs) is run through BPF_PROG_TEST_RUN on a synthetic packet against the
//! live pinned maps: the XDP program says which rule matched (its verdict metadata), the TC
//! program what mark the packet leaves with. Names come from the pinned maps.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use clap::ValueEnum;
use serde_json::{Value, json};
use steer_common::{DEFAULT_RULE, LOCAL_RULE};

use super::{dns::LearnedHost, dump::Names};
use crate::{
    dataplane::{
        Dataplane, DataplaneError,
        run::{run_tc, run_xdp},
    },
    model::{Direction, Family, LocalKind},
    packet::{Frame, Transport},
    prefix::Prefix,
    status::{Status, WanState},
};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The answer to "why did this packet go out there?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub dport: u16,
    /// The destination is local (reached without a WAN): the prefix and why. Such a packet is
    /// never steered, whatever the rules say.
    pub local: Option<(Prefix, LocalKind)>,
    /// Rule the classifier matched (0: the default rule; meaningless for a local destination).
    pub rule: u32,
    pub set: String,
    /// What the matched rule looks at; `None` for the default rule.
    pub matched_on: Option<Direction>,
    /// The set's prefix that matched (longest), if a set matched.
    pub prefix: Option<Prefix>,
    /// The destination was learned from a DNS answer: that is what matched.
    pub learned: Option<LearnedHost>,
    /// Shorter prefixes of other rules that also contain the address (what the packet would
    /// get without the match).
    pub shadowed: Vec<(Prefix, String)>,
    /// The matched prefix is a runtime entry (`steer set`): seconds it has left, `None` until
    /// deleted.
    pub runtime: Option<Option<u64>>,
    pub policy: String,
    /// skb->mark as the TC program left it.
    pub mark: u32,
    pub mask: u32,
    pub wan: String,
    pub generation: u32,
    /// Each WAN's state in the packet's address family, when the daemon answered (the policy
    /// decided from these).
    pub health: Vec<WanHealth>,
}

/// One WAN's state in one address family, as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanHealth {
    pub wan: String,
    pub state: WanState,
    pub detail: String,
}

impl Explanation {
    /// "src", "dst" or "default", as `steer dump` names rule kinds.
    pub fn matched_on_name(&self) -> &'static str {
        self.matched_on.map_or("default", Direction::as_str)
    }

    /// Adds each WAN's state in the packet's family from the daemon's status.
    pub fn with_health(mut self, status: &Status) -> Self {
        let family = Family::of(&self.dst).name();
        self.health = status
            .wans
            .iter()
            .filter_map(|w| {
                let f = w.families.iter().find(|f| f.family == family)?;
                // A family without a gateway carries nothing whatever its probes say.
                let waiting = f.state != WanState::Up && f.gateway.starts_with("waiting");
                Some(WanHealth {
                    wan: w.name.clone(),
                    state: f.state,
                    detail: if waiting { &f.gateway } else { &f.detail }.clone(),
                })
            })
            .collect();
        self
    }

    /// Says whether the matched prefix was added at runtime, from the daemon's journal of
    /// runtime entries (`now`: seconds of `CLOCK_BOOTTIME`).
    pub fn with_runtime(mut self, table: &crate::runtime_sets::RuntimeSets, now: u64) -> Self {
        if let Some(p) = &self.prefix {
            self.runtime = table
                .get(&self.set, p)
                .map(|deadline| deadline.map(|at| at.saturating_sub(now)));
        }
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "src": self.src, "dst": self.dst,
            "proto": format!("{:?}", self.proto).to_lowercase(), "dport": self.dport,
            "local": self.local.map(|(p, k)| json!({ "prefix": p.to_string(), "reason": k.describe() })),
            "rule": self.rule, "set": self.set, "matched_on": self.matched_on_name(),
            "prefix": self.prefix.map(|p| p.to_string()),
            "learned": self.learned.as_ref().map(|l| json!({ "name": l.name, "expires_in_s": l.expires_in, "also_set": l.also })),
            "runtime": self.runtime.map(|left| json!({ "expires_in_s": left })),
            "shadowed": self.shadowed.iter().map(|(p, s)| json!({ "prefix": p.to_string(), "set": s })).collect::<Vec<_>>(),
            "policy": self.policy, "mark": format!("{:#x}", self.mark), "wan": self.wan,
            "generation": self.generation,
            "health": self.health.iter().map(|h| json!({ "wan": h.wan, "state": h.state.as_str(), "detail": h.detail })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "packet   {} -> {} {:?} dport {}",
            self.src, self.dst, self.proto, self.dport
        )?;
        if let Some((p, kind)) = self.local {
            writeln!(
                f,
                "local    dst {} in {p} ({}): never steered, the main table routes it",
                self.dst,
                kind.describe()
            )?;
            writeln!(f, "mark     {:#x} (unchanged)", self.mark)?;
            return writeln!(
                f,
                "(the real classifier ran on this packet against the live maps, policy generation {})",
                self.generation
            );
        }
        match (&self.prefix, self.matched_on) {
            _ if self.learned.is_some() => {
                let l = self.learned.as_ref().expect("checked");
                writeln!(
                    f,
                    "matched  rule {} = set {} (dst {} learned from the answer for {}, expires in {} s)",
                    self.rule, self.set, self.dst, l.name, l.expires_in
                )?;
                if let Some(also) = &l.also {
                    writeln!(
                        f,
                        "         also claimed by set {also} (later in the configuration, so it loses)"
                    )?;
                }
            }
            (Some(p), Some(dir)) => {
                let addr = match dir {
                    Direction::Src => self.src,
                    Direction::Dst => self.dst,
                };
                writeln!(
                    f,
                    "matched  rule {} = set {} ({} {addr} in {p})",
                    self.rule,
                    self.set,
                    dir.as_str()
                )?;
                match self.runtime {
                    Some(Some(left)) => writeln!(
                        f,
                        "         {p} is a runtime entry (steer set), removed in {left} s"
                    )?,
                    Some(None) => writeln!(
                        f,
                        "         {p} is a runtime entry (steer set), until deleted"
                    )?,
                    None => {}
                }
            }
            _ => writeln!(f, "matched  rule {} = default (no set matched)", self.rule)?,
        }
        for (p, s) in &self.shadowed {
            writeln!(f, "         also in {p} of set {s} (shorter, so it loses)")?;
        }
        writeln!(f, "policy   {}", self.policy)?;
        writeln!(f, "mark     {:#x} (mask {:#x})", self.mark, self.mask)?;
        writeln!(f, "wan      {}", self.wan)?;
        let family = Family::of(&self.dst).name();
        for (i, h) in self.health.iter().enumerate() {
            let head = if i == 0 { "health" } else { "" };
            writeln!(f, "{head:<8} {family} {}: {}", h.wan, h.detail)?;
        }
        writeln!(
            f,
            "(the real classifier ran on this packet against the live maps, policy generation {})",
            self.generation
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(
        "source {src} and destination {dst} are not the same address family; give --src of the family of {dst}"
    )]
    Family { src: IpAddr, dst: IpAddr },
    #[error("running the classifier on the synthetic packet failed: {0}")]
    Run(String),
}

impl From<ExplainError> for super::CliError {
    fn from(e: ExplainError) -> Self {
        match e {
            ExplainError::Dataplane(d) => super::CliError::Dataplane(d),
            other => super::CliError::Refused(other.to_string()),
        }
    }
}

/// Runs the classifier of the steer pinned under `pin_dir` on one synthetic packet.
pub fn explain(
    pin_dir: &Path,
    dst: IpAddr,
    src: Option<IpAddr>,
    proto: Proto,
    dport: u16,
) -> Result<Explanation, ExplainError> {
    let src = src.unwrap_or(match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(ExplainError::Family { src, dst });
    }
    let transport = match proto {
        Proto::Tcp => Transport::Tcp {
            sport: 40000,
            dport,
        },
        Proto::Udp => Transport::Udp {
            sport: 40000,
            dport,
        },
    };
    let frame = Frame::udp(src, dst).with_transport(transport).build();
    let dp = Dataplane::load_beside(pin_dir)?;
    let xdp = run_xdp(dp.xdp(), &frame).map_err(|e| ExplainError::Run(e.to_string()))?;
    let tc = run_tc(dp.tc(), &frame, 0).map_err(|e| ExplainError::Run(e.to_string()))?;
    let maps = dp.maps();
    let names = Names::read(maps)?;
    let rule = xdp.meta.map(|m| m.rule).unwrap_or(DEFAULT_RULE);
    if rule == LOCAL_RULE {
        return Ok(Explanation {
            src,
            dst,
            proto,
            dport,
            local: maps.local_of(dst)?,
            rule,
            set: String::new(),
            matched_on: None,
            prefix: None,
            learned: None,
            shadowed: Vec::new(),
            runtime: None,
            policy: "-".into(),
            mark: tc.mark,
            mask: 0,
            wan: "none (local destination: main table)".into(),
            generation: names.generation,
            health: Vec::new(),
        });
    }
    let matched_on = names.kind(rule).direction();
    let (mut prefix, mut shadowed) = (None, Vec::new());
    if let Some(dir) = matched_on {
        let addr = match dir {
            Direction::Src => src,
            Direction::Dst => dst,
        };
        for (p, r) in maps.containing(dir, addr)? {
            if r == rule && prefix.is_none() {
                prefix = Some(p);
            } else if r != rule {
                shadowed.push((p, names.set(r)));
            }
        }
    }
    let learned = match matched_on {
        Some(Direction::Dst) => super::dns::learned_host(pin_dir, dst, rule, &names)?,
        _ => None,
    };
    let entry = maps.policy(names.generation, Family::of(&dst), rule)?;
    Ok(Explanation {
        src,
        dst,
        proto,
        dport,
        local: None,
        rule,
        set: names.set(rule),
        matched_on,
        prefix,
        learned,
        shadowed,
        runtime: None,
        policy: names.policy(rule),
        mark: tc.mark,
        mask: entry.mask,
        wan: names.wan_of_mark(tc.mark, entry.mask),
        generation: names.generation,
        health: Vec::new(),
    })
}

//! Domain sets: addresses learned from DNS answers, in the kernel before the client sees the
//! answer.
//!
//! A pure core, tested without privileges and on a virtual clock: [`wire`] (the message format,
//! bounded against any input), [`matcher`] (which set a name belongs to), [`answer`] (what an
//! answer teaches), [`rebind`] (addresses never learned) and [`lifetimes`] (expiry, capacity,
//! two sets claiming one address). Thin I/O around it: [`forwarder`] (UDP and TCP listeners
//! relaying to upstream resolvers), [`snoop`] (answers routed to the LAN, held in an NFQUEUE
//! until learned) and [`service`] (starting and restarting both with the configuration).
//!
//! Neither writes the kernel itself: both hand an answer's addresses to a [`Learn`] handle —
//! the controller's learner, the one writer of the learned-host maps — and relay the answer
//! only once it returned.

pub mod answer;
pub mod forwarder;
pub mod lifetimes;
pub mod matcher;
pub mod mmsg;
mod nfqueue;
pub mod rebind;
pub mod service;
pub mod snoop;
pub mod stats;
pub mod wire;

use std::sync::Arc;

use answer::Learnable;
use matcher::Matcher;
use stats::Stats;

/// What learning one answer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Entries written (new or extended).
    pub written: usize,
    /// Entries that already said it all.
    pub unchanged: usize,
    /// Addresses not learned (rebinding protection, capacity).
    pub refused: usize,
    /// Kernel writes that failed.
    pub failed: usize,
    /// The answer gives an AAAA question IPv6 addresses of a set that filters AAAA (a name
    /// outside the set whose CNAME chain leads into it): the forwarder answers as for a name of
    /// the set, with no records, so the client does not take IPv6 past the set's WAN.
    pub filter_aaaa: bool,
}

/// The learner as the forwarder and the snooper see it.
pub trait Learn: Send + Sync {
    /// The domains of the running configuration.
    fn matcher(&self) -> Arc<Matcher>;
    /// Who the forwarder answers (kept by the controller as routing changes).
    fn clients(&self) -> Arc<forwarder::Clients>;
    /// Writes what an answer teaches into the kernel; returns once it is there.
    fn learn(&self, what: &Learnable) -> Outcome;
    /// The DNS counters.
    fn stats(&self) -> &Stats;
}

/// Reads an answer and learns what it teaches. `Err` when it cannot be read (nothing is
/// learned from it).
pub fn learn_answer(learner: &dyn Learn, msg: &[u8]) -> Result<Outcome, wire::WireError> {
    let parsed = wire::parse(msg)?;
    let matcher = learner.matcher();
    if matcher.is_empty() {
        return Ok(Outcome::default());
    }
    let Some(l) = answer::learnable(msg, &parsed, &matcher) else {
        return Ok(Outcome::default());
    };
    let mut out = if l.addrs.is_empty() {
        Outcome::default()
    } else {
        learner.learn(&l)
    };
    // An HTTPS or SVCB answer's ipv6hint would lead the client to the IPv6 address too: it is
    // answered empty like an AAAA question (the client then asks for A records).
    out.filter_aaaa = l.filtered_v6 > 0
        && parsed.question.as_ref().is_some_and(|q| {
            matches!(
                q.qtype,
                wire::rtype::AAAA | wire::rtype::HTTPS | wire::rtype::SVCB
            )
        });
    Ok(out)
}

//! Precomputed failover: for each single-WAN failure the live state could take next, the policy
//! table that failure asks for is kept ready in a standby generation, so the failover itself
//! is one word written (`ACTIVE`) and everything else (routes, conntrack jobs, the log line)
//! follows.
//!
//! Which failures: per WAN with usable families, the loss of all of them (carrier lost, a
//! command, both probes failing), then the loss of each family alone. When the kernel has
//! fewer free generations than that (`GENERATIONS` minus the live and the previous one), the
//! failures that do not fit are not covered and fail over as before (the table written to the
//! scratch generation, then the flip). A failure whose table is the live one needs no
//! generation: no flip at all.
//!
//! A standby is flipped to only when it is known good: built for exactly the state of now (the
//! usable WAN families it was computed from, with the failing ones removed, equal those of
//! now), still ready in the dataplane (nothing written to its generation since), and it is
//! the table the normal path computes ([`super::desired::policy_table`] with the same
//! `usable` answers). After the flip the controller computes that table anyway (for the
//! outcomes) and, should it differ, writes it the normal way. The standbys are rebuilt after
//! every state change and every reload, off the failover's path ([`Controller::refresh_standbys`]).

use super::{Controller, ReportLine, desired};
use crate::{
    dataplane::Standby,
    model::{Family, PolicyTable},
};

/// The standbys ready for the state they were built for.
#[derive(Debug, Default)]
pub(super) struct Standbys {
    /// Built for the state of now: cleared by every state change and reload.
    pub fresh: bool,
    /// Whether each WAN family was usable when they were built.
    base: Vec<((String, Family), bool)>,
    ready: Vec<Ready>,
    /// Failures not covered (no generation left, or building failed), in words.
    pub uncovered: Vec<String>,
}

#[derive(Debug)]
struct Ready {
    wan: String,
    families: Vec<Family>,
    table: PolicyTable,
    /// `None` when the failure leaves the live table as it is.
    standby: Option<Standby>,
}

/// A failover a standby covered: the flip done (or not needed) and the table it made live.
pub(super) struct Flipped {
    pub flip: Option<(u32, u32)>,
    pub table: PolicyTable,
}

impl Standbys {
    /// The standbys in words, for status: `wan1 (ipv4+ipv6) -> generation 3`.
    pub fn describe(&self) -> Vec<String> {
        if !self.fresh {
            // Stale ones are never flipped to.
            return Vec::new();
        }
        self.ready
            .iter()
            .map(|r| {
                let fams: Vec<&str> = r.families.iter().map(|f| f.name()).collect();
                let target = match r.standby {
                    Some(s) => format!("generation {}", s.generation),
                    None => "no change".into(),
                };
                format!("{} down ({}) -> {target}", r.wan, fams.join("+"))
            })
            .collect()
    }
}

impl Controller {
    /// Whether each WAN family is usable now, in configuration order.
    fn usable_now(&self) -> Vec<((String, Family), bool)> {
        self.config
            .wans
            .iter()
            .flat_map(|w| Family::ALL.map(|f| ((w.name.clone(), f), self.usable(&w.name, f))))
            .collect()
    }

    /// Rebuilds the standbys for the state of now, when a state change or a reload made them
    /// stale. Call after the event that changed the state was handled (never before a flip).
    /// A failure here never touches the live generation: the failover it would have covered
    /// is written the normal way.
    pub fn refresh_standbys(&mut self) -> Option<ReportLine> {
        // While a failed write is retried the kernel is behind the states: a standby judged
        // against the computed table could skip a needed write.
        if self.standbys.fresh || self.policy_dirty {
            return None;
        }
        self.dp.drop_standbys();
        let base = self.usable_now();
        let (live, _) = self.live_table();
        let mut keys: Vec<(String, Vec<Family>)> = Vec::new();
        let mut single = Vec::new();
        for w in &self.config.wans {
            let up: Vec<Family> = base
                .iter()
                .filter(|((n, _), u)| *u && *n == w.name)
                .map(|((_, f), _)| *f)
                .collect();
            if up.len() > 1 {
                single.extend(up.iter().map(|f| (w.name.clone(), vec![*f])));
            }
            if !up.is_empty() {
                keys.push((w.name.clone(), up));
            }
        }
        keys.extend(single);
        let mut ready: Vec<Ready> = Vec::new();
        let mut uncovered = Vec::new();
        let mut failed = None;
        for (wan, families) in keys {
            let (table, _) =
                desired::policy_table(&self.config, &self.rules, &self.wan_slots, |w, f| {
                    let was = base.iter().any(|((n, g), u)| n == w && *g == f && *u);
                    was && !(w == wan && families.contains(&f))
                });
            let standby = if table == live {
                None
            } else if let Some(same) = ready.iter().find(|r| r.table == table) {
                same.standby
            } else {
                match self.dp.prepare_standby(&table) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let fams: Vec<&str> = families.iter().map(|f| f.name()).collect();
                        uncovered.push(format!("{wan} ({}): {e}", fams.join("+")));
                        failed.get_or_insert(e.to_string());
                        continue;
                    }
                }
            };
            ready.push(Ready {
                wan,
                families,
                table,
                standby,
            });
        }
        self.standbys = Standbys {
            fresh: true,
            base,
            ready,
            uncovered,
        };
        failed.map(|e| {
            ReportLine::info(format!(
                "precomputed failover: {} WAN failures have no standby and fail over by \
                 writing the table first ({e})",
                self.standbys.uncovered.len()
            ))
        })
    }

    /// The flip a standby covers, for `families` of `wan` going down: `None` when no ready,
    /// known-good standby covers it (then nothing was written). Called first on a down
    /// verdict: the state has already changed, so the standby must have been built for the
    /// state of now with exactly those families usable.
    pub(super) fn flip_precomputed(
        &mut self,
        wan: &str,
        families: &[Family],
    ) -> Option<Result<Flipped, crate::dataplane::DataplaneError>> {
        let s = &self.standbys;
        if !s.fresh {
            return None;
        }
        // The families the verdict takes down that were usable (a family without a gateway
        // goes down with the carrier but was not carrying anything).
        let was_usable = |f: &Family| s.base.iter().any(|((w, g), u)| *u && w == wan && g == f);
        let lost = families.iter().filter(|f| was_usable(f)).count();
        let at = s.ready.iter().position(|r| {
            r.wan == wan
                && r.families.len() == lost
                && families
                    .iter()
                    .filter(|f| was_usable(f))
                    .all(|f| r.families.contains(f))
        })?;
        // Every WAN family as usable as the standby assumed (no allocation: this is timed).
        let still = s.base.iter().all(|(key, was)| {
            let expected = *was && !(key.0 == wan && families.contains(&key.1));
            let usable = self.health.up(&key.0, key.1)
                && self.gateways.get(key).is_some_and(|r| r.gateway.is_some());
            usable == expected
        });
        if !still {
            return None;
        }
        let flip = match s.ready[at].standby {
            Some(standby) => match self.dp.flip_to_standby(standby) {
                Ok(flip) => Some(flip),
                Err(e) => return Some(Err(e)),
            },
            None => None,
        };
        let ready = self.standbys.ready.swap_remove(at);
        self.standbys.fresh = false;
        Some(Ok(Flipped {
            flip,
            table: ready.table,
        }))
    }
}

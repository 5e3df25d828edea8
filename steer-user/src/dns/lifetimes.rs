//! The learned addresses and their lifetimes: pure, on a clock passed in (seconds of
//! `CLOCK_BOOTTIME` in the daemon, anything in tests).
//!
//! - An answer's TTL is clamped to `[min_ttl, max_ttl]` (clients often cache longer than the
//!   TTL says); the entry then lives until the later of its current expiry and now + that:
//!   an answer never shortens it.
//! - Each family has a capacity; a new address beyond it is refused (counted by the caller),
//!   a live entry is never evicted for it.
//! - An address claimed by two sets goes to the one that comes first in the configuration;
//!   the other is remembered (`steer explain` names both).
//!
//! Writes are planned first ([`Table::plan`]) and committed once the kernel took them
//! ([`Table::commit`]), so the table never holds what the kernel does not.

use std::{collections::HashMap, net::IpAddr};

use super::rebind::Refusal;

/// How TTLs become lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clamp {
    pub min_ttl: u32,
    pub max_ttl: u32,
}

impl Clamp {
    pub fn apply(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

/// One learned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rule: u32,
    /// A set that also claimed the address and lost.
    pub also_rule: Option<u32>,
    /// Expiry, in the table's clock.
    pub expires: u64,
    /// The name it was learned for.
    pub name: String,
}

/// One address an answer gives a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    pub rule: u32,
    /// The set's position in the configuration.
    pub rank: usize,
    pub name: &'a str,
    pub ttl: u32,
}

/// What learning one address needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Write this entry (new, or changed).
    Write { entry: Entry, new: bool },
    /// The entry already says all of it.
    Unchanged,
    /// Not learned.
    Refused(Refusal),
}

/// Every learned address.
#[derive(Clone, Debug)]
pub struct Table {
    entries: HashMap<IpAddr, Entry>,
    pub clamp: Clamp,
    /// Capacities of IPv4 and IPv6.
    pub capacity: [usize; 2],
    count: [usize; 2],
}

fn family(addr: &IpAddr) -> usize {
    usize::from(addr.is_ipv6())
}

impl Table {
    pub fn new(clamp: Clamp, capacity: [usize; 2]) -> Table {
        Table {
            entries: HashMap::new(),
            clamp,
            capacity,
            count: [0; 2],
        }
    }

    /// Entries (IPv4, IPv6).
    pub fn counts(&self) -> [usize; 2] {
        self.count
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&Entry> {
        self.entries.get(addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Entry)> {
        self.entries.iter()
    }

    /// What `claim` on `addr` at `now` asks of the kernel. `rank_of` gives the configuration
    /// position of a rule's set (`None`: the set is gone, so it loses).
    pub fn plan(
        &self,
        addr: IpAddr,
        claim: &Claim<'_>,
        now: u64,
        rank_of: impl Fn(u32) -> Option<usize>,
    ) -> Plan {
        let until = now.saturating_add(u64::from(self.clamp.apply(claim.ttl)));
        let Some(old) = self.entries.get(&addr) else {
            if self.count[family(&addr)] >= self.capacity[family(&addr)] {
                return Plan::Refused(Refusal::Capacity);
            }
            return Plan::Write {
                entry: Entry {
                    rule: claim.rule,
                    also_rule: None,
                    expires: until,
                    name: claim.name.to_owned(),
                },
                new: true,
            };
        };
        // The common case (the same set asked again within the expiry it already has) is
        // decided without building a new entry.
        if claim.rule == old.rule && old.expires >= until && old.name == claim.name {
            return Plan::Unchanged;
        }
        let mut entry = old.clone();
        entry.expires = old.expires.max(until);
        if claim.rule == old.rule {
            entry.name = claim.name.to_owned();
        } else {
            let old_first = rank_of(old.rule).is_some_and(|r| r < claim.rank);
            if old_first {
                entry.also_rule = Some(claim.rule);
            } else {
                entry.also_rule = Some(old.rule);
                entry.rule = claim.rule;
                entry.name = claim.name.to_owned();
            }
        }
        if entry == *old {
            Plan::Unchanged
        } else {
            Plan::Write { entry, new: false }
        }
    }

    /// Records an entry the kernel now holds.
    pub fn commit(&mut self, addr: IpAddr, entry: Entry) {
        if self.entries.insert(addr, entry).is_none() {
            self.count[family(&addr)] += 1;
        }
    }

    /// Forgets an entry the kernel no longer holds.
    pub fn remove(&mut self, addr: &IpAddr) -> Option<Entry> {
        let gone = self.entries.remove(addr);
        if gone.is_some() {
            self.count[family(addr)] -= 1;
        }
        gone
    }

    /// Addresses whose entry expired at `now`.
    pub fn expired(&self, now: u64) -> Vec<IpAddr> {
        self.entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Addresses whose entry `keep` refuses (a reload that removed their domain or set).
    pub fn stale(&self, keep: impl Fn(&Entry) -> bool) -> Vec<IpAddr> {
        self.entries
            .iter()
            .filter(|(_, e)| !keep(e))
            .map(|(a, _)| *a)
            .collect()
    }

    /// The earliest expiry, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.entries.values().map(|e| e.expires).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(cap: usize) -> Table {
        Table::new(
            Clamp {
                min_ttl: 60,
                max_ttl: 3600,
            },
            [cap, cap],
        )
    }

    fn claim(rule: u32, rank: usize, ttl: u32) -> Claim<'static> {
        Claim {
            rule,
            rank,
            name: "a.example",
            ttl,
        }
    }

    /// Plans and commits like the daemon does when the kernel write succeeds.
    fn learn(t: &mut Table, addr: &str, c: &Claim<'_>, now: u64) -> Plan {
        let addr = addr.parse().unwrap();
        let plan = t.plan(addr, c, now, |r| Some(r as usize));
        if let Plan::Write { entry, .. } = &plan {
            t.commit(addr, entry.clone());
        }
        plan
    }

    #[test]
    fn ttls_are_clamped_and_an_expiry_is_never_shortened() {
        let mut t = table(10);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        learn(&mut t, "198.51.100.1", &claim(1, 1, 5), 1000);
        assert_eq!(t.get(&a).unwrap().expires, 1060, "min_ttl");
        learn(&mut t, "198.51.100.1", &claim(1, 1, 1_000_000), 1000);
        assert_eq!(t.get(&a).unwrap().expires, 4600, "max_ttl");
        assert_eq!(
            learn(&mut t, "198.51.100.1", &claim(1, 1, 120), 1100),
            Plan::Unchanged,
            "a shorter answer keeps the later expiry"
        );
        assert_eq!(t.get(&a).unwrap().expires, 4600);
        learn(&mut t, "198.51.100.1", &claim(1, 1, 3600), 2000);
        assert_eq!(
            t.get(&a).unwrap().expires,
            5600,
            "a later answer extends it"
        );
        assert!(t.expired(5599).is_empty());
        assert_eq!(t.expired(5600), [a]);
    }

    #[test]
    fn a_full_family_refuses_new_addresses_and_keeps_the_old_ones() {
        let mut t = table(2);
        for (i, a) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
            assert!(matches!(
                learn(&mut t, a, &claim(1, 1, 60), i as u64),
                Plan::Write { new: true, .. }
            ));
        }
        assert_eq!(
            learn(&mut t, "192.0.2.3", &claim(1, 1, 60), 5),
            Plan::Refused(Refusal::Capacity)
        );
        assert!(
            matches!(
                learn(&mut t, "192.0.2.1", &claim(1, 1, 600), 5),
                Plan::Write { new: false, .. }
            ),
            "a known address is still refreshed"
        );
        assert!(
            matches!(
                learn(&mut t, "2001:db8::1", &claim(1, 1, 60), 5),
                Plan::Write { new: true, .. }
            ),
            "the other family has its own capacity"
        );
        assert_eq!(t.counts(), [2, 1]);
        t.remove(&"192.0.2.2".parse().unwrap());
        assert!(matches!(
            learn(&mut t, "192.0.2.3", &claim(1, 1, 60), 6),
            Plan::Write { new: true, .. }
        ));
    }

    #[test]
    fn the_first_set_in_the_configuration_wins_and_the_other_is_remembered() {
        let mut t = table(10);
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        learn(&mut t, "203.0.113.5", &claim(7, 7, 60), 0);
        learn(&mut t, "203.0.113.5", &claim(3, 3, 60), 0);
        let e = t.get(&a).unwrap();
        assert_eq!((e.rule, e.also_rule), (3, Some(7)), "set 3 comes first");
        learn(&mut t, "203.0.113.5", &claim(9, 9, 60), 0);
        let e = t.get(&a).unwrap();
        assert_eq!((e.rule, e.also_rule), (3, Some(9)));
        assert_eq!(t.stale(|e| e.rule != 3), [a]);
    }
}

//! The learned addresses and their lifetimes: pure, on a clock passed in (seconds of
//! `CLOCK_BOOTTIME` in the daemon, anything in tests).
//!
//! - An address holds the claims of up to two sets ([`Hold`]), each with its own expiry and the
//!   name whose answer gave it. An answer's TTL is clamped to `[min_ttl, max_ttl]` (clients
//!   often cache longer than the TTL says); a set's claim then lives until the later of its
//!   current expiry and now + that: an answer never shortens it, and one set's answers never
//!   lengthen another's claim.
//! - The claim whose set comes first in the configuration wins (its rule steers); the other is
//!   the runner-up, which takes over when the winner's claim expires or a reload drops it. A
//!   third set's claim keeps the two best ranked: two are what the kernel entry has room for,
//!   and a third would only matter once both others are gone.
//! - A claim expires alone: the address goes only when no claim is left ([`Table::revise`]).
//!   A reload drops exactly the claims whose name no longer matches their set and ranks the
//!   rest by the new configuration.
//! - Each family has a capacity; a new address beyond it is refused (counted by the caller),
//!   a live entry is never evicted for it.
//!
//! Writes are planned first ([`Table::plan`], [`Table::revise`]) and committed once the kernel
//! took them ([`Table::commit`], [`Table::remove`]), so the table never holds what the kernel
//! does not.

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

/// One set's claim on an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub rule: u32,
    /// Expiry, in the table's clock: the latest any of the set's answers gave.
    pub expires: u64,
    /// The name whose answer gave that expiry.
    pub name: String,
}

/// One learned address: the winning claim (it steers) and the runner-up's, if another set
/// claimed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub win: Hold,
    pub also: Option<Hold>,
}

impl Entry {
    pub fn new(win: Hold) -> Entry {
        Entry { win, also: None }
    }

    /// The rule the address steers to.
    pub fn rule(&self) -> u32 {
        self.win.rule
    }

    /// The claims, winner first.
    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        std::iter::once(&self.win).chain(self.also.as_ref())
    }

    /// When a claim of the entry expires first.
    pub fn next_expiry(&self) -> u64 {
        self.holds()
            .map(|h| h.expires)
            .min()
            .unwrap_or(self.win.expires)
    }

    /// The entry `holds` make, best ranked first by `rank_of` (a set it does not know ranks
    /// last; equal ranks keep their order), the two best kept; `None` without any.
    fn ranked(mut holds: Vec<Hold>, rank_of: impl Fn(u32) -> Option<usize>) -> Option<Entry> {
        holds.sort_by_key(|h| rank_of(h.rule).unwrap_or(usize::MAX));
        let mut it = holds.into_iter();
        Some(Entry {
            win: it.next()?,
            also: it.next(),
        })
    }
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

/// What an address needs after some of its claims went ([`Table::revise`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Rewrite it: the claims left (the winner may be another set now).
    Write(Entry),
    /// Remove it: no claim is left.
    Remove,
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
    /// position of a rule's set (`None`: the set is gone, so it loses). Claims of the entry
    /// that expired at `now` (the timer has not removed them yet) count no more.
    pub fn plan(
        &self,
        addr: IpAddr,
        claim: &Claim<'_>,
        now: u64,
        rank_of: impl Fn(u32) -> Option<usize>,
    ) -> Plan {
        let until = now.saturating_add(u64::from(self.clamp.apply(claim.ttl)));
        let fresh = Hold {
            rule: claim.rule,
            expires: until,
            name: claim.name.to_owned(),
        };
        let Some(old) = self.entries.get(&addr) else {
            if self.count[family(&addr)] >= self.capacity[family(&addr)] {
                return Plan::Refused(Refusal::Capacity);
            }
            return Plan::Write {
                entry: Entry::new(fresh),
                new: true,
            };
        };
        // The common case (the winning set asked again within the expiry it already has) is
        // decided without building a new entry.
        let w = &old.win;
        if w.rule == claim.rule
            && (w.expires > until || (w.expires == until && w.name == claim.name))
        {
            return Plan::Unchanged;
        }
        let mut holds: Vec<Hold> = old.holds().filter(|h| h.expires > now).cloned().collect();
        match holds.iter_mut().find(|h| h.rule == claim.rule) {
            // The name follows the answer that gave the expiry.
            Some(h) if h.expires <= until => *h = fresh,
            Some(_) => {}
            None => holds.push(fresh),
        }
        let rank = |r| {
            if r == claim.rule {
                Some(claim.rank)
            } else {
                rank_of(r)
            }
        };
        let entry = Entry::ranked(holds, rank).expect("holds the claim");
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

    /// What keeping only the claims `keep` accepts, ranked by `rank_of`, changes: the
    /// addresses whose entry then differs, each with what it needs. Expiry keeps the claims
    /// that outlive now; a reload those whose name still matches their set.
    pub fn revise(
        &self,
        keep: impl Fn(&IpAddr, &Hold) -> bool,
        rank_of: impl Fn(u32) -> Option<usize>,
    ) -> Vec<(IpAddr, Change)> {
        self.entries
            .iter()
            .filter_map(|(addr, e)| {
                let left: Vec<Hold> = e.holds().filter(|h| keep(addr, h)).cloned().collect();
                match Entry::ranked(left, &rank_of) {
                    None => Some((*addr, Change::Remove)),
                    Some(next) if next != *e => Some((*addr, Change::Write(next))),
                    Some(_) => None,
                }
            })
            .collect()
    }

    /// What the claims expired at `now` change ([`Table::revise`]): the runner-up of an
    /// address whose winner expired takes over; an address without claims goes.
    pub fn expire(&self, now: u64) -> Vec<(IpAddr, Change)> {
        // One claim at most is left of two, so no ranking is needed.
        self.revise(|_, h| h.expires > now, |_| None)
    }

    /// The earliest expiry of a claim, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.entries.values().map(Entry::next_expiry).min()
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
        named(rule, rank, "a.example", ttl)
    }

    fn named(rule: u32, rank: usize, name: &'static str, ttl: u32) -> Claim<'static> {
        Claim {
            rule,
            rank,
            name,
            ttl,
        }
    }

    /// The configuration order of the tests: a rule's set comes at its number.
    fn by_number(r: u32) -> Option<usize> {
        Some(r as usize)
    }

    /// Plans and commits like the daemon does when the kernel write succeeds.
    fn learn(t: &mut Table, addr: &str, c: &Claim<'_>, now: u64) -> Plan {
        let addr = addr.parse().unwrap();
        let plan = t.plan(addr, c, now, by_number);
        if let Plan::Write { entry, .. } = &plan {
            t.commit(addr, entry.clone());
        }
        plan
    }

    /// Applies the changes `plan` makes like the daemon does when the kernel took them.
    fn apply(t: &mut Table, plan: impl FnOnce(&Table) -> Vec<(IpAddr, Change)>) -> usize {
        let changes = plan(t);
        let mut removed = 0;
        for (addr, change) in changes {
            match change {
                Change::Write(e) => t.commit(addr, e),
                Change::Remove => {
                    t.remove(&addr);
                    removed += 1;
                }
            }
        }
        removed
    }

    /// (rule, expiry, name) of the winner and the runner-up of `addr`.
    fn claims(t: &Table, addr: &str) -> Vec<(u32, u64, String)> {
        t.get(&addr.parse().unwrap())
            .map(|e| {
                e.holds()
                    .map(|h| (h.rule, h.expires, h.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn ttls_are_clamped_and_an_expiry_is_never_shortened() {
        let mut t = table(10);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        learn(&mut t, "198.51.100.1", &claim(1, 1, 5), 1000);
        assert_eq!(t.get(&a).unwrap().win.expires, 1060, "min_ttl");
        learn(&mut t, "198.51.100.1", &claim(1, 1, 1_000_000), 1000);
        assert_eq!(t.get(&a).unwrap().win.expires, 4600, "max_ttl");
        assert_eq!(
            learn(&mut t, "198.51.100.1", &claim(1, 1, 120), 1100),
            Plan::Unchanged,
            "a shorter answer keeps the later expiry"
        );
        assert_eq!(
            learn(&mut t, "198.51.100.1", &named(1, 1, "b.example", 120), 1100),
            Plan::Unchanged,
            "nor does a shorter answer for another name of the set change the name"
        );
        assert_eq!(t.get(&a).unwrap().win.expires, 4600);
        learn(
            &mut t,
            "198.51.100.1",
            &named(1, 1, "b.example", 3600),
            2000,
        );
        assert_eq!(
            claims(&t, "198.51.100.1"),
            [(1, 5600, "b.example".into())],
            "a later answer extends it, and names it"
        );
        assert_eq!(t.next_expiry(), Some(5600));
        assert!(t.expire(5599).is_empty());
        assert_eq!(t.expire(5600), [(a, Change::Remove)]);
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
                learn(&mut t, "192.0.2.1", &claim(2, 2, 600), 5),
                Plan::Write { new: false, .. }
            ),
            "and claimed by another set: that takes no room"
        );
        assert!(
            matches!(
                learn(&mut t, "2001:db8::1", &claim(1, 1, 60), 5),
                Plan::Write { new: true, .. }
            ),
            "the other family has its own capacity"
        );
        assert_eq!(t.counts(), [2, 1]);
        // Room is made only by addresses that lost their last claim.
        assert_eq!(
            apply(&mut t, |t| t.expire(70)),
            2,
            "192.0.2.2 and 2001:db8::1 go"
        );
        assert_eq!(t.counts(), [1, 0]);
        assert!(matches!(
            learn(&mut t, "192.0.2.3", &claim(1, 1, 60), 70),
            Plan::Write { new: true, .. }
        ));
        assert_eq!(
            learn(&mut t, "192.0.2.4", &claim(1, 1, 60), 70),
            Plan::Refused(Refusal::Capacity)
        );
    }

    #[test]
    fn the_first_set_in_the_configuration_wins_and_the_other_is_remembered() {
        let mut t = table(10);
        learn(&mut t, "203.0.113.5", &named(7, 7, "x.seven", 600), 0);
        learn(&mut t, "203.0.113.5", &named(3, 3, "x.three", 60), 0);
        assert_eq!(
            claims(&t, "203.0.113.5"),
            [(3, 60, "x.three".into()), (7, 600, "x.seven".into())],
            "set 3 comes first; each claim keeps its own expiry and name"
        );
        // The runner-up's answers refresh its own claim, not the winner's.
        learn(&mut t, "203.0.113.5", &named(7, 7, "y.seven", 900), 10);
        assert_eq!(
            claims(&t, "203.0.113.5"),
            [(3, 60, "x.three".into()), (7, 910, "y.seven".into())]
        );
    }

    #[test]
    fn three_claimants_keep_the_two_best_ranked() {
        let mut t = table(10);
        learn(&mut t, "203.0.113.6", &named(5, 5, "five", 60), 0);
        learn(&mut t, "203.0.113.6", &named(9, 9, "nine", 60), 0);
        assert_eq!(
            learn(&mut t, "203.0.113.6", &named(11, 11, "eleven", 60), 0),
            Plan::Unchanged,
            "ranked third: not kept"
        );
        learn(&mut t, "203.0.113.6", &named(2, 2, "two", 60), 0);
        let rules: Vec<u32> = claims(&t, "203.0.113.6").iter().map(|c| c.0).collect();
        assert_eq!(rules, [2, 5], "the best ranked pushes the third out");
        // An expired claim counts no more: a later set takes its place at once.
        learn(&mut t, "203.0.113.6", &named(2, 2, "two", 3600), 30);
        learn(&mut t, "203.0.113.6", &named(9, 9, "nine", 60), 100);
        assert_eq!(
            claims(&t, "203.0.113.6"),
            [(2, 3630, "two".into()), (9, 160, "nine".into())]
        );
    }

    /// D2: a short claim of the winner is not stretched to the runner-up's; when it expires
    /// the runner-up takes over with its own expiry, and the address goes with the last claim.
    #[test]
    fn the_winners_claim_expires_alone_and_the_runner_up_takes_over() {
        let mut t = Table::new(
            Clamp {
                min_ttl: 5,
                max_ttl: 86_400,
            },
            [10, 10],
        );
        let a: IpAddr = "198.18.5.4".parse().unwrap();
        learn(
            &mut t,
            "198.18.5.4",
            &named(2, 2, "sh4.cdn.other", 3000),
            1000,
        );
        learn(
            &mut t,
            "198.18.5.4",
            &named(1, 1, "sh4.listed.test", 2),
            1000,
        );
        assert_eq!(
            claims(&t, "198.18.5.4"),
            [
                (1, 1005, "sh4.listed.test".into()),
                (2, 4000, "sh4.cdn.other".into())
            ]
        );
        assert_eq!(t.next_expiry(), Some(1005));
        assert!(t.expire(1004).is_empty());
        let changes = t.expire(1005);
        assert_eq!(
            changes,
            [(
                a,
                Change::Write(Entry::new(Hold {
                    rule: 2,
                    expires: 4000,
                    name: "sh4.cdn.other".into()
                }))
            )],
            "the runner-up takes over"
        );
        assert_eq!(apply(&mut t, |_| changes), 0);
        assert_eq!(t.next_expiry(), Some(4000));
        assert_eq!(apply(&mut t, |t| t.expire(4000)), 1);
        assert_eq!(t.counts(), [0, 0]);
        // The runner-up expiring first leaves the winner alone (the entry drops it).
        learn(
            &mut t,
            "198.18.5.4",
            &named(1, 1, "sh4.listed.test", 600),
            5000,
        );
        learn(
            &mut t,
            "198.18.5.4",
            &named(2, 2, "sh4.cdn.other", 60),
            5000,
        );
        apply(&mut t, |t| t.expire(5060));
        assert_eq!(
            claims(&t, "198.18.5.4"),
            [(1, 5600, "sh4.listed.test".into())]
        );
    }

    /// D1: a reload that removes one set's domain keeps the address for the other's claim.
    #[test]
    fn a_reload_drops_only_the_claims_that_no_longer_match() {
        let mut t = table(10);
        learn(
            &mut t,
            "198.18.5.1",
            &named(1, 1, "shared.listed.test", 600),
            0,
        );
        learn(&mut t, "198.18.5.1", &named(2, 2, "shared.other", 300), 0);
        learn(
            &mut t,
            "198.18.5.2",
            &named(1, 1, "only.listed.test", 600),
            0,
        );
        // listed.test is no longer set 1's.
        let keep = |_: &IpAddr, h: &Hold| !h.name.ends_with("listed.test");
        let changes = t.revise(keep, by_number);
        assert_eq!(
            apply(&mut t, |_| changes),
            1,
            "only the address left without claims"
        );
        assert_eq!(
            claims(&t, "198.18.5.1"),
            [(2, 300, "shared.other".into())],
            "set 2 owns it, until its own claim expires"
        );
        assert!(t.get(&"198.18.5.2".parse().unwrap()).is_none());
        assert!(t.revise(keep, by_number).is_empty(), "nothing more to do");
    }

    /// D3: a reload that reorders the sets re-ranks the claims already learned.
    #[test]
    fn a_reload_that_reorders_the_sets_reranks_the_addresses() {
        let mut t = table(10);
        let a: IpAddr = "198.18.5.3".parse().unwrap();
        learn(&mut t, "198.18.5.3", &named(1, 1, "one.test", 600), 0);
        learn(&mut t, "198.18.5.3", &named(2, 2, "two.test", 300), 0);
        learn(&mut t, "198.18.5.9", &named(1, 1, "one.test", 600), 0);
        // Set 2 now comes before set 1.
        let reversed = |r: u32| Some(10 - r as usize);
        let changes = t.revise(|_, _| true, reversed);
        assert_eq!(changes.len(), 1, "only the shared address changes");
        assert_eq!(changes[0].0, a);
        apply(&mut t, |_| changes);
        assert_eq!(
            claims(&t, "198.18.5.3"),
            [(2, 300, "two.test".into()), (1, 600, "one.test".into())]
        );
        // And a set that is gone loses to any configured one.
        let without_2 = |r: u32| (r != 2).then_some(r as usize);
        apply(&mut t, |t| t.revise(|_, _| true, without_2));
        assert_eq!(t.get(&a).unwrap().rule(), 1);
    }
}

//! Runtime set entries: prefixes added to a configured set with `steer set NAME add`, kept
//! apart from the prefixes its configuration gives it, like ipset elements beside a list.
//!
//! Invariants (the controller keeps them; this module checks what an edit asks):
//!
//! - A prefix is in at most one set per map, configured or at runtime: an add of a prefix
//!   another set holds is refused, as a list duplicate is.
//! - A runtime entry of set S is never also configured in S: adding a configured prefix
//!   records nothing, and a reload that configures a runtime entry drops its record. So
//!   deleting or expiring a runtime entry always removes its prefix from the kernel, and a
//!   reload that drops a prefix from a list never removes one added at runtime.
//! - Deadlines are seconds of `CLOCK_BOOTTIME` (as the learned hosts' are): a restarted daemon
//!   reads them back from the journal ([`journal`]) and they keep counting.
//!
//! Everything here is pure: [`RuntimeSets`] is the table, [`plan`] turns a request into the
//! kernel writes and table changes it needs, or into every reason it is refused.

pub mod journal;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use crate::{
    model::{Direction, PrefixMap, PrefixSets},
    prefix::{Prefix, parse_prefix},
};

/// The runtime entries of one set, with their deadlines (`None`: until deleted).
pub type Entries = BTreeMap<Prefix, Option<u64>>;

/// Seconds an entry whose deadline is `deadline` has left at `now` (both `CLOCK_BOOTTIME`
/// seconds); negative once it has expired: the daemon removes it when it runs, and until then
/// it still steers.
pub fn seconds_left(deadline: u64, now: u64) -> i64 {
    i64::try_from(i128::from(deadline) - i128::from(now)).unwrap_or(i64::MIN)
}

/// When an entry with `left` seconds goes: "removed in N s", or once expired (no daemon ran to
/// remove it) "expired N s ago; removed when the daemon runs", as learned DNS hosts say it.
pub fn removal(left: i64) -> String {
    if left >= 0 {
        format!("removed in {left} s")
    } else {
        format!(
            "expired {} s ago; removed when the daemon runs",
            left.unsigned_abs()
        )
    }
}

/// Every runtime entry, by set name, with its deadline (`None`: until deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeSets {
    /// Shared, so that `steer set NAME list` takes a snapshot of a set without copying it and
    /// encodes it off the event loop; an edit while a snapshot is out copies the set once.
    sets: BTreeMap<String, Arc<Entries>>,
    /// (deadline, set, prefix) of every entry with a timeout, soonest first.
    expiring: BTreeSet<(u64, String, Prefix)>,
}

impl RuntimeSets {
    /// The entry of `prefix` in `set`: its deadline, if it is there.
    pub fn get(&self, set: &str, prefix: &Prefix) -> Option<Option<u64>> {
        self.sets.get(set)?.get(prefix).copied()
    }

    /// The entries of `set`, sorted.
    pub fn entries(&self, set: &str) -> impl Iterator<Item = (&Prefix, &Option<u64>)> {
        self.sets
            .get(set)
            .into_iter()
            .flat_map(|entries| entries.iter())
    }

    /// The entries of `set` as they are now, shared: later changes do not show in it.
    pub fn snapshot(&self, set: &str) -> Arc<Entries> {
        self.sets.get(set).cloned().unwrap_or_default()
    }

    /// Runtime entries of `set`.
    pub fn len_of(&self, set: &str) -> usize {
        self.sets.get(set).map_or(0, |entries| entries.len())
    }

    pub fn len(&self) -> usize {
        self.sets.values().map(|entries| entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Every (set, prefix, deadline).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Prefix, &Option<u64>)> {
        self.sets
            .iter()
            .flat_map(|(set, entries)| entries.iter().map(move |(p, d)| (set.as_str(), p, d)))
    }

    /// Adds or replaces an entry (a new deadline replaces the old one, as `ipset -exist`).
    pub fn insert(&mut self, set: &str, prefix: Prefix, deadline: Option<u64>) {
        let entries = Arc::make_mut(self.sets.entry(set.to_owned()).or_default());
        if let Some(Some(old)) = entries.insert(prefix, deadline) {
            self.expiring.remove(&(old, set.to_owned(), prefix));
        }
        if let Some(at) = deadline {
            self.expiring.insert((at, set.to_owned(), prefix));
        }
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove(&mut self, set: &str, prefix: &Prefix) -> bool {
        let Some(entries) = self.sets.get_mut(set) else {
            return false;
        };
        if !entries.contains_key(prefix) {
            return false;
        }
        let entries = Arc::make_mut(entries);
        let Some(deadline) = entries.remove(prefix) else {
            return false;
        };
        if entries.is_empty() {
            self.sets.remove(set);
        }
        if let Some(at) = deadline {
            self.expiring.remove(&(at, set.to_owned(), *prefix));
        }
        true
    }

    /// The entries whose deadline is at or before `now`.
    pub fn expired(&self, now: u64) -> Vec<(String, Prefix)> {
        self.expiring
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .map(|(_, set, p)| (set.clone(), *p))
            .collect()
    }

    /// The soonest deadline.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiring.first().map(|(at, _, _)| *at)
    }
}

/// The configured set an edit applies to.
#[derive(Clone, Copy, Debug)]
pub struct SetView<'a> {
    pub name: &'a str,
    pub rule: u32,
    pub direction: Direction,
    pub allow_default_route: bool,
}

/// What an edit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add, until `deadline` (seconds of `CLOCK_BOOTTIME`) or until deleted.
    Add {
        deadline: Option<u64>,
    },
    Del,
    /// Delete every runtime entry of the set.
    Flush,
}

/// How the prefixes of a request fared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// New in the set.
    pub added: usize,
    /// Runtime entries already there, given the new timeout.
    pub refreshed: usize,
    /// Already in the set's configuration: nothing to do.
    pub configured: usize,
    pub removed: usize,
    /// Not in the set (a delete): nothing to do.
    pub absent: usize,
}

/// The kernel writes and table changes of one accepted edit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Prefixes to write into the set's maps.
    pub writes: Vec<Prefix>,
    /// Prefixes to remove from them.
    pub removals: Vec<Prefix>,
    /// Entries to record (new, or with a new deadline) once the writes are done.
    pub records: Vec<(Prefix, Option<u64>)>,
    /// Entries to forget once the removals are done.
    pub forget: Vec<Prefix>,
    pub summary: Summary,
}

/// Who holds a prefix, for a refusal: the set's name and, if configured, where.
pub trait Owners {
    /// The name of the set with rule id `rule`.
    fn name_of(&self, rule: u32) -> String;
    /// Where `set`'s configuration gives it `prefix` ("lists/x.txt:3"), if it does.
    fn origin(&self, set: &str, prefix: &Prefix) -> Option<String>;
}

/// At most this many reasons are listed for a refused edit (then "and N more").
const MAX_REASONS: usize = 10;

/// Parses the prefixes of a request the way list lines are parsed; every bad one is named.
pub fn parse(tokens: &[String], allow_default_route: bool) -> Result<Vec<Prefix>, Vec<String>> {
    let mut good = Vec::with_capacity(tokens.len());
    let mut bad = Vec::new();
    for token in tokens {
        match parse_prefix(token.trim(), allow_default_route) {
            Ok(p) => good.push(p),
            Err(e) => bad.push(format!("{}; {}", e.message(), e.hint())),
        }
    }
    if bad.is_empty() { Ok(good) } else { Err(bad) }
}

/// Plans `op` on `set` for `prefixes` (in any order, repeats allowed) against the runtime
/// table and what the maps hold (`held`). Every prefix is checked before anything is planned:
/// a refusal lists each reason (up to [`MAX_REASONS`]) and plans nothing.
pub fn plan(
    table: &RuntimeSets,
    set: SetView,
    op: Op,
    mut prefixes: Vec<Prefix>,
    held: &PrefixSets,
    owners: &impl Owners,
) -> Result<Plan, Vec<String>> {
    prefixes.sort_unstable();
    prefixes.dedup();
    // Sized once: a bulk edit's plan is most of its memory, and doubling would waste half.
    let mut plan = Plan {
        writes: Vec::with_capacity(prefixes.len()),
        records: Vec::with_capacity(if matches!(op, Op::Add { .. }) {
            prefixes.len()
        } else {
            0
        }),
        ..Plan::default()
    };
    let mut refusals = Refusals::default();
    match op {
        Op::Add { deadline } => {
            for p in prefixes {
                plan_add(
                    table,
                    set,
                    p,
                    deadline,
                    held,
                    owners,
                    &mut plan,
                    &mut refusals,
                );
            }
        }
        Op::Del => {
            for p in prefixes {
                plan_del(table, set, p, held, owners, &mut plan, &mut refusals);
            }
        }
        Op::Flush => {
            let all: Vec<Prefix> = table.entries(set.name).map(|(p, _)| *p).collect();
            plan.summary.removed = all.len();
            plan.removals.clone_from(&all);
            plan.forget = all;
        }
    }
    refusals.into_result(plan)
}

#[allow(clippy::too_many_arguments)]
fn plan_add(
    table: &RuntimeSets,
    set: SetView,
    p: Prefix,
    deadline: Option<u64>,
    held: &PrefixSets,
    owners: &impl Owners,
    plan: &mut Plan,
    refusals: &mut Refusals,
) {
    if p.len() == 0 && !set.allow_default_route {
        refusals.push(|| {
            format!(
                "`{p}` is the default route: set {} does not take it; set \
                 `allow_default_route = true` on the set if it should match everything",
                set.name
            )
        });
        return;
    }
    match held.map(PrefixMap::of(set.direction, &p)).get(&p) {
        Some(rule) if rule != set.rule => refusals.push(|| {
            let other = owners.name_of(rule);
            // A runtime entry is known here; only a configured one is looked up (its list may
            // be read again to find the line).
            let place = if table.get(&other, &p).is_some() {
                " (a runtime entry)".to_owned()
            } else {
                let at = owners.origin(&other, &p);
                format!(" (from {})", at.as_deref().unwrap_or("its configuration"))
            };
            format!(
                "`{p}` is in set {other}{place}: a prefix belongs to one set; remove it there \
                 first (`steer set {other} del {p}` for a runtime entry)"
            )
        }),
        Some(_) if table.get(set.name, &p).is_none() => plan.summary.configured += 1,
        Some(_) => {
            plan.summary.refreshed += 1;
            plan.records.push((p, deadline));
        }
        None => {
            plan.summary.added += 1;
            plan.writes.push(p);
            plan.records.push((p, deadline));
        }
    }
}

fn plan_del(
    table: &RuntimeSets,
    set: SetView,
    p: Prefix,
    held: &PrefixSets,
    owners: &impl Owners,
    plan: &mut Plan,
    refusals: &mut Refusals,
) {
    if table.get(set.name, &p).is_some() {
        plan.summary.removed += 1;
        plan.removals.push(p);
        plan.forget.push(p);
        return;
    }
    match held.map(PrefixMap::of(set.direction, &p)).get(&p) {
        Some(rule) if rule == set.rule => refusals.push(|| {
            let place = owners
                .origin(set.name, &p)
                .map(|o| format!(" ({o})"))
                .unwrap_or_default();
            format!(
                "`{p}` comes from the configuration of set {}{place}: remove it there and run \
                 `steer reload`",
                set.name
            )
        }),
        _ => plan.summary.absent += 1,
    }
}

/// The reasons an edit is refused: the first [`MAX_REASONS`] spelled out, the rest counted.
#[derive(Default)]
struct Refusals {
    reasons: Vec<String>,
    more: usize,
}

impl Refusals {
    fn push(&mut self, reason: impl FnOnce() -> String) {
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason());
        } else {
            self.more += 1;
        }
    }

    fn into_result(mut self, plan: Plan) -> Result<Plan, Vec<String>> {
        if self.reasons.is_empty() {
            return Ok(plan);
        }
        if self.more > 0 {
            self.reasons
                .push(format!("and {} more prefixes refused", self.more));
        }
        Err(self.reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry past its deadline while no daemon runs still steers: it says so, not "0 s".
    #[test]
    fn an_expired_entry_says_when_it_expired_and_when_it_goes() {
        assert_eq!(seconds_left(110, 100), 10);
        assert_eq!(seconds_left(100, 108), -8);
        assert_eq!(removal(10), "removed in 10 s");
        assert_eq!(removal(-8), "expired 8 s ago; removed when the daemon runs");
    }

    fn p(s: &str) -> Prefix {
        parse_prefix(s, true).unwrap()
    }

    const BYPASS: SetView = SetView {
        name: "bypass",
        rule: 1,
        direction: Direction::Dst,
        allow_default_route: false,
    };

    struct Names;
    impl Owners for Names {
        fn name_of(&self, rule: u32) -> String {
            ["default", "bypass", "vpn"][rule as usize].into()
        }
        fn origin(&self, set: &str, prefix: &Prefix) -> Option<String> {
            (set == "vpn" && *prefix == p("198.51.100.0/24")).then(|| "lists/vpn.txt:3".into())
        }
    }

    /// bypass has 203.0.113.0/24 configured; vpn has 198.51.100.0/24 configured and
    /// 192.0.2.0/24 at runtime.
    fn world() -> (RuntimeSets, PrefixSets) {
        let mut table = RuntimeSets::default();
        table.insert("vpn", p("192.0.2.0/24"), None);
        let mut held = PrefixSets::default();
        held.insert(Direction::Dst, p("203.0.113.0/24"), 1);
        held.insert(Direction::Dst, p("198.51.100.0/24"), 2);
        held.insert(Direction::Dst, p("192.0.2.0/24"), 2);
        (table, held)
    }

    #[test]
    fn an_add_writes_what_is_new_refreshes_runtime_entries_and_leaves_configured_ones() {
        let (mut table, held) = world();
        table.insert("bypass", p("10.1.0.0/16"), Some(50));
        let mut held = held;
        held.insert(Direction::Dst, p("10.1.0.0/16"), 1);
        let add = Op::Add {
            deadline: Some(100),
        };
        let wanted = vec![
            p("10.2.0.0/16"),
            p("10.1.0.0/16"),
            p("203.0.113.0/24"),
            p("10.2.0.0/16"),
        ];
        let plan = plan(&table, BYPASS, add, wanted, &held, &Names).unwrap();
        assert_eq!(plan.writes, [p("10.2.0.0/16")]);
        assert_eq!(
            plan.records,
            [(p("10.1.0.0/16"), Some(100)), (p("10.2.0.0/16"), Some(100))]
        );
        assert_eq!(
            (
                plan.summary.added,
                plan.summary.refreshed,
                plan.summary.configured
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn an_add_that_another_set_holds_is_refused_whole_naming_the_owner() {
        let (table, held) = world();
        let add = Op::Add { deadline: None };
        let wanted = vec![p("10.2.0.0/16"), p("198.51.100.0/24"), p("192.0.2.0/24")];
        let reasons = plan(&table, BYPASS, add, wanted, &held, &Names).unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].contains("set vpn (a runtime entry)"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("set vpn (from lists/vpn.txt:3)"),
            "{reasons:?}"
        );
        let default = vec![p("0.0.0.0/0")];
        let reasons = plan(&table, BYPASS, add, default, &held, &Names).unwrap_err();
        assert!(reasons[0].contains("allow_default_route"), "{reasons:?}");
    }

    #[test]
    fn a_delete_removes_runtime_entries_refuses_configured_ones_and_skips_absent_ones() {
        let (table, held) = world();
        let vpn = SetView {
            name: "vpn",
            rule: 2,
            ..BYPASS
        };
        let plan1 = plan(
            &table,
            vpn,
            Op::Del,
            vec![p("192.0.2.0/24"), p("10.9.0.0/16")],
            &held,
            &Names,
        )
        .unwrap();
        assert_eq!(plan1.removals, [p("192.0.2.0/24")]);
        assert_eq!(plan1.forget, plan1.removals);
        assert_eq!((plan1.summary.removed, plan1.summary.absent), (1, 1));
        let reasons = plan(
            &table,
            vpn,
            Op::Del,
            vec![p("198.51.100.0/24")],
            &held,
            &Names,
        )
        .unwrap_err();
        assert!(reasons[0].contains("lists/vpn.txt:3"), "{reasons:?}");
        let flush = plan(&table, vpn, Op::Flush, Vec::new(), &held, &Names).unwrap();
        assert_eq!(flush.removals, [p("192.0.2.0/24")]);
    }

    #[test]
    fn deadlines_expire_in_order_and_a_new_deadline_replaces_the_old() {
        let mut table = RuntimeSets::default();
        table.insert("a", p("10.0.0.0/8"), Some(30));
        table.insert("a", p("10.0.0.0/8"), Some(90));
        table.insert("b", p("10.0.0.0/8"), Some(60));
        table.insert("b", p("11.0.0.0/8"), None);
        assert_eq!(table.next_expiry(), Some(60));
        assert!(table.expired(59).is_empty());
        assert_eq!(table.expired(60), [("b".into(), p("10.0.0.0/8"))]);
        assert!(table.remove("b", &p("10.0.0.0/8")));
        assert_eq!(table.next_expiry(), Some(90));
        table.insert("a", p("10.0.0.0/8"), None);
        assert_eq!(table.next_expiry(), None);
        assert_eq!(table.len(), 2);
        assert!(table.remove("a", &p("10.0.0.0/8")));
        assert_eq!((table.len_of("a"), table.len_of("b")), (0, 1));
    }

    #[test]
    fn bad_prefixes_are_each_named_with_the_list_parser_s_words() {
        let tokens = ["10.0.0.0/8", "10.0.0.300", "0.0.0.0/0", "fd00::/129"].map(String::from);
        let bad = parse(&tokens, false).unwrap_err();
        assert_eq!(bad.len(), 3, "{bad:?}");
        let list = crate::config::parse_list("10.0.0.1\n10.0.0.300\n", false).unwrap_err();
        assert_eq!(bad[0], format!("{}; {}", list[0].message(), list[0].hint()));
    }
}

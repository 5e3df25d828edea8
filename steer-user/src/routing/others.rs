//! What other software on the router does with the routing steer depends on, as the kernel's
//! rules and the WAN tables show it: a WAN table another tool uses, rules of others that use the
//! mark bits steer owns, and a family whose main table no rule looks up any more. steer never
//! changes a rule it does not own, nor a route that is plainly another tool's: it says what it
//! found and what to do about it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
};

use super::{
    Desired, Family, MAIN_TABLE, RTPROT_STEER, WanSource,
    kernel::{ActualRoute, ActualRule, Snapshot},
};

/// A warning about someone else's routing, said once while it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    pub line: String,
    /// What it is about: a warning is said again only when this is new, not when its line
    /// changes with what it lists (a table another tool uses, whose routes that tool changes).
    pub about: String,
    /// Said (as news) once it no longer holds, when that is worth saying.
    pub cleared: Option<String>,
}

impl Warning {
    pub(crate) fn new(line: String) -> Warning {
        Warning {
            about: line.clone(),
            line,
            cleared: None,
        }
    }
}

/// A WAN's table that another tool uses: a rule that is not steer's looks it up, and the table
/// holds routes steer did not make. Were steer to take it over, its default route would answer
/// that rule's lookups (the traffic that tool sends there would leave by the WAN) and it would
/// delete that tool's routes, and the tool would put them back, for ever. A rule alone is not
/// enough: one written to send some traffic through steer's table on purpose (`from HOST lookup
/// 101`) finds only steer's routes there. Routes alone are not either: mwan3 or a script may
/// have left them in a table no rule looks up any more; steer removes those once ([`back`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInUse {
    pub wan: String,
    pub table: u32,
    /// `FILE:LINE:COLUMN: wan[NAME].table = N`.
    pub written: String,
    /// The rules of others that look it up, as `ip rule` would show them.
    pub rules: Vec<String>,
    /// The routes in it steer did not make (none for a moment while the tool replaces them).
    pub routes: Vec<String>,
}

impl TableInUse {
    /// What was found, without what steer does about it.
    fn found(&self) -> String {
        let (rules, look) = match self.rules.len() {
            1 => (self.rules[0].clone(), "looks"),
            _ => (self.rules.join(", "), "look"),
        };
        let routes = if self.routes.is_empty() {
            "held routes steer did not make a moment ago".to_owned()
        } else {
            format!("holds routes steer did not make: {}", listed(&self.routes))
        };
        format!(
            "{}: table {} is used by another tool: {rules}, not steer's, {look} it up, and it \
             {routes}",
            self.written, self.table
        )
    }

    fn what_to_do(&self) -> String {
        format!(
            "pick another `table` number for WAN {}, one that no rule looks up (`ip rule; ip -6 \
             rule`) and that holds no route (`ip route show table N`), and run `steer reload`",
            self.wan
        )
    }

    /// The daemon's warning while the table is another tool's: steer leaves it alone.
    pub(crate) fn withheld(&self) -> Warning {
        Warning {
            line: format!(
                "{}; steer leaves table {} alone: it places no rule or route for it (its default \
                 route would answer that tool's lookups, and that tool's routes would be removed), \
                 so WAN {}'s packets are routed by the rules after steer's, normally by the main \
                 table; {}",
                self.found(),
                self.table,
                self.wan,
                self.what_to_do()
            ),
            about: format!("table {} in use", self.table),
            cleared: Some(format!(
                "{}: table {} is no other tool's any more (no rule of another tool looks it \
                 up, or it has held none of that tool's routes for {GRACE} checks): steer \
                 places WAN {}'s rules and routes there",
                self.written, self.table, self.wan
            )),
        }
    }
}

impl fmt::Display for TableInUse {
    /// Why a configuration is refused.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; steer would take the table over: its default route would answer that tool's \
             lookups (the traffic that tool sends there would leave by WAN {}) and that tool's \
             routes would be removed; {}",
            self.found(),
            self.wan,
            self.what_to_do()
        )
    }
}

/// Every WAN table of a configuration that another tool uses, refused together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct TablesInUse(pub Vec<TableInUse>);

/// At most this many routes are named in a line; the others are counted.
const ROUTES_NAMED: usize = 3;

fn listed(items: &[String]) -> String {
    crate::shown::first_few(items, ROUTES_NAMED, ", ")
}

fn foreign(r: &ActualRule) -> bool {
    r.protocol != RTPROT_STEER
}

/// The WAN of `table` in `d`, as messages name it; a bare table without one (tests).
fn wan_of(d: &Desired, table: u32) -> (String, String) {
    match d.wans.iter().find(|w| w.table.value == table) {
        Some(w) => (w.name.clone(), w.table.written.clone()),
        None => ("(unnamed)".to_owned(), format!("table {table}")),
    }
}

/// The rules of others that look up `table`, and the routes in it steer did not make.
fn users(s: &Snapshot, table: u32) -> (Vec<String>, Vec<String>) {
    let rules = s
        .rules
        .iter()
        .filter(|r| foreign(r) && r.reach.table == Some(table))
        .map(|r| r.desc.clone())
        .collect();
    let routes = s
        .routes
        .iter()
        .filter(|r| r.table == table && r.protocol != RTPROT_STEER)
        .map(|r| r.desc.clone())
        .collect();
    (rules, routes)
}

/// The WAN tables found to be another tool's, each with the reconciles in a row that found
/// it without that tool's routes.
pub(crate) type Shared = HashMap<u32, u8>;

/// Reconciles in a row a table another tool uses may be found without that tool's routes and
/// still count as its: long enough for a tool replacing its routes (a restart), short enough
/// that a leftover removed by hand beside the owner's own rule (`from HOST lookup 101`) gives
/// the table back to steer at a later periodic check.
pub(crate) const GRACE: u8 = 3;

/// The tables of `d` that another tool uses by `s` ([`TableInUse`]). `known` are those found
/// so by the reconciles before: one stays another tool's while its rule is there, even when
/// its routes are gone for a moment (a tool replacing them), so steer does not slip its
/// default route in meanwhile; for at most [`GRACE`] reconciles.
pub(crate) fn tables_in_use(d: &Desired, s: &Snapshot, known: &Shared) -> Vec<TableInUse> {
    d.tables
        .iter()
        .filter_map(|&table| {
            let (rules, routes) = users(s, table);
            let kept = known.get(&table).is_some_and(|&n| n + 1 < GRACE);
            if rules.is_empty() || (routes.is_empty() && !kept) {
                return None;
            }
            let (wan, written) = wan_of(d, table);
            Some(TableInUse {
                wan,
                table,
                written,
                rules,
                routes,
            })
        })
        .collect()
}

/// What the next reconcile knows of `in_use`: how many in a row found each without routes.
pub(crate) fn still_shared(in_use: &[TableInUse], known: &Shared) -> Shared {
    in_use
        .iter()
        .map(|t| {
            let without = match (t.routes.is_empty(), known.get(&t.table)) {
                (true, Some(n)) => n + 1,
                _ => 0,
            };
            (t.table, without)
        })
        .collect()
}

/// Of `tables`, those another tool uses by `s` (`steer stop`, which has no configuration to
/// name them by): their routes that are not steer's stay.
pub(crate) fn tables_used(tables: &[u32], s: &Snapshot) -> HashSet<u32> {
    tables
        .iter()
        .copied()
        .filter(|&t| {
            let (rules, routes) = users(s, t);
            !rules.is_empty() && !routes.is_empty()
        })
        .collect()
}

/// Notes of `steer check` on the WAN tables that hold routes steer did not make, no rule of
/// another tool looking them up: leftovers (of mwan3, of a script) that steer removes when it
/// starts; one that comes back after that is left alone ([`back`]).
pub(crate) fn leftovers(d: &Desired, s: &Snapshot) -> Vec<String> {
    d.tables
        .iter()
        .filter_map(|&table| {
            let (rules, routes) = users(s, table);
            if !rules.is_empty() || routes.is_empty() {
                return None;
            }
            let (wan, written) = wan_of(d, table);
            Some(format!(
                "{written}: table {table} holds routes steer did not make: {}; steer removes \
                 them when it starts, as leftovers (of mwan3, of a script); if a running tool \
                 keeps them there, pick another `table` number for WAN {wan}, one that holds no \
                 route (`ip route show table N`)",
                listed(&routes)
            ))
        })
        .collect()
}

/// The warning about a route that is not steer's, in a WAN table, that steer removed (or
/// replaced) once and that is back: another tool keeps it there, and removing it again would
/// start a fight with no end. It is left alone.
pub(crate) fn back(d: &Desired, r: &ActualRoute, displaces: Option<&str>) -> Warning {
    let (wan, written) = wan_of(d, r.table);
    let displaced = match displaces {
        Some(own) => format!(", and steer does not place its own {own} in its stead"),
        None => String::new(),
    };
    Warning::new(format!(
        "{written}: {} came back after steer removed it: another tool keeps it in WAN {wan}'s \
         table, so steer leaves it alone{displaced}; pick another `table` number for WAN {wan} \
         (one that holds no route: `ip route show table N`) and run `steer reload`, or stop that \
         tool from adding it",
        r.desc
    ))
}

/// The rules of others whose mark selector uses bits of steer's `general.mark_mask`, wherever
/// they sit (those that take steer's marked packets first, `skip`, are warned about already):
/// packets that tool marks may be routed by steer's rule for a WAN, steer's may reach that
/// rule, and each stamps bits the other reads. One warning per mark selector, naming its rules
/// (both families). A rule that looks up a WAN's table routes by steer's marks on purpose; one
/// that selects none of steer's marks under those bits, with 0 there or as an exact mark,
/// cannot meet steer's packets.
pub(crate) fn mark_overlaps(d: &Desired, s: &Snapshot, skip: &[String]) -> Vec<Warning> {
    let mask = d.mask.value;
    if mask == 0 {
        return Vec::new();
    }
    let mut used = 0;
    let mut selectors: BTreeMap<(u32, u32), Vec<&ActualRule>> = BTreeMap::new();
    for r in s.rules.iter().filter(|r| foreign(r)) {
        let Some((m, k)) = r.reach.fwmark else {
            continue;
        };
        // An exact mark (`fwmark 0xca6c`) is one value, not bits that tool owns.
        if k != u32::MAX {
            used |= k;
        }
        let wan_table = r.reach.table.is_some_and(|t| d.tables.contains(&t));
        if !wan_table && !skip.contains(&r.desc) {
            selectors.entry((m, k)).or_default().push(r);
        }
    }
    let (unreachable, blackhole) = crate::model::last_resort_marks(mask);
    let mut out = Vec::new();
    for ((m, k), rules) in selectors {
        let shared = k & mask;
        if shared == 0 {
            continue;
        }
        let agrees = |mark: u32| (mark ^ m) & shared == 0;
        let wans: Vec<&WanSource> = d.wans.iter().filter(|w| agrees(w.mark.value)).collect();
        let last: Vec<(&str, u32)> = [("unreachable", unreachable), ("blackhole", blackhole)]
            .into_iter()
            .filter(|(_, mark)| agrees(*mark))
            .collect();
        // None of steer's marks: it meets steer's packets only if it tests a field of bits
        // steer also stamps (an exact mark, `fwmark 0xca6c`, is one value steer never gives).
        if wans.is_empty() && last.is_empty() && (m & shared == 0 || k == u32::MAX) {
            continue;
        }
        let names: Vec<&str> = rules.iter().map(|r| r.desc.as_str()).collect();
        let (names, verb) = match names.len() {
            1 => (names[0].to_owned(), "selects"),
            _ => (names.join(", "), "select"),
        };
        let effect = match (wans.first(), last.first()) {
            (Some(w), _) => format!(
                "under those bits it is WAN {}'s mark ({}): packets that tool marks so are \
                 routed by steer's rule for {}, and {}'s packets its table has no route for go \
                 on to that tool's rule",
                w.name, w.mark.written, w.name, w.name
            ),
            (None, Some((what, mark))) => format!(
                "under those bits it is steer's last-resort `{what}` mark {mark:#x}: packets that \
                 tool marks so are dropped by steer's rule for it"
            ),
            (None, None) => "steer's classifier rewrites those bits on the packets it marks, \
                             and a WAN mark steer uses there would take that tool's packets"
                .to_owned(),
        };
        out.push(Warning {
            // Said again only for a new selector: the line's free bits change with every
            // other rule's mask (a VPN coming up).
            about: format!("fwmark {m:#x}/{k:#x}"),
            ..Warning::new(format!(
                "{names}, not steer's, {verb} fwmark {m:#x}/{k:#x}, which uses the bits \
                 {shared:#x} of steer's {}: {effect}; give steer marks on bits no other rule \
                 uses ({}) and run `steer reload`",
                d.mask.written,
                free_bits(used, d.wans.len())
            ))
        });
    }
    out
}

/// Where steer's marks would not meet other rules' (`used`: every bit their masks test): an
/// 8-bit mask clear of them, the default one first.
fn free_bits(used: u32, wans: usize) -> String {
    let marks = |mask: u32| {
        let low = mask & mask.wrapping_neg();
        (1..=wans.clamp(1, 3) as u32)
            .map(|n| format!("{:#x}", low * n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match [0xff00u32, 0xff, 0xff_0000, 0xff00_0000]
        .into_iter()
        .find(|c| c & used == 0)
    {
        Some(c) => format!(
            "other rules test the bits {used:#x}; e.g. general.mark_mask = {c:#x} with WAN marks \
             {}",
            marks(c)
        ),
        None => format!(
            "other rules test the bits {used:#x}, which leaves no 8 bits in a row free: a \
             narrower general.mark_mask off those bits holds fewer WANs"
        ),
    }
}

/// Whether `r` looks up the main table for every packet of its family: the kernel's `32766:
/// from all lookup main`, or one like it.
fn looks_up_main(r: &ActualRule) -> bool {
    let reach = &r.reach;
    reach.table == Some(MAIN_TABLE)
        && reach.fwmark.is_none()
        && !reach.suppresses
        && !reach.inverted
        && !reach.other_selectors
}

/// The families steer routes (a WAN table holds a route of it) whose main table no rule looks
/// up: `ip rule flush` removes the kernel's `32766: from all lookup main` with the rest. Every
/// packet steer does not send to a WAN then finds no route: the LAN's traffic to the router's
/// other networks, local destinations, the router's own. The rule is not steer's to add back.
/// A family the kernel has no rule of at all (IPv6 disabled) is not judged.
pub(crate) fn main_lookups_missing(d: &Desired, s: &Snapshot) -> Vec<Warning> {
    Family::ALL
        .into_iter()
        .filter(|&f| d.routes.iter().any(|r| r.family == f))
        .filter(|&f| s.rules.iter().any(|r| r.family == f))
        .filter(|&f| !s.rules.iter().any(|r| r.family == f && looks_up_main(r)))
        .map(|f| {
            let ip = if f == Family::V6 { "ip -6" } else { "ip" };
            Warning {
                line: format!(
                    "no {ip} rule looks up the main table for {}: the kernel's `32766: from all \
                     lookup main` is gone (`{ip} rule flush` removes it), so every packet steer \
                     does not send to a WAN (the LAN's traffic to the router's other networks \
                     and to the router itself, the router's own) finds no route and is dropped; \
                     the rule is not steer's, so steer does not add it back: run `{ip} rule add \
                     pref 32766 lookup main`",
                    f.name()
                ),
                about: format!("no main lookup {f}"),
                cleared: Some(format!(
                    "a rule looks up the main table for {} again: its routes are reached",
                    f.name()
                )),
            }
        })
        .collect()
}

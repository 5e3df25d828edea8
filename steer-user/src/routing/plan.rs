//! Desired versus actual: what differs, what to do about it, and in which order.

use std::collections::HashSet;

use super::{
    Change,
    ChangeKind::{Added, Changed, Created, Removed, RemovedStale, Repaired, Replaced},
    Desired, Family, RTPROT_STEER, RuleAction, ShadowingRule,
    kernel::{ActualRoute, ActualRule, Links, Op, Snapshot, Step},
    others::{self, Warning},
};

/// The desired items (as their descriptions) that were in place at an earlier reconcile: one
/// missing now was removed by someone ("repaired"), one never placed is new ("created").
pub(crate) type Placed = HashSet<String>;

/// The report line for a desired item that is missing.
fn missing_change(item: &str, placed: &Placed) -> Change {
    if placed.contains(item) {
        Change::new(Repaired, format!("repaired: {item} was missing"))
    } else {
        Change::new(Created, format!("created: {item}"))
    }
}

/// The report line for an item steer owns that is no longer desired: one an earlier reconcile
/// placed is steer's own cleanup (a reload, a lease or a session that changed), news; one it
/// never placed was left by someone or something else ("stale"). `spec` is the item as steer
/// describes what it places (the kernel's `desc` adds flags such as `linkdown`).
fn removed_change(desc: &str, spec: Option<String>, placed: &Placed) -> Change {
    if spec.is_some_and(|s| placed.contains(&s)) {
        Change::new(Removed, format!("removed: {desc} (no longer wanted)"))
    } else {
        Change::new(RemovedStale, format!("removed stale: {desc}"))
    }
}

/// The report line for a desired item found in another form: steer's own earlier form
/// ("changed"), or one it never placed ("replaced").
fn replaced_change(found: &str, spec: Option<String>, desired: &str, placed: &Placed) -> Change {
    if spec.is_some_and(|s| placed.contains(&s)) {
        Change::new(Changed, format!("changed: {found} to {desired}"))
    } else {
        Change::new(Replaced, format!("replaced: {found} with {desired}"))
    }
}

/// What steer learned of other software's routing in earlier reconciles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Others {
    /// The routes that are not steer's that it removed (or replaced) from a WAN table, as
    /// their descriptions: one that comes back is another tool's, and is left alone.
    pub taken: HashSet<String>,
    /// The WAN tables found to be another tool's ([`others::tables_in_use`]), each with the
    /// reconciles in a row that found it without that tool's routes.
    pub shared: others::Shared,
}

/// The differences between desired and actual, as status lines and as steps.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Route additions and replacements, then rule additions, then rule removals, then route
    /// removals: new items are in place before stale ones go.
    pub steps: Vec<Step>,
    pub status: Vec<String>,
    pub in_sync: bool,
    /// Rules steer does not own that take packets before steer's rule for their mark does.
    pub shadowed: Vec<ShadowingRule>,
    /// Everything steer says about others' routing, those rules first.
    pub warnings: Vec<Warning>,
    /// The WAN tables another tool uses: steer places nothing there.
    pub shared: others::Shared,
}

pub(crate) fn plan(desired: &Desired, s: &Snapshot, placed: &Placed, others: &Others) -> Plan {
    let in_use = others::tables_in_use(desired, s, &others.shared);
    let shared = others::still_shared(&in_use, &others.shared);
    // Routes steer leaves alone although they are in a WAN table: another tool's, in a table
    // it uses, and those steer took once that came back.
    let (routes, left): (Vec<&ActualRoute>, Vec<&ActualRoute>) = s.routes.iter().partition(|r| {
        r.protocol == RTPROT_STEER
            || !(shared.contains_key(&r.table) || others.taken.contains(&r.desc))
    });
    let back: Vec<&ActualRoute> = left
        .into_iter()
        .filter(|r| !shared.contains_key(&r.table))
        .collect();
    let mut status = Vec::new();
    let mut warnings = Vec::new();
    // Nothing of steer's in a table another tool uses, nor in the place of a route that came
    // back: what it would place there is withheld.
    let mut wanted = desired.clone();
    wanted.rules.retain(|d| match d.action {
        RuleAction::Lookup(t) if shared.contains_key(&t) => {
            status.push(format!(
                "{d}: withheld: table {t} is another tool's (see the warning)"
            ));
            false
        }
        _ => true,
    });
    let mut displaced = Vec::new();
    wanted.routes.retain(|d| {
        if shared.contains_key(&d.table) {
            status.push(format!(
                "{d}: withheld: table {} is another tool's (see the warning)",
                d.table
            ));
            return false;
        }
        let holder = back
            .iter()
            .find(|r| r.family == d.family && r.table == d.table && r.default_key);
        match holder {
            Some(r) => {
                status.push(format!(
                    "{d}: withheld: another tool's {} holds its place (see the warning)",
                    r.desc
                ));
                displaced.push((r.desc.clone(), d.to_string()));
                false
            }
            None => true,
        }
    });
    let (rule_adds, rule_dels) = plan_rules(&wanted, s, placed, &mut status);
    let (route_adds, route_dels) = plan_routes(&wanted, &routes, &s.links, placed, &mut status);
    let in_sync = route_adds.is_empty()
        && rule_adds.is_empty()
        && rule_dels.is_empty()
        && route_dels.is_empty();
    let mut steps = route_adds;
    steps.extend(rule_adds);
    steps.extend(rule_dels);
    steps.extend(route_dels);
    let shadowed = shadowing_rules(&wanted, s);
    warnings.extend(shadowed.iter().map(|w| Warning::new(w.line.clone())));
    warnings.extend(in_use.iter().map(others::TableInUse::withheld));
    for r in &back {
        let own = displaced
            .iter()
            .find(|(found, _)| *found == r.desc)
            .map(|(_, own)| own.as_str());
        warnings.push(others::back(desired, r, own));
    }
    let skip: Vec<String> = shadowed.iter().map(|w| w.rule.clone()).collect();
    warnings.extend(others::mark_overlaps(desired, s, &skip));
    warnings.extend(others::main_lookups_missing(desired, s));
    status.extend(warnings.iter().map(|w| format!("warning: {}", w.line)));
    Plan {
        steps,
        status,
        in_sync,
        shadowed,
        warnings,
        shared,
    }
}

/// The rules steer does not own that the kernel reaches before one of steer's mark rules and
/// that take packets with its mark (see [`ActualRule::catches`]): those packets follow them,
/// whatever steer's rule and table say (a leftover of mwan3 or of a script, when migrating).
/// Reported, not removed: steer never touches a rule it does not own. The kernel reaches the
/// rules in the dump's order (by priority, then in the order they were added); a missing rule
/// of steer's goes in after those of its priority.
pub(crate) fn shadowing_rules(desired: &Desired, s: &Snapshot) -> Vec<ShadowingRule> {
    let mut out = Vec::new();
    for d in desired
        .rules
        .iter()
        .filter(|d| d.mask != 0 && d.from.is_none())
    {
        let at = s
            .rules
            .iter()
            .position(|r| r.protocol == RTPROT_STEER && r.spec.as_ref() == Some(d));
        for (i, r) in s.rules.iter().enumerate() {
            let before = at.map_or(r.priority <= d.priority, |at| i < at);
            // One that looks up steer's own table for the mark sends the packets the same way.
            let same_way = matches!(d.action, RuleAction::Lookup(t) if r.reach.table == Some(t));
            if r.protocol == RTPROT_STEER
                || r.family != d.family
                || !before
                || same_way
                || !r.catches(d.fwmark, d.mask)
            {
                continue;
            }
            let some = if r.reach.other_selectors {
                "those of them it selects"
            } else {
                "they"
            };
            let delete = match r.reach.fwmark {
                Some((m, k)) if !r.reach.inverted && !r.reach.other_selectors => format!(
                    " (`ip{} rule del pref {} fwmark {m:#x}/{k:#x}`)",
                    if d.family == Family::V6 { " -6" } else { "" },
                    r.priority
                ),
                _ => String::new(),
            };
            out.push(ShadowingRule {
                family: d.family.name().to_owned(),
                mark: d.fwmark,
                mask: d.mask,
                rule: r.desc.clone(),
                line: format!(
                    "{} is not steer's and comes before steer's {d}: packets with mark {:#x} \
                     are routed by it, {some} never reach steer's rule; steer does not remove \
                     rules it does not own: delete it if it is a leftover (of mwan3, a \
                     script){delete}, or give it a priority after {}",
                    r.desc, d.fwmark, d.priority
                ),
            });
        }
    }
    out
}

impl Plan {
    /// Only the steps that add a rule or route, none that replaces or removes one: what can go
    /// in before the classifier stamps new marks. An addition that pairs with an old item says
    /// `added:`, since the old one stays until a later reconcile removes it.
    pub(crate) fn additions(self) -> Vec<Step> {
        self.steps
            .into_iter()
            .filter(|s| matches!(s.op, Op::AddRule(_) | Op::AddRoute { replace: false, .. }))
            .map(|mut s| {
                let paired = |c: &Change| matches!(c.kind, Replaced | Changed);
                if s.change.as_ref().is_some_and(paired) {
                    s.change = Some(Change::new(Added, format!("added: {}", s.item)));
                }
                s
            })
            .collect()
    }
}

/// What became of one desired item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// Actual item `i` is exactly it.
    Exact(usize),
    /// Actual item `i` stands in its place (same key) but differs.
    Near(usize),
    Missing,
}

/// Pairs desired items with actual ones, each actual item with at most one desired item. Every
/// exact match is claimed before any near one, so that an item that is already right is never
/// taken as another's near match and replaced. Returns the pairings in desired order and the
/// indices of the actual items left over (stale).
fn pair<D, A>(
    desired: &[D],
    actual: &[A],
    exact: impl Fn(&D, &A) -> bool,
    near: impl Fn(&D, &A) -> bool,
) -> (Vec<Pairing>, Vec<usize>) {
    let mut claimed = vec![false; actual.len()];
    let mut claim = |matches: &dyn Fn(&A) -> bool| {
        let i = (0..actual.len()).find(|&i| !claimed[i] && matches(&actual[i]))?;
        claimed[i] = true;
        Some(i)
    };
    let exact: Vec<Option<usize>> = desired.iter().map(|d| claim(&|a| exact(d, a))).collect();
    let pairings = desired
        .iter()
        .zip(exact)
        .map(|(d, e)| match e {
            Some(i) => Pairing::Exact(i),
            None => claim(&|a| near(d, a)).map_or(Pairing::Missing, Pairing::Near),
        })
        .collect();
    let stale = (0..actual.len()).filter(|&i| !claimed[i]).collect();
    (pairings, stale)
}

/// Status lines and (additions, removals) for the rules. Only protocol 201 rules are steer's;
/// one at the same priority and family stands in a desired rule's place.
fn plan_rules(
    desired: &Desired,
    s: &Snapshot,
    placed: &Placed,
    status: &mut Vec<String>,
) -> (Vec<Step>, Vec<Step>) {
    let owned: Vec<&ActualRule> = s
        .rules
        .iter()
        .filter(|r| r.protocol == RTPROT_STEER)
        .collect();
    let (pairings, stale) = pair(
        &desired.rules,
        &owned,
        |d, a| a.spec.as_ref() == Some(d),
        |d, a| a.family == d.family && a.priority == d.priority,
    );
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for (d, pairing) in desired.rules.iter().zip(pairings) {
        match pairing {
            Pairing::Exact(_) => status.push(format!("{d}: ok")),
            Pairing::Near(i) => {
                let found = &owned[i].desc;
                let spec = owned[i].spec.as_ref().map(ToString::to_string);
                status.push(format!("{d}: differs: found {found}"));
                adds.push(Step {
                    op: Op::AddRule(d.clone()),
                    item: d.to_string(),
                    change: Some(replaced_change(found, spec, &d.to_string(), placed)),
                    retry: true,
                    taken: None,
                });
                dels.push(Step {
                    op: Op::DelRule(Box::new(owned[i].msg.clone())),
                    item: format!("removing {found}"),
                    change: None,
                    retry: true,
                    taken: None,
                });
            }
            Pairing::Missing => {
                status.push(format!("{d}: missing"));
                adds.push(Step {
                    op: Op::AddRule(d.clone()),
                    item: d.to_string(),
                    change: Some(missing_change(&d.to_string(), placed)),
                    retry: true,
                    taken: None,
                });
            }
        }
    }
    for r in stale.into_iter().map(|i| owned[i]) {
        status.push(format!("stale: {}", r.desc));
        dels.push(Step {
            op: Op::DelRule(Box::new(r.msg.clone())),
            item: format!("removing {}", r.desc),
            change: Some(removed_change(
                &r.desc,
                r.spec.as_ref().map(ToString::to_string),
                placed,
            )),
            retry: true,
            taken: None,
        });
    }
    (adds, dels)
}

/// Status lines and (additions and replacements, removals) for the routes. Every route of
/// `routes` is steer's (those of the owned tables and protocol 201 ones elsewhere, but those
/// left to another tool); a default route with the default metric in the same table and
/// family stands in a desired route's place.
fn plan_routes(
    desired: &Desired,
    routes: &[&ActualRoute],
    links: &Links,
    placed: &Placed,
    status: &mut Vec<String>,
) -> (Vec<Step>, Vec<Step>) {
    let (pairings, stale) = pair(
        &desired.routes,
        routes,
        |d, a| a.spec.as_ref() == Some(d),
        |d, a| a.family == d.family && a.table == d.table && a.default_key,
    );
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for (d, pairing) in desired.routes.iter().zip(pairings) {
        let link = links.get(&d.interface);
        match pairing {
            Pairing::Exact(i) => {
                let r = routes[i];
                let carrier = link.is_some_and(|l| l.carrier && l.admin_up);
                if r.linkdown && carrier {
                    status.push(format!(
                        "{d}: differs: linkdown although {} has carrier",
                        d.interface
                    ));
                    adds.push(Step {
                        op: Op::RecreateRoute {
                            old: Box::new(r.msg.clone()),
                            spec: d.clone(),
                        },
                        item: d.to_string(),
                        change: Some(Change::new(
                            Replaced,
                            format!(
                                "replaced linkdown route {}: {} has carrier",
                                d.to_string().trim_start_matches("route "),
                                d.interface
                            ),
                        )),
                        retry: true,
                        taken: None,
                    });
                } else if r.linkdown {
                    status.push(format!(
                        "{d}: ok (linkdown: {} has no carrier)",
                        d.interface
                    ));
                } else {
                    status.push(format!("{d}: ok"));
                }
            }
            Pairing::Near(i) => {
                let found = &routes[i].desc;
                let spec = routes[i].spec.as_ref().map(ToString::to_string);
                status.push(format!("{d}: differs: found {found}"));
                // Steer's own route gives way even when the kernel refuses its replacement
                // (a gateway off the new interface's link): it is not what the WAN wants.
                let op = if routes[i].protocol == RTPROT_STEER {
                    Op::ReplaceOwnRoute {
                        old: Box::new(routes[i].msg.clone()),
                        old_desc: found.clone(),
                        spec: d.clone(),
                    }
                } else {
                    Op::AddRoute {
                        spec: d.clone(),
                        replace: true,
                    }
                };
                adds.push(Step {
                    op,
                    item: d.to_string(),
                    change: Some(replaced_change(found, spec, &d.to_string(), placed)),
                    retry: true,
                    taken: taken(routes[i]),
                });
            }
            Pairing::Missing => {
                let why = match link {
                    None => format!(" (interface {} does not exist)", d.interface),
                    Some(l) if !l.admin_up => format!(" (interface {} is down)", d.interface),
                    Some(_) => String::new(),
                };
                status.push(format!("{d}: missing{why}"));
                adds.push(Step {
                    op: Op::AddRoute {
                        spec: d.clone(),
                        replace: false,
                    },
                    item: d.to_string(),
                    change: Some(missing_change(&d.to_string(), placed)),
                    retry: true,
                    taken: None,
                });
            }
        }
    }
    for r in stale.into_iter().map(|i| routes[i]) {
        status.push(format!("stale: {}", r.desc));
        dels.push(Step {
            op: Op::DelRoute(Box::new(r.msg.clone())),
            item: format!("removing {}", r.desc),
            change: Some(removed_change(
                &r.desc,
                r.spec.as_ref().map(ToString::to_string),
                placed,
            )),
            retry: true,
            taken: taken(r),
        });
    }
    (adds, dels)
}

/// A route that is not steer's, which a step removes or replaces: remembered, so that when it
/// comes back it is known for another tool's ([`Others::taken`]).
fn taken(r: &ActualRoute) -> Option<String> {
    (r.protocol != RTPROT_STEER).then(|| r.desc.clone())
}

/// Everything steer owns, to remove: protocol-201 rules, then every route of the snapshot (it
/// holds only steer's: those of the owned tables it was read for and protocol-201 ones
/// elsewhere), but the routes of another tool in a table it uses ([`others::tables_used`]).
pub(crate) fn removal(s: &Snapshot, owned_tables: &[u32]) -> Vec<Step> {
    let shared = others::tables_used(owned_tables, s);
    let rules = s
        .rules
        .iter()
        .filter(|r| r.protocol == RTPROT_STEER)
        .map(|r| Step {
            op: Op::DelRule(Box::new(r.msg.clone())),
            item: format!("removing {}", r.desc),
            change: Some(Change::new(Removed, format!("removed: {}", r.desc))),
            retry: false,
            taken: None,
        });
    let routes = s
        .routes
        .iter()
        .filter(|r| r.protocol == RTPROT_STEER || !shared.contains(&r.table))
        .map(|r| Step {
            op: Op::DelRoute(Box::new(r.msg.clone())),
            item: format!("removing {}", r.desc),
            change: Some(Change::new(Removed, format!("removed: {}", r.desc))),
            retry: false,
            taken: None,
        });
    rules.chain(routes).collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use netlink_packet_route::{
        route::{RouteAttribute, RouteFlags, RouteMessage, RouteProtocol},
        rule::{RuleAttribute, RuleMessage},
    };

    use super::*;
    use crate::routing::{
        Family, RouteSpec, RuleAction, RuleSpec,
        kernel::{self, LinkInfo, Links},
    };

    fn links() -> Links {
        let mut l = Links::default();
        for (index, name, carrier) in [(2, "wan1", true), (3, "wan2", false)] {
            l.insert(LinkInfo {
                index,
                name: name.into(),
                carrier,
                admin_up: true,
                point_to_point: false,
                bridge: false,
                bridge_nf_call: false,
                ppp: false,
                master: None,
            });
        }
        l
    }

    fn desired() -> Desired {
        Desired {
            rules: vec![
                RuleSpec::marked(Family::V4, 1090, (0xff00, 0xff00), RuleAction::Unreachable),
                RuleSpec::marked(Family::V4, 1100, (0x100, 0xff00), RuleAction::Lookup(101)),
            ],
            routes: vec![
                RouteSpec {
                    family: Family::V4,
                    table: 101,
                    gateway: Some("100.64.1.1".parse().unwrap()),
                    interface: "wan1".into(),
                },
                RouteSpec {
                    family: Family::V6,
                    table: 101,
                    gateway: Some("fd64:1::1".parse().unwrap()),
                    interface: "wan1".into(),
                },
            ],
            tables: vec![101],
            ..Desired::default()
        }
    }

    /// A rule as the kernel dumps it.
    fn rule(prio: u32, mark: u32, mask: u32, table: u32, proto: u8) -> ActualRule {
        let mut m = RuleMessage::default();
        m.header.family = netlink_packet_route::AddressFamily::Inet;
        m.header.action = netlink_packet_route::rule::RuleAction::ToTable;
        m.header.table = table as u8;
        m.attributes = vec![
            RuleAttribute::Table(table),
            RuleAttribute::Priority(prio),
            RuleAttribute::FwMark(mark),
            RuleAttribute::FwMask(mask),
            RuleAttribute::Protocol(RouteProtocol::from(proto)),
        ];
        kernel::parse_rule(m).unwrap()
    }

    fn unreachable_rule() -> ActualRule {
        let mut m = RuleMessage::default();
        m.header.family = netlink_packet_route::AddressFamily::Inet;
        m.header.action = netlink_packet_route::rule::RuleAction::Unreachable;
        m.attributes = vec![
            RuleAttribute::Table(0),
            RuleAttribute::Priority(1090),
            RuleAttribute::FwMark(0xff00),
            RuleAttribute::FwMask(0xff00),
            RuleAttribute::Protocol(RouteProtocol::from(201)),
        ];
        kernel::parse_rule(m).unwrap()
    }

    /// A default route as the kernel dumps it.
    fn route(v6: bool, table: u32, gw: &str, oif: u32, proto: u8, metric: u32) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = if v6 {
            netlink_packet_route::AddressFamily::Inet6
        } else {
            netlink_packet_route::AddressFamily::Inet
        };
        m.header.table = table as u8;
        m.header.protocol = RouteProtocol::from(proto);
        m.header.kind = netlink_packet_route::route::RouteType::Unicast;
        m.attributes = vec![
            RouteAttribute::Table(table),
            RouteAttribute::Gateway(gw.parse::<IpAddr>().unwrap().into()),
            RouteAttribute::Oif(oif),
        ];
        if metric != 0 {
            m.attributes.push(RouteAttribute::Priority(metric));
        }
        m
    }

    fn snapshot(rules: Vec<ActualRule>, routes: Vec<RouteMessage>) -> Snapshot {
        let links = links();
        let routes = routes
            .into_iter()
            .map(|m| kernel::parse_route(m, &links).unwrap())
            .collect();
        Snapshot {
            links,
            rules,
            routes,
        }
    }

    fn in_sync() -> Snapshot {
        snapshot(
            vec![
                unreachable_rule(),
                rule(1100, 0x100, 0xff00, 101, 201),
                catch_all(32766, 254, Vec::new()),
            ],
            vec![
                route(false, 101, "100.64.1.1", 2, 201, 0),
                route(true, 101, "fd64:1::1", 2, 201, 1024),
            ],
        )
    }

    /// Every desired item, as if an earlier reconcile had placed it.
    fn placed_all() -> Placed {
        desired().items().collect()
    }

    fn changes(p: &Plan) -> Vec<String> {
        lines(&p.steps)
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| s.change.as_ref().map(|c| c.line.clone()))
            .collect()
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let p = plan(&desired(), &in_sync(), &placed_all(), &Others::default());
        assert!(p.in_sync, "{:?}", p.status);
        assert!(p.steps.is_empty());
        assert_eq!(
            p.status,
            [
                "rule 1090 fwmark 0xff00/0xff00 unreachable (v4): ok",
                "rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): ok",
                "route default via 100.64.1.1 dev wan1 table 101 (v4): ok",
                "route default via fd64:1::1 dev wan1 table 101 (v6): ok",
            ]
        );
    }

    #[test]
    fn foreign_rules_are_ignored_and_stale_owned_ones_removed() {
        let mut s = in_sync();
        s.rules.push(rule(1100, 0x5, u32::MAX, 200, 3));
        s.rules.push(rule(1102, 0x300, 0xff00, 103, 201));
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            ["removed stale: rule 1102 fwmark 0x300/0xff00 lookup 103 (v4)"]
        );
        assert!(
            p.status
                .contains(&"stale: rule 1102 fwmark 0x300/0xff00 lookup 103 (v4)".into())
        );
    }

    #[test]
    fn a_changed_mark_replaces_the_rule() {
        let mut s = in_sync();
        s.rules[1] = rule(1100, 0x400, 0xff00, 101, 201);
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            [
                "replaced: rule 1100 fwmark 0x400/0xff00 lookup 101 (v4) with \
                 rule 1100 fwmark 0x100/0xff00 lookup 101 (v4)"
            ]
        );
        assert!(matches!(p.steps[0].op, Op::AddRule(_)));
        assert!(matches!(p.steps[1].op, Op::DelRule(_)), "add before delete");
    }

    #[test]
    fn additions_alone_keep_the_old_rule_and_say_added_not_replaced() {
        let mut s = in_sync();
        s.rules[1] = rule(1100, 0x400, 0xff00, 101, 201);
        let steps = plan(&desired(), &s, &placed_all(), &Others::default()).additions();
        assert_eq!(steps.len(), 1);
        assert!(matches!(steps[0].op, Op::AddRule(_)));
        assert_eq!(
            steps[0].change.as_ref().map(|c| c.line.as_str()),
            Some("added: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4)")
        );
    }

    #[test]
    fn what_an_earlier_reconcile_placed_is_changed_or_removed_not_stale() {
        let mut d = desired();
        d.routes.truncate(1);
        d.rules[1] = RuleSpec::marked(Family::V4, 1100, (0x400, 0xff00), RuleAction::Lookup(101));
        let p = plan(&d, &in_sync(), &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            [
                "changed: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4) to \
                 rule 1100 fwmark 0x400/0xff00 lookup 101 (v4)",
                "removed: route default via fd64:1::1 dev wan1 table 101 (v6) (no longer wanted)",
            ]
        );
    }

    #[test]
    fn steers_own_route_on_a_link_without_carrier_is_removed_not_stale() {
        // The kernel's text says `linkdown`; what steer placed did not.
        let mut down = route(true, 101, "fd64:1::1", 2, 201, 1024);
        down.header.flags = netlink_packet_route::route::RouteFlags::Linkdown;
        let s = snapshot(
            vec![unreachable_rule(), rule(1100, 0x100, 0xff00, 101, 201)],
            vec![route(false, 101, "100.64.1.1", 2, 201, 0), down],
        );
        let mut d = desired();
        d.routes.truncate(1);
        let p = plan(&d, &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            [
                "removed: route default via fd64:1::1 dev wan1 table 101 linkdown (v6) (no longer wanted)"
            ]
        );
    }

    #[test]
    fn an_exact_rule_found_after_a_near_one_is_kept() {
        let mut s = in_sync();
        s.rules.insert(1, rule(1100, 0x400, 0xff00, 101, 201));
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            ["removed stale: rule 1100 fwmark 0x400/0xff00 lookup 101 (v4)"]
        );
        assert!(
            p.status
                .contains(&"rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): ok".into())
        );
    }

    #[test]
    fn a_foreign_rule_does_not_count_as_ours() {
        let mut s = in_sync();
        s.rules[1] = rule(1100, 0x100, 0xff00, 101, 4);
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            ["repaired: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4) was missing"]
        );
    }

    #[test]
    fn wrong_and_extra_routes() {
        let s = snapshot(
            vec![unreachable_rule(), rule(1100, 0x100, 0xff00, 101, 201)],
            vec![
                // Another gateway, by hand: replaced in place.
                route(false, 101, "100.64.1.9", 2, 3, 0),
                // An extra route (other metric): removed.
                route(false, 101, "100.64.2.1", 3, 3, 50),
                // Correct.
                route(true, 101, "fd64:1::1", 2, 201, 1024),
                // steer's route in a table it no longer owns: removed.
                route(false, 103, "100.64.3.1", 3, 201, 0),
            ],
        );
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            [
                "replaced: route default via 100.64.1.9 dev wan1 table 101 proto boot (v4) with \
                 route default via 100.64.1.1 dev wan1 table 101 (v4)",
                "removed stale: route default via 100.64.2.1 dev wan2 table 101 proto boot metric 50 (v4)",
                "removed stale: route default via 100.64.3.1 dev wan2 table 103 (v4)",
            ]
        );
        assert!(matches!(p.steps[0].op, Op::AddRoute { replace: true, .. }));
    }

    #[test]
    fn steers_own_route_on_another_interface_is_replaced_so_that_a_refusal_removes_it() {
        // The WAN moved from wan2 to wan1 (a reload): its old route must not outlive a
        // replacement the kernel refuses, so the step names the old route to delete then.
        let mut s = in_sync();
        s.routes[0] =
            kernel::parse_route(route(false, 101, "100.64.1.1", 3, 201, 0), &s.links).unwrap();
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(p.steps.len(), 1, "{:?}", p.status);
        match &p.steps[0].op {
            Op::ReplaceOwnRoute { old_desc, spec, .. } => {
                assert_eq!(
                    old_desc,
                    "route default via 100.64.1.1 dev wan2 table 101 (v4)"
                );
                assert_eq!(spec.interface, "wan1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linkdown_routes_depend_on_the_carrier() {
        let mut s = in_sync();
        let mut m = route(false, 101, "100.64.1.1", 2, 201, 0);
        m.header.flags = RouteFlags::Linkdown;
        s.routes[0] = kernel::parse_route(m, &s.links).unwrap();
        // wan1 has carrier: the flag is stale.
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(
            changes(&p),
            [
                "replaced linkdown route default via 100.64.1.1 dev wan1 table 101 (v4): wan1 has carrier"
            ]
        );
        assert!(matches!(p.steps[0].op, Op::RecreateRoute { .. }));
        // Without carrier it is left alone.
        let mut l = s.links.get("wan1").unwrap().clone();
        l.carrier = false;
        s.links.insert(l);
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert!(p.in_sync);
        assert!(p.status.contains(
            &"route default via 100.64.1.1 dev wan1 table 101 (v4): ok (linkdown: wan1 has no carrier)".into()
        ));
    }

    #[test]
    fn missing_items_and_missing_interfaces() {
        let mut d = desired();
        d.routes.push(RouteSpec {
            family: Family::V4,
            table: 104,
            gateway: None,
            interface: "ppp0".into(),
        });
        d.tables.push(104);
        let p = plan(
            &d,
            &snapshot(Vec::new(), Vec::new()),
            &Placed::new(),
            &Others::default(),
        );
        assert!(!p.in_sync);
        assert_eq!(p.steps.len(), 5);
        assert!(
            changes(&p).iter().all(|c| c.starts_with("created: ")),
            "never placed, so created: {:?}",
            changes(&p)
        );
        assert!(p.status.contains(
            &"route default dev ppp0 scope link table 104 (v4): missing (interface ppp0 does not exist)".into()
        ));
        // Routes first, then rules.
        assert!(matches!(p.steps[0].op, Op::AddRoute { replace: false, .. }));
        assert!(matches!(p.steps[4].op, Op::AddRule(_)));
    }

    #[test]
    fn removal_takes_only_what_steer_owns() {
        let mut s = in_sync();
        s.rules.push(rule(1100, 0x5, u32::MAX, 200, 3));
        let steps = removal(&s, &[101]);
        assert_eq!(
            lines(&steps),
            [
                "removed: rule 1090 fwmark 0xff00/0xff00 unreachable (v4)",
                "removed: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4)",
                "removed: route default via 100.64.1.1 dev wan1 table 101 (v4)",
                "removed: route default via fd64:1::1 dev wan1 table 101 (v6)",
            ]
        );
    }
    /// A rule of someone else's without a mark selector: `from all lookup T` at `prio`, with
    /// `extra` attributes.
    fn catch_all(prio: u32, table: u32, extra: Vec<RuleAttribute>) -> ActualRule {
        let mut m = RuleMessage::default();
        m.header.family = netlink_packet_route::AddressFamily::Inet;
        m.header.action = netlink_packet_route::rule::RuleAction::ToTable;
        m.header.table = table as u8;
        m.attributes = vec![RuleAttribute::Table(table), RuleAttribute::Priority(prio)];
        m.attributes.extend(extra);
        kernel::parse_rule(m).unwrap()
    }

    #[test]
    fn a_foreign_rule_that_takes_steers_mark_first_is_warned_about_and_left_alone() {
        // mwan3's leftover at steer's priority, added before steer's rule: the kernel reaches
        // it first.
        let leftover = rule(1100, 0x100, 0xff00, 99, 4);
        let mut rules = vec![
            unreachable_rule(),
            leftover,
            rule(1100, 0x100, 0xff00, 101, 201),
        ];
        let s = snapshot(
            rules.clone(),
            in_sync().routes.iter().map(|r| r.msg.clone()).collect(),
        );
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert!(p.in_sync, "steer's own items are in place: {:?}", p.status);
        assert!(
            p.steps.is_empty(),
            "a foreign rule is never touched: {:?}",
            p.steps
        );
        assert_eq!(p.shadowed.len(), 1, "{:?}", p.shadowed);
        let w = &p.shadowed[0];
        assert_eq!(
            w.rule,
            "rule 1100 fwmark 0x100/0xff00 lookup 99 proto static (v4)"
        );
        assert!(w.takes(Family::V4, 0x1ab) && !w.takes(Family::V4, 0x200));
        assert!(!w.takes(Family::V6, 0x100));
        assert!(
            w.line.starts_with(
                "rule 1100 fwmark 0x100/0xff00 lookup 99 proto static (v4) is not steer's and \
                 comes before steer's rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): packets \
                 with mark 0x100 are routed by it"
            ) && w
                .line
                .contains("`ip rule del pref 1100 fwmark 0x100/0xff00`"),
            "{}",
            w.line
        );
        assert!(
            p.status.contains(&format!("warning: {}", w.line)),
            "{:?}",
            p.status
        );

        // Added after steer's rule at the same priority, or at a later one: harmless.
        rules.swap(1, 2);
        let s = snapshot(rules, Vec::new());
        assert!(
            plan(&desired(), &s, &placed_all(), &Others::default())
                .shadowed
                .is_empty()
        );
        // Nor one that looks up steer's own table for the mark.
        let later = vec![
            unreachable_rule(),
            rule(1095, 0x100, 0xff00, 101, 4),
            rule(1100, 0x100, 0xff00, 101, 201),
            rule(1000, 0x200, 0xff00, 99, 4),
            rule(2000, 0x100, 0xff00, 99, 4),
            catch_all(0, 255, Vec::new()),
            catch_all(32766, 254, Vec::new()),
            catch_all(500, 254, vec![RuleAttribute::SuppressPrefixLen(0)]),
            catch_all(500, 254, vec![RuleAttribute::Iifname("lo".into())]),
        ];
        let p = plan(
            &desired(),
            &snapshot(later, Vec::new()),
            &placed_all(),
            &Others::default(),
        );
        assert!(p.shadowed.is_empty(), "{:?}", p.shadowed);

        // `from all lookup 99` before steer's rules takes every mark, the last-resort ones too.
        let all = vec![
            catch_all(0, 255, Vec::new()),
            catch_all(10, 99, Vec::new()),
            unreachable_rule(),
            rule(1100, 0x100, 0xff00, 101, 201),
        ];
        let p = plan(
            &desired(),
            &snapshot(all, Vec::new()),
            &placed_all(),
            &Others::default(),
        );
        let found: Vec<(u32, &str)> = p
            .shadowed
            .iter()
            .map(|w| (w.mark, w.rule.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (0xff00, "rule 10 lookup 99 proto 0 (v4)"),
                (0x100, "rule 10 lookup 99 proto 0 (v4)")
            ]
        );
    }

    /// The lab's two WANs as a configuration names them, under `mask` with `marks`.
    fn with_wans(mut d: Desired, mask: u32, marks: [u32; 2]) -> Desired {
        let source = |value, written: &str| crate::routing::Source {
            value,
            written: written.to_owned(),
        };
        d.mask = source(mask, &format!("s.toml:3:13: general.mark_mask = {mask:#x}"));
        d.wans = [("wan1", marks[0], 101), ("wan2", marks[1], 102)]
            .into_iter()
            .map(|(name, mark, table)| crate::routing::WanSource {
                name: name.to_owned(),
                mark: source(mark, &format!("s.toml: wan[{name}].mark = {mark:#x}")),
                table: source(table, &format!("s.toml:9:9: wan[{name}].table = {table}")),
            })
            .collect();
        d
    }

    /// `<dst> dev <oif> scope link table <table> proto <proto>`, as a VPN puts its routes.
    fn link_route(table: u32, dst: &str, oif: u32, proto: u8) -> RouteMessage {
        let (addr, len) = dst.split_once('/').unwrap();
        let mut m = RouteMessage::default();
        m.header.address_family = netlink_packet_route::AddressFamily::Inet;
        m.header.table = table as u8;
        m.header.protocol = RouteProtocol::from(proto);
        m.header.scope = netlink_packet_route::route::RouteScope::Link;
        m.header.kind = netlink_packet_route::route::RouteType::Unicast;
        m.header.destination_prefix_length = len.parse().unwrap();
        m.attributes = vec![
            RouteAttribute::Table(table),
            RouteAttribute::Destination(addr.parse::<IpAddr>().unwrap().into()),
            RouteAttribute::Oif(oif),
        ];
        m
    }

    fn warnings(p: &Plan) -> Vec<&str> {
        p.warnings.iter().map(|w| w.line.as_str()).collect()
    }

    #[test]
    fn a_wan_table_another_tool_uses_is_left_alone_and_nothing_of_steers_goes_there() {
        // Tailscale's: its rule looks table 101 up, its route is there; steer's route and
        // rule for 101 are there too (placed before that tool came, or before a restart).
        let d = with_wans(desired(), 0xff00, [0x100, 0x200]);
        let mut s = in_sync();
        s.rules.push(catch_all(5270, 101, Vec::new()));
        let vpn = kernel::parse_route(link_route(101, "100.100.100.100/32", 3, 3), &s.links);
        s.routes.push(vpn.unwrap());
        let p = plan(&d, &s, &placed_all(), &Others::default());
        assert_eq!(p.shared, others::Shared::from([(101, 0)]));
        assert_eq!(
            changes(&p),
            [
                "removed: rule 1100 fwmark 0x100/0xff00 lookup 101 (v4) (no longer wanted)",
                "removed: route default via 100.64.1.1 dev wan1 table 101 (v4) (no longer wanted)",
                "removed: route default via fd64:1::1 dev wan1 table 101 (v6) (no longer wanted)",
            ],
            "steer's own go (its default route would answer that tool's lookups); \
             the tool's route stays"
        );
        assert!(p.steps.iter().all(|s| s.taken.is_none()));
        assert!(
            p.status.contains(
                &"rule 1100 fwmark 0x100/0xff00 lookup 101 (v4): withheld: table 101 is \
                  another tool's (see the warning)"
                    .to_owned()
            ),
            "{:#?}",
            p.status
        );
        let w = warnings(&p);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].starts_with(
                "s.toml:9:9: wan[wan1].table = 101: table 101 is used by another tool: rule \
                 5270 lookup 101 proto 0 (v4), not steer's, looks it up, and it holds routes \
                 steer did not make: route 100.100.100.100/32 dev wan2 scope link table 101 \
                 proto boot (v4); steer leaves table 101 alone"
            ) && w[0].contains("pick another `table` number for WAN wan1"),
            "{}",
            w[0]
        );
        assert!(p.status.contains(&format!("warning: {}", w[0])));
        // The refusal (check, reload) names the same.
        let refused = others::tables_in_use(&d, &s, &others::Shared::new());
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0]
                .to_string()
                .contains("steer would take the table over"),
            "{}",
            refused[0]
        );

        // A rule of someone else's alone sends traffic through steer's table on purpose
        // (`from HOST lookup 101`): the table is steer's.
        let mut own = in_sync();
        own.rules.push(catch_all(5270, 101, Vec::new()));
        let p = plan(&d, &own, &placed_all(), &Others::default());
        assert!(p.shared.is_empty() && p.steps.is_empty(), "{:#?}", p.status);
        // But one found another tool's stays so while its rule is there, its routes gone for
        // a moment (the tool replacing them): steer does not slip its route in meanwhile...
        let mut known = Others {
            shared: others::Shared::from([(101, 0)]),
            ..Others::default()
        };
        for n in 1..others::GRACE {
            let p = plan(&d, &own, &placed_all(), &known);
            assert_eq!(p.shared, others::Shared::from([(101, n)]));
            assert!(
                warnings(&p)[0].contains("held routes steer did not make a moment ago"),
                "{:?}",
                warnings(&p)
            );
            known.shared = p.shared;
        }
        // ... nor for ever: a table whose routes stay gone (a leftover the owner removed
        // beside their own `from HOST lookup 101`) is steer's again.
        let p = plan(&d, &own, &placed_all(), &known);
        assert!(p.shared.is_empty() && p.steps.is_empty(), "{:#?}", p.status);
        // Its rule gone, the table is steer's again.
        let p = plan(&d, &in_sync(), &placed_all(), &known);
        assert!(p.shared.is_empty() && p.steps.is_empty());

        // `steer stop` leaves that tool's route where it is.
        let steps = removal(&s, &[101]);
        assert!(
            !lines(&steps).iter().any(|l| l.contains("100.100.100.100")),
            "{:?}",
            lines(&steps)
        );
        assert_eq!(removal(&own, &[101]).len(), 4);
    }

    #[test]
    fn a_foreign_route_steer_removed_once_that_comes_back_is_left_alone() {
        let mut s = in_sync();
        let extra = kernel::parse_route(route(false, 101, "100.64.2.1", 3, 3, 50), &s.links);
        s.routes.push(extra.unwrap());
        let desc = "route default via 100.64.2.1 dev wan2 table 101 proto boot metric 50 (v4)";
        // The first time: a leftover, removed, and remembered.
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(changes(&p), [format!("removed stale: {desc}")]);
        assert_eq!(p.steps[0].taken.as_deref(), Some(desc));
        assert!(p.warnings.is_empty());
        // Back: another tool's. Left alone, said.
        let mut others = Others::default();
        others.taken.insert(desc.to_owned());
        let p = plan(&desired(), &s, &placed_all(), &others);
        assert!(p.steps.is_empty(), "{:?}", changes(&p));
        assert!(p.in_sync);
        assert_eq!(
            warnings(&p),
            [format!(
                "table 101: {desc} came back after steer removed it: another tool keeps it in \
                 WAN (unnamed)'s table, so steer leaves it alone; pick another `table` number \
                 for WAN (unnamed) (one that holds no route: `ip route show table N`) and run \
                 `steer reload`, or stop that tool from adding it"
            )]
        );

        // A default route of another tool's in the place of steer's: replaced once...
        let mut s = in_sync();
        let theirs = kernel::parse_route(route(false, 101, "100.64.1.9", 2, 3, 0), &s.links);
        s.routes[0] = theirs.unwrap();
        let desc = "route default via 100.64.1.9 dev wan1 table 101 proto boot (v4)";
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].taken.as_deref(), Some(desc));
        // ... and left alone when it is back, steer's own route withheld.
        let mut others = Others::default();
        others.taken.insert(desc.to_owned());
        let p = plan(&desired(), &s, &placed_all(), &others);
        assert!(p.steps.is_empty(), "{:?}", changes(&p));
        assert!(
            warnings(&p)[0].contains(
                "so steer leaves it alone, and steer does not place its own route default via \
                 100.64.1.1 dev wan1 table 101 (v4) in its stead"
            ),
            "{:?}",
            warnings(&p)
        );
        assert!(p.status.contains(&format!(
            "route default via 100.64.1.1 dev wan1 table 101 (v4): withheld: another \
                 tool's {desc} holds its place (see the warning)"
        )));
    }

    #[test]
    fn rules_of_others_on_steers_mark_bits_are_warned_about_wherever_they_sit() {
        // Tailscale's, after steer's rules; steer given its bits and wan2 its bypass mark.
        let tailscale = || {
            let mut s = in_sync();
            s.rules.push(rule(5210, 0x80000, 0xff0000, 254, 3));
            s.rules.push(rule(5230, 0x80000, 0xff0000, 253, 3));
            s
        };
        let d = with_wans(desired(), 0xff0000, [0x10000, 0x80000]);
        let p = plan(&d, &tailscale(), &placed_all(), &Others::default());
        assert_eq!(
            warnings(&p),
            [
                "rule 5210 fwmark 0x80000/0xff0000 lookup 254 proto boot (v4), rule 5230 fwmark \
              0x80000/0xff0000 lookup 253 proto boot (v4), not steer's, select fwmark \
              0x80000/0xff0000, which uses the bits 0xff0000 of steer's s.toml:3:13: \
              general.mark_mask = 0xff0000: under those bits it is WAN wan2's mark (s.toml: \
              wan[wan2].mark = 0x80000): packets that tool marks so are routed by steer's rule \
              for wan2, and wan2's packets its table has no route for go on to that tool's \
              rule; give steer marks on bits no other rule uses (other rules test the bits \
              0xff0000; e.g. general.mark_mask = 0xff00 with WAN marks 0x100, 0x200) and run \
              `steer reload`"
            ]
        );
        assert!(p.status.contains(&format!("warning: {}", warnings(&p)[0])));
        // The same bits, no WAN's mark: still each other's bits.
        let d = with_wans(desired(), 0xff0000, [0x10000, 0x20000]);
        let p = plan(&d, &tailscale(), &placed_all(), &Others::default());
        assert!(
            warnings(&p)[0].contains("steer's classifier rewrites those bits"),
            "{:?}",
            warnings(&p)
        );
        // Bits apart (steer's default mask): nothing to say.
        let d = with_wans(desired(), 0xff00, [0x100, 0x200]);
        assert!(
            plan(&d, &tailscale(), &placed_all(), &Others::default())
                .warnings
                .is_empty()
        );
        // An exact mark that is none of steer's (wg-quick's `fwmark 0xca6c`), a rule that
        // looks up a WAN's table on purpose, one for packets steer did not mark: nothing.
        let mut s = in_sync();
        s.rules.push(rule(32765, 0xca6c, u32::MAX, 51820, 3));
        s.rules.push(rule(1095, 0x100, 0xff00, 101, 4));
        s.rules.push(rule(3000, 0, 0xff00, 200, 4));
        assert!(
            plan(&d, &s, &placed_all(), &Others::default())
                .warnings
                .is_empty()
        );
        // One after steer's rule with a WAN's mark: said (before it, it is a shadowing rule).
        s.rules.push(rule(2000, 0x100, 0xff00, 99, 4));
        let p = plan(&d, &s, &placed_all(), &Others::default());
        assert_eq!(p.warnings.len(), 1, "{:?}", warnings(&p));
        assert!(warnings(&p)[0].contains("WAN wan1's mark"));
        assert!(
            warnings(&p)[0].contains(
                "other rules test the bits 0xff00; e.g. general.mark_mask = 0xff with WAN marks \
                 0x1, 0x2"
            ),
            "{:?}",
            warnings(&p)
        );
    }

    #[test]
    fn a_family_whose_main_table_no_rule_looks_up_is_warned_about() {
        let mut s = in_sync();
        s.rules.retain(|r| r.priority != 32766);
        let p = plan(&desired(), &s, &placed_all(), &Others::default());
        assert_eq!(p.warnings.len(), 1, "{:?}", warnings(&p));
        let w = &p.warnings[0];
        assert!(
            w.line
                .starts_with("no ip rule looks up the main table for IPv4")
                && w.line.ends_with("run `ip rule add pref 32766 lookup main`"),
            "{}",
            w.line
        );
        assert_eq!(
            w.cleared.as_deref(),
            Some("a rule looks up the main table for IPv4 again: its routes are reached")
        );
        assert!(p.steps.is_empty(), "not steer's to add");
        // One that suppresses the default, or selects some packets only, is not it.
        s.rules.push(catch_all(
            1050,
            254,
            vec![RuleAttribute::SuppressPrefixLen(0)],
        ));
        s.rules.push(rule(5210, 0x80000, 0xff0000, 254, 3));
        assert_eq!(
            plan(&desired(), &s, &placed_all(), &Others::default())
                .warnings
                .len(),
            1
        );
        // IPv6: the kernel shows no IPv6 rule here (disabled): not judged; and a family steer
        // routes nothing of is not either.
        let mut d = desired();
        d.routes.retain(|r| r.family == Family::V6);
        assert!(
            plan(&d, &s, &placed_all(), &Others::default())
                .warnings
                .is_empty()
        );
    }
}

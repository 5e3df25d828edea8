//! Desired versus actual: what differs, what to do about it, and in which order.

use std::collections::HashSet;

use super::{
    Change,
    ChangeKind::{Added, Changed, Created, Removed, RemovedStale, Repaired, Replaced},
    Desired, Family, RTPROT_STEER, RuleAction, ShadowingRule,
    kernel::{ActualRule, Op, Snapshot, Step},
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
}

pub(crate) fn plan(desired: &Desired, s: &Snapshot, placed: &Placed) -> Plan {
    let mut status = Vec::new();
    let (rule_adds, rule_dels) = plan_rules(desired, s, placed, &mut status);
    let (route_adds, route_dels) = plan_routes(desired, s, placed, &mut status);
    let in_sync = route_adds.is_empty()
        && rule_adds.is_empty()
        && rule_dels.is_empty()
        && route_dels.is_empty();
    let mut steps = route_adds;
    steps.extend(rule_adds);
    steps.extend(rule_dels);
    steps.extend(route_dels);
    let shadowed = shadowing_rules(desired, s);
    status.extend(shadowed.iter().map(|w| format!("warning: {}", w.line)));
    Plan {
        steps,
        status,
        in_sync,
        shadowed,
    }
}

/// The rules steer does not own that the kernel reaches before one of steer's mark rules and
/// that take packets with its mark (see [`ActualRule::catches`]): those packets follow them,
/// whatever steer's rule and table say (a leftover of mwan3 or of a script, when migrating).
/// Reported, not removed: steer never touches a rule it does not own. The kernel reaches the
/// rules in the dump's order (by priority, then in the order they were added); a missing rule
/// of steer's goes in after those of its priority.
fn shadowing_rules(desired: &Desired, s: &Snapshot) -> Vec<ShadowingRule> {
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
                });
                dels.push(Step {
                    op: Op::DelRule(Box::new(owned[i].msg.clone())),
                    item: format!("removing {found}"),
                    change: None,
                    retry: true,
                });
            }
            Pairing::Missing => {
                status.push(format!("{d}: missing"));
                adds.push(Step {
                    op: Op::AddRule(d.clone()),
                    item: d.to_string(),
                    change: Some(missing_change(&d.to_string(), placed)),
                    retry: true,
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
        });
    }
    (adds, dels)
}

/// Status lines and (additions and replacements, removals) for the routes. Every route of the
/// snapshot is steer's (those of the owned tables and protocol 201 ones elsewhere); a default
/// route with the default metric in the same table and family stands in a desired route's
/// place.
fn plan_routes(
    desired: &Desired,
    s: &Snapshot,
    placed: &Placed,
    status: &mut Vec<String>,
) -> (Vec<Step>, Vec<Step>) {
    let routes = &s.routes;
    let (pairings, stale) = pair(
        &desired.routes,
        routes,
        |d, a| a.spec.as_ref() == Some(d),
        |d, a| a.family == d.family && a.table == d.table && a.default_key,
    );
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for (d, pairing) in desired.routes.iter().zip(pairings) {
        let link = s.links.get(&d.interface);
        match pairing {
            Pairing::Exact(i) => {
                let r = &routes[i];
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
                adds.push(Step {
                    op: Op::AddRoute {
                        spec: d.clone(),
                        replace: true,
                    },
                    item: d.to_string(),
                    change: Some(replaced_change(found, spec, &d.to_string(), placed)),
                    retry: true,
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
                });
            }
        }
    }
    for r in stale.into_iter().map(|i| &routes[i]) {
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
        });
    }
    (adds, dels)
}

/// Everything steer owns, to remove: protocol-201 rules, then every route of the snapshot (it
/// holds only steer's: those of the owned tables it was read for and protocol-201 ones
/// elsewhere).
pub(crate) fn removal(s: &Snapshot) -> Vec<Step> {
    let rules = s
        .rules
        .iter()
        .filter(|r| r.protocol == RTPROT_STEER)
        .map(|r| Step {
            op: Op::DelRule(Box::new(r.msg.clone())),
            item: format!("removing {}", r.desc),
            change: Some(Change::new(Removed, format!("removed: {}", r.desc))),
            retry: false,
        });
    let routes = s.routes.iter().map(|r| Step {
        op: Op::DelRoute(Box::new(r.msg.clone())),
        item: format!("removing {}", r.desc),
        change: Some(Change::new(Removed, format!("removed: {}", r.desc))),
        retry: false,
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
            vec![unreachable_rule(), rule(1100, 0x100, 0xff00, 101, 201)],
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
        let p = plan(&desired(), &in_sync(), &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
        let steps = plan(&desired(), &s, &placed_all()).additions();
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
        let p = plan(&d, &in_sync(), &placed_all());
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
        let p = plan(&d, &s, &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
    fn linkdown_routes_depend_on_the_carrier() {
        let mut s = in_sync();
        let mut m = route(false, 101, "100.64.1.1", 2, 201, 0);
        m.header.flags = RouteFlags::Linkdown;
        s.routes[0] = kernel::parse_route(m, &s.links).unwrap();
        // wan1 has carrier: the flag is stale.
        let p = plan(&desired(), &s, &placed_all());
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
        let p = plan(&desired(), &s, &placed_all());
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
        let p = plan(&d, &snapshot(Vec::new(), Vec::new()), &Placed::new());
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
        let steps = removal(&s);
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
        let p = plan(&desired(), &s, &placed_all());
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
        assert!(plan(&desired(), &s, &placed_all()).shadowed.is_empty());
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
        let p = plan(&desired(), &snapshot(later, Vec::new()), &placed_all());
        assert!(p.shadowed.is_empty(), "{:?}", p.shadowed);

        // `from all lookup 99` before steer's rules takes every mark, the last-resort ones too.
        let all = vec![
            catch_all(0, 255, Vec::new()),
            catch_all(10, 99, Vec::new()),
            unreachable_rule(),
            rule(1100, 0x100, 0xff00, 101, 201),
        ];
        let p = plan(&desired(), &snapshot(all, Vec::new()), &placed_all());
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
}

//! The WAN states a restarted daemon adopts with the pinned state.
//!
//! A daemon that stops (SIGTERM, a crash) leaves its live policy generation in place: a WAN it
//! had taken down (a silent outage: carrier up, its upstream dead) steers no flow. Were the
//! new daemon to start that WAN up, as it starts a WAN with carrier, its first apply would send
//! new flows into the dead line until `down_after` rounds failed again (seconds at the default
//! interval), and under `[ipv6] mode = "source"` make its deprecated LAN prefix preferred again
//! meanwhile. The live table says what the old daemon had decided: a WAN family that the
//! adopted rules would send traffic through with every WAN up, and that the live table sends
//! none through, was down (its probes, its gateway or its prefix). It starts down and comes up
//! by `up_after` good rounds, as a line found dead does; a WAN up in the adopted state starts
//! up as before.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use steer_common::action;

use super::Health;
use crate::{
    config::Config,
    dataplane::Maps,
    model::{Family, NameIds, PolicyTable, Rule},
    policy::{self, WanView},
    status::ReportLine,
};

/// The reason a WAN family held down at start gives (status, explain).
pub const DOWN_AT_RESTART: &str = "down when the daemon restarted (the adopted policy \
                                   table sent none of this family's traffic through it): \
                                   probes bring it back";

/// The WAN families `live` (the adopted live generation) had down: those `all_up` (the same
/// rules with every WAN up) sends traffic through and `live` does not. `wan_slots` name the
/// slots both tables use (the adopted ones).
pub fn down_in(
    all_up: &PolicyTable,
    live: &PolicyTable,
    wan_slots: &NameIds,
) -> Vec<(String, Family)> {
    let mut down = Vec::new();
    for family in Family::ALL {
        let wanted = carried(all_up, family);
        let carried = carried(live, family);
        for (name, slot) in wan_slots {
            if wanted.contains(slot) && !carried.contains(slot) {
                down.push((name.clone(), family));
            }
        }
    }
    down
}

/// The WAN slots `family`'s half of `table` sends traffic through.
fn carried(table: &PolicyTable, family: Family) -> BTreeSet<u32> {
    let half = table.family(family);
    let marked = half
        .entries
        .iter()
        .filter(|e| e.action == action::MARK)
        .map(|e| e.wan);
    let balanced = half
        .entries
        .iter()
        .zip(0u32..)
        .filter(|(e, _)| e.action == action::BALANCE)
        .filter_map(|(_, rule)| half.slots.get(&rule))
        .flat_map(|slots| slots.iter().map(|s| s.wan));
    marked.chain(balanced).collect()
}

/// Takes down, in `health`, each WAN family the pinned live generation of `maps` had down
/// (see the module): `rules` and `wan_slots` are the adopted ones, `config` the one starting.
/// Says which, one line each; a table that cannot be read is said too, and the WANs then start
/// as without adopted state.
pub fn hold_down(
    health: &mut Health,
    maps: &Maps,
    config: &Config,
    (rules, wan_slots): (&BTreeMap<u32, Rule>, &NameIds),
    now: Instant,
) -> Vec<ReportLine> {
    let live = match maps.active_generation().and_then(|g| maps.policy_table(g)) {
        Ok(t) => t,
        Err(e) => {
            return vec![ReportLine::warning(format!(
                "reading the adopted policy table: {e}; every WAN with carrier starts up \
                 until its probes say otherwise"
            ))];
        }
    };
    let (all_up, _) = policy::table(config, rules, |name, _| {
        Some(WanView {
            slot: *wan_slots.get(name)?,
            mark: config.wan(name)?.mark,
            up: true,
        })
    });
    let mut lines = Vec::new();
    for (name, family) in down_in(&all_up, &live, wan_slots) {
        if !health.down_at_restart(&name, family, now) {
            continue;
        }
        let up_after = health
            .deciding(&name, family)
            .map_or(0, |t| t.track().up_after);
        lines.push(ReportLine::info(format!(
            "{name} {}: down when the daemon restarted (the adopted policy table sent none of \
             its traffic through it): it stays down until {up_after} probe rounds in a row \
             pass",
            family.name()
        )));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::controller::desired;

    fn config(sets: &str) -> Config {
        let text = format!(
            r#"
[general]
lan = ["lan0"]
{wans}[[policy]]
name = "wan1-first"
members = [{{ wan = "wan1" }}, {{ wan = "wan2", metric = 2 }}]
[[policy]]
name = "balanced"
members = [{{ wan = "wan1" }}, {{ wan = "wan2" }}]
[default]
policy = "wan1-first"
{sets}"#,
            wans = crate::config::testing::TWO_WANS
        );
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml")).expect("valid")
    }

    const BALANCED_SET: &str = r#"
[[set]]
name = "bypass"
policy = "balanced"
prefixes = ["203.0.113.0/24"]
"#;

    /// The policy table of `cfg` with the WAN families `up` says, and the WAN slots.
    fn table(cfg: &Config, up: impl Fn(&str, Family) -> bool) -> (PolicyTable, NameIds) {
        let d = desired::desired(cfg, &NameIds::new(), &NameIds::new(), up);
        (d.contents.table, d.wan_slots)
    }

    #[test]
    fn a_wan_family_the_live_table_steers_nothing_through_was_down() {
        let cfg = config(BALANCED_SET);
        let (all_up, slots) = table(&cfg, |_, _| true);
        assert_eq!(down_in(&all_up, &all_up, &slots), []);
        // wan1's IPv4 down: the default rule marks wan2, the balanced rule has wan2's slots
        // only; its IPv6 still goes by wan1.
        let (v4_down, _) = table(&cfg, |w, f| !(w == "wan1" && f == Family::V4));
        assert_eq!(
            down_in(&all_up, &v4_down, &slots),
            [("wan1".to_owned(), Family::V4)]
        );
        // wan2 carries only the balanced rule's share: that it has none is seen too.
        let (wan2_down, _) = table(&cfg, |w, _| w != "wan2");
        assert_eq!(
            down_in(&all_up, &wan2_down, &slots),
            [
                ("wan2".to_owned(), Family::V4),
                ("wan2".to_owned(), Family::V6)
            ]
        );
    }

    #[test]
    fn a_wan_no_rule_would_send_traffic_through_is_not_taken_for_down() {
        // wan2 is wan1-first's fallback only: with wan1 up nothing goes through it, in the
        // live table as with every WAN up. It starts as without adopted state.
        let cfg = config("");
        let (all_up, slots) = table(&cfg, |_, _| true);
        assert_eq!(down_in(&all_up, &all_up, &slots), []);
        // wan1 down: wan2 carries what wan1 did (not a sign of anything), wan1 was down.
        let (wan1_down, _) = table(&cfg, |w, _| w != "wan1");
        assert_eq!(
            down_in(&all_up, &wan1_down, &slots),
            [
                ("wan1".to_owned(), Family::V4),
                ("wan1".to_owned(), Family::V6)
            ]
        );
    }

    #[test]
    fn a_wan_down_at_restart_needs_up_after_good_rounds_and_says_why() {
        use crate::health::RoundSummary;
        let t0 = Instant::now();
        let wan = |name: &str, iface: &str| crate::config::Wan {
            track: crate::config::testing::icmp_track(100, 80, 3, 2),
            ..crate::config::testing::wan(name, iface)
        };
        let mut health = Health::default();
        health.follow(
            &[wan("dsl", "eth1"), wan("lte", "eth2")],
            |i| i == "eth1",
            t0,
        );
        assert!(health.down_at_restart("dsl", Family::V4, t0));
        assert!(
            !health.down_at_restart("lte", Family::V4, t0),
            "without carrier it is down already"
        );
        assert!(!health.up("dsl", Family::V4));
        let said = health
            .deciding("dsl", Family::V4)
            .expect("tracked")
            .describe(t0);
        assert!(said.contains("down when the daemon restarted"), "{said}");
        assert!(said.contains("0/2 good rounds to come back"), "{said}");
        let good = |i: u64| RoundSummary {
            started: t0 + std::time::Duration::from_millis(100 * i),
            answers: vec![Some(std::time::Duration::from_millis(10))],
            failure: None,
        };
        let mut tracker = health.deciding("dsl", Family::V4).expect("tracked").clone();
        assert_eq!(tracker.round(&good(0), t0), None, "one round is not enough");
        assert!(tracker.round(&good(1), t0).expect("up after 2").up);
    }
}

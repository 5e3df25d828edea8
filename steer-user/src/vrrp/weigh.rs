//! WAN health -> an instance's effective priority, or the fault state. Pure.
//!
//! - Every WAN an instance lists that is down takes its `weight` off the configured priority
//!   (never below 1; a priority-255 owner with a WAN down is an owner no longer: at most 254).
//! - A master-only WAN on a router that is not master is not probed (it is down on purpose):
//!   it counts as it was when this router last left MASTER, so a router that gave up mastership
//!   because that WAN failed does not take it back until it has been master and seen the WAN
//!   work again; one never seen counts as up.
//! - A master-only WAN that did not come up when this router became master counts as down.
//! - With `all_wans_down = "fault"`, an instance whose WANs all count as down (as above, and
//!   at least one of them probed and down) enters the fault state (a master resigns with
//!   priority 0). A held-down master-only WAN that was up, or was never seen, keeps a backup
//!   out of fault: as master it brings that line up, so it must be able to take over.
//! - keepalived's `track_file` gets the penalty, the sum of those weights (with `weight -1` in
//!   keepalived.conf it lowers keepalived's own priority by as much), or 254 for a fault
//!   (keepalived enters FAULT below -253).

use crate::config::{AllWansDown, Vrrp, VrrpWan};

/// How a WAN an instance lists looks now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanHealth {
    Up,
    Down,
    /// Master-only on a router that is not master: as it was when the router left MASTER
    /// (`None`: never seen).
    Unprobed(Option<bool>),
    /// Master-only, and it did not come up when this router became master: down, but not
    /// probed (it never causes the fault state).
    Failed,
}

/// An instance's priority as its WANs make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weighed {
    pub priority: u8,
    /// The weights of the WANs that count as down.
    pub penalty: u32,
    /// `Some(why)`: the instance should be in the fault state.
    pub fault: Option<String>,
    /// How the priority came about ("150 - 50 (wan1 down) = 100").
    pub why: String,
}

impl Weighed {
    /// What keepalived's `track_file` should hold: the penalty (at most 253), or 254 for a
    /// fault.
    pub fn track_value(&self) -> u8 {
        if self.fault.is_some() {
            254
        } else {
            self.penalty.min(253) as u8
        }
    }
}

/// Weighs instance `v`'s WANs as `health` reports them.
pub fn weigh(v: &Vrrp, health: impl Fn(&VrrpWan) -> WanHealth) -> Weighed {
    let base = v.base_priority();
    let mut penalty: u32 = 0;
    let mut lost = Vec::new();
    let mut probed = 0;
    let mut counted_down = 0;
    let mut down_words = Vec::new();
    for w in &v.wans {
        let h = health(w);
        let down = match h {
            WanHealth::Up => false,
            WanHealth::Down | WanHealth::Failed => true,
            WanHealth::Unprobed(seen) => seen == Some(false),
        };
        if matches!(h, WanHealth::Up | WanHealth::Down) {
            probed += 1;
        }
        let how = match h {
            WanHealth::Unprobed(_) => "was down when this router left MASTER",
            WanHealth::Failed => "did not come up",
            _ => "down",
        };
        if down {
            counted_down += 1;
            down_words.push(if how == "down" {
                w.wan.clone()
            } else {
                format!("{} {how}", w.wan)
            });
        }
        if down && w.weight > 0 {
            penalty += u32::from(w.weight);
            lost.push(format!("{} ({} {how})", w.weight, w.wan));
        }
    }
    let priority = if penalty == 0 {
        base
    } else {
        u8::try_from(u32::from(base).saturating_sub(penalty).clamp(1, 254)).unwrap_or(1)
    };
    let why = if lost.is_empty() {
        format!("{base}")
    } else {
        format!("{base} - {} = {priority}", lost.join(" - "))
    };
    // A held-down master-only WAN that was up (or never seen) is a line this router brings up
    // as master: it is not WAN-less, and must be able to take over from a dead master. One
    // that was down, or did not come up, counts as down here as in the priority; yet a probed
    // WAN must be down too, so a router whose only WANs are master-only keeps trying them.
    let fault =
        (v.all_wans_down == AllWansDown::Fault && probed > 0 && counted_down == v.wans.len())
            .then(|| format!("every WAN is down ({})", down_words.join(", ")));
    Weighed {
        priority,
        penalty,
        fault,
        why,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn instance(priority: u8, all_down: &str) -> Vrrp {
        let text = format!(
            r#"
[general]
lan = ["br-lan"]
{wans}[[vrrp]]
name = "lan"
interface = "br-lan"
vrid = 1
priority = {priority}
vips = ["192.168.1.1/24"]
all_wans_down = "{all_down}"
wans = [{{ wan = "wan1", weight = 50, master_only = true }}, {{ wan = "wan2", weight = 30 }}]
"#,
            wans = crate::config::testing::TWO_WANS
        );
        crate::config::parse(&text, Path::new("/nonexistent/steer.toml"))
            .unwrap()
            .vrrp
            .remove(0)
    }

    fn states(w1: WanHealth, w2: WanHealth) -> impl Fn(&VrrpWan) -> WanHealth {
        move |w| if w.wan == "wan1" { w1 } else { w2 }
    }

    use WanHealth::{Down, Failed, Unprobed, Up};

    #[test]
    fn a_wan_that_did_not_come_up_lowers_the_priority_without_a_fault() {
        let w = weigh(&instance(150, "fault"), states(Failed, Unprobed(None)));
        assert_eq!((w.priority, w.fault), (100, None));
        assert_eq!(w.why, "150 - 50 (wan1 did not come up) = 100");
    }

    #[test]
    fn each_down_wan_takes_its_weight_off() {
        let v = instance(150, "fault");
        assert_eq!(weigh(&v, states(Up, Up)).priority, 150);
        let w = weigh(&v, states(Down, Up));
        assert_eq!((w.priority, w.fault.as_deref()), (100, None));
        assert_eq!(w.why, "150 - 50 (wan1 down) = 100");
        assert_eq!(w.track_value(), 50);
    }

    #[test]
    fn every_probed_wan_down_is_a_fault_or_only_a_lower_priority() {
        let w = weigh(&instance(150, "fault"), states(Down, Down));
        assert_eq!(w.fault.as_deref(), Some("every WAN is down (wan1, wan2)"));
        assert_eq!(w.track_value(), 254);
        let w = weigh(&instance(150, "priority"), states(Down, Down));
        assert_eq!((w.priority, w.fault), (70, None));
    }

    #[test]
    fn an_unprobed_master_only_wan_counts_as_last_seen() {
        let v = instance(150, "fault");
        assert_eq!(weigh(&v, states(Unprobed(None), Up)).priority, 150);
        let w = weigh(&v, states(Unprobed(Some(false)), Down));
        assert_eq!(w.priority, 70);
        assert_eq!(
            w.fault.as_deref(),
            Some("every WAN is down (wan1 was down when this router left MASTER, wan2)"),
        );
        let w = weigh(&v, states(Unprobed(Some(false)), Up));
        assert_eq!((w.priority, w.fault), (100, None));
        assert!(w.why.contains("was down when this router left MASTER"));
    }

    #[test]
    fn a_backup_with_a_held_down_line_that_worked_is_not_in_fault() {
        // Its own line is down, the shared master-only line held down (up when it last left
        // MASTER, or never seen): when the master dies it must take over and bring it up.
        let v = instance(100, "fault");
        for seen in [Some(true), None] {
            let w = weigh(&v, states(Unprobed(seen), Down));
            assert_eq!(w.fault, None, "{seen:?}");
            assert_eq!(w.priority, 70, "{seen:?}");
            assert_eq!(w.track_value(), 30, "keepalived's track file: not 254");
        }
    }

    #[test]
    fn a_master_whose_line_did_not_come_up_and_whose_own_is_down_is_in_fault() {
        let w = weigh(&instance(150, "fault"), states(Failed, Down));
        assert_eq!(
            w.fault.as_deref(),
            Some("every WAN is down (wan1 did not come up, wan2)")
        );
        // Only master-only WANs, none probed: no fault, the router keeps trying them.
        let mut v = instance(150, "fault");
        v.wans.retain(|w| w.master_only);
        assert_eq!(weigh(&v, |_| Failed).fault, None);
    }

    #[test]
    fn the_priority_stays_within_one_and_254_once_lowered() {
        let v = instance(40, "priority");
        assert_eq!(weigh(&v, states(Down, Up)).priority, 1);
        let owner = instance(255, "priority");
        assert_eq!(weigh(&owner, states(Up, Up)).priority, 255);
        assert_eq!(weigh(&owner, states(Up, Down)).priority, 225);
    }
}

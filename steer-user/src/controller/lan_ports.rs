//! LAN interfaces listed together with the bridge they are ports of.
//!
//! A frame that comes in on a bridge port meets the classifier twice when `general.lan` lists
//! both: at the port's ingress, then again when the bridge passes it up on the bridge device.
//! The second pass replaces the first one's mark (while br_netfilter is off, as on OpenWrt), so
//! a set with `in = ["<port>"]` silently does not apply, and every counter counts such packets
//! twice. Steering by port means listing the ports instead of the bridge; which one the owner
//! meant, steer cannot know, so it says so and changes nothing.

use crate::routing::Links;

/// A LAN interface of `general.lan` that is a port of a bridge `general.lan` lists too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOfListedBridge {
    pub port: String,
    pub bridge: String,
}

/// The interfaces of `lan` that are ports of another interface of `lan`, in `lan`'s order.
pub fn ports_of_listed_bridges(lan: &[String], links: &Links) -> Vec<PortOfListedBridge> {
    lan.iter()
        .filter_map(|port| {
            let master = links.get(port)?.master?;
            let bridge = links.name(master)?;
            // A VRF is a master too, but does not pass its devices' packets up again.
            links.get(bridge).filter(|m| m.bridge)?;
            lan.iter().any(|l| l == bridge).then(|| PortOfListedBridge {
                port: port.clone(),
                bridge: bridge.to_owned(),
            })
        })
        .collect()
}

impl PortOfListedBridge {
    /// What the log says when the two are first seen listed together.
    pub fn warning(&self) -> String {
        let (port, bridge) = (&self.port, &self.bridge);
        format!(
            "general.lan lists {port} and {bridge}, the bridge {port} is a port of: a packet \
             from {port} is classified twice, on {port} and again on {bridge}, and the second \
             answer replaces the first while br_netfilter is off (a set with in = [\"{port}\"] \
             does not apply), and counters count such packets twice; list the bridge (one \
             answer for all its ports) or its ports (sets by port), not both"
        )
    }

    /// What `steer status` says of the port.
    pub fn problem(&self) -> String {
        format!(
            "a port of {}, listed too: classified twice, the bridge's answer wins",
            self.bridge
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{PortOfListedBridge, ports_of_listed_bridges};
    use crate::routing::{LinkInfo, Links};

    fn link(index: u32, name: &str, master: Option<u32>) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            carrier: true,
            admin_up: true,
            point_to_point: false,
            bridge: master.is_none(),
            bridge_nf_call: false,
            ppp: false,
            master,
        }
    }

    #[test]
    fn a_port_is_named_only_when_its_bridge_is_listed_too() {
        let mut links = Links::default();
        links.insert(link(2, "br-lan", None));
        links.insert(link(3, "lan1", Some(2)));
        links.insert(link(4, "lan2", Some(2)));
        links.insert(link(5, "guest", None));
        let vrf = LinkInfo {
            bridge: false,
            ..link(6, "vrf-blue", None)
        };
        links.insert(vrf);
        links.insert(link(7, "lan3", Some(6)));
        let lan = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ports_of_listed_bridges(&lan(&["br-lan", "lan1", "guest", "gone"]), &links),
            vec![PortOfListedBridge {
                port: "lan1".into(),
                bridge: "br-lan".into()
            }]
        );
        // The ports alone (sets by port), or the bridge alone: nothing to say.
        assert!(ports_of_listed_bridges(&lan(&["lan1", "lan2", "guest"]), &links).is_empty());
        assert!(ports_of_listed_bridges(&lan(&["br-lan", "guest"]), &links).is_empty());
        // A VRF's device listed with it: not passed up again, nothing to say.
        assert!(ports_of_listed_bridges(&lan(&["vrf-blue", "lan3"]), &links).is_empty());
    }
}

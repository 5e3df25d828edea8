//! Real traffic: the lab's client sends UDP through the router, where steer's classifier is
//! attached for real on the LAN side (no daemon, no routing module). The router's main table
//! sends everything via WAN 1, and one fwmark rule sends WAN 2's mark to a table via WAN 2, so
//! a packet leaves by WAN 2 only if steer marked it. Which WAN carried what is observed in the
//! internet namespace (by the router's NAT address per WAN); the marks themselves by the
//! testkit witness attached after steer on the same hook.

use std::net::IpAddr;

use steer::{
    dataplane::{Dataplane, XdpAttachMode},
    model::{Direction, Family},
};
use steer_common::{PolicyEntry, action, path};
use steer_tests::{
    classifier::{MASK, prefix_of},
    lab::{Lab, Wan, udp_via},
    netns::Netns,
    require_root,
    witness::Witness,
};

const PER_FLOW: usize = 25;
/// The WAN of the bypass set, whose mark the test's rule routes.
const BYPASS: Wan = Wan::Two;

/// Policy routing for one mark only: packets carrying `w`'s mark look up a table whose default
/// route goes via `w`.
fn route_mark_via(lab: &Lab, w: Wan) {
    let (dev, table, mark) = (Lab::wan_iface(w), w.table(), w.mark());
    lab.router.run(&format!(
        "ip route add default via {gw4} dev {dev} table {table} && \
         ip -6 route add default via {gw6} dev {dev} table {table} && \
         ip rule add fwmark {mark:#x}/{MASK:#x} lookup {table} pref 100 && \
         ip -6 rule add fwmark {mark:#x}/{MASK:#x} lookup {table} pref 100",
        gw4 = Lab::gateway_v4(w),
        gw6 = Lab::gateway_v6(w),
    ));
}

fn steer_real_traffic(with_xdp: bool) {
    require_root();
    let lab = Lab::new();
    lab.set_main_default(BYPASS.other());
    route_mark_via(&lab, BYPASS);
    let mut dp = Dataplane::load().expect("load steer");
    // Bypass set (rule 1): server B, v4 and v6, gets the bypass WAN's mark. Everything else keeps
    // the default rule, which has no policy: unmarked, main table, the other WAN.
    let bypass = PolicyEntry {
        action: action::MARK,
        mark: BYPASS.mark(),
        mask: MASK,
        wan: 1,
        ..PolicyEntry::default()
    };
    for family in Family::ALL {
        dp.maps_mut().set_policy(0, family, 1, bypass).unwrap();
    }
    for prefix in [
        format!("{}/32", Lab::SERVER_B),
        format!("{}/128", Lab::SERVER_B6),
    ] {
        dp.maps_mut()
            .set_prefix(Direction::Dst, prefix_of(&prefix), 1)
            .unwrap();
    }

    let mut witness = Witness::load();
    let mode = lab.router.enter(|| {
        let mode = dp
            .attach(Lab::LAN_IFACE, with_xdp)
            .expect("attach steer")
            .xdp;
        witness.attach(
            Lab::LAN_IFACE,
            aya::programs::LinkOrder::after_program(dp.tc()).expect("steer is loaded"),
        );
        mode
    });
    if with_xdp {
        assert_eq!(mode, Some(XdpAttachMode::Native), "veth has native XDP");
    }

    let (default, bypassed) = ([PER_FLOW, 0], [0, PER_FLOW]);
    for (server, port, want) in [
        (IpAddr::from(Lab::SERVER_A), 5551, default),
        (Lab::SERVER_B.into(), 5552, bypassed),
        (Lab::SERVER_A6.into(), 5553, default),
        (Lab::SERVER_B6.into(), 5554, bypassed),
    ] {
        assert_eq!(
            udp_via(&lab, server, port, PER_FLOW),
            want,
            "datagrams to {server} via [WAN 1, WAN 2] (xdp={with_xdp})"
        );
    }
    // The witness runs after steer: it saw every bypass packet with steer's mark.
    assert_eq!(
        witness.seen(BYPASS.mark()),
        2 * PER_FLOW as u64,
        "witness saw the bypass marks"
    );
    assert!(
        witness.seen(0) >= 2 * PER_FLOW as u64,
        "witness saw the unmarked default traffic"
    );
    assert_eq!(
        dp.maps().rule_counter(1).unwrap().packets,
        2 * PER_FLOW as u64
    );
    assert_eq!(
        dp.maps().wan_counter(1).unwrap().packets,
        2 * PER_FLOW as u64
    );
    let via_meta = dp.maps().path_counter(path::XDP_META).unwrap().packets;
    let by_tc = dp.maps().path_counter(path::CLASSIFIED).unwrap().packets;
    if with_xdp {
        // Every IP packet was classified in XDP and TC took the verdict from the metadata.
        assert!(
            via_meta >= 4 * PER_FLOW as u64,
            "XDP verdicts used: {via_meta}"
        );
        assert_eq!(by_tc, 0, "TC never had to classify by itself");
    } else {
        assert_eq!(via_meta, 0);
        assert!(by_tc >= 4 * PER_FLOW as u64, "TC classified: {by_tc}");
    }
    drop(lab);
}

#[test]
fn tc_marks_steer_real_traffic() {
    steer_real_traffic(false);
}

#[test]
fn xdp_verdicts_reach_tc_through_metadata_in_real_traffic() {
    steer_real_traffic(true);
}

#[test]
fn xdp_falls_back_to_generic_where_the_driver_has_none_and_the_pin_remembers_it() {
    require_root();
    // A macvlan has no native XDP: steer attaches generic XDP, says so, and a new daemon
    // adopting the pinned link reports the same mode.
    let ns = Netns::new("xdpgen");
    ns.run("ip link add base0 type veth peer name base1 && ip link set base0 up && ip link set base1 up && \
            ip link add mv0 link base0 type macvlan mode bridge && ip link set mv0 up");
    let work = steer_tests::daemon::Workdir::new("xdpgen");
    let mode = ns.enter(|| {
        let (mut dp, _) = Dataplane::open_pinned(&work.pin_dir).expect("open pinned");
        let r = dp.attach("mv0", true).expect("attach");
        assert!(r.xdp_error.is_none(), "{:?}", r.xdp_error);
        r.xdp
    });
    assert_eq!(mode, Some(XdpAttachMode::Generic));
    assert!(work.pin_dir.join("links/xdp-generic-mv0").exists());
    let adopted = ns.enter(|| {
        let (mut dp, adopted) = Dataplane::open_pinned(&work.pin_dir).expect("reopen");
        assert_eq!(adopted.xdp_links, ["mv0"]);
        let r = dp.attach("mv0", true).expect("adopt");
        assert!(r.adopted, "the TC link was adopted");
        // Switching XDP off keeps the TC link (no moment without a classifier).
        let r2 = dp.attach("mv0", false).expect("xdp off");
        assert!(!r2.tc_attached && r2.xdp.is_none());
        r.xdp
    });
    assert_eq!(adopted, Some(XdpAttachMode::Generic));
    assert!(
        !work.pin_dir.join("links/xdp-generic-mv0").exists(),
        "xdp pin removed"
    );
    assert!(work.pin_dir.join("links/tc-mv0").exists(), "tc pin kept");
}

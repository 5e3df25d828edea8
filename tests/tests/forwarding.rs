//! The forwarding benchmark's lab, checked: every contender's router forwards the generator's
//! packets and marks exactly the bypass half for WAN 2, and the router's receive path runs on
//! the router CPU. (The benchmark itself is `cargo xtask bench forwarding`; nothing here
//! measures speed.)

use std::time::{Duration, Instant};

use steer_tests::{
    forwarding::{
        contenders::{CONTENDERS, Shared, missing_tools},
        generator::{Generator, Load, TrafgenConfig},
        lab::{ForwardingLab, ROUTER_CPU, last_cpu, thread_runtime_ns},
        workload::Workload,
    },
    require_root,
};

const FLOWS: usize = 64;
const PACKETS: u64 = 4 * FLOWS as u64;

#[test]
fn every_contender_forwards_and_marks_the_bypass_half_for_wan2() {
    require_root();
    let missing = missing_tools();
    assert!(
        missing.is_empty(),
        "missing {}: run `cargo xtask setup`",
        missing.join(", ")
    );
    let w = Workload::new("smoke", 1_000, true, FLOWS, 0x5a0c);
    let config = TrafgenConfig::write(&w.trafgen_config());
    let lab = ForwardingLab::new(CONTENDERS.len());
    let mut shared = Shared::default();
    for (c, router) in CONTENDERS.iter().zip(&lab.routers) {
        for layer in c.layers {
            shared.install(*layer, router, &w);
        }
    }
    for (c, router) in CONTENDERS.iter().zip(&lab.routers) {
        let k = router.index;
        let before = [lab.delivered(k, 0), lab.delivered(k, 1)];
        let cpu_before = thread_runtime_ns(router.napi_tid);
        // Paced, so no ring overflows: every packet must arrive.
        let mut g = Generator::start(
            &lab,
            router,
            &config.path,
            Load::Paced {
                packets: PACKETS,
                gap_us: 20,
            },
        );
        g.wait_done(Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(2);
        let delivered = loop {
            let d = [0, 1].map(|wan| lab.delivered(k, wan) - before[wan]);
            if d[0] + d[1] >= PACKETS || Instant::now() > deadline {
                break d;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let want = if c.classifies() {
            [PACKETS / 2, PACKETS / 2]
        } else {
            [PACKETS, 0]
        };
        assert_eq!(delivered, want, "{}: packets via [WAN 1, WAN 2]", c.name);
        assert!(
            thread_runtime_ns(router.napi_tid) > cpu_before,
            "{}: the router's NAPI thread did the work",
            c.name
        );
        assert_eq!(
            last_cpu(router.napi_tid),
            Some(ROUTER_CPU),
            "{}: the router's NAPI thread runs on the router CPU",
            c.name
        );
    }
    let (via_xdp, _) = shared.steer_paths().expect("steer is loaded");
    assert!(
        via_xdp >= PACKETS,
        "steer XDP+TC: TC took {via_xdp} verdicts from XDP metadata"
    );
}

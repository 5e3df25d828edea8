//! A loaded steer object with helpers to fill its maps, for BPF_PROG_TEST_RUN fixtures.

use std::net::IpAddr;

use steer::{
    dataplane::{
        Dataplane,
        ordered::Resolved,
        run::{TcOutcome, XdpOutcome, run_tc, run_tc_from, run_xdp},
    },
    model::{CondTables, Direction, Family, LocalKind, OrderedRule},
    packet::Frame,
    prefix::Prefix,
};
use steer_common::{
    GENERATIONS, LB_BLOCKS, LB_SLOTS, LbSlot, NO_WAN, PolicyEntry, action, policy_flags,
    settings_flags,
};

/// The mark mask the fixtures use (the DESIGN.md default).
pub const MASK: u32 = 0xff00;
/// `TC_ACT_UNSPEC`: the "continue" verdict.
pub const TC_CONTINUE: i32 = -1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;

#[derive(Debug)]
pub struct Classifier {
    pub dp: Dataplane,
}

impl Classifier {
    /// Loads a fresh object (its own maps, nothing attached).
    pub fn load() -> Self {
        crate::require_root();
        let dp = Dataplane::load().unwrap_or_else(|e| panic!("load: {e}"));
        Classifier { dp }
    }

    /// Makes `rule` stamp `mark` (under `MASK`) in every generation.
    pub fn mark_rule(&mut self, rule: u32, mark: u32) -> &mut Self {
        for generation in 0..GENERATIONS {
            self.set_policy(generation, rule, mark);
        }
        self
    }

    /// Makes `rule` stamp `mark` in one generation only.
    pub fn set_policy(&mut self, generation: u32, rule: u32, mark: u32) -> &mut Self {
        let entry = PolicyEntry {
            action: action::MARK,
            mark,
            mask: MASK,
            wan: NO_WAN,
            ..PolicyEntry::default()
        };
        for family in Family::ALL {
            self.dp
                .maps_mut()
                .set_policy(generation, family, rule, entry)
                .expect("write policy");
        }
        self
    }

    pub fn dst(&mut self, prefix: &str, rule: u32) -> &mut Self {
        self.dp
            .maps_mut()
            .set_prefix(Direction::Dst, prefix_of(prefix), rule)
            .expect("insert dst prefix");
        self
    }

    /// A source prefix, with the settings flag that makes the classifier look at sources.
    pub fn src(&mut self, prefix: &str, rule: u32) -> &mut Self {
        let p = prefix_of(prefix);
        self.with_source_lookups(p.is_v4());
        self.dp
            .maps_mut()
            .set_prefix(Direction::Src, p, rule)
            .expect("insert src prefix");
        self
    }

    /// Sets `HAS_SRC_V4` or `HAS_SRC_V6` (the controller does this for source sets).
    pub fn with_source_lookups(&mut self, v4: bool) -> &mut Self {
        let mut settings = self.dp.maps().settings().expect("read settings");
        settings.flags |= if v4 {
            settings_flags::HAS_SRC_V4
        } else {
            settings_flags::HAS_SRC_V6
        };
        self.dp
            .maps_mut()
            .set_settings(settings)
            .expect("write settings");
        self
    }

    /// Makes `prefix` a local destination (never steered).
    pub fn local(&mut self, prefix: &str) -> &mut Self {
        self.dp
            .maps_mut()
            .set_local(prefix_of(prefix), LocalKind::Connected)
            .expect("insert local prefix");
        self
    }

    /// Makes `rule` balance over `marks` slot by slot (slot i gets `marks[i % len]`), in every
    /// generation; `by_source` picks slots by the source hash.
    pub fn balance_rule(&mut self, rule: u32, marks: &[u32], by_source: bool) -> &mut Self {
        let slots: [LbSlot; LB_SLOTS as usize] = std::array::from_fn(|i| LbSlot {
            mark: marks[i % marks.len()],
            wan: (i % marks.len()) as u32,
        });
        // One block per rule id, shared by every generation and family.
        let block = rule % LB_BLOCKS;
        self.dp
            .maps_mut()
            .set_lb_block(block, &slots)
            .expect("write slots");
        let entry = PolicyEntry {
            action: action::BALANCE,
            mask: MASK,
            wan: NO_WAN,
            flags: if by_source { policy_flags::HASH_SRC } else { 0 },
            lb: block,
            ..PolicyEntry::default()
        };
        for generation in 0..GENERATIONS {
            for family in Family::ALL {
                let maps = self.dp.maps_mut();
                maps.set_policy(generation, family, rule, entry)
                    .expect("write policy");
            }
        }
        self
    }

    /// Loads `rules` as the ordered rules, through the controller's own writer (the other bank,
    /// then the flip), with the settings flag that makes the classifier look at them.
    /// Interface names resolve in the calling thread's network namespace.
    pub fn ordered(&mut self, rules: &[OrderedRule]) -> &mut Self {
        let tables = CondTables::compile(rules).expect("compile the ordered rules");
        let resolved = Resolved::new(&tables, |name| steer::dataplane::ifindex(name).ok());
        let maps = self.dp.maps_mut();
        maps.sync_ordered(&resolved)
            .expect("write the ordered rules");
        let mut settings = maps.settings().expect("read settings");
        if tables.is_empty() {
            settings.flags &= !settings_flags::HAS_COND;
        } else {
            settings.flags |= settings_flags::HAS_COND;
        }
        maps.set_settings(settings).expect("write settings");
        self
    }

    /// Runs TC on `frame` as if it came in on device `ifindex`.
    pub fn tc_from(&self, frame: &[u8], ifindex: u32) -> TcOutcome {
        let out = run_tc_from(self.dp.tc(), frame, ifindex)
            .unwrap_or_else(|e| panic!("tc test run: {e}: {:?}", std::error::Error::source(&e)));
        assert_eq!(
            out.verdict, TC_CONTINUE,
            "the classifier must never end the tc chain"
        );
        out
    }

    pub fn remove_dst(&mut self, prefix: &str) -> &mut Self {
        assert!(
            self.dp
                .maps_mut()
                .remove_prefix(Direction::Dst, prefix_of(prefix))
                .expect("remove")
        );
        self
    }

    /// Runs TC on `frame` with an empty skb->mark and asserts the "continue" verdict.
    pub fn tc(&self, frame: &[u8]) -> TcOutcome {
        self.tc_with_mark(frame, 0)
    }

    pub fn tc_with_mark(&self, frame: &[u8], mark_in: u32) -> TcOutcome {
        let out = run_tc(self.dp.tc(), frame, mark_in)
            .unwrap_or_else(|e| panic!("tc test run: {e}: {:?}", std::error::Error::source(&e)));
        assert_eq!(
            out.verdict, TC_CONTINUE,
            "the classifier must never end the tc chain"
        );
        out
    }

    /// The mark TC gives a UDP packet `src -> dst`.
    pub fn mark_of(&self, src: &str, dst: &str) -> u32 {
        self.tc(&Frame::udp(ip(src), ip(dst)).build()).mark
    }

    pub fn xdp(&self, frame: &[u8]) -> XdpOutcome {
        let out = run_xdp(self.dp.xdp(), frame).unwrap_or_else(|e| panic!("xdp test run: {e}"));
        assert_eq!(
            out.verdict, XDP_PASS,
            "the XDP pre-classifier always passes packets on"
        );
        out
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn prefix_of(s: &str) -> Prefix {
    let (addr, len) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("{s}: want ADDR/LEN"));
    Prefix::new(ip(addr), len.parse().expect("length")).unwrap_or_else(|e| panic!("{s}: {e}"))
}

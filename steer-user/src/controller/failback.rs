//! Moving flows back to a WAN that recovered, for the policies that ask for it
//! (`failback = "move"`). Established connections keep their WAN otherwise.
//!
//! The kernel's verdict for a new packet is what the classifier computes; for a connection that
//! already exists it is asked here in userspace, with the same answer, in the classifier's
//! order: the first set with conditions it meets (read from the live condition maps), the
//! longest matching source prefix, a host learned from DNS, the longest destination prefix,
//! then the default rule (local destinations are never steered), and for a balanced rule the
//! slot of the same hash the kernel uses. Only connections that verdict would move are cut:
//! never one that came in from a WAN (a port forward, npt's way in), nor one whose rule
//! depends on what conntrack does not keep (a set with conditions on the source MAC or the
//! input interface).

use std::{collections::BTreeMap, net::IpAddr};

use steer_common::{
    LB_SLOTS, PolicyEntry, action, flow_hash, policy_flags, src_hash, words_v4, words_v6,
};

use crate::{
    config::{Config, Failback},
    conntrack::Connection,
    dataplane::ordered::{CondMaps, CondProbe, FirstMet, LiveBank},
    model::{Direction, Family, LocalSet, PolicyTable, PrefixMap, PrefixSets, Rule},
};

/// What the live state says about a connection's flow.
pub struct Verdicts<'a> {
    pub config: &'a Config,
    pub rules: &'a BTreeMap<u32, Rule>,
    pub prefixes: &'a PrefixSets,
    pub local: &'a LocalSet,
    pub table: &'a PolicyTable,
    pub ordered: &'a CondMaps,
    /// The live bank of the ordered rules, read once for every connection; `None` when it
    /// could not be read (no connection's rule can then be told).
    pub bank: Option<LiveBank>,
    /// The rule a host learned from DNS steers to.
    pub learned: &'a dyn Fn(IpAddr) -> Option<u32>,
}

impl Verdicts<'_> {
    /// Whether `conn` belongs to a policy that moves its flows back and would be stamped with
    /// another WAN mark now (one on the main table, [`crate::conntrack::main_table_mark`],
    /// when its policy's WAN is back).
    pub fn should_move(&self, conn: &Connection) -> bool {
        if conn.inbound {
            return false;
        }
        let Some(rule) = self.rule_of(conn) else {
            return false;
        };
        let moves_back = self
            .rules
            .get(&rule)
            .and_then(|r| r.policy.as_deref())
            .and_then(|p| self.config.policy(p))
            .is_some_and(|p| p.failback == Failback::Move);
        if !moves_back {
            return false;
        }
        let family = Family::of(&conn.dst);
        let entry = self.table.entry(family, rule);
        let mask = entry.mask;
        match self.mark_of(family, rule, &entry, conn) {
            Some(mark) => mark & mask != conn.mark & mask,
            None => false,
        }
    }

    /// The rule the connection's packets hit; `None` for a local destination, or when it
    /// cannot be told.
    fn rule_of(&self, conn: &Connection) -> Option<u32> {
        let (src, dst) = (conn.src, conn.dst);
        if self.local.keys().any(|p| p.contains(dst)) {
            return None;
        }
        let probe = CondProbe {
            src,
            dst,
            proto: conn.proto,
            ports: ports_of(conn),
            mac: None,
            ifindex: None,
        };
        let bank = self.bank.as_ref()?;
        match self.ordered.first_met(bank, &probe) {
            FirstMet::Rule(rule) => return Some(rule),
            FirstMet::Unknown => return None,
            FirstMet::None => {}
        }
        let v4 = dst.is_ipv4();
        let by = |dir: Direction, ip: IpAddr| {
            self.prefixes
                .longest(PrefixMap::new(dir, v4), ip)
                .map(|(_, r)| r)
        };
        Some(
            by(Direction::Src, src)
                .or_else(|| (self.learned)(dst))
                .or_else(|| by(Direction::Dst, dst))
                .unwrap_or(steer_common::DEFAULT_RULE),
        )
    }

    /// The mark the live table gives this connection's packets; `None` when it gives none.
    fn mark_of(
        &self,
        family: Family,
        rule: u32,
        entry: &PolicyEntry,
        conn: &Connection,
    ) -> Option<u32> {
        match entry.action {
            action::MARK => Some(entry.mark),
            action::BALANCE => {
                let slots = self.table.family(family).slots.get(&rule)?;
                let hash = hash_of(conn, entry.flags & policy_flags::HASH_SRC != 0);
                Some(slots[(hash & (LB_SLOTS - 1)) as usize].mark)
            }
            _ => None,
        }
    }
}

/// The hash the classifier computes for this connection's packets.
fn hash_of(conn: &Connection, by_source: bool) -> u32 {
    let words = |ip: IpAddr| match ip {
        IpAddr::V4(a) => words_v4(&a.octets()),
        IpAddr::V6(a) => words_v6(&a.octets()),
    };
    let (src, dst) = (words(conn.src), words(conn.dst));
    if by_source {
        src_hash(&src)
    } else {
        let (sport, dport) = ports_of(conn).unwrap_or((0, 0));
        flow_hash(&src, &dst, conn.proto, sport, dport)
    }
}

/// The ports the classifier reads of this connection's packets: conntrack also keeps ports
/// (or call ids) for GRE and DCCP, which the classifier does not read.
fn ports_of(conn: &Connection) -> Option<(u16, u16)> {
    steer_common::ipproto::has_ports(conn.proto).then_some((conn.sport, conn.dport))
}

//! Types shared by the steer kernel programs and userspace.
//!
//! Everything the kernel and userspace exchange is defined here and nowhere else: map names,
//! limits, the layout of every key and value, the XDP-to-TC metadata, and the meaning of every
//! number stored in a map. The types are `#[repr(C)]` with explicit padding and compile-time size
//! checks; there are no `bool`, `enum` or `Option` fields, because their representation is not a
//! contract the kernel side can rely on.
#![no_std]

use core::mem::size_of;

pub mod range;
pub mod range6;

/// Names of the maps in the steer object. Userspace opens and pins maps only through these.
///
/// Prefix sets are range tables: IPv4 ones (`DST_V4`, `SRC_V4`) as [`crate::range`] lays them
/// out, IPv6 ones (`DST_V6`, `SRC_V6`) as [`crate::range6`] does, each in the `range::SLOTS`
/// slots of an array of maps (the table, and the record of the prefixes).
pub mod map_names {
    /// Array of maps `[range::SLOTS]` of arrays of [`crate::range::Block`]: the IPv4
    /// destination prefixes' range table (slot `range::TABLE`, read by the classifier) and
    /// their record (slot `range::RECORD`, read by userspace).
    pub const DST_V4: &str = "DST_V4";
    /// As [`DST_V4`], for IPv6 destination prefixes: the range table is a
    /// [`crate::range6`] table; the record holds three `u64`s a prefix (address, then length
    /// and value as in [`crate::range::record_entry`]).
    pub const DST_V6: &str = "DST_V6";
    /// As [`DST_V4`], for IPv4 source prefixes.
    pub const SRC_V4: &str = "SRC_V4";
    /// As [`DST_V6`], for IPv6 source prefixes.
    pub const SRC_V6: &str = "SRC_V6";
    /// Array `[GENERATIONS * FAMILIES * MAX_RULES]` of [`crate::PolicyEntry`]: each rule's
    /// verdict per generation and address family (a WAN may be down for one family only).
    pub const POLICY: &str = "POLICY";
    /// Array `[LB_BLOCKS * LB_SLOTS]` of [`crate::LbSlot`]: a pool of slot tables, shared by
    /// every generation; a balanced rule's [`crate::PolicyEntry::lb`] names its block.
    pub const LB: &str = "LB";
    /// Array `[1]` of u32: the live generation (`0..GENERATIONS`).
    pub const ACTIVE: &str = "ACTIVE";
    /// Array `[1]` of [`crate::Settings`].
    pub const SETTINGS: &str = "SETTINGS";
    /// Per-CPU array `[MAX_RULES]` of [`crate::Counter`].
    pub const STATS_RULE: &str = "STATS_RULE";
    /// Per-CPU array `[MAX_WANS]` of [`crate::Counter`].
    pub const STATS_WAN: &str = "STATS_WAN";
    /// Per-CPU array `[PATH_COUNT]` of [`crate::Counter`], indexed by `crate::path::*`.
    pub const STATS_PATH: &str = "STATS_PATH";
    /// Array `[GENERATIONS * MAX_RULES]` of [`crate::RuleInfo`]: names for `steer dump`.
    pub const RULE_INFO: &str = "RULE_INFO";
    /// Array `[MAX_WANS]` of [`crate::WanInfo`]: names for `steer dump`.
    pub const WAN_INFO: &str = "WAN_INFO";
    /// LPM trie: IPv4 destinations the router reaches without a WAN -> [`crate::LocalRef`].
    /// A packet to one of them is never steered.
    pub const LOCAL_V4: &str = "LOCAL_V4";
    /// The same for IPv6.
    pub const LOCAL_V6: &str = "LOCAL_V6";
    /// LRU hash [`crate::FragKey`] -> [`crate::FragEntry`]: the rule and the flow hash of a
    /// fragmented datagram, written by its first fragment (the one with ports) for the
    /// fragments after it.
    pub const FRAGS: &str = "FRAGS";
    /// Per-CPU array `[MAX_RULES * MAX_WANS]` of [`crate::Counter`]: what each rule sent to
    /// each WAN (a balanced policy's measured shares).
    pub const STATS_RULE_WAN: &str = "STATS_RULE_WAN";
    /// Hash IPv4 address -> [`crate::Learned`]: hosts learned from DNS answers (domain sets).
    /// Looked up after the source sets and before the destination sets.
    pub const LEARNED_V4: &str = "LEARNED_V4";
    /// Hash IPv6 address -> [`crate::Learned`].
    pub const LEARNED_V6: &str = "LEARNED_V6";
    /// Per-CPU array `[MAX_WANS * FAMILIES]` of [`crate::WanTraffic`], indexed by
    /// [`crate::wan_traffic_index`]: what each WAN's own traffic says about its line.
    pub const WAN_TRAFFIC: &str = "WAN_TRAFFIC";
    /// Hash ifindex (u32) -> [`crate::WanDevice`]: the devices the WAN traffic counters watch.
    pub const WAN_DEVICES: &str = "WAN_DEVICES";

    // The ordered rules (sets with conditions), in two banks ([`crate::cond`]): the classifier
    // reads the bank `COND_ACTIVE` names, userspace writes the other one and flips the word.
    /// Array, one `u32`: the bank the classifier reads.
    pub const COND_ACTIVE: &str = "COND_ACTIVE";
    /// Array of [`crate::CondBank`], one per bank.
    pub const COND_BANK: &str = "COND_BANK";
    /// Array of `u64` rule bits by bank, family and IP protocol number.
    pub const COND_PROTO: &str = "COND_PROTO";
    /// Array of [`crate::PortClasses`]: the class of every port, by bank and direction.
    pub const COND_PORT_CLASS: &str = "COND_PORT_CLASS";
    /// Array of `u64` rule bits by bank, direction and port class.
    pub const COND_PORT_BITS: &str = "COND_PORT_BITS";
    /// Hash [`crate::CondMacKey`] -> `u64` rule bits of the rules naming that source MAC.
    pub const COND_MAC: &str = "COND_MAC";
    /// Hash [`crate::CondIfKey`] -> `u64` rule bits of the rules naming that input interface.
    pub const COND_IN: &str = "COND_IN";
    /// LPM tries keyed by bank then address ([`crate::CondAddrV4`]...) -> `u64` rule bits of
    /// the rules whose prefixes contain the matched prefix.
    pub const COND_DST_V4: &str = "COND_DST_V4";
    pub const COND_DST_V6: &str = "COND_DST_V6";
    pub const COND_SRC_V4: &str = "COND_SRC_V4";
    pub const COND_SRC_V6: &str = "COND_SRC_V6";

    /// Array `[1]` of `u32` that the daemon makes and pins beside the others (no program reads
    /// it, so it is not in [`ALL`], the object's maps): the layout of the range tables in the
    /// `DST_*` and `SRC_*` maps ([`crate::range::FORMAT`]). Two layouts have arrays of the same
    /// sizes, so the maps' shapes alone do not tell them apart; a daemon adopts pinned tables,
    /// and `steer explain` reads them, only in its own layout.
    pub const TABLE_FORMAT: &str = "TABLE_FORMAT";

    /// Array `[1]` of [`crate::PinOwner`] that the daemon makes and pins beside the others (no
    /// program reads it, so it is not in [`ALL`]): the network namespace whose daemon pinned
    /// the state. bpffs is shared by every network namespace, so two routers given the same
    /// pin directory would otherwise adopt (and detach) each other's classifier.
    pub const PIN_OWNER: &str = "PIN_OWNER";

    /// Every map steer owns and pins, in the order `steer dump` shows them.
    pub const ALL: [&str; 32] = [
        DST_V4,
        DST_V6,
        SRC_V4,
        SRC_V6,
        POLICY,
        LB,
        ACTIVE,
        SETTINGS,
        STATS_RULE,
        STATS_WAN,
        STATS_PATH,
        RULE_INFO,
        WAN_INFO,
        LOCAL_V4,
        LOCAL_V6,
        FRAGS,
        STATS_RULE_WAN,
        LEARNED_V4,
        LEARNED_V6,
        WAN_TRAFFIC,
        WAN_DEVICES,
        COND_ACTIVE,
        COND_BANK,
        COND_PROTO,
        COND_PORT_CLASS,
        COND_PORT_BITS,
        COND_MAC,
        COND_IN,
        COND_DST_V4,
        COND_DST_V6,
        COND_SRC_V4,
        COND_SRC_V6,
    ];
}

/// Names of the programs in the steer object.
pub mod program_names {
    /// TC ingress classifier on LAN interfaces.
    pub const TC: &str = "steer_tc";
    /// Optional XDP pre-classifier on the same interfaces.
    pub const XDP: &str = "steer_xdp";
    /// TC egress of every WAN device: counts the packets that expect an answer.
    pub const WAN_EGRESS: &str = "steer_wan_egress";
    /// TC ingress of every WAN device: counts the packets that are an answer.
    pub const WAN_INGRESS: &str = "steer_wan_ingress";
}

/// Rule ids per generation. Rule 0 is the default rule (what a packet gets when no set
/// matches); sets use ids 1..MAX_RULES.
pub const MAX_RULES: u32 = 256;
/// The default rule id.
pub const DEFAULT_RULE: u32 = 0;
/// Policy tables the kernel keeps: the live one, and standbys the controller precomputes for
/// the WAN failures it expects (a failover is then one word written, `ACTIVE`) or writes
/// before a flip. A power of two: indexes mask the generation with `GENERATIONS - 1`.
pub const GENERATIONS: u32 = 8;
/// WAN slots for per-WAN counters and names.
pub const MAX_WANS: u32 = 32;
/// Slots of the weighted consistent-hash table of one balanced rule in one generation: enough
/// that every weight up to 64 gets its share within one slot.
pub const LB_SLOTS: u32 = 256;
/// Blocks of `LB_SLOTS` slots in `LB`, allocated by userspace to the balanced rules of every
/// generation; rules (and generations) whose slot tables are equal share a block, so a standby
/// only takes blocks for the tables its failure changes. Live plus one generation being
/// written need at most 2 generations x 2 families x (policies that balance) blocks.
pub const LB_BLOCKS: u32 = 256;
/// `PolicyEntry::wan` / `LbSlot::wan` when the verdict is not a WAN (unmarked, last resort).
pub const NO_WAN: u32 = u32::MAX;

/// Default capacities of the prefix sets (whole family, all slots together).
pub const DEFAULT_CAPACITY_DST_V4: u32 = 2 * 1024 * 1024;
pub const DEFAULT_CAPACITY_DST_V6: u32 = 1024 * 1024;
pub const DEFAULT_CAPACITY_SRC_V4: u32 = 64 * 1024;
pub const DEFAULT_CAPACITY_SRC_V6: u32 = 64 * 1024;

/// Address families the policy table is kept for: a WAN's IPv4 and IPv6 can be up or down on
/// their own.
pub const FAMILIES: u32 = 2;
/// Family index of IPv4 (`policy_index`, `XdpMeta::family`).
pub const FAMILY_V4: u32 = 0;
/// Family index of IPv6.
pub const FAMILY_V6: u32 = 1;

/// Index into `POLICY` for a generation, an address family and a rule.
#[inline(always)]
pub const fn policy_index(generation: u32, family: u32, rule: u32) -> u32 {
    ((generation & (GENERATIONS - 1)) * FAMILIES + (family & 1)) * MAX_RULES + rule
}

/// Index into `RULE_INFO` for a generation and a rule.
#[inline(always)]
pub const fn rule_info_index(generation: u32, rule: u32) -> u32 {
    (generation & (GENERATIONS - 1)) * MAX_RULES + rule
}

/// Index into `STATS_RULE_WAN` for a rule and a WAN slot.
#[inline(always)]
pub const fn rule_wan_index(rule: u32, wan: u32) -> u32 {
    rule * MAX_WANS + wan
}

/// `max_entries` of `LOCAL_V4` / `LOCAL_V6`: the router's own addresses and the routes of its
/// main table, which are few.
pub const LOCAL_MAX_ENTRIES: u32 = 16 * 1024;
/// `max_entries` of `FRAGS`: datagrams being fragmented at once.
pub const FRAGS_MAX_ENTRIES: u32 = 8 * 1024;
/// Words of `__sk_buff::cb` where the TC program leaves `XDP_META_MAGIC` and the rule it
/// applied: `steer explain` reads them back from a test run (the input device of a test run
/// can only be given to TC, not to XDP).
pub const TC_CB_MAGIC: usize = 0;
pub const TC_CB_RULE: usize = 1;
/// `XdpMeta::rule` for a packet to a local destination: not steered.
pub const LOCAL_RULE: u32 = u32::MAX;

/// `max_entries` of `LEARNED_V4` / `LEARNED_V6`. They are hash maps without preallocation
/// (`BPF_F_NO_PREALLOC`: the entries' memory follows the entries), so this is a ceiling; the
/// configured capacity (`dns.capacity_v4`/`_v6`) is enforced by steer, the maps' only writer,
/// before it writes. The bucket array is allocated whole, 16 bytes per entry of the ceiling,
/// present or not: 2^18 keeps it at 4 MiB a map on a router with 128-512 MB in all (2^20 was
/// 16 MiB each, the biggest part of steer's kernel memory with no set loaded). A plain hash,
/// not an LRU: a full map refuses, it never evicts a live entry.
pub const LEARNED_MAX_ENTRIES: u32 = 1 << 18;
/// `BPF_F_NO_PREALLOC`.
pub const MAP_F_NO_PREALLOC: u32 = 1;
/// `BPF_F_MMAPABLE`: userspace maps the array's values into its memory (`ACTIVE`: a flip is
/// one store).
pub const MAP_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_INNER_MAP`: an inner map whose size may differ from its template's (a range table
/// is sized to its set; the verifier then calls the lookup helper instead of inlining it).
pub const MAP_F_INNER_MAP: u32 = 1 << 12;
/// Bytes of the name kept in a [`Learned`] entry (NUL-padded; a longer name keeps its end,
/// where the domain that matched is).
pub const LEARNED_NAME_LEN: usize = 112;
/// `Learned::also_rule` when no other set claimed the address.
pub const NO_RULE: u32 = u32::MAX;

/// Value of `LEARNED_V4` / `LEARNED_V6`: a host learned from DNS answers. Up to two sets' claims
/// on it, each with its own expiry and the name whose answer gave it: the winner's (the set
/// first in the configuration), which steers, and the runner-up's, which takes over when the
/// winner's expires. Both are kept here so a restarted daemon rebuilds the same claims.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The rule (set) the address steers to: the only field the classifier reads.
    pub rule: u32,
    /// Another set that also claimed the address and loses (it comes later in the
    /// configuration), or `NO_RULE`.
    pub also_rule: u32,
    /// When the winner's claim expires, in seconds of `CLOCK_BOOTTIME` (kept across daemon
    /// restarts; the daemon removes expired claims).
    pub expires: u64,
    /// When the runner-up's claim expires (0 without one).
    pub also_expires: u64,
    /// The name whose answer gave the winner's claim (the name that matched the set),
    /// NUL-padded.
    pub name: [u8; LEARNED_NAME_LEN],
    /// The same for the runner-up's claim (all NUL without one).
    pub also_name: [u8; LEARNED_NAME_LEN],
}

impl Default for Learned {
    fn default() -> Self {
        Self {
            rule: 0,
            also_rule: NO_RULE,
            expires: 0,
            also_expires: 0,
            name: [0; LEARNED_NAME_LEN],
            also_name: [0; LEARNED_NAME_LEN],
        }
    }
}

/// Index into `LB` of slot `slot` of block `block` (`PolicyEntry::lb`).
#[inline(always)]
pub const fn lb_index(block: u32, slot: u32) -> u32 {
    (block & (LB_BLOCKS - 1)) * LB_SLOTS + (slot & (LB_SLOTS - 1))
}

/// The data part of an IPv4 LPM key (the kernel key is `{ prefix_len: u32, addr }`, packed).
pub type AddrV4 = [u8; 4];
/// The data part of an IPv6 LPM key.
pub type AddrV6 = [u8; 16];
/// Size of the full IPv4 LPM key the kernel sees.
pub const LPM_KEY_V4_SIZE: usize = 4 + size_of::<AddrV4>();
/// Size of the full IPv6 LPM key the kernel sees.
pub const LPM_KEY_V6_SIZE: usize = 4 + size_of::<AddrV6>();

/// Value of every prefix map: which rule a prefix belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    pub rule: u32,
}

/// What the classifier does with a packet that hit a rule (`PolicyEntry::action`).
pub mod action {
    /// Leave the mark alone: the main routing table decides.
    pub const NONE: u32 = 0;
    /// Write `PolicyEntry::mark` under `PolicyEntry::mask`.
    pub const MARK: u32 = 1;
    /// Pick one of the rule's `LB_SLOTS` slots by flow hash and write its mark.
    pub const BALANCE: u32 = 2;
}

/// One rule's verdict in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// One of `action::*`.
    pub action: u32,
    /// Mark to write for `action::MARK`.
    pub mark: u32,
    /// The skb->mark bits steer owns: `mark = (mark & !mask) | (new & mask)`.
    pub mask: u32,
    /// WAN slot for `action::MARK` (counters), or `NO_WAN`.
    pub wan: u32,
    /// `policy_flags::*`.
    pub flags: u32,
    /// For `action::BALANCE`: the block of `LB` holding the rule's slots (see [`lb_index`]).
    pub lb: u32,
}

/// Bits of `PolicyEntry::flags`.
pub mod policy_flags {
    /// A balanced rule picks its slot from the source address alone (one LAN host, one WAN)
    /// instead of the whole flow.
    pub const HASH_SRC: u32 = 1;
}

/// Value of `LOCAL_V4` / `LOCAL_V6`: why a destination is local (`local_kind::*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalRef {
    pub kind: u32,
}

/// Values of `LocalRef::kind`.
pub mod local_kind {
    /// An address of the router itself.
    pub const ADDRESS: u32 = 1;
    /// A subnet on one of its interfaces.
    pub const CONNECTED: u32 = 2;
    /// Another route of the main table (a VPN, a static route).
    pub const ROUTE: u32 = 3;
    /// Listed in the configuration.
    pub const CONFIGURED: u32 = 4;
    /// Multicast or limited broadcast: delivered on the link, never through a WAN.
    pub const MULTICAST: u32 = 5;
    /// Link-local (169.254.0.0/16, fe80::/10): never forwarded to another link.
    pub const LINK_LOCAL: u32 = 6;
}

/// Key of `FRAGS`: one datagram being fragmented (IPv4 addresses sit in the first 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// IPv4 identification or IPv6 fragment identification.
    pub id: u32,
    /// 4 or 6 in the low byte, the transport protocol in the next.
    pub family_proto: u32,
}

/// Value of `FRAGS`: what the first fragment of a datagram (the only one with the ports) was
/// classified as, for the fragments after it, which have no ports to match a port rule or to
/// hash. A later fragment that finds no entry (it overtook its first fragment, or the entry
/// was evicted) is classified by its addresses alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    /// The rule the first fragment matched, or `LOCAL_RULE`. A rule id, not a mark: a later
    /// fragment is resolved in the live generation like any packet, so a failover between the
    /// fragments of a datagram moves the rest of it with its rule.
    pub rule: u32,
    /// The first fragment's [`flow_hash`], for a rule that is balanced by flow when a later
    /// fragment comes (written whatever the rule: the generation may flip in between).
    pub hash: u32,
}

/// One slot of a balanced rule's consistent-hash table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LbSlot {
    pub mark: u32,
    /// WAN slot for counters, or `NO_WAN`.
    pub wan: u32,
}

/// Runtime switches (`SETTINGS[0]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `settings_flags::*`.
    pub flags: u32,
    pub _pad: u32,
}

/// Bits of `Settings::flags`.
pub mod settings_flags {
    /// Log every classified packet through aya-log. Off the packet path unless set.
    pub const LOG_PACKETS: u32 = 1;
    /// There are IPv4 source prefixes: without it the classifier skips the source lookup.
    /// Userspace sets it before the first source prefix lands and clears it after the last one
    /// left, so no lookup is ever skipped that could match.
    pub const HAS_SRC_V4: u32 = 2;
    /// The same for IPv6 source prefixes.
    pub const HAS_SRC_V6: u32 = 4;
    /// There are ordered rules (sets with conditions): without it the classifier skips them.
    /// Set before the first bank that holds one goes live, cleared after the last one left.
    pub const HAS_COND: u32 = 8;
    /// There are IPv4 hosts learned from DNS answers (`LEARNED_V4`): without it the classifier
    /// skips their lookup. The DNS learner sets it before the first learned host of the family
    /// is written and clears it only after the last one was removed, so no lookup is ever
    /// skipped that could match.
    pub const HAS_LEARNED_V4: u32 = 16;
    /// The same for IPv6 learned hosts (`LEARNED_V6`).
    pub const HAS_LEARNED_V6: u32 = 32;
    /// A packet that arrives with a mark under the policy's mask keeps it. Set while
    /// br_netfilter passes bridged packets through netfilter's prerouting, which then runs
    /// before the classifier on the bridge: steer's nftables table has already given a packet
    /// of a marked connection its connection's mark there (a port forward's replies, a
    /// connection kept across a failback), and the classifier must not overwrite it. Without
    /// br_netfilter the classifier runs first and a LAN packet arrives unmarked. Written by the
    /// owner of the nftables table, not the map sync.
    pub const KEEP_MARK: u32 = 64;
}

/// The ordered rules: sets with conditions (protocol, ports, source MAC, input interface,
/// addresses), tried before the prefix sets, first match in configuration order.
///
/// Each ordered rule is one bit (`bit = position in the configuration`, at most
/// [`cond::MAX_RULES`]). Every condition kind (a *dimension*) is one lookup that gives the bits
/// of the rules the packet satisfies in it: the rules that do not constrain the dimension
/// (`CondBank::any`) or whose values contain the packet's. The packet matches the rules whose
/// bit survives the AND of all dimensions; the lowest bit (earliest rule) wins. The cost per
/// packet is one lookup per dimension some rule uses, whatever the number of rules — no loop
/// over rules. Address dimensions are LPM tries whose value for a prefix holds the bits of
/// every rule with that prefix or a shorter one containing it, so the longest match alone
/// answers "which rules contain this address".
///
/// Everything is kept in two banks; the classifier reads the bank `COND_ACTIVE` names, so a
/// change is written whole into the other bank and goes live with one word.
pub mod cond {
    /// Ordered rules at most (bits of a `u64`).
    pub const MAX_RULES: u32 = 64;
    /// Banks of every condition map.
    pub const BANKS: u32 = 2;
    /// Port classes per bank and direction: distinct sets of rules a port can satisfy.
    pub const PORT_CLASSES: u32 = 256;
    /// Ports described by one [`crate::PortClasses`] value.
    pub const PORTS_PER_VALUE: u32 = 64;
    /// `COND_PORT_CLASS` values per bank and direction.
    pub const PORT_VALUES: u32 = 65536 / PORTS_PER_VALUE;
    /// Directions of the port and address dimensions.
    pub const SRC: u32 = 0;
    pub const DST: u32 = 1;
    /// `max_entries` of `COND_MAC` and `COND_IN` (both banks).
    pub const MAC_MAX_ENTRIES: u32 = 2 * 1024;
    pub const IN_MAX_ENTRIES: u32 = 256;
    /// `max_entries` of the address tries (both banks); not preallocated.
    pub const ADDR_MAX_ENTRIES: u32 = 1 << 20;

    /// Bits of `CondBank::dims`: the dimensions some rule constrains (the others are not
    /// looked up).
    pub mod dims {
        pub const PROTO: u32 = 1;
        pub const SPORT: u32 = 2;
        pub const DPORT: u32 = 4;
        pub const MAC: u32 = 8;
        pub const IN: u32 = 16;
        pub const SRC: u32 = 32;
        pub const DST: u32 = 64;
    }
    /// Index of `CondBank::any` for each dimension (addresses: one per family).
    pub mod any {
        pub const PROTO: usize = 0;
        pub const SPORT: usize = 1;
        pub const DPORT: usize = 2;
        pub const MAC: usize = 3;
        pub const IN: usize = 4;
        pub const SRC_V4: usize = 5;
        pub const SRC_V6: usize = 6;
        pub const DST_V4: usize = 7;
        pub const DST_V6: usize = 8;
        pub const COUNT: usize = 9;
    }

    /// Index into `COND_PROTO`.
    #[inline(always)]
    pub const fn proto_index(bank: u32, family: u32, proto: u8) -> u32 {
        ((bank & 1) * 2 + (family & 1)) * 256 + proto as u32
    }

    /// Index into `COND_PORT_CLASS` of the value holding `port`'s class.
    #[inline(always)]
    pub const fn port_class_index(bank: u32, direction: u32, port: u16) -> u32 {
        ((bank & 1) * 2 + (direction & 1)) * PORT_VALUES + port as u32 / PORTS_PER_VALUE
    }

    /// Index into `COND_PORT_BITS`.
    #[inline(always)]
    pub const fn port_bits_index(bank: u32, direction: u32, class: u8) -> u32 {
        ((bank & 1) * 2 + (direction & 1)) * PORT_CLASSES + class as u32
    }
}

/// One bank of the ordered rules (`COND_BANK[bank]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CondBank {
    /// Bits of the rules of this bank, per family (a rule whose address conditions name
    /// only one family has no bit in the other).
    pub used: [u64; 2],
    /// Per dimension ([`cond::any`]): bits of the rules that do not constrain it.
    pub any: [u64; cond::any::COUNT],
    /// [`cond::dims`] bits: the dimensions some rule of this bank constrains.
    pub dims: u32,
    pub _pad: u32,
    /// Rule id (the `POLICY` row) of each bit.
    pub rule: [u16; cond::MAX_RULES as usize],
}

impl Default for CondBank {
    fn default() -> Self {
        Self {
            used: [0; 2],
            any: [0; cond::any::COUNT],
            dims: 0,
            _pad: 0,
            rule: [0; cond::MAX_RULES as usize],
        }
    }
}

/// The port classes of [`cond::PORTS_PER_VALUE`] consecutive ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortClasses {
    pub class: [u8; cond::PORTS_PER_VALUE as usize],
}

impl Default for PortClasses {
    fn default() -> Self {
        Self {
            class: [0; cond::PORTS_PER_VALUE as usize],
        }
    }
}

/// Key of `COND_MAC`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CondMacKey {
    pub bank: u8,
    pub _pad: u8,
    pub mac: [u8; 6],
}

/// Key of `COND_IN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CondIfKey {
    pub bank: u32,
    pub ifindex: u32,
}

/// The data part of a `COND_*_V4` trie key: the bank, then the address (a prefix of `len`
/// bits is keyed with `8 + len`).
pub type CondAddrV4 = [u8; 5];
/// The data part of a `COND_*_V6` trie key.
pub type CondAddrV6 = [u8; 17];

/// Packets and bytes. Per-CPU in the kernel; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Indexes of `STATS_PATH`: how packets went through the TC classifier.
pub mod path {
    /// Classified by TC's own lookups.
    pub const CLASSIFIED: u32 = 0;
    /// Classified by the verdict the XDP program left in the packet metadata.
    pub const XDP_META: u32 = 1;
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed untouched.
    pub const NOT_IP: u32 = 2;
    /// Cut inside a header the classifier needs: passed untouched.
    pub const TRUNCATED: u32 = 3;
    /// To a destination the router reaches without a WAN: passed unmarked.
    pub const LOCAL: u32 = 4;
    /// Number of path counters.
    pub const COUNT: u32 = 5;
}

/// EtherTypes the kernel programs parse, in host order, named as in `linux/if_ether.h`.
pub mod ethertype {
    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// 802.1ad (QinQ) outer VLAN tag.
    pub const ETH_P_8021AD: u16 = 0x88a8;
}

/// IP protocol numbers the kernel programs look at, named as in `linux/in.h`.
pub mod ipproto {
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_SCTP: u8 = 132;
    pub const IPPROTO_UDPLITE: u8 = 136;

    /// Whether the protocol's header starts with the source and destination ports, which the
    /// classifier reads (port conditions, the flow hash) and `steer explain` writes.
    pub const fn has_ports(proto: u8) -> bool {
        matches!(
            proto,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
        )
    }
}

/// Metadata the XDP program puts in front of the packet for TC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMeta {
    /// `XDP_META_MAGIC`: TC ignores metadata written by anyone else.
    pub magic: u32,
    /// Rule id the XDP lookups chose, or `LOCAL_RULE`.
    pub rule: u32,
    /// For a balanced rule: the packet's [`flow_hash`] or [`src_hash`], whichever its policy
    /// picks by (`hash_kind` says which).
    pub hash: u32,
    /// `policy_flags::HASH_SRC` when `hash` is the source hash, 0 for the flow hash,
    /// [`XDP_HASH_NONE`] when XDP computed none (the rule was not balanced when it looked).
    pub hash_kind: u32,
    /// `FAMILY_V4` or `FAMILY_V6`: which half of the policy table applies.
    pub family: u32,
}

/// `XdpMeta::hash_kind` when XDP computed no hash.
pub const XDP_HASH_NONE: u32 = u32::MAX;

/// Marks metadata written by steer's XDP program ("stxd").
pub const XDP_META_MAGIC: u32 = 0x7374_7864;

/// Longest name stored in `RULE_INFO` / `WAN_INFO` (NUL-padded, not necessarily terminated).
pub const NAME_LEN: usize = 48;

/// What a rule id means, for `steer dump` while the daemon is down.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Set name (empty for the default rule).
    pub set_name: [u8; NAME_LEN],
    /// Policy name (empty when the rule leaves packets unmarked).
    pub policy_name: [u8; NAME_LEN],
    /// `rule_kind::*`.
    pub kind: u32,
    pub _pad: u32,
}

impl Default for RuleInfo {
    fn default() -> Self {
        Self {
            set_name: [0; NAME_LEN],
            policy_name: [0; NAME_LEN],
            kind: 0,
            _pad: 0,
        }
    }
}

/// Values of `RuleInfo::kind`.
pub mod rule_kind {
    pub const UNUSED: u32 = 0;
    pub const DEFAULT: u32 = 1;
    pub const DST: u32 = 2;
    pub const SRC: u32 = 3;
    /// A set with conditions (an ordered rule) whose prefixes are destinations / sources.
    pub const ORDERED_DST: u32 = 4;
    pub const ORDERED_SRC: u32 = 5;
}

/// What a WAN slot means, for `steer dump` while the daemon is down.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WanInfo {
    pub name: [u8; NAME_LEN],
    pub mark: u32,
    pub table: u32,
    /// Nonzero when the slot is used.
    pub in_use: u32,
    pub _pad: u32,
}

impl Default for WanInfo {
    fn default() -> Self {
        Self {
            name: [0; NAME_LEN],
            mark: 0,
            table: 0,
            in_use: 0,
            _pad: 0,
        }
    }
}

// ---- passive liveness: a WAN's own traffic -------------------------------------------------

/// `max_entries` of `WAN_DEVICES`: a WAN's device, and room for the old index of a device
/// being re-created.
pub const WAN_DEVICES_MAX_ENTRIES: u32 = 2 * MAX_WANS;

/// Index into `WAN_TRAFFIC` for a WAN slot and an address family (`FAMILY_V4`/`FAMILY_V6`).
#[inline(always)]
pub const fn wan_traffic_index(slot: u32, family: u32) -> u32 {
    slot * FAMILIES + (family & 1)
}

/// Value of `WAN_DEVICES`: which WAN a device carries and how to read its packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WanDevice {
    /// The WAN's slot (the same as in `WAN_INFO` and `STATS_WAN`).
    pub slot: u32,
    /// `wan_device_flags::*`.
    pub flags: u32,
    /// The WAN's mark within `mark_mask`: a packet this host sends with it (no input device)
    /// is one of steer's probes, which asks nothing (an idle line must not look busy to
    /// itself); its answer counts like any other.
    pub probe_mark: u32,
    /// `general.mark_mask`; 0: no packet is taken for a probe.
    pub mark_mask: u32,
}

/// Bits of `WanDevice::flags`.
pub mod wan_device_flags {
    /// The device has no Ethernet header (ppp, wireguard, tun, ipip/sit/gre): the IP header
    /// is the first byte and `skb->protocol` says which family it is.
    pub const L3: u32 = 1;
}

/// What one WAN's traffic of one family said, per CPU (userspace sums the counts and takes the
/// latest timestamps). Only counts: the programs that keep it never change or drop a packet.
///
/// The rule, so one-way traffic never looks like a dead line: out on the WAN, a packet
/// "asks" only when its protocol makes the other end answer it soon — a TCP SYN (without ACK),
/// a TCP segment with payload (acknowledged), UDP to port 53 or 443 (DNS, QUIC), an ICMP or
/// ICMPv6 echo request. Pure ACKs, FIN or RST without payload and every other UDP datagram
/// ask nothing, and so do steer's own probes ([`WanDevice::probe_mark`]). In on the WAN, every
/// IPv4/IPv6 packet "answers" except ICMP/ICMPv6 errors (unreachable, time exceeded, ...),
/// which a router of the ISP still sends when its upstream is dead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WanTraffic {
    /// Packets out that expect an answer.
    pub asked: u64,
    /// Packets in that count as an answer.
    pub answered: u64,
    /// When the last one asked, `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`); 0: never.
    pub last_asked_ns: u64,
    /// When the last answer came, the same clock; 0: never.
    pub last_answered_ns: u64,
}

/// The network namespace of the daemon that pinned the state under a pin directory
/// (`PIN_OWNER[0]`): the device and inode of its `/proc/self/ns/net`, which identify a
/// namespace as long as it exists, and its cookie (`SO_NETNS_COOKIE`, never reused, unlike
/// the inode a new namespace may get once the old one is gone; 0 where the kernel has none,
/// before 5.14). Userspace only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinOwner {
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub netns_cookie: u64,
}

// The kernel sees raw bytes: any change of layout must be deliberate.
const _: () = assert!(size_of::<PinOwner>() == 24);
const _: () = assert!(size_of::<WanDevice>() == 16);
const _: () = assert!(size_of::<WanTraffic>() == 32);
const _: () = assert!(size_of::<RuleRef>() == 4);
const _: () = assert!(size_of::<PolicyEntry>() == 24);
const _: () = assert!(size_of::<LocalRef>() == 4);
const _: () = assert!(size_of::<FragKey>() == 40);
const _: () = assert!(size_of::<FragEntry>() == 8);
const _: () = assert!(size_of::<LbSlot>() == 8);
const _: () = assert!(size_of::<Settings>() == 8);
const _: () = assert!(size_of::<CondBank>() == 16 + 8 * cond::any::COUNT + 8 + 128);
const _: () = assert!(size_of::<PortClasses>() == 64);
const _: () = assert!(size_of::<CondMacKey>() == 8);
const _: () = assert!(size_of::<CondIfKey>() == 8);
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<XdpMeta>() == 20);
const _: () = assert!(size_of::<XdpMeta>().is_multiple_of(4)); // bpf_xdp_adjust_meta needs 4-byte steps
const _: () = assert!(size_of::<RuleInfo>() == 2 * NAME_LEN + 8);
const _: () = assert!(size_of::<WanInfo>() == NAME_LEN + 16);
const _: () = assert!(
    size_of::<Learned>() == 24 + 2 * LEARNED_NAME_LEN && LEARNED_NAME_LEN.is_multiple_of(8)
);
const _: () = assert!(LPM_KEY_V4_SIZE == 8 && LPM_KEY_V6_SIZE == 20);
const _: () = assert!(MAX_RULES.is_power_of_two() && LB_SLOTS.is_power_of_two());
// `policy_index` masks the generation with `GENERATIONS - 1` and the family with `& 1`;
// `lb_index` masks the block with `LB_BLOCKS - 1`.
const _: () = assert!(GENERATIONS.is_power_of_two() && GENERATIONS >= 2 && FAMILIES == 2);
const _: () = assert!(LB_BLOCKS.is_power_of_two());

#[cfg(feature = "user")]
mod user {
    use super::*;

    macro_rules! pod {
        ($($t:ty),+) => {$(
            // SAFETY: repr(C), only integer fields, explicit padding, no invalid bit patterns.
            unsafe impl aya::Pod for $t {}
            // SAFETY: as above.
            unsafe impl bytemuck::Zeroable for $t {}
            // SAFETY: as above.
            unsafe impl bytemuck::Pod for $t {}
        )+};
    }
    pod!(
        RuleRef,
        PolicyEntry,
        LbSlot,
        Settings,
        Counter,
        XdpMeta,
        RuleInfo,
        WanInfo,
        LocalRef,
        FragKey,
        FragEntry,
        Learned,
        WanDevice,
        WanTraffic,
        CondBank,
        PortClasses,
        CondMacKey,
        CondIfKey,
        PinOwner
    );
}

/// Folds one word into the running hash: one multiply per word (this is on the packet path).
#[inline(always)]
const fn hash_word(h: u32, word: u32) -> u32 {
    (h ^ word).wrapping_mul(0x9e37_79b1).rotate_left(13)
}

/// The murmur3 finaliser: every input bit reaches the low bits a slot is taken from.
#[inline(always)]
const fn hash_finish(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The hash a balanced rule picks its slot by (`hash & (LB_SLOTS - 1)`): over the addresses,
/// the transport protocol and the ports, and nothing else (not the IPv6 flow label, which the
/// sender may change mid-flow). Addresses are four words, IPv4 in the first; every fragment of
/// a datagram gets the hash of its first fragment (see [`FragEntry`]). Defined once, here, so the
/// kernel programs and userspace compute the same thing.
#[inline(always)]
pub const fn flow_hash(src: &[u32; 4], dst: &[u32; 4], proto: u8, sport: u16, dport: u16) -> u32 {
    let mut h = 0x5733_7201;
    let mut i = 0;
    while i < 4 {
        h = hash_word(h, src[i]);
        h = hash_word(h, dst[i]);
        i += 1;
    }
    h = hash_word(h, proto as u32);
    hash_finish(hash_word(h, ((sport as u32) << 16) | dport as u32))
}

/// An IPv4 address as the hash functions take it.
#[inline(always)]
pub const fn words_v4(addr: &AddrV4) -> [u32; 4] {
    [u32::from_ne_bytes(*addr), 0, 0, 0]
}

/// An IPv6 address as the hash functions take it.
#[inline(always)]
pub const fn words_v6(a: &AddrV6) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// The hash of the source address alone (`policy_flags::HASH_SRC`): one LAN host, one WAN.
#[inline(always)]
pub const fn src_hash(src: &[u32; 4]) -> u32 {
    let mut h = 0x5733_7202;
    let mut i = 0;
    while i < 4 {
        h = hash_word(h, src[i]);
        i += 1;
    }
    hash_finish(h)
}

/// Decodes a NUL-padded name from `RULE_INFO` / `WAN_INFO`.
pub fn name_from_bytes(bytes: &[u8; NAME_LEN]) -> &str {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
    match core::str::from_utf8(&bytes[..end]) {
        Ok(s) => s,
        Err(e) => {
            // Only steer writes these; a partial name is better than none.
            core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
    }
}

/// Encodes a name for `RULE_INFO` / `WAN_INFO`, cutting it at a char boundary if it is too long.
pub fn name_to_bytes(name: &str) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let mut end = name.len().min(NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_cut_at_char_boundary() {
        assert_eq!(name_from_bytes(&name_to_bytes("bypass")), "bypass");
        let long = "é".repeat(40); // 80 bytes
        let cut = name_from_bytes(&name_to_bytes(&long)).len();
        assert_eq!(cut, 48);
        let odd = format!("x{}", "é".repeat(40));
        assert_eq!(name_from_bytes(&name_to_bytes(&odd)).len(), 47);
    }

    #[test]
    fn policy_index_separates_generations_and_families() {
        assert_eq!(policy_index(0, FAMILY_V4, 5), 5);
        assert_eq!(policy_index(0, FAMILY_V6, 5), MAX_RULES + 5);
        assert_eq!(policy_index(1, FAMILY_V4, 5), 2 * MAX_RULES + 5);
        assert_eq!(policy_index(3, FAMILY_V6, 5), 7 * MAX_RULES + 5);
        assert_eq!(
            policy_index(GENERATIONS, FAMILY_V6, 5),
            MAX_RULES + 5,
            "the generation wraps, it never reaches past the array"
        );
        assert_eq!(lb_index(3, 7), 3 * LB_SLOTS + 7);
        assert_eq!(lb_index(LB_BLOCKS + 1, LB_SLOTS + 2), LB_SLOTS + 2);
        assert_eq!(rule_info_index(1, 5), MAX_RULES + 5);
    }

    #[test]
    fn wan_traffic_index_keeps_families_apart_within_bounds() {
        assert_eq!(wan_traffic_index(0, FAMILY_V4), 0);
        assert_eq!(wan_traffic_index(0, FAMILY_V6), 1);
        assert_eq!(wan_traffic_index(3, FAMILY_V6), 7);
        assert_eq!(
            wan_traffic_index(MAX_WANS - 1, FAMILY_V6),
            MAX_WANS * FAMILIES - 1
        );
    }

    extern crate std;
    use std::format;
}

//! VRRPv3 advertisements on the wire (RFC 9568 section 5): building them, and taking apart and
//! validating what arrives. Pure: the socket code hands in the bytes and what the IP header said
//! (source, destination, TTL or hop limit).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                    IPvX Address(es) ...                       |
//! ```
//!
//! The checksum covers the message and, for IPv6, the IPv6 pseudo-header. For IPv4, RFC 9568
//! sums the message alone; keepalived and FRR add an IPv4 pseudo-header (source, destination,
//! a zero byte, protocol 112, the message length), as RFC 5798 was read. steer sends the form
//! `checksum` chooses and accepts either, telling which one a peer uses ([`Accepted::checksum`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Checksum;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group of VRRP.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL (hop limit) every multicast advert is sent and must arrive with.
pub const TTL: u8 = 255;
/// Version and type of every advert steer sends: version 3, type 1 (advertisement).
const VERSION: u8 = 3;
const TYPE_ADVERT: u8 = 1;
/// The fixed part of the message.
pub const HEADER_LEN: usize = 8;
/// Largest advert interval the 12-bit field carries, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

/// One advertisement's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max Adver Int, centiseconds (12 bits).
    pub interval_cs: u16,
    /// The virtual addresses, all of one family.
    pub addrs: Vec<IpAddr>,
}

impl Advert {
    /// The message (no IP header) from `src` to `dst`, with the checksum `form` asks for (IPv6
    /// always uses its pseudo-header).
    pub fn encode(&self, src: IpAddr, dst: IpAddr, form: Checksum) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + self.addrs.len() * 16);
        b.push((VERSION << 4) | TYPE_ADVERT);
        b.push(self.vrid);
        b.push(self.priority);
        b.push(self.addrs.len().min(255) as u8);
        b.extend_from_slice(&(self.interval_cs & MAX_INTERVAL_CS).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for a in self.addrs.iter().take(255) {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        let sum = checksum(&b, src, dst, form);
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The checksum of message `b` (its checksum bytes taken as zero) sent from `src` to `dst`:
/// with the pseudo-header for IPv6, and for IPv4 as `form` says.
pub fn checksum(b: &[u8], src: IpAddr, dst: IpAddr, form: Checksum) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    };
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&(b.len() as u32).to_be_bytes());
            add(&[0, 0, 0, PROTOCOL]);
        }
        (IpAddr::V4(s), IpAddr::V4(d)) if form == Checksum::PseudoHeader => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, PROTOCOL]);
            add(&(b.len() as u16).to_be_bytes());
        }
        _ => {}
    }
    add(&b[..b.len().min(6)]);
    if b.len() > 8 {
        add(&b[8..]);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the IP layer said about a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) as received.
    pub ttl: u8,
}

/// What the receiving instance expects.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    pub vrid: u8,
    /// The form this instance sends (IPv4).
    pub checksum: Checksum,
    /// Unicast mode: only these sources count, and the TTL is not checked (like keepalived: a
    /// unicast advert may cross routers).
    pub peers: &'a [IpAddr],
    /// Our virtual addresses: an advert must list the same ones (in any order).
    pub vips: &'a [IpAddr],
    /// Other instances on the same link and family: their adverts are not foreign.
    pub siblings: &'a [u8],
}

/// An advertisement that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub advert: Advert,
    /// The checksum form it carried (IPv4; IPv6 is always the pseudo-header form).
    pub checksum: Checksum,
}

/// Why a received packet was dropped. Each has a fixed [`Dropped::reason`] for counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Unicast mode: the source is not a configured peer.
    UnknownSource(IpAddr),
    /// Multicast mode: sent to this router's own address, not to the VRRP group (a router
    /// configured with `peers`, or a host on the link aiming at this router alone).
    Unicast(IpAddr),
    /// Unicast mode: sent to the VRRP group (a router configured without `peers`).
    Multicast,
    /// A multicast advert whose TTL (hop limit) is not 255: it was forwarded by a router, or
    /// forged off-link.
    Ttl(u8),
    /// Shorter than the header or than the addresses it announces.
    Truncated { len: usize, needed: usize },
    /// Not version 3 (keepalived speaks version 2 over IPv4 unless told `version 3`).
    Version(u8),
    /// Neither checksum form matches.
    Checksum,
    /// Another virtual router's advert.
    Vrid(u8),
    /// Not an advertisement.
    Type(u8),
    /// Count of addresses 0.
    Count,
    /// Max Adver Int 0.
    Interval,
    /// The address list differs from ours.
    Addresses { theirs: Vec<IpAddr> },
    /// Sent by an instance of ours on the same link (a sibling's VRID): not counted anywhere.
    Sibling,
}

impl Dropped {
    /// The counter label: `unknown_source`, `unicast`, `multicast`, `ttl`, `truncated`, `version`, `checksum`,
    /// `vrid`, `type`, `count`, `interval`, `addresses`.
    pub fn reason(&self) -> &'static str {
        match self {
            Dropped::UnknownSource(_) => "unknown_source",
            Dropped::Unicast(_) => "unicast",
            Dropped::Multicast => "multicast",
            Dropped::Ttl(_) => "ttl",
            Dropped::Truncated { .. } => "truncated",
            Dropped::Version(_) => "version",
            Dropped::Checksum => "checksum",
            Dropped::Vrid(_) | Dropped::Sibling => "vrid",
            Dropped::Type(_) => "type",
            Dropped::Count => "count",
            Dropped::Interval => "interval",
            Dropped::Addresses { .. } => "addresses",
        }
    }

    /// The drop in words, for the log.
    pub fn describe(&self, from: IpAddr) -> String {
        match self {
            Dropped::UnknownSource(a) => format!("advert from {a}, which is not a configured peer"),
            Dropped::Unicast(dst) => format!(
                "advert from {from} sent to {dst}, not to the VRRP group: this instance has no \
                 `peers`, so it takes multicast adverts only"
            ),
            Dropped::Multicast => format!(
                "advert from {from} sent to the VRRP group: this instance has `peers`, so it \
                 takes unicast adverts only"
            ),
            Dropped::Ttl(t) if from.is_ipv6() => {
                format!("advert from {from} with hop limit {t} (must be 255 on multicast)")
            }
            Dropped::Ttl(t) => {
                format!("advert from {from} with TTL {t} (must be 255 on multicast)")
            }
            Dropped::Truncated { len, needed } => {
                format!("truncated advert from {from}: {len} bytes, {needed} needed")
            }
            Dropped::Version(2) => format!(
                "VRRP version 2 advert from {from}: steer speaks version 3 (keepalived needs \
                 `version 3` in its vrrp_instance, or `vrrp_version 3` in global_defs)"
            ),
            Dropped::Version(v) => format!("VRRP version {v} advert from {from}"),
            Dropped::Checksum => format!("advert from {from} with a wrong checksum (neither form)"),
            Dropped::Vrid(v) => format!("advert of another virtual router (vrid {v}) from {from}"),
            Dropped::Type(t) => format!("VRRP packet of type {t} from {from}"),
            Dropped::Count => format!("advert from {from} with an address count of 0"),
            Dropped::Interval => format!("advert from {from} with an advert interval of 0"),
            Dropped::Addresses { theirs } => format!(
                "advert from {from} lists other virtual addresses ({}): both routers must list the same ones",
                list(theirs)
            ),
            Dropped::Sibling => format!("advert of a sibling instance from {from}"),
        }
    }
}

/// Validates message `b` as received with `meta` against what the instance expects, in the
/// order RFC 9568 section 7.1 lists the checks (the source of unicast adverts first). A drop
/// changes nothing in the instance: its timers run on.
pub fn validate(b: &[u8], meta: Meta, expect: &Expect<'_>) -> Result<Accepted, Dropped> {
    let group = match meta.dst {
        IpAddr::V4(_) => IpAddr::V4(GROUP_V4),
        IpAddr::V6(_) => IpAddr::V6(GROUP_V6),
    };
    let unicast = !expect.peers.is_empty();
    // A unicast instance hears the group only to notice a peer configured without `peers`
    // (its socket joins it): other virtual routers' multicast adverts are as quiet there as
    // in multicast mode.
    if unicast
        && meta.dst == group
        && let Err(d @ (Dropped::Vrid(_) | Dropped::Sibling)) = message(b, meta, expect)
    {
        return Err(d);
    }
    if unicast && !expect.peers.contains(&meta.src) {
        return Err(Dropped::UnknownSource(meta.src));
    }
    if !unicast && meta.ttl != TTL {
        return Err(Dropped::Ttl(meta.ttl));
    }
    if !unicast && meta.dst != group {
        return Err(Dropped::Unicast(meta.dst));
    }
    if unicast && meta.dst == group {
        return Err(Dropped::Multicast);
    }
    message(b, meta, expect)
}

/// The checks of [`validate`] on the message itself (all but its source, TTL and destination).
fn message(b: &[u8], meta: Meta, expect: &Expect<'_>) -> Result<Accepted, Dropped> {
    if b.len() < HEADER_LEN {
        return Err(Dropped::Truncated {
            len: b.len(),
            needed: HEADER_LEN,
        });
    }
    let version = b[0] >> 4;
    if version != VERSION {
        return Err(Dropped::Version(version));
    }
    let count = usize::from(b[3]);
    if count == 0 {
        return Err(Dropped::Count);
    }
    let alen = if meta.src.is_ipv6() { 16 } else { 4 };
    let needed = HEADER_LEN + count * alen;
    if b.len() < needed {
        return Err(Dropped::Truncated {
            len: b.len(),
            needed,
        });
    }
    let b = &b[..needed];
    let sent = u16::from_be_bytes([b[6], b[7]]);
    let form = if checksum(b, meta.src, meta.dst, expect.checksum) == sent {
        expect.checksum
    } else {
        let other = match expect.checksum {
            Checksum::PseudoHeader => Checksum::Plain,
            Checksum::Plain => Checksum::PseudoHeader,
        };
        if meta.src.is_ipv4() && checksum(b, meta.src, meta.dst, other) == sent {
            other
        } else {
            return Err(Dropped::Checksum);
        }
    };
    let vrid = b[1];
    if vrid != expect.vrid {
        return Err(if expect.siblings.contains(&vrid) {
            Dropped::Sibling
        } else {
            Dropped::Vrid(vrid)
        });
    }
    let kind = b[0] & 0x0f;
    if kind != TYPE_ADVERT {
        return Err(Dropped::Type(kind));
    }
    let interval_cs = u16::from_be_bytes([b[4], b[5]]) & MAX_INTERVAL_CS;
    if interval_cs == 0 {
        return Err(Dropped::Interval);
    }
    let addrs: Vec<IpAddr> = b[HEADER_LEN..]
        .chunks(alen)
        .map(|c| match c.len() {
            4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap_or([0; 16]))),
        })
        .collect();
    let mut mine = expect.vips.to_vec();
    let mut theirs = addrs.clone();
    mine.sort();
    theirs.sort();
    if mine != theirs {
        return Err(Dropped::Addresses { theirs: addrs });
    }
    Ok(Accepted {
        advert: Advert {
            vrid,
            priority: b[2],
            interval_cs,
            addrs,
        },
        checksum: form,
    })
}

/// An advert dropped although it is valid for this virtual router (its VRID, a good checksum,
/// a priority) but for how it was sent or what it lists: a source `peers` does not name (a
/// `peers` typo on one side), unicast against multicast (`peers` on one router only), or
/// other virtual addresses (the VIPs changed on one router first). Returns what it carries:
/// another router claims this virtual router while each drops the other's adverts, so both
/// may be master. `None` for any other drop.
pub fn claim(b: &[u8], meta: Meta, dropped: &Dropped, expect: &Expect<'_>) -> Option<Advert> {
    if !matches!(
        dropped,
        Dropped::UnknownSource(_)
            | Dropped::Unicast(_)
            | Dropped::Multicast
            | Dropped::Addresses { .. }
    ) {
        return None;
    }
    match message(b, meta, expect) {
        Ok(ok) => Some(ok.advert),
        Err(Dropped::Addresses { theirs }) => {
            let as_theirs = Expect {
                vips: &theirs,
                ..expect.clone()
            };
            message(b, meta, &as_theirs).ok().map(|ok| ok.advert)
        }
        Err(_) => None,
    }
}

/// How many addresses [`list`] writes out: an advert may list 255, a log line need not.
const LISTED: usize = 4;

/// Addresses for a log line or a note: the first few, then how many more.
pub fn list(addrs: &[IpAddr]) -> String {
    crate::shown::first_few(addrs, LISTED, ", ")
}

/// Our virtual addresses that an advert of another virtual router (`vrid`, dropped as such)
/// lists: each router ignores the other's adverts, so both may hold them.
pub fn claimed_by_other_vrid(b: &[u8], meta: Meta, expect: &Expect<'_>, vrid: u8) -> Vec<IpAddr> {
    let as_ours = Expect {
        vrid,
        siblings: &[],
        ..expect.clone()
    };
    let addrs = match validate(b, meta, &as_ours) {
        Ok(ok) => ok.advert.addrs,
        Err(Dropped::Addresses { theirs }) => theirs,
        Err(_) => Vec::new(),
    };
    addrs
        .into_iter()
        .filter(|a| expect.vips.contains(a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SRC: &str = "10.10.0.11";

    fn advert(priority: u8) -> Advert {
        Advert {
            vrid: 51,
            priority,
            interval_cs: 10,
            addrs: vec![v4("10.10.0.1")],
        }
    }

    fn multicast(ttl: u8) -> Meta {
        Meta {
            src: v4(SRC),
            dst: IpAddr::V4(GROUP_V4),
            ttl,
        }
    }

    fn expect<'a>(vips: &'a [IpAddr], peers: &'a [IpAddr]) -> Expect<'a> {
        Expect {
            vrid: 51,
            checksum: Checksum::PseudoHeader,
            peers,
            vips,
            siblings: &[52],
        }
    }

    /// An advert as keepalived sends it (vrid 51, priority 100, 10 cs, VIP 10.10.0.1, from
    /// 10.10.0.12 to 224.0.0.18), checksum not yet filled in.
    const KEEPALIVED: [u8; 12] = [0x31, 0x33, 0x64, 0x01, 0x00, 0x0a, 0x00, 0x00, 10, 10, 0, 1];

    #[test]
    fn encode_then_validate_round_trips_both_checksum_forms() {
        let vips = [v4("10.10.0.1")];
        for form in [Checksum::PseudoHeader, Checksum::Plain] {
            let b = advert(150).encode(v4(SRC), IpAddr::V4(GROUP_V4), form);
            assert_eq!(b.len(), 12);
            assert_eq!(b[0], 0x31, "version 3, type 1");
            let got = validate(&b, multicast(255), &expect(&vips, &[])).expect("valid");
            assert_eq!(got.advert, advert(150));
            assert_eq!(got.checksum, form, "the form the sender used is reported");
        }
    }

    #[test]
    fn the_pseudo_header_form_matches_an_independent_sum() {
        // Sum by hand: pseudo-header 10.10.0.12 -> 224.0.0.18, proto 112, length 12.
        let mut b = KEEPALIVED.to_vec();
        let words: [u32; 12] = [
            0x0a0a, 0x000c, 0xe000, 0x0012, 0x0070, 0x000c, // pseudo-header
            0x3133, 0x6401, 0x000a, 0x0000, 0x0a0a, 0x0001, // message
        ];
        let mut sum: u32 = words.iter().sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let expected = !(sum as u16);
        let got = checksum(
            &b,
            v4("10.10.0.12"),
            IpAddr::V4(GROUP_V4),
            Checksum::PseudoHeader,
        );
        assert_eq!(got, expected);
        b[6..8].copy_from_slice(&got.to_be_bytes());
        let meta = Meta {
            src: v4("10.10.0.12"),
            ..multicast(255)
        };
        let vips = [v4("10.10.0.1")];
        let ok = validate(&b, meta, &expect(&vips, &[])).unwrap();
        assert_eq!((ok.advert.priority, ok.advert.interval_cs), (100, 10));
    }

    /// A multicast instance takes only adverts sent to the group: one aimed at this router's
    /// address alone (the other router never sees it) made it step down.
    #[test]
    fn a_multicast_instance_drops_an_advert_sent_to_its_own_address() {
        let vips = [v4("10.10.0.1")];
        let own = v4("10.10.0.2");
        let b = advert(254).encode(v4(SRC), own, Checksum::PseudoHeader);
        let meta = Meta {
            dst: own,
            ..multicast(255)
        };
        let dropped = validate(&b, meta, &expect(&vips, &[])).unwrap_err();
        assert_eq!(dropped, Dropped::Unicast(own));
        assert!(dropped.describe(v4(SRC)).contains("not to the VRRP group"));
        let peers = [v4(SRC)];
        assert!(
            validate(&b, meta, &expect(&vips, &peers)).is_ok(),
            "unicast mode"
        );
    }

    #[test]
    fn an_ipv6_advert_has_a_hop_limit_not_a_ttl() {
        let six: IpAddr = "fe80::2".parse().unwrap();
        assert!(Dropped::Ttl(64).describe(six).contains("with hop limit 64"));
        assert!(Dropped::Ttl(64).describe(v4(SRC)).contains("with TTL 64"));
    }

    #[test]
    fn every_malformed_advert_is_dropped_with_its_reason() {
        let vips = [v4("10.10.0.1")];
        let e = expect(&vips, &[]);
        let good = advert(254).encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let resum = |mut b: Vec<u8>| {
            b[6] = 0;
            b[7] = 0;
            let s = checksum(&b, v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
            b[6..8].copy_from_slice(&s.to_be_bytes());
            b
        };
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            resum(b)
        };
        let cases: Vec<(&str, Vec<u8>, Meta)> = vec![
            ("ttl", good.clone(), multicast(64)),
            ("version", with(0, 0x21), multicast(255)),
            ("count", with(3, 0), multicast(255)),
            (
                "interval",
                resum({
                    let mut b = good.clone();
                    b[4] = 0;
                    b[5] = 0;
                    b
                }),
                multicast(255),
            ),
            ("vrid", with(1, 7), multicast(255)),
            ("type", with(0, 0x32), multicast(255)),
            ("truncated", good[..10].to_vec(), multicast(255)),
            ("truncated", good[..4].to_vec(), multicast(255)),
            (
                "checksum",
                {
                    let mut b = good.clone();
                    b[7] ^= 1;
                    b
                },
                multicast(255),
            ),
            (
                "addresses",
                resum({
                    let mut b = good.clone();
                    b[11] = 2;
                    b
                }),
                multicast(255),
            ),
        ];
        for (reason, b, meta) in cases {
            let got = validate(&b, meta, &e).expect_err(reason);
            assert_eq!(got.reason(), reason, "{got:?}");
        }
        assert_eq!(
            validate(&with(1, 52), multicast(255), &e),
            Err(Dropped::Sibling),
            "a sibling instance's advert is not foreign"
        );
    }

    #[test]
    fn unicast_takes_any_ttl_from_a_peer_and_nothing_from_strangers() {
        let vips = [v4("10.10.0.1")];
        let peers = [v4("10.0.2.2")];
        let e = expect(&vips, &peers);
        let dst = v4("10.0.1.2");
        let b = advert(100).encode(v4("10.0.2.2"), dst, Checksum::PseudoHeader);
        let routed = Meta {
            src: v4("10.0.2.2"),
            dst,
            ttl: 254,
        };
        assert!(validate(&b, routed, &e).is_ok(), "one router hop away");
        let stranger = Meta {
            src: v4("10.0.3.3"),
            ..routed
        };
        let b = advert(100).encode(v4("10.0.3.3"), dst, Checksum::PseudoHeader);
        assert_eq!(
            validate(&b, stranger, &e),
            Err(Dropped::UnknownSource(v4("10.0.3.3")))
        );
    }

    #[test]
    fn ipv6_sums_its_pseudo_header_and_carries_sixteen_byte_addresses() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let vip: IpAddr = "fd10::1".parse().unwrap();
        let a = Advert {
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vec![vip],
        };
        let b = a.encode(src, IpAddr::V6(GROUP_V6), Checksum::Plain);
        assert_eq!(b.len(), 24);
        let meta = Meta {
            src,
            dst: IpAddr::V6(GROUP_V6),
            ttl: 255,
        };
        let vips = [vip];
        let ok = validate(&b, meta, &expect(&vips, &[])).expect("valid");
        assert_eq!(ok.advert, a);
        let mut plain = b.clone();
        plain[6..8].copy_from_slice(&[0, 0]);
        let s = checksum(&plain[..], src, IpAddr::V4(GROUP_V4), Checksum::Plain);
        plain[6..8].copy_from_slice(&s.to_be_bytes());
        assert_eq!(
            validate(&plain, meta, &expect(&vips, &[])),
            Err(Dropped::Checksum),
            "IPv6 has no plain form"
        );
    }

    #[test]
    fn an_advert_from_an_unconfigured_source_is_read_for_what_it_claims() {
        let vips = [v4("10.10.0.1")];
        let peers = [v4("10.10.0.99")];
        let b = advert(150).encode(v4(SRC), v4("10.10.0.12"), Checksum::PseudoHeader);
        let meta = Meta {
            dst: v4("10.10.0.12"),
            ..multicast(64)
        };
        let e = expect(&vips, &peers);
        let dropped = validate(&b, meta, &e).unwrap_err();
        assert_eq!(dropped, Dropped::UnknownSource(v4(SRC)));
        assert_eq!(claim(&b, meta, &dropped, &e), Some(advert(150)));
        let mut bad = b.clone();
        bad[6] ^= 0xff;
        assert_eq!(
            claim(&bad, meta, &dropped, &e),
            None,
            "a bad checksum claims nothing"
        );
    }

    /// Adverts dropped for being unicast against multicast, or for listing other addresses,
    /// still show another router claiming this virtual router: both may be master (they were
    /// dropped without a word, and the master-only WANs came up on both routers).
    #[test]
    fn unicast_multicast_and_other_addresses_are_claims_a_bad_ttl_is_not() {
        let vips = [v4("10.10.0.1")];
        let own = v4("10.10.0.2");
        // A router with `peers` sends to our address; we run multicast.
        let b = advert(150).encode(v4(SRC), own, Checksum::PseudoHeader);
        let meta = Meta {
            dst: own,
            ..multicast(255)
        };
        let e = expect(&vips, &[]);
        let dropped = validate(&b, meta, &e).unwrap_err();
        assert_eq!(dropped, Dropped::Unicast(own));
        assert_eq!(claim(&b, meta, &dropped, &e), Some(advert(150)));
        // A router without `peers` sends to the group; we run unicast with it as our peer.
        let peers = [v4(SRC)];
        let b = advert(150).encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let e = expect(&vips, &peers);
        let dropped = validate(&b, multicast(255), &e).unwrap_err();
        assert_eq!(dropped, Dropped::Multicast);
        assert_eq!(dropped.reason(), "multicast");
        assert_eq!(claim(&b, multicast(255), &dropped, &e), Some(advert(150)));
        // Other virtual routers' multicast adverts stay quiet there, whoever sends them.
        let other = Advert {
            vrid: 7,
            ..advert(150)
        };
        let b = other.encode(v4("10.0.9.9"), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let stranger = Meta {
            src: v4("10.0.9.9"),
            ..multicast(255)
        };
        assert_eq!(validate(&b, stranger, &e), Err(Dropped::Vrid(7)));
        let b = Advert {
            vrid: 52,
            ..advert(150)
        }
        .encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        assert_eq!(validate(&b, multicast(255), &e), Err(Dropped::Sibling));
        // Other virtual addresses (the VIPs changed on one router first).
        let other = Advert {
            addrs: vec![v4("10.10.0.1"), v4("10.10.0.5")],
            ..advert(150)
        };
        let b = other.encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let e = expect(&vips, &[]);
        let dropped = validate(&b, multicast(255), &e).unwrap_err();
        assert_eq!(dropped.reason(), "addresses");
        assert_eq!(claim(&b, multicast(255), &dropped, &e), Some(other));
        // Forwarded or forged off-link: no claim.
        let b = advert(150).encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let dropped = validate(&b, multicast(64), &e).unwrap_err();
        assert_eq!(claim(&b, multicast(64), &dropped, &e), None);
    }

    #[test]
    fn a_long_address_list_is_cut_for_the_log() {
        let addrs: Vec<IpAddr> = (0..255u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        let text = Dropped::Addresses { theirs: addrs }.describe(v4(SRC));
        assert!(text.contains("10.0.0.3, and 251 more"), "{text}");
        assert!(text.len() < 300, "{} bytes: {text}", text.len());
        assert_eq!(list(&[v4("10.0.0.1")]), "10.0.0.1");
    }

    #[test]
    fn an_advert_of_another_vrid_listing_our_vip_is_found() {
        let vips = [v4("10.10.0.1")];
        let other = Advert {
            vrid: 53,
            ..advert(100)
        };
        let b = other.encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        let e = expect(&vips, &[]);
        assert_eq!(
            validate(&b, multicast(255), &e).unwrap_err(),
            Dropped::Vrid(53)
        );
        assert_eq!(
            claimed_by_other_vrid(&b, multicast(255), &e, 53),
            vec![v4("10.10.0.1")]
        );
        let elsewhere = Advert {
            vrid: 53,
            addrs: vec![v4("10.10.0.2"), v4("10.10.0.1")],
            ..advert(100)
        };
        let b = elsewhere.encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        assert_eq!(
            claimed_by_other_vrid(&b, multicast(255), &e, 53),
            vec![v4("10.10.0.1")]
        );
        let unrelated = Advert {
            vrid: 53,
            addrs: vec![v4("10.10.0.2")],
            ..advert(100)
        };
        let b = unrelated.encode(v4(SRC), IpAddr::V4(GROUP_V4), Checksum::PseudoHeader);
        assert!(claimed_by_other_vrid(&b, multicast(255), &e, 53).is_empty());
    }
}

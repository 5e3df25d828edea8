//! Any bytes as a received VRRP packet (hostile input from the LAN or a unicast peer): the
//! IPv4 raw-socket reader and the advert validator never panic or read out of bounds, and what
//! the validator accepts is a well-formed advert of the expected virtual router that lists
//! exactly the instance's virtual addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use steer::{
    config::Checksum,
    vrrp::{
        packet::{self, Expect, Meta},
        socket::parse_v4,
    },
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the instance's settings; the rest is the packet.
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let checksum = if knobs & 1 == 0 {
        Checksum::PseudoHeader
    } else {
        Checksum::Plain
    };
    let v6 = knobs & 2 != 0;
    let unicast = knobs & 4 != 0;
    let vips: Vec<IpAddr> = if v6 {
        vec![
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1)),
        ]
    } else {
        vec![
            IpAddr::V4(Ipv4Addr::new(10, 10, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 10, 0, 2)),
        ]
    };
    let peers: Vec<IpAddr> = if !unicast {
        Vec::new()
    } else if v6 {
        vec![IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x12))]
    } else {
        vec![IpAddr::V4(Ipv4Addr::new(10, 10, 0, 12))]
    };
    let expect = Expect {
        vrid: 51,
        checksum,
        peers: &peers,
        vips: &vips,
        siblings: &[52],
    };
    let check = |payload: &[u8], meta: Meta| {
        if let Ok(ok) = packet::validate(payload, meta, &expect) {
            let a = &ok.advert;
            assert_eq!(a.vrid, 51);
            assert!(a.interval_cs != 0 && a.interval_cs <= packet::MAX_INTERVAL_CS);
            let (mut mine, mut theirs) = (vips.clone(), a.addrs.clone());
            mine.sort();
            theirs.sort();
            assert_eq!(mine, theirs);
            assert!(peers.is_empty() || peers.contains(&meta.src));
            assert!(!peers.is_empty() || meta.ttl == packet::TTL);
            // What was accepted survives a round trip in the form it came in.
            let again = a.encode(meta.src, meta.dst, ok.checksum);
            assert_eq!(
                packet::validate(&again, meta, &expect).map(|x| x.advert),
                Ok(a.clone())
            );
        }
    };
    // As the IPv4 raw socket hands it over: header included.
    if let Some(r) = parse_v4(rest) {
        check(&r.payload, r.meta);
    }
    // As the IPv6 socket hands it over: the message, with source and hop limit beside it.
    let src = peers.first().copied().unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 10, 0, 11))
    });
    let dst = if v6 {
        IpAddr::V6(packet::GROUP_V6)
    } else {
        IpAddr::V4(packet::GROUP_V4)
    };
    let ttl = if knobs & 8 == 0 { packet::TTL } else { knobs };
    check(rest, Meta { src, dst, ttl });
});

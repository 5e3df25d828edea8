//! ICMP and ICMPv6 echo over raw sockets.
//!
//! Each probe has its own raw socket (bound to the WAN's interface, marked) with its own echo
//! identifier. A raw ICMP socket sees every ICMP message that arrives on its interface, so only
//! an echo reply from the target with this probe's identifier and sequence number counts, and
//! only a destination unreachable quoting this very request fails the probe early. The kernel
//! filter (`ICMP_FILTER` / `ICMP6_FILTER`) already drops every other ICMP type.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        OnceLock,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use socket2::{Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::{
    ProbeSpec,
    sock::{OsError, ProbeError, random_u64, wan_socket},
};
use crate::packet::checksum;

/// The echo payload: a fixed pattern (no timestamp; the RTT is measured locally).
const PAYLOAD: &[u8; 48] = b"steer-probe.steer-probe.steer-probe.steer-probe.";

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO: u8 = 8;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_ECHO: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
/// `ICMP_FILTER` (linux/icmp.h), at level `SOL_RAW`.
const ICMP_FILTER: libc::c_int = 1;
/// `ICMP6_FILTER` (linux/icmpv6.h), at level `IPPROTO_ICMPV6`.
const ICMP6_FILTER: libc::c_int = 1;

/// A fresh echo identifier: sequential from a random start, so concurrent probes (and other
/// processes' pings, most likely) never share one.
fn next_id() -> u16 {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU16::new(random_u64() as u16))
        .fetch_add(1, Ordering::Relaxed)
}

/// Sends one echo request to `target` and waits (unbounded: the caller bounds it) for the
/// matching reply; returns the round-trip time.
pub(super) async fn probe(
    spec: &ProbeSpec,
    target: IpAddr,
    seq: u16,
) -> Result<Duration, ProbeError> {
    let protocol = match target {
        IpAddr::V4(_) => Protocol::ICMPV4,
        IpAddr::V6(_) => Protocol::ICMPV6,
    };
    let socket = wan_socket(spec, target, Type::RAW, protocol)?;
    if let Err(e) = set_filter(&socket, target) {
        // Only an optimisation: replies are matched in full below anyway.
        log::debug!("ICMP filter on {}: {e}", spec.interface);
    }
    // SAFETY: the socket2::Socket owns its file descriptor, keeps it open until it is dropped
    // (which only happens with the AsyncFd) and always returns that same fd from as_raw_fd.
    let socket = unsafe { AsyncFd::register(socket) }
        .map_err(|e| ProbeError::Socket(OsError(e.into_parts().1)))?;
    let id = next_id();
    let request = echo_request(target, id, seq);
    let dest = SockAddr::from(SocketAddr::new(target, 0));

    let sent = Instant::now();
    loop {
        let mut ready = socket
            .writable()
            .await
            .map_err(|e| ProbeError::io("send to", target, e))?;
        match ready.try_io(|s| s.get_ref().send_to(&request, &dest)) {
            Ok(result) => {
                result.map_err(|e| ProbeError::io("send to", target, e))?;
                break;
            }
            Err(_would_block) => continue,
        }
    }

    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let mut ready = socket
            .readable()
            .await
            .map_err(|e| ProbeError::io("receive from", target, e))?;
        let (len, from) = match ready.try_io(|s| s.get_ref().recv_from(&mut buf)) {
            Ok(Ok(got)) => got,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(ProbeError::io("receive from", target, e)),
            Err(_would_block) => continue,
        };
        // SAFETY: recv_from wrote the first `len` bytes of `buf` (len <= buf.len()), and
        // MaybeUninit<u8> has the layout of u8.
        let packet = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        let from = from.as_socket().map(|a| a.ip());
        match classify(target, id, seq, packet, from) {
            Some(Verdict::Reply) => return Ok(sent.elapsed()),
            Some(Verdict::Unreachable { code, from }) => {
                return Err(ProbeError::Unreachable { code, from });
            }
            None => {}
        }
    }
}

/// What a received packet means for this probe.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Reply,
    Unreachable { code: u8, from: IpAddr },
}

/// Builds the echo request. For ICMPv6 the kernel fills in the checksum (it covers the IPv6
/// pseudo-header, which only the kernel knows for sure).
fn echo_request(target: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let ty = if target.is_ipv4() {
        ICMP_ECHO
    } else {
        ICMPV6_ECHO
    };
    let mut p = Vec::with_capacity(8 + PAYLOAD.len());
    p.extend_from_slice(&[ty, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    if target.is_ipv4() {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// Matches a received packet (IPv4: with its IP header; IPv6: the ICMPv6 message alone, the
/// source in `from`) against the probe.
fn classify(
    target: IpAddr,
    id: u16,
    seq: u16,
    packet: &[u8],
    from: Option<IpAddr>,
) -> Option<Verdict> {
    let echo_of = |icmp: &[u8], ty: u8| {
        icmp.len() >= 8
            && icmp[0] == ty
            && icmp[1] == 0
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
    };
    match target {
        IpAddr::V4(target) => {
            let (src, _dst, icmp) = ipv4_icmp(packet)?;
            if src == target && echo_of(icmp, ICMP_ECHO_REPLY) {
                return Some(Verdict::Reply);
            }
            if icmp.len() > 8 && icmp[0] == ICMP_DEST_UNREACH {
                let (_, inner_dst, inner) = ipv4_icmp(&icmp[8..])?;
                if inner_dst == target && echo_of(inner, ICMP_ECHO) {
                    return Some(Verdict::Unreachable {
                        code: icmp[1],
                        from: src.into(),
                    });
                }
            }
            None
        }
        IpAddr::V6(target) => {
            let icmp = packet;
            let from = from?;
            if from == IpAddr::V6(target) && echo_of(icmp, ICMPV6_ECHO_REPLY) {
                return Some(Verdict::Reply);
            }
            if icmp.len() >= 8 + 40 + 8 && icmp[0] == ICMPV6_DEST_UNREACH {
                let inner = &icmp[8..];
                let inner_dst = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[24..40]).ok()?);
                // Next header ICMPv6 straight after the fixed header (we send no extensions).
                if inner[6] == 58 && inner_dst == target && echo_of(&inner[40..], ICMPV6_ECHO) {
                    return Some(Verdict::Unreachable {
                        code: icmp[1],
                        from,
                    });
                }
            }
            None
        }
    }
}

/// Source, destination and ICMP part of an IPv4 packet carrying ICMP (possibly truncated, as
/// quoted in an ICMP error).
fn ipv4_icmp(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || packet.len() < ihl || packet[9] != 1 {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((src, dst, &packet[ihl..]))
}

/// Lets only echo replies and destination unreachables reach the socket.
fn set_filter(socket: &Socket, target: IpAddr) -> io::Result<()> {
    let pass = |types: &[u8]| {
        // A set bit blocks that type.
        let mut bits = [u32::MAX; 8];
        for &t in types {
            bits[usize::from(t >> 5)] &= !(1u32 << (t & 31));
        }
        bits
    };
    let rc = match target {
        IpAddr::V4(_) => {
            let mask = pass(&[ICMP_ECHO_REPLY, ICMP_DEST_UNREACH])[0];
            // SAFETY: the fd is an open raw IPv4 ICMP socket; the option value is a u32 that
            // lives across the call and its exact size is passed.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_RAW,
                    ICMP_FILTER,
                    (&raw const mask).cast(),
                    size_of::<u32>() as libc::socklen_t,
                )
            }
        }
        IpAddr::V6(_) => {
            let filter = pass(&[ICMPV6_ECHO_REPLY, ICMPV6_DEST_UNREACH]);
            // SAFETY: the fd is an open raw ICMPv6 socket; the option value is a struct
            // icmp6_filter (8 u32s) that lives across the call and its exact size is passed.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_ICMPV6,
                    ICMP6_FILTER,
                    filter.as_ptr().cast(),
                    size_of::<[u32; 8]>() as libc::socklen_t,
                )
            }
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_request_checksum_verifies() {
        let p = echo_request(Ipv4Addr::new(192, 0, 2, 1).into(), 0x1234, 7);
        assert_eq!(p[0], ICMP_ECHO);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn v4_reply_matches_only_id_seq_and_source() {
        let target = Ipv4Addr::new(192, 0, 2, 1);
        let mut reply = echo_request(target.into(), 9, 3);
        reply[0] = ICMP_ECHO_REPLY;
        let ip = |src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]| {
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
            h.extend_from_slice(&src.octets());
            h.extend_from_slice(&dst.octets());
            h.extend_from_slice(payload);
            h
        };
        let me = Ipv4Addr::new(100, 64, 1, 2);
        let t = IpAddr::V4(target);
        assert_eq!(
            classify(t, 9, 3, &ip(target, me, &reply), None),
            Some(Verdict::Reply)
        );
        assert_eq!(classify(t, 9, 4, &ip(target, me, &reply), None), None);
        assert_eq!(classify(t, 8, 3, &ip(target, me, &reply), None), None);
        let other = Ipv4Addr::new(192, 0, 2, 2);
        assert_eq!(classify(t, 9, 3, &ip(other, me, &reply), None), None);

        // A destination unreachable quoting our request.
        let gw = Ipv4Addr::new(100, 64, 1, 1);
        let request = echo_request(t, 9, 3);
        let mut unreach = vec![ICMP_DEST_UNREACH, 1, 0, 0, 0, 0, 0, 0];
        unreach.extend_from_slice(&ip(me, target, &request[..8]));
        assert_eq!(
            classify(t, 9, 3, &ip(gw, me, &unreach), None),
            Some(Verdict::Unreachable {
                code: 1,
                from: gw.into()
            })
        );
        assert_eq!(classify(t, 9, 2, &ip(gw, me, &unreach), None), None);
    }

    #[test]
    fn v6_reply_matches_source_from_address() {
        let target = IpAddr::V6("2001:db8:2::1".parse().unwrap());
        let mut reply = echo_request(target, 5, 0);
        reply[0] = ICMPV6_ECHO_REPLY;
        assert_eq!(
            classify(target, 5, 0, &reply, Some(target)),
            Some(Verdict::Reply)
        );
        let other: IpAddr = "2001:db8:2::2".parse().unwrap();
        assert_eq!(classify(target, 5, 0, &reply, Some(other)), None);
        assert_eq!(classify(target, 5, 0, &reply, None), None);
    }
}

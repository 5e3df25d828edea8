//! Raw IP sockets for VRRP (protocol 112), one per instance, bound to its interface.
//!
//! - Multicast: joined to 224.0.0.18 or ff02::12 on the interface; adverts go to the group with
//!   TTL (hop limit) 255 from the interface's primary IPv4 address, or its link-local IPv6
//!   address; our own adverts are not looped back.
//! - Unicast: adverts go to each peer, TTL 255, from `unicast_src` (or the primary address).
//!   The socket joins the group all the same (where the link allows it): a router configured
//!   without `peers` sends its adverts there, and this one must hear them (to drop them, say
//!   so and hold its master-only WANs) instead of missing them and becoming a second master
//!   without a word.
//!
//! The source is set per packet (IP_PKTINFO / IPV6_PKTINFO), so a receiving socket is never
//! bound to an address. What arrives comes with its source, destination and TTL (read from
//! the IPv4 header, or from IPV6_PKTINFO and IPV6_HOPLIMIT).

use std::{
    io,
    mem::{self, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{GROUP_V4, GROUP_V6, Meta, PROTOCOL, TTL};

/// One instance's VRRP socket.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    ifindex: u32,
}

/// A message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: Vec<u8>,
    pub meta: Meta,
}

/// The index of `interface` in this network namespace.
pub fn ifindex(interface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(interface).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// The address adverts leave `interface` from: its first IPv4 address that is not one of
/// `vips`, or its first link-local IPv6 address.
pub fn primary_address(interface: &str, v6: bool, vips: &[IpAddr]) -> Option<IpAddr> {
    interface_addresses(interface)
        .into_iter()
        .filter(|a| !vips.contains(a))
        .find(|a| match a {
            IpAddr::V4(_) => !v6,
            IpAddr::V6(a) => v6 && (a.segments()[0] & 0xffc0) == 0xfe80,
        })
}

/// Whether an interface can carry adverts: administratively up (IFF_UP) and with carrier
/// (IFF_LOWER_UP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub admin_up: bool,
    pub carrier: bool,
}

/// The state of `interface`, `None` when there is no such interface. Read from the kernel
/// each time: a socket opens on a link that is down, so it says nothing of the link.
pub fn link_state(interface: &str) -> Option<LinkState> {
    let mut state = None;
    // Every entry of an interface (its link, each address) carries the link's flags: glibc
    // fills ifa_flags from the link's ifi_flags, all 32 bits, so IFF_LOWER_UP is there
    // (SIOCGIFFLAGS cuts it off). A link without a hardware address has an entry too.
    each_ifaddr(interface, |ifa| {
        state.get_or_insert(LinkState {
            admin_up: ifa.ifa_flags & libc::IFF_UP as u32 != 0,
            carrier: ifa.ifa_flags & libc::IFF_LOWER_UP as u32 != 0,
        });
    });
    state
}

/// Every address of `interface`, in the kernel's order.
fn interface_addresses(interface: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    each_ifaddr(interface, |ifa| {
        if ifa.ifa_addr.is_null() {
            return;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    });
    out
}

/// Calls `f` with each getifaddrs entry of `interface` (ifa_addr may be null).
fn each_ifaddr(interface: &str, mut f: impl FnMut(&libc::ifaddrs)) {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() == interface.as_bytes() {
            f(ifa);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
}

impl VrrpSocket {
    /// A socket on `interface` for one family, joined to the VRRP group. When `unicast` the
    /// group only serves to notice a peer configured without `peers` (see the module
    /// documentation): a link that refuses it (no multicast, a tunnel) still carries unicast.
    pub fn open(interface: &str, v6: bool, unicast: bool) -> io::Result<VrrpSocket> {
        let ifindex = ifindex(interface)?;
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(PROTOCOL))))?;
        s.bind_device(Some(interface.as_bytes()))?;
        if v6 {
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_hops_v6(u32::from(TTL))?;
            s.set_unicast_hops_v6(u32::from(TTL))?;
            s.set_multicast_loop_v6(false)?;
            s.set_recv_hoplimit_v6(true)?;
            set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            joined(s.join_multicast_v6(&GROUP_V6, ifindex), interface, unicast)?;
        } else {
            s.set_multicast_ttl_v4(u32::from(TTL))?;
            s.set_ttl_v4(u32::from(TTL))?;
            s.set_multicast_loop_v4(false)?;
            joined(
                s.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex)),
                interface,
                unicast,
            )?;
        }
        s.set_recv_buffer_size(1 << 20)?;
        s.set_nonblocking(true)?;
        // SAFETY: the socket2::Socket owns its descriptor, keeps it open until it is dropped
        // (only with the AsyncFd) and always returns that same fd from as_raw_fd.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)?;
        Ok(VrrpSocket { fd, v6, ifindex })
    }

    /// Sends message `b` from `src` to `dst` (a group or a peer) out of the interface.
    pub fn send(&self, b: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        let fd = self.fd.get_ref().as_raw_fd();
        let mut iov = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: zeroed msghdr and sockaddrs are valid; every pointer below points into locals
        // that outlive the sendmsg call, with the lengths given.
        let rc = unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            let mut sin: libc::sockaddr_in = mem::zeroed();
            let mut sin6: libc::sockaddr_in6 = mem::zeroed();
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    sin.sin_family = libc::AF_INET as libc::sa_family_t;
                    sin.sin_addr.s_addr = u32::from(d).to_be();
                    msg.msg_name = (&mut sin as *mut libc::sockaddr_in).cast();
                    msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
                    let info = libc::in_pktinfo {
                        ipi_ifindex: self.ifindex as i32,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from(s).to_be(),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    msg.msg_controllen = libc::CMSG_SPACE(mem::size_of_val(&info) as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of_val(&info) as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sin6.sin6_addr.s6_addr = d.octets();
                    sin6.sin6_scope_id = if d.is_multicast() || is_link_local(d) {
                        self.ifindex
                    } else {
                        0
                    };
                    msg.msg_name = (&mut sin6 as *mut libc::sockaddr_in6).cast();
                    msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as u32;
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: s.octets(),
                        },
                        ipi6_ifindex: self.ifindex,
                    };
                    msg.msg_controllen = libc::CMSG_SPACE(mem::size_of_val(&info) as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    (*c).cmsg_level = libc::IPPROTO_IPV6;
                    (*c).cmsg_type = libc::IPV6_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of_val(&info) as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                }
                _ => {
                    return Err(io::Error::other(
                        "source and destination of different families",
                    ));
                }
            }
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT)
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The next VRRP message on the interface.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| self.recv_now(fd.get_ref().as_raw_fd())) {
                Ok(Ok(Some(r))) => return Ok(r),
                // Not an IP packet we can read: the next one.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    fn recv_now(&self, fd: i32) -> io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut from: MaybeUninit<libc::sockaddr_in6> = MaybeUninit::zeroed();
        // SAFETY: the msghdr points into locals that outlive the call, with their lengths.
        let (n, msg) = unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_name = from.as_mut_ptr().cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as u32;
            msg.msg_control = control.as_mut_ptr().cast();
            // A size_t in glibc, a socklen_t in musl (and so for the lengths above).
            msg.msg_controllen = mem::size_of_val(&control) as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
            (n, msg)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let b = &buf[..n as usize];
        if !self.v6 {
            return Ok(parse_v4(b));
        }
        // SAFETY: recvmsg wrote a sockaddr_in6 for this IPv6 socket.
        let from = unsafe { from.assume_init() };
        let src = IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr));
        let (mut dst, mut ttl) = (None, None);
        // SAFETY: walking the control messages recvmsg wrote, within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        let h: libc::c_int = std::ptr::read_unaligned(data.cast());
                        ttl = u8::try_from(h).ok();
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(Received {
            payload: b.to_vec(),
            meta: Meta {
                src,
                dst: dst.unwrap_or(IpAddr::V6(GROUP_V6)),
                ttl: ttl.unwrap_or(0),
            },
        }))
    }
}

/// An IPv4 packet as a raw socket hands it over (header included): its VRRP message and what
/// the header says, or `None` when it is no IPv4 VRRP packet (the kernel checked the header
/// already; this never reads out of bounds whatever `b` holds). Public for the fuzz target.
pub fn parse_v4(b: &[u8]) -> Option<Received> {
    if b.len() < 20 || b[0] >> 4 != 4 || b[9] != PROTOCOL {
        return None;
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[2], b[3]])).min(b.len());
    if ihl < 20 || total < ihl {
        return None;
    }
    let addr = |i: usize| IpAddr::V4(Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]));
    Some(Received {
        payload: b[ihl..total].to_vec(),
        meta: Meta {
            src: addr(12),
            dst: addr(16),
            ttl: b[8],
        },
    })
}

/// The result of joining the VRRP group: an error only counts for a multicast instance.
fn joined(r: io::Result<()>, interface: &str, unicast: bool) -> io::Result<()> {
    match r {
        Err(e) if unicast => {
            log::info!(
                "vrrp: {interface} does not join the VRRP group ({e}): a peer configured \
                 without `peers` would go unnoticed there"
            );
            Ok(())
        }
        r => r,
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

fn set_int(s: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to an int we own and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_reads_up_and_carrier_and_knows_a_missing_interface() {
        assert_eq!(
            link_state("lo"),
            Some(LinkState {
                admin_up: true,
                carrier: true
            })
        );
        assert_eq!(link_state("steer-no-such0"), None);
    }

    #[test]
    fn an_ipv4_header_gives_source_destination_and_ttl() {
        let mut p = vec![
            0x45, 0, 0, 32, 0, 0, 0, 0, 254, PROTOCOL, 0, 0, 10, 0, 2, 2, 10, 0, 1, 2,
        ];
        p.extend_from_slice(&[0x31, 7, 100, 1, 0, 10, 0, 0, 10, 99, 0, 1]);
        let r = parse_v4(&p).expect("a VRRP packet");
        assert_eq!(r.meta.ttl, 254);
        assert_eq!(r.meta.src, "10.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.meta.dst, "10.0.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.payload.len(), 12);
        p[9] = 6;
        assert!(parse_v4(&p).is_none(), "not VRRP");
    }
}

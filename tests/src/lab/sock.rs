//! Socket helpers std does not offer: integer socket options (marks, ICMP error reporting,
//! packet info), and UDP receive with the arrival interface (IP_PKTINFO / IPV6_PKTINFO), which
//! the internet namespace uses to tell which ISP link carried a datagram.

use std::{
    ffi::CString,
    io,
    mem::{size_of, size_of_val},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

/// Sets an integer socket option (`setsockopt` with a `c_int` value) on `sock`.
pub fn set_int_option(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is an open socket for the duration of the call; optval points to a live
    // c_int and optlen is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket on an ephemeral port of the wildcard address of `peer`'s family, to send to
/// `peer` from whatever namespace the calling thread is in. Panics if it cannot bind.
pub fn unbound_udp(peer: IpAddr) -> UdpSocket {
    let any = match peer {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    UdpSocket::bind(any).unwrap_or_else(|e| panic!("bind a UDP socket to {any}: {e}"))
}

/// Makes `sock` report every ICMP error it receives (IP_RECVERR / IPV6_RECVERR): without it
/// Linux passes only "hard" errors to a connected UDP socket, and "network unreachable" is soft.
pub fn enable_recverr(sock: &UdpSocket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        set_int_option(sock, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

/// Asks the kernel to attach the arrival interface to every datagram `sock` receives.
pub(super) fn enable_pktinfo(sock: &UdpSocket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// The ifindex of `name` in the calling thread's network namespace.
pub(super) fn ifindex(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// One received datagram.
pub(super) struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// The interface it arrived on, when the kernel said (see [`enable_pktinfo`]).
    pub ifindex: Option<u32>,
}

/// `recvmsg` on `sock` into `buf`, honouring the socket's read timeout (WouldBlock/TimedOut).
pub(super) fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    // SAFETY: sockaddr_storage and msghdr are plain C structs for which all-zero is valid.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 elements: aligned for cmsghdr; 128 bytes hold either pktinfo message.
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live local buffer of the stated size.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = sockaddr_to_std(&name)
        .ok_or_else(|| io::Error::other("recvmsg: unexpected source address family"))?;
    let mut ifindex = None;
    // SAFETY: `msg` was filled by a successful recvmsg, so its control fields describe valid
    // cmsg headers inside `control`; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen, and the
    // payloads are read unaligned with the type the (level, type) pair guarantees.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ifindex = u32::try_from(info.ipi_ifindex).ok();
            } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ifindex = Some(info.ipi6_ifindex);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Datagram {
        len: n as usize,
        from,
        ifindex,
    })
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    steer::dns::mmsg::socket_addr(ss)
}

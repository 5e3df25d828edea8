//! Batched UDP I/O (`recvmmsg`/`sendmmsg`): under load the forwarder reads up to [`BATCH`]
//! datagrams per system call and writes what they cause in one call per socket, instead of one
//! call per datagram.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::RawFd,
};

use socket2::SockAddr;

/// Datagrams read or written per system call at most.
pub const BATCH: usize = 32;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// `BATCH` buffers of `size` bytes.
    pub fn new(size: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; size]).collect(),
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            lens: vec![0; BATCH],
            truncated: vec![false; BATCH],
        }
    }

    /// Reads up to `BATCH` datagrams without blocking; returns how many (`WouldBlock` when
    /// none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: mmsghdr is plain data; all-zero is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: every header points at a live buffer and address of this batch, of the sizes
        // given; the kernel writes within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                // The flags are an int in glibc and an unsigned int in musl.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(n)
    }

    /// Datagram `i` of the last read; `None` when it did not fit its buffer.
    pub fn datagram(&self, i: usize) -> Option<&[u8]> {
        (!self.truncated[i]).then(|| &self.bufs[i][..self.lens[i]])
    }

    /// The sender of datagram `i` (unconnected sockets).
    pub fn from(&self, i: usize) -> Option<SocketAddr> {
        socket_addr(&self.addrs[i])
    }
}

/// The address a `sockaddr_storage` from the kernel holds (IPv4 or IPv6).
pub fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `datagrams` (to their address, or on a connected socket without one) in as few
/// calls as the kernel takes them. A datagram the socket has no room for is dropped, as UDP
/// may; the first error other than that is returned.
pub fn send(fd: RawFd, datagrams: &[(&[u8], Option<&SockAddr>)]) -> io::Result<()> {
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(b, _)| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(datagrams)
        .map(|(iov, (_, to))| {
            // SAFETY: mmsghdr is plain data; all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if let Some(to) = to {
                h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = to.len();
            }
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut done = 0;
    let mut first_error = None;
    while done < hdrs.len() {
        let left = &mut hdrs[done..];
        // SAFETY: every header points at a live buffer (and address) of `datagrams`; the
        // kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                left.as_mut_ptr(),
                left.len() as u32,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => break,
            // A connected socket's upstream is gone: the caller moves its queries on.
            io::ErrorKind::ConnectionRefused => return Err(e),
            // This one datagram cannot go (a destination that refuses it): skip it.
            _ => {
                first_error.get_or_insert(e);
                done += 1;
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd};

    use super::*;

    #[test]
    fn a_batch_goes_out_in_one_call_and_comes_back_with_its_senders() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SockAddr::from(rx.local_addr().unwrap());
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let datagrams: Vec<(&[u8], Option<&SockAddr>)> =
            payloads.iter().map(|p| (p.as_slice(), Some(&to))).collect();
        send(tx.as_raw_fd(), &datagrams).unwrap();
        let mut batch = RecvBatch::new(16);
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = batch.recv(rx.as_raw_fd()).unwrap();
            assert!(n <= BATCH);
            for i in 0..n {
                assert_eq!(batch.from(i), Some(tx.local_addr().unwrap()));
                got.push(batch.datagram(i).map(<[u8]>::to_vec));
            }
        }
        // Datagrams longer than the 16-byte buffers come back as cut (None).
        for (i, g) in got.iter().enumerate() {
            let want = (i < 16).then(|| payloads[i].clone());
            assert_eq!(*g, want, "datagram {i}");
        }
        let empty = batch.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
    }
}

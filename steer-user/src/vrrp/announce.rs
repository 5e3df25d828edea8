//! Telling the link where addresses live now: gratuitous ARP (IPv4) and unsolicited neighbour
//! advertisements (IPv6, override flag set), sent with the interface's own MAC address (no
//! virtual MAC, as keepalived does by default). Hosts and switches update their tables at once
//! instead of waiting for entries to expire.

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use super::socket::ifindex;

/// Copies of each announcement sent at once.
pub const REPEAT: usize = 3;
/// When the announcements are sent again after the first burst: a bridge or switch port that
/// has only just seen the link come up (a WAN brought up a moment ago) drops what came before
/// it noticed.
pub const AGAIN: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// Announces `addrs` on `interface` again at each of [`AGAIN`], off the event loop. Abort the
/// task when the addresses are given up.
pub fn announce_later(interface: String, addrs: Vec<IpAddr>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for at in AGAIN {
            tokio::time::sleep_until(start + at).await;
            let (i, a) = (interface.clone(), addrs.clone());
            let sent =
                tokio::task::spawn_blocking(move || Announcer::default().announce(&i, &a)).await;
            if let Ok(Err(e)) = sent {
                log::debug!("announcing again on {interface}: {e}");
            }
        }
    })
}

const ETH_P_ARP: u16 = 0x0806;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The MAC address of `interface`, if it has an Ethernet-like one.
pub fn mac(interface: &str) -> io::Result<[u8; 6]> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    // SAFETY: a zeroed ifreq is valid; the name is copied within its bounds (IFNAMSIZ - 1).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (d, c) in req
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = c as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we own. (The request is an unsigned long in glibc
    // and an int in musl.)
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR set the hwaddr member of the union.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if i32::from(hw.sa_family) != i32::from(libc::ARPHRD_ETHER) {
        return Err(io::Error::other(format!(
            "{interface} has no Ethernet address"
        )));
    }
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// Sends the announcements. It keeps its packet socket: closing one makes the kernel wait for
/// an RCU grace period (milliseconds), which a takeover should not.
#[derive(Debug, Default)]
pub struct Announcer {
    arp: Option<Socket>,
    /// Interface -> (its index, a socket receiving its ARP packets).
    listeners: std::collections::BTreeMap<String, (u32, Socket)>,
}

impl Announcer {
    /// Asks for `gateway` on `interface` (from `src`) every 2 ms until it answers or `deadline`
    /// passes: the link works both ways (a link that has only just come up may still drop the
    /// first frames, and the kernel would wait a second before asking again), and the answer
    /// reaches the kernel's entry if it is resolving it.
    /// Returns how long it took.
    pub async fn gateway_answers(
        &mut self,
        interface: &str,
        src: Ipv4Addr,
        gateway: Ipv4Addr,
        deadline: std::time::Instant,
    ) -> Result<Duration, String> {
        let mac = mac(interface).map_err(|e| format!("{interface}: {e}"))?;
        let index = ifindex(interface).map_err(|e| format!("{interface}: {e}"))?;
        self.send_socket()?;
        self.listener(interface, index)?;
        let (Some(tx), Some((_, rx))) = (&self.arp, self.listeners.get(interface)) else {
            return Err("no packet socket".into());
        };
        // Replies queued since the last takeover say nothing about the link now.
        let mut buf = [0u8; 64];
        drain(rx, &mut buf);
        let start = std::time::Instant::now();
        let mut ask_at = start;
        loop {
            let now = std::time::Instant::now();
            if now >= ask_at {
                send_arp(tx, index, &[arp_request(mac, src, gateway)])
                    .map_err(|e| format!("asking for {gateway} on {interface}: {e}"))?;
                ask_at = now + Duration::from_millis(2);
            }
            while let Some(n) = recv_now(rx, &mut buf) {
                if is_reply_from(&buf[..n], gateway) {
                    return Ok(start.elapsed());
                }
            }
            if now >= deadline {
                return Err(format!(
                    "the gateway {gateway} did not answer ARP on {interface}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn send_socket(&mut self) -> Result<(), String> {
        if self.arp.is_none() {
            // Protocol 0: it only sends, so no receive hook is registered.
            let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))
                .map_err(|e| format!("packet socket: {e}"))?;
            self.arp = Some(s);
        }
        Ok(())
    }

    /// The ARP listener of `interface` (index `index`), opened once (closing packet sockets
    /// stalls) and again when the interface was recreated.
    fn listener(&mut self, interface: &str, index: u32) -> Result<(), String> {
        if self
            .listeners
            .get(interface)
            .is_some_and(|(i, _)| *i == index)
        {
            return Ok(());
        }
        let proto = i32::from(ETH_P_ARP.to_be());
        let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(proto)))
            .map_err(|e| format!("packet socket: {e}"))?;
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set are plain integers.
        let mut at: libc::sockaddr_ll = unsafe { mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_protocol = ETH_P_ARP.to_be();
        at.sll_ifindex = index as i32;
        // SAFETY: bind with a sockaddr_ll we own and its size.
        let rc = unsafe {
            libc::bind(
                s.as_raw_fd(),
                (&at as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(format!(
                "ARP listener on {interface}: {}",
                io::Error::last_os_error()
            ));
        }
        self.listeners.insert(interface.to_owned(), (index, s));
        Ok(())
    }

    /// Announces `addrs` on `interface` ([`REPEAT`] times each); returns how many packets went
    /// out.
    pub fn announce(&mut self, interface: &str, addrs: &[IpAddr]) -> Result<usize, String> {
        let mac = mac(interface).map_err(|e| format!("{interface}: {e}"))?;
        let index = ifindex(interface).map_err(|e| format!("{interface}: {e}"))?;
        let v4: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect();
        let mut sent = 0;
        if !v4.is_empty() {
            self.send_socket()?;
            let sock = self.arp.as_ref().ok_or("no packet socket")?;
            let mut frames: Vec<[u8; 28]> = Vec::new();
            for _ in 0..REPEAT {
                frames.extend(v4.iter().map(|a| arp_request(mac, *a, *a)));
            }
            sent += send_arp(sock, index, &frames)
                .map_err(|e| format!("gratuitous ARP on {interface}: {e}"))?;
        }
        if !v6.is_empty() {
            sent += unsolicited_na(interface, index, mac, &v6)
                .map_err(|e| format!("neighbour advertisement on {interface}: {e}"))?;
        }
        Ok(sent)
    }
}

/// The 28-byte ARP request from `sender` at `mac` for `target`; with `target` = `sender` it is a
/// gratuitous ARP announcing `sender` at `mac`.
pub fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&sender.octets());
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// The next packet queued on `s`, into `buf`, without waiting; `None` when none is.
fn recv_now(s: &Socket, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: recv into a buffer we own, within its length, without blocking.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).ok()
}

/// Empties `s`'s queue without waiting. The listener's interface went down since it last
/// read (this router left MASTER): the kernel then set the socket's error (ENETDOWN), which
/// the next read returns once *in place of* the packets still queued. Stopping at that error
/// left the gateway's answer from the previous takeover queued, and the check took it for an
/// answer to this one while the link (a bridge or switch port that has not noticed the carrier
/// yet) still dropped every frame: the kernel's own ARP request for the gateway went the same
/// way, and it asks again only after a second. So only "nothing queued" (EAGAIN) ends it.
fn drain(s: &Socket, buf: &mut [u8]) {
    // Bounded: a flood of ARP on the link cannot hold the takeover here.
    for _ in 0..4096 {
        // SAFETY: recv into a buffer we own, within its length, without blocking.
        let n = unsafe {
            libc::recv(
                s.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.kind(), io::ErrorKind::WouldBlock) {
                return;
            }
        }
    }
}

/// Whether `p` (an ARP packet) is a reply from `sender`.
fn is_reply_from(p: &[u8], sender: Ipv4Addr) -> bool {
    p.len() >= 28 && p[6..8] == [0, 2] && p[14..18] == sender.octets()
}

fn send_arp(s: &Socket, index: u32, frames: &[[u8; 28]]) -> io::Result<usize> {
    // SAFETY: a zeroed sockaddr_ll is valid; the fields set below are plain integers.
    let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for frame in frames {
        // SAFETY: sendto with a buffer and a sockaddr_ll we own, with their sizes.
        let rc = unsafe {
            libc::sendto(
                s.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(frames.len())
}

/// An unsolicited neighbour advertisement of `target` at `mac`: router and override flags set,
/// solicited clear, with the target link-layer address option (the kernel fills the checksum).
pub fn na_message(mac: [u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136;
    p[4] = 0xa0; // R | O
    p[8..24].copy_from_slice(&target.octets());
    p[24] = 2; // target link-layer address
    p[25] = 1;
    p[26..32].copy_from_slice(&mac);
    p
}

fn unsolicited_na(
    interface: &str,
    index: u32,
    mac: [u8; 6],
    addrs: &[Ipv6Addr],
) -> io::Result<usize> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(ALL_NODES, 0, 0, index));
    let mut sent = 0;
    for _ in 0..REPEAT {
        for a in addrs {
            s.send_to(&na_message(mac, *a), &to)?;
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let a = Ipv4Addr::new(10, 10, 0, 1);
        let f = arp_request([2, 0, 0, 0, 0, 1], a, a);
        assert_eq!(f[6..8], [0, 1], "request");
        assert_eq!(f[8..14], [2, 0, 0, 0, 0, 1]);
        assert_eq!(f[14..18], [10, 10, 0, 1]);
        assert_eq!(f[24..28], [10, 10, 0, 1]);
    }

    #[test]
    fn only_the_gateways_reply_counts() {
        let gw = Ipv4Addr::new(100, 64, 0, 1);
        let mut reply = arp_request([2, 0, 0, 0, 0, 9], gw, Ipv4Addr::new(100, 64, 0, 2));
        assert!(!is_reply_from(&reply, gw), "a request is no answer");
        reply[7] = 2;
        assert!(is_reply_from(&reply, gw));
        assert!(!is_reply_from(&reply, Ipv4Addr::new(100, 64, 0, 3)));
    }

    #[test]
    fn an_unsolicited_na_overrides_and_is_not_solicited() {
        let m = na_message([2, 0, 0, 0, 0, 1], "fd10::1".parse().unwrap());
        assert_eq!((m[0], m[1]), (136, 0));
        assert_eq!(m[4] & 0x40, 0, "solicited flag clear");
        assert_eq!(m[4] & 0x20, 0x20, "override flag set");
        assert_eq!(m[24..26], [2, 1]);
    }
}

//! On the LAN wire: a sniffer that timestamps every VRRP advert, ARP and neighbour
//! advertisement the client sees, and a forger that sends VRRP packets of any shape (a hostile
//! or broken host on the LAN).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::Netns;

const ETH_P_ALL: u16 = 0x0003;

/// One frame of interest.
#[derive(Clone, Debug)]
pub struct Frame {
    pub at: Instant,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A VRRP packet: IP source and destination, TTL or hop limit, the VRRP message.
    Vrrp {
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        msg: Vec<u8>,
    },
    /// An ARP packet: operation, sender and target protocol addresses.
    Arp {
        op: u16,
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// An ICMPv6 neighbour advertisement of `target`.
    Na { target: Ipv6Addr },
    /// An IPv4 UDP datagram to the port the sniffer was asked to watch
    /// ([`Sniffer::start_udp`]).
    Udp { dst: Ipv4Addr, dport: u16 },
}

impl Frame {
    /// The VRRP priority, when this is an advert.
    pub fn priority(&self) -> Option<u8> {
        match &self.kind {
            Kind::Vrrp { msg, .. } if msg.len() >= 3 => Some(msg[2]),
            _ => None,
        }
    }

    pub fn mac(&self) -> String {
        mac_text(&self.src_mac)
    }

    /// The destination MAC address, as `ip link` writes it.
    pub fn dst(&self) -> String {
        mac_text(&self.dst_mac)
    }
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Captures on an interface of a namespace until dropped.
#[derive(Debug)]
pub struct Sniffer {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    pub fn start(ns: &Netns, interface: &str) -> Sniffer {
        Sniffer::start_udp(ns, interface, None)
    }

    /// Like [`Sniffer::start`], and also every IPv4 UDP datagram to port `udp` (with its MAC
    /// addresses: which router a host sends through).
    pub fn start_udp(ns: &Netns, interface: &str, udp: Option<u16>) -> Sniffer {
        let iface = interface.to_owned();
        let sock = ns.enter(move || {
            let s = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
            )
            .expect("a packet socket");
            s.bind_device(Some(iface.as_bytes()))
                .expect("bind the sniffer");
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            s.set_recv_buffer_size(4 << 20).expect("buffer");
            s
        });
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (frames, stop) = (frames.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: recv into a buffer we own, within its length.
                    let n = unsafe {
                        libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    if n <= 0 {
                        continue;
                    }
                    let at = Instant::now();
                    if let Some(f) = parse(&buf[..n as usize], at, udp) {
                        frames.lock().expect("frames").push(f);
                    }
                }
            })
        };
        Sniffer {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().expect("frames").clone()
    }

    /// Adverts seen since `since`.
    pub fn adverts_since(&self, since: Instant) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.at >= since && matches!(f.kind, Kind::Vrrp { .. }))
            .collect()
    }

    /// Waits until a frame after `since` matches `what`; returns it.
    pub fn wait(
        &self,
        since: Instant,
        within: Duration,
        label: &str,
        what: impl Fn(&Frame) -> bool,
    ) -> Frame {
        let deadline = Instant::now() + within;
        loop {
            if let Some(f) = self.frames().into_iter().find(|f| f.at >= since && what(f)) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "the sniffer saw no {label} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse(b: &[u8], at: Instant, udp: Option<u16>) -> Option<Frame> {
    if b.len() < 14 {
        return None;
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&b[6..12]);
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&b[0..6]);
    let ethertype = u16::from_be_bytes([b[12], b[13]]);
    let p = &b[14..];
    let kind = match ethertype {
        0x0800 if p.len() >= 20 && p[9] == 112 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
            Kind::Vrrp {
                src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
                ttl: p[8],
                msg: p.get(ihl..total)?.to_vec(),
            }
        }
        0x0800 if p.len() >= 28 && p[9] == 17 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let dport = u16::from_be_bytes([*p.get(ihl + 2)?, *p.get(ihl + 3)?]);
            if Some(dport) != udp {
                return None;
            }
            Kind::Udp {
                dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
                dport,
            }
        }
        0x86dd if p.len() >= 40 && p[6] == 112 => Kind::Vrrp {
            src: IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?)),
            dst: IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?)),
            ttl: p[7],
            msg: p[40..].to_vec(),
        },
        0x86dd if p.len() >= 64 && p[6] == 58 && p[40] == 136 => Kind::Na {
            target: Ipv6Addr::from(<[u8; 16]>::try_from(&p[48..64]).ok()?),
        },
        0x0806 if p.len() >= 28 => Kind::Arp {
            op: u16::from_be_bytes([p[6], p[7]]),
            sender: Ipv4Addr::new(p[14], p[15], p[16], p[17]),
            target: Ipv4Addr::new(p[24], p[25], p[26], p[27]),
        },
        _ => return None,
    };
    Some(Frame {
        at,
        src_mac,
        dst_mac,
        kind,
    })
}

/// Sends hand-made IPv4 VRRP packets from a namespace.
#[derive(Debug)]
pub struct Forger {
    sock: Socket,
}

impl Forger {
    pub fn new(ns: &Netns, interface: &str) -> Forger {
        let iface = interface.to_owned();
        let sock = ns.enter(move || {
            let s = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )
            .expect("a raw socket");
            s.bind_device(Some(iface.as_bytes()))
                .expect("bind the forger");
            s
        });
        Forger { sock }
    }

    /// Sends `msg` as VRRP from `src` to `dst` with `ttl` (the kernel fills the IP checksum).
    pub fn send(&self, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, msg: &[u8]) {
        let total = (20 + msg.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, ttl, 112, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(msg);
        let to = SockAddr::from(std::net::SocketAddrV4::new(dst, 0));
        let _ = self.sock.send_to(&p, &to);
    }
}

/// A VRRPv3 advert message with a valid checksum (pseudo-header form) from `src` to `dst`,
/// then changed by `tamper` (and summed again unless `keep_sum`).
pub fn advert(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    vrid: u8,
    priority: u8,
    vips: &[Ipv4Addr],
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let a = steer::vrrp::packet::Advert {
        vrid,
        priority,
        interval_cs: 10,
        addrs: vips.iter().map(|v| IpAddr::V4(*v)).collect(),
    };
    let mut b = a.encode(
        IpAddr::V4(src),
        IpAddr::V4(dst),
        steer::config::Checksum::PseudoHeader,
    );
    tamper(&mut b);
    if b.len() < 8 {
        return b;
    }
    b[6] = 0;
    b[7] = 0;
    let s = steer::vrrp::packet::checksum(
        &b,
        IpAddr::V4(src),
        IpAddr::V4(dst),
        steer::config::Checksum::PseudoHeader,
    );
    b[6..8].copy_from_slice(&s.to_be_bytes());
    b
}

//! Synthetic Ethernet frames: what `steer explain` feeds the real classifier, and what the tests
//! and benchmarks run through it.

use std::net::IpAddr;

/// VLAN tag protocol ids: 802.1Q (customer) and 802.1ad (service, QinQ outer).
pub use steer_common::ethertype::{ETH_P_8021AD as TPID_8021AD, ETH_P_8021Q as TPID_8021Q};
use steer_common::ethertype::{ETH_P_IP, ETH_P_IPV6};

/// Transport header of a synthetic packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp {
        sport: u16,
        dport: u16,
    },
    Tcp {
        sport: u16,
        dport: u16,
    },
    /// SCTP (132), UDP-Lite (136) or another protocol whose header starts with the two
    /// ports: a 12-byte header, the ports then zeros.
    Ports {
        proto: u8,
        sport: u16,
        dport: u16,
    },
    /// No transport header: the IP payload is zeros with this protocol number.
    Other(u8),
}

impl Transport {
    /// The IP protocol number.
    pub fn proto(self) -> u8 {
        match self {
            Transport::Udp { .. } => 17,
            Transport::Tcp { .. } => 6,
            Transport::Ports { proto, .. } | Transport::Other(proto) => proto,
        }
    }

    /// The source and destination ports, for a protocol that has them.
    pub fn ports(self) -> Option<(u16, u16)> {
        match self {
            Transport::Udp { sport, dport }
            | Transport::Tcp { sport, dport }
            | Transport::Ports { sport, dport, .. } => Some((sport, dport)),
            Transport::Other(_) => None,
        }
    }

    fn header(self) -> Vec<u8> {
        match self {
            Transport::Udp { sport, dport } => {
                let mut h = Vec::with_capacity(8);
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&8u16.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h
            }
            Transport::Tcp { sport, dport } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[12] = 5 << 4; // data offset
                h[13] = 0x02; // SYN
                h
            }
            Transport::Ports { sport, dport, .. } => {
                let mut h = vec![0u8; 12];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h
            }
            Transport::Other(_) => Vec::new(),
        }
    }
}

/// A frame to build: addresses, VLAN tags (outermost first), transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// `(tpid, vlan id)`, outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub transport: Transport,
    /// The IPv6 flow label (20 bits).
    pub flow_label: u32,
    /// The frame is a fragment of a datagram.
    pub fragment: Option<Fragment>,
    pub src_mac: [u8; 6],
}

/// A fragment: the datagram's identification, where the fragment starts (in 8-byte units) and
/// whether more follow. A fragment that does not start at 0 carries no transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    pub offset: u16,
    pub more: bool,
}

impl Frame {
    /// A UDP packet from `src` to `dst`, untagged.
    pub fn udp(src: IpAddr, dst: IpAddr) -> Self {
        Frame {
            src,
            dst,
            vlans: Vec::new(),
            transport: Transport::Udp {
                sport: 40000,
                dport: 53,
            },
            flow_label: 0,
            fragment: None,
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
        }
    }

    pub fn with_src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    pub fn with_flow_label(mut self, label: u32) -> Self {
        self.flow_label = label & 0xf_ffff;
        self
    }

    pub fn fragment(mut self, fragment: Fragment) -> Self {
        self.fragment = Some(fragment);
        self
    }

    pub fn tagged(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid));
        self
    }

    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// The frame's bytes. Panics if the two addresses are not of the same family.
    pub fn build(&self) -> Vec<u8> {
        let later = self.fragment.is_some_and(|f| f.offset != 0);
        // A later fragment carries part of the payload, not the transport header.
        let l4 = if later {
            vec![0u8; 8]
        } else {
            self.transport.header()
        };
        let proto = self.transport.proto();
        let (ethertype, l3) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = ipv4_header(s.octets(), d.octets(), proto, l4.len());
                if let Some(f) = self.fragment {
                    h[4..6].copy_from_slice(&(f.id as u16).to_be_bytes());
                    let flags = (f.offset & 0x1fff) | if f.more { 0x2000 } else { 0 };
                    h[6..8].copy_from_slice(&flags.to_be_bytes());
                    h[10..12].copy_from_slice(&[0, 0]);
                    let csum = checksum(&h);
                    h[10..12].copy_from_slice(&csum.to_be_bytes());
                }
                (ETH_P_IP, h)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ext = self.fragment.map(|f| fragment_header(proto, f));
                let next = if ext.is_some() {
                    NEXTHDR_FRAGMENT
                } else {
                    proto
                };
                let payload = l4.len() + ext.as_ref().map_or(0, Vec::len);
                let mut h = ipv6_header(s.octets(), d.octets(), next, payload);
                h[1] |= (self.flow_label >> 16) as u8;
                h[2..4].copy_from_slice(&(self.flow_label as u16).to_be_bytes());
                h.extend(ext.unwrap_or_default());
                (ETH_P_IPV6, h)
            }
            _ => panic!("source and destination must be the same address family"),
        };
        let mut f = Vec::with_capacity(14 + 8 + l3.len() + l4.len());
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC (locally administered)
        f.extend_from_slice(&self.src_mac);
        for (tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&u16::to_be_bytes(ethertype));
        f.extend_from_slice(&l3);
        f.extend_from_slice(&l4);
        f
    }
}

/// Any Ethernet frame with the given ethertype and zero payload (ARP, LLDP, ...).
pub fn non_ip_frame(ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(14 + payload_len, 0);
    f
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, payload: usize) -> Vec<u8> {
    let total = u16::try_from(20 + payload).expect("small packet");
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64; // TTL
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let csum = checksum(&h);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h
}

const NEXTHDR_FRAGMENT: u8 = 44;

/// The IPv6 fragment header, its next header being `proto`.
fn fragment_header(proto: u8, f: Fragment) -> Vec<u8> {
    let mut h = vec![proto, 0];
    let off = (f.offset << 3) | u16::from(f.more);
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&f.id.to_be_bytes());
    h
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16], proto: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&u16::try_from(payload).expect("small packet").to_be_bytes());
    h[6] = proto;
    h[7] = 64; // hop limit
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h
}

/// The Internet checksum (RFC 1071) of `bytes`: an odd last byte is padded with zero. Over data
/// that already carries its checksum it is 0.
pub(crate) fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_frame_has_valid_header_checksum() {
        let f = Frame::udp(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        )
        .build();
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(checksum(&f[14..34]), 0, "a correct header sums to zero");
        assert_eq!(&f[26..30], &[192, 0, 2, 1]);
        assert_eq!(&f[30..34], &[198, 51, 100, 7]);
        assert_eq!(f.len(), 14 + 20 + 8);
    }

    #[test]
    fn double_tagged_frame_layout() {
        let f = Frame::udp(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
        .tagged(TPID_8021AD, 100)
        .tagged(TPID_8021Q, 200)
        .build();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[14..16], &100u16.to_be_bytes());
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &200u16.to_be_bytes());
        assert_eq!(&f[20..22], &[0x86, 0xdd]);
        assert_eq!(f.len(), 22 + 40 + 8);
    }
}

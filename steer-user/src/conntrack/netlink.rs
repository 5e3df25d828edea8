//! ctnetlink: deleting conntrack entries by connection mark (a failover), and listing the
//! entries of one mark to delete some of them (flows a policy moves back on recovery).
//!
//! Requests are built by hand (nlmsghdr, nfgenmsg, attributes): the few message kinds steer
//! needs do not justify a netfilter netlink dependency.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::ConntrackError;
use crate::model::Family;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_ZONE: u16 = 18;
const CTA_MARK_MASK: u16 = 21;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// `IPS_DST_NAT` of `CTA_STATUS`: the connection's destination was translated (a port
/// forward, npt's inbound translation).
const IPS_DST_NAT: u32 = 1 << 5;

/// How long the kernel may take to answer one request; it deletes synchronously, so only a
/// huge table comes near this, and the caller (the failover) must not hang on a lost answer.
const ACK_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 2,
    tv_usec: 0,
};

/// Deletes every conntrack entry of `families` whose connection mark matches `mark` under
/// `mask`.
///
/// The kernel's delete by mark takes every family whatever the request's family says (6.18
/// does): a request for one family would cut the other family's connections on the same WAN
/// too, though that family is up. So both families are one delete by mark, and one family is a
/// dump of its marked entries, deleted in batches. Returns how many went when it is known (one
/// family), `None` for the one delete by mark.
pub fn flush_mark(
    mark: u32,
    mask: u32,
    families: &[Family],
) -> Result<Option<usize>, ConntrackError> {
    let err = |source| ConntrackError::Flush { mark, mask, source };
    let both = families.contains(&Family::V4) && families.contains(&Family::V6);
    if both {
        let sock = NetlinkSocket::open().map_err(err)?;
        return sock
            .request(&mark_message(
                IPCTNL_MSG_CT_DELETE,
                libc::AF_UNSPEC as u8,
                mark,
                mask,
            ))
            .map(|()| None)
            .map_err(err);
    }
    let mut deleted = 0;
    for family in families {
        let conns = connections_of(mark, mask, &[address_family(*family)])?;
        let (done, failed) = delete_many(&conns);
        if let Some(e) = failed {
            return Err(e);
        }
        deleted += done;
    }
    Ok(Some(deleted))
}

fn address_family(family: Family) -> u8 {
    match family {
        Family::V4 => libc::AF_INET as u8,
        Family::V6 => libc::AF_INET6 as u8,
    }
}

/// One connection as its original direction describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// 0 for protocols without ports.
    pub sport: u16,
    pub dport: u16,
    pub mark: u32,
    /// It came in to a translated destination: a port forward, or npt's way in from the
    /// internet. Such a connection belongs to the WAN it came in on.
    pub inbound: bool,
    /// The reply direction as the kernel expects it (after NAT): what a packet answering the
    /// connection looks like when it comes in.
    pub reply: Option<Tuple>,
    /// The `CTA_TUPLE_ORIG` (and zone) attributes as the kernel sent them, to delete exactly
    /// this entry.
    key: Vec<u8>,
    family: u8,
}

/// One direction of a connection: addresses, and ports (0 for protocols without them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// The conntrack entries of `families` whose connection mark matches `mark` under `mask`.
pub fn connections(
    mark: u32,
    mask: u32,
    families: &[Family],
) -> Result<Vec<Connection>, ConntrackError> {
    let families: Vec<u8> = families.iter().map(|f| address_family(*f)).collect();
    connections_of(mark, mask, &families)
}

/// The conntrack entries of the address `families` whose connection mark matches `mark` under
/// `mask`.
fn connections_of(
    mark: u32,
    mask: u32,
    families: &[u8],
) -> Result<Vec<Connection>, ConntrackError> {
    let err = |source| ConntrackError::Flush { mark, mask, source };
    let sock = NetlinkSocket::open().map_err(err)?;
    let mut out = Vec::new();
    for family in families {
        let msg = mark_message(IPCTNL_MSG_CT_GET, *family, mark, mask);
        sock.dump(&msg, |payload| out.extend(parse_connection(payload)))
            .map_err(err)?;
    }
    // The kernel filters by mark and family; older ones ignore the filters, so check again.
    out.retain(|c| c.mark & mask == mark & mask && families.contains(&c.family));
    Ok(out)
}

/// Delete requests sent in one datagram, their acknowledgements read before the next. The
/// kernel answers a whole datagram before the first read, and an acknowledgement takes close
/// to 900 bytes of the socket's receive buffer (212,992 bytes by default): 64 of them fit.
const DELETE_BATCH: usize = 64;

/// Deletes `conns` over one socket, a batch of requests at a time: a flush of tens of
/// thousands of entries costs a syscall or two per batch, not a socket and a round trip per
/// entry. Returns how many went (an entry already gone counts), and the first error.
pub fn delete_many(conns: &[Connection]) -> (usize, Option<ConntrackError>) {
    let err = |source| ConntrackError::Delete {
        what: format!("{} connections", conns.len()),
        source,
    };
    let sock = match NetlinkSocket::open() {
        Ok(sock) => sock,
        Err(e) => return (0, Some(err(e))),
    };
    let mut deleted = 0;
    let mut first_error = None;
    let mut buf = vec![0u8; 64 * 1024];
    for batch in conns.chunks(DELETE_BATCH) {
        let mut msgs = Vec::with_capacity(batch.len() * 128);
        for conn in batch {
            let mut msg = header(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, conn.family);
            msg.extend_from_slice(&conn.key);
            finish(&mut msg);
            msgs.extend_from_slice(&msg);
            // Each message of a datagram starts 4-byte aligned (NLMSG_ALIGN).
            msgs.resize(msgs.len().next_multiple_of(4), 0);
        }
        if let Err(e) = sock.send(&msgs) {
            return (deleted, Some(err(e)));
        }
        let mut acked = 0;
        while acked < batch.len() {
            let answer = match sock.recv(&mut buf) {
                Ok(answer) => answer,
                // The buffer overflowed and the rest of the batch's acknowledgements were
                // dropped: the kernel did the deletes (a failed one would have said so first).
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    deleted += batch.len() - acked;
                    break;
                }
                Err(e) => return (deleted, Some(err(e))),
            };
            for (kind, payload) in messages(answer) {
                if kind != NLMSG_ERROR {
                    continue;
                }
                acked += 1;
                match error_code(payload) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        first_error.get_or_insert(err(e));
                    }
                }
            }
        }
    }
    (deleted, first_error)
}

/// nlmsghdr + nfgenmsg, with the length left for [`finish`].
fn header(kind: u16, flags: u16, family: u8) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(&[family, 0 /* NFNETLINK_V0 */, 0, 0]); // nfgenmsg, res_id 0
    msg
}

fn finish(msg: &mut [u8]) {
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

/// A delete (with ack) or a dump of the entries matching `mark` under `mask`:
/// nlmsghdr + nfgenmsg + CTA_MARK + CTA_MARK_MASK (both big-endian u32).
fn mark_message(kind: u16, family: u8, mark: u32, mask: u32) -> Vec<u8> {
    let flags = match kind {
        IPCTNL_MSG_CT_GET => NLM_F_REQUEST | NLM_F_DUMP,
        _ => NLM_F_REQUEST | NLM_F_ACK,
    };
    let mut msg = header(kind, flags, family);
    for (attr, value) in [(CTA_MARK, mark), (CTA_MARK_MASK, mask)] {
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&attr.to_ne_bytes());
        msg.extend_from_slice(&value.to_be_bytes());
    }
    finish(&mut msg);
    msg
}

/// The attributes of a netlink payload: (type without flags, value, the whole attribute).
pub(crate) fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let (whole, value) = (&buf[..len], &buf[4..len]);
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, value, whole))
    })
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf)
        .find(|(k, ..)| *k == kind)
        .map(|(_, v, _)| v)
}

fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

/// One entry of a dump: the nfgenmsg and attributes after the nlmsghdr.
fn parse_connection(payload: &[u8]) -> Option<Connection> {
    let family = *payload.first()?;
    let attrs = payload.get(NFGENMSG_LEN..)?;
    let mut key = Vec::new();
    for (kind, _, whole) in attributes(attrs) {
        if kind == CTA_TUPLE_ORIG || kind == CTA_ZONE {
            key.extend_from_slice(whole);
            key.resize(key.len().next_multiple_of(4), 0);
        }
    }
    let (original, proto) = parse_tuple(find(attrs, CTA_TUPLE_ORIG)?)?;
    let reply = find(attrs, CTA_TUPLE_REPLY)
        .and_then(parse_tuple)
        .map(|(t, _)| t);
    Some(Connection {
        src: original.src,
        dst: original.dst,
        proto,
        sport: original.sport,
        dport: original.dport,
        mark: find(attrs, CTA_MARK)
            .and_then(|v| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
            .unwrap_or(0),
        inbound: find(attrs, CTA_STATUS)
            .and_then(|v| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
            .is_some_and(|status| status & IPS_DST_NAT != 0),
        reply,
        key,
        family,
    })
}

/// A `CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY` attribute's addresses and ports, and protocol.
fn parse_tuple(tuple: &[u8]) -> Option<(Tuple, u8)> {
    let ip = find(tuple, CTA_TUPLE_IP)?;
    let proto = find(tuple, CTA_TUPLE_PROTO)?;
    let addr = |v4: u16, v6: u16| -> Option<IpAddr> {
        if let Some(v) = find(ip, v4) {
            let octets: [u8; 4] = v.get(..4)?.try_into().ok()?;
            return Some(IpAddr::V4(Ipv4Addr::from(octets)));
        }
        let octets: [u8; 16] = find(ip, v6)?.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(octets)))
    };
    let t = Tuple {
        src: addr(CTA_IP_V4_SRC, CTA_IP_V6_SRC)?,
        dst: addr(CTA_IP_V4_DST, CTA_IP_V6_DST)?,
        sport: find(proto, CTA_PROTO_SRC_PORT).and_then(be16).unwrap_or(0),
        dport: find(proto, CTA_PROTO_DST_PORT).and_then(be16).unwrap_or(0),
    };
    Some((t, *find(proto, CTA_PROTO_NUM)?.first()?))
}

/// A raw `NETLINK_NETFILTER` socket (ctnetlink here, nfnetlink_queue for snoop mode).
pub(crate) fn netfilter_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct NetlinkSocket(OwnedFd);

impl NetlinkSocket {
    fn open() -> io::Result<NetlinkSocket> {
        let sock = NetlinkSocket(netfilter_socket()?);
        let timeout = ACK_TIMEOUT;
        // SAFETY: `timeout` is a valid timeval, passed with its size.
        let set = unsafe {
            libc::setsockopt(
                sock.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is a valid buffer of the given length; the kernel address is zeroed
        // (port 0 = the kernel).
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram of answers.
    fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(&buf[..n as usize])
    }

    /// Sends one request and waits for its acknowledgement (an error message with code 0).
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        self.send(msg)?;
        let mut buf = [0u8; 4096];
        let answer = self.recv(&mut buf)?;
        match messages(answer).next() {
            Some((NLMSG_ERROR, payload)) => error_code(payload),
            _ => Ok(()),
        }
    }

    /// Sends a dump request and hands every answer's payload to `each` until the dump ends.
    fn dump(&self, msg: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
        self.send(msg)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let answer = self.recv(&mut buf)?;
            for (kind, payload) in messages(answer) {
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => return error_code(payload),
                    _ => each(payload),
                }
            }
        }
    }
}

/// The messages of one datagram: (type, payload after the nlmsghdr).
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

/// An NLMSG_ERROR's code: 0 is an acknowledgement, ENOENT (nothing matched) is fine too.
fn error_code(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")));
    if code == 0 || code == -libc::ENOENT {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_message_layout() {
        let m = mark_message(IPCTNL_MSG_CT_DELETE, 2, 0x100, 0xff00);
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0102);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x5);
        assert_eq!(m[16], 2);
        assert_eq!(&m[24..28], &0x100u32.to_be_bytes());
        assert_eq!(&m[32..36], &0xff00u32.to_be_bytes());
        let dump = mark_message(IPCTNL_MSG_CT_GET, 10, 0x100, 0xff00);
        assert_eq!(u16::from_ne_bytes(dump[4..6].try_into().unwrap()), 0x0101);
        assert_eq!(u16::from_ne_bytes(dump[6..8].try_into().unwrap()), 0x301);
    }

    /// An attribute as the kernel lays it out.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn a_dumped_entry_gives_its_original_tuple_and_mark() {
        let nested = 0x8000;
        let ip = [
            attr(CTA_IP_V4_SRC, &[192, 168, 1, 10]),
            attr(CTA_IP_V4_DST, &[203, 0, 113, 7]),
        ]
        .concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[6]),
            attr(CTA_PROTO_SRC_PORT, &40000u16.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &443u16.to_be_bytes()),
        ]
        .concat();
        let tuple = [
            attr(CTA_TUPLE_IP | nested, &ip),
            attr(CTA_TUPLE_PROTO | nested, &proto),
        ]
        .concat();
        let orig = attr(CTA_TUPLE_ORIG | nested, &tuple);
        let payload = [
            vec![2, 0, 0, 0],
            orig.clone(),
            attr(CTA_MARK, &0x200u32.to_be_bytes()),
        ]
        .concat();
        let c = parse_connection(&payload).expect("an entry");
        assert_eq!(c.src, "192.168.1.10".parse::<IpAddr>().unwrap());
        assert_eq!(c.dst, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!((c.proto, c.sport, c.dport, c.mark), (6, 40000, 443, 0x200));
        assert_eq!(c.key, orig, "deleting names exactly the original tuple");
        assert!(parse_connection(&[2, 0, 0, 0]).is_none());
    }

    /// A port forward: the reply direction is what the LAN server's answers look like, which
    /// `steer explain` looks a packet up by.
    #[test]
    fn a_dumped_entry_gives_its_reply_tuple() {
        let nested = 0x8000;
        let tuple = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
            let ip = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
            let proto = [
                attr(CTA_PROTO_NUM, &[6]),
                attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
            ]
            .concat();
            [
                attr(CTA_TUPLE_IP | nested, &ip),
                attr(CTA_TUPLE_PROTO | nested, &proto),
            ]
            .concat()
        };
        let payload = [
            vec![2, 0, 0, 0],
            attr(
                CTA_TUPLE_ORIG | nested,
                &tuple([9, 9, 9, 9], [10, 0, 2, 2], 50061, 80),
            ),
            attr(
                CTA_TUPLE_REPLY | nested,
                &tuple([192, 168, 1, 10], [9, 9, 9, 9], 8080, 50061),
            ),
            attr(CTA_MARK, &0x300u32.to_be_bytes()),
        ]
        .concat();
        let c = parse_connection(&payload).expect("an entry");
        assert_eq!((c.src, c.sport), ("9.9.9.9".parse().unwrap(), 50061));
        assert_eq!(
            c.reply,
            Some(Tuple {
                src: "192.168.1.10".parse().unwrap(),
                dst: "9.9.9.9".parse().unwrap(),
                sport: 8080,
                dport: 50061,
            })
        );
    }
}

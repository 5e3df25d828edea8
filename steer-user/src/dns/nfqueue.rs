//! nfnetlink_queue, the few messages steer needs, built by hand over a raw netlink socket (as
//! `conntrack::netlink` does for ctnetlink): bind a queue, ask for whole packets with
//! fail-open, receive queued packets, and give each its verdict.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use crate::conntrack::netlink::{attributes, messages, netfilter_socket};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const NFGENMSG_LEN: usize = 4;

const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_PACKET: u8 = 2;
/// Accept packets instead of dropping them when the queue is full.
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;

/// `NF_ACCEPT`.
pub const ACCEPT: u32 = 1;

/// Packets the kernel holds for this queue at most (beyond: accepted unseen, fail-open).
const QUEUE_MAXLEN: u32 = 4096;

/// One queued packet.
#[derive(Debug)]
pub struct Packet<'b> {
    pub id: u32,
    /// The IP packet (IPv4 or IPv6 header first).
    pub payload: &'b [u8],
}

/// A socket bound to one queue.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    num: u16,
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// nlmsghdr + nfgenmsg for queue `num`, with the length left for `finish`.
fn header(kind: u16, flags: u16, num: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family AF_UNSPEC, version 0, res_id = the queue number, big-endian.
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&num.to_be_bytes());
    msg
}

fn finish(msg: &mut [u8]) {
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

/// The config message binding (or unbinding) queue `num`.
fn bind_message(num: u16, command: u8) -> Vec<u8> {
    let mut msg = header(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, num);
    attr(&mut msg, NFQA_CFG_CMD, &[command, 0, 0, 0]);
    finish(&mut msg);
    msg
}

/// Whole packets, a bounded queue, fail-open when it is full.
fn params_message(num: u16) -> Vec<u8> {
    let mut msg = header(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, num);
    let mut params = 0xffffu32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_PACKET);
    attr(&mut msg, NFQA_CFG_PARAMS, &params);
    attr(&mut msg, NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes());
    attr(&mut msg, NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
    attr(
        &mut msg,
        NFQA_CFG_FLAGS,
        &NFQA_CFG_F_FAIL_OPEN.to_be_bytes(),
    );
    finish(&mut msg);
    msg
}

/// The verdict for packet `id` of queue `num`.
pub fn verdict_message(num: u16, id: u32, verdict: u32) -> Vec<u8> {
    let mut msg = header(NFQNL_MSG_VERDICT, NLM_F_REQUEST, num);
    let mut v = verdict.to_be_bytes().to_vec();
    v.extend_from_slice(&id.to_be_bytes());
    attr(&mut msg, NFQA_VERDICT_HDR, &v);
    finish(&mut msg);
    msg
}

/// The queued packets in one datagram from the kernel.
pub fn packets(buf: &[u8]) -> Vec<Packet<'_>> {
    messages(buf)
        .filter(|(kind, _)| *kind == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
        .filter_map(|(_, payload)| {
            let attrs = payload.get(NFGENMSG_LEN..)?;
            let mut id = None;
            let mut data: &[u8] = &[];
            for (kind, value, _) in attributes(attrs) {
                match kind {
                    NFQA_PACKET_HDR => {
                        id = Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?));
                    }
                    NFQA_PAYLOAD => data = value,
                    _ => {}
                }
            }
            Some(Packet {
                id: id?,
                payload: data,
            })
        })
        .collect()
}

impl Queue {
    /// Binds queue `num`; `poll` bounds every receive, so the caller can check for a stop.
    pub fn bind(num: u16, poll: Duration) -> io::Result<Queue> {
        let q = Queue {
            fd: netfilter_socket()?,
            num,
        };
        let timeout = libc::timeval {
            // Not `libc::time_t`: the libc crate deprecates it on musl (its width changes).
            tv_sec: poll.as_secs() as _,
            tv_usec: poll.subsec_micros() as _,
        };
        q.setsockopt(libc::SO_RCVTIMEO, &timeout)?;
        // Room for bursts of answers; best effort.
        let _ = q.setsockopt(libc::SO_RCVBUFFORCE, &(8i32 << 20));
        q.request(&bind_message(num, NFQNL_CFG_CMD_BIND))?;
        q.request(&params_message(num))?;
        Ok(q)
    }

    fn setsockopt<T>(&self, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` is a live value of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (value as *const T).cast(),
                size_of::<T>() as u32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is a valid buffer; the kernel address is zeroed (port 0).
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// One datagram from the kernel; `Ok(0)` when the poll period passed without one.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Sends a config request and waits for its acknowledgement.
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        self.send(msg)?;
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            let n = self.recv(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from nfnetlink_queue",
                ));
            }
            for (kind, payload) in messages(&buf[..n]) {
                if kind == NLMSG_ERROR {
                    let code = payload
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")));
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
            }
        }
        Ok(())
    }

    /// Accepts packet `id`.
    pub fn accept(&self, id: u32) -> io::Result<()> {
        self.send(&verdict_message(self.num, id, ACCEPT))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Closing the socket unbinds too; saying so lets the kernel forget at once.
        let _ = self.send(&bind_message(self.num, NFQNL_CFG_CMD_UNBIND));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_the_kernel_reads_them() {
        let bind = bind_message(5353, NFQNL_CFG_CMD_BIND);
        assert_eq!(bind.len(), 28);
        assert_eq!(u16::from_ne_bytes([bind[4], bind[5]]), 0x0302);
        assert_eq!(&bind[18..20], &5353u16.to_be_bytes(), "res_id is the queue");
        assert_eq!(&bind[20..28], &[8, 0, 1, 0, 1, 0, 0, 0]);
        let v = verdict_message(7, 0x01020304, ACCEPT);
        assert_eq!(v.len(), 32);
        assert_eq!(&v[24..28], &ACCEPT.to_be_bytes());
        assert_eq!(&v[28..32], &[1, 2, 3, 4]);
    }

    #[test]
    fn a_queued_packet_is_read_back() {
        let mut msg = Vec::new();
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET).to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&[2, 0, 0, 1]);
        let mut hdr = 42u32.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 1]);
        attr(&mut msg, NFQA_PACKET_HDR, &hdr);
        attr(&mut msg, NFQA_PAYLOAD, &[0x45, 0, 0, 20, 9]);
        finish(&mut msg);
        let p = packets(&msg);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].id, p[0].payload), (42, &[0x45, 0, 0, 20, 9][..]));
        assert!(packets(&msg[..20]).is_empty());
    }
}

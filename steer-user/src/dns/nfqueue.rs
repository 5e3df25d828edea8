//! nfnetlink_queue, the few messages steer needs, built by hand over a raw netlink socket (as
//! `conntrack::netlink` does for ctnetlink): bind a queue, ask for whole packets with
//! fail-open, receive queued packets, and give each its verdict. The same socket binds an
//! nfnetlink_log group too: logged packets are copies, on their way already (no verdict), and
//! arrive on the one socket in the order the kernel saw them among the queued ones.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use crate::conntrack::netlink::{attributes, messages, netfilter_socket};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_CFG_CMD_UNBIND: u8 = 2;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
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

/// One queued (or logged) packet.
#[derive(Debug)]
pub struct Packet<'b> {
    /// The id its verdict names; `None` for a logged packet (a copy: it needs none).
    pub id: Option<u32>,
    /// The IP packet (IPv4 or IPv6 header first).
    pub payload: &'b [u8],
}

/// A socket bound to one queue (and the log group of the same number, once asked).
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    logging: bool,
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// nlmsghdr + nfgenmsg for queue `num`, with the length left for `finish`.
fn header(kind: u16, flags: u16, num: u16) -> Vec<u8> {
    subsys_header(NFNL_SUBSYS_QUEUE, kind, flags, num)
}

/// nlmsghdr + nfgenmsg for queue or log group `num` of `subsys`.
fn subsys_header(subsys: u16, kind: u16, flags: u16, num: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&((subsys << 8) | kind).to_ne_bytes());
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

/// The config message binding (or unbinding) log group `group`.
fn log_bind_message(group: u16, command: u8) -> Vec<u8> {
    let mut msg = subsys_header(
        NFNL_SUBSYS_ULOG,
        NFULNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        group,
    );
    attr(&mut msg, NFULA_CFG_CMD, &[command, 0, 0, 0]);
    finish(&mut msg);
    msg
}

/// Whole packets, each sent at once: the default gathers up to 100 packets or a second, and a
/// query's copy must be read before its answer is.
fn log_params_message(group: u16) -> Vec<u8> {
    let mut msg = subsys_header(
        NFNL_SUBSYS_ULOG,
        NFULNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        group,
    );
    let mut mode = 0xffffu32.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attr(&mut msg, NFULA_CFG_MODE, &mode);
    attr(&mut msg, NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
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

/// The queued and logged packets in one datagram from the kernel, in its order.
pub fn packets(buf: &[u8]) -> Vec<Packet<'_>> {
    messages(buf)
        .filter_map(|(kind, payload)| {
            let queued = kind == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET);
            let logged = kind == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET);
            if !queued && !logged {
                return None;
            }
            let attrs = payload.get(NFGENMSG_LEN..)?;
            let mut id = None;
            let mut data: &[u8] = &[];
            for (kind, value, _) in attributes(attrs) {
                match kind {
                    NFQA_PACKET_HDR if queued => {
                        id = Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?));
                    }
                    NFQA_PAYLOAD if queued => data = value,
                    NFULA_PAYLOAD if logged => data = value,
                    _ => {}
                }
            }
            if queued && id.is_none() {
                return None;
            }
            Some(Packet { id, payload: data })
        })
        .collect()
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Queue {
    /// Binds queue `num` and log group `num`; `poll` bounds every receive, so the caller can
    /// check for a stop.
    pub fn bind(num: u16, poll: Duration) -> io::Result<Queue> {
        let mut q = Queue {
            fd: netfilter_socket()?,
            num,
            logging: false,
        };
        let timeout = libc::timeval {
            // Not `libc::time_t`: the libc crate deprecates it on musl (its width changes).
            tv_sec: poll.as_secs() as _,
            tv_usec: poll.subsec_micros() as _,
        };
        q.setsockopt(libc::SO_RCVTIMEO, &timeout)?;
        // Room for bursts of answers; best effort.
        let _ = q.setsockopt(libc::SO_RCVBUFFORCE, &(8i32 << 20));
        // The log group first: a logged packet arriving while the queue is set up is only
        // skipped, a queued one would wait for a verdict that never comes.
        q.request(&log_bind_message(num, NFULNL_CFG_CMD_BIND))
            .map_err(|e| with_context(e, &format!("binding NFLOG group {num}")))?;
        q.logging = true;
        q.request(&log_params_message(num))?;
        q.request(&bind_message(num, NFQNL_CFG_CMD_BIND))
            .map_err(|e| with_context(e, &format!("binding NFQUEUE {num}")))?;
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
        if self.logging {
            let _ = self.send(&log_bind_message(self.num, NFULNL_CFG_CMD_UNBIND));
        }
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
        let log = log_bind_message(5353, NFULNL_CFG_CMD_BIND);
        assert_eq!(u16::from_ne_bytes([log[4], log[5]]), 0x0401);
        assert_eq!(&log[18..20], &5353u16.to_be_bytes(), "res_id is the group");
        let params = log_params_message(1);
        assert_eq!(&params[20..24], &[10, 0, 2, 0], "NFULA_CFG_MODE, 6 bytes");
        assert_eq!(&params[24..30], &[0, 0, 0xff, 0xff, 2, 0]);
        assert_eq!(
            &params[32..40],
            &[8, 0, 5, 0, 0, 0, 0, 1],
            "a threshold of 1"
        );
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
        assert_eq!(
            (p[0].id, p[0].payload),
            (Some(42), &[0x45, 0, 0, 20, 9][..])
        );
        assert!(packets(&msg[..20]).is_empty());
        // A logged packet: no id, its payload.
        let mut log = Vec::new();
        log.extend_from_slice(&0u32.to_ne_bytes());
        log.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET).to_ne_bytes());
        log.extend_from_slice(&[0; 10]);
        log.extend_from_slice(&[2, 0, 0x14, 0xe9]);
        attr(&mut log, NFULA_PAYLOAD, &[0x45, 1]);
        finish(&mut log);
        let both = [log.clone(), msg.clone()].concat();
        let p = packets(&both);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].id, p[0].payload), (None, &[0x45, 1][..]));
        assert_eq!(p[1].id, Some(42));
    }
}

//! Connections of flows that moved off a dead WAN: marking them, and flushing them by mark.
//!
//! The classifier stamps the packet mark; conntrack entries do not see it unless something
//! copies it. steer owns one nftables table, `inet steer`, whose rules copy the WAN mark into
//! the connection mark when a connection starts, one rule per WAN (nftables can only combine a
//! register with constants, so keeping the connection mark's foreign bits needs the mark as a
//! constant). When a WAN goes down, the entries
//! whose connection mark is that WAN's mark (under the mask) are deleted through ctnetlink, so
//! the next packet of each such flow starts a new connection (new NAT binding) on the WAN that
//! carries it now, instead of sticking to the dead one. Entries of other WANs are untouched.

use std::{
    io::{self, Write},
    process::{Command, Stdio},
};

/// The nftables table steer owns (family inet).
pub const NFT_TABLE: &str = "steer";

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error(
        "cannot run `nft` to set up connection marking ({0}); install nftables, or flows that \
         moved off a dead WAN keep their old conntrack entries until they time out"
    )]
    NoNft(io::Error),
    #[error("nft refused steer's table: {0}")]
    Nft(String),
    #[error("ctnetlink flush of mark {mark:#x}/{mask:#x}: {source}")]
    Flush {
        mark: u32,
        mask: u32,
        #[source]
        source: io::Error,
    },
}

/// The ruleset of `inet steer`: for every WAN mark, a new connection whose packet carries it
/// gets it in its connection mark; bits outside `mask` keep their value.
pub fn ruleset(mask: u32, marks: &[u32]) -> String {
    let mut rules = String::new();
    for mark in marks {
        rules.push_str(&format!(
            "\t\tct state new meta mark and {mask:#x} == {mark:#x} ct mark set ct mark and {keep:#x} or {mark:#x}\n",
            keep = !mask
        ));
    }
    format!(
        "table inet {NFT_TABLE} {{\n\tchain mark_connections {{\n\
         \t\ttype filter hook prerouting priority mangle + 10; policy accept;\n{rules}\t}}\n}}\n"
    )
}

/// Installs (or replaces, in one transaction) steer's nftables table.
pub fn install(mask: u32, marks: &[u32]) -> Result<(), ConntrackError> {
    // Declaring the table first makes the delete succeed when it does not exist yet.
    let script = format!(
        "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}",
        ruleset(mask, marks)
    );
    nft(&["-f", "-"], Some(&script))
}

/// Whether steer's table is there.
pub fn installed() -> bool {
    matches!(table_present(), Ok(true))
}

/// Whether steer's table is there (drift check); an error when `nft` cannot be run at all,
/// which installing again would not mend.
pub fn table_present() -> Result<bool, ConntrackError> {
    match nft(&["list", "table", "inet", NFT_TABLE], None) {
        Ok(()) => Ok(true),
        Err(ConntrackError::Nft(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes steer's table (`steer stop`); fine when it is not there.
pub fn uninstall() -> Result<(), ConntrackError> {
    let script = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    nft(&["-f", "-"], Some(&script))
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), ConntrackError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ConntrackError::NoNft)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(ConntrackError::NoNft)?;
    }
    let out = child.wait_with_output().map_err(ConntrackError::NoNft)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ConntrackError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

// ---- ctnetlink ------------------------------------------------------------------------------

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const CTA_MARK: u16 = 8;
const CTA_MARK_MASK: u16 = 21;

/// How long the kernel may take to acknowledge one flush; it deletes synchronously, so only a
/// huge table comes near this, and the caller (the failover) must not hang on a lost ack.
const FLUSH_ACK_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 2,
    tv_usec: 0,
};

/// Deletes every conntrack entry (IPv4 and IPv6) whose connection mark matches `mark` under
/// `mask`.
pub fn flush_mark(mark: u32, mask: u32) -> Result<(), ConntrackError> {
    let err = |source| ConntrackError::Flush { mark, mask, source };
    let sock = NetlinkSocket::open().map_err(err)?;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        sock.request(&flush_message(family, mark, mask))
            .map_err(err)?;
    }
    Ok(())
}

/// nlmsghdr + nfgenmsg + CTA_MARK + CTA_MARK_MASK (both big-endian u32).
fn flush_message(family: u8, mark: u32, mask: u32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(36);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(&[family, 0 /* NFNETLINK_V0 */, 0, 0]); // nfgenmsg, res_id 0
    for (kind, value) in [(CTA_MARK, mark), (CTA_MARK_MASK, mask)] {
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&value.to_be_bytes());
    }
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    msg
}

struct NetlinkSocket(std::os::fd::OwnedFd);

impl NetlinkSocket {
    fn open() -> io::Result<NetlinkSocket> {
        use std::os::fd::FromRawFd;
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
        let sock = NetlinkSocket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let timeout = FLUSH_ACK_TIMEOUT;
        // SAFETY: `timeout` is a valid timeval, passed with its size.
        let set = unsafe {
            libc::setsockopt(
                fd,
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

    /// Sends one request and waits for its acknowledgement (an error message with code 0).
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        // SAFETY: `msg` is a valid buffer of the given length; the kernel address is zeroed
        // (port 0 = the kernel).
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                fd,
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
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            // ENOENT: nothing matched, which is fine.
            if code == 0 || code == -libc::ENOENT {
                return Ok(());
            }
            return Err(io::Error::from_raw_os_error(-code));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_message_layout() {
        let m = flush_message(2, 0x100, 0xff00);
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0102);
        assert_eq!(m[16], 2);
        assert_eq!(&m[24..28], &0x100u32.to_be_bytes());
        assert_eq!(&m[32..36], &0xff00u32.to_be_bytes());
    }

    #[test]
    fn ruleset_copies_each_wan_mark_and_keeps_foreign_bits() {
        let r = ruleset(0xff00, &[0x100, 0x200]);
        assert!(r.contains("ct state new meta mark and 0xff00 == 0x100 ct mark set ct mark and 0xffff00ff or 0x100"), "{r}");
        assert!(
            r.contains("== 0x200 ct mark set ct mark and 0xffff00ff or 0x200"),
            "{r}"
        );
        assert!(r.contains("hook prerouting"));
    }
}

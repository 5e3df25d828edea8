//! nftables events: a netlink socket subscribed to NFNLGRP_NFTABLES, where the kernel tells of
//! every committed change to any table. [`Watch::touched`] returns when one touched steer's
//! table, so a firewall restart that flushes the ruleset, or an `nft flush table inet steer`,
//! is repaired at once rather than at the next periodic check, while the replies of port
//! forwards leave by whichever WAN the main table says.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::unix::AsyncFd;

use super::NFT_TABLE;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNLGRP_NFTABLES: libc::c_int = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// A new generation (every transaction ends with one): says nothing of which table.
const NFT_MSG_NEWGEN: u16 = 15;
/// A trace event (`nft monitor trace`): not a change. They come on another group; skipped
/// should one come here.
const NFT_MSG_TRACE: u16 = 17;
const NFPROTO_INET: u8 = 1;
/// The first attribute of every nftables object message is its table's name
/// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
/// NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE).
const TABLE_ATTR: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// A flush of a large firewall's ruleset is thousands of messages at once; should they still
/// overflow it, the lost events count as a change of steer's table.
const RCVBUF: libc::c_int = 4 << 20;
/// The kernel batches notifications in skbs of at most a page or so.
const BUF: usize = 64 << 10;

/// The event socket ([`watch`]).
pub struct Watch {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    /// Messages from senders other than the kernel, ignored.
    forged: u64,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Subscribes to NFNLGRP_NFTABLES (needs CAP_NET_ADMIN). Must be called inside a tokio
/// runtime.
pub fn watch() -> io::Result<Watch> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: a zeroed sockaddr_nl is valid; the kernel picks the port.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `addr` is a sockaddr_nl of the size given.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    setsockopt(
        &fd,
        libc::SOL_NETLINK,
        libc::NETLINK_ADD_MEMBERSHIP,
        NFNLGRP_NFTABLES,
    )?;
    // FORCE passes net.core.rmem_max (CAP_NET_ADMIN, which subscribing needs anyway).
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
    }
    // SAFETY: the AsyncFd owns the descriptor and keeps it open, unchanged, as long as it
    // is registered.
    let fd = unsafe { AsyncFd::register(fd) }?;
    Ok(Watch {
        fd,
        buf: vec![0; BUF],
        forged: 0,
    })
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: an int option, passed by pointer with its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Watch {
    /// Waits until a change touched table `inet steer`, or events were lost (which may have
    /// held one). Whatever else is already queued is read too, so a burst (a flush is a
    /// message per rule) returns once. An error: the socket failed, and watching it further
    /// would spin.
    pub async fn touched(&mut self) -> io::Result<()> {
        let Watch { fd, buf, forged } = self;
        loop {
            let mut guard = fd.readable().await?;
            let mut hit = false;
            loop {
                match guard.try_io(|fd| recv(fd.get_ref(), buf)) {
                    Ok(Ok((_, port))) if port != 0 => {
                        // Any local process may send to the socket's port: it must not make
                        // the daemon run `nft` as often as it likes.
                        *forged += 1;
                        if forged.is_power_of_two() {
                            log::warn!(
                                "nftables events: ignored {forged} message(s) not sent by the \
                                 kernel (last from port {port})"
                            );
                        }
                    }
                    // Cut short by the buffer: what was cut may have named steer's table.
                    Ok(Ok((n, _))) if n > buf.len() => hit = true,
                    Ok(Ok((n, _))) => hit |= touches_steer(&buf[..n]),
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => hit = true,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            if hit {
                return Ok(());
            }
        }
    }
}

/// One datagram: its full length (MSG_TRUNC: more than `buf` when cut) and the sender's port
/// (0: the kernel).
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    // SAFETY: zeroed sockaddr_nl is valid; recvfrom writes at most its given size.
    let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` is writable for its length; `from` for `len`.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            (&raw mut from).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, from.nl_pid))
}

/// Whether a datagram of nftables notifications holds one about an object of table
/// `inet steer` (the table itself, a chain, a rule, a set, an element, a counter), created or
/// deleted.
fn touches_steer(mut buf: &[u8]) -> bool {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || len > buf.len() {
            return false;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        let (subsys, msg) = (kind >> 8, kind & 0xff);
        if subsys == NFNL_SUBSYS_NFTABLES
            && msg != NFT_MSG_NEWGEN
            && msg != NFT_MSG_TRACE
            && body.len() >= NFGENMSG_LEN
            && body[0] == NFPROTO_INET
            && table_name(&body[NFGENMSG_LEN..]) == Some(NFT_TABLE.as_bytes())
        {
            return true;
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    false
}

/// The table name attribute among `attrs`, without its NUL.
fn table_name(mut attrs: &[u8]) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == TABLE_ATTR {
            let value = &attrs[4..len];
            return Some(value.strip_suffix(&[0]).unwrap_or(value));
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An nftables notification: message `msg` of family `family` with a table name attribute
    /// `table` (after another attribute when `second`).
    fn message(msg: u16, family: u8, table: &str, second: bool) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut attr = |kind: u16, value: &[u8]| {
            let len = 4 + value.len();
            attrs.extend_from_slice(&(len as u16).to_ne_bytes());
            attrs.extend_from_slice(&kind.to_ne_bytes());
            attrs.extend_from_slice(value);
            attrs.resize(align4(attrs.len()), 0);
        };
        if second {
            // NFTA_RULE_HANDLE-like: not the table.
            attr(3, &7u64.to_be_bytes());
        }
        let mut name = table.as_bytes().to_vec();
        name.push(0);
        attr(TABLE_ATTR, &name);
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        // Flags, sequence, port.
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[family, 0, 0, 0]);
        m.extend_from_slice(&attrs);
        m
    }

    const DELRULE: u16 = 8;
    const DELTABLE: u16 = 2;

    #[test]
    fn a_change_to_steers_table_is_seen_among_others() {
        // A flush of the ruleset: the firewall's table, then steer's, in one datagram.
        let mut burst = message(DELRULE, NFPROTO_INET, "fw4", true);
        burst.extend(message(DELTABLE, NFPROTO_INET, "steer", false));
        assert!(touches_steer(&burst));
        assert!(touches_steer(&message(
            DELRULE,
            NFPROTO_INET,
            "steer",
            true
        )));
    }

    #[test]
    fn other_tables_and_families_are_not_steers() {
        assert!(!touches_steer(&message(DELRULE, NFPROTO_INET, "fw4", true)));
        assert!(!touches_steer(&message(
            DELRULE,
            NFPROTO_INET,
            "steer_lab",
            false
        )));
        // `table ip steer` is someone else's.
        assert!(!touches_steer(&message(DELTABLE, 2, "steer", false)));
        assert!(!touches_steer(&message(
            NFT_MSG_NEWGEN,
            NFPROTO_INET,
            "steer",
            false
        )));
        // Cut short: no attribute read past the end.
        let m = message(DELTABLE, NFPROTO_INET, "steer", false);
        assert!(!touches_steer(&m[..m.len() - 4]));
    }
}

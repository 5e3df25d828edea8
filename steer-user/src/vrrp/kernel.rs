//! The kernel changes mastership makes, over rtnetlink: virtual addresses added and removed,
//! master-only WANs' links set up and down, and what the controller reads back (link state,
//! an interface's addresses). Only the controller calls these.
//!
//! Every virtual address steer adds carries `proto 201` ([`VIP_PROTO`], IFA_PROTO, as steer's
//! routes do), and steer only ever removes addresses that carry it: the router's own address,
//! or one added by hand, is never taken for a stale virtual address.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressProtocol},
    link::{LinkAttribute, LinkFlags},
};
use rtnetlink::{Handle, LinkUnspec};

use crate::config::Vip;

/// The address protocol (IFA_PROTO, Linux 6.1+) of every virtual address steer adds: the
/// routing protocol number of its routes and rules. What carries it is steer's to remove (on
/// an older kernel, every configured VIP: see [`is_steers`]).
pub const VIP_PROTO: u8 = crate::routing::RTPROT_STEER;

/// One address of an interface, as [`Netlink::addresses`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Added by steer (it carries [`VIP_PROTO`]).
    pub steer: bool,
}

/// Why [`Netlink::add_vip`] did not add an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    /// It is there already, put there by someone else (by hand, a network manager): the
    /// router holds it whatever VRRP says, and steer will not remove it.
    NotOurs,
    Failed(String),
}

impl From<String> for AddError {
    fn from(e: String) -> AddError {
        AddError::Failed(e)
    }
}

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddError::NotOurs => f.write_str("it is there already, not added by steer"),
            AddError::Failed(e) => f.write_str(e),
        }
    }
}

/// What [`Netlink::del_vip`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Yes,
    /// The address was not there.
    Absent,
    /// The address is there but steer did not add it: left in place.
    NotOurs,
}

/// An rtnetlink socket for the controller's VRRP steps.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

/// One interface's index and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// IFF_LOWER_UP.
    pub carrier: bool,
    /// IFF_UP.
    pub admin_up: bool,
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

impl Netlink {
    /// Opens the socket; its connection task runs on the current tokio runtime.
    pub fn new() -> std::io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The interface called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Option<Link> {
        let mut links = std::pin::pin!(
            self.handle
                .link()
                .get()
                .match_name(name.to_owned())
                .execute()
        );
        let m = links.try_next().await.ok()??;
        Some(Link {
            index: m.header.index,
            carrier: m.header.flags.contains(LinkFlags::LowerUp),
            admin_up: m.header.flags.contains(LinkFlags::Up),
        })
    }

    /// Whether `name` has a link-layer address (Ethernet-like): where ARP and NDP make sense.
    pub async fn has_mac(&self, name: &str) -> bool {
        let mut links = std::pin::pin!(
            self.handle
                .link()
                .get()
                .match_name(name.to_owned())
                .execute()
        );
        match links.try_next().await {
            Ok(Some(m)) => m
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(mac) if mac.len() == 6)),
            _ => false,
        }
    }

    /// Adds `vip` to `interface` (IPv6 without duplicate address detection: the address must
    /// work at once). Returns false when it was there already (`Err` names one that steer did
    /// not add: see [`NotOurs`]).
    pub async fn add_vip(&self, interface: &str, vip: &Vip) -> Result<bool, AddError> {
        let link = self
            .link(interface)
            .await
            .ok_or_else(|| format!("interface {interface} does not exist"))?;
        let mut req = self
            .handle
            .address()
            .add(link.index, vip.addr, vip.prefix_len);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                VIP_PROTO,
            )));
        if vip.addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                match self.find_address(link.index, vip.addr).await? {
                    Some(m) if !is_steers(&m) => Err(AddError::NotOurs),
                    _ => Ok(false),
                }
            }
            Err(e) => Err(AddError::Failed(format!(
                "adding {vip} to {interface}: {}",
                describe(&e)
            ))),
        }
    }

    /// Removes every address steer added as a virtual address, on any interface (`steer stop`
    /// after a crash: no daemon left them). Only where the kernel keeps an address's protocol:
    /// before Linux 6.1 none can be told from the router's own.
    pub async fn remove_every_vip(&self) -> Result<usize, String> {
        Ok(self.remove_vips_except(&[]).await?.len())
    }

    /// Removes every address steer added as a virtual address (see [`VIP_PROTO`]) but those
    /// `keep` lists (interface, address): the VIPs a configuration dropped (a reload, or a
    /// start after one) would stay otherwise, and the router would answer for them. Returns
    /// what it removed ("address on interface"). Only where the kernel keeps an address's
    /// protocol: before Linux 6.1 none can be told from the router's own.
    pub async fn remove_vips_except(
        &self,
        keep: &[(String, IpAddr)],
    ) -> Result<Vec<String>, String> {
        if !keeps_address_protocol() {
            return Ok(Vec::new());
        }
        let mut kept = Vec::new();
        for (interface, addr) in keep {
            if let Some(l) = self.link(interface).await {
                kept.push((l.index, *addr));
            }
        }
        let all: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("reading addresses: {}", describe(&e)))?;
        let mut removed = Vec::new();
        for msg in all.into_iter().filter(is_steers) {
            let Some(a) = address_of(&msg) else { continue };
            let index = msg.header.index;
            if kept.contains(&(index, a.addr)) {
                continue;
            }
            let shown = format!(
                "{}/{} on {}",
                a.addr,
                a.prefix_len,
                self.link_name(index)
                    .await
                    .unwrap_or_else(|| index.to_string())
            );
            match self.handle.address().del(msg).execute().await {
                Ok(()) => removed.push(shown),
                Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {}
                Err(e) => return Err(format!("removing {shown}: {}", describe(&e))),
            }
        }
        Ok(removed)
    }

    /// The name of the interface with index `index`.
    async fn link_name(&self, index: u32) -> Option<String> {
        let mut links = std::pin::pin!(self.handle.link().get().match_index(index).execute());
        let m = links.try_next().await.ok()??;
        m.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        })
    }

    /// Removes `vip` from `interface` if steer added it (see [`VIP_PROTO`]).
    pub async fn del_vip(&self, interface: &str, vip: &Vip) -> Result<Removed, String> {
        let Some(link) = self.link(interface).await else {
            return Ok(Removed::Absent);
        };
        let Some(msg) = self.find_address(link.index, vip.addr).await? else {
            return Ok(Removed::Absent);
        };
        if !is_steers(&msg) {
            return Ok(Removed::NotOurs);
        }
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(Removed::Yes),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {
                Ok(Removed::Absent)
            }
            Err(e) => Err(format!("removing {vip} from {interface}: {}", describe(&e))),
        }
    }

    async fn find_address(
        &self,
        index: u32,
        addr: IpAddr,
    ) -> Result<Option<AddressMessage>, String> {
        Ok(self.messages(index).await?.into_iter().find(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(a) | AddressAttribute::Local(a) if *a == addr)
            })
        }))
    }

    /// The address messages of the interface with index `index`, in the kernel's order.
    async fn messages(&self, index: u32) -> Result<Vec<AddressMessage>, String> {
        let all = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        all.try_collect()
            .await
            .map_err(|e| format!("reading addresses: {}", describe(&e)))
    }

    /// Every address of `interface` (none when it does not exist).
    pub async fn addresses(&self, interface: &str) -> Result<Vec<Address>, String> {
        let Some(link) = self.link(interface).await else {
            return Ok(Vec::new());
        };
        let messages = self
            .messages(link.index)
            .await
            .map_err(|e| format!("{interface}: {e}"))?;
        Ok(messages.iter().filter_map(address_of).collect())
    }

    /// The IPv4 addresses of `interface` (none when they cannot be read).
    pub async fn ipv4_addresses(&self, interface: &str) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for a in self.addresses(interface).await.unwrap_or_default() {
            if let IpAddr::V4(v4) = a.addr
                && !out.contains(&v4)
            {
                out.push(v4);
            }
        }
        out
    }

    /// Sets `interface` administratively up or down.
    pub async fn set_link(&self, interface: &str, up: bool) -> Result<(), String> {
        let link = self
            .link(interface)
            .await
            .ok_or_else(|| format!("interface {interface} does not exist"))?;
        let b = LinkUnspec::new_with_index(link.index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle.link().set(msg).execute().await.map_err(|e| {
            format!(
                "setting {interface} {}: {}",
                if up { "up" } else { "down" },
                describe(&e)
            )
        })
    }

    /// Waits (polling every millisecond, until `deadline`) for `interface` to be up with carrier.
    pub async fn wait_carrier(
        &self,
        interface: &str,
        deadline: Instant,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            match self.link(interface).await {
                Some(l) if l.carrier && l.admin_up => return Ok(start.elapsed()),
                state => {
                    if Instant::now() >= deadline {
                        return Err(match state {
                            None => format!("{interface} does not exist"),
                            Some(l) if !l.admin_up => format!("{interface} is not up"),
                            Some(_) => format!("{interface} has no carrier"),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Whether steer added the address of `m` (it carries [`VIP_PROTO`]). A kernel before 6.1
/// drops an address's protocol without a word, so there no address carries it: every
/// configured VIP is then taken for steer's own, as before the tag (else a backup would never
/// remove the VIP it held as master), and a clash with the router's own address cannot be told.
fn is_steers(m: &AddressMessage) -> bool {
    !keeps_address_protocol()
        || m.attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == VIP_PROTO))
}

/// Whether this kernel keeps an address's protocol (IFA_PROTO: Linux 6.1 and later).
fn keeps_address_protocol() -> bool {
    static KEEPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEPS.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| release_at_least(&release, (6, 1)))
            .unwrap_or(false)
    })
}

/// Whether a kernel release ("6.18.44-generic") is `at_least` (major, minor); `None` when it
/// does not read as one.
fn release_at_least(release: &str, at_least: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some((major, minor) >= at_least)
}

/// The address `m` describes: IFA_LOCAL (IPv4; IFA_ADDRESS is the peer of a point-to-point
/// link there), else IFA_ADDRESS (IPv6).
fn address_of(m: &AddressMessage) -> Option<Address> {
    let find = |local: bool| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(a) if local => Some(*a),
            AddressAttribute::Address(a) if !local => Some(*a),
            _ => None,
        })
    };
    Some(Address {
        addr: find(true).or_else(|| find(false))?,
        prefix_len: m.header.prefix_len,
        steer: is_steers(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_release_is_compared_by_major_and_minor() {
        assert_eq!(release_at_least("6.18.44-fc-v1272\n", (6, 1)), Some(true));
        assert_eq!(release_at_least("6.1.0-13-amd64", (6, 1)), Some(true));
        assert_eq!(release_at_least("5.15.167", (6, 1)), Some(false));
        assert_eq!(release_at_least("6.0", (6, 1)), Some(false));
        assert_eq!(release_at_least("garbage", (6, 1)), None);
    }
}

//! Kernel routing events: a netlink socket subscribed to the link, address, route and rule
//! multicast groups, turned into [`NetEvent`]s as they arrive.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt, channel::mpsc::UnboundedReceiver};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{
    MulticastGroup,
    sys::{AsyncSocket, SocketAddr},
};

use super::{NetEvent, Routing, RoutingError, kernel::LinkInfo};

/// Receive buffer of the event socket. Should it still overflow (a burst of route changes),
/// the stream re-reads every link and reports `Changed`.
const RCVBUF: libc::c_int = 4 << 20;

/// The groups [`watch`] listens to.
const GROUPS: [MulticastGroup; 7] = [
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
    MulticastGroup::Ipv4Rule,
    MulticastGroup::Ipv6Rule,
];

/// The stream [`watch`] returns. Dropping it closes its socket.
pub struct Watch {
    inner: Pin<Box<dyn Stream<Item = NetEvent> + Send>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Stream for Watch {
    type Item = NetEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NetEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Subscribes to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR/IPV6_IFADDR, RTNLGRP_IPV4_ROUTE/IPV6_ROUTE
/// and RTNLGRP_IPV4_RULE/IPV6_RULE on a new netlink socket and yields events as the kernel sends
/// them (no polling). Carrier is IFF_LOWER_UP. Must be called inside a tokio runtime: the
/// socket's connection task is spawned on it.
pub fn watch() -> Result<Watch, RoutingError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| RoutingError::NoRuntime)?;
    let (mut conn, _, rx) =
        rtnetlink::new_multicast_connection(&GROUPS).map_err(RoutingError::Socket)?;
    if let Err(e) = conn.socket_mut().socket_mut().set_rx_buf_sz(RCVBUF) {
        log::debug!("netlink event socket: cannot enlarge the receive buffer: {e}");
    }
    rt.spawn(conn);
    let state = State {
        rx,
        links: HashMap::new(),
        pending: VecDeque::new(),
    };
    Ok(Watch {
        inner: Box::pin(futures::stream::unfold(state, next_event)),
    })
}

type Received = (NetlinkMessage<RouteNetlinkMessage>, SocketAddr);

struct State {
    rx: UnboundedReceiver<Received>,
    /// The last state reported per link index.
    links: HashMap<u32, LinkInfo>,
    pending: VecDeque<NetEvent>,
}

async fn next_event(mut st: State) -> Option<(NetEvent, State)> {
    loop {
        if let Some(ev) = st.pending.pop_front() {
            return Some((ev, st));
        }
        let (msg, _) = st.rx.next().await?;
        st.absorb(msg).await;
        // Whatever else is already here, so that a burst yields one `Changed`.
        while let Ok((msg, _)) = st.rx.try_recv() {
            st.absorb(msg).await;
        }
    }
}

impl State {
    async fn absorb(&mut self, msg: NetlinkMessage<RouteNetlinkMessage>) {
        use RouteNetlinkMessage as M;
        match msg.payload {
            NetlinkPayload::InnerMessage(M::NewLink(l))
                if l.header.interface_family != AddressFamily::Bridge =>
            {
                if let Some(info) = LinkInfo::from_message(&l) {
                    self.link(info);
                }
            }
            NetlinkPayload::InnerMessage(M::DelLink(l))
                if l.header.interface_family != AddressFamily::Bridge =>
            {
                let index = l.header.index;
                let known = self.links.remove(&index).map(|l| l.name);
                let name = LinkInfo::from_message(&l)
                    .map(|l| l.name)
                    .or(known)
                    .unwrap_or_default();
                self.pending.push_back(NetEvent::LinkGone { index, name });
            }
            NetlinkPayload::InnerMessage(
                M::NewAddress(_)
                | M::DelAddress(_)
                | M::NewRoute(_)
                | M::DelRoute(_)
                | M::NewRule(_)
                | M::DelRule(_),
            ) => self.changed(),
            NetlinkPayload::Overrun(_) => {
                log::warn!("netlink events were lost (receive buffer full): re-reading links");
                self.resync().await;
            }
            _ => {}
        }
    }

    /// Reports a link whose state differs from the last one reported.
    fn link(&mut self, info: LinkInfo) {
        let known = self.links.get(&info.index);
        if known == Some(&info) {
            return;
        }
        // A rename: the old name is gone as surely as if the device were deleted (a LAN
        // interface renamed away keeps no classifier, a WAN waits for its device).
        if let Some(old) = known.filter(|k| k.name != info.name) {
            self.pending.push_back(NetEvent::LinkGone {
                index: info.index,
                name: old.name.clone(),
            });
        }
        self.pending.push_back(NetEvent::Link {
            index: info.index,
            name: info.name.clone(),
            carrier: info.carrier,
            admin_up: info.admin_up,
        });
        self.links.insert(info.index, info);
    }

    fn changed(&mut self) {
        if self.pending.back() != Some(&NetEvent::Changed) {
            self.pending.push_back(NetEvent::Changed);
        }
    }

    /// After lost events: every link that changed or vanished, then `Changed`. The links are
    /// read on a socket of their own, so that the answer cannot be lost to a full buffer.
    async fn resync(&mut self) {
        let now = match Routing::new() {
            Ok(routing) => routing.links().await,
            Err(e) => Err(e),
        };
        let now = match now {
            Ok(now) => now,
            Err(e) => {
                log::warn!("netlink events: re-reading links failed: {e}");
                self.changed();
                return;
            }
        };
        let gone: Vec<LinkInfo> = self
            .links
            .values()
            .filter(|l| !now.iter().any(|n| n.index == l.index))
            .cloned()
            .collect();
        for l in gone {
            self.links.remove(&l.index);
            self.pending.push_back(NetEvent::LinkGone {
                index: l.index,
                name: l.name,
            });
        }
        for l in now {
            self.link(l);
        }
        self.changed();
    }
}

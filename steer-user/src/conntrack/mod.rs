//! Connections: which WAN each one belongs to, kept for its whole life.
//!
//! The classifier stamps the packet mark of the first packet; conntrack entries do not see it
//! unless something copies it, and later packets would follow whatever the verdict is by then.
//! steer owns one nftables table, `inet steer` ([`nft`]), in the prerouting hook after
//! conntrack:
//!
//! - a connection that starts on the LAN takes the WAN mark its first packet was stamped with
//!   into its connection mark; one that comes in through a WAN takes that WAN's mark;
//! - every later packet entering from any interface but the WANs (the LAN's; a DMZ's: replies
//!   of inbound connections included, and packets of a connection still waiting for its first
//!   reply) gets its connection's WAN mark back, over whatever the classifier stamped: a
//!   connection keeps its WAN (and its NAT binding) when a verdict changes — a failback, a
//!   reload, a balancing slot that moves, a learned address that expires;
//! - a connection whose first packet from the LAN had no WAN mark (the main table routed it)
//!   takes [`nft::main_table_mark`], and its later LAN packets lose their mark bits: it stays
//!   on the main table as the others stay on their WAN;
//! - with br_netfilter on a LAN bridge, prerouting runs before the classifier on the bridge:
//!   the classifier then keeps the mark restored there (`settings_flags::KEEP_MARK`), and a
//!   forward-hook chain gives a new connection the mark the classifier stamped.
//!
//! Bits outside the mark mask keep their value in both marks (nftables can only combine a
//! register with constants, so each WAN has a chain of its own, reached by one map lookup). When a WAN goes down the entries
//! with its mark are deleted through ctnetlink ([`netlink`]), so those flows start over on the
//! WAN that carries them now; a policy that moves flows back on recovery has the entries of its
//! flows deleted one by one.

pub mod netlink;
pub mod nft;
pub mod watch;

use std::io;

pub use netlink::{Connection, connections, delete_many, flush_mark};
pub use nft::{
    MarkedWan, NFT_TABLE, bridge_netfilter, drift, install, install_with, installed, listing,
    main_table_mark, ruleset, ruleset_with, shape_drift, table_present, uninstall,
};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    // Without steer's table nothing may use connection tracking in this namespace, and then
    // nothing reassembles a fragmented datagram before routing: the classifier steers each
    // fragment by the rule its first fragment recorded, but one that overtakes its first
    // fragment has no ports to match by.
    #[error(
        "cannot run `nft` to set up connection marking ({0}); install nftables, or flows that \
         moved off a dead WAN keep their old conntrack entries until they time out, and unless \
         something else here uses connection tracking (which reassembles fragments), a \
         fragment that arrives before its datagram's first fragment is steered by its \
         addresses alone, not by port rules"
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
    #[error("ctnetlink delete of {what}: {source}")]
    Delete {
        what: String,
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without nftables a router may not reassemble fragments: the warning must not leave the
    /// owner believing a fragmented datagram always goes whole where its ports say.
    #[test]
    fn the_missing_nft_warning_says_what_it_means_for_fragments() {
        let text = ConntrackError::NoNft(io::ErrorKind::NotFound.into()).to_string();
        assert!(text.contains("install nftables"), "{text}");
        assert!(
            text.contains("fragment") && text.contains("port rules"),
            "{text}"
        );
    }
}

//! Removing everything steer set up, in one sequence that serves `steer stop` whether a daemon
//! runs (it calls this after letting go of the dataplane) or not (the CLI calls it itself):
//! the pinned classifier first (unpinning its links detaches it), then the routing rules and
//! tables, the VRRP virtual addresses a dead daemon left (`proto 201`), the connection-marking
//! table, and the journal of runtime set entries (they belonged to the steering that is gone).

use std::path::Path;

use crate::{
    conntrack,
    dataplane::{self, DataplaneError},
    routing::{ReconcileReport, Routing, RoutingError},
};

/// What a teardown removed.
#[derive(Debug, Default)]
pub struct Teardown {
    /// Pins removed under the pin directory (links, programs, maps).
    pub pins: usize,
    pub routing: ReconcileReport,
    /// The nftables table was there and is gone.
    pub nft_removed: bool,
    /// Removing the nftables table failed.
    pub nft_error: Option<String>,
    /// The runtime set journal was there and is gone.
    pub journal_removed: bool,
    /// Virtual addresses of VRRP instances a dead daemon left (`proto 201`).
    pub vips_removed: usize,
    /// Removing them failed.
    pub vip_error: Option<String>,
}

impl Teardown {
    /// Nothing was there to remove.
    pub fn was_empty(&self) -> bool {
        self.pins == 0
            && self.vips_removed == 0
            && self.routing.changes.is_empty()
            && !self.nft_removed
            && !self.journal_removed
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Pins(#[from] DataplaneError),
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// Removes the pinned state under `pin_dir` (refused while a daemon holds it, and, before
/// anything is removed, when a steer in another network namespace that still exists pinned
/// it: [`dataplane::remove_pinned_here`]), steer's routing
/// rules and the routes of `tables` (and steer's routes anywhere), steer's nftables table, and
/// the runtime set journal and the IPv6 prefixes kept of the daemon with control socket
/// `socket`. Safe to repeat: a second call finds nothing.
pub async fn teardown(
    pin_dir: &Path,
    tables: &[u32],
    socket: &Path,
) -> Result<Teardown, TeardownError> {
    let pins = dataplane::remove_pinned_here(pin_dir)?;
    let routing = Routing::new()?.remove_all(tables).await;
    let mut done = Teardown {
        pins,
        routing,
        ..Teardown::default()
    };
    match crate::vrrp::kernel::Netlink::new() {
        Ok(nl) => match nl.remove_every_vip().await {
            Ok(n) => done.vips_removed = n,
            Err(e) => done.vip_error = Some(format!("removing VRRP virtual addresses: {e}")),
        },
        Err(e) => {
            done.vip_error = Some(format!(
                "removing VRRP virtual addresses: cannot open a netlink socket: {e}"
            ));
        }
    }
    crate::dns::snoop::remove_fallback_if_installed();
    if conntrack::installed() {
        match conntrack::uninstall() {
            Ok(()) => done.nft_removed = true,
            Err(e) => done.nft_error = Some(e.to_string()),
        }
    }
    match crate::runtime_sets::journal::remove(socket) {
        Ok(removed) => done.journal_removed = removed,
        Err(e) => log::warn!("the runtime set journal could not be removed: {e}"),
    }
    let kept = crate::wan_sources::kept::path_for(socket);
    if let Err(e) = crate::wan_sources::kept::remove(&kept) {
        log::warn!("{} could not be removed: {e}", kept.display());
    }
    let overrides = super::overrides::path_for(socket);
    if let Err(e) = super::overrides::remove(&overrides) {
        log::warn!("{} could not be removed: {e}", overrides.display());
    }
    let gateways = super::hooked_gateways::path_for(socket);
    if let Err(e) = super::hooked_gateways::remove(&gateways) {
        log::warn!("{} could not be removed: {e}", gateways.display());
    }
    Ok(done)
}

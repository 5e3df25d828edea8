//! VRRP: the virtual addresses of a two-router HA pair, and the WANs only the master runs.
//!
//! - [`packet`]: VRRPv3 adverts on the wire, built and validated (pure);
//! - [`machine`]: the RFC 9568 state machine of one virtual router on a virtual clock (pure);
//! - [`weigh`]: WAN health -> an instance's effective priority or fault (pure);
//! - [`socket`], [`speaker`]: raw sockets and the speakers' own thread, one task per instance;
//! - [`follow`]: `engine = "keepalived"`, keepalived's notify fifo and track file;
//! - [`announce`] (gratuitous ARP, unsolicited NA), [`kernel`] (addresses and links over
//!   rtnetlink), [`command`], [`conntrackd`]: the takeover steps, which only the controller
//!   runs (`controller::vrrp`);
//! - [`vips`]: the VIPs checked against their interfaces before anything changes (pure, but
//!   for reading the addresses);
//! - [`metrics`]: the instances in the Prometheus text format.
//!
//! [`Engines`] bundles whatever speaks or follows each configured instance.

pub mod announce;
pub mod command;
pub mod conntrackd;
pub mod follow;
pub mod kernel;
pub mod machine;
pub mod metrics;
pub mod packet;
pub mod socket;
pub mod speaker;
pub mod vips;
pub mod weigh;

use std::{collections::BTreeMap, path::PathBuf};

pub use machine::State;
pub use speaker::{Board, Command, Event, View};
use tokio::sync::mpsc;

use crate::config::{Engine, Vrrp};

/// The speakers of the instances steer speaks and the readers of keepalived's fifos.
#[derive(Debug)]
pub struct Engines {
    speakers: speaker::Speakers,
    followers: follow::Followers,
    events: mpsc::UnboundedSender<Event>,
}

impl Engines {
    pub fn new(events: mpsc::UnboundedSender<Event>, board: Board) -> Engines {
        Engines {
            speakers: speaker::Speakers::new(events.clone(), board),
            followers: follow::Followers::default(),
            events,
        }
    }

    /// Runs what `config` asks for (see [`speaker::Speakers::sync`]); returns what could not
    /// start.
    pub async fn sync(&mut self, config: &[Vrrp], priority: impl Fn(&str) -> u8) -> Vec<String> {
        self.speakers.sync(config, priority).await;
        let mut fifos: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for v in config {
            if let Engine::Keepalived(f) = &v.engine {
                fifos
                    .entry(f.notify_fifo.clone())
                    .or_default()
                    .push(v.name.clone());
            }
        }
        self.followers.sync(fifos, &self.events)
    }

    /// Sends `command` to steer's speaker of instance `name`, if steer speaks it.
    pub fn command(&self, name: &str, command: Command) {
        self.speakers.command(name, command);
    }

    /// A link went up or down.
    pub fn link(&self, interface: &str, up: bool) {
        self.speakers.link(interface, up);
    }

    /// Stops every speaker (masters resign with priority 0).
    pub async fn shutdown(&mut self) {
        self.speakers.shutdown().await;
    }
}
